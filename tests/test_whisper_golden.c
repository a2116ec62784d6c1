/* The Whisper network on the real tiny.en against CTranslate2 (tests/helpers/ct2_golden.py) on
 * one real clip, fed the very same log-mel features: encoder output, greedy tokens and the
 * first steps' logits; then the reference backend against the fast one, determinism, and the
 * batched-decode / KV-cache API that the search is written against.
 *
 * argv[1]: the helper's output folder. The model comes from $VOXSHARD_MODEL_TINY_EN, default
 * ~/.cache/voxshard/models/tiny.en.h5; without it the test is skipped (exit 77). */
#include "model.h"
#include "vs_error.h"
#include "vs_test.h"
#include "whisper.h"

#include <math.h>
#include <string.h>

enum { EOT = 50256, SOT = 50257, NO_TS = 50362, SKIP = 77 };

static float *read_f32(const char *dir, const char *name, size_t *n) {
  char *path = g_build_filename(dir, name, NULL);
  gchar *buf = NULL;
  gsize len = 0;
  GError *err = NULL;
  if (!g_file_get_contents(path, &buf, &len, &err)) VS_DIE("%s", err->message);
  g_free(path);
  *n = len / sizeof(float);
  return (float *)buf;
}

static double rel_err(const float *a, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return sqrt(num / den);
}

static int argmax(const float *x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}

typedef struct {
  float *enc;    /* [1500][d] */
  float *logits; /* [n_keep][V] first steps */
  int tokens[448];
  int n_tokens;
} run_out;

/* Encode the features, then greedy argmax from [sot, notimestamps] until EOT, keeping the
 * first n_keep steps' logits. */
static void run_greedy(vs_whisper *w, const float *feats, int n_keep, run_out *r) {
  GError *err = NULL;
  const vs_whisper_hparams *hp = vs_whisper_hparams_of(w);
  int V = hp->n_vocab;
  vs_whisper_state *st = vs_whisper_state_init(w, 1, 1, &err);
  VS_GERROR_CHECK(st, err);
  bool ok = vs_whisper_encode(st, feats, 1, &err);
  VS_GERROR_CHECK(ok, err);
  r->enc = g_new(float, (size_t)hp->n_audio_ctx * hp->n_audio_state);
  ok = vs_whisper_encoder_output(st, r->enc, &err);
  VS_GERROR_CHECK(ok, err);
  r->logits = g_new(float, (size_t)n_keep *V);
  float *lg = g_new(float, V);
  int prompt[2] = {SOT, NO_TS}, slot = 0, win = 0;
  const int *toks = prompt;
  int n = 2;
  r->n_tokens = 0;
  while (vs_whisper_cache_len(st, 0) + n <= hp->n_text_ctx) {
    ok = vs_whisper_decode(st, 1, &slot, &win, &toks, &n, lg, &err);
    VS_GERROR_CHECK(ok, err);
    if (r->n_tokens < n_keep) memcpy(r->logits + (size_t)r->n_tokens * V, lg, V * sizeof(float));
    int t = argmax(lg, V);
    if (t == EOT) break;
    r->tokens[r->n_tokens++] = t;
    toks = &r->tokens[r->n_tokens - 1];
    n = 1;
  }
  g_free(lg);
  vs_whisper_state_free(st);
}

static void run_free(run_out *r) {
  g_free(r->enc);
  g_free(r->logits);
}

static vs_whisper *make(const vs_model *m, vs_backend_kind b, vs_precision p) {
  GError *err = NULL;
  vs_whisper_params prm = vs_whisper_default_params();
  prm.backend = b;
  prm.precision = p;
  vs_whisper *w = vs_whisper_init(m, &prm, &err);
  VS_GERROR_CHECK(w, err);
  return w;
}

static void print_tokens(const char *what, const int *t, int n) {
  printf("%s:", what);
  for (int i = 0; i < n; i++)
    printf(" %d", t[i]);
  printf("\n");
}

/* Batched decoding with different cache lengths, windows and slots must give each sequence
 * what it gets alone; a copied cache must continue like its source. */
static void test_batch_api(vs_whisper *w, const float *feats, const run_out *solo) {
  GError *err = NULL;
  const vs_whisper_hparams *hp = vs_whisper_hparams_of(w);
  int V = hp->n_vocab;
  vs_whisper_state *st = vs_whisper_state_init(w, 2, 3, &err);
  VS_GERROR_CHECK(st, err);
  size_t per = (size_t)hp->n_mels * 3000;
  float *two = g_new(float, 2 * per);
  memcpy(two, feats, per * sizeof(float));
  memcpy(two + per, feats, per * sizeof(float));
  bool ok = vs_whisper_encode(st, two, 2, &err);
  VS_GERROR_CHECK(ok, err);
  float *lg = g_new(float, 3 * (size_t)V);

  /* slot 2: the prompt plus 3 greedy tokens, on window 1 */
  int p5[5] = {SOT, NO_TS, solo->tokens[0], solo->tokens[1], solo->tokens[2]};
  int slot = 2, win = 1, n = 5;
  const int *tp = p5;
  ok = vs_whisper_decode(st, 1, &slot, &win, &tp, &n, lg, &err);
  VS_GERROR_CHECK(ok, err);
  CHECK(vs_whisper_cache_len(st, 2) == 5);
  CHECK_MSG(rel_err(lg, solo->logits + 3 * (size_t)V, V) < 1e-4, "prompt+3 logits %.3g",
            rel_err(lg, solo->logits + 3 * (size_t)V, V));

  /* one pass: slot 0 gets the 2-token prompt (window 0), slot 2 its 4th greedy token (window 1),
   * slot 1 the prompt plus one token (window 1) */
  int pa[2] = {SOT, NO_TS}, pb[1] = {solo->tokens[3]}, pc[3] = {SOT, NO_TS, solo->tokens[0]};
  int slots[3] = {0, 2, 1}, wins[3] = {0, 1, 1}, ns[3] = {2, 1, 3};
  const int *tps[3] = {pa, pb, pc};
  ok = vs_whisper_decode(st, 3, slots, wins, tps, ns, lg, &err);
  VS_GERROR_CHECK(ok, err);
  double e0 = rel_err(lg, solo->logits, V), e1 = rel_err(lg + V, solo->logits + 4 * (size_t)V, V),
         e2 = rel_err(lg + 2 * (size_t)V, solo->logits + (size_t)V, V);
  CHECK_MSG(e0 < 1e-4 && e1 < 1e-4 && e2 < 1e-4, "batched logits %.3g %.3g %.3g", e0, e1, e2);
  CHECK(vs_whisper_cache_len(st, 0) == 2 && vs_whisper_cache_len(st, 1) == 3 &&
        vs_whisper_cache_len(st, 2) == 6);

  /* copy slot 2 into slot 0 and continue both with the same token: identical logits */
  vs_whisper_cache_copy(st, 0, 2);
  CHECK(vs_whisper_cache_len(st, 0) == 6);
  int nt[1] = {solo->tokens[4]};
  int s2[2] = {0, 2}, w2[2] = {1, 1}, n2[2] = {1, 1};
  const int *t2[2] = {nt, nt};
  ok = vs_whisper_decode(st, 2, s2, w2, t2, n2, lg, &err);
  VS_GERROR_CHECK(ok, err);
  CHECK(memcmp(lg, lg + V, V * sizeof(float)) == 0);
  CHECK(rel_err(lg, solo->logits + 5 * (size_t)V, V) < 1e-4);

  /* refused calls change nothing */
  int bad_tok[1] = {V}, one = 1, s0 = 0, w0 = 0, w5 = 5;
  const int *bt = bad_tok;
  CHECK(!vs_whisper_decode(st, 1, &s0, &w0, &bt, &one, lg, &err));
  g_clear_error(&err);
  CHECK(!vs_whisper_decode(st, 1, &s0, &w5, t2, &one, lg, &err));
  g_clear_error(&err);
  int dup[2] = {1, 1};
  CHECK(!vs_whisper_decode(st, 2, dup, w2, t2, n2, lg, &err));
  g_clear_error(&err);
  CHECK(vs_whisper_cache_len(st, 0) == 7 && vs_whisper_cache_len(st, 1) == 3);
  vs_whisper_cache_reset(st, 0);
  CHECK(vs_whisper_cache_len(st, 0) == 0);

  g_free(lg);
  g_free(two);
  vs_whisper_state_free(st);
}

int main(int argc, char **argv) {
  if (argc != 2) VS_DIE("usage: test_whisper_golden GOLDEN_DIR");
  const char *dir = argv[1];
  const char *env = g_getenv("VOXSHARD_MODEL_TINY_EN");
  char *path = env ? g_strdup(env)
                   : g_build_filename(g_get_home_dir(), ".cache/voxshard/models/tiny.en.h5", NULL);
  if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
    printf("SKIP: no model at %s (set VOXSHARD_MODEL_TINY_EN)\n", path);
    return SKIP;
  }
  GError *err = NULL;
  vs_model *m = vs_model_load(path, &err);
  VS_GERROR_CHECK(m, err);
  const vs_whisper_hparams *hp = vs_model_hparams(m);
  int V = hp->n_vocab;
  size_t n_enc_out = (size_t)hp->n_audio_ctx * hp->n_audio_state;

  size_t nf, ne, nl;
  float *feats = read_f32(dir, "features.f32", &nf);
  float *ct2_enc = read_f32(dir, "encoder.f32", &ne);
  float *ct2_logits = read_f32(dir, "logits.f32", &nl);
  CHECK(nf == (size_t)hp->n_mels * 3000 && ne == n_enc_out && nl % V == 0);
  int n_keep = (int)(nl / V);
  char *tok_txt = NULL;
  char *tok_path = g_build_filename(dir, "tokens.txt", NULL);
  if (!g_file_get_contents(tok_path, &tok_txt, NULL, &err)) VS_DIE("%s", err->message);
  int ct2_tok[448], n_ct2 = 0;
  for (char *p = tok_txt, *e; n_ct2 < 448; p = e) {
    long v = strtol(p, &e, 10);
    if (e == p) break;
    ct2_tok[n_ct2++] = (int)v;
  }
  CHECK(n_ct2 > 10);

  /* fast fp32 vs CTranslate2 */
  vs_whisper *f32 = make(m, VS_BACKEND_CPU, VS_PRECISION_FP32);
  CHECK(vs_whisper_precision(f32) == VS_PRECISION_FP32);
  run_out a;
  run_greedy(f32, feats, n_keep, &a);
  double e_enc = rel_err(a.enc, ct2_enc, n_enc_out);
  printf("cpu-fp32: encoder err vs CTranslate2 %.3g\n", e_enc);
  CHECK_MSG(e_enc <= 1e-3, "encoder err %.3g", e_enc);
  print_tokens("ct2 ", ct2_tok, n_ct2);
  print_tokens("fp32", a.tokens, a.n_tokens);
  CHECK(a.n_tokens == n_ct2 && memcmp(a.tokens, ct2_tok, n_ct2 * sizeof(int)) == 0);
  for (int s = 0; s < n_keep; s++) {
    double e = rel_err(a.logits + (size_t)s * V, ct2_logits + (size_t)s * V, V);
    printf("cpu-fp32: step %d logits err vs CTranslate2 %.3g\n", s, e);
    CHECK_MSG(e <= 1e-3, "step %d logits err %.3g", s, e);
  }

  /* determinism: a second run is bit-identical */
  run_out a2;
  run_greedy(f32, feats, n_keep, &a2);
  CHECK(memcmp(a.enc, a2.enc, n_enc_out * sizeof(float)) == 0);
  CHECK(memcmp(a.logits, a2.logits, (size_t)n_keep * V * sizeof(float)) == 0);
  CHECK(a2.n_tokens == a.n_tokens && memcmp(a.tokens, a2.tokens, a.n_tokens * sizeof(int)) == 0);
  run_free(&a2);

  test_batch_api(f32, feats, &a);

  /* reference backend vs fast fp32 */
  vs_whisper *ref = make(m, VS_BACKEND_REF, VS_PRECISION_AUTO);
  run_out r;
  run_greedy(ref, feats, n_keep, &r);
  double e_rf = rel_err(a.enc, r.enc, n_enc_out);
  double e_rl = rel_err(a.logits, r.logits, (size_t)n_keep * V);
  printf("ref vs cpu-fp32: encoder %.3g, logits %.3g\n", e_rf, e_rl);
  CHECK_MSG(e_rf <= 1e-4 && e_rl <= 1e-4, "ref vs fast: %.3g %.3g", e_rf, e_rl);
  CHECK(r.n_tokens == n_ct2 && memcmp(r.tokens, ct2_tok, n_ct2 * sizeof(int)) == 0);
  run_free(&r);
  vs_whisper_free(ref);

  /* bf16 where the CPU has it */
  vs_whisper_params prm = vs_whisper_default_params();
  prm.precision = VS_PRECISION_BF16;
  vs_whisper *b16 = vs_whisper_init(m, &prm, &err);
  if (b16) {
    CHECK(vs_whisper_precision(b16) == VS_PRECISION_BF16);
    run_out b;
    run_greedy(b16, feats, n_keep, &b);
    double e_b = rel_err(b.enc, ct2_enc, n_enc_out);
    double e_bl = rel_err(b.logits, ct2_logits, (size_t)n_keep * V);
    int same = 0;
    while (same < b.n_tokens && same < n_ct2 && b.tokens[same] == ct2_tok[same])
      same++;
    printf("cpu-bf16: encoder err %.3g, logits err %.3g, first %d/%d tokens equal\n", e_b, e_bl,
           same, n_ct2);
    print_tokens("bf16", b.tokens, b.n_tokens);
    CHECK_MSG(e_b <= 3e-2, "bf16 encoder err %.3g", e_b);
    CHECK_MSG(e_bl <= 3e-2, "bf16 logits err %.3g", e_bl);
    /* bf16 may legitimately flip a near-tie late in the text, but not the start. */
    CHECK(argmax(b.logits, V) == ct2_tok[0]);
    run_free(&b);
    vs_whisper_free(b16);
  } else {
    printf("bf16 not available: %s\n", err->message);
    CHECK(err->code == VS_ERROR_UNSUPPORTED);
    g_clear_error(&err);
  }

  /* the CUDA backend says clearly that it is not there yet */
  prm.backend = VS_BACKEND_CUDA;
  CHECK(vs_whisper_init(m, &prm, &err) == NULL && err && err->code == VS_ERROR_UNSUPPORTED);
  g_clear_error(&err);

  run_free(&a);
  vs_whisper_free(f32);
  vs_model_free(m);
  g_free(feats);
  g_free(ct2_enc);
  g_free(ct2_logits);
  g_free(tok_txt);
  g_free(tok_path);
  g_free(path);
  return vs_test_finish();
}
