/* The batched mode against faster-whisper's BatchedInferencePipeline (tests/helpers/fw_batched.py)
 * on the real tiny.en and Silero VAD v6, fp32:
 *   - per file, the VAD chunks (one segment each) and their times on the original timeline
 *     equal faster-whisper's segments (count and times exact, rounding included);
 *   - the windows of ALL files are decoded together, interleaved across files in batches of 8,
 *     and the tokens of >= 90% of the windows equal faster-whisper's (which batches one file at
 *     a time): a window's result does not depend on the windows beside it;
 *   - the prompt: [sot, notimestamps] on an English-only model, an initial prompt behind
 *     <|startofprev|> and cut to its last n_text_ctx/2 - 1 tokens;
 *   - faster-whisper's batched search settings: temperature 0 only, no thresholds.
 *
 * Usage: test_batched REFDIR   (REFDIR/batched.json from the helper)
 * Models: $VOXSHARD_MODEL_H5 (else $VOXSHARD_CACHE/models/tiny.en.h5) and $VOXSHARD_VAD_H5 (else
 * $VOXSHARD_CACHE/models/silero_vad_v6.h5), $VOXSHARD_CACHE defaulting to ~/.cache/voxshard;
 * exits 77 when either is missing. */
#include "audio.h"
#include "batched.h"
#include "longform.h"
#include "mel.h"
#include "model.h"
#include "tokenizer.h"
#include "vad.h"
#include "vs_error.h"
#include "vs_test.h"
#include "whisper.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define BATCH 8

static char *model_file(const char *env, const char *name) {
  const char *p = g_getenv(env);
  if (p && *p) return g_strdup(p);
  const char *cache = g_getenv("VOXSHARD_CACHE");
  if (cache && *cache) return g_build_filename(cache, "models", name, NULL);
  return g_build_filename(g_get_home_dir(), ".cache", "voxshard", "models", name, NULL);
}

static void check_prompts(const vs_model *model) {
  const vs_tokenizer *tok = vs_model_tokenizer(model);
  const vs_special_tokens *sp = vs_tokenizer_specials(tok);
  const int ctx = vs_model_hparams(model)->n_text_ctx;
  GError *e = NULL;
  int n = 0;
  int *p = vs_batched_prompt(tok, "en", false, NULL, ctx, &n, &e);
  VS_GERROR_CHECK(p, e);
  CHECK(!sp->multilingual); /* the test model is tiny.en */
  CHECK(n == 2 && p[0] == sp->sot && p[1] == sp->no_timestamps);
  g_free(p);

  const char *text = "Mister Quilter and the Dashwoods.";
  size_t n_ids = 0;
  int *ids = vs_tokenizer_encode(tok, text, &n_ids);
  CHECK(ids && n_ids > 0);
  p = vs_batched_prompt(tok, "en", false, text, ctx, &n, &e);
  VS_GERROR_CHECK(p, e);
  CHECK(n == (int)n_ids + 3 && p[0] == sp->sot_prev);
  CHECK(n_ids > 0 && !memcmp(p + 1, ids, n_ids * sizeof(int)));
  CHECK(p[n - 2] == sp->sot && p[n - 1] == sp->no_timestamps);
  g_free(p);
  g_free(ids);

  /* A prompt longer than half the context keeps its tail, as faster-whisper's get_prompt. */
  GString *lng = g_string_new(NULL);
  for (int i = 0; i < 200; i++)
    g_string_append_printf(lng, "word%d ", i);
  ids = vs_tokenizer_encode(tok, lng->str, &n_ids);
  CHECK(n_ids > (size_t)(ctx / 2));
  p = vs_batched_prompt(tok, "en", false, lng->str, ctx, &n, &e);
  VS_GERROR_CHECK(p, e);
  const int keep = ctx / 2 - 1;
  CHECK(n == keep + 3 && p[0] == sp->sot_prev);
  CHECK(n_ids > (size_t)keep && !memcmp(p + 1, ids + n_ids - keep, (size_t)keep * sizeof(int)));
  g_free(p);
  g_free(ids);
  g_string_free(lng, TRUE);

  vs_search_options base = vs_search_default_options();
  vs_search_options o = vs_batched_search_options(&base);
  CHECK(o.n_temperatures == 1 && o.temperatures[0] == 0.0f);
  CHECK(isnan(o.compression_ratio_threshold) && isnan(o.log_prob_threshold) &&
        isnan(o.no_speech_threshold));
  CHECK(o.beam_size == base.beam_size && o.patience == base.patience &&
        o.length_penalty == base.length_penalty);
}

typedef struct {
  const char *path;
  JsonArray *ref_segs;
  vs_batched_file chunks;
  vs_search_result *results;
} file_t;

typedef struct {
  int file;
  size_t window;
} wref;

int main(int argc, char **argv) {
  if (argc != 2) VS_DIE("usage: test_batched REFDIR");
  char *model_path = model_file("VOXSHARD_MODEL_H5", "tiny.en.h5");
  char *vad_path = model_file("VOXSHARD_VAD_H5", "silero_vad_v6.h5");
  if (!g_file_test(model_path, G_FILE_TEST_EXISTS) || !g_file_test(vad_path, G_FILE_TEST_EXISTS)) {
    printf("skipped: %s or %s missing (scripts/fetch-models.sh)\n", model_path, vad_path);
    return 77;
  }
  GError *e = NULL;
  gchar *ref_path = g_build_filename(argv[1], "batched.json", NULL);
  JsonParser *parser = json_parser_new();
  VS_GERROR_CHECK(json_parser_load_from_file(parser, ref_path, &e), e);
  JsonArray *ref_files =
      json_object_get_array_member(json_node_get_object(json_parser_get_root(parser)), "files");

  vs_model *model = vs_model_load(model_path, &e);
  VS_GERROR_CHECK(model, e);
  check_prompts(model);
  vs_vad_model *vad = vs_vad_load(vad_path, &e);
  VS_GERROR_CHECK(vad, e);
  vs_mel *mel = vs_mel_init(vs_model_hparams(model)->n_mels, &e);
  VS_GERROR_CHECK(mel, e);

  /* Front end: VAD chunks per file, times against the reference segments. */
  const int n_files = (int)json_array_get_length(ref_files);
  CHECK(n_files >= 11);
  file_t *F = g_new0(file_t, n_files);
  size_t total_windows = 0;
  for (int f = 0; f < n_files; f++) {
    JsonObject *rf = json_array_get_object_element(ref_files, (guint)f);
    F[f].path = json_object_get_string_member(rf, "path");
    F[f].ref_segs = json_object_get_array_member(rf, "segments");
    vs_audio a = {0};
    VS_GERROR_CHECK(vs_audio_decode_file(F[f].path, 0, 0, &a, &e), e);
    VS_GERROR_CHECK(vs_batched_prepare_file(vad, mel, a.samples, a.n_samples, &F[f].chunks, &e), e);
    vs_audio_clear(&a);
    const size_t n_ref = json_array_get_length(F[f].ref_segs);
    CHECK_MSG(F[f].chunks.n_windows == n_ref, "%s: %zu chunks, faster-whisper %zu", F[f].path,
              F[f].chunks.n_windows, n_ref);
    for (size_t w = 0; w < MIN(n_ref, F[f].chunks.n_windows); w++) {
      JsonObject *s = json_array_get_object_element(F[f].ref_segs, (guint)w);
      CHECK_NEAR(F[f].chunks.windows[w].start_s, json_object_get_double_member(s, "start"), 1e-9);
      CHECK_NEAR(F[f].chunks.windows[w].end_s, json_object_get_double_member(s, "end"), 1e-9);
      if (w > 0) CHECK(F[f].chunks.windows[w].start_s >= F[f].chunks.windows[w - 1].end_s);
    }
    F[f].results = g_new0(vs_search_result, F[f].chunks.n_windows + 1);
    total_windows += F[f].chunks.n_windows;
  }
  CHECK(F[0].chunks.n_windows >= 2); /* the long file: more than one chunk, silences skipped */

  /* Windows of all files interleaved (round robin over files), BATCH per encoder pass. */
  wref *order = g_new(wref, total_windows + 1);
  size_t n_order = 0;
  for (size_t w = 0; n_order < total_windows; w++)
    for (int f = 0; f < n_files; f++)
      if (w < F[f].chunks.n_windows) order[n_order++] = (wref){f, w};

  vs_whisper_params wp = vs_whisper_default_params();
  wp.backend = VS_BACKEND_CPU;
  wp.precision = VS_PRECISION_FP32;
  vs_whisper *w = vs_whisper_init(model, &wp, &e);
  VS_GERROR_CHECK(w, e);
  vs_search_options so = vs_search_default_options();
  so = vs_batched_search_options(&so);
  const int slots = vs_search_slots_max(&so);
  vs_whisper_state *st = vs_whisper_state_init(w, BATCH, BATCH * slots, &e);
  VS_GERROR_CHECK(st, e);
  vs_search_decoder dec = vs_longform_whisper_decoder(st, w);
  const vs_tokenizer *tok = vs_model_tokenizer(model);
  size_t ns = 0, nb = 0;
  const int *sup = vs_model_suppress_ids(model, &ns),
            *supb = vs_model_suppress_ids_begin(model, &nb);
  vs_search_vocab voc;
  VS_GERROR_CHECK(vs_search_vocab_init(&voc, tok, sup, ns, supb, nb, &e), e);
  vs_longform_model lm = {&dec, tok, &voc, vs_model_hparams(model)->n_mels};
  int n_prompt = 0;
  int *prompt =
      vs_batched_prompt(tok, "en", false, NULL, vs_model_hparams(model)->n_text_ctx, &n_prompt, &e);
  VS_GERROR_CHECK(prompt, e);

  gint64 t0 = g_get_monotonic_time();
  for (size_t b = 0; b < n_order; b += BATCH) {
    int n = (int)MIN((size_t)BATCH, n_order - b);
    const float *mels[BATCH];
    vs_search_result res[BATCH];
    memset(res, 0, sizeof res);
    for (int i = 0; i < n; i++)
      mels[i] = F[order[b + i].file].chunks.windows[order[b + i].window].mel;
    VS_GERROR_CHECK(vs_batched_decode(&lm, &so, prompt, n_prompt, mels, n, BATCH, res, &e), e);
    for (int i = 0; i < n; i++)
      F[order[b + i].file].results[order[b + i].window] = res[i];
  }
  double secs = (double)(g_get_monotonic_time() - t0) / 1e6;

  size_t same = 0, compared = 0;
  for (int f = 0; f < n_files; f++) {
    const size_t n_ref = json_array_get_length(F[f].ref_segs);
    for (size_t k = 0; k < MIN(n_ref, F[f].chunks.n_windows); k++) {
      JsonArray *rt = json_object_get_array_member(
          json_array_get_object_element(F[f].ref_segs, (guint)k), "tokens");
      const vs_search_result *r = &F[f].results[k];
      bool eq = (int)json_array_get_length(rt) == r->n_tokens;
      for (int t = 0; eq && t < r->n_tokens; t++)
        eq = json_array_get_int_element(rt, (guint)t) == r->tokens[t];
      compared++;
      same += eq;
      if (!eq) printf("differs: %s window %zu\n", F[f].path, k);
    }
  }
  printf("%zu windows of %d files decoded in %.1f s; tokens equal to faster-whisper on %zu/%zu\n",
         n_order, n_files, secs, same, compared);
  CHECK(compared == total_windows);
  CHECK_MSG(same * 10 >= compared * 9, "%zu of %zu windows equal", same, compared);

  for (int f = 0; f < n_files; f++) {
    for (size_t k = 0; k < F[f].chunks.n_windows; k++)
      vs_search_result_clear(&F[f].results[k]);
    g_free(F[f].results);
    vs_batched_file_clear(&F[f].chunks);
  }
  g_free(F);
  g_free(order);
  g_free(prompt);
  vs_search_vocab_clear(&voc);
  vs_whisper_state_free(st);
  vs_whisper_free(w);
  vs_mel_free(mel);
  vs_vad_free(vad);
  vs_model_free(model);
  g_object_unref(parser);
  g_free(ref_path);
  g_free(model_path);
  g_free(vad_path);
  return vs_test_finish();
}
