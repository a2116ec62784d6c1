/* Audio decoding: formats, rates, channels, segments, memory == file, and bad inputs that must
 * fail with an error naming the file. Test audio is generated here with espeak-ng and sox. */
#include "audio.h"
#include "vs_error.h"
#include "vs_test.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dir;

static void sh(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  gchar *cmd = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  if (system(cmd) != 0) VS_DIE("command failed: %s", cmd);
  g_free(cmd);
}

static char *path(const char *name) {
  return g_build_filename(dir, name, NULL);
}

/* Decodes, checks the 16 kHz length against the source duration (the resampler may add or drop
 * a sample at the end: tolerance 1 sample), and that memory decoding gives the same samples. */
static void check_format(const char *name, double expect_s) {
  char *p = path(name);
  GError *err = NULL;
  vs_audio a;
  bool ok = vs_audio_decode_file(p, 0, 0, &a, &err);
  CHECK_MSG(ok, "%s: %s", name, err ? err->message : "");
  g_clear_error(&err);
  if (!ok) return;
  double probe_s = -1;
  CHECK(vs_audio_probe_file(p, &probe_s, NULL));
  CHECK_MSG(fabs(probe_s - expect_s) < 0.08, "%s: probe %.4f s, sox says %.4f s", name, probe_s,
            expect_s);
  /* The resampler flushes its delay, so the 16 kHz length is n_src * 16000 / rate up to the
   * rounding of the last output sample: tolerance 1 sample. MP3 lengths from the header are
   * mpg123's estimate without a LAME tag (encoder delay and padding): tolerance 1152 source
   * frames (one MPEG frame) + 529 (LAME's delay), i.e. under 40 ms at 44.1 kHz. */
  long want = lround(probe_s * VS_AUDIO_RATE);
  long tol = g_str_has_suffix(name, ".mp3") ? 640 : 1;
  CHECK_MSG(labs((long)a.n_samples - want) <= tol, "%s: %zu samples, expected %ld", name,
            a.n_samples, want);
  CHECK_MSG(a.source_rate > 0 && a.source_channels > 0 && a.decode_s >= 0 && a.resample_s >= 0,
            "%s: source %d Hz x %d", name, a.source_rate, a.source_channels);
  double energy = 0, peak = 0;
  for (size_t i = 0; i < a.n_samples; i++) {
    energy += a.samples[i] * a.samples[i];
    peak = fmax(peak, fabs(a.samples[i]));
  }
  CHECK_MSG(energy > 1.0 && peak <= 1.01, "%s: energy %.3f peak %.3f", name, energy, peak);
  gchar *bytes = NULL;
  gsize len = 0;
  g_file_get_contents(p, &bytes, &len, NULL);
  vs_audio m;
  CHECK(vs_audio_decode_memory(bytes, len, name, 0, 0, &m, NULL));
  CHECK_MSG(m.n_samples == a.n_samples &&
                memcmp(m.samples, a.samples, a.n_samples * sizeof(float)) == 0,
            "%s: memory decode differs from file decode", name);
  double mem_s = 0;
  CHECK(vs_audio_probe_memory(bytes, len, name, &mem_s, NULL) && mem_s == probe_s);
  vs_audio_clear(&m);
  vs_audio_clear(&a);
  g_free(bytes);
  g_free(p);
}

static void check_fails(const char *name, int code) {
  char *p = path(name);
  GError *err = NULL;
  vs_audio a;
  CHECK_MSG(!vs_audio_decode_file(p, 0, 0, &a, &err), "%s decoded", name);
  CHECK_MSG(err && strstr(err->message, p), "%s: message does not name the file: %s", name,
            err ? err->message : "(none)");
  if (code)
    CHECK_MSG(err && err->code == code, "%s: code %s, expected %s", name,
              err ? vs_error_code_name(err->code) : "-", vs_error_code_name(code));
  if (err) printf("  %-16s -> %s: %s\n", name, vs_error_code_name(err->code), err->message);
  g_clear_error(&err);
  g_free(p);
}

static double sox_seconds(const char *name) {
  char *p = path(name);
  gchar *cmd = g_strdup_printf("soxi -D '%s'", p), *out = NULL, *errout = NULL;
  GError *e = NULL;
  int status = 0;
  /* A failed soxi must say why: a silent -1 would read as a length mismatch of the decoder. */
  bool ran = g_spawn_command_line_sync(cmd, &out, &errout, &status, &e) &&
             g_spawn_check_wait_status(status, &e);
  CHECK_MSG(ran && out && *out, "%s: '%s' failed: %s %s", name, cmd, e ? e->message : "no output",
            errout ? errout : "");
  g_clear_error(&e);
  g_free(errout);
  double s = out ? g_ascii_strtod(out, NULL) : -1;
  g_free(cmd);
  g_free(out);
  g_free(p);
  return s;
}

/* Writes the first `keep` bytes of `from` to `to` (a file cut short, as by a failed copy). */
static void cut_file(const char *from, const char *to, size_t keep) {
  char *src = path(from), *dst = path(to);
  gchar *bytes = NULL;
  gsize len = 0;
  if (!g_file_get_contents(src, &bytes, &len, NULL) || keep > len) VS_DIE("cannot cut %s", src);
  if (!g_file_set_contents(dst, bytes, (gssize)keep, NULL)) VS_DIE("cannot write %s", dst);
  g_free(bytes);
  g_free(src);
  g_free(dst);
}

static size_t file_size(const char *name) {
  char *p = path(name);
  GStatBuf st;
  if (g_stat(p, &st) != 0) VS_DIE("%s: %s", p, g_strerror(errno));
  g_free(p);
  return (size_t)st.st_size;
}

/* Offset of the last Ogg page: cutting there loses the end-of-stream page but leaves whole
 * pages, which libsndfile alone would decode as a shorter, valid-looking stream. */
static size_t last_ogg_page(const char *name) {
  char *p = path(name);
  gchar *bytes = NULL;
  gsize len = 0;
  if (!g_file_get_contents(p, &bytes, &len, NULL)) VS_DIE("cannot read %s", p);
  size_t at = 0;
  for (size_t i = 0; i + 4 <= len; i++)
    if (memcmp(bytes + i, "OggS", 4) == 0) at = i;
  g_free(bytes);
  g_free(p);
  return at;
}

typedef struct {
  const char *name;
  bool ok;
  size_t n;
  double sum;
  char msg[512];
} par_case;

int main(void) {
  dir = g_dir_make_tmp("vs-audio-XXXXXX", NULL);
  sh("cd %s && espeak-ng -v en-us -w speech.wav 'Testing the audio decoder with several formats "
     "and rates.'",
     dir);
  sh("cd %s && sox speech.wav -r 22050 -c 2 -b 16 stereo22k.wav", dir);
  sh("cd %s && sox speech.wav -r 48000 flac48k.flac", dir);
  sh("cd %s && sox speech.wav -r 8000 tel8k.wav", dir);
  sh("cd %s && sox speech.wav -r 44100 -C 128 speech.mp3", dir);
  sh("cd %s && sox speech.wav -r 44100 speech.ogg", dir);
  sh("cd %s && sox speech.wav -r 16000 mono16k.wav", dir);
  const char *formats[] = {"stereo22k.wav", "flac48k.flac", "tel8k.wav",
                           "speech.mp3",    "speech.ogg",   "mono16k.wav"};
  for (size_t i = 0; i < G_N_ELEMENTS(formats); i++)
    check_format(formats[i], sox_seconds(formats[i]));
  {
    /* Ogg/Opus: Debian's sox cannot write it, libsndfile can: encode the 48 kHz speech here. */
    vs_audio src;
    gchar *wav = path("flac48k.flac"), *opus = path("speech.opus");
    SF_INFO in_info = {0};
    SNDFILE *in = sf_open(wav, SFM_READ, &in_info);
    SF_INFO out_info = {
        .samplerate = 48000, .channels = 1, .format = SF_FORMAT_OGG | SF_FORMAT_OPUS};
    SNDFILE *out = sf_open(opus, SFM_WRITE, &out_info);
    CHECK_MSG(in && out, "cannot write Ogg/Opus: %s", sf_strerror(NULL));
    if (in && out) {
      float buf[4096];
      sf_count_t n;
      while ((n = sf_readf_float(in, buf, 4096)) > 0)
        sf_writef_float(out, buf, n);
    }
    if (in) sf_close(in);
    if (out) sf_close(out);
    GError *err = NULL;
    CHECK_MSG(vs_audio_decode_file(opus, 0, 0, &src, &err), "%s", err ? err->message : "");
    g_clear_error(&err);
    /* Opus pre-skip and frame padding: within 20 ms of the source duration. */
    CHECK_MSG(fabs((double)src.n_samples / VS_AUDIO_RATE - in_info.frames / 48000.0) < 0.02,
              "opus: %zu samples for %.3f s", src.n_samples, in_info.frames / 48000.0);
    vs_audio_clear(&src);
    g_free(wav);
    g_free(opus);
    check_format("speech.opus", in_info.frames / 48000.0);
  }

  /* Downmix: a stereo file with opposite channels decodes to silence. */
  sh("cd %s && sox -n -r 16000 -c 1 tone.wav synth 1 sine 440 && sox tone.wav inv.wav vol -1 && "
     "sox -M tone.wav inv.wav cancel.wav",
     dir);
  {
    char *p = path("cancel.wav");
    vs_audio a;
    CHECK(vs_audio_decode_file(p, 0, 0, &a, NULL));
    double peak = 0;
    for (size_t i = 0; i < a.n_samples; i++)
      peak = fmax(peak, fabs(a.samples[i]));
    CHECK_MSG(a.n_samples == 16000 && peak < 1e-4, "downmix peak %.3g", peak);
    vs_audio_clear(&a);
    g_free(p);
  }

  /* Segments: [0.5, 1.25) of the 16 kHz file is exactly those samples. */
  {
    char *p = path("mono16k.wav");
    vs_audio whole, seg;
    CHECK(vs_audio_decode_file(p, 0, 0, &whole, NULL));
    CHECK(vs_audio_decode_file(p, 0.5, 1.25, &seg, NULL));
    CHECK(seg.n_samples == 12000 &&
          memcmp(seg.samples, whole.samples + 8000, 12000 * sizeof(float)) == 0);
    GError *err = NULL;
    vs_audio bad;
    CHECK(!vs_audio_decode_file(p, 100.0, 101.0, &bad, &err) && err && strstr(err->message, p));
    g_clear_error(&err);
    vs_audio_clear(&whole);
    vs_audio_clear(&seg);
    g_free(p);
  }

  /* Real speech from Debian's pocketsphinx-testdata. */
  {
    const char *real =
        "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav";
    vs_audio a;
    GError *err = NULL;
    CHECK_MSG(vs_audio_decode_file(real, 0, 0, &a, &err), "%s", err ? err->message : "");
    CHECK(a.n_samples > 16000 * 5);
    vs_audio_clear(&a);
  }

  /* Resampled segments: [0.5, 1.25) of the 22.05 kHz stereo file has 12000 +- 1 samples, equal
   * to the whole file's samples there away from the ends (the resampler's filter sees different
   * neighbours at a cut: 10 ms margins). */
  {
    char *p = path("stereo22k.wav");
    vs_audio whole, seg;
    CHECK(vs_audio_decode_file(p, 0, 0, &whole, NULL));
    CHECK(vs_audio_decode_file(p, 0.5, 1.25, &seg, NULL));
    CHECK_MSG(labs((long)seg.n_samples - 12000) <= 1, "segment: %zu samples", seg.n_samples);
    double worst = 0;
    for (size_t i = 160; i + 160 < seg.n_samples && i + 8000 < whole.n_samples; i++)
      worst = fmax(worst, fabs(seg.samples[i] - whole.samples[i + 8000]));
    CHECK_MSG(worst < 1e-3, "resampled segment differs from the whole by %.3g", worst);
    /* end past the end of the file: clamped, to the end. */
    vs_audio tail;
    CHECK(vs_audio_decode_file(p, 3.0, 1000.0, &tail, NULL));
    CHECK_MSG(labs((long)tail.n_samples - (long)(whole.n_samples - 48000)) <= 1, "tail: %zu",
              tail.n_samples);
    vs_audio_clear(&tail);
    vs_audio_clear(&whole);
    vs_audio_clear(&seg);
    g_free(p);
  }

  /* Real speech: every LibriVox clip of Debian's pocketsphinx-testdata (16 kHz mono WAV). */
  {
    const char *lv = "/usr/share/pocketsphinx/test/data/librivox";
    GDir *d = g_dir_open(lv, 0, NULL);
    int n_clips = 0;
    const char *f;
    while (d && (f = g_dir_read_name(d))) {
      if (!g_str_has_suffix(f, ".wav")) continue;
      gchar *p = g_build_filename(lv, f, NULL);
      vs_audio a;
      double probe_s = 0;
      GError *err = NULL;
      CHECK_MSG(vs_audio_decode_file(p, 0, 0, &a, &err), "%s", err ? err->message : "");
      g_clear_error(&err);
      CHECK(vs_audio_probe_file(p, &probe_s, NULL));
      CHECK_MSG(a.n_samples > 16000 && a.n_samples == (size_t)lround(probe_s * VS_AUDIO_RATE),
                "%s: %zu samples, probe %.3f s", f, a.n_samples, probe_s);
      vs_audio_clear(&a);
      g_free(p);
      n_clips++;
    }
    if (d) g_dir_close(d);
    CHECK_MSG(n_clips >= 5, "%d LibriVox clips in %s", n_clips, lv);
  }

  /* Bad inputs. Cut files: WAV inside the data chunk, FLAC mid-frame, MP3 CBR (no tag) and VBR
   * (Xing tag) at 40% and 70% (mid-frame or on a frame boundary: the walk or the tag catches
   * each), Ogg/Vorbis and Ogg/Opus mid-page and exactly at the last page. */
  sh("cd %s && : > empty.wav && head -c 4000 /dev/urandom > random.wav && "
     "sox -n -r 16000 -c 1 -b 16 zero.wav trim 0 0 && sox speech.wav -r 44100 -C -4.2 vbr.mp3 && "
     "mkdir -p adir.wav && ln -sf nowhere.wav dangling.wav",
     dir);
  cut_file("flac48k.flac", "cut.flac", 20000);
  cut_file("stereo22k.wav", "cut.wav", 30000);
  cut_file("speech.mp3", "cut40.mp3", file_size("speech.mp3") * 4 / 10);
  cut_file("speech.mp3", "cut70.mp3", file_size("speech.mp3") * 7 / 10);
  cut_file("vbr.mp3", "vbrcut40.mp3", file_size("vbr.mp3") * 4 / 10);
  cut_file("vbr.mp3", "vbrcut70.mp3", file_size("vbr.mp3") * 7 / 10);
  cut_file("speech.ogg", "cut.ogg", file_size("speech.ogg") / 2);
  cut_file("speech.ogg", "pagecut.ogg", last_ogg_page("speech.ogg"));
  cut_file("speech.opus", "cut.opus", file_size("speech.opus") / 2);
  cut_file("speech.opus", "pagecut.opus", last_ogg_page("speech.opus"));
  check_format("vbr.mp3", sox_seconds("vbr.mp3"));
  check_fails("missing.wav", VS_ERROR_IO);
  check_fails("adir.wav", VS_ERROR_IO);
  check_fails("dangling.wav", VS_ERROR_IO);
  check_fails("empty.wav", VS_ERROR_AUDIO);
  check_fails("random.wav", VS_ERROR_FORMAT);
  check_fails("zero.wav", VS_ERROR_AUDIO);
  const char *cut[] = {"cut.wav",      "cut.flac", "cut40.mp3",   "cut70.mp3", "vbrcut40.mp3",
                       "vbrcut70.mp3", "cut.ogg",  "pagecut.ogg", "cut.opus",  "pagecut.opus"};
  for (size_t i = 0; i < G_N_ELEMENTS(cut); i++) {
    check_fails(cut[i], VS_ERROR_FORMAT);
    /* The probe is header-only: it need not see every cut, but must never crash or succeed
     * with nonsense; and memory decoding refuses what file decoding refuses. */
    char *p = path(cut[i]);
    gchar *bytes = NULL;
    gsize len = 0;
    g_file_get_contents(p, &bytes, &len, NULL);
    vs_audio m;
    GError *err = NULL;
    CHECK_MSG(!vs_audio_decode_memory(bytes, len, cut[i], 0, 0, &m, &err) && err &&
                  strstr(err->message, cut[i]) && err->code == VS_ERROR_FORMAT,
              "%s: memory decode: %s", cut[i], err ? err->message : "succeeded");
    g_clear_error(&err);
    double d = -1;
    if (vs_audio_probe_file(p, &d, &err))
      CHECK_MSG(d > 0 && d < 10, "%s: probe %.3f", cut[i], d);
    else
      CHECK(err && strstr(err->message, p));
    g_clear_error(&err);
    g_free(bytes);
    g_free(p);
  }
  {
    /* Only the container size is wrong (trailing chunks lost, or a streaming writer): the
     * audio is whole and decodes. */
    char *p = path("mono16k.wav"), *q = path("riffbig.wav");
    gchar *bytes = NULL;
    gsize len = 0;
    g_file_get_contents(p, &bytes, &len, NULL);
    guint32 riff = GUINT32_FROM_LE(*(guint32 *)(bytes + 4)) + 1000;
    riff = GUINT32_TO_LE(riff);
    memcpy(bytes + 4, &riff, 4);
    g_file_set_contents(q, bytes, (gssize)len, NULL);
    vs_audio a, b;
    GError *err = NULL;
    CHECK_MSG(vs_audio_decode_file(q, 0, 0, &a, &err), "%s", err ? err->message : "");
    g_clear_error(&err);
    CHECK(vs_audio_decode_file(p, 0, 0, &b, NULL));
    CHECK(a.n_samples == b.n_samples && memcmp(a.samples, b.samples, a.n_samples * 4) == 0);
    vs_audio_clear(&a);
    vs_audio_clear(&b);
    g_free(bytes);
    g_free(p);
    g_free(q);
  }
  {
    /* Float WAV holding a NaN: corrupt data, refused rather than poisoning the log-mel. */
    char *p = path("nan.wav");
    SF_INFO info = {.samplerate = 16000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *sf = sf_open(p, SFM_WRITE, &info);
    float x[1600];
    for (int i = 0; i < 1600; i++)
      x[i] = 0.1f * sinf(i * 0.1f);
    x[1234] = NAN;
    sf_writef_float(sf, x, 1600);
    sf_close(sf);
    g_free(p);
    check_fails("nan.wav", VS_ERROR_FORMAT);
  }
  {
    GError *err = NULL;
    vs_audio a;
    double d;
    CHECK(!vs_audio_decode_memory("RIFF", 4, "mem:short", 0, 0, &a, &err) && err &&
          strstr(err->message, "mem:short"));
    g_clear_error(&err);
    CHECK(!vs_audio_decode_memory("", 0, "mem:empty", 0, 0, &a, &err) && err &&
          err->code == VS_ERROR_AUDIO && strstr(err->message, "mem:empty"));
    g_clear_error(&err);
    char *p = path("random.wav");
    CHECK(!vs_audio_probe_file(p, &d, &err) && err && strstr(err->message, p));
    g_clear_error(&err);
    g_free(p);
    p = path("missing.flac");
    CHECK(!vs_audio_probe_file(p, &d, &err) && err && err->code == VS_ERROR_IO &&
          strstr(err->message, p));
    g_clear_error(&err);
    g_free(p);
  }

  /* Thread safety: good and bad files decoded from 8 threads at once give what one thread
   * gives, and each failure names its own file (libsndfile's open error is process-wide). */
  {
    const char *names[] = {"stereo22k.wav", "flac48k.flac", "speech.mp3", "speech.ogg",
                           "speech.opus",   "tel8k.wav",    "random.wav", "zero.wav",
                           "cut.flac",      "cut40.mp3",    "vbr.mp3",    "pagecut.ogg"};
    enum { N = G_N_ELEMENTS(names), REPS = 6 };
    par_case serial[N], par[N * REPS];
    for (int pass = 0; pass < 2; pass++) {
      const int total = pass ? N * REPS : N;
#pragma omp parallel for schedule(dynamic) num_threads(8) if (pass)
      for (int k = 0; k < total; k++) {
        par_case *c = pass ? &par[k] : &serial[k];
        c->name = names[k % N];
        char *p = path(c->name);
        vs_audio a;
        GError *err = NULL;
        c->ok = vs_audio_decode_file(p, 0, 0, &a, &err);
        c->n = c->ok ? a.n_samples : 0;
        c->sum = 0;
        for (size_t i = 0; i < c->n; i++)
          c->sum += a.samples[i] * (double)(i % 97);
        g_strlcpy(c->msg, err ? err->message : "", sizeof c->msg);
        if (c->ok) vs_audio_clear(&a);
        g_clear_error(&err);
        g_free(p);
      }
    }
    int same = 0;
    for (int k = 0; k < N * REPS; k++) {
      const par_case *s = &serial[k % N], *c = &par[k];
      bool eq = s->ok == c->ok && s->n == c->n && s->sum == c->sum && strcmp(s->msg, c->msg) == 0;
      CHECK_MSG(eq, "%s: threaded decode differs: %s / %s", c->name, s->msg, c->msg);
      same += eq;
    }
    printf("  threaded decode: %d of %d identical to serial\n", same, N * REPS);
  }
  sh("rm -rf '%s'", dir);
  g_free(dir);
  return vs_test_finish();
}
