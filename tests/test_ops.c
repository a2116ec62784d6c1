/* Every fast CPU op against the plain-C reference, at every precision, over odd sizes and the
 * real tiny/base shapes. Error is ||fast - ref|| / ||ref||; the tolerance per precision is what
 * the arithmetic allows: fp32 differs only by summation order (1e-5), bf16 rounds the matmul
 * inputs to 8 significant bits (1e-2), int8 rounds the linears' weights and activations to 8
 * (or 7) bits per row (3e-2; its convs are fp32: 1e-5; attention: attn_tol_of). */
#include "ops.h"
#include "vs_error.h"
#include "vs_test.h"

#include <math.h>
#include <string.h>

static double tol_of(vs_ops_precision p) {
  return p == VS_OPS_BF16 ? 1e-2 : 1e-5;
}

static double linear_tol_of(vs_ops_precision p) {
  return p == VS_OPS_INT8 ? 3e-2 : tol_of(p);
}

/* Attention of many queries (the blocked path, n_q >= 32) runs its matmuls at the backend's
 * precision: bf16 rounds Q, K, V and P to bf16; int8 rounds Q and K per row and V per channel
 * to 8 (or 7) bits and P to 8 bits with a dither. Random keys make every row nearly uniform
 * over up to 1500 keys, int8's worst case (each output is the mean of many random values, small
 * beside the rounding): 5e-2; peaked rows, as in real speech, do better (test_attention_int8).
 * Few queries are fp32 arithmetic at every precision but bf16 (bf16 pair products). */
static double attn_tol_of(vs_ops_precision p, int n_q) {
  if (p == VS_OPS_INT8) return n_q >= 32 ? 5e-2 : 1e-5;
  return tol_of(p);
}

static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static float *rand_buf(size_t n, float scale) {
  float *p = g_new(float, n);
  for (size_t i = 0; i < n; i++)
    p[i] = frand() * scale;
  return p;
}

static double rel_err(const float *a, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static vs_ops_ws ws_new(size_t bytes) {
  return (vs_ops_ws){bytes ? g_malloc(bytes) : NULL, bytes};
}

static void check_err_tol(const char *what, const vs_ops *fast, double e, double tol) {
  CHECK_MSG(e <= tol && isfinite(e), "%s [%s]: error %.3g > %.1g", what, fast->name, e, tol);
  printf("  %-44s %-9s err %.2e\n", what, fast->name, e);
}

static void check_err(const char *what, const vs_ops *fast, double e) {
  check_err_tol(what, fast, e, tol_of(fast->precision));
}

static void test_linear(vs_ops *ref, vs_ops *fast, int n_in, int n_out, const int *ms, int n_ms,
                        bool bias) {
  GError *err = NULL;
  float *w = rand_buf((size_t)n_out * n_in, 1.0f / sqrtf((float)n_in));
  float *b = bias ? rand_buf(n_out, 0.5f) : NULL;
  vs_ops_linear *lr = ref->linear_prepare(ref, w, b, n_out, n_in, "test", &err);
  VS_GERROR_CHECK(lr, err);
  vs_ops_linear *lf = fast->linear_prepare(fast, w, b, n_out, n_in, "test", &err);
  VS_GERROR_CHECK(lf, err);
  for (int mi = 0; mi < n_ms; mi++) {
    int m = ms[mi];
    float *x = rand_buf((size_t)m * n_in, 1.0f);
    float *y0 = rand_buf((size_t)m * n_out, 1.0f);
    float *yr = g_new(float, (size_t)m *n_out), *yf = g_new(float, (size_t)m *n_out);
    vs_ops_ws ws = ws_new(fast->linear_ws(fast, m, n_in, n_out));
    const unsigned flag_sets[] = {0, VS_LINEAR_GELU, VS_LINEAR_ACCUM};
    for (int fi = 0; fi < 3; fi++) {
      unsigned fl = flag_sets[fi];
      memcpy(yr, y0, (size_t)m * n_out * sizeof(float));
      memcpy(yf, y0, (size_t)m * n_out * sizeof(float));
      bool ok = ref->linear(ref, lr, x, m, yr, fl, (vs_ops_ws){0}, &err);
      VS_GERROR_CHECK(ok, err);
      ok = fast->linear(fast, lf, x, m, yf, fl, ws, &err);
      VS_GERROR_CHECK(ok, err);
      char what[96];
      snprintf(what, sizeof what, "linear %dx%d->%d%s%s%s", m, n_in, n_out, bias ? " +b" : "",
               fl & VS_LINEAR_GELU ? " gelu" : "", fl & VS_LINEAR_ACCUM ? " accum" : "");
      check_err_tol(what, fast, rel_err(yf, yr, (size_t)m * n_out), linear_tol_of(fast->precision));
    }
    g_free(ws.ptr);
    g_free(x);
    g_free(y0);
    g_free(yr);
    g_free(yf);
  }
  ref->linear_free(ref, lr);
  fast->linear_free(fast, lf);
  g_free(w);
  g_free(b);
}

/* channel_major: input [c_in][t_in] (the mel); else [t_in][c_in] (activations). */
static void test_conv(vs_ops *ref, vs_ops *fast, int c_in, int c_out, int t_in, int stride,
                      bool channel_major) {
  GError *err = NULL;
  float *w = rand_buf((size_t)c_out * c_in * 3, 1.0f / sqrtf(3.0f * c_in));
  float *b = rand_buf(c_out, 0.2f);
  float *x = rand_buf((size_t)c_in * t_in, 1.0f);
  int t_out = (t_in - 1) / stride + 1;
  long ld_t = channel_major ? 1 : c_in, ld_c = channel_major ? t_in : 1;
  vs_ops_linear *lr = ref->conv1d_prepare(ref, w, b, c_out, c_in * 3, "conv", &err);
  VS_GERROR_CHECK(lr, err);
  vs_ops_linear *lf = fast->conv1d_prepare(fast, w, b, c_out, c_in * 3, "conv", &err);
  VS_GERROR_CHECK(lf, err);
  float *yr = g_new(float, (size_t)t_out *c_out), *yf = g_new(float, (size_t)t_out *c_out);
  vs_ops_ws wr = ws_new(ref->conv1d_ws(ref, c_in, t_in, stride));
  vs_ops_ws wf = ws_new(fast->conv1d_ws(fast, c_in, t_in, stride));
  bool ok = ref->conv1d(ref, lr, x, c_in, t_in, ld_t, ld_c, stride, yr, VS_LINEAR_GELU, wr, &err);
  VS_GERROR_CHECK(ok, err);
  ok = fast->conv1d(fast, lf, x, c_in, t_in, ld_t, ld_c, stride, yf, VS_LINEAR_GELU, wf, &err);
  VS_GERROR_CHECK(ok, err);
  char what[96];
  snprintf(what, sizeof what, "conv1d %d->%d t=%d s=%d %s +gelu", c_in, c_out, t_in, stride,
           channel_major ? "CxT" : "TxC");
  check_err(what, fast, rel_err(yf, yr, (size_t)t_out * c_out));
  /* A small case checked against the definition written out directly, so the reference's
   * im2col itself is tested, not just agreed with. */
  if (t_in <= 16 && c_in <= 4) {
    for (int t = 0; t < t_out; t++)
      for (int o = 0; o < c_out; o++) {
        double s = b[o];
        for (int c = 0; c < c_in; c++)
          for (int j = 0; j < 3; j++) {
            int ti = t * stride + j - 1;
            if (ti >= 0 && ti < t_in)
              s += (double)w[(o * c_in + c) * 3 + j] * x[ti * ld_t + c * ld_c];
          }
        s = 0.5 * s * (1 + erf(s / sqrt(2.0)));
        CHECK_NEAR(yr[t * c_out + o], s, 1e-5);
      }
  }
  ref->linear_free(ref, lr);
  fast->linear_free(fast, lf);
  g_free(wr.ptr);
  g_free(wf.ptr);
  g_free(w);
  g_free(b);
  g_free(x);
  g_free(yr);
  g_free(yf);
}

static void test_rowops(vs_ops *ref, vs_ops *fast, int m, int d) {
  size_t n = (size_t)m * d;
  float *x = rand_buf(n, 3.0f), *g = rand_buf(d, 1.0f), *b = rand_buf(d, 1.0f);
  for (size_t i = 0; i < n; i++)
    x[i] += 0.7f; /* a non-zero mean to remove */
  float *yr = g_new(float, n), *yf = g_new(float, n);
  char what[96];

  ref->layer_norm(ref, x, m, d, g, b, yr);
  memcpy(yf, x, n * sizeof(float));
  fast->layer_norm(fast, yf, m, d, g, b, yf); /* in place, as the network may use it */
  snprintf(what, sizeof what, "layer_norm %dx%d", m, d);
  /* Row ops are fp32 at every precision. */
  double e = rel_err(yf, yr, n);
  CHECK_MSG(e <= 1e-5, "%s: %.3g", what, e);
  printf("  %-44s %-9s err %.2e\n", what, fast->name, e);

  memcpy(yr, x, n * sizeof(float));
  memcpy(yf, x, n * sizeof(float));
  ref->gelu(ref, yr, n);
  fast->gelu(fast, yf, n);
  e = rel_err(yf, yr, n);
  snprintf(what, sizeof what, "gelu %zu", n);
  CHECK_MSG(e <= 1e-6, "%s: %.3g", what, e);
  CHECK_NEAR(yr[0], 0.5 * x[0] * (1 + erf(x[0] / sqrt(2.0))), 1e-6);

  memcpy(yr, x, n * sizeof(float));
  memcpy(yf, x, n * sizeof(float));
  ref->add(ref, yr, g, d);
  fast->add(fast, yf, g, d);
  CHECK(rel_err(yf, yr, n) == 0.0);
  CHECK_NEAR(yr[1], x[1] + g[1], 0);

  memcpy(yr, x, n * sizeof(float));
  memcpy(yf, x, n * sizeof(float));
  yr[0] = yf[0] = -INFINITY; /* masked logits must come out as exact zeros */
  ref->softmax(ref, yr, m, d);
  fast->softmax(fast, yf, m, d);
  e = rel_err(yf, yr, n);
  snprintf(what, sizeof what, "softmax %dx%d", m, d);
  CHECK_MSG(e <= 1e-6, "%s: %.3g", what, e);
  CHECK(yf[0] == 0.0f && yr[0] == 0.0f);
  double s = 0;
  for (int j = 0; j < d; j++)
    s += yr[(size_t)(m - 1) * d + j];
  CHECK_NEAR(s, 1.0, 1e-6);

  int ids[5] = {0, m - 1, 3 % m, m / 2, 0};
  float *er = g_new(float, 5 * (size_t)d), *ef = g_new(float, 5 * (size_t)d);
  ref->embedding(ref, x, d, ids, 5, er);
  fast->embedding(fast, x, d, ids, 5, ef);
  CHECK(memcmp(er, ef, 5 * (size_t)d * sizeof(float)) == 0);
  CHECK(memcmp(er + d, x + (size_t)(m - 1) * d, d * sizeof(float)) == 0);
  g_free(er);
  g_free(ef);
  g_free(x);
  g_free(g);
  g_free(b);
  g_free(yr);
  g_free(yf);
}

/* Q, K, V interleaved in one [rows][3*width] buffer as the fused QKV linear leaves them, so the
 * leading dimensions differ from the head width. */
/* a through the reference into or and through the fast backend into of. */
static void attend_both(vs_ops *ref, vs_ops *fast, vs_attn_args a, float * or, float *of) {
  GError *err = NULL;
  a.o = or ;
  VS_GERROR_CHECK(ref->attention(ref, &a, (vs_ops_ws){0}, &err), err);
  vs_ops_ws ws = ws_new(fast->attention_ws(fast, a.n_q, a.n_kv, a.n_head, a.head_dim));
  a.o = of;
  VS_GERROR_CHECK(fast->attention(fast, &a, ws, &err), err);
  g_free(ws.ptr);
}

static void test_attention(vs_ops *ref, vs_ops *fast, int n_q, int n_kv, int n_head, int hd,
                           bool causal, int q_pos0, const char *label) {
  int wd = n_head * hd, ld = 3 * wd;
  int rows = n_q > n_kv ? n_q : n_kv;
  float *qkv = rand_buf((size_t)rows * ld, 2.0f);
  float * or = g_new0(float, (size_t)n_q *(wd + 5)), *of = g_new0(float, (size_t)n_q *(wd + 5));
  vs_attn_args a = {.q = qkv,
                    .k = qkv + wd,
                    .v = qkv + 2 * wd,
                    .ld_q = ld,
                    .ld_k = ld,
                    .ld_v = ld,
                    .ld_o = wd + 5,
                    .n_q = n_q,
                    .n_kv = n_kv,
                    .n_head = n_head,
                    .head_dim = hd,
                    .causal = causal,
                    .q_pos0 = q_pos0};
  attend_both(ref, fast, a, or, of);
  char what[96];
  snprintf(what, sizeof what, "attention %s q=%d kv=%d h=%d hd=%d%s", label, n_q, n_kv, n_head, hd,
           causal ? " causal" : "");
  check_err_tol(what, fast, rel_err(of, or, (size_t)n_q * (wd + 5)),
                attn_tol_of(fast->precision, n_q));
  /* With causal and q_pos0 = 0 the first query sees only key 0: its output is V[0] exactly
   * (up to the bf16 rounding of V). */
  if (causal && q_pos0 == 0) CHECK_NEAR(or [0], qkv[2 * wd], 1e-6);
  g_free(qkv);
  g_free(or);
  g_free(of);
}

/* K/V as the decoder's caches hold them: bf16, head-major ([head][n_kv][hd], ld = hd), several
 * sequences of different lengths and query counts in one attention_batch, against the reference
 * run one by one on the very same bf16 values (so only the arithmetic differs: fp32 tolerance).
 * With bf16 = false the caches are fp32 and head-major. */
static void test_attention_batch(vs_ops *ref, vs_ops *fast, bool bf16) {
  GError *err = NULL;
  enum { NS = 4, H = 6, HD = 64, MAXKV = 1500 };
  const int n_q[NS] = {1, 3, 40, 1}, n_kv[NS] = {1500, 77, 1500, 5};
  const bool causal[NS] = {false, true, false, true};
  int wd = H * HD;
  vs_attn_args a[NS];
  float *q[NS], *kvf[NS], * or [NS], *of[NS];
  unsigned short *kvh[NS];
  size_t ws_bytes = 0;
  for (int s = 0; s < NS; s++) {
    q[s] = rand_buf((size_t)n_q[s] * wd, 2.0f);
    kvf[s] = rand_buf((size_t)2 * n_kv[s] * wd, 2.0f);
    kvh[s] = g_new(unsigned short, (size_t)2 * n_kv[s] * wd);
    vs_ops_f32_to_bf16(kvf[s], kvh[s], (size_t)2 * n_kv[s] * wd);
    if (bf16) /* the reference sees exactly the bf16 values, widened */
      for (size_t i = 0; i < (size_t)2 * n_kv[s] * wd; i++)
        kvf[s][i] = vs_ops_bf16_to_f32(kvh[s][i]);
    or [s] = g_new0(float, (size_t)n_q[s] * wd);
    of[s] = g_new0(float, (size_t)n_q[s] * wd);
    size_t v_off = (size_t)n_kv[s] * wd;
    a[s] = (vs_attn_args){.q = q[s],
                          .ld_q = wd,
                          .ld_k = HD,
                          .ld_v = HD,
                          .hs_k = (long)n_kv[s] * HD,
                          .hs_v = (long)n_kv[s] * HD,
                          .ld_o = wd,
                          .n_q = n_q[s],
                          .n_kv = n_kv[s],
                          .n_head = H,
                          .head_dim = HD,
                          .causal = causal[s],
                          .q_pos0 = causal[s] ? n_kv[s] - n_q[s] : 0};
    size_t w = fast->attention_ws(fast, n_q[s], n_kv[s], H, HD);
    ws_bytes = w > ws_bytes ? w : ws_bytes;
    a[s].k = kvf[s];
    a[s].v = kvf[s] + v_off;
    a[s].o = or [s];
    bool ok = ref->attention(ref, &a[s], (vs_ops_ws){0}, &err);
    VS_GERROR_CHECK(ok, err);
    if (bf16) {
      a[s].k = a[s].v = NULL;
      a[s].k16 = kvh[s];
      a[s].v16 = kvh[s] + v_off;
    }
    a[s].o = of[s];
  }
  vs_ops_ws ws = ws_new(ws_bytes);
  bool ok = fast->attention_batch(fast, a, NS, ws, &err);
  VS_GERROR_CHECK(ok, err);
  for (int s = 0; s < NS; s++) {
    double e = rel_err(of[s], or [s], (size_t)n_q[s] * wd);
    char what[96];
    snprintf(what, sizeof what, "attention batch %s head-major #%d q=%d kv=%d",
             bf16 ? "bf16-kv" : "fp32-kv", s, n_q[s], n_kv[s]);
    /* Same K/V values on both sides: only fp32 arithmetic separates them, except that the bf16
     * backend rounds Q and P to bf16 where K/V are bf16 (bf16 pair dot products) or where the
     * queries are many (the blocked path's matmuls). */
    double tol = (fast->precision == VS_OPS_BF16 && (n_q[s] >= 32 || bf16)) ? tol_of(VS_OPS_BF16)
                 : fast->precision == VS_OPS_INT8 ? attn_tol_of(VS_OPS_INT8, n_q[s])
                                                  : 1e-5;
    CHECK_MSG(e <= tol && isfinite(e), "%s [%s]: error %.3g > %.1g", what, fast->name, e, tol);
    printf("  %-44s %-9s err %.2e\n", what, fast->name, e);
    g_free(q[s]);
    g_free(kvf[s]);
    g_free(kvh[s]);
    g_free(or [s]);
    g_free(of[s]);
  }
  g_free(ws.ptr);
}

/* The decoder hands the beams of one window to cross-attention as one attention of several
 * queries (infer/whisper.c), on the promise that grouping never changes a result: each query of
 * a group must come out bit for bit as it does alone, and agree with the reference. 13 queries
 * span more than one of the CPU backend's query groups. */
/* Each query of a alone (n_q = 1, one attention each, in one batch) gives bit for bit what
 * the grouped call wrote to grouped: how queries are grouped must never change a result. */
static bool same_one_by_one(vs_ops *fast, const vs_attn_args *a, vs_ops_ws ws, const float *grouped,
                            int width) {
  GError *err = NULL;
  int nq = a->n_q;
  float *o1 = g_new0(float, (size_t)nq *width);
  vs_attn_args *one = g_new(vs_attn_args, nq);
  for (int i = 0; i < nq; i++) {
    one[i] = *a;
    one[i].n_q = 1;
    one[i].q = a->q + (size_t)i * a->ld_q;
    one[i].o = o1 + (size_t)i * width;
    one[i].ld_o = width;
  }
  VS_GERROR_CHECK(fast->attention_batch(fast, one, nq, ws, &err), err);
  bool same = memcmp(grouped, o1, sizeof(float) * nq * width) == 0;
  g_free(one);
  g_free(o1);
  return same;
}

static void test_attention_grouped(vs_ops *ref, vs_ops *fast, bool bf16) {
  GError *err = NULL;
  enum { NQ = 13, H = 6, HD = 64, NKV = 1500 };
  int wd = H * HD;
  float *q = rand_buf((size_t)NQ * wd, 2.0f), *kvf = rand_buf((size_t)2 * NKV * wd, 2.0f);
  unsigned short *kvh = g_new(unsigned short, (size_t)2 * NKV * wd);
  vs_ops_f32_to_bf16(kvf, kvh, (size_t)2 * NKV * wd);
  if (bf16)
    for (size_t i = 0; i < (size_t)2 * NKV * wd; i++)
      kvf[i] = vs_ops_bf16_to_f32(kvh[i]);
  float *og = g_new0(float, (size_t)NQ *wd), * or = g_new0(float, (size_t)NQ *wd);
  vs_attn_args a = {.q = q,
                    .ld_q = wd,
                    .ld_k = HD,
                    .ld_v = HD,
                    .hs_k = (long)NKV * HD,
                    .hs_v = (long)NKV * HD,
                    .ld_o = wd,
                    .n_q = NQ,
                    .n_kv = NKV,
                    .n_head = H,
                    .head_dim = HD};
  a.k = kvf;
  a.v = kvf + (size_t)NKV * wd;
  a.o = or ;
  VS_GERROR_CHECK(ref->attention(ref, &a, (vs_ops_ws){0}, &err), err);
  if (bf16) {
    a.k = a.v = NULL;
    a.k16 = kvh;
    a.v16 = kvh + (size_t)NKV * wd;
  }
  vs_ops_ws ws = ws_new(fast->attention_ws(fast, NQ, NKV, H, HD));
  a.o = og;
  VS_GERROR_CHECK(fast->attention(fast, &a, ws, &err), err);
  CHECK_MSG(same_one_by_one(fast, &a, ws, og, wd),
            "attention grouped %s [%s]: a query's output depends on its group",
            bf16 ? "bf16-kv" : "fp32-kv", fast->name);
  double e = rel_err(og, or, (size_t)NQ * wd);
  char what[96];
  snprintf(what, sizeof what, "attention grouped %s q=%d kv=%d", bf16 ? "bf16-kv" : "fp32-kv", NQ,
           NKV);
  double tol = fast->precision == VS_OPS_BF16 && bf16 ? tol_of(VS_OPS_BF16) : 1e-5;
  CHECK_MSG(e <= tol && isfinite(e), "%s [%s]: error %.3g > %.1g", what, fast->name, e, tol);
  printf("  %-44s %-9s err %.2e\n", what, fast->name, e);
  g_free(ws.ptr);
  g_free(q);
  g_free(kvf);
  g_free(kvh);
  g_free(og);
  g_free(or);
}

/* The packed cross-attention K/V forms (where a backend has one: bf16 precision on AVX512-BF16,
 * int8 precision on AVX2; both hold bf16) against the reference on the same bf16-rounded keys: key
 * counts around the 16-key blocks and the 256-key chunks, query counts on both sides of the
 * many-query path, grouped vs one by one bit-identical; a backend without the form must refuse
 * packed K/V rather than read it as rows. */
static void test_attention_packed(vs_ops *ref, vs_ops *fast) {
  GError *err = NULL;
  enum { H = 6, HD = 64, WD = H * HD };
  size_t bytes = fast->kv_packed_bytes ? fast->kv_packed_bytes(fast, 1500, H, HD) : 0;
  if (bytes == 0) {
    unsigned char dummy[64] = {0};
    float q[WD] = {0}, o[WD];
    vs_attn_args a = {.q = q,
                      .o = o,
                      .kv_packed = dummy,
                      .ld_q = WD,
                      .ld_o = WD,
                      .n_q = 1,
                      .n_kv = 1,
                      .n_head = H,
                      .head_dim = HD};
    bool ok = fast->attention(fast, &a, (vs_ops_ws){0}, &err);
    CHECK_MSG(!ok && err, "attention packed [%s]: packed K/V accepted without a packed form",
              fast->name);
    g_clear_error(&err);
    printf("  %-44s %-9s refused (no packed form)\n", "attention packed", fast->name);
    return;
  }
  const int n_kvs[] = {1, 15, 16, 17, 255, 256, 257, 1500};
  const int n_qs[] = {1, 2, 3, 5, 6, 7, 13, 40}; /* 7 and 13: groups split in parts */
  for (size_t ki = 0; ki < G_N_ELEMENTS(n_kvs); ki++) {
    int nkv = n_kvs[ki];
    float *kv = rand_buf((size_t)nkv * 2 * WD, 2.0f);
    unsigned short *h = g_new(unsigned short, (size_t)nkv * 2 * WD);
    vs_ops_f32_to_bf16(kv, h, (size_t)nkv * 2 * WD);
    for (size_t i = 0; i < (size_t)nkv * 2 * WD; i++)
      kv[i] = vs_ops_bf16_to_f32(h[i]);
    g_free(h);
    size_t pb = fast->kv_packed_bytes(fast, nkv, H, HD);
    CHECK(pb >= (size_t)nkv * 2 * WD * sizeof(unsigned short));
    void *packed = g_malloc(pb);
    fast->kv_pack(fast, kv, 2 * WD, nkv, H, HD, packed);
    for (size_t qi = 0; qi < G_N_ELEMENTS(n_qs); qi++) {
      int nq = n_qs[qi];
      float *q = rand_buf((size_t)nq * WD, 2.0f);
      float * or = g_new0(float, (size_t)nq *WD), *op = g_new0(float, (size_t)nq *WD);
      vs_attn_args a = {.q = q,
                        .k = kv,
                        .v = kv + WD,
                        .o = or
                        ,
                        .ld_q = WD,
                        .ld_k = 2 * WD,
                        .ld_v = 2 * WD,
                        .ld_o = WD,
                        .n_q = nq,
                        .n_kv = nkv,
                        .n_head = H,
                        .head_dim = HD};
      VS_GERROR_CHECK(ref->attention(ref, &a, (vs_ops_ws){0}, &err), err);
      a.k = a.v = NULL;
      a.kv_packed = packed;
      a.o = op;
      vs_ops_ws ws = ws_new(fast->attention_ws(fast, nq, nkv, H, HD));
      VS_GERROR_CHECK(fast->attention(fast, &a, ws, &err), err);
      CHECK_MSG(same_one_by_one(fast, &a, ws, op, WD),
                "attention packed q=%d kv=%d [%s]: a query's output depends on its group", nq, nkv,
                fast->name);
      double e = rel_err(op, or, (size_t)nq * WD), tol = tol_of(VS_OPS_BF16);
      char what[96];
      snprintf(what, sizeof what, "attention packed q=%d kv=%d", nq, nkv);
      CHECK_MSG(e <= tol && isfinite(e), "%s [%s]: error %.3g > %.1g", what, fast->name, e, tol);
      printf("  %-44s %-9s err %.2e\n", what, fast->name, e);
      g_free(ws.ptr);
      g_free(q);
      g_free(or);
      g_free(op);
    }
    g_free(packed);
    g_free(kv);
  }
}

/* The int8 arithmetic itself, against the same quantisation written out in the test: activations
 * rounded to 8 bits per row, weights to w_max per row, the integer products summed exactly.
 * Near-full-scale operands of one sign are where a 16-bit pair sum would saturate; the backend
 * must match one weight width (8 bits, or 7 where that avoids the saturation) to float
 * rounding. */
static void emulate_int8(const float *x, const float *w, const float *b, int m, int n_in, int n_out,
                         int w_max, float *y) {
  for (int i = 0; i < m; i++) {
    const float *xr = x + (size_t)i * n_in;
    float ax = 0;
    for (int k = 0; k < n_in; k++)
      ax = fmaxf(ax, fabsf(xr[k]));
    float sx = ax != 0 ? 127.0f / ax : 1.0f;
    for (int o = 0; o < n_out; o++) {
      const float *wr = w + (size_t)o * n_in;
      float aw = 0;
      for (int k = 0; k < n_in; k++)
        aw = fmaxf(aw, fabsf(wr[k]));
      float sw = aw != 0 ? (float)w_max / aw : 1.0f;
      long long acc = 0;
      for (int k = 0; k < n_in; k++)
        acc += (long long)nearbyintf(xr[k] * sx) * (long long)nearbyintf(wr[k] * sw);
      y[(size_t)i * n_out + o] = (float)((double)acc / sx / sw + (b ? b[o] : 0.0));
    }
  }
}

static void test_int8_exact(vs_ops *fast) {
  GError *err = NULL;
  enum { M = 9, N_IN = 384, N_OUT = 40 };
  float *x = g_new(float, M *N_IN), *w = g_new(float, N_OUT *N_IN);
  float *b = rand_buf(N_OUT, 0.5f);
  for (int i = 0; i < M * N_IN; i++) /* rows 0-3 near full scale and positive: saturation bait */
    x[i] = i < 4 * N_IN ? 0.9f + 0.1f * fabsf(frand()) : frand();
  for (int i = 0; i < N_OUT * N_IN; i++)
    w[i] = i < 8 * N_IN ? 0.8f + 0.2f * fabsf(frand()) : frand();
  vs_ops_linear *l = fast->linear_prepare(fast, w, b, N_OUT, N_IN, "int8 exact", &err);
  VS_GERROR_CHECK(l, err);
  float *y = g_new(float, M *N_OUT), *e8 = g_new(float, M *N_OUT), *e7 = g_new(float, M *N_OUT);
  vs_ops_ws ws = ws_new(fast->linear_ws(fast, M, N_IN, 0));
  bool ok = fast->linear(fast, l, x, M, y, 0, ws, &err);
  VS_GERROR_CHECK(ok, err);
  emulate_int8(x, w, b, M, N_IN, N_OUT, 127, e8);
  emulate_int8(x, w, b, M, N_IN, N_OUT, 64, e7);
  double d8 = rel_err(y, e8, M * N_OUT), d7 = rel_err(y, e7, M * N_OUT);
  CHECK_MSG(d8 < 1e-6 || d7 < 1e-6, "int8 linear is neither 8- nor 7-bit exact: %.2g, %.2g", d8,
            d7);
  printf("  %-44s %-9s matches %d-bit weights (err %.1e)\n", "int8 linear, exact sums", fast->name,
         d8 < 1e-6 ? 8 : 7, d8 < 1e-6 ? d8 : d7);
  g_free(ws.ptr);
  fast->linear_free(fast, l);
  g_free(x);
  g_free(w);
  g_free(b);
  g_free(y);
  g_free(e8);
  g_free(e7);
}

/* int8 linears sum integers exactly, so a row's output cannot depend on how many rows share the
 * call, whichever kernel, row block or tile (and tail of either) the backend picks for that row
 * count: bit for bit, with every epilogue. */
static void test_int8_rows_exact(vs_ops *fast, int n_in, int n_out, bool bias) {
  GError *err = NULL;
  enum { M = 300 };
  const int parts[] = {1, 3, 4, 45, 247}; /* sums to M */
  float *x = rand_buf((size_t)M * n_in, 2.0f), *w = rand_buf((size_t)n_out * n_in, 0.1f);
  float *b = bias ? rand_buf(n_out, 0.5f) : NULL, *y0 = rand_buf((size_t)M * n_out, 1.0f);
  float *ya = g_new(float, (size_t)M *n_out), *yb = g_new(float, (size_t)M *n_out);
  vs_ops_linear *l = fast->linear_prepare(fast, w, b, n_out, n_in, "rows exact", &err);
  VS_GERROR_CHECK(l, err);
  const unsigned flags[] = {0, VS_LINEAR_ACCUM, VS_LINEAR_GELU};
  for (size_t f = 0; f < G_N_ELEMENTS(flags); f++) {
    vs_ops_ws ws = ws_new(fast->linear_ws(fast, M, n_in, n_out));
    memcpy(ya, y0, (size_t)M * n_out * sizeof(float));
    memcpy(yb, y0, (size_t)M * n_out * sizeof(float));
    VS_GERROR_CHECK(fast->linear(fast, l, x, M, ya, flags[f], ws, &err), err);
    int r = 0;
    for (size_t p = 0; p < G_N_ELEMENTS(parts); r += parts[p++])
      VS_GERROR_CHECK(fast->linear(fast, l, x + (size_t)r * n_in, parts[p], yb + (size_t)r * n_out,
                                   flags[f], ws, &err),
                      err);
    CHECK(r == M);
    char what[96];
    snprintf(what, sizeof what, "int8 rows exact %dx%d->%d%s flags=%u", M, n_in, n_out,
             bias ? " +b" : "", flags[f]);
    CHECK_MSG(memcmp(ya, yb, (size_t)M * n_out * sizeof(float)) == 0,
              "%s [%s]: rows differ with the row count of the call", what, fast->name);
    printf("  %-44s %-9s identical\n", what, fast->name);
    g_free(ws.ptr);
  }
  fast->linear_free(fast, l);
  g_free(x);
  g_free(w);
  g_free(b);
  g_free(y0);
  g_free(ya);
  g_free(yb);
}

/* int8 attention on rows that are not near-uniform. "peaked": larger logits, as in trained
 * heads (most weight on a few keys). "tail": one key at weight 1 and 1499 keys at 1/1000 each,
 * every one below half an 8-bit step, yet together 60 % of the row's weight: rounding each to
 * the nearest step would drop them all (error about 1.5); the dither must keep their sum. */
static void test_attention_int8(vs_ops *ref, vs_ops *fast) {
  enum { NQ = 64, NKV = 1500, H = 6, HD = 64, WD = H * HD };
  for (int tail = 0; tail <= 1; tail++) {
    float *q = rand_buf((size_t)NQ * WD, tail ? 0.0f : 8.0f);
    float *k = rand_buf((size_t)NKV * WD, tail ? 0.0f : 2.0f);
    float *v = rand_buf((size_t)NKV * WD, 2.0f);
    if (tail) /* logit of key 0: q.k / sqrt(64) = ln 1000 for every query and head; others 0 */
      for (int h = 0; h < H; h++) {
        for (int i = 0; i < NQ; i++)
          q[(size_t)i * WD + h * HD] = 8.0f;
        k[(size_t)h * HD] = logf(1000.0f);
      }
    float * or = g_new(float, (size_t)NQ *WD), *of = g_new(float, (size_t)NQ *WD);
    vs_attn_args a = {.q = q,
                      .k = k,
                      .v = v,
                      .ld_q = WD,
                      .ld_k = WD,
                      .ld_v = WD,
                      .ld_o = WD,
                      .n_q = NQ,
                      .n_kv = NKV,
                      .n_head = H,
                      .head_dim = HD};
    attend_both(ref, fast, a, or, of);
    check_err_tol(tail ? "attention int8 tail q=64 kv=1500" : "attention int8 peaked q=64 kv=1500",
                  fast, rel_err(of, or, (size_t)NQ * WD), tail ? 0.1 : 4e-2);
    g_free(q);
    g_free(k);
    g_free(v);
    g_free(or);
    g_free(of);
  }
}

static void run_all(vs_ops *ref, vs_ops *fast) {
  printf("backend %s\n", fast->name);
  const int ms_odd[] = {1, 2, 7, 33};
  test_linear(ref, fast, 17, 29, ms_odd, 4, true);
  test_linear(ref, fast, 65, 3, ms_odd, 4, false);
  /* tiny: QKV, out, FFN up/down over encoder (1500) and decoder row counts; then base's FFN */
  const int ms_tiny[] = {1, 5, 1500};
  test_linear(ref, fast, 384, 1152, ms_tiny, 3, true);
  test_linear(ref, fast, 384, 384, ms_tiny, 3, true);
  test_linear(ref, fast, 384, 1536, ms_tiny, 3, true);
  test_linear(ref, fast, 1536, 384, ms_tiny, 3, true);
  const int ms_base[] = {3, 1500};
  test_linear(ref, fast, 512, 2048, ms_base, 2, true);
  /* the tied output projection: logits for a few last positions */
  const int ms_logit[] = {1, 4};
  test_linear(ref, fast, 384, 51864, ms_logit, 2, false);

  test_conv(ref, fast, 3, 5, 11, 1, true);
  test_conv(ref, fast, 4, 6, 12, 2, false);
  test_conv(ref, fast, 80, 384, 3000, 1, true);
  test_conv(ref, fast, 384, 384, 3000, 2, false);

  test_rowops(ref, fast, 13, 37);
  test_rowops(ref, fast, 1500, 384);

  test_attention(ref, fast, 1500, 1500, 6, 64, false, 0, "tiny enc");
  test_attention(ref, fast, 1500, 1500, 8, 64, false, 0, "base enc");
  test_attention(ref, fast, 1, 100, 6, 64, true, 99, "step");
  test_attention(ref, fast, 3, 1500, 6, 64, false, 0, "cross");
  test_attention(ref, fast, 4, 4, 6, 64, true, 0, "prompt");
  test_attention(ref, fast, 45, 57, 6, 64, true, 12, "long prompt");
  test_attention(ref, fast, 37, 37, 3, 20, true, 0, "odd");
  test_attention(ref, fast, 300, 301, 5, 24, false, 0, "odd big");
  test_attention(ref, fast, 45, 1500, 6, 64, false, 0, "cross many");
  test_attention_batch(ref, fast, false);
  test_attention_batch(ref, fast, true);
  test_attention_batch(ref, ref, true);
  test_attention_grouped(ref, fast, false);
  test_attention_grouped(ref, fast, true);
  test_attention_packed(ref, fast);
  test_attention_grouped(ref, ref, false);
  test_attention_packed(ref, ref);
}

int main(void) {
  GError *err = NULL;
  vs_ops *ref = vs_ops_ref_new(&err);
  VS_GERROR_CHECK(ref, err);
  vs_ops *f32 = vs_ops_cpu_new(VS_OPS_FP32, &err);
  VS_GERROR_CHECK(f32, err);
  CHECK(f32->precision == VS_OPS_FP32);
  run_all(ref, f32);
  vs_ops_free(f32);

  vs_ops *i8 = vs_ops_cpu_new(VS_OPS_INT8, &err);
  VS_GERROR_CHECK(i8, err);
  CHECK(i8->precision == VS_OPS_INT8);
  test_int8_exact(i8);
  test_int8_rows_exact(i8, 384, 1152, true);
  test_int8_rows_exact(i8, 1536, 384, true);
  test_int8_rows_exact(i8, 384, 51864, false); /* 51864: the last panel is 8 wide */
  test_int8_rows_exact(i8, 17, 29, true);      /* shapes sg_gemm does not take */
  run_all(ref, i8);
  test_attention_int8(ref, i8);
  vs_ops_free(i8);

  if (vs_ops_cpu_auto_precision() == VS_OPS_BF16) {
    vs_ops *b16 = vs_ops_cpu_new(VS_OPS_BF16, &err);
    VS_GERROR_CHECK(b16, err);
    run_all(ref, b16);
    vs_ops_free(b16);
  } else {
    printf("no native bf16 on this CPU: bf16 backend not tested\n");
    vs_ops *b16 = vs_ops_cpu_new(VS_OPS_BF16, &err);
    CHECK(b16 == NULL && err && err->code == VS_ERROR_UNSUPPORTED);
    g_clear_error(&err);
  }

  /* bf16 rounding: nearest-even on ties, exact round trip of representable values */
  float xs[4] = {1.0f, 1.00390625f /* tie 1+2^-8: to even (1.0) */, 1.01171875f /* tie up */,
                 -3.5f};
  unsigned short h[4];
  vs_ops_f32_to_bf16(xs, h, 4);
  CHECK(vs_ops_bf16_to_f32(h[0]) == 1.0f);
  CHECK(vs_ops_bf16_to_f32(h[1]) == 1.0f);
  CHECK(vs_ops_bf16_to_f32(h[2]) == 1.015625f);
  CHECK(vs_ops_bf16_to_f32(h[3]) == -3.5f);
  vs_ops_free(ref);
  return vs_test_finish();
}
