/* Whisper's log-mel front end on FFTW3 (single precision). See kernels/mel.h. */
#include "mel.h"

#include "vs_error.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#define N_BINS (VS_MEL_N_FFT / 2 + 1) /* 201 */
#define SAMPLE_RATE 16000
/* Frames per FFTW call: one plan_many execution amortises FFTW's per-call dispatch, and a block
 * of 32 frames (51 KiB in, 51 KiB out) stays in L2 with the filterbank. */
#define BLOCK 32
#define SPEC_STRIDE N_BINS

struct vs_mel {
  int n_mels;
  float window[VS_MEL_N_FFT]; /* periodic Hann */
  float *weights;             /* host, [n_mels][N_BINS], Slaney-normalised triangles */
  int *first_bin, *last_bin;  /* [n_mels]: each filter's nonzero bins, [first, last) */
  fftwf_plan plan;            /* BLOCK r2c transforms of VS_MEL_N_FFT, contiguous frames */
};

/* FFTW's planner is not thread-safe; execution of an existing plan on new arrays is. */
static pthread_mutex_t planner_lock = PTHREAD_MUTEX_INITIALIZER;

/* Slaney's mel scale as librosa (htk=False) and faster-whisper build it: linear below 1 kHz,
 * logarithmic above. Built in double, stored in float, as faster-whisper's astype(float32). */
static double mel_to_hz(double mel) {
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = log(6.4) / 27.0;
  return mel >= min_log_mel ? min_log_hz * exp(logstep * (mel - min_log_mel)) : f_sp * mel;
}

static double hz_to_mel(double hz) {
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = log(6.4) / 27.0;
  return hz >= min_log_hz ? min_log_mel + log(hz / min_log_hz) / logstep : hz / f_sp;
}

vs_mel *vs_mel_init(int n_mels, GError **err) {
  if (n_mels != 80 && n_mels != 128)
    VS_FAIL(err, VS_ERROR_CONFIG, NULL, "log-mel: %d bins requested; Whisper uses 80 or 128",
            n_mels);
  vs_mel *m = g_new0(vs_mel, 1);
  m->n_mels = n_mels;
  for (int i = 0; i < VS_MEL_N_FFT; i++)
    m->window[i] = (float)(0.5 - 0.5 * cos(2.0 * G_PI * i / VS_MEL_N_FFT));

  double *freqs = g_new(double, n_mels + 2);
  const double max_mel = hz_to_mel(SAMPLE_RATE / 2.0);
  for (int i = 0; i < n_mels + 2; i++)
    freqs[i] = mel_to_hz(max_mel * i / (n_mels + 1));
  m->weights = g_new0(float, (size_t)n_mels *N_BINS);
  m->first_bin = g_new(int, n_mels);
  m->last_bin = g_new(int, n_mels);
  for (int i = 0; i < n_mels; i++) {
    const double enorm = 2.0 / (freqs[i + 2] - freqs[i]);
    m->first_bin[i] = N_BINS;
    m->last_bin[i] = 0;
    for (int k = 0; k < N_BINS; k++) {
      const double f = (double)k * SAMPLE_RATE / VS_MEL_N_FFT;
      const double lower = (f - freqs[i]) / (freqs[i + 1] - freqs[i]);
      const double upper = (freqs[i + 2] - f) / (freqs[i + 2] - freqs[i + 1]);
      const double w = fmax(0.0, fmin(lower, upper)) * enorm;
      m->weights[(size_t)i * N_BINS + k] = (float)w;
      if (w > 0) {
        if (k < m->first_bin[i]) m->first_bin[i] = k;
        m->last_bin[i] = k + 1;
      }
    }
    if (m->first_bin[i] > m->last_bin[i]) m->first_bin[i] = m->last_bin[i] = 0;
  }
  g_free(freqs);

  /* Planned once here under the lock; vs_mel_compute runs it with fftwf_execute_dft_r2c on
   * per-call buffers of the same layout, which FFTW allows from any thread.
   * FFTW_ESTIMATE: the plan (and so every rounding) is the same in every process and rank.
   * FFTW_UNALIGNED (scalar codelets): measured against the float64 reference, FFTW's SIMD
   * codelets for n = 400 err up to 1.03e-4 in the output (chirp, 128 mels), the scalar ones
   * 4.1e-5, for 28% more log-mel time (7900x vs 5800x real time, still a third of the front
   * end's cost): matching faster-whisper is worth more than that. */
  float *in = fftwf_malloc(sizeof(float) * VS_MEL_N_FFT * BLOCK);
  fftwf_complex *out = fftwf_malloc(sizeof(fftwf_complex) * SPEC_STRIDE * BLOCK);
  int n = VS_MEL_N_FFT;
  pthread_mutex_lock(&planner_lock);
  if (in && out)
    m->plan = fftwf_plan_many_dft_r2c(1, &n, BLOCK, in, NULL, 1, VS_MEL_N_FFT, out, NULL, 1,
                                      SPEC_STRIDE, FFTW_ESTIMATE | FFTW_UNALIGNED);
  pthread_mutex_unlock(&planner_lock);
  fftwf_free(in);
  fftwf_free(out);
  if (!m->plan) {
    vs_mel_free(m);
    VS_FAIL(err, VS_ERROR_INTERNAL, NULL, "log-mel: FFTW could not plan a %d-point FFT",
            VS_MEL_N_FFT);
  }
  return m;
}

void vs_mel_free(vs_mel *m) {
  if (!m) return;
  if (m->plan) {
    pthread_mutex_lock(&planner_lock);
    fftwf_destroy_plan(m->plan);
    pthread_mutex_unlock(&planner_lock);
  }
  g_free(m->weights);
  g_free(m->first_bin);
  g_free(m->last_bin);
  g_free(m);
}

int vs_mel_n_mels(const vs_mel *m) {
  return m->n_mels;
}

size_t vs_mel_n_frames(size_t n_samples, size_t pad_samples) {
  /* Centred STFT gives 1 + L/hop frames; the last one is dropped. */
  return (n_samples + pad_samples) / VS_MEL_HOP;
}

/* numpy.pad(mode="reflect") for any pad width: reflection about the ends, repeated with period
 * 2(L-1) when the pad is longer than the signal (very short clips). */
static inline size_t reflect_index(long i, size_t len) {
  if (len == 1) return 0;
  const long period = 2 * ((long)len - 1);
  long j = i % period;
  if (j < 0) j += period;
  if (j >= (long)len) j = period - j;
  return (size_t)j;
}

bool vs_mel_compute(const vs_mel *m, const float *samples, size_t n_samples, size_t pad_samples,
                    float *out, GError **err) {
  const size_t len = n_samples + pad_samples; /* the signal with its trailing zeros */
  const size_t n_frames = vs_mel_n_frames(n_samples, pad_samples);
  if (len == 0 || n_frames == 0)
    VS_FAIL(err, VS_ERROR_AUDIO, false, "log-mel: %zu samples make no frame", n_samples);
  const int n_mels = m->n_mels;
  const long half = VS_MEL_N_FFT / 2;
  /* Per-call FFT buffers, aligned like the ones the plan was made on. */
  float *frames = fftwf_malloc(sizeof(float) * VS_MEL_N_FFT * BLOCK);
  fftwf_complex *spec = fftwf_malloc(sizeof(fftwf_complex) * SPEC_STRIDE * BLOCK);
  if (!frames || !spec) {
    fftwf_free(frames);
    fftwf_free(spec);
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "log-mel: out of memory for FFT buffers");
  }
  float power[N_BINS];
  float max_log = -INFINITY;

  for (size_t t0 = 0; t0 < n_frames; t0 += BLOCK) {
    const size_t nb = MIN((size_t)BLOCK, n_frames - t0);
    for (size_t b = 0; b < BLOCK; b++) {
      float *frame = frames + b * VS_MEL_N_FFT;
      if (b >= nb) { /* the tail of the last block: transformed, never read */
        memset(frame, 0, sizeof(float) * VS_MEL_N_FFT);
        continue;
      }
      /* Frame t covers padded positions [t*hop - 200, t*hop + 200) of the signal. */
      const long start = (long)((t0 + b) * VS_MEL_HOP) - half;
      if (start >= 0 && start + VS_MEL_N_FFT <= (long)n_samples) {
        const float *x = samples + start;
        for (int i = 0; i < VS_MEL_N_FFT; i++)
          frame[i] = x[i] * m->window[i];
      } else {
        for (int i = 0; i < VS_MEL_N_FFT; i++) {
          size_t j = reflect_index(start + i, len);
          float v = j < n_samples ? samples[j] : 0.0f;
          frame[i] = v * m->window[i];
        }
      }
    }
    fftwf_execute_dft_r2c(m->plan, frames, spec);
    for (size_t b = 0; b < nb; b++) {
      const fftwf_complex *X = spec + b * SPEC_STRIDE;
      for (int k = 0; k < N_BINS; k++)
        power[k] = X[k][0] * X[k][0] + X[k][1] * X[k][1];
      const size_t t = t0 + b;
      for (int i = 0; i < n_mels; i++) {
        const float *w = m->weights + (size_t)i * N_BINS;
        float acc = 0.0f;
        for (int k = m->first_bin[i]; k < m->last_bin[i]; k++)
          acc += w[k] * power[k];
        float v = log10f(acc > 1e-10f ? acc : 1e-10f);
        out[(size_t)i * n_frames + t] = v;
        if (v > max_log) max_log = v;
      }
    }
  }
  fftwf_free(frames);
  fftwf_free(spec);
  const float floor_log = max_log - 8.0f;
  const size_t total = (size_t)n_mels * n_frames;
  for (size_t i = 0; i < total; i++) {
    float v = out[i] > floor_log ? out[i] : floor_log;
    out[i] = (v + 4.0f) / 4.0f;
  }
  return true;
}
