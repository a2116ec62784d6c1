/* `voxshard convert`: reads a source folder tensor by tensor and writes the HDF5 model file of
 * docs/model-file.md. Every tensor the hyper-parameters require is checked (present, shape)
 * before anything is written, so a bad source fails fast and never leaves a file behind. */
#include "convert.h"
#include "vad.h"

#include "config.h"
#include "fsutil.h"
#include "log.h"
#include "model_source.h"
#include "tokenizer.h"
#include "vs_build_config.h"
#include "vs_error.h"

#include <hdf5.h>
#include <json-glib/json-glib.h>
#include <time.h>
#include <unistd.h>

typedef enum { OUT_KEEP, OUT_F32, OUT_F16 } out_dtype;

typedef struct {
  const vs_src *src;
  GError **err;
  bool ok;
} check_ctx;

static void check_one(const char *name, int rank, const long *dims, void *user) {
  check_ctx *c = user;
  if (!c->ok) return;
  const vs_src_tensor *t = vs_src_find(c->src, name);
  if (!t) {
    g_set_error(c->err, VS_ERROR, VS_ERROR_MODEL, "%s: tensor %s is missing", c->src->path, name);
    c->ok = false;
    return;
  }
  bool same = t->rank == rank;
  for (int i = 0; same && i < rank; i++)
    same = t->dims[i] == dims[i];
  if (!same) {
    char *want = vs_h5_shape_str(rank, dims), *got = vs_h5_shape_str(t->rank, t->dims);
    g_set_error(c->err, VS_ERROR, VS_ERROR_MODEL, "%s: tensor %s has shape %s, expected %s",
                c->src->path, name, got, want);
    g_free(want);
    g_free(got);
    c->ok = false;
  }
}

/* ---- decoding settings from the source's JSON files ---- */

static GArray *json_int_array(JsonObject *o, const char *key) {
  if (!o || !json_object_has_member(o, key)) return NULL;
  JsonNode *n = json_object_get_member(o, key);
  if (!JSON_NODE_HOLDS_ARRAY(n)) return NULL;
  JsonArray *a = json_node_get_array(n);
  GArray *out = g_array_new(FALSE, FALSE, sizeof(int));
  for (guint i = 0; i < json_array_get_length(a); i++) {
    JsonNode *e = json_array_get_element(a, i);
    if (JSON_NODE_HOLDS_ARRAY(e)) { /* alignment_heads: [[layer, head], ...] flattened */
      JsonArray *p = json_node_get_array(e);
      for (guint j = 0; j < json_array_get_length(p); j++) {
        int v = (int)json_array_get_int_element(p, j);
        g_array_append_val(out, v);
      }
    } else {
      int v = (int)json_node_get_int(e);
      g_array_append_val(out, v);
    }
  }
  return out;
}

/* Parses an optional JSON file; absent is fine (NULL, no error), broken is an error. */
static JsonParser *parse_optional_json(const char *dir, const char *file, GError **err) {
  char *path = g_build_filename(dir, file, NULL);
  if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
    g_free(path);
    return NULL;
  }
  JsonParser *p = json_parser_new();
  GError *local = NULL;
  if (!json_parser_load_from_file(p, path, &local) ||
      !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: not a JSON object: %s", path,
                local ? local->message : "root is not an object");
    g_clear_error(&local);
    g_object_unref(p);
    g_free(path);
    return NULL;
  }
  g_free(path);
  return p;
}

typedef struct {
  GArray *suppress, *suppress_begin, *lang_ids, *alignment_heads;
  const char *origin; /* which file they came from */
} decoding_settings;

static bool read_decoding(const vs_src *src, bool hf, const vs_tokenizer *tok,
                          decoding_settings *ds, GError **err) {
  GError *local = NULL;
  JsonParser *cfg = parse_optional_json(src->dir, "config.json", &local);
  if (local) {
    g_propagate_error(err, local);
    return false;
  }
  JsonParser *gen = hf ? parse_optional_json(src->dir, "generation_config.json", &local) : NULL;
  if (local) {
    if (cfg) g_object_unref(cfg);
    g_propagate_error(err, local);
    return false;
  }
  JsonObject *co = cfg ? json_node_get_object(json_parser_get_root(cfg)) : NULL;
  JsonObject *go = gen ? json_node_get_object(json_parser_get_root(gen)) : NULL;
  if (hf) {
    /* transformers keeps these in config.json (older) or generation_config.json (newer) */
    ds->suppress = json_int_array(go, "suppress_tokens");
    if (!ds->suppress) ds->suppress = json_int_array(co, "suppress_tokens");
    ds->suppress_begin = json_int_array(go, "begin_suppress_tokens");
    if (!ds->suppress_begin) ds->suppress_begin = json_int_array(co, "begin_suppress_tokens");
    ds->alignment_heads = json_int_array(go, "alignment_heads");
    ds->origin = go ? "generation_config.json" : "config.json";
  } else {
    ds->suppress = json_int_array(co, "suppress_ids");
    ds->suppress_begin = json_int_array(co, "suppress_ids_begin");
    ds->lang_ids = json_int_array(co, "lang_ids");
    ds->alignment_heads = json_int_array(co, "alignment_heads");
    ds->origin = "config.json";
  }
  if (!ds->lang_ids) { /* the tokenizer knows the language tokens */
    const vs_special_tokens *sp = vs_tokenizer_specials(tok);
    ds->lang_ids = g_array_new(FALSE, FALSE, sizeof(int));
    for (int i = 0; i < sp->n_langs; i++) {
      int id = sp->lang_first + i;
      g_array_append_val(ds->lang_ids, id);
    }
  }
  if (!ds->suppress) ds->suppress = g_array_new(FALSE, FALSE, sizeof(int));
  if (!ds->suppress_begin) ds->suppress_begin = g_array_new(FALSE, FALSE, sizeof(int));
  if (!ds->alignment_heads) ds->alignment_heads = g_array_new(FALSE, FALSE, sizeof(int));
  if (cfg) g_object_unref(cfg);
  if (gen) g_object_unref(gen);
  return true;
}

static void decoding_clear(decoding_settings *ds) {
  if (ds->suppress) g_array_free(ds->suppress, TRUE);
  if (ds->suppress_begin) g_array_free(ds->suppress_begin, TRUE);
  if (ds->lang_ids) g_array_free(ds->lang_ids, TRUE);
  if (ds->alignment_heads) g_array_free(ds->alignment_heads, TRUE);
}

/* ---- writing ---- */

static bool write_tensor(hid_t file, const char *out_path, const vs_src *src,
                         const vs_src_tensor *t, out_dtype want, GError **err) {
  size_t n = (size_t)vs_src_tensor_numel(t);
  void *buf = g_try_malloc(vs_src_tensor_nbytes(t) ? vs_src_tensor_nbytes(t) : 1);
  if (!buf)
    VS_FAIL(err, VS_ERROR_IO, false, "%s: tensor %s: out of memory (%zu bytes)", src->path, t->name,
            vs_src_tensor_nbytes(t));
  if (!vs_src_read(src, t, buf, err)) {
    g_free(buf);
    return false;
  }
  vs_dtype store = t->dtype;
  const char *source_dtype = vs_dtype_name(t->dtype);
  if (t->dtype == VS_DT_I8 && want != OUT_KEEP) {
    const vs_src_tensor *st = vs_src_find(src, t->scale_name);
    float *scale = g_new(float, st->dims[0]);
    float *f = g_try_new(float, n);
    bool ok = f && vs_src_read(src, st, scale, err);
    if (!f)
      g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: tensor %s: out of memory", src->path, t->name);
    if (ok) {
      size_t row = n / (size_t)t->dims[0];
      for (size_t i = 0; i < n; i++)
        f[i] = ((int8_t *)buf)[i] / scale[i / row];
    }
    g_free(scale);
    g_free(buf);
    if (!ok) {
      g_free(f);
      return false;
    }
    buf = f;
    store = VS_DT_F32;
  } else if (t->dtype == VS_DT_BF16 || ((t->dtype == VS_DT_F16) && want == OUT_F32)) {
    float *f = g_try_new(float, n);
    if (!f) {
      g_free(buf);
      VS_FAIL(err, VS_ERROR_IO, false, "%s: tensor %s: out of memory", src->path, t->name);
    }
    vs_convert_to_f32(t->dtype, buf, f, n);
    g_free(buf);
    buf = f;
    store = VS_DT_F32;
  }
  if (store == VS_DT_F32 && want == OUT_F16 && !g_str_has_suffix(t->name, "_scale")) {
    uint16_t *h = (uint16_t *)buf; /* in place: the halves trail the floats they come from */
    for (size_t i = 0; i < n; i++)
      h[i] = vs_f32_to_f16(((float *)buf)[i]);
    store = VS_DT_F16;
  }
  if (store != VS_DT_F32 && store != VS_DT_F16 && store != VS_DT_I8) {
    g_free(buf);
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "%s: tensor %s: weights of dtype %s are not supported", src->path, t->name,
            vs_dtype_name(store));
  }
  char *dset = g_strconcat("/weights/", t->name, NULL);
  bool ok = vs_h5_write_array(file, out_path, dset, store, t->rank, t->dims, buf, err);
  if (ok) {
    ok = vs_h5_attr_str(file, dset, "source_dtype", source_dtype, out_path, err);
    if (ok && store == VS_DT_I8) {
      char *scale_dset = g_strconcat("/weights/", t->scale_name, NULL);
      ok = vs_h5_attr_str(file, dset, "scale", scale_dset, out_path, err) &&
           vs_h5_attr_str(file, dset, "dequantize", "w[r, ...] = q[r, ...] / scale[r]", out_path,
                          err);
      g_free(scale_dset);
    }
  }
  g_free(dset);
  g_free(buf);
  return ok;
}

static char *iso_time_now(void) {
  GDateTime *now = g_date_time_new_now_utc();
  char *s = g_date_time_format(now, "%Y-%m-%dT%H:%M:%SZ");
  g_date_time_unref(now);
  return s;
}

static bool write_model(hid_t f, const char *out_path, const vs_src *src, const char *src_kind,
                        const vs_whisper_hparams *hp, const char *tok_json, size_t tok_len,
                        const decoding_settings *ds, out_dtype want, const char *dtype_name,
                        GError **err) {
  char *converter = g_strdup_printf("voxshard convert %s", VS_VERSION);
  char *created = iso_time_now();
  char *abs_src = g_canonicalize_filename(src->path, NULL);
  bool ok = vs_h5_attr_str(f, "/", "format", VS_MODEL_FORMAT, out_path, err) &&
            vs_h5_attr_int(f, "/", "format_version", VS_MODEL_FORMAT_VERSION, out_path, err) &&
            vs_h5_attr_str(f, "/", "architecture", "whisper", out_path, err) &&
            vs_h5_attr_str(f, "/", "content", "model", out_path, err) &&
            vs_h5_attr_str(f, "/", "converter", converter, out_path, err) &&
            vs_h5_attr_str(f, "/", "created", created, out_path, err) &&
            vs_h5_attr_str(f, "/", "source_kind", src_kind, out_path, err) &&
            vs_h5_attr_str(f, "/", "source_format", src->format_desc, out_path, err) &&
            vs_h5_attr_str(f, "/", "source_path", abs_src, out_path, err) &&
            vs_h5_attr_str(f, "/", "weights_dtype_requested", dtype_name, out_path, err);
  g_free(converter);
  g_free(created);
  g_free(abs_src);
  if (!ok) return false;

  if (!vs_h5_group(f, "/hparams", out_path, err)) return false;
  const struct {
    const char *key;
    int v;
  } hps[] = {{"n_mels", hp->n_mels},
             {"n_audio_ctx", hp->n_audio_ctx},
             {"n_audio_state", hp->n_audio_state},
             {"n_audio_head", hp->n_audio_head},
             {"n_audio_layer", hp->n_audio_layer},
             {"n_text_ctx", hp->n_text_ctx},
             {"n_text_state", hp->n_text_state},
             {"n_text_head", hp->n_text_head},
             {"n_text_layer", hp->n_text_layer},
             {"n_vocab", hp->n_vocab}};
  for (size_t i = 0; i < G_N_ELEMENTS(hps); i++)
    if (!vs_h5_attr_int(f, "/hparams", hps[i].key, hps[i].v, out_path, err)) return false;
  if (!vs_h5_attr_str(f, "/hparams", "description",
                      "Whisper sizes: mel bins, audio frames after the conv stem (20 ms each), "
                      "widths, heads, layers, text positions, vocabulary size",
                      out_path, err))
    return false;

  if (!vs_h5_group(f, "/tokenizer", out_path, err)) return false;
  long tl = (long)tok_len;
  if (!vs_h5_write_array(f, out_path, "/tokenizer/tokenizer.json", VS_DT_I8, 1, &tl, tok_json,
                         err) ||
      !vs_h5_attr_str(f, "/tokenizer/tokenizer.json", "content_type",
                      "application/json; charset=utf-8 (Hugging Face tokenizers format)", out_path,
                      err))
    return false;

  if (!vs_h5_group(f, "/decoding", out_path, err) ||
      !vs_h5_attr_str(f, "/decoding", "source", ds->origin, out_path, err))
    return false;
  const struct {
    const char *name;
    GArray *a;
    int cols;
    const char *desc;
  } arrs[] = {
      {"suppress_ids", ds->suppress, 1, "token ids suppressed at every decoding step"},
      {"suppress_ids_begin", ds->suppress_begin, 1, "token ids suppressed at the first step"},
      {"lang_ids", ds->lang_ids, 1, "language token ids"},
      {"alignment_heads", ds->alignment_heads, 2,
       "[n, 2] (decoder layer, head) pairs whose cross-attention aligns words to audio"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(arrs); i++) {
    char *path = g_strconcat("/decoding/", arrs[i].name, NULL);
    long dims[2] = {(long)arrs[i].a->len / arrs[i].cols, arrs[i].cols};
    ok =
        vs_h5_write_array(f, out_path, path, VS_DT_I32, arrs[i].cols, dims, arrs[i].a->data, err) &&
        vs_h5_attr_str(f, path, "description", arrs[i].desc, out_path, err);
    g_free(path);
    if (!ok) return false;
  }

  if (!vs_h5_group(f, "/weights", out_path, err) ||
      !vs_h5_attr_str(f, "/weights", "naming",
                      "CTranslate2 Whisper names; linear weights [out, in], conv weights "
                      "[out, in, k], fused QKV in self_attention/linear_0, fused KV in "
                      "attention/linear_1; the output projection is tied to "
                      "decoder/embeddings/weight",
                      out_path, err))
    return false;
  for (guint i = 0; i < src->tensors->len; i++) {
    const vs_src_tensor *t = src->tensors->pdata[i];
    /* int8 scales go with their weight when kept, and vanish when dequantised */
    if (g_str_has_suffix(t->name, "_scale") && want != OUT_KEEP) continue;
    if (!write_tensor(f, out_path, src, t, want, err)) return false;
  }
  return true;
}

bool vs_model_convert(const char *src_dir, const char *out_path, const char *from,
                      const char *dtype, GError **err) {
  out_dtype want = OUT_KEEP;
  if (!dtype || !strcmp(dtype, "keep"))
    want = OUT_KEEP;
  else if (!strcmp(dtype, "f32"))
    want = OUT_F32;
  else if (!strcmp(dtype, "f16"))
    want = OUT_F16;
  else
    VS_FAIL(err, VS_ERROR_CONFIG, false, "convert: unknown --dtype '%s' (keep|f32|f16)", dtype);
  if (!from) from = "auto";
  bool hf;
  if (!strcmp(from, "auto")) {
    char *bin = g_build_filename(src_dir, "model.bin", NULL);
    char *st = g_build_filename(src_dir, "model.safetensors", NULL);
    bool have_bin = vs_fs_exists(bin), have_st = vs_fs_exists(st);
    g_free(bin);
    g_free(st);
    if (!have_bin && !have_st)
      VS_FAIL(err, VS_ERROR_IO, false,
              "%s: neither model.bin (CTranslate2) nor model.safetensors (Hugging Face) found",
              src_dir);
    hf = !have_bin;
  } else if (!strcmp(from, "ct2")) {
    hf = false;
  } else if (!strcmp(from, "hf")) {
    hf = true;
  } else {
    VS_FAIL(err, VS_ERROR_CONFIG, false, "convert: unknown --from '%s' (auto|ct2|hf)", from);
  }

  vs_src *src = hf ? vs_safetensors_open(src_dir, err) : vs_ct2_open(src_dir, err);
  if (!src) return false;
  vs_whisper_hparams hp;
  bool ok = vs_src_hparams(src, &hp, err);
  if (ok) {
    check_ctx c = {src, err, true};
    vs_model_expected_tensors(&hp, check_one, &c);
    ok = c.ok;
  }

  char *tok_path = g_build_filename(src_dir, "tokenizer.json", NULL);
  char *tok_json = NULL;
  gsize tok_len = 0;
  vs_tokenizer *tok = NULL;
  decoding_settings ds = {0};
  if (ok) {
    GError *local = NULL;
    if (!g_file_get_contents(tok_path, &tok_json, &tok_len, &local)) {
      g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot read the tokenizer: %s", tok_path,
                  local->message);
      g_error_free(local);
      ok = false;
    }
  }
  if (ok) ok = (tok = vs_tokenizer_new_from_json(tok_json, tok_len, tok_path, err)) != NULL;
  if (ok && vs_tokenizer_specials(tok)->n_vocab != hp.n_vocab) {
    g_set_error(err, VS_ERROR, VS_ERROR_MODEL,
                "%s: the tokenizer has %d tokens (with timestamps) but %s has %d embeddings",
                tok_path, vs_tokenizer_specials(tok)->n_vocab, src->path, hp.n_vocab);
    ok = false;
  }
  if (ok) ok = read_decoding(src, hf, tok, &ds, err);

  char *tmp = NULL;
  if (ok) {
    tmp = vs_fs_temp_path(out_path);
    vs_h5_quiet q = vs_h5_quiet_begin();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
      g_set_error(err, VS_ERROR, VS_ERROR_HDF5, "%s: cannot create HDF5 file: %s", tmp,
                  vs_h5_last_error());
      ok = false;
    } else {
      ok = write_model(f, tmp, src, hf ? "huggingface-safetensors" : "ctranslate2", &hp, tok_json,
                       tok_len, &ds, want, dtype ? dtype : "keep", err);
      if (H5Fclose(f) < 0 && ok) {
        g_set_error(err, VS_ERROR, VS_ERROR_HDF5, "%s: closing the HDF5 file failed: %s", tmp,
                    vs_h5_last_error());
        ok = false;
      }
    }
    vs_h5_quiet_end(q);
    if (ok) ok = vs_fs_publish(tmp, out_path, err);
    if (!ok) unlink(tmp);
  }
  if (ok)
    vs_info("convert: %u tensors, %d+%d layers, d=%d, vocab %d -> %s", src->tensors->len,
            hp.n_audio_layer, hp.n_text_layer, hp.n_audio_state, hp.n_vocab, out_path);
  g_free(tmp);
  decoding_clear(&ds);
  vs_tokenizer_free(tok);
  g_free(tok_json);
  g_free(tok_path);
  vs_src_free(src);
  return ok;
}

static const vs_opt_spec convert_opts[] = {
    {"from", VS_OPT_CHOICE, "auto",
     "source format: auto (a .onnx file: Silero VAD; a folder: model.bin, else model.safetensors)",
     "auto|ct2|hf|silero-vad"},
    {"dtype", VS_OPT_CHOICE, "keep",
     "stored weight type: keep (as the source; bf16 becomes f32), f32, f16", "keep|f32|f16"},
};

/* The VAD ships as ONNX; it becomes an HDF5 file too, so the product needs no ONNX runtime. */
static bool convert_any(const char *src, const char *out, const char *from, const char *dtype,
                        GError **err) {
  bool vad = !strcmp(from, "silero-vad") ||
             (!strcmp(from, "auto") && g_str_has_suffix(src, ".onnx") &&
              g_file_test(src, G_FILE_TEST_IS_REGULAR));
  if (vad) return vs_vad_convert_onnx(src, out, err);
  return vs_model_convert(src, out, from, dtype, err);
}

int vs_cmd_convert(int argc, char **argv) {
  vs_config *cfg = vs_config_new("convert", convert_opts, G_N_ELEMENTS(convert_opts));
  GError *err = NULL;
  bool help = false;
  int rc = 0;
  if (!vs_config_parse_args(cfg, argc, argv, &help, &err)) {
    fprintf(stderr, "voxshard convert: %s\n", err->message);
    rc = 2;
  } else if (help) {
    vs_config_print_help(cfg, "voxshard convert [options] SRC_DIR|VAD.onnx OUT.h5",
                         "Converts a faster-whisper (CTranslate2) or Hugging Face Whisper folder, "
                         "or Silero VAD v6 ONNX weights, into voxshard's HDF5 model files.");
  } else if (vs_config_n_positionals(cfg) != 2) {
    fprintf(stderr, "usage: voxshard convert [--from=auto|ct2|hf|silero-vad] [--dtype=keep|f32|f16] "
                    "SRC_DIR|VAD.onnx OUT.h5\n");
    rc = 2;
  } else if (!convert_any(vs_config_positional(cfg, 0), vs_config_positional(cfg, 1),
                          vs_config_get_string(cfg, "from"), vs_config_get_string(cfg, "dtype"),
                          &err)) {
    fprintf(stderr, "voxshard convert: %s\n", err->message);
    vs_error("convert failed: %s", vs_error_code_name(err->code));
    rc = 1;
  }
  g_clear_error(&err);
  vs_config_free(cfg);
  return rc;
}
