#include "vecmath.h"

#include <math.h>

#define VS_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))

VS_CLONES float vs_vec_max(const float *x, int n) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int i = 0; i < n; i++)
    m = x[i] > m ? x[i] : m;
  return m;
}

int vs_vec_argmax(const float *x, int n) {
  if (n <= 0) return 0;
  float m = vs_vec_max(x, n);
  for (int i = 0; i < n; i++)
    if (x[i] == m) return i;
  return 0; /* only NaNs */
}

/* float partial sums over blocks (a vectorised float reduction; GCC does not vectorise a double
 * one fed by floats), added in double: about 1e-7 relative error for a 51864-wide row. */
enum { SUM_BLOCK = 1024 };

int vs_vec_use_exp8(void) {
  static int use = -1;
  if (use < 0)
    use = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
          !__builtin_cpu_supports("avx512f");
  return use;
}

__attribute__((target("avx2,fma"))) static double sum_exp_avx2(const float *x, int n,
                                                               float shift) {
  double s = 0;
  __m256 vs = _mm256_set1_ps(shift);
  for (int b = 0; b < n; b += SUM_BLOCK) {
    int e = b + SUM_BLOCK < n ? b + SUM_BLOCK : n, i = b;
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= e; i += 8)
      acc = _mm256_add_ps(acc, vs_vec_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs)));
    float part = vs_vec_hsum8(acc);
    for (; i < e; i++)
      part += vs_vec_expf(x[i] - shift);
    s += part;
  }
  return s;
}

VS_CLONES static double sum_exp_generic(const float *x, int n, float shift) {
  double s = 0;
  for (int b = 0; b < n; b += SUM_BLOCK) {
    int e = b + SUM_BLOCK < n ? b + SUM_BLOCK : n;
    float part = 0;
#pragma omp simd reduction(+ : part)
    for (int i = b; i < e; i++)
      part += vs_vec_expf(x[i] - shift);
    s += part;
  }
  return s;
}

double vs_vec_sum_exp(const float *x, int n, float shift) {
  return vs_vec_use_exp8() ? sum_exp_avx2(x, n, shift) : sum_exp_generic(x, n, shift);
}

double vs_vec_log_sum_exp(const float *x, int n) {
  float m = vs_vec_max(x, n);
  if (m == -INFINITY) return -INFINITY;
  return (double)m + log(vs_vec_sum_exp(x, n, m));
}

/* Block maxima skip the scalar insertion for almost every block once the list is full. */
enum { TOPK_BLOCK = 64 };

static void topk_insert(int *idx, float *val, int *have, int k, int i, float v) {
  int p = *have < k ? (*have)++ : k - 1;
  while (p > 0 && v > val[p - 1]) {
    val[p] = val[p - 1];
    idx[p] = idx[p - 1];
    p--;
  }
  val[p] = v;
  idx[p] = i;
}

int vs_vec_top_k(const float *x, int n, int k, int *idx, float *val) {
  if (k > n) k = n;
  if (k <= 0) return 0;
  int have = 0;
  for (int b = 0; b < n; b += TOPK_BLOCK) {
    int e = b + TOPK_BLOCK < n ? b + TOPK_BLOCK : n;
    if (have == k && !(vs_vec_max(x + b, e - b) > val[k - 1])) continue;
    for (int i = b; i < e; i++)
      if (have < k || x[i] > val[k - 1]) topk_insert(idx, val, &have, k, i, x[i]);
  }
  return have;
}
