/* The front end of corpus jobs: worker threads read a rank's utterances (files and tar members,
 * each archive in sequence) and turn each one's audio into a job-specific payload (log-mel
 * features, VAD chunks, ...) ahead of the consumer, through a bounded queue, so the consumer
 * never waits for audio and memory stays bounded. Failures (unreadable, corrupt audio) arrive as
 * items with a code and a reason; the job records them and goes on. Workers never call MPI.
 */
#ifndef VS_FRONTEND_H
#define VS_FRONTEND_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

#include "corpus.h"

typedef struct {
  size_t index;     /* corpus index */
  size_t n_samples; /* 16 kHz samples decoded */
  int code;         /* vs_error_code of a failure, 0 on success */
  char *reason;     /* failure message (metadata: names the source and the problem) */
  void *payload;    /* what make() returned; NULL for a failure */
} vs_frontend_item;

/* Runs on a worker thread: builds the payload from 16 kHz mono samples, or fails with err. */
typedef void *(*vs_frontend_make_fn)(size_t index, const float *samples, size_t n_samples,
                                     void *user, GError **err);
typedef void (*vs_frontend_free_fn)(void *payload);

typedef struct vs_frontend vs_frontend;

/* Starts `threads` workers over own[0..n_own) (corpus indices, in I/O order); at most
 * `capacity` items wait in the queue. */
vs_frontend *vs_frontend_start(const vs_corpus *corpus, const size_t *own, size_t n_own,
                               int threads, int capacity, vs_frontend_make_fn make,
                               vs_frontend_free_fn free_payload, void *user);
/* Next item, or NULL when none came within timeout_us (*finished: every item was delivered). */
vs_frontend_item *vs_frontend_pop(vs_frontend *fe, gint64 timeout_us, bool *finished);
void vs_frontend_item_free(vs_frontend *fe, vs_frontend_item *it);
/* Asks the workers to stop early (the consumer gave up). */
void vs_frontend_cancel(vs_frontend *fe);
/* Joins the workers and frees what is left. */
void vs_frontend_free(vs_frontend *fe);

#endif
