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
