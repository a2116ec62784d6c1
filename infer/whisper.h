/* The Whisper network: encoder and decoder, written once against the compute backends of
 * kernels/ (the plain-C reference, the fast CPU path on oneDNN, and later CUDA).
 *
 * vs_whisper is read-only after init (the model plus weights prepared for the backend: packed,
 * converted to bf16, ...). vs_whisper_state is per-run: encoder outputs and cross-attention K/V
 * for a batch of windows, a self-attention KV cache per sequence slot, scratch arenas sized from
 * a table. Many states can share one vs_whisper.
 */
#ifndef VS_WHISPER_H
#define VS_WHISPER_H

#include "model.h"

#include <glib.h>
#include <stdbool.h>

typedef enum { VS_BACKEND_REF = 0, VS_BACKEND_CPU = 1, VS_BACKEND_CUDA = 2 } vs_backend_kind;
/* auto: bf16 where the CPU has native bf16 (AVX512-BF16 or AMX), else fp32. int8: CTranslate2's
 * int8 for the linears (kernels/ops.h), CPU backend only, asked for by name. */
typedef enum {
  VS_PRECISION_AUTO = 0,
  VS_PRECISION_FP32 = 1,
  VS_PRECISION_BF16 = 2,
  VS_PRECISION_INT8 = 3
} vs_precision;

/* "auto", "fp32", "bf16", "int8"; and back (-1 for an unknown name). */
const char *vs_precision_name(vs_precision p);
int vs_precision_parse(const char *name);

typedef struct {
  vs_backend_kind backend;
  vs_precision precision;
  int n_threads; /* 0: OpenMP's default */
} vs_whisper_params;

vs_whisper_params vs_whisper_default_params(void);

typedef struct vs_whisper vs_whisper;
typedef struct vs_whisper_state vs_whisper_state;

vs_whisper *vs_whisper_init(const vs_model *model, const vs_whisper_params *params, GError **err);
void vs_whisper_free(vs_whisper *w);
const vs_whisper_hparams *vs_whisper_hparams_of(const vs_whisper *w);
/* The precision actually used (auto resolved). */
vs_precision vs_whisper_precision(const vs_whisper *w);

/* Room for up to max_windows encoded windows and max_seqs decoder sequences (KV-cache slots). */
vs_whisper_state *vs_whisper_state_init(vs_whisper *w, int max_windows, int max_seqs, GError **err);
void vs_whisper_state_free(vs_whisper_state *st);

/* Encodes n_windows windows of log-mel, host memory [n_windows][n_mels][3000], into window
 * slots 0..n_windows-1, and computes each decoder layer's cross-attention K/V for them. */
bool vs_whisper_encode(vs_whisper_state *st, const float *mel, int n_windows, GError **err);
/* One window (host [n_mels][3000]) into window slot `window`; the other slots keep what they
 * hold, so a decoder batch can take a new window while others are mid-decode. */
bool vs_whisper_encode_at(vs_whisper_state *st, const float *mel, int window, GError **err);

/* Copies the final encoder output (after the last layer norm) of the last window the latest
 * vs_whisper_encode processed into out, host [n_audio_ctx][n_audio_state]. For tests and
 * diagnostics: the decoder only needs the cross K/V computed from it. */
bool vs_whisper_encoder_output(const vs_whisper_state *st, float *out, GError **err);

/* One decoder pass over a batch of sequences. Sequence s uses KV-cache slot seq_slot[s] and
 * attends to encoded window window_of[s]; it appends n_tokens[s] tokens (a prompt, then one per
 * step) after what its cache already holds, and receives the fp32 logits of its last new
 * position in logits[s * n_vocab ...]. */
bool vs_whisper_decode(vs_whisper_state *st, int n_seq, const int *seq_slot, const int *window_of,
                       const int *const *tokens, const int *n_tokens, float *logits, GError **err);

/* Time spent in the model since the state was made (wall seconds, main thread), for the job's
 * summary and for telling encoder- from decoder-bound runs apart. */
typedef struct {
  double encode_s, decode_s;
  long windows;      /* windows encoded */
  long decode_calls; /* vs_whisper_decode calls (decoder steps of a batch) */
  long decode_rows;  /* sequences advanced, summed over calls */
} vs_whisper_stats;
vs_whisper_stats vs_whisper_state_stats(const vs_whisper_state *st);

void vs_whisper_cache_reset(vs_whisper_state *st, int slot);
/* Makes slot dst a copy of slot src (beam search reordering). */
void vs_whisper_cache_copy(vs_whisper_state *st, int dst_slot, int src_slot);
int vs_whisper_cache_len(const vs_whisper_state *st, int slot);

#endif
