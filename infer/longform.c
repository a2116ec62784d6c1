/* faster-whisper's generate_segments (transcribe.py) as a batch of per-file state machines: every
 * round takes each unfinished file one window further, with the same seek, split, skip and
 * prompt decisions faster-whisper makes for that file alone. */
#include "longform.h"

#include "log.h"
#include "tokenizer.h"
#include "vs_error.h"

#include <math.h>
#include <string.h>

/* faster-whisper: 10 ms mel frames, 20 ms timestamp steps, 2 frames per step. */
#define TIME_PER_FRAME 0.01
#define TIME_PRECISION 0.02
#define INPUT_STRIDE 2

vs_longform_options vs_longform_default_options(void) {
  vs_longform_options o = {0};
  o.search = vs_search_default_options();
  o.condition_on_previous_text = true;
  o.prompt_reset_on_temperature = 0.5f;
  o.without_timestamps = false;
  o.initial_prompt = NULL;
  o.language = "en";
  o.translate = false;
  o.seed = 0;
  return o;
}

void vs_transcript_clear(vs_transcript *t) {
  for (int i = 0; i < t->n_segments; i++) {
    g_free(t->segments[i].text);
    g_free(t->segments[i].tokens);
  }
  g_free(t->segments);
  memset(t, 0, sizeof *t);
}

char *vs_transcript_text(const vs_transcript *t) {
  GString *s = g_string_new(NULL);
  for (int i = 0; i < t->n_segments; i++)
    g_string_append(s, t->segments[i].text);
  return g_string_free(s, FALSE);
}

typedef struct {
  const float *mel;
  size_t n_frames;
  long content_frames;
  long seek;
  GArray *all_tokens; /* int: text and timestamps of every kept segment (the prompt source) */
  guint prompt_reset_since;
  GArray *segs; /* vs_segment */
  int n_windows, n_fallbacks;
  /* this round */
  long segment_size;
  GArray *prompt;
} file_t;

static bool py_blank(const char *s) {
  /* text.strip() is empty: only Python whitespace */
  for (const char *p = s; *p; p = g_utf8_next_char(p)) {
    gunichar c = g_utf8_get_char(p);
    bool sp = (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
              c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
              c == 0x202f || c == 0x205f || c == 0x3000;
    if (!sp) return false;
  }
  return true;
}

static void add_segment(const vs_longform_model *m, file_t *f, const vs_search_result *r,
                        long window_seek, const int *toks, int n, double start, double end) {
  char *text = vs_tokenizer_decode(m->tok, toks, (size_t)n);
  if (!text) text = g_strdup("");
  if (start == end || py_blank(text)) {
    g_free(text);
    return;
  }
  g_array_append_vals(f->all_tokens, toks, (guint)n);
  vs_segment s = {0};
  s.seek = (int)window_seek;
  s.start = start;
  s.end = end;
  s.text = text;
  s.tokens = g_memdup2(toks, sizeof(int) * (n ? n : 1));
  s.n_tokens = n;
  s.avg_logprob = r->avg_logprob;
  s.compression_ratio = r->compression_ratio;
  s.no_speech_prob = r->no_speech_prob;
  s.temperature = r->temperature;
  g_array_append_val(f->segs, s);
}

/* _split_segments_by_timestamps, then the segment filter of generate_segments. */
static void split_and_advance(const vs_longform_model *m, file_t *f, const vs_search_result *r) {
  const int tb = m->vocab->timestamp_begin;
  const int *t = r->tokens;
  const int n = r->n_tokens;
  const long seek = f->seek;
  const double time_offset = (double)seek * TIME_PER_FRAME;
  const double segment_duration = (double)f->segment_size * TIME_PER_FRAME;

  bool single_ending = n >= 2 && t[n - 2] < tb && tb <= t[n - 1];
  int n_consec = 0;
  for (int i = 1; i < n; i++)
    if (t[i] >= tb && t[i - 1] >= tb) n_consec++;

  if (n_consec > 0) {
    int last_slice = 0;
    for (int i = 1; i <= n; i++) {
      bool cut = (i < n && t[i] >= tb && t[i - 1] >= tb) || (i == n && single_ending);
      if (!cut) continue;
      const int *sl = t + last_slice;
      int len = i - last_slice;
      double start = time_offset + (double)(sl[0] - tb) * TIME_PRECISION;
      double end = time_offset + (double)(sl[len - 1] - tb) * TIME_PRECISION;
      add_segment(m, f, r, seek, sl, len, start, end);
      last_slice = i;
    }
    if (single_ending)
      f->seek += f->segment_size;
    else
      f->seek += (long)(t[last_slice - 1] - tb) * INPUT_STRIDE;
  } else {
    double duration = segment_duration;
    int last_ts = -1;
    for (int i = 0; i < n; i++)
      if (t[i] >= tb) last_ts = t[i];
    if (last_ts >= 0 && last_ts != tb) duration = (double)(last_ts - tb) * TIME_PRECISION;
    add_segment(m, f, r, seek, t, n, time_offset, time_offset + duration);
    f->seek += f->segment_size;
  }
}

bool vs_longform_transcribe(const vs_longform_model *m, const vs_longform_options *o,
                            const float *const *mels, const size_t *n_frames, int n_files,
                            vs_transcript *out, GError **err) {
  const vs_search_decoder *dec = m->dec;
  if (!dec->encode)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "longform: the decoder interface has no encoder");
  const vs_special_tokens *sp = vs_tokenizer_specials(m->tok);
  int sot_seq[3], n_sot_seq = 0;
  sot_seq[n_sot_seq++] = sp->sot;
  if (sp->multilingual) {
    int lang = vs_tokenizer_language_id(m->tok, o->language ? o->language : "en");
    if (lang < 0)
      VS_FAIL(err, VS_ERROR_CONFIG, false, "longform: unknown language '%s'",
              o->language ? o->language : "(null)");
    sot_seq[n_sot_seq++] = lang;
    sot_seq[n_sot_seq++] = o->translate ? sp->translate : sp->transcribe;
  }
  const int max_prev = dec->n_text_ctx / 2 - 1; /* 223 */
  const int slots = vs_search_slots_max(&o->search);
  const size_t win = (size_t)m->n_mels * VS_LONGFORM_WINDOW_FRAMES;

  file_t *F = g_new0(file_t, n_files);
  for (int i = 0; i < n_files; i++) {
    file_t *f = &F[i];
    memset(&out[i], 0, sizeof out[i]);
    f->mel = mels[i];
    f->n_frames = n_frames[i];
    f->content_frames = (long)n_frames[i] - 1;
    f->all_tokens = g_array_new(FALSE, FALSE, sizeof(int));
    f->segs = g_array_new(FALSE, FALSE, sizeof(vs_segment));
    f->prompt = g_array_new(FALSE, FALSE, sizeof(int));
    if (o->initial_prompt) {
      char *stripped = g_strstrip(g_strdup(o->initial_prompt));
      char *spaced = g_strconcat(" ", stripped, NULL);
      size_t n_ids = 0;
      int *ids = vs_tokenizer_encode(m->tok, spaced, &n_ids);
      if (ids) g_array_append_vals(f->all_tokens, ids, (guint)n_ids);
      g_free(ids);
      g_free(spaced);
      g_free(stripped);
    }
  }

  float *mel_buf = g_new(float, win *(size_t)MAX(n_files, 1));
  vs_search_job *jobs = g_new0(vs_search_job, n_files);
  vs_search_result *res = g_new0(vs_search_result, n_files);
  int *act = g_new(int, n_files);
  bool ok = true;

  for (;;) {
    int n_act = 0;
    for (int i = 0; i < n_files; i++)
      if (F[i].seek < F[i].content_frames) act[n_act++] = i;
    if (n_act == 0) break;

    for (int a = 0; a < n_act; a++) {
      file_t *f = &F[act[a]];
      f->segment_size = MIN((long)VS_LONGFORM_WINDOW_FRAMES, f->content_frames - f->seek);
      float *w = mel_buf + (size_t)a * win;
      memset(w, 0, sizeof(float) * win); /* pad_or_trim pads the log-mel with zeros */
      for (int c = 0; c < m->n_mels; c++)
        memcpy(w + (size_t)c * VS_LONGFORM_WINDOW_FRAMES,
               f->mel + (size_t)c * f->n_frames + f->seek, sizeof(float) * (size_t)f->segment_size);

      g_array_set_size(f->prompt, 0);
      guint n_prev = f->all_tokens->len - f->prompt_reset_since;
      if (n_prev > 0) {
        int sot_prev = sp->sot_prev;
        g_array_append_val(f->prompt, sot_prev);
        guint take = MIN(n_prev, (guint)max_prev);
        g_array_append_vals(f->prompt,
                            &g_array_index(f->all_tokens, int, f->all_tokens->len - take), take);
      }
      g_array_append_vals(f->prompt, sot_seq, (guint)n_sot_seq);
      if (o->without_timestamps) {
        int nt = sp->no_timestamps;
        g_array_append_val(f->prompt, nt);
      }
      jobs[a].opts = &o->search;
      jobs[a].window = a;
      jobs[a].slot_base = a * slots;
      jobs[a].prompt = (const int *)f->prompt->data;
      jobs[a].n_prompt = (int)f->prompt->len;
      jobs[a].seed = o->seed ^ (0xd1b54a32d192ed03ULL * (uint64_t)(f->seek + 1));
    }

    if (!dec->encode(dec->ctx, mel_buf, n_act, err) ||
        !vs_search_generate_with_fallback(dec, m->vocab, m->tok, jobs, n_act, res, err)) {
      ok = false;
      break;
    }

    for (int a = 0; a < n_act; a++) {
      file_t *f = &F[act[a]];
      vs_search_result *r = &res[a];
      f->n_windows++;
      if (r->temperature > 0) f->n_fallbacks++;
      bool skip = false;
      if (!isnan(o->search.no_speech_threshold)) {
        skip = r->no_speech_prob > o->search.no_speech_threshold;
        if (!isnan(o->search.log_prob_threshold) && r->avg_logprob > o->search.log_prob_threshold)
          skip = false;
      }
      if (skip) {
        f->seek += f->segment_size;
      } else {
        split_and_advance(m, f, r);
        if (!o->condition_on_previous_text || r->temperature > o->prompt_reset_on_temperature)
          f->prompt_reset_since = f->all_tokens->len;
      }
      vs_search_result_clear(r);
    }
  }

  for (int i = 0; i < n_files; i++) {
    file_t *f = &F[i];
    out[i].n_segments = (int)f->segs->len;
    out[i].segments = (vs_segment *)g_array_free(f->segs, FALSE);
    out[i].n_windows = f->n_windows;
    out[i].n_fallbacks = f->n_fallbacks;
    if (!ok) vs_transcript_clear(&out[i]);
    g_array_free(f->all_tokens, TRUE);
    g_array_free(f->prompt, TRUE);
  }
  g_free(F);
  g_free(mel_buf);
  g_free(jobs);
  g_free(res);
  g_free(act);
  return ok;
}

/* ------------------------------------------------------------------------------------------ */

static bool w_encode(void *ctx, const float *mel, int n, GError **err) {
  return vs_whisper_encode(ctx, mel, n, err);
}

static bool w_encode_at(void *ctx, const float *mel, int window, GError **err) {
  return vs_whisper_encode_at(ctx, mel, window, err);
}
static bool w_decode(void *ctx, int n_seq, const int *slot, const int *window,
                     const int *const *tokens, const int *n_tokens, float *logits, GError **err) {
  return vs_whisper_decode(ctx, n_seq, slot, window, tokens, n_tokens, logits, err);
}
static void w_reset(void *ctx, int slot) {
  vs_whisper_cache_reset(ctx, slot);
}
static void w_copy(void *ctx, int dst, int src) {
  vs_whisper_cache_copy(ctx, dst, src);
}

vs_search_decoder vs_longform_whisper_decoder(vs_whisper_state *st, const vs_whisper *w) {
  const vs_whisper_hparams *hp = vs_whisper_hparams_of(w);
  vs_search_decoder d = {0};
  d.ctx = st;
  d.n_vocab = hp->n_vocab;
  d.n_text_ctx = hp->n_text_ctx;
  d.encode = w_encode;
  d.encode_at = w_encode_at;
  d.decode = w_decode;
  d.cache_reset = w_reset;
  d.cache_copy = w_copy;
  return d;
}
