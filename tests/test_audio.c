/* Audio decoding: formats, rates, channels, segments, memory == file, and bad inputs that must
 * fail with an error naming the file. Test audio is generated here with espeak-ng and sox. */
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sndfile.h>

#include "audio.h"
#include "vs_error.h"
#include "vs_test.h"

static char *dir;

static void sh(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  gchar *cmd = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  if (system(cmd) != 0) VS_DIE("command failed: %s", cmd);
  g_free(cmd);
}

static char *path(const char *name) { return g_build_filename(dir, name, NULL); }

/* Decodes, checks the 16 kHz length against the source duration (the resampler may add or drop
 * a sample at the ends: tolerance 2 samples), and that memory decoding gives the same samples. */
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
  CHECK_MSG(fabs(probe_s - expect_s) < 0.08, "%s: probe %.4f s, sox says %.4f s", name, probe_s, expect_s);
  long want = lround(probe_s * VS_AUDIO_RATE);
  /* MP3 durations from the header are mpg123's estimate (encoder delay and padding): 25 ms. */
  long tol = g_str_has_suffix(name, ".mp3") ? 400 : 2;
  CHECK_MSG(labs((long)a.n_samples - want) <= tol, "%s: %zu samples, expected %ld", name,
            a.n_samples, want);
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
  if (code) CHECK_MSG(err && err->code == code, "%s: code %s, expected %s", name,
                      err ? vs_error_code_name(err->code) : "-", vs_error_code_name(code));
  if (err) printf("  %-16s -> %s: %s\n", name, vs_error_code_name(err->code), err->message);
  g_clear_error(&err);
  g_free(p);
}

static double sox_seconds(const char *name) {
  char *p = path(name);
  gchar *cmd = g_strdup_printf("soxi -D '%s'", p), *out = NULL;
  g_spawn_command_line_sync(cmd, &out, NULL, NULL, NULL);
  double s = out ? g_ascii_strtod(out, NULL) : -1;
  g_free(cmd);
  g_free(out);
  g_free(p);
  return s;
}

int main(void) {
  dir = g_dir_make_tmp("vs-audio-XXXXXX", NULL);
  sh("cd %s && espeak-ng -v en-us -w speech.wav 'Testing the audio decoder with several formats and rates.'", dir);
  sh("cd %s && sox speech.wav -r 22050 -c 2 -b 16 stereo22k.wav", dir);
  sh("cd %s && sox speech.wav -r 48000 flac48k.flac", dir);
  sh("cd %s && sox speech.wav -r 8000 tel8k.wav", dir);
  sh("cd %s && sox speech.wav -r 44100 -C 128 speech.mp3", dir);
  sh("cd %s && sox speech.wav -r 44100 speech.ogg", dir);
  sh("cd %s && sox speech.wav -r 16000 mono16k.wav", dir);
  const char *formats[] = {"stereo22k.wav", "flac48k.flac", "tel8k.wav", "speech.mp3",
                           "speech.ogg", "mono16k.wav"};
  for (size_t i = 0; i < G_N_ELEMENTS(formats); i++) check_format(formats[i], sox_seconds(formats[i]));
  {
    /* Ogg/Opus: Debian's sox cannot write it, libsndfile can: encode the 48 kHz speech here. */
    vs_audio src;
    gchar *wav = path("flac48k.flac"), *opus = path("speech.opus");
    SF_INFO in_info = {0};
    SNDFILE *in = sf_open(wav, SFM_READ, &in_info);
    SF_INFO out_info = {.samplerate = 48000, .channels = 1, .format = SF_FORMAT_OGG | SF_FORMAT_OPUS};
    SNDFILE *out = sf_open(opus, SFM_WRITE, &out_info);
    CHECK_MSG(in && out, "cannot write Ogg/Opus: %s", sf_strerror(NULL));
    if (in && out) {
      float buf[4096];
      sf_count_t n;
      while ((n = sf_readf_float(in, buf, 4096)) > 0) sf_writef_float(out, buf, n);
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
  }

  /* Downmix: a stereo file with opposite channels decodes to silence. */
  sh("cd %s && sox -n -r 16000 -c 1 tone.wav synth 1 sine 440 && sox tone.wav inv.wav vol -1 && "
     "sox -M tone.wav inv.wav cancel.wav", dir);
  {
    char *p = path("cancel.wav");
    vs_audio a;
    CHECK(vs_audio_decode_file(p, 0, 0, &a, NULL));
    double peak = 0;
    for (size_t i = 0; i < a.n_samples; i++) peak = fmax(peak, fabs(a.samples[i]));
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
    const char *real = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav";
    vs_audio a;
    GError *err = NULL;
    CHECK_MSG(vs_audio_decode_file(real, 0, 0, &a, &err), "%s", err ? err->message : "");
    CHECK(a.n_samples > 16000 * 5);
    vs_audio_clear(&a);
  }

  /* Bad inputs. */
  sh("cd %s && : > empty.wav && head -c 4000 /dev/urandom > random.wav && "
     "sox -n -r 16000 -c 1 -b 16 zero.wav trim 0 0 && "
     "head -c 20000 flac48k.flac > cut.flac && head -c 3000 speech.mp3 > cut.mp3 && "
     "head -c 30000 stereo22k.wav > cut.wav && mkdir -p adir.wav && ln -sf nowhere.wav dangling.wav", dir);
  check_fails("missing.wav", VS_ERROR_IO);
  check_fails("adir.wav", VS_ERROR_IO);
  check_fails("dangling.wav", VS_ERROR_IO);
  check_fails("empty.wav", VS_ERROR_AUDIO);
  check_fails("random.wav", VS_ERROR_FORMAT);
  check_fails("zero.wav", VS_ERROR_AUDIO);
  check_fails("cut.wav", VS_ERROR_FORMAT);
  check_fails("cut.flac", 0);
  {
    /* A cut MP3 is still a valid (shorter) MP3 stream: it must decode or fail cleanly. */
    char *p = path("cut.mp3");
    vs_audio a;
    GError *err = NULL;
    bool ok = vs_audio_decode_file(p, 0, 0, &a, &err);
    CHECK(ok || (err && strstr(err->message, p)));
    if (ok) vs_audio_clear(&a);
    g_clear_error(&err);
    g_free(p);
  }
  {
    GError *err = NULL;
    vs_audio a;
    CHECK(!vs_audio_decode_memory("RIFF", 4, "mem:short", 0, 0, &a, &err) && err &&
          strstr(err->message, "mem:short"));
    g_clear_error(&err);
  }
  sh("rm -rf '%s'", dir);
  g_free(dir);
  return vs_test_finish();
}
