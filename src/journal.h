/* Journal: what is done, per rank, append-only and fsynced, so that a killed or requeued job
 * redoes only what was in flight and never publishes an utterance twice.
 *
 * Files: OUT/journal/rank-RRRRR.jsonl, one JSON object per line, appended with one write() and
 * fdatasync each (src/fsutil.h):
 *   {"type":"run","run":2,"rank":1,"world":3,"host":"n01","pid":123,"time":"..."}
 *   {"type":"shard","run":2,"rank":1,"shard":"shards/shard-run0002-r00001-000004.h5",
 *    "ids":[...],"durations_s":[...],"n_frames":[...]}        (ids in row order)
 *   {"type":"failed","run":2,"rank":1,"id":"...","source":"...","code":"audio","reason":"..."}
 *
 * Protocol: a shard file is published (temp, fsync, rename) BEFORE its "shard" line is appended.
 * A crash between the two leaves a published shard that no journal references: an orphan, which
 * vs_journal_remove_orphans deletes before the next run writes anything, so its utterances are
 * redone and every utterance ends up in exactly one referenced shard. A crash during the append
 * leaves a torn last line without its newline: readers skip it, and the next writer of that file
 * cuts it off before appending.
 *
 * Readers load every rank-*.jsonl in the folder, whatever world size wrote them, so a rerun may
 * use a different number of ranks. Failed utterances are not done: a rerun retries them.
 */
#ifndef VS_JOURNAL_H
#define VS_JOURNAL_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- writing (one per rank) ---- */

typedef struct vs_journal vs_journal;

/* Opens (creates) OUT/journal/rank-<rank>.jsonl for appending, cuts off a torn last line left by
 * a crash, and appends a "run" record. */
vs_journal *vs_journal_open(const char *out_dir, int rank, int run, int world, GError **err);
/* Call only after `shard_file` (relative to out_dir) is published. */
bool vs_journal_add_shard(vs_journal *j, const char *shard_file, const char *const *ids,
                          const double *durations_s, const int64_t *n_frames, size_t n,
                          GError **err);
bool vs_journal_add_failure(vs_journal *j, const char *id, const char *source, int code,
                            const char *reason, GError **err);
const char *vs_journal_path(const vs_journal *j);
void vs_journal_close(vs_journal *j);

/* ---- reading (all ranks' files) ---- */

typedef struct {
  char *file; /* relative to out_dir */
  int run, rank;
  size_t n;
  char **ids;          /* [n], row order in the shard */
  double *durations_s; /* [n] */
  int64_t *n_frames;   /* [n] */
} vs_journal_shard;

typedef struct {
  char *id, *source, *code, *reason;
  int run, rank;
} vs_journal_failure;

typedef struct vs_journal_state vs_journal_state;

/* Reads OUT/journal/rank-*.jsonl (a missing folder is an empty journal). Shard records whose
 * file is gone from out_dir are ignored with a warning, so their utterances are redone. */
vs_journal_state *vs_journal_load(const char *out_dir, GError **err);
void vs_journal_state_free(vs_journal_state *s);

bool vs_journal_is_done(const vs_journal_state *s, const char *id);
/* Where a done id lives; false when not done. */
bool vs_journal_lookup(const vs_journal_state *s, const char *id, size_t *shard_index, size_t *row);
size_t vs_journal_n_done(const vs_journal_state *s);
size_t vs_journal_n_shards(const vs_journal_state *s);
const vs_journal_shard *vs_journal_shard_at(const vs_journal_state *s, size_t i); /* by file name */
/* Failures whose id is not done (the latest run's reason), sorted by id. */
size_t vs_journal_n_failures(const vs_journal_state *s);
const vs_journal_failure *vs_journal_failure_at(const vs_journal_state *s, size_t i);
/* Highest run number seen (0 for an empty journal). */
int vs_journal_max_run(const vs_journal_state *s);
/* Lines skipped: torn last lines, and unreadable lines elsewhere (corruption). */
size_t vs_journal_n_torn(const vs_journal_state *s);
size_t vs_journal_n_corrupt(const vs_journal_state *s);
/* Shard records ignored because the file is missing, and ids seen in a second shard. */
size_t vs_journal_n_missing(const vs_journal_state *s);
size_t vs_journal_n_duplicates(const vs_journal_state *s);

/* Removes, under OUT/shards/, every *.h5 no shard record references and every leftover temp
 * file (".*.tmp.*"). Run by one rank only, before any rank of the new run writes. */
bool vs_journal_remove_orphans(const vs_journal_state *s, const char *out_dir, size_t *n_removed,
                               GError **err);

#endif
