#include "journal.h"

#include "fsutil.h"
#include "log.h"
#include "vs_error.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct vs_journal {
  int fd;
  char *path;
  int run, rank;
};

static char *journal_dir(const char *out_dir) {
  return g_build_filename(out_dir, "journal", NULL);
}

static char *line_of(JsonBuilder *b) {
  JsonNode *root = json_builder_get_root(b);
  JsonGenerator *g = json_generator_new();
  json_generator_set_root(g, root);
  gsize len = 0;
  gchar *text = json_generator_to_data(g, &len);
  g_object_unref(g);
  json_node_unref(root);
  char *line = g_strconcat(text, "\n", NULL);
  g_free(text);
  return line;
}

static bool append_line(vs_journal *j, JsonBuilder *b, GError **err) {
  char *line = line_of(b);
  bool ok = vs_fs_append_sync(j->fd, j->path, line, strlen(line), err);
  g_free(line);
  return ok;
}

static void begin_record(JsonBuilder *b, const char *type, int run, int rank) {
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "type");
  json_builder_add_string_value(b, type);
  json_builder_set_member_name(b, "run");
  json_builder_add_int_value(b, run);
  json_builder_set_member_name(b, "rank");
  json_builder_add_int_value(b, rank);
}

/* A crash mid-append leaves bytes after the last newline; appending after them would glue the
 * next record onto the torn one, so cut them off first. */
static bool cut_torn_tail(int fd, const char *path, GError **err) {
  struct stat st;
  if (fstat(fd, &st) != 0) VS_FAIL_ERRNO(err, false, "fstat failed", path);
  off_t size = st.st_size;
  if (size == 0) return true;
  char buf[4096];
  off_t end = size;
  while (end > 0) {
    off_t start = end > (off_t)sizeof buf ? end - (off_t)sizeof buf : 0;
    ssize_t n = pread(fd, buf, (size_t)(end - start), start);
    if (n < 0) VS_FAIL_ERRNO(err, false, "read failed", path);
    for (ssize_t k = n - 1; k >= 0; k--) {
      if (buf[k] == '\n') {
        off_t keep = start + k + 1;
        if (keep == size) return true;
        vs_warn("journal %s: cutting off a torn last record (%lld bytes) left by a crash", path,
                (long long)(size - keep));
        if (ftruncate(fd, keep) != 0) VS_FAIL_ERRNO(err, false, "ftruncate failed", path);
        if (fdatasync(fd) != 0) VS_FAIL_ERRNO(err, false, "fdatasync failed", path);
        return true;
      }
    }
    end = start;
  }
  vs_warn("journal %s: no complete record; cutting off %lld torn bytes", path, (long long)size);
  if (ftruncate(fd, 0) != 0) VS_FAIL_ERRNO(err, false, "ftruncate failed", path);
  return true;
}

vs_journal *vs_journal_open(const char *out_dir, int rank, int run, int world, GError **err) {
  char *dir = journal_dir(out_dir);
  if (!vs_fs_mkdir_p(dir, err)) {
    g_free(dir);
    return NULL;
  }
  vs_journal *j = g_new0(vs_journal, 1);
  j->rank = rank;
  j->run = run;
  j->path = g_strdup_printf("%s/rank-%05d.jsonl", dir, rank);
  g_free(dir);
  j->fd = open(j->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0664);
  if (j->fd < 0) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot open journal: %s", j->path,
                g_strerror(errno));
    g_free(j->path);
    g_free(j);
    return NULL;
  }
  if (!cut_torn_tail(j->fd, j->path, err)) {
    vs_journal_close(j);
    return NULL;
  }
  JsonBuilder *b = json_builder_new();
  begin_record(b, "run", run, rank);
  json_builder_set_member_name(b, "world");
  json_builder_add_int_value(b, world);
  json_builder_set_member_name(b, "host");
  json_builder_add_string_value(b, vs_log_hostname());
  json_builder_set_member_name(b, "pid");
  json_builder_add_int_value(b, (gint64)getpid());
  GDateTime *now = g_date_time_new_now_utc();
  gchar *iso = g_date_time_format_iso8601(now);
  json_builder_set_member_name(b, "time");
  json_builder_add_string_value(b, iso);
  g_free(iso);
  g_date_time_unref(now);
  json_builder_end_object(b);
  bool ok = append_line(j, b, err);
  g_object_unref(b);
  if (!ok) {
    vs_journal_close(j);
    return NULL;
  }
  /* The file may be new: make its directory entry durable too. */
  char *jd = journal_dir(out_dir);
  ok = vs_fs_fsync_dir(jd, err);
  g_free(jd);
  if (!ok) {
    vs_journal_close(j);
    return NULL;
  }
  return j;
}

bool vs_journal_add_shard(vs_journal *j, const char *shard_file, const char *const *ids,
                          const double *durations_s, const int64_t *n_frames, size_t n,
                          GError **err) {
  JsonBuilder *b = json_builder_new();
  begin_record(b, "shard", j->run, j->rank);
  json_builder_set_member_name(b, "shard");
  json_builder_add_string_value(b, shard_file);
  json_builder_set_member_name(b, "ids");
  json_builder_begin_array(b);
  for (size_t i = 0; i < n; i++)
    json_builder_add_string_value(b, ids[i]);
  json_builder_end_array(b);
  json_builder_set_member_name(b, "durations_s");
  json_builder_begin_array(b);
  for (size_t i = 0; i < n; i++)
    json_builder_add_double_value(b, durations_s[i]);
  json_builder_end_array(b);
  json_builder_set_member_name(b, "n_frames");
  json_builder_begin_array(b);
  for (size_t i = 0; i < n; i++)
    json_builder_add_int_value(b, n_frames[i]);
  json_builder_end_array(b);
  json_builder_end_object(b);
  bool ok = append_line(j, b, err);
  g_object_unref(b);
  return ok;
}

bool vs_journal_add_failure(vs_journal *j, const char *id, const char *source, int code,
                            const char *reason, GError **err) {
  JsonBuilder *b = json_builder_new();
  begin_record(b, "failed", j->run, j->rank);
  json_builder_set_member_name(b, "id");
  json_builder_add_string_value(b, id);
  json_builder_set_member_name(b, "source");
  json_builder_add_string_value(b, source ? source : "");
  json_builder_set_member_name(b, "code");
  json_builder_add_string_value(b, vs_error_code_name(code));
  json_builder_set_member_name(b, "reason");
  json_builder_add_string_value(b, reason ? reason : "");
  json_builder_end_object(b);
  bool ok = append_line(j, b, err);
  g_object_unref(b);
  return ok;
}

const char *vs_journal_path(const vs_journal *j) {
  return j->path;
}

void vs_journal_close(vs_journal *j) {
  if (!j) return;
  if (j->fd >= 0) close(j->fd);
  g_free(j->path);
  g_free(j);
}

/* ---- reading ---- */

struct vs_journal_state {
  GPtrArray *shards;        /* vs_journal_shard*, sorted by file */
  GHashTable *done;         /* id -> (shard index << 32 | row) + 1, as a pointer-sized integer */
  GHashTable *failures;     /* id -> vs_journal_failure* (latest run) */
  GPtrArray *failed_sorted; /* failures whose id is not done, sorted by id */
  int max_run;
  size_t n_torn, n_corrupt, n_missing, n_duplicates;
};

static void shard_free(gpointer p) {
  vs_journal_shard *s = p;
  g_free(s->file);
  for (size_t i = 0; i < s->n; i++)
    g_free(s->ids[i]);
  g_free(s->ids);
  g_free(s->durations_s);
  g_free(s->n_frames);
  g_free(s);
}

static void failure_free(gpointer p) {
  vs_journal_failure *f = p;
  g_free(f->id);
  g_free(f->source);
  g_free(f->code);
  g_free(f->reason);
  g_free(f);
}

static const char *str_member(JsonObject *o, const char *name) {
  JsonNode *n = json_object_get_member(o, name);
  if (!n || JSON_NODE_TYPE(n) != JSON_NODE_VALUE || json_node_get_value_type(n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string(n);
}

static bool int_member(JsonObject *o, const char *name, gint64 *v) {
  JsonNode *n = json_object_get_member(o, name);
  if (!n || JSON_NODE_TYPE(n) != JSON_NODE_VALUE) return false;
  GType t = json_node_get_value_type(n);
  if (t != G_TYPE_INT64 && t != G_TYPE_INT) return false;
  *v = json_node_get_int(n);
  return true;
}

static JsonArray *array_member(JsonObject *o, const char *name) {
  JsonNode *n = json_object_get_member(o, name);
  if (!n || JSON_NODE_TYPE(n) != JSON_NODE_ARRAY) return NULL;
  return json_node_get_array(n);
}

/* Parses one record into the state; false when it is not a well-formed record. */
static bool take_record(vs_journal_state *s, const char *out_dir, GPtrArray *shards,
                        GPtrArray *failures, const char *line, gsize len, const char *path,
                        size_t line_no) {
  JsonParser *p = json_parser_new();
  bool ok = false;
  if (!json_parser_load_from_data(p, line, (gssize)len, NULL)) goto out;
  JsonNode *root = json_parser_get_root(p);
  if (!root || JSON_NODE_TYPE(root) != JSON_NODE_OBJECT) goto out;
  JsonObject *o = json_node_get_object(root);
  const char *type = str_member(o, "type");
  gint64 run = 0, rank = 0;
  if (!type || !int_member(o, "run", &run) || !int_member(o, "rank", &rank)) goto out;
  if (run > s->max_run) s->max_run = (int)run;
  if (strcmp(type, "run") == 0) {
    ok = true;
  } else if (strcmp(type, "shard") == 0) {
    const char *file = str_member(o, "shard");
    JsonArray *ids = array_member(o, "ids"), *dur = array_member(o, "durations_s"),
              *nf = array_member(o, "n_frames");
    if (!file || !ids || !dur || !nf) goto out;
    guint n = json_array_get_length(ids);
    if (json_array_get_length(dur) != n || json_array_get_length(nf) != n) goto out;
    vs_journal_shard *sh = g_new0(vs_journal_shard, 1);
    sh->file = g_strdup(file);
    sh->run = (int)run;
    sh->rank = (int)rank;
    sh->n = n;
    sh->ids = g_new0(char *, n + 1);
    sh->durations_s = g_new0(double, n);
    sh->n_frames = g_new0(int64_t, n);
    bool good = true;
    for (guint i = 0; i < n; i++) {
      JsonNode *in = json_array_get_element(ids, i);
      if (JSON_NODE_TYPE(in) != JSON_NODE_VALUE || json_node_get_value_type(in) != G_TYPE_STRING) {
        good = false;
        break;
      }
      sh->ids[i] = g_strdup(json_node_get_string(in));
      sh->durations_s[i] = json_array_get_double_element(dur, i);
      sh->n_frames[i] = json_array_get_int_element(nf, i);
    }
    if (!good) {
      shard_free(sh);
      goto out;
    }
    g_ptr_array_add(shards, sh);
    ok = true;
  } else if (strcmp(type, "failed") == 0) {
    const char *id = str_member(o, "id");
    if (!id) goto out;
    vs_journal_failure *f = g_new0(vs_journal_failure, 1);
    f->id = g_strdup(id);
    f->source = g_strdup(str_member(o, "source") ? str_member(o, "source") : "");
    f->code = g_strdup(str_member(o, "code") ? str_member(o, "code") : "unknown");
    f->reason = g_strdup(str_member(o, "reason") ? str_member(o, "reason") : "");
    f->run = (int)run;
    f->rank = (int)rank;
    g_ptr_array_add(failures, f);
    ok = true;
  } else {
    /* A record type from a newer voxshard: not ours to interpret, not corruption either. */
    vs_debug("journal %s:%zu: unknown record type, skipped", path, line_no);
    ok = true;
  }
out:
  g_object_unref(p);
  (void)out_dir;
  return ok;
}

static gint cmp_shard_file(gconstpointer a, gconstpointer b) {
  const vs_journal_shard *x = *(vs_journal_shard *const *)a, *y = *(vs_journal_shard *const *)b;
  return strcmp(x->file, y->file);
}

static gint cmp_failure_id(gconstpointer a, gconstpointer b) {
  const vs_journal_failure *x = *(vs_journal_failure *const *)a,
                           *y = *(vs_journal_failure *const *)b;
  return strcmp(x->id, y->id);
}

static gint cmp_str(gconstpointer a, gconstpointer b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

vs_journal_state *vs_journal_load(const char *out_dir, GError **err) {
  vs_journal_state *s = g_new0(vs_journal_state, 1);
  s->shards = g_ptr_array_new_with_free_func(shard_free);
  s->done = g_hash_table_new(g_str_hash, g_str_equal);
  s->failures = g_hash_table_new(g_str_hash, g_str_equal);
  s->failed_sorted = g_ptr_array_new();
  GPtrArray *all_shards = g_ptr_array_new();
  GPtrArray *all_failures = g_ptr_array_new_with_free_func(failure_free);
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  char *dir = journal_dir(out_dir);
  bool ok = true;

  GError *derr = NULL;
  GDir *d = g_dir_open(dir, 0, &derr);
  if (!d) {
    if (!g_error_matches(derr, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
      g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot list journal folder: %s", dir,
                  derr->message);
      ok = false;
    }
    g_clear_error(&derr);
  } else {
    const char *name;
    while ((name = g_dir_read_name(d)))
      if (g_str_has_prefix(name, "rank-") && g_str_has_suffix(name, ".jsonl"))
        g_ptr_array_add(names, g_strdup(name));
    g_dir_close(d);
  }
  g_ptr_array_sort(names, cmp_str);

  for (guint k = 0; ok && k < names->len; k++) {
    char *path = g_build_filename(dir, g_ptr_array_index(names, k), NULL);
    gchar *data = NULL;
    gsize size = 0;
    GError *ferr = NULL;
    if (!g_file_get_contents(path, &data, &size, &ferr)) {
      g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot read journal: %s", path, ferr->message);
      g_clear_error(&ferr);
      g_free(path);
      ok = false;
      break;
    }
    size_t line_no = 0;
    gsize pos = 0;
    while (pos < size) {
      line_no++;
      const char *start = data + pos;
      const char *nl = memchr(start, '\n', size - pos);
      gsize len = nl ? (gsize)(nl - start) : size - pos;
      bool last = !nl || pos + len + 1 >= size;
      pos += len + (nl ? 1 : 0);
      if (len == 0) continue;
      bool good =
          nl && take_record(s, out_dir, all_shards, all_failures, start, len, path, line_no);
      if (!good) {
        if (last) {
          s->n_torn++;
          vs_warn("journal %s:%zu: torn last record skipped (a crash during its write)", path,
                  line_no);
        } else {
          s->n_corrupt++;
          vs_warn("journal %s:%zu: unreadable record skipped", path, line_no);
        }
      }
    }
    g_free(data);
    g_free(path);
  }
  g_free(dir);
  g_ptr_array_free(names, TRUE);

  if (ok) {
    /* Shards in file-name order (run, rank, sequence): deterministic whatever the listing order. */
    g_ptr_array_sort(all_shards, cmp_shard_file);
    for (guint i = 0; i < all_shards->len; i++) {
      vs_journal_shard *sh = g_ptr_array_index(all_shards, i);
      char *full = g_build_filename(out_dir, sh->file, NULL);
      bool exists = vs_fs_exists(full);
      g_free(full);
      if (!exists) {
        s->n_missing++;
        vs_warn("journal: shard %s is listed but missing from the output; its %zu utterances will "
                "be redone",
                sh->file, sh->n);
        shard_free(sh);
        continue;
      }
      size_t index = s->shards->len;
      g_ptr_array_add(s->shards, sh);
      for (size_t r = 0; r < sh->n; r++) {
        if (g_hash_table_contains(s->done, sh->ids[r])) {
          s->n_duplicates++;
          vs_warn(
              "journal: id #%zu of shard %s is already in an earlier shard; the earlier one counts",
              r, sh->file);
          continue;
        }
        g_hash_table_insert(s->done, sh->ids[r], GSIZE_TO_POINTER(((gsize)index << 32 | r) + 1));
      }
    }
    for (guint i = 0; i < all_failures->len; i++) {
      vs_journal_failure *f = g_ptr_array_index(all_failures, i);
      vs_journal_failure *prev = g_hash_table_lookup(s->failures, f->id);
      if (!prev || f->run >= prev->run) g_hash_table_insert(s->failures, f->id, f);
    }
    /* Keep only the chosen records; the hash table now owns them. */
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, s->failures);
    GHashTable *chosen = g_hash_table_new(NULL, NULL);
    while (g_hash_table_iter_next(&it, &key, &value))
      g_hash_table_add(chosen, value);
    for (guint i = 0; i < all_failures->len; i++) {
      vs_journal_failure *f = g_ptr_array_index(all_failures, i);
      if (!g_hash_table_contains(chosen, f)) failure_free(f);
    }
    g_hash_table_destroy(chosen);
    g_ptr_array_set_free_func(all_failures, NULL);
    g_hash_table_iter_init(&it, s->failures);
    while (g_hash_table_iter_next(&it, &key, &value))
      if (!g_hash_table_contains(s->done, key)) g_ptr_array_add(s->failed_sorted, value);
    g_ptr_array_sort(s->failed_sorted, cmp_failure_id);
  } else {
    for (guint i = 0; i < all_shards->len; i++)
      shard_free(g_ptr_array_index(all_shards, i));
  }
  g_ptr_array_free(all_shards, TRUE);
  g_ptr_array_free(all_failures, TRUE);
  if (!ok) {
    vs_journal_state_free(s);
    return NULL;
  }
  return s;
}

void vs_journal_state_free(vs_journal_state *s) {
  if (!s) return;
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init(&it, s->failures);
  while (g_hash_table_iter_next(&it, &key, &value))
    failure_free(value);
  g_hash_table_destroy(s->failures);
  g_hash_table_destroy(s->done);
  g_ptr_array_free(s->failed_sorted, TRUE);
  g_ptr_array_free(s->shards, TRUE);
  g_free(s);
}

bool vs_journal_is_done(const vs_journal_state *s, const char *id) {
  return g_hash_table_contains(s->done, id);
}

bool vs_journal_lookup(const vs_journal_state *s, const char *id, size_t *shard_index,
                       size_t *row) {
  gsize v = GPOINTER_TO_SIZE(g_hash_table_lookup(s->done, id));
  if (!v) return false;
  v -= 1;
  if (shard_index) *shard_index = (size_t)(v >> 32);
  if (row) *row = (size_t)(v & 0xffffffffu);
  return true;
}

size_t vs_journal_n_done(const vs_journal_state *s) {
  return g_hash_table_size(s->done);
}
size_t vs_journal_n_shards(const vs_journal_state *s) {
  return s->shards->len;
}
const vs_journal_shard *vs_journal_shard_at(const vs_journal_state *s, size_t i) {
  return i < s->shards->len ? g_ptr_array_index(s->shards, i) : NULL;
}
size_t vs_journal_n_failures(const vs_journal_state *s) {
  return s->failed_sorted->len;
}
const vs_journal_failure *vs_journal_failure_at(const vs_journal_state *s, size_t i) {
  return i < s->failed_sorted->len ? g_ptr_array_index(s->failed_sorted, i) : NULL;
}
int vs_journal_max_run(const vs_journal_state *s) {
  return s->max_run;
}
size_t vs_journal_n_torn(const vs_journal_state *s) {
  return s->n_torn;
}
size_t vs_journal_n_corrupt(const vs_journal_state *s) {
  return s->n_corrupt;
}
size_t vs_journal_n_missing(const vs_journal_state *s) {
  return s->n_missing;
}
size_t vs_journal_n_duplicates(const vs_journal_state *s) {
  return s->n_duplicates;
}

bool vs_journal_remove_orphans(const vs_journal_state *s, const char *out_dir, size_t *n_removed,
                               GError **err) {
  size_t removed = 0;
  if (n_removed) *n_removed = 0;
  char *dir = g_build_filename(out_dir, "shards", NULL);
  GError *derr = NULL;
  GDir *d = g_dir_open(dir, 0, &derr);
  if (!d) {
    bool missing = g_error_matches(derr, G_FILE_ERROR, G_FILE_ERROR_NOENT);
    if (!missing)
      g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot list shard folder: %s", dir,
                  derr->message);
    g_clear_error(&derr);
    g_free(dir);
    return missing;
  }
  GHashTable *referenced = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i < s->shards->len; i++) {
    const vs_journal_shard *sh = g_ptr_array_index(s->shards, i);
    g_hash_table_add(referenced, g_path_get_basename(sh->file));
  }
  bool ok = true;
  const char *name;
  while ((name = g_dir_read_name(d))) {
    bool temp = name[0] == '.' && strstr(name, ".tmp.") != NULL;
    bool orphan =
        !temp && g_str_has_suffix(name, ".h5") && !g_hash_table_contains(referenced, name);
    if (!temp && !orphan) continue;
    char *full = g_build_filename(dir, name, NULL);
    if (unlink(full) != 0 && errno != ENOENT) {
      g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot remove %s: %s", full,
                  temp ? "leftover temp file" : "orphan shard", g_strerror(errno));
      g_free(full);
      ok = false;
      break;
    }
    vs_info("removed %s %s (no journal record: written by a run killed before it was journalled)",
            temp ? "temp file" : "orphan shard", name);
    g_free(full);
    removed++;
  }
  g_dir_close(d);
  g_hash_table_destroy(referenced);
  if (ok && removed) ok = vs_fs_fsync_dir(dir, err);
  g_free(dir);
  if (n_removed) *n_removed = removed;
  return ok;
}
