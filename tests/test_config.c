/* Config: defaults < file < flags; unknown keys and bad values are errors that name them. */
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "vs_error.h"
#include "vs_test.h"

static const vs_opt_spec specs[] = {
    {"out", VS_OPT_STRING, "out", "output directory"},
    {"threads", VS_OPT_INT, "2", "threads", NULL, 1, 64},
    {"seconds", VS_OPT_DOUBLE, "3600", "seconds per shard", NULL, 1, 1e9},
    {"fsync", VS_OPT_BOOL, "true", "fsync outputs"},
    {"precision", VS_OPT_CHOICE, "auto", "precision", "auto|fp32|bf16"},
};
#define N_SPECS (sizeof specs / sizeof specs[0])

static char *write_ini(const char *text) {
  char *path = NULL;
  int fd = g_file_open_tmp("vs-config-XXXXXX.ini", &path, NULL);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) VS_DIE("tmp file");
  close(fd);
  return path;
}

int main(void) {
  GError *err = NULL;
  bool help = false;

  vs_config *cfg = vs_config_new("prepare", specs, N_SPECS);
  CHECK(vs_config_get_int(cfg, "threads") == 2);
  CHECK(vs_config_get_bool(cfg, "fsync"));
  CHECK(!vs_config_is_set(cfg, "threads"));

  char *ini = write_ini("[common]\nthreads = 4\nunrelated = 1\n[prepare]\nseconds = 60\n"
                        "precision = bf16\n[transcribe]\nbeam = 5\n");
  char *argv1[] = {"prepare", "in1", "--threads=8", "--config", ini, "--no-fsync", "in2",
                   "--out", "o2"};
  CHECK(vs_config_parse_args(cfg, 9, argv1, &help, &err));
  CHECK(!help);
  CHECK(vs_config_get_int(cfg, "threads") == 8); /* flag beats file, whatever the order */
  CHECK(vs_config_get_double(cfg, "seconds") == 60);
  CHECK(strcmp(vs_config_get_string(cfg, "precision"), "bf16") == 0);
  CHECK(!vs_config_get_bool(cfg, "fsync"));
  CHECK(strcmp(vs_config_get_string(cfg, "out"), "o2") == 0);
  CHECK(vs_config_n_positionals(cfg) == 2);
  CHECK(strcmp(vs_config_positional(cfg, 1), "in2") == 0);
  vs_config_free(cfg);

  /* Unknown key in the command's group: the message names file, group and key. */
  char *bad = write_ini("[prepare]\nthreads = 2\nshard_secs = 5\n");
  cfg = vs_config_new("prepare", specs, N_SPECS);
  char *argv2[] = {"prepare", "--config", bad};
  CHECK(!vs_config_parse_args(cfg, 3, argv2, &help, &err));
  CHECK(err && strstr(err->message, bad) && strstr(err->message, "[prepare]") &&
        strstr(err->message, "shard_secs"));
  g_clear_error(&err);
  vs_config_free(cfg);

  /* Bad values name the flag and the value. */
  const char *bad_flags[][2] = {{"--threads=two", "threads"}, {"--threads=0", "threads"},
                                {"--precision=fp8", "precision"}, {"--fsync=maybe", "fsync"},
                                {"--seconds=nan", "seconds"}, {"--bogus=1", "bogus"}};
  for (size_t i = 0; i < G_N_ELEMENTS(bad_flags); i++) {
    cfg = vs_config_new("prepare", specs, N_SPECS);
    char *argv3[] = {"prepare", (char *)bad_flags[i][0]};
    CHECK_MSG(!vs_config_parse_args(cfg, 2, argv3, &help, &err), "%s accepted", bad_flags[i][0]);
    CHECK_MSG(err && strstr(err->message, bad_flags[i][1]), "%s", err ? err->message : "-");
    g_clear_error(&err);
    vs_config_free(cfg);
  }

  cfg = vs_config_new("prepare", specs, N_SPECS);
  char *argv4[] = {"prepare", "--help"};
  CHECK(vs_config_parse_args(cfg, 2, argv4, &help, &err) && help);
  vs_config_free(cfg);

  g_unlink(ini);
  g_unlink(bad);
  g_free(ini);
  g_free(bad);
  return vs_test_finish();
}
