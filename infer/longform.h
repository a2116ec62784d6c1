/* Long-form transcription: faster-whisper's sequential seek loop (WhisperModel.transcribe /
 * generate_segments) over the log-mel of whole files, on top of infer/search.h.
 *
 * Each file advances window by window (30 s slices of its mel, computed with 160 samples of
 * padding), cut into segments at consecutive timestamp pairs; the previous text conditions the
 * next window until a window needed a temperature above prompt_reset_on_temperature. Many
 * files advance together: one round encodes the current window of every unfinished file and
 * decodes them as one batch of search jobs, so the result of a file does not depend on the
 * files beside it.
 */
#ifndef VS_LONGFORM_H
#define VS_LONGFORM_H

#include "search.h"
#include "whisper.h"

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VS_LONGFORM_WINDOW_FRAMES 3000 /* 30 s of mel frames */

typedef struct {
  vs_search_options search;
  bool condition_on_previous_text;
  float prompt_reset_on_temperature;
  bool without_timestamps;
  const char *initial_prompt; /* NULL: none */
  const char *language;       /* multilingual models: "en", "de", ...; ignored for .en */
  bool translate;             /* multilingual models: translate instead of transcribe */
  uint64_t seed;              /* sampling at temperature > 0; with the window's seek */
} vs_longform_options;

/* faster-whisper's WhisperModel.transcribe defaults. */
vs_longform_options vs_longform_default_options(void);

typedef struct {
  int seek;          /* mel frame where its window started */
  double start, end; /* seconds */
  char *text;        /* g_malloc'd, as the tokenizer decodes the tokens (leading space kept) */
  int *tokens;       /* g_malloc'd, text and timestamp tokens */
  int n_tokens;
  double avg_logprob;
  double compression_ratio;
  float no_speech_prob;
  float temperature;
} vs_segment;

typedef struct {
  vs_segment *segments; /* g_malloc'd */
  int n_segments;
  int n_windows;   /* windows decoded (diagnostics) */
  int n_fallbacks; /* windows that needed a temperature above 0 */
} vs_transcript;

void vs_transcript_clear(vs_transcript *t);
/* Segment texts concatenated (faster-whisper's "".join(s.text)); g_malloc'd. */
char *vs_transcript_text(const vs_transcript *t);

typedef struct {
  const vs_search_decoder *dec; /* must have encode() */
  const struct vs_tokenizer *tok;
  const vs_search_vocab *vocab;
  int n_mels;
} vs_longform_model;

/* Transcribes n_files files whose mels are mels[f]: host memory [n_mels][n_frames[f]], computed
 * with VS_MEL_PAD_FASTER_WHISPER samples of padding. The decoder's state must hold n_files
 * windows and n_files * vs_search_slots_max(&o->search) sequences. out[f] is filled for every
 * file. */
bool vs_longform_transcribe(const vs_longform_model *m, const vs_longform_options *o,
                            const float *const *mels, const size_t *n_frames, int n_files,
                            vs_transcript *out, GError **err);

/* The search's decoder interface on a vs_whisper_state (logits of vs_whisper_decode). */
vs_search_decoder vs_longform_whisper_decoder(vs_whisper_state *st, const vs_whisper *w);

#endif
