/* The compute backend interface the Whisper network (infer/whisper.c) is written against, once.
 *
 * A backend is a table of operations plus its own prepared state. The network only ever calls
 * through the table, so a new backend (CUDA) is a new table and never a change in infer/.
 * Backends today: the plain-C reference (ref_ops.c, fp32, simple loops: the oracle every other
 * backend is tested against) and the fast CPU path (cpu_ops.c: oneDNN matmuls, OpenMP).
 *
 * Conventions shared by every op:
 * - Activations are row-major fp32 in the backend's memory (host for ref/cpu), rows = positions.
 * - Weights are fp32 host arrays as the model holds them; linear weights are W[out][in] and the
 *   op computes y = x W^T + b. A backend prepares each weight once (pack, convert to bf16) into a
 *   vs_ops_linear; the model's arrays must outlive the prepared weight (ref keeps pointers).
 * - Ops that need temporary memory take a vs_ops_ws; its size comes from the matching *_ws
 *   query, so that callers carve it from an arena sized in advance instead of the backend
 *   allocating per call (and so that many callers can share one read-only backend).
 * - Precision: bf16 means bf16 weights and activations at the matmul inputs with fp32
 *   accumulation and fp32 outputs; layer norm, softmax, GELU and residuals always run in fp32.
 *   int8 is CTranslate2's int8 for linears: weights int8 per output row (scale 127 / amax;
 *   64 / amax where the CPU's int8 dot products would saturate, see cpu_ops.c), activations
 *   int8 per row at run time, exact int32 sums, dequantised to fp32 before the bias; convs,
 *   attention and everything else in fp32.
 */
#ifndef VS_OPS_H
#define VS_OPS_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum { VS_OPS_FP32 = 1, VS_OPS_BF16 = 2, VS_OPS_INT8 = 3 } vs_ops_precision;

/* Flags of linear and conv1d: fused epilogues. GELU is the exact (erf) one. ACCUM adds the
 * result to what y already holds (residual connections) instead of overwriting it. */
enum { VS_LINEAR_GELU = 1u << 0, VS_LINEAR_ACCUM = 1u << 1 };

typedef struct {
  void *ptr;    /* backend memory (host for ref/cpu) */
  size_t bytes; /* capacity */
} vs_ops_ws;

/* A weight prepared for one backend; opaque, read-only once prepared. */
typedef struct vs_ops_linear vs_ops_linear;

/* Scaled dot-product multi-head attention. Head h of row i of Q is q[i*ld_q + h*head_dim ...];
 * same layout for K, V and the output O. Scale is 1/sqrt(head_dim); softmax in fp32. With
 * causal, query i sits at absolute position q_pos0 + i and sees keys 0..q_pos0+i (the KV cache
 * holds positions 0..n_kv-1, so n_kv >= q_pos0 + n_q). */
typedef struct {
  const float *q, *k, *v;
  float *o;
  /* Where set, K and V are bf16 (round-to-nearest-even) at these addresses instead of k and v,
   * with the same leading dimensions in elements: caches kept in bf16 halve the bytes that a
   * decoder step reads, which is what bounds it. */
  const unsigned short *k16, *v16;
  int ld_q, ld_k, ld_v, ld_o;
  /* Elements from head h to head h+1 of K and of V; 0: head_dim (heads side by side in a row,
   * as above). A head-major cache ([head][n_kv][head_dim], ld = head_dim) lets each head's
   * keys be read as one contiguous stream. */
  long hs_k, hs_v;
  /* Where set: K and V of every head in the backend's packed form (vs_ops.kv_pack); k, v, k16,
   * v16, ld_k, ld_v, hs_k and hs_v are then unused. Not causal; only where kv_packed_bytes of
   * this backend and shape is not 0. */
  const void *kv_packed;
  int n_q, n_kv, n_head, head_dim;
  bool causal;
  int q_pos0;
} vs_attn_args;

typedef struct vs_ops vs_ops;
struct vs_ops {
  const char *name; /* "ref", "cpu-fp32", "cpu-bf16" */
  vs_ops_precision precision;

  /* w [n_out][n_in], b [n_out] or NULL. */
  vs_ops_linear *(*linear_prepare)(vs_ops *ops, const float *w, const float *b, int n_out, int n_in,
                                   const char *what, GError **err);
  void (*linear_free)(vs_ops *ops, vs_ops_linear *lin);
  /* Workspace of linear for m rows of n_in inputs; n_out_accum: the output width where the
   * call has VS_LINEAR_ACCUM, else 0 (a backend may need room for a result it adds to y). */
  size_t (*linear_ws)(const vs_ops *ops, int m, int n_in, int n_out_accum);
  /* x [m][n_in] -> y [m][n_out]; flags VS_LINEAR_*. */
  bool (*linear)(vs_ops *ops, const vs_ops_linear *lin, const float *x, int m, float *y,
                 unsigned flags, vs_ops_ws ws, GError **err);

  /* Convolution, kernel 3, padding 1, stride 1 or 2, as im2col + linear. The weight is the
   * conv's [c_out][c_in][3] prepared as a linear [c_out][c_in*3]. Input element (t, c) is
   * x[t*ld_t + c*ld_c] for t < t_in (so channel-major mel and time-major activations both fit);
   * output y [t_out][c_out] with t_out = (t_in - 1) / stride + 1. The weight comes from
   * conv1d_prepare (same arguments as linear_prepare): a backend may keep convs at another
   * precision than linears. */
  vs_ops_linear *(*conv1d_prepare)(vs_ops *ops, const float *w, const float *b, int n_out,
                                   int n_in, const char *what, GError **err);
  size_t (*conv1d_ws)(const vs_ops *ops, int c_in, int t_in, int stride);
  bool (*conv1d)(vs_ops *ops, const vs_ops_linear *w, const float *x, int c_in, int t_in, long ld_t,
                 long ld_c, int stride, float *y, unsigned flags, vs_ops_ws ws, GError **err);

  /* Rows of x [m][d] normalised (eps 1e-5), times gamma plus beta, into y (y == x allowed). */
  void (*layer_norm)(vs_ops *ops, const float *x, int m, int d, const float *gamma,
                     const float *beta, float *y);
  void (*gelu)(vs_ops *ops, float *x, size_t n);                /* in place, exact erf GELU */
  void (*add)(vs_ops *ops, float *y, const float *x, size_t n); /* y += x */
  void (*softmax)(vs_ops *ops, float *x, int m, int n);         /* each row of [m][n], fp32 */
  /* y[i] = table[ids[i]] (rows of d); ids are checked against n_rows by the caller. */
  void (*embedding)(vs_ops *ops, const float *table, int d, const int *ids, int m, float *y);

  size_t (*attention_ws)(const vs_ops *ops, int n_q, int n_kv, int n_head, int head_dim);
  bool (*attention)(vs_ops *ops, const vs_attn_args *a, vs_ops_ws ws, GError **err);
  /* n independent attentions (one per sequence of a batch) as one launch; ws as for the
   * largest of them (they run one after another where they need it). */
  bool (*attention_batch)(vs_ops *ops, const vs_attn_args *a, int n, vs_ops_ws ws, GError **err);
  /* Keys written once and read by many queries (Whisper's cross-attention) may be kept in a
   * form the backend reads faster than rows. kv_packed_bytes: bytes for n_kv keys of all heads,
   * 0 (or a NULL member) where the backend has no such form for this shape: keep rows then.
   * kv_pack: rows kv [n_kv][ld], K in columns [0, n_head*head_dim) and V in the next as many,
   * into dst (kv_packed_bytes large, backend memory). */
  size_t (*kv_packed_bytes)(const vs_ops *ops, int n_kv, int n_head, int head_dim);
  void (*kv_pack)(vs_ops *ops, const float *kv, long ld, int n_kv, int n_head, int head_dim,
                  void *dst);

  void (*destroy)(vs_ops *ops);
};

/* The plain-C fp32 reference. */
vs_ops *vs_ops_ref_new(GError **err);
/* The fast CPU backend at the given precision (bf16 fails where oneDNN cannot run it). */
vs_ops *vs_ops_cpu_new(vs_ops_precision precision, GError **err);
/* bf16 where the CPU has native bf16 dot products (AVX512-BF16 or AMX), else fp32; never int8,
 * which changes results more and is asked for by name. */
vs_ops_precision vs_ops_cpu_auto_precision(void);
void vs_ops_free(vs_ops *ops);

/* Round-to-nearest-even fp32 -> bf16 and back; shared by backends and tests. */
void vs_ops_f32_to_bf16(const float *x, unsigned short *y, size_t n);
float vs_ops_bf16_to_f32(unsigned short h);

#endif
