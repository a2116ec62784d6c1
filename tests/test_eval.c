/* Scoring against NIST sclite (Debian sctk): references from pocketsphinx-testdata's
 * transcriptions, seeded random hypotheses with substitutions, insertions and deletions; the
 * S/D/I counts and word totals must equal sclite's exactly. Also: STM/CTM written by
 * src/outputs.c are accepted by sclite and give the expected counts, and `voxshard eval` reads
 * every input format and writes its JSON report.
 *
 * usage: test_eval WORKDIR TRANSCRIPTION_FILE...
 */
#include "eval.h"
#include "outputs.h"
#include "vs_error.h"
#include "vs_test.h"

#include <json-glib/json-glib.h>
#include <string.h>
#include <sys/wait.h>

static guint32 rng_state = 777u;
static guint32 rng(void) {
  rng_state = rng_state * 1664525u + 1013904223u;
  return rng_state >> 8;
}

typedef struct {
  char *id;
  char *text;
} utt;

static GPtrArray *load_refs(int n, char **files) {
  GPtrArray *u = g_ptr_array_new();
  for (int f = 0; f < n; f++) {
    char *data = NULL;
    if (!g_file_get_contents(files[f], &data, NULL, NULL)) VS_DIE("cannot read %s", files[f]);
    char **lines = g_strsplit(data, "\n", -1);
    int k = 0;
    for (char **l = lines; *l; l++) {
      char *open = strrchr(*l, '(');
      if (!open) continue;
      *open = 0;
      GString *t = g_string_new(NULL);
      char **w = g_strsplit_set(*l, " \t", -1);
      for (char **p = w; *p; p++) {
        if (!**p || !strcmp(*p, "<s>") || !strcmp(*p, "</s>")) continue;
        if (t->len) g_string_append_c(t, ' ');
        g_string_append(t, *p);
      }
      g_strfreev(w);
      utt *x = g_new0(utt, 1);
      x->id = g_strdup_printf("spk%d_%03d", f, k++); /* sclite -i spu_id: speaker_utterance */
      x->text = g_string_free(t, FALSE);
      g_ptr_array_add(u, x);
    }
    g_strfreev(lines);
    g_free(data);
  }
  return u;
}

static const char *const NOISE[] = {"the", "a", "of", "and", "clubs", "he", "was", "man", "ten"};

/* Random edits at rate pct; the noise words are drawn from the references' own vocabulary so
 * that ties between alignments are common. */
static char *perturb(const char *text, int pct) {
  char **w = g_strsplit(text, " ", -1);
  GString *o = g_string_new(NULL);
  for (char **p = w; *p; p++) {
    int r = (int)(rng() % 100);
    if (r < pct / 3) continue; /* deletion */
    if (o->len) g_string_append_c(o, ' ');
    if (r < 2 * pct / 3)
      g_string_append(o, NOISE[rng() % G_N_ELEMENTS(NOISE)]); /* substitution */
    else
      g_string_append(o, *p);
    if ((int)(rng() % 100) < pct / 3) { /* insertion */
      g_string_append_c(o, ' ');
      g_string_append(o, NOISE[rng() % G_N_ELEMENTS(NOISE)]);
    }
  }
  g_strfreev(w);
  return g_string_free(o, FALSE);
}

static char *sclite_path(void) {
  char *p = g_find_program_in_path("sclite");
  if (!p && g_file_test("/usr/lib/sctk/bin/sclite", G_FILE_TEST_IS_EXECUTABLE))
    p = g_strdup("/usr/lib/sctk/bin/sclite");
  return p;
}

/* Runs sclite and reads its "Sum" row of the raw summary: #Snt #Wrd Corr Sub Del Ins. */
static bool run_sclite(char **argv, long out[6]) {
  char *stdout_text = NULL, *stderr_text = NULL;
  int status = 0;
  GError *err = NULL;
  if (!g_spawn_sync(NULL, argv, NULL, 0, NULL, NULL, &stdout_text, &stderr_text, &status, &err)) {
    fprintf(stderr, "sclite: %s\n", err->message);
    g_error_free(err);
    return false;
  }
  bool found = false;
  char **lines = g_strsplit(stdout_text, "\n", -1);
  for (char **l = lines; *l; l++) {
    char *s = strstr(*l, "| Sum ");
    if (!s) continue;
    if (sscanf(s, "| Sum | %ld %ld | %ld %ld %ld %ld", &out[0], &out[1], &out[2], &out[3], &out[4],
               &out[5]) == 6)
      found = true;
  }
  if (!found) fprintf(stderr, "sclite output had no Sum row:\n%s\n%s\n", stdout_text, stderr_text);
  g_strfreev(lines);
  g_free(stdout_text);
  g_free(stderr_text);
  return found;
}

static void write_trn(const char *path, GPtrArray *ids, GPtrArray *texts) {
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < ids->len; i++)
    g_string_append_printf(s, "%s (%s)\n", (char *)texts->pdata[i], (char *)ids->pdata[i]);
  CHECK(g_file_set_contents(path, s->str, -1, NULL));
  g_string_free(s, TRUE);
}

static void trn_vs_sclite(const char *sclite, const char *dir, GPtrArray *refs) {
  char *ref_path = g_build_filename(dir, "ref.trn", NULL);
  char *hyp_path = g_build_filename(dir, "hyp.trn", NULL);
  GPtrArray *ids = g_ptr_array_new(), *rt = g_ptr_array_new();
  for (guint i = 0; i < refs->len; i++) {
    g_ptr_array_add(ids, ((utt *)refs->pdata[i])->id);
    g_ptr_array_add(rt, ((utt *)refs->pdata[i])->text);
  }
  write_trn(ref_path, ids, rt);
  int rounds = 40, agree = 0;
  long tot_err = 0;
  for (int round = 0; round < rounds; round++) {
    int pct = 5 + round * 2;
    GPtrArray *ht = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < refs->len; i++)
      g_ptr_array_add(ht, perturb(rt->pdata[i], pct));
    if (round == 0) { /* an empty hypothesis: all deletions */
      g_free(ht->pdata[0]);
      ht->pdata[0] = g_strdup("");
    }
    write_trn(hyp_path, ids, ht);
    char *argv[] = {(char *)sclite, "-r",     ref_path, "trn",  "-h",     hyp_path, "trn",
                    "-i",           "spu_id", "-o",     "rsum", "stdout", NULL};
    long sc[6];
    if (!run_sclite(argv, sc)) {
      CHECK(false);
      g_ptr_array_free(ht, TRUE);
      break;
    }
    GError *err = NULL;
    vs_eval_set *r = vs_eval_set_load(ref_path, &err);
    VS_GERROR_CHECK(r, err);
    vs_eval_set *h = vs_eval_set_load(hyp_path, &err);
    VS_GERROR_CHECK(h, err);
    vs_norm *none = vs_norm_new(VS_NORM_NONE, NULL, &err);
    vs_eval_report *rep = vs_eval_score(r, h, none);
    bool same = sc[0] == (long)rep->n_files && sc[1] == rep->words.n_ref &&
                sc[2] == rep->words.cor && sc[3] == rep->words.sub && sc[4] == rep->words.del &&
                sc[5] == rep->words.ins;
    CHECK_MSG(same,
              "round %d: sclite snt %ld wrd %ld C %ld S %ld D %ld I %ld; voxshard %zu %ld "
              "C %ld S %ld D %ld I %ld",
              round, sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], rep->n_files, rep->words.n_ref,
              rep->words.cor, rep->words.sub, rep->words.del, rep->words.ins);
    agree += same;
    tot_err += rep->words.sub + rep->words.del + rep->words.ins;
    /* per-speaker rows add up to the corpus */
    vs_eval_counts sum = {0};
    for (guint k = 0; k < rep->speakers->len; k++)
      vs_eval_counts_add(&sum, &rep->spk_words[k]);
    CHECK(sum.sub == rep->words.sub && sum.ins == rep->words.ins && sum.n_ref == rep->words.n_ref);
    vs_eval_report_free(rep);
    vs_norm_free(none);
    vs_eval_set_free(r);
    vs_eval_set_free(h);
    g_ptr_array_free(ht, TRUE);
  }
  printf("sclite trn: %d of %d rounds agree exactly (%ld errors scored)\n", agree, rounds, tot_err);
  CHECK(tot_err > 100); /* the perturbation really produced errors */
  g_ptr_array_free(ids, TRUE);
  g_ptr_array_free(rt, TRUE);
  g_free(ref_path);
  g_free(hyp_path);
}

/* Splits a text into two segments of a synthetic timeline (0.4 s per word, 1 s gap). */
static void make_transcript(vs_out_transcript *t, const char *id, const char *first,
                            const char *second, int n_first_ref, int n_second_ref) {
  memset(t, 0, sizeof *t);
  t->id = g_strdup(id);
  t->speaker = g_strndup(id, strcspn(id, "_"));
  t->n_segs = 2;
  t->segs = g_new0(vs_out_segment, 2);
  double start = 0.5;
  const char *texts[2] = {first, second};
  int lens[2] = {n_first_ref, n_second_ref};
  for (int k = 0; k < 2; k++) {
    t->segs[k].start_s = start;
    t->segs[k].end_s = start + 0.4 * MAX(lens[k], 1);
    t->segs[k].text = g_strdup(texts[k]);
    t->segs[k].avg_logprob = -0.25;
    t->segs[k].no_speech_prob = t->segs[k].compression_ratio = t->segs[k].temperature = NAN;
    start = t->segs[k].end_s + 1.0;
  }
  t->duration_s = start;
}

static void stm_ctm_vs_sclite(const char *sclite, const char *dir, GPtrArray *refs) {
  guint n = refs->len;
  vs_out_transcript *rt = g_new0(vs_out_transcript, n), *ht = g_new0(vs_out_transcript, n);
  const vs_out_transcript **rp = g_new(const vs_out_transcript *, n);
  const vs_out_transcript **hp = g_new(const vs_out_transcript *, n);
  vs_eval_counts want = {0};
  for (guint i = 0; i < n; i++) {
    utt *u = refs->pdata[i];
    char **w = g_strsplit(u->text, " ", -1);
    guint nw = g_strv_length(w), half = nw / 2;
    char *save = w[half];
    w[half] = NULL;
    char *a = g_strjoinv(" ", w);
    w[half] = save;
    char *b = g_strjoinv(" ", w + half);
    char *pa = perturb(a, 30), *pb = perturb(b, 30);
    make_transcript(&rt[i], u->id, a, b, (int)half, (int)(nw - half));
    make_transcript(&ht[i], u->id, pa, pb, (int)half, (int)(nw - half));
    vs_eval_align_words(a, pa, &want); /* sclite scores each STM segment on its own */
    vs_eval_align_words(b, pb, &want);
    rp[i] = &rt[i];
    hp[i] = &ht[i];
    g_free(a);
    g_free(b);
    g_free(pa);
    g_free(pb);
    g_strfreev(w);
  }
  char *stm = g_build_filename(dir, "ref.stm", NULL), *ctm = g_build_filename(dir, "hyp.ctm", NULL);
  GError *err = NULL;
  VS_GERROR_CHECK(vs_out_write_stm(stm, rp, n, &err), err);
  VS_GERROR_CHECK(vs_out_write_ctm(ctm, hp, n, &err), err);
  char *argv[] = {(char *)sclite, "-r", stm, "stm", "-h", ctm, "ctm", "-o", "rsum", "stdout", NULL};
  long sc[6];
  CHECK(run_sclite(argv, sc));
  CHECK_MSG(sc[1] == want.n_ref && sc[2] == want.cor && sc[3] == want.sub && sc[4] == want.del &&
                sc[5] == want.ins,
            "sclite stm/ctm: wrd %ld C %ld S %ld D %ld I %ld; expected %ld C %ld S %ld D %ld I %ld",
            sc[1], sc[2], sc[3], sc[4], sc[5], want.n_ref, want.cor, want.sub, want.del, want.ins);
  CHECK(sc[0] == 2 * (long)n); /* every STM segment was scored */
  printf("sclite stm/ctm: %ld words, %ld errors\n", sc[1], sc[3] + sc[4] + sc[5]);

  /* our own reader of the same files: whole-file text, speakers from the STM */
  vs_eval_set *r = vs_eval_set_load(stm, &err);
  VS_GERROR_CHECK(r, err);
  vs_eval_set *h = vs_eval_set_load(ctm, &err);
  VS_GERROR_CHECK(h, err);
  CHECK(r->utts->len == n && h->utts->len == n);
  vs_eval_utt *u0 = g_hash_table_lookup(r->by_id, ((utt *)refs->pdata[0])->id);
  CHECK(u0 && !strcmp(u0->text, ((utt *)refs->pdata[0])->text) && !strcmp(u0->speaker, "spk0"));
  vs_eval_set_free(r);
  vs_eval_set_free(h);
  for (guint i = 0; i < n; i++) {
    vs_out_transcript_clear(&rt[i]);
    vs_out_transcript_clear(&ht[i]);
  }
  g_free(rt);
  g_free(ht);
  g_free(rp);
  g_free(hp);
  g_free(stm);
  g_free(ctm);
}

static void align_cases(void) {
  vs_eval_counts c = {0};
  vs_eval_align_words("a b c d e", "x y z", &c);
  /* sclite's weights: 2 deletions + 3 substitutions (cost 18) */
  CHECK(c.sub == 3 && c.del == 2 && c.ins == 0 && c.cor == 0 && c.n_ref == 5 && c.n_hyp == 3);
  memset(&c, 0, sizeof c);
  vs_eval_align_words("a b", "b c", &c);
  /* a deletion and an insertion (6) beat two substitutions (8) */
  CHECK(c.cor == 1 && c.del == 1 && c.ins == 1 && c.sub == 0);
  memset(&c, 0, sizeof c);
  vs_eval_align_words("", "", &c);
  CHECK(c.n_ref == 0 && vs_eval_error_rate(&c) == 0.0);
  vs_eval_align_words("", "x", &c);
  CHECK(c.ins == 1 && isinf(vs_eval_error_rate(&c)));
  memset(&c, 0, sizeof c);
  vs_eval_align_chars("naïve cat", "naive  cats", &c);
  CHECK(c.n_ref == 8 && c.n_hyp == 9 && c.sub == 1 && c.ins == 1 && c.del == 0);
}

static void write_text(const char *path, const char *text) {
  CHECK(g_file_set_contents(path, text, -1, NULL));
}

static void cli_cases(const char *dir) {
  char *ref = g_build_filename(dir, "cli-ref.jsonl", NULL);
  char *hypdir = g_build_filename(dir, "cli-hyp", NULL);
  char *out = g_build_filename(dir, "cli-report.json", NULL);
  write_text(ref,
             "{\"id\": \"f1\", \"text\": \"Twenty five apples, please.\", \"speaker\": \"ann\"}\n"
             "{\"id\": \"f2\", \"text\": \"Hello there [laughs]\", \"speaker\": \"bob\"}\n"
             "{\"id\": \"f3\", \"text\": \"never answered\", \"speaker\": \"bob\"}\n");
  GError *err = NULL;
  vs_out_transcript t1 = {.id = g_strdup("f1"), .duration_s = 3};
  t1.segs = g_new0(vs_out_segment, 1);
  t1.segs[0] = (vs_out_segment){
      .start_s = 0, .end_s = 2, .text = g_strdup(" 25 apples please"), .avg_logprob = -0.1};
  t1.n_segs = 1;
  VS_GERROR_CHECK(vs_out_write_file_outputs(hypdir, &t1, "jsonl", &err), err);
  vs_out_transcript t2 = {.id = g_strdup("f2")};
  t2.segs = g_new0(vs_out_segment, 1);
  t2.segs[0] = (vs_out_segment){.start_s = 0, .end_s = 1, .text = g_strdup("hello their")};
  t2.n_segs = 1;
  VS_GERROR_CHECK(vs_out_write_file_outputs(hypdir, &t2, "jsonl", &err), err);
  vs_out_transcript t4 = {.id = g_strdup("f4")};
  VS_GERROR_CHECK(vs_out_write_file_outputs(hypdir, &t4, "jsonl", &err), err);

  char *argv[] = {"eval",  "--ref", ref, "--hyp", hypdir, "--normalizer=english", "--spelling-map=",
                  "--out", out,     NULL};
  CHECK(vs_cmd_eval(9, argv) == 0);
  JsonParser *p = json_parser_new();
  VS_GERROR_CHECK(json_parser_load_from_file(p, out, &err), err);
  JsonObject *o = json_node_get_object(json_parser_get_root(p));
  JsonObject *w = json_object_get_object_member(o, "words");
  /* f1 all correct after normalising, f2 one substitution, f3 two deletions */
  CHECK(json_object_get_int_member(w, "ref") == 7);
  CHECK(json_object_get_int_member(w, "sub") == 1);
  CHECK(json_object_get_int_member(w, "del") == 2);
  CHECK(json_object_get_int_member(w, "ins") == 0);
  CHECK_NEAR(json_object_get_double_member(w, "rate"), 3.0 / 7.0, 1e-12);
  CHECK(json_array_get_length(json_object_get_array_member(o, "missing_hyp")) == 1);
  CHECK(json_array_get_length(json_object_get_array_member(o, "extra_hyp")) == 1);
  JsonArray *spk = json_object_get_array_member(o, "speakers");
  CHECK(json_array_get_length(spk) == 2);
  g_object_unref(p);

  /* with --normalizer=none the case and punctuation count as errors */
  char *argv2[] = {"eval",          "--ref", ref, "--hyp", hypdir, "--normalizer=none",
                   "--no-per-file", NULL};
  CHECK(vs_cmd_eval(7, argv2) == 0);

  /* bad inputs: clear errors, non-zero exit */
  char *bad = g_build_filename(dir, "cli-bad.trn", NULL);
  write_text(bad, "hello world (u1)\nno id here\n");
  vs_eval_set *s = vs_eval_set_load(bad, &err);
  CHECK(!s && err && strstr(err->message, bad) && strstr(err->message, ":2:"));
  g_clear_error(&err);
  write_text(bad, "a (u1)\nb (u1)\n");
  s = vs_eval_set_load(bad, &err);
  CHECK(!s && err && strstr(err->message, "duplicate id"));
  g_clear_error(&err);
  char *argv3[] = {"eval", "--ref", bad, "--hyp", hypdir, NULL};
  CHECK(vs_cmd_eval(5, argv3) == 1);
  char *argv4[] = {"eval", "--ref", ref, NULL};
  CHECK(vs_cmd_eval(3, argv4) == 2);
  char *argv5[] = {"eval", "--ref", ref, "--hyp", ref, "--normalizer=klingon", NULL};
  CHECK(vs_cmd_eval(6, argv5) == 2);

  vs_out_transcript_clear(&t1);
  vs_out_transcript_clear(&t2);
  vs_out_transcript_clear(&t4);
  g_free(bad);
  g_free(ref);
  g_free(hypdir);
  g_free(out);
}

int main(int argc, char **argv) {
  if (argc < 3) VS_DIE("usage: test_eval WORKDIR TRANSCRIPTION_FILE...");
  const char *dir = argv[1];
  if (g_mkdir_with_parents(dir, 0775) != 0) VS_DIE("cannot create %s", dir);
  align_cases();
  cli_cases(dir);
  GPtrArray *refs = load_refs(argc - 2, argv + 2);
  CHECK(refs->len >= 10);
  char *sclite = sclite_path();
  if (!sclite) {
    printf("sclite comparison: skipped (no sclite; install Debian's sctk)\n");
  } else {
    trn_vs_sclite(sclite, dir, refs);
    stm_ctm_vs_sclite(sclite, dir, refs);
  }
  g_free(sclite);
  return vs_test_finish();
}
