/* Front-end throughput: decode + resample + log-mel of every file given, on one thread, printed
 * as audio seconds per wall second (x real time per core) with the split between the stages.
 * Driven by bench/bench_frontend.sh, which generates >= 1 hour of mixed-format audio. */
#include <glib.h>
#include <stdio.h>
#include <time.h>

#include "audio.h"
#include "mel.h"
#include "vs_error.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 2) VS_DIE("usage: vs_bench_frontend FILE...");
  GError *err = NULL;
  vs_mel *mel = vs_mel_init(80, &err);
  VS_GERROR_CHECK(mel, err);
  double t_decode = 0, t_mel = 0, audio_s = 0;
  for (int i = 1; i < argc; i++) {
    double t0 = now();
    vs_audio a;
    if (!vs_audio_decode_file(argv[i], 0, 0, &a, &err)) VS_DIE("%s", err->message);
    double t1 = now();
    size_t nf = vs_mel_n_frames(a.n_samples, VS_MEL_PAD_FASTER_WHISPER);
    float *out = g_new(float, 80 * nf);
    VS_GERROR_CHECK(vs_mel_compute(mel, a.samples, a.n_samples, VS_MEL_PAD_FASTER_WHISPER, out, &err), err);
    double t2 = now();
    t_decode += t1 - t0;
    t_mel += t2 - t1;
    audio_s += (double)a.n_samples / VS_AUDIO_RATE;
    g_free(out);
    vs_audio_clear(&a);
  }
  double total = t_decode + t_mel;
  printf("files: %d, audio: %.1f s (%.2f h)\n", argc - 1, audio_s, audio_s / 3600);
  printf("decode+resample: %.2f s (%.0fx real time), log-mel: %.2f s (%.0fx real time)\n", t_decode,
         audio_s / t_decode, t_mel, audio_s / t_mel);
  printf("front end: %.0f x real time per core (1 thread; target >= 500)\n", audio_s / total);
  vs_mel_free(mel);
  return 0;
}
