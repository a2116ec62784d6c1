/* Vectorised reductions over one row of host floats: the search's per-step work on each
 * 51864-wide row of logits (max, log-sum-exp, top-k). Dispatched at run time to AVX-512, AVX2
 * or plain code, so the build's baseline ISA stays portable. */
#ifndef VS_VECMATH_H
#define VS_VECMATH_H

/* expf by Cody-Waite range reduction and a degree-6 polynomial (about 2 ulp), branch-free so
 * that loops calling it vectorise; libm's expf is one call per element. exp(-inf) and anything
 * below -87 give 0. */
static inline float vs_vec_expf(float x0) {
  float x = x0 < -87.0f ? -87.0f : (x0 > 88.0f ? 88.0f : x0);
  /* round to nearest by the 1.5 * 2^23 trick (|x log2 e| < 2^22): plain arithmetic, so that it
   * vectorises under every target clone, where rintf's expansion does not */
  float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  /* 2^n through the exponent bits; a union, not memcpy, keeps the loop vectorisable */
  union {
    unsigned int u;
    float f;
  } scale = {.u = (unsigned int)((int)n + 127) << 23};
  /* a multiply, not a branch, zeroes the underflow (and exp(-inf)) */
  return p * scale.f * (float)(x0 >= -87.0f);
}

/* vs_vec_expf on 8 lanes (AVX2 + FMA), same constants. GCC vectorises loops of vs_vec_expf for
 * AVX-512 (masked selects) but not for AVX2 ("control flow in loop"): such loops ran scalar on
 * AVX2-only CPUs, where the encoder's softmax then took a third of the encoder's time. */
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static inline __m256 vs_vec_exp8(__m256 x0) {
  __m256 x = _mm256_min_ps(_mm256_max_ps(x0, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  __m256 n = _mm256_sub_ps(
      _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(12582912.0f)),
      _mm256_set1_ps(12582912.0f));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_and_ps(y, _mm256_cmp_ps(x0, _mm256_set1_ps(-87.0f), _CMP_GE_OQ));
}

/* Largest of 8 lanes. */
__attribute__((target("avx2,fma"))) static inline float vs_vec_hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

/* Sum of 8 lanes. */
__attribute__((target("avx2,fma"))) static inline float vs_vec_hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

/* True where vs_vec_exp8 may be used: AVX2 and FMA without AVX-512 (where the compiler's own
 * vectorisation of vs_vec_expf loops is better). */
int vs_vec_use_exp8(void);

/* Largest element of x[0..n); -inf when n is 0 or every element is -inf. */
float vs_vec_max(const float *x, int n);

/* Index of the first largest element (0 when n is 0). */
int vs_vec_argmax(const float *x, int n);

/* sum of exp(x[i] - shift), accumulated in double. */
double vs_vec_sum_exp(const float *x, int n, float shift);

/* log(sum exp(x[i])), computed stably; -inf when every element is -inf. */
double vs_vec_log_sum_exp(const float *x, int n);

/* The k largest elements of x (k <= n), in descending order, ties to the lower index:
 * idx[0..k), val[0..k). Returns how many were written (min(k, n)). */
int vs_vec_top_k(const float *x, int n, int k, int *idx, float *val);

#endif
