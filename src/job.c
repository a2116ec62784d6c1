#include "job.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "fsutil.h"
#include "journal.h"
#include "log.h"
#include "plan.h"
#include "vs_error.h"

static guint64 fnv1a(guint64 h, const char *s) {
  for (; *s; s++)
    h = (h ^ (guchar)*s) * 1099511628211ull;
  return (h ^ 0xff) * 1099511628211ull;
}

static bool remove_matching(const char *dir, const char *prefix, const char *suffix, GError **err) {
  GDir *d = g_dir_open(dir, 0, NULL);
  if (!d) return true;
  const char *name;
  bool ok = true;
  while (ok && (name = g_dir_read_name(d))) {
    if (!g_str_has_prefix(name, prefix) || !g_str_has_suffix(name, suffix)) continue;
    gchar *p = g_build_filename(dir, name, NULL);
    if (unlink(p) != 0 && errno != ENOENT) {
      g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot remove: %s", p, g_strerror(errno));
      ok = false;
    }
    g_free(p);
  }
  g_dir_close(d);
  return ok;
}

bool vs_job_agree(vs_coll *c, bool local_ok, const char *stage, int fatal_exit_code) {
  GError *err = NULL;
  int64_t total = 0;
  if (!vs_coll_count_errors(c, local_ok ? 0 : 1, &total, &err)) {
    vs_error("%s: %s", stage, err->message);
    g_clear_error(&err);
    vs_coll_abort(c, fatal_exit_code); /* ranks can no longer agree: stop them all */
  }
  if (total > 0 && local_ok) vs_error("%s: %lld rank(s) failed; stopping", stage, (long long)total);
  return total == 0;
}

void vs_job_json_int(JsonBuilder *b, const char *key, gint64 v) {
  json_builder_set_member_name(b, key);
  json_builder_add_int_value(b, v);
}
void vs_job_json_double(JsonBuilder *b, const char *key, double v) {
  json_builder_set_member_name(b, key);
  json_builder_add_double_value(b, v);
}
void vs_job_json_string(JsonBuilder *b, const char *key, const char *v) {
  json_builder_set_member_name(b, key);
  json_builder_add_string_value(b, v);
}

bool vs_job_write_json(const char *path, JsonBuilder *b, GError **err) {
  JsonGenerator *g = json_generator_new();
  JsonNode *root = json_builder_get_root(b);
  json_generator_set_root(g, root);
  json_generator_set_pretty(g, TRUE);
  gsize len = 0;
  gchar *text = json_generator_to_data(g, &len);
  gchar *data = g_strconcat(text, "\n", NULL);
  bool ok = vs_fs_write_atomic(path, data, strlen(data), err);
  g_free(data);
  g_free(text);
  json_node_unref(root);
  g_object_unref(g);
  return ok;
}

static int sort_by_source(const void *a, const void *b, void *data) {
  const vs_corpus *c = data;
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  const vs_utt *u = vs_corpus_utt(c, x), *v = vs_corpus_utt(c, y);
  int k = strcmp(u->path, v->path);
  if (k) return k;
  if (u->start_s != v->start_s) return u->start_s < v->start_s ? -1 : 1;
  return x < y ? -1 : x > y;
}

/* Step 1, rank 0 only: lock, journal, orphans; the run number and done ids as one blob. */
static bool read_journal(vs_job *job, const char *name, const char *const *subdirs, GString *blob,
                         GError **err) {
  for (const char *const *d = subdirs; d && *d; d++) {
    gchar *p = g_build_filename(job->out, *d, NULL);
    bool ok = vs_fs_mkdir_p(p, err);
    g_free(p);
    if (!ok) return false;
  }
  gchar *errors_dir = g_build_filename(job->out, "errors", NULL);
  gchar *lock_name = g_strdup_printf(".%s.lock", name);
  gchar *lock_path = g_build_filename(job->out, lock_name, NULL);
  bool ok = vs_fs_mkdir_p(errors_dir, err);
  if (ok) {
    job->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0664);
    if (job->lock_fd < 0) {
      g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot open lock file: %s", lock_path,
                  g_strerror(errno));
      ok = false;
    } else if (flock(job->lock_fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) {
        g_set_error(err, VS_ERROR, VS_ERROR_IO,
                    "%s: another %s job is writing to this output folder", lock_path, name);
        ok = false;
      } else {
        vs_warn("%s: file locks unsupported here (%s); make sure no other job writes to this folder",
                lock_path, g_strerror(errno));
      }
    }
  }
  vs_journal_state *js = ok ? vs_journal_load(job->out, err) : NULL;
  ok = ok && js;
  size_t removed = 0;
  ok = ok && vs_journal_remove_orphans(js, job->out, &removed, err);
  ok = ok && remove_matching(errors_dir, "rank-", ".jsonl", err);
  if (ok) {
    int32_t run = vs_journal_max_run(js) + 1;
    g_string_append_len(blob, (const char *)&run, sizeof run);
    for (size_t s = 0; s < vs_journal_n_shards(js); s++) {
      const vs_journal_shard *sh = vs_journal_shard_at(js, s);
      for (size_t r = 0; r < sh->n; r++)
        g_string_append_len(blob, sh->ids[r], (gssize)strlen(sh->ids[r]) + 1);
    }
    vs_info("run %d: journal holds %zu done utterances in %zu records (%zu torn, %zu missing "
            "outputs); %zu orphan/temp files removed",
            run, vs_journal_n_done(js), vs_journal_n_shards(js), vs_journal_n_torn(js),
            vs_journal_n_missing(js), removed);
  }
  vs_journal_state_free(js);
  g_free(errors_dir);
  g_free(lock_name);
  g_free(lock_path);
  return ok;
}

#define FATAL(stage)                                                                          \
  do {                                                                                        \
    vs_error("%s: %s", stage, err ? err->message : "unknown error");                          \
    g_clear_error(&err);                                                                      \
    vs_coll_abort(c, fatal_exit_code); /* a failed collective leaves the others waiting */     \
  } while (0)

bool vs_job_begin(vs_job *job, vs_coll *c, const char *name, const char *out,
                  const char *const *subdirs, const char *const *inputs, size_t n_inputs,
                  int fatal_exit_code) {
  memset(job, 0, sizeof *job);
  job->coll = c;
  job->rank = vs_coll_rank(c);
  job->world = vs_coll_size(c);
  job->out = out;
  job->lock_fd = -1;
  job->errors_fd = -1;
  const int rank = job->rank, world = job->world;
  GError *err = NULL;

  /* 1. */
  size_t blob_size = 0;
  bool ok = true;
  if (rank == 0) {
    GString *blob = g_string_new(NULL);
    ok = read_journal(job, name, subdirs, blob, &err);
    if (!ok) vs_error("%s", err->message);
    g_clear_error(&err);
    blob_size = blob->len;
    job->done_blob = g_string_free(blob, FALSE);
  }
  if (!vs_job_agree(c, ok, "reading the journal", fatal_exit_code)) return false;
  if (!vs_coll_bcast_alloc(c, &job->done_blob, &blob_size, 0, &err)) FATAL("broadcast");
  int32_t run = 0;
  memcpy(&run, job->done_blob, sizeof run);
  job->run = run;
  job->done = g_hash_table_new(g_str_hash, g_str_equal);
  for (size_t p = sizeof run; p < blob_size;) {
    const char *id = (const char *)job->done_blob + p;
    g_hash_table_add(job->done, (gpointer)id);
    p += strlen(id) + 1;
  }

  /* 2. */
  job->corpus = vs_corpus_scan(inputs, n_inputs, &err);
  if (!job->corpus) vs_error("%s", err->message);
  g_clear_error(&err);
  if (!vs_job_agree(c, job->corpus != NULL, "scanning the corpus", fatal_exit_code)) return false;
  vs_corpus *corpus = job->corpus;
  size_t n = vs_corpus_size(corpus);
  {
    guint64 h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
      h = fnv1a(h, vs_corpus_utt(corpus, i)->id);
    int64_t mm[4] = {(int64_t)n, (int64_t)h, -(int64_t)n, -(int64_t)h};
    if (!vs_coll_allreduce_i64(c, mm, 4, VS_COLL_MAX, &err)) FATAL("allreduce");
    if (mm[0] != -mm[2] || mm[1] != -mm[3]) {
      vs_error("ranks see different corpora (utterance counts or ids differ between hosts): inputs "
               "must be the same shared paths on every node");
      return false;
    }
  }
  vs_info("corpus: %zu utterances, %zu problems while scanning", n, vs_corpus_n_problems(corpus));

  /* 3. */
  ok = vs_corpus_probe_durations(corpus, (size_t)rank, (size_t)world, &err);
  if (!ok) vs_error("probing durations: %s", err->message);
  g_clear_error(&err);
  if (!vs_job_agree(c, ok, "probing durations", fatal_exit_code)) return false;
  {
    size_t mine = 0;
    for (size_t i = (size_t)rank; i < n; i += (size_t)world)
      mine++;
    double *durations = g_new0(double, mine ? mine : 1), *all_durs = NULL;
    size_t k = 0;
    for (size_t i = (size_t)rank; i < n; i += (size_t)world)
      durations[k++] = vs_corpus_utt(corpus, i)->duration_s;
    size_t *counts = g_new0(size_t, world);
    ok = vs_coll_allgatherv_f64(c, durations, mine, &all_durs, counts, &err);
    g_free(counts);
    g_free(durations);
    if (!ok) FATAL("allgather");
    size_t pos = 0;
    for (int r = 0; r < world; r++)
      for (size_t i = (size_t)r; i < n; i += (size_t)world) {
        double d = all_durs[pos++];
        vs_corpus_utt(corpus, i)->duration_s = d < 0 ? 0 : d;
      }
    g_free(all_durs);
  }

  /* 4. */
  GPtrArray *todo_ids = g_ptr_array_new();
  GArray *todo_durs = g_array_new(FALSE, FALSE, sizeof(double));
  GArray *todo_idx = g_array_new(FALSE, FALSE, sizeof(size_t));
  for (size_t i = 0; i < n; i++) {
    vs_utt *u = vs_corpus_utt(corpus, i);
    if (g_hash_table_contains(job->done, u->id)) {
      job->n_skipped++;
      continue;
    }
    g_ptr_array_add(todo_ids, u->id);
    g_array_append_val(todo_durs, u->duration_s);
    g_array_append_val(todo_idx, i);
    job->total_todo_s += u->duration_s;
  }
  job->n_todo = todo_ids->len;
  int *rank_of = g_new0(int, job->n_todo ? job->n_todo : 1);
  job->load_s = g_new0(double, world);
  vs_plan_assign((const char *const *)todo_ids->pdata, (const double *)(void *)todo_durs->data,
                 job->n_todo, world, rank_of, job->load_s);
  job->own = g_new0(size_t, job->n_todo ? job->n_todo : 1);
  for (size_t k = 0; k < job->n_todo; k++)
    if (rank_of[k] == rank) job->own[job->n_own++] = g_array_index(todo_idx, size_t, k);
  g_free(rank_of);
  g_ptr_array_free(todo_ids, TRUE);
  g_array_free(todo_durs, TRUE);
  g_array_free(todo_idx, TRUE);
  g_qsort_with_data(job->own, (gint)job->n_own, sizeof(size_t), sort_by_source, corpus);
  vs_info("run %d: %zu to do (%.3f h), %zu already done; this rank: %zu utterances, %.1f s planned",
          job->run, job->n_todo, job->total_todo_s / 3600.0, job->n_skipped, job->n_own,
          job->load_s[rank]);
  return true;
}

void vs_job_end(vs_job *job) {
  g_free(job->own);
  g_free(job->load_s);
  if (job->done) g_hash_table_destroy(job->done);
  g_free(job->done_blob);
  vs_corpus_free(job->corpus);
  if (job->lock_fd >= 0) close(job->lock_fd);
  if (job->errors_fd >= 0) close(job->errors_fd);
  g_free(job->errors_path);
  memset(job, 0, sizeof *job);
  job->lock_fd = job->errors_fd = -1;
}

bool vs_job_record_error(vs_job *job, const char *stage, const char *id, const char *source,
                         int code, const char *reason, GError **err) {
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "stage");
  json_builder_add_string_value(b, stage);
  json_builder_set_member_name(b, "id");
  if (id)
    json_builder_add_string_value(b, id);
  else
    json_builder_add_null_value(b);
  json_builder_set_member_name(b, "source");
  json_builder_add_string_value(b, source ? source : "");
  json_builder_set_member_name(b, "code");
  json_builder_add_string_value(b, vs_error_code_name(code));
  json_builder_set_member_name(b, "reason");
  json_builder_add_string_value(b, reason ? reason : "");
  json_builder_set_member_name(b, "rank");
  json_builder_add_int_value(b, job->rank);
  json_builder_set_member_name(b, "run");
  json_builder_add_int_value(b, job->run);
  json_builder_end_object(b);
  JsonGenerator *g = json_generator_new();
  JsonNode *root = json_builder_get_root(b);
  json_generator_set_root(g, root);
  gchar *text = json_generator_to_data(g, NULL);
  gchar *line = g_strconcat(text, "\n", NULL);
  bool ok = vs_fs_append_sync(job->errors_fd, job->errors_path, line, strlen(line), err);
  g_free(line);
  g_free(text);
  json_node_unref(root);
  g_object_unref(g);
  g_object_unref(b);
  return ok;
}

bool vs_job_open_errors(vs_job *job, GError **err) {
  job->errors_path = g_strdup_printf("%s/errors/rank-%05d.jsonl", job->out, job->rank);
  job->errors_fd = open(job->errors_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0664);
  if (job->errors_fd < 0)
    VS_FAIL(err, VS_ERROR_IO, false, "%s: cannot create errors file: %s", job->errors_path,
            g_strerror(errno));
  bool ok = true;
  if (job->rank == 0)
    for (size_t i = 0; ok && i < vs_corpus_n_problems(job->corpus); i++) {
      const vs_corpus_problem *p = vs_corpus_problem_at(job->corpus, i);
      ok = vs_job_record_error(job, "scan", NULL, p->source, p->code, p->reason, err);
    }
  return ok;
}
