/* Reader of a Hugging Face Whisper folder (model.safetensors + config.json): indexes the
 * safetensors header and maps transformers' names to the canonical (CTranslate2) ones, fusing
 * q/k/v (and the cross-attention k/v) by concatenating their rows. The fusion is only an index
 * of file ranges, so nothing is read until the converter asks for a tensor. */
#include "model_source.h"
#include "vs_error.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  vs_dtype dtype;
  int rank;
  long dims[4];
  off_t offset; /* absolute, in the file */
  size_t nbytes;
} st_entry;

static bool parse_dtype(const char *s, vs_dtype *out) {
  static const struct {
    const char *name;
    vs_dtype t;
  } map[] = {{"F32", VS_DT_F32}, {"F16", VS_DT_F16}, {"BF16", VS_DT_BF16},
             {"I8", VS_DT_I8},   {"I16", VS_DT_I16}, {"I32", VS_DT_I32}};
  for (size_t i = 0; i < G_N_ELEMENTS(map); i++)
    if (!strcmp(s, map[i].name)) {
      *out = map[i].t;
      return true;
    }
  return false;
}

typedef struct {
  vs_src *src;
  GHashTable *hf; /* transformers name without "model." -> st_entry* */
  GError **err;
  bool ok;
} map_ctx;

/* Adds canonical tensor `canon` as the row-concatenation of HF tensors; a NULL name in `parts`
 * is a zero block shaped like the previous part (k_proj's missing bias). */
static void add_cat(map_ctx *c, const char *canon, const char *const *parts, int n) {
  if (!c->ok) return;
  const st_entry *first = NULL;
  for (int i = 0; i < n; i++)
    if (parts[i]) {
      first = g_hash_table_lookup(c->hf, parts[i]);
      if (!first) {
        g_set_error(c->err, VS_ERROR, VS_ERROR_MODEL, "%s: tensor model.%s is missing",
                    c->src->path, parts[i]);
        c->ok = false;
        return;
      }
      break;
    }
  if (!first) return;
  long dims[4];
  memcpy(dims, first->dims, sizeof dims);
  dims[0] = 0;
  vs_src_piece pieces[3];
  for (int i = 0; i < n; i++) {
    const st_entry *e = parts[i] ? g_hash_table_lookup(c->hf, parts[i]) : first;
    if (!e) {
      g_set_error(c->err, VS_ERROR, VS_ERROR_MODEL, "%s: tensor model.%s is missing", c->src->path,
                  parts[i]);
      c->ok = false;
      return;
    }
    bool same = e->dtype == first->dtype && e->rank == first->rank;
    for (int d = 1; same && d < e->rank; d++)
      same = e->dims[d] == first->dims[d];
    if (!same) {
      g_set_error(c->err, VS_ERROR, VS_ERROR_MODEL,
                  "%s: tensor model.%s does not match model.%s in dtype or trailing shape, so they "
                  "cannot be fused into %s",
                  c->src->path, parts[i], parts[0] ? parts[0] : "?", canon);
      c->ok = false;
      return;
    }
    dims[0] += e->dims[0];
    pieces[i] = (vs_src_piece){parts[i] ? e->offset : -1, e->nbytes};
  }
  vs_src_tensor *t = vs_src_add(c->src, canon, first->dtype, first->rank, dims);
  t->n_pieces = n;
  memcpy(t->pieces, pieces, sizeof(vs_src_piece) * n);
}

static void add1(map_ctx *c, const char *canon, const char *hf) {
  const char *parts[1] = {hf};
  add_cat(c, canon, parts, 1);
}

static void add_norm(map_ctx *c, const char *canon, const char *hf) {
  char a[160], b[160];
  snprintf(a, sizeof a, "%s/gamma", canon);
  snprintf(b, sizeof b, "%s.weight", hf);
  add1(c, a, b);
  snprintf(a, sizeof a, "%s/beta", canon);
  snprintf(b, sizeof b, "%s.bias", hf);
  add1(c, a, b);
}

static void add_linear(map_ctx *c, const char *canon, const char *hf) {
  char a[160], b[160];
  snprintf(a, sizeof a, "%s/weight", canon);
  snprintf(b, sizeof b, "%s.weight", hf);
  add1(c, a, b);
  snprintf(a, sizeof a, "%s/bias", canon);
  snprintf(b, sizeof b, "%s.bias", hf);
  add1(c, a, b);
}

/* q,k,v (or k,v) projections -> one fused linear; k has no bias in Whisper. */
static void add_fused(map_ctx *c, const char *canon, const char *hf_attn, const char *const *projs,
                      int n) {
  char names[3][160], bnames[3][160];
  const char *w[3], *b[3];
  for (int i = 0; i < n; i++) {
    snprintf(names[i], sizeof names[i], "%s.%s_proj.weight", hf_attn, projs[i]);
    snprintf(bnames[i], sizeof bnames[i], "%s.%s_proj.bias", hf_attn, projs[i]);
    w[i] = names[i];
    b[i] = g_hash_table_contains(c->hf, bnames[i]) ? bnames[i] : NULL;
  }
  char a[160];
  snprintf(a, sizeof a, "%s/weight", canon);
  add_cat(c, a, w, n);
  if (!c->ok) return;
  bool any_bias = false;
  for (int i = 0; i < n; i++)
    any_bias |= b[i] != NULL;
  if (!any_bias) return; /* reported as missing by the shape check */
  /* a zero block needs a shape: borrow the first bias that exists */
  const char *shape_of = NULL;
  for (int i = 0; i < n; i++)
    if (b[i]) shape_of = b[i];
  const st_entry *e = g_hash_table_lookup(c->hf, shape_of);
  snprintf(a, sizeof a, "%s/bias", canon);
  long dims[1] = {0};
  vs_src_piece pieces[3];
  for (int i = 0; i < n; i++) {
    const st_entry *bi = b[i] ? g_hash_table_lookup(c->hf, b[i]) : e;
    dims[0] += bi->dims[0];
    pieces[i] = (vs_src_piece){b[i] ? bi->offset : -1, bi->nbytes};
  }
  vs_src_tensor *t = vs_src_add(c->src, a, e->dtype, 1, dims);
  t->n_pieces = n;
  memcpy(t->pieces, pieces, sizeof(vs_src_piece) * n);
}

static int count_layers(GHashTable *hf, const char *stack) {
  int n = 0;
  for (;; n++) {
    char name[96];
    snprintf(name, sizeof name, "%s.layers.%d.fc1.weight", stack, n);
    if (!g_hash_table_contains(hf, name)) return n;
  }
}

static void map_names(map_ctx *c) {
  static const char *const qkv[] = {"q", "k", "v"}, *const kv[] = {"k", "v"};
  char canon[128], hf[128];
  add_linear(c, "encoder/conv1", "encoder.conv1");
  add_linear(c, "encoder/conv2", "encoder.conv2");
  add1(c, "encoder/position_encodings/encodings", "encoder.embed_positions.weight");
  int ne = count_layers(c->hf, "encoder"), nd = count_layers(c->hf, "decoder");
  for (int i = 0; i < ne; i++) {
#define L(cn, hn)                                                                                  \
  snprintf(canon, sizeof canon, "encoder/layer_%d/%s", i, cn),                                     \
      snprintf(hf, sizeof hf, "encoder.layers.%d.%s", i, hn)
    L("self_attention/layer_norm", "self_attn_layer_norm");
    add_norm(c, canon, hf);
    L("self_attention/linear_0", "self_attn");
    add_fused(c, canon, hf, qkv, 3);
    L("self_attention/linear_1", "self_attn.out_proj");
    add_linear(c, canon, hf);
    L("ffn/layer_norm", "final_layer_norm");
    add_norm(c, canon, hf);
    L("ffn/linear_0", "fc1");
    add_linear(c, canon, hf);
    L("ffn/linear_1", "fc2");
    add_linear(c, canon, hf);
#undef L
  }
  add_norm(c, "encoder/layer_norm", "encoder.layer_norm");
  add1(c, "decoder/embeddings/weight", "decoder.embed_tokens.weight");
  add1(c, "decoder/position_encodings/encodings", "decoder.embed_positions.weight");
  for (int i = 0; i < nd; i++) {
#define L(cn, hn)                                                                                  \
  snprintf(canon, sizeof canon, "decoder/layer_%d/%s", i, cn),                                     \
      snprintf(hf, sizeof hf, "decoder.layers.%d.%s", i, hn)
    L("self_attention/layer_norm", "self_attn_layer_norm");
    add_norm(c, canon, hf);
    L("self_attention/linear_0", "self_attn");
    add_fused(c, canon, hf, qkv, 3);
    L("self_attention/linear_1", "self_attn.out_proj");
    add_linear(c, canon, hf);
    L("attention/layer_norm", "encoder_attn_layer_norm");
    add_norm(c, canon, hf);
    L("attention/linear_0", "encoder_attn.q_proj");
    add_linear(c, canon, hf);
    L("attention/linear_1", "encoder_attn");
    add_fused(c, canon, hf, kv, 2);
    L("attention/linear_2", "encoder_attn.out_proj");
    add_linear(c, canon, hf);
    L("ffn/layer_norm", "final_layer_norm");
    add_norm(c, canon, hf);
    L("ffn/linear_0", "fc1");
    add_linear(c, canon, hf);
    L("ffn/linear_1", "fc2");
    add_linear(c, canon, hf);
#undef L
  }
  add_norm(c, "decoder/layer_norm", "decoder.layer_norm");
  /* proj_out is tied to embed_tokens in every Whisper; keep it only if it really differs */
  const st_entry *po = g_hash_table_lookup(c->hf, "proj_out.weight");
  const st_entry *et = g_hash_table_lookup(c->hf, "decoder.embed_tokens.weight");
  if (c->ok && po && et && po->offset != et->offset)
    add1(c, "decoder/projection/weight", "proj_out.weight");
}

static int config_int(JsonObject *o, const char *key) {
  if (!o || !json_object_has_member(o, key)) return 0;
  JsonNode *n = json_object_get_member(o, key);
  return JSON_NODE_HOLDS_VALUE(n) ? (int)json_node_get_int(n) : 0;
}

vs_src *vs_safetensors_open(const char *dir, GError **err) {
  char *path = g_build_filename(dir, "model.safetensors", NULL);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot open: %s", path, g_strerror(errno));
    g_free(path);
    return NULL;
  }
  struct stat st;
  fstat(fd, &st);
  uint8_t lenb[8];
  char *header = NULL;
  JsonParser *parser = NULL;
  GHashTable *hf = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  vs_src *src = NULL;
  uint64_t hlen = 0;
  if (pread(fd, lenb, 8, 0) != 8) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: truncated safetensors file (%lld bytes)", path,
                (long long)st.st_size);
    goto out;
  }
  for (int i = 7; i >= 0; i--)
    hlen = hlen << 8 | lenb[i];
  if (hlen < 2 || hlen > 100u * 1024 * 1024 || 8 + hlen > (uint64_t)st.st_size) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                "%s: not a safetensors file or truncated: header length %llu, file %lld bytes",
                path, (unsigned long long)hlen, (long long)st.st_size);
    goto out;
  }
  header = g_malloc(hlen + 1);
  if (pread(fd, header, hlen, 8) != (ssize_t)hlen) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot read the header: %s", path,
                g_strerror(errno));
    goto out;
  }
  header[hlen] = '\0';
  parser = json_parser_new();
  GError *local = NULL;
  if (!json_parser_load_from_data(parser, header, (gssize)hlen, &local) ||
      !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: safetensors header is not a JSON object%s%s",
                path, local ? ": " : "", local ? local->message : "");
    g_clear_error(&local);
    goto out;
  }
  JsonObject *ho = json_node_get_object(json_parser_get_root(parser));
  off_t data_start = 8 + (off_t)hlen;
  GList *members = json_object_get_members(ho);
  for (GList *l = members; l; l = l->next) {
    const char *name = l->data;
    if (!strcmp(name, "__metadata__")) continue;
    JsonObject *e = json_object_get_object_member(ho, name);
    JsonArray *shape =
        e && json_object_has_member(e, "shape") ? json_object_get_array_member(e, "shape") : NULL;
    JsonArray *offs = e && json_object_has_member(e, "data_offsets")
                          ? json_object_get_array_member(e, "data_offsets")
                          : NULL;
    const char *dt =
        e && json_object_has_member(e, "dtype") ? json_object_get_string_member(e, "dtype") : NULL;
    st_entry *se = g_new0(st_entry, 1);
    bool ok = shape && offs && dt && json_array_get_length(offs) == 2 &&
              json_array_get_length(shape) <= 4;
    if (ok && !parse_dtype(dt, &se->dtype)) {
      g_set_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED, "%s: tensor %s: dtype %s is not supported",
                  path, name, dt);
      g_free(se);
      g_list_free(members);
      goto out;
    }
    long numel = 1;
    if (ok) {
      se->rank = (int)json_array_get_length(shape);
      for (int d = 0; d < se->rank; d++) {
        se->dims[d] = (long)json_array_get_int_element(shape, d);
        numel *= se->dims[d];
      }
      gint64 b = json_array_get_int_element(offs, 0), en = json_array_get_int_element(offs, 1);
      se->offset = data_start + b;
      se->nbytes = (size_t)(en - b);
      ok = b >= 0 && en >= b && (size_t)numel * vs_dtype_size(se->dtype) == se->nbytes;
      if (ok && data_start + en > st.st_size) {
        g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                    "%s: truncated safetensors file: tensor %s ends at byte %lld, file has %lld",
                    path, name, (long long)(data_start + en), (long long)st.st_size);
        g_free(se);
        g_list_free(members);
        goto out;
      }
    }
    if (!ok) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s: tensor %s: bad header entry (dtype, shape or data_offsets)", path, name);
      g_free(se);
      g_list_free(members);
      goto out;
    }
    const char *key = g_str_has_prefix(name, "model.") ? name + 6 : name;
    g_hash_table_insert(hf, g_strdup(key), se);
  }
  g_list_free(members);

  src = vs_src_new(path, dir);
  src->format_desc = g_strdup("Hugging Face transformers Whisper, safetensors");
  map_ctx c = {src, hf, err, true};
  map_names(&c);
  if (!c.ok) {
    vs_src_free(src);
    src = NULL;
    goto out;
  }
  /* head counts are not visible in shapes: config.json states them */
  char *cfg_path = g_build_filename(dir, "config.json", NULL);
  JsonParser *cp = json_parser_new();
  if (json_parser_load_from_file(cp, cfg_path, NULL) &&
      JSON_NODE_HOLDS_OBJECT(json_parser_get_root(cp))) {
    JsonObject *co = json_node_get_object(json_parser_get_root(cp));
    src->enc_heads = config_int(co, "encoder_attention_heads");
    src->dec_heads = config_int(co, "decoder_attention_heads");
  }
  g_object_unref(cp);
  g_free(cfg_path);

out:
  if (parser) g_object_unref(parser);
  g_hash_table_destroy(hf);
  g_free(header);
  close(fd);
  g_free(path);
  return src;
}
