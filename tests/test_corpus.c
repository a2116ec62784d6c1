/* Corpus input over a corpus generated at test time by tests/helpers/make_test_corpus.sh:
 * every input kind lists what good.tsv (written by the generator from sox's own measurements)
 * says it holds, ids are stable across scans and working directories, audio streams once per
 * utterance with the right length, and every bad input in bad/expected.tsv is a recorded
 * problem while the scan goes on.
 *
 * usage: test_corpus GENERATOR OUTDIR
 */
#include "corpus.h"
#include "log.h"
#include "vs_error.h"
#include "vs_test.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

static char *outdir;

typedef struct {
  char *source, *text, *speaker, *language;
  double start, end;
  long samples, tol;
} good_line;

static GPtrArray *read_lines(const char *path) {
  char *text = NULL;
  GError *err = NULL;
  VS_GERROR_CHECK(g_file_get_contents(path, &text, NULL, &err), err);
  GPtrArray *lines = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
  char **all = g_strsplit(text, "\n", -1);
  for (char **l = all; *l; l++)
    if (**l && **l != '#') g_ptr_array_add(lines, g_strsplit(*l, "\t", -1));
  g_strfreev(all);
  g_free(text);
  return lines;
}

static char *abs_source(const char *base, const char *rel) {
  return rel[0] == '/' ? g_strdup(rel) : g_strdup_printf("%s/%s", base, rel);
}

static GPtrArray *read_inputs(const char *list, const char *prefix) {
  char *text = NULL;
  GError *err = NULL;
  VS_GERROR_CHECK(g_file_get_contents(list, &text, NULL, &err), err);
  GPtrArray *in = g_ptr_array_new_with_free_func(g_free);
  char **all = g_strsplit(text, "\n", -1);
  for (char **l = all; *l; l++)
    if (**l) g_ptr_array_add(in, prefix ? g_strdup_printf("%s/%s", prefix, *l) : g_strdup(*l));
  g_strfreev(all);
  g_free(text);
  return in;
}

static vs_corpus *scan_or_die(GPtrArray *inputs) {
  GError *err = NULL;
  vs_corpus *c = vs_corpus_scan((const char *const *)inputs->pdata, inputs->len, &err);
  VS_GERROR_CHECK(c != NULL, err);
  return c;
}

static bool str_eq0(const char *a, const char *b) {
  /* good.tsv writes "no value" as an empty field */
  if (!a || !*a) return !b || !*b;
  return b && strcmp(a, b) == 0;
}

static bool id_is_safe(const char *id) {
  if (!*id || id[0] == '.' || id[0] == '-' || strlen(id) > 200) return false;
  for (const char *p = id; *p; p++)
    if (!(g_ascii_isalnum(*p) || *p == '_' || *p == '-' || *p == '.')) return false;
  return true;
}

static const vs_utt *by_id(const vs_corpus *c, const char *id) {
  size_t i = vs_corpus_find(c, id);
  return i == (size_t)-1 ? NULL : vs_corpus_utt(c, i);
}

/* Streaming: one call per index, samples plausible. */
typedef struct {
  int *calls;
  size_t *n;
  float *peak;
  GPtrArray *errors; /* per index: char* "code: message" or NULL */
  GArray *order;     /* indices in callback order */
} stream_rec;

static bool record_cb(size_t index, const float *samples, size_t n, const GError *err, void *user) {
  stream_rec *r = user;
  r->calls[index]++;
  g_array_append_val(r->order, index);
  if (err) {
    g_free(r->errors->pdata[index]);
    r->errors->pdata[index] =
        g_strdup_printf("%s: %s", vs_error_code_name(err->code), err->message);
    return true;
  }
  r->n[index] = n;
  float peak = 0;
  for (size_t k = 0; k < n; k++)
    peak = fmaxf(peak, fabsf(samples[k]));
  r->peak[index] = peak;
  return true;
}

static void stream_all(const vs_corpus *c, stream_rec *r, bool reverse) {
  size_t n = vs_corpus_size(c);
  r->calls = g_new0(int, n);
  r->n = g_new0(size_t, n);
  r->peak = g_new0(float, n);
  r->errors = g_ptr_array_new_full(n, g_free);
  g_ptr_array_set_size(r->errors, n);
  r->order = g_array_new(FALSE, FALSE, sizeof(size_t));
  size_t *which = g_new(size_t, n);
  for (size_t i = 0; i < n; i++)
    which[i] = reverse ? n - 1 - i : i;
  GError *err = NULL;
  VS_GERROR_CHECK(vs_corpus_for_each_audio(c, which, n, record_cb, r, &err), err);
  g_free(which);
}

static void stream_free(stream_rec *r) {
  g_free(r->calls);
  g_free(r->n);
  g_free(r->peak);
  g_ptr_array_free(r->errors, TRUE);
  g_array_free(r->order, TRUE);
}

static char **ids_of(const vs_corpus *c) {
  char **ids = g_new0(char *, vs_corpus_size(c) + 1);
  for (size_t i = 0; i < vs_corpus_size(c); i++)
    ids[i] = g_strdup(vs_corpus_utt(c, i)->id);
  return ids;
}

static bool same_ids(char **a, char **b) {
  if (g_strv_length(a) != g_strv_length(b)) return false;
  for (size_t i = 0; a[i]; i++)
    if (strcmp(a[i], b[i]) != 0) {
      fprintf(stderr, "  id %zu: %s vs %s\n", i, a[i], b[i]);
      return false;
    }
  return true;
}

static void test_good(void) {
  char *inputs_txt = g_build_filename(outdir, "inputs.txt", NULL);
  GPtrArray *inputs = read_inputs(inputs_txt, outdir);
  vs_corpus *c = scan_or_die(inputs);
  char *good_tsv = g_build_filename(outdir, "good.tsv", NULL);
  GPtrArray *good = read_lines(good_tsv);

  /* Counts: the symlink loop, the second link to en/, the hidden file and notes.txt add nothing. */
  CHECK_MSG(vs_corpus_size(c) == good->len, "%zu utterances, good.tsv lists %u", vs_corpus_size(c),
            good->len);
  CHECK_MSG(vs_corpus_n_problems(c) == 0, "%zu problems in the good corpus",
            vs_corpus_n_problems(c));
  for (size_t i = 0; i < vs_corpus_n_problems(c); i++)
    fprintf(stderr, "  problem: %s: %s\n", vs_corpus_problem_at(c, i)->source,
            vs_corpus_problem_at(c, i)->reason);

  /* Ids: sorted, unique, filesystem safe, found by vs_corpus_find. */
  for (size_t i = 0; i < vs_corpus_size(c); i++) {
    const vs_utt *u = vs_corpus_utt(c, i);
    CHECK_MSG(id_is_safe(u->id), "unsafe id %s", u->id);
    if (i)
      CHECK_MSG(strcmp(vs_corpus_utt(c, i - 1)->id, u->id) < 0, "ids not sorted/unique at %s",
                u->id);
    CHECK(vs_corpus_find(c, u->id) == i);
  }
  CHECK(vs_corpus_find(c, "no-such-id") == (size_t)-1);

  /* Readable ids from each input kind (the documented scheme: input name, path, member,
   * segment in ms; a short hash only where two sources would share a readable id). */
  const char *expect_ids[] = {"tree-en-alice-hello",
                              "tree-librivox-sense_and_sensibility_01_austen_64kb-0880",
                              "tree-cards-001",
                              "tree-de-carl-guten_tag",
                              "shard-000-k000",
                              "shard-000-sub-k002",
                              "shard-001-k010_500-2250",
                              "shard-002-c002",
                              "manifest-audio-m0",
                              "manifest-audio-m1_500-1500",
                              "manifest-audio-m1_1500-2250",
                              "manifest-up-shards-shard-001-k012_250-750",
                              NULL};
  for (const char **id = expect_ids; *id; id++)
    CHECK_MSG(by_id(c, *id) != NULL, "no id %s", *id);
  int numbers = 0;
  for (size_t i = 0; i < vs_corpus_size(c); i++) {
    const char *id = vs_corpus_utt(c, i)->id;
    if (g_str_has_prefix(id, "tree-en-bob-numbers")) {
      numbers++;
      CHECK_MSG(strlen(id) == strlen("tree-en-bob-numbers") + 9, "collision id %s not hashed", id);
    }
    if (g_str_has_prefix(id, "tree-es-eva-hola"))
      CHECK_MSG(strcmp(id, "tree-es-eva-hola_se__or") == 0, "%s", id);
  }
  CHECK(numbers == 2);

  /* Every good.tsv line matches exactly one utterance with the right fields. */
  good_line *gl = g_new0(good_line, good->len);
  size_t *utt_of = g_new(size_t, good->len);
  for (guint k = 0; k < good->len; k++) {
    char **f = good->pdata[k];
    CHECK(g_strv_length(f) == 8);
    gl[k] = (good_line){
        abs_source(outdir, f[0]),   f[1],       f[2],      f[3], g_ascii_strtod(f[4], NULL),
        g_ascii_strtod(f[5], NULL), atol(f[6]), atol(f[7])};
    int matches = 0;
    for (size_t i = 0; i < vs_corpus_size(c); i++) {
      const vs_utt *u = vs_corpus_utt(c, i);
      if (strcmp(u->source, gl[k].source) == 0 && fabs(u->start_s - gl[k].start) < 1e-9 &&
          fabs(u->end_s - gl[k].end) < 1e-9) {
        matches++;
        utt_of[k] = i;
      }
    }
    CHECK_MSG(matches == 1, "%s [%g, %g): %d matches", gl[k].source, gl[k].start, gl[k].end,
              matches);
    if (matches != 1) {
      utt_of[k] = (size_t)-1;
      continue;
    }
    const vs_utt *u = vs_corpus_utt(c, utt_of[k]);
    CHECK_MSG(str_eq0(gl[k].text, u->text), "%s: text", u->id);
    CHECK_MSG(str_eq0(gl[k].speaker, u->speaker), "%s: speaker %s", u->id, u->speaker);
    CHECK_MSG(str_eq0(gl[k].language, u->language), "%s: language %s", u->id, u->language);
    CHECK(u->kind == (strchr(f[0], ':') ? VS_SRC_TAR_MEMBER : VS_SRC_FILE));
    /* Manifest and sidecar segments know their duration before any probe. */
    if (gl[k].end > 0)
      CHECK_NEAR(u->duration_s, gl[k].end - gl[k].start, 1e-9);
    else
      CHECK(u->duration_s < 0);
  }

  /* Same ids from another working directory with relative inputs, and with "." as the tree. */
  char **ids_a = ids_of(c);
  char *cwd = g_get_current_dir();
  CHECK(chdir(outdir) == 0);
  GPtrArray *rel = read_inputs(inputs_txt, NULL);
  vs_corpus *c2 = scan_or_die(rel);
  char **ids_b = ids_of(c2);
  CHECK_MSG(same_ids(ids_a, ids_b), "ids differ between a scan from %s and from %s", cwd, outdir);
  char *treedir = g_build_filename(outdir, "tree", NULL);
  CHECK(chdir(treedir) == 0);
  GPtrArray *dot = g_ptr_array_new_with_free_func(g_free);
  for (guint k = 0; k < rel->len; k++) {
    const char *r = rel->pdata[k];
    g_ptr_array_add(dot, strcmp(r, "tree") == 0 ? g_strdup(".") : g_strdup_printf("../%s", r));
  }
  vs_corpus *c3 = scan_or_die(dot);
  char **ids_c = ids_of(c3);
  CHECK_MSG(same_ids(ids_a, ids_c), "ids differ when the tree is given as \".\"");
  CHECK(chdir(cwd) == 0);

  /* Probing split over 3 "ranks" fills every duration; the split only probes its share. */
  GError *err = NULL;
  VS_GERROR_CHECK(vs_corpus_probe_durations(c2, 1, 2, &err), err);
  for (size_t i = 0; i < vs_corpus_size(c2); i++) {
    const vs_utt *u = vs_corpus_utt(c2, i);
    if (u->end_s > 0) continue; /* known from the manifest or sidecar */
    CHECK_MSG((i % 2 == 1) == (u->duration_s >= 0), "%s probed out of its share", u->id);
  }
  for (size_t r = 0; r < 3; r++)
    VS_GERROR_CHECK(vs_corpus_probe_durations(c, r, 3, &err), err);
  CHECK(!vs_corpus_probe_durations(c, 3, 3, &err) && err);
  g_clear_error(&err);
  CHECK(vs_corpus_n_problems(c) == 0);
  for (guint k = 0; k < good->len; k++) {
    if (utt_of[k] == (size_t)-1) continue;
    const vs_utt *u = vs_corpus_utt(c, utt_of[k]);
    CHECK_MSG(fabs(u->duration_s * 16000 - gl[k].samples) <= gl[k].tol + 16,
              "%s: probed %.4f s, expected %ld samples", u->id, u->duration_s, gl[k].samples);
  }

  /* Streaming, requested in reverse: each utterance exactly once, right length, real audio. */
  stream_rec r;
  stream_all(c, &r, true);
  CHECK(r.order->len == vs_corpus_size(c));
  for (size_t i = 0; i < vs_corpus_size(c); i++) {
    CHECK_MSG(r.calls[i] == 1, "%s: %d calls", vs_corpus_utt(c, i)->id, r.calls[i]);
    CHECK_MSG(r.errors->pdata[i] == NULL, "%s: %s", vs_corpus_utt(c, i)->id,
              (char *)r.errors->pdata[i]);
    CHECK_MSG(r.peak[i] > 0.01f && r.peak[i] <= 1.0f, "%s: peak %g", vs_corpus_utt(c, i)->id,
              r.peak[i]);
  }
  for (guint k = 0; k < good->len; k++) {
    if (utt_of[k] == (size_t)-1) continue;
    size_t i = utt_of[k];
    CHECK_MSG(labs((long)r.n[i] - gl[k].samples) <= gl[k].tol,
              "%s: %zu samples, expected %ld ± %ld", vs_corpus_utt(c, i)->id, r.n[i], gl[k].samples,
              gl[k].tol);
  }
  /* One pass per archive in member order: shard-000's members come k000, k001, sub/k002 even
   * though they were requested last-first. */
  size_t pos[3] = {0}, seen = 0;
  const char *order_ids[3] = {"shard-000-k000", "shard-000-k001", "shard-000-sub-k002"};
  for (guint q = 0; q < r.order->len; q++)
    for (int j = 0; j < 3; j++)
      if (strcmp(vs_corpus_utt(c, g_array_index(r.order, size_t, q))->id, order_ids[j]) == 0) {
        pos[j] = q;
        seen++;
      }
  CHECK(seen == 3 && pos[0] < pos[1] && pos[1] < pos[2]);

  /* Single loads agree with the stream. */
  for (size_t i = 0; i < vs_corpus_size(c); i += 3) {
    float *s = NULL;
    size_t n = 0;
    CHECK_MSG(vs_corpus_load_audio(c, i, &s, &n, &err), "%s", err ? err->message : "?");
    g_clear_error(&err);
    CHECK_MSG(n == r.n[i], "%s: load_audio %zu vs stream %zu", vs_corpus_utt(c, i)->id, n, r.n[i]);
    g_free(s);
  }
  stream_free(&r);

  /* The same input twice: duplicates become problems, not a crash and not two utterances. */
  GPtrArray *twice = g_ptr_array_new();
  g_ptr_array_add(twice, inputs->pdata[1]);
  g_ptr_array_add(twice, inputs->pdata[1]);
  vs_corpus *c4 = scan_or_die(twice);
  CHECK(vs_corpus_size(c4) == 3);
  CHECK(vs_corpus_n_problems(c4) == 3);
  for (size_t i = 0; i < vs_corpus_n_problems(c4); i++)
    CHECK(vs_corpus_problem_at(c4, i)->code == VS_ERROR_CONFIG);
  g_ptr_array_free(twice, TRUE);

  /* A missing input is the one fatal error. */
  const char *missing[] = {inputs->pdata[0], "/nonexistent/voxshard-corpus"};
  CHECK(vs_corpus_scan(missing, 2, &err) == NULL);
  CHECK(err && err->code == VS_ERROR_IO && strstr(err->message, "/nonexistent/voxshard-corpus"));
  g_clear_error(&err);
  CHECK(vs_corpus_scan(missing, 0, &err) == NULL && err);
  g_clear_error(&err);

  for (guint k = 0; k < good->len; k++)
    g_free(gl[k].source);
  g_free(gl);
  g_free(utt_of);
  g_strfreev(ids_a);
  g_strfreev(ids_b);
  g_strfreev(ids_c);
  g_free(cwd);
  g_free(treedir);
  g_ptr_array_free(dot, TRUE);
  g_ptr_array_free(rel, TRUE);
  vs_corpus_free(c4);
  vs_corpus_free(c3);
  vs_corpus_free(c2);
  vs_corpus_free(c);
  g_ptr_array_free(good, TRUE);
  g_ptr_array_free(inputs, TRUE);
  g_free(good_tsv);
  g_free(inputs_txt);
}

static void test_bad(void) {
  char *bad = g_build_filename(outdir, "bad", NULL);
  char *list = g_build_filename(bad, "inputs.txt", NULL);
  GPtrArray *inputs = read_inputs(list, bad);
  vs_corpus *c = scan_or_die(inputs);
  for (size_t i = 0; i < vs_corpus_n_problems(c); i++)
    printf("problem %s [%s]: %s\n", vs_corpus_problem_at(c, i)->source,
           vs_error_code_name(vs_corpus_problem_at(c, i)->code),
           vs_corpus_problem_at(c, i)->reason);
  size_t scan_problems = vs_corpus_n_problems(c);
  GError *err = NULL;
  VS_GERROR_CHECK(vs_corpus_probe_durations(c, 0, 1, &err), err);
  stream_rec r;
  stream_all(c, &r, false);

  char *exp_path = g_build_filename(bad, "expected.tsv", NULL);
  GPtrArray *exp = read_lines(exp_path);
  CHECK(exp->len >= 20);
  for (guint k = 0; k < exp->len; k++) {
    char **f = exp->pdata[k];
    CHECK(g_strv_length(f) == 4);
    char *src = abs_source(bad, f[2]);
    if (strcmp(f[0], "scan") == 0) {
      bool found = false;
      for (size_t i = 0; i < scan_problems; i++) {
        const vs_corpus_problem *p = vs_corpus_problem_at(c, i);
        if (strcmp(p->source, src) == 0 && strcmp(vs_error_code_name(p->code), f[1]) == 0)
          found = true;
      }
      CHECK_MSG(found, "no scan problem (%s) for %s (%s)", f[1], f[2], f[3]);
    } else {
      /* decode or ok: the scan lists it */
      size_t idx = (size_t)-1;
      for (size_t i = 0; i < vs_corpus_size(c); i++)
        if (strcmp(vs_corpus_utt(c, i)->source, src) == 0) idx = i;
      CHECK_MSG(idx != (size_t)-1, "%s (%s) not listed by the scan", f[2], f[3]);
      if (idx == (size_t)-1) {
        g_free(src);
        continue;
      }
      const char *e = r.errors->pdata[idx];
      if (strcmp(f[0], "ok") == 0) {
        CHECK_MSG(e == NULL && r.n[idx] > 0, "%s should decode: %s", f[2], e);
        CHECK_MSG(vs_corpus_utt(c, idx)->duration_s > 0, "%s: no duration", f[2]);
      } else {
        CHECK_MSG(e && g_str_has_prefix(e, f[1]) && e[strlen(f[1])] == ':',
                  "%s should fail to decode with %s (%s), got %s", f[2], f[1], f[3],
                  e ? e : "success");
        CHECK_MSG(e && strstr(e, f[2] + (strrchr(f[2], '/') ? strrchr(f[2], '/') - f[2] + 1 : 0)),
                  "decode error for %s does not name it: %s", f[2], e);
        bool probed = false;
        for (size_t i = scan_problems; i < vs_corpus_n_problems(c); i++)
          if (strcmp(vs_corpus_problem_at(c, i)->source, src) == 0) probed = true;
        CHECK_MSG(probed && vs_corpus_utt(c, idx)->duration_s == 0,
                  "%s: probing should record a problem and set duration 0", f[2]);
      }
    }
    g_free(src);
  }
  /* The one good manifest line after the bad ones still counts. */
  bool line8 = false;
  for (size_t i = 0; i < vs_corpus_size(c); i++) {
    const vs_utt *u = vs_corpus_utt(c, i);
    if (g_str_has_suffix(u->source, "bad/tree/good.wav") && fabs(u->start_s - 0.1) < 1e-9 &&
        g_strcmp0(u->text, "the one good line") == 0)
      line8 = true;
  }
  CHECK(line8);
  /* Every call came back once, failures included. */
  for (size_t i = 0; i < vs_corpus_size(c); i++)
    CHECK(r.calls[i] == 1);
  stream_free(&r);
  g_ptr_array_free(exp, TRUE);
  g_free(exp_path);
  vs_corpus_free(c);
  g_ptr_array_free(inputs, TRUE);
  g_free(list);
  g_free(bad);
}

int main(int argc, char **argv) {
  if (argc != 3) VS_DIE("usage: %s GENERATOR OUTDIR", argv[0]);
  vs_log_set_level(VS_LOG_ERROR);
  char *argv_gen[] = {"sh", argv[1], argv[2], NULL};
  int status = 0;
  GError *err = NULL;
  VS_GERROR_CHECK(g_spawn_sync(NULL, argv_gen, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
                               &status, &err),
                  err);
  VS_GERROR_CHECK(g_spawn_check_wait_status(status, &err), err);
  outdir = g_canonicalize_filename(argv[2], NULL);
  test_good();
  test_bad();
  g_free(outdir);
  return vs_test_finish();
}
