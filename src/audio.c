/* Audio decoding with libsndfile, downmix, and libsoxr resampling to 16 kHz. See src/audio.h. */
#include "audio.h"

#include <math.h>
#include <sndfile.h>
#include <soxr.h>
#include <string.h>
#include <sys/stat.h>

#include "vs_error.h"

/* ---- libsndfile over a memory buffer (tar members are read in place, never extracted) ---- */
typedef struct {
  const unsigned char *data;
  sf_count_t size, pos;
} mem_io;

static sf_count_t mem_len(void *u) { return ((mem_io *)u)->size; }
static sf_count_t mem_seek(sf_count_t off, int whence, void *u) {
  mem_io *m = u;
  sf_count_t p = whence == SEEK_SET ? off : whence == SEEK_CUR ? m->pos + off : m->size + off;
  if (p < 0 || p > m->size) return -1;
  m->pos = p;
  return p;
}
static sf_count_t mem_read(void *dst, sf_count_t n, void *u) {
  mem_io *m = u;
  if (n > m->size - m->pos) n = m->size - m->pos;
  memcpy(dst, m->data + m->pos, (size_t)n);
  m->pos += n;
  return n;
}
static sf_count_t mem_write(const void *src, sf_count_t n, void *u) { return 0; }
static sf_count_t mem_tell(void *u) { return ((mem_io *)u)->pos; }

typedef struct {
  SNDFILE *sf;
  SF_INFO info;
  mem_io mem;
} source;

static bool source_open_file(source *s, const char *path, GError **err) {
  memset(s, 0, sizeof *s);
  struct stat st;
  if (stat(path, &st) != 0) VS_FAIL_ERRNO(err, false, "cannot open audio", path);
  if (S_ISDIR(st.st_mode)) VS_FAIL(err, VS_ERROR_IO, false, "%s: is a directory, not audio", path);
  if (st.st_size == 0) VS_FAIL(err, VS_ERROR_AUDIO, false, "%s: empty file", path);
  s->sf = sf_open(path, SFM_READ, &s->info);
  if (!s->sf)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: not readable audio: %s", path, sf_strerror(NULL));
  return true;
}

static bool source_open_memory(source *s, const void *data, size_t size, const char *name,
                               GError **err) {
  memset(s, 0, sizeof *s);
  if (size == 0) VS_FAIL(err, VS_ERROR_AUDIO, false, "%s: empty file", name);
  s->mem = (mem_io){data, (sf_count_t)size, 0};
  SF_VIRTUAL_IO io = {mem_len, mem_seek, mem_read, mem_write, mem_tell};
  s->sf = sf_open_virtual(&io, SFM_READ, &s->info, &s->mem);
  if (!s->sf)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: not readable audio: %s", name, sf_strerror(NULL));
  return true;
}

/* libsndfile clamps a header that promises more data than the file holds and notes it in its
 * log ("should be ..."): that is a truncated file, which we refuse rather than half-transcribe. */
static bool source_check(source *s, const char *name, GError **err) {
  char log[4096];
  sf_command(s->sf, SFC_GET_LOG_INFO, log, sizeof log);
  if (strstr(log, "should be") || strstr(log, "truncated") || strstr(log, "Truncated"))
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: truncated (the header promises more audio than the file holds)", name);
  if (s->info.channels <= 0 || s->info.samplerate <= 0)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: bad header (%d channels, %d Hz)", name,
            s->info.channels, s->info.samplerate);
  if (s->info.frames <= 0) VS_FAIL(err, VS_ERROR_AUDIO, false, "%s: contains no audio samples", name);
  return true;
}

static double source_duration(const source *s) { return (double)s->info.frames / s->info.samplerate; }

static bool probe(source *s, const char *name, double *duration_s, GError **err) {
  bool ok = source_check(s, name, err);
  if (ok) *duration_s = source_duration(s);
  sf_close(s->sf);
  return ok;
}

bool vs_audio_probe_file(const char *path, double *duration_s, GError **err) {
  source s;
  return source_open_file(&s, path, err) && probe(&s, path, duration_s, err);
}

bool vs_audio_probe_memory(const void *data, size_t size, const char *name, double *duration_s,
                           GError **err) {
  source s;
  return source_open_memory(&s, data, size, name, err) && probe(&s, name, duration_s, err);
}

/* Resampling quality: SOXR_HQ (20-bit, steep) costs little next to decoding and the log-mel
 * on speech, and keeps aliasing far below Whisper's -80 dB log floor. */
static bool resample(const float *in, size_t n_in, int rate_in, float **out, size_t *n_out,
                     const char *name, GError **err) {
  if (rate_in == VS_AUDIO_RATE) {
    *out = g_memdup2(in, n_in * sizeof(float));
    *n_out = n_in;
    return true;
  }
  const double ratio = (double)VS_AUDIO_RATE / rate_in;
  size_t cap = (size_t)ceil(n_in * ratio) + 16;
  float *buf = g_new(float, cap);
  size_t done_in = 0, done_out = 0;
  soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
  soxr_runtime_spec_t rt = soxr_runtime_spec(1); /* the caller's threads give the parallelism */
  soxr_error_t e = soxr_oneshot(rate_in, VS_AUDIO_RATE, 1, in, n_in, &done_in, buf, cap,
                                &done_out, &io, &q, &rt);
  if (e) {
    g_free(buf);
    VS_FAIL(err, VS_ERROR_AUDIO, false, "%s: resampling %d Hz -> %d Hz failed: %s", name, rate_in,
            VS_AUDIO_RATE, e);
  }
  *out = buf;
  *n_out = done_out;
  return true;
}

static bool decode(source *s, const char *name, double start_s, double end_s, vs_audio *out,
                   GError **err) {
  memset(out, 0, sizeof *out);
  bool ok = source_check(s, name, err);
  sf_count_t first = 0, count = s->info.frames;
  if (ok && (start_s > 0 || end_s > 0)) {
    first = (sf_count_t)llround(start_s * s->info.samplerate);
    sf_count_t last = end_s > 0 ? (sf_count_t)llround(end_s * s->info.samplerate) : s->info.frames;
    if (last > s->info.frames) last = s->info.frames;
    if (first < 0 || first >= last) {
      g_set_error(err, VS_ERROR, VS_ERROR_AUDIO,
                  "%s: segment [%.3f, %.3f) s holds no audio (file is %.3f s)", name, start_s,
                  end_s, source_duration(s));
      ok = false;
    } else {
      count = last - first;
      if (sf_seek(s->sf, first, SEEK_SET) < 0) {
        g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: cannot seek to %.3f s: %s", name,
                    start_s, sf_strerror(s->sf));
        ok = false;
      }
    }
  }
  float *inter = NULL, *mono = NULL;
  if (ok) {
    const int ch = s->info.channels;
    inter = g_try_new(float, (size_t)count * ch);
    mono = g_try_new(float, (size_t)count);
    if (!inter || !mono) {
      g_set_error(err, VS_ERROR, VS_ERROR_AUDIO, "%s: %lld frames do not fit in memory", name,
                  (long long)count);
      ok = false;
    } else {
      sf_count_t got = sf_readf_float(s->sf, inter, count);
      /* MP3 headers carry no exact length: libsndfile's frame count is mpg123's estimate, and a
       * clean short read there is the real end of the stream, not a truncation. */
      const bool length_is_estimate = (s->info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_MPEG;
      if (got > 0 && got < count && length_is_estimate && sf_error(s->sf) == SF_ERR_NO_ERROR)
        count = got;
      if (got < count || sf_error(s->sf) != SF_ERR_NO_ERROR) {
        g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                    "%s: truncated or corrupt: decoded %lld of %lld frames (%s)", name,
                    (long long)(got < 0 ? 0 : got), (long long)count, sf_strerror(s->sf));
        ok = false;
      } else {
        const float scale = 1.0f / (float)ch;
        for (sf_count_t i = 0; i < count; i++) {
          float acc = 0.0f;
          for (int c = 0; c < ch; c++) acc += inter[i * ch + c];
          mono[i] = acc * scale;
        }
      }
    }
  }
  if (ok) ok = resample(mono, (size_t)count, s->info.samplerate, &out->samples, &out->n_samples,
                        name, err);
  if (ok && out->n_samples == 0) {
    vs_audio_clear(out);
    g_set_error(err, VS_ERROR, VS_ERROR_AUDIO, "%s: contains no audio samples", name);
    ok = false;
  }
  g_free(inter);
  g_free(mono);
  sf_close(s->sf);
  return ok;
}

bool vs_audio_decode_file(const char *path, double start_s, double end_s, vs_audio *out,
                          GError **err) {
  source s;
  memset(out, 0, sizeof *out);
  return source_open_file(&s, path, err) && decode(&s, path, start_s, end_s, out, err);
}

bool vs_audio_decode_memory(const void *data, size_t size, const char *name, double start_s,
                            double end_s, vs_audio *out, GError **err) {
  source s;
  memset(out, 0, sizeof *out);
  return source_open_memory(&s, data, size, name, err) &&
         decode(&s, name, start_s, end_s, out, err);
}

void vs_audio_clear(vs_audio *a) {
  g_free(a->samples);
  a->samples = NULL;
  a->n_samples = 0;
}
