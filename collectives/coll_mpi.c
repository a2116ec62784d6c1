/* MPI implementation of collectives/coll.h for host buffers. */
#include "coll.h"
#include "vs_error.h"

#include <limits.h>
#include <mpi.h>
#include <string.h>
#include <unistd.h>

struct vs_coll {
  MPI_Comm comm;      /* duplicate of MPI_COMM_WORLD: our traffic never mixes with a library's */
  MPI_Comm node_comm; /* ranks sharing this node's memory */
  int rank, size, local_rank, local_size;
  bool we_initialised; /* finalise only what we started */
  char host[MPI_MAX_PROCESSOR_NAME + 1];
  int n_report_channels;
};

struct vs_coll_report {
  vs_coll *c;
  MPI_Comm comm; /* one communicator per channel, so tags never collide with anything else */
  int root;
  size_t n; /* values per report */
  double
      *latest; /* host: root: [size][n+1] last values per rank (+1: finished flag); others: [n+1] */
  double *in_flight; /* host, non-root: [n+1] buffer of the Isend in flight */
  double *pending;   /* host, non-root: [n+1] newer values waiting for the send to complete */
  bool has_pending;
  MPI_Request req;
  bool finished;
};

static bool mpi_fail(const vs_coll *c, int rc, const char *what, GError **err) {
  char msg[MPI_MAX_ERROR_STRING + 1];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  msg[len] = '\0';
  g_set_error(err, VS_ERROR, VS_ERROR_MPI, "%s failed on host %s, rank %d of %d: %s (MPI code %d)",
              what, c ? c->host : "?", c ? c->rank : -1, c ? c->size : 0, len ? msg : "unknown",
              rc);
  return false;
}

#define MPI_TRY(c, call, err)                                                                      \
  do {                                                                                             \
    int rc_ = (call);                                                                              \
    if (rc_ != MPI_SUCCESS) return mpi_fail((c), rc_, #call, (err));                               \
  } while (0)

static bool check_mem(const vs_coll *c, vs_coll_mem mem, const char *what, GError **err) {
  if (mem == VS_COLL_HOST) return true;
  VS_FAIL(
      err, VS_ERROR_UNSUPPORTED, false,
      "%s: device buffers need the NCCL backend, which this build does not have (host %s, rank %d)",
      what, c->host, c->rank);
}

static MPI_Datatype mpi_type(vs_coll_dtype t) {
  switch (t) {
  case VS_COLL_U8:
    return MPI_BYTE;
  case VS_COLL_I64:
    return MPI_INT64_T;
  case VS_COLL_F32:
    return MPI_FLOAT;
  case VS_COLL_F64:
    return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

static size_t type_size(vs_coll_dtype t) {
  switch (t) {
  case VS_COLL_U8:
    return 1;
  case VS_COLL_I64:
    return 8;
  case VS_COLL_F32:
    return 4;
  case VS_COLL_F64:
    return 8;
  }
  return 0;
}

static MPI_Op mpi_op(vs_coll_op op) {
  switch (op) {
  case VS_COLL_SUM:
    return MPI_SUM;
  case VS_COLL_MAX:
    return MPI_MAX;
  case VS_COLL_MIN:
    return MPI_MIN;
  }
  return MPI_OP_NULL;
}

vs_coll *vs_coll_init(int *argc, char ***argv, GError **err) {
  int initialised = 0, provided = 0;
  MPI_Initialized(&initialised);
  vs_coll *c = g_new0(vs_coll, 1);
  g_strlcpy(c->host, "?", sizeof c->host);
  c->rank = -1;
  if (!initialised) {
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) {
      mpi_fail(c, rc, "MPI_Init_thread", err);
      g_free(c);
      return NULL;
    }
    c->we_initialised = true;
    if (provided < MPI_THREAD_FUNNELED) {
      g_set_error(
          err, VS_ERROR, VS_ERROR_MPI,
          "MPI provides thread level %d, below MPI_THREAD_FUNNELED: worker threads would be unsafe",
          provided);
      MPI_Finalize();
      g_free(c);
      return NULL;
    }
  }
  /* Errors must come back to us as codes so that they end up in a GError with context. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int len = 0;
  if (MPI_Get_processor_name(c->host, &len) != MPI_SUCCESS || len <= 0) {
    if (gethostname(c->host, sizeof c->host - 1) != 0)
      g_strlcpy(c->host, "unknown", sizeof c->host);
  }
  int rc;
  if ((rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->comm)) != MPI_SUCCESS ||
      (rc = MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
      (rc = MPI_Comm_rank(c->comm, &c->rank)) != MPI_SUCCESS ||
      (rc = MPI_Comm_size(c->comm, &c->size)) != MPI_SUCCESS ||
      (rc = MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL,
                                &c->node_comm)) != MPI_SUCCESS ||
      (rc = MPI_Comm_rank(c->node_comm, &c->local_rank)) != MPI_SUCCESS ||
      (rc = MPI_Comm_size(c->node_comm, &c->local_size)) != MPI_SUCCESS) {
    mpi_fail(c, rc, "setting up the MPI communicators", err);
    if (c->we_initialised) MPI_Finalize();
    g_free(c);
    return NULL;
  }
  return c;
}

bool vs_coll_finalize(vs_coll *c, GError **err) {
  if (!c) return true;
  bool ok = true;
  if (c->node_comm != MPI_COMM_NULL && c->node_comm) MPI_Comm_free(&c->node_comm);
  if (c->comm != MPI_COMM_NULL && c->comm) MPI_Comm_free(&c->comm);
  if (c->we_initialised) {
    int rc = MPI_Finalize();
    if (rc != MPI_SUCCESS) ok = mpi_fail(c, rc, "MPI_Finalize", err);
  }
  g_free(c);
  return ok;
}

void vs_coll_abort(vs_coll *c, int exit_code) {
  MPI_Abort(c ? c->comm : MPI_COMM_WORLD, exit_code);
  _exit(exit_code); /* MPI_Abort should not return; make sure */
}

int vs_coll_rank(const vs_coll *c) {
  return c->rank;
}
int vs_coll_size(const vs_coll *c) {
  return c->size;
}
int vs_coll_local_rank(const vs_coll *c) {
  return c->local_rank;
}
int vs_coll_local_size(const vs_coll *c) {
  return c->local_size;
}
const char *vs_coll_hostname(const vs_coll *c) {
  return c->host;
}

bool vs_coll_barrier(vs_coll *c, GError **err) {
  MPI_TRY(c, MPI_Barrier(c->comm), err);
  return true;
}

bool vs_coll_bcast(vs_coll *c, void *buf, size_t bytes, int root, GError **err) {
  /* MPI counts are int: large buffers go in pieces. */
  char *p = buf;
  while (bytes > 0) {
    int n = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
    MPI_TRY(c, MPI_Bcast(p, n, MPI_BYTE, root, c->comm), err);
    p += n;
    bytes -= (size_t)n;
  }
  return true;
}

bool vs_coll_bcast_alloc(vs_coll *c, void **buf, size_t *bytes, int root, GError **err) {
  uint64_t n = c->rank == root ? (uint64_t)*bytes : 0;
  if (!vs_coll_bcast(c, &n, sizeof n, root, err)) return false;
  if (c->rank != root) {
    *buf = g_malloc(n ? n : 1);
    *bytes = (size_t)n;
  }
  if (!vs_coll_bcast(c, *buf, (size_t)n, root, err)) {
    if (c->rank != root) {
      g_free(*buf);
      *buf = NULL;
    }
    return false;
  }
  return true;
}

bool vs_coll_allreduce(vs_coll *c, void *buf, size_t count, vs_coll_dtype dtype, vs_coll_op op,
                       vs_coll_mem mem, GError **err) {
  if (!check_mem(c, mem, "vs_coll_allreduce", err)) return false;
  if (count > (size_t)INT_MAX)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "vs_coll_allreduce: %zu elements exceed MPI's int count", count);
  MPI_TRY(c, MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, mpi_type(dtype), mpi_op(op), c->comm),
          err);
  return true;
}

bool vs_coll_allreduce_i64(vs_coll *c, int64_t *values, size_t count, vs_coll_op op, GError **err) {
  return vs_coll_allreduce(c, values, count, VS_COLL_I64, op, VS_COLL_HOST, err);
}

bool vs_coll_allreduce_f64(vs_coll *c, double *values, size_t count, vs_coll_op op, GError **err) {
  return vs_coll_allreduce(c, values, count, VS_COLL_F64, op, VS_COLL_HOST, err);
}

bool vs_coll_allgatherv(vs_coll *c, const void *send, size_t count, vs_coll_dtype dtype,
                        void **recv, size_t *counts, GError **err) {
  int64_t mine = (int64_t)count;
  int64_t *all = g_new(int64_t, c->size);
  int rc = MPI_Allgather(&mine, 1, MPI_INT64_T, all, 1, MPI_INT64_T, c->comm);
  if (rc != MPI_SUCCESS) {
    g_free(all);
    return mpi_fail(c, rc, "MPI_Allgather (counts)", err);
  }
  int *icounts = g_new(int, c->size), *displs = g_new(int, c->size);
  int64_t total = 0;
  for (int r = 0; r < c->size; r++) {
    displs[r] = (int)total;
    icounts[r] = (int)all[r];
    total += all[r];
    if (counts) counts[r] = (size_t)all[r];
  }
  g_free(all);
  if (total > INT_MAX) {
    g_free(icounts);
    g_free(displs);
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "vs_coll_allgatherv: %lld elements in all exceed MPI's int displacements (rank %d)",
            (long long)total, c->rank);
  }
  size_t es = type_size(dtype);
  void *out = g_malloc(total ? (size_t)total * es : 1);
  rc = MPI_Allgatherv(count ? send : out, (int)count, mpi_type(dtype), out, icounts, displs,
                      mpi_type(dtype), c->comm);
  g_free(icounts);
  g_free(displs);
  if (rc != MPI_SUCCESS) {
    g_free(out);
    return mpi_fail(c, rc, "MPI_Allgatherv", err);
  }
  *recv = out;
  return true;
}

bool vs_coll_allgatherv_f64(vs_coll *c, const double *send, size_t count, double **recv,
                            size_t *counts, GError **err) {
  void *out = NULL;
  if (!vs_coll_allgatherv(c, send, count, VS_COLL_F64, &out, counts, err)) return false;
  *recv = out;
  return true;
}

bool vs_coll_allgatherv_bytes(vs_coll *c, const void *send, size_t bytes, uint8_t **recv,
                              size_t *counts, GError **err) {
  void *out = NULL;
  if (!vs_coll_allgatherv(c, send, bytes, VS_COLL_U8, &out, counts, err)) return false;
  *recv = out;
  return true;
}

bool vs_coll_count_errors(vs_coll *c, int64_t local_errors, int64_t *total_errors, GError **err) {
  int64_t v = local_errors;
  if (!vs_coll_allreduce_i64(c, &v, 1, VS_COLL_SUM, err)) return false;
  *total_errors = v;
  return true;
}

/* ---- reports ---- */

enum { REPORT_TAG = 17 };

vs_coll_report *vs_coll_report_open(vs_coll *c, int root, size_t n_values, GError **err) {
  if (root < 0 || root >= c->size)
    VS_FAIL(err, VS_ERROR_INTERNAL, NULL, "vs_coll_report_open: root %d outside 0..%d", root,
            c->size - 1);
  vs_coll_report *r = g_new0(vs_coll_report, 1);
  r->c = c;
  r->root = root;
  r->n = n_values;
  r->req = MPI_REQUEST_NULL;
  int rc = MPI_Comm_dup(c->comm, &r->comm);
  if (rc != MPI_SUCCESS) {
    g_free(r);
    mpi_fail(c, rc, "MPI_Comm_dup (report channel)", err);
    return NULL;
  }
  MPI_Comm_set_errhandler(r->comm, MPI_ERRORS_RETURN);
  size_t rows = c->rank == root ? (size_t)c->size : 1;
  r->latest = g_new0(double, rows *(n_values + 1));
  r->in_flight = g_new0(double, n_values + 1);
  r->pending = g_new0(double, n_values + 1);
  c->n_report_channels++;
  return r;
}

/* Non-root: starts a send of `pending` if the previous one completed. */
static bool report_push(vs_coll_report *r, GError **err) {
  if (r->req != MPI_REQUEST_NULL) {
    int done = 0;
    MPI_TRY(r->c, MPI_Test(&r->req, &done, MPI_STATUS_IGNORE), err);
    if (!done) return true;
  }
  if (!r->has_pending) return true;
  memcpy(r->in_flight, r->pending, (r->n + 1) * sizeof(double));
  r->has_pending = false;
  MPI_TRY(
      r->c,
      MPI_Isend(r->in_flight, (int)(r->n + 1), MPI_DOUBLE, r->root, REPORT_TAG, r->comm, &r->req),
      err);
  return true;
}

bool vs_coll_report_post(vs_coll_report *r, const double *values, GError **err) {
  if (r->finished) VS_FAIL(err, VS_ERROR_INTERNAL, false, "vs_coll_report_post after finish");
  if (r->c->rank == r->root) {
    memcpy(r->latest + (size_t)r->root * (r->n + 1), values, r->n * sizeof(double));
    return true;
  }
  memcpy(r->pending, values, r->n * sizeof(double));
  r->pending[r->n] = 0.0;
  r->has_pending = true;
  return report_push(r, err);
}

bool vs_coll_report_finish(vs_coll_report *r, const double *values, GError **err) {
  if (r->finished) return true;
  r->finished = true;
  if (r->c->rank == r->root) {
    double *row = r->latest + (size_t)r->root * (r->n + 1);
    memcpy(row, values, r->n * sizeof(double));
    row[r->n] = 1.0;
    return true;
  }
  /* The final message must follow every earlier one (MPI keeps order between a pair), and its
   * buffer must stay alive until it is delivered: wait for both. */
  if (r->req != MPI_REQUEST_NULL) MPI_TRY(r->c, MPI_Wait(&r->req, MPI_STATUS_IGNORE), err);
  memcpy(r->in_flight, values, r->n * sizeof(double));
  r->in_flight[r->n] = 1.0;
  r->has_pending = false;
  MPI_TRY(r->c, MPI_Send(r->in_flight, (int)(r->n + 1), MPI_DOUBLE, r->root, REPORT_TAG, r->comm),
          err);
  return true;
}

bool vs_coll_report_poll(vs_coll_report *r, int *n_finished, GError **err) {
  vs_coll *c = r->c;
  if (c->rank != r->root) {
    if (!r->finished && !report_push(r, err)) return false;
    if (n_finished) *n_finished = 0;
    return true;
  }
  double *buf = g_new(double, r->n + 1);
  for (;;) {
    int flag = 0;
    MPI_Status st;
    int rc = MPI_Iprobe(MPI_ANY_SOURCE, REPORT_TAG, r->comm, &flag, &st);
    if (rc != MPI_SUCCESS) {
      g_free(buf);
      return mpi_fail(c, rc, "MPI_Iprobe (reports)", err);
    }
    if (!flag) break;
    rc = MPI_Recv(buf, (int)(r->n + 1), MPI_DOUBLE, st.MPI_SOURCE, REPORT_TAG, r->comm,
                  MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      g_free(buf);
      return mpi_fail(c, rc, "MPI_Recv (reports)", err);
    }
    memcpy(r->latest + (size_t)st.MPI_SOURCE * (r->n + 1), buf, (r->n + 1) * sizeof(double));
  }
  g_free(buf);
  if (n_finished) {
    int n = 0;
    for (int k = 0; k < c->size; k++)
      n += r->latest[(size_t)k * (r->n + 1) + r->n] != 0.0;
    *n_finished = n;
  }
  return true;
}

const double *vs_coll_report_latest(const vs_coll_report *r, int rank) {
  if (r->c->rank != r->root || rank < 0 || rank >= r->c->size) return NULL;
  return r->latest + (size_t)rank * (r->n + 1);
}

bool vs_coll_report_free(vs_coll_report *r, GError **err) {
  if (!r) return true;
  bool ok = true;
  if (r->req != MPI_REQUEST_NULL) {
    int rc = MPI_Wait(&r->req, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) ok = mpi_fail(r->c, rc, "MPI_Wait (report channel)", err);
  }
  int rc = MPI_Comm_free(&r->comm); /* collective: every rank gets here */
  if (rc != MPI_SUCCESS && ok) ok = mpi_fail(r->c, rc, "MPI_Comm_free (report channel)", err);
  r->c->n_report_channels--;
  g_free(r->latest);
  g_free(r->in_flight);
  g_free(r->pending);
  g_free(r);
  return ok;
}
