/* The reference backend: every op as the plainest fp32 loop that is obviously right. It is the
 * oracle for the fast backends, so clarity wins over speed; sums that feed comparisons are
 * accumulated in double so that the oracle's own rounding stays far below the tolerances the
 * tests allow the fast paths. Outer loops over independent rows are OpenMP-parallel only
 * because the golden test runs a whole encoder on it; no result depends on the thread count. */
#include "ops.h"
#include "vs_error.h"

#include <math.h>
#include <string.h>

struct vs_ops_linear {
  const float *w; /* host [n_out][n_in], the model's own array */
  const float *b; /* host [n_out] or NULL */
  int n_out, n_in;
};

void vs_ops_f32_to_bf16(const float *x, unsigned short *y, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned int u;
    memcpy(&u, &x[i], 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) { /* NaN stays a (quiet) NaN */
      y[i] = (unsigned short)((u >> 16) | 0x40u);
      continue;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    y[i] = (unsigned short)(u >> 16);
  }
}

float vs_ops_bf16_to_f32(unsigned short h) {
  unsigned int u = (unsigned int)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

void vs_ops_free(vs_ops *ops) {
  if (ops) ops->destroy(ops);
}

static vs_ops_linear *ref_linear_prepare(vs_ops *ops, const float *w, const float *b, int n_out,
                                         int n_in, const char *what, GError **err) {
  if (!w || n_out <= 0 || n_in <= 0)
    VS_FAIL(err, VS_ERROR_INTERNAL, NULL, "%s: bad linear weight %dx%d", what, n_out, n_in);
  vs_ops_linear *l = g_new0(vs_ops_linear, 1);
  *l = (vs_ops_linear){.w = w, .b = b, .n_out = n_out, .n_in = n_in};
  return l;
}

static void ref_linear_free(vs_ops *ops, vs_ops_linear *l) {
  g_free(l);
}

static size_t ref_linear_ws(const vs_ops *ops, int m, int n_in, int n_out_accum) {
  return 0;
}

static float ref_gelu1(float x) {
  return (float)(0.5 * x * (1.0 + erf(x / sqrt(2.0))));
}

static bool ref_linear(vs_ops *ops, const vs_ops_linear *l, const float *x, int m, float *y,
                       unsigned flags, vs_ops_ws ws, GError **err) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < m; i++) {
    for (int o = 0; o < l->n_out; o++) {
      double s = l->b ? l->b[o] : 0.0;
      const float *wr = l->w + (size_t)o * l->n_in;
      const float *xr = x + (size_t)i * l->n_in;
      for (int k = 0; k < l->n_in; k++)
        s += (double)xr[k] * wr[k];
      float v = (float)s;
      if (flags & VS_LINEAR_GELU) v = ref_gelu1(v);
      float *yo = &y[(size_t)i * l->n_out + o];
      *yo = (flags & VS_LINEAR_ACCUM) ? *yo + v : v;
    }
  }
  return true;
}

static size_t ref_conv1d_ws(const vs_ops *ops, int c_in, int t_in, int stride) {
  int t_out = (t_in - 1) / stride + 1;
  return (size_t)t_out * c_in * 3 * sizeof(float);
}

/* im2col: column c*3+j of row t is input time t*stride + j - 1 (zero outside), matching the
 * conv weight's [c_out][c_in][3] flattening. */
static bool ref_conv1d(vs_ops *ops, const vs_ops_linear *w, const float *x, int c_in, int t_in,
                       long ld_t, long ld_c, int stride, float *y, unsigned flags, vs_ops_ws ws,
                       GError **err) {
  int t_out = (t_in - 1) / stride + 1;
  if (ws.bytes < ref_conv1d_ws(ops, c_in, t_in, stride))
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "conv1d: workspace of %zu bytes is too small", ws.bytes);
  if (w->n_in != c_in * 3)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "conv1d: weight has %d inputs, want %d", w->n_in,
            c_in * 3);
  float *col = ws.ptr;
  for (int t = 0; t < t_out; t++)
    for (int c = 0; c < c_in; c++)
      for (int j = 0; j < 3; j++) {
        long ti = (long)t * stride + j - 1;
        col[((size_t)t * c_in + c) * 3 + j] =
            (ti < 0 || ti >= t_in) ? 0.0f : x[ti * ld_t + c * ld_c];
      }
  vs_ops_ws none = {0};
  return ref_linear(ops, w, col, t_out, y, flags, none, err);
}

static void ref_layer_norm(vs_ops *ops, const float *x, int m, int d, const float *g,
                           const float *b, float *y) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < m; i++) {
    const float *xr = x + (size_t)i * d;
    double mean = 0, var = 0;
    for (int k = 0; k < d; k++)
      mean += xr[k];
    mean /= d;
    for (int k = 0; k < d; k++)
      var += (xr[k] - mean) * (xr[k] - mean);
    var /= d;
    double inv = 1.0 / sqrt(var + 1e-5);
    float *yr = y + (size_t)i * d;
    for (int k = 0; k < d; k++)
      yr[k] = (float)((xr[k] - mean) * inv * g[k] + b[k]);
  }
}

static void ref_gelu(vs_ops *ops, float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    x[i] = ref_gelu1(x[i]);
}

static void ref_add(vs_ops *ops, float *y, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    y[i] += x[i];
}

static void ref_softmax_row(float *x, int n) {
  double mx = -INFINITY, s = 0;
  for (int j = 0; j < n; j++)
    mx = x[j] > mx ? x[j] : mx;
  for (int j = 0; j < n; j++)
    s += exp(x[j] - mx);
  for (int j = 0; j < n; j++)
    x[j] = (float)(exp(x[j] - mx) / s);
}

static void ref_softmax(vs_ops *ops, float *x, int m, int n) {
  for (int i = 0; i < m; i++)
    ref_softmax_row(x + (size_t)i * n, n);
}

static void ref_embedding(vs_ops *ops, const float *table, int d, const int *ids, int m, float *y) {
  for (int i = 0; i < m; i++)
    memcpy(y + (size_t)i * d, table + (size_t)ids[i] * d, d * sizeof(float));
}

static size_t ref_attention_ws(const vs_ops *ops, int n_q, int n_kv, int n_head, int head_dim) {
  return 0;
}

/* One query row at a time: the score row (n_kv) is the only intermediate. */
static bool ref_attention(vs_ops *ops, const vs_attn_args *a, vs_ops_ws ws, GError **err) {
  if (a->causal && a->q_pos0 + a->n_q > a->n_kv)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "attention: causal queries end at %d past %d keys",
            a->q_pos0 + a->n_q, a->n_kv);
  if (a->kv_packed) /* the reference has no packed form: kv_packed_bytes is NULL */
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "attention: packed K/V given to the reference");
  double scale = 1.0 / sqrt((double)a->head_dim);
#pragma omp parallel for collapse(2) schedule(static)
  for (int h = 0; h < a->n_head; h++)
    for (int i = 0; i < a->n_q; i++) {
      double sc[a->n_kv];
      int n = a->causal ? a->q_pos0 + i + 1 : a->n_kv;
      const float *q = a->q + (size_t)i * a->ld_q + (size_t)h * a->head_dim;
      double mx = -INFINITY, sum = 0;
      for (int j = 0; j < n; j++) {
        size_t ko = (size_t)j * a->ld_k + (size_t)h * (a->hs_k ? a->hs_k : a->head_dim);
        double s = 0;
        for (int c = 0; c < a->head_dim; c++)
          s += (double)q[c] * (a->k16 ? vs_ops_bf16_to_f32(a->k16[ko + c]) : a->k[ko + c]);
        sc[j] = s * scale;
        mx = sc[j] > mx ? sc[j] : mx;
      }
      for (int j = 0; j < n; j++) {
        sc[j] = exp(sc[j] - mx);
        sum += sc[j];
      }
      float *o = a->o + (size_t)i * a->ld_o + (size_t)h * a->head_dim;
      for (int c = 0; c < a->head_dim; c++) {
        double acc = 0;
        for (int j = 0; j < n; j++) {
          size_t vo = (size_t)j * a->ld_v + (size_t)h * (a->hs_v ? a->hs_v : a->head_dim) + c;
          acc += sc[j] * (a->v16 ? vs_ops_bf16_to_f32(a->v16[vo]) : a->v[vo]);
        }
        o[c] = (float)(acc / sum);
      }
    }
  return true;
}

static bool ref_attention_batch(vs_ops *ops, const vs_attn_args *a, int n, vs_ops_ws ws,
                                GError **err) {
  for (int i = 0; i < n; i++)
    if (!ref_attention(ops, &a[i], ws, err)) return false;
  return true;
}

static void ref_destroy(vs_ops *ops) {
  g_free(ops);
}

vs_ops *vs_ops_ref_new(GError **err) {
  vs_ops *ops = g_new0(vs_ops, 1);
  ops->name = "ref";
  ops->precision = VS_OPS_FP32;
  ops->linear_prepare = ref_linear_prepare;
  ops->linear_free = ref_linear_free;
  ops->linear_ws = ref_linear_ws;
  ops->conv1d_prepare = ref_linear_prepare;
  ops->linear = ref_linear;
  ops->conv1d_ws = ref_conv1d_ws;
  ops->conv1d = ref_conv1d;
  ops->layer_norm = ref_layer_norm;
  ops->gelu = ref_gelu;
  ops->add = ref_add;
  ops->softmax = ref_softmax;
  ops->embedding = ref_embedding;
  ops->attention_ws = ref_attention_ws;
  ops->attention = ref_attention;
  ops->attention_batch = ref_attention_batch;
  ops->destroy = ref_destroy;
  return ops;
}
