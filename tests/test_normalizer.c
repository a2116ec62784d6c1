/* Normaliser tests: hand-written cases that follow the rules of Whisper's english.py /
 * basic.py (each names the rule it exercises), then a seeded random comparison against the
 * Python reference (tests/helpers/norm_ref.py, package whisper-normalizer in the venv).
 *
 * usage: test_normalizer HELPER_PY WORKDIR
 */
#include "normalizer.h"
#include "vs_error.h"
#include "vs_test.h"

#include <json-glib/json-glib.h>
#include <string.h>
#include <sys/wait.h>

static void expect(const vs_norm *n, const char *in, const char *want) {
  char *got = vs_norm_apply(n, in);
  CHECK_MSG(!strcmp(got, want), "%s(\"%s\") = \"%s\", want \"%s\"",
            vs_norm_kind_name(vs_norm_get_kind(n)), in, got, want);
  g_free(got);
}

static void hand_cases(const char *workdir) {
  /* A two-entry map of our own: tests loading, not openai's data. */
  char *map = g_build_filename(workdir, "spelling-test.json", NULL);
  const char *json = "{\"colour\": \"color\", \"organise\": \"organize\"}";
  CHECK(g_file_set_contents(map, json, -1, NULL));
  GError *err = NULL;
  vs_norm *en = vs_norm_new(VS_NORM_ENGLISH, map, &err);
  VS_GERROR_CHECK(en, err);
  CHECK(vs_norm_spelling_map_size(en) == 2);

  /* EnglishNumberNormalizer: tens + ones add up, "and" after a multiplier is dropped */
  expect(en, "twenty five", "25");
  expect(en, "one hundred and one", "101");
  expect(en, "ten thousand dollars", "$10000");
  /* currency: following prefixers, combine_cents in postprocess, "$0.x" -> cents */
  expect(en, "$5.50", "$5.50");
  expect(en, "five dollars fifty", "$5 50");
  expect(en, "twenty five dollars and fifty cents", "$25.50");
  expect(en, "$0.50", "¢50");
  /* ordinals and plurals are yielded at once with their suffix */
  expect(en, "1st", "1st");
  expect(en, "the twenty first of may", "the 21st of may");
  expect(en, "nineteen sixties", "1960s");
  expect(en, "1990s", "1990s");
  expect(en, "ninth", "ninth"); /* english.py generates "nineth", not "ninth" */
  /* suffixers */
  expect(en, "fifty percent", "50%");
  expect(en, "ten per cent", "10%");
  /* "and a half" after a number becomes "point five"; zeros and "double" build digit strings */
  expect(en, "two and a half million", "2500000");
  expect(en, "one oh one", "101");
  expect(en, "double seven", "77");
  expect(en, "three point one four", "3.14");
  expect(en, "minus five degrees", "-5 degrees");
  /* postprocess writes a lone 1 as "one" */
  expect(en, "a one and a two", "a one and a 2");
  /* contractions, brackets, fillers, titles, commas between digits, spelling map */
  expect(en, "I won't go, he's [laughs] here", "i will not go he is here");
  expect(en, "Um, hmm, uh I think so", "i think so");
  expect(en, "(inaudible) Mr. Smith", "mister smith");
  expect(en, "we're gonna win", "we are going to win");
  expect(en, "it's 3:45pm", "it is 3 45 pm");
  expect(en, "the colour of 1,000 apples", "the color of 1000 apples");
  expect(en, "Organise it", "organize it");
  /* diacritics dropped after NFKD, ADDITIONAL_DIACRITICS mapped */
  expect(en, "Café Noël", "cafe noel");
  expect(en, "Œuvre straße", "oeuvre strasse");
  expect(en, "", "");
  vs_norm_free(en);

  /* without a map the British spelling stays, everything else still applies */
  en = vs_norm_new(VS_NORM_ENGLISH, "", &err);
  VS_GERROR_CHECK(en, err);
  expect(en, "the colour of twenty apples", "the colour of 20 apples");
  vs_norm_free(en);

  vs_norm *basic = vs_norm_new(VS_NORM_BASIC, NULL, &err);
  VS_GERROR_CHECK(basic, err);
  expect(basic, "I won't go, he's [laughs] here", "i won t go he s here");
  expect(basic, "(inaudible) Mr. Smith", " mr smith");
  expect(basic, "Café Noël", "café noël"); /* basic keeps diacritics (NFKC) */
  expect(basic, "$5.50", " 5 50");
  vs_norm_free(basic);

  vs_norm *none = vs_norm_new(VS_NORM_NONE, NULL, &err);
  expect(none, "Keep  As, Is", "Keep  As, Is");
  vs_norm_free(none);

  /* bad maps are errors that name the file */
  char *bad = g_build_filename(workdir, "spelling-bad.json", NULL);
  CHECK(g_file_set_contents(bad, "[1, 2]", -1, NULL));
  vs_norm *x = vs_norm_new(VS_NORM_ENGLISH, bad, &err);
  CHECK(x == NULL && err && strstr(err->message, bad));
  g_clear_error(&err);
  CHECK(g_file_set_contents(bad, "{\"a\": 3}", -1, NULL));
  x = vs_norm_new(VS_NORM_ENGLISH, bad, &err);
  CHECK(x == NULL && err && strstr(err->message, bad) && strstr(err->message, "\"a\""));
  g_clear_error(&err);
  x = vs_norm_new(VS_NORM_ENGLISH, "/nonexistent/english.json", &err);
  CHECK(x == NULL && err && strstr(err->message, "/nonexistent/english.json"));
  g_clear_error(&err);
  CHECK(vs_norm_kind_from_name("english") == VS_NORM_ENGLISH);
  CHECK(vs_norm_kind_from_name("bogus") == -1);
  g_free(bad);
  g_free(map);
}

/* Seeded random phrases over a vocabulary that stresses the number rules. */
static const char *const VOCAB[] = {
    "one",        "two",       "three",    "five",     "seven",   "nine",      "ten",
    "eleven",     "twelve",    "fifteen",  "nineteen", "twenty",  "thirty",    "forty",
    "ninety",     "hundred",   "thousand", "million",  "billion", "decillion", "hundreds",
    "thousandth", "millions",  "first",    "second",   "third",   "fifth",     "twelfth",
    "nineteenth", "twentieth", "sixties",  "ones",     "sixes",   "oh",        "zero",
    "o",          "and",       "a",        "half",     "double",  "triple",    "point",
    "minus",      "plus",      "dollars",  "dollar",   "cents",   "pounds",    "euro",
    "per",        "cent",      "percent",  "the",      "cat",     "of",        "1",
    "2",          "10",        "1.5",      "0",        "007",     "$5",        "$0.05",
    "£3",         "€20",       "-4",       "+7",       "1,000",   "3.14",      "1.2.3",
    "5.",         "5.00",      "1st",      "22nd",     "1990s",   "10%",       "¢7",
    "x1",         "a1b",       "won't",    "it's",     "I'd",     "they've",   "Mr.",
    "St.",        "[noise]",   "(laughs)", "um",       "uh",      "hmm",       "colour",
    "organise",   "Café",      "naïve",    "straße",   "co-op",   "e.g.",      "U.S.A.",
    "...",        "—",         "½",        "²",        "٣",
};

static guint32 rng_state = 12345u;
static guint32 rng(void) {
  rng_state = rng_state * 1664525u + 1013904223u;
  return rng_state >> 8;
}

static void compare_with_python(const char *helper, const char *workdir) {
  const char *cache = g_getenv("VOXSHARD_CACHE");
  char *python = cache && *cache ? g_build_filename(cache, "venv", "bin", "python", NULL)
                                 : g_build_filename(g_get_home_dir(), ".cache", "voxshard", "venv",
                                                    "bin", "python", NULL);
  if (!g_file_test(python, G_FILE_TEST_IS_EXECUTABLE)) {
    printf("python reference: skipped (no %s)\n", python);
    g_free(python);
    return;
  }
  GPtrArray *cases = g_ptr_array_new_with_free_func(g_free);
  const char *fixed[] = {"twenty five dollars and fifty cents",
                         "one hundred and one",
                         "I won't go, he's [laughs] here",
                         "the colour of 1,000 apples",
                         "two and a half million",
                         "three and a half",
                         "and a half",
                         "a one and a two",
                         "nineteen oh five",
                         "one two three four",
                         "one million two hundred thousand and five",
                         "point five",
                         "$20 million",
                         "five hundred and fifty five thousand"};
  for (size_t i = 0; i < G_N_ELEMENTS(fixed); i++)
    g_ptr_array_add(cases, g_strdup(fixed[i]));
  for (int i = 0; i < 3000; i++) {
    GString *s = g_string_new(NULL);
    int n = 1 + (int)(rng() % 8);
    for (int k = 0; k < n; k++) {
      if (k) g_string_append_c(s, rng() % 10 == 0 ? ',' : ' ');
      if (k && rng() % 12 == 0) g_string_append_c(s, ' ');
      g_string_append(s, VOCAB[rng() % G_N_ELEMENTS(VOCAB)]);
    }
    g_ptr_array_add(cases, g_string_free(s, FALSE));
  }
  JsonBuilder *b = json_builder_new();
  json_builder_begin_array(b);
  for (guint i = 0; i < cases->len; i++)
    json_builder_add_string_value(b, cases->pdata[i]);
  json_builder_end_array(b);
  JsonGenerator *gen = json_generator_new();
  JsonNode *root = json_builder_get_root(b);
  json_generator_set_root(gen, root);
  char *in_path = g_build_filename(workdir, "norm-cases.json", NULL);
  char *out_path = g_build_filename(workdir, "norm-ref.json", NULL);
  CHECK(json_generator_to_file(gen, in_path, NULL));
  json_node_unref(root);
  g_object_unref(gen);
  g_object_unref(b);

  char *argv[] = {python, (char *)helper, in_path, out_path, NULL};
  int status = 0;
  GError *err = NULL;
  CHECK(g_spawn_sync(NULL, argv, NULL, 0, NULL, NULL, NULL, NULL, &status, &err));
  if (g_spawn_check_wait_status(status, NULL) == FALSE && WIFEXITED(status) &&
      WEXITSTATUS(status) == 77) {
    printf("python reference: skipped (whisper-normalizer not installed in the venv)\n");
  } else {
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "norm_ref.py failed");
    JsonParser *p = json_parser_new();
    VS_GERROR_CHECK(json_parser_load_from_file(p, out_path, &err), err);
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    const char *map = json_object_get_string_member(o, "map");
    JsonArray *en_ref = json_object_get_array_member(o, "english");
    JsonArray *ba_ref = json_object_get_array_member(o, "basic");
    vs_norm *en = vs_norm_new(VS_NORM_ENGLISH, map, &err);
    VS_GERROR_CHECK(en, err);
    vs_norm *ba = vs_norm_new(VS_NORM_BASIC, NULL, &err);
    int mism = 0;
    for (guint i = 0; i < cases->len; i++) {
      char *e = vs_norm_apply(en, cases->pdata[i]), *bb = vs_norm_apply(ba, cases->pdata[i]);
      const char *we = json_array_get_string_element(en_ref, i);
      const char *wb = json_array_get_string_element(ba_ref, i);
      if (strcmp(e, we) && mism++ < 20)
        fprintf(stderr, "english(\"%s\"): got \"%s\", python \"%s\"\n", (char *)cases->pdata[i], e,
                we);
      if (strcmp(bb, wb) && mism++ < 20)
        fprintf(stderr, "basic(\"%s\"): got \"%s\", python \"%s\"\n", (char *)cases->pdata[i], bb,
                wb);
      g_free(e);
      g_free(bb);
    }
    CHECK_MSG(mism == 0, "%d of %u cases differ from the Python reference", mism, cases->len);
    printf("python reference: %u cases compared, map of %u entries\n", cases->len,
           vs_norm_spelling_map_size(en));
    vs_norm_free(en);
    vs_norm_free(ba);
    g_object_unref(p);
  }
  g_free(in_path);
  g_free(out_path);
  g_free(python);
  g_ptr_array_free(cases, TRUE);
}

int main(int argc, char **argv) {
  if (argc < 3) VS_DIE("usage: test_normalizer HELPER_PY WORKDIR");
  GError *err = NULL;
  VS_GERROR_CHECK(g_mkdir_with_parents(argv[2], 0775) == 0, err);
  hand_cases(argv[2]);
  compare_with_python(argv[1], argv[2]);
  return vs_test_finish();
}
