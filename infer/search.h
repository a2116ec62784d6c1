/* Whisper's search on top of decoder logits: greedy, sampling (best_of) and beam search with
 * Whisper's logit rules, and the temperature fallback, matching faster-whisper 1.2 on
 * CTranslate2 4.x (../shared/docs/whisper-reference.md, "Decoding").
 *
 * Batch-first: one call runs many independent jobs (each a window, a prompt, options, its own
 * KV-cache slots) through shared decoder passes; every sequence finishes on its own, and a job's
 * result does not depend on which other jobs share the batch.
 *
 * The decoder is reached through vs_search_decoder (function pointers), so the search runs on the
 * real network (infer/longform.h has the vs_whisper adapter) or on a synthetic model in tests.
 */
#ifndef VS_SEARCH_H
#define VS_SEARCH_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vs_tokenizer;

/* The decoder as the search sees it. decode() appends n_tokens[s] tokens to the KV cache of
 * slot[s] (attending to encoded window[s]) and writes the fp32 logits of the last new position
 * to logits[s * n_vocab ...]. encode() may be NULL when only the search is used. */
typedef struct {
  void *ctx;
  int n_vocab;
  int n_text_ctx; /* 448: longest prompt + generated sequence */
  bool (*encode)(void *ctx, const float *mel, int n_windows, GError **err);
  /* One window into window slot `window`, the others keeping theirs (continuous batching);
   * NULL where the decoder cannot. */
  bool (*encode_at)(void *ctx, const float *mel, int window, GError **err);
  bool (*decode)(void *ctx, int n_seq, const int *slot, const int *window, const int *const *tokens,
                 const int *n_tokens, float *logits, GError **err);
  /* The search steps jobs on OpenMP threads: these two may run concurrently, on distinct slots
   * (a job's slots are its own). encode and decode are called from one thread. */
  void (*cache_reset)(void *ctx, int slot);
  void (*cache_copy)(void *ctx, int dst_slot, int src_slot);
} vs_search_decoder;

/* Token ids the rules need, and the suppression lists. */
typedef struct {
  int eot, sot, sot_prev, sot_lm, translate, transcribe, no_speech, no_timestamps;
  int timestamp_begin; /* <|0.00|>; the last timestamp is n_vocab - 1, as CTranslate2 has it */
  int *suppress;       /* g_malloc'd, sorted unique: suppressed at every step */
  size_t n_suppress;
  int *suppress_begin; /* g_malloc'd: suppressed at the first generated step (suppress_blank) */
  size_t n_suppress_begin;
} vs_search_vocab;

/* faster-whisper's suppress_tokens=[-1]: the model's suppress_ids plus transcribe, translate,
 * sot, sot_prev, sot_lm and no_speech; suppress_ids_begin as given (blank and EOT). */
bool vs_search_vocab_init(vs_search_vocab *v, const struct vs_tokenizer *tok,
                          const int *suppress_ids, size_t n_suppress_ids,
                          const int *suppress_ids_begin, size_t n_suppress_ids_begin, GError **err);
void vs_search_vocab_clear(vs_search_vocab *v);

#define VS_SEARCH_MAX_TEMPERATURES 16

typedef struct {
  int beam_size;               /* at temperature 0; 1 = greedy */
  int best_of;                 /* independent samples at temperature > 0 */
  float patience;              /* beam search collects round(beam_size * patience) finished hyps */
  float length_penalty;        /* score = sum_logprob / len^length_penalty */
  bool suppress_blank;         /* suppress vocab.suppress_begin at the first step */
  bool suppress_tokens;        /* suppress vocab.suppress at every step */
  float max_initial_timestamp; /* seconds; the first timestamp is at most this */
  int max_new_tokens;          /* 0: faster-whisper's default (the model's context) */
  float temperatures[VS_SEARCH_MAX_TEMPERATURES];
  int n_temperatures;
  double compression_ratio_threshold; /* NAN: off */
  double log_prob_threshold;          /* NAN: off */
  double no_speech_threshold;         /* NAN: off */
} vs_search_options;

/* faster-whisper's WhisperModel.transcribe defaults: beam 5, best_of 5, patience 1,
 * length_penalty 1, temperatures 0, 0.2, ..., 1.0, thresholds 2.4 / -1.0 / 0.6. */
vs_search_options vs_search_default_options(void);

/* KV-cache slots a job uses at this temperature: beam_size at 0, best_of above. */
int vs_search_slots_needed(const vs_search_options *o, float temperature);
/* Most slots any temperature of o needs. */
int vs_search_slots_max(const vs_search_options *o);

typedef struct {
  const vs_search_options *opts;
  int window;        /* encoded window the job attends to */
  int slot_base;     /* first of its vs_search_slots_max() consecutive KV-cache slots */
  const int *prompt; /* [sot_prev, previous text..., ] sot [, lang, task] [, notimestamps] */
  int n_prompt;
  uint64_t seed; /* sampling stream of this job (with the temperature index, hypothesis) */
} vs_search_job;

typedef struct {
  int *tokens; /* g_malloc'd, generated tokens without EOT */
  int n_tokens;
  float score;              /* CTranslate2's ranking score: sum_logprob / len^length_penalty */
  double sum_logprob;       /* includes EOT's log-probability when the sequence ended on it */
  double avg_logprob;       /* faster-whisper's: sum_logprob / (len + 1) */
  double compression_ratio; /* of the stripped UTF-8 text (zlib); filled by the fallback */
  float no_speech_prob;     /* softmax of the raw logits at the sot position */
  float temperature;
} vs_search_result;

void vs_search_result_clear(vs_search_result *r);

/* One decoding of every job at temperature temps[j] (greedy / beam at 0, best_of samples
 * above). The caller has encoded the windows; every slot a job uses is reset first. */
bool vs_search_run(const vs_search_decoder *dec, const vs_search_vocab *vocab,
                   const vs_search_job *jobs, const float *temps, int n_jobs,
                   vs_search_result *results, GError **err);

/* Makes job `job`'s encoded window ready in window slot `window` (e.g. encodes it) before the
 * job's first decoder pass; false with err set stops the search. */
typedef bool (*vs_search_admit_fn)(void *ctx, int job, int window, GError **err);

/* vs_search_run over more jobs than decode at once: at most max_active jobs run together; when
 * jobs finish, the next ones (in order) take their window slot and KV slots, so the decoder's
 * batch stays full instead of draining to its longest job. Window slots are
 * 0..max_active-1 and a job in window slot w uses KV slots w * vs_search_slots_max(jobs[0].opts)
 * onwards (jobs' own window and slot_base are ignored; no job may need more slots than the
 * first). Each job's result is what vs_search_run gives for it. */
bool vs_search_run_pool(const vs_search_decoder *dec, const vs_search_vocab *vocab,
                        const vs_search_job *jobs, const float *temps, int n_jobs, int max_active,
                        vs_search_admit_fn admit, void *admit_ctx, vs_search_result *results,
                        GError **err);

/* faster-whisper's generate_with_fallback over a batch of jobs: each job tries its
 * temperatures in turn until compression ratio and average log-probability pass (or the
 * window is silence); jobs still retrying are decoded together. */
bool vs_search_generate_with_fallback(const vs_search_decoder *dec, const vs_search_vocab *vocab,
                                      const struct vs_tokenizer *tok, const vs_search_job *jobs,
                                      int n_jobs, vs_search_result *results, GError **err);

/* The logit rules of one generated step, in CTranslate2's order (suppress_tokens, suppress_blank
 * at step 0, then the timestamp rules with the probability-mass test); generated holds the
 * `step` tokens generated so far. Disabled logits become -inf. For tests and tools; the
 * search applies the same function. */
void vs_search_apply_rules(const vs_search_vocab *v, const vs_search_options *o, int n_vocab,
                           bool timestamps, const int *generated, int step, float *logits);

/* len(utf8) / len(zlib.compress(utf8)) at zlib's default level, as faster-whisper computes it. */
double vs_search_compression_ratio(const char *text, size_t len);
/* The tokens' text (ids >= eot dropped), stripped of leading and trailing whitespace. */
char *vs_search_stripped_text(const struct vs_tokenizer *tok, const int *ids, int n);

#endif
