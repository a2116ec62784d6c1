/* The fast CPU backend: oneDNN matmul primitives for every GEMM (linears, convs as im2col,
 * attention score and value products), OpenMP loops for the fused elementwise work.
 *
 * Weights are reordered once, at prepare time, into the blocked layout oneDNN's matmul picks for
 * them (and to bf16 in bf16 mode); primitives are then created per row count on first use and
 * cached, always against that same packed layout so that the weights are never repacked.
 * Everything created here is read-only after creation except the primitive caches, which are
 * guarded by a mutex, so one backend can serve many states on many threads.
 */
#include "log.h"
#include "ops.h"
#include "vecmath.h"
#include "vs_error.h"

#include <dnnl.h>
#include <dnnl_debug.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

typedef unsigned short bf16_t;

#define VS_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#define AVX2 __attribute__((target("avx2,fma")))

static bool have_avx512, have_avx512bf16; /* set once by vs_ops_cpu_new */

typedef struct {
  vs_ops base; /* first, so a vs_ops * is a cpu_ops * */
  dnnl_engine_t engine;
  dnnl_data_type_t dt;      /* linears' matmul input type: f32, bf16, or u8 (int8 precision) */
  dnnl_data_type_t attn_dt; /* attention's matmuls: bf16 in bf16, else f32 (as CTranslate2) */
  /* int8: largest |quantised weight|. 127 where oneDNN's u8 x s8 products accumulate exactly
   * (VNNI); 64 where they pass through vpmaddubsw's saturating 16-bit pair sums (AVX2, AVX-512
   * without VNNI), which 2 x 255 x 64 < 2^15 never reaches. Weights, not activations, lose the
   * bit: activations have outlier channels and need the range more (measured: 7-bit weights
   * gave a lower WER than 7-bit activations on the long benchmark corpus). Probed. */
  int w_max;
  GMutex lock;       /* guards prims */
  GHashTable *prims; /* "kind:shape" -> cpu_prim *, attention matmuls */
} cpu_ops;

typedef struct {
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim;
} cpu_prim;

struct vs_ops_linear {
  int n_out, n_in;
  char *what;
  dnnl_data_type_t dt;     /* input type of this linear's matmul (convs stay f32 in int8) */
  dnnl_memory_desc_t w_md; /* packed layout chosen by oneDNN, [n_in][n_out] logical */
  void *w;                 /* host, oneDNN's packed weights (f32, bf16 or s8), or NULL */
  float *b;                /* host [n_out] or NULL */
  float *w_inv;            /* int8: host [n_out], 1 / the weight row's scale */
  int32_t *comp;           /* int8: host [n_out], shift * sum of the row's int8 weights */
  int8_t *wp;              /* int8 on AVX2: host, [n_out/8][n_in/4][8][4] for sg_gemm, or NULL */
  GMutex lock;             /* guards prims */
  GHashTable *prims;       /* (m << 2 | flags) -> cpu_prim * */
};

#define DN(call, err, ret)                                                                         \
  do {                                                                                             \
    dnnl_status_t st_ = (call);                                                                    \
    if (st_ != dnnl_success)                                                                       \
      VS_FAIL(err, VS_ERROR_INTERNAL, ret, "oneDNN: %s: %s", #call, dnnl_status2str(st_));         \
  } while (0)

static size_t dt_size(dnnl_data_type_t dt) {
  return dt == dnnl_bf16 ? 2 : 4;
}

static void prim_free(gpointer p) {
  cpu_prim *cp = p;
  if (!cp) return;
  if (cp->prim) dnnl_primitive_destroy(cp->prim);
  if (cp->pd) dnnl_primitive_desc_destroy(cp->pd);
  g_free(cp);
}

static cpu_prim *prim_from_desc(cpu_ops *c, const_dnnl_op_desc_t desc,
                                const_dnnl_primitive_attr_t attr, const char *what, GError **err) {
  cpu_prim *cp = g_new0(cpu_prim, 1);
  dnnl_status_t st = dnnl_primitive_desc_create(&cp->pd, desc, attr, c->engine, NULL);
  if (st == dnnl_success) st = dnnl_primitive_create(&cp->prim, cp->pd);
  if (st != dnnl_success) {
    prim_free(cp);
    VS_FAIL(err, VS_ERROR_INTERNAL, NULL, "oneDNN: cannot create the %s primitive: %s", what,
            dnnl_status2str(st));
  }
  const char *impl = NULL;
  dnnl_primitive_desc_query(cp->pd, dnnl_query_impl_info_str, 0, &impl);
  vs_debug("cpu_ops: %s -> %s", what, impl ? impl : "?");
  return cp;
}

/* Runs one primitive with host pointers bound to its argument descriptors. */
static bool prim_run(cpu_ops *c, const cpu_prim *cp, int n, const int *args, void *const *ptrs,
                     GError **err) {
  dnnl_exec_arg_t ea[8];
  dnnl_memory_t mem[8] = {0};
  dnnl_stream_t s = NULL;
  bool ok = false;
  dnnl_status_t st = dnnl_success;
  for (int i = 0; i < n && st == dnnl_success; i++) {
    const dnnl_memory_desc_t *md =
        dnnl_primitive_desc_query_md(cp->pd, dnnl_query_exec_arg_md, args[i]);
    st = dnnl_memory_create(&mem[i], md, c->engine, ptrs[i]);
    ea[i] = (dnnl_exec_arg_t){args[i], mem[i]};
  }
  if (st == dnnl_success) st = dnnl_stream_create(&s, c->engine, dnnl_stream_default_flags);
  if (st == dnnl_success) st = dnnl_primitive_execute(cp->prim, s, n, ea);
  if (st == dnnl_success) st = dnnl_stream_wait(s);
  ok = st == dnnl_success;
  if (s) dnnl_stream_destroy(s);
  for (int i = 0; i < n; i++)
    if (mem[i]) dnnl_memory_destroy(mem[i]);
  if (!ok) VS_FAIL(err, VS_ERROR_INTERNAL, false, "oneDNN: execute: %s", dnnl_status2str(st));
  return true;
}

/* ---- elementwise helpers ---------------------------------------------------------------- */

__attribute__((target_clones("avx512f", "arch=x86-64-v3", "default"))) static void
to_bf16_rows(const float *x, bf16_t *y, size_t n) {
#pragma omp parallel for simd schedule(dynamic, 8192) if (n > 16384)
  for (size_t i = 0; i < n; i++) {
    unsigned int u;
    memcpy(&u, &x[i], 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    y[i] = (bf16_t)(u >> 16);
  }
}

static inline bf16_t bf16_1(float f) {
  unsigned int u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (bf16_t)(u >> 16);
}

/* Serial conversion of one row, for use inside parallel loops. */
__attribute__((target_clones("avx512f", "arch=x86-64-v3", "default"))) static void
row_to_bf16(const float *x, bf16_t *y, int n) {
#pragma omp simd
  for (int i = 0; i < n; i++)
    y[i] = bf16_1(x[i]);
}

/* ---- linear ------------------------------------------------------------------------------ */

/* Row count used to let oneDNN choose the packed weight layout: the encoder's (most of the
 * FLOPs); other row counts reuse the layout. */
enum { PACK_M = 1500 };

/* dt u8: u8 activations x s8 weights -> s32 sums, no bias (the int8 epilogue adds it). */
static bool matmul_desc(dnnl_matmul_desc_t *d, int m, int k, int n, dnnl_data_type_t dt,
                        const dnnl_memory_desc_t *w_md, bool bias, GError **err) {
  dnnl_memory_desc_t src, w, b, dst;
  bool q = dt == dnnl_u8;
  DN(dnnl_memory_desc_init_by_tag(&src, 2, (dnnl_dims_t){m, k}, dt, dnnl_ab), err, false);
  if (w_md)
    w = *w_md;
  else
    DN(dnnl_memory_desc_init_by_tag(&w, 2, (dnnl_dims_t){k, n}, q ? dnnl_s8 : dt,
                                    dnnl_format_tag_any),
       err, false);
  DN(dnnl_memory_desc_init_by_tag(&b, 2, (dnnl_dims_t){1, n}, dnnl_f32, dnnl_ab), err, false);
  DN(dnnl_memory_desc_init_by_tag(&dst, 2, (dnnl_dims_t){m, n}, q ? dnnl_s32 : dnnl_f32, dnnl_ab),
     err, false);
  bias = bias && !q;
  DN(dnnl_matmul_desc_init(d, &src, &w, bias ? &b : NULL, &dst), err, false);
  return true;
}

static cpu_prim *linear_prim(cpu_ops *c, vs_ops_linear *l, int m, unsigned flags, GError **err) {
  gpointer key = GSIZE_TO_POINTER(((gsize)m << 2) | (flags & 3u));
  g_mutex_lock(&l->lock);
  cpu_prim *cp = g_hash_table_lookup(l->prims, key);
  if (!cp) {
    dnnl_matmul_desc_t d;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    bool ok = matmul_desc(&d, m, l->n_in, l->n_out, l->dt, &l->w_md, l->b != NULL, err);
    if (ok && flags) {
      dnnl_primitive_attr_create(&attr);
      dnnl_post_ops_create(&po);
      /* The sum must come first: gelu(acc) + y would be wrong, but ACCUM and GELU are never
       * combined by the network, and the order is fixed here so it stays well defined. */
      if (flags & VS_LINEAR_ACCUM) dnnl_post_ops_append_sum(po, 1.0f);
      if (flags & VS_LINEAR_GELU)
        dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_gelu_erf, 0, 0);
      dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (ok) {
      char *what = g_strdup_printf("linear %s m=%d flags=%u", l->what, m, flags);
      cp = prim_from_desc(c, (const_dnnl_op_desc_t)&d, attr, what, err);
      g_free(what);
    }
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (cp) g_hash_table_insert(l->prims, key, cp);
  }
  g_mutex_unlock(&l->lock);
  return cp;
}

static void cpu_linear_free(vs_ops *ops, vs_ops_linear *l) {
  if (!l) return;
  if (l->prims) g_hash_table_destroy(l->prims);
  g_mutex_clear(&l->lock);
  g_free(l->w);
  g_free(l->b);
  g_free(l->w_inv);
  g_free(l->comp);
  g_aligned_free(l->wp);
  g_free(l->what);
  g_free(l);
}

/* Round to nearest even by the 1.5 * 2^23 trick, which vectorises where nearbyintf does not. */
static inline int rne(float x) {
  return (int)((x + 12582912.0f) - 12582912.0f);
}

/* One vector to int8 with its own scale qmax / amax (weights: rows; activations: rows; attention:
 * queries and keys), optionally shifted by 128 into u8. Returns 1 / scale; *sum (if given) gets
 * the sum of the int8 values, before the shift. */
/* The largest |v[e]|: the quantisers' per-row range (inlined into each clone of a caller). */
__attribute__((always_inline)) static inline float abs_max(const float *v, int n) {
  float amax = 0;
#pragma omp simd reduction(max : amax)
  for (int e = 0; e < n; e++) {
    float a = fabsf(v[e]);
    amax = a > amax ? a : amax;
  }
  return amax;
}

VS_CLONES static float quantize_vec(const float *v, int n, int qmax, bool shift, uint8_t *dst,
                                    int32_t *sum) {
  float amax = abs_max(v, n);
  float scale = amax != 0.0f ? qmax / amax : 1.0f;
  int32_t s = 0, sh = shift ? 128 : 0;
#pragma omp simd reduction(+ : s)
  for (int e = 0; e < n; e++) {
    int q = rne(v[e] * scale);
    s += q;
    dst[e] = (uint8_t)(q + sh);
  }
  if (sum) *sum = s;
  return 1.0f / scale;
}

/* int8 weights as CTranslate2 makes them: per output row, scale 127 / amax (w_max / amax),
 * round to nearest even. Returns the [n_out][n_in] int8 copy; w_inv and comp of l are filled. */
static int8_t *quantize_weight(cpu_ops *c, vs_ops_linear *l, const float *w) {
  int8_t *q = g_malloc((size_t)l->n_out * l->n_in);
  l->w_inv = g_new(float, l->n_out);
  l->comp = g_new(int32_t, l->n_out);
  /* rows are independent: in parallel, as start-up waits for all the model's linears */
#pragma omp parallel for schedule(static) if (l->n_out >= 256)
  for (int o = 0; o < l->n_out; o++) {
    const float *wr = w + (size_t)o * l->n_in;
    float amax = abs_max(wr, l->n_in);
    float scale = amax != 0.0f ? (float)c->w_max / amax : 1.0f;
    int32_t sum = 0;
    /* nearbyintf of the rounded product, not quantize_vec: there the compiler may fuse the
     * product into the rounding (FMA), which rounds a few ties differently */
    for (int k = 0; k < l->n_in; k++) {
      int8_t v = (int8_t)nearbyintf(wr[k] * scale);
      q[(size_t)o * l->n_in + k] = v;
      sum += v;
    }
    l->w_inv[o] = 1.0f / scale;
    /* activations arrive shifted to u8 by 128: remove that shift times the row sum */
    l->comp[o] = 128 * sum;
  }
  return q;
}

/* ---- int8 linears on AVX2 ------------------------------------------------------------------
 * oneDNN 2.6 runs u8 x s8 matmuls on AVX2 through its gemm, which repacks the weights on every
 * call: most of the time for a decoder step's few rows (the 51864 x 384 vocabulary projection
 * took 3.7 ms for 1 row and 9.4 ms for 40, about 170 GOP/s) and still some for the encoder's
 * 1500. sg_gemm packs them once, at prepare time, [n_out/8][n_in/4][8][4], so that one 32-byte
 * load holds 4 inputs of 8 outputs; vpmaddubsw then vpmaddwd sum them exactly while a pair of
 * products stays below 2^15, which w_max 64 guarantees (probe_int8_exact; VNNI machines keep
 * oneDNN). The sums are the integers oneDNN computes and sg_store is dequantize_rows'
 * arithmetic. Measured on a 2-core Zen 3: the vocabulary projection 0.8 ms for 1 row, 6-8 ms for
 * 40; the int8 encoder 6-10 % faster than with oneDNN (bench/README.md). */
enum {
  SG_MR = 4,    /* rows per tile: 4 x 2 accumulators, two weight vectors, the broadcast */
  SG_ROWS = 64, /* rows per pass over the weights: their u8 rows stay in L1/L2 */
};

/* int8 precision on an AVX2 + FMA CPU without AVX-512: where voxshard's own AVX2 int8 kernels
 * (sg_gemm, the AVX2 packed cross-attention) replace oneDNN's. */
static bool int8_on_avx2(const cpu_ops *c) {
  return c->dt == dnnl_u8 && !have_avx512 && vs_vec_use_exp8();
}

static bool sg_usable(const cpu_ops *c, int n_out, int n_in) {
  return int8_on_avx2(c) && c->w_max <= 64 && n_out % 8 == 0 && n_in % 4 == 0;
}

static int8_t *sg_pack(const int8_t *q, int n_out, int n_in) {
  int8_t *p = g_aligned_alloc((size_t)n_out * n_in, 1, 64);
  size_t kq = (size_t)n_in / 4;
#pragma omp parallel for schedule(static) if (n_out >= 256)
  for (int ob = 0; ob < n_out / 8; ob++) /* written in order, one block of 8 rows at a time */
    for (size_t k4 = 0; k4 < kq; k4++)
      for (int o = 0; o < 8; o++)
        memcpy(p + (((size_t)ob * kq + k4) * 8 + o) * 4, q + (size_t)(ob * 8 + o) * n_in + k4 * 4,
               4);
  return p;
}

static vs_ops_linear *prepare_as(cpu_ops *c, dnnl_data_type_t dt, const float *w, const float *b,
                                 int n_out, int n_in, const char *what, GError **err) {
  vs_ops *ops = &c->base;
  if (!w || n_out <= 0 || n_in <= 0)
    VS_FAIL(err, VS_ERROR_INTERNAL, NULL, "%s: bad linear weight %dx%d", what, n_out, n_in);
  vs_ops_linear *l = g_new0(vs_ops_linear, 1);
  l->n_out = n_out;
  l->n_in = n_in;
  l->dt = dt;
  l->what = g_strdup(what);
  g_mutex_init(&l->lock);
  l->prims = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, prim_free);
  if (b) l->b = g_memdup2(b, (gsize)n_out * sizeof(float));

  /* Let oneDNN pick the layout for a representative shape, then reorder the model's
   * [n_out][n_in] (= [n_in][n_out] with strides {1, n_in}) into it once. */
  dnnl_matmul_desc_t d;
  cpu_prim *probe = NULL, *reorder = NULL;
  dnnl_memory_desc_t user_md;
  const void *user_w = w;
  int8_t *wq = NULL;
  if (dt == dnnl_u8) user_w = wq = quantize_weight(c, l, w);
  if (wq && sg_usable(c, n_out, n_in)) { /* sg_gemm's layout only: oneDNN never sees it */
    l->wp = sg_pack(wq, n_out, n_in);
    g_free(wq);
    return l;
  }
  bool ok = matmul_desc(&d, PACK_M, n_in, n_out, dt, NULL, b != NULL, err);
  if (ok) ok = (probe = prim_from_desc(c, (const_dnnl_op_desc_t)&d, NULL, what, err)) != NULL;
  if (ok) {
    l->w_md = *dnnl_primitive_desc_query_md(probe->pd, dnnl_query_weights_md, 0);
    l->w = g_malloc(dnnl_memory_desc_get_size(&l->w_md));
    ok = dnnl_memory_desc_init_by_strides(&user_md, 2, (dnnl_dims_t){n_in, n_out},
                                          wq ? dnnl_s8 : dnnl_f32,
                                          (dnnl_dims_t){1, n_in}) == dnnl_success;
    if (!ok) g_set_error(err, VS_ERROR, VS_ERROR_INTERNAL, "%s: weight descriptor", what);
  }
  if (ok) {
    reorder = g_new0(cpu_prim, 1);
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&reorder->pd, &user_md, c->engine,
                                                          &l->w_md, c->engine, NULL);
    if (st == dnnl_success) st = dnnl_primitive_create(&reorder->prim, reorder->pd);
    if (st != dnnl_success) {
      ok = false;
      g_set_error(err, VS_ERROR, VS_ERROR_INTERNAL, "%s: oneDNN reorder: %s", what,
                  dnnl_status2str(st));
    }
  }
  if (ok)
    ok = prim_run(c, reorder, 2, (int[]){DNNL_ARG_FROM, DNNL_ARG_TO},
                  (void *[]){(void *)user_w, l->w}, err);
  g_free(wq);
  prim_free(probe);
  prim_free(reorder);
  if (!ok) {
    cpu_linear_free(ops, l);
    return NULL;
  }
  return l;
}

static vs_ops_linear *cpu_linear_prepare(vs_ops *ops, const float *w, const float *b, int n_out,
                                         int n_in, const char *what, GError **err) {
  cpu_ops *c = (cpu_ops *)ops;
  return prepare_as(c, c->dt, w, b, n_out, n_in, what, err);
}

/* Convs keep fp32 in int8 precision, as in CTranslate2 (its oneDNN build does not quantise
 * them): the stem sees the log-mel directly and is a small share of the work. */
static dnnl_data_type_t conv_dt(const cpu_ops *c) {
  return c->dt == dnnl_u8 ? dnnl_f32 : c->dt;
}

static vs_ops_linear *cpu_conv1d_prepare(vs_ops *ops, const float *w, const float *b, int n_out,
                                         int n_in, const char *what, GError **err) {
  cpu_ops *c = (cpu_ops *)ops;
  return prepare_as(c, conv_dt(c), w, b, n_out, n_in, what, err);
}

static size_t align64(size_t n) {
  return (n + 63) & ~(size_t)63;
}

static size_t ws_for(dnnl_data_type_t dt, int m, int n_in, int n_out_accum) {
  if (dt == dnnl_bf16) return (size_t)m * n_in * sizeof(bf16_t);
  if (dt == dnnl_u8) /* u8 rows, their scales, s32 sums where y holds the residual */
    return align64((size_t)m * n_in) + align64((size_t)m * sizeof(float)) +
           (size_t)m * n_out_accum * sizeof(int32_t);
  return 0;
}

static size_t cpu_linear_ws(const vs_ops *ops, int m, int n_in, int n_out_accum) {
  return ws_for(((const cpu_ops *)ops)->dt, m, n_in, n_out_accum);
}

/* Per row: scale = 127 / amax, round to nearest even, shifted by 128 into u8 (CTranslate2's rule
 * for oneDNN); inv[i] = 1 / scale. */
static void quantize_rows(const float *x, int m, int n, uint8_t *q, float *inv) {
#pragma omp parallel for schedule(dynamic, 8) if ((size_t)m * n > 65536)
  for (int i = 0; i < m; i++)
    inv[i] = quantize_vec(x + (size_t)i * n, n, 127, true, q + (size_t)i * n, NULL);
}

typedef int32_t __attribute__((may_alias)) s32_alias;
typedef float __attribute__((may_alias)) f32_alias;

/* y = (sums - comp) / (activation scale x weight scale) + bias, then GELU or += into y. sums
 * may be y itself (s32 written where the floats go). */
VS_CLONES static void dequantize_rows(const s32_alias *sums, const vs_ops_linear *l, int m,
                                      const float *inv, unsigned flags, f32_alias *y) {
  int n = l->n_out;
  /* locals, not l->..., inside the loops: through l the compiler cannot prove that the stores
   * to y leave the pointers alone, and leaves the loops scalar */
  const int32_t *comp = l->comp;
  const float *w_inv = l->w_inv, *b = l->b;
  bool accum = flags & VS_LINEAR_ACCUM;
#pragma omp parallel for schedule(dynamic, 8) if ((size_t)m * n > 16384)
  for (int i = 0; i < m; i++) {
    const s32_alias *sr = sums + (size_t)i * n;
    f32_alias *yr = y + (size_t)i * n;
    float a = inv[i];
    if (accum && b) {
#pragma omp simd
      for (int o = 0; o < n; o++)
        yr[o] += (float)(sr[o] - comp[o]) * a * w_inv[o] + b[o];
    } else if (accum) {
#pragma omp simd
      for (int o = 0; o < n; o++)
        yr[o] += (float)(sr[o] - comp[o]) * a * w_inv[o];
    } else if (b) {
#pragma omp simd
      for (int o = 0; o < n; o++)
        yr[o] = (float)(sr[o] - comp[o]) * a * w_inv[o] + b[o];
    } else {
#pragma omp simd
      for (int o = 0; o < n; o++)
        yr[o] = (float)(sr[o] - comp[o]) * a * w_inv[o];
    }
  }
}

/* The backend-wide primitive cached under key (which this takes), made from desc on first use;
 * building a descriptor is cheap, so callers always build it. */
static cpu_prim *prim_cached(cpu_ops *c, char *key, const_dnnl_op_desc_t desc, GError **err) {
  g_mutex_lock(&c->lock);
  cpu_prim *cp = g_hash_table_lookup(c->prims, key);
  if (!cp && (cp = prim_from_desc(c, desc, NULL, key, err)) != NULL) {
    g_hash_table_insert(c->prims, key, cp);
    key = NULL;
  }
  g_mutex_unlock(&c->lock);
  g_free(key);
  return cp;
}

static bool gelu_inplace(cpu_ops *c, float *y, size_t n, GError **err) {
  dnnl_memory_desc_t md;
  dnnl_eltwise_desc_t d;
  DN(dnnl_memory_desc_init_by_tag(&md, 1, (dnnl_dims_t){(dnnl_dim_t)n}, dnnl_f32, dnnl_a), err,
     false);
  DN(dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, dnnl_eltwise_gelu_erf, &md, 0, 0),
     err, false);
  cpu_prim *cp = prim_cached(c, g_strdup_printf("gelu:%zu", n), (const_dnnl_op_desc_t)&d, err);
  return cp && prim_run(c, cp, 2, (int[]){DNNL_ARG_SRC, DNNL_ARG_DST}, (void *[]){y, y}, err);
}

/* Sums of mr rows of x (u8, row stride ldx) with nb blocks of 8 outputs (w: the first block's
 * packed weights; kq = n_in / 4); constants mr and nb unroll the loops. */
AVX2 __attribute__((always_inline)) static inline void sg_tile(const uint8_t *x, long ldx,
                                                               const int mr, const int nb,
                                                               const int8_t *w, long kq,
                                                               __m256i acc[SG_MR][2]) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nb; j++)
      acc[r][j] = _mm256_setzero_si256();
  for (long k = 0; k < kq; k++) {
    __m256i wv[2];
    for (int j = 0; j < nb; j++)
      wv[j] = _mm256_load_si256((const __m256i *)(w + ((size_t)j * kq + k) * 32));
    for (int r = 0; r < mr; r++) {
      int32_t x4;
      memcpy(&x4, x + r * ldx + 4 * k, 4);
      __m256i xb = _mm256_set1_epi32(x4);
      for (int j = 0; j < nb; j++)
        acc[r][j] =
            _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, wv[j]), ones));
    }
  }
}

/* Eight outputs of one row dequantised as dequantize_rows does it. */
AVX2 static inline void sg_store(__m256i sums, const int32_t *comp, const float *w_inv,
                                 const float *b, float a, bool accum, float *y) {
  __m256 t = _mm256_mul_ps(
      _mm256_cvtepi32_ps(_mm256_sub_epi32(sums, _mm256_loadu_si256((const __m256i *)comp))),
      _mm256_set1_ps(a));
  __m256 wi = _mm256_loadu_ps(w_inv);
  if (b) {
    t = _mm256_fmadd_ps(t, wi, _mm256_loadu_ps(b));
    if (accum) t = _mm256_add_ps(_mm256_loadu_ps(y), t);
  } else if (accum) {
    t = _mm256_fmadd_ps(t, wi, _mm256_loadu_ps(y));
  } else {
    t = _mm256_mul_ps(t, wi);
  }
  _mm256_storeu_ps(y, t);
}

/* y (+)= dequantised (q [m][n_in] u8, row scales inv) x packed weights of l. */
AVX2 static void sg_gemm(const uint8_t *q, int m, const vs_ops_linear *l, const float *inv,
                         unsigned flags, float *y) {
  int n = l->n_out, nblk = n / 8, npanel = (nblk + 1) / 2;
  long kq = l->n_in / 4;
  bool accum = flags & VS_LINEAR_ACCUM;
  const int32_t *comp = l->comp;
  const float *w_inv = l->w_inv, *bias = l->b;
#pragma omp parallel for collapse(2) schedule(dynamic) if ((long)m * n * kq > 32768)
  for (int r0 = 0; r0 < m; r0 += SG_ROWS) {
    for (int p = 0; p < npanel; p++) {
      int r1 = m - r0 < SG_ROWS ? m : r0 + SG_ROWS;
      int b0 = 2 * p, nb = nblk - b0 >= 2 ? 2 : 1;
      const int8_t *w = l->wp + (size_t)b0 * kq * 32;
      for (int r = r0; r < r1; r += SG_MR) {
        int mr = r1 - r < SG_MR ? r1 - r : SG_MR;
        const uint8_t *x = q + (size_t)r * l->n_in;
        __m256i acc[SG_MR][2];
        switch (mr * 2 + nb - 1) { /* mr in 1..4, nb in 1..2 */
        case 1 * 2 + 0:
          sg_tile(x, l->n_in, 1, 1, w, kq, acc);
          break;
        case 1 * 2 + 1:
          sg_tile(x, l->n_in, 1, 2, w, kq, acc);
          break;
        case 2 * 2 + 0:
          sg_tile(x, l->n_in, 2, 1, w, kq, acc);
          break;
        case 2 * 2 + 1:
          sg_tile(x, l->n_in, 2, 2, w, kq, acc);
          break;
        case 3 * 2 + 0:
          sg_tile(x, l->n_in, 3, 1, w, kq, acc);
          break;
        case 3 * 2 + 1:
          sg_tile(x, l->n_in, 3, 2, w, kq, acc);
          break;
        case 4 * 2 + 0:
          sg_tile(x, l->n_in, 4, 1, w, kq, acc);
          break;
        default:
          sg_tile(x, l->n_in, 4, 2, w, kq, acc);
          break;
        }
        for (int i = 0; i < mr; i++)
          for (int j = 0; j < nb; j++) {
            int o = (b0 + j) * 8;
            sg_store(acc[i][j], comp + o, w_inv + o, bias ? bias + o : NULL, inv[r + i], accum,
                     y + (size_t)(r + i) * n + o);
          }
      }
    }
  }
}

static bool linear_int8(cpu_ops *c, vs_ops_linear *l, const float *x, int m, float *y,
                        unsigned flags, vs_ops_ws ws, GError **err) {
  bool accum = flags & VS_LINEAR_ACCUM;
  size_t need = ws_for(dnnl_u8, m, l->n_in, accum ? l->n_out : 0);
  if (ws.bytes < need)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "linear %s: workspace %zu < %zu bytes", l->what,
            ws.bytes, need);
  uint8_t *q = ws.ptr;
  float *inv = (float *)((char *)ws.ptr + align64((size_t)m * l->n_in));
  void *sums = accum ? (char *)inv + align64((size_t)m * sizeof(float)) : (void *)y;
  quantize_rows(x, m, l->n_in, q, inv);
  if (l->wp) {
    sg_gemm(q, m, l, inv, flags, y);
    return !(flags & VS_LINEAR_GELU) || gelu_inplace(c, y, (size_t)m * l->n_out, err);
  }
  cpu_prim *cp = linear_prim(c, l, m, 0, err);
  if (!cp) return false;
  if (!prim_run(c, cp, 3, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                (void *[]){q, l->w, sums}, err))
    return false;
  dequantize_rows(sums, l, m, inv, flags, y);
  return !(flags & VS_LINEAR_GELU) || gelu_inplace(c, y, (size_t)m * l->n_out, err);
}

static bool cpu_linear(vs_ops *ops, const vs_ops_linear *lc, const float *x, int m, float *y,
                       unsigned flags, vs_ops_ws ws, GError **err) {
  cpu_ops *c = (cpu_ops *)ops;
  vs_ops_linear *l = (vs_ops_linear *)lc; /* only its primitive cache changes */
  if (m <= 0) return true;
  if (l->dt == dnnl_u8) return linear_int8(c, l, x, m, y, flags, ws, err);
  const void *src = x;
  if (l->dt == dnnl_bf16) {
    size_t need = ws_for(l->dt, m, l->n_in, 0);
    if (ws.bytes < need)
      VS_FAIL(err, VS_ERROR_INTERNAL, false, "linear %s: workspace %zu < %zu bytes", l->what,
              ws.bytes, need);
    to_bf16_rows(x, ws.ptr, (size_t)m * l->n_in);
    src = ws.ptr;
  }
  cpu_prim *cp = linear_prim(c, l, m, flags, err);
  if (!cp) return false;
  if (l->b)
    return prim_run(c, cp, 4, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST},
                    (void *[]){(void *)src, l->w, l->b, y}, err);
  return prim_run(c, cp, 3, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                  (void *[]){(void *)src, l->w, y}, err);
}

/* ---- conv1d as im2col + linear ---------------------------------------------------------- */

static size_t cpu_conv1d_ws(const vs_ops *ops, int c_in, int t_in, int stride) {
  int t_out = (t_in - 1) / stride + 1;
  size_t col = (size_t)t_out * c_in * 3 * sizeof(float);
  return align64(col) + ws_for(conv_dt((const cpu_ops *)ops), t_out, c_in * 3, 0);
}

static bool cpu_conv1d(vs_ops *ops, const vs_ops_linear *w, const float *x, int c_in, int t_in,
                       long ld_t, long ld_c, int stride, float *y, unsigned flags, vs_ops_ws ws,
                       GError **err) {
  int t_out = (t_in - 1) / stride + 1;
  size_t need = cpu_conv1d_ws(ops, c_in, t_in, stride);
  if (ws.bytes < need)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "conv1d: workspace %zu < %zu bytes", ws.bytes, need);
  if (w->n_in != c_in * 3)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "conv1d: weight has %d inputs, want %d", w->n_in,
            c_in * 3);
  float *col = ws.ptr;
  size_t col_bytes = ((size_t)t_out * c_in * 3 * sizeof(float) + 63) & ~(size_t)63;
#pragma omp parallel for schedule(dynamic, 32)
  for (int t = 0; t < t_out; t++) {
    float *row = col + (size_t)t * c_in * 3;
    for (int c = 0; c < c_in; c++)
      for (int j = 0; j < 3; j++) {
        long ti = (long)t * stride + j - 1;
        row[c * 3 + j] = (ti < 0 || ti >= t_in) ? 0.0f : x[ti * ld_t + c * ld_c];
      }
  }
  vs_ops_ws rest = {(char *)ws.ptr + col_bytes, ws.bytes - col_bytes};
  return cpu_linear(ops, w, col, t_out, y, flags, rest, err);
}

/* ---- row ops ----------------------------------------------------------------------------- */

VS_CLONES static void ln_row(const float *xr, int d, const float *g, const float *b, float *yr) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int k = 0; k < d; k++)
    s += xr[k];
  float mean = s / d, v = 0;
#pragma omp simd reduction(+ : v)
  for (int k = 0; k < d; k++)
    v += (xr[k] - mean) * (xr[k] - mean);
  float inv = 1.0f / sqrtf(v / d + 1e-5f);
#pragma omp simd
  for (int k = 0; k < d; k++)
    yr[k] = (xr[k] - mean) * inv * g[k] + b[k];
}

static void cpu_layer_norm(vs_ops *ops, const float *x, int m, int d, const float *g,
                           const float *b, float *y) {
#pragma omp parallel for schedule(dynamic, 16) if ((size_t)m * d > 65536)
  for (int i = 0; i < m; i++)
    ln_row(x + (size_t)i * d, d, g, b, y + (size_t)i * d);
}

static void cpu_gelu(vs_ops *ops, float *x, size_t n) {
#pragma omp parallel for schedule(dynamic, 4096) if (n > 16384)
  for (size_t i = 0; i < n; i++)
    x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

static void cpu_add(vs_ops *ops, float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(dynamic, 8192) if (n > 65536)
  for (size_t i = 0; i < n; i++)
    y[i] += x[i];
}

/* exp((x[j] - mx) * scale) in place over x[0..lim), returning the sum: vs_vec_exp8 where
 * the compiler would leave the loop scalar (AVX2), else the loop below. */
__attribute__((target("avx2,fma"))) static float exp_sum_avx2(float *x, int lim, float mx,
                                                              float scale) {
  __m256 vmx = _mm256_set1_ps(mx), vsc = _mm256_set1_ps(scale), acc = _mm256_setzero_ps();
  int j = 0;
  for (; j + 8 <= lim; j += 8) {
    __m256 e = vs_vec_exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmx), vsc));
    _mm256_storeu_ps(x + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  float s = vs_vec_hsum8(acc);
  for (; j < lim; j++) {
    x[j] = vs_vec_expf((x[j] - mx) * scale);
    s += x[j];
  }
  return s;
}

/* exp((x[j] - max) * scale) in place over x[0..lim), returning the sum. The simd reductions
 * let the compiler reassociate the max and the sum (vectorising them); the clones give it
 * 512-bit registers where the CPU has them without building for one CPU. */
VS_CLONES static float softmax_exp(float *x, int lim, float scale) {
  float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int j = 0; j < lim; j++)
    mx = x[j] > mx ? x[j] : mx;
  if (vs_vec_use_exp8()) return exp_sum_avx2(x, lim, mx, scale);
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < lim; j++) {
    x[j] = vs_vec_expf((x[j] - mx) * scale);
    s += x[j];
  }
  return s;
}

/* Softmax of x[0..n) scaled by `scale`, entries at or after `lim` masked to zero. */
VS_CLONES static void softmax_row(float *x, int n, int lim, float scale) {
  float inv = 1.0f / softmax_exp(x, lim, scale);
#pragma omp simd
  for (int j = 0; j < lim; j++)
    x[j] *= inv;
  for (int j = lim; j < n; j++)
    x[j] = 0.0f;
}

static void cpu_softmax(vs_ops *ops, float *x, int m, int n) {
#pragma omp parallel for schedule(dynamic, 4) if (m > 4)
  for (int i = 0; i < m; i++)
    softmax_row(x + (size_t)i * n, n, n, 1.0f);
}

static void cpu_embedding(vs_ops *ops, const float *table, int d, const int *ids, int m, float *y) {
  for (int i = 0; i < m; i++)
    memcpy(y + (size_t)i * d, table + (size_t)ids[i] * d, (size_t)d * sizeof(float));
}

/* ---- attention --------------------------------------------------------------------------- */

/* Few queries (decoder steps): one pass per (head, query) over the keys in chunks with a
 * running max (online softmax), so nothing bigger than a chunk of scores exists; the work is
 * bound by reading the K/V cache, which a GEMM would not speed up. fp32 arithmetic; K/V fp32
 * or bf16 (widened on load). */
enum { DIRECT_MAX_Q = 32, KV_CHUNK = 256 };

static inline float kv_at(const float *x, const bf16_t *x16, long i) {
  if (!x16) return x[i];
  unsigned int u = (unsigned int)x16[i] << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Any head width, any ISA: the fallback. */
__attribute__((target_clones("avx512f", "arch=x86-64-v3", "default"))) static void
attend_row(const float *q, const float *k, const bf16_t *k16, long ld_k, const float *v,
           const bf16_t *v16, long ld_v, int n, int hd, float scale, float *o) {
  float acc[hd], sc[KV_CHUNK];
  for (int c = 0; c < hd; c++)
    acc[c] = 0;
  float m = -INFINITY, l = 0;
  for (int j0 = 0; j0 < n; j0 += KV_CHUNK) {
    int nb = n - j0 < KV_CHUNK ? n - j0 : KV_CHUNK;
    float bm = -INFINITY;
    for (int j = 0; j < nb; j++) {
      long r = (long)(j0 + j) * ld_k;
      float s = 0;
      if (!k16) {
        float t[16] = {0};
        int c = 0;
        for (; c + 16 <= hd; c += 16)
          for (int u = 0; u < 16; u++)
            t[u] += q[c + u] * k[r + c + u];
        for (; c < hd; c++)
          s += q[c] * k[r + c];
        for (int u = 0; u < 16; u++)
          s += t[u];
      } else
        for (int c = 0; c < hd; c++)
          s += q[c] * kv_at(k, k16, r + c);
      sc[j] = s * scale;
      bm = fmaxf(bm, sc[j]);
    }
    float nm = fmaxf(m, bm);
    float corr = m == -INFINITY ? 0.0f : vs_vec_expf(m - nm);
    l *= corr;
    for (int c = 0; c < hd; c++)
      acc[c] *= corr;
    for (int j = 0; j < nb; j++) {
      float p = vs_vec_expf(sc[j] - nm);
      l += p;
      long r = (long)(j0 + j) * ld_v;
      if (!v16)
        for (int c = 0; c < hd; c++)
          acc[c] += p * v[r + c];
      else
        for (int c = 0; c < hd; c++)
          acc[c] += p * kv_at(v, v16, r + c);
    }
    m = nm;
  }
  float inv = 1.0f / l;
  for (int c = 0; c < hd; c++)
    o[c] = acc[c] * inv;
}

/* Head width 64 (every Whisper size) with AVX-512: q lives in four registers, scores of 16 keys
 * are reduced together (one transpose-add tree instead of 16 horizontal sums), and the output
 * accumulates in registers (two sets, so that consecutive keys do not wait on each other). */
#define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __m512 ld16(const float *x, const bf16_t *x16, long i) {
  if (!x16) return _mm512_loadu_ps(x + i);
  __m256i h = _mm256_loadu_si256((const __m256i *)(x16 + i));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* out[u] = sum of the 16 lanes of v[u]. */
AVX512 static inline __m512 hsum16x16(const __m512 *v) {
  __m512 w[8], x[4], y[2];
  for (int i = 0; i < 8; i++)
    w[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; i++) {
    __m512d a = _mm512_castps_pd(w[2 * i]), b = _mm512_castps_pd(w[2 * i + 1]);
    x[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  for (int i = 0; i < 2; i++)
    y[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(y[0], y[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(y[0], y[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Rows of one head are 256 (fp32) or 128 (bf16) bytes every ld elements: a stride the hardware
 * prefetchers follow poorly across pages, so the kernel asks for rows PF_AHEAD ahead itself. */
enum { PF_AHEAD = 12 };

AVX512 static inline void pf_row(const float *x, const bf16_t *x16, long i) {
  const char *p = x16 ? (const char *)(x16 + i) : (const char *)(x + i);
  _mm_prefetch(p, _MM_HINT_T0);
  _mm_prefetch(p + 64, _MM_HINT_T0);
  if (!x16) {
    _mm_prefetch(p + 128, _MM_HINT_T0);
    _mm_prefetch(p + 192, _MM_HINT_T0);
  }
}

/* One query's running state between chunks of keys: output accumulators (two sets, so that
 * consecutive keys do not wait on each other), running max and running sum. */
typedef struct {
  __m512 a[4], b[4];
  float m, l;
} attend_acc;

/* Keys [j0, j0 + nb) of n for one query (q pre-scaled, in four registers). */
AVX512 __attribute__((always_inline)) static inline void
attend64_chunk(const __m512 *qv, const float *k, const bf16_t *k16, long ld_k, const float *v,
               const bf16_t *v16, long ld_v, int j0, int nb, int n, attend_acc *acc) {
  __m512 q0 = qv[0], q1 = qv[1], q2 = qv[2], q3 = qv[3];
  __m512 a0 = acc->a[0], a1 = acc->a[1], a2 = acc->a[2], a3 = acc->a[3];
  __m512 b0 = acc->b[0], b1 = acc->b[1], b2 = acc->b[2], b3 = acc->b[3];
  float sc[KV_CHUNK] __attribute__((aligned(64)));
  float m = acc->m;
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 16 <= nb; j += 16) {
    __m512 p[16];
    for (int u = 0; u < 16; u++) {
      long r = (long)(j0 + j + u) * ld_k;
      if (j0 + j + u + PF_AHEAD < n) pf_row(k, k16, r + PF_AHEAD * ld_k);
      __m512 t = _mm512_mul_ps(q0, ld16(k, k16, r));
      t = _mm512_fmadd_ps(q1, ld16(k, k16, r + 16), t);
      t = _mm512_fmadd_ps(q2, ld16(k, k16, r + 32), t);
      p[u] = _mm512_fmadd_ps(q3, ld16(k, k16, r + 48), t);
    }
    __m512 s16 = hsum16x16(p);
    _mm512_store_ps(sc + j, s16);
    vmax = _mm512_max_ps(vmax, s16);
  }
  float bm = _mm512_reduce_max_ps(vmax);
  for (; j < nb; j++) {
    long r = (long)(j0 + j) * ld_k;
    __m512 t = _mm512_mul_ps(q0, ld16(k, k16, r));
    t = _mm512_fmadd_ps(q1, ld16(k, k16, r + 16), t);
    t = _mm512_fmadd_ps(q2, ld16(k, k16, r + 32), t);
    t = _mm512_fmadd_ps(q3, ld16(k, k16, r + 48), t);
    sc[j] = _mm512_reduce_add_ps(t);
    bm = fmaxf(bm, sc[j]);
  }
  float nm = fmaxf(m, bm);
  float corr = m == -INFINITY ? 0.0f : vs_vec_expf(m - nm);
  __m512 vc = _mm512_set1_ps(corr);
  a0 = _mm512_mul_ps(a0, vc), a1 = _mm512_mul_ps(a1, vc), a2 = _mm512_mul_ps(a2, vc);
  a3 = _mm512_mul_ps(a3, vc), b0 = _mm512_mul_ps(b0, vc), b1 = _mm512_mul_ps(b1, vc);
  b2 = _mm512_mul_ps(b2, vc), b3 = _mm512_mul_ps(b3, vc);
  float ls = 0;
#pragma omp simd reduction(+ : ls)
  for (int jj = 0; jj < nb; jj++) {
    sc[jj] = vs_vec_expf(sc[jj] - nm);
    ls += sc[jj];
  }
  acc->l = acc->l * corr + ls;
  j = 0;
  for (; j + 2 <= nb; j += 2) {
    long r = (long)(j0 + j) * ld_v;
    if (j0 + j + 1 + PF_AHEAD < n) {
      pf_row(v, v16, r + PF_AHEAD * ld_v);
      pf_row(v, v16, r + (PF_AHEAD + 1) * ld_v);
    }
    __m512 p = _mm512_set1_ps(sc[j]), pn = _mm512_set1_ps(sc[j + 1]);
    a0 = _mm512_fmadd_ps(p, ld16(v, v16, r), a0);
    a1 = _mm512_fmadd_ps(p, ld16(v, v16, r + 16), a1);
    a2 = _mm512_fmadd_ps(p, ld16(v, v16, r + 32), a2);
    a3 = _mm512_fmadd_ps(p, ld16(v, v16, r + 48), a3);
    r += ld_v;
    b0 = _mm512_fmadd_ps(pn, ld16(v, v16, r), b0);
    b1 = _mm512_fmadd_ps(pn, ld16(v, v16, r + 16), b1);
    b2 = _mm512_fmadd_ps(pn, ld16(v, v16, r + 32), b2);
    b3 = _mm512_fmadd_ps(pn, ld16(v, v16, r + 48), b3);
  }
  if (j < nb) {
    long r = (long)(j0 + j) * ld_v;
    __m512 p = _mm512_set1_ps(sc[j]);
    a0 = _mm512_fmadd_ps(p, ld16(v, v16, r), a0);
    a1 = _mm512_fmadd_ps(p, ld16(v, v16, r + 16), a1);
    a2 = _mm512_fmadd_ps(p, ld16(v, v16, r + 32), a2);
    a3 = _mm512_fmadd_ps(p, ld16(v, v16, r + 48), a3);
  }
  acc->m = nm;
  acc->a[0] = a0, acc->a[1] = a1, acc->a[2] = a2, acc->a[3] = a3;
  acc->b[0] = b0, acc->b[1] = b1, acc->b[2] = b2, acc->b[3] = b3;
}

/* Queries of one head that read the same keys (the beams of one window in cross-attention) take
 * each chunk of K/V in turn while it is still in cache, so a decoder step reads the window's
 * K/V from memory once instead of once per beam: that read is what bounds a beam search step.
 * Each query's arithmetic is exactly that of a query alone (same chunks, same order), so how
 * queries are grouped never changes a result. */
enum { ATTEND_GROUP = 8 };

AVX512 __attribute__((always_inline)) static inline void
attend64_body(const float *q, long ld_q, int nq, const float *k, const bf16_t *k16, long ld_k,
              const float *v, const bf16_t *v16, long ld_v, int n, float scale, float *o,
              long ld_o) {
  __m512 vs = _mm512_set1_ps(scale);
  __m512 qv[ATTEND_GROUP][4];
  attend_acc acc[ATTEND_GROUP];
  for (int g = 0; g < nq; g++) {
    for (int c = 0; c < 4; c++) {
      qv[g][c] = _mm512_mul_ps(_mm512_loadu_ps(q + g * ld_q + 16 * c), vs);
      acc[g].a[c] = acc[g].b[c] = _mm512_setzero_ps();
    }
    acc[g].m = -INFINITY;
    acc[g].l = 0;
  }
  for (int j0 = 0; j0 < n; j0 += KV_CHUNK) {
    int nb = n - j0 < KV_CHUNK ? n - j0 : KV_CHUNK;
    for (int g = 0; g < nq; g++)
      attend64_chunk(qv[g], k, k16, ld_k, v, v16, ld_v, j0, nb, n, &acc[g]);
  }
  for (int g = 0; g < nq; g++) {
    __m512 inv = _mm512_set1_ps(1.0f / acc[g].l);
    for (int c = 0; c < 4; c++)
      _mm512_storeu_ps(o + g * ld_o + 16 * c,
                       _mm512_mul_ps(_mm512_add_ps(acc[g].a[c], acc[g].b[c]), inv));
  }
}

AVX512 static void attend64_f32(const float *q, long ld_q, int nq, const float *k, long ld_k,
                                const float *v, long ld_v, int n, float scale, float *o,
                                long ld_o) {
  attend64_body(q, ld_q, nq, k, NULL, ld_k, v, NULL, ld_v, n, scale, o, ld_o);
}

AVX512 static void attend64_bf16(const float *q, long ld_q, int nq, const bf16_t *k, long ld_k,
                                 const bf16_t *v, long ld_v, int n, float scale, float *o,
                                 long ld_o) {
  attend64_body(q, ld_q, nq, NULL, k, ld_k, NULL, v, ld_v, n, scale, o, ld_o);
}

/* The bf16 backend with bf16 caches on CPUs with AVX512-BF16: Q and P are rounded to bf16 (as
 * the many-query path's matmuls do) so that both products run as bf16 pair dot products with
 * fp32 accumulation: a 64-wide score is two instructions instead of twelve (widen, shift,
 * multiply-add per 16), and P V takes a pair of keys per instruction. Softmax stays fp32. */
#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

typedef struct {
  __m512 a[8]; /* [set][dims 0-31 low, high, dims 32-63 low, high] pair-interleaved lanes */
  float m, l;
} attend_dp_acc;

AVX512BF16 __attribute__((always_inline)) static inline __m512bh ld_bh(const bf16_t *x) {
  return (__m512bh)_mm512_loadu_si512((const void *)x);
}

/* a[c] += p . v_c for the four 16-dim quarters of a 64-dim output (constant offsets of a after
 * inlining, so the accumulators stay in registers). */
AVX512BF16 __attribute__((always_inline)) static inline void
dp4(__m512 *a, __m512bh p, __m512bh v0, __m512bh v1, __m512bh v2, __m512bh v3) {
  a[0] = _mm512_dpbf16_ps(a[0], p, v0);
  a[1] = _mm512_dpbf16_ps(a[1], p, v1);
  a[2] = _mm512_dpbf16_ps(a[2], p, v2);
  a[3] = _mm512_dpbf16_ps(a[3], p, v3);
}

/* dp4 of a probability pair with V rows x (key 2i) and y (key 2i+1) interleaved into pairs. */
AVX512BF16 __attribute__((always_inline)) static inline void
dp4_rows(__m512 *a, __m512bh p, __m512i x0, __m512i x1, __m512i y0, __m512i y1) {
  dp4(a, p, (__m512bh)_mm512_unpacklo_epi16(x0, y0), (__m512bh)_mm512_unpackhi_epi16(x0, y0),
      (__m512bh)_mm512_unpacklo_epi16(x1, y1), (__m512bh)_mm512_unpackhi_epi16(x1, y1));
}

AVX512BF16 __attribute__((always_inline)) static inline void
attend64_dp_chunk(const __m512bh *qb, const bf16_t *k, long ld_k, const bf16_t *v, long ld_v,
                  int j0, int nb, int n, attend_dp_acc *acc) {
  float sc[KV_CHUNK] __attribute__((aligned(64)));
  uint32_t pp[KV_CHUNK / 2 + 16] __attribute__((aligned(64)));
  float m = acc->m;
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 16 <= nb; j += 16) {
    __m512 p[16];
    for (int u = 0; u < 16; u++) {
      long r = (long)(j0 + j + u) * ld_k;
      if (j0 + j + u + PF_AHEAD < n) pf_row(NULL, k, r + PF_AHEAD * ld_k);
      p[u] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), qb[0], ld_bh(k + r)), qb[1],
                              ld_bh(k + r + 32));
    }
    __m512 s16 = hsum16x16(p);
    _mm512_store_ps(sc + j, s16);
    vmax = _mm512_max_ps(vmax, s16);
  }
  float bm = _mm512_reduce_max_ps(vmax);
  for (; j < nb; j++) {
    long r = (long)(j0 + j) * ld_k;
    sc[j] = _mm512_reduce_add_ps(_mm512_dpbf16_ps(
        _mm512_dpbf16_ps(_mm512_setzero_ps(), qb[0], ld_bh(k + r)), qb[1], ld_bh(k + r + 32)));
    bm = fmaxf(bm, sc[j]);
  }
  float nm = fmaxf(m, bm);
  float corr = m == -INFINITY ? 0.0f : vs_vec_expf(m - nm);
  __m512 vc = _mm512_set1_ps(corr);
  for (int i = 0; i < 8; i++)
    acc->a[i] = _mm512_mul_ps(acc->a[i], vc);
  float ls = 0;
#pragma omp simd reduction(+ : ls)
  for (int jj = 0; jj < nb; jj++) {
    sc[jj] = vs_vec_expf(sc[jj] - nm);
    ls += sc[jj];
  }
  acc->l = acc->l * corr + ls;
  /* Probabilities as bf16 pairs (p_j, p_j+1) in one 32-bit word; an odd tail pairs with 0. */
  if (nb & 1) sc[nb] = 0.0f;
  int np = (nb + 1) / 2;
  for (int i = 0; i < np; i += 16) {
    __m512 lo = _mm512_loadu_ps(sc + 2 * i), hi = _mm512_loadu_ps(sc + 2 * i + 16);
    _mm512_store_si512((void *)(pp + i), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  }
  __m512 a[8]; /* even key pairs into 0-3, odd into 4-7: two chains per output */
  for (int c = 0; c < 8; c++)
    a[c] = acc->a[c];
  int i = 0;
  for (; 2 * i + 2 <= nb; i++) {
    long r = (long)(j0 + 2 * i) * ld_v;
    if (j0 + 2 * i + 1 + PF_AHEAD < n) {
      pf_row(NULL, v, r + PF_AHEAD * ld_v);
      pf_row(NULL, v, r + (PF_AHEAD + 1) * ld_v);
    }
    __m512i x0 = _mm512_loadu_si512((const void *)(v + r)),
            x1 = _mm512_loadu_si512((const void *)(v + r + 32));
    __m512i y0 = _mm512_loadu_si512((const void *)(v + r + ld_v)),
            y1 = _mm512_loadu_si512((const void *)(v + r + ld_v + 32));
    __m512bh pb = (__m512bh)_mm512_set1_epi32((int)pp[i]);
    if (i & 1)
      dp4_rows(a + 4, pb, x0, x1, y0, y1);
    else
      dp4_rows(a, pb, x0, x1, y0, y1);
  }
  if (2 * i < nb) { /* the odd last key, its partner's probability is 0 */
    long r = (long)(j0 + 2 * i) * ld_v;
    __m512i x0 = _mm512_loadu_si512((const void *)(v + r)),
            x1 = _mm512_loadu_si512((const void *)(v + r + 32)), z = _mm512_setzero_si512();
    dp4_rows(a, (__m512bh)_mm512_set1_epi32((int)pp[i]), x0, x1, z, z);
  }
  acc->m = nm;
  for (int c = 0; c < 8; c++)
    acc->a[c] = a[c];
}

AVX512BF16 static void attend64_dp(const float *q, long ld_q, int nq, const bf16_t *k, long ld_k,
                                   const bf16_t *v, long ld_v, int n, float scale, float *o,
                                   long ld_o) {
  __m512 vs = _mm512_set1_ps(scale);
  __m512bh qb[ATTEND_GROUP][2];
  attend_dp_acc acc[ATTEND_GROUP];
  for (int g = 0; g < nq; g++) {
    const float *qg = q + g * ld_q;
    for (int c = 0; c < 2; c++)
      qb[g][c] = _mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(qg + 32 * c + 16), vs),
                                     _mm512_mul_ps(_mm512_loadu_ps(qg + 32 * c), vs));
    for (int i = 0; i < 8; i++)
      acc[g].a[i] = _mm512_setzero_ps();
    acc[g].m = -INFINITY;
    acc[g].l = 0;
  }
  for (int j0 = 0; j0 < n; j0 += KV_CHUNK) {
    int nb = n - j0 < KV_CHUNK ? n - j0 : KV_CHUNK;
    for (int g = 0; g < nq; g++)
      attend64_dp_chunk(qb[g], k, ld_k, v, ld_v, j0, nb, n, &acc[g]);
  }
  /* unpacklo/hi interleave within 128-bit lanes: lane 4L+i of a "low" accumulator is dim
   * 8L+i of its 32, of a "high" one dim 8L+4+i. */
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23),
                second =
                    _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int g = 0; g < nq; g++) {
    __m512 inv = _mm512_set1_ps(1.0f / acc[g].l);
    float *og = o + g * ld_o;
    for (int c = 0; c < 2; c++) {
      __m512 lo = _mm512_add_ps(acc[g].a[2 * c], acc[g].a[4 + 2 * c]),
             hi = _mm512_add_ps(acc[g].a[2 * c + 1], acc[g].a[4 + 2 * c + 1]);
      _mm512_storeu_ps(og + 32 * c, _mm512_mul_ps(_mm512_permutex2var_ps(lo, first, hi), inv));
      _mm512_storeu_ps(og + 32 * c + 16,
                       _mm512_mul_ps(_mm512_permutex2var_ps(lo, second, hi), inv));
    }
  }
}

/* ---- packed cross-attention K/V -------------------------------------------------------------
 * Whisper's cross-attention keys are written once per window and read by every decoder step of
 * every sequence, so they are stored in the form the bf16 dot-product instruction wants (bf16
 * backend on AVX512-BF16, head_dim 64), per head:
 *   K [ceil(n/16) blocks][32 dim pairs][16 keys][2]: 32 vdpbf16ps give 16 scores, one per lane,
 *     with no horizontal reduction;
 *   V [ceil(n/16) * 8 key pairs][64 dims][2]: P V takes a key pair per instruction and lands
 *     in natural dimension order, with no unpacking.
 * Keys are padded with zeros to a multiple of 16; their scores are masked out. */
enum { PK_BLOCK = 16, PK_SCORE_BLOCKS = 8 };

static long pk_keys(int n_kv) {
  return ((long)n_kv + PK_BLOCK - 1) / PK_BLOCK * PK_BLOCK;
}
static size_t pk_head_elems(int n_kv) { /* K and V of one head */
  return (size_t)pk_keys(n_kv) * 64 * 2;
}

/* The AVX2 form (int8 precision without AVX-512; the bf16 backend exists only with native bf16,
 * which has the form above), per head:
 *   K [np/16 blocks][64 dims][16 keys]: for one dim, the scores of 16 keys take two FMAs per
 *     query, so a group's queries share every K load and nothing is reduced across lanes;
 *   V [4 dim groups][np keys][16 dims]: P V keeps a group's queries x 16 dims in registers
 *     and streams one group's values at a time.
 * Each run of 16 bf16 is stored as (0, 8, 1, 9, ..., 7, 15) so that one 32-byte load widens
 * to two fp32 vectors by a shift (elements 0-7) and a mask (8-15), with no shuffles. Whisper's
 * 1500 keys need the scores of a whole row at once (pk2_attend keeps them on the stack), hence
 * the cap on keys. */
enum { PK2_MAX_KEYS = 4096 };
typedef enum { PK_NONE, PK_BF16DP, PK_AVX2 } pk_form;

static pk_form pk_form_of(const cpu_ops *c, int n_kv, int head_dim) {
  if (head_dim != 64 || n_kv < 1) return PK_NONE;
  if (c->dt == dnnl_bf16 && have_avx512bf16) return PK_BF16DP;
  if (int8_on_avx2(c) && n_kv <= PK2_MAX_KEYS) return PK_AVX2;
  return PK_NONE;
}

static size_t cpu_kv_packed_bytes(const vs_ops *ops, int n_kv, int n_head, int head_dim) {
  if (pk_form_of((const cpu_ops *)ops, n_kv, head_dim) == PK_NONE) return 0;
  return (size_t)n_head * pk_head_elems(n_kv) * sizeof(bf16_t);
}

/* Slot of element i (< 16) in a run of 16 bf16 of the AVX2 form. */
static inline int pk2_slot(int i) {
  return i < 8 ? 2 * i : 2 * (i - 8) + 1;
}

static void cpu_kv_pack(vs_ops *ops, const float *kv, long ld, int n_kv, int n_head, int head_dim,
                        void *dst) {
  /* head_dim is 64: kv_packed_bytes is 0 otherwise */
  bool avx2 = pk_form_of((const cpu_ops *)ops, n_kv, head_dim) == PK_AVX2;
  long np = pk_keys(n_kv), d = (long)n_head * 64;
  int n_blocks = (int)(np / PK_BLOCK);
  /* blocks of keys rather than heads as the items: six heads do not split evenly over threads */
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
  for (int h = 0; h < n_head; h++)
    for (int blk = 0; blk < n_blocks; blk++) {
      bf16_t *K = (bf16_t *)dst + (size_t)h * pk_head_elems(n_kv), *V = K + np * 64;
      bf16_t kr[64], vr[64];
      for (long j = (long)blk * PK_BLOCK; j < (long)(blk + 1) * PK_BLOCK; j++) {
        if (j < n_kv) {
          vs_ops_f32_to_bf16(kv + j * ld + h * 64, kr, 64);
          vs_ops_f32_to_bf16(kv + j * ld + d + h * 64, vr, 64);
        } else {
          memset(kr, 0, sizeof kr);
          memset(vr, 0, sizeof vr);
        }
        long b = j / PK_BLOCK, u = j % PK_BLOCK;
        for (int e = 0; e < 64; e++) {
          if (avx2) {
            K[(b * 64 + e) * PK_BLOCK + pk2_slot((int)u)] = kr[e];
            V[((e / 16) * np + j) * 16 + pk2_slot(e % 16)] = vr[e];
          } else {
            K[((b * 32 + e / 2) * PK_BLOCK + u) * 2 + e % 2] = kr[e];
            V[((j / 2) * 64 + e) * 2 + j % 2] = vr[e];
          }
        }
      }
    }
}

typedef struct {
  __m512 a[8]; /* [key-pair parity][dims 16c..16c+15] */
  float m, l;
} attend_pk_acc;

/* Scores of one query (bf16 pairs qp) against blocks [b0, b0 + nblk) of a chunk, into sc. */
AVX512BF16 __attribute__((always_inline)) static inline void
pk_scores(const uint32_t *qp, const bf16_t *K, int b0, int nblk, float *sc, const bf16_t *pf) {
  for (int bb = 0; bb < nblk; bb += PK_SCORE_BLOCKS) {
    const bf16_t *kb = K + (size_t)(b0 + bb) * 32 * PK_BLOCK * 2;
    __m512 s[PK_SCORE_BLOCKS];
    if (nblk - bb >= PK_SCORE_BLOCKS) {
      for (int t = 0; t < PK_SCORE_BLOCKS; t++)
        s[t] = _mm512_setzero_ps();
      for (int p = 0; p < 32; p++) {
        __m512bh qb = (__m512bh)_mm512_set1_epi32((int)qp[p]);
        if (pf) /* the chunk's V, one line per K line read: in cache by the time P V runs */
          for (int t = 0; t < PK_SCORE_BLOCKS; t++)
            _mm_prefetch((const char *)(pf + ((size_t)(bb + t) * 32 + p) * 32), _MM_HINT_T1);
        for (int t = 0; t < PK_SCORE_BLOCKS; t++)
          s[t] = _mm512_dpbf16_ps(s[t], qb, ld_bh(kb + ((size_t)t * 32 + p) * PK_BLOCK * 2));
      }
      for (int t = 0; t < PK_SCORE_BLOCKS; t++)
        _mm512_store_ps(sc + (bb + t) * PK_BLOCK, s[t]);
    } else {
      for (int t = 0; t < nblk - bb; t++) {
        __m512 x = _mm512_setzero_ps(), y = _mm512_setzero_ps();
        for (int p = 0; p < 32; p += 2) {
          x = _mm512_dpbf16_ps(x, (__m512bh)_mm512_set1_epi32((int)qp[p]),
                               ld_bh(kb + ((size_t)t * 32 + p) * PK_BLOCK * 2));
          y = _mm512_dpbf16_ps(y, (__m512bh)_mm512_set1_epi32((int)qp[p + 1]),
                               ld_bh(kb + ((size_t)t * 32 + p + 1) * PK_BLOCK * 2));
        }
        _mm512_store_ps(sc + (bb + t) * PK_BLOCK, _mm512_add_ps(x, y));
      }
    }
  }
}

/* P V of up to two queries over key pairs [0, np) of a chunk; each query's accumulation is the
 * same whatever it is paired with. */
AVX512BF16 __attribute__((always_inline)) static inline void
pk_pv(const uint32_t *pp0, const uint32_t *pp1, const bf16_t *Vc, int np, attend_pk_acc *a0,
      attend_pk_acc *a1, const bf16_t *pf, int pf_lines) {
  __m512 x[8], y[8];
  for (int i = 0; i < 8; i++)
    x[i] = a0->a[i], y[i] = a1 ? a1->a[i] : _mm512_setzero_ps();
  /* Even key pairs into accumulators 0-3, odd ones into 4-7 (two chains per output); the
   * parity is unrolled so that the accumulators stay in registers. */
  for (int i = 0; i < np; i++) {
    const bf16_t *vr = Vc + (size_t)i * 128;
    if (pf) /* the next chunk's K, four lines per V pair read */
      for (int u = 4 * i; u < 4 * i + 4 && u < pf_lines; u++)
        _mm_prefetch((const char *)(pf + (size_t)u * 32), _MM_HINT_T1);
    __m512bh v0 = ld_bh(vr), v1 = ld_bh(vr + 32), v2 = ld_bh(vr + 64), v3 = ld_bh(vr + 96);
    __m512bh p = (__m512bh)_mm512_set1_epi32((int)pp0[i]);
    __m512bh r = a1 ? (__m512bh)_mm512_set1_epi32((int)pp1[i]) : p;
    if ((i & 1) == 0) {
      dp4(x, p, v0, v1, v2, v3);
      if (a1) dp4(y, r, v0, v1, v2, v3);
    } else {
      dp4(x + 4, p, v0, v1, v2, v3);
      if (a1) dp4(y + 4, r, v0, v1, v2, v3);
    }
  }
  for (int i = 0; i < 8; i++) {
    a0->a[i] = x[i];
    if (a1) a1->a[i] = y[i];
  }
}

AVX512BF16 static void attend64_pk(const float *q, long ld_q, int nq, const bf16_t *K,
                                   const bf16_t *V, int n, float scale, float *o, long ld_o) {
  uint32_t qp[ATTEND_GROUP][32] __attribute__((aligned(64)));
  uint32_t pp[ATTEND_GROUP][KV_CHUNK / 2] __attribute__((aligned(64)));
  float sc[KV_CHUNK] __attribute__((aligned(64)));
  attend_pk_acc acc[ATTEND_GROUP];
  __m512 vs = _mm512_set1_ps(scale);
  for (int g = 0; g < nq; g++) {
    const float *qg = q + g * ld_q;
    for (int c = 0; c < 2; c++)
      _mm512_store_si512(
          (void *)(qp[g] + 16 * c),
          (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(qg + 32 * c + 16), vs),
                                       _mm512_mul_ps(_mm512_loadu_ps(qg + 32 * c), vs)));
    for (int i = 0; i < 8; i++)
      acc[g].a[i] = _mm512_setzero_ps();
    acc[g].m = -INFINITY;
    acc[g].l = 0;
  }
  for (int j0 = 0; j0 < n; j0 += KV_CHUNK) {
    int nb = n - j0 < KV_CHUNK ? n - j0 : KV_CHUNK;
    int nblk = (nb + PK_BLOCK - 1) / PK_BLOCK, npair = nblk * PK_BLOCK / 2;
    const bf16_t *Vc = V + (size_t)j0 * 64;
    for (int g = 0; g < nq; g++) {
      pk_scores(qp[g], K, j0 / PK_BLOCK, nblk, sc, g == 0 ? Vc : NULL);
      __m512 vmax = _mm512_set1_ps(-INFINITY);
      int j = 0;
      for (; j + 16 <= nb; j += 16)
        vmax = _mm512_max_ps(vmax, _mm512_load_ps(sc + j));
      if (j < nb)
        vmax = _mm512_mask_max_ps(vmax, (__mmask16)((1u << (nb - j)) - 1), vmax,
                                  _mm512_load_ps(sc + j));
      float m = acc[g].m, bm = _mm512_reduce_max_ps(vmax);
      float nm = m > bm ? m : bm;
      float corr = m == -INFINITY ? 0.0f : vs_vec_expf(m - nm);
      __m512 vc = _mm512_set1_ps(corr);
      for (int i = 0; i < 8; i++)
        acc[g].a[i] = _mm512_mul_ps(acc[g].a[i], vc);
      float ls = 0;
#pragma omp simd reduction(+ : ls)
      for (int j = 0; j < nb; j++) {
        sc[j] = vs_vec_expf(sc[j] - nm);
        ls += sc[j];
      }
      for (int j = nb; j < ((nblk * PK_BLOCK + 31) & ~31); j++) /* padded keys weigh nothing */
        sc[j] = 0.0f;
      acc[g].l = acc[g].l * corr + ls;
      acc[g].m = nm;
      for (int i = 0; i < npair; i += 16) {
        __m512 lo = _mm512_load_ps(sc + 2 * i), hi = _mm512_load_ps(sc + 2 * i + 16);
        _mm512_store_si512((void *)(pp[g] + i), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
      }
    }
    int next = n - (j0 + KV_CHUNK); /* keys of the next chunk, if any */
    int pf_lines = next <= 0 ? 0 : (next < KV_CHUNK ? (next + PK_BLOCK - 1) / PK_BLOCK : 16) * 32;
    for (int g = 0; g < nq; g += 2)
      pk_pv(pp[g], g + 1 < nq ? pp[g + 1] : NULL, Vc, npair, &acc[g],
            g + 1 < nq ? &acc[g + 1] : NULL,
            g == 0 && pf_lines ? K + (size_t)(j0 + KV_CHUNK) * 64 : NULL, pf_lines);
  }
  for (int g = 0; g < nq; g++) {
    __m512 inv = _mm512_set1_ps(1.0f / acc[g].l);
    for (int c = 0; c < 4; c++)
      _mm512_storeu_ps(o + g * ld_o + 16 * c,
                       _mm512_mul_ps(_mm512_add_ps(acc[g].a[c], acc[g].a[4 + c]), inv));
  }
}

/* Queries per work item: causal queries see different key counts, so they go one by one. */
/* Head width 64 with AVX2 (no AVX-512): too few registers to hold several queries, so the
 * group's queries take turns on each chunk of keys while the chunk is still in cache (K and V
 * are read from memory once per group, as in the AVX-512 kernels); q lives in eight registers,
 * four keys' scores are reduced together, the output accumulates in eight registers. */

AVX2 static inline __m256 ld8(const float *x, const bf16_t *x16, long i) {
  if (!x16) return _mm256_loadu_ps(x + i);
  __m128i h = _mm_loadu_si128((const __m128i *)(x16 + i));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Rows [j0, j0 + nb) of a 64-wide K or V (row stride *ld): fp32 rows in place, or bf16 rows
 * widened into wide (then *ld = 64). */
AVX2 static const float *chunk64(const float *x, const bf16_t *x16, int j0, int nb, float *wide,
                                 long *ld) {
  if (!x16) return x + (long)j0 * *ld;
  for (int j = 0; j < nb; j++)
    for (int c = 0; c < 8; c++)
      _mm256_store_ps(wide + j * 64 + 8 * c, ld8(NULL, x16, (long)(j0 + j) * *ld + 8 * c));
  *ld = 64;
  return wide;
}

AVX2 static void attend64_avx2(const float *q, long ld_q, int nq, const float *k, const bf16_t *k16,
                               long ld_k, const float *v, const bf16_t *v16, long ld_v, int n,
                               float scale, float *o, long ld_o) {
  static _Thread_local float kwide[KV_CHUNK * 64] __attribute__((aligned(32))),
      vwide[KV_CHUNK * 64] __attribute__((aligned(32)));
  float acc[ATTEND_GROUP][64] __attribute__((aligned(32)));
  float mx[ATTEND_GROUP], sum[ATTEND_GROUP], sc[KV_CHUNK];
  for (int i = 0; i < nq; i++) {
    memset(acc[i], 0, sizeof acc[i]);
    mx[i] = -INFINITY;
    sum[i] = 0;
  }
  for (int j0 = 0; j0 < n; j0 += KV_CHUNK) {
    int nb = n - j0 < KV_CHUNK ? n - j0 : KV_CHUNK;
    /* bf16 K/V: widened once per chunk into fp32 for all the group's queries, not per query */
    long ldk = ld_k, ldv = ld_v;
    const float *kc = chunk64(k, k16, j0, nb, kwide, &ldk);
    const float *vc = chunk64(v, v16, j0, nb, vwide, &ldv);
    for (int i = 0; i < nq; i++) {
      __m256 qv[8];
      for (int c = 0; c < 8; c++)
        qv[c] = _mm256_mul_ps(_mm256_loadu_ps(q + (size_t)i * ld_q + 8 * c), _mm256_set1_ps(scale));
      int j = 0;
      for (; j + 4 <= nb; j += 4) {
        /* two chains per key, eight in all: enough independent FMAs to hide their latency */
        __m256 s4[4];
        for (int u = 0; u < 4; u++) {
          const float *kr = kc + (long)(j + u) * ldk;
          __m256 a = _mm256_mul_ps(qv[0], _mm256_loadu_ps(kr));
          __m256 b = _mm256_mul_ps(qv[1], _mm256_loadu_ps(kr + 8));
          for (int c = 2; c < 8; c += 2) {
            a = _mm256_fmadd_ps(qv[c], _mm256_loadu_ps(kr + 8 * c), a);
            b = _mm256_fmadd_ps(qv[c + 1], _mm256_loadu_ps(kr + 8 * c + 8), b);
          }
          s4[u] = _mm256_add_ps(a, b);
        }
        __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(s4[0], s4[1]), _mm256_hadd_ps(s4[2], s4[3]));
        _mm_storeu_ps(sc + j, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
      }
      for (; j < nb; j++) {
        const float *kr = kc + (long)j * ldk;
        __m256 a = _mm256_mul_ps(qv[0], _mm256_loadu_ps(kr));
        for (int c = 1; c < 8; c++)
          a = _mm256_fmadd_ps(qv[c], _mm256_loadu_ps(kr + 8 * c), a);
        sc[j] = vs_vec_hsum8(a);
      }
      /* the max by 8 lanes: a scalar max is a chain the compiler may not reorder */
      __m256 vm = _mm256_set1_ps(mx[i]);
      int t = 0;
      for (; t + 8 <= nb; t += 8)
        vm = _mm256_max_ps(vm, _mm256_loadu_ps(sc + t));
      float bm = vs_vec_hmax8(vm);
      for (; t < nb; t++)
        bm = sc[t] > bm ? sc[t] : bm;
      float corr = mx[i] == -INFINITY ? 0.0f : vs_vec_expf(mx[i] - bm);
      mx[i] = bm;
      __m256 vb = _mm256_set1_ps(bm), ls = _mm256_setzero_ps();
      t = 0;
      for (; t + 8 <= nb; t += 8) {
        __m256 e = vs_vec_exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + t), vb));
        _mm256_storeu_ps(sc + t, e);
        ls = _mm256_add_ps(ls, e);
      }
      float l = vs_vec_hsum8(ls);
      for (; t < nb; t++) {
        sc[t] = vs_vec_expf(sc[t] - bm);
        l += sc[t];
      }
      sum[i] = sum[i] * corr + l;
      __m256 av[8], cv = _mm256_set1_ps(corr);
      for (int c = 0; c < 8; c++)
        av[c] = _mm256_mul_ps(_mm256_load_ps(acc[i] + 8 * c), cv);
      for (int jj = 0; jj < nb; jj++) {
        __m256 pv = _mm256_set1_ps(sc[jj]);
        const float *vr = vc + (long)jj * ldv;
        for (int c = 0; c < 8; c++)
          av[c] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vr + 8 * c), av[c]);
      }
      for (int c = 0; c < 8; c++)
        _mm256_store_ps(acc[i] + 8 * c, av[c]);
    }
  }
  for (int i = 0; i < nq; i++) {
    __m256 inv = _mm256_set1_ps(1.0f / sum[i]);
    for (int c = 0; c < 8; c++)
      _mm256_storeu_ps(o + (size_t)i * ld_o + 8 * c,
                       _mm256_mul_ps(_mm256_load_ps(acc[i] + 8 * c), inv));
  }
}

/* ---- the AVX2 packed form (see pk_form_of) ---- */

/* A run of 16 bf16 (slots 0, 8, 1, 9, ...) as elements 0-7 and 8-15 in fp32. */
AVX2 __attribute__((always_inline)) static inline void pk2_widen(const bf16_t *p, __m256 *lo,
                                                                 __m256 *hi) {
  __m256i x = _mm256_loadu_si256((const __m256i *)p);
  *lo = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
  *hi = _mm256_castsi256_ps(_mm256_and_si256(x, _mm256_set1_epi32((int)0xffff0000u)));
}

/* Scores of nq queries (qs [nq][64], already scaled) against nblk 16-key blocks from block b0,
 * into sc[i * ld_sc + key]. nq * nblk <= 6 keeps the accumulators in registers; callers pass
 * constants so that the loops unroll. */
AVX2 __attribute__((always_inline)) static inline void pk2_qk(const float *qs, const int nq,
                                                              const int nblk, const bf16_t *K,
                                                              long b0, float *sc, long ld_sc) {
  __m256 acc[6][4][2];
  for (int i = 0; i < nq; i++)
    for (int b = 0; b < nblk; b++)
      acc[i][b][0] = acc[i][b][1] = _mm256_setzero_ps();
  const bf16_t *kb = K + b0 * 64 * PK_BLOCK;
  for (int e = 0; e < 64; e++)
    for (int b = 0; b < nblk; b++) {
      __m256 lo, hi;
      pk2_widen(kb + ((long)b * 64 + e) * PK_BLOCK, &lo, &hi);
      for (int i = 0; i < nq; i++) {
        __m256 qb = _mm256_broadcast_ss(qs + i * 64 + e);
        acc[i][b][0] = _mm256_fmadd_ps(qb, lo, acc[i][b][0]);
        acc[i][b][1] = _mm256_fmadd_ps(qb, hi, acc[i][b][1]);
      }
    }
  for (int i = 0; i < nq; i++)
    for (int b = 0; b < nblk; b++) {
      float *d = sc + i * ld_sc + (b0 + b) * PK_BLOCK;
      _mm256_storeu_ps(d, acc[i][b][0]);
      _mm256_storeu_ps(d + 8, acc[i][b][1]);
    }
}

/* out[i][16 g + c] = inv[i] * sum_j p[i][j] V[j][16 g + c] for the ng dim groups from g0, keys
 * [0, n); nq * ng <= 6 as for pk2_qk. */
AVX2 __attribute__((always_inline)) static inline void
pk2_pv(const float *p, long ld_p, const int nq, const int ng, const bf16_t *V, long np, int g0,
       int n, const float *inv, float *o, long ld_o) {
  __m256 acc[6][4][2];
  for (int i = 0; i < nq; i++)
    for (int g = 0; g < ng; g++)
      acc[i][g][0] = acc[i][g][1] = _mm256_setzero_ps();
  for (int j = 0; j < n; j++)
    for (int g = 0; g < ng; g++) {
      __m256 lo, hi;
      pk2_widen(V + ((g0 + g) * np + j) * 16, &lo, &hi);
      for (int i = 0; i < nq; i++) {
        __m256 pb = _mm256_broadcast_ss(p + i * ld_p + j);
        acc[i][g][0] = _mm256_fmadd_ps(pb, lo, acc[i][g][0]);
        acc[i][g][1] = _mm256_fmadd_ps(pb, hi, acc[i][g][1]);
      }
    }
  for (int i = 0; i < nq; i++)
    for (int g = 0; g < ng; g++) {
      __m256 s = _mm256_set1_ps(inv[i]);
      float *d = o + i * ld_o + (g0 + g) * 16;
      _mm256_storeu_ps(d, _mm256_mul_ps(acc[i][g][0], s));
      _mm256_storeu_ps(d + 8, _mm256_mul_ps(acc[i][g][1], s));
    }
}

/* Blocks (or dim groups) per call for nq queries: at least eight independent FMA chains to
 * cover the FMA latency, at most twelve accumulators. */
static inline int pk2_width(int nq) {
  return nq == 1 ? 4 : nq <= 3 ? 2 : 1;
}

/* pk2_qk / pk2_pv with compile-time nq and width: w is pk2_width(nq) or, for a tail, 1. */
#define PK2_CASES(CALL)                                                                            \
  switch (nq * 8 + w) {                                                                            \
  case 1 * 8 + 4:                                                                                  \
    CALL(1, 4);                                                                                    \
    break;                                                                                         \
  case 1 * 8 + 1:                                                                                  \
    CALL(1, 1);                                                                                    \
    break;                                                                                         \
  case 2 * 8 + 2:                                                                                  \
    CALL(2, 2);                                                                                    \
    break;                                                                                         \
  case 2 * 8 + 1:                                                                                  \
    CALL(2, 1);                                                                                    \
    break;                                                                                         \
  case 3 * 8 + 2:                                                                                  \
    CALL(3, 2);                                                                                    \
    break;                                                                                         \
  case 3 * 8 + 1:                                                                                  \
    CALL(3, 1);                                                                                    \
    break;                                                                                         \
  case 4 * 8 + 1:                                                                                  \
    CALL(4, 1);                                                                                    \
    break;                                                                                         \
  case 5 * 8 + 1:                                                                                  \
    CALL(5, 1);                                                                                    \
    break;                                                                                         \
  case 6 * 8 + 1:                                                                                  \
    CALL(6, 1);                                                                                    \
    break;                                                                                         \
  }

/* nq <= 6 queries of one head against n packed keys: all scores, one softmax per row, P V.
 * Each query's arithmetic is the same whatever nq is, so grouping never changes a result. */
AVX2 static void pk2_attend_group(const float *q, long ld_q, int nq, const bf16_t *K,
                                  const bf16_t *V, int n, float scale, float *o, long ld_o) {
  long np = pk_keys(n), nblk = np / PK_BLOCK;
  float qs[6][64] __attribute__((aligned(32))), inv[6];
  float sc[nq][np] __attribute__((aligned(32)));
  for (int i = 0; i < nq; i++)
    for (int e = 0; e < 64; e++)
      qs[i][e] = q[i * ld_q + e] * scale;
  int w = pk2_width(nq);
  long b = 0;
  for (; b + w <= nblk; b += w) {
#define QK(NQ, W) pk2_qk(&qs[0][0], NQ, W, K, b, &sc[0][0], np)
    PK2_CASES(QK)
  }
  for (w = 1; b < nblk; b++)
    PK2_CASES(QK)
#undef QK
  for (int i = 0; i < nq; i++)
    inv[i] = 1.0f / softmax_exp(sc[i], n, 1.0f);
  w = pk2_width(nq);
  for (int g = 0; g < 4; g += w) {
#define PV(NQ, W) pk2_pv(&sc[0][0], np, NQ, W, V, np, g, n, inv, o, ld_o)
    PK2_CASES(PV)
#undef PV
  }
}

AVX2 static void pk2_attend(const float *q, long ld_q, int nq, const bf16_t *K, const bf16_t *V,
                            int n, float scale, float *o, long ld_o) {
  /* more than 6: in halves, which keeps every part at 4 or fewer for ATTEND_GROUP = 8 */
  int part = nq <= 6 ? nq : (nq + 1) / 2;
  for (int i = 0; i < nq; i += part) {
    int m = nq - i < part ? nq - i : part;
    pk2_attend_group(q + i * ld_q, ld_q, m, K, V, n, scale, o + i * ld_o, ld_o);
  }
}

static int attend_group(const vs_attn_args *a) {
  return a->causal ? 1 : ATTEND_GROUP;
}
static int attend_items(const vs_attn_args *a) {
  int g = attend_group(a);
  return a->n_head * ((a->n_q + g - 1) / g);
}

/* Work item w of one attention: head w % n_head of the w / n_head-th group of queries. */
static void attend_item(const cpu_ops *c, const vs_attn_args *a, int w) {
  bool dp = c->dt == dnnl_bf16 && have_avx512bf16;
  int hd = a->head_dim, h = w % a->n_head, g = attend_group(a);
  int i0 = (w / a->n_head) * g, nq = a->n_q - i0 < g ? a->n_q - i0 : g;
  size_t off = (size_t)h * hd;
  size_t ko = (size_t)h * (a->hs_k ? a->hs_k : hd), vo = (size_t)h * (a->hs_v ? a->hs_v : hd);
  float scale = 1.0f / sqrtf((float)hd);
  const float *q = a->q + (size_t)i0 * a->ld_q + off;
  float *o = a->o + (size_t)i0 * a->ld_o + off;
  if (a->kv_packed) { /* only accepted where kv_packed_bytes allowed it (pk_form_of) */
    const bf16_t *K = (const bf16_t *)a->kv_packed + (size_t)h * pk_head_elems(a->n_kv);
    if (pk_form_of(c, a->n_kv, hd) == PK_AVX2)
      pk2_attend(q, a->ld_q, nq, K, K + pk_keys(a->n_kv) * 64, a->n_kv, scale, o, a->ld_o);
    else
      attend64_pk(q, a->ld_q, nq, K, K + pk_keys(a->n_kv) * 64, a->n_kv, scale, o, a->ld_o);
    return;
  }
  bool k16 = a->k16 != NULL, v16 = a->v16 != NULL;
  if (have_avx512 && hd == 64 && k16 == v16) {
    int n = a->causal ? a->q_pos0 + i0 + 1 : a->n_kv; /* causal: nq == 1 */
    if (k16 && dp)
      attend64_dp(q, a->ld_q, nq, a->k16 + ko, a->ld_k, a->v16 + vo, a->ld_v, n, scale, o, a->ld_o);
    else if (k16)
      attend64_bf16(q, a->ld_q, nq, a->k16 + ko, a->ld_k, a->v16 + vo, a->ld_v, n, scale, o,
                    a->ld_o);
    else
      attend64_f32(q, a->ld_q, nq, a->k + ko, a->ld_k, a->v + vo, a->ld_v, n, scale, o, a->ld_o);
    return;
  }
  if (vs_vec_use_exp8() && hd == 64 && k16 == v16) {  /* AVX2 + FMA, no AVX-512 */
    int n = a->causal ? a->q_pos0 + i0 + 1 : a->n_kv; /* causal: nq == 1 */
    attend64_avx2(q, a->ld_q, nq, k16 ? NULL : a->k + ko, k16 ? a->k16 + ko : NULL, a->ld_k,
                  v16 ? NULL : a->v + vo, v16 ? a->v16 + vo : NULL, a->ld_v, n, scale, o, a->ld_o);
    return;
  }
  for (int i = i0; i < i0 + nq; i++) {
    int n = a->causal ? a->q_pos0 + i + 1 : a->n_kv;
    attend_row(a->q + (size_t)i * a->ld_q + off, k16 ? NULL : a->k + ko, k16 ? a->k16 + ko : NULL,
               a->ld_k, v16 ? NULL : a->v + vo, v16 ? a->v16 + vo : NULL, a->ld_v, n, hd, scale,
               a->o + (size_t)i * a->ld_o + off);
  }
}

/* All the few-query attentions of a batch in one parallel loop over (attention, head, query). */
static void attention_direct(const cpu_ops *c, const vs_attn_args *const *as, int n) {
  int start[n + 1];
  start[0] = 0;
  for (int i = 0; i < n; i++)
    start[i + 1] = start[i] + attend_items(as[i]);
  int total = start[n];
#pragma omp parallel for schedule(dynamic, 1) if (total > 1)
  for (int w = 0; w < total; w++) {
    int lo = 0, hi = n - 1; /* the attention whose items hold w */
    while (lo < hi) {
      int mid = (lo + hi + 1) / 2;
      if (start[mid] <= w)
        lo = mid;
      else
        hi = mid - 1;
    }
    attend_item(c, as[lo], w - start[lo]);
  }
}

/* Many queries (encoder, long prompts): heads become the batch of two oneDNN matmuls per block
 * of queries, S = Q K^T and O = P V, with the fp32 softmax in between. Only one block of scores
 * [heads][block][n_kv] exists at a time. */
static int attn_block(int n_q, int n_kv, int n_head) {
  long b = (1L << 20) / ((long)n_head * n_kv); /* about 4 MiB of fp32 scores */
  b = b < 16 ? 16 : (b > 256 ? 256 : b);
  b &= ~15L;
  return n_q < b ? n_q : (int)b;
}

typedef struct {
  size_t kh, vh, qb, s, p, ob;                       /* byte offsets in the workspace */
  size_t k_inv, k_comp, v_inv, q_inv, p_sum, dither; /* int8 only */
  size_t total;
} attn_layout;

static attn_layout attn_plan(const cpu_ops *c, int n_q, int n_kv, int n_head, int hd) {
  bool i8 = c->dt == dnnl_u8;
  size_t e = i8 ? 1 : dt_size(c->attn_dt), H = n_head, T = n_kv;
  size_t bq = attn_block(n_q, n_kv, n_head);
  attn_layout L;
  size_t off = 0;
#define TAKE(f, bytes)                                                                             \
  L.f = off;                                                                                       \
  off += ((bytes) + 63) & ~(size_t)63;
  TAKE(kh, H * T * hd * e);  /* [H][n_kv][hd] */
  TAKE(vh, H * T * hd * e);  /* [H][n_kv][hd] */
  TAKE(qb, H * bq * hd * e); /* [H][bq][hd] */
  TAKE(s, H * bq * T * 4);   /* [H][bq][n_kv] fp32 scores (int8: s32 sums, then fp32 in place) */
  TAKE(p, c->dt == dnnl_bf16 ? H * bq * T * 2 : i8 ? H * bq * T : 0); /* bf16 or u8 probabilities */
  TAKE(ob, H * bq * hd * 4);        /* [H][bq][hd] fp32 (int8: s32) */
  TAKE(k_inv, i8 ? H * T * 4 : 0);  /* [H][n_kv] 1 / each key's scale */
  TAKE(k_comp, i8 ? H * T * 4 : 0); /* [H][n_kv] 128 x sum of the key's int8 values */
  TAKE(v_inv, i8 ? H * hd * 4 : 0); /* [H][hd] 1 / each value channel's scale */
  TAKE(q_inv, i8 ? H * bq * 4 : 0); /* [H][bq] 1 / each query's scale */
  TAKE(p_sum, i8 ? H * bq * 4 : 0); /* [H][bq] sum of the row's u8 probabilities */
  TAKE(dither, i8 ? T * 4 : 0);     /* [n_kv] */
#undef TAKE
  L.total = off;
  return L;
}

static size_t cpu_attention_ws(const vs_ops *ops, int n_q, int n_kv, int n_head, int head_dim) {
  if (n_q < DIRECT_MAX_Q) return 0;
  return attn_plan((const cpu_ops *)ops, n_q, n_kv, n_head, head_dim).total;
}

/* Batched matmul [b][m][k] x [b][k][n] -> [b][m][n]; B given by tag (abc or acb). Types:
 * attn_dt x attn_dt -> f32, or u8 x s8 -> s32 (int8). */
static cpu_prim *bmm_prim(cpu_ops *c, int b, int m, int k, int n, dnnl_format_tag_t b_tag,
                          bool int8, GError **err) {
  dnnl_memory_desc_t a_md, b_md, d_md;
  dnnl_matmul_desc_t d;
  DN(dnnl_memory_desc_init_by_tag(&a_md, 3, (dnnl_dims_t){b, m, k}, int8 ? dnnl_u8 : c->attn_dt,
                                  dnnl_abc),
     err, NULL);
  DN(dnnl_memory_desc_init_by_tag(&b_md, 3, (dnnl_dims_t){b, k, n}, int8 ? dnnl_s8 : c->attn_dt,
                                  b_tag),
     err, NULL);
  DN(dnnl_memory_desc_init_by_tag(&d_md, 3, (dnnl_dims_t){b, m, n}, int8 ? dnnl_s32 : dnnl_f32,
                                  dnnl_abc),
     err, NULL);
  DN(dnnl_matmul_desc_init(&d, &a_md, &b_md, NULL, &d_md), err, NULL);
  return prim_cached(c, g_strdup_printf("bmm:%d:%d:%d:%d:%d:%d", b, m, k, n, (int)b_tag, int8),
                     (const_dnnl_op_desc_t)&d, err);
}

/* Copies rows [r0, r0+n) of the head-interleaved x (fp32, or bf16 where x16 is set) into
 * head-major [H][n][hd] (converting to the matmul type). */
static void to_heads(const cpu_ops *c, const float *x, const bf16_t *x16, int ld, long hs, int r0,
                     int n, int n_head, int hd, void *dst) {
  if (!hs) hs = hd;
#pragma omp parallel for collapse(2) schedule(dynamic, 64)
  for (int h = 0; h < n_head; h++)
    for (int r = 0; r < n; r++) {
      size_t si = (size_t)(r0 + r) * ld + (size_t)h * hs;
      size_t o = ((size_t)h * n + r) * hd;
      if (x16 && c->dt == dnnl_bf16)
        memcpy((bf16_t *)dst + o, x16 + si, (size_t)hd * sizeof(bf16_t));
      else if (x16)
        for (int e = 0; e < hd; e++)
          ((float *)dst)[o + e] = kv_at(NULL, x16, (long)(si + e));
      else if (c->dt == dnnl_bf16)
        row_to_bf16(x + si, (bf16_t *)dst + o, hd);
      else
        memcpy((float *)dst + o, x + si, (size_t)hd * sizeof(float));
    }
}

/* ---- int8 attention (int8 precision, many queries) ---------------------------------------
 * The encoder's attention is as many multiply-adds as its linears, so int8 there too: both
 * matmuls run as oneDNN u8 x s8 -> s32. S = Q K^T: queries u8 per row (shifted by 128, as the
 * linears' activations), keys s8 per key with |k| <= w_max, the shift undone by each key's
 * compensation. O = P V: probabilities exp(x - max) lie in [0, 1], so u8 x 255 with no shift;
 * values s8 per channel. Rounding P to the nearest step would drop every key below 1/510 of the
 * row's largest, and a diffuse row's many small weights add up: P is rounded down after adding
 * a dither (a golden-ratio sequence over keys, offset per row), which keeps each weight's
 * expectation and spreads the error over neighbouring frames, whose values are alike. The
 * output divides by the sum of the rounded weights, so each row stays a weighted mean. */

/* Values per (head, channel) over all keys: [H][n_kv][hd] s8 and v_inv [H][hd]. */
static void quantize_values(const vs_attn_args *a, int w_max, int8_t *vh, float *v_inv) {
  int H = a->n_head, hd = a->head_dim, T = a->n_kv;
  long hs = a->hs_v ? a->hs_v : hd;
#pragma omp parallel for schedule(static)
  for (int h = 0; h < H; h++) {
    float amax[hd], scale[hd];
    for (int c = 0; c < hd; c++)
      amax[c] = 0;
    for (int j = 0; j < T; j++)
      for (int c = 0; c < hd; c++) {
        float v = fabsf(kv_at(a->v, a->v16, (long)j * a->ld_v + h * hs + c));
        amax[c] = v > amax[c] ? v : amax[c];
      }
    for (int c = 0; c < hd; c++) {
      scale[c] = amax[c] != 0.0f ? w_max / amax[c] : 1.0f;
      v_inv[h * hd + c] = 1.0f / scale[c];
    }
    for (int j = 0; j < T; j++) {
      int8_t *d = vh + ((size_t)h * T + j) * hd;
      for (int c = 0; c < hd; c++)
        d[c] = (int8_t)rne(kv_at(a->v, a->v16, (long)j * a->ld_v + h * hs + c) * scale[c]);
    }
  }
}

static inline int prob_u8(float e, float dither, float d_off) {
  float d = dither + d_off;
  d -= d >= 1.0f ? 1.0f : 0.0f;
  int q = (int)(e * 255.0f + d);
  return q < 255 ? q : 255;
}

/* probs_u8 for AVX2 without AVX-512, where the compiler leaves the exp scalar: two passes over
 * the row (logits and their max; exp and rounding) instead of four. */
__attribute__((target("avx2,fma"))) static int32_t
probs_u8_avx2(f32_alias *x, const int32_t *k_comp, const float *k_inv, float scale, int lim,
              const float *dither, float d_off, uint8_t *p) {
  const s32_alias *si = (const s32_alias *)x;
  __m256 vmx = _mm256_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 8 <= lim; j += 8) {
    __m256i d = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(si + j)),
                                 _mm256_loadu_si256((const __m256i *)(k_comp + j)));
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_loadu_ps(k_inv + j));
    _mm256_storeu_ps((float *)x + j, f);
    vmx = _mm256_max_ps(vmx, f);
  }
  float mx = vs_vec_hmax8(vmx);
  for (; j < lim; j++) {
    x[j] = (float)(si[j] - k_comp[j]) * k_inv[j];
    mx = x[j] > mx ? x[j] : mx;
  }
  /* exp(y) = 2^n 2^f with n = round(y log2 e): a degree-4 polynomial for 2^f on [-1/2, 1/2]
   * (Taylor, relative error under 5e-5) is ample for 8-bit results; y <= 0 needs no upper clamp */
  const float s2 = scale * 1.44269504088896341f;
  const __m256 vs = _mm256_set1_ps(s2), vms = _mm256_set1_ps(mx * s2), lo = _mm256_set1_ps(-126.0f);
  const __m256 c1 = _mm256_set1_ps(0.693147180f), c2 = _mm256_set1_ps(0.240226507f),
               c3 = _mm256_set1_ps(0.0555041087f), c4 = _mm256_set1_ps(0.00961812911f),
               v255 = _mm256_set1_ps(255.0f), voff = _mm256_set1_ps(d_off),
               one = _mm256_set1_ps(1.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), top = _mm256_set1_epi32(255);
  __m256i vsum = _mm256_setzero_si256();
  for (j = 0; j + 32 <= lim; j += 32) {
    __m256i q[4];
    for (int t = 0; t < 4; t++) {
      __m256 y =
          _mm256_max_ps(_mm256_fmsub_ps(_mm256_loadu_ps((float *)x + j + 8 * t), vs, vms), lo);
      __m256 n = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      __m256 f = _mm256_sub_ps(y, n);
      __m256 pf = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_fmadd_ps(c4, f, c3), f, c2), f, c1);
      pf = _mm256_fmadd_ps(pf, f, one);
      __m256i ex =
          _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
      __m256 e = _mm256_mul_ps(pf, _mm256_castsi256_ps(ex));
      __m256 d = _mm256_add_ps(_mm256_loadu_ps(dither + j + 8 * t), voff);
      d = _mm256_sub_ps(d, _mm256_and_ps(_mm256_cmp_ps(d, one, _CMP_GE_OQ), one));
      q[t] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_fmadd_ps(e, v255, d)), top);
      vsum = _mm256_add_epi32(vsum, q[t]);
    }
    /* packs interleave 128-bit lanes; the permute puts the 32 bytes back in key order */
    __m256i b =
        _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
    _mm256_storeu_si256((__m256i *)(p + j), _mm256_permutevar8x32_epi32(b, order));
  }
  int32_t s32[8], sum = 0;
  _mm256_storeu_si256((__m256i *)s32, vsum);
  for (int t = 0; t < 8; t++)
    sum += s32[t];
  for (; j < lim; j++) {
    int q = prob_u8(vs_vec_expf((x[j] - mx) * scale), dither[j], d_off);
    p[j] = (uint8_t)q;
    sum += q;
  }
  return sum;
}

/* One row of scores: s32 sums in x (read as s32, overwritten as fp32 logits, then exp) to u8
 * probabilities p (keys at or after lim zero); returns the sum of p. */
VS_CLONES static int32_t probs_u8(f32_alias *x, const int32_t *k_comp, const float *k_inv,
                                  float scale, int n, int lim, const float *dither, float d_off,
                                  uint8_t *p) {
  int32_t sum = 0;
  if (vs_vec_use_exp8()) {
    sum = probs_u8_avx2(x, k_comp, k_inv, scale, lim, dither, d_off, p);
  } else {
    const s32_alias *si = (const s32_alias *)x;
#pragma omp simd
    for (int j = 0; j < lim; j++)
      x[j] = (float)(si[j] - k_comp[j]) * k_inv[j];
    softmax_exp((float *)x, lim, scale);
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < lim; j++) {
      int q = prob_u8(x[j], dither[j], d_off);
      p[j] = (uint8_t)q;
      sum += q;
    }
  }
  for (int j = lim; j < n; j++)
    p[j] = 0;
  return sum;
}

static bool attention_blocked_int8(cpu_ops *c, const vs_attn_args *a, attn_layout L, char *base,
                                   GError **err) {
  int H = a->n_head, hd = a->head_dim, nkv = a->n_kv;
  long hs_k = a->hs_k ? a->hs_k : hd, hs_q = hd;
  int8_t *kh = (int8_t *)(base + L.kh), *vh = (int8_t *)(base + L.vh);
  uint8_t *qb = (uint8_t *)(base + L.qb), *P = (uint8_t *)(base + L.p);
  float *k_inv = (float *)(base + L.k_inv), *v_inv = (float *)(base + L.v_inv);
  float *q_inv = (float *)(base + L.q_inv), *dither = (float *)(base + L.dither);
  int32_t *k_comp = (int32_t *)(base + L.k_comp), *p_sum = (int32_t *)(base + L.p_sum);
  f32_alias *S = (f32_alias *)(base + L.s);
  s32_alias *O = (s32_alias *)(base + L.ob);
#pragma omp parallel for collapse(2) schedule(dynamic, 64)
  for (int h = 0; h < H; h++)
    for (int j = 0; j < nkv; j++) {
      size_t i = (size_t)h * nkv + j;
      size_t off = (size_t)j * a->ld_k + h * hs_k;
      float wide[hd];
      if (a->k16)
        for (int e = 0; e < hd; e++)
          wide[e] = kv_at(NULL, a->k16, (long)(off + e));
      const float *kr = a->k16 ? wide : a->k + off;
      k_inv[i] = quantize_vec(kr, hd, c->w_max, false, (uint8_t *)kh + i * hd, &k_comp[i]);
      k_comp[i] *= 128;
    }
  quantize_values(a, c->w_max, vh, v_inv);
  for (int j = 0; j < nkv; j++)
    dither[j] = (float)fmod(j * 0.6180339887498949, 1.0);
  int bq = attn_block(a->n_q, nkv, H);
  float scale = 1.0f / sqrtf((float)hd);
  for (int i0 = 0; i0 < a->n_q; i0 += bq) {
    int nb = a->n_q - i0 < bq ? a->n_q - i0 : bq;
    cpu_prim *qk = bmm_prim(c, H, nb, hd, nkv, dnnl_acb, true, err);
    cpu_prim *pv = qk ? bmm_prim(c, H, nb, nkv, hd, dnnl_abc, true, err) : NULL;
    if (!pv) return false;
#pragma omp parallel for collapse(2) schedule(dynamic, 16)
    for (int h = 0; h < H; h++)
      for (int r = 0; r < nb; r++)
        q_inv[h * nb + r] = quantize_vec(a->q + (size_t)(i0 + r) * a->ld_q + h * hs_q, hd, 127,
                                         true, qb + ((size_t)h * nb + r) * hd, NULL);
    if (!prim_run(c, qk, 3, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                  (void *[]){qb, kh, (void *)S}, err))
      return false;
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
    for (int h = 0; h < H; h++)
      for (int r = 0; r < nb; r++) {
        size_t row = (size_t)h * nb + r;
        int lim = a->causal ? a->q_pos0 + i0 + r + 1 : nkv;
        float d_off = (float)fmod((i0 + r) * 0.7548776662466927 + h * 0.5698402909980532, 1.0);
        p_sum[row] = probs_u8(S + row * nkv, k_comp + (size_t)h * nkv, k_inv + (size_t)h * nkv,
                              q_inv[row] * scale, nkv, lim, dither, d_off, P + row * nkv);
      }
    if (!prim_run(c, pv, 3, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                  (void *[]){P, vh, (void *)O}, err))
      return false;
#pragma omp parallel for collapse(2) schedule(dynamic, 16)
    for (int r = 0; r < nb; r++)
      for (int h = 0; h < H; h++) {
        const s32_alias *orow = O + ((size_t)h * nb + r) * hd;
        const float *vi = v_inv + (size_t)h * hd;
        float inv = 1.0f / (float)p_sum[(size_t)h * nb + r];
        float *dst = a->o + (size_t)(i0 + r) * a->ld_o + (size_t)h * hd;
        for (int e = 0; e < hd; e++)
          dst[e] = (float)orow[e] * vi[e] * inv;
      }
  }
  return true;
}

static bool attention_blocked(cpu_ops *c, const vs_attn_args *a, vs_ops_ws ws, GError **err) {
  int H = a->n_head, hd = a->head_dim, nkv = a->n_kv;
  attn_layout L = attn_plan(c, a->n_q, nkv, H, hd);
  if (ws.bytes < L.total)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "attention: workspace %zu < %zu bytes", ws.bytes,
            L.total);
  char *base = ws.ptr;
  if (c->dt == dnnl_u8) return attention_blocked_int8(c, a, L, base, err);
  to_heads(c, a->k, a->k16, a->ld_k, a->hs_k, 0, nkv, H, hd, base + L.kh);
  to_heads(c, a->v, a->v16, a->ld_v, a->hs_v, 0, nkv, H, hd, base + L.vh);
  int bq = attn_block(a->n_q, nkv, H);
  float scale = 1.0f / sqrtf((float)hd);
  float *S = (float *)(base + L.s), *O = (float *)(base + L.ob);
  void *P = c->dt == dnnl_bf16 ? (void *)(base + L.p) : (void *)S;
  for (int i0 = 0; i0 < a->n_q; i0 += bq) {
    int nb = a->n_q - i0 < bq ? a->n_q - i0 : bq;
    cpu_prim *qk = bmm_prim(c, H, nb, hd, nkv, dnnl_acb, false, err);
    cpu_prim *pv = qk ? bmm_prim(c, H, nb, nkv, hd, dnnl_abc, false, err) : NULL;
    if (!pv) return false;
    to_heads(c, a->q, NULL, a->ld_q, 0, i0, nb, H, hd, base + L.qb);
    if (!prim_run(c, qk, 3, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                  (void *[]){base + L.qb, base + L.kh, S}, err))
      return false;
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
    for (int h = 0; h < H; h++)
      for (int r = 0; r < nb; r++) {
        float *row = S + ((size_t)h * nb + r) * nkv;
        int lim = a->causal ? a->q_pos0 + i0 + r + 1 : nkv;
        softmax_row(row, nkv, lim, scale);
        if (c->dt == dnnl_bf16) {
          row_to_bf16(row, (bf16_t *)P + ((size_t)h * nb + r) * nkv, nkv);
        }
      }
    if (!prim_run(c, pv, 3, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                  (void *[]){P, base + L.vh, O}, err))
      return false;
#pragma omp parallel for schedule(dynamic, 16)
    for (int r = 0; r < nb; r++)
      for (int h = 0; h < H; h++)
        memcpy(a->o + (size_t)(i0 + r) * a->ld_o + (size_t)h * hd, O + ((size_t)h * nb + r) * hd,
               (size_t)hd * sizeof(float));
  }
  return true;
}

static bool cpu_attention_batch(vs_ops *ops, const vs_attn_args *a, int n, vs_ops_ws ws,
                                GError **err) {
  const vs_attn_args *direct[n > 0 ? n : 1];
  int nd = 0;
  for (int i = 0; i < n; i++) {
    if (a[i].causal && a[i].q_pos0 + a[i].n_q > a[i].n_kv)
      VS_FAIL(err, VS_ERROR_INTERNAL, false, "attention: causal queries end at %d past %d keys",
              a[i].q_pos0 + a[i].n_q, a[i].n_kv);
    if ((a[i].k16 == NULL) != (a[i].v16 == NULL))
      VS_FAIL(err, VS_ERROR_INTERNAL, false, "attention: K and V must both be bf16 or both fp32");
    if (a[i].kv_packed &&
        (a[i].causal || cpu_kv_packed_bytes(ops, a[i].n_kv, a[i].n_head, a[i].head_dim) == 0))
      VS_FAIL(err, VS_ERROR_INTERNAL, false,
              "attention: packed K/V given to a backend or shape without a packed form");
  }
  for (int i = 0; i < n; i++) {
    if (a[i].n_q <= 0) continue;
    if (a[i].n_q < DIRECT_MAX_Q || a[i].kv_packed) /* the packed form has only the direct path */
      direct[nd++] = &a[i];
    else if (!attention_blocked((cpu_ops *)ops, &a[i], ws, err))
      return false;
  }
  if (nd) attention_direct((const cpu_ops *)ops, direct, nd);
  return true;
}

static bool cpu_attention(vs_ops *ops, const vs_attn_args *a, vs_ops_ws ws, GError **err) {
  return cpu_attention_batch(ops, a, 1, ws, err);
}

/* ---- construction ------------------------------------------------------------------------ */

static void cpu_destroy(vs_ops *ops) {
  cpu_ops *c = (cpu_ops *)ops;
  if (c->prims) g_hash_table_destroy(c->prims);
  g_mutex_clear(&c->lock);
  if (c->engine) dnnl_engine_destroy(c->engine);
  g_free(c);
}

vs_ops_precision vs_ops_cpu_auto_precision(void) {
  /* oneDNN's own dispatch is what will run the matmuls, so ask it rather than cpuid: it also
   * honours ONEDNN_MAX_CPU_ISA when a user caps the ISA. */
  dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  bool bf16 = (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
  return bf16 ? VS_OPS_BF16 : VS_OPS_FP32;
}

/* Whether oneDNN's u8 x s8 matmul sums exactly for the largest 8-bit operands (VNNI) or
 * saturates pairs of products at 16 bits (vpmaddubsw on AVX2 and on AVX-512 without VNNI):
 * then weights get 7 bits (w_max). Both a one-row and a many-row shape, as oneDNN may pick
 * different kernels for them. */
static bool probe_int8_exact(cpu_ops *c, int *w_max, GError **err) {
  enum { K = 64, N = 16 };
  static const int rows[] = {1, 64};
  *w_max = 127;
  for (size_t r = 0; r < G_N_ELEMENTS(rows); r++) {
    int m = rows[r];
    dnnl_matmul_desc_t d;
    if (!matmul_desc(&d, m, K, N, dnnl_u8, NULL, false, err)) return false;
    cpu_prim *cp = prim_from_desc(c, (const_dnnl_op_desc_t)&d, NULL, "int8 probe", err);
    if (!cp) return false;
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(cp->pd, dnnl_query_weights_md, 0);
    size_t wbytes = dnnl_memory_desc_get_size(wmd);
    uint8_t *a = g_malloc((size_t)m * K);
    int8_t *w = g_malloc(wbytes);
    int32_t *y = g_new(int32_t, (size_t)m * N);
    memset(a, 255, (size_t)m * K);
    memset(w, 127, wbytes); /* every weight 127 whatever the layout (padding is unused) */
    bool ok = prim_run(c, cp, 3, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                       (void *[]){a, w, y}, err);
    if (ok && y[0] != 255 * 127 * K) *w_max = 64;
    g_free(a);
    g_free(w);
    g_free(y);
    prim_free(cp);
    if (!ok) return false;
  }
  return true;
}

vs_ops *vs_ops_cpu_new(vs_ops_precision precision, GError **err) {
  cpu_ops *c = g_new0(cpu_ops, 1);
  g_mutex_init(&c->lock);
  c->prims = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, prim_free);
  c->dt = precision == VS_OPS_BF16 ? dnnl_bf16 : precision == VS_OPS_INT8 ? dnnl_u8 : dnnl_f32;
  c->attn_dt = precision == VS_OPS_BF16 ? dnnl_bf16 : dnnl_f32;
  c->w_max = 127;
  vs_ops *o = &c->base;
  o->name = precision == VS_OPS_BF16   ? "cpu-bf16"
            : precision == VS_OPS_INT8 ? "cpu-int8"
                                       : "cpu-fp32";
  o->precision = precision == VS_OPS_BF16 || precision == VS_OPS_INT8 ? precision : VS_OPS_FP32;
  o->linear_prepare = cpu_linear_prepare;
  o->conv1d_prepare = cpu_conv1d_prepare;
  o->linear_free = cpu_linear_free;
  o->linear_ws = cpu_linear_ws;
  o->linear = cpu_linear;
  o->conv1d_ws = cpu_conv1d_ws;
  o->conv1d = cpu_conv1d;
  o->layer_norm = cpu_layer_norm;
  o->gelu = cpu_gelu;
  o->add = cpu_add;
  o->softmax = cpu_softmax;
  o->embedding = cpu_embedding;
  o->attention_ws = cpu_attention_ws;
  o->attention = cpu_attention;
  o->attention_batch = cpu_attention_batch;
  o->kv_packed_bytes = cpu_kv_packed_bytes;
  o->kv_pack = cpu_kv_pack;
  o->destroy = cpu_destroy;
  have_avx512 = __builtin_cpu_supports("avx512f");
  have_avx512bf16 =
      have_avx512 && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  dnnl_status_t st = dnnl_engine_create(&c->engine, dnnl_cpu, 0);
  if (st != dnnl_success) {
    cpu_destroy(o);
    VS_FAIL(err, VS_ERROR_INTERNAL, NULL, "oneDNN: no CPU engine: %s", dnnl_status2str(st));
  }
  /* A bf16 matmul that oneDNN cannot run natively would silently be emulated at a fraction of
   * the speed; probe once so that asking for bf16 on such a CPU is an error, not a slowdown. */
  if (c->dt == dnnl_bf16 && vs_ops_cpu_auto_precision() != VS_OPS_BF16) {
    cpu_destroy(o);
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, NULL,
            "bf16 requested but this CPU has no native bf16 (AVX512-BF16 or AMX)");
  }
  if (c->dt == dnnl_u8 && !probe_int8_exact(c, &c->w_max, err)) {
    cpu_destroy(o);
    return NULL;
  }
  return o;
}
