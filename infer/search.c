/* Whisper search, written to make the same decisions as CTranslate2's decoding.cc and
 * models/whisper.cc as faster-whisper drives them (generate_with_fallback). Where the two
 * reference projects differ from openai/whisper (the pairing rule right after the first
 * timestamp, 224 new tokens at most, sums that include EOT's log-probability), CTranslate2 wins:
 * faster-whisper's transcripts are the acceptance test. */
#include "search.h"

#include "tokenizer.h"
#include "vecmath.h"
#include "vs_error.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <zlib.h>

/* ------------------------------------------------------------------------------------------ */
/* vocabulary and options */

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

bool vs_search_vocab_init(vs_search_vocab *v, const struct vs_tokenizer *tok,
                          const int *suppress_ids, size_t n_suppress_ids,
                          const int *suppress_ids_begin, size_t n_suppress_ids_begin,
                          GError **err) {
  memset(v, 0, sizeof *v);
  const vs_special_tokens *sp = vs_tokenizer_specials(tok);
  if (!sp || sp->timestamp_begin <= 0)
    VS_FAIL(err, VS_ERROR_MODEL, false, "search: tokenizer has no timestamp tokens");
  v->eot = sp->eot;
  v->sot = sp->sot;
  v->sot_prev = sp->sot_prev;
  v->sot_lm = sp->sot_lm;
  v->translate = sp->translate;
  v->transcribe = sp->transcribe;
  v->no_speech = sp->no_speech;
  v->no_timestamps = sp->no_timestamps;
  v->timestamp_begin = sp->timestamp_begin;

  /* faster-whisper's get_suppressed_tokens([-1]) adds the task and prompt specials. */
  const int extra[] = {v->transcribe, v->translate, v->sot, v->sot_prev, v->sot_lm, v->no_speech};
  size_t n = n_suppress_ids + G_N_ELEMENTS(extra);
  v->suppress = g_new(int, n);
  size_t k = 0;
  for (size_t i = 0; i < n_suppress_ids; i++)
    if (suppress_ids[i] >= 0 && suppress_ids[i] < sp->n_vocab) v->suppress[k++] = suppress_ids[i];
  for (size_t i = 0; i < G_N_ELEMENTS(extra); i++)
    if (extra[i] >= 0) v->suppress[k++] = extra[i];
  qsort(v->suppress, k, sizeof(int), cmp_int);
  size_t u = 0;
  for (size_t i = 0; i < k; i++)
    if (u == 0 || v->suppress[u - 1] != v->suppress[i]) v->suppress[u++] = v->suppress[i];
  v->n_suppress = u;

  v->suppress_begin = g_new(int, n_suppress_ids_begin ? n_suppress_ids_begin : 1);
  k = 0;
  for (size_t i = 0; i < n_suppress_ids_begin; i++)
    if (suppress_ids_begin[i] >= 0 && suppress_ids_begin[i] < sp->n_vocab)
      v->suppress_begin[k++] = suppress_ids_begin[i];
  v->n_suppress_begin = k;
  return true;
}

void vs_search_vocab_clear(vs_search_vocab *v) {
  g_free(v->suppress);
  g_free(v->suppress_begin);
  memset(v, 0, sizeof *v);
}

vs_search_options vs_search_default_options(void) {
  vs_search_options o = {0};
  o.beam_size = 5;
  o.best_of = 5;
  o.patience = 1.0f;
  o.length_penalty = 1.0f;
  o.suppress_blank = true;
  o.suppress_tokens = true;
  o.max_initial_timestamp = 1.0f;
  o.max_new_tokens = 0;
  o.n_temperatures = 6;
  for (int i = 0; i < 6; i++)
    o.temperatures[i] = 0.2f * (float)i;
  o.compression_ratio_threshold = 2.4;
  o.log_prob_threshold = -1.0;
  o.no_speech_threshold = 0.6;
  return o;
}

int vs_search_slots_needed(const vs_search_options *o, float temperature) {
  int n = temperature > 0 ? o->best_of : o->beam_size;
  return n < 1 ? 1 : n;
}

int vs_search_slots_max(const vs_search_options *o) {
  int m = 1;
  for (int i = 0; i < o->n_temperatures; i++) {
    int n = vs_search_slots_needed(o, o->temperatures[i]);
    if (n > m) m = n;
  }
  if (o->n_temperatures == 0) m = vs_search_slots_needed(o, 0);
  return m;
}

void vs_search_result_clear(vs_search_result *r) {
  g_free(r->tokens);
  memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------------------------------ */
/* text measures */

/* Python's str.isspace(), which str.strip() uses; wider than C's isspace. */
static bool py_isspace(gunichar c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

char *vs_search_stripped_text(const struct vs_tokenizer *tok, const int *ids, int n) {
  char *text = vs_tokenizer_decode(tok, ids, (size_t)n);
  if (!text) return g_strdup("");
  const char *b = text, *e = text + strlen(text);
  while (b < e && py_isspace(g_utf8_get_char_validated(b, e - b)))
    b = g_utf8_next_char(b);
  while (e > b) {
    const char *p = g_utf8_find_prev_char(b, e);
    if (!p || !py_isspace(g_utf8_get_char_validated(p, e - p))) break;
    e = p;
  }
  char *out = g_strndup(b, (gsize)(e - b));
  g_free(text);
  return out;
}

double vs_search_compression_ratio(const char *text, size_t len) {
  uLongf cap = compressBound((uLong)len);
  Bytef *buf = g_malloc(cap);
  double r = 0.0;
  if (compress2(buf, &cap, (const Bytef *)text, (uLong)len, Z_DEFAULT_COMPRESSION) == Z_OK &&
      cap > 0)
    r = (double)len / (double)cap;
  g_free(buf);
  return r;
}

/* ------------------------------------------------------------------------------------------ */
/* sampling stream: splitmix64 seeding xoshiro256**, so that a job's samples depend only on its
 * seed, its temperature index and the hypothesis number, never on the batch around it */

typedef struct {
  uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static double rng_uniform(rng_t *r) {
  uint64_t *s = r->s;
  uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return (double)(res >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------------------------------------ */
/* logit rules */

typedef struct {
  const vs_search_vocab *v;
  const vs_search_options *o;
  int n_vocab;
  bool timestamps;
  int max_initial_id;
} rules_t;

static void disable_range(float *x, int from, int to_excl) {
  for (int i = from; i < to_excl; i++)
    x[i] = -INFINITY;
}

/* True when the timestamps' total probability beats every text token (CTranslate2's
 * should_sample_timestamp), on the logits with the step's disables already applied. */
static bool timestamp_mass_wins(const float *x, int n_vocab, int ts_begin, double *lse_all,
                                double *lse_ts) {
  *lse_all = vs_vec_log_sum_exp(x, n_vocab);
  *lse_ts = vs_vec_log_sum_exp(x + ts_begin, n_vocab - ts_begin);
  if (*lse_all == -INFINITY || *lse_ts == -INFINITY) return false;
  double max_text = vs_vec_max(x, ts_begin);
  return *lse_ts - *lse_all > max_text - *lse_all;
}

/* Every rule of one step, in CTranslate2's order: suppress_tokens, suppress_blank at the first
 * step, then the timestamp rules (which see the earlier disables before the mass test).
 * Returns the log-normaliser of the final row when the timestamp test computed it on the way
 * (saves a pass over the vocabulary per step), else NAN. */
static double apply_rules(const rules_t *R, float *x, const int *gen, int step) {
  const vs_search_vocab *v = R->v;
  if (R->o->suppress_tokens)
    for (size_t i = 0; i < v->n_suppress; i++)
      x[v->suppress[i]] = -INFINITY;
  if (R->o->suppress_blank && step == 0)
    for (size_t i = 0; i < v->n_suppress_begin; i++)
      x[v->suppress_begin[i]] = -INFINITY;
  if (!R->timestamps) return NAN;

  const int tb = v->timestamp_begin, n = R->n_vocab;
  x[v->no_timestamps] = -INFINITY;
  bool check = false;
  if (step == 0) {
    disable_range(x, 0, tb);
    disable_range(x, R->max_initial_id + 1, n);
  } else {
    int last = gen[step - 1];
    if (last >= tb) {
      /* Right after the first timestamp CTranslate2 treats it as its own penultimate, so the
       * second token can never be a timestamp. */
      int penult = step - 1 > 0 ? gen[step - 2] : last;
      if (penult >= tb) {
        disable_range(x, tb, n);
      } else {
        disable_range(x, 0, v->eot);
        disable_range(x, tb, last);
        check = true;
      }
    } else {
      check = true;
      for (int t = step - 1; t >= 0; t--) {
        if (gen[t] >= tb) {
          disable_range(x, tb, gen[t] + 1);
          break;
        }
      }
    }
  }
  if (!check) return NAN;
  double lse_all, lse_ts;
  if (timestamp_mass_wins(x, n, tb, &lse_all, &lse_ts)) {
    disable_range(x, 0, tb);
    return lse_ts; /* only the timestamps are left */
  }
  return lse_all;
}

void vs_search_apply_rules(const vs_search_vocab *v, const vs_search_options *o, int n_vocab,
                           bool timestamps, const int *generated, int step, float *logits) {
  rules_t R = {v, o, n_vocab, timestamps,
               v->timestamp_begin + (int)nearbyint(o->max_initial_timestamp / 0.02)};
  apply_rules(&R, logits, generated, step);
}

/* The row's log-normaliser: log_softmax(x)[i] = x[i] - row_lse(x), in float as CTranslate2.
 * known: the value apply_rules returned (NAN when it did not compute one). */
static float row_lse(const float *x, int n, double known) {
  return (float)(isnan(known) ? vs_vec_log_sum_exp(x, n) : known);
}

static void log_softmax(float *x, int n, double known) {
  float lse = row_lse(x, n, known);
  if (lse == -INFINITY) return;
#pragma omp simd
  for (int i = 0; i < n; i++)
    x[i] -= lse;
}

static float prob_of(const float *x, int n, int id) {
  double lse = vs_vec_log_sum_exp(x, n);
  return (float)exp((double)x[id] - lse);
}

/* ------------------------------------------------------------------------------------------ */
/* per-job decoding state */

typedef struct {
  int slot;
  int *toks; /* generated tokens */
  int n, cap;
  float sum; /* float, as CTranslate2 accumulates scores */
  bool done;
  int next; /* token fed at the next step */
  rng_t rng;
} seq_t;

typedef struct {
  int *toks;
  int n;
  float score;
} hyp_t;

typedef struct {
  float score;
  int beam, tok;
} cand_t;

enum { MODE_GREEDY, MODE_SAMPLE, MODE_BEAM };

typedef struct {
  const vs_search_job *job;
  int window, slot_base; /* the job's, or assigned at admission in a pool */
  float temp;
  int mode;
  rules_t rules;
  int n_seq; /* sequences (greedy/sample) or beams */
  seq_t *seqs;
  int n_alive_beams; /* 1 at the first step, beam_size after */
  int max_steps, step;
  bool done;
  float no_speech;
  int head_len; /* prompt tokens decoded in the first call (through sot when needed) */
  /* beam search */
  GArray *hyps; /* hyp_t */
  bool top_finished;
  int max_candidates;
  vs_search_result *out;
} job_t;

static void seq_push(seq_t *s, int tok) {
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 32;
    s->toks = g_renew(int, s->toks, s->cap);
  }
  s->toks[s->n++] = tok;
}

static void job_free(job_t *J) {
  for (int i = 0; J->seqs && i < J->n_seq; i++) /* seqs is NULL when setup failed before it */
    g_free(J->seqs[i].toks);
  g_free(J->seqs);
  if (J->hyps) {
    for (guint i = 0; i < J->hyps->len; i++)
      g_free(g_array_index(J->hyps, hyp_t, i).toks);
    g_array_free(J->hyps, TRUE);
  }
}

static void finish_result(job_t *J, const int *toks, int n, float sum, float score) {
  vs_search_result *r = J->out;
  r->tokens = g_memdup2(toks, sizeof(int) * (n ? n : 1));
  r->n_tokens = n;
  r->sum_logprob = sum;
  r->score = score;
  double lp = J->job->opts->length_penalty;
  /* faster-whisper recovers the sum from CTranslate2's normalised score. */
  double cum = (double)score * pow((double)n, lp);
  r->avg_logprob = cum / (double)(n + 1);
  r->no_speech_prob = J->no_speech;
  r->temperature = J->temp;
  J->done = true;
}

static float norm_score(float sum, int len, float lp) {
  return sum / powf((float)len, lp);
}

/* Greedy and sampling: each sequence takes its own token from its own logits. */
static void step_independent(job_t *J, seq_t *s, float *x) {
  const int V = J->rules.n_vocab;
  double known = apply_rules(&J->rules, x, s->toks, J->step);
  int tok = 0;
  if (J->mode == MODE_GREEDY) {
    /* Only the chosen token's log-probability is needed: the row is not normalised. */
    tok = vs_vec_argmax(x, V);
    float lse = row_lse(x, V, known);
    x[tok] = lse == -INFINITY ? x[tok] : x[tok] - lse;
  } else {
    log_softmax(x, V, known);
    /* softmax(log_probs / T), the same distribution CTranslate2's RandomSampler draws from. */
    float m = -INFINITY;
    for (int i = 0; i < V; i++)
      if (x[i] > m) m = x[i];
    double total = 0;
    for (int i = 0; i < V; i++)
      total += exp(((double)x[i] - m) / J->temp);
    double u = rng_uniform(&s->rng) * total, acc = 0;
    tok = -1;
    for (int i = 0; i < V; i++) {
      double w = exp(((double)x[i] - m) / J->temp);
      if (w <= 0) continue;
      acc += w;
      tok = i;
      if (acc > u) break;
    }
    if (tok < 0) tok = 0;
  }
  s->sum += x[tok];
  bool eot = tok == J->rules.v->eot;
  if (!eot) seq_push(s, tok);
  s->next = tok;
  if (eot || J->step + 1 == J->max_steps) s->done = true;
}

static void finish_independent(job_t *J) {
  int best = -1;
  float best_score = 0;
  for (int i = 0; i < J->n_seq; i++) {
    float sc = norm_score(J->seqs[i].sum, J->seqs[i].n, J->job->opts->length_penalty);
    if (best < 0 || sc > best_score) best = i, best_score = sc;
  }
  seq_t *s = &J->seqs[best];
  finish_result(J, s->toks, s->n, s->sum, best_score);
}

static void cand_insert(cand_t *c, int *nc, int k, cand_t v) {
  if (*nc == k && !(v.score > c[k - 1].score)) return;
  int i = *nc < k ? (*nc)++ : k - 1;
  while (i > 0 && v.score > c[i - 1].score) {
    c[i] = c[i - 1];
    i--;
  }
  c[i] = v;
}

/* One beam-search step over the job's alive beams (rows x[b * V]); CTranslate2's BeamSearch:
 * 2*beam candidates, finished ones registered and replaced by the next non-EOT candidates,
 * stop after round(beam * patience) finished hypotheses (or the top beam, without penalty). */
static void step_beam(const vs_search_decoder *dec, job_t *J, float *const *rows) {
  const int V = J->rules.n_vocab, B = J->n_seq, K = 2 * B;
  const vs_search_options *o = J->job->opts;
  const int eot = J->rules.v->eot;
  cand_t *c = g_newa(cand_t, K);
  int nc = 0;
  /* The K best over all beams are among each beam's K best: a top-k per row, then the same
   * insertion order (beam, then token) as a scan of every token, so ties resolve alike. */
  int *top_idx = g_newa(int, K);
  float *top_val = g_newa(float, K);
  for (int b = 0; b < J->n_alive_beams; b++) {
    float *x = rows[b];
    double known = apply_rules(&J->rules, x, J->seqs[b].toks, J->step);
    float lse = row_lse(x, V, known);
    if (lse == -INFINITY) lse = 0; /* every token disabled: -inf scores, as log_softmax leaves */
    int nt = vs_vec_top_k(x, V, K, top_idx, top_val);
    float base = J->seqs[b].sum;
    for (int t = 0; t < nt; t++) {
      cand_t v = {base + (top_val[t] - lse), b, top_idx[t]};
      if (nc < K || v.score > c[K - 1].score) cand_insert(c, &nc, K, v);
    }
  }
  bool last = J->step + 1 == J->max_steps;
  int chosen[64];
  int sec = B;
  for (int k = 0; k < B; k++) {
    int next = k;
    if (c[k].tok == eot || last) {
      if (k == 0) J->top_finished = true;
      seq_t *src = &J->seqs[c[k].beam];
      hyp_t h = {g_new(int, src->n + 1), 0, c[k].score};
      memcpy(h.toks, src->toks, sizeof(int) * src->n);
      h.n = src->n;
      if (c[k].tok != eot) h.toks[h.n++] = c[k].tok;
      g_array_append_val(J->hyps, h);
      for (int j = sec; j < nc; j++) {
        if (c[j].tok != eot) {
          next = j;
          sec = j + 1;
          break;
        }
      }
    }
    chosen[k] = next;
  }

  bool finished;
  if (last)
    finished = true;
  else if (o->length_penalty == 0)
    finished = J->top_finished && J->hyps->len >= 1;
  else
    finished = (int)J->hyps->len >= J->max_candidates;

  if (finished) {
    int best = -1;
    float best_score = 0;
    for (guint i = 0; i < J->hyps->len; i++) {
      hyp_t *h = &g_array_index(J->hyps, hyp_t, i);
      float sc = norm_score(h->score, h->n, o->length_penalty);
      if (best < 0 || sc > best_score) best = (int)i, best_score = sc;
    }
    hyp_t *h = &g_array_index(J->hyps, hyp_t, best);
    finish_result(J, h->toks, h->n, h->score, best_score);
    return;
  }

  /* New beams: histories copied from their origins; KV caches follow with as few copies as
   * possible: the first beam taking an origin inherits its slot, later ones get a free slot. */
  seq_t *nb = g_newa(seq_t, B);
  bool *referenced = g_newa(bool, B);
  bool *slot_taken = g_newa(bool, B);
  memset(referenced, 0, sizeof(bool) * B);
  memset(slot_taken, 0, sizeof(bool) * B);
  for (int k = 0; k < B; k++)
    referenced[c[chosen[k]].beam] = true;
  int *free_slots = g_newa(int, B);
  int n_free = 0;
  for (int b = 0; b < B; b++)
    if (!referenced[b] || b >= J->n_alive_beams) free_slots[n_free++] = J->seqs[b].slot;
  for (int k = 0; k < B; k++) {
    const cand_t *cd = &c[chosen[k]];
    seq_t *src = &J->seqs[cd->beam];
    seq_t *d = &nb[k];
    memset(d, 0, sizeof *d);
    if (!slot_taken[cd->beam]) {
      slot_taken[cd->beam] = true;
      d->slot = src->slot;
    } else {
      d->slot = free_slots[--n_free];
      dec->cache_copy(dec->ctx, d->slot, src->slot);
    }
    d->cap = src->n + 16;
    d->toks = g_new(int, d->cap);
    memcpy(d->toks, src->toks, sizeof(int) * src->n);
    d->n = src->n;
    seq_push(d, cd->tok);
    d->sum = cd->score;
    d->next = cd->tok;
  }
  for (int b = 0; b < B; b++)
    g_free(J->seqs[b].toks);
  memcpy(J->seqs, nb, sizeof(seq_t) * B);
  J->n_alive_beams = B;
}

/* ------------------------------------------------------------------------------------------ */

static int sot_index(const int *p, int n, int sot) {
  for (int i = 0; i < n; i++)
    if (p[i] == sot) return i;
  return -1;
}

/* Jobs admit[0..n_admit) start: window and KV slots assigned (pool mode: freed ones), their
 * window made ready, caches reset, the prompt decoded and step 0 taken. */
static bool start_jobs(const vs_search_decoder *dec, const vs_search_vocab *vocab,
                       const vs_search_job *jobs, job_t *J, const int *admit, int n_admit,
                       int *slot, int *window, const int **toks, int *ntok, int *owner,
                       float *logits, GError **err) {
  const int V = dec->n_vocab;
  for (int a = 0; a < n_admit; a++) {
    job_t *t = &J[admit[a]];
    for (int s = 0; s < t->n_seq; s++) {
      t->seqs[s].slot = t->slot_base + s;
      dec->cache_reset(dec->ctx, t->slot_base + s);
    }
  }
  /* Prompt: through sot first when sot is not the last prompt token, so that the no-speech
   * probability comes from the sot position (CTranslate2's compute_logits_for_steps). */
  int n = 0;
  for (int a = 0; a < n_admit; a++) {
    int j = admit[a];
    slot[n] = J[j].seqs[0].slot;
    window[n] = J[j].window;
    toks[n] = jobs[j].prompt;
    ntok[n] = J[j].head_len;
    owner[n++] = a;
  }
  if (!dec->decode(dec->ctx, n, slot, window, toks, ntok, logits, err)) return false;
  for (int i = 0; i < n; i++)
    J[admit[owner[i]]].no_speech = prob_of(logits + (size_t)i * V, V, vocab->no_speech);
  float *first = g_new(float, (size_t)n_admit *V);
  for (int a = 0; a < n_admit; a++)
    if (J[admit[a]].head_len == jobs[admit[a]].n_prompt) {
      /* row a of the first call is this job's: jobs were laid out in order */
      memcpy(first + (size_t)a * V, logits + (size_t)a * V, sizeof(float) * V);
    }
  n = 0;
  for (int a = 0; a < n_admit; a++) {
    int j = admit[a];
    if (J[j].head_len == jobs[j].n_prompt) continue;
    slot[n] = J[j].seqs[0].slot;
    window[n] = J[j].window;
    toks[n] = jobs[j].prompt + J[j].head_len;
    ntok[n] = jobs[j].n_prompt - J[j].head_len;
    owner[n++] = a;
  }
  if (n > 0) {
    if (!dec->decode(dec->ctx, n, slot, window, toks, ntok, logits, err)) {
      g_free(first);
      return false;
    }
    for (int i = 0; i < n; i++)
      memcpy(first + (size_t)owner[i] * V, logits + (size_t)i * V, sizeof(float) * V);
  }

  /* Step 0 from the prompt's logits; sampled hypotheses share the prompt's cache. Jobs are
   * independent (own rows, own cache slots), so their steps run in parallel. */
#pragma omp parallel for schedule(dynamic, 1) if (n_admit > 1)
  for (int a = 0; a < n_admit; a++) {
    job_t *t = &J[admit[a]];
    float *x0 = first + (size_t)a * V;
    if (t->mode == MODE_BEAM) {
      float *row0[1] = {x0};
      step_beam(dec, t, row0);
    } else {
      float *scratch = t->n_seq > 1 ? g_new(float, V) : x0;
      for (int s = 0; s < t->n_seq; s++) {
        if (s > 0) dec->cache_copy(dec->ctx, t->seqs[s].slot, t->seqs[0].slot);
        if (t->n_seq > 1) memcpy(scratch, x0, sizeof(float) * V);
        step_independent(t, &t->seqs[s], scratch);
      }
      if (t->n_seq > 1) g_free(scratch);
      bool all = true;
      for (int s = 0; s < t->n_seq; s++)
        all &= t->seqs[s].done;
      if (all) finish_independent(t);
    }
    t->step = 1;
  }
  g_free(first);
  return true;
}

/* vs_search_run (max_active = n_jobs, windows and slots as the jobs give them) and
 * vs_search_run_pool (at most max_active jobs at once in window slots 0..max_active-1). */
static bool search_core(const vs_search_decoder *dec, const vs_search_vocab *vocab,
                        const vs_search_job *jobs, const float *temps, int n_jobs, int max_active,
                        vs_search_admit_fn admit_fn, void *admit_ctx, vs_search_result *results,
                        GError **err) {
  const int V = dec->n_vocab;
  const bool pool = admit_fn != NULL;
  job_t *J = g_new0(job_t, n_jobs);
  int max_seq = 0;
  bool ok = false;

  for (int j = 0; j < n_jobs; j++) {
    const vs_search_job *jb = &jobs[j];
    const vs_search_options *o = jb->opts;
    job_t *t = &J[j];
    memset(&results[j], 0, sizeof results[j]);
    t->job = jb;
    t->out = &results[j];
    t->temp = temps[j];
    t->window = jb->window;
    t->slot_base = jb->slot_base;
    int si = sot_index(jb->prompt, jb->n_prompt, vocab->sot);
    if (si < 0) {
      g_set_error(err, VS_ERROR, VS_ERROR_INTERNAL, "search: job %d: prompt has no sot token", j);
      goto out;
    }
    int total = o->max_new_tokens > 0 ? jb->n_prompt + o->max_new_tokens : dec->n_text_ctx;
    if (total > dec->n_text_ctx) {
      g_set_error(err, VS_ERROR, VS_ERROR_CONFIG,
                  "search: job %d: prompt (%d tokens) + max_new_tokens (%d) exceeds the "
                  "model's %d text positions",
                  j, jb->n_prompt, o->max_new_tokens, dec->n_text_ctx);
      goto out;
    }
    /* CTranslate2: min(max_length / 2, max_length - tokens before the start token). */
    t->max_steps = MIN(total / 2, total - (jb->n_prompt - 1));
    if (t->max_steps <= 0) {
      g_set_error(err, VS_ERROR, VS_ERROR_CONFIG, "search: job %d: no room to decode", j);
      goto out;
    }
    t->mode = t->temp > 0 ? MODE_SAMPLE : (o->beam_size > 1 ? MODE_BEAM : MODE_GREEDY);
    t->n_seq = vs_search_slots_needed(o, t->temp);
    if (t->n_seq > 32) {
      g_set_error(err, VS_ERROR, VS_ERROR_CONFIG, "search: beam_size/best_of above 32");
      goto out;
    }
    if (pool && vs_search_slots_max(o) > vs_search_slots_max(jobs[0].opts)) {
      g_set_error(err, VS_ERROR, VS_ERROR_INTERNAL,
                  "search: pooled jobs must not need more KV slots than the first");
      goto out;
    }
    t->rules.v = vocab;
    t->rules.o = o;
    t->rules.n_vocab = V;
    t->rules.timestamps = jb->prompt[jb->n_prompt - 1] != vocab->no_timestamps;
    t->rules.max_initial_id =
        vocab->timestamp_begin + (int)nearbyint(o->max_initial_timestamp / 0.02);
    t->seqs = g_new0(seq_t, t->n_seq);
    for (int s = 0; s < t->n_seq; s++) {
      uint64_t seed = jb->seed ^ (0x632be59bd9b4e019ULL * (uint64_t)(s + 1));
      rng_seed(&t->seqs[s].rng, seed);
    }
    t->n_alive_beams = 1;
    t->head_len = si < jb->n_prompt - 1 ? si + 1 : jb->n_prompt;
    if (t->mode == MODE_BEAM) {
      t->hyps = g_array_new(FALSE, FALSE, sizeof(hyp_t));
      t->max_candidates = (int)roundf((float)o->beam_size * o->patience);
    }
    max_seq = MAX(max_seq, t->n_seq);
  }
  if (max_active < 1 || max_active > n_jobs) max_active = n_jobs;

  int cap = MAX(max_active * max_seq, max_active);
  int *slot = g_new(int, cap), *window = g_new(int, cap), *ntok = g_new(int, cap);
  const int **toks = g_new(const int *, cap);
  int *owner = g_new(int, cap), *which = g_new(int, cap);
  float *logits = g_new(float, (size_t)cap *V);
  int *group_start = g_new(int, cap + 1);
  int *admit = g_new(int, max_active);
  int *free_window = g_new(int, max_active), n_free = 0;
  bool *released = g_new0(bool, n_jobs);
  int next_job = 0; /* jobs below have been admitted */
  const int slots_per = pool ? vs_search_slots_max(jobs[0].opts) : 0;
  for (int w = max_active - 1; w >= 0; w--)
    free_window[n_free++] = w; /* pool: window slots, lowest first */

  for (;;) {
    /* Finished jobs give back their window (pool) ... */
    int active = 0;
    for (int j = 0; j < next_job; j++) {
      if (!J[j].done) {
        active++;
      } else if (!released[j]) {
        released[j] = true;
        if (pool) free_window[n_free++] = J[j].window;
      }
    }
    /* ... and the next jobs take them, so that the batch stays full. */
    int n_admit = 0;
    while (next_job < n_jobs && active + n_admit < max_active) {
      int j = next_job++;
      if (pool) {
        J[j].window = free_window[--n_free];
        J[j].slot_base = J[j].window * slots_per;
        if (!admit_fn(admit_ctx, j, J[j].window, err)) goto out_free;
      }
      admit[n_admit++] = j;
    }
    if (n_admit > 0 && !start_jobs(dec, vocab, jobs, J, admit, n_admit, slot, window, toks, ntok,
                                   owner, logits, err))
      goto out_free;

    int n = 0;
    for (int j = 0; j < next_job; j++) {
      job_t *t = &J[j];
      if (t->done) continue;
      int m = t->mode == MODE_BEAM ? t->n_alive_beams : t->n_seq;
      for (int s = 0; s < m; s++) {
        if (t->mode != MODE_BEAM && t->seqs[s].done) continue;
        slot[n] = t->seqs[s].slot;
        window[n] = t->window;
        toks[n] = &t->seqs[s].next;
        ntok[n] = 1;
        owner[n] = j;
        which[n++] = s;
      }
    }
    if (n == 0) {
      if (next_job < n_jobs) continue; /* every admitted job ended at step 0 */
      break;
    }
    if (!dec->decode(dec->ctx, n, slot, window, toks, ntok, logits, err)) goto out_free;
    int n_groups = 0; /* rows of one job are consecutive: group g is rows [start[g], start[g+1]) */
    for (int i = 0; i < n; i++)
      if (i == 0 || owner[i] != owner[i - 1]) group_start[n_groups++] = i;
    group_start[n_groups] = n;
#pragma omp parallel for schedule(dynamic, 1) if (n_groups > 1)
    for (int g = 0; g < n_groups; g++) {
      int i0 = group_start[g], i = group_start[g + 1];
      job_t *t = &J[owner[i0]];
      if (t->mode == MODE_BEAM) {
        float *rows[64];
        for (int r = i0; r < i; r++)
          rows[which[r]] = logits + (size_t)r * V;
        step_beam(dec, t, rows);
      } else {
        for (int r = i0; r < i; r++)
          step_independent(t, &t->seqs[which[r]], logits + (size_t)r * V);
        bool all = true;
        for (int s = 0; s < t->n_seq; s++)
          all &= t->seqs[s].done;
        if (all) finish_independent(t);
      }
      t->step++;
    }
  }
  ok = true;

out_free:
  g_free(slot);
  g_free(window);
  g_free(ntok);
  g_free(toks);
  g_free(owner);
  g_free(which);
  g_free(logits);
  g_free(group_start);
  g_free(admit);
  g_free(free_window);
  g_free(released);
out:
  for (int j = 0; j < n_jobs; j++) {
    job_free(&J[j]);
    if (!ok) vs_search_result_clear(&results[j]);
  }
  g_free(J);
  return ok;
}

bool vs_search_run(const vs_search_decoder *dec, const vs_search_vocab *vocab,
                   const vs_search_job *jobs, const float *temps, int n_jobs,
                   vs_search_result *results, GError **err) {
  return search_core(dec, vocab, jobs, temps, n_jobs, n_jobs, NULL, NULL, results, err);
}

bool vs_search_run_pool(const vs_search_decoder *dec, const vs_search_vocab *vocab,
                        const vs_search_job *jobs, const float *temps, int n_jobs, int max_active,
                        vs_search_admit_fn admit, void *admit_ctx, vs_search_result *results,
                        GError **err) {
  if (!admit || max_active < 1)
    VS_FAIL(err, VS_ERROR_INTERNAL, false, "search: a pool needs an admit function and a size");
  return search_core(dec, vocab, jobs, temps, n_jobs, max_active, admit, admit_ctx, results, err);
}

/* ------------------------------------------------------------------------------------------ */
/* temperature fallback */

bool vs_search_generate_with_fallback(const vs_search_decoder *dec, const vs_search_vocab *vocab,
                                      const struct vs_tokenizer *tok, const vs_search_job *jobs,
                                      int n_jobs, vs_search_result *results, GError **err) {
  typedef struct {
    vs_search_result tried[VS_SEARCH_MAX_TEMPERATURES];
    bool below_cr[VS_SEARCH_MAX_TEMPERATURES];
    int n_tried;
    bool done;
  } fb_t;
  fb_t *F = g_new0(fb_t, n_jobs);
  vs_search_job *sub = g_new(vs_search_job, n_jobs);
  float *temps = g_new(float, n_jobs);
  int *idx = g_new(int, n_jobs);
  vs_search_result *res = g_new0(vs_search_result, n_jobs);
  bool ok = true;

  for (int j = 0; j < n_jobs; j++) {
    memset(&results[j], 0, sizeof results[j]);
    const vs_search_options *o = jobs[j].opts;
    if (o->n_temperatures < 1 || o->n_temperatures > VS_SEARCH_MAX_TEMPERATURES) {
      g_set_error(err, VS_ERROR, VS_ERROR_CONFIG, "search: job %d: %d temperatures (1..%d)", j,
                  o->n_temperatures, VS_SEARCH_MAX_TEMPERATURES);
      ok = false;
      goto out;
    }
  }

  for (;;) {
    int n = 0;
    for (int j = 0; j < n_jobs; j++) {
      if (F[j].done) continue;
      sub[n] = jobs[j];
      /* each temperature draws its own stream */
      sub[n].seed = jobs[j].seed + 0x9e3779b97f4a7c15ULL * (uint64_t)F[j].n_tried;
      temps[n] = jobs[j].opts->temperatures[F[j].n_tried];
      idx[n++] = j;
    }
    if (n == 0) break;
    if (!vs_search_run(dec, vocab, sub, temps, n, res, err)) {
      ok = false;
      goto out;
    }
    for (int i = 0; i < n; i++) {
      int j = idx[i];
      fb_t *f = &F[j];
      const vs_search_options *o = jobs[j].opts;
      vs_search_result *r = &f->tried[f->n_tried];
      *r = res[i];
      memset(&res[i], 0, sizeof res[i]);
      char *text = vs_search_stripped_text(tok, r->tokens, r->n_tokens);
      r->compression_ratio = vs_search_compression_ratio(text, strlen(text));
      g_free(text);

      bool needs = false;
      if (!isnan(o->compression_ratio_threshold)) {
        if (r->compression_ratio > o->compression_ratio_threshold)
          needs = true;
        else
          f->below_cr[f->n_tried] = true;
      }
      if (!isnan(o->log_prob_threshold) && r->avg_logprob < o->log_prob_threshold) needs = true;
      if (!isnan(o->no_speech_threshold) && r->no_speech_prob > o->no_speech_threshold &&
          !isnan(o->log_prob_threshold) && r->avg_logprob < o->log_prob_threshold)
        needs = false; /* silence: the caller skips the window */
      f->n_tried++;

      int pick = -1;
      if (!needs) {
        pick = f->n_tried - 1;
      } else if (f->n_tried == o->n_temperatures) {
        /* all failed: best average log-probability among those under the compression
         * threshold, else among all; Python's max keeps the first of equals */
        bool any_below = false;
        for (int k = 0; k < f->n_tried; k++)
          any_below |= f->below_cr[k];
        for (int k = 0; k < f->n_tried; k++) {
          if (any_below && !f->below_cr[k]) continue;
          if (pick < 0 || f->tried[k].avg_logprob > f->tried[pick].avg_logprob) pick = k;
        }
      }
      if (pick >= 0) {
        float last_t = o->temperatures[f->n_tried - 1];
        results[j] = f->tried[pick];
        memset(&f->tried[pick], 0, sizeof f->tried[pick]);
        /* faster-whisper reports the last temperature tried (prompt reset uses it) */
        results[j].temperature = last_t;
        f->done = true;
      }
    }
  }

out:
  for (int j = 0; j < n_jobs; j++) {
    for (int k = 0; k < VS_SEARCH_MAX_TEMPERATURES; k++)
      vs_search_result_clear(&F[j].tried[k]);
    if (!ok) vs_search_result_clear(&results[j]);
  }
  for (int j = 0; j < n_jobs; j++)
    vs_search_result_clear(&res[j]);
  g_free(F);
  g_free(sub);
  g_free(temps);
  g_free(idx);
  g_free(res);
  return ok;
}
