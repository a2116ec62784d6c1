/* The steps every corpus job (prepare, transcribe) shares, in order, across MPI ranks:
 *   1. rank 0 takes the output folder's lock, reads every rank's journal (any earlier world
 *      size), removes orphans and stale per-rank errors files, and broadcasts the run number
 *      and the done ids, so that all ranks plan from the same set;
 *   2. every rank scans the corpus (deterministic ids) and all check they saw the same one;
 *   3. durations are probed split over ranks and allgathered;
 *   4. what is not done is planned by duration (src/plan.h); this rank's share comes back in
 *      source order (files and tar members are read in sequence, not at random).
 * A rank that fails a step makes every rank stop (vs_job_agree); a failed collective aborts
 * them all, since the others would wait forever.
 */
#ifndef VS_JOB_H
#define VS_JOB_H

#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stddef.h>

#include "coll.h"
#include "corpus.h"

typedef struct {
  vs_coll *coll;
  int rank, world;
  const char *out; /* output folder, as given */
  int run;         /* 1 + the highest run in the journals */
  vs_corpus *corpus;
  GHashTable *done;   /* ids already done (journalled), keys point into done_blob */
  void *done_blob;
  size_t *own;        /* corpus indices of this rank's share, in source order */
  size_t n_own;
  size_t n_todo;      /* utterances planned over all ranks this run */
  size_t n_skipped;   /* already done */
  double total_todo_s;
  double *load_s;     /* [world] planned seconds per rank */
  int lock_fd;
  int errors_fd;      /* OUT/errors/rank-RRRRR.jsonl, after vs_job_open_errors */
  char *errors_path;
} vs_job;

/* Collective. `name` names the job in the lock file and logs; `subdirs` (NULL-terminated) are
 * created under `out` by rank 0. Returns false when any rank failed a step (already logged);
 * the caller then exits with its fatal code. */
bool vs_job_begin(vs_job *job, vs_coll *c, const char *name, const char *out,
                  const char *const *subdirs, const char *const *inputs, size_t n_inputs,
                  int fatal_exit_code);
void vs_job_end(vs_job *job);

/* Creates this rank's errors file (rank 0 also records the corpus scan's problems in it). */
bool vs_job_open_errors(vs_job *job, GError **err);
/* Appends one failure (stage "scan", "decode", "transcribe", ...) as a JSON line, synced. */
bool vs_job_record_error(vs_job *job, const char *stage, const char *id, const char *source,
                         int code, const char *reason, GError **err);

/* Collective: every rank's local success; true when no rank failed. */
bool vs_job_agree(vs_coll *c, bool local_ok, const char *stage, int fatal_exit_code);

/* One member of the object being built (summaries). */
void vs_job_json_int(JsonBuilder *b, const char *key, gint64 v);
void vs_job_json_double(JsonBuilder *b, const char *key, double v);
void vs_job_json_string(JsonBuilder *b, const char *key, const char *v);

/* Writes a JSON document built with `b` atomically to `path` (pretty, trailing newline). */
bool vs_job_write_json(const char *path, JsonBuilder *b, GError **err);

#endif
