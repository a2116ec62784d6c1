/* Reader of CTranslate2's model.bin (binary_version 6, WhisperSpec): walks the variable headers,
 * skipping each variable's data with a seek, so only the index is held in memory; the converter
 * later reads each tensor's bytes with pread. Layout: docs/model-file.md and CTranslate2's
 * python/ctranslate2/specs/model_spec.py.
 */
#include "model_source.h"
#include "vs_error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* Versions whose layout this reader knows: 6 added the alias table after the variables. */
#define CT2_MIN_VERSION 5
#define CT2_MAX_VERSION 6

typedef struct {
  FILE *f;
  const char *path;
  off_t size;
} ct2_in;

static bool rd(ct2_in *in, void *buf, size_t n, const char *what, GError **err) {
  off_t at = ftello(in->f);
  if (fread(buf, 1, n, in->f) != n)
    VS_FAIL(err, VS_ERROR_FORMAT, false,
            "%s: truncated CTranslate2 model: file ends at byte %lld while reading %s (at byte "
            "%lld)",
            in->path, (long long)in->size, what, (long long)at);
  return true;
}

static bool rd_u32(ct2_in *in, uint32_t *v, const char *what, GError **err) {
  uint8_t b[4];
  if (!rd(in, b, 4, what, err)) return false;
  *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  return true;
}

/* CTranslate2 strings: u16 length counting the trailing NUL, the bytes, the NUL. */
static char *rd_str(ct2_in *in, const char *what, GError **err) {
  uint8_t b[2];
  if (!rd(in, b, 2, what, err)) return NULL;
  size_t n = (size_t)b[0] | (size_t)b[1] << 8;
  if (n == 0)
    VS_FAIL(err, VS_ERROR_FORMAT, NULL, "%s: corrupt CTranslate2 model: empty string for %s",
            in->path, what);
  char *s = g_malloc(n);
  if (!rd(in, s, n, what, err)) {
    g_free(s);
    return NULL;
  }
  if (s[n - 1] != '\0') {
    g_free(s);
    VS_FAIL(err, VS_ERROR_FORMAT, NULL, "%s: corrupt CTranslate2 model: %s is not NUL-terminated",
            in->path, what);
  }
  return s;
}

typedef struct {
  char *name;
  int rank;
  long dims[8];
  vs_dtype dtype;
  off_t offset;
  size_t nbytes;
} ct2_var;

static void ct2_var_free(gpointer p) {
  ct2_var *v = p;
  g_free(v->name);
  g_free(v);
}

/* Small integer variables (num_heads) are read now; weights only indexed. */
static bool read_scalar_int(ct2_in *in, const ct2_var *v, long *out, GError **err) {
  off_t here = ftello(in->f);
  uint8_t b[4] = {0};
  size_t n = vs_dtype_size(v->dtype);
  if (fseeko(in->f, v->offset, SEEK_SET) != 0 || !rd(in, b, n, v->name, err)) return false;
  fseeko(in->f, here, SEEK_SET);
  switch (v->dtype) {
  case VS_DT_I8:
    *out = (int8_t)b[0];
    break;
  case VS_DT_I16:
    *out = (int16_t)(b[0] | b[1] << 8);
    break;
  case VS_DT_I32:
    *out = (int32_t)(b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24);
    break;
  default:
    *out = 0;
  }
  return true;
}

vs_src *vs_ct2_open(const char *dir, GError **err) {
  char *path = g_build_filename(dir, "model.bin", NULL);
  FILE *f = fopen(path, "rb");
  if (!f) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot open CTranslate2 model: %s", path,
                g_strerror(errno));
    g_free(path);
    return NULL;
  }
  struct stat st;
  fstat(fileno(f), &st);
  ct2_in in = {f, path, st.st_size};
  GPtrArray *vars = g_ptr_array_new_with_free_func(ct2_var_free);
  GHashTable *by_name = g_hash_table_new(g_str_hash, g_str_equal);
  GHashTable *aliases = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  vs_src *src = NULL;
  char *spec = NULL;
  uint32_t version, revision, n_vars, n_aliases;

  if (!rd_u32(&in, &version, "binary_version", err)) goto out;
  if (version < CT2_MIN_VERSION || version > CT2_MAX_VERSION) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                "%s: not a supported CTranslate2 model: binary_version %u (this reader knows "
                "%d..%d)",
                path, version, CT2_MIN_VERSION, CT2_MAX_VERSION);
    goto out;
  }
  if (!(spec = rd_str(&in, "spec name", err))) goto out;
  if (strcmp(spec, "WhisperSpec") != 0) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                "%s: CTranslate2 model of spec '%s', expected WhisperSpec", path, spec);
    goto out;
  }
  if (!rd_u32(&in, &revision, "spec revision", err)) goto out;
  if (!rd_u32(&in, &n_vars, "number of variables", err)) goto out;
  for (uint32_t i = 0; i < n_vars; i++) {
    ct2_var *v = g_new0(ct2_var, 1);
    g_ptr_array_add(vars, v);
    char what[64];
    snprintf(what, sizeof what, "variable %u's name", i);
    if (!(v->name = rd_str(&in, what, err))) goto out;
    uint8_t rank, dtype;
    if (!rd(&in, &rank, 1, v->name, err)) goto out;
    if (rank > 8) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: tensor %s: corrupt rank %u", path, v->name,
                  rank);
      goto out;
    }
    v->rank = rank;
    size_t numel = 1;
    for (int d = 0; d < rank; d++) {
      uint32_t x;
      if (!rd_u32(&in, &x, v->name, err)) goto out;
      v->dims[d] = x;
      numel *= x;
    }
    uint32_t nbytes;
    if (!rd(&in, &dtype, 1, v->name, err) || !rd_u32(&in, &nbytes, v->name, err)) goto out;
    if (dtype >= VS_DT_COUNT) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: tensor %s: unknown dtype id %u", path,
                  v->name, dtype);
      goto out;
    }
    v->dtype = dtype;
    if ((size_t)nbytes != numel * vs_dtype_size(v->dtype)) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s: tensor %s: %u bytes stored for %zu elements of %s", path, v->name, nbytes,
                  numel, vs_dtype_name(v->dtype));
      goto out;
    }
    v->nbytes = nbytes;
    v->offset = ftello(f);
    if (v->offset + (off_t)nbytes > in.size) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s: truncated CTranslate2 model: tensor %s needs bytes %lld..%lld but the file "
                  "has %lld",
                  path, v->name, (long long)v->offset, (long long)(v->offset + nbytes),
                  (long long)in.size);
      goto out;
    }
    fseeko(f, v->offset + nbytes, SEEK_SET);
    g_hash_table_insert(by_name, v->name, v);
  }
  if (version >= 6) {
    if (!rd_u32(&in, &n_aliases, "number of aliases", err)) goto out;
    for (uint32_t i = 0; i < n_aliases; i++) {
      char *alias = rd_str(&in, "alias name", err);
      if (!alias) goto out;
      char *target = rd_str(&in, alias, err);
      if (!target) {
        g_free(alias);
        goto out;
      }
      g_hash_table_insert(aliases, alias, target);
    }
  }
  if (ftello(f) != in.size) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                "%s: corrupt CTranslate2 model: %lld unexpected bytes after the alias table", path,
                (long long)(in.size - ftello(f)));
    goto out;
  }

  src = vs_src_new(path, dir);
  src->format_desc = g_strdup_printf("CTranslate2 model.bin binary_version %u, %s revision %u",
                                     version, spec, revision);
  /* Canonical names are CTranslate2's own, so the only mapping is resolving aliases (which
   * can name other aliases) and dropping scalars (flags, head counts) that are not weights. */
  GHashTableIter it;
  gpointer k, val;
  g_hash_table_iter_init(&it, aliases);
  while (g_hash_table_iter_next(&it, &k, &val)) {
    const char *t = val;
    for (int hop = 0; hop < 16 && !g_hash_table_contains(by_name, t); hop++) {
      const char *next = g_hash_table_lookup(aliases, t);
      if (!next) break;
      t = next;
    }
    ct2_var *target = g_hash_table_lookup(by_name, t);
    if (!target) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s: alias %s points to %s, which is not a variable of the model", path,
                  (char *)k, (char *)val);
      vs_src_free(src);
      src = NULL;
      goto out;
    }
    if (!g_hash_table_contains(by_name, k)) g_hash_table_insert(by_name, k, target);
  }
  for (guint i = 0; i < vars->len; i++) {
    ct2_var *v = vars->pdata[i];
    if (v->rank == 0) {
      long x;
      if (!strcmp(v->name, "encoder/num_heads") || !strcmp(v->name, "decoder/num_heads")) {
        if (!read_scalar_int(&in, v, &x, err)) {
          vs_src_free(src);
          src = NULL;
          goto out;
        }
        if (v->name[0] == 'e')
          src->enc_heads = (int)x;
        else
          src->dec_heads = (int)x;
      }
      continue;
    }
    if (g_str_has_suffix(v->name, "_scale")) continue; /* attached to its weight below */
    if (v->rank > 4) {
      g_set_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED, "%s: tensor %s has rank %d (at most 4)",
                  path, v->name, v->rank);
      vs_src_free(src);
      src = NULL;
      goto out;
    }
    vs_src_tensor *t = vs_src_add(src, v->name, v->dtype, v->rank, v->dims);
    t->n_pieces = 1;
    t->pieces[0] = (vs_src_piece){v->offset, v->nbytes};
  }
  /* int8 weights need their per-row scale; it may itself be reached through an alias. */
  for (guint i = 0; i < src->tensors->len; i++) {
    vs_src_tensor *t = src->tensors->pdata[i];
    if (t->dtype != VS_DT_I8) continue;
    char *sname = g_strconcat(t->name, "_scale", NULL);
    ct2_var *sv = g_hash_table_lookup(by_name, sname);
    if (!sv) {
      const char *target = g_hash_table_lookup(aliases, t->name);
      if (target) {
        char *tscale = g_strconcat(target, "_scale", NULL);
        sv = g_hash_table_lookup(by_name, tscale);
        g_free(tscale);
      }
    }
    if (!sv || sv->dtype != VS_DT_F32 || sv->rank > 1 ||
        (sv->rank == 1 && sv->dims[0] != t->dims[0])) {
      g_set_error(err, VS_ERROR, VS_ERROR_MODEL,
                  "%s: int8 tensor %s has no float32 scale %s of shape [%ld]", path, t->name, sname,
                  t->dims[0]);
      g_free(sname);
      vs_src_free(src);
      src = NULL;
      goto out;
    }
    long sd[1] = {sv->rank ? sv->dims[0] : 1};
    vs_src_tensor *st = vs_src_add(src, sname, VS_DT_F32, 1, sd);
    st->n_pieces = 1;
    st->pieces[0] = (vs_src_piece){sv->offset, sv->nbytes};
    t->scale_name = sname;
  }
  /* Every other alias becomes a tensor of its own name over the same bytes, except the tied
   * output projection: the model file keeps only the embedding and the loader re-creates it. */
  g_hash_table_iter_init(&it, aliases);
  while (g_hash_table_iter_next(&it, &k, &val)) {
    if (!strcmp(k, "decoder/projection/weight") || g_str_has_suffix(k, "_scale")) continue;
    if (vs_src_find(src, k)) continue;
    const vs_src_tensor *t = vs_src_find(src, ((ct2_var *)g_hash_table_lookup(by_name, k))->name);
    if (!t) continue; /* an alias of a scalar */
    vs_src_tensor *c = vs_src_add(src, k, t->dtype, t->rank, t->dims);
    c->n_pieces = t->n_pieces;
    memcpy(c->pieces, t->pieces, sizeof c->pieces);
    c->scale_name = g_strdup(t->scale_name);
  }

out:
  g_free(spec);
  g_hash_table_destroy(aliases);
  g_hash_table_destroy(by_name);
  g_ptr_array_free(vars, TRUE);
  fclose(f);
  g_free(path);
  return src;
}
