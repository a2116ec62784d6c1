#include "batched.h"

#include "audio.h"
#include "tokenizer.h"
#include "vs_error.h"

#include <math.h>
#include <string.h>

#define WINDOW_FRAMES VS_LONGFORM_WINDOW_FRAMES

/* Python's round(x, nd): the exact binary value rounded half to even, which is what glibc's
 * printf does; g_ascii_formatd keeps it independent of the locale. */
static double py_round(double x, int nd) {
  char fmt[8], buf[G_ASCII_DTOSTR_BUF_SIZE];
  snprintf(fmt, sizeof fmt, "%%.%df", nd);
  return g_ascii_strtod(g_ascii_formatd(buf, sizeof buf, fmt, x), NULL);
}

/* faster-whisper's SpeechTimestampsMap over all speech segments of a file. Segment times are
 * first rounded to 1 ms on the concatenated-speech timeline (the batched generator's
 * round(t, 3)), then looked up by sample (int(t * 16000)) and rounded to 10 ms, so the same
 * lookups are done here rather than an exact sample mapping: times equal faster-whisper's. */
typedef struct {
  size_t n;
  long *chunk_end_sample;       /* [n] end of segment i on the concatenated-speech timeline */
  double *total_silence_before; /* [n] seconds */
} ts_map;

static void ts_map_init(ts_map *m, const vs_vad_chunk_list *chunks) {
  m->n = chunks->n_pieces;
  m->chunk_end_sample = g_new(long, m->n ? m->n : 1);
  m->total_silence_before = g_new(double, m->n ? m->n : 1);
  long previous_end = 0, silent = 0;
  for (size_t i = 0; i < m->n; i++) {
    const vs_vad_piece *p = &chunks->pieces[i];
    silent += (long)p->src_start - previous_end;
    previous_end = (long)p->src_end;
    m->chunk_end_sample[i] = (long)p->src_end - silent;
    m->total_silence_before[i] = (double)silent / VS_AUDIO_RATE;
  }
}

static void ts_map_clear(ts_map *m) {
  g_free(m->chunk_end_sample);
  g_free(m->total_silence_before);
}

static double ts_map_original_time(const ts_map *m, double t, bool is_end) {
  const long sample = (long)(t * VS_AUDIO_RATE);
  size_t idx = m->n; /* not found */
  if (is_end)
    for (size_t i = 0; i < m->n && idx == m->n; i++)
      if (m->chunk_end_sample[i] == sample) idx = i;
  if (idx == m->n) {
    size_t lo = 0, hi = m->n; /* bisect.bisect (right) */
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (sample < m->chunk_end_sample[mid])
        hi = mid;
      else
        lo = mid + 1;
    }
    idx = MIN(lo, m->n - 1);
  }
  return py_round(m->total_silence_before[idx] + t, 2);
}

void vs_batched_file_clear(vs_batched_file *f) {
  for (size_t i = 0; i < f->n_windows; i++)
    g_free(f->windows[i].mel);
  g_free(f->windows);
  memset(f, 0, sizeof *f);
}

bool vs_batched_prepare_file(const vs_vad_model *vad, const vs_mel *mel, const float *audio,
                             size_t n_samples, vs_batched_file *out, GError **err) {
  memset(out, 0, sizeof *out);
  vs_vad_options vo = vs_vad_batched_options(VS_BATCHED_CHUNK_S);
  vs_vad_segment *segs = NULL;
  size_t n_segs = 0;
  if (!vs_vad_speech_segments(vad, audio, n_samples, &vo, &segs, &n_segs, err)) return false;
  vs_vad_chunk_list *chunks = NULL;
  if (n_segs > 0) {
    chunks = vs_vad_chunks(segs, n_segs, VS_BATCHED_CHUNK_S, err);
    if (!chunks) {
      g_free(segs);
      return false;
    }
  }
  g_free(segs);
  const int n_mels = vs_mel_n_mels(mel);
  bool ok = true;
  ts_map tsm = {0};
  if (chunks) ts_map_init(&tsm, chunks);
  out->n_windows = chunks ? chunks->n_chunks : 0;
  out->windows = g_new0(vs_batched_window, out->n_windows ? out->n_windows : 1);
  for (size_t c = 0; ok && c < out->n_windows; c++) {
    const vs_vad_chunk *ch = &chunks->chunks[c];
    float *pcm = g_new(float, ch->n_samples); /* the chunk: its speech pieces back to back */
    for (size_t p = 0; p < ch->n_pieces; p++) {
      const vs_vad_piece *pc = &ch->pieces[p];
      memcpy(pcm + pc->chunk_offset, audio + pc->src_start,
             (pc->src_end - pc->src_start) * sizeof(float));
    }
    /* faster-whisper: feature_extractor(chunk)[..., :-1], then zero-padded to 3000 frames. */
    size_t nf = vs_mel_n_frames(ch->n_samples, VS_MEL_PAD_FASTER_WHISPER);
    float *full = g_new(float, (size_t)n_mels *nf);
    ok = vs_mel_compute(mel, pcm, ch->n_samples, VS_MEL_PAD_FASTER_WHISPER, full, err);
    size_t keep = nf > 0 ? MIN(nf - 1, (size_t)WINDOW_FRAMES) : 0;
    float *win = g_new0(float, (size_t)n_mels *WINDOW_FRAMES);
    for (int m = 0; ok && m < n_mels; m++)
      memcpy(win + (size_t)m * WINDOW_FRAMES, full + (size_t)m * nf, keep * sizeof(float));
    out->windows[c].mel = win;
    /* The segment of a window without timestamps spans its chunk: [offset, offset + duration]
     * on the speech timeline, restored to the original one (restore_speech_timestamps). */
    const double offset = (double)ch->speech_offset / VS_AUDIO_RATE;
    const double end = offset + (double)ch->n_samples / VS_AUDIO_RATE;
    out->windows[c].start_s = ts_map_original_time(&tsm, py_round(offset, 3), false);
    out->windows[c].end_s = ts_map_original_time(&tsm, py_round(end, 3), true);
    g_free(full);
    g_free(pcm);
  }
  ts_map_clear(&tsm);
  vs_vad_chunk_list_free(chunks);
  if (!ok) vs_batched_file_clear(out);
  return ok;
}

vs_search_options vs_batched_search_options(const vs_search_options *base) {
  vs_search_options o = *base;
  o.temperatures[0] = 0.0f;
  o.n_temperatures = 1;
  o.compression_ratio_threshold = NAN;
  o.log_prob_threshold = NAN;
  o.no_speech_threshold = NAN;
  o.max_initial_timestamp = 0.0f;
  return o;
}

int *vs_batched_prompt(const vs_tokenizer *tok, const char *language, bool translate,
                       const char *initial_prompt, int n_text_ctx, int *n_prompt, GError **err) {
  const vs_special_tokens *sp = vs_tokenizer_specials(tok);
  GArray *p = g_array_new(FALSE, FALSE, sizeof(int));
  if (initial_prompt && *initial_prompt) {
    /* The batched pipeline encodes the prompt as given (no leading space, no strip), unlike
     * the sequential one. */
    size_t n_ids = 0;
    int *ids = vs_tokenizer_encode(tok, initial_prompt, &n_ids);
    if (!ids) {
      g_array_free(p, TRUE);
      VS_FAIL(err, VS_ERROR_CONFIG, NULL, "initial prompt: the tokenizer cannot encode it");
    }
    const size_t keep = MIN(n_ids, (size_t)(n_text_ctx / 2 - 1));
    if (n_ids > 0) {
      int sot_prev = sp->sot_prev;
      g_array_append_val(p, sot_prev);
      g_array_append_vals(p, ids + (n_ids - keep), (guint)keep);
    }
    g_free(ids);
  }
  int t = sp->sot;
  g_array_append_val(p, t);
  if (sp->multilingual) {
    const char *code = language && *language ? language : "en";
    int lang = vs_tokenizer_language_id(tok, code);
    if (lang < 0) {
      g_array_free(p, TRUE);
      VS_FAIL(err, VS_ERROR_CONFIG, NULL, "language '%s': the model's tokenizer has no such token",
              code);
    }
    g_array_append_val(p, lang);
    t = translate ? sp->translate : sp->transcribe;
    g_array_append_val(p, t);
  }
  t = sp->no_timestamps;
  g_array_append_val(p, t);
  *n_prompt = (int)p->len;
  return (int *)g_array_free(p, FALSE);
}

typedef struct {
  const vs_longform_model *m;
  const float *const *mels;
} pool_feed;

static bool pool_encode(void *ctx, int job, int window, GError **err) {
  const pool_feed *p = ctx;
  return p->m->dec->encode_at(p->m->dec->ctx, p->mels[job], window, err);
}

bool vs_batched_decode(const vs_longform_model *m, const vs_search_options *o, const int *prompt,
                       int n_prompt, const float *const *mels, int n, int max_active,
                       vs_search_result *results, GError **err) {
  if (n <= 0) return true;
  if (max_active < 1) VS_FAIL(err, VS_ERROR_INTERNAL, false, "batched: batch size %d", max_active);
  const int slots = vs_search_slots_max(o);
  vs_search_job *jobs = g_new0(vs_search_job, n);
  float *temps = g_new0(float, n);
  for (int i = 0; i < n; i++) {
    jobs[i] = (vs_search_job){.opts = o,
                              .window = i,
                              .slot_base = i * slots,
                              .prompt = prompt,
                              .n_prompt = n_prompt,
                              .seed = (uint64_t)i};
    temps[i] = o->temperatures[0];
  }
  bool ok;
  if (m->dec->encode_at) {
    /* Continuous batching: a window that ends hands its slot to the next one at once. */
    pool_feed feed = {m, mels};
    ok = vs_search_run_pool(m->dec, m->vocab, jobs, temps, n, max_active, pool_encode, &feed,
                            results, err);
  } else if (!m->dec->encode || n > max_active) {
    ok = false;
    g_set_error(err, VS_ERROR, VS_ERROR_INTERNAL,
                "batched: %d windows for a batch of %d and the decoder cannot %s", n, max_active,
                m->dec->encode ? "refill" : "encode");
  } else {
    const size_t window_floats = (size_t)m->n_mels * WINDOW_FRAMES;
    float *batch = g_new(float, window_floats *(size_t)n); /* host, [n][n_mels][3000] */
    for (int i = 0; i < n; i++)
      memcpy(batch + window_floats * (size_t)i, mels[i], window_floats * sizeof(float));
    ok = m->dec->encode(m->dec->ctx, batch, n, err) &&
         vs_search_run(m->dec, m->vocab, jobs, temps, n, results, err);
    g_free(batch);
  }
  g_free(jobs);
  g_free(temps);
  return ok;
}
