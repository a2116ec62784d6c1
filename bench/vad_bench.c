/* Silero VAD throughput: vs_vad_probabilities on one thread, printed as CPU seconds per minute
 * of audio. The audio is the first --minutes of FILE (any format vs_audio decodes), or, without
 * FILE, synthetic: low noise with tone bursts, so that the LSTM sees both speech-like and
 * silent stretches. --probs OUT writes the probabilities as raw float32 (to compare two builds).
 *
 *   usage: vs_bench_vad [--model H5] [--minutes M] [--repeat R] [--probs OUT] [FILE]
 */
#include "audio.h"
#include "vad.h"
#include "vs_error.h"

#include <glib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Deterministic noise + 0.4 s tone bursts every 1.5 s, so runs and builds see the same input. */
static float *synth(size_t n) {
  float *x = g_new(float, n);
  uint32_t r = 12345;
  for (size_t i = 0; i < n; i++) {
    r = r * 1664525u + 1013904223u;
    float noise = ((float)(r >> 8) / 16777216.0f - 0.5f) * 0.02f;
    size_t ph = i % 24000;
    float tone = ph < 6400 ? 0.3f * sinf(2.0f * (float)M_PI * 220.0f * (float)i / 16000.0f) *
                                 sinf((float)M_PI * (float)ph / 6400.0f)
                           : 0.0f;
    x[i] = noise + tone;
  }
  return x;
}

int main(int argc, char **argv) {
  char *model_path = NULL, *probs_out = NULL;
  double minutes = 10;
  int repeat = 1;
  const char *file = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc)
      model_path = g_strdup(argv[++i]);
    else if (!strcmp(argv[i], "--minutes") && i + 1 < argc)
      minutes = atof(argv[++i]);
    else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
      repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--probs") && i + 1 < argc)
      probs_out = argv[++i];
    else if (argv[i][0] != '-' && !file)
      file = argv[i];
    else
      VS_DIE("usage: vs_bench_vad [--model H5] [--minutes M] [--repeat R] [--probs OUT] [FILE]");
  }
  if (!model_path)
    model_path = g_build_filename(g_get_home_dir(), ".cache", "voxshard", "models",
                                  "silero_vad_v6.h5", NULL);
  GError *err = NULL;
  vs_vad_model *m = vs_vad_load(model_path, &err);
  VS_GERROR_CHECK(m, err);

  size_t want = (size_t)(minutes * 60 * VS_VAD_SAMPLE_RATE), n;
  float *audio;
  if (file) {
    vs_audio a = {0};
    VS_GERROR_CHECK(vs_audio_decode_file(file, 0, minutes * 60, &a, &err), err);
    audio = a.samples;
    n = a.n_samples < want ? a.n_samples : want;
  } else {
    audio = synth(want);
    n = want;
  }

  float *probs = NULL;
  size_t np = 0;
  double best_cpu = INFINITY, best_wall = INFINITY;
  for (int r = 0; r < repeat; r++) {
    g_free(probs);
    double c0 = cpu_now(), w0 = wall_now();
    VS_GERROR_CHECK(vs_vad_probabilities(m, audio, n, &probs, &np, &err), err);
    double c = cpu_now() - c0, w = wall_now() - w0;
    if (c < best_cpu) best_cpu = c;
    if (w < best_wall) best_wall = w;
  }
  double audio_min = (double)n / VS_VAD_SAMPLE_RATE / 60;
  size_t speech = 0;
  for (size_t i = 0; i < np; i++)
    speech += probs[i] > 0.5f;
  printf("%s: %.2f min of audio, %zu windows (%.1f%% > 0.5)\n", file ? file : "synthetic",
         audio_min, np, 100.0 * (double)speech / (double)np);
  printf("vad: %.4f s CPU per audio minute (%.3f s CPU, %.3f s wall, best of %d)\n",
         best_cpu / audio_min, best_cpu, best_wall, repeat);
  if (probs_out && !g_file_set_contents(probs_out, (const char *)probs, (gssize)(np * 4), &err))
    VS_DIE("%s: %s", probs_out, err->message);

  g_free(probs);
  g_free(audio);
  vs_vad_free(m);
  g_free(model_path);
  return 0;
}
