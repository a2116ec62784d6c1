/* Checks a finished `prepare` output against its corpus, from the files alone:
 *   - every corpus utterance is in exactly one published shard (ids read back from the shards),
 *     except utterances the errors files list as failed, which are in none;
 *   - no temp files and no shard that the journal does not reference (no orphans);
 *   - index.h5 (read with the HDF5 C API) maps every id to the shard and row that hold it;
 *   - summary.json agrees, and its planned per-rank loads differ by at most the longest
 *     utterance (duration balance), as do the seconds actually written per rank in the last run;
 *   - with --check-mel, the features of every utterance equal vs_mel_compute on the audio
 *     loaded through the corpus reader.
 * usage: test_prepare_check --out=DIR [--world=N] [--allow-failed] [--check-mel] INPUT...
 */
#include "corpus.h"
#include "featstore.h"
#include "journal.h"
#include "mel.h"
#include "vs_error.h"
#include "vs_test.h"

#include <hdf5.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

typedef struct {
  char *id, *shard;
  uint64_t row, n_frames;
  double duration_s;
} idx_row;

static GHashTable *failed_ids_from_errors(const char *out) {
  GHashTable *failed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  gchar *dir = g_build_filename(out, "errors", NULL);
  GDir *d = g_dir_open(dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name(d))) {
    gchar *p = g_build_filename(dir, name, NULL);
    gchar *text = NULL;
    if (g_file_get_contents(p, &text, NULL, NULL)) {
      gchar **lines = g_strsplit(text, "\n", -1);
      for (gchar **l = lines; *l; l++) {
        if (!**l) continue;
        JsonParser *jp = json_parser_new();
        CHECK_MSG(json_parser_load_from_data(jp, *l, -1, NULL), "%s: line is not JSON", p);
        JsonNode *root = json_parser_get_root(jp);
        if (root && JSON_NODE_HOLDS_OBJECT(root)) {
          JsonObject *o = json_node_get_object(root);
          CHECK(json_object_has_member(o, "source") && json_object_has_member(o, "code") &&
                json_object_has_member(o, "reason"));
          JsonNode *id = json_object_get_member(o, "id");
          if (id && !JSON_NODE_HOLDS_NULL(id))
            g_hash_table_add(failed, g_strdup(json_node_get_string(id)));
        }
        g_object_unref(jp);
      }
      g_strfreev(lines);
    }
    g_free(text);
    g_free(p);
  }
  if (d) g_dir_close(d);
  g_free(dir);
  return failed;
}

static GArray *read_index(const char *out) {
  GArray *rows = g_array_new(FALSE, TRUE, sizeof(idx_row));
  gchar *path = g_build_filename(out, "index.h5", NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  CHECK_MSG(f >= 0, "%s: cannot open", path);
  g_free(path);
  if (f < 0) return rows;
  hid_t str = H5Tcopy(H5T_C_S1);
  H5Tset_size(str, H5T_VARIABLE);
  hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(idx_row));
  H5Tinsert(t, "id", HOFFSET(idx_row, id), str);
  H5Tinsert(t, "shard", HOFFSET(idx_row, shard), str);
  H5Tinsert(t, "row", HOFFSET(idx_row, row), H5T_NATIVE_UINT64);
  H5Tinsert(t, "n_frames", HOFFSET(idx_row, n_frames), H5T_NATIVE_UINT64);
  H5Tinsert(t, "duration_s", HOFFSET(idx_row, duration_s), H5T_NATIVE_DOUBLE);
  hid_t d = H5Dopen2(f, "utterances", H5P_DEFAULT);
  hid_t sp = H5Dget_space(d);
  hsize_t n = 0;
  H5Sget_simple_extent_dims(sp, &n, NULL);
  idx_row *raw = g_new0(idx_row, n ? n : 1);
  if (n) CHECK(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0);
  for (hsize_t i = 0; i < n; i++) {
    idx_row r = raw[i];
    r.id = g_strdup(raw[i].id);
    r.shard = g_strdup(raw[i].shard);
    g_array_append_val(rows, r);
  }
  if (n) H5Dvlen_reclaim(t, sp, H5P_DEFAULT, raw);
  g_free(raw);
  H5Sclose(sp);
  H5Dclose(d);
  H5Tclose(t);
  H5Tclose(str);
  H5Fclose(f);
  return rows;
}

int main(int argc, char **argv) {
  const char *out = NULL;
  int world = 0;
  bool allow_failed = false, check_mel = false;
  GPtrArray *inputs = g_ptr_array_new();
  for (int i = 1; i < argc; i++) {
    if (g_str_has_prefix(argv[i], "--out="))
      out = argv[i] + 6;
    else if (g_str_has_prefix(argv[i], "--world="))
      world = atoi(argv[i] + 8);
    else if (!strcmp(argv[i], "--allow-failed"))
      allow_failed = true;
    else if (!strcmp(argv[i], "--check-mel"))
      check_mel = true;
    else
      g_ptr_array_add(inputs, argv[i]);
  }
  if (!out || !inputs->len)
    VS_DIE(
        "usage: test_prepare_check --out=DIR [--world=N] [--allow-failed] [--check-mel] INPUT...");
  GError *err = NULL;
  vs_featstore_hdf5_init();

  vs_corpus *corpus = vs_corpus_scan((const char *const *)inputs->pdata, inputs->len, &err);
  VS_GERROR_CHECK(corpus, err);
  VS_GERROR_CHECK(vs_corpus_probe_durations(corpus, 0, 1, &err), err);
  size_t n = vs_corpus_size(corpus);
  CHECK(n > 0);
  double longest = 0;
  for (size_t i = 0; i < n; i++)
    longest = fmax(longest, vs_corpus_utt(corpus, i)->duration_s);

  GHashTable *failed = failed_ids_from_errors(out);
  if (!allow_failed)
    CHECK_MSG(g_hash_table_size(failed) == 0, "%u utterances failed", g_hash_table_size(failed));

  /* Shards on disk, read back. */
  vs_journal_state *js = vs_journal_load(out, &err);
  VS_GERROR_CHECK(js, err);
  GHashTable *count = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  GHashTable *where =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free); /* id -> "file#row" */
  gchar *sdir = g_build_filename(out, "shards", NULL);
  GDir *d = g_dir_open(sdir, 0, &err);
  VS_GERROR_CHECK(d, err);
  const char *name;
  size_t n_files = 0, n_mel_checked = 0;
  double worst_mel = 0;
  vs_mel *mel = NULL;
  while ((name = g_dir_read_name(d))) {
    CHECK_MSG(!strstr(name, ".tmp."), "temp file left in shards/: %s", name);
    if (!g_str_has_suffix(name, ".h5")) continue;
    n_files++;
    gchar *rel = g_build_filename("shards", name, NULL);
    bool referenced = false;
    for (size_t s = 0; s < vs_journal_n_shards(js); s++)
      if (!strcmp(vs_journal_shard_at(js, s)->file, rel)) referenced = true;
    CHECK_MSG(referenced, "orphan shard %s (no journal record)", rel);
    gchar *p = g_build_filename(sdir, name, NULL);
    vs_featstore_reader *r = vs_featstore_open(p, &err);
    VS_GERROR_CHECK(r, err);
    for (size_t k = 0; k < vs_featstore_reader_n_utts(r); k++) {
      const vs_featstore_row *row = vs_featstore_reader_row(r, k);
      gpointer c = g_hash_table_lookup(count, row->id);
      g_hash_table_insert(count, g_strdup(row->id), GINT_TO_POINTER(GPOINTER_TO_INT(c) + 1));
      g_hash_table_insert(where, g_strdup(row->id), g_strdup_printf("%s#%zu", rel, k));
      size_t ci = vs_corpus_find(corpus, row->id);
      CHECK_MSG(ci != (size_t)-1, "%s holds id %s which is not in the corpus", rel, row->id);
      if (ci == (size_t)-1) continue;
      const vs_utt *u = vs_corpus_utt(corpus, ci);
      CHECK(!strcmp(row->source, u->source));
      CHECK(!strcmp(row->text, u->text ? u->text : "") &&
            !strcmp(row->speaker, u->speaker ? u->speaker : ""));
      CHECK(row->n_frames == vs_mel_n_frames(row->n_samples, vs_featstore_reader_pad_samples(r)));
      if (check_mel) {
        if (!mel) {
          mel = vs_mel_init(vs_featstore_reader_n_mels(r), &err);
          VS_GERROR_CHECK(mel, err);
        }
        float *samples = NULL;
        size_t ns = 0;
        VS_GERROR_CHECK(vs_corpus_load_audio(corpus, ci, &samples, &ns, &err), err);
        CHECK(ns == row->n_samples);
        size_t pad = vs_featstore_reader_pad_samples(r), nf = vs_mel_n_frames(ns, pad);
        int nm = vs_featstore_reader_n_mels(r);
        float *ref = g_new(float, nf *(size_t)nm),
              *got = g_new(float, row->n_frames *(size_t)nm + 1);
        VS_GERROR_CHECK(vs_mel_compute(mel, samples, ns, pad, ref, &err), err);
        VS_GERROR_CHECK(vs_featstore_read_features(r, k, got, &err), err);
        CHECK(nf == row->n_frames);
        double diff = 0;
        for (size_t t = 0; t < MIN(nf, row->n_frames); t++)
          for (int m = 0; m < nm; m++)
            diff = fmax(diff, fabs(ref[(size_t)m * nf + t] - got[t * (size_t)nm + m]));
        worst_mel = fmax(worst_mel, diff);
        n_mel_checked++;
        g_free(ref);
        g_free(got);
        g_free(samples);
      }
    }
    vs_featstore_close(r);
    g_free(p);
    g_free(rel);
  }
  g_dir_close(d);
  CHECK_MSG(n_files == vs_journal_n_shards(js), "%zu shard files, %zu in the journal", n_files,
            vs_journal_n_shards(js));
  if (check_mel) {
    /* Same code on the same samples; FFTW may pick other codelets for other alignments. */
    CHECK_MSG(worst_mel <= 1e-5, "features differ from vs_mel_compute by up to %g", worst_mel);
    printf("mel check: %zu utterances, max |difference| %g\n", n_mel_checked, worst_mel);
  }

  /* Exactly once. */
  size_t n_present = 0, n_failed_seen = 0;
  for (size_t i = 0; i < n; i++) {
    const char *id = vs_corpus_utt(corpus, i)->id;
    int c = GPOINTER_TO_INT(g_hash_table_lookup(count, id));
    if (g_hash_table_contains(failed, id)) {
      n_failed_seen++;
      CHECK_MSG(c == 0, "failed utterance %s is also in a shard", id);
    } else {
      CHECK_MSG(c == 1, "utterance %s is in %d shards", id, c);
    }
    if (c == 1) n_present++;
  }
  CHECK(g_hash_table_size(count) == n_present); /* nothing outside the corpus */
  CHECK(vs_journal_n_done(js) == n_present);
  printf("coverage: %zu utterances in the corpus, %zu in %zu shards exactly once, %zu failed\n", n,
         n_present, n_files, n_failed_seen);

  /* The index agrees with the shards. */
  GArray *index = read_index(out);
  CHECK_MSG(index->len == n_present, "index has %u utterances, shards %zu", index->len, n_present);
  char *prev_id = NULL; /* rows are freed as we go: keep the previous id for the order check */
  for (guint i = 0; i < index->len; i++) {
    idx_row *r = &g_array_index(index, idx_row, i);
    gchar *key = g_strdup_printf("%s#%llu", r->shard, (unsigned long long)r->row);
    const char *w = g_hash_table_lookup(where, r->id);
    CHECK_MSG(w && !strcmp(w, key), "index puts %s at %s, shards at %s", r->id, key,
              w ? w : "(nowhere)");
    if (prev_id) CHECK_MSG(strcmp(prev_id, r->id) < 0, "index not sorted: %s then %s", prev_id, r->id);
    g_free(key);
    g_free(prev_id);
    prev_id = r->id;
    g_free(r->shard);
  }
  g_free(prev_id);
  g_array_free(index, TRUE);

  /* Summary and balance. */
  gchar *spath = g_build_filename(out, "summary.json", NULL);
  JsonParser *jp = json_parser_new();
  CHECK_MSG(json_parser_load_from_file(jp, spath, NULL), "%s: missing or not JSON", spath);
  JsonNode *root = json_parser_get_root(jp);
  if (root && JSON_NODE_HOLDS_OBJECT(root)) {
    JsonObject *o = json_node_get_object(root);
    CHECK(json_object_get_int_member(o, "utterances_in_index") == (gint64)n_present);
    CHECK(json_object_get_int_member(o, "utterances_in_corpus") == (gint64)n);
    gint64 ws = json_object_get_int_member(o, "world_size");
    if (world > 0) CHECK(ws == world);
    JsonArray *plan = json_object_get_array_member(o, "planned_seconds_per_rank");
    CHECK(plan && json_array_get_length(plan) == (guint)ws);
    double lo = INFINITY, hi = -INFINITY;
    for (guint r = 0; plan && r < json_array_get_length(plan); r++) {
      double v = json_array_get_double_element(plan, r);
      lo = fmin(lo, v);
      hi = fmax(hi, v);
    }
    CHECK_MSG(hi - lo <= longest + 1e-9,
              "planned loads %.3f..%.3f s differ by more than the longest utterance %.3f s", lo, hi,
              longest);
    /* Seconds actually written per rank in the last run (decoded lengths differ a little from
     * probed ones: lossy codecs pad up to one frame). */
    int last_run = vs_journal_max_run(js);
    double *actual = g_new0(double, ws > 0 ? ws : 1);
    for (size_t s = 0; s < vs_journal_n_shards(js); s++) {
      const vs_journal_shard *sh = vs_journal_shard_at(js, s);
      if (sh->run != last_run || sh->rank >= ws) continue;
      for (size_t k = 0; k < sh->n; k++)
        actual[sh->rank] += sh->durations_s[k];
    }
    lo = INFINITY;
    hi = -INFINITY;
    for (gint64 r = 0; r < ws; r++) {
      lo = fmin(lo, actual[r]);
      hi = fmax(hi, actual[r]);
    }
    if (!allow_failed) /* failed utterances were planned but wrote nothing */
      CHECK_MSG(hi - lo <= longest + 0.2,
                "written loads %.3f..%.3f s differ by more than the longest utterance %.3f s", lo,
                hi, longest);
    printf("balance: planned and written per-rank loads within the longest utterance (%.2f s); "
           "written %.2f..%.2f s\n",
           longest, lo, hi);
    g_free(actual);
  }
  g_object_unref(jp);
  g_free(spath);

  vs_mel_free(mel);
  vs_journal_state_free(js);
  g_hash_table_destroy(count);
  g_hash_table_destroy(where);
  g_hash_table_destroy(failed);
  g_free(sdir);
  vs_corpus_free(corpus);
  g_ptr_array_free(inputs, TRUE);
  return vs_test_finish();
}
