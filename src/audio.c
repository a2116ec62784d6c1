/* Audio decoding with libsndfile, downmix, and libsoxr resampling to 16 kHz. See src/audio.h.
 *
 * Decoding streams: blocks of frames are read, downmixed and fed to a streaming soxr resampler,
 * so memory stays at the 16 kHz output plus one block, whatever the source's rate and channels.
 */
#include "audio.h"

#include "vs_error.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Frames per read: large enough that per-call overhead in libsndfile and soxr vanishes, small
 * enough that the interleaved block stays in L2 (8192 x 2 channels x 4 bytes = 64 KiB). */
#define BLOCK_FRAMES 8192

/* Resampler preset. Measured by bench/frontend_bench.c on its 1.3 h mixed corpus (22.05-48 kHz,
 * one core): SOXR_HQ (20-bit, 91% passband) 6100x real time, SOXR_MQ (16-bit) 6500x: 6% for
 * the better preset, whose aliasing stays far below the -80 dB floor of Whisper's (max - 8)
 * log clamp. Resampling is about a fifth of the front end's time either way. */
#define RESAMPLE_QUALITY SOXR_HQ

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- libsndfile over a memory buffer (tar members are read in place, never extracted) ---- */
typedef struct {
  const unsigned char *data;
  sf_count_t size, pos;
} mem_io;

static sf_count_t mem_len(void *u) {
  return ((mem_io *)u)->size;
}
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
  if (n <= 0) return 0;
  memcpy(dst, m->data + m->pos, (size_t)n);
  m->pos += n;
  return n;
}
static sf_count_t mem_write(const void *src, sf_count_t n, void *u) {
  return 0;
}
static sf_count_t mem_tell(void *u) {
  return ((mem_io *)u)->pos;
}

typedef struct {
  SNDFILE *sf;
  SF_INFO info;
  mem_io mem;
  const char *name;
  GMappedFile *map; /* a file's bytes, mapped on demand for the MP3 frame walk */
  int fd;           /* file sources: owned by libsndfile once sf_open_fd succeeds */
} source;

/* libsndfile keeps the reason an open failed in one process-wide slot (sf_strerror(NULL)):
 * opens are serialised so that each thread reads its own failure. Opening parses only headers,
 * so the lock is short; decoding runs unlocked on the per-handle state. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;

static bool open_failed(const char *name, const char *why, GError **err) {
  VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: not readable audio: %s", name, why);
}

static bool source_open_file(source *s, const char *path, GError **err) {
  memset(s, 0, sizeof *s);
  s->name = path;
  s->fd = -1;
  /* open + fstat rather than stat + sf_open: errno is the real reason (ENOENT, EACCES), and
   * what was checked is what is read. */
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) VS_FAIL_ERRNO(err, false, "cannot open audio", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    VS_FAIL_ERRNO(err, false, "cannot stat audio", path);
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    VS_FAIL(err, VS_ERROR_IO, false, "%s: is a directory, not audio", path);
  }
  if (st.st_size == 0) {
    close(fd);
    VS_FAIL(err, VS_ERROR_AUDIO, false, "%s: empty file (0 bytes)", path);
  }
  char why[256] = "";
  pthread_mutex_lock(&open_lock);
  s->sf = sf_open_fd(fd, SFM_READ, &s->info, SF_FALSE);
  if (!s->sf) g_strlcpy(why, sf_strerror(NULL), sizeof why);
  pthread_mutex_unlock(&open_lock);
  if (!s->sf) {
    close(fd);
    return open_failed(path, why, err);
  }
  s->fd = fd;
  return true;
}

static bool source_open_memory(source *s, const void *data, size_t size, const char *name,
                               GError **err) {
  memset(s, 0, sizeof *s);
  s->name = name;
  s->fd = -1;
  if (size == 0) VS_FAIL(err, VS_ERROR_AUDIO, false, "%s: empty file (0 bytes)", name);
  s->mem = (mem_io){data, (sf_count_t)size, 0};
  SF_VIRTUAL_IO io = {mem_len, mem_seek, mem_read, mem_write, mem_tell};
  char why[256] = "";
  pthread_mutex_lock(&open_lock);
  s->sf = sf_open_virtual(&io, SFM_READ, &s->info, &s->mem);
  if (!s->sf) g_strlcpy(why, sf_strerror(NULL), sizeof why);
  pthread_mutex_unlock(&open_lock);
  if (!s->sf) return open_failed(name, why, err);
  return true;
}

static void source_close(source *s) {
  if (s->sf) sf_close(s->sf);
  if (s->fd >= 0) close(s->fd);
  if (s->map) g_mapped_file_unref(s->map);
  s->sf = NULL;
  s->fd = -1;
  s->map = NULL;
}

static bool is_mpeg(const source *s) {
  return (s->info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_MPEG;
}

static bool is_ogg(const source *s) {
  return (s->info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_OGG;
}

/* libsndfile clamps a data chunk that claims more bytes than the file holds and notes it in its
 * log as "data : CLAIMED (should be PRESENT)" (WAV/W64/RF64 "data", AIFF "SSND"). That is a cut
 * file. The same note on the container line alone (RIFF/FORM size) only means trailing chunks
 * are missing or the writer streamed, and the audio itself is whole. */
static bool header_says_truncated(source *s) {
  char log[8192];
  sf_command(s->sf, SFC_GET_LOG_INFO, log, sizeof log);
  gchar **lines = g_strsplit(log, "\n", -1);
  bool cut = false;
  for (gchar **l = lines; *l && !cut; l++) {
    const char *t = *l;
    while (*t == ' ')
      t++;
    if (!strstr(t, "should be")) continue;
    cut = g_str_has_prefix(t, "data ") || g_str_has_prefix(t, "data:") ||
          g_str_has_prefix(t, "SSND") || g_str_has_prefix(t, "ssnd");
  }
  g_strfreev(lines);
  return cut;
}

static bool source_check(source *s, GError **err) {
  const char *name = s->name;
  if (s->info.channels <= 0 || s->info.samplerate <= 0)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: bad header (%d channels, %d Hz)", name,
            s->info.channels, s->info.samplerate);
  if (header_says_truncated(s))
    VS_FAIL(err, VS_ERROR_FORMAT, false,
            "%s: truncated (the header promises more audio than the file holds)", name);
  /* An Ogg stream's length is the granule position of its last page; libsndfile reports an
   * unknown length when it cannot find one, i.e. when the end of the file was cut off. */
  if (is_ogg(s) && s->info.frames == SF_COUNT_MAX)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: truncated Ogg stream (no final page)", name);
  if (s->info.frames <= 0)
    VS_FAIL(err, VS_ERROR_AUDIO, false, "%s: contains no audio samples", name);
  return true;
}

/* ---- MP3 frame walk ----
 * An MP3 header carries no exact length: libsndfile's frame count is mpg123's estimate, and a
 * file cut mid-stream still decodes, silently shorter. Walking the frame headers finds a last
 * frame that runs past the end of the data, and compares the count with the Xing/Info tag's
 * frame count when the encoder wrote one (LAME does for VBR; sox's CBR files have none). A
 * cut that falls exactly on a frame boundary of an untagged file is undetectable by design. */
static int mp3_frame_bytes(const uint8_t *h, int *version_out, int *mono_out) {
  static const short br_v1[3][16] = {
      {0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448, 0},
      {0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 0},
      {0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0}};
  static const short br_v2[3][16] = {
      {0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256, 0},
      {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0},
      {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0}};
  static const int sr_v1[3] = {44100, 48000, 32000};
  if (h[0] != 0xFF || (h[1] & 0xE0) != 0xE0) return 0;
  const int version = (h[1] >> 3) & 3;     /* 0: 2.5, 1: reserved, 2: MPEG-2, 3: MPEG-1 */
  const int layer = 4 - ((h[1] >> 1) & 3); /* 1, 2, 3; 4 = reserved */
  const int br_idx = h[2] >> 4, sr_idx = (h[2] >> 2) & 3, pad = (h[2] >> 1) & 1;
  if (version == 1 || layer == 4 || br_idx == 0 || br_idx == 15 || sr_idx == 3) return 0;
  const int sr = sr_v1[sr_idx] >> (version == 3 ? 0 : version == 2 ? 1 : 2);
  const int kbps = version == 3 ? br_v1[layer - 1][br_idx] : br_v2[layer - 1][br_idx];
  if (version_out) *version_out = version;
  if (mono_out) *mono_out = (h[3] >> 6) == 3;
  if (layer == 1) return (12 * kbps * 1000 / sr + pad) * 4;
  if (layer == 3 && version != 3) return 72 * kbps * 1000 / sr + pad;
  return 144 * kbps * 1000 / sr + pad;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool mp3_check(const uint8_t *d, size_t n, const char *name, GError **err) {
  size_t pos = 0, end = n;
  if (n >= 10 && memcmp(d, "ID3", 3) == 0) {
    pos = 10 + ((size_t)(d[6] & 0x7f) << 21 | (size_t)(d[7] & 0x7f) << 14 |
                (size_t)(d[8] & 0x7f) << 7 | (d[9] & 0x7f));
    if (d[5] & 0x10) pos += 10; /* footer */
  }
  if (end >= 128 && memcmp(d + end - 128, "TAG", 3) == 0) end -= 128; /* ID3v1 */
  if (end >= 32 && memcmp(d + end - 32, "APETAGEX", 8) == 0) {
    const uint8_t *f = d + end - 32;
    size_t tag = (size_t)f[12] | (size_t)f[13] << 8 | (size_t)f[14] << 16 | (size_t)f[15] << 24;
    if (f[23] & 0x80) tag += 32; /* the tag also has a header */
    end = tag <= end ? end - tag : end;
  }
  /* The first frame is where two consecutive valid headers agree; give up (no verdict) if the
   * start is not found near the top, as mpg123 itself resynchronised there. */
  size_t first = SIZE_MAX;
  for (size_t p = pos; p + 4 <= end && p < pos + 65536; p++) {
    int len = mp3_frame_bytes(d + p, NULL, NULL);
    if (len > 0 &&
        (p + len == end || (p + len + 4 <= end && mp3_frame_bytes(d + p + len, NULL, NULL) > 0))) {
      first = p;
      break;
    }
  }
  if (first == SIZE_MAX) return true;
  int version = 3, mono = 0;
  mp3_frame_bytes(d + first, &version, &mono);
  const size_t side = version == 3 ? (mono ? 17 : 32) : (mono ? 9 : 17);
  long tagged_frames = -1; /* from a Xing/Info tag: frames after the tag frame */
  const uint8_t *x = d + first + 4 + side;
  if (x + 12 <= d + end && (memcmp(x, "Xing", 4) == 0 || memcmp(x, "Info", 4) == 0) &&
      (be32(x + 4) & 1))
    tagged_frames = (long)be32(x + 8);

  long frames = 0;
  size_t p = first;
  while (p + 4 <= end) {
    int len = mp3_frame_bytes(d + p, NULL, NULL);
    if (len <= 0) break; /* junk after the stream: mpg123 skips it, so do we */
    if (p + (size_t)len > end)
      VS_FAIL(err, VS_ERROR_FORMAT, false,
              "%s: truncated MP3 (frame %ld at byte %zu needs %d bytes, %zu remain)", name, frames,
              p, len, end - p);
    p += len;
    frames++;
  }
  if (tagged_frames >= 0 && frames - 1 < tagged_frames)
    VS_FAIL(err, VS_ERROR_FORMAT, false,
            "%s: truncated MP3 (the Xing/Info tag lists %ld frames, the file holds %ld)", name,
            tagged_frames, frames - 1);
  return true;
}

/* An Ogg stream ends with a page flagged end-of-stream. libsndfile finds the length from the
 * last page's granule position whether or not that page is the real end, so a file cut at a
 * page boundary would decode silently shorter: the flag tells. */
static bool ogg_check(const uint8_t *d, size_t n, const char *name, GError **err) {
  const size_t lo = n > 65536 + 27 ? n - 65536 - 27 : 0; /* a page is at most 65307 bytes */
  if (n < 27) return true;
  for (size_t q = n - 27 + 1; q-- > lo;) {
    const size_t p = q;
    if (memcmp(d + p, "OggS", 4) != 0 || d[p + 4] != 0) continue;
    const size_t nseg = d[p + 26];
    if (p + 27 + nseg > n) return true; /* a stray "OggS" in the payload: no verdict */
    size_t size = 27 + nseg;
    for (size_t k = 0; k < nseg; k++)
      size += d[p + 27 + k];
    if (p + size != n) return true; /* trailing bytes or a false match: no verdict */
    if (!(d[p + 5] & 0x04))
      VS_FAIL(err, VS_ERROR_FORMAT, false,
              "%s: truncated Ogg stream (the last page is not flagged end-of-stream)", name);
    return true;
  }
  return true;
}

/* Container checks that need the bytes themselves (MP3 frame walk, Ogg end-of-stream page). */
static bool source_bytes_check(source *s, GError **err) {
  if (!is_mpeg(s) && !is_ogg(s)) return true;
  const uint8_t *d;
  size_t n;
  if (s->fd >= 0) {
    GError *local = NULL;
    s->map = g_mapped_file_new_from_fd(s->fd, FALSE, &local);
    if (!s->map) {
      g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot map for reading: %s", s->name,
                  local->message);
      g_error_free(local);
      return false;
    }
    d = (const uint8_t *)g_mapped_file_get_contents(s->map);
    n = g_mapped_file_get_length(s->map);
  } else {
    d = s->mem.data;
    n = (size_t)s->mem.size;
  }
  return is_mpeg(s) ? mp3_check(d, n, s->name, err) : ogg_check(d, n, s->name, err);
}

static double source_duration(const source *s) {
  return (double)s->info.frames / s->info.samplerate;
}

static bool probe(source *s, double *duration_s, GError **err) {
  bool ok = source_check(s, err);
  if (ok) *duration_s = source_duration(s);
  source_close(s);
  return ok;
}

bool vs_audio_probe_file(const char *path, double *duration_s, GError **err) {
  source s;
  return source_open_file(&s, path, err) && probe(&s, duration_s, err);
}

bool vs_audio_probe_memory(const void *data, size_t size, const char *name, double *duration_s,
                           GError **err) {
  source s;
  return source_open_memory(&s, data, size, name, err) && probe(&s, duration_s, err);
}

/* ---- decode ---- */

typedef struct {
  float *buf; /* host, g_malloc'd output at 16 kHz */
  size_t n, cap;
} out_buf;

static void out_reserve(out_buf *o, size_t more) {
  if (o->n + more <= o->cap) return;
  size_t cap = o->cap ? o->cap : 4096;
  while (cap < o->n + more)
    cap *= 2;
  o->buf = g_realloc_n(o->buf, cap, sizeof(float));
  o->cap = cap;
}

/* Feeds n mono samples (n = 0, in = NULL: end of input) and collects all output available. */
static bool resample_push(soxr_t rs, double ratio, const float *in, size_t n, out_buf *o,
                          const char *name, GError **err) {
  size_t used = 0;
  for (;;) {
    out_reserve(o, (size_t)ceil((n - used) * ratio) + 256);
    size_t idone = 0, odone = 0;
    soxr_error_t e = soxr_process(rs, in ? in + used : NULL, n - used, &idone, o->buf + o->n,
                                  o->cap - o->n, &odone);
    if (e) VS_FAIL(err, VS_ERROR_AUDIO, false, "%s: resampling failed: %s", name, e);
    used += idone;
    o->n += odone;
    /* Input: done when all of it is consumed and the output was not full (soxr holds back
     * nothing more). Flush: done when a call with room to spare yields nothing. */
    const bool room_left = o->n < o->cap;
    if (in ? (used == n && room_left) : (odone == 0 && room_left)) return true;
  }
}

/* faster-whisper's decode_audio hands the model 16-bit samples (PyAV converts to s16 with
 * rint(x * 32768), clipped; it divides by 32768 again), whatever the source was. Whisper's
 * greedy decoding is chaotic enough that the last bit of a float decoder's output can turn a
 * whole 30 s chunk into a different transcript, so the same rounding here makes compressed and
 * resampled inputs give the reference's transcripts; 16-bit PCM sources pass through exactly. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
round_to_s16_grid(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float v = __builtin_rintf(x[i] * 32768.0f);
    v = v < -32768.0f ? -32768.0f : (v > 32767.0f ? 32767.0f : v);
    x[i] = v * (1.0f / 32768.0f);
  }
}

static bool decode(source *s, double start_s, double end_s, vs_audio *out, GError **err) {
  const char *name = s->name;
  double t_resample = 0, t0 = now_s();
  if (!source_check(s, err) || !source_bytes_check(s, err)) return false;
  const int ch = s->info.channels, rate = s->info.samplerate;
  sf_count_t first = 0, count = s->info.frames;
  if (start_s > 0 || end_s > 0) {
    first = start_s > 0 ? (sf_count_t)llround(start_s * rate) : 0;
    sf_count_t last = end_s > 0 ? (sf_count_t)llround(end_s * rate) : s->info.frames;
    if (last > s->info.frames) last = s->info.frames;
    if (first >= last)
      VS_FAIL(err, VS_ERROR_AUDIO, false,
              "%s: segment [%.3f, %.3f) s holds no audio (the file is %.3f s)", name, start_s,
              end_s, source_duration(s));
    count = last - first;
    if (first > 0 && sf_seek(s->sf, first, SEEK_SET) < 0)
      VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: cannot seek to %.3f s: %s", name, start_s,
              sf_strerror(s->sf));
  }

  const double ratio = (double)VS_AUDIO_RATE / rate;
  soxr_t rs = NULL;
  if (rate != VS_AUDIO_RATE) {
    soxr_error_t e = NULL;
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_quality_spec_t q = soxr_quality_spec(RESAMPLE_QUALITY, 0);
    soxr_runtime_spec_t rt = soxr_runtime_spec(1); /* the caller's threads give the parallelism */
    rs = soxr_create(rate, VS_AUDIO_RATE, 1, &e, &io, &q, &rt);
    if (!rs)
      VS_FAIL(err, VS_ERROR_AUDIO, false, "%s: cannot resample %d Hz -> %d Hz: %s", name, rate,
              VS_AUDIO_RATE, e ? e : "soxr_create failed");
  }

  const int sub = s->info.format & SF_FORMAT_SUBMASK;
  const bool check_finite = sub == SF_FORMAT_FLOAT || sub == SF_FORMAT_DOUBLE;
  out_buf o = {0};
  /* Expected output size, so the common case never reallocates. */
  out_reserve(&o, (size_t)ceil((double)count * ratio) + 256);
  float *inter = ch > 1 ? g_new(float, (size_t)BLOCK_FRAMES *ch) : NULL;
  float *mono = rs ? g_new(float, BLOCK_FRAMES) : NULL;
  sf_count_t got = 0;
  bool ok = true;
  while (ok && got < count) {
    const sf_count_t want = MIN(count - got, BLOCK_FRAMES);
    /* Where no resampling happens, mono samples land directly in the output. */
    float *dst = mono;
    if (!rs) {
      out_reserve(&o, (size_t)want);
      dst = o.buf + o.n;
    }
    sf_count_t n = sf_readf_float(s->sf, ch > 1 ? inter : dst, want);
    if (n <= 0) break;
    if (ch > 1) {
      const float scale = 1.0f / (float)ch;
      for (sf_count_t i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int c = 0; c < ch; c++)
          acc += inter[i * ch + c];
        dst[i] = acc * scale;
      }
    }
    if (check_finite) {
      for (sf_count_t i = 0; i < n; i++)
        if (!isfinite(dst[i])) {
          g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                      "%s: non-finite sample at %.3f s (corrupt float data)", name,
                      (double)(first + got + i) / rate);
          ok = false;
          break;
        }
    }
    got += n;
    if (!ok) break;
    double tb = now_s();
    if (rs) {
      ok = resample_push(rs, ratio, mono, (size_t)n, &o, name, err);
      t_resample += now_s() - tb;
    } else {
      o.n += (size_t)n;
    }
  }
  if (ok && sf_error(s->sf) != SF_ERR_NO_ERROR) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: corrupt or truncated after %.3f s: %s", name,
                (double)(first + got) / rate, sf_strerror(s->sf));
    ok = false;
  }
  /* A short read is a truncated file, except for MP3 whose frame count is an estimate (the frame
   * walk above has already refused cut MP3s). */
  if (ok && got < count && !is_mpeg(s)) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                "%s: truncated: decoded %lld of the %lld frames the header promises", name,
                (long long)got, (long long)count);
    ok = false;
  }
  if (ok && got == 0) {
    g_set_error(err, VS_ERROR, VS_ERROR_AUDIO, "%s: contains no audio samples", name);
    ok = false;
  }
  if (ok && rs) {
    double tb = now_s();
    ok = resample_push(rs, ratio, NULL, 0, &o, name, err);
    t_resample += now_s() - tb;
  }
  if (rs) soxr_delete(rs);
  g_free(inter);
  g_free(mono);
  if (ok && o.n == 0) {
    g_set_error(err, VS_ERROR, VS_ERROR_AUDIO, "%s: no samples left after resampling to %d Hz",
                name, VS_AUDIO_RATE);
    ok = false;
  }
  if (!ok) {
    g_free(o.buf);
    return false;
  }
  round_to_s16_grid(o.buf, o.n);
  out->samples = o.buf;
  out->n_samples = o.n;
  out->source_rate = rate;
  out->source_channels = ch;
  out->resample_s = t_resample;
  /* Opening, header checks and the MP3 walk count as decoding. */
  out->decode_s = now_s() - t0 - t_resample;
  return true;
}

bool vs_audio_decode_file(const char *path, double start_s, double end_s, vs_audio *out,
                          GError **err) {
  source s;
  memset(out, 0, sizeof *out);
  if (!source_open_file(&s, path, err)) return false;
  bool ok = decode(&s, start_s, end_s, out, err);
  source_close(&s);
  return ok;
}

bool vs_audio_decode_memory(const void *data, size_t size, const char *name, double start_s,
                            double end_s, vs_audio *out, GError **err) {
  source s;
  memset(out, 0, sizeof *out);
  if (!source_open_memory(&s, data, size, name, err)) return false;
  bool ok = decode(&s, start_s, end_s, out, err);
  source_close(&s);
  return ok;
}

void vs_audio_clear(vs_audio *a) {
  g_free(a->samples);
  memset(a, 0, sizeof *a);
}
