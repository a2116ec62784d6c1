#include "progress.h"

#include "log.h"
#include "vs_error.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

enum { V_AUDIO = 0, V_DONE, V_FAILED, N_VALUES };

struct vs_progress {
  vs_coll *c;
  vs_coll_report *rep;
  char *what;
  double total_s, interval_s;
  bool tty, off, drew_line;
  gint64 t0, last_us; /* monotonic microseconds */
  double local[N_VALUES];
};

char *vs_progress_format(const char *what, double done_s, double total_s, double elapsed_s,
                         size_t n_done, size_t n_failed) {
  GString *s = g_string_new(NULL);
  g_string_append_printf(s, "%s: %.2f/%.2f h audio", what, done_s / 3600.0, total_s / 3600.0);
  if (total_s > 0) g_string_append_printf(s, " (%.1f%%)", 100.0 * fmin(done_s / total_s, 1.0));
  g_string_append_printf(s, ", %zu utts, %zu failed", n_done, n_failed);
  double speed = elapsed_s > 0 ? done_s / elapsed_s : 0.0;
  if (speed > 0) {
    g_string_append_printf(s, ", %.1fx real time", speed);
    double left = fmax(total_s - done_s, 0.0) / speed;
    long t = lround(left);
    g_string_append_printf(s, ", ETA %ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  } else {
    g_string_append(s, ", ETA unknown");
  }
  return g_string_free(s, FALSE);
}

vs_progress *vs_progress_new(vs_coll *c, const char *what, double total_s, double interval_s,
                             vs_progress_mode mode, GError **err) {
  vs_coll_report *rep = vs_coll_report_open(c, 0, N_VALUES, err);
  if (!rep) return NULL;
  vs_progress *p = g_new0(vs_progress, 1);
  p->c = c;
  p->rep = rep;
  p->what = g_strdup(what);
  p->total_s = total_s;
  p->interval_s = interval_s > 0 ? interval_s : 1.0;
  p->off = mode == VS_PROGRESS_OFF;
  p->tty = mode == VS_PROGRESS_TTY || (mode == VS_PROGRESS_AUTO && isatty(STDERR_FILENO));
  p->t0 = p->last_us = g_get_monotonic_time();
  return p;
}

void vs_progress_add(vs_progress *p, double audio_s, size_t n_done, size_t n_failed) {
  p->local[V_AUDIO] += audio_s;
  p->local[V_DONE] += (double)n_done;
  p->local[V_FAILED] += (double)n_failed;
}

static void totals(const vs_progress *p, double out[N_VALUES]) {
  for (int k = 0; k < N_VALUES; k++)
    out[k] = 0;
  for (int r = 0; r < vs_coll_size(p->c); r++) {
    const double *v = vs_coll_report_latest(p->rep, r);
    for (int k = 0; k < N_VALUES; k++)
      out[k] += v[k];
  }
}

static void show(vs_progress *p, bool final) {
  if (p->off) return;
  double t[N_VALUES];
  totals(p, t);
  double elapsed = (double)(g_get_monotonic_time() - p->t0) / 1e6;
  char *line = vs_progress_format(p->what, t[V_AUDIO], p->total_s, elapsed, (size_t)t[V_DONE],
                                  (size_t)t[V_FAILED]);
  if (p->tty) {
    fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    fflush(stderr);
    p->drew_line = !final;
  } else {
    vs_info("%s", line);
  }
  g_free(line);
}

bool vs_progress_tick(vs_progress *p, GError **err) {
  gint64 now = g_get_monotonic_time();
  bool due = (double)(now - p->last_us) >= p->interval_s * 1e6;
  if (vs_coll_rank(p->c) == 0) {
    if (!vs_coll_report_post(p->rep, p->local, err)) return false;
    if (!due) return true;
    if (!vs_coll_report_poll(p->rep, NULL, err)) return false;
    p->last_us = now;
    show(p, false);
    return true;
  }
  /* Other ranks: the poll also completes an earlier send and starts the pending one. */
  if (!due) return vs_coll_report_poll(p->rep, NULL, err);
  p->last_us = now;
  return vs_coll_report_post(p->rep, p->local, err);
}

bool vs_progress_finish(vs_progress *p, double *audio_s, size_t *n_done, size_t *n_failed,
                        GError **err) {
  if (!vs_coll_report_finish(p->rep, p->local, err)) return false;
  if (vs_coll_rank(p->c) == 0) {
    int finished = 0;
    for (;;) {
      if (!vs_coll_report_poll(p->rep, &finished, err)) return false;
      if (finished == vs_coll_size(p->c)) break;
      gint64 now = g_get_monotonic_time();
      if ((double)(now - p->last_us) >= p->interval_s * 1e6) {
        p->last_us = now;
        show(p, false);
      }
      g_usleep(20000);
    }
    show(p, true);
  }
  /* Everybody learns the totals (rank 0 reached them through the reports; the others did not). */
  double t[N_VALUES];
  for (int k = 0; k < N_VALUES; k++)
    t[k] = p->local[k];
  if (!vs_coll_allreduce_f64(p->c, t, N_VALUES, VS_COLL_SUM, err)) return false;
  if (audio_s) *audio_s = t[V_AUDIO];
  if (n_done) *n_done = (size_t)llround(t[V_DONE]);
  if (n_failed) *n_failed = (size_t)llround(t[V_FAILED]);
  return true;
}

void vs_progress_free(vs_progress *p) {
  if (!p) return;
  GError *err = NULL;
  if (!vs_coll_report_free(p->rep, &err)) {
    vs_warn("progress: %s", err->message);
    g_clear_error(&err);
  }
  g_free(p->what);
  g_free(p);
}
