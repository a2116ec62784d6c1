#include "plan.h"

#include <glib.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Sorting copies of (id, duration, index) lets plain qsort order them without a context. */
typedef struct {
  const char *id;
  double dur;
  size_t index;
} plan_item;

static double clean_duration(double d) {
  /* NaN, negative or infinite durations would make the heap order depend on comparison quirks;
   * an unknown duration counts as zero work rather than poisoning every rank's load. */
  if (!(d > 0.0) || isinf(d)) return 0.0;
  return d;
}

static int item_cmp(const void *pa, const void *pb) {
  const plan_item *a = pa, *b = pb;
  if (a->dur > b->dur) return -1;
  if (a->dur < b->dur) return 1;
  int c = strcmp(a->id ? a->id : "", b->id ? b->id : "");
  if (c) return c;
  /* Equal ids are a corpus problem reported elsewhere; the input index keeps the order total. */
  return a->index < b->index ? -1 : a->index > b->index;
}

/* Min-heap of ranks keyed on (load, count, rank), O(log world) per utterance, so large corpora
 * on thousands of ranks stay cheap. The count breaks load ties before the rank number does:
 * otherwise every zero-duration utterance (unknown or unprobeable) would pile onto rank 0. */
typedef struct {
  double *load;
  size_t *count;
  int *heap;
  int n;
} rank_heap;

static bool heap_less(const rank_heap *h, int a, int b) {
  if (h->load[a] != h->load[b]) return h->load[a] < h->load[b];
  if (h->count[a] != h->count[b]) return h->count[a] < h->count[b];
  return a < b;
}

static void heap_sift_down(rank_heap *h, int pos) {
  for (;;) {
    int l = 2 * pos + 1, r = l + 1, best = pos;
    if (l < h->n && heap_less(h, h->heap[l], h->heap[best])) best = l;
    if (r < h->n && heap_less(h, h->heap[r], h->heap[best])) best = r;
    if (best == pos) return;
    int t = h->heap[pos];
    h->heap[pos] = h->heap[best];
    h->heap[best] = t;
    pos = best;
  }
}

void vs_plan_assign(const char *const *ids, const double *durations_s, size_t n, int world,
                    int *rank_of, double *load_s) {
  if (world < 1) world = 1;
  double *load = g_new0(double, world);
  if (n > 0) {
    plan_item *items = g_new(plan_item, n);
    for (size_t i = 0; i < n; i++) {
      items[i].id = ids ? ids[i] : NULL;
      items[i].dur = clean_duration(durations_s ? durations_s[i] : 0.0);
      items[i].index = i;
    }
    qsort(items, n, sizeof *items, item_cmp);

    rank_heap h = {load, g_new0(size_t, world), g_new(int, world), world};
    /* Ranks 0..world-1 with equal zero loads already form a valid heap in rank order. */
    for (int r = 0; r < world; r++)
      h.heap[r] = r;
    for (size_t k = 0; k < n; k++) {
      int r = h.heap[0];
      rank_of[items[k].index] = r;
      load[r] += items[k].dur;
      h.count[r]++;
      heap_sift_down(&h, 0);
    }
    g_free(h.count);
    g_free(h.heap);
    g_free(items);
  }
  if (load_s) memcpy(load_s, load, sizeof(double) * (size_t)world);
  g_free(load);
}
