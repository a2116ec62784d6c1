#include "featstore.h"

#include "fsutil.h"
#include "vs_build_config.h"
#include "vs_error.h"

#include <hdf5.h>
#include <string.h>
#include <unistd.h>

#define FEAT_CHUNK_FRAMES 1000 /* 10 s of frames: the unit a trainer reads at a time */

/* ---- HDF5 errors ---- */

void vs_featstore_hdf5_init(void) {
  static gsize once = 0;
  if (g_once_init_enter(&once)) {
    H5open();
    g_once_init_leave(&once, 1);
  }
  /* Per-thread in thread-safe builds, so set it on every entry rather than once. */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
  GString *s = data;
  char maj[128] = "", min[128] = "";
  H5Eget_msg(e->maj_num, NULL, maj, sizeof maj);
  H5Eget_msg(e->min_num, NULL, min, sizeof min);
  g_string_append_printf(s, "%s[%s:%u %s(): %s (%s / %s)]", n ? " <- " : "",
                         e->file_name ? e->file_name : "?", e->line,
                         e->func_name ? e->func_name : "?", e->desc ? e->desc : "", maj, min);
  return 0;
}

void vs_featstore_hdf5_error(GError **err, const char *path, const char *what) {
  GString *s = g_string_new(NULL);
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, s);
  H5Eclear2(H5E_DEFAULT);
  g_set_error(err, VS_ERROR, VS_ERROR_HDF5, "%s: %s failed: HDF5: %s", path, what,
              s->len ? s->str : "no error stack");
  g_string_free(s, TRUE);
}

#define H5_TRY(expr, path, what, err, label)                                                       \
  do {                                                                                             \
    if ((expr) < 0) {                                                                              \
      vs_featstore_hdf5_error((err), (path), (what));                                              \
      goto label;                                                                                  \
    }                                                                                              \
  } while (0)

static hid_t vlen_str_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

static bool attr_write(hid_t obj, const char *name, hid_t type, const void *value, const char *path,
                       GError **err) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  bool ok = a >= 0 && H5Awrite(a, type, value) >= 0;
  if (!ok) {
    gchar *what = g_strdup_printf("writing attribute '%s'", name);
    vs_featstore_hdf5_error(err, path, what);
    g_free(what);
  }
  if (a >= 0) H5Aclose(a);
  H5Sclose(space);
  return ok;
}

static bool attr_str(hid_t obj, const char *name, const char *value, const char *path,
                     GError **err) {
  hid_t t = vlen_str_type();
  bool ok = attr_write(obj, name, t, &value, path, err);
  H5Tclose(t);
  return ok;
}

static bool attr_i64(hid_t obj, const char *name, int64_t v, const char *path, GError **err) {
  return attr_write(obj, name, H5T_NATIVE_INT64, &v, path, err);
}

static bool attr_f64(hid_t obj, const char *name, double v, const char *path, GError **err) {
  return attr_write(obj, name, H5T_NATIVE_DOUBLE, &v, path, err);
}

static bool attr_read_i64(hid_t obj, const char *name, int64_t *v, const char *path, GError **err) {
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0 || H5Aread(a, H5T_NATIVE_INT64, v) < 0) {
    gchar *what = g_strdup_printf("reading attribute '%s'", name);
    vs_featstore_hdf5_error(err, path, what);
    g_free(what);
    if (a >= 0) H5Aclose(a);
    return false;
  }
  H5Aclose(a);
  return true;
}

static char *attr_read_str(hid_t obj, const char *name, const char *path, GError **err) {
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) {
    gchar *what = g_strdup_printf("opening attribute '%s'", name);
    vs_featstore_hdf5_error(err, path, what);
    g_free(what);
    return NULL;
  }
  hid_t ft = H5Aget_type(a);
  char *out = NULL;
  if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0) {
    hid_t t = vlen_str_type();
    char *v = NULL;
    if (H5Aread(a, t, &v) >= 0) {
      out = g_strdup(v ? v : "");
      H5free_memory(v);
    }
    H5Tclose(t);
  } else if (H5Tget_class(ft) == H5T_STRING) {
    size_t n = H5Tget_size(ft);
    out = g_malloc0(n + 1);
    if (H5Aread(a, ft, out) < 0) g_clear_pointer(&out, g_free);
  }
  if (!out) {
    gchar *what = g_strdup_printf("reading string attribute '%s'", name);
    vs_featstore_hdf5_error(err, path, what);
    g_free(what);
  }
  H5Tclose(ft);
  H5Aclose(a);
  return out;
}

/* File access: HDF5 1.10.7+ takes an flock on open, which fails outright on parallel file
 * systems mounted without lock support; outputs are protected by temp names and publish, so
 * locking is used where it works and skipped where it does not. Caller closes the list. */
static hid_t file_access(void) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
  H5Pset_file_locking(fapl, true, true);
#endif
  return fapl;
}

/* ---- compound layouts ---- */

typedef struct {
  const char *id, *source;
  uint64_t frame_offset, n_frames, n_samples;
  double duration_s;
  const char *text, *speaker, *language;
} utt_rec; /* host memory row of /utterances in a shard */

static hid_t utt_type(void) {
  hid_t s = vlen_str_type();
  hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(utt_rec));
  H5Tinsert(t, "id", HOFFSET(utt_rec, id), s);
  H5Tinsert(t, "source", HOFFSET(utt_rec, source), s);
  H5Tinsert(t, "frame_offset", HOFFSET(utt_rec, frame_offset), H5T_NATIVE_UINT64);
  H5Tinsert(t, "n_frames", HOFFSET(utt_rec, n_frames), H5T_NATIVE_UINT64);
  H5Tinsert(t, "n_samples", HOFFSET(utt_rec, n_samples), H5T_NATIVE_UINT64);
  H5Tinsert(t, "duration_s", HOFFSET(utt_rec, duration_s), H5T_NATIVE_DOUBLE);
  H5Tinsert(t, "text", HOFFSET(utt_rec, text), s);
  H5Tinsert(t, "speaker", HOFFSET(utt_rec, speaker), s);
  H5Tinsert(t, "language", HOFFSET(utt_rec, language), s);
  H5Tclose(s);
  return t;
}

/* Writes a 1-D dataset of `n` compound records (an empty dataset when n == 0). */
static bool write_table(hid_t file, const char *name, hid_t type, const void *rows, size_t n,
                        const char *path, GError **err) {
  hsize_t dims[1] = {n};
  hid_t space = H5Screate_simple(1, dims, NULL);
  hid_t d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  bool ok = d >= 0 && (n == 0 || H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0);
  if (!ok) {
    gchar *what = g_strdup_printf("writing dataset '%s'", name);
    vs_featstore_hdf5_error(err, path, what);
    g_free(what);
  }
  if (d >= 0) H5Dclose(d);
  H5Sclose(space);
  return ok;
}

static bool common_attrs(hid_t f, int n_mels, size_t pad_samples, const char *path, GError **err) {
  return attr_i64(f, "format_version", VS_FEATSTORE_FORMAT_VERSION, path, err) &&
         attr_i64(f, "sample_rate", 16000, path, err) && attr_i64(f, "n_fft", 400, path, err) &&
         attr_i64(f, "hop_length", 160, path, err) && attr_i64(f, "n_mels", n_mels, path, err) &&
         attr_str(f, "window", "periodic hann", path, err) &&
         attr_str(f, "mel_scale", "slaney filterbank, fmin 0 Hz, fmax 8000 Hz", path, err) &&
         attr_str(f, "normalisation", VS_FEATSTORE_NORMALISATION, path, err) &&
         attr_i64(f, "padding_samples", (int64_t)pad_samples, path, err) &&
         attr_str(f, "voxshard_version", VS_VERSION, path, err);
}

/* ---- writer ---- */

struct vs_featstore_writer {
  char *final_path, *tmp_path;
  int n_mels;
  size_t pad_samples;
  hid_t file, features; /* HDF5 handles */
  uint64_t total_frames;
  double seconds;
  GArray *rows;      /* utt_rec, strings owned (g_strdup) */
  float *transposed; /* host: [n_frames][n_mels] scratch, grown as needed */
  size_t transposed_cap;
};

static void free_rows(GArray *rows) {
  for (guint i = 0; i < rows->len; i++) {
    utt_rec *r = &g_array_index(rows, utt_rec, i);
    g_free((char *)r->id);
    g_free((char *)r->source);
    g_free((char *)r->text);
    g_free((char *)r->speaker);
    g_free((char *)r->language);
  }
  g_array_free(rows, TRUE);
}

static void writer_free(vs_featstore_writer *w) {
  if (w->features >= 0) H5Dclose(w->features);
  if (w->file >= 0) H5Fclose(w->file);
  free_rows(w->rows);
  g_free(w->transposed);
  g_free(w->final_path);
  g_free(w->tmp_path);
  g_free(w);
}

vs_featstore_writer *vs_featstore_create(const char *final_path, int n_mels, size_t pad_samples,
                                         GError **err) {
  vs_featstore_hdf5_init();
  if (n_mels <= 0)
    VS_FAIL(err, VS_ERROR_INTERNAL, NULL, "%s: n_mels %d is not positive", final_path, n_mels);
  vs_featstore_writer *w = g_new0(vs_featstore_writer, 1);
  w->final_path = g_strdup(final_path);
  w->tmp_path = vs_fs_temp_path(final_path);
  w->n_mels = n_mels;
  w->pad_samples = pad_samples;
  w->features = -1;
  w->rows = g_array_new(FALSE, TRUE, sizeof(utt_rec));
  hid_t space = -1, dcpl = -1;
  hid_t fapl = file_access();
  w->file = H5Fcreate(w->tmp_path, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
  /* Capture the stack before any other HDF5 call: every API call clears it. */
  if (w->file < 0) vs_featstore_hdf5_error(err, w->tmp_path, "creating the shard file");
  H5Pclose(fapl);
  if (w->file < 0) goto fail;
  hsize_t dims[2] = {0, (hsize_t)n_mels}, maxdims[2] = {H5S_UNLIMITED, (hsize_t)n_mels};
  hsize_t chunk[2] = {FEAT_CHUNK_FRAMES, (hsize_t)n_mels};
  space = H5Screate_simple(2, dims, maxdims);
  dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5_TRY(H5Pset_chunk(dcpl, 2, chunk), w->tmp_path, "setting the chunk shape", err, fail);
  w->features =
      H5Dcreate2(w->file, "features", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5_TRY(w->features, w->tmp_path, "creating /features", err, fail);
  H5Sclose(space);
  H5Pclose(dcpl);
  return w;
fail:
  if (space >= 0) H5Sclose(space);
  if (dcpl >= 0) H5Pclose(dcpl);
  vs_featstore_abort(w);
  return NULL;
}

bool vs_featstore_append(vs_featstore_writer *w, const vs_featstore_meta *meta, const float *mel,
                         size_t n_frames, GError **err) {
  vs_featstore_hdf5_init();
  size_t nm = (size_t)w->n_mels;
  if (n_frames > 0) {
    if (n_frames * nm > w->transposed_cap) {
      w->transposed_cap = n_frames * nm;
      g_free(w->transposed);
      w->transposed = g_new(float, w->transposed_cap);
    }
    /* Shards are frame-major so that an utterance (or any frame range) is one contiguous read. */
    for (size_t m = 0; m < nm; m++)
      for (size_t t = 0; t < n_frames; t++)
        w->transposed[t * nm + m] = mel[m * n_frames + t];
    hsize_t newdims[2] = {w->total_frames + n_frames, nm};
    hsize_t start[2] = {w->total_frames, 0}, count[2] = {n_frames, nm};
    hid_t fspace = -1, mspace = -1;
    bool ok = false;
    H5_TRY(H5Dset_extent(w->features, newdims), w->tmp_path, "extending /features", err, done);
    fspace = H5Dget_space(w->features);
    H5_TRY(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL), w->tmp_path,
           "selecting rows of /features", err, done);
    mspace = H5Screate_simple(2, count, NULL);
    H5_TRY(H5Dwrite(w->features, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, w->transposed),
           w->tmp_path, "writing /features", err, done);
    ok = true;
  done:
    if (fspace >= 0) H5Sclose(fspace);
    if (mspace >= 0) H5Sclose(mspace);
    if (!ok) return false;
  }
  utt_rec r = {
      .id = g_strdup(meta->id),
      .source = g_strdup(meta->source ? meta->source : ""),
      .frame_offset = w->total_frames,
      .n_frames = n_frames,
      .n_samples = meta->n_samples,
      .duration_s = meta->duration_s,
      .text = g_strdup(meta->text ? meta->text : ""),
      .speaker = g_strdup(meta->speaker ? meta->speaker : ""),
      .language = g_strdup(meta->language ? meta->language : ""),
  };
  g_array_append_val(w->rows, r);
  w->total_frames += n_frames;
  w->seconds += meta->duration_s;
  return true;
}

size_t vs_featstore_n_utts(const vs_featstore_writer *w) {
  return w->rows->len;
}
double vs_featstore_seconds(const vs_featstore_writer *w) {
  return w->seconds;
}
const char *vs_featstore_final_path(const vs_featstore_writer *w) {
  return w->final_path;
}

bool vs_featstore_publish(vs_featstore_writer *w, GError **err) {
  vs_featstore_hdf5_init();
  const char *p = w->tmp_path;
  hid_t ut = utt_type();
  bool ok = write_table(w->file, "utterances", ut, w->rows->data, w->rows->len, p, err);
  H5Tclose(ut);
  ok = ok && common_attrs(w->file, w->n_mels, w->pad_samples, p, err) &&
       attr_str(w->file, "format", "voxshard-features", p, err) &&
       attr_i64(w->file, "n_utterances", w->rows->len, p, err) &&
       attr_i64(w->file, "total_frames", (int64_t)w->total_frames, p, err) &&
       attr_f64(w->file, "total_seconds", w->seconds, p, err) &&
       attr_str(w->file, "layout",
                "/features is [total_frames, n_mels] float32, one row per hop_length samples; "
                "utterance i is rows frame_offset .. frame_offset + n_frames - 1 of /utterances[i]",
                p, err) &&
       attr_str(w->file, "units",
                "features: dimensionless (normalised log10 mel power); duration_s, total_seconds: "
                "seconds; frame_offset, n_frames, total_frames: frames of hop_length samples at "
                "sample_rate; n_samples, padding_samples: samples at sample_rate",
                p, err) &&
       attr_str(w->features, "units", "dimensionless: (max(log10(mel power), max - 8) + 4) / 4", p,
                err);
  if (ok) {
    herr_t rc = H5Dclose(w->features);
    w->features = -1;
    if (rc < 0) {
      vs_featstore_hdf5_error(err, p, "closing /features");
      ok = false;
    }
  }
  if (ok) {
    /* H5Fclose flushes everything; only after it is the temp file complete. */
    herr_t rc = H5Fclose(w->file);
    w->file = -1;
    if (rc < 0) {
      vs_featstore_hdf5_error(err, p, "closing the shard file");
      ok = false;
    }
  }
  ok = ok && vs_fs_publish(w->tmp_path, w->final_path, err);
  if (!ok) {
    vs_featstore_abort(w);
    return false;
  }
  writer_free(w);
  return true;
}

void vs_featstore_abort(vs_featstore_writer *w) {
  if (!w) return;
  if (w->features >= 0) H5Dclose(w->features);
  w->features = -1;
  if (w->file >= 0) H5Fclose(w->file);
  w->file = -1;
  H5Eclear2(H5E_DEFAULT);
  unlink(w->tmp_path);
  writer_free(w);
}

/* ---- reader ---- */

struct vs_featstore_reader {
  char *path;
  hid_t file, features;
  int n_mels;
  size_t pad_samples;
  uint64_t total_frames;
  GArray *rows; /* vs_featstore_row, strings g_strdup'd */
};

void vs_featstore_close(vs_featstore_reader *r) {
  if (!r) return;
  if (r->features >= 0) H5Dclose(r->features);
  if (r->file >= 0) H5Fclose(r->file);
  if (r->rows) {
    for (guint i = 0; i < r->rows->len; i++) {
      vs_featstore_row *x = &g_array_index(r->rows, vs_featstore_row, i);
      g_free(x->id);
      g_free(x->source);
      g_free(x->text);
      g_free(x->speaker);
      g_free(x->language);
    }
    g_array_free(r->rows, TRUE);
  }
  g_free(r->path);
  g_free(r);
}

vs_featstore_reader *vs_featstore_open(const char *path, GError **err) {
  vs_featstore_hdf5_init();
  vs_featstore_reader *r = g_new0(vs_featstore_reader, 1);
  r->path = g_strdup(path);
  r->features = -1;
  r->file = -1;
  r->rows = g_array_new(FALSE, TRUE, sizeof(vs_featstore_row));
  hid_t table = -1, space = -1, ut = -1;
  utt_rec *recs = NULL;
  hsize_t n = 0;
  if (!vs_fs_exists(path)) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: no such feature shard", path);
    goto fail;
  }
  hid_t fapl = file_access();
  r->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (r->file < 0) vs_featstore_hdf5_error(err, path, "opening the shard (is it an HDF5 file?)");
  H5Pclose(fapl);
  if (r->file < 0) goto fail;
  char *format = attr_read_str(r->file, "format", path, err);
  if (!format) goto fail;
  bool format_ok = strcmp(format, "voxshard-features") == 0;
  if (!format_ok)
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                "%s: format attribute is '%s', not 'voxshard-features'", path, format);
  g_free(format);
  if (!format_ok) goto fail;
  int64_t n_mels = 0, pad = 0;
  if (!attr_read_i64(r->file, "n_mels", &n_mels, path, err) ||
      !attr_read_i64(r->file, "padding_samples", &pad, path, err))
    goto fail;
  r->n_mels = (int)n_mels;
  r->pad_samples = (size_t)pad;
  r->features = H5Dopen2(r->file, "features", H5P_DEFAULT);
  H5_TRY(r->features, path, "opening /features", err, fail);
  space = H5Dget_space(r->features);
  hsize_t dims[2] = {0, 0};
  if (H5Sget_simple_extent_ndims(space) != 2 || H5Sget_simple_extent_dims(space, dims, NULL) < 0 ||
      dims[1] != (hsize_t)n_mels) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: /features is not [frames, %lld]", path,
                (long long)n_mels);
    goto fail;
  }
  H5Sclose(space);
  space = -1;
  r->total_frames = dims[0];
  table = H5Dopen2(r->file, "utterances", H5P_DEFAULT);
  H5_TRY(table, path, "opening /utterances", err, fail);
  space = H5Dget_space(table);
  if (H5Sget_simple_extent_ndims(space) != 1 || H5Sget_simple_extent_dims(space, &n, NULL) < 0) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: /utterances is not a 1-D table", path);
    goto fail;
  }
  ut = utt_type();
  recs = g_new0(utt_rec, n ? n : 1);
  if (n)
    H5_TRY(H5Dread(table, ut, H5S_ALL, H5S_ALL, H5P_DEFAULT, recs), path, "reading /utterances",
           err, fail);
  for (hsize_t i = 0; i < n; i++) {
    vs_featstore_row x = {
        .id = g_strdup(recs[i].id ? recs[i].id : ""),
        .source = g_strdup(recs[i].source ? recs[i].source : ""),
        .text = g_strdup(recs[i].text ? recs[i].text : ""),
        .speaker = g_strdup(recs[i].speaker ? recs[i].speaker : ""),
        .language = g_strdup(recs[i].language ? recs[i].language : ""),
        .frame_offset = recs[i].frame_offset,
        .n_frames = recs[i].n_frames,
        .n_samples = recs[i].n_samples,
        .duration_s = recs[i].duration_s,
    };
    g_array_append_val(r->rows, x);
    if (x.frame_offset + x.n_frames > r->total_frames) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s: /utterances row %llu (frames %llu..%llu) runs past /features (%llu frames)",
                  path, (unsigned long long)i, (unsigned long long)x.frame_offset,
                  (unsigned long long)(x.frame_offset + x.n_frames),
                  (unsigned long long)r->total_frames);
      H5Dvlen_reclaim(ut, space, H5P_DEFAULT, recs);
      goto fail;
    }
  }
  if (n) H5Dvlen_reclaim(ut, space, H5P_DEFAULT, recs);
  g_free(recs);
  H5Tclose(ut);
  H5Sclose(space);
  H5Dclose(table);
  return r;
fail:
  g_free(recs);
  if (ut >= 0) H5Tclose(ut);
  if (space >= 0) H5Sclose(space);
  if (table >= 0) H5Dclose(table);
  vs_featstore_close(r);
  return NULL;
}

int vs_featstore_reader_n_mels(const vs_featstore_reader *r) {
  return r->n_mels;
}
size_t vs_featstore_reader_pad_samples(const vs_featstore_reader *r) {
  return r->pad_samples;
}
size_t vs_featstore_reader_n_utts(const vs_featstore_reader *r) {
  return r->rows->len;
}
uint64_t vs_featstore_reader_total_frames(const vs_featstore_reader *r) {
  return r->total_frames;
}
const vs_featstore_row *vs_featstore_reader_row(const vs_featstore_reader *r, size_t i) {
  return i < r->rows->len ? &g_array_index(r->rows, vs_featstore_row, i) : NULL;
}

bool vs_featstore_read_features(vs_featstore_reader *r, size_t i, float *out, GError **err) {
  vs_featstore_hdf5_init();
  const vs_featstore_row *x = vs_featstore_reader_row(r, i);
  if (!x) VS_FAIL(err, VS_ERROR_INTERNAL, false, "%s: no utterance row %zu", r->path, i);
  if (x->n_frames == 0) return true;
  hsize_t start[2] = {x->frame_offset, 0}, count[2] = {x->n_frames, (hsize_t)r->n_mels};
  hid_t fspace = H5Dget_space(r->features), mspace = H5Screate_simple(2, count, NULL);
  bool ok = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
            H5Dread(r->features, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, out) >= 0;
  if (!ok) vs_featstore_hdf5_error(err, r->path, "reading /features rows");
  H5Sclose(fspace);
  H5Sclose(mspace);
  return ok;
}

/* ---- index ---- */

typedef struct {
  const char *id, *shard;
  uint64_t row, n_frames;
  double duration_s;
} idx_utt_rec;

typedef struct {
  const char *file;
  int32_t rank, run;
  uint64_t n_utterances;
  double seconds;
} idx_shard_rec;

typedef struct {
  const char *id, *source, *code, *reason;
} idx_fail_rec;

bool vs_featstore_write_index(const char *final_path, int n_mels, size_t pad_samples,
                              const vs_featstore_index_utt *utts, size_t n_utts,
                              const vs_featstore_index_shard *shards, size_t n_shards,
                              const vs_featstore_index_failure *failed, size_t n_failed,
                              GError **err) {
  vs_featstore_hdf5_init();
  char *tmp = vs_fs_temp_path(final_path);
  hid_t s = vlen_str_type();
  hid_t tu = H5Tcreate(H5T_COMPOUND, sizeof(idx_utt_rec));
  H5Tinsert(tu, "id", HOFFSET(idx_utt_rec, id), s);
  H5Tinsert(tu, "shard", HOFFSET(idx_utt_rec, shard), s);
  H5Tinsert(tu, "row", HOFFSET(idx_utt_rec, row), H5T_NATIVE_UINT64);
  H5Tinsert(tu, "n_frames", HOFFSET(idx_utt_rec, n_frames), H5T_NATIVE_UINT64);
  H5Tinsert(tu, "duration_s", HOFFSET(idx_utt_rec, duration_s), H5T_NATIVE_DOUBLE);
  hid_t ts = H5Tcreate(H5T_COMPOUND, sizeof(idx_shard_rec));
  H5Tinsert(ts, "file", HOFFSET(idx_shard_rec, file), s);
  H5Tinsert(ts, "rank", HOFFSET(idx_shard_rec, rank), H5T_NATIVE_INT32);
  H5Tinsert(ts, "run", HOFFSET(idx_shard_rec, run), H5T_NATIVE_INT32);
  H5Tinsert(ts, "n_utterances", HOFFSET(idx_shard_rec, n_utterances), H5T_NATIVE_UINT64);
  H5Tinsert(ts, "seconds", HOFFSET(idx_shard_rec, seconds), H5T_NATIVE_DOUBLE);
  hid_t tf = H5Tcreate(H5T_COMPOUND, sizeof(idx_fail_rec));
  H5Tinsert(tf, "id", HOFFSET(idx_fail_rec, id), s);
  H5Tinsert(tf, "source", HOFFSET(idx_fail_rec, source), s);
  H5Tinsert(tf, "code", HOFFSET(idx_fail_rec, code), s);
  H5Tinsert(tf, "reason", HOFFSET(idx_fail_rec, reason), s);

  idx_utt_rec *ur = g_new0(idx_utt_rec, n_utts ? n_utts : 1);
  double total_s = 0;
  for (size_t i = 0; i < n_utts; i++) {
    ur[i] =
        (idx_utt_rec){utts[i].id, utts[i].shard, utts[i].row, utts[i].n_frames, utts[i].duration_s};
    total_s += utts[i].duration_s;
  }
  idx_shard_rec *sr = g_new0(idx_shard_rec, n_shards ? n_shards : 1);
  for (size_t i = 0; i < n_shards; i++)
    sr[i] = (idx_shard_rec){shards[i].file, shards[i].rank, shards[i].run, shards[i].n_utterances,
                            shards[i].seconds};
  idx_fail_rec *fr = g_new0(idx_fail_rec, n_failed ? n_failed : 1);
  for (size_t i = 0; i < n_failed; i++)
    fr[i] = (idx_fail_rec){
        failed[i].id ? failed[i].id : "", failed[i].source ? failed[i].source : "",
        failed[i].code ? failed[i].code : "", failed[i].reason ? failed[i].reason : ""};

  bool ok = false;
  hid_t fapl = file_access();
  hid_t f = H5Fcreate(tmp, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
  if (f < 0) vs_featstore_hdf5_error(err, tmp, "creating the index file");
  H5Pclose(fapl);
  if (f >= 0) {
    ok =
        write_table(f, "utterances", tu, ur, n_utts, tmp, err) &&
        write_table(f, "shards", ts, sr, n_shards, tmp, err) &&
        write_table(f, "failed", tf, fr, n_failed, tmp, err) &&
        common_attrs(f, n_mels, pad_samples, tmp, err) &&
        attr_str(f, "format", "voxshard-index", tmp, err) &&
        attr_i64(f, "n_utterances", (int64_t)n_utts, tmp, err) &&
        attr_i64(f, "n_shards", (int64_t)n_shards, tmp, err) &&
        attr_i64(f, "n_failed", (int64_t)n_failed, tmp, err) &&
        attr_f64(f, "total_seconds", total_s, tmp, err) &&
        attr_f64(f, "total_hours", total_s / 3600.0, tmp, err) &&
        attr_str(f, "units",
                 "duration_s, seconds, total_seconds: seconds; total_hours: hours; row: index into "
                 "the shard's /utterances; n_frames: frames of hop_length samples; shard, file: "
                 "paths relative to the folder holding this index",
                 tmp, err);
    if (H5Fclose(f) < 0 && ok) {
      vs_featstore_hdf5_error(err, tmp, "closing the index file");
      ok = false;
    }
    ok = ok && vs_fs_publish(tmp, final_path, err);
    if (!ok) unlink(tmp);
  }
  g_free(ur);
  g_free(sr);
  g_free(fr);
  H5Tclose(tu);
  H5Tclose(ts);
  H5Tclose(tf);
  H5Tclose(s);
  g_free(tmp);
  return ok;
}
