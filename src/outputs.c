#include "outputs.h"

#include "fsutil.h"
#include "vs_error.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

void vs_out_segment_clear(vs_out_segment *seg) {
  g_free(seg->text);
  g_free(seg->tokens);
  for (size_t i = 0; i < seg->n_words; i++)
    g_free(seg->words[i].word);
  g_free(seg->words);
  memset(seg, 0, sizeof *seg);
}

void vs_out_transcript_clear(vs_out_transcript *t) {
  for (size_t i = 0; i < t->n_segs; i++)
    vs_out_segment_clear(&t->segs[i]);
  g_free(t->segs);
  g_free(t->id);
  g_free(t->source);
  g_free(t->language);
  g_free(t->speaker);
  memset(t, 0, sizeof *t);
}

void vs_out_transcript_free(vs_out_transcript *t) {
  if (!t) return;
  vs_out_transcript_clear(t);
  g_free(t);
}

void vs_out_format_timestamp(double seconds, char sep, char buf[32]) {
  if (!isfinite(seconds) || seconds < 0) seconds = 0;
  /* Half-to-even, as Python's round() in whisper's format_timestamp: 1.0005 s -> 1.000 s. */
  long long ms = (long long)nearbyint(seconds * 1000.0);
  long long h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60;
  snprintf(buf, 32, "%02lld:%02lld:%02lld%c%03lld", h, m, s, sep, ms % 1000);
}

/* Subtitle cue text: lines trimmed, blank lines dropped (a blank line ends a cue), "-->" broken
 * (it would read as a timing line); WebVTT also needs & and < escaped. */
static char *cue_text(const char *text, bool vtt) {
  char *valid = g_utf8_make_valid(text ? text : "", -1);
  char **lines = g_regex_split_simple("\r\n|\r|\n", valid, 0, 0);
  GString *out = g_string_new(NULL);
  for (char **l = lines; *l; l++) {
    char *line = g_strstrip(*l);
    if (!*line) continue;
    GString *ln = g_string_new(line);
    char *arrow;
    while ((arrow = strstr(ln->str, "-->")))
      g_string_erase(ln, arrow - ln->str, 1); /* "-->" -> "->", repeated for "--->" */
    if (out->len) g_string_append_c(out, '\n');
    if (vtt) {
      for (const char *p = ln->str; *p; p++) {
        if (*p == '&')
          g_string_append(out, "&amp;");
        else if (*p == '<')
          g_string_append(out, "&lt;");
        else if (*p == '>')
          g_string_append(out, "&gt;");
        else
          g_string_append_c(out, *p);
      }
    } else {
      g_string_append(out, ln->str);
    }
    g_string_free(ln, TRUE);
  }
  g_strfreev(lines);
  g_free(valid);
  return g_string_free(out, FALSE);
}

static char *subtitles(const vs_out_transcript *t, bool vtt) {
  GString *out = g_string_new(vtt ? "WEBVTT\n\n" : "");
  char a[32], b[32];
  int index = 1;
  for (size_t i = 0; i < t->n_segs; i++) {
    const vs_out_segment *s = &t->segs[i];
    char *txt = cue_text(s->text, vtt);
    if (*txt) {
      vs_out_format_timestamp(s->start_s, vtt ? '.' : ',', a);
      vs_out_format_timestamp(s->end_s, vtt ? '.' : ',', b);
      if (!vtt) g_string_append_printf(out, "%d\n", index);
      g_string_append_printf(out, "%s --> %s\n%s\n\n", a, b, txt);
      index++;
    }
    g_free(txt);
  }
  return g_string_free(out, FALSE);
}

char *vs_out_srt_string(const vs_out_transcript *t) {
  return subtitles(t, false);
}
char *vs_out_vtt_string(const vs_out_transcript *t) {
  return subtitles(t, true);
}

/* ---- JSONL ------------------------------------------------------------------------------ */

static void add_num(JsonBuilder *b, const char *key, double v) {
  json_builder_set_member_name(b, key);
  if (isfinite(v))
    json_builder_add_double_value(b, v);
  else
    json_builder_add_null_value(b); /* JSON has no NaN */
}

static void add_str(JsonBuilder *b, const char *key, const char *v) {
  json_builder_set_member_name(b, key);
  if (v) {
    char *valid = g_utf8_make_valid(v, -1);
    json_builder_add_string_value(b, valid);
    g_free(valid);
  } else {
    json_builder_add_null_value(b);
  }
}

static void append_record(GString *out, JsonBuilder *b) {
  JsonNode *root = json_builder_get_root(b);
  JsonGenerator *gen = json_generator_new();
  json_generator_set_root(gen, root);
  char *line = json_generator_to_data(gen, NULL);
  g_string_append(out, line);
  g_string_append_c(out, '\n');
  g_free(line);
  g_object_unref(gen);
  json_node_unref(root);
  json_builder_reset(b);
}

char *vs_out_jsonl_string(const vs_out_transcript *t) {
  GString *out = g_string_new(NULL);
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  add_str(b, "type", "file");
  add_str(b, "format", "voxshard-transcript");
  json_builder_set_member_name(b, "version");
  json_builder_add_int_value(b, 1);
  add_str(b, "id", t->id);
  add_str(b, "source", t->source);
  add_str(b, "language", t->language);
  add_str(b, "speaker", t->speaker);
  add_num(b, "duration", t->duration_s);
  json_builder_end_object(b);
  append_record(out, b);
  for (size_t i = 0; i < t->n_segs; i++) {
    const vs_out_segment *s = &t->segs[i];
    json_builder_begin_object(b);
    add_str(b, "type", "segment");
    json_builder_set_member_name(b, "index");
    json_builder_add_int_value(b, (gint64)i);
    add_num(b, "start", s->start_s);
    add_num(b, "end", s->end_s);
    add_str(b, "text", s->text ? s->text : "");
    add_num(b, "avg_logprob", s->avg_logprob);
    add_num(b, "no_speech_prob", s->no_speech_prob);
    add_num(b, "compression_ratio", s->compression_ratio);
    add_num(b, "temperature", s->temperature);
    if (s->tokens) {
      json_builder_set_member_name(b, "tokens");
      json_builder_begin_array(b);
      for (size_t k = 0; k < s->n_tokens; k++)
        json_builder_add_int_value(b, s->tokens[k]);
      json_builder_end_array(b);
    }
    if (s->words) {
      json_builder_set_member_name(b, "words");
      json_builder_begin_array(b);
      for (size_t k = 0; k < s->n_words; k++) {
        json_builder_begin_object(b);
        add_num(b, "start", s->words[k].start_s);
        add_num(b, "end", s->words[k].end_s);
        add_str(b, "word", s->words[k].word);
        add_num(b, "prob", s->words[k].prob);
        json_builder_end_object(b);
      }
      json_builder_end_array(b);
    }
    json_builder_end_object(b);
    append_record(out, b);
  }
  json_builder_begin_object(b);
  add_str(b, "type", "end");
  add_str(b, "id", t->id);
  json_builder_set_member_name(b, "segments");
  json_builder_add_int_value(b, (gint64)t->n_segs);
  json_builder_end_object(b);
  append_record(out, b);
  g_object_unref(b);
  return g_string_free(out, FALSE);
}

/* ---- CTM / STM -------------------------------------------------------------------------- */

/* CTM/STM fields are whitespace-separated: whitespace inside an id or speaker becomes '_'. */
static char *field(const char *s) {
  char *f = g_strdup(s && *s ? s : "unknown");
  for (char *p = f; *p; p++)
    if (g_ascii_isspace(*p)) *p = '_';
  return f;
}

static int cmp_seg_start(const void *a, const void *b) {
  const vs_out_segment *x = *(const vs_out_segment *const *)a,
                       *y = *(const vs_out_segment *const *)b;
  return (x->start_s > y->start_s) - (x->start_s < y->start_s);
}

static int cmp_file_id(const void *a, const void *b) {
  const vs_out_transcript *x = *(const vs_out_transcript *const *)a;
  const vs_out_transcript *y = *(const vs_out_transcript *const *)b;
  return strcmp(x->id ? x->id : "", y->id ? y->id : "");
}

/* sclite wants each file's records together and in time order. */
static const vs_out_segment **sorted_segments(const vs_out_transcript *t) {
  const vs_out_segment **v = g_new(const vs_out_segment *, t->n_segs + 1);
  for (size_t i = 0; i < t->n_segs; i++)
    v[i] = &t->segs[i];
  qsort(v, t->n_segs, sizeof *v, cmp_seg_start);
  return v;
}

static const vs_out_transcript **sorted_files(const vs_out_transcript *const *files, size_t n) {
  const vs_out_transcript **v = g_new(const vs_out_transcript *, n + 1);
  memcpy(v, files, n * sizeof *v);
  qsort(v, n, sizeof *v, cmp_file_id);
  return v;
}

static char **split_words(const char *text) {
  char *valid = g_utf8_make_valid(text ? text : "", -1);
  char **parts = g_regex_split_simple("\\s+", g_strstrip(valid), 0, 0);
  g_free(valid);
  GPtrArray *w = g_ptr_array_new();
  for (char **p = parts; *p; p++)
    if (**p) g_ptr_array_add(w, g_strdup(*p));
  g_ptr_array_add(w, NULL);
  g_strfreev(parts);
  return (char **)g_ptr_array_free(w, FALSE);
}

static void ctm_line(GString *out, const char *file, double start, double dur, const char *word,
                     double conf) {
  g_string_append_printf(out, "%s 1 %.3f %.3f %s", file, start, MAX(dur, 0.0), word);
  if (isfinite(conf)) g_string_append_printf(out, " %.4f", CLAMP(conf, 0.0, 1.0));
  g_string_append_c(out, '\n');
}

char *vs_out_ctm_string(const vs_out_transcript *const *files, size_t n_files) {
  GString *out = g_string_new(NULL);
  const vs_out_transcript **fs = sorted_files(files, n_files);
  for (size_t f = 0; f < n_files; f++) {
    char *file = field(fs[f]->id);
    const vs_out_segment **segs = sorted_segments(fs[f]);
    for (size_t i = 0; i < fs[f]->n_segs; i++) {
      const vs_out_segment *s = segs[i];
      double seg_conf = isfinite(s->avg_logprob) ? exp(s->avg_logprob) : NAN;
      if (s->words && s->n_words) {
        for (size_t k = 0; k < s->n_words; k++) {
          char **ws = split_words(s->words[k].word); /* a timed "word" may hold spaces */
          guint nw = g_strv_length(ws);
          double d = (s->words[k].end_s - s->words[k].start_s) / MAX(nw, 1u);
          for (guint j = 0; j < nw; j++)
            ctm_line(out, file, s->words[k].start_s + j * d, d, ws[j],
                     isfinite(s->words[k].prob) ? s->words[k].prob : seg_conf);
          g_strfreev(ws);
        }
        continue;
      }
      /* No word timings: the segment's span is shared evenly by its words. */
      char **ws = split_words(s->text);
      guint nw = g_strv_length(ws);
      double d = nw ? (s->end_s - s->start_s) / nw : 0;
      for (guint j = 0; j < nw; j++)
        ctm_line(out, file, s->start_s + j * d, d, ws[j], seg_conf);
      g_strfreev(ws);
    }
    g_free(segs);
    g_free(file);
  }
  g_free(fs);
  return g_string_free(out, FALSE);
}

char *vs_out_stm_string(const vs_out_transcript *const *files, size_t n_files) {
  GString *out = g_string_new(NULL);
  const vs_out_transcript **fs = sorted_files(files, n_files);
  for (size_t f = 0; f < n_files; f++) {
    char *file = field(fs[f]->id);
    char *spk = field(fs[f]->speaker ? fs[f]->speaker : fs[f]->id);
    const vs_out_segment **segs = sorted_segments(fs[f]);
    for (size_t i = 0; i < fs[f]->n_segs; i++) {
      char **ws = split_words(segs[i]->text);
      char *text = g_strjoinv(" ", ws);
      g_string_append_printf(out, "%s 1 %s %.3f %.3f %s\n", file, spk, segs[i]->start_s,
                             segs[i]->end_s, text);
      g_free(text);
      g_strfreev(ws);
    }
    g_free(segs);
    g_free(spk);
    g_free(file);
  }
  g_free(fs);
  return g_string_free(out, FALSE);
}

static bool write_string(const char *path, char *data, GError **err) {
  bool ok = vs_fs_write_atomic(path, data, strlen(data), err);
  g_free(data);
  return ok;
}

bool vs_out_write_srt(const char *path, const vs_out_transcript *t, GError **err) {
  return write_string(path, vs_out_srt_string(t), err);
}
bool vs_out_write_vtt(const char *path, const vs_out_transcript *t, GError **err) {
  return write_string(path, vs_out_vtt_string(t), err);
}
bool vs_out_write_jsonl(const char *path, const vs_out_transcript *t, GError **err) {
  return write_string(path, vs_out_jsonl_string(t), err);
}
bool vs_out_write_ctm(const char *path, const vs_out_transcript *const *files, size_t n_files,
                      GError **err) {
  return write_string(path, vs_out_ctm_string(files, n_files), err);
}
bool vs_out_write_stm(const char *path, const vs_out_transcript *const *files, size_t n_files,
                      GError **err) {
  return write_string(path, vs_out_stm_string(files, n_files), err);
}

bool vs_out_write_file_outputs(const char *dir, const vs_out_transcript *t, const char *formats,
                               GError **err) {
  if (!t->id || !*t->id || strchr(t->id, '/') || !strcmp(t->id, ".") || !strcmp(t->id, ".."))
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: file id \"%s\" cannot name an output file", dir,
            t->id ? t->id : "");
  char **fmts = g_strsplit(formats ? formats : "jsonl,srt,vtt", ",", -1);
  for (char **f = fmts; *f; f++) {
    g_strstrip(*f);
    if (strcmp(*f, "jsonl") && strcmp(*f, "srt") && strcmp(*f, "vtt")) {
      g_set_error(err, VS_ERROR, VS_ERROR_CONFIG,
                  "unknown output format \"%s\" (expected jsonl, srt or vtt)", *f);
      g_strfreev(fmts);
      return false;
    }
  }
  bool ok = vs_fs_mkdir_p(dir, err);
  for (char **f = fmts; ok && *f; f++) {
    char *name = g_strconcat(t->id, ".", *f, NULL);
    char *path = g_build_filename(dir, name, NULL);
    ok = !strcmp(*f, "jsonl") ? vs_out_write_jsonl(path, t, err)
         : !strcmp(*f, "srt") ? vs_out_write_srt(path, t, err)
                              : vs_out_write_vtt(path, t, err);
    g_free(path);
    g_free(name);
  }
  g_strfreev(fmts);
  return ok;
}

/* ---- reading back ----------------------------------------------------------------------- */

static double get_num(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || JSON_NODE_HOLDS_NULL(n) || !JSON_NODE_HOLDS_VALUE(n)) return NAN;
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_DOUBLE || t == G_TYPE_INT64) return json_node_get_double(n);
  return NAN;
}

static char *get_str(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) return NULL;
  return g_strdup(json_node_get_string(n));
}

vs_out_transcript *vs_out_read_jsonl(const char *path, GError **err) {
  char *data = NULL;
  gsize len = 0;
  GError *e = NULL;
  if (!g_file_get_contents(path, &data, &len, &e)) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot read: %s", path, e->message);
    g_error_free(e);
    return NULL;
  }
  vs_out_transcript *t = g_new0(vs_out_transcript, 1);
  GArray *segs = g_array_new(FALSE, TRUE, sizeof(vs_out_segment));
  char **lines = g_strsplit(data, "\n", -1);
  g_free(data);
  JsonParser *parser = json_parser_new();
  bool have_header = false, have_end = false, ok = true;
  int lineno = 0;
  for (char **l = lines; ok && *l; l++) {
    lineno++;
    if (!*g_strstrip(*l)) continue;
    if (have_end) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s:%d: record after the \"end\" record", path,
                  lineno);
      ok = false;
      break;
    }
    if (!json_parser_load_from_data(parser, *l, -1, &e) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s:%d: not a JSON object%s%s", path, lineno,
                  e ? ": " : "", e ? e->message : "");
      g_clear_error(&e);
      ok = false;
      break;
    }
    JsonObject *o = json_node_get_object(json_parser_get_root(parser));
    char *type = get_str(o, "type");
    if (!have_header) {
      char *format = get_str(o, "format");
      if (!type || strcmp(type, "file") || !format || strcmp(format, "voxshard-transcript")) {
        g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                    "%s:%d: first record is not a voxshard-transcript \"file\" record", path,
                    lineno);
        ok = false;
      } else {
        t->id = get_str(o, "id");
        t->source = get_str(o, "source");
        t->language = get_str(o, "language");
        t->speaker = get_str(o, "speaker");
        t->duration_s = get_num(o, "duration");
        have_header = true;
        if (!t->id) {
          g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s:%d: \"file\" record has no id", path,
                      lineno);
          ok = false;
        }
      }
      g_free(format);
    } else if (type && !strcmp(type, "segment")) {
      vs_out_segment s = {0};
      s.start_s = get_num(o, "start");
      s.end_s = get_num(o, "end");
      s.text = get_str(o, "text");
      s.avg_logprob = get_num(o, "avg_logprob");
      s.no_speech_prob = get_num(o, "no_speech_prob");
      s.compression_ratio = get_num(o, "compression_ratio");
      s.temperature = get_num(o, "temperature");
      if (!s.text || !isfinite(s.start_s) || !isfinite(s.end_s)) {
        g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                    "%s:%d: segment record needs numeric start, end and string text", path, lineno);
        g_free(s.text);
        ok = false;
      } else {
        JsonNode *tk = json_object_get_member(o, "tokens");
        if (tk && JSON_NODE_HOLDS_ARRAY(tk)) {
          JsonArray *a = json_node_get_array(tk);
          s.n_tokens = json_array_get_length(a);
          s.tokens = g_new(int32_t, s.n_tokens + 1);
          for (guint k = 0; k < s.n_tokens; k++)
            s.tokens[k] = (int32_t)json_array_get_int_element(a, k);
        }
        JsonNode *wn = json_object_get_member(o, "words");
        if (wn && JSON_NODE_HOLDS_ARRAY(wn)) {
          JsonArray *a = json_node_get_array(wn);
          s.n_words = json_array_get_length(a);
          s.words = g_new0(vs_out_word, s.n_words + 1);
          for (guint k = 0; k < s.n_words; k++) {
            JsonNode *wk = json_array_get_element(a, k);
            if (!JSON_NODE_HOLDS_OBJECT(wk)) continue;
            JsonObject *wo = json_node_get_object(wk);
            s.words[k].start_s = get_num(wo, "start");
            s.words[k].end_s = get_num(wo, "end");
            s.words[k].word = get_str(wo, "word");
            s.words[k].prob = get_num(wo, "prob");
          }
        }
        g_array_append_val(segs, s);
      }
    } else if (type && !strcmp(type, "end")) {
      double n = get_num(o, "segments");
      if (n != (double)segs->len) {
        g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                    "%s:%d: \"end\" record counts %.0f segments, the file has %u", path, lineno, n,
                    segs->len);
        ok = false;
      }
      have_end = true;
    } else {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s:%d: unknown record type \"%s\"", path, lineno,
                  type ? type : "(none)");
      ok = false;
    }
    g_free(type);
  }
  g_strfreev(lines);
  g_object_unref(parser);
  if (ok && !have_end) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                "%s: no \"end\" record: the file is empty or was cut short", path);
    ok = false;
  }
  t->n_segs = segs->len;
  t->segs = (vs_out_segment *)(void *)g_array_free(segs, FALSE);
  if (!ok) {
    vs_out_transcript_free(t);
    return NULL;
  }
  return t;
}

static bool parse_ts(const char *s, double *out) {
  unsigned h = 0, m = 0, sec = 0, ms = 0;
  int n = 0;
  char sep;
  if (sscanf(s, "%u:%u:%u%c%3u%n", &h, &m, &sec, &sep, &ms, &n) == 5 &&
      (sep == ',' || sep == '.')) {
  } else if (sscanf(s, "%u:%u%c%3u%n", &m, &sec, &sep, &ms, &n) == 4 && sep == '.') {
    h = 0;
  } else {
    return false;
  }
  if (m > 59 || sec > 59) return false;
  *out = h * 3600.0 + m * 60.0 + sec + ms / 1000.0;
  return true;
}

vs_out_transcript *vs_out_parse_subtitles(const char *text, const char *what, GError **err) {
  GString *ns = g_string_new(NULL);
  for (const char *p = text; *p; p++) {
    if (*p == '\r') {
      g_string_append_c(ns, '\n');
      if (p[1] == '\n') p++;
    } else {
      g_string_append_c(ns, *p);
    }
  }
  char *norm = g_string_free(ns, FALSE);
  bool vtt = g_str_has_prefix(norm, "WEBVTT");
  vs_out_transcript *t = g_new0(vs_out_transcript, 1);
  GArray *segs = g_array_new(FALSE, TRUE, sizeof(vs_out_segment));
  char **blocks = g_regex_split_simple("\n{2,}", norm, 0, 0);
  bool ok = true;
  for (char **b = blocks; ok && *b; b++) {
    char **lines = g_strsplit(g_strstrip(*b), "\n", -1);
    guint n = g_strv_length(lines), i = 0;
    if (n == 0 || !*lines[0] || g_str_has_prefix(lines[0], "WEBVTT")) {
      g_strfreev(lines);
      continue;
    }
    if (!strstr(lines[0], "-->")) i = 1; /* SRT index or VTT cue identifier */
    const char *arrow = i < n ? strstr(lines[i], "-->") : NULL;
    vs_out_segment s = {0};
    if (!arrow || !parse_ts(lines[i], &s.start_s) ||
        !parse_ts(arrow + 3 + strspn(arrow + 3, " "), &s.end_s)) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: cue %u has no valid timing line", what,
                  segs->len + 1);
      ok = false;
    } else {
      s.text = g_strjoinv("\n", lines + i + 1);
      if (vtt) { /* undo the cue-text escapes */
        static const char *const esc[][2] = {{"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"}};
        for (size_t k = 0; k < G_N_ELEMENTS(esc); k++) {
          char **parts = g_strsplit(s.text, esc[k][0], -1);
          g_free(s.text);
          s.text = g_strjoinv(esc[k][1], parts);
          g_strfreev(parts);
        }
      }
      s.avg_logprob = s.no_speech_prob = s.compression_ratio = s.temperature = NAN;
      g_array_append_val(segs, s);
    }
    g_strfreev(lines);
  }
  g_strfreev(blocks);
  g_free(norm);
  t->n_segs = segs->len;
  t->segs = (vs_out_segment *)(void *)g_array_free(segs, FALSE);
  if (!ok) {
    vs_out_transcript_free(t);
    return NULL;
  }
  return t;
}
