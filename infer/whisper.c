/* The Whisper encoder and decoder, written once against kernels/ops.h.
 *
 * Data layout: activations are row-major [positions][features]. The self-attention cache keeps
 * K and V fused as the fused projection produces them ([positions][2d], K then V): the attention
 * op reads K at column 0 and V at column d with stride 2d. The cross-attention K/V, written once
 * per window and read by every decoder step of every sequence, is kept in the backend's packed
 * form where it has one (vs_ops.kv_pack: the fast CPU backend in bf16 on AVX512-BF16 and in
 * int8 on AVX2), else head-major ([K, V][head][1500][head_dim]) so that each head's keys stream
 * contiguously; in bf16 mode both caches hold bf16, halving what a batched step reads.
 */
#include "whisper.h"

#include "log.h"
#include "ops.h"
#include "vs_error.h"

#include <omp.h>
#include <string.h>

typedef struct {
  const float *g, *b; /* host [d] */
} ln_w;

typedef struct {
  ln_w ln_attn, ln_ffn;
  vs_ops_linear *qkv, *out; /* [3d][d] fused Q|K|V, [d][d] */
  vs_ops_linear *fc1, *fc2; /* [4d][d], [d][4d] */
} enc_layer;

typedef struct {
  ln_w ln_self, ln_cross, ln_ffn;
  vs_ops_linear *qkv, *out;       /* self-attention: [3d][d], [d][d] */
  vs_ops_linear *xq, *xkv, *xout; /* cross-attention: [d][d], [2d][d] fused K|V, [d][d] */
  vs_ops_linear *fc1, *fc2;
} dec_layer;

struct vs_whisper {
  const vs_model *model;
  vs_whisper_hparams hp;
  vs_ops *ops;
  vs_backend_kind backend;
  vs_precision precision;
  int n_threads;
  vs_ops_linear *conv1, *conv2; /* as linears [d][n_mels*3], [d][d*3] */
  const float *enc_pos;         /* host [n_audio_ctx][d] */
  ln_w enc_ln;
  enc_layer *enc;
  const float *tok_emb; /* host [n_vocab][d] */
  const float *dec_pos; /* host [n_text_ctx][d] */
  ln_w dec_ln;
  dec_layer *dec;
  vs_ops_linear *logits; /* the token embedding again, as a [n_vocab][d] linear (tied) */
};

/* One arena per tensor category, each carved from a table of sizes. Memory is host memory for
 * the reference and CPU backends. */
struct vs_whisper_state {
  vs_whisper *w;
  int max_windows, max_seqs;
  int n_encoded; /* windows encoded by the last vs_whisper_encode */
  int dec_rows;  /* new tokens one decoder pass can hold: max(max_seqs, n_text_ctx) */

  /* Encoder activations, one window at a time (a 1500-row GEMM already fills a CPU). */
  void *enc_arena;
  float *e_x;   /* [n_audio_ctx][d_a] residual stream */
  float *e_h;   /* [n_audio_ctx][d_a] normalised input, attention output; finally the output */
  float *e_qkv; /* [n_audio_ctx][3 d_a] */
  float *e_ffn; /* [n_audio_ctx][4 d_a] FFN hidden; also conv1's output [2 n_audio_ctx][d_a] */

  /* K/V caches hold bf16 in bf16 mode (the attention's matmul inputs are bf16 there anyway),
   * fp32 otherwise: a batched decoder step is bound by reading them. kv_elt: bytes per element. */
  bool kv16;
  size_t kv_elt;

  /* Cross-attention K/V: [max_windows][n_text_layer] blocks of cross_bytes each. Where the
   * backend has a packed form for them (vs_ops.kv_packed_bytes), that form; else
   * [K, V][n_text_head][n_audio_ctx][head_dim], head-major so that each head's 1500 keys are one
   * contiguous stream for the decoder. */
  void *cross_arena;
  void *cross_kv;
  bool cross_packed;
  size_t cross_bytes;

  /* Self-attention KV cache: [max_seqs][n_text_layer][n_text_ctx][2 d_t] (K | V per row). */
  void *kv_arena;
  void *self_kv;
  int *cache_len; /* [max_seqs] positions held */

  vs_whisper_stats stats;

  /* Decoder scratch for one pass of up to dec_rows new tokens. */
  void *dec_arena;
  float *d_x;    /* [dec_rows][d_t] residual stream */
  float *d_h;    /* [dec_rows][d_t] normalised input */
  float *d_qkv;  /* [dec_rows][3 d_t] self Q|K|V; cross Q as [dec_rows][d_t] */
  float *d_attn; /* [dec_rows][d_t] attention output */
  float *d_ffn;  /* [dec_rows][4 d_t] */
  float *d_last; /* [max_seqs][d_t] last position of each sequence, final-normed */
  int *d_ids;    /* [dec_rows] token ids of the pass */

  /* Backend workspace: the largest any single op of this state asks for. */
  vs_ops_ws ws;
};

typedef struct {
  const char *name;
  size_t bytes;
  void **dst;
} arena_field;

/* Lays the fields out in one allocation, each 64-byte aligned. */
static void *arena_carve(const arena_field *f, int n) {
  size_t total = 0;
  for (int i = 0; i < n; i++)
    total += (f[i].bytes + 63) & ~(size_t)63;
  /* Big arenas start on a 2 MiB boundary, so that where transparent huge pages are on for every
   * allocation the kernel can back them with huge pages. They are not madvise(MADV_HUGEPAGE)d:
   * on hosts with THP defrag=madvise that makes each first touch compact memory synchronously,
   * measured at 1-2 s of a 7 s job here, far more than the TLB misses it saves. Not cleared
   * either: every field is written before it is read (cache_len by its owner). */
  size_t huge = (size_t)2 << 20;
  bool big = total >= 2 * huge;
  char *base = total ? g_aligned_alloc(1, total, big ? huge : 64) : NULL;
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    *f[i].dst = base + off;
    off += (f[i].bytes + 63) & ~(size_t)63;
  }
  return base;
}

vs_whisper_params vs_whisper_default_params(void) {
  return (vs_whisper_params){.backend = VS_BACKEND_CPU, .precision = VS_PRECISION_AUTO};
}

/* ---- weights ------------------------------------------------------------------------------ */

static const float *tensor(const vs_model *m, const char *name, int rank, long d0, long d1, long d2,
                           bool optional, GError **err) {
  const vs_tensor *t = vs_model_tensor(m, name);
  if (!t) {
    if (optional) return NULL;
    VS_FAIL(err, VS_ERROR_MODEL, NULL, "model: tensor %s is missing", name);
  }
  long want[3] = {d0, d1, d2};
  bool ok = t->rank == rank;
  for (int i = 0; ok && i < rank; i++)
    ok = t->dims[i] == want[i];
  if (!ok)
    VS_FAIL(err, VS_ERROR_MODEL, NULL,
            "model: tensor %s has rank %d [%ld, %ld, %ld], want [%ld, %ld, %ld]", name, t->rank,
            t->dims[0], t->rank > 1 ? t->dims[1] : 0, t->rank > 2 ? t->dims[2] : 0, d0, d1, d2);
  return t->data;
}

static bool get_ln(vs_whisper *w, const char *prefix, int d, ln_w *ln, GError **err) {
  char name[160];
  snprintf(name, sizeof name, "%s/gamma", prefix);
  if (!(ln->g = tensor(w->model, name, 1, d, 0, 0, false, err))) return false;
  snprintf(name, sizeof name, "%s/beta", prefix);
  return (ln->b = tensor(w->model, name, 1, d, 0, 0, false, err)) != NULL;
}

/* A linear "<prefix>/weight" [n_out][n_in] with optional "<prefix>/bias"; convs are the same
 * with a trailing kernel dimension flattened into n_in. */
static vs_ops_linear *get_linear(vs_whisper *w, const char *prefix, int n_out, int n_in, int k,
                                 GError **err) {
  char name[160];
  snprintf(name, sizeof name, "%s/weight", prefix);
  const float *wt = k ? tensor(w->model, name, 3, n_out, n_in, k, false, err)
                      : tensor(w->model, name, 2, n_out, n_in, 0, false, err);
  if (!wt) return NULL;
  snprintf(name, sizeof name, "%s/bias", prefix);
  const float *b = tensor(w->model, name, 1, n_out, 0, 0, true, err);
  if (!b && err && *err) return NULL;
  return k ? w->ops->conv1d_prepare(w->ops, wt, b, n_out, n_in * k, prefix, err)
           : w->ops->linear_prepare(w->ops, wt, b, n_out, n_in, prefix, err);
}

void vs_whisper_free(vs_whisper *w) {
  if (!w) return;
  vs_ops *o = w->ops;
  if (o) {
    o->linear_free(o, w->conv1);
    o->linear_free(o, w->conv2);
    o->linear_free(o, w->logits);
    for (int i = 0; w->enc && i < w->hp.n_audio_layer; i++) {
      enc_layer *L = &w->enc[i];
      vs_ops_linear *ls[] = {L->qkv, L->out, L->fc1, L->fc2};
      for (size_t j = 0; j < G_N_ELEMENTS(ls); j++)
        o->linear_free(o, ls[j]);
    }
    for (int i = 0; w->dec && i < w->hp.n_text_layer; i++) {
      dec_layer *L = &w->dec[i];
      vs_ops_linear *ls[] = {L->qkv, L->out, L->xq, L->xkv, L->xout, L->fc1, L->fc2};
      for (size_t j = 0; j < G_N_ELEMENTS(ls); j++)
        o->linear_free(o, ls[j]);
    }
    vs_ops_free(o);
  }
  g_free(w->enc);
  g_free(w->dec);
  g_free(w);
}

static bool prepare_weights(vs_whisper *w, GError **err) {
  const vs_whisper_hparams *hp = &w->hp;
  int da = hp->n_audio_state, dt = hp->n_text_state;
  char p[160];
  if (!(w->conv1 = get_linear(w, "encoder/conv1", da, hp->n_mels, 3, err))) return false;
  if (!(w->conv2 = get_linear(w, "encoder/conv2", da, da, 3, err))) return false;
  if (!(w->enc_pos = tensor(w->model, "encoder/position_encodings/encodings", 2, hp->n_audio_ctx,
                            da, 0, false, err)))
    return false;
  if (!get_ln(w, "encoder/layer_norm", da, &w->enc_ln, err)) return false;
  w->enc = g_new0(enc_layer, hp->n_audio_layer);
  for (int i = 0; i < hp->n_audio_layer; i++) {
    enc_layer *L = &w->enc[i];
#define PFX(fmt) (snprintf(p, sizeof p, "encoder/layer_%d/" fmt, i), p)
    if (!get_ln(w, PFX("self_attention/layer_norm"), da, &L->ln_attn, err)) return false;
    if (!(L->qkv = get_linear(w, PFX("self_attention/linear_0"), 3 * da, da, 0, err))) return false;
    if (!(L->out = get_linear(w, PFX("self_attention/linear_1"), da, da, 0, err))) return false;
    if (!get_ln(w, PFX("ffn/layer_norm"), da, &L->ln_ffn, err)) return false;
    if (!(L->fc1 = get_linear(w, PFX("ffn/linear_0"), 4 * da, da, 0, err))) return false;
    if (!(L->fc2 = get_linear(w, PFX("ffn/linear_1"), da, 4 * da, 0, err))) return false;
#undef PFX
  }
  if (!(w->tok_emb =
            tensor(w->model, "decoder/embeddings/weight", 2, hp->n_vocab, dt, 0, false, err)))
    return false;
  if (!(w->dec_pos = tensor(w->model, "decoder/position_encodings/encodings", 2, hp->n_text_ctx, dt,
                            0, false, err)))
    return false;
  if (!get_ln(w, "decoder/layer_norm", dt, &w->dec_ln, err)) return false;
  w->dec = g_new0(dec_layer, hp->n_text_layer);
  for (int i = 0; i < hp->n_text_layer; i++) {
    dec_layer *L = &w->dec[i];
#define PFX(fmt) (snprintf(p, sizeof p, "decoder/layer_%d/" fmt, i), p)
    if (!get_ln(w, PFX("self_attention/layer_norm"), dt, &L->ln_self, err)) return false;
    if (!(L->qkv = get_linear(w, PFX("self_attention/linear_0"), 3 * dt, dt, 0, err))) return false;
    if (!(L->out = get_linear(w, PFX("self_attention/linear_1"), dt, dt, 0, err))) return false;
    if (!get_ln(w, PFX("attention/layer_norm"), dt, &L->ln_cross, err)) return false;
    if (!(L->xq = get_linear(w, PFX("attention/linear_0"), dt, dt, 0, err))) return false;
    if (!(L->xkv = get_linear(w, PFX("attention/linear_1"), 2 * dt, da, 0, err))) return false;
    if (!(L->xout = get_linear(w, PFX("attention/linear_2"), dt, dt, 0, err))) return false;
    if (!get_ln(w, PFX("ffn/layer_norm"), dt, &L->ln_ffn, err)) return false;
    if (!(L->fc1 = get_linear(w, PFX("ffn/linear_0"), 4 * dt, dt, 0, err))) return false;
    if (!(L->fc2 = get_linear(w, PFX("ffn/linear_1"), dt, 4 * dt, 0, err))) return false;
#undef PFX
  }
  w->logits = w->ops->linear_prepare(w->ops, w->tok_emb, NULL, hp->n_vocab, dt,
                                     "decoder/embeddings (output projection)", err);
  return w->logits != NULL;
}

vs_whisper *vs_whisper_init(const vs_model *model, const vs_whisper_params *params, GError **err) {
  vs_whisper_params def = vs_whisper_default_params();
  if (!params) params = &def;
  const vs_whisper_hparams *hp = vs_model_hparams(model);
  if (hp->n_audio_state % hp->n_audio_head || hp->n_text_state % hp->n_text_head ||
      hp->n_audio_state != hp->n_text_state)
    VS_FAIL(err, VS_ERROR_MODEL, NULL,
            "model: unsupported shape (audio %d/%d heads, text %d/%d heads)", hp->n_audio_state,
            hp->n_audio_head, hp->n_text_state, hp->n_text_head);
  vs_whisper *w = g_new0(vs_whisper, 1);
  w->model = model;
  w->hp = *hp;
  w->backend = params->backend;
  w->n_threads = params->n_threads;
  switch (params->backend) {
  case VS_BACKEND_REF:
    if (params->precision == VS_PRECISION_BF16 || params->precision == VS_PRECISION_INT8) {
      g_free(w);
      VS_FAIL(err, VS_ERROR_UNSUPPORTED, NULL, "whisper: the reference backend is fp32 only");
    }
    w->precision = VS_PRECISION_FP32;
    w->ops = vs_ops_ref_new(err);
    break;
  case VS_BACKEND_CPU: {
    vs_ops_precision p = params->precision == VS_PRECISION_AUTO   ? vs_ops_cpu_auto_precision()
                         : params->precision == VS_PRECISION_BF16 ? VS_OPS_BF16
                         : params->precision == VS_PRECISION_INT8 ? VS_OPS_INT8
                                                                  : VS_OPS_FP32;
    w->precision = p == VS_OPS_BF16   ? VS_PRECISION_BF16
                   : p == VS_OPS_INT8 ? VS_PRECISION_INT8
                                      : VS_PRECISION_FP32;
    w->ops = vs_ops_cpu_new(p, err);
    break;
  }
  case VS_BACKEND_CUDA:
    g_free(w);
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, NULL,
            "whisper: the CUDA backend is not built yet; use the cpu backend");
  default:
    g_free(w);
    VS_FAIL(err, VS_ERROR_CONFIG, NULL, "whisper: unknown backend %d", (int)params->backend);
  }
  if (!w->ops || !prepare_weights(w, err)) {
    vs_whisper_free(w);
    return NULL;
  }
  vs_info("whisper: backend %s, %d+%d layers, d=%d", w->ops->name, hp->n_audio_layer,
          hp->n_text_layer, hp->n_text_state);
  return w;
}

const vs_whisper_hparams *vs_whisper_hparams_of(const vs_whisper *w) {
  return &w->hp;
}

const char *vs_precision_name(vs_precision p) {
  switch (p) {
  case VS_PRECISION_AUTO: return "auto";
  case VS_PRECISION_FP32: return "fp32";
  case VS_PRECISION_BF16: return "bf16";
  case VS_PRECISION_INT8: return "int8";
  }
  return "?";
}

int vs_precision_parse(const char *name) {
  for (int p = VS_PRECISION_AUTO; p <= VS_PRECISION_INT8; p++)
    if (name && !strcmp(name, vs_precision_name(p))) return p;
  return -1;
}

vs_precision vs_whisper_precision(const vs_whisper *w) {
  return w->precision;
}

/* ---- state -------------------------------------------------------------------------------- */

static size_t max_sz(size_t a, size_t b) {
  return a > b ? a : b;
}

vs_whisper_state *vs_whisper_state_init(vs_whisper *w, int max_windows, int max_seqs,
                                        GError **err) {
  if (max_windows < 1 || max_seqs < 1)
    VS_FAIL(err, VS_ERROR_CONFIG, NULL,
            "whisper: state needs at least one window and one "
            "sequence (got %d, %d)",
            max_windows, max_seqs);
  const vs_whisper_hparams *hp = &w->hp;
  const vs_ops *o = w->ops;
  size_t ta = hp->n_audio_ctx, da = hp->n_audio_state, dt = hp->n_text_state;
  size_t tc = hp->n_text_ctx, nl = hp->n_text_layer, f = sizeof(float);
  vs_whisper_state *st = g_new0(vs_whisper_state, 1);
  st->w = w;
  st->max_windows = max_windows;
  st->max_seqs = max_seqs;
  st->dec_rows = max_seqs > (int)tc ? max_seqs : (int)tc;
  st->kv16 = w->precision == VS_PRECISION_BF16 || w->precision == VS_PRECISION_INT8;
  st->kv_elt = st->kv16 ? sizeof(unsigned short) : sizeof(float);
  size_t packed = o->kv_packed_bytes
                      ? o->kv_packed_bytes(o, (int)ta, hp->n_text_head, (int)dt / hp->n_text_head)
                      : 0;
  st->cross_packed = packed > 0;
  st->cross_bytes = packed ? packed : ta * 2 * dt * st->kv_elt;
  size_t dr = st->dec_rows;

  const arena_field enc[] = {
      {"e_x", ta * da * f, (void **)&st->e_x},
      {"e_h", ta * da * f, (void **)&st->e_h},
      {"e_qkv", ta * 3 * da * f, (void **)&st->e_qkv},
      {"e_ffn", max_sz(ta * 4 * da, 2 * ta * da) * f, (void **)&st->e_ffn},
  };
  const arena_field cross[] = {
      {"cross_kv", (size_t)max_windows * nl * st->cross_bytes, (void **)&st->cross_kv},
  };
  const arena_field kv[] = {
      {"self_kv", (size_t)max_seqs * nl * tc * 2 * dt * st->kv_elt, (void **)&st->self_kv},
      {"cache_len", (size_t)max_seqs * sizeof(int), (void **)&st->cache_len},
  };
  const arena_field dec[] = {
      {"d_x", dr * dt * f, (void **)&st->d_x},
      {"d_h", dr * dt * f, (void **)&st->d_h},
      {"d_qkv", dr * 3 * dt * f, (void **)&st->d_qkv},
      {"d_attn", dr * dt * f, (void **)&st->d_attn},
      {"d_ffn", dr * 4 * dt * f, (void **)&st->d_ffn},
      {"d_last", (size_t)max_seqs * dt * f, (void **)&st->d_last},
      {"d_ids", dr * sizeof(int), (void **)&st->d_ids},
  };
  int ha = hp->n_audio_head, ht = hp->n_text_head;
  size_t ws = 0;
  ws = max_sz(ws, o->conv1d_ws(o, hp->n_mels, 2 * (int)ta, 1));
  ws = max_sz(ws, o->conv1d_ws(o, (int)da, 2 * (int)ta, 2));
  /* widest input 4d (fc2), widest accumulated output d (out, fc2) */
  ws = max_sz(ws, o->linear_ws(o, (int)ta, 4 * (int)da, (int)da));
  ws = max_sz(ws, o->attention_ws(o, (int)ta, (int)ta, ha, (int)da / ha));
  ws = max_sz(ws, o->linear_ws(o, (int)dr, 4 * (int)dt, (int)dt));
  ws = max_sz(ws, o->attention_ws(o, (int)tc, (int)tc, ht, (int)dt / ht));
  ws = max_sz(ws, o->attention_ws(o, (int)tc, (int)ta, ht, (int)dt / ht));
  const arena_field wsf[] = {{"ws", ws, &st->ws.ptr}};
  st->ws.bytes = ws;

  st->enc_arena = arena_carve(enc, G_N_ELEMENTS(enc));
  st->cross_arena = arena_carve(cross, G_N_ELEMENTS(cross));
  st->kv_arena = arena_carve(kv, G_N_ELEMENTS(kv));
  memset(st->cache_len, 0, (size_t)max_seqs * sizeof(int));
  st->dec_arena = arena_carve(dec, G_N_ELEMENTS(dec));
  arena_carve(wsf, 1);
  size_t total = 0;
  const arena_field *tabs[] = {enc, cross, kv, dec, wsf};
  const int ns[] = {G_N_ELEMENTS(enc), G_N_ELEMENTS(cross), G_N_ELEMENTS(kv), G_N_ELEMENTS(dec), 1};
  for (int t = 0; t < 5; t++)
    for (int i = 0; i < ns[t]; i++)
      total += tabs[t][i].bytes;
  vs_debug("whisper: state for %d windows, %d sequences: %.1f MiB", max_windows, max_seqs,
           total / 1048576.0);
  return st;
}

void vs_whisper_state_free(vs_whisper_state *st) {
  if (!st) return;
  g_aligned_free(st->enc_arena);
  g_aligned_free(st->cross_arena);
  g_aligned_free(st->kv_arena);
  g_aligned_free(st->dec_arena);
  g_aligned_free(st->ws.ptr);
  g_free(st);
}

static void use_threads(const vs_whisper *w) {
  if (w->n_threads > 0) omp_set_num_threads(w->n_threads);
}

/* ---- encoder ------------------------------------------------------------------------------ */

static void *cross_at(const vs_whisper_state *st, int window, int layer) {
  const vs_whisper_hparams *hp = &st->w->hp;
  return (char *)st->cross_kv + ((size_t)window * hp->n_text_layer + layer) * st->cross_bytes;
}

/* K at element 0 and V at element v_off of a cache, in the cache's type. */
static void set_kv(const vs_whisper_state *st, vs_attn_args *a, const void *kv, size_t v_off) {
  if (st->kv16) {
    a->k16 = kv;
    a->v16 = a->k16 + v_off;
  } else {
    a->k = kv;
    a->v = a->k + v_off;
  }
}

/* The fused projection's [ta][2d] (K | V per row) into the cross cache (packed or head-major). */
static void cross_store(const vs_whisper_state *st, void *dst, const float *x, int ta, int d,
                        int n_head) {
  int hd = d / n_head;
  if (st->cross_packed) {
    st->w->ops->kv_pack(st->w->ops, x, 2L * d, ta, n_head, hd, dst);
    return;
  }
#pragma omp parallel for schedule(dynamic, 32)
  for (int t = 0; t < ta; t++)
    for (int kh = 0; kh < 2 * n_head; kh++) {
      const float *src = x + (size_t)t * 2 * d + (size_t)kh * hd;
      size_t o = ((size_t)kh * ta + t) * hd;
      if (st->kv16)
        vs_ops_f32_to_bf16(src, (unsigned short *)dst + o, hd);
      else
        memcpy((float *)dst + o, src, (size_t)hd * sizeof(float));
    }
}

/* rows x [n][width] fp32 (leading dimension ld) into the cache's rows [n][width]. */
static void kv_store(const vs_whisper_state *st, void *dst, const float *x, int n, int width,
                     long ld) {
#pragma omp parallel for schedule(dynamic, 16) if (n > 64)
  for (int i = 0; i < n; i++) {
    if (st->kv16)
      vs_ops_f32_to_bf16(x + i * ld, (unsigned short *)dst + (size_t)i * width, width);
    else
      memcpy((float *)dst + (size_t)i * width, x + i * ld, (size_t)width * sizeof(float));
  }
}

static bool encode_window(vs_whisper_state *st, const float *mel, int window, GError **err) {
  vs_whisper *w = st->w;
  vs_ops *o = w->ops;
  const vs_whisper_hparams *hp = &w->hp;
  int ta = hp->n_audio_ctx, d = hp->n_audio_state, t_mel = 2 * ta;
  /* mel is channel-major [n_mels][3000]; conv1's output is time-major [3000][d]. */
  if (!o->conv1d(o, w->conv1, mel, hp->n_mels, t_mel, 1, t_mel, 1, st->e_ffn, VS_LINEAR_GELU,
                 st->ws, err))
    return false;
  if (!o->conv1d(o, w->conv2, st->e_ffn, d, t_mel, d, 1, 2, st->e_x, VS_LINEAR_GELU, st->ws, err))
    return false;
  o->add(o, st->e_x, w->enc_pos, (size_t)ta * d);
  int hd = d / hp->n_audio_head;
  for (int l = 0; l < hp->n_audio_layer; l++) {
    const enc_layer *L = &w->enc[l];
    o->layer_norm(o, st->e_x, ta, d, L->ln_attn.g, L->ln_attn.b, st->e_h);
    if (!o->linear(o, L->qkv, st->e_h, ta, st->e_qkv, 0, st->ws, err)) return false;
    vs_attn_args a = {.q = st->e_qkv,
                      .k = st->e_qkv + d,
                      .v = st->e_qkv + 2 * d,
                      .o = st->e_h,
                      .ld_q = 3 * d,
                      .ld_k = 3 * d,
                      .ld_v = 3 * d,
                      .ld_o = d,
                      .n_q = ta,
                      .n_kv = ta,
                      .n_head = hp->n_audio_head,
                      .head_dim = hd};
    if (!o->attention(o, &a, st->ws, err)) return false;
    if (!o->linear(o, L->out, st->e_h, ta, st->e_x, VS_LINEAR_ACCUM, st->ws, err)) return false;
    o->layer_norm(o, st->e_x, ta, d, L->ln_ffn.g, L->ln_ffn.b, st->e_h);
    if (!o->linear(o, L->fc1, st->e_h, ta, st->e_ffn, VS_LINEAR_GELU, st->ws, err)) return false;
    if (!o->linear(o, L->fc2, st->e_ffn, ta, st->e_x, VS_LINEAR_ACCUM, st->ws, err)) return false;
  }
  o->layer_norm(o, st->e_x, ta, d, w->enc_ln.g, w->enc_ln.b, st->e_h);
  int dt = hp->n_text_state;
  for (int l = 0; l < hp->n_text_layer; l++) {
    /* e_qkv ([ta][3d]) is free by now and holds the [ta][2 d_t] before it is laid out. */
    if (!o->linear(o, w->dec[l].xkv, st->e_h, ta, st->e_qkv, 0, st->ws, err)) return false;
    cross_store(st, cross_at(st, window, l), st->e_qkv, ta, dt, hp->n_text_head);
  }
  return true;
}

bool vs_whisper_encode(vs_whisper_state *st, const float *mel, int n_windows, GError **err) {
  if (n_windows < 1 || n_windows > st->max_windows)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "whisper: encode of %d windows, state holds %d",
            n_windows, st->max_windows);
  use_threads(st->w);
  const vs_whisper_hparams *hp = &st->w->hp;
  size_t per = (size_t)hp->n_mels * 2 * hp->n_audio_ctx;
  st->n_encoded = 0;
  gint64 t0 = g_get_monotonic_time();
  for (int i = 0; i < n_windows; i++)
    if (!encode_window(st, mel + i * per, i, err)) return false;
  st->n_encoded = n_windows;
  st->stats.encode_s += (g_get_monotonic_time() - t0) / 1e6;
  st->stats.windows += n_windows;
  return true;
}

bool vs_whisper_encode_at(vs_whisper_state *st, const float *mel, int window, GError **err) {
  if (window < 0 || window >= st->max_windows)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "whisper: encode into window %d, state holds %d", window,
            st->max_windows);
  use_threads(st->w);
  gint64 t0 = g_get_monotonic_time();
  if (!encode_window(st, mel, window, err)) return false;
  if (st->n_encoded < window + 1) st->n_encoded = window + 1;
  st->stats.encode_s += (g_get_monotonic_time() - t0) / 1e6;
  st->stats.windows += 1;
  return true;
}

bool vs_whisper_encoder_output(const vs_whisper_state *st, float *out, GError **err) {
  if (st->n_encoded < 1) VS_FAIL(err, VS_ERROR_INTERNAL, false, "whisper: nothing encoded yet");
  const vs_whisper_hparams *hp = &st->w->hp;
  memcpy(out, st->e_h, (size_t)hp->n_audio_ctx * hp->n_audio_state * sizeof(float));
  return true;
}

/* ---- decoder ------------------------------------------------------------------------------ */

static void *self_at(const vs_whisper_state *st, int slot, int layer) {
  const vs_whisper_hparams *hp = &st->w->hp;
  size_t per = (size_t)hp->n_text_ctx * 2 * hp->n_text_state;
  return (char *)st->self_kv + ((size_t)slot * hp->n_text_layer + layer) * per * st->kv_elt;
}

/* Queries of one cross-attention group at most (see decode_pass). */
enum { CROSS_GROUP_MAX = 16 };

/* Sequences [s0, s1): their new tokens fit dec_rows together. */
static bool decode_pass(vs_whisper_state *st, int s0, int s1, const int *seq_slot,
                        const int *window_of, const int *const *tokens, const int *n_tokens,
                        float *logits, GError **err) {
  vs_whisper *w = st->w;
  vs_ops *o = w->ops;
  const vs_whisper_hparams *hp = &w->hp;
  int d = hp->n_text_state, hd = d / hp->n_text_head;
  int row0[s1 - s0 + 1];
  vs_attn_args as[s1 - s0];
  int m = 0;
  for (int s = s0; s < s1; s++) {
    row0[s - s0] = m;
    memcpy(st->d_ids + m, tokens[s], (size_t)n_tokens[s] * sizeof(int));
    m += n_tokens[s];
  }
  row0[s1 - s0] = m;
  o->embedding(o, w->tok_emb, d, st->d_ids, m, st->d_x);
  for (int s = s0; s < s1; s++)
    o->add(o, st->d_x + (size_t)row0[s - s0] * d,
           w->dec_pos + (size_t)st->cache_len[seq_slot[s]] * d, (size_t)n_tokens[s] * d);

  for (int l = 0; l < hp->n_text_layer; l++) {
    const dec_layer *L = &w->dec[l];
    o->layer_norm(o, st->d_x, m, d, L->ln_self.g, L->ln_self.b, st->d_h);
    if (!o->linear(o, L->qkv, st->d_h, m, st->d_qkv, 0, st->ws, err)) return false;
    for (int s = s0; s < s1; s++) {
      int len = st->cache_len[seq_slot[s]], n = n_tokens[s], r = row0[s - s0];
      char *kv = self_at(st, seq_slot[s], l);
      kv_store(st, kv + (size_t)len * 2 * d * st->kv_elt, st->d_qkv + (size_t)r * 3 * d + d, n,
               2 * d, 3 * d);
      vs_attn_args a = {.q = st->d_qkv + (size_t)r * 3 * d,
                        .o = st->d_attn + (size_t)r * d,
                        .ld_q = 3 * d,
                        .ld_k = 2 * d,
                        .ld_v = 2 * d,
                        .ld_o = d,
                        .n_q = n,
                        .n_kv = len + n,
                        .n_head = hp->n_text_head,
                        .head_dim = hd,
                        .causal = true,
                        .q_pos0 = len};
      set_kv(st, &a, kv, d);
      as[s - s0] = a;
    }
    if (!o->attention_batch(o, as, s1 - s0, st->ws, err)) return false;
    if (!o->linear(o, L->out, st->d_attn, m, st->d_x, VS_LINEAR_ACCUM, st->ws, err)) return false;

    o->layer_norm(o, st->d_x, m, d, L->ln_cross.g, L->ln_cross.b, st->d_h);
    if (!o->linear(o, L->xq, st->d_h, m, st->d_qkv, 0, st->ws, err)) return false;
    int n_cross = 0;
    for (int s = s0; s < s1; s++) {
      int r = row0[s - s0], n_q = n_tokens[s];
      /* Consecutive one-token rows of the same window (the beams or samples of one job) become
       * one attention with several queries, so that the backend reads that window's K/V once
       * per step for all of them. Capped well below the size where a backend would switch to
       * its many-query path, so that grouping never changes the arithmetic. */
      while (n_q == 1 && s + 1 < s1 && n_tokens[s + 1] == 1 && window_of[s + 1] == window_of[s] &&
             row0[s + 1 - s0] - r < CROSS_GROUP_MAX)
        s++;
      n_q = row0[s + 1 - s0] - r;
      const void *kv = cross_at(st, window_of[s], l);
      vs_attn_args a = {.q = st->d_qkv + (size_t)r * d,
                        .o = st->d_attn + (size_t)r * d,
                        .ld_q = d,
                        .ld_k = hd,
                        .ld_v = hd,
                        .hs_k = (long)hp->n_audio_ctx * hd,
                        .hs_v = (long)hp->n_audio_ctx * hd,
                        .ld_o = d,
                        .n_q = n_q,
                        .n_kv = hp->n_audio_ctx,
                        .n_head = hp->n_text_head,
                        .head_dim = hd};
      if (st->cross_packed)
        a.kv_packed = kv;
      else
        set_kv(st, &a, kv, (size_t)hp->n_audio_ctx * d);
      as[n_cross++] = a;
    }
    if (!o->attention_batch(o, as, n_cross, st->ws, err)) return false;
    if (!o->linear(o, L->xout, st->d_attn, m, st->d_x, VS_LINEAR_ACCUM, st->ws, err)) return false;

    o->layer_norm(o, st->d_x, m, d, L->ln_ffn.g, L->ln_ffn.b, st->d_h);
    if (!o->linear(o, L->fc1, st->d_h, m, st->d_ffn, VS_LINEAR_GELU, st->ws, err)) return false;
    if (!o->linear(o, L->fc2, st->d_ffn, m, st->d_x, VS_LINEAR_ACCUM, st->ws, err)) return false;
  }

  /* Only the last position of each sequence needs logits: the final norm and the (large)
   * vocabulary projection run on those rows alone. */
  int ns = s1 - s0;
  for (int s = 0; s < ns; s++)
    memcpy(st->d_last + (size_t)s * d, st->d_x + (size_t)(row0[s + 1] - 1) * d,
           (size_t)d * sizeof(float));
  o->layer_norm(o, st->d_last, ns, d, w->dec_ln.g, w->dec_ln.b, st->d_last);
  if (!o->linear(o, w->logits, st->d_last, ns, logits + (size_t)s0 * hp->n_vocab, 0, st->ws, err))
    return false;
  for (int s = s0; s < s1; s++)
    st->cache_len[seq_slot[s]] += n_tokens[s];
  return true;
}

bool vs_whisper_decode(vs_whisper_state *st, int n_seq, const int *seq_slot, const int *window_of,
                       const int *const *tokens, const int *n_tokens, float *logits, GError **err) {
  const vs_whisper_hparams *hp = &st->w->hp;
  if (n_seq < 0 || n_seq > st->max_seqs)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "whisper: decode of %d sequences, state holds %d", n_seq,
            st->max_seqs);
  /* Everything is checked before anything is written, so a refused call leaves the caches as
   * they were. */
  for (int s = 0; s < n_seq; s++) {
    int slot = seq_slot[s];
    if (slot < 0 || slot >= st->max_seqs)
      VS_FAIL(err, VS_ERROR_INTERNAL, false, "whisper: sequence %d: slot %d out of range", s, slot);
    for (int t = 0; t < s; t++)
      if (seq_slot[t] == slot)
        VS_FAIL(err, VS_ERROR_INTERNAL, false, "whisper: slot %d used twice in one decode", slot);
    if (window_of[s] < 0 || window_of[s] >= st->n_encoded)
      VS_FAIL(err, VS_ERROR_INTERNAL, false, "whisper: sequence %d: window %d not encoded (%d are)",
              s, window_of[s], st->n_encoded);
    if (n_tokens[s] < 1 || st->cache_len[slot] + n_tokens[s] > hp->n_text_ctx)
      VS_FAIL(err, VS_ERROR_INTERNAL, false,
              "whisper: sequence %d: %d new tokens after %d do not fit %d positions", s,
              n_tokens[s], st->cache_len[slot], hp->n_text_ctx);
    for (int i = 0; i < n_tokens[s]; i++)
      if (tokens[s][i] < 0 || tokens[s][i] >= hp->n_vocab)
        VS_FAIL(err, VS_ERROR_INTERNAL, false, "whisper: sequence %d: token %d out of range", s,
                tokens[s][i]);
  }
  use_threads(st->w);
  gint64 t0 = g_get_monotonic_time();
  int s0 = 0;
  while (s0 < n_seq) {
    int s1 = s0, rows = 0;
    while (s1 < n_seq && rows + n_tokens[s1] <= st->dec_rows)
      rows += n_tokens[s1++];
    if (!decode_pass(st, s0, s1, seq_slot, window_of, tokens, n_tokens, logits, err)) return false;
    s0 = s1;
  }
  st->stats.decode_s += (g_get_monotonic_time() - t0) / 1e6;
  st->stats.decode_calls++;
  st->stats.decode_rows += n_seq;
  return true;
}

vs_whisper_stats vs_whisper_state_stats(const vs_whisper_state *st) {
  return st->stats;
}

void vs_whisper_cache_reset(vs_whisper_state *st, int slot) {
  if (slot >= 0 && slot < st->max_seqs) st->cache_len[slot] = 0;
}

void vs_whisper_cache_copy(vs_whisper_state *st, int dst_slot, int src_slot) {
  if (dst_slot == src_slot || dst_slot < 0 || src_slot < 0 || dst_slot >= st->max_seqs ||
      src_slot >= st->max_seqs)
    return;
  const vs_whisper_hparams *hp = &st->w->hp;
  int len = st->cache_len[src_slot];
  for (int l = 0; l < hp->n_text_layer; l++)
    memcpy(self_at(st, dst_slot, l), self_at(st, src_slot, l),
           (size_t)len * 2 * hp->n_text_state * st->kv_elt);
  st->cache_len[dst_slot] = len;
}

int vs_whisper_cache_len(const vs_whisper_state *st, int slot) {
  return slot >= 0 && slot < st->max_seqs ? st->cache_len[slot] : -1;
}
