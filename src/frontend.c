#include "frontend.h"

#include "vs_error.h"

struct vs_frontend {
  const vs_corpus *corpus;
  const size_t *own; /* corpus indices of this rank, in I/O order */
  size_t n_own, chunk;
  gint next_chunk;
  vs_frontend_make_fn make;
  vs_frontend_free_fn free_payload;
  void *user;
  GMutex lock;
  GCond not_full, not_empty;
  GQueue items; /* vs_frontend_item* */
  int capacity;
  int workers_left;
  gint stop; /* the consumer gave up: workers finish quickly without computing */
  GThread **threads;
  int n_threads;
};

typedef struct {
  vs_frontend *fe;
  bool *delivered; /* per utterance of the current chunk */
  const size_t *which;
  size_t n_which;
} fe_call;

void vs_frontend_item_free(vs_frontend *fe, vs_frontend_item *it) {
  if (!it) return;
  if (it->payload) fe->free_payload(it->payload);
  g_free(it->reason);
  g_free(it);
}

static void push(vs_frontend *fe, vs_frontend_item *it) {
  g_mutex_lock(&fe->lock);
  while ((int)fe->items.length >= fe->capacity && !g_atomic_int_get(&fe->stop))
    g_cond_wait(&fe->not_full, &fe->lock);
  g_queue_push_tail(&fe->items, it);
  g_cond_signal(&fe->not_empty);
  g_mutex_unlock(&fe->lock);
}

vs_frontend_item *vs_frontend_pop(vs_frontend *fe, gint64 timeout_us, bool *finished) {
  g_mutex_lock(&fe->lock);
  gint64 until = g_get_monotonic_time() + timeout_us;
  while (!fe->items.length && fe->workers_left > 0)
    if (!g_cond_wait_until(&fe->not_empty, &fe->lock, until)) break;
  vs_frontend_item *it = g_queue_pop_head(&fe->items);
  if (it) g_cond_signal(&fe->not_full);
  *finished = !it && fe->workers_left == 0;
  g_mutex_unlock(&fe->lock);
  return it;
}

static vs_frontend_item *failure_item(size_t index, int code, const char *reason) {
  vs_frontend_item *it = g_new0(vs_frontend_item, 1);
  it->index = index;
  it->code = code ? code : VS_ERROR_INTERNAL;
  it->reason = g_strdup(reason ? reason : "unknown error");
  return it;
}

static bool on_audio(size_t index, const float *samples, size_t n_samples, const GError *err,
                     void *user) {
  fe_call *call = user;
  vs_frontend *fe = call->fe;
  if (g_atomic_int_get(&fe->stop)) return false;
  for (size_t k = 0; k < call->n_which; k++)
    if (call->which[k] == index) call->delivered[k] = true;
  vs_frontend_item *it;
  if (err || !samples) {
    it = failure_item(index, err ? err->code : VS_ERROR_AUDIO, err ? err->message : "no audio");
  } else if (n_samples == 0) {
    gchar *msg = g_strdup_printf("%s: no audio samples", vs_corpus_utt(fe->corpus, index)->source);
    it = failure_item(index, VS_ERROR_AUDIO, msg);
    g_free(msg);
  } else {
    GError *merr = NULL;
    void *payload = fe->make(index, samples, n_samples, fe->user, &merr);
    if (!payload) {
      gchar *msg = g_strdup_printf("%s: %s", vs_corpus_utt(fe->corpus, index)->source,
                                   merr ? merr->message : "front end failed");
      it = failure_item(index, merr ? merr->code : VS_ERROR_INTERNAL, msg);
      g_free(msg);
      g_clear_error(&merr);
    } else {
      it = g_new0(vs_frontend_item, 1);
      it->index = index;
      it->payload = payload;
    }
  }
  it->n_samples = n_samples;
  push(fe, it);
  return true;
}

static gpointer worker(gpointer data) {
  vs_frontend *fe = data;
  for (;;) {
    if (g_atomic_int_get(&fe->stop)) break;
    size_t c = (size_t)g_atomic_int_add(&fe->next_chunk, 1);
    size_t start = c * fe->chunk;
    if (start >= fe->n_own) break;
    size_t n = MIN(fe->chunk, fe->n_own - start);
    fe_call call = {fe, g_new0(bool, n), fe->own + start, n};
    GError *err = NULL;
    bool ok = vs_corpus_for_each_audio(fe->corpus, call.which, n, on_audio, &call, &err);
    if (!g_atomic_int_get(&fe->stop)) {
      /* A failure of the whole call (an unreadable archive): whatever it did not deliver fails
       * with its reason, and the job goes on. */
      for (size_t k = 0; k < n; k++) {
        if (call.delivered[k]) continue;
        const vs_utt *u = vs_corpus_utt(fe->corpus, call.which[k]);
        gchar *msg = !ok && err
                         ? g_strdup(err->message)
                         : g_strdup_printf("%s: the corpus reader did not deliver this utterance",
                                           u->source);
        push(fe, failure_item(call.which[k], !ok && err ? err->code : VS_ERROR_INTERNAL, msg));
        g_free(msg);
      }
    }
    g_clear_error(&err);
    g_free(call.delivered);
  }
  g_mutex_lock(&fe->lock);
  fe->workers_left--;
  g_cond_broadcast(&fe->not_empty);
  g_mutex_unlock(&fe->lock);
  return NULL;
}

vs_frontend *vs_frontend_start(const vs_corpus *corpus, const size_t *own, size_t n_own,
                               int threads, int capacity, vs_frontend_make_fn make,
                               vs_frontend_free_fn free_payload, void *user) {
  vs_frontend *fe = g_new0(vs_frontend, 1);
  fe->corpus = corpus;
  fe->own = own;
  fe->n_own = n_own;
  fe->make = make;
  fe->free_payload = free_payload;
  fe->user = user;
  fe->capacity = capacity > 0 ? capacity : 1;
  fe->n_threads = threads > 0 ? threads : 1;
  fe->workers_left = fe->n_threads;
  /* Chunks small enough to balance threads, large enough to read a tar archive few times. */
  fe->chunk = CLAMP(n_own / ((size_t)fe->n_threads * 4), 1, 64);
  g_mutex_init(&fe->lock);
  g_cond_init(&fe->not_full);
  g_cond_init(&fe->not_empty);
  g_queue_init(&fe->items);
  fe->threads = g_new0(GThread *, fe->n_threads);
  for (int t = 0; t < fe->n_threads; t++)
    fe->threads[t] = g_thread_new("vs-frontend", worker, fe);
  return fe;
}

void vs_frontend_cancel(vs_frontend *fe) {
  g_atomic_int_set(&fe->stop, 1);
  g_mutex_lock(&fe->lock);
  g_cond_broadcast(&fe->not_full);
  g_mutex_unlock(&fe->lock);
}

void vs_frontend_free(vs_frontend *fe) {
  if (!fe) return;
  vs_frontend_cancel(fe);
  for (int t = 0; t < fe->n_threads; t++)
    g_thread_join(fe->threads[t]);
  g_free(fe->threads);
  vs_frontend_item *left;
  while ((left = g_queue_pop_head(&fe->items)))
    vs_frontend_item_free(fe, left);
  g_mutex_clear(&fe->lock);
  g_cond_clear(&fe->not_full);
  g_cond_clear(&fe->not_empty);
  g_free(fe);
}
