/* Collectives: the only module that talks to MPI (and, later, NCCL). Everything above it
 * (prepare, transcribe, train) calls these functions with a vs_coll handle, never MPI itself.
 *
 * Threading: vs_coll_init asks for MPI_THREAD_FUNNELED. Worker threads (decode, log-mel, model
 * backends) never communicate; only the thread that called vs_coll_init does, so the cheaper
 * FUNNELED level is enough and works with every MPI build (MULTIPLE is often slow or missing).
 *
 * Device buffers: buffer-taking calls carry a vs_coll_mem. This build implements VS_COLL_HOST
 * over MPI; VS_COLL_DEVICE (CUDA pointers) is rejected with VS_ERROR_UNSUPPORTED until the NCCL
 * backend lands, which will slot in behind the same calls (the handle keeps a per-memory
 * backend), so callers do not change.
 *
 * Errors: MPI is switched to MPI_ERRORS_RETURN on the handle's communicators, and failures come
 * back as VS_ERROR_MPI GErrors naming the call, MPI's error string, the host and the rank.
 */
#ifndef VS_COLL_H
#define VS_COLL_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vs_coll vs_coll;

typedef enum { VS_COLL_HOST = 0, VS_COLL_DEVICE = 1 } vs_coll_mem;
typedef enum { VS_COLL_SUM = 0, VS_COLL_MAX, VS_COLL_MIN } vs_coll_op;
typedef enum { VS_COLL_U8 = 0, VS_COLL_I64, VS_COLL_F32, VS_COLL_F64 } vs_coll_dtype;

/* Initialises MPI (or attaches to an MPI another library initialised) over the whole world.
 * Works without mpirun as a one-rank singleton. */
vs_coll *vs_coll_init(int *argc, char ***argv, GError **err);
/* Frees the handle and finalises MPI if vs_coll_init initialised it. NULL is fine. */
bool vs_coll_finalize(vs_coll *c, GError **err);
/* Ends every rank of the job at once: for errors after which ranks cannot agree any more. */
void vs_coll_abort(vs_coll *c, int exit_code) __attribute__((noreturn));

int vs_coll_rank(const vs_coll *c);
int vs_coll_size(const vs_coll *c);
int vs_coll_local_rank(const vs_coll *c); /* rank among the ranks on this node (GPU choice) */
int vs_coll_local_size(const vs_coll *c);
const char *vs_coll_hostname(const vs_coll *c);

bool vs_coll_barrier(vs_coll *c, GError **err);
/* Broadcasts `bytes` bytes from root (host memory). */
bool vs_coll_bcast(vs_coll *c, void *buf, size_t bytes, int root, GError **err);
/* Broadcasts a buffer whose size only root knows: root passes *buf and *bytes, the others receive a
 * g_malloc'd copy in *buf (free with g_free) and its size in *bytes. */
bool vs_coll_bcast_alloc(vs_coll *c, void **buf, size_t *bytes, int root, GError **err);

/* In-place all-reduce of `count` elements. */
bool vs_coll_allreduce(vs_coll *c, void *buf, size_t count, vs_coll_dtype dtype, vs_coll_op op,
                       vs_coll_mem mem, GError **err);
bool vs_coll_allreduce_i64(vs_coll *c, int64_t *values, size_t count, vs_coll_op op, GError **err);
bool vs_coll_allreduce_f64(vs_coll *c, double *values, size_t count, vs_coll_op op, GError **err);

/* Every rank contributes `count` elements (counts may differ); every rank receives all of them
 * in rank order in *recv (g_malloc'd) and, when `counts` is not NULL, each rank's count in
 * counts[0..size) (caller-allocated). */
bool vs_coll_allgatherv(vs_coll *c, const void *send, size_t count, vs_coll_dtype dtype,
                        void **recv, size_t *counts, GError **err);
bool vs_coll_allgatherv_f64(vs_coll *c, const double *send, size_t count, double **recv,
                            size_t *counts, GError **err);
bool vs_coll_allgatherv_bytes(vs_coll *c, const void *send, size_t bytes, uint8_t **recv,
                              size_t *counts, GError **err);

/* Agreement on failures, so that no rank waits in a collective for a rank that gave up:
 * every rank passes its local count and receives the job's total. */
bool vs_coll_count_errors(vs_coll *c, int64_t local_errors, int64_t *total_errors, GError **err);

/* Reports: small vectors of cumulative numbers (progress) that every rank sends to `root`
 * without ever waiting for it. A rank keeps at most one message in flight; a newer value posted
 * while one is in flight replaces the pending one, which is harmless because values are
 * cumulative. Root polls whenever it likes. Creating and freeing a channel is collective. */
typedef struct vs_coll_report vs_coll_report;

vs_coll_report *vs_coll_report_open(vs_coll *c, int root, size_t n_values, GError **err);
/* Any rank: records its latest values; non-root ranks send them if nothing is in flight. */
bool vs_coll_report_post(vs_coll_report *r, const double *values, GError **err);
/* Non-root: sends the final values (blocking only on its own previous send). Root: records them. */
bool vs_coll_report_finish(vs_coll_report *r, const double *values, GError **err);
/* Root: receives every report that has arrived. Returns the number of ranks that have finished. */
bool vs_coll_report_poll(vs_coll_report *r, int *n_finished, GError **err);
/* Root: latest values of `rank` (zeros until its first report arrives). */
const double *vs_coll_report_latest(const vs_coll_report *r, int rank);
/* Collective. Root must have seen every rank finish (poll until n_finished == size). */
bool vs_coll_report_free(vs_coll_report *r, GError **err);

#endif
