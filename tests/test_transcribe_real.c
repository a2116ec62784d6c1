/* The correctness gate: voxshard's long-form loop on the real tiny.en against faster-whisper's
 * transcripts of the same 10 clips (tests/helpers/fw_transcribe.py), greedy and beam 5, with
 * faster-whisper's defaults otherwise. fp32: transcripts (and segment times) equal on >= 9 of
 * 10 files per run, and on the long file (the 5 LibriVox clips back to back, which crosses
 * windows), WER within 0.5 point; bf16 (when the backend offers it): >= 8 of 10 and WER within
 * 0.5 against the same fp32 transcripts. int8 against faster-whisper's int8, WER at most 0.5
 * point above it: the two quantise alike but not identically where the CPU lacks VNNI
 * (kernels/cpu_ops.c: voxshard keeps exact sums with 7-bit weights, CTranslate2's oneDNN GEMM
 * saturates), so equal transcripts are printed, not required. Per-file differences are printed.
 *
 * Usage: test_transcribe_real REFDIR   (REFDIR/transcripts.json from the helper)
 * The model: $VOXSHARD_MODEL_H5, else $VOXSHARD_CACHE/models/tiny.en.h5 (default
 * ~/.cache/voxshard); exits 77 when it is missing. */
#include "audio.h"
#include "eval.h"
#include "longform.h"
#include "normalizer.h"
#include "mel.h"
#include "model.h"
#include "tokenizer.h"
#include "vs_error.h"
#include "vs_test.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *path;
  float *mel;
  size_t n_frames;
} clip_t;

/* Human references of the 10 clips (pocketsphinx-testdata's transcription files), by path, and
 * Whisper's English normaliser: the gate's WER comparison. */
static GHashTable *human_refs;
static vs_norm *norm;

static void load_human_refs(void) {
  human_refs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  const char *dirs[2][2] = {{"librivox", "transcription"}, {"cards", "cards.transcription"}};
  for (int d = 0; d < 2; d++) {
    gchar *dir = g_build_filename("/usr/share/pocketsphinx/test/data", dirs[d][0], NULL);
    gchar *path = g_build_filename(dir, dirs[d][1], NULL), *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, NULL)) VS_DIE("%s: cannot read", path);
    gchar **lines = g_strsplit(text, "\n", -1);
    for (gchar **l = lines; *l; l++) {
      char *open = strrchr(*l, '('), *close = strrchr(*l, ')');
      if (!open || !close || close < open) continue;
      gchar *id = g_strndup(open + 1, (gsize)(close - open - 1));
      gchar *words = g_strndup(*l, (gsize)(open - *l));
      GRegex *tags = g_regex_new("</?s>", 0, 0, NULL);
      gchar *clean = g_regex_replace_literal(tags, words, -1, 0, "", 0, NULL);
      g_regex_unref(tags);
      gchar *wav = g_strdup_printf("%s/%s.wav", dir, g_strstrip(id));
      g_hash_table_replace(human_refs, wav, g_strdup(g_strstrip(clean)));
      g_free(clean);
      g_free(words);
      g_free(id);
    }
    g_strfreev(lines);
    g_free(text);
    g_free(path);
    g_free(dir);
  }
  GError *e = NULL;
  char *map = vs_norm_default_spelling_map_path();
  norm = vs_norm_new(VS_NORM_ENGLISH, g_file_test(map, G_FILE_TEST_EXISTS) ? map : NULL, &e);
  VS_GERROR_CHECK(norm, e);
  g_free(map);
}

static void add_wer(vs_eval_counts *acc, const char *ref, const char *hyp) {
  char *r = vs_norm_apply(norm, ref), *h = vs_norm_apply(norm, hyp ? hyp : "");
  vs_eval_align_words(r, h, acc);
  g_free(r);
  g_free(h);
}

static int run_config(const vs_model *model, vs_precision prec, int beam, JsonObject *refs,
                      clip_t *clips, int n, bool *skipped, bool *long_eq) {
  GError *e = NULL;
  vs_whisper_params wp = vs_whisper_default_params();
  wp.backend = VS_BACKEND_CPU;
  wp.precision = prec;
  vs_whisper *w = vs_whisper_init(model, &wp, &e);
  if (!w) {
    fprintf(stderr, "precision %d unavailable: %s\n", (int)prec, e ? e->message : "?");
    g_clear_error(&e);
    *skipped = true;
    return 0;
  }
  if (vs_whisper_precision(w) != prec) {
    fprintf(stderr, "precision %d resolved to %d: skipped\n", (int)prec,
            (int)vs_whisper_precision(w));
    vs_whisper_free(w);
    *skipped = true;
    return 0;
  }
  *skipped = false;
  vs_longform_options o = vs_longform_default_options();
  o.search.beam_size = beam;
  int slots = vs_search_slots_max(&o.search);
  vs_whisper_state *st = vs_whisper_state_init(w, n, n * slots, &e);
  VS_GERROR_CHECK(st, e);
  vs_search_decoder dec = vs_longform_whisper_decoder(st, w);
  const vs_tokenizer *tok = vs_model_tokenizer(model);
  size_t ns, nb;
  const int *sup = vs_model_suppress_ids(model, &ns);
  const int *supb = vs_model_suppress_ids_begin(model, &nb);
  vs_search_vocab voc;
  VS_GERROR_CHECK(vs_search_vocab_init(&voc, tok, sup, ns, supb, nb, &e), e);
  vs_longform_model lm = {&dec, tok, &voc, vs_model_hparams(model)->n_mels};

  const float **mels = g_new(const float *, n);
  size_t *nf = g_new(size_t, n);
  for (int i = 0; i < n; i++)
    mels[i] = clips[i].mel, nf[i] = clips[i].n_frames;
  vs_transcript *tr = g_new0(vs_transcript, n);
  gint64 t0 = g_get_monotonic_time();
  /* every file in one batch: the same answers as one at a time is the search's contract */
  VS_GERROR_CHECK(vs_longform_transcribe(&lm, &o, mels, nf, n, tr, &e), e);
  double secs = (g_get_monotonic_time() - t0) / 1e6;

  int equal = 0;
  vs_eval_counts wer_vox = {0}, wer_fw = {0};
  for (int i = 0; i < n; i++) {
    char *mine = vs_transcript_text(&tr[i]);
    JsonObject *r = json_object_get_object_member(refs, clips[i].path);
    const char *ref = r ? json_object_get_string_member(r, "text") : NULL;
    const char *human = g_hash_table_lookup(human_refs, clips[i].path);
    if (i < 10 && human) {
      add_wer(&wer_vox, human, mine);
      add_wer(&wer_fw, human, ref);
    }
    bool eq = ref && !strcmp(mine, ref);
    if (eq) {
      /* same words: the segmentation (seek loop, timestamps) must agree as well */
      JsonArray *segs = json_object_get_array_member(r, "segments");
      bool same = (int)json_array_get_length(segs) == tr[i].n_segments;
      for (int s = 0; same && s < tr[i].n_segments; s++) {
        JsonObject *so = json_array_get_object_element(segs, s);
        same = fabs(json_object_get_double_member(so, "start") - tr[i].segments[s].start) < 1e-6 &&
               fabs(json_object_get_double_member(so, "end") - tr[i].segments[s].end) < 1e-6;
      }
      if (!same) printf("  SEGMENTS DIFFER %s\n", clips[i].path);
      eq = same;
    }
    if (i < 10)
      equal += eq;
    else
      *long_eq = eq;
    if (!eq)
      printf("  DIFF %s\n    fw:  %s\n    vox: %s\n", clips[i].path, ref ? ref : "(missing)", mine);
    g_free(mine);
    vs_transcript_clear(&tr[i]);
  }
  printf("precision %s beam %d: %d/10 clips equal, long file %s (%.1f s for the batch)\n",
         vs_precision_name(prec), beam, equal, *long_eq ? "equal" : "DIFFERS",
         secs);
  double wv = 100 * vs_eval_error_rate(&wer_vox), wf = 100 * vs_eval_error_rate(&wer_fw);
  printf("  WER over the 10 clips: voxshard %.2f%%, faster-whisper %.2f%%\n", wv, wf);
  if (prec == VS_PRECISION_INT8)
    CHECK_MSG(wv <= wf + 0.5, "int8 beam %d: WER %.2f vs faster-whisper int8 %.2f", beam, wv, wf);
  else
    CHECK_MSG(fabs(wv - wf) <= 0.5, "%s beam %d: WER %.2f vs faster-whisper %.2f",
              vs_precision_name(prec), beam, wv, wf);
  g_free(tr);
  g_free(mels);
  g_free(nf);
  vs_search_vocab_clear(&voc);
  vs_whisper_state_free(st);
  vs_whisper_free(w);
  return equal;
}

int main(int argc, char **argv) {
  if (argc < 2) VS_DIE("usage: %s REFDIR", argv[0]);
  char *model_path = g_strdup(g_getenv("VOXSHARD_MODEL_H5"));
  if (!model_path) {
    const char *cache = g_getenv("VOXSHARD_CACHE");
    char *c = cache ? g_strdup(cache) : g_build_filename(g_get_home_dir(), ".cache/voxshard", NULL);
    model_path = g_build_filename(c, "models/tiny.en.h5", NULL);
    g_free(c);
  }
  if (!g_file_test(model_path, G_FILE_TEST_EXISTS)) {
    fprintf(stderr, "skip: no model at %s\n", model_path);
    return 77;
  }
  GError *e = NULL;
  char *ref_path = g_build_filename(argv[1], "transcripts.json", NULL);
  JsonParser *jp = json_parser_new();
  VS_GERROR_CHECK(json_parser_load_from_file(jp, ref_path, &e), e);
  JsonObject *root = json_node_get_object(json_parser_get_root(jp));
  JsonArray *clip_list = json_object_get_array_member(root, "clips");
  JsonObject *runs = json_object_get_object_member(root, "runs");
  int n = (int)json_array_get_length(clip_list);
  CHECK(n == 11); /* the 10 clips, then the 5 LibriVox clips back to back (seek loop) */

  vs_model *model = vs_model_load(model_path, &e);
  VS_GERROR_CHECK(model, e);
  vs_mel *mel = vs_mel_init(vs_model_hparams(model)->n_mels, &e);
  VS_GERROR_CHECK(mel, e);
  clip_t *clips = g_new0(clip_t, n);
  for (int i = 0; i < n; i++) {
    clips[i].path = json_array_get_string_element(clip_list, i);
    vs_audio a = {0};
    VS_GERROR_CHECK(vs_audio_decode_file(clips[i].path, 0, 0, &a, &e), e);
    clips[i].n_frames = vs_mel_n_frames(a.n_samples, VS_MEL_PAD_FASTER_WHISPER);
    clips[i].mel = g_new(float, clips[i].n_frames *vs_mel_n_mels(mel));
    VS_GERROR_CHECK(
        vs_mel_compute(mel, a.samples, a.n_samples, VS_MEL_PAD_FASTER_WHISPER, clips[i].mel, &e),
        e);
    vs_audio_clear(&a);
  }

  load_human_refs();
  const int beams[2] = {1, 5};
  const char *names[2] = {"beam1", "beam5"};
  for (int b = 0; b < 2; b++) {
    JsonObject *refs = json_object_get_object_member(runs, names[b]);
    bool skipped, long_eq = false;
    int eq = run_config(model, VS_PRECISION_FP32, beams[b], refs, clips, n, &skipped, &long_eq);
    CHECK(!skipped);
    CHECK_MSG(eq >= 9, "fp32 %s: %d/10 equal", names[b], eq);
    CHECK_MSG(long_eq, "fp32 %s: the long file differs", names[b]);
    const vs_precision reduced[2] = {VS_PRECISION_BF16, VS_PRECISION_INT8};
    for (int p = 0; p < 2; p++) {
      const char *pn = vs_precision_name(reduced[p]);
      /* int8 against faster-whisper's int8: the same quantised model on both sides */
      char *rname = g_strdup_printf("%s_int8", names[b]);
      JsonObject *prefs =
          reduced[p] == VS_PRECISION_INT8 ? json_object_get_object_member(runs, rname) : refs;
      g_free(rname);
      CHECK(prefs != NULL);
      eq = run_config(model, reduced[p], beams[b], prefs, clips, n, &skipped, &long_eq);
      if (!skipped && reduced[p] == VS_PRECISION_BF16)
        CHECK_MSG(eq >= 8, "%s %s: %d/10 equal", pn, names[b], eq); /* long file: printed only */
      else if (skipped)
        printf("%s %s: not run (backend has no %s here)\n", pn, names[b], pn);
    }
  }

  for (int i = 0; i < n; i++)
    g_free(clips[i].mel);
  g_free(clips);
  vs_mel_free(mel);
  vs_model_free(model);
  vs_norm_free(norm);
  g_hash_table_destroy(human_refs);
  g_object_unref(jp);
  g_free(ref_path);
  g_free(model_path);
  return vs_test_finish();
}
