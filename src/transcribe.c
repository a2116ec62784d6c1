#include "transcribe.h"

#include "audio.h"
#include "batched.h"
#include "coll.h"
#include "config.h"
#include "frontend.h"
#include "fsutil.h"
#include "job.h"
#include "journal.h"
#include "log.h"
#include "longform.h"
#include "mel.h"
#include "model.h"
#include "outputs.h"
#include "progress.h"
#include "search.h"
#include "tokenizer.h"
#include "vad.h"
#include "vs_build_config.h"
#include "vs_error.h"
#include "whisper.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* Defaults are faster-whisper's WhisperModel.transcribe / BatchedInferencePipeline ones. */
static const vs_opt_spec transcribe_specs[] = {
    {"model", VS_OPT_STRING, NULL, "voxshard model file (.h5, made by voxshard convert)"},
    {"out", VS_OPT_STRING, NULL, "output folder (required)"},
    {"mode", VS_OPT_CHOICE, "sequential",
     "sequential: faster-whisper's long-form seek loop (timestamps, previous-text conditioning, "
     "fallback); batched: Silero VAD chunks of <= 30 s from many files decoded together",
     "sequential|batched"},
    {"vad-model", VS_OPT_STRING, NULL,
     "Silero VAD v6 as HDF5 (voxshard convert silero_vad_v6.onnx) for --mode=batched "
     "[default: $VOXSHARD_CACHE/models/silero_vad_v6.h5]"},
    {"batch-size", VS_OPT_INT, "8",
     "windows decoded together: files advancing together (sequential) or VAD chunks (batched)",
     NULL, 1, 512},
    {"beam-size", VS_OPT_INT, "5", "beam width at temperature 0 (1: greedy)", NULL, 1, 64},
    {"best-of", VS_OPT_INT, "5", "samples per window at temperature > 0", NULL, 1, 64},
    {"patience", VS_OPT_DOUBLE, "1", "beam search patience", NULL, 0.01, 100},
    {"length-penalty", VS_OPT_DOUBLE, "1", "exponent of the length normalisation", NULL, 0, 10},
    {"temperature-increment", VS_OPT_DOUBLE, "0.2",
     "fallback temperatures 0, +inc, ... up to 1 (0: no fallback)", NULL, 0, 1},
    {"compression-ratio-threshold", VS_OPT_DOUBLE, "2.4",
     "retry a window whose text compresses better than this", NULL, 0, 1000},
    {"log-prob-threshold", VS_OPT_DOUBLE, "-1", "retry a window below this average log-prob", NULL,
     -1000, 0},
    {"no-speech-threshold", VS_OPT_DOUBLE, "0.6",
     "skip a window above this no-speech probability (when its log-prob is also low)", NULL, 0, 1},
    {"language", VS_OPT_STRING, "en",
     "language code for multilingual models (no detection); English-only models ignore it"},
    {"initial-prompt", VS_OPT_STRING, NULL,
     "text that prompts the first window (sequential) or every window (batched)"},
    {"condition-on-previous-text", VS_OPT_BOOL, "true",
     "sequential: prompt each window with the previous text"},
    {"without-timestamps", VS_OPT_BOOL, "false",
     "sequential: decode text only (one segment per window); batched always does (its "
     "faster-whisper default)"},
    {"precision", VS_OPT_CHOICE, "auto",
     "CPU precision: auto (bf16 where the CPU has native bf16), fp32, bf16, int8 (CTranslate2's "
     "int8 linears)",
     "auto|fp32|bf16|int8"},
    {"threads", VS_OPT_INT, "0", "model threads per rank (0: OpenMP's default)", NULL, 0, 4096},
    {"frontend-threads", VS_OPT_INT, "1", "decode + resample + log-mel (+ VAD) threads per rank",
     NULL, 1, 256},
    {"queue", VS_OPT_INT, "16", "decoded files waiting for the model, per rank (bounds memory)",
     NULL, 1, 100000},
    {"formats", VS_OPT_STRING, "jsonl,srt,vtt", "per-file outputs; jsonl is always written"},
    {"log-level", VS_OPT_CHOICE, "info", "log verbosity", "debug|info|warn|error"},
    {"progress", VS_OPT_CHOICE, "auto", "progress display", "auto|tty|log|off"},
    {"progress-interval", VS_OPT_DOUBLE, "10", "seconds between progress lines", NULL, 0.05, 86400},
    {"test-delay-ms", VS_OPT_INT, "0", "test hook: pause after each file (kill tests)", NULL, 0,
     1000000},
};
#define N_TRANSCRIBE_SPECS (sizeof transcribe_specs / sizeof transcribe_specs[0])

typedef struct {
  const char *out, *model_path, *formats, *precision_name;
  char *vad_path;
  bool batched;
  int batch_size, threads, frontend_threads, queue, test_delay_ms;
  vs_longform_options lf; /* search settings inside */
  double progress_interval;
  vs_progress_mode progress_mode;
} transcribe_opts;

/* ---- front end: per file, the whole log-mel (sequential) or VAD chunk windows (batched) ---- */

typedef struct {
  const vs_mel *mel;
  const vs_vad_model *vad; /* batched mode */
} fe_ctx;

typedef struct {
  float *mel; /* sequential: host, [n_mels][n_frames] with faster-whisper's 160 samples of pad */
  size_t n_frames;
  vs_batched_file chunks; /* batched */
} fe_payload;

static void payload_free(void *p) {
  fe_payload *f = p;
  g_free(f->mel);
  vs_batched_file_clear(&f->chunks);
  g_free(f);
}

static void *make_payload(size_t index, const float *samples, size_t n_samples, void *user,
                          GError **err) {
  const fe_ctx *ctx = user;
  fe_payload *f = g_new0(fe_payload, 1);
  bool ok;
  if (ctx->vad) {
    ok = vs_batched_prepare_file(ctx->vad, ctx->mel, samples, n_samples, &f->chunks, err);
  } else {
    f->n_frames = vs_mel_n_frames(n_samples, VS_MEL_PAD_FASTER_WHISPER);
    f->mel = g_try_new(float, f->n_frames *(size_t)vs_mel_n_mels(ctx->mel));
    if (!f->mel) {
      g_set_error(err, VS_ERROR, VS_ERROR_INTERNAL, "cannot allocate %zu frames of features",
                  f->n_frames);
      ok = false;
    } else {
      ok = vs_mel_compute(ctx->mel, samples, n_samples, VS_MEL_PAD_FASTER_WHISPER, f->mel, err);
    }
  }
  if (!ok) {
    payload_free(f);
    return NULL;
  }
  return f;
}

/* ---- the model side: everything below runs on the main thread (the only one using MPI) ---- */

typedef struct {
  const transcribe_opts *o;
  vs_job *job;
  vs_journal *journal;
  vs_progress *progress;
  const vs_model *model;
  const vs_tokenizer *tok;
  vs_longform_model lm;
  vs_search_options batched_search;
  int *batched_prompt; /* host, [n_batched_prompt] */
  int n_batched_prompt;
  size_t n_done, n_failed;
  double wait_s; /* main thread blocked on the front end: > 0 means the model starved */
} runner;

/* A file whose windows are being decoded in batched mode. */
typedef struct {
  vs_frontend_item *item;
  vs_batched_file *chunks;
  vs_search_result *results; /* [n_windows] */
  size_t n_pending;          /* windows not decoded yet */
} open_file;

static bool record_failure(runner *r, const vs_utt *u, int code, const char *reason,
                           const char *stage, GError **err) {
  vs_warn("file %s failed at %s: %s", u->id, stage, vs_error_code_name(code));
  r->n_failed++;
  vs_progress_add(r->progress, 0, 0, 1);
  return vs_journal_add_failure(r->journal, u->id, u->source, code, reason, err) &&
         vs_job_record_error(r->job, stage, u->id, u->source, code, reason, err);
}

/* Publishes a file's outputs, then journals it (the order that makes reruns exactly-once). */
static bool publish(runner *r, const vs_utt *u, vs_out_transcript *t, size_t n_samples,
                    GError **err) {
  gchar *dir = g_build_filename(r->o->out, "transcripts", NULL);
  gchar *formats = strstr(r->o->formats, "jsonl") ? g_strdup(r->o->formats)
                                                  : g_strconcat("jsonl,", r->o->formats, NULL);
  bool ok = vs_out_write_file_outputs(dir, t, formats, err);
  g_free(formats);
  g_free(dir);
  if (!ok) return false;
  gchar *rel = g_strdup_printf("transcripts/%s.jsonl", u->id);
  const char *ids[1] = {u->id};
  double dur = (double)n_samples / VS_AUDIO_RATE;
  int64_t frames = (int64_t)vs_mel_n_frames(n_samples, VS_MEL_PAD_FASTER_WHISPER);
  ok = vs_journal_add_shard(r->journal, rel, ids, &dur, &frames, 1, err);
  g_free(rel);
  if (!ok) return false;
  r->n_done++;
  vs_progress_add(r->progress, dur, 1, 0);
  vs_debug("file %s: %zu segments, %.2f s", u->id, t->n_segs, dur);
  if (r->o->test_delay_ms > 0) g_usleep((gulong)r->o->test_delay_ms * 1000);
  return true;
}

/* `language`: the one the model decoded with (hypotheses) or the corpus's (references). */
static void transcript_init(vs_out_transcript *t, const vs_utt *u, size_t n_samples,
                            const char *language) {
  memset(t, 0, sizeof *t);
  t->id = g_strdup(u->id);
  t->source = g_strdup(u->source);
  t->language = g_strdup(language && *language ? language : "en");
  t->speaker = u->speaker ? g_strdup(u->speaker) : NULL;
  t->duration_s = (double)n_samples / VS_AUDIO_RATE;
}

static const char *decode_language(const runner *r) {
  return vs_tokenizer_specials(r->tok)->multilingual ? r->o->lf.language : "en";
}

static void copy_tokens(vs_out_segment *s, const int *tokens, int n) {
  s->n_tokens = (size_t)n;
  s->tokens = g_new(int32_t, n ? n : 1);
  for (int k = 0; k < n; k++)
    s->tokens[k] = tokens[k];
}

/* Sequential mode: the files of one batch advance window by window together. */
static bool run_sequential_batch(runner *r, vs_frontend_item **items, int n, GError **err) {
  const float **mels = g_new(const float *, n);
  size_t *frames = g_new(size_t, n);
  for (int i = 0; i < n; i++) {
    const fe_payload *p = items[i]->payload;
    mels[i] = p->mel;
    frames[i] = p->n_frames;
  }
  vs_transcript *tr = g_new0(vs_transcript, n);
  bool ok = vs_longform_transcribe(&r->lm, &r->o->lf, mels, frames, n, tr, err);
  for (int i = 0; ok && i < n; i++) {
    const vs_utt *u = vs_corpus_utt(r->job->corpus, items[i]->index);
    vs_out_transcript t;
    transcript_init(&t, u, items[i]->n_samples, decode_language(r));
    t.n_segs = (size_t)tr[i].n_segments;
    t.segs = g_new0(vs_out_segment, t.n_segs ? t.n_segs : 1);
    for (size_t s = 0; s < t.n_segs; s++) {
      const vs_segment *g = &tr[i].segments[s];
      t.segs[s] = (vs_out_segment){.start_s = g->start,
                                   .end_s = g->end,
                                   .text = g_strdup(g->text),
                                   .avg_logprob = g->avg_logprob,
                                   .no_speech_prob = g->no_speech_prob,
                                   .compression_ratio = g->compression_ratio,
                                   .temperature = g->temperature};
      copy_tokens(&t.segs[s], g->tokens, g->n_tokens);
    }
    ok = publish(r, u, &t, items[i]->n_samples, err);
    vs_out_transcript_clear(&t);
  }
  for (int i = 0; i < n; i++)
    vs_transcript_clear(&tr[i]);
  g_free(tr);
  g_free(mels);
  g_free(frames);
  return ok;
}

/* Batched mode: a file is published once every one of its windows is decoded. */
static bool finish_file(runner *r, open_file *f, GError **err) {
  const vs_utt *u = vs_corpus_utt(r->job->corpus, f->item->index);
  vs_out_transcript t;
  transcript_init(&t, u, f->item->n_samples, decode_language(r));
  t.segs = g_new0(vs_out_segment, f->chunks->n_windows ? f->chunks->n_windows : 1);
  for (size_t w = 0; w < f->chunks->n_windows; w++) {
    const vs_search_result *res = &f->results[w];
    char *text = vs_tokenizer_decode(r->tok, res->tokens, (size_t)res->n_tokens);
    if (!text) text = g_strdup("");
    vs_out_segment *s = &t.segs[t.n_segs++];
    *s = (vs_out_segment){.start_s = f->chunks->windows[w].start_s,
                          .end_s = f->chunks->windows[w].end_s,
                          .text = text,
                          .avg_logprob = res->avg_logprob,
                          .no_speech_prob = res->no_speech_prob,
                          .compression_ratio = vs_search_compression_ratio(text, strlen(text)),
                          .temperature = res->temperature};
    copy_tokens(s, res->tokens, res->n_tokens);
  }
  bool ok = publish(r, u, &t, f->item->n_samples, err);
  vs_out_transcript_clear(&t);
  return ok;
}

static void open_file_free(vs_frontend *fe, open_file *f) {
  for (size_t w = 0; w < f->chunks->n_windows; w++)
    vs_search_result_clear(&f->results[w]);
  g_free(f->results);
  vs_frontend_item_free(fe, f->item);
  g_free(f);
}

typedef struct {
  open_file *file;
  size_t window;
} window_ref;

/* Windows one batched round takes at most: batch_size decode at once and finished ones are
 * replaced from the rest of the round (continuous batching), so the batch drains only at the
 * round's end; files are published when their round ends, which bounds the work a kill loses. */
enum { ROUND_BATCHES = 4 };

/* Decodes up to ROUND_BATCHES * batch_size queued windows (from any files) and publishes
 * finished files. */
static bool run_batched_round(runner *r, vs_frontend *fe, GQueue *windows, GError **err) {
  int n = MIN((int)windows->length, ROUND_BATCHES * r->o->batch_size);
  if (n == 0) return true;
  window_ref **refs = g_new(window_ref *, n);
  const float **mels = g_new(const float *, n);
  for (int i = 0; i < n; i++) {
    refs[i] = g_queue_pop_head(windows);
    mels[i] = refs[i]->file->chunks->windows[refs[i]->window].mel;
  }
  vs_search_result *results = g_new0(vs_search_result, n);
  bool ok = vs_batched_decode(&r->lm, &r->batched_search, r->batched_prompt, r->n_batched_prompt,
                              mels, n, r->o->batch_size, results, err);
  for (int i = 0; i < n; i++) {
    open_file *f = refs[i]->file;
    if (ok) {
      f->results[refs[i]->window] = results[i];
      memset(&results[i], 0, sizeof results[i]);
      if (--f->n_pending == 0) {
        ok = finish_file(r, f, err);
        open_file_free(fe, f);
      }
    }
    g_free(refs[i]);
  }
  for (int i = 0; i < n; i++)
    vs_search_result_clear(&results[i]);
  g_free(results);
  g_free(refs);
  g_free(mels);
  return ok;
}

/* Pulls files from the front end and decodes them until every file of this rank is done. */
static bool consume(runner *r, vs_frontend *fe, GError **err) {
  const transcribe_opts *o = r->o;
  GPtrArray *seq_batch = g_ptr_array_new();
  GQueue windows = G_QUEUE_INIT; /* batched: window_ref* waiting for a batch */
  bool ok = true, finished = false;
  while (ok && !finished) {
    /* Block briefly for the first item, then take what is ready without waiting: a batch is
     * cut when it is full or when the front end has nothing more right now. */
    gint64 wait_us = 100000;
    for (;;) {
      gint64 t_pop = g_get_monotonic_time();
      vs_frontend_item *it = vs_frontend_pop(fe, wait_us, &finished);
      r->wait_s += (g_get_monotonic_time() - t_pop) / 1e6;
      if (!it) break;
      wait_us = 0;
      const vs_utt *u = vs_corpus_utt(r->job->corpus, it->index);
      if (it->code) {
        ok = record_failure(r, u, it->code, it->reason, "decode", err);
        vs_frontend_item_free(fe, it);
      } else if (!o->batched) {
        g_ptr_array_add(seq_batch, it);
      } else {
        open_file *f = g_new0(open_file, 1);
        f->item = it;
        f->chunks = &((fe_payload *)it->payload)->chunks;
        f->n_pending = f->chunks->n_windows;
        f->results = g_new0(vs_search_result, f->n_pending ? f->n_pending : 1);
        if (f->n_pending == 0) { /* no speech: an empty transcript is the right answer */
          ok = finish_file(r, f, err);
          open_file_free(fe, f);
        } else {
          for (size_t w = 0; w < f->chunks->n_windows; w++) {
            window_ref *ref = g_new(window_ref, 1);
            *ref = (window_ref){f, w};
            g_queue_push_tail(&windows, ref);
          }
        }
      }
      if (!ok) break;
      if (!o->batched && (int)seq_batch->len >= o->batch_size) break;
      if (o->batched && (int)windows.length >= ROUND_BATCHES * o->batch_size) break;
    }
    if (ok && seq_batch->len > 0) {
      ok = run_sequential_batch(r, (vs_frontend_item **)seq_batch->pdata, (int)seq_batch->len, err);
      for (guint i = 0; i < seq_batch->len; i++)
        vs_frontend_item_free(fe, g_ptr_array_index(seq_batch, i));
      g_ptr_array_set_size(seq_batch, 0);
    }
    while (ok && windows.length > 0 &&
           ((int)windows.length >= o->batch_size || finished || wait_us == 100000)) {
      ok = run_batched_round(r, fe, &windows, err);
      if ((int)windows.length < o->batch_size && !finished) break;
    }
    if (ok) ok = vs_progress_tick(r->progress, err);
  }
  /* On failure: files still open are dropped unpublished; a rerun redoes them. */
  for (guint i = 0; i < seq_batch->len; i++)
    vs_frontend_item_free(fe, g_ptr_array_index(seq_batch, i));
  g_ptr_array_free(seq_batch, TRUE);
  GHashTable *open = g_hash_table_new(NULL, NULL);
  window_ref *ref;
  while ((ref = g_queue_pop_head(&windows))) {
    g_hash_table_add(open, ref->file);
    g_free(ref);
  }
  GHashTableIter iter;
  gpointer key;
  g_hash_table_iter_init(&iter, open);
  while (g_hash_table_iter_next(&iter, &key, NULL))
    open_file_free(fe, key);
  g_hash_table_destroy(open);
  return ok;
}

/* Rank 0, at the end: corpus CTM/STM from every journalled transcript, references, summary. */
static bool write_corpus_outputs(const transcribe_opts *o, const vs_corpus *corpus, size_t *n_files,
                                 GError **err) {
  vs_journal_state *js = vs_journal_load(o->out, err);
  if (!js) return false;
  GPtrArray *hyps = g_ptr_array_new_with_free_func((GDestroyNotify)vs_out_transcript_free);
  bool ok = true;
  for (size_t s = 0; ok && s < vs_journal_n_shards(js); s++) {
    gchar *path = g_build_filename(o->out, vs_journal_shard_at(js, s)->file, NULL);
    vs_out_transcript *t = vs_out_read_jsonl(path, err);
    g_free(path);
    if (t) g_ptr_array_add(hyps, t);
    ok = t != NULL;
  }
  GPtrArray *refs = g_ptr_array_new_with_free_func((GDestroyNotify)vs_out_transcript_free);
  for (size_t i = 0; ok && i < vs_corpus_size(corpus); i++) {
    const vs_utt *u = vs_corpus_utt(corpus, i);
    if (!u->text || !vs_journal_is_done(js, u->id)) continue;
    vs_out_transcript *t = g_new0(vs_out_transcript, 1);
    transcript_init(t, u, (size_t)llround(u->duration_s * VS_AUDIO_RATE), u->language);
    t->n_segs = 1;
    t->segs = g_new0(vs_out_segment, 1);
    t->segs[0] = (vs_out_segment){.start_s = 0,
                                  .end_s = u->duration_s,
                                  .text = g_strdup(u->text),
                                  .avg_logprob = NAN,
                                  .no_speech_prob = NAN,
                                  .compression_ratio = NAN,
                                  .temperature = NAN};
    g_ptr_array_add(refs, t);
  }
  gchar *ctm = g_build_filename(o->out, "corpus.ctm", NULL);
  gchar *stm = g_build_filename(o->out, "corpus.stm", NULL);
  gchar *ref = g_build_filename(o->out, "reference.stm", NULL);
  ok = ok && vs_out_write_ctm(ctm, (const vs_out_transcript *const *)hyps->pdata, hyps->len, err) &&
       vs_out_write_stm(stm, (const vs_out_transcript *const *)hyps->pdata, hyps->len, err) &&
       (refs->len == 0 ||
        vs_out_write_stm(ref, (const vs_out_transcript *const *)refs->pdata, refs->len, err));
  *n_files = hyps->len;
  g_free(ctm);
  g_free(stm);
  g_free(ref);
  g_ptr_array_free(hyps, TRUE);
  g_ptr_array_free(refs, TRUE);
  vs_journal_state_free(js);
  return ok;
}

static int run_transcribe(vs_coll *c, const transcribe_opts *o, const char *const *inputs,
                          size_t n_inputs) {
  const int rank = vs_coll_rank(c), world = vs_coll_size(c);
  gint64 t_start = g_get_monotonic_time();
  GError *err = NULL;
  int exit_code = VS_TRANSCRIBE_EXIT_FATAL;
  vs_job job = {.lock_fd = -1, .errors_fd = -1};
  vs_model *model = NULL;
  vs_whisper *w = NULL;
  vs_whisper_state *st = NULL;
  vs_mel *mel = NULL;
  vs_vad_model *vad = NULL;
  vs_search_vocab vocab = {0};
  vs_search_decoder dec;
  runner r = {.o = o, .job = &job};

  static const char *const subdirs[] = {"transcripts", NULL};
  if (!vs_job_begin(&job, c, "transcribe", o->out, subdirs, inputs, n_inputs,
                    VS_TRANSCRIBE_EXIT_FATAL))
    goto out;

  /* The front end (on worker threads) starts as soon as the model file's header says how many
   * mels it wants: it decodes and cuts the first files while the weights are read and prepared,
   * instead of after. Then the read-only model, and this rank's run state sized for one batch. */
  vs_frontend *fe = NULL;
  fe_ctx fctx = {NULL, NULL};
  vs_whisper_hparams hp;
  bool ok = vs_model_read_hparams(o->model_path, &hp, &err);
  if (ok) ok = (mel = vs_mel_init(hp.n_mels, &err)) != NULL;
  if (ok && o->batched) ok = (vad = vs_vad_load(o->vad_path, &err)) != NULL;
  if (ok) {
    fctx = (fe_ctx){mel, vad};
    fe = vs_frontend_start(job.corpus, job.own, job.n_own, o->frontend_threads, o->queue,
                           make_payload, payload_free, &fctx);
  }
  if (ok) ok = (model = vs_model_load(o->model_path, &err)) != NULL;
  if (ok && vs_model_hparams(model)->n_mels != hp.n_mels) {
    g_set_error(&err, VS_ERROR, VS_ERROR_MODEL, "%s: the file changed while it was being read",
                o->model_path);
    ok = false;
  }
  if (ok) {
    vs_whisper_params wp = vs_whisper_default_params();
    wp.backend = VS_BACKEND_CPU;
    int p = vs_precision_parse(o->precision_name);
    wp.precision = p < 0 ? VS_PRECISION_AUTO : (vs_precision)p;
    wp.n_threads = o->threads;
    ok = (w = vs_whisper_init(model, &wp, &err)) != NULL;
  }
  if (ok) {
    r.model = model;
    r.tok = vs_model_tokenizer(model);
    size_t ns = 0, nb = 0;
    const int *sup = vs_model_suppress_ids(model, &ns),
              *supb = vs_model_suppress_ids_begin(model, &nb);
    ok = vs_search_vocab_init(&vocab, r.tok, sup, ns, supb, nb, &err);
  }
  if (ok) {
    r.batched_search = vs_batched_search_options(&o->lf.search);
    /* Built in both modes: it also rejects an unknown --language before any file is read. */
    ok = (r.batched_prompt = vs_batched_prompt(r.tok, o->lf.language, false, o->lf.initial_prompt,
                                               vs_model_hparams(model)->n_text_ctx,
                                               &r.n_batched_prompt, &err)) != NULL;
  }
  if (ok) {
    int slots =
        o->batched ? vs_search_slots_max(&r.batched_search) : vs_search_slots_max(&o->lf.search);
    ok = (st = vs_whisper_state_init(w, o->batch_size, o->batch_size * slots, &err)) != NULL;
  }
  if (ok) ok = (r.journal = vs_journal_open(o->out, rank, job.run, world, &err)) != NULL;
  ok = ok && vs_job_open_errors(&job, &err);
  if (!ok) vs_error("%s", err->message);
  g_clear_error(&err);
  if (!vs_job_agree(c, ok, "loading the model and opening outputs", VS_TRANSCRIBE_EXIT_FATAL)) {
    if (fe) {
      vs_frontend_cancel(fe);
      vs_frontend_free(fe);
    }
    goto out;
  }
  if (rank == 0)
    vs_info("model %s: %d mels, d=%d, %d+%d layers, vocabulary %d, precision %s", o->model_path,
            vs_model_hparams(model)->n_mels, vs_model_hparams(model)->n_audio_state,
            vs_model_hparams(model)->n_audio_layer, vs_model_hparams(model)->n_text_layer,
            vs_model_hparams(model)->n_vocab, vs_precision_name(vs_whisper_precision(w)));
  dec = vs_longform_whisper_decoder(st, w);
  r.lm = (vs_longform_model){&dec, r.tok, &vocab, vs_model_hparams(model)->n_mels};

  r.progress = vs_progress_new(c, "transcribe", job.total_todo_s, o->progress_interval,
                               o->progress_mode, &err);
  if (!r.progress) {
    vs_error("%s", err->message);
    vs_coll_abort(c, VS_TRANSCRIBE_EXIT_FATAL);
  }

  /* Front end on worker threads (started above); model, outputs and MPI on this thread. */
  vs_info("start-up (plan, model load) %.2f s", (g_get_monotonic_time() - t_start) / 1e6);
  bool work_ok = consume(&r, fe, &err);
  if (!work_ok) {
    vs_error("transcribing: %s (published transcripts are kept; a rerun redoes the rest)",
             err ? err->message : "unknown error");
    g_clear_error(&err);
    vs_frontend_cancel(fe);
  }
  vs_frontend_free(fe);
  vs_whisper_stats ms = vs_whisper_state_stats(st);
  double model_wall = (double)(g_get_monotonic_time() - t_start) / 1e6;
  vs_info("time: encoder %.2f s (%ld windows), decoder %.2f s (%ld steps, %ld sequence steps), "
          "waiting for audio %.2f s, the rest (search, outputs, start-up) %.2f s",
          ms.encode_s, ms.windows, ms.decode_s, ms.decode_calls, ms.decode_rows, r.wait_s,
          model_wall - ms.encode_s - ms.decode_s - r.wait_s);

  double job_audio_s = 0;
  size_t job_done = 0, job_failed = 0;
  if (!vs_progress_finish(r.progress, &job_audio_s, &job_done, &job_failed, &err)) {
    vs_error("%s", err->message);
    vs_coll_abort(c, VS_TRANSCRIBE_EXIT_FATAL);
  }
  vs_journal_close(r.journal);
  r.journal = NULL;
  if (!vs_job_agree(c, work_ok, "transcribing", VS_TRANSCRIBE_EXIT_FATAL)) goto out;

  int32_t final_code = VS_TRANSCRIBE_EXIT_OK;
  if (rank == 0) {
    double wall = (double)(g_get_monotonic_time() - t_start) / 1e6;
    size_t n_problems = vs_corpus_n_problems(job.corpus), n_files = 0;
    final_code = job_failed || n_problems ? VS_TRANSCRIBE_EXIT_SOME_FAILED : VS_TRANSCRIBE_EXIT_OK;
    ok = write_corpus_outputs(o, job.corpus, &n_files, &err);
    if (ok) {
      JsonBuilder *b = json_builder_new();
      json_builder_begin_object(b);
      vs_job_json_string(b, "command", "transcribe");
      vs_job_json_string(b, "voxshard_version", VS_VERSION);
      vs_job_json_string(b, "model", o->model_path);
      vs_job_json_string(b, "mode", o->batched ? "batched" : "sequential");
      vs_job_json_string(b, "precision", vs_precision_name(vs_whisper_precision(w)));
      vs_job_json_int(b, "beam_size", o->lf.search.beam_size);
      vs_job_json_int(b, "batch_size", o->batch_size);
      vs_job_json_int(b, "run", job.run);
      vs_job_json_int(b, "world_size", world);
      vs_job_json_int(b, "files_in_corpus", (gint64)vs_corpus_size(job.corpus));
      vs_job_json_int(b, "done", (gint64)job_done);
      vs_job_json_int(b, "failed", (gint64)job_failed);
      vs_job_json_int(b, "corpus_problems", (gint64)n_problems);
      vs_job_json_int(b, "skipped_as_done", (gint64)job.n_skipped);
      vs_job_json_int(b, "files_transcribed_in_total", (gint64)n_files);
      vs_job_json_double(b, "audio_hours_done", job_audio_s / 3600.0);
      vs_job_json_double(b, "audio_hours_planned", job.total_todo_s / 3600.0);
      vs_job_json_double(b, "wall_seconds", wall);
      vs_job_json_double(b, "x_real_time", wall > 0 ? job_audio_s / wall : 0.0);
      /* Rank 0's own split; every rank logs its own. */
      vs_job_json_double(b, "rank0_encoder_seconds", ms.encode_s);
      vs_job_json_double(b, "rank0_decoder_seconds", ms.decode_s);
      vs_job_json_int(b, "rank0_windows_encoded", ms.windows);
      vs_job_json_int(b, "rank0_decoder_steps", ms.decode_calls);
      vs_job_json_int(b, "exit_code", final_code);
      json_builder_end_object(b);
      gchar *path = g_build_filename(o->out, "summary.json", NULL);
      ok = vs_job_write_json(path, b, &err);
      g_free(path);
      g_object_unref(b);
    }
    if (!ok) {
      vs_error("%s", err->message);
      g_clear_error(&err);
      final_code = VS_TRANSCRIBE_EXIT_FATAL;
    } else {
      vs_info(
          "transcribe done: %zu files (%.3f h of audio) in %.1f s, %.1fx real time; %zu failed, "
          "%zu corpus problems, %zu skipped as done",
          job_done, job_audio_s / 3600.0, wall, wall > 0 ? job_audio_s / wall : 0.0, job_failed,
          n_problems, job.n_skipped);
    }
  }
  if (!vs_coll_bcast(c, &final_code, sizeof final_code, 0, &err)) {
    vs_error("%s", err->message);
    vs_coll_abort(c, VS_TRANSCRIBE_EXIT_FATAL);
  }
  exit_code = final_code;

out:
  if (r.progress) vs_progress_free(r.progress);
  g_free(r.batched_prompt);
  vs_journal_close(r.journal);
  vs_search_vocab_clear(&vocab);
  vs_vad_free(vad);
  vs_mel_free(mel);
  vs_whisper_state_free(st);
  vs_whisper_free(w);
  vs_model_free(model);
  vs_job_end(&job);
  return exit_code;
}

static const char *usage_text = "voxshard transcribe [options] --model=M.h5 --out=DIR INPUT...";
static const char *summary_text =
    "Transcribes a corpus (directories of audio, tar shards read in place, JSONL manifests) with a "
    "Whisper model,\nsharded over MPI ranks by audio duration. Per file: OUT/transcripts/ID.jsonl "
    "(+ .srt, .vtt); per corpus:\nOUT/corpus.ctm, OUT/corpus.stm, OUT/reference.stm (when the "
    "corpus "
    "has reference text), OUT/summary.json.\nResumable: a rerun after a crash or kill (with any "
    "number of ranks) does only what is missing.\nExit codes: 0 all files done; 3 some files "
    "failed "
    "(OUT/errors/rank-*.jsonl); 1 fatal error (a rerun resumes);\n2 bad options.";

int vs_cmd_transcribe(int argc, char **argv) {
  GError *err = NULL;
  int rc = VS_TRANSCRIBE_EXIT_OK;
  vs_config *cfg = vs_config_new("transcribe", transcribe_specs, N_TRANSCRIBE_SPECS);
  if (!vs_config_parse_or_help(cfg, argc, argv, usage_text, summary_text, &rc)) {
    vs_config_free(cfg);
    return rc == 0 ? VS_TRANSCRIBE_EXIT_OK : VS_TRANSCRIBE_EXIT_USAGE;
  }
  const char *out = vs_config_get_string(cfg, "out");
  const char *model = vs_config_get_string(cfg, "model");
  const char *missing = !out || !*out                       ? "--out is required"
                        : !model || !*model                 ? "--model is required"
                        : vs_config_n_positionals(cfg) == 0 ? "no input given"
                                                            : NULL;
  if (missing) {
    fprintf(stderr, "voxshard transcribe: %s\nusage: %s (--help for options)\n", missing,
            usage_text);
    vs_config_free(cfg);
    return VS_TRANSCRIBE_EXIT_USAGE;
  }
  vs_log_set_level((vs_log_level)vs_log_level_from_name(vs_config_get_string(cfg, "log-level")));
  const char *pm = vs_config_get_string(cfg, "progress");
  transcribe_opts o = {
      .out = out,
      .model_path = model,
      .formats = vs_config_get_string(cfg, "formats"),
      .precision_name = vs_config_get_string(cfg, "precision"),
      .batched = !strcmp(vs_config_get_string(cfg, "mode"), "batched"),
      .batch_size = (int)vs_config_get_int(cfg, "batch-size"),
      .threads = (int)vs_config_get_int(cfg, "threads"),
      .frontend_threads = (int)vs_config_get_int(cfg, "frontend-threads"),
      .queue = (int)vs_config_get_int(cfg, "queue"),
      .test_delay_ms = (int)vs_config_get_int(cfg, "test-delay-ms"),
      .lf = vs_longform_default_options(),
      .progress_interval = vs_config_get_double(cfg, "progress-interval"),
      .progress_mode = !strcmp(pm, "tty")   ? VS_PROGRESS_TTY
                       : !strcmp(pm, "log") ? VS_PROGRESS_LOG
                       : !strcmp(pm, "off") ? VS_PROGRESS_OFF
                                            : VS_PROGRESS_AUTO,
  };
  if (o.batched && vs_config_is_set(cfg, "without-timestamps") &&
      !vs_config_get_bool(cfg, "without-timestamps")) {
    /* faster-whisper's batched pipeline can split chunks at timestamps; this one decodes text
     * only, and a silently different output is worse than a refusal. */
    fprintf(stderr, "voxshard transcribe: --mode=batched decodes text only (one segment per VAD "
                    "chunk); --without-timestamps=false needs --mode=sequential\n");
    vs_config_free(cfg);
    return VS_TRANSCRIBE_EXIT_USAGE;
  }
  const char *vad = vs_config_get_string(cfg, "vad-model");
  if (vad && *vad) {
    o.vad_path = g_strdup(vad);
  } else {
    const char *cache = g_getenv("VOXSHARD_CACHE");
    gchar *def_cache = g_build_filename(g_get_home_dir(), ".cache", "voxshard", NULL);
    o.vad_path =
        g_build_filename(cache && *cache ? cache : def_cache, "models", "silero_vad_v6.h5", NULL);
    g_free(def_cache);
  }
  vs_search_options *so = &o.lf.search;
  so->beam_size = (int)vs_config_get_int(cfg, "beam-size");
  so->best_of = (int)vs_config_get_int(cfg, "best-of");
  so->patience = (float)vs_config_get_double(cfg, "patience");
  so->length_penalty = (float)vs_config_get_double(cfg, "length-penalty");
  so->compression_ratio_threshold = vs_config_get_double(cfg, "compression-ratio-threshold");
  so->log_prob_threshold = vs_config_get_double(cfg, "log-prob-threshold");
  so->no_speech_threshold = vs_config_get_double(cfg, "no-speech-threshold");
  double inc = vs_config_get_double(cfg, "temperature-increment");
  so->n_temperatures = 0;
  for (double t = 0;
       t <= 1.0 + 1e-6 && so->n_temperatures<VS_SEARCH_MAX_TEMPERATURES; t += inc> 0 ? inc : 2.0)
    so->temperatures[so->n_temperatures++] = (float)t;
  o.lf.condition_on_previous_text = vs_config_get_bool(cfg, "condition-on-previous-text");
  o.lf.without_timestamps = vs_config_get_bool(cfg, "without-timestamps");
  o.lf.language = vs_config_get_string(cfg, "language");
  const char *ip = vs_config_get_string(cfg, "initial-prompt");
  o.lf.initial_prompt = ip && *ip ? ip : NULL;

  size_t n_inputs = vs_config_n_positionals(cfg);
  const char **inputs = g_new0(const char *, n_inputs + 1);
  for (size_t i = 0; i < n_inputs; i++)
    inputs[i] = vs_config_positional(cfg, i);

  vs_coll *c = vs_coll_init(&argc, &argv, &err);
  if (!c) {
    fprintf(stderr, "voxshard transcribe: %s\n", err->message);
    g_clear_error(&err);
    g_free(inputs);
    g_free(o.vad_path);
    vs_config_free(cfg);
    return VS_TRANSCRIBE_EXIT_FATAL;
  }
  vs_log_set_rank(vs_coll_rank(c), vs_coll_size(c));
  if (vs_coll_rank(c) == 0)
    vs_info("transcribe: %d rank(s), mode %s, batch %d, beam %d, %zu input(s) -> %s",
            vs_coll_size(c), o.batched ? "batched" : "sequential", o.batch_size, so->beam_size,
            n_inputs, out);
  rc = run_transcribe(c, &o, inputs, n_inputs);
  if (!vs_coll_finalize(c, &err)) {
    vs_error("%s", err->message);
    g_clear_error(&err);
    if (rc == VS_TRANSCRIBE_EXIT_OK) rc = VS_TRANSCRIBE_EXIT_FATAL;
  }
  g_free(inputs);
  g_free(o.vad_path);
  vs_config_free(cfg);
  return rc;
}
