/* Front-end throughput: decode + resample + log-mel of every file given, on one thread, printed
 * as audio seconds per wall second ("N x real time per core") with the split between decoding
 * (libsndfile + downmix), resampling (libsoxr) and the log-mel (FFTW).
 *
 * Then the resampler presets on the same audio: each file is decoded to mono at its own rate
 * once, and libsoxr's HQ and MQ presets are timed on it (the choice in src/audio.c rests on
 * this). Driven by bench/bench_frontend.sh, which generates >= 1 hour of mixed-format audio.
 *
 *   usage: vs_bench_frontend [--mels 80|128] FILE...
 */
#include "audio.h"
#include "mel.h"
#include "vs_error.h"

#include <glib.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Mono at the file's own rate, for the resampler comparison only. */
static float *read_mono(const char *path, size_t *n, int *rate) {
  SF_INFO info = {0};
  SNDFILE *sf = sf_open(path, SFM_READ, &info);
  if (!sf) VS_DIE("%s: %s", path, sf_strerror(NULL));
  float *inter = g_new(float, (size_t)info.frames *info.channels);
  sf_count_t got = sf_readf_float(sf, inter, info.frames);
  sf_close(sf);
  float *mono = g_new(float, (size_t)got);
  for (sf_count_t i = 0; i < got; i++) {
    float acc = 0;
    for (int c = 0; c < info.channels; c++)
      acc += inter[i * info.channels + c];
    mono[i] = acc / info.channels;
  }
  g_free(inter);
  *n = (size_t)got;
  *rate = info.samplerate;
  return mono;
}

static double time_soxr(const float *in, size_t n, int rate, unsigned long recipe) {
  if (rate == VS_AUDIO_RATE) return 0;
  size_t cap = (size_t)((double)n * VS_AUDIO_RATE / rate) + 1024, idone = 0, odone = 0;
  float *out = g_new(float, cap);
  soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  soxr_quality_spec_t q = soxr_quality_spec(recipe, 0);
  soxr_runtime_spec_t rt = soxr_runtime_spec(1);
  double t0 = now();
  soxr_error_t e =
      soxr_oneshot(rate, VS_AUDIO_RATE, 1, in, n, &idone, out, cap, &odone, &io, &q, &rt);
  double t = now() - t0;
  if (e) VS_DIE("soxr: %s", e);
  g_free(out);
  return t;
}

int main(int argc, char **argv) {
  int first = 1, n_mels = 80;
  if (argc > 2 && strcmp(argv[1], "--mels") == 0) {
    n_mels = atoi(argv[2]);
    first = 3;
  }
  if (argc <= first) VS_DIE("usage: vs_bench_frontend [--mels 80|128] FILE...");
  GError *err = NULL;
  vs_mel *mel = vs_mel_init(n_mels, &err);
  VS_GERROR_CHECK(mel, err);
  double t_decode = 0, t_resample = 0, t_mel = 0, t_wall = 0, audio_s = 0;
  for (int i = first; i < argc; i++) {
    double t0 = now();
    vs_audio a;
    if (!vs_audio_decode_file(argv[i], 0, 0, &a, &err)) VS_DIE("%s", err->message);
    double t1 = now();
    size_t nf = vs_mel_n_frames(a.n_samples, VS_MEL_PAD_FASTER_WHISPER);
    float *out = g_new(float, (size_t)n_mels *nf);
    VS_GERROR_CHECK(
        vs_mel_compute(mel, a.samples, a.n_samples, VS_MEL_PAD_FASTER_WHISPER, out, &err), err);
    double t2 = now();
    t_wall += t2 - t0;
    t_decode += (t1 - t0) - a.resample_s;
    t_resample += a.resample_s;
    t_mel += t2 - t1;
    audio_s += (double)a.n_samples / VS_AUDIO_RATE;
    g_free(out);
    vs_audio_clear(&a);
  }
  printf("files: %d, audio: %.1f s (%.2f h), %d mels\n", argc - first, audio_s, audio_s / 3600,
         n_mels);
  printf("decode (libsndfile + downmix): %6.2f s  %5.1f%%  %7.0f x real time\n", t_decode,
         100 * t_decode / t_wall, audio_s / t_decode);
  printf("resample (libsoxr HQ):         %6.2f s  %5.1f%%  %7.0f x real time\n", t_resample,
         100 * t_resample / t_wall, audio_s / t_resample);
  printf("log-mel (FFTW):                %6.2f s  %5.1f%%  %7.0f x real time\n", t_mel,
         100 * t_mel / t_wall, audio_s / t_mel);
  printf("front end: %.0f x real time per core (1 thread; target >= 500)\n", audio_s / t_wall);

  double t_hq = 0, t_mq = 0, rs_audio = 0;
  for (int i = first; i < argc; i++) {
    size_t n;
    int rate;
    float *x = read_mono(argv[i], &n, &rate);
    if (rate != VS_AUDIO_RATE) {
      t_hq += time_soxr(x, n, rate, SOXR_HQ);
      t_mq += time_soxr(x, n, rate, SOXR_MQ);
      rs_audio += (double)n / rate;
    }
    g_free(x);
  }
  printf("resampler presets on the %.0f s that need resampling: SOXR_HQ %.2f s (%.0f x real time), "
         "SOXR_MQ %.2f s (%.0f x real time)\n",
         rs_audio, t_hq, rs_audio / t_hq, t_mq, rs_audio / t_mq);
  vs_mel_free(mel);
  return 0;
}
