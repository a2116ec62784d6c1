/* Collectives at any world size (run under mpirun -np 1, 2, 3): every rank checks results it
 * can compute on its own from the rank numbers, and the report channel delivers every rank's
 * final values to root while non-root ranks never wait for root. */
#include "coll.h"
#include "progress.h"
#include "vs_error.h"
#include "vs_test.h"

#include <string.h>

int main(int argc, char **argv) {
  GError *err = NULL;
  vs_coll *c = vs_coll_init(&argc, &argv, &err);
  VS_GERROR_CHECK(c, err);
  int rank = vs_coll_rank(c), size = vs_coll_size(c);
  CHECK(rank >= 0 && rank < size);
  CHECK(vs_coll_local_rank(c) >= 0 && vs_coll_local_rank(c) < vs_coll_local_size(c));
  CHECK(vs_coll_local_size(c) <= size);
  CHECK(vs_coll_hostname(c)[0] != '\0');
  CHECK(vs_coll_barrier(c, &err));

  /* Broadcast: fixed size, and a size only root knows. */
  char msg[32] = "";
  if (rank == 0) strcpy(msg, "from root");
  CHECK(vs_coll_bcast(c, msg, sizeof msg, 0, &err));
  CHECK(strcmp(msg, "from root") == 0);
  void *blob = NULL;
  size_t blob_size = 0;
  if (rank == size - 1) {
    blob = g_strdup("variable sized payload");
    blob_size = strlen(blob) + 1;
  }
  CHECK(vs_coll_bcast_alloc(c, &blob, &blob_size, size - 1, &err));
  CHECK(blob_size == strlen("variable sized payload") + 1 &&
        strcmp(blob, "variable sized payload") == 0);
  g_free(blob);

  /* All-reduce. */
  int64_t iv[2] = {rank + 1, 10 * rank};
  CHECK(vs_coll_allreduce_i64(c, iv, 2, VS_COLL_SUM, &err));
  CHECK(iv[0] == (int64_t)size * (size + 1) / 2 && iv[1] == 10 * (int64_t)size * (size - 1) / 2);
  double dv[2] = {0.5 * rank, -rank};
  CHECK(vs_coll_allreduce_f64(c, dv, 2, VS_COLL_MAX, &err));
  CHECK(dv[0] == 0.5 * (size - 1) && dv[1] == 0.0);
  int64_t mn = 7 + rank;
  CHECK(vs_coll_allreduce_i64(c, &mn, 1, VS_COLL_MIN, &err) && mn == 7);

  /* Device buffers are not supported by the MPI backend: a clear error, not a crash. */
  CHECK(!vs_coll_allreduce(c, dv, 1, VS_COLL_F64, VS_COLL_SUM, VS_COLL_DEVICE, &err));
  CHECK(err && err->code == VS_ERROR_UNSUPPORTED && strstr(err->message, "NCCL"));
  g_clear_error(&err);

  /* All-gather with different counts per rank (rank r sends r values; rank 0 sends none). */
  double *send = g_new(double, rank + 1);
  for (int k = 0; k < rank; k++)
    send[k] = rank * 100.0 + k;
  double *recv = NULL;
  size_t *counts = g_new0(size_t, size);
  CHECK(vs_coll_allgatherv_f64(c, send, (size_t)rank, &recv, counts, &err));
  size_t pos = 0;
  bool all_ok = true;
  for (int r = 0; r < size; r++) {
    all_ok = all_ok && counts[r] == (size_t)r;
    for (int k = 0; k < r; k++)
      all_ok = all_ok && recv[pos++] == r * 100.0 + k;
  }
  CHECK(all_ok);
  g_free(recv);
  g_free(send);

  char word[16];
  int wl = g_snprintf(word, sizeof word, "r%d;", rank);
  uint8_t *bytes = NULL;
  CHECK(vs_coll_allgatherv_bytes(c, word, (size_t)wl, &bytes, counts, &err));
  GString *expect = g_string_new(NULL);
  size_t total = 0;
  for (int r = 0; r < size; r++) {
    g_string_append_printf(expect, "r%d;", r);
    total += counts[r];
  }
  CHECK(total == expect->len && memcmp(bytes, expect->str, expect->len) == 0);
  g_string_free(expect, TRUE);
  g_free(bytes);
  g_free(counts);

  /* Error counting: ranks with odd numbers report one error each. */
  int64_t errors = -1;
  CHECK(vs_coll_count_errors(c, rank % 2, &errors, &err));
  CHECK(errors == size / 2);

  /* Reports: many posts (most are dropped while one is in flight), then the final values. */
  vs_coll_report *rep = vs_coll_report_open(c, 0, 2, &err);
  CHECK(rep != NULL);
  for (int k = 1; k <= 200; k++) {
    double v[2] = {k * (rank + 1.0), k};
    CHECK(vs_coll_report_post(rep, v, &err));
    if (rank == 0) CHECK(vs_coll_report_poll(rep, NULL, &err));
  }
  double fin[2] = {1000.0 * (rank + 1), 200};
  CHECK(vs_coll_report_finish(rep, fin, &err));
  if (rank == 0) {
    int finished = 0;
    gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    while (finished < size && g_get_monotonic_time() < deadline) {
      CHECK(vs_coll_report_poll(rep, &finished, &err));
      if (finished < size) g_usleep(1000);
    }
    CHECK(finished == size);
    for (int r = 0; r < size; r++) {
      const double *v = vs_coll_report_latest(rep, r);
      CHECK(v && v[0] == 1000.0 * (r + 1) && v[1] == 200);
    }
  } else {
    CHECK(vs_coll_report_latest(rep, 0) == NULL); /* only root holds the table */
  }
  CHECK(vs_coll_report_free(rep, &err));

  /* Progress over the same mechanism: totals over all ranks reach every rank. */
  vs_progress *p = vs_progress_new(c, "test", 10.0 * size, 0.01, VS_PROGRESS_LOG, &err);
  CHECK(p != NULL);
  for (int k = 0; k < 10; k++) {
    vs_progress_add(p, 1.0, 1, k == 9 && rank == 0);
    CHECK(vs_progress_tick(p, &err));
    g_usleep(2000);
  }
  double audio = 0;
  size_t done = 0, failed = 0;
  CHECK(vs_progress_finish(p, &audio, &done, &failed, &err));
  CHECK(audio == 10.0 * size && done == (size_t)(10 * size) && failed == 1);
  vs_progress_free(p);

  if (err) fprintf(stderr, "rank %d: %s\n", rank, err->message);
  int rc = vs_test_finish();
  /* Every rank's verdict decides the exit code of rank 0 too (mpirun reports the first failure). */
  int64_t bad = rc != 0;
  vs_coll_count_errors(c, bad, &bad, NULL);
  CHECK(vs_coll_finalize(c, &err));
  return bad ? 1 : rc;
}
