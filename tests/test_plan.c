/* Sharding plan: balance, determinism (order of the input does not matter), every utterance
 * exactly once, agreement with a naive quadratic implementation of the same rule, edge cases. */
#include "plan.h"
#include "vs_test.h"

#include <glib.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

/* The rule written the slow, obvious way: sort, then scan all ranks for the minimum. */
typedef struct {
  const char *id;
  double d;
  size_t i;
} ref_item;

static double ref_clean(double d) {
  return (d > 0 && !isinf(d)) ? d : 0.0;
}

static int ref_cmp(const void *pa, const void *pb) {
  const ref_item *a = pa, *b = pb;
  if (a->d != b->d) return a->d > b->d ? -1 : 1;
  int c = strcmp(a->id, b->id);
  if (c) return c;
  return a->i < b->i ? -1 : (a->i > b->i);
}

static void ref_assign(const char *const *ids, const double *dur, size_t n, int world,
                       int *rank_of) {
  ref_item *it = g_new(ref_item, n);
  for (size_t i = 0; i < n; i++)
    it[i] = (ref_item){ids[i], ref_clean(dur[i]), i};
  qsort(it, n, sizeof *it, ref_cmp);
  double *load = g_new0(double, world);
  size_t *count = g_new0(size_t, world);
  for (size_t k = 0; k < n; k++) {
    int best = 0;
    for (int r = 1; r < world; r++)
      if (load[r] < load[best] || (load[r] == load[best] && count[r] < count[best])) best = r;
    rank_of[it[k].i] = best;
    load[best] += it[k].d;
    count[best]++;
  }
  g_free(load);
  g_free(count);
  g_free(it);
}

typedef struct {
  size_t n;
  char **ids;
  double *dur;
} set;

static set make_set(size_t n, guint32 seed, bool with_zero) {
  set s = {n, g_new(char *, n), g_new(double, n)};
  GRand *rng = g_rand_new_with_seed(seed);
  for (size_t i = 0; i < n; i++) {
    s.ids[i] = g_strdup_printf("utt-%05u-%zu", g_rand_int_range(rng, 0, 100000), i);
    /* Durations quantised to 10 ms so that equal durations (id tie-breaks) really occur. */
    s.dur[i] = g_rand_int_range(rng, with_zero ? 0 : 1, 3000) / 100.0;
  }
  g_rand_free(rng);
  return s;
}

static void free_set(set *s) {
  for (size_t i = 0; i < s->n; i++)
    g_free(s->ids[i]);
  g_free(s->ids);
  g_free(s->dur);
}

static void check_plan(const set *s, int world) {
  int *rank_of = g_new(int, s->n ? s->n : 1);
  double *load = g_new(double, world);
  for (size_t i = 0; i < s->n; i++)
    rank_of[i] = -1;
  vs_plan_assign((const char *const *)s->ids, s->dur, s->n, world, rank_of, load);

  /* Every utterance assigned exactly once to a valid rank, and the loads add up. */
  double *sum = g_new0(double, world);
  double longest = 0, total = 0;
  bool all_valid = true;
  for (size_t i = 0; i < s->n; i++) {
    if (rank_of[i] < 0 || rank_of[i] >= world) {
      all_valid = false;
      continue;
    }
    sum[rank_of[i]] += s->dur[i];
    total += s->dur[i];
    if (s->dur[i] > longest) longest = s->dur[i];
  }
  CHECK_MSG(all_valid, "n=%zu world=%d", s->n, world);
  double lo = INFINITY, hi = -INFINITY, load_total = 0;
  for (int r = 0; r < world; r++) {
    CHECK_NEAR(load[r], sum[r], 1e-6);
    if (load[r] < lo) lo = load[r];
    if (load[r] > hi) hi = load[r];
    load_total += load[r];
  }
  CHECK_NEAR(load_total, total, 1e-6);
  CHECK_MSG(hi - lo <= longest + 1e-9, "n=%zu world=%d spread %.3f > longest %.3f", s->n, world,
            hi - lo, longest);

  /* Same as the naive implementation of the rule. */
  int *ref = g_new(int, s->n ? s->n : 1);
  ref_assign((const char *const *)s->ids, s->dur, s->n, world, ref);
  CHECK_MSG(s->n == 0 || memcmp(ref, rank_of, sizeof(int) * s->n) == 0, "n=%zu world=%d", s->n,
            world);

  /* Deterministic and independent of input order: reverse the list, same id -> rank map. */
  char **rids = g_new(char *, s->n ? s->n : 1);
  double *rdur = g_new(double, s->n ? s->n : 1);
  int *rrank = g_new(int, s->n ? s->n : 1);
  for (size_t i = 0; i < s->n; i++) {
    rids[i] = s->ids[s->n - 1 - i];
    rdur[i] = s->dur[s->n - 1 - i];
  }
  vs_plan_assign((const char *const *)rids, rdur, s->n, world, rrank, NULL);
  bool same = true;
  for (size_t i = 0; i < s->n; i++)
    if (rrank[i] != rank_of[s->n - 1 - i]) same = false;
  CHECK_MSG(same, "n=%zu world=%d: plan depends on input order", s->n, world);

  g_free(rids);
  g_free(rdur);
  g_free(rrank);
  g_free(ref);
  g_free(sum);
  g_free(load);
  g_free(rank_of);
}

int main(void) {
  for (int world = 1; world <= 7; world++) {
    for (guint32 seed = 1; seed <= 3; seed++) {
      set s = make_set(200 + seed * 37, seed * 1000 + world, seed == 3);
      check_plan(&s, world);
      free_set(&s);
    }
  }

  /* Worked by hand on 2 ranks: a5->0, d4->1, b3->1 (4 < 5; b before c on equal durations),
   * c3->0 (5 < 7), e2->1 (7 < 8). */
  {
    const char *ids[] = {"e", "a", "c", "b", "d"};
    double dur[] = {2, 5, 3, 3, 4};
    int rank_of[5];
    double load[2];
    vs_plan_assign(ids, dur, 5, 2, rank_of, load);
    CHECK(rank_of[1] == 0); /* a: 5 */
    CHECK(rank_of[4] == 1); /* d: 4 */
    CHECK(rank_of[3] == 1); /* b: 3, id before c */
    CHECK(rank_of[2] == 0); /* c: 3 */
    CHECK(rank_of[0] == 1); /* e: 2 */
    CHECK_NEAR(load[0], 8, 0);
    CHECK_NEAR(load[1], 9, 0);
  }

  /* More ranks than utterances: the longest go to ranks 0, 1, 2 in order, the rest idle. */
  {
    const char *ids[] = {"x", "y", "z"};
    double dur[] = {1, 3, 2};
    int rank_of[3];
    double load[6];
    vs_plan_assign(ids, dur, 3, 6, rank_of, load);
    CHECK(rank_of[1] == 0 && rank_of[2] == 1 && rank_of[0] == 2);
    CHECK(load[3] == 0 && load[4] == 0 && load[5] == 0);
  }

  /* All durations zero (or unknown, negative, NaN): spread round-robin in id order. */
  {
    const char *ids[] = {"d", "c", "b", "a", "f", "e", "g"};
    double dur[] = {0, -1, NAN, 0, 0, INFINITY, 0};
    int rank_of[7];
    double load[3];
    vs_plan_assign(ids, dur, 7, 3, rank_of, load);
    int count[3] = {0};
    for (int i = 0; i < 7; i++)
      count[rank_of[i]]++;
    CHECK(count[0] == 3 && count[1] == 2 && count[2] == 2);
    CHECK(rank_of[3] == 0 && rank_of[2] == 1 && rank_of[1] == 2 && rank_of[0] == 0);
    CHECK(load[0] == 0 && load[1] == 0 && load[2] == 0);
  }

  /* Empty list and world < 1. */
  {
    double load[1] = {-1};
    vs_plan_assign(NULL, NULL, 0, 1, NULL, load);
    CHECK(load[0] == 0);
    const char *ids[] = {"a", "b"};
    double dur[] = {1, 2};
    int rank_of[2] = {-1, -1};
    vs_plan_assign(ids, dur, 2, 0, rank_of, NULL);
    CHECK(rank_of[0] == 0 && rank_of[1] == 0);
  }

  /* Resume with a different world size: the plan over the remaining utterances is again a
   * complete, balanced assignment (what docs/sharding.md promises). */
  {
    set s = make_set(120, 77, false);
    int *r4 = g_new(int, s.n);
    vs_plan_assign((const char *const *)s.ids, s.dur, s.n, 4, r4, NULL);
    /* Ranks 0 and 2 finished before the crash: drop their utterances, replan on 3 ranks. */
    set rest = {0, g_new(char *, s.n), g_new(double, s.n)};
    for (size_t i = 0; i < s.n; i++)
      if (r4[i] != 0 && r4[i] != 2) {
        rest.ids[rest.n] = s.ids[i];
        rest.dur[rest.n++] = s.dur[i];
      }
    CHECK(rest.n > 0 && rest.n < s.n);
    check_plan(&rest, 3);
    g_free(rest.ids);
    g_free(rest.dur);
    g_free(r4);
    free_set(&s);
  }
  return vs_test_finish();
}
