/* kernels/vecmath: the search's row reductions against plain double-precision loops, on rows
 * shaped like Whisper's logits (51864 wide) and on edge cases (-inf, ties, tiny rows). */
#include "vecmath.h"
#include "vs_test.h"

#include <glib.h>
#include <math.h>
#include <stdbool.h>

static double ref_lse(const float *x, int n) {
  double m = -INFINITY;
  for (int i = 0; i < n; i++)
    m = x[i] > m ? x[i] : m;
  if (m == -INFINITY) return -INFINITY;
  double s = 0;
  for (int i = 0; i < n; i++)
    s += exp((double)x[i] - m);
  return m + log(s);
}

/* Top-k by a stable selection: larger first, lower index first among equals. */
static void ref_top_k(const float *x, int n, int k, int *idx) {
  gboolean *taken = g_new0(gboolean, n);
  for (int r = 0; r < k; r++) {
    int best = -1;
    for (int i = 0; i < n; i++)
      if (!taken[i] && (best < 0 || x[i] > x[best])) best = i;
    taken[best] = TRUE;
    idx[r] = best;
  }
  g_free(taken);
}

static void check_row(const float *x, int n, const char *what) {
  double lse = vs_vec_log_sum_exp(x, n), want = ref_lse(x, n);
  if (isinf(want))
    CHECK_MSG(isinf(lse) && lse < 0, "%s: lse %g, want -inf", what, lse);
  else
    CHECK_MSG(fabs(lse - want) <= 1e-6 * fmax(1.0, fabs(want)), "%s: lse %.9g vs %.9g", what, lse,
              want);
  int am = vs_vec_argmax(x, n), ram = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[ram]) ram = i;
  CHECK_MSG(am == ram, "%s: argmax %d vs %d", what, am, ram);
  for (int k = 1; k <= 12 && k <= n; k += 3) {
    int idx[16], ridx[16];
    float val[16];
    int got = vs_vec_top_k(x, n, k, idx, val);
    ref_top_k(x, n, k, ridx);
    CHECK_MSG(got == k, "%s: top-%d returned %d", what, k, got);
    bool same = true;
    for (int r = 0; r < k; r++)
      same &= idx[r] == ridx[r] && val[r] == x[ridx[r]];
    CHECK_MSG(same, "%s: top-%d differs from the stable reference", what, k);
  }
}

int main(void) {
  GRand *rng = g_rand_new_with_seed(7);
  const int V = 51864;
  float *x = g_new(float, V);

  for (int i = 0; i < V; i++) /* logits-like: a wide spread, a few clear winners */
    x[i] = (float)g_rand_double_range(rng, -12, 8);
  x[50257] = 25.0f;
  check_row(x, V, "random logits");

  for (int i = 0; i < V; i++) /* suppressed tokens and disabled ranges */
    if (i % 7 == 0 || i >= 50363) x[i] = -INFINITY;
  check_row(x, V, "with -inf");

  for (int i = 0; i < V; i++) /* many exact ties: lower index must win */
    x[i] = (float)(g_rand_int_range(rng, 0, 4));
  check_row(x, V, "ties");

  for (int i = 0; i < V; i++)
    x[i] = -INFINITY;
  CHECK(isinf(vs_vec_log_sum_exp(x, V)) && vs_vec_log_sum_exp(x, V) < 0);
  x[V - 1] = -3.0f; /* only the last element alive: the block skip must not miss it */
  check_row(x, V, "one alive at the end");

  for (int n = 1; n <= 70; n++) { /* shorter than a vector, a block, and in between */
    for (int i = 0; i < n; i++)
      x[i] = (float)g_rand_double_range(rng, -100, 100);
    check_row(x, n, "short row");
  }

  /* exp itself: relative error against libm over the range the softmax uses */
  double worst = 0;
  for (float v = -87.0f; v <= 88.0f; v += 0.01f) {
    double e = vs_vec_expf(v), r = exp((double)v);
    worst = fmax(worst, fabs(e - r) / r);
  }
  CHECK_MSG(worst < 4e-7, "vs_vec_expf worst relative error %g", worst);
  CHECK(vs_vec_expf(-INFINITY) == 0.0f && vs_vec_expf(-100.0f) == 0.0f);

  g_free(x);
  g_rand_free(rng);
  return vs_test_finish();
}
