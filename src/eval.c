#include "eval.h"

#include "config.h"
#include "fsutil.h"
#include "log.h"
#include "outputs.h"
#include "vs_error.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* sclite's default word weights (sclite(1): substitution 4, insertion 3, deletion 3): they
 * favour one substitution over an insertion plus a deletion but two deletions+insertions over
 * three substitutions, so the counts differ from unit-cost Levenshtein in some cases. */
enum { W_SUB = 4, W_INS = 3, W_DEL = 3 };

typedef struct {
  long cost;
  int cor, sub, del, ins;
} cell;

void vs_eval_align(const char *const *ref, size_t nr, const char *const *hyp, size_t nh,
                   vs_eval_counts *acc) {
  /* Two rows of cells carry the counts of the chosen path, which gives the same counts as a
   * traceback that prefers, at each cell, the diagonal, then a deletion, then an insertion. */
  cell *prev = g_new0(cell, nh + 1), *cur = g_new0(cell, nh + 1);
  for (size_t j = 1; j <= nh; j++) {
    prev[j] = prev[j - 1];
    prev[j].cost += W_INS;
    prev[j].ins++;
  }
  for (size_t i = 1; i <= nr; i++) {
    cur[0] = prev[0];
    cur[0].cost += W_DEL;
    cur[0].del++;
    for (size_t j = 1; j <= nh; j++) {
      bool same = !strcmp(ref[i - 1], hyp[j - 1]);
      cell d = prev[j - 1];
      d.cost += same ? 0 : W_SUB;
      if (same)
        d.cor++;
      else
        d.sub++;
      cell del = prev[j];
      del.cost += W_DEL;
      del.del++;
      cell ins = cur[j - 1];
      ins.cost += W_INS;
      ins.ins++;
      cell best = d;
      if (del.cost < best.cost) best = del;
      if (ins.cost < best.cost) best = ins;
      cur[j] = best;
    }
    cell *t = prev;
    prev = cur;
    cur = t;
  }
  acc->n_ref += (long)nr;
  acc->n_hyp += (long)nh;
  acc->cor += prev[nh].cor;
  acc->sub += prev[nh].sub;
  acc->del += prev[nh].del;
  acc->ins += prev[nh].ins;
  g_free(prev);
  g_free(cur);
}

static GPtrArray *words_of(const char *text) {
  GPtrArray *w = g_ptr_array_new_with_free_func(g_free);
  const char *p = text ? text : "", *start = NULL;
  for (; *p; p = g_utf8_next_char(p)) {
    bool sp = g_unichar_isspace(g_utf8_get_char(p));
    if (sp && start) {
      g_ptr_array_add(w, g_strndup(start, (gsize)(p - start)));
      start = NULL;
    } else if (!sp && !start) {
      start = p;
    }
  }
  if (start) g_ptr_array_add(w, g_strdup(start));
  return w;
}

static GPtrArray *chars_of(const char *text) {
  GPtrArray *c = g_ptr_array_new_with_free_func(g_free);
  for (const char *p = text ? text : ""; *p; p = g_utf8_next_char(p))
    if (!g_unichar_isspace(g_utf8_get_char(p)))
      g_ptr_array_add(c, g_strndup(p, (gsize)(g_utf8_next_char(p) - p)));
  return c;
}

void vs_eval_align_words(const char *ref, const char *hyp, vs_eval_counts *acc) {
  GPtrArray *r = words_of(ref), *h = words_of(hyp);
  vs_eval_align((const char *const *)r->pdata, r->len, (const char *const *)h->pdata, h->len, acc);
  g_ptr_array_free(r, TRUE);
  g_ptr_array_free(h, TRUE);
}

void vs_eval_align_chars(const char *ref, const char *hyp, vs_eval_counts *acc) {
  GPtrArray *r = chars_of(ref), *h = chars_of(hyp);
  vs_eval_align((const char *const *)r->pdata, r->len, (const char *const *)h->pdata, h->len, acc);
  g_ptr_array_free(r, TRUE);
  g_ptr_array_free(h, TRUE);
}

double vs_eval_error_rate(const vs_eval_counts *c) {
  long err = c->sub + c->del + c->ins;
  if (c->n_ref == 0) return err ? INFINITY : 0.0;
  return (double)err / (double)c->n_ref;
}

void vs_eval_counts_add(vs_eval_counts *a, const vs_eval_counts *c) {
  a->n_ref += c->n_ref;
  a->n_hyp += c->n_hyp;
  a->cor += c->cor;
  a->sub += c->sub;
  a->del += c->del;
  a->ins += c->ins;
}

/* ---- input sets ------------------------------------------------------------------------- */

static void utt_free(gpointer p) {
  vs_eval_utt *u = p;
  g_free(u->id);
  g_free(u->speaker);
  g_free(u->text);
  g_free(u);
}

static vs_eval_set *set_new(const char *path, const char *format) {
  vs_eval_set *s = g_new0(vs_eval_set, 1);
  s->path = g_strdup(path);
  s->format = format;
  s->utts = g_ptr_array_new_with_free_func(utt_free);
  s->by_id = g_hash_table_new(g_str_hash, g_str_equal);
  return s;
}

void vs_eval_set_free(vs_eval_set *s) {
  if (!s) return;
  g_hash_table_unref(s->by_id);
  g_ptr_array_free(s->utts, TRUE);
  g_free(s->path);
  g_free(s);
}

static bool set_add(vs_eval_set *s, const char *where, int line, char *id, char *speaker,
                    char *text, GError **err) {
  if (g_hash_table_contains(s->by_id, id)) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s:%d: duplicate id \"%s\"", where, line, id);
    g_free(id);
    g_free(speaker);
    g_free(text);
    return false;
  }
  vs_eval_utt *u = g_new0(vs_eval_utt, 1);
  u->id = id;
  u->speaker = speaker ? speaker : g_strdup(id);
  u->text = text;
  g_ptr_array_add(s->utts, u);
  g_hash_table_insert(s->by_id, u->id, u);
  return true;
}

static char **read_lines(const char *path, GError **err) {
  char *data = NULL;
  GError *e = NULL;
  if (!g_file_get_contents(path, &data, NULL, &e)) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot read: %s", path, e->message);
    g_error_free(e);
    return NULL;
  }
  if (!g_utf8_validate(data, -1, NULL)) {
    g_free(data);
    VS_FAIL(err, VS_ERROR_FORMAT, NULL, "%s: not valid UTF-8 text", path);
  }
  char **lines = g_strsplit(data, "\n", -1);
  g_free(data);
  return lines;
}

/* sclite's spu_id convention: the speaker is the part of the utterance id before '_'. */
static char *speaker_of_id(const char *id) {
  const char *u = strchr(id, '_');
  return u && u != id ? g_strndup(id, (gsize)(u - id)) : g_strdup(id);
}

static bool load_trn(vs_eval_set *s, GError **err) {
  char **lines = read_lines(s->path, err);
  if (!lines) return false;
  bool ok = true;
  int ln = 0;
  for (char **l = lines; ok && *l; l++) {
    ln++;
    char *line = g_strstrip(*l);
    if (!*line || g_str_has_prefix(line, ";;")) continue;
    char *open = strrchr(line, '(');
    size_t len = strlen(line);
    if (!open || line[len - 1] != ')' || open + 1 >= line + len - 1) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s:%d: TRN line does not end with an utterance id \"(id)\"", s->path, ln);
      ok = false;
      break;
    }
    char *id = g_strndup(open + 1, (gsize)(line + len - 1 - open - 1));
    *open = 0;
    ok = set_add(s, s->path, ln, id, speaker_of_id(id), g_strdup(g_strstrip(line)), err);
  }
  g_strfreev(lines);
  return ok;
}

static bool load_manifest(vs_eval_set *s, GError **err) {
  char **lines = read_lines(s->path, err);
  if (!lines) return false;
  JsonParser *p = json_parser_new();
  bool ok = true;
  int ln = 0;
  for (char **l = lines; ok && *l; l++) {
    ln++;
    if (!*g_strstrip(*l)) continue;
    GError *e = NULL;
    if (!json_parser_load_from_data(p, *l, -1, &e) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s:%d: not a JSON object%s%s", s->path, ln,
                  e ? ": " : "", e ? e->message : "");
      g_clear_error(&e);
      ok = false;
      break;
    }
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    const char *id =
        json_object_has_member(o, "id") ? json_object_get_string_member(o, "id") : NULL;
    const char *text =
        json_object_has_member(o, "text") ? json_object_get_string_member(o, "text") : NULL;
    const char *spk =
        json_object_has_member(o, "speaker") ? json_object_get_string_member(o, "speaker") : NULL;
    if (!id || !text) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s:%d: manifest line needs string members \"id\" and \"text\"", s->path, ln);
      ok = false;
      break;
    }
    ok = set_add(s, s->path, ln, g_strdup(id), spk ? g_strdup(spk) : NULL, g_strdup(text), err);
  }
  g_object_unref(p);
  g_strfreev(lines);
  return ok;
}

static bool add_transcript(vs_eval_set *s, const char *path, GError **err) {
  vs_out_transcript *t = vs_out_read_jsonl(path, err);
  if (!t) return false;
  GString *text = g_string_new(NULL);
  for (size_t i = 0; i < t->n_segs; i++) {
    if (text->len) g_string_append_c(text, ' ');
    g_string_append(text, t->segs[i].text);
  }
  bool ok = set_add(s, path, 1, g_strdup(t->id), t->speaker ? g_strdup(t->speaker) : NULL,
                    g_string_free(text, FALSE), err);
  vs_out_transcript_free(t);
  return ok;
}

static int cmp_strp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool load_folder(vs_eval_set *s, GError **err) {
  /* A transcribe output folder keeps its per-file transcripts in transcripts/. */
  gchar *sub = g_build_filename(s->path, "transcripts", NULL);
  const char *dir = g_file_test(sub, G_FILE_TEST_IS_DIR) ? sub : s->path;
  GError *e = NULL;
  GDir *d = g_dir_open(dir, 0, &e);
  if (!d) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot list: %s", dir, e->message);
    g_error_free(e);
    g_free(sub);
    return false;
  }
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  const char *name;
  while ((name = g_dir_read_name(d)))
    if (g_str_has_suffix(name, ".jsonl") && name[0] != '.') /* '.' = temp files of writers */
      g_ptr_array_add(names, g_strdup(name));
  g_dir_close(d);
  qsort(names->pdata, names->len, sizeof(char *), cmp_strp);
  bool ok = names->len > 0;
  if (!ok)
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: folder holds no transcript *.jsonl files",
                dir);
  for (guint i = 0; ok && i < names->len; i++) {
    char *p = g_build_filename(dir, names->pdata[i], NULL);
    ok = add_transcript(s, p, err);
    g_free(p);
  }
  g_ptr_array_free(names, TRUE);
  g_free(sub);
  return ok;
}

typedef struct {
  double t;
  long order;
  char *text;
} timed_text;

static int cmp_timed(const void *a, const void *b) {
  const timed_text *x = a, *y = b;
  if (x->t != y->t) return x->t < y->t ? -1 : 1;
  return (x->order > y->order) - (x->order < y->order);
}

/* STM and CTM: everything of one <file> (and channel) is one utterance, in time order. */
static bool load_timed(vs_eval_set *s, bool stm, GError **err) {
  char **lines = read_lines(s->path, err);
  if (!lines) return false;
  GHashTable *groups = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  GPtrArray *order = g_ptr_array_new(); /* keys in first-seen order (borrowed) */
  GHashTable *speakers = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
  bool ok = true;
  int ln = 0;
  long seq = 0;
  for (char **l = lines; ok && *l; l++) {
    ln++;
    char *line = g_strstrip(*l);
    if (!*line || g_str_has_prefix(line, ";;")) continue;
    char **f = g_regex_split_simple("\\s+", line, 0, 0);
    guint nf = g_strv_length(f);
    guint need = 5; /* STM: text may be empty; CTM: the word is required */
    char *end = NULL;
    double t = nf >= 4 ? g_ascii_strtod(stm ? f[3] : f[2], &end) : NAN;
    if (nf < need || !end || *end || !isfinite(t)) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  stm ? "%s:%d: STM line needs <file> <chan> <speaker> <start> <end> [text]"
                      : "%s:%d: CTM line needs <file> <chan> <start> <dur> <word> [conf]",
                  s->path, ln);
      g_strfreev(f);
      ok = false;
      break;
    }
    char *key = g_strdup_printf("%s%s%s", f[0], strcmp(f[1], "1") && strcmp(f[1], "A") ? "-" : "",
                                strcmp(f[1], "1") && strcmp(f[1], "A") ? f[1] : "");
    GArray *g = g_hash_table_lookup(groups, key);
    if (!g) {
      g = g_array_new(FALSE, FALSE, sizeof(timed_text));
      char *stored = g_strdup(key);
      g_hash_table_insert(groups, stored, g);
      g_ptr_array_add(order, stored);
      if (stm) g_hash_table_insert(speakers, stored, g_strdup(f[2]));
    }
    guint first = stm ? 5 : 4, last = stm ? nf : 5;
    if (stm && first < nf && f[first][0] == '<') first++; /* optional <o,f0,male> label */
    GString *txt = g_string_new(NULL);
    for (guint k = first; k < last; k++) {
      if (txt->len) g_string_append_c(txt, ' ');
      g_string_append(txt, f[k]);
    }
    if (stm && !strcmp(txt->str, "ignore_time_segment_in_scoring")) g_string_truncate(txt, 0);
    timed_text tt = {t, seq++, g_string_free(txt, FALSE)};
    g_array_append_val(g, tt);
    g_free(key);
    g_strfreev(f);
  }
  for (guint i = 0; i < order->len; i++) {
    GArray *g = g_hash_table_lookup(groups, order->pdata[i]);
    if (ok) {
      qsort(g->data, g->len, sizeof(timed_text), cmp_timed);
      GString *text = g_string_new(NULL);
      for (guint k = 0; k < g->len; k++) {
        const char *x = g_array_index(g, timed_text, k).text;
        if (*x && text->len) g_string_append_c(text, ' ');
        g_string_append(text, x);
      }
      const char *spk = g_hash_table_lookup(speakers, order->pdata[i]);
      ok = set_add(s, s->path, 0, g_strdup(order->pdata[i]), spk ? g_strdup(spk) : NULL,
                   g_string_free(text, FALSE), err);
    }
    for (guint k = 0; k < g->len; k++)
      g_free(g_array_index(g, timed_text, k).text);
    g_array_free(g, TRUE);
  }
  g_hash_table_unref(speakers);
  g_ptr_array_free(order, TRUE);
  g_hash_table_unref(groups);
  g_strfreev(lines);
  return ok;
}

static bool first_record_is_transcript(const char *path) {
  char *data = NULL;
  if (!g_file_get_contents(path, &data, NULL, NULL)) return false;
  char *nl = strchr(data, '\n');
  if (nl) *nl = 0;
  JsonParser *p = json_parser_new();
  bool yes = false;
  if (json_parser_load_from_data(p, data, -1, NULL) &&
      JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    yes = json_object_has_member(o, "format") &&
          !g_strcmp0(json_object_get_string_member(o, "format"), "voxshard-transcript");
  }
  g_object_unref(p);
  g_free(data);
  return yes;
}

vs_eval_set *vs_eval_set_load(const char *path, GError **err) {
  vs_eval_set *s = NULL;
  bool ok;
  if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
    s = set_new(path, "transcripts");
    ok = load_folder(s, err);
  } else if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
    VS_FAIL(err, VS_ERROR_IO, NULL, "%s: no such file or folder", path);
  } else if (g_str_has_suffix(path, ".trn")) {
    s = set_new(path, "trn");
    ok = load_trn(s, err);
  } else if (g_str_has_suffix(path, ".stm")) {
    s = set_new(path, "stm");
    ok = load_timed(s, true, err);
  } else if (g_str_has_suffix(path, ".ctm")) {
    s = set_new(path, "ctm");
    ok = load_timed(s, false, err);
  } else if (g_str_has_suffix(path, ".jsonl") || g_str_has_suffix(path, ".json")) {
    if (first_record_is_transcript(path)) {
      s = set_new(path, "transcript");
      ok = add_transcript(s, path, err);
    } else {
      s = set_new(path, "manifest");
      ok = load_manifest(s, err);
    }
  } else {
    VS_FAIL(err, VS_ERROR_FORMAT, NULL,
            "%s: unknown transcript format (expected a folder, .trn, .stm, .ctm or .jsonl)", path);
  }
  if (!ok) {
    vs_eval_set_free(s);
    return NULL;
  }
  return s;
}

/* ---- scoring ---------------------------------------------------------------------------- */

vs_eval_report *vs_eval_score(const vs_eval_set *ref, const vs_eval_set *hyp, const vs_norm *norm) {
  vs_eval_report *r = g_new0(vs_eval_report, 1);
  r->normalizer = g_strdup(vs_norm_kind_name(vs_norm_get_kind(norm)));
  r->n_files = ref->utts->len;
  r->files = g_new0(vs_eval_file_result, r->n_files + 1);
  GHashTable *spk_index = g_hash_table_new(g_str_hash, g_str_equal);
  r->speakers = g_ptr_array_new_with_free_func(g_free);
  for (size_t i = 0; i < r->n_files; i++) {
    const vs_eval_utt *u = ref->utts->pdata[i];
    const vs_eval_utt *h = g_hash_table_lookup(hyp->by_id, u->id);
    vs_eval_file_result *fr = &r->files[i];
    fr->id = g_strdup(u->id);
    fr->speaker = g_strdup(u->speaker);
    fr->missing_hyp = h == NULL;
    if (!h) r->n_missing_hyp++;
    char *rn = vs_norm_apply(norm, u->text), *hn = vs_norm_apply(norm, h ? h->text : "");
    vs_eval_align_words(rn, hn, &fr->words);
    vs_eval_align_chars(rn, hn, &fr->chars);
    g_free(rn);
    g_free(hn);
    vs_eval_counts_add(&r->words, &fr->words);
    vs_eval_counts_add(&r->chars, &fr->chars);
    if (!g_hash_table_contains(spk_index, u->speaker)) {
      g_ptr_array_add(r->speakers, g_strdup(u->speaker));
      g_hash_table_insert(spk_index, r->speakers->pdata[r->speakers->len - 1], NULL);
    }
  }
  qsort(r->speakers->pdata, r->speakers->len, sizeof(char *), cmp_strp);
  for (guint k = 0; k < r->speakers->len; k++)
    g_hash_table_insert(spk_index, r->speakers->pdata[k], GUINT_TO_POINTER(k));
  r->spk_words = g_new0(vs_eval_counts, r->speakers->len + 1);
  r->spk_chars = g_new0(vs_eval_counts, r->speakers->len + 1);
  for (size_t i = 0; i < r->n_files; i++) {
    guint k = GPOINTER_TO_UINT(g_hash_table_lookup(spk_index, r->files[i].speaker));
    vs_eval_counts_add(&r->spk_words[k], &r->files[i].words);
    vs_eval_counts_add(&r->spk_chars[k], &r->files[i].chars);
  }
  g_hash_table_unref(spk_index);
  r->extra_hyp = g_ptr_array_new_with_free_func(g_free);
  for (guint i = 0; i < hyp->utts->len; i++) {
    const vs_eval_utt *h = hyp->utts->pdata[i];
    if (!g_hash_table_contains(ref->by_id, h->id)) g_ptr_array_add(r->extra_hyp, g_strdup(h->id));
  }
  return r;
}

void vs_eval_report_free(vs_eval_report *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n_files; i++) {
    g_free(r->files[i].id);
    g_free(r->files[i].speaker);
  }
  g_free(r->files);
  g_ptr_array_free(r->speakers, TRUE);
  g_free(r->spk_words);
  g_free(r->spk_chars);
  g_ptr_array_free(r->extra_hyp, TRUE);
  g_free(r->normalizer);
  g_free(r);
}

static void print_row(FILE *f, const char *name, const vs_eval_counts *w, const vs_eval_counts *c,
                      long n) {
  /* Ids often share long prefixes (a book, a podcast): keep their distinctive tail. */
  size_t len = strlen(name);
  const char *shown = len > 32 ? name + len - 31 : name;
  fprintf(f, "%s%-*s %6ld %8ld %7ld %7ld %7ld %7ld %7.2f %7.2f\n", len > 32 ? "~" : "",
          len > 32 ? 31 : 32, shown, n, w->n_ref, w->cor, w->sub, w->del, w->ins,
          100.0 * vs_eval_error_rate(w), 100.0 * vs_eval_error_rate(c));
}

static void print_header(FILE *f, const char *what) {
  fprintf(f, "%-32s %6s %8s %7s %7s %7s %7s %7s %7s\n", what, "#utt", "#words", "Corr", "Sub",
          "Del", "Ins", "WER%", "CER%");
}

void vs_eval_report_print(const vs_eval_report *r, FILE *f, bool per_file) {
  if (per_file) {
    print_header(f, "file");
    for (size_t i = 0; i < r->n_files; i++)
      print_row(f, r->files[i].id, &r->files[i].words, &r->files[i].chars, 1);
    fputc('\n', f);
  }
  print_header(f, "speaker");
  for (guint k = 0; k < r->speakers->len; k++) {
    long n = 0;
    for (size_t i = 0; i < r->n_files; i++)
      n += !strcmp(r->files[i].speaker, r->speakers->pdata[k]);
    print_row(f, r->speakers->pdata[k], &r->spk_words[k], &r->spk_chars[k], n);
  }
  fputc('\n', f);
  print_header(f, "corpus");
  print_row(f, "Sum", &r->words, &r->chars, (long)r->n_files);
  fprintf(f,
          "normalizer: %s; references without hypothesis: %ld; hypotheses without reference "
          "(not scored): %u\n",
          r->normalizer, r->n_missing_hyp, r->extra_hyp->len);
}

static void json_counts(JsonBuilder *b, const char *name, const vs_eval_counts *c) {
  json_builder_set_member_name(b, name);
  json_builder_begin_object(b);
  const char *keys[] = {"ref", "hyp", "cor", "sub", "del", "ins"};
  long vals[] = {c->n_ref, c->n_hyp, c->cor, c->sub, c->del, c->ins};
  for (int i = 0; i < 6; i++) {
    json_builder_set_member_name(b, keys[i]);
    json_builder_add_int_value(b, vals[i]);
  }
  json_builder_set_member_name(b, "rate");
  double rate = vs_eval_error_rate(c);
  if (isfinite(rate))
    json_builder_add_double_value(b, rate);
  else
    json_builder_add_null_value(b);
  json_builder_end_object(b);
}

char *vs_eval_report_json(const vs_eval_report *r, const char *ref_path, const char *hyp_path) {
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "ref");
  json_builder_add_string_value(b, ref_path);
  json_builder_set_member_name(b, "hyp");
  json_builder_add_string_value(b, hyp_path);
  json_builder_set_member_name(b, "normalizer");
  json_builder_add_string_value(b, r->normalizer);
  json_builder_set_member_name(b, "alignment");
  json_builder_add_string_value(b, "sclite weights: sub 4, ins 3, del 3");
  json_builder_set_member_name(b, "utterances");
  json_builder_add_int_value(b, (gint64)r->n_files);
  json_counts(b, "words", &r->words);
  json_counts(b, "chars", &r->chars);
  json_builder_set_member_name(b, "missing_hyp");
  json_builder_begin_array(b);
  for (size_t i = 0; i < r->n_files; i++)
    if (r->files[i].missing_hyp) json_builder_add_string_value(b, r->files[i].id);
  json_builder_end_array(b);
  json_builder_set_member_name(b, "extra_hyp");
  json_builder_begin_array(b);
  for (guint i = 0; i < r->extra_hyp->len; i++)
    json_builder_add_string_value(b, r->extra_hyp->pdata[i]);
  json_builder_end_array(b);
  json_builder_set_member_name(b, "speakers");
  json_builder_begin_array(b);
  for (guint k = 0; k < r->speakers->len; k++) {
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "speaker");
    json_builder_add_string_value(b, r->speakers->pdata[k]);
    json_counts(b, "words", &r->spk_words[k]);
    json_counts(b, "chars", &r->spk_chars[k]);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_set_member_name(b, "files");
  json_builder_begin_array(b);
  for (size_t i = 0; i < r->n_files; i++) {
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "id");
    json_builder_add_string_value(b, r->files[i].id);
    json_builder_set_member_name(b, "speaker");
    json_builder_add_string_value(b, r->files[i].speaker);
    json_counts(b, "words", &r->files[i].words);
    json_counts(b, "chars", &r->files[i].chars);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
  JsonNode *root = json_builder_get_root(b);
  JsonGenerator *g = json_generator_new();
  json_generator_set_pretty(g, TRUE);
  json_generator_set_root(g, root);
  char *s = json_generator_to_data(g, NULL);
  json_node_unref(root);
  g_object_unref(g);
  g_object_unref(b);
  return s;
}

/* ---- command ---------------------------------------------------------------------------- */

static const vs_opt_spec eval_opts[] = {
    {"ref", VS_OPT_STRING, NULL,
     "reference: transcript folder, .stm, .ctm, .trn, or .jsonl (transcript or id/text manifest)"},
    {"hyp", VS_OPT_STRING, NULL, "hypothesis, in any of the same formats"},
    {"normalizer", VS_OPT_CHOICE, "english", "text normaliser applied to both sides",
     "english|basic|none"},
    {"spelling-map", VS_OPT_STRING, NULL,
     "British->American map (openai's english.json) for --normalizer=english; default "
     "$VOXSHARD_CACHE/english.json or ~/.cache/voxshard/english.json when present"},
    {"out", VS_OPT_STRING, NULL, "write the report as JSON to this path (atomically)"},
    {"per-file", VS_OPT_BOOL, "true", "print the per-file table"},
};

int vs_cmd_eval(int argc, char **argv) {
  vs_config *cfg = vs_config_new("eval", eval_opts, G_N_ELEMENTS(eval_opts));
  GError *err = NULL;
  bool help = false;
  int rc = 0;
  vs_eval_set *ref = NULL, *hyp = NULL;
  vs_norm *norm = NULL;
  vs_eval_report *rep = NULL;
  if (!vs_config_parse_args(cfg, argc, argv, &help, &err)) {
    fprintf(stderr, "voxshard eval: %s\n", err->message);
    rc = 2;
    goto out;
  }
  if (help) {
    vs_config_print_help(cfg, "voxshard eval --ref REF --hyp HYP [options]",
                         "Word and character error rates of HYP against REF (sclite alignment).");
    goto out;
  }
  const char *ref_path = vs_config_get_string(cfg, "ref"),
             *hyp_path = vs_config_get_string(cfg, "hyp");
  if (!ref_path || !hyp_path || vs_config_n_positionals(cfg) > 0) {
    fprintf(stderr, "voxshard eval: --ref and --hyp are required (see voxshard eval --help)\n");
    rc = 2;
    goto out;
  }
  const char *map = vs_config_get_string(cfg, "spelling-map");
  norm = vs_norm_new(vs_norm_kind_from_name(vs_config_get_string(cfg, "normalizer")), map, &err);
  if (!norm || !(ref = vs_eval_set_load(ref_path, &err)) ||
      !(hyp = vs_eval_set_load(hyp_path, &err))) {
    fprintf(stderr, "voxshard eval: %s\n", err->message);
    rc = 1;
    goto out;
  }
  vs_info("eval: ref %s (%s, %u utterances), hyp %s (%s, %u utterances), normalizer %s", ref_path,
          ref->format, ref->utts->len, hyp_path, hyp->format, hyp->utts->len,
          vs_norm_kind_name(vs_norm_get_kind(norm)));
  rep = vs_eval_score(ref, hyp, norm);
  if (rep->n_missing_hyp)
    vs_warn("eval: %ld references have no hypothesis (scored as deletions)", rep->n_missing_hyp);
  if (rep->extra_hyp->len)
    vs_warn("eval: %u hypotheses have no reference (not scored)", rep->extra_hyp->len);
  vs_eval_report_print(rep, stdout, vs_config_get_bool(cfg, "per-file"));
  const char *out_path = vs_config_get_string(cfg, "out");
  if (out_path) {
    char *json = vs_eval_report_json(rep, ref_path, hyp_path);
    bool ok = vs_fs_write_atomic(out_path, json, strlen(json), &err);
    g_free(json);
    if (!ok) {
      fprintf(stderr, "voxshard eval: %s\n", err->message);
      rc = 1;
    }
  }
out:
  g_clear_error(&err);
  vs_eval_report_free(rep);
  vs_eval_set_free(ref);
  vs_eval_set_free(hyp);
  vs_norm_free(norm);
  vs_config_free(cfg);
  return rc;
}
