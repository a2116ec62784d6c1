/* The model file loader (docs/model-file.md): everything to fp32 host memory in one arena,
 * every required tensor checked for presence and shape, and the tokenizer rebuilt from the
 * bytes the file stores, so a model file is all a run needs. Also the HDF5 helpers the
 * converter shares. */
#include "model.h"

#include "model_source.h"
#include "tokenizer.h"
#include "vs_error.h"

#include <errno.h>

struct vs_model {
  char *path;
  vs_whisper_hparams hp;
  GPtrArray *tensors;  /* vs_tensor*, in the order of vs_model_expected_tensors */
  GHashTable *by_name; /* canonical name -> vs_tensor*; also the tied projection alias */
  float *arena;        /* host: every weight, fp32, carved in tensor order */
  vs_tokenizer *tok;
  GArray *suppress, *suppress_begin, *lang_ids, *alignment_heads; /* int; heads as pairs */
};

/* ---------------- HDF5 helpers ---------------- */

vs_h5_quiet vs_h5_quiet_begin(void) {
  vs_h5_quiet q = {0};
  H5Eget_auto2(H5E_DEFAULT, &q.fn, &q.data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  return q;
}

void vs_h5_quiet_end(vs_h5_quiet q) {
  H5Eset_auto2(H5E_DEFAULT, q.fn, q.data);
}

static __thread char h5_msg[512];

static herr_t h5_walk(unsigned n, const H5E_error2_t *e, void *data) {
  if (n == 0 && e->desc) g_strlcpy(h5_msg, e->desc, sizeof h5_msg);
  return 0;
}

const char *vs_h5_last_error(void) {
  g_strlcpy(h5_msg, "unknown HDF5 error", sizeof h5_msg);
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk, NULL);
  return h5_msg;
}

char *vs_h5_shape_str(int rank, const long *dims) {
  GString *s = g_string_new("[");
  for (int i = 0; i < rank; i++)
    g_string_append_printf(s, "%s%ld", i ? ", " : "", dims[i]);
  g_string_append_c(s, ']');
  return g_string_free(s, FALSE);
}

/* IEEE half as an HDF5 float type (HDF5 1.10 has no predefined one); h5py reads it as f2. */
static hid_t f16_type(void) {
  static hid_t t = -1;
  if (t < 0) {
    hid_t x = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(x, 15, 10, 5, 0, 10);
    H5Tset_size(x, 2);
    H5Tset_ebias(x, 15);
    H5Tlock(x);
    t = x;
  }
  return t;
}

hid_t vs_h5_file_type(vs_dtype t) {
  switch (t) {
  case VS_DT_F32:
    return H5T_IEEE_F32LE;
  case VS_DT_F16:
    return f16_type();
  case VS_DT_I8:
    return H5T_STD_I8LE;
  case VS_DT_I16:
    return H5T_STD_I16LE;
  case VS_DT_I32:
    return H5T_STD_I32LE;
  default:
    return -1;
  }
}

bool vs_h5_group(hid_t f, const char *path, const char *file_name, GError **err) {
  hid_t g = H5Gcreate2(f, path, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0)
    VS_FAIL(err, VS_ERROR_HDF5, false, "%s: cannot create group %s: %s", file_name, path,
            vs_h5_last_error());
  H5Gclose(g);
  return true;
}

static bool attr_write(hid_t f, const char *obj, const char *name, hid_t type, const void *v,
                       const char *file_name, GError **err) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate_by_name(f, obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  bool ok = a >= 0 && H5Awrite(a, type, v) >= 0;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  if (!ok)
    VS_FAIL(err, VS_ERROR_HDF5, false, "%s: cannot write attribute %s of %s: %s", file_name, name,
            obj, vs_h5_last_error());
  return true;
}

bool vs_h5_attr_str(hid_t f, const char *obj, const char *name, const char *value,
                    const char *file_name, GError **err) {
  /* variable-length UTF-8, so h5py returns str and h5dump prints the text */
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  bool ok = attr_write(f, obj, name, t, &value, file_name, err);
  H5Tclose(t);
  return ok;
}

bool vs_h5_attr_int(hid_t f, const char *obj, const char *name, long value, const char *file_name,
                    GError **err) {
  int32_t v = (int32_t)value;
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a =
      H5Acreate_by_name(f, obj, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  bool ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT32, &v) >= 0;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  if (!ok)
    VS_FAIL(err, VS_ERROR_HDF5, false, "%s: cannot write attribute %s of %s: %s", file_name, name,
            obj, vs_h5_last_error());
  return true;
}

bool vs_h5_write_array(hid_t f, const char *file_name, const char *path, vs_dtype t, int rank,
                       const long *dims, const void *data, GError **err) {
  hsize_t hd[8];
  for (int i = 0; i < rank; i++)
    hd[i] = (hsize_t)dims[i];
  hid_t sp = H5Screate_simple(rank, hd, NULL);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t type = vs_h5_file_type(t);
  /* Stored in the file's own type, so the memory type is the same: no HDF5 conversion. */
  hid_t d = H5Dcreate2(f, path, type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  bool ok = d >= 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
  if (d >= 0) H5Dclose(d);
  H5Pclose(lcpl);
  H5Sclose(sp);
  if (!ok)
    VS_FAIL(err, VS_ERROR_HDF5, false, "%s: cannot write %s: %s", file_name, path,
            vs_h5_last_error());
  return true;
}

/* ---------------- loading ---------------- */

static bool read_attr_str(hid_t f, const char *obj, const char *name, char **out) {
  if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) <= 0) return false;
  hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  hid_t ft = H5Aget_type(a);
  bool ok = false;
  if (H5Tget_class(ft) == H5T_STRING) {
    if (H5Tis_variable_str(ft) > 0) {
      char *s = NULL;
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      H5Tset_cset(mt, H5Tget_cset(ft));
      if (H5Aread(a, mt, &s) >= 0 && s) {
        *out = g_strdup(s);
        H5free_memory(s);
        ok = true;
      }
      H5Tclose(mt);
    } else {
      size_t n = H5Tget_size(ft);
      char *s = g_malloc0(n + 1);
      if (H5Aread(a, ft, s) >= 0) {
        *out = s;
        ok = true;
      } else {
        g_free(s);
      }
    }
  }
  H5Tclose(ft);
  H5Aclose(a);
  return ok;
}

static bool read_attr_int(hid_t f, const char *obj, const char *name, long *out) {
  if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) <= 0) return false;
  hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  hid_t ft = H5Aget_type(a);
  long long v = 0;
  bool ok = H5Tget_class(ft) == H5T_INTEGER && H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0;
  H5Tclose(ft);
  H5Aclose(a);
  if (ok) *out = (long)v;
  return ok;
}

static bool link_exists(hid_t f, const char *path) {
  /* H5Lexists needs every parent to exist, so walk the path one component at a time. */
  char *p = g_strdup(path);
  bool ok = true;
  for (char *s = p + 1; ok; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      ok = H5Lexists(f, p, H5P_DEFAULT) > 0;
      *s = c;
      if (c == '\0') break;
    }
  }
  g_free(p);
  return ok;
}

/* Reads a whole dataset of any integer type as ints. */
static GArray *read_int_dataset(hid_t f, const char *path, const char *file_name, int want_rank,
                                GError **err) {
  if (!link_exists(f, path))
    VS_FAIL(err, VS_ERROR_MODEL, NULL, "%s: dataset %s is missing", file_name, path);
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
  hid_t sp = H5Dget_space(d);
  hid_t ft = H5Dget_type(d);
  int rank = H5Sget_simple_extent_ndims(sp);
  hssize_t n = H5Sget_simple_extent_npoints(sp);
  GArray *a = NULL;
  if (H5Tget_class(ft) != H5T_INTEGER || rank != want_rank) {
    g_set_error(err, VS_ERROR, VS_ERROR_MODEL, "%s: dataset %s: expected a rank-%d integer array",
                file_name, path, want_rank);
  } else {
    a = g_array_sized_new(FALSE, TRUE, sizeof(int), (guint)n);
    g_array_set_size(a, (guint)n);
    if (n > 0 && H5Dread(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->data) < 0) {
      g_set_error(err, VS_ERROR, VS_ERROR_HDF5, "%s: cannot read %s: %s", file_name, path,
                  vs_h5_last_error());
      g_array_free(a, TRUE);
      a = NULL;
    }
  }
  H5Tclose(ft);
  H5Sclose(sp);
  H5Dclose(d);
  return a;
}

typedef struct {
  hid_t f;
  vs_model *m;
  GError **err;
  bool ok;
  size_t total; /* pass 1: floats needed */
  size_t used;  /* pass 2: floats carved */
  bool pass2;
} load_ctx;

static bool is_f16(hid_t ft) {
  size_t spos, epos, esize, mpos, msize;
  if (H5Tget_class(ft) != H5T_FLOAT || H5Tget_size(ft) != 2) return false;
  H5Tget_fields(ft, &spos, &epos, &esize, &mpos, &msize);
  return spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 &&
         H5Tget_ebias(ft) == 15 && H5Tget_order(ft) == H5T_ORDER_LE;
}

/* Reads dataset `path` into dst (numel floats), whatever the stored dtype. */
static bool load_weight(load_ctx *c, const char *path, const char *name, float *dst, size_t n) {
  const char *fn = c->m->path;
  hid_t d = H5Dopen2(c->f, path, H5P_DEFAULT);
  hid_t ft = H5Dget_type(d);
  bool ok = false;
  if (H5Tget_class(ft) == H5T_FLOAT && H5Tget_size(ft) == 4) {
    ok = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) >= 0;
  } else if (is_f16(ft)) {
    /* halves land in the upper half of dst, then widen front to back without overlap */
    uint16_t *h = (uint16_t *)(dst + n) - n;
    ok = H5Dread(d, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, h) >= 0;
    if (ok) vs_f16_to_f32_n(h, dst, n);
  } else if (H5Tget_class(ft) == H5T_INTEGER && H5Tget_size(ft) == 1) {
    char *spath = NULL;
    if (!read_attr_str(c->f, path, "scale", &spath)) spath = g_strconcat(path, "_scale", NULL);
    if (!link_exists(c->f, spath)) {
      g_set_error(c->err, VS_ERROR, VS_ERROR_MODEL,
                  "%s: tensor %s is int8 but its scale %s is missing", fn, name, spath);
      g_free(spath);
      H5Tclose(ft);
      H5Dclose(d);
      return false;
    }
    int8_t *q = (int8_t *)(dst + n) - n;
    ok = H5Dread(d, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, q) >= 0;
    hid_t sd = H5Dopen2(c->f, spath, H5P_DEFAULT);
    hid_t ss = H5Dget_space(sd);
    hssize_t rows = H5Sget_simple_extent_npoints(ss);
    float *scale = g_new(float, rows > 0 ? rows : 1);
    ok = ok && rows > 0 && n % (size_t)rows == 0 &&
         H5Dread(sd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, scale) >= 0;
    if (ok) {
      size_t row = n / (size_t)rows;
      for (size_t i = 0; i < n; i++)
        dst[i] = q[i] / scale[i / row];
    }
    g_free(scale);
    H5Sclose(ss);
    H5Dclose(sd);
    g_free(spath);
  } else {
    g_set_error(c->err, VS_ERROR, VS_ERROR_MODEL,
                "%s: tensor %s: stored type is not float32, float16 or int8", fn, name);
    H5Tclose(ft);
    H5Dclose(d);
    return false;
  }
  H5Tclose(ft);
  H5Dclose(d);
  if (!ok)
    VS_FAIL(c->err, VS_ERROR_HDF5, false, "%s: tensor %s: cannot read its data: %s", fn, name,
            vs_h5_last_error());
  return true;
}

static void load_one(const char *name, int rank, const long *dims, void *user) {
  load_ctx *c = user;
  if (!c->ok) return;
  size_t n = 1;
  for (int i = 0; i < rank; i++)
    n *= (size_t)dims[i];
  if (!c->pass2) {
    char *path = g_strconcat("/weights/", name, NULL);
    bool ok = true;
    if (!link_exists(c->f, path)) {
      g_set_error(c->err, VS_ERROR, VS_ERROR_MODEL, "%s: tensor %s is missing (no dataset %s)",
                  c->m->path, name, path);
      ok = false;
    } else {
      hid_t d = H5Dopen2(c->f, path, H5P_DEFAULT);
      hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
      hsize_t hd[8] = {0};
      int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
      bool same = r == rank && r <= 8;
      if (same) H5Sget_simple_extent_dims(sp, hd, NULL);
      for (int i = 0; same && i < rank; i++)
        same = (long)hd[i] == dims[i];
      if (!same) {
        long got[8];
        for (int i = 0; i < r && i < 8; i++)
          got[i] = (long)hd[i];
        char *w = vs_h5_shape_str(rank, dims), *g = vs_h5_shape_str(r < 0 ? 0 : r, got);
        g_set_error(c->err, VS_ERROR, VS_ERROR_MODEL, "%s: tensor %s has shape %s, expected %s",
                    c->m->path, name, g, w);
        g_free(w);
        g_free(g);
        ok = false;
      }
      if (sp >= 0) H5Sclose(sp);
      if (d >= 0) H5Dclose(d);
    }
    g_free(path);
    c->ok = ok;
    c->total += n;
    return;
  }
  vs_tensor *t = g_new0(vs_tensor, 1);
  t->name = g_strdup(name);
  t->rank = rank;
  for (int i = 0; i < rank; i++)
    t->dims[i] = dims[i];
  t->data = c->m->arena + c->used;
  c->used += n;
  g_ptr_array_add(c->m->tensors, t);
  g_hash_table_insert(c->m->by_name, (char *)t->name, t);
  char *path = g_strconcat("/weights/", name, NULL);
  c->ok = load_weight(c, path, name, t->data, n);
  g_free(path);
}

static void tensor_free(gpointer p) {
  vs_tensor *t = p;
  g_free((char *)t->name);
  g_free(t);
}

void vs_model_free(vs_model *m) {
  if (!m) return;
  if (m->by_name) g_hash_table_destroy(m->by_name);
  if (m->tensors) g_ptr_array_free(m->tensors, TRUE);
  g_free(m->arena);
  vs_tokenizer_free(m->tok);
  GArray *arrays[] = {m->suppress, m->suppress_begin, m->lang_ids, m->alignment_heads};
  for (size_t i = 0; i < G_N_ELEMENTS(arrays); i++)
    if (arrays[i]) g_array_free(arrays[i], TRUE);
  g_free(m->path);
  g_free(m);
}

/* The root's format attributes and /hparams, checked. */
static bool read_header(hid_t f, const char *fn, vs_whisper_hparams *hp, GError **err) {
  char *format = NULL;
  long version = 0;
  if (!read_attr_str(f, "/", "format", &format) || strcmp(format, VS_MODEL_FORMAT) != 0) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                "%s: not a voxshard model file (root attribute format is %s%s%s, expected '%s'; "
                "convert a model with `voxshard convert`)",
                fn, format ? "'" : "", format ? format : "missing", format ? "'" : "",
                VS_MODEL_FORMAT);
    g_free(format);
    return false;
  }
  g_free(format);
  if (!read_attr_int(f, "/", "format_version", &version) || version < 1 ||
      version > VS_MODEL_FORMAT_VERSION)
    VS_FAIL(err, VS_ERROR_FORMAT, false,
            "%s: model file format_version %ld is not supported (this build reads 1..%d)", fn,
            version, VS_MODEL_FORMAT_VERSION);

  const struct {
    const char *key;
    int *dst;
  } hps[] = {{"n_mels", &hp->n_mels},
             {"n_audio_ctx", &hp->n_audio_ctx},
             {"n_audio_state", &hp->n_audio_state},
             {"n_audio_head", &hp->n_audio_head},
             {"n_audio_layer", &hp->n_audio_layer},
             {"n_text_ctx", &hp->n_text_ctx},
             {"n_text_state", &hp->n_text_state},
             {"n_text_head", &hp->n_text_head},
             {"n_text_layer", &hp->n_text_layer},
             {"n_vocab", &hp->n_vocab}};
  if (!link_exists(f, "/hparams"))
    VS_FAIL(err, VS_ERROR_MODEL, false, "%s: group /hparams is missing", fn);
  for (size_t i = 0; i < G_N_ELEMENTS(hps); i++) {
    long v;
    if (!read_attr_int(f, "/hparams", hps[i].key, &v) || v <= 0 || v > (1L << 24))
      VS_FAIL(err, VS_ERROR_MODEL, false,
              "%s: hyper-parameter /hparams:%s is missing or not a positive integer", fn,
              hps[i].key);
    *hps[i].dst = (int)v;
  }
  if (hp->n_audio_state % hp->n_audio_head || hp->n_text_state % hp->n_text_head)
    VS_FAIL(err, VS_ERROR_MODEL, false, "%s: /hparams: head counts do not divide the widths", fn);
  return true;
}

static bool load_body(hid_t f, vs_model *m, GError **err) {
  const char *fn = m->path;
  if (!read_header(f, fn, &m->hp, err)) return false;

  /* tokenizer */
  const char *tpath = "/tokenizer/tokenizer.json";
  if (!link_exists(f, tpath))
    VS_FAIL(err, VS_ERROR_MODEL, false, "%s: dataset %s is missing", fn, tpath);
  {
    hid_t d = H5Dopen2(f, tpath, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    char *buf = g_malloc(n > 0 ? n : 1);
    bool ok = n > 0 && H5Dread(d, H5T_NATIVE_CHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    H5Sclose(sp);
    H5Dclose(d);
    if (!ok) {
      g_free(buf);
      VS_FAIL(err, VS_ERROR_MODEL, false, "%s: cannot read %s: %s", fn, tpath, vs_h5_last_error());
    }
    char *origin = g_strconcat(fn, ":", tpath, NULL);
    m->tok = vs_tokenizer_new_from_json(buf, (size_t)n, origin, err);
    g_free(origin);
    g_free(buf);
    if (!m->tok) return false;
    if (vs_tokenizer_specials(m->tok)->n_vocab != m->hp.n_vocab)
      VS_FAIL(err, VS_ERROR_MODEL, false,
              "%s: the stored tokenizer has %d tokens but /hparams:n_vocab is %d", fn,
              vs_tokenizer_specials(m->tok)->n_vocab, m->hp.n_vocab);
  }

  if (!(m->suppress = read_int_dataset(f, "/decoding/suppress_ids", fn, 1, err)) ||
      !(m->suppress_begin = read_int_dataset(f, "/decoding/suppress_ids_begin", fn, 1, err)) ||
      !(m->lang_ids = read_int_dataset(f, "/decoding/lang_ids", fn, 1, err)) ||
      !(m->alignment_heads = read_int_dataset(f, "/decoding/alignment_heads", fn, 2, err)))
    return false;
  GArray *ids[] = {m->suppress, m->suppress_begin, m->lang_ids};
  for (size_t k = 0; k < G_N_ELEMENTS(ids); k++)
    for (guint i = 0; i < ids[k]->len; i++)
      if (g_array_index(ids[k], int, i) < 0 || g_array_index(ids[k], int, i) >= m->hp.n_vocab)
        VS_FAIL(err, VS_ERROR_MODEL, false,
                "%s: /decoding holds token id %d outside the vocabulary", fn,
                g_array_index(ids[k], int, i));

  /* weights: pass 1 checks presence and shape and sizes the arena, pass 2 reads */
  load_ctx c = {f, m, err, true, 0, 0, false};
  vs_model_expected_tensors(&m->hp, load_one, &c);
  if (!c.ok) return false;
  long proj_dims[2] = {m->hp.n_vocab, m->hp.n_text_state};
  bool own_proj = link_exists(f, "/weights/decoder/projection/weight");
  if (own_proj) load_one("decoder/projection/weight", 2, proj_dims, &c);
  if (!c.ok) return false;
  m->arena = g_try_new(float, c.total);
  if (!m->arena) VS_FAIL(err, VS_ERROR_IO, false, "%s: out of memory for %zu weights", fn, c.total);
  c.pass2 = true;
  vs_model_expected_tensors(&m->hp, load_one, &c);
  if (c.ok && own_proj) load_one("decoder/projection/weight", 2, proj_dims, &c);
  if (!c.ok) return false;
  if (!own_proj)
    g_hash_table_insert(m->by_name, "decoder/projection/weight",
                        g_hash_table_lookup(m->by_name, "decoder/embeddings/weight"));
  return true;
}

/* The model file opened read-only with HDF5's messages quieted (q), or -1 and err. */
static hid_t open_model_file(const char *path, vs_h5_quiet *q, GError **err) {
  FILE *probe = fopen(path, "rb");
  if (!probe) VS_FAIL_ERRNO(err, -1, "cannot open model file", path);
  fclose(probe);
  *q = vs_h5_quiet_begin();
  if (H5Fis_hdf5(path) <= 0) {
    vs_h5_quiet_end(*q);
    VS_FAIL(err, VS_ERROR_FORMAT, -1,
            "%s: not an HDF5 file (a voxshard model file is HDF5; convert a model with "
            "`voxshard convert`)",
            path);
  }
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                "%s: cannot open the HDF5 model file (truncated or corrupt?): %s", path,
                vs_h5_last_error());
    vs_h5_quiet_end(*q);
  }
  return f;
}

bool vs_model_read_hparams(const char *path, vs_whisper_hparams *hp, GError **err) {
  vs_h5_quiet q;
  hid_t f = open_model_file(path, &q, err);
  if (f < 0) return false;
  *hp = (vs_whisper_hparams){0};
  bool ok = read_header(f, path, hp, err);
  H5Fclose(f);
  vs_h5_quiet_end(q);
  return ok;
}

vs_model *vs_model_load(const char *path, GError **err) {
  vs_h5_quiet q;
  hid_t f = open_model_file(path, &q, err);
  if (f < 0) return NULL;
  vs_model *m = g_new0(vs_model, 1);
  m->path = g_strdup(path);
  m->tensors = g_ptr_array_new_with_free_func(tensor_free);
  m->by_name = g_hash_table_new(g_str_hash, g_str_equal);
  bool ok = load_body(f, m, err);
  H5Fclose(f);
  vs_h5_quiet_end(q);
  if (!ok) {
    vs_model_free(m);
    return NULL;
  }
  return m;
}

const vs_whisper_hparams *vs_model_hparams(const vs_model *m) {
  return &m->hp;
}

const vs_tensor *vs_model_tensor(const vs_model *m, const char *name) {
  return g_hash_table_lookup(m->by_name, name);
}

const struct vs_tokenizer *vs_model_tokenizer(const vs_model *m) {
  return m->tok;
}

const int *vs_model_suppress_ids(const vs_model *m, size_t *n) {
  *n = m->suppress->len;
  return (const int *)m->suppress->data;
}

const int *vs_model_suppress_ids_begin(const vs_model *m, size_t *n) {
  *n = m->suppress_begin->len;
  return (const int *)m->suppress_begin->data;
}

const int *vs_model_lang_ids(const vs_model *m, size_t *n) {
  *n = m->lang_ids->len;
  return (const int *)m->lang_ids->data;
}

const int *vs_model_alignment_heads(const vs_model *m, size_t *n_pairs) {
  *n_pairs = m->alignment_heads->len / 2;
  return (const int *)m->alignment_heads->data;
}

size_t vs_model_n_tensors(const vs_model *m) {
  return m->tensors->len;
}

const vs_tensor *vs_model_tensor_at(const vs_model *m, size_t i) {
  return i < m->tensors->len ? m->tensors->pdata[i] : NULL;
}
