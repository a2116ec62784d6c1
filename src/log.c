#include "log.h"

#include <glib.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vs_error.h"

static int log_rank = -1;
static int log_world = 0;
static vs_log_level log_level = VS_LOG_INFO;
static char log_host[64];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

G_DEFINE_QUARK(voxshard-error-quark, vs_error)

const char *vs_error_code_name(int code) {
  static const char *const names[] = {"ok",   "io",   "format", "config", "audio",       "model",
                                      "mpi",  "hdf5", "cuda",   "unsupported", "internal"};
  if (code < 0 || code >= (int)G_N_ELEMENTS(names)) return "unknown";
  return names[code];
}

void vs_log_set_rank(int rank, int world) {
  log_rank = rank;
  log_world = world;
}

void vs_log_set_level(vs_log_level level) { log_level = level; }
vs_log_level vs_log_get_level(void) { return log_level; }

int vs_log_level_from_name(const char *name) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

const char *vs_log_hostname(void) {
  if (!log_host[0]) {
    if (gethostname(log_host, sizeof log_host - 1) != 0) strcpy(log_host, "unknown-host");
  }
  return log_host;
}

void vs_logv(vs_log_level level, const char *fmt, va_list ap) {
  if (level < log_level) return;
  static const char *const tags[] = {"debug", "info", "warn", "error"};
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  localtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  char rank[32];
  if (log_rank >= 0)
    snprintf(rank, sizeof rank, "%d/%d", log_rank, log_world);
  else
    strcpy(rank, "-");
  /* One write per line so that lines from ranks sharing a terminal do not interleave. */
  char line[2048];
  int n = snprintf(line, sizeof line, "[%s.%03ld %s rank %s] %s: ", when, ts.tv_nsec / 1000000,
                   vs_log_hostname(), rank, tags[level]);
  if (n < 0) return;
  if (n < (int)sizeof line) {
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    if (m > 0) n = n + m < (int)sizeof line - 1 ? n + m : (int)sizeof line - 2;
  }
  line[n++] = '\n';
  pthread_mutex_lock(&log_lock);
  fwrite(line, 1, (size_t)n, stderr);
  fflush(stderr);
  pthread_mutex_unlock(&log_lock);
}

void vs_log(vs_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vs_logv(level, fmt, ap);
  va_end(ap);
}
