#include "corpus.h"

#include "audio.h"
#include "log.h"
#include "vs_error.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Ids are file names downstream (outputs, journals): long ids would break NAME_MAX once a
 * suffix and extension are added. */
#define ID_PATH_MAX 150
/* Sidecars are small text; a huge "key.txt" is a mislabelled file, not a transcript. */
#define SIDECAR_MAX (1u << 20)
/* A member is read whole into memory before decoding. */
#define MEMBER_MAX ((size_t)4 << 30)

struct vs_corpus {
  GPtrArray *utts;     /* vs_utt *, sorted by id once the scan is done */
  GPtrArray *problems; /* vs_corpus_problem *, in the order found */
};

/* ------------------------------------------------------------------------------------------ */
/* Records */

static void utt_free(gpointer p) {
  vs_utt *u = p;
  if (!u) return;
  g_free(u->id);
  g_free(u->path);
  g_free(u->member);
  g_free(u->source);
  g_free(u->text);
  g_free(u->speaker);
  g_free(u->language);
  g_free(u);
}

static void problem_free(gpointer p) {
  vs_corpus_problem *pr = p;
  if (!pr) return;
  g_free(pr->source);
  g_free(pr->reason);
  g_free(pr);
}

static void add_problem(vs_corpus *c, const char *source, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_problem(vs_corpus *c, const char *source, int code, const char *fmt, ...) {
  vs_corpus_problem *pr = g_new0(vs_corpus_problem, 1);
  pr->source = g_strdup(source);
  pr->code = code;
  va_list ap;
  va_start(ap, fmt);
  pr->reason = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  vs_warn("corpus problem (%s): %s", vs_error_code_name(code), pr->source);
  g_ptr_array_add(c->problems, pr);
}

static int gerror_code(const GError *e) {
  return (e && e->domain == VS_ERROR) ? e->code : VS_ERROR_FORMAT;
}

/* ------------------------------------------------------------------------------------------ */
/* Names */

static bool has_suffix_ci(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && g_ascii_strcasecmp(s + n - m, suffix) == 0;
}

static const char *const audio_exts[] = {"wav", "flac", "mp3", "ogg", "opus", "oga"};
static const char *const tar_exts[] = {".tar",     ".tar.gz", ".tgz",     ".tar.bz2",
                                       ".tbz2",    ".tbz",    ".tar.xz",  ".txz",
                                       ".tar.zst", ".tzst",   ".tar.zstd"};

/* Extension after the last dot of the last path component, or NULL. */
static const char *last_ext(const char *name) {
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  const char *dot = strrchr(base, '.');
  return (dot && dot != base) ? dot + 1 : NULL;
}

static bool is_audio_name(const char *name) {
  const char *ext = last_ext(name);
  if (!ext) return false;
  for (size_t i = 0; i < G_N_ELEMENTS(audio_exts); i++)
    if (g_ascii_strcasecmp(ext, audio_exts[i]) == 0) return true;
  return false;
}

static size_t tar_ext_len(const char *name) {
  size_t best = 0;
  for (size_t i = 0; i < G_N_ELEMENTS(tar_exts); i++)
    if (has_suffix_ci(name, tar_exts[i]) && strlen(tar_exts[i]) > best) best = strlen(tar_exts[i]);
  return best;
}

static bool is_tar_name(const char *name) {
  return tar_ext_len(name) > 0;
}

/* Basename of an input, stable across working directories: "." or "dir/" name the folder
 * itself, so resolve those through realpath. */
static char *input_base(const char *input) {
  char *trimmed = g_strdup(input);
  size_t n = strlen(trimmed);
  while (n > 1 && trimmed[n - 1] == '/')
    trimmed[--n] = '\0';
  char *base = g_path_get_basename(trimmed);
  if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strcmp(base, "/") == 0) {
    char *real = realpath(trimmed, NULL);
    if (real) {
      g_free(base);
      base = g_path_get_basename(real);
      free(real);
    }
  }
  g_free(trimmed);
  return base;
}

/* Appends the filesystem-safe form of `s` ([A-Za-z0-9._-], others become '_'); path
 * separators become '-', "." components vanish and ".." components become "up". */
static void append_safe_path(GString *out, const char *s, bool strip_ext) {
  char *copy = g_strdup(s);
  if (strip_ext) {
    const char *ext = last_ext(copy);
    if (ext) copy[ext - copy - 1] = '\0';
  }
  char **parts = g_strsplit(copy, "/", -1);
  for (char **p = parts; *p; p++) {
    if (!**p || strcmp(*p, ".") == 0) continue;
    if (out->len && out->str[out->len - 1] != '-') g_string_append_c(out, '-');
    if (strcmp(*p, "..") == 0) {
      g_string_append(out, "up");
      continue;
    }
    for (const char *q = *p; *q; q++) {
      char ch = *q;
      bool ok = g_ascii_isalnum(ch) || ch == '_' || ch == '-' || (ch == '.' && q != *p);
      g_string_append_c(out, ok ? ch : '_');
    }
  }
  g_strfreev(parts);
  g_free(copy);
}

/* Segment suffix in whole milliseconds: "_1500-3200", or "_1500-end". */
static void append_segment(GString *out, double start_s, double end_s) {
  if (start_s <= 0 && end_s <= 0) return;
  g_string_append_printf(out, "_%lld", (long long)llround(start_s * 1000.0));
  if (end_s > 0)
    g_string_append_printf(out, "-%lld", (long long)llround(end_s * 1000.0));
  else
    g_string_append(out, "-end");
}

/* Lexical normalisation of a member name for keys and ids: "./a//b" -> "a/b". */
static char *normalize_member(const char *name) {
  char **parts = g_strsplit(name, "/", -1);
  GString *out = g_string_new(NULL);
  for (char **p = parts; *p; p++) {
    if (!**p || strcmp(*p, ".") == 0) continue;
    if (out->len) g_string_append_c(out, '/');
    g_string_append(out, *p);
  }
  g_strfreev(parts);
  return g_string_free(out, FALSE);
}

/* Members are never extracted, but ids, sources and outputs derive from their names, and a
 * name that climbs out of the archive root is the mark of a hostile or broken archive. Any ".."
 * component is refused, even one that stays inside, because no honest shard needs it. */
static const char *member_name_problem(const char *name) {
  if (!name || !*name) return "member has an empty name";
  if (name[0] == '/') return "member name is an absolute path";
  if (g_ascii_isalpha(name[0]) && name[1] == ':') return "member name has a drive letter";
  char **parts = g_strsplit(name, "/", -1);
  bool dotdot = false;
  for (char **p = parts; *p; p++)
    if (strcmp(*p, "..") == 0) dotdot = true;
  g_strfreev(parts);
  return dotdot ? "member name has a '..' component that can escape the archive root" : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Scan state */

typedef struct {
  vs_utt *u;
  char *key;  /* canonical description of the source, unique per utterance, cwd-independent */
  char *base; /* readable id before any uniqueness suffix */
} scan_item;

typedef struct {
  vs_corpus *c;
  GPtrArray *items; /* scan_item *, in scan order */
} scan;

static void scan_item_free(gpointer p) {
  scan_item *it = p;
  if (!it) return;
  utt_free(it->u);
  g_free(it->key);
  g_free(it->base);
  g_free(it);
}

typedef struct {
  char *text, *speaker, *language;
  double start, end, duration; /* end, duration: < 0 when absent */
  char *id;                    /* a manifest's own id for the utterance, or NULL */
} meta;

static void meta_clear(meta *m) {
  g_free(m->text);
  g_free(m->speaker);
  g_free(m->language);
  g_free(m->id);
  *m = (meta){NULL, NULL, NULL, 0, -1, -1, NULL};
}

/* Takes ownership of `key` and `base` (a GString's contents). */
static void add_item(scan *s, vs_source_kind kind, const char *path, const char *member,
                     const char *source, const meta *m, char *key, GString *base) {
  vs_utt *u = g_new0(vs_utt, 1);
  u->kind = kind;
  u->path = g_strdup(path);
  u->member = g_strdup(member);
  u->source = g_strdup(source);
  u->start_s = m ? m->start : 0;
  u->end_s = (m && m->end > 0) ? m->end : 0;
  u->duration_s = -1;
  if (m && m->end > 0)
    u->duration_s = m->end - m->start;
  else if (m && m->duration > 0)
    u->duration_s = m->duration;
  if (m) {
    u->text = g_strdup(m->text);
    u->speaker = g_strdup(m->speaker);
    u->language = g_strdup(m->language);
  }
  if (base->len > ID_PATH_MAX) g_string_truncate(base, ID_PATH_MAX);
  if (!base->len) g_string_append(base, "utt");
  append_segment(base, u->start_s, u->end_s);
  scan_item *it = g_new0(scan_item, 1);
  it->u = u;
  it->key = key;
  it->base = g_string_free(base, FALSE);
  g_ptr_array_add(s->items, it);
}

static char *segment_key(const char *prefix, const meta *m) {
  return g_strdup_printf("%s@%.6f-%.6f", prefix, m ? m->start : 0.0,
                         (m && m->end > 0) ? m->end : 0.0);
}

/* ------------------------------------------------------------------------------------------ */
/* Metadata (manifest lines and WebDataset .json sidecars share the field rules) */

static bool get_number(JsonObject *o, const char *field, double *out, bool *present, GError **err) {
  *present = false;
  if (!json_object_has_member(o, field)) return true;
  JsonNode *n = json_object_get_member(o, field);
  if (JSON_NODE_HOLDS_NULL(n)) return true;
  GType t = JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n) : G_TYPE_INVALID;
  if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "\"%s\" must be a number of seconds", field);
  *out = json_node_get_double(n);
  if (!isfinite(*out) || *out < 0)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "\"%s\" must be a finite number >= 0", field);
  *present = true;
  return true;
}

static bool get_string(JsonObject *o, const char *field, char **out, GError **err) {
  if (!json_object_has_member(o, field)) return true;
  JsonNode *n = json_object_get_member(o, field);
  if (JSON_NODE_HOLDS_NULL(n)) return true;
  if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "\"%s\" must be a string", field);
  g_free(*out);
  *out = g_strdup(json_node_get_string(n));
  return true;
}

static bool parse_meta(JsonObject *o, meta *m, GError **err) {
  bool has_start, has_end, has_dur;
  double start = 0, end = -1, dur = -1;
  if (!get_string(o, "text", &m->text, err) || !get_string(o, "speaker", &m->speaker, err) ||
      !get_string(o, "id", &m->id, err) ||
      !get_string(o, "language", &m->language, err) ||
      !get_number(o, "start", &start, &has_start, err) ||
      !get_number(o, "end", &end, &has_end, err) || !get_number(o, "duration", &dur, &has_dur, err))
    return false;
  if (has_end && end <= start)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "\"end\" (%g) must be after \"start\" (%g)", end, start);
  if (has_dur && dur <= 0) VS_FAIL(err, VS_ERROR_FORMAT, false, "\"duration\" must be > 0");
  m->start = has_start ? start : 0;
  m->end = has_end ? end : -1;
  m->duration = has_dur ? dur : -1;
  /* start + duration is a segment (the NeMo "offset"/"duration" style); a duration alone is the
   * length of the whole file and only spares the probe. */
  if (has_start && has_dur && !has_end) m->end = start + dur;
  return true;
}

static JsonObject *parse_object(JsonParser *parser, const char *data, gssize len, GError **err) {
  GError *local = NULL;
  if (!json_parser_load_from_data(parser, data, len, &local)) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "bad JSON: %s", local->message);
    g_error_free(local);
    return NULL;
  }
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root))
    VS_FAIL(err, VS_ERROR_FORMAT, NULL, "a JSON object was expected");
  return json_node_get_object(root);
}

/* ------------------------------------------------------------------------------------------ */
/* Archives: one sequential pass, the only access pattern a compressed tar allows cheaply */

static struct archive *archive_open(const char *path, GError **err) {
  struct archive *a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
    g_set_error(err, VS_ERROR, errno == ENOENT ? VS_ERROR_IO : VS_ERROR_FORMAT,
                "%s: cannot open as a tar archive: %s", path, archive_error_string(a));
    archive_read_free(a);
    return NULL;
  }
  return a;
}

/* Reads the current entry's data whole; `name` is for errors. */
static bool archive_read_whole(struct archive *a, struct archive_entry *e, const char *name,
                               size_t max, guint8 **data, size_t *size, GError **err) {
  *data = NULL;
  *size = 0;
  la_int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
  if (declared > (la_int64_t)max)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: member too large (%lld bytes, limit %zu)", name,
            (long long)declared, max);
  size_t cap = declared > 0 ? (size_t)declared : 65536, len = 0;
  guint8 *buf = g_malloc(cap + 1);
  for (;;) {
    if (len == cap) {
      if (cap >= max) {
        g_free(buf);
        VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: member larger than %zu bytes", name, max);
      }
      cap = MIN(cap * 2, max);
      buf = g_realloc(buf, cap + 1);
    }
    la_ssize_t got = archive_read_data(a, buf + len, cap - len);
    if (got < 0) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s: read failed (truncated or corrupt archive): %s", name,
                  archive_error_string(a));
      g_free(buf);
      return false;
    }
    if (got == 0) break;
    len += (size_t)got;
  }
  if (declared >= 0 && len != (size_t)declared) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: truncated member (%zu of %lld bytes)", name,
                len, (long long)declared);
    g_free(buf);
    return false;
  }
  buf[len] = '\0'; /* sidecars are parsed as text */
  *data = buf;
  *size = len;
  return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Tar shards (WebDataset: key.<audio ext>, key.txt, key.json) */

typedef struct {
  char *key;         /* normalised member name without its last extension */
  GPtrArray *audio;  /* original member names of the audio members */
  char *txt;         /* contents of key.txt */
  char *json_member; /* name of key.json, for problems */
  char *json;        /* contents of key.json */
} wds_sample;

static void wds_sample_free(gpointer p) {
  wds_sample *w = p;
  g_free(w->key);
  g_ptr_array_free(w->audio, TRUE);
  g_free(w->txt);
  g_free(w->json_member);
  g_free(w->json);
  g_free(w);
}

static char *member_source(const char *archive, const char *member) {
  return g_strdup_printf("%s:%s", archive, member);
}

static void scan_tar(scan *s, const char *path) {
  GError *local = NULL;
  struct archive *a = archive_open(path, &local);
  if (!a) {
    add_problem(s->c, path, local->code, "%s", local->message);
    g_error_free(local);
    return;
  }
  char *abase = input_base(path);
  abase[strlen(abase) - tar_ext_len(abase)] = '\0';

  GHashTable *by_key = g_hash_table_new(g_str_hash, g_str_equal);
  GPtrArray *order = g_ptr_array_new_with_free_func(wds_sample_free);
  GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  struct archive_entry *e;
  size_t n_members = 0;
  for (;;) {
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      /* Members already listed stay usable: their data precedes the damage. */
      add_problem(s->c, path, VS_ERROR_FORMAT,
                  "%s: truncated or corrupt archive after %zu members: %s; the rest is skipped",
                  path, n_members, archive_error_string(a));
      break;
    }
    n_members++;
    const char *name = archive_entry_pathname(e);
    if (archive_entry_filetype(e) == AE_IFDIR) continue;
    char *src = member_source(path, name ? name : "");
    const char *bad = member_name_problem(name);
    if (bad) {
      add_problem(s->c, src, VS_ERROR_FORMAT, "%s: %s; skipped", src, bad);
      g_free(src);
      continue;
    }
    char *norm = normalize_member(name);
    const char *ext = last_ext(norm);
    bool audio = is_audio_name(norm);
    bool txt = ext && g_ascii_strcasecmp(ext, "txt") == 0;
    bool json = ext && g_ascii_strcasecmp(ext, "json") == 0;
    if (!(audio || txt || json)) {
      g_free(norm);
      g_free(src);
      continue;
    }
    if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e)) {
      add_problem(s->c, src, VS_ERROR_UNSUPPORTED,
                  "%s: not a regular file member (link or device); skipped", src);
      g_free(norm);
      g_free(src);
      continue;
    }
    if (g_hash_table_contains(seen, norm)) {
      add_problem(s->c, src, VS_ERROR_FORMAT,
                  "%s: the archive holds this member name twice; the later copy is skipped", src);
      g_free(norm);
      g_free(src);
      continue;
    }
    g_hash_table_add(seen, g_strdup(norm));

    char *key = g_strndup(norm, ext ? (size_t)(ext - norm - 1) : strlen(norm));
    wds_sample *w = g_hash_table_lookup(by_key, key);
    if (!w) {
      w = g_new0(wds_sample, 1);
      w->key = key;
      w->audio = g_ptr_array_new_with_free_func(g_free);
      g_hash_table_insert(by_key, w->key, w);
      g_ptr_array_add(order, w);
    } else {
      g_free(key);
    }
    bool stop = false;
    if (audio) {
      if (archive_entry_size(e) == 0)
        add_problem(s->c, src, VS_ERROR_AUDIO, "%s: empty member", src);
      else
        g_ptr_array_add(w->audio, g_strdup(name));
      /* Skipping still walks the data, so damage inside it shows up at the next header. */
    } else if (archive_entry_size(e) > (la_int64_t)SIDECAR_MAX) {
      /* Not read at all, so the next header call still skips over it cleanly. */
      add_problem(s->c, src, VS_ERROR_FORMAT, "%s: sidecar larger than %u bytes; ignored", src,
                  SIDECAR_MAX);
    } else {
      guint8 *data;
      size_t size;
      if (!archive_read_whole(a, e, src, SIDECAR_MAX, &data, &size, &local)) {
        /* A failed read leaves the stream position unknown: stop as after a bad header. */
        add_problem(s->c, src, local->code, "%s; the rest of the archive is skipped",
                    local->message);
        stop = true;
        g_clear_error(&local);
      } else if (txt) {
        g_free(w->txt);
        w->txt = g_strstrip((char *)data);
      } else {
        g_free(w->json);
        g_free(w->json_member);
        w->json = (char *)data;
        w->json_member = g_strdup(name);
      }
    }
    g_free(norm);
    g_free(src);
    if (stop) break;
  }
  archive_read_free(a);

  JsonParser *parser = json_parser_new();
  for (guint k = 0; k < order->len; k++) {
    wds_sample *w = order->pdata[k];
    if (!w->audio->len) continue; /* sidecars of a skipped or missing audio member */
    meta m = {NULL, NULL, NULL, 0, -1, -1};
    if (w->json) {
      char *jsrc = member_source(path, w->json_member);
      JsonObject *o = parse_object(parser, w->json, -1, &local);
      if (!o || !parse_meta(o, &m, &local)) {
        add_problem(s->c, jsrc, VS_ERROR_FORMAT,
                    "%s: %s; sample \"%s\" skipped because its metadata cannot be trusted", jsrc,
                    local->message, w->key);
        g_clear_error(&local);
        g_free(jsrc);
        meta_clear(&m);
        continue;
      }
      g_free(jsrc);
    }
    if (w->txt) {
      g_free(m.text);
      m.text = g_strdup(w->txt);
    }
    for (guint j = 0; j < w->audio->len; j++) {
      const char *member = w->audio->pdata[j];
      char *norm = normalize_member(member);
      char *src = member_source(path, member);
      char *base_key = g_strdup_printf("t:%s:%s", abase, norm);
      GString *id = g_string_new(NULL);
      append_safe_path(id, abase, false);
      append_safe_path(id, norm, true);
      add_item(s, VS_SRC_TAR_MEMBER, path, member, src, &m, segment_key(base_key, &m), id);
      g_free(base_key);
      g_free(src);
      g_free(norm);
    }
    meta_clear(&m);
  }
  g_object_unref(parser);
  g_ptr_array_free(order, TRUE);
  g_hash_table_destroy(by_key);
  g_hash_table_destroy(seen);
  g_free(abase);
}

/* ------------------------------------------------------------------------------------------ */
/* Directory trees */

/* Whether `path` can be opened for reading: stat succeeding does not prove it (permissions,
 * stale network mounts), and a scan-time problem is cheaper than a failed worker later. */
static bool check_readable(const char *path, GError **err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) VS_FAIL_ERRNO(err, false, "cannot open", path);
  close(fd);
  return true;
}

static int cmp_strptr(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_file_item(scan *s, const char *path, const char *key, const char *id_base,
                          const char *id_rel) {
  GString *id = g_string_new(NULL);
  append_safe_path(id, id_base, id_rel == NULL);
  if (id_rel) append_safe_path(id, id_rel, true);
  add_item(s, VS_SRC_FILE, path, NULL, path, NULL, segment_key(key, NULL), id);
}

typedef struct {
  char *path, *rel;
} dir_link;

static void dir_link_free(gpointer p) {
  dir_link *l = p;
  g_free(l->path);
  g_free(l->rel);
  g_free(l);
}

/* Walks real subfolders at once and queues symlinked ones in `links` (walked later by
 * walk_tree), so that a folder reachable both directly and through a link is always listed
 * under its real path, whatever the names sort like. */
static void walk_dir(scan *s, const char *root_base, const char *dir, const char *rel,
                     GHashTable *visited, GPtrArray *links) {
  DIR *d = opendir(dir);
  if (!d) {
    add_problem(s->c, dir, VS_ERROR_IO, "%s: cannot open directory: %s", dir, g_strerror(errno));
    return;
  }
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  struct dirent *de;
  errno = 0;
  while ((de = readdir(d)) != NULL) {
    /* Hidden entries are skipped: "._x.wav" AppleDouble files and ".git" are never corpus. */
    if (de->d_name[0] == '.') continue;
    g_ptr_array_add(names, g_strdup(de->d_name));
  }
  if (errno)
    add_problem(s->c, dir, VS_ERROR_IO, "%s: reading directory: %s", dir, g_strerror(errno));
  closedir(d);
  /* Byte order, not locale collation: every rank and rerun must walk identically. */
  qsort(names->pdata, names->len, sizeof(char *), cmp_strptr);

  for (guint k = 0; k < names->len; k++) {
    const char *name = names->pdata[k];
    char *path = g_build_filename(dir, name, NULL);
    char *sub = rel[0] ? g_strconcat(rel, "/", name, NULL) : g_strdup(name);
    struct stat st, lst;
    if (stat(path, &st) != 0) {
      /* Dangling symlinks and vanished files matter only when they look like audio. */
      if (is_audio_name(name))
        add_problem(s->c, path, VS_ERROR_IO, "%s: cannot read: %s", path, g_strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
      if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        dir_link *l = g_new(dir_link, 1);
        l->path = g_strdup(path);
        l->rel = g_strdup(sub);
        g_ptr_array_add(links, l);
      } else {
        char *dev_ino = g_strdup_printf("%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
        if (g_hash_table_add(visited, dev_ino)) walk_dir(s, root_base, path, sub, visited, links);
      }
    } else if (S_ISREG(st.st_mode) && is_audio_name(name)) {
      GError *local = NULL;
      if (st.st_size == 0) {
        add_problem(s->c, path, VS_ERROR_AUDIO, "%s: empty file", path);
      } else if (!check_readable(path, &local)) {
        add_problem(s->c, path, local->code, "%s", local->message);
        g_error_free(local);
      } else {
        char *key = g_strdup_printf("d:%s/%s", root_base, sub);
        add_file_item(s, path, key, root_base, sub);
        g_free(key);
      }
    }
    g_free(sub);
    g_free(path);
  }
  g_ptr_array_free(names, TRUE);
}

/* Symlinked folders are followed once each (by device and inode): a loop or a second link to
 * the same folder would otherwise recurse forever or list the same audio twice. */
static void walk_tree(scan *s, const char *root, const struct stat *root_st) {
  GHashTable *visited = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  g_hash_table_add(
      visited, g_strdup_printf("%ju:%ju", (uintmax_t)root_st->st_dev, (uintmax_t)root_st->st_ino));
  char *base = input_base(root);
  GPtrArray *links = g_ptr_array_new_with_free_func(dir_link_free);
  walk_dir(s, base, root, "", visited, links);
  /* links grows while it is walked: links found inside linked folders queue up behind. */
  for (guint k = 0; k < links->len; k++) {
    dir_link *l = links->pdata[k];
    struct stat st;
    if (stat(l->path, &st) != 0) continue;
    char *dev_ino = g_strdup_printf("%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
    if (g_hash_table_add(visited, dev_ino)) walk_dir(s, base, l->path, l->rel, visited, links);
  }
  g_ptr_array_free(links, TRUE);
  g_free(base);
  g_hash_table_destroy(visited);
}

/* ------------------------------------------------------------------------------------------ */
/* JSONL manifests */

typedef struct {
  char *line_src; /* "manifest.jsonl:LINE" */
  char *member;
  meta m;
  char *key;
  GString *id;
} pending_ref;

static void pending_ref_free(gpointer p) {
  pending_ref *r = p;
  g_free(r->line_src);
  g_free(r->member);
  meta_clear(&r->m);
  g_free(r->key);
  if (r->id) g_string_free(r->id, TRUE);
  g_free(r);
}

/* Splits "shard.tar:member" at the first ':' that follows a tar extension, so that member names
 * (and archive paths) may themselves contain ':'. */
static bool split_archive_ref(const char *ref, char **archive, char **member) {
  for (const char *p = strchr(ref, ':'); p; p = strchr(p + 1, ':')) {
    char *prefix = g_strndup(ref, (size_t)(p - ref));
    if (is_tar_name(prefix)) {
      *archive = prefix;
      *member = g_strdup(p + 1);
      return true;
    }
    g_free(prefix);
  }
  return false;
}

/* Confirms each referenced member exists with one pass over its archive. */
static void resolve_archive_refs(scan *s, const char *archive, GPtrArray *refs) {
  GError *local = NULL;
  GHashTable *members = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  char *damage = NULL;
  struct archive *a = archive_open(archive, &local);
  if (a) {
    struct archive_entry *e;
    int r;
    while ((r = archive_read_next_header(a, &e)) != ARCHIVE_EOF) {
      if (r < ARCHIVE_WARN) {
        damage = g_strdup_printf("%s: truncated or corrupt archive: %s", archive,
                                 archive_error_string(a));
        break;
      }
      if (archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e) &&
          archive_entry_size(e) > 0)
        g_hash_table_add(members, normalize_member(archive_entry_pathname(e)));
    }
    archive_read_free(a);
  }
  for (guint k = 0; k < refs->len; k++) {
    pending_ref *ref = refs->pdata[k];
    char *norm = normalize_member(ref->member);
    if (!a) {
      add_problem(s->c, ref->line_src, local->code, "%s: %s", ref->line_src, local->message);
    } else if (!g_hash_table_contains(members, norm)) {
      add_problem(s->c, ref->line_src, damage ? VS_ERROR_FORMAT : VS_ERROR_IO,
                  "%s: member \"%s\" not found (or empty) in %s%s%s", ref->line_src, ref->member,
                  archive, damage ? "; " : "", damage ? damage : "");
    } else {
      char *src = member_source(archive, ref->member);
      add_item(s, VS_SRC_TAR_MEMBER, archive, ref->member, src, &ref->m, ref->key, ref->id);
      ref->key = NULL;
      ref->id = NULL;
      g_free(src);
    }
    g_free(norm);
  }
  g_clear_error(&local);
  g_free(damage);
  g_hash_table_destroy(members);
}

static void manifest_line(scan *s, JsonParser *parser, const char *mdir, const char *mbase,
                          const char *line_src, const char *line, GHashTable *refs_by_archive,
                          GPtrArray *archive_order) {
  GError *local = NULL;
  meta m = {NULL, NULL, NULL, 0, -1, -1};
  char *file = NULL, *archive = NULL, *member = NULL;
  JsonObject *o = parse_object(parser, line, -1, &local);
  if (!o) goto bad;
  if (!json_object_has_member(o, "audio")) {
    g_set_error(&local, VS_ERROR, VS_ERROR_FORMAT, "no \"audio\" field");
    goto bad;
  }
  JsonNode *an = json_object_get_member(o, "audio");
  if (JSON_NODE_HOLDS_VALUE(an) && json_node_get_value_type(an) == G_TYPE_STRING) {
    const char *ref = json_node_get_string(an);
    if (!split_archive_ref(ref, &archive, &member)) file = g_strdup(ref);
  } else if (JSON_NODE_HOLDS_OBJECT(an)) {
    JsonObject *ao = json_node_get_object(an);
    if (!get_string(ao, "archive", &archive, &local) || !get_string(ao, "member", &member, &local))
      goto bad;
    if (!archive || !member) {
      g_set_error(&local, VS_ERROR, VS_ERROR_FORMAT,
                  "\"audio\" object needs both \"archive\" and \"member\"");
      goto bad;
    }
  } else {
    g_set_error(&local, VS_ERROR, VS_ERROR_FORMAT,
                "\"audio\" must be a path, \"shard.tar:member\" or {\"archive\", \"member\"}");
    goto bad;
  }
  if ((file && !*file) || (archive && !*archive)) {
    g_set_error(&local, VS_ERROR, VS_ERROR_FORMAT, "\"audio\" is empty");
    goto bad;
  }
  if (!parse_meta(o, &m, &local)) goto bad;

  const char *ref = file ? file : archive;
  char *resolved = (g_path_is_absolute(ref) || strcmp(mdir, ".") == 0)
                       ? g_strdup(ref)
                       : g_build_filename(mdir, ref, NULL);
  struct stat st;
  bool found = stat(resolved, &st) == 0;
  if (!found || !S_ISREG(st.st_mode)) {
    g_set_error(&local, VS_ERROR, VS_ERROR_IO, "%s: %s", resolved,
                found ? "not a regular file" : g_strerror(errno));
    g_free(resolved);
    goto bad;
  }
  if (file && st.st_size == 0) {
    g_set_error(&local, VS_ERROR, VS_ERROR_AUDIO, "%s: empty file", resolved);
    g_free(resolved);
    goto bad;
  }
  if (file && !is_audio_name(file)) {
    g_set_error(&local, VS_ERROR, VS_ERROR_UNSUPPORTED, "%s: not an audio file name", resolved);
    g_free(resolved);
    goto bad;
  }
  if (member) {
    const char *why = member_name_problem(member);
    if (why) {
      g_set_error(&local, VS_ERROR, VS_ERROR_FORMAT, "\"%s\": %s", member, why);
      g_free(resolved);
      goto bad;
    }
  }

  GString *id = g_string_new(NULL);
  /* The manifest's own id wins (its references and outputs are keyed by it); otherwise the id
   * comes from the manifest's name and the audio reference. */
  if (m.id && *m.id) {
    append_safe_path(id, m.id, false);
  } else {
    append_safe_path(id, mbase, false);
    char *ref_id = g_strdup(ref);
    if (member) ref_id[strlen(ref_id) - tar_ext_len(ref_id)] = '\0';
    append_safe_path(id, ref_id, member == NULL);
    g_free(ref_id);
  }
  char *nref = normalize_member(ref);
  if (file) {
    char *kbase = g_strdup_printf("m:%s:%s", mbase, nref);
    add_item(s, VS_SRC_FILE, resolved, NULL, resolved, &m, segment_key(kbase, &m), id);
    g_free(kbase);
  } else {
    char *nmember = normalize_member(member);
    if (!(m.id && *m.id)) append_safe_path(id, nmember, true);
    char *kbase = g_strdup_printf("m:%s:%s:%s", mbase, nref, nmember);
    pending_ref *pr = g_new0(pending_ref, 1);
    pr->line_src = g_strdup(line_src);
    pr->member = g_strdup(member);
    pr->m = m;
    m = (meta){NULL, NULL, NULL, 0, -1, -1, NULL};
    pr->key = segment_key(kbase, &pr->m);
    pr->id = id;
    GPtrArray *list = g_hash_table_lookup(refs_by_archive, resolved);
    if (!list) {
      list = g_ptr_array_new_with_free_func(pending_ref_free);
      g_ptr_array_add(archive_order, g_strdup(resolved));
      g_hash_table_insert(refs_by_archive, g_strdup(resolved), list);
    }
    g_ptr_array_add(list, pr);
    g_free(kbase);
    g_free(nmember);
  }
  g_free(nref);
  g_free(resolved);
  goto done;

bad:
  add_problem(s->c, line_src, local->code, "%s: %s; line skipped", line_src, local->message);
  g_clear_error(&local);
done:
  meta_clear(&m);
  g_free(file);
  g_free(archive);
  g_free(member);
}

static void scan_manifest(scan *s, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    add_problem(s->c, path, VS_ERROR_IO, "%s: cannot open: %s", path, g_strerror(errno));
    return;
  }
  char *mdir = g_path_get_dirname(path);
  char *mbase = input_base(path);
  if (has_suffix_ci(mbase, ".jsonl")) mbase[strlen(mbase) - 6] = '\0';
  JsonParser *parser = json_parser_new();
  GHashTable *refs =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_ptr_array_unref);
  GPtrArray *archive_order = g_ptr_array_new_with_free_func(g_free);
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  size_t lineno = 0;
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    /* A NUL would silently cut the line short for the JSON parser. */
    bool has_nul = strlen(line) != (size_t)len;
    char *trimmed = g_strstrip(line);
    if (!*trimmed && !has_nul) continue;
    char *src = g_strdup_printf("%s:%zu", path, lineno);
    if (has_nul)
      add_problem(s->c, src, VS_ERROR_FORMAT, "%s: NUL byte in line; line skipped", src);
    else
      manifest_line(s, parser, mdir, mbase, src, trimmed, refs, archive_order);
    g_free(src);
  }
  if (ferror(f))
    add_problem(s->c, path, VS_ERROR_IO, "%s: read error after line %zu: %s", path, lineno,
                g_strerror(errno));
  fclose(f);
  free(line);
  for (guint k = 0; k < archive_order->len; k++) {
    const char *archive = archive_order->pdata[k];
    resolve_archive_refs(s, archive, g_hash_table_lookup(refs, archive));
  }
  g_ptr_array_free(archive_order, TRUE);
  g_hash_table_destroy(refs);
  g_object_unref(parser);
  g_free(mbase);
  g_free(mdir);
}

/* ------------------------------------------------------------------------------------------ */
/* Ids */

static int cmp_item_base(const void *a, const void *b) {
  const scan_item *x = *(scan_item *const *)a, *y = *(scan_item *const *)b;
  int c = strcmp(x->base, y->base);
  return c ? c : strcmp(x->key, y->key);
}

static int cmp_utt_id(const void *a, const void *b) {
  return strcmp((*(vs_utt *const *)a)->id, (*(vs_utt *const *)b)->id);
}

static char *short_hash(const char *key) {
  char *full = g_compute_checksum_for_string(G_CHECKSUM_SHA1, key, -1);
  full[8] = '\0';
  return full;
}

/* Readable ids stay as they are; only when two different sources map to the same readable id
 * (a.wav and a.flac, "a b.wav" and "a_b.wav") do all of them get a short hash of their
 * canonical key, so the same corpus always gives the same ids. */
static void assign_ids(scan *s) {
  GHashTable *keys = g_hash_table_new(g_str_hash, g_str_equal);
  GPtrArray *kept = g_ptr_array_new();
  for (guint k = 0; k < s->items->len; k++) {
    scan_item *it = s->items->pdata[k];
    if (!g_hash_table_add(keys, it->key)) {
      add_problem(s->c, it->u->source, VS_ERROR_CONFIG,
                  "%s: the same utterance is listed twice (same input name, path or member, and "
                  "segment; two inputs with the same name in different folders?); the later "
                  "one is skipped",
                  it->u->source);
      scan_item_free(it);
    } else {
      g_ptr_array_add(kept, it);
    }
  }
  g_hash_table_destroy(keys);
  qsort(kept->pdata, kept->len, sizeof(gpointer), cmp_item_base);
  for (guint k = 0; k < kept->len;) {
    guint end = k + 1;
    while (end < kept->len &&
           strcmp(((scan_item *)kept->pdata[end])->base, ((scan_item *)kept->pdata[k])->base) == 0)
      end++;
    for (guint j = k; j < end; j++) {
      scan_item *it = kept->pdata[j];
      if (end - k == 1) {
        it->u->id = g_strdup(it->base);
      } else {
        char *h = short_hash(it->key);
        it->u->id = g_strdup_printf("%s-%s", it->base, h);
        g_free(h);
      }
    }
    k = end;
  }
  GPtrArray *utts = s->c->utts;
  for (guint k = 0; k < kept->len; k++) {
    scan_item *it = kept->pdata[k];
    g_ptr_array_add(utts, it->u);
    it->u = NULL;
    scan_item_free(it);
  }
  g_ptr_array_free(kept, TRUE);
  /* Every item was freed or moved above. */
  g_ptr_array_set_free_func(s->items, NULL);
  g_ptr_array_set_size(s->items, 0);
  qsort(utts->pdata, utts->len, sizeof(gpointer), cmp_utt_id);
  /* A hashed id can only equal another readable id by a 1-in-4-billion accident, but uniqueness
   * is a promise, so check it rather than trust it. */
  for (guint k = 1; k < utts->len;) {
    vs_utt *prev = utts->pdata[k - 1], *cur = utts->pdata[k];
    if (strcmp(prev->id, cur->id) == 0) {
      add_problem(s->c, cur->source, VS_ERROR_CONFIG, "%s: id \"%s\" already used by %s; skipped",
                  cur->source, cur->id, prev->source);
      g_ptr_array_remove_index(utts, k);
    } else {
      k++;
    }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Public API */

vs_corpus *vs_corpus_scan(const char *const *inputs, size_t n_inputs, GError **err) {
  if (n_inputs == 0) VS_FAIL(err, VS_ERROR_CONFIG, NULL, "no corpus input given");
  for (size_t i = 0; i < n_inputs; i++) {
    struct stat st;
    if (!inputs[i] || !*inputs[i]) VS_FAIL(err, VS_ERROR_CONFIG, NULL, "empty corpus input name");
    if (stat(inputs[i], &st) != 0)
      VS_FAIL(err, VS_ERROR_IO, NULL, "corpus input %s: %s", inputs[i], g_strerror(errno));
  }
  vs_corpus *c = g_new0(vs_corpus, 1);
  c->utts = g_ptr_array_new_with_free_func(utt_free);
  c->problems = g_ptr_array_new_with_free_func(problem_free);
  scan s = {c, g_ptr_array_new_with_free_func(scan_item_free)};
  for (size_t i = 0; i < n_inputs; i++) {
    const char *in = inputs[i];
    struct stat st;
    if (stat(in, &st) != 0) {
      add_problem(c, in, VS_ERROR_IO, "%s: %s", in, g_strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
      walk_tree(&s, in, &st);
    } else if (is_tar_name(in)) {
      scan_tar(&s, in);
    } else if (has_suffix_ci(in, ".jsonl")) {
      scan_manifest(&s, in);
    } else if (is_audio_name(in) && S_ISREG(st.st_mode)) {
      GError *local = NULL;
      if (st.st_size == 0) {
        add_problem(c, in, VS_ERROR_AUDIO, "%s: empty file", in);
      } else if (!check_readable(in, &local)) {
        add_problem(c, in, local->code, "%s", local->message);
        g_error_free(local);
      } else {
        char *base = input_base(in);
        char *key = g_strdup_printf("f:%s", base);
        add_file_item(&s, in, key, base, NULL);
        g_free(key);
        g_free(base);
      }
    } else {
      add_problem(c, in, VS_ERROR_UNSUPPORTED,
                  "%s: not a directory, tar shard (.tar, .tar.gz, .tar.bz2, .tar.xz, .tar.zst), "
                  ".jsonl manifest or audio file (%s)",
                  in, "wav, flac, mp3, ogg, opus, oga");
    }
  }
  assign_ids(&s);
  g_ptr_array_free(s.items, TRUE);
  vs_info("corpus: %u utterances from %zu inputs, %u problems", c->utts->len, n_inputs,
          c->problems->len);
  return c;
}

void vs_corpus_free(vs_corpus *c) {
  if (!c) return;
  g_ptr_array_free(c->utts, TRUE);
  g_ptr_array_free(c->problems, TRUE);
  g_free(c);
}

size_t vs_corpus_size(const vs_corpus *c) {
  return c->utts->len;
}

vs_utt *vs_corpus_utt(const vs_corpus *c, size_t i) {
  return i < c->utts->len ? c->utts->pdata[i] : NULL;
}

size_t vs_corpus_find(const vs_corpus *c, const char *id) {
  size_t lo = 0, hi = c->utts->len;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int r = strcmp(((vs_utt *)c->utts->pdata[mid])->id, id);
    if (r == 0) return mid;
    if (r < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return (size_t)-1;
}

size_t vs_corpus_n_problems(const vs_corpus *c) {
  return c->problems->len;
}

const vs_corpus_problem *vs_corpus_problem_at(const vs_corpus *c, size_t i) {
  return i < c->problems->len ? c->problems->pdata[i] : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading members: every requested member of one archive in a single pass */

typedef bool (*member_cb)(const char *member, const guint8 *data, size_t size,
                          const GError *read_err, void *user);

/* Calls cb once for each member of `wanted` (original names) found, in archive order, with
 * its bytes or with the read error. Returns false with *err when the archive cannot be opened
 * or is damaged before all wanted members were seen; *stopped is set when cb returned false. */
static bool archive_pass(const char *path, GHashTable *wanted, member_cb cb, void *user,
                         bool *stopped, GError **err) {
  *stopped = false;
  struct archive *a = archive_open(path, err);
  if (!a) return false;
  guint remaining = g_hash_table_size(wanted);
  GHashTable *done = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  struct archive_entry *e;
  bool ok = true;
  while (remaining > 0) {
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: truncated or corrupt archive: %s", path,
                  archive_error_string(a));
      ok = false;
      break;
    }
    const char *name = archive_entry_pathname(e);
    if (!name || archive_entry_filetype(e) != AE_IFREG || !g_hash_table_contains(wanted, name) ||
        g_hash_table_contains(done, name))
      continue;
    g_hash_table_add(done, g_strdup(name));
    remaining--;
    char *src = member_source(path, name);
    guint8 *data = NULL;
    size_t size = 0;
    GError *local = NULL;
    bool got = archive_read_whole(a, e, src, MEMBER_MAX, &data, &size, &local);
    bool go = cb(name, got ? data : NULL, size, local, user);
    g_free(data);
    g_free(src);
    if (!got) {
      /* The stream is unusable after a failed data read. */
      g_propagate_error(err, local);
      ok = false;
      break;
    }
    if (!go) {
      *stopped = true;
      break;
    }
  }
  archive_read_free(a);
  g_hash_table_destroy(done);
  return ok;
}

/* Seconds of the [start, end) segment of a source of `total` seconds. */
static bool segment_duration(const vs_utt *u, double total, double *out, GError **err) {
  if (!(total > 0)) VS_FAIL(err, VS_ERROR_AUDIO, false, "%s: no audio samples", u->source);
  if (u->start_s >= total)
    VS_FAIL(err, VS_ERROR_FORMAT, false,
            "%s: segment starts at %.3f s, at or after the end of the audio (%.3f s)", u->source,
            u->start_s, total);
  double end = (u->end_s > 0 && u->end_s < total) ? u->end_s : total;
  *out = end - u->start_s;
  return true;
}

typedef struct {
  vs_corpus *c;
  GHashTable *by_member; /* original member name -> GArray of utterance indices */
} probe_ctx;

static void probe_fail(vs_corpus *c, vs_utt *u, const GError *e) {
  add_problem(c, u->source, gerror_code(e), "%s", e->message);
  u->duration_s = 0;
}

static bool probe_member_cb(const char *member, const guint8 *data, size_t size,
                            const GError *read_err, void *user) {
  probe_ctx *p = user;
  GArray *idx = g_hash_table_lookup(p->by_member, member);
  for (guint k = 0; k < idx->len; k++) {
    vs_utt *u = p->c->utts->pdata[g_array_index(idx, size_t, k)];
    GError *local = NULL;
    double total;
    if (read_err)
      probe_fail(p->c, u, read_err);
    else if (!vs_audio_probe_memory(data, size, u->source, &total, &local) ||
             !segment_duration(u, total, &u->duration_s, &local)) {
      probe_fail(p->c, u, local);
      g_error_free(local);
    }
  }
  g_hash_table_remove(p->by_member, member);
  return true;
}

bool vs_corpus_probe_durations(vs_corpus *c, size_t offset, size_t stride, GError **err) {
  if (stride == 0 || offset >= stride)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "probe_durations: offset %zu, stride %zu", offset,
            stride);
  /* archive path -> (member -> indices); archives in first-seen order for a deterministic pass */
  GHashTable *archives =
      g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_hash_table_unref);
  GPtrArray *order = g_ptr_array_new();
  for (size_t i = offset; i < c->utts->len; i += stride) {
    vs_utt *u = c->utts->pdata[i];
    if (u->duration_s >= 0) continue;
    if (u->kind == VS_SRC_FILE) {
      GError *local = NULL;
      double total;
      if (!vs_audio_probe_file(u->path, &total, &local) ||
          !segment_duration(u, total, &u->duration_s, &local)) {
        probe_fail(c, u, local);
        g_error_free(local);
      }
      continue;
    }
    GHashTable *members = g_hash_table_lookup(archives, u->path);
    if (!members) {
      members = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_array_unref);
      g_hash_table_insert(archives, u->path, members);
      g_ptr_array_add(order, u->path);
    }
    GArray *idx = g_hash_table_lookup(members, u->member);
    if (!idx) {
      idx = g_array_new(FALSE, FALSE, sizeof(size_t));
      g_hash_table_insert(members, u->member, idx);
    }
    g_array_append_val(idx, i);
  }
  for (guint k = 0; k < order->len; k++) {
    const char *path = order->pdata[k];
    probe_ctx p = {c, g_hash_table_lookup(archives, path)};
    GHashTable *wanted = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, p.by_member);
    while (g_hash_table_iter_next(&it, &key, NULL))
      g_hash_table_add(wanted, key);
    GError *local = NULL;
    bool stopped;
    archive_pass(path, wanted, probe_member_cb, &p, &stopped, &local);
    g_hash_table_destroy(wanted);
    /* Whatever the pass did not reach: the archive failed, or the member vanished since the scan.
     */
    g_hash_table_iter_init(&it, p.by_member);
    gpointer val;
    while (g_hash_table_iter_next(&it, &key, &val)) {
      GArray *idx = val;
      for (guint j = 0; j < idx->len; j++) {
        vs_utt *u = c->utts->pdata[g_array_index(idx, size_t, j)];
        GError *miss = local ? g_error_copy(local)
                             : g_error_new(VS_ERROR, VS_ERROR_IO, "%s: member not found in %s",
                                           u->source, path);
        probe_fail(c, u, miss);
        g_error_free(miss);
      }
    }
    g_clear_error(&local);
  }
  g_ptr_array_free(order, TRUE);
  g_hash_table_destroy(archives);
  return true;
}

typedef struct {
  const vs_corpus *c;
  GHashTable *by_member; /* member -> GArray of utterance indices */
  vs_corpus_audio_fn fn;
  void *user;
  bool stop;
} stream_ctx;

static bool deliver(const vs_corpus *c, size_t i, bool ok, vs_audio *a, const GError *e,
                    vs_corpus_audio_fn fn, void *user) {
  bool go = ok ? fn(i, a->samples, a->n_samples, NULL, user) : fn(i, NULL, 0, e, user);
  if (ok) vs_audio_clear(a);
  return go;
}

static bool stream_member_cb(const char *member, const guint8 *data, size_t size,
                             const GError *read_err, void *user) {
  stream_ctx *s = user;
  GArray *idx = g_hash_table_lookup(s->by_member, member);
  bool go = true;
  for (guint k = 0; k < idx->len && go; k++) {
    size_t i = g_array_index(idx, size_t, k);
    const vs_utt *u = s->c->utts->pdata[i];
    vs_audio a = {0};
    GError *local = NULL;
    bool ok = !read_err &&
              vs_audio_decode_memory(data, size, u->source, u->start_s, u->end_s, &a, &local);
    go = deliver(s->c, i, ok, &a, read_err ? read_err : local, s->fn, s->user);
    g_clear_error(&local);
  }
  g_hash_table_remove(s->by_member, member);
  if (!go) s->stop = true;
  return go;
}

bool vs_corpus_for_each_audio(const vs_corpus *c, const size_t *which, size_t n_which,
                              vs_corpus_audio_fn fn, void *user, GError **err) {
  for (size_t k = 0; k < n_which; k++)
    if (which[k] >= c->utts->len)
      VS_FAIL(err, VS_ERROR_INTERNAL, false, "for_each_audio: index %zu out of %u utterances",
              which[k], c->utts->len);
  bool *done = g_new0(bool, n_which);
  bool go = true;
  for (size_t k = 0; k < n_which && go; k++) {
    if (done[k]) continue;
    const vs_utt *u = c->utts->pdata[which[k]];
    if (u->kind == VS_SRC_FILE) {
      vs_audio a = {0};
      GError *local = NULL;
      bool ok = vs_audio_decode_file(u->path, u->start_s, u->end_s, &a, &local);
      go = deliver(c, which[k], ok, &a, local, fn, user);
      g_clear_error(&local);
      done[k] = true;
      continue;
    }
    /* The first request from an archive pulls in every other request from it: one pass. */
    stream_ctx s = {
        c, g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_array_unref), fn,
        user, false};
    for (size_t j = k; j < n_which; j++) {
      const vs_utt *v = c->utts->pdata[which[j]];
      if (done[j] || v->kind != VS_SRC_TAR_MEMBER || strcmp(v->path, u->path) != 0) continue;
      GArray *idx = g_hash_table_lookup(s.by_member, v->member);
      if (!idx) {
        idx = g_array_new(FALSE, FALSE, sizeof(size_t));
        g_hash_table_insert(s.by_member, v->member, idx);
      }
      g_array_append_val(idx, which[j]);
      done[j] = true;
    }
    GHashTable *wanted = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTableIter it;
    gpointer key, val;
    g_hash_table_iter_init(&it, s.by_member);
    while (g_hash_table_iter_next(&it, &key, NULL))
      g_hash_table_add(wanted, key);
    GError *local = NULL;
    bool stopped;
    archive_pass(u->path, wanted, stream_member_cb, &s, &stopped, &local);
    g_hash_table_destroy(wanted);
    go = !s.stop;
    /* Requests the pass never reached, reported in the order they were asked for. */
    if (go && g_hash_table_size(s.by_member)) {
      GArray *left = g_array_new(FALSE, FALSE, sizeof(size_t));
      g_hash_table_iter_init(&it, s.by_member);
      while (g_hash_table_iter_next(&it, &key, &val))
        g_array_append_vals(left, ((GArray *)val)->data, ((GArray *)val)->len);
      for (size_t j = 0; j < n_which && go; j++)
        for (guint q = 0; q < left->len && go; q++) {
          if (g_array_index(left, size_t, q) != which[j]) continue;
          const vs_utt *v = c->utts->pdata[which[j]];
          GError *miss = local ? g_error_new(VS_ERROR, local->code, "%s: not read: %s", v->source,
                                             local->message)
                               : g_error_new(VS_ERROR, VS_ERROR_IO,
                                             "%s: member not found in the archive", v->source);
          go = fn(which[j], NULL, 0, miss, user);
          g_error_free(miss);
          g_array_index(left, size_t, q) = (size_t)-1; /* a repeated index is served once here */
        }
      g_array_free(left, TRUE);
    }
    g_clear_error(&local);
    g_hash_table_destroy(s.by_member);
  }
  g_free(done);
  return true;
}

typedef struct {
  float *samples;
  size_t n;
  GError *err;
} load_ctx;

static bool load_cb(size_t index, const float *samples, size_t n, const GError *e, void *user) {
  load_ctx *l = user;
  if (e) {
    l->err = g_error_copy(e);
  } else {
    l->samples = g_memdup2(samples, n * sizeof(float));
    l->n = n;
  }
  return false;
}

bool vs_corpus_load_audio(const vs_corpus *c, size_t i, float **samples, size_t *n_samples,
                          GError **err) {
  load_ctx l = {0};
  if (!vs_corpus_for_each_audio(c, &i, 1, load_cb, &l, err)) return false;
  if (l.err) {
    g_propagate_error(err, l.err);
    return false;
  }
  *samples = l.samples;
  *n_samples = l.n;
  return true;
}
