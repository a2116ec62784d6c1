/* vs_bench_encoder: throughput of the Whisper encoder and of decoder steps on the CPU backend,
 * in fp32, bf16 and int8, reported as time and GFLOP/s with the FLOP formulas of the reference
 * sheet (2 per multiply-add; layer norms, softmax and elementwise work left out).
 *
 * usage: vs_bench_encoder [MODEL.h5] [--windows=N] [--steps=N] [--batch=N] [--threads=N]
 *                         [--precision=fp32|bf16|int8] (default: all three)
 * MODEL defaults to $VOXSHARD_MODEL_TINY_EN, then ~/.cache/voxshard/models/tiny.en.h5. The
 * input is synthetic log-mel (timing does not depend on the values). */
#include "model.h"
#include "vs_error.h"
#include "whisper.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double encoder_flop(const vs_whisper_hparams *hp) {
  double T = hp->n_audio_ctx, d = hp->n_audio_state, mels = hp->n_mels;
  double stem = 2.0 * 2 * T * d * mels * 3 + 2.0 * T * d * d * 3;
  double layers = hp->n_audio_layer * (24.0 * T * d * d + 4.0 * T * T * d);
  double cross = hp->n_text_layer * 4.0 * T * hp->n_text_state * hp->n_text_state;
  return stem + layers + cross;
}

/* One new token at position t (t tokens already cached). */
static double step_flop(const vs_whisper_hparams *hp, int t) {
  double d = hp->n_text_state, T = hp->n_audio_ctx;
  return hp->n_text_layer * (28.0 * d * d + 4.0 * (t + 1) * d + 4.0 * T * d) +
         2.0 * d * hp->n_vocab;
}

static void bench(const vs_model *m, vs_precision prec, int n_windows, int n_steps, int batch,
                  int threads) {
  GError *err = NULL;
  vs_whisper_params prm = vs_whisper_default_params();
  prm.precision = prec;
  prm.n_threads = threads;
  vs_whisper *w = vs_whisper_init(m, &prm, &err);
  if (!w) {
    printf("%-5s: not available: %s\n", vs_precision_name(prec), err->message);
    g_clear_error(&err);
    return;
  }
  const char *pname = vs_precision_name(vs_whisper_precision(w));
  const vs_whisper_hparams *hp = vs_whisper_hparams_of(w);
  vs_whisper_state *st = vs_whisper_state_init(w, n_windows, batch, &err);
  VS_GERROR_CHECK(st, err);
  size_t per = (size_t)hp->n_mels * 2 * hp->n_audio_ctx;
  float *mel = g_new(float, per *n_windows);
  unsigned long long s = 42;
  for (size_t i = 0; i < per * n_windows; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    mel[i] = (float)((s >> 40) / (double)(1ull << 24)) * 2.5f - 1.0f;
  }
  /* The first call creates and caches the oneDNN primitives: warm up with one window. */
  bool ok = vs_whisper_encode(st, mel, 1, &err);
  VS_GERROR_CHECK(ok, err);
  double t0 = now();
  ok = vs_whisper_encode(st, mel, n_windows, &err);
  VS_GERROR_CHECK(ok, err);
  double te = now() - t0;
  double fe = encoder_flop(hp) * n_windows;
  printf("%-5s encode: %d windows in %.3f s (%.3f s/window, %.1fx real time), %.1f GFLOP/s\n",
         pname, n_windows, te, te / n_windows, 30.0 * n_windows / te, fe / te * 1e-9);

  int V = hp->n_vocab;
  float *logits = g_new(float, (size_t)batch *V);
  int slots[batch], wins[batch], ns[batch], prompt[3] = {50257, 50362, 50362};
  int toks[batch];
  const int *tp[batch];
  for (int b = 0; b < batch; b++) {
    slots[b] = b;
    wins[b] = (int)((long)b * n_windows / batch); /* neighbours share a window, as beams do */
    ns[b] = 3;
    tp[b] = prompt;
    toks[b] = 1000 + b;
  }
  ok = vs_whisper_decode(st, batch, slots, wins, tp, ns, logits, &err);
  VS_GERROR_CHECK(ok, err);
  int steps = n_steps < hp->n_text_ctx - 3 ? n_steps : hp->n_text_ctx - 3;
  for (int b = 0; b < batch; b++) {
    ns[b] = 1;
    tp[b] = &toks[b];
  }
  double fd = 0;
  t0 = now();
  for (int i = 0; i < steps; i++) {
    ok = vs_whisper_decode(st, batch, slots, wins, tp, ns, logits, &err);
    VS_GERROR_CHECK(ok, err);
    fd += batch * step_flop(hp, 3 + i);
  }
  double td = now() - t0;
  printf("%-5s decode: %d steps x %d sequences in %.3f s (%.2f ms/step, %.0f tokens/s), "
         "%.1f GFLOP/s\n",
         pname, steps, batch, td, td / steps * 1e3, steps * batch / td, fd / td * 1e-9);
  g_free(logits);
  g_free(mel);
  vs_whisper_state_free(st);
  vs_whisper_free(w);
}

int main(int argc, char **argv) {
  int windows = 2, steps = 64, batch = 1, threads = 0;
  const char *path = NULL, *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (sscanf(argv[i], "--windows=%d", &windows) == 1) continue;
    if (sscanf(argv[i], "--steps=%d", &steps) == 1) continue;
    if (sscanf(argv[i], "--batch=%d", &batch) == 1) continue;
    if (sscanf(argv[i], "--threads=%d", &threads) == 1) continue;
    if (g_str_has_prefix(argv[i], "--precision=")) {
      only = argv[i] + strlen("--precision=");
      continue;
    }
    if (argv[i][0] == '-') VS_DIE("unknown option %s", argv[i]);
    path = argv[i];
  }
  if (windows < 1 || steps < 1 || batch < 1) VS_DIE("windows, steps and batch must be >= 1");
  char *def = NULL;
  if (!path) path = g_getenv("VOXSHARD_MODEL_TINY_EN");
  if (!path)
    path = def = g_build_filename(g_get_home_dir(), ".cache/voxshard/models/tiny.en.h5", NULL);
  GError *err = NULL;
  vs_model *m = vs_model_load(path, &err);
  VS_GERROR_CHECK(m, err);
  const vs_whisper_hparams *hp = vs_model_hparams(m);
  printf("model %s: d=%d, %d+%d layers, %d threads; encoder %.1f GFLOP/window\n", path,
         hp->n_audio_state, hp->n_audio_layer, hp->n_text_layer,
         threads > 0 ? threads : omp_get_max_threads(), encoder_flop(hp) * 1e-9);
  const vs_precision all[] = {VS_PRECISION_FP32, VS_PRECISION_BF16, VS_PRECISION_INT8};
  for (size_t i = 0; i < G_N_ELEMENTS(all); i++)
    if (!only || strcmp(only, vs_precision_name(all[i])) == 0)
      bench(m, all[i], windows, steps, batch, threads);
  vs_model_free(m);
  g_free(def);
  return 0;
}
