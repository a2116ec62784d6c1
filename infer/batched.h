/* Batched mode, as faster-whisper's BatchedInferencePipeline: speech found by Silero VAD is cut
 * into chunks of at most 30 s (silence skipped); each chunk is one window, decoded without
 * timestamps at temperature 0 (no fallback, no previous-text conditioning), and becomes one
 * segment mapped back to the original timeline. Unlike faster-whisper, which batches only the
 * chunks of one file, windows FROM MANY FILES fill each batch: short clips are where a 30 s
 * window is mostly padding, and batching across files is what amortises it.
 */
#ifndef VS_BATCHED_H
#define VS_BATCHED_H

#include "longform.h"
#include "mel.h"
#include "search.h"
#include "vad.h"

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

#define VS_BATCHED_CHUNK_S 30.0

typedef struct {
  float *mel;            /* host, [n_mels][3000]: the chunk's log-mel, zero-padded */
  double start_s, end_s; /* the chunk's speech on the original timeline, in seconds rounded to
                            0.01 as faster-whisper's SpeechTimestampsMap does */
} vs_batched_window;

typedef struct {
  vs_batched_window *windows; /* g_malloc'd, in time order */
  size_t n_windows;           /* 0 when the VAD found no speech */
} vs_batched_file;

/* Front end (any thread): VAD, chunks and their log-mel for one file's 16 kHz audio. */
bool vs_batched_prepare_file(const vs_vad_model *vad, const vs_mel *mel, const float *audio,
                             size_t n_samples, vs_batched_file *out, GError **err);
void vs_batched_file_clear(vs_batched_file *f);

/* faster-whisper's batched settings: one temperature (0), no fallback thresholds,
 * max_initial_timestamp 0; beam search settings from `base`. */
vs_search_options vs_batched_search_options(const vs_search_options *base);

/* The prompt every window of the batched pipeline gets (faster-whisper's get_prompt with
 * without_timestamps): [<|startofprev|> + the last n_text_ctx/2 - 1 tokens of initial_prompt,
 * encoded as given] <|startoftranscript|> [<|lang|> <|transcribe|> or <|translate|> on
 * multilingual models] <|notimestamps|>. initial_prompt NULL or "": none. language: a code such
 * as "en" (multilingual models; no detection); an unknown one is a VS_ERROR_CONFIG error.
 * Returns a g_malloc'd array of *n_prompt ids. */
int *vs_batched_prompt(const struct vs_tokenizer *tok, const char *language, bool translate,
                       const char *initial_prompt, int n_text_ctx, int *n_prompt, GError **err);

/* Decodes n windows (from any files; mels[i] is [n_mels][3000]), each window its own job (own
 * KV slots, own finish) with `prompt`, at most max_active at once: the decoder's state must hold
 * max_active windows and max_active * vs_search_slots_max(o) sequences. Where the decoder has
 * encode_at, a window that finishes hands its slot to the next one (continuous batching), so n
 * may exceed max_active; otherwise n <= max_active and all are encoded first. results[i] is
 * filled (vs_search_result_clear them). */
bool vs_batched_decode(const vs_longform_model *m, const vs_search_options *o, const int *prompt,
                       int n_prompt, const float *const *mels, int n, int max_active,
                       vs_search_result *results, GError **err);

#endif
