#include "batched.h"

#include <math.h>
#include <string.h>

#include "audio.h"
#include "tokenizer.h"
#include "vs_error.h"

#define WINDOW_FRAMES VS_LONGFORM_WINDOW_FRAMES

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
    float *full = g_new(float, (size_t)n_mels * nf);
    ok = vs_mel_compute(mel, pcm, ch->n_samples, VS_MEL_PAD_FASTER_WHISPER, full, err);
    size_t keep = nf > 0 ? MIN(nf - 1, (size_t)WINDOW_FRAMES) : 0;
    float *win = g_new0(float, (size_t)n_mels * WINDOW_FRAMES);
    for (int m = 0; ok && m < n_mels; m++)
      memcpy(win + (size_t)m * WINDOW_FRAMES, full + (size_t)m * nf, keep * sizeof(float));
    out->windows[c].mel = win;
    /* restore_speech_timestamps: the segment's start and end on the original timeline. */
    out->windows[c].start_s = (double)vs_vad_chunk_to_source(ch, 0, false) / VS_AUDIO_RATE;
    out->windows[c].end_s =
        (double)vs_vad_chunk_to_source(ch, ch->n_samples, true) / VS_AUDIO_RATE;
    g_free(full);
    g_free(pcm);
  }
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

bool vs_batched_decode(const vs_longform_model *m, const vs_search_options *o,
                       const float *const *mels, int n, vs_search_result *results, GError **err) {
  if (n <= 0) return true;
  const size_t window_floats = (size_t)m->n_mels * WINDOW_FRAMES;
  float *batch = g_new(float, window_floats * (size_t)n); /* host, [n][n_mels][3000] */
  for (int i = 0; i < n; i++)
    memcpy(batch + window_floats * (size_t)i, mels[i], window_floats * sizeof(float));
  bool ok = m->dec->encode(m->dec->ctx, batch, n, err);
  g_free(batch);
  if (!ok) return false;

  /* The prompt of faster-whisper's batched pipeline: sot [, language, task], notimestamps. */
  const vs_special_tokens *sp = vs_tokenizer_specials(m->tok);
  int prompt[4], n_prompt = 0;
  prompt[n_prompt++] = sp->sot;
  if (sp->multilingual) {
    int lang = vs_tokenizer_language_id(m->tok, "en");
    if (lang < 0) VS_FAIL(err, VS_ERROR_MODEL, false, "the model's tokenizer has no <|en|> token");
    prompt[n_prompt++] = lang;
    prompt[n_prompt++] = sp->transcribe;
  }
  prompt[n_prompt++] = sp->no_timestamps;
  const int slots = vs_search_slots_max(o);
  vs_search_job *jobs = g_new0(vs_search_job, n);
  float *temps = g_new0(float, n);
  for (int i = 0; i < n; i++) {
    jobs[i] = (vs_search_job){.opts = o, .window = i, .slot_base = i * slots, .prompt = prompt,
                              .n_prompt = n_prompt, .seed = (uint64_t)i};
    temps[i] = o->temperatures[0];
  }
  ok = vs_search_run(m->dec, m->vocab, jobs, temps, n, results, err);
  g_free(jobs);
  g_free(temps);
  return ok;
}
