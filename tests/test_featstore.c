/* Feature shards and the index: written through the featstore API, read back with the plain
 * HDF5 C API (not the featstore reader) and with h5py in tests/helpers/check_featstore.py when
 * the venv has it; HDF5 failures come back as GErrors with the file and HDF5's stack.
 * argv[1]: the h5py helper, argv[2]: the venv's python (optional). */
#include "featstore.h"
#include "fsutil.h"
#include "vs_error.h"
#include "vs_test.h"

#include <glib/gstdio.h>
#include <hdf5.h>
#include <string.h>
#include <unistd.h>

#define N_MELS 80
static const size_t frames_of[3] = {7, 1203, 0}; /* 1203 > one chunk: exercises chunk borders */

static float value_at(int u, int m, size_t t) {
  return (float)(u * 1000 + m) + (float)t * 0.001f;
}

static float *make_mel(int u, size_t n_frames) {
  float *mel = g_new(float, N_MELS *n_frames + 1);
  for (int m = 0; m < N_MELS; m++)
    for (size_t t = 0; t < n_frames; t++)
      mel[(size_t)m * n_frames + t] = value_at(u, m, t);
  return mel;
}

typedef struct {
  char *id, *source;
  uint64_t frame_offset, n_frames, n_samples;
  double duration_s;
  char *text, *speaker, *language;
} row_t;

static char *read_str_attr(hid_t f, const char *name) {
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  char *v = NULL, *out = NULL;
  if (a >= 0 && H5Aread(a, t, &v) >= 0) {
    out = g_strdup(v);
    H5free_memory(v);
  }
  H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  return out;
}

static int64_t read_int_attr(hid_t f, const char *name) {
  int64_t v = -1;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  if (a >= 0) {
    H5Aread(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
  }
  return v;
}

/* Independent read of a shard with the HDF5 C API. */
static void check_with_c_api(const char *path) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  CHECK(f >= 0);
  if (f < 0) return;
  char *s = read_str_attr(f, "format");
  CHECK(s && !strcmp(s, "voxshard-features"));
  g_free(s);
  s = read_str_attr(f, "normalisation");
  CHECK(s && !strcmp(s, "whisper log-mel: log10, clamp max-8, (x+4)/4"));
  g_free(s);
  CHECK(read_int_attr(f, "sample_rate") == 16000 && read_int_attr(f, "n_fft") == 400 &&
        read_int_attr(f, "hop_length") == 160 && read_int_attr(f, "n_mels") == N_MELS &&
        read_int_attr(f, "padding_samples") == 160 && read_int_attr(f, "n_utterances") == 3 &&
        read_int_attr(f, "total_frames") == 1210);
  s = read_str_attr(f, "units");
  CHECK(s && strstr(s, "seconds"));
  g_free(s);

  hid_t d = H5Dopen2(f, "features", H5P_DEFAULT);
  hid_t sp = H5Dget_space(d);
  hsize_t dims[2] = {0, 0};
  CHECK(H5Sget_simple_extent_ndims(sp) == 2);
  H5Sget_simple_extent_dims(sp, dims, NULL);
  CHECK(dims[0] == 1210 && dims[1] == N_MELS);
  hid_t tp = H5Dget_type(d);
  CHECK(H5Tequal(tp, H5T_IEEE_F32LE) > 0);
  H5Tclose(tp);
  hid_t dcpl = H5Dget_create_plist(d);
  CHECK(H5Pget_layout(dcpl) == H5D_CHUNKED);
  H5Pclose(dcpl);
  float *all = g_new(float, dims[0] * dims[1]);
  CHECK(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, all) >= 0);
  bool same = true;
  size_t row = 0;
  for (int u = 0; u < 3; u++)
    for (size_t t = 0; t < frames_of[u]; t++, row++)
      for (int m = 0; m < N_MELS; m++)
        same = same && all[row * N_MELS + m] == value_at(u, m, t);
  CHECK(same);
  g_free(all);
  H5Sclose(sp);
  H5Dclose(d);

  hid_t str = H5Tcopy(H5T_C_S1);
  H5Tset_size(str, H5T_VARIABLE);
  hid_t rt = H5Tcreate(H5T_COMPOUND, sizeof(row_t));
  H5Tinsert(rt, "id", HOFFSET(row_t, id), str);
  H5Tinsert(rt, "source", HOFFSET(row_t, source), str);
  H5Tinsert(rt, "frame_offset", HOFFSET(row_t, frame_offset), H5T_NATIVE_UINT64);
  H5Tinsert(rt, "n_frames", HOFFSET(row_t, n_frames), H5T_NATIVE_UINT64);
  H5Tinsert(rt, "n_samples", HOFFSET(row_t, n_samples), H5T_NATIVE_UINT64);
  H5Tinsert(rt, "duration_s", HOFFSET(row_t, duration_s), H5T_NATIVE_DOUBLE);
  H5Tinsert(rt, "text", HOFFSET(row_t, text), str);
  H5Tinsert(rt, "speaker", HOFFSET(row_t, speaker), str);
  H5Tinsert(rt, "language", HOFFSET(row_t, language), str);
  d = H5Dopen2(f, "utterances", H5P_DEFAULT);
  row_t rows[3];
  memset(rows, 0, sizeof rows);
  CHECK(H5Dread(d, rt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0);
  CHECK(!strcmp(rows[0].id, "utt-0") && !strcmp(rows[1].id, "utt-1") &&
        !strcmp(rows[2].id, "utt-2"));
  CHECK(rows[0].frame_offset == 0 && rows[1].frame_offset == 7 && rows[2].frame_offset == 1210);
  CHECK(rows[1].n_frames == 1203 && rows[1].n_samples == 192320 && rows[1].duration_s == 12.02);
  CHECK(!strcmp(rows[0].text, "hello wörld") && !strcmp(rows[0].speaker, "spk") &&
        !strcmp(rows[0].language, "en") && !strcmp(rows[1].text, "") &&
        !strcmp(rows[0].source, "a.wav"));
  sp = H5Dget_space(d);
  H5Dvlen_reclaim(rt, sp, H5P_DEFAULT, rows);
  H5Sclose(sp);
  H5Dclose(d);
  H5Tclose(rt);
  H5Tclose(str);
  H5Fclose(f);
}

int main(int argc, char **argv) {
  GError *err = NULL;
  char *dir = g_dir_make_tmp("vs-featstore-XXXXXX", NULL);
  char *path = g_build_filename(dir, "shard-test.h5", NULL);

  vs_featstore_writer *w = vs_featstore_create(path, N_MELS, 160, &err);
  VS_GERROR_CHECK(w, err);
  CHECK(!vs_fs_exists(path)); /* only the temp file exists until publish */
  vs_featstore_meta m0 = {"utt-0", "a.wav", "hello wörld", "spk", "en", 1120, 0.07};
  vs_featstore_meta m1 = {"utt-1", "b.tar:x.flac", NULL, NULL, NULL, 192320, 12.02};
  vs_featstore_meta m2 = {"utt-2", "c.wav", NULL, NULL, NULL, 0, 0.0};
  for (int u = 0; u < 3; u++) {
    float *mel = make_mel(u, frames_of[u]);
    CHECK(vs_featstore_append(w, u == 0 ? &m0 : u == 1 ? &m1 : &m2, mel, frames_of[u], &err));
    g_free(mel);
  }
  CHECK(vs_featstore_n_utts(w) == 3);
  CHECK_NEAR(vs_featstore_seconds(w), 12.09, 1e-9);
  CHECK(vs_featstore_publish(w, &err));
  CHECK(vs_fs_exists(path));
  /* No temp file left beside it. */
  GDir *d = g_dir_open(dir, 0, NULL);
  int n_files = 0;
  while (g_dir_read_name(d))
    n_files++;
  g_dir_close(d);
  CHECK(n_files == 1);

  check_with_c_api(path);

  /* The featstore reader. */
  vs_featstore_reader *r = vs_featstore_open(path, &err);
  VS_GERROR_CHECK(r, err);
  CHECK(vs_featstore_reader_n_utts(r) == 3 && vs_featstore_reader_n_mels(r) == N_MELS &&
        vs_featstore_reader_total_frames(r) == 1210 && vs_featstore_reader_pad_samples(r) == 160);
  const vs_featstore_row *row = vs_featstore_reader_row(r, 1);
  CHECK(row && !strcmp(row->id, "utt-1") && row->frame_offset == 7 && row->n_frames == 1203 &&
        !strcmp(row->source, "b.tar:x.flac"));
  float *feat = g_new(float, 1203 * N_MELS);
  CHECK(vs_featstore_read_features(r, 1, feat, &err));
  CHECK(feat[0] == value_at(1, 0, 0) && feat[1202 * N_MELS + 79] == value_at(1, 79, 1202) &&
        feat[1000 * N_MELS + 3] == value_at(1, 3, 1000));
  g_free(feat);
  vs_featstore_close(r);

  /* An aborted shard leaves nothing behind. */
  char *path2 = g_build_filename(dir, "shard-aborted.h5", NULL);
  w = vs_featstore_create(path2, N_MELS, 160, &err);
  VS_GERROR_CHECK(w, err);
  float *mel = make_mel(0, 5);
  CHECK(vs_featstore_append(w, &m0, mel, 5, &err));
  g_free(mel);
  vs_featstore_abort(w);
  d = g_dir_open(dir, 0, NULL);
  n_files = 0;
  while (g_dir_read_name(d))
    n_files++;
  g_dir_close(d);
  CHECK(n_files == 1 && !vs_fs_exists(path2));

  /* HDF5 errors: a file that is not HDF5 names the file and carries HDF5's own stack. */
  char *junk = g_build_filename(dir, "junk.h5", NULL);
  VS_GERROR_CHECK(g_file_set_contents(junk, "definitely not hdf5", -1, &err), err);
  r = vs_featstore_open(junk, &err);
  CHECK(r == NULL && err && err->code == VS_ERROR_HDF5);
  CHECK_MSG(err && strstr(err->message, junk) && strstr(err->message, ".c:") &&
                strstr(err->message, "H5F"),
            "%s", err ? err->message : "(none)");
  g_clear_error(&err);
  r = vs_featstore_open(path2, &err); /* missing */
  CHECK(r == NULL && err && err->code == VS_ERROR_IO && strstr(err->message, path2));
  g_clear_error(&err);
  /* Creating where the folder does not exist. */
  w = vs_featstore_create("/nonexistent-dir/x.h5", N_MELS, 160, &err);
  CHECK(w == NULL && err && err->code == VS_ERROR_HDF5 &&
        strstr(err->message, "/nonexistent-dir/"));
  g_clear_error(&err);

  /* Index. */
  char *ipath = g_build_filename(dir, "index.h5", NULL);
  vs_featstore_index_utt iu[2] = {{"utt-0", "shards/a.h5", 0, 7, 0.07},
                                  {"utt-1", "shards/a.h5", 1, 1203, 12.02}};
  vs_featstore_index_shard is[1] = {{"shards/a.h5", 0, 1, 2, 12.09}};
  vs_featstore_index_failure ifl[1] = {{"utt-9", "bad.wav", "format", "bad.wav: not a WAV file"}};
  CHECK(vs_featstore_write_index(ipath, N_MELS, 160, iu, 2, is, 1, ifl, 1, &err));
  hid_t f = H5Fopen(ipath, H5F_ACC_RDONLY, H5P_DEFAULT);
  CHECK(f >= 0);
  char *fmt = read_str_attr(f, "format");
  CHECK(fmt && !strcmp(fmt, "voxshard-index"));
  g_free(fmt);
  CHECK(read_int_attr(f, "n_utterances") == 2 && read_int_attr(f, "n_failed") == 1 &&
        read_int_attr(f, "n_shards") == 1);
  hid_t ds = H5Dopen2(f, "failed", H5P_DEFAULT);
  CHECK(ds >= 0);
  H5Dclose(ds);
  H5Fclose(f);
  /* An empty index (nothing done yet) is valid too. */
  char *epath = g_build_filename(dir, "empty-index.h5", NULL);
  CHECK(vs_featstore_write_index(epath, N_MELS, 160, NULL, 0, NULL, 0, NULL, 0, &err));

  /* h5py, an independent reader, when the venv has it. */
  if (argc >= 3 && g_file_test(argv[2], G_FILE_TEST_IS_EXECUTABLE)) {
    gchar *cmd = g_strdup_printf("'%s' -c 'import h5py' 2>/dev/null", argv[2]);
    bool have_h5py = system(cmd) == 0;
    g_free(cmd);
    if (have_h5py) {
      cmd = g_strdup_printf("'%s' '%s' '%s' '%s'", argv[2], argv[1], path, ipath);
      int rc = system(cmd);
      CHECK_MSG(rc == 0, "h5py helper failed: %s", cmd);
      g_free(cmd);
    } else {
      printf("h5py not installed in the venv: skipping the h5py cross-check\n");
    }
  }

  gchar *rm = g_strdup_printf("rm -rf '%s'", dir);
  if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", dir);
  g_free(rm);
  g_free(epath);
  g_free(ipath);
  g_free(junk);
  g_free(path2);
  g_free(path);
  g_free(dir);
  return vs_test_finish();
}
