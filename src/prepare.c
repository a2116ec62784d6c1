#include "prepare.h"

#include "audio.h"
#include "coll.h"
#include "config.h"
#include "corpus.h"
#include "featstore.h"
#include "frontend.h"
#include "fsutil.h"
#include "job.h"
#include "journal.h"
#include "log.h"
#include "mel.h"
#include "plan.h"
#include "progress.h"
#include "vs_build_config.h"
#include "vs_error.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static const vs_opt_spec prepare_specs[] = {
    {"out", VS_OPT_STRING, NULL,
     "output folder (required): shards/, journal/, errors/, index.h5, summary.json"},
    {"n-mels", VS_OPT_CHOICE, "80", "mel bins: 80 (Whisper v1/v2) or 128 (large-v3)", "80|128"},
    {"shard-seconds", VS_OPT_DOUBLE, "3600", "audio seconds per feature shard", NULL, 1, 1e9},
    {"pad-samples", VS_OPT_INT, "160",
     "zero samples appended before the STFT (160 as faster-whisper, 480000 as openai-whisper)",
     NULL, 0, 480000},
    {"threads", VS_OPT_INT, "4", "front-end worker threads per rank (decode, resample, log-mel)",
     NULL, 1, 256},
    {"queue", VS_OPT_INT, "16", "utterances computed ahead of the HDF5 writer, per rank", NULL, 1,
     4096},
    {"log-level", VS_OPT_CHOICE, "info", "log verbosity", "debug|info|warn|error"},
    {"progress", VS_OPT_CHOICE, "auto",
     "progress display on rank 0: auto (a live line on a terminal, "
     "log lines otherwise), tty, log or off",
     "auto|tty|log|off"},
    {"progress-interval", VS_OPT_DOUBLE, "10", "seconds between progress lines and reports", NULL,
     0.01, 86400},
    {"test-delay-ms", VS_OPT_INT, "0",
     "TEST HOOK: sleep this long after writing each utterance (kill tests)", NULL, 0, 600000},
    {"test-exit-after-publish", VS_OPT_INT, "0",
     "TEST HOOK: exit at once after publishing this many shards, before journalling the last "
     "(orphan tests)",
     NULL, 0, 1000000},
};
#define N_PREPARE_SPECS (sizeof prepare_specs / sizeof prepare_specs[0])

typedef struct {
  const char *out;
  int n_mels;
  double shard_seconds;
  size_t pad_samples;
  int threads, queue;
  double progress_interval;
  vs_progress_mode progress_mode;
  int test_delay_ms, test_exit_after_publish;
} prepare_opts;

/* ---- front end: log-mel features on worker threads (src/frontend.h) ---- */

typedef struct {
  const vs_mel *mel;
  const prepare_opts *o;
} mel_maker;

static void *make_features(size_t index, const float *samples, size_t n_samples, void *user,
                           GError **err) {
  const mel_maker *m = user;
  size_t n_frames = vs_mel_n_frames(n_samples, m->o->pad_samples);
  float *mel = g_try_new(float, n_frames * (size_t)m->o->n_mels); /* host, [n_mels][n_frames] */
  if (!mel)
    VS_FAIL(err, VS_ERROR_INTERNAL, NULL, "cannot allocate %zu frames of features", n_frames);
  if (!vs_mel_compute(m->mel, samples, n_samples, m->o->pad_samples, mel, err)) {
    g_free(mel);
    return NULL;
  }
  return mel;
}

typedef struct {
  const prepare_opts *o;
  vs_coll *c;
  int rank, world, run;
  const vs_corpus *corpus;
  vs_journal *journal;
  vs_job *job; /* errors file */
  vs_featstore_writer *shard;
  int shard_seq;
  GPtrArray *shard_ids;    /* char* (borrowed from the corpus) of the open shard, row order */
  GArray *shard_durations; /* double */
  GArray *shard_frames;    /* int64_t */
  size_t n_done, n_failed, n_published;
  double done_s;
} writer_state;

static bool open_shard(writer_state *w, GError **err) {
  w->shard_seq++;
  gchar *name = g_strdup_printf("shard-run%04d-r%05d-%06d.h5", w->run, w->rank, w->shard_seq);
  gchar *path = g_build_filename(w->o->out, "shards", name, NULL);
  w->shard = vs_featstore_create(path, w->o->n_mels, w->o->pad_samples, err);
  g_free(path);
  g_free(name);
  g_ptr_array_set_size(w->shard_ids, 0);
  g_array_set_size(w->shard_durations, 0);
  g_array_set_size(w->shard_frames, 0);
  return w->shard != NULL;
}

/* Publish first, journal second: a crash in between leaves an orphan the next run removes. */
static bool close_shard(writer_state *w, GError **err) {
  if (!w->shard) return true;
  if (vs_featstore_n_utts(w->shard) == 0) {
    vs_featstore_abort(w->shard);
    w->shard = NULL;
    return true;
  }
  gchar *base = g_path_get_basename(vs_featstore_final_path(w->shard));
  gchar *rel = g_build_filename("shards", base, NULL);
  size_t n = w->shard_ids->len;
  double secs = vs_featstore_seconds(w->shard);
  bool ok = vs_featstore_publish(w->shard, err);
  w->shard = NULL;
  if (ok) {
    w->n_published++;
    if (w->o->test_exit_after_publish > 0 && (int)w->n_published >= w->o->test_exit_after_publish) {
      vs_warn("test hook: exiting after publishing %s without journalling it", rel);
      _exit(137);
    }
    ok = vs_journal_add_shard(w->journal, rel, (const char *const *)w->shard_ids->pdata,
                              (const double *)(void *)w->shard_durations->data,
                              (const int64_t *)(void *)w->shard_frames->data, n, err);
    if (ok) vs_info("published %s: %zu utterances, %.1f s of audio", rel, n, secs);
  }
  g_free(rel);
  g_free(base);
  return ok;
}

static bool write_item(writer_state *w, const vs_frontend_item *it, GError **err) {
  const vs_utt *u = vs_corpus_utt(w->corpus, it->index);
  if (it->code) {
    w->n_failed++;
    vs_warn("utterance %s failed: %s", u->id, vs_error_code_name(it->code));
    return vs_journal_add_failure(w->journal, u->id, u->source, it->code, it->reason, err) &&
           vs_job_record_error(w->job, "decode", u->id, u->source, it->code, it->reason, err);
  }
  if (!w->shard && !open_shard(w, err)) return false;
  double dur = (double)it->n_samples / VS_AUDIO_RATE;
  vs_featstore_meta meta = {.id = u->id,
                            .source = u->source,
                            .text = u->text,
                            .speaker = u->speaker,
                            .language = u->language,
                            .n_samples = it->n_samples,
                            .duration_s = dur};
  const size_t n_frames = vs_mel_n_frames(it->n_samples, w->o->pad_samples);
  if (!vs_featstore_append(w->shard, &meta, it->payload, n_frames, err)) return false;
  g_ptr_array_add(w->shard_ids, u->id);
  g_array_append_val(w->shard_durations, dur);
  int64_t nf = (int64_t)n_frames;
  g_array_append_val(w->shard_frames, nf);
  w->n_done++;
  w->done_s += dur;
  if (vs_featstore_seconds(w->shard) >= w->o->shard_seconds) return close_shard(w, err);
  return true;
}

/* ---- helpers ---- */


static gint cmp_index_utt(gconstpointer a, gconstpointer b) {
  return strcmp(((const vs_featstore_index_utt *)a)->id, ((const vs_featstore_index_utt *)b)->id);
}

/* Rank 0, at the end: the corpus index from every journal, then the job summary. */
static bool write_index(const prepare_opts *o, const vs_corpus *corpus, size_t *n_index_utts,
                        double *index_seconds, GError **err) {
  vs_journal_state *js = vs_journal_load(o->out, err);
  if (!js) return false;
  GArray *utts = g_array_new(FALSE, FALSE, sizeof(vs_featstore_index_utt));
  GArray *shards = g_array_new(FALSE, FALSE, sizeof(vs_featstore_index_shard));
  GArray *failed = g_array_new(FALSE, FALSE, sizeof(vs_featstore_index_failure));
  double total = 0;
  for (size_t s = 0; s < vs_journal_n_shards(js); s++) {
    const vs_journal_shard *sh = vs_journal_shard_at(js, s);
    double secs = 0;
    for (size_t r = 0; r < sh->n; r++) {
      size_t si = 0, row = 0;
      /* Only the record that counts for an id (duplicates can only come from tampering). */
      if (!vs_journal_lookup(js, sh->ids[r], &si, &row) || si != s || row != r) continue;
      vs_featstore_index_utt u = {sh->ids[r], sh->file, r, (uint64_t)sh->n_frames[r],
                                  sh->durations_s[r]};
      g_array_append_val(utts, u);
      secs += sh->durations_s[r];
    }
    vs_featstore_index_shard x = {sh->file, sh->rank, sh->run, sh->n, secs};
    g_array_append_val(shards, x);
    total += secs;
  }
  /* Sorted by id so that a reader can bisect. */
  g_array_sort(utts, cmp_index_utt);
  for (size_t i = 0; i < vs_journal_n_failures(js); i++) {
    const vs_journal_failure *f = vs_journal_failure_at(js, i);
    vs_featstore_index_failure x = {f->id, f->source, f->code, f->reason};
    g_array_append_val(failed, x);
  }
  for (size_t i = 0; i < vs_corpus_n_problems(corpus); i++) {
    const vs_corpus_problem *p = vs_corpus_problem_at(corpus, i);
    vs_featstore_index_failure x = {"", p->source, vs_error_code_name(p->code), p->reason};
    g_array_append_val(failed, x);
  }
  gchar *path = g_build_filename(o->out, "index.h5", NULL);
  bool ok = vs_featstore_write_index(
      path, o->n_mels, o->pad_samples, (const vs_featstore_index_utt *)(void *)utts->data,
      utts->len, (const vs_featstore_index_shard *)(void *)shards->data, shards->len,
      (const vs_featstore_index_failure *)(void *)failed->data, failed->len, err);
  if (ok)
    vs_info("index %s: %u utterances in %u shards, %.3f h, %u failures", path, utts->len,
            shards->len, total / 3600.0, failed->len);
  *n_index_utts = utts->len;
  *index_seconds = total;
  g_free(path);
  g_array_free(utts, TRUE);
  g_array_free(shards, TRUE);
  g_array_free(failed, TRUE);
  vs_journal_state_free(js);
  return ok;
}

/* ---- the job ---- */

static int run_prepare(vs_coll *c, const prepare_opts *o, const char *const *inputs,
                       size_t n_inputs) {
  int rank = vs_coll_rank(c), world = vs_coll_size(c);
  gint64 t_start = g_get_monotonic_time();
  GError *err = NULL;
  int exit_code = VS_PREPARE_EXIT_FATAL;
  vs_job job = {.lock_fd = -1, .errors_fd = -1};
  vs_mel *mel = NULL;
  vs_progress *progress = NULL;
  writer_state w = {.o = o, .c = c, .rank = rank, .world = world, .job = &job};
  w.shard_ids = g_ptr_array_new();
  w.shard_durations = g_array_new(FALSE, FALSE, sizeof(double));
  w.shard_frames = g_array_new(FALSE, FALSE, sizeof(int64_t));

  /* 1-4. Journal, corpus, durations and plan (src/job.h). */
  static const char *const subdirs[] = {"shards", NULL};
  if (!vs_job_begin(&job, c, "prepare", o->out, subdirs, inputs, n_inputs,
                    VS_PREPARE_EXIT_FATAL))
    goto out;
  const int32_t run = job.run;
  w.run = run;
  vs_corpus *corpus = job.corpus;
  const size_t n = vs_corpus_size(corpus);
  const size_t *own = job.own, n_own = job.n_own, n_skipped = job.n_skipped;
  const double total_todo_s = job.total_todo_s;
  const double *load_s = job.load_s;
  bool ok = true;

  /* 5. Per-rank outputs. */
  w.corpus = corpus;
  w.journal = vs_journal_open(o->out, rank, run, world, &err);
  ok = w.journal != NULL;
  ok = ok && vs_job_open_errors(&job, &err);
  if (ok) {
    mel = vs_mel_init(o->n_mels, &err);
    ok = mel != NULL;
  }
  if (!ok) vs_error("%s", err->message);
  g_clear_error(&err);
  if (!vs_job_agree(c, ok, "opening outputs", VS_PREPARE_EXIT_FATAL)) goto out;
  progress =
      vs_progress_new(c, "prepare", total_todo_s, o->progress_interval, o->progress_mode, &err);
  if (!progress) goto fatal;

  /* 6. Front end on worker threads, HDF5 writer (and all MPI) on this thread. */
  bool writer_ok = true;
  {
    mel_maker maker = {mel, o};
    vs_frontend *fe = vs_frontend_start(corpus, own, n_own, o->threads, o->queue, make_features,
                                        g_free, &maker);
    GError *werr = NULL;
    for (;;) {
      bool finished = false;
      vs_frontend_item *it = vs_frontend_pop(fe, 100000, &finished);
      if (it) {
        if (writer_ok) {
          const vs_utt *u = vs_corpus_utt(corpus, it->index);
          if (!write_item(&w, it, &werr)) {
            writer_ok = false;
            vs_frontend_cancel(fe);
          } else {
            vs_progress_add(progress, it->code ? 0 : (double)it->n_samples / VS_AUDIO_RATE,
                            it->code ? 0 : 1, it->code ? 1 : 0);
            vs_debug("utterance %s: %s, %zu samples", u->id, it->code ? "failed" : "done",
                     it->n_samples);
          }
          if (o->test_delay_ms > 0) g_usleep((gulong)o->test_delay_ms * 1000);
        }
        vs_frontend_item_free(fe, it);
      }
      if (writer_ok && !vs_progress_tick(progress, &werr)) {
        /* Progress is cosmetic, but an MPI failure here means the job is in trouble. */
        writer_ok = false;
        vs_frontend_cancel(fe);
      }
      if (finished) break;
    }
    vs_frontend_free(fe);
    if (writer_ok && !close_shard(&w, &werr)) writer_ok = false;
    if (!writer_ok) {
      vs_featstore_abort(w.shard);
      w.shard = NULL;
      vs_error("writing outputs: %s (published shards are kept; a rerun redoes the rest)",
               werr ? werr->message : "unknown error");
    }
    g_clear_error(&werr);
  }
  double job_audio_s = 0;
  size_t job_done = 0, job_failed = 0;
  if (!vs_progress_finish(progress, &job_audio_s, &job_done, &job_failed, &err)) goto fatal;
  vs_journal_close(w.journal);
  w.journal = NULL;
  if (!vs_job_agree(c, writer_ok, "processing utterances", VS_PREPARE_EXIT_FATAL)) goto out;

  /* 7. Rank 0: index and summary from everything journalled, this run and earlier ones. */
  int32_t final_code = VS_PREPARE_EXIT_OK;
  if (rank == 0) {
    size_t n_index = 0;
    double index_s = 0;
    double wall = (double)(g_get_monotonic_time() - t_start) / 1e6;
    size_t n_problems = vs_corpus_n_problems(corpus);
    bool some_failed = job_failed > 0 || n_problems > 0;
    final_code = some_failed ? VS_PREPARE_EXIT_SOME_FAILED : VS_PREPARE_EXIT_OK;
    ok = write_index(o, corpus, &n_index, &index_s, &err);
    if (ok) {
      JsonBuilder *b = json_builder_new();
      json_builder_begin_object(b);
      vs_job_json_string(b, "command", "prepare");
      vs_job_json_string(b, "voxshard_version", VS_VERSION);
      vs_job_json_int(b, "run", run);
      vs_job_json_int(b, "world_size", world);
      vs_job_json_int(b, "utterances_in_corpus", (gint64)n);
      vs_job_json_int(b, "done", (gint64)job_done);
      vs_job_json_int(b, "failed", (gint64)job_failed);
      vs_job_json_int(b, "corpus_problems", (gint64)n_problems);
      vs_job_json_int(b, "skipped_as_done", (gint64)n_skipped);
      vs_job_json_double(b, "audio_hours_done", job_audio_s / 3600.0);
      vs_job_json_double(b, "audio_hours_planned", total_todo_s / 3600.0);
      vs_job_json_int(b, "utterances_in_index", (gint64)n_index);
      vs_job_json_double(b, "audio_hours_in_index", index_s / 3600.0);
      vs_job_json_double(b, "wall_seconds", wall);
      vs_job_json_double(b, "x_real_time", wall > 0 ? job_audio_s / wall : 0.0);
      vs_job_json_int(b, "n_mels", o->n_mels);
      vs_job_json_int(b, "threads_per_rank", o->threads);
      json_builder_set_member_name(b, "planned_seconds_per_rank");
      json_builder_begin_array(b);
      for (int r = 0; r < world; r++)
        json_builder_add_double_value(b, load_s[r]);
      json_builder_end_array(b);
      vs_job_json_int(b, "exit_code", final_code);
      json_builder_end_object(b);
      gchar *summary_path = g_build_filename(o->out, "summary.json", NULL);
      ok = vs_job_write_json(summary_path, b, &err);
      g_free(summary_path);
      g_object_unref(b);
    }
    if (!ok) {
      vs_error("%s", err->message);
      g_clear_error(&err);
      final_code = VS_PREPARE_EXIT_FATAL;
    } else {
      vs_info("prepare done: %zu utterances (%.3f h) in %.1f s, %.1fx real time; %zu failed, %zu "
              "corpus "
              "problems, %zu skipped as done",
              job_done, job_audio_s / 3600.0, wall, wall > 0 ? job_audio_s / wall : 0.0, job_failed,
              n_problems, n_skipped);
    }
  }
  if (!vs_coll_bcast(c, &final_code, sizeof final_code, 0, &err)) goto fatal;
  exit_code = final_code;
  goto out;

fatal:
  vs_error("%s", err ? err->message : "unknown error");
  g_clear_error(&err);
  /* A failed collective leaves the other ranks waiting: end them all. */
  vs_coll_abort(c, VS_PREPARE_EXIT_FATAL);
out:
  if (progress) vs_progress_free(progress);
  vs_featstore_abort(w.shard);
  vs_journal_close(w.journal);
  g_ptr_array_free(w.shard_ids, TRUE);
  g_array_free(w.shard_durations, TRUE);
  g_array_free(w.shard_frames, TRUE);
  vs_mel_free(mel);
  vs_job_end(&job);
  return exit_code;
}

static const char *usage_text = "voxshard prepare [options] --out=DIR INPUT...";
static const char *summary_text =
    "Turns a corpus (audio folders, tar shards, JSONL manifests, in any mix) into Whisper log-mel\n"
    "feature shards (HDF5) across MPI ranks (mpirun -np N voxshard prepare ...). Resumable: rerun "
    "the\n"
    "same command, with any number of ranks, after a kill; finished shards are kept. See "
    "docs/prepare.md.\n"
    "\n"
    "exit codes: 0 all utterances prepared; 3 finished, but some utterances or corpus items "
    "failed\n"
    "(OUT/errors/rank-*.jsonl, OUT/summary.json); 1 fatal error (a rerun resumes); 2 bad options.";

int vs_cmd_prepare(int argc, char **argv) {
  GError *err = NULL;
  int rc = VS_PREPARE_EXIT_OK;
  vs_config *cfg = vs_config_new("prepare", prepare_specs, N_PREPARE_SPECS);
  if (!vs_config_parse_or_help(cfg, argc, argv, usage_text, summary_text, &rc)) {
    vs_config_free(cfg);
    return rc == 0 ? VS_PREPARE_EXIT_OK : VS_PREPARE_EXIT_USAGE;
  }
  const char *out = vs_config_get_string(cfg, "out");
  if (!out || !*out || vs_config_n_positionals(cfg) == 0) {
    fprintf(stderr, "voxshard prepare: %s\nusage: %s (--help for options)\n",
            !out || !*out ? "--out is required" : "no input given", usage_text);
    vs_config_free(cfg);
    return VS_PREPARE_EXIT_USAGE;
  }
  vs_log_set_level((vs_log_level)vs_log_level_from_name(vs_config_get_string(cfg, "log-level")));
  const char *pm = vs_config_get_string(cfg, "progress");
  prepare_opts o = {
      .out = out,
      .n_mels = (int)vs_config_get_int(cfg, "n-mels"),
      .shard_seconds = vs_config_get_double(cfg, "shard-seconds"),
      .pad_samples = (size_t)vs_config_get_int(cfg, "pad-samples"),
      .threads = (int)vs_config_get_int(cfg, "threads"),
      .queue = (int)vs_config_get_int(cfg, "queue"),
      .progress_interval = vs_config_get_double(cfg, "progress-interval"),
      .progress_mode = !strcmp(pm, "tty")   ? VS_PROGRESS_TTY
                       : !strcmp(pm, "log") ? VS_PROGRESS_LOG
                       : !strcmp(pm, "off") ? VS_PROGRESS_OFF
                                            : VS_PROGRESS_AUTO,
      .test_delay_ms = (int)vs_config_get_int(cfg, "test-delay-ms"),
      .test_exit_after_publish = (int)vs_config_get_int(cfg, "test-exit-after-publish"),
  };
  size_t n_inputs = vs_config_n_positionals(cfg);
  const char **inputs = g_new0(const char *, n_inputs + 1);
  for (size_t i = 0; i < n_inputs; i++)
    inputs[i] = vs_config_positional(cfg, i);

  vs_coll *c = vs_coll_init(&argc, &argv, &err);
  if (!c) {
    fprintf(stderr, "voxshard prepare: %s\n", err->message);
    g_clear_error(&err);
    g_free(inputs);
    vs_config_free(cfg);
    return VS_PREPARE_EXIT_FATAL;
  }
  vs_log_set_rank(vs_coll_rank(c), vs_coll_size(c));
  if (vs_coll_rank(c) == 0) {
    char *dump = vs_config_dump(cfg);
    gchar **lines = g_strsplit(dump, "\n", -1);
    for (gchar **l = lines; *l; l++)
      if (**l) vs_debug("option %s", *l);
    g_strfreev(lines);
    g_free(dump);
    vs_info("prepare: %d rank(s), %d front-end thread(s) each, n_mels %d, %zu input(s) -> %s",
            vs_coll_size(c), o.threads, o.n_mels, n_inputs, out);
  }
  rc = run_prepare(c, &o, inputs, n_inputs);
  if (!vs_coll_finalize(c, &err)) {
    vs_error("%s", err->message);
    g_clear_error(&err);
    if (rc == VS_PREPARE_EXIT_OK) rc = VS_PREPARE_EXIT_FATAL;
  }
  g_free(inputs);
  vs_config_free(cfg);
  return rc;
}
