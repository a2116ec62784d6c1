/* Silero VAD in C against faster-whisper + onnxruntime (tests/helpers/vad_reference.py):
 * per-window probabilities, speech segments and chunks on real, synthetic, noise and silent
 * audio; conversion and load errors on bad files.
 *
 * argv[1]: the helper script. Env: VOXSHARD_SILERO_ONNX (default: faster-whisper's asset in the
 * venv), VOXSHARD_PYTHON (default: $VOXSHARD_CACHE/venv/bin/python, ~/.cache/voxshard/venv). */
#include "vad.h"
#include "vs_error.h"
#include "vs_test.h"

#include <glib/gstdio.h>
#include <hdf5.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define LIBRIVOX "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-"
#define PROB_TOL 1e-4

static char *tmpdir;

static char *tmp_path(const char *name) {
  return g_build_filename(tmpdir, name, NULL);
}

static void run_cmd(const char *const *argv) {
  gchar *out = NULL, *errs = NULL;
  gint status = 0;
  GError *err = NULL;
  if (!g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &errs,
                    &status, &err))
    VS_DIE("cannot run %s: %s", argv[0], err->message);
  if (!g_spawn_check_wait_status(status, &err))
    VS_DIE("%s failed: %s\n%s", argv[0], err->message, errs ? errs : "");
  g_free(out);
  g_free(errs);
}

static float *read_f32(const char *path, size_t *n) {
  gchar *bytes;
  gsize len;
  if (!g_file_get_contents(path, &bytes, &len, NULL) || len % 4) VS_DIE("cannot read %s", path);
  *n = len / 4;
  return (float *)bytes;
}

static void write_f32(const char *path, const float *x, size_t n) {
  if (!g_file_set_contents(path, (const char *)x, (gssize)(n * 4), NULL))
    VS_DIE("cannot write %s", path);
}

/* sox to raw float32 16 kHz mono, with optional effects after the output spec */
static void sox_raw(const char *const *inputs, int n_in, const char *out, const char *const *fx) {
  const char *argv[64];
  int a = 0;
  argv[a++] = "sox";
  for (int i = 0; i < n_in; i++)
    argv[a++] = inputs[i];
  const char *spec[] = {"-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", out};
  for (size_t i = 0; i < G_N_ELEMENTS(spec); i++)
    argv[a++] = spec[i];
  for (int i = 0; fx && fx[i]; i++)
    argv[a++] = fx[i];
  argv[a++] = "rate";
  argv[a++] = "16000";
  argv[a] = NULL;
  run_cmd(argv);
}

static void espeak(const char *text, const char *wav, const char *pad_before,
                   const char *pad_after) {
  char *tmp = g_strconcat(wav, ".raw.wav", NULL);
  run_cmd((const char *[]){"espeak-ng", "-w", tmp, text, NULL});
  run_cmd((const char *[]){"sox", tmp, "-r", "16000", "-c", "1", wav, "pad", pad_before, pad_after,
                           NULL});
  g_unlink(tmp);
  g_free(tmp);
}

typedef struct {
  const char *name;
  char *path;
} audio_file;

static int make_audio(audio_file *af) {
  int n = 0;
  char *p;
  /* real speech */
  p = tmp_path("librivox_0870.f32");
  sox_raw((const char *[]){LIBRIVOX "0870.wav"}, 1, p, NULL);
  af[n++] = (audio_file){"librivox_0870", p};
  p = tmp_path("librivox_all.f32");
  const char *five[] = {LIBRIVOX "0870.wav", LIBRIVOX "0880.wav", LIBRIVOX "0890.wav",
                        LIBRIVOX "0920.wav", LIBRIVOX "0930.wav"};
  sox_raw(five, 5, p, NULL);
  af[n++] = (audio_file){"librivox_all", p};
  /* about 50 s of nearly continuous speech: exercises the 30 s cut and chunking */
  p = tmp_path("librivox_long.f32");
  const char *ten[] = {five[0], five[1], five[2], five[3], five[4],
                       five[2], five[0], five[4], five[3], five[1]};
  sox_raw(ten, 10, p, NULL);
  af[n++] = (audio_file){"librivox_long", p};

  /* generated speech separated by known silences: 2.5 s, 0.3 s, 4 s */
  char *w1 = tmp_path("s1.wav"), *w2 = tmp_path("s2.wav"), *w3 = tmp_path("s3.wav"),
       *w4 = tmp_path("s4.wav");
  espeak("The quick brown fox jumps over the lazy dog.", w1, "1.0", "2.5");
  espeak("Speech recognition at scale needs careful batching.", w2, "0", "0.3");
  espeak("Silence is split out by the voice activity detector.", w3, "0", "4.0");
  espeak("One more sentence to finish.", w4, "0", "0.7");
  p = tmp_path("espeak_gaps.f32");
  sox_raw((const char *[]){w1, w2, w3, w4}, 4, p, NULL);
  af[n++] = (audio_file){"espeak_gaps", p};
  /* the same speech under noise */
  char *noise = tmp_path("noise.wav");
  run_cmd((const char *[]){"sox", "-n", "-r", "16000", "-c", "1", noise, "synth", "16", "pinknoise",
                           "vol", "0.05", NULL});
  char *speech = tmp_path("speech.wav");
  run_cmd((const char *[]){"sox", w1, w2, w3, w4, speech, NULL});
  p = tmp_path("espeak_noisy.f32");
  sox_raw((const char *[]){"-m", speech, noise}, 3, p, (const char *[]){"trim", "0", "15", NULL});
  af[n++] = (audio_file){"espeak_noisy", p};

  /* noise only */
  p = tmp_path("white_noise.f32");
  run_cmd((const char *[]){"sox", "-n", "-r", "16000", "-c", "1", "-t", "raw", "-e",
                           "floating-point", "-b", "32", p, "synth", "6", "whitenoise", "vol",
                           "0.3", NULL});
  af[n++] = (audio_file){"white_noise", p};
  p = tmp_path("brown_noise.f32");
  run_cmd((const char *[]){"sox", "-n", "-r", "16000", "-c", "1", "-t", "raw", "-e",
                           "floating-point", "-b", "32", p, "synth", "5", "brownnoise", "vol",
                           "0.5", NULL});
  af[n++] = (audio_file){"brown_noise", p};

  /* silence: not a multiple of 512, and an exact multiple (faster-whisper adds a whole window) */
  float *zeros = g_new0(float, 80000);
  p = tmp_path("silence_5s.f32");
  write_f32(p, zeros, 80000);
  af[n++] = (audio_file){"silence_5s", p};
  p = tmp_path("silence_32w.f32");
  write_f32(p, zeros, 32 * 512);
  af[n++] = (audio_file){"silence_32w", p};
  g_free(zeros);

  /* speech cut so that n % 512 = 500: the last window's zeroed tail holds real audio */
  size_t nc;
  float *clip = read_f32(af[0].path, &nc);
  p = tmp_path("librivox_cut.f32");
  write_f32(p, clip, 150 * 512 + 500);
  af[n++] = (audio_file){"librivox_cut", p};
  g_free(clip);
  g_free(w1), g_free(w2), g_free(w3), g_free(w4), g_free(noise), g_free(speech);
  return n;
}

typedef struct {
  vs_vad_options o;
  double chunk_max_s; /* INFINITY: one chunk */
} option_set;

static void add_num_or_null(JsonBuilder *b, const char *key, double v) {
  json_builder_set_member_name(b, key);
  if (isinf(v) || v < 0)
    json_builder_add_null_value(b);
  else
    json_builder_add_double_value(b, v);
}

static void write_job(const char *path, const char *onnx, const audio_file *af, int n_af,
                      const option_set *os, int n_os) {
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "onnx");
  json_builder_add_string_value(b, onnx);
  json_builder_set_member_name(b, "audios");
  json_builder_begin_array(b);
  for (int i = 0; i < n_af; i++) {
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, af[i].name);
    json_builder_set_member_name(b, "path");
    json_builder_add_string_value(b, af[i].path);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_set_member_name(b, "options");
  json_builder_begin_array(b);
  for (int i = 0; i < n_os; i++) {
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "threshold");
    json_builder_add_double_value(b, os[i].o.threshold);
    add_num_or_null(b, "neg_threshold", os[i].o.neg_threshold);
    json_builder_set_member_name(b, "min_speech_duration_ms");
    json_builder_add_int_value(b, os[i].o.min_speech_duration_ms);
    add_num_or_null(b, "max_speech_duration_s", os[i].o.max_speech_duration_s);
    json_builder_set_member_name(b, "min_silence_duration_ms");
    json_builder_add_int_value(b, os[i].o.min_silence_duration_ms);
    json_builder_set_member_name(b, "speech_pad_ms");
    json_builder_add_int_value(b, os[i].o.speech_pad_ms);
    add_num_or_null(b, "chunk_max_s", os[i].chunk_max_s);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
  JsonGenerator *g = json_generator_new();
  JsonNode *root = json_builder_get_root(b);
  json_generator_set_root(g, root);
  GError *err = NULL;
  if (!json_generator_to_file(g, path, &err)) VS_DIE("%s: %s", path, err->message);
  json_node_unref(root);
  g_object_unref(g);
  g_object_unref(b);
}

static bool segs_equal(const vs_vad_segment *s, size_t n, JsonArray *ref) {
  if (json_array_get_length(ref) != n) return false;
  for (size_t i = 0; i < n; i++) {
    JsonArray *r = json_array_get_array_element(ref, (guint)i);
    if ((size_t)json_array_get_int_element(r, 0) != s[i].start ||
        (size_t)json_array_get_int_element(r, 1) != s[i].end)
      return false;
  }
  return true;
}

static void print_segs(const char *what, const vs_vad_segment *s, size_t n, JsonArray *ref) {
  fprintf(stderr, "  %s: C", what);
  for (size_t i = 0; i < n; i++)
    fprintf(stderr, " [%zu,%zu)", s[i].start, s[i].end);
  fprintf(stderr, "\n  %s: ref", what);
  for (guint i = 0; i < json_array_get_length(ref); i++) {
    JsonArray *r = json_array_get_array_element(ref, i);
    fprintf(stderr, " [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ")",
            json_array_get_int_element(r, 0), json_array_get_int_element(r, 1));
  }
  fputc('\n', stderr);
}

/* Our chunks against collect_chunks: same audio (CRC of the concatenated pieces), offsets,
 * durations. Documented differences (vad.h): faster-whisper emits an empty chunk before a
 * segment longer than the maximum (skipped here), and its metadata omits the first segment of
 * every chunk after its first one; ours lists it. */
static void check_chunks(const char *name, int set, const float *audio, const vs_vad_chunk_list *cl,
                         JsonArray *ref) {
  guint nref = json_array_get_length(ref);
  if (cl->n_pieces == 0) {
    /* faster-whisper returns one empty chunk when there is no speech; we return none */
    JsonObject *c0 = json_array_get_object_element(ref, 0);
    CHECK_MSG(cl->n_chunks == 0 && nref == 1 && json_object_get_int_member(c0, "n_samples") == 0,
              "%s set %d: no speech but chunks differ", name, set);
    return;
  }
  size_t i = 0; /* our chunk */
  for (guint r = 0; r < nref; r++) {
    JsonObject *rc = json_array_get_object_element(ref, r);
    if (json_object_get_int_member(rc, "n_samples") == 0) continue;
    if (i >= cl->n_chunks) {
      CHECK_MSG(false, "%s set %d: reference has more chunks than our %zu", name, set,
                cl->n_chunks);
      return;
    }
    const vs_vad_chunk *c = &cl->chunks[i++];
    CHECK_MSG((gint64)c->speech_offset == json_object_get_int_member(rc, "offset"),
              "%s set %d chunk %u offset %zu", name, set, r, c->speech_offset);
    CHECK((gint64)c->n_samples == json_object_get_int_member(rc, "duration"));
    CHECK((gint64)c->n_samples == json_object_get_int_member(rc, "n_samples"));
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t k = 0; k < c->n_pieces; k++) {
      const vs_vad_piece *p = &c->pieces[k];
      CHECK(p->chunk_offset == (k ? c->pieces[k - 1].chunk_offset + c->pieces[k - 1].src_end -
                                        c->pieces[k - 1].src_start
                                  : 0));
      crc = crc32(crc, (const Bytef *)(audio + p->src_start),
                  (uInt)((p->src_end - p->src_start) * sizeof(float)));
    }
    CHECK_MSG((gint64)crc == json_object_get_int_member(rc, "crc32"),
              "%s set %d chunk %u: audio differs", name, set, r);
    JsonArray *rs = json_object_get_array_member(rc, "segments");
    size_t skip = r > 0 ? 1 : 0;
    bool same = json_array_get_length(rs) + skip == c->n_pieces;
    for (guint k = 0; same && k < json_array_get_length(rs); k++) {
      JsonArray *a = json_array_get_array_element(rs, k);
      same = (size_t)json_array_get_int_element(a, 0) == c->pieces[k + skip].src_start &&
             (size_t)json_array_get_int_element(a, 1) == c->pieces[k + skip].src_end;
    }
    CHECK_MSG(same, "%s set %d chunk %u: segments differ", name, set, r);
  }
  CHECK_MSG(i == cl->n_chunks, "%s set %d: %zu chunks, reference %zu non-empty", name, set,
            cl->n_chunks, i);
}

static void expect_error(bool ok, GError **err, int code, const char *must_contain,
                         const char *what) {
  CHECK_MSG(!ok && *err && (*err)->domain == VS_ERROR && (*err)->code == code &&
                strstr((*err)->message, must_contain),
            "%s: got %s (code %d)", what, *err ? (*err)->message : "success",
            *err ? (*err)->code : 0);
  if (*err) printf("expected error (%s): %s\n", what, (*err)->message);
  g_clear_error(err);
}

static void test_errors(const char *onnx) {
  GError *err = NULL;
  char *out = tmp_path("bad.h5");
  char *missing = tmp_path("no-such-model.onnx");
  expect_error(vs_vad_convert_onnx(missing, out, &err), &err, VS_ERROR_IO, missing, "missing");

  char *empty = tmp_path("empty.onnx");
  g_file_set_contents(empty, "", 0, NULL);
  expect_error(vs_vad_convert_onnx(empty, out, &err), &err, VS_ERROR_FORMAT, empty, "empty");

  char *text = tmp_path("text.onnx");
  g_file_set_contents(text, "this is a plain text file, not a model\n", -1, NULL);
  expect_error(vs_vad_convert_onnx(text, out, &err), &err, VS_ERROR_FORMAT, text, "text");

  gchar *bytes;
  gsize len;
  if (!g_file_get_contents(onnx, &bytes, &len, NULL)) VS_DIE("cannot read %s", onnx);
  char *trunc = tmp_path("truncated.onnx");
  g_file_set_contents(trunc, bytes, (gssize)(len * 2 / 3), NULL);
  expect_error(vs_vad_convert_onnx(trunc, out, &err), &err, VS_ERROR_FORMAT, "truncated",
               "truncated");
  /* a prefix that ends exactly on a field boundary is a valid message without the graph */
  g_file_set_contents(trunc, bytes, 10, NULL);
  CHECK(!vs_vad_convert_onnx(trunc, out, &err) && err && strstr(err->message, trunc));
  if (err) printf("expected error (10-byte prefix): %s\n", err->message);
  g_clear_error(&err);
  g_free(bytes);

  expect_error(vs_vad_convert_onnx(LIBRIVOX "0880.wav", out, &err), &err, VS_ERROR_FORMAT,
               "0880.wav", "wav");
  CHECK(!g_file_test(out, G_FILE_TEST_EXISTS));

  char *nodir = tmp_path("no-such-dir/vad.h5");
  CHECK(!vs_vad_convert_onnx(onnx, nodir, &err) && err && strstr(err->message, "no-such-dir"));
  if (err) printf("expected error (output dir): %s\n", err->message);
  g_clear_error(&err);

  /* load errors */
  CHECK(!vs_vad_load(missing, &err) && err && err->code == VS_ERROR_IO);
  g_clear_error(&err);
  CHECK(!vs_vad_load(onnx, &err) && err && err->code == VS_ERROR_FORMAT &&
        strstr(err->message, onnx));
  g_clear_error(&err);
  char *h5 = tmp_path("empty.h5");
  hid_t f = H5Fcreate(h5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(H5Gcreate2(f, "/vad", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  H5Fclose(f);
  expect_error(vs_vad_load(h5, &err) != NULL, &err, VS_ERROR_MODEL, h5, "empty h5");

  /* options */
  vs_vad_options o = vs_vad_default_options();
  o.threshold = 1.5;
  vs_vad_segment *s = NULL;
  size_t ns = 0;
  float p = 0.9f;
  expect_error(vs_vad_segments_from_probs(&p, 1, 100, &o, &s, &ns, &err), &err, VS_ERROR_CONFIG,
               "threshold", "bad threshold");
  vs_vad_segment ov[2] = {{0, 100}, {50, 200}};
  expect_error(vs_vad_chunks(ov, 2, 30, &err) != NULL, &err, VS_ERROR_INTERNAL, "overlaps",
               "overlapping segments");
  g_free(out), g_free(missing), g_free(empty), g_free(text), g_free(trunc), g_free(nodir),
      g_free(h5);
}

/* Hand-checked chunking and the chunk -> source mapping. */
static void test_chunk_mapping(void) {
  GError *err = NULL;
  vs_vad_segment segs[3] = {{1000, 3000}, {5000, 6000}, {10000, 12000}};
  vs_vad_chunk_list *l = vs_vad_chunks(segs, 3, 4000.0 / VS_VAD_SAMPLE_RATE, &err);
  VS_GERROR_CHECK(l, err);
  CHECK(l->n_chunks == 2);
  CHECK(l->chunks[0].n_pieces == 2 && l->chunks[0].n_samples == 3000);
  CHECK(l->chunks[1].n_pieces == 1 && l->chunks[1].speech_offset == 3000);
  const vs_vad_chunk *c = &l->chunks[0];
  CHECK(vs_vad_chunk_to_source(c, 0, false) == 1000);
  CHECK(vs_vad_chunk_to_source(c, 1999, false) == 2999);
  CHECK(vs_vad_chunk_to_source(c, 2000, true) == 3000);
  CHECK(vs_vad_chunk_to_source(c, 2000, false) == 5000);
  CHECK(vs_vad_chunk_to_source(c, 2500, false) == 5500);
  CHECK(vs_vad_chunk_to_source(c, 3000, true) == 6000);
  CHECK(vs_vad_chunk_to_source(&l->chunks[1], 100, false) == 10100);
  vs_vad_chunk_list_free(l);
}

/* vs_vad_probabilities runs blocks of windows; the streaming API a block of one. They must agree
 * bit for bit on every window, the last one included (its last 64 samples zeroed, as
 * faster-whisper does), for lengths around one window and around whole blocks. */
static void test_block_sizes(const vs_vad_model *model, const char *what) {
  const size_t W = VS_VAD_WINDOW;
  const size_t lens[] = {0, 1, 300, W - 1, W, W + 1, 63 * W, 64 * W - 1, 64 * W, 128 * W + 5};
  for (size_t li = 0; li < G_N_ELEMENTS(lens); li++) {
    const size_t n = lens[li];
    float *audio = g_new(float, n + 1);
    uint32_t r = 7;
    for (size_t i = 0; i < n; i++) {
      r = r * 1664525u + 1013904223u;
      audio[i] = 0.3f * sinf(0.07f * (float)i) * (float)((i / 4000) % 2) +
                 0.01f * ((float)(r >> 8) / 16777216.0f - 0.5f);
    }
    float *probs;
    size_t np;
    GError *err = NULL;
    VS_GERROR_CHECK(vs_vad_probabilities(model, audio, n, &probs, &np, &err), err);
    CHECK_MSG(np == n / W + 1, "%s: %zu samples: %zu windows", what, n, np);
    float *padded = g_new0(float, np *W);
    memcpy(padded, audio, n * sizeof(float));
    memset(padded + np * W - VS_VAD_CONTEXT, 0, VS_VAD_CONTEXT * sizeof(float));
    vs_vad_state *st = vs_vad_state_init(model);
    size_t differ = 0;
    for (size_t i = 0; i < np; i++)
      differ += vs_vad_process_window(model, st, padded + i * W) != probs[i];
    CHECK_MSG(differ == 0, "%s: %zu samples: %zu of %zu windows differ from streaming", what, n,
              differ, np);
    vs_vad_state_free(st);
    g_free(padded);
    g_free(probs);
    g_free(audio);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) VS_DIE("usage: test_vad tests/helpers/vad_reference.py");
  const char *helper = argv[1];
  const char *home = g_get_home_dir();
  const char *cache = g_getenv("VOXSHARD_CACHE");
  char *cache_dir = cache ? g_strdup(cache) : g_build_filename(home, ".cache", "voxshard", NULL);
  char *onnx = g_getenv("VOXSHARD_SILERO_ONNX")
                   ? g_strdup(g_getenv("VOXSHARD_SILERO_ONNX"))
                   : g_build_filename(cache_dir, "venv", "lib", "python3.11", "site-packages",
                                      "faster_whisper", "assets", "silero_vad_v6.onnx", NULL);
  char *python = g_getenv("VOXSHARD_PYTHON")
                     ? g_strdup(g_getenv("VOXSHARD_PYTHON"))
                     : g_build_filename(cache_dir, "venv", "bin", "python", NULL);
  GError *err = NULL;
  tmpdir = g_dir_make_tmp("vs-vad-XXXXXX", &err);
  VS_GERROR_CHECK(tmpdir, err);

  test_errors(onnx);
  test_chunk_mapping();

  char *h5 = tmp_path("silero_vad_v6.h5");
  VS_GERROR_CHECK(vs_vad_convert_onnx(onnx, h5, &err), err);
  vs_vad_model *model = vs_vad_load(h5, &err);
  VS_GERROR_CHECK(model, err);
  /* the portable products, which CPUs without AVX2 + FMA run: same checks below */
  g_setenv("VOXSHARD_VAD_PLAIN", "1", true);
  vs_vad_model *plain = vs_vad_load(h5, &err);
  VS_GERROR_CHECK(plain, err);
  g_unsetenv("VOXSHARD_VAD_PLAIN");
  test_block_sizes(model, "default");
  test_block_sizes(plain, "plain");

  audio_file af[16];
  int n_af = make_audio(af);

  vs_vad_options d = vs_vad_default_options();
  option_set os[] = {
      {d, INFINITY},                    /* VadOptions() + collect_chunks() as in transcribe() */
      {vs_vad_batched_options(30), 30}, /* BatchedInferencePipeline defaults */
      {{0.3, -1, 250, INFINITY, 100, 30}, 5},
      {{0.6, 0.2, 500, 5, 300, 200}, 10},
      {{0.5, -1, 0, 2, 0, 0}, 3},
      {{0.45, 0.4, 100, 8, 50, 100}, 30},
  };
  const int n_os = G_N_ELEMENTS(os);
  char *job = tmp_path("job.json"), *res = tmp_path("ref.json");
  write_job(job, onnx, af, n_af, os, n_os);
  run_cmd((const char *[]){python, helper, job, res, NULL});
  JsonParser *parser = json_parser_new();
  if (!json_parser_load_from_file(parser, res, &err)) VS_DIE("%s: %s", res, err->message);
  JsonArray *ref_audios =
      json_object_get_array_member(json_node_get_object(json_parser_get_root(parser)), "audios");

  double max_diff_all = 0, audio_seconds = 0, cpu_seconds = 0;
  for (int a = 0; a < n_af; a++) {
    JsonObject *ra = json_array_get_object_element(ref_audios, (guint)a);
    size_t n;
    float *audio = read_f32(af[a].path, &n);
    CHECK((gint64)n == json_object_get_int_member(ra, "n"));

    float *probs;
    size_t np;
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    VS_GERROR_CHECK(vs_vad_probabilities(model, audio, n, &probs, &np, &err), err);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    cpu_seconds += (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    audio_seconds += (double)np * VS_VAD_WINDOW / VS_VAD_SAMPLE_RATE;

    JsonArray *rp = json_object_get_array_member(ra, "probs");
    CHECK_MSG(json_array_get_length(rp) == np, "%s: %zu windows, reference %u", af[a].name, np,
              json_array_get_length(rp));
    float *ref_probs = g_new(float, np);
    double max_diff = 0, max_p = 0;
    for (size_t i = 0; i < np && i < json_array_get_length(rp); i++) {
      ref_probs[i] = (float)json_array_get_double_element(rp, (guint)i);
      max_diff = fmax(max_diff, fabs((double)probs[i] - ref_probs[i]));
      max_p = fmax(max_p, ref_probs[i]);
    }
    max_diff_all = fmax(max_diff_all, max_diff);
    printf("%-14s %7.2f s %5zu windows  max prob %.3f  max |C - onnxruntime| %.3g\n", af[a].name,
           (double)n / VS_VAD_SAMPLE_RATE, np, max_p, max_diff);
    CHECK_MSG(max_diff <= PROB_TOL, "%s: max diff %g", af[a].name, max_diff);

    /* streaming API: same network, no padding quirk; equal to the batch path except the last
     * window, and a reset state starts over */
    vs_vad_state *st = vs_vad_state_init(model);
    float *padded = g_new0(float, np *VS_VAD_WINDOW);
    memcpy(padded, audio, n * sizeof(float));
    bool same = true;
    for (size_t i = 0; i + 1 < np; i++)
      same = same && vs_vad_process_window(model, st, padded + i * VS_VAD_WINDOW) == probs[i];
    CHECK_MSG(same, "%s: streaming differs from batch", af[a].name);
    vs_vad_state_reset(st);
    CHECK(vs_vad_process_window(model, st, padded) == probs[0] || np == 1);
    vs_vad_state_free(st);

    float *pp;
    size_t npp;
    VS_GERROR_CHECK(vs_vad_probabilities(plain, audio, n, &pp, &npp, &err), err);
    double plain_diff = 0;
    for (size_t i = 0; i < np && i < npp; i++)
      plain_diff = fmax(plain_diff, fabs((double)pp[i] - ref_probs[i]));
    CHECK_MSG(npp == np && plain_diff <= PROB_TOL, "%s: plain: max diff %g", af[a].name,
              plain_diff);
    max_diff_all = fmax(max_diff_all, plain_diff);
    g_free(pp);
    g_free(padded);

    JsonArray *runs = json_object_get_array_member(ra, "runs");
    for (int k = 0; k < n_os; k++) {
      JsonObject *run = json_array_get_object_element(runs, (guint)k);
      JsonArray *rs = json_object_get_array_member(run, "segments");
      vs_vad_segment *segs;
      size_t ns;
      /* decision logic alone, on onnxruntime's probabilities: must be identical */
      VS_GERROR_CHECK(vs_vad_segments_from_probs(ref_probs, np, n, &os[k].o, &segs, &ns, &err),
                      err);
      bool eq = segs_equal(segs, ns, rs);
      CHECK_MSG(eq, "%s set %d: segments from reference probabilities differ", af[a].name, k);
      if (!eq) print_segs("ref probs", segs, ns, rs);
      g_free(segs);
      /* the whole C path */
      VS_GERROR_CHECK(vs_vad_speech_segments(model, audio, n, &os[k].o, &segs, &ns, &err), err);
      eq = segs_equal(segs, ns, rs);
      CHECK_MSG(eq, "%s set %d: segments differ", af[a].name, k);
      if (!eq) print_segs("C probs", segs, ns, rs);
      if (k == 1) printf("%-14s batched options: %zu segments\n", af[a].name, ns);
      if (g_str_has_prefix(af[a].name, "silence")) CHECK(ns == 0);
      if (!strcmp(af[a].name, "espeak_gaps") && k == 1) CHECK(ns >= 3);
      vs_vad_chunk_list *cl = vs_vad_chunks(segs, ns, os[k].chunk_max_s, &err);
      VS_GERROR_CHECK(cl, err);
      check_chunks(af[a].name, k, audio, cl, json_object_get_array_member(run, "chunks"));
      vs_vad_chunk_list_free(cl);
      g_free(segs);
    }
    g_free(ref_probs);
    g_free(probs);
    g_free(audio);
  }
  printf("max |C - onnxruntime| over all windows: %.3g (tolerance %g)\n", max_diff_all, PROB_TOL);
  printf("speed: %.1f s of audio in %.3f s CPU, %.0fx real time (1 thread)\n", audio_seconds,
         cpu_seconds, audio_seconds / cpu_seconds);

  g_object_unref(parser);
  vs_vad_free(model);
  vs_vad_free(plain);
  for (int a = 0; a < n_af; a++)
    g_free(af[a].path);
  char *rm[] = {"rm", "-rf", tmpdir, NULL};
  run_cmd((const char *const *)rm);
  g_free(job), g_free(res), g_free(h5), g_free(onnx), g_free(python), g_free(cache_dir);
  g_free(tmpdir);
  return vs_test_finish();
}
