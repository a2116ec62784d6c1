/* Job progress: rank 0 shows the whole job's progress (audio hours done/total, speed as a
 * multiple of real time, ETA); other ranks report their cumulative numbers to rank 0 through
 * collectives/coll.h report channels, which never make them wait.
 *
 * On a terminal (isatty(stderr)) rank 0 redraws one "\r" line; otherwise it logs a plain line
 * every interval. Metadata only: counts and durations.
 */
#ifndef VS_PROGRESS_H
#define VS_PROGRESS_H

#include "coll.h"

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct vs_progress vs_progress;

typedef enum {
  VS_PROGRESS_AUTO = 0,
  VS_PROGRESS_TTY,
  VS_PROGRESS_LOG,
  VS_PROGRESS_OFF
} vs_progress_mode;

/* Collective. total_s: audio seconds the whole job will process in this run; interval_s: seconds
 * between lines (and between reports from other ranks). */
vs_progress *vs_progress_new(vs_coll *c, const char *what, double total_s, double interval_s,
                             vs_progress_mode mode, GError **err);
/* Local: this rank finished more work. */
void vs_progress_add(vs_progress *p, double audio_s, size_t n_done, size_t n_failed);
/* Call often from the communicating thread: reports (other ranks) or polls and shows (rank 0)
 * when the interval has passed. Cheap otherwise. */
bool vs_progress_tick(vs_progress *p, GError **err);
/* Collective: this rank is done; rank 0 keeps showing progress until every rank has finished,
 * then prints the final line. Totals over all ranks come back (any pointer may be NULL). */
bool vs_progress_finish(vs_progress *p, double *audio_s, size_t *n_done, size_t *n_failed,
                        GError **err);
void vs_progress_free(vs_progress *p);

/* The text of one progress line (no newline), e.g.
 * "prepare: 1.50/4.00 h audio (37.5%), 120 utts, 2 failed, 412.3x real time, ETA 0:00:21". */
char *vs_progress_format(const char *what, double done_s, double total_s, double elapsed_s,
                         size_t n_done, size_t n_failed);

#endif
