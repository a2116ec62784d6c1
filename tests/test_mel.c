/* Log-mel against an independent float64 numpy reference (tests/helpers/mel_reference.py),
 * which is itself checked against faster-whisper's FeatureExtractor: max abs error <= 1e-4. */
#include "mel.h"
#include "vs_error.h"
#include "vs_test.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *read_f32(const char *path, size_t n) {
  gchar *data = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &data, &len, NULL) || len != n * sizeof(float))
    VS_DIE("%s: expected %zu floats, got %zu bytes", path, n, (size_t)len);
  return (float *)data;
}

/* The test venv's python: $VOXSHARD_PYTHON, else $VOXSHARD_CACHE/venv, else ~/.cache/voxshard/venv.
 */
static const char *python(void) {
  const char *p = g_getenv("VOXSHARD_PYTHON");
  if (p && *p) return p;
  static char buf[1024];
  const char *cache = g_getenv("VOXSHARD_CACHE");
  if (cache && *cache)
    snprintf(buf, sizeof buf, "%s/venv/bin/python", cache);
  else
    snprintf(buf, sizeof buf, "%s/.cache/voxshard/venv/bin/python", g_get_home_dir());
  return buf;
}

int main(int argc, char **argv) {
  if (argc != 3) VS_DIE("usage: test_mel HELPER.py OUTDIR");
  gchar *cmd = g_strdup_printf("'%s' '%s' '%s'", python(), argv[1], argv[2]);
  int status = system(cmd);
  g_free(cmd);
  if (status != 0) VS_DIE("reference helper failed (%d)", status);

  GError *err = NULL;
  vs_mel *mel80 = vs_mel_init(80, &err), *mel128 = vs_mel_init(128, &err);
  VS_GERROR_CHECK(mel80 && mel128, err);
  CHECK(!vs_mel_init(64, &err) && err);
  g_clear_error(&err);

  gchar *list_path = g_build_filename(argv[2], "cases.txt", NULL);
  FILE *list = fopen(list_path, "r");
  if (!list) VS_DIE("%s: %s", list_path, g_strerror(errno));
  char tag[128], name[128];
  size_t n, pad, n_frames;
  int n_mels, cases = 0;
  while (fscanf(list, "%127s %127s %zu %d %zu %zu", tag, name, &n, &n_mels, &pad, &n_frames) == 6) {
    gchar *in_path = g_strdup_printf("%s/%s.in.f32", argv[2], name);
    gchar *ref_path = g_strdup_printf("%s/%s.ref.f32", argv[2], tag);
    float *x = read_f32(in_path, n);
    float *ref = read_f32(ref_path, (size_t)n_mels * n_frames);
    CHECK_MSG(vs_mel_n_frames(n, pad) == n_frames, "%s: %zu frames, reference %zu", tag,
              vs_mel_n_frames(n, pad), n_frames);
    float *got = g_new(float, (size_t)n_mels *n_frames);
    bool ok = vs_mel_compute(n_mels == 80 ? mel80 : mel128, x, n, pad, got, &err);
    CHECK_MSG(ok, "%s: %s", tag, err ? err->message : "");
    g_clear_error(&err);
    double max_err = 0;
    for (size_t i = 0; ok && i < (size_t)n_mels * n_frames; i++) {
      double d = fabs((double)got[i] - ref[i]);
      if (d > max_err) max_err = d;
    }
    printf("%-28s %5zu frames  max abs err %.2e\n", tag, n_frames, max_err);
    CHECK_MSG(max_err <= 1e-4, "%s: max abs error %.3g > 1e-4", tag, max_err);
    cases++;
    g_free(got);
    g_free(x);
    g_free(ref);
    g_free(in_path);
    g_free(ref_path);
  }
  fclose(list);
  g_free(list_path);
  CHECK_MSG(cases >= 20, "only %d reference cases (faster-whisper's included)", cases);

  /* Thread safety: the same vs_mel from several threads gives identical results. */
  {
    const size_t len = 48000;
    float *sig = g_new(float, len);
    for (size_t i = 0; i < len; i++)
      sig[i] = (float)sin(i * 0.01) * 0.3f;
    size_t nf = vs_mel_n_frames(len, 160);
    float *a = g_new(float, 80 * nf), *b = g_new(float, 80 * nf);
    CHECK(vs_mel_compute(mel80, sig, len, 160, a, NULL));
#pragma omp parallel for
    for (int r = 0; r < 8; r++) {
      float *c = g_new(float, 80 * nf);
      vs_mel_compute(mel80, sig, len, 160, c, NULL);
      if (r == 7) memcpy(b, c, 80 * nf * sizeof(float));
      g_free(c);
    }
    CHECK(memcmp(a, b, 80 * nf * sizeof(float)) == 0);
    g_free(sig);
    g_free(a);
    g_free(b);
  }
  vs_mel_free(mel80);
  vs_mel_free(mel128);
  return vs_test_finish();
}
