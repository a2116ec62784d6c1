/* Whisper's GPT-2 byte-level BPE, read from a Hugging Face tokenizer.json. Text is split by the
 * GPT-2 regex, each piece's UTF-8 bytes are mapped to printable code points (so that every
 * byte is a vocabulary symbol), then merged by rank. Special tokens in the input text are
 * treated as text: callers add special ids themselves. */
#include "tokenizer.h"

#include "vs_error.h"

#include <json-glib/json-glib.h>
#include <stdint.h>

#define N_TIMESTAMPS 1501 /* <|0.00|> .. <|30.00|> */

struct vs_tokenizer {
  vs_special_tokens sp;
  char **tokens;         /* [n_vocab] token strings, byte-level form; owned */
  GHashTable *ids;       /* token string -> id + 1 (0 means absent in GHashTable lookups) */
  GHashTable *merges;    /* (left id << 32 | right id) -> (rank << 32 | merged id), gint64 keys */
  int byte_sym[256];     /* id of the one-symbol token for each byte */
  char byte_str[256][4]; /* the byte's printable code point, UTF-8, NUL-terminated */
  int cp_byte[512];      /* code point -> byte, -1 when the code point is not a byte's symbol */
  GRegex *split;
  GMutex cache_lock; /* encode is logically const; the cache is shared between threads */
  GHashTable *cache; /* piece (UTF-8) -> GArray of ids */
};

static const char *SPLIT_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* GPT-2's table: printable Latin-1 bytes stand for themselves, the other 68 bytes take the
 * code points from U+0100 in byte order. */
static void build_byte_map(vs_tokenizer *t) {
  for (int i = 0; i < 512; i++)
    t->cp_byte[i] = -1;
  int extra = 0;
  for (int b = 0; b < 256; b++) {
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
      cp = b;
    else
      cp = 256 + extra++;
    t->cp_byte[cp] = b;
    int n = g_unichar_to_utf8((gunichar)cp, t->byte_str[b]);
    t->byte_str[b][n] = '\0';
  }
}

static int lookup(const vs_tokenizer *t, const char *s) {
  return GPOINTER_TO_INT(g_hash_table_lookup(t->ids, s)) - 1;
}

int vs_tokenizer_token_id(const vs_tokenizer *t, const char *token) {
  return lookup(t, token);
}

static void set_token(vs_tokenizer *t, int id, const char *s) {
  /* The table's keys are the token strings themselves: drop the old key before freeing it. */
  if (t->tokens[id]) {
    gpointer owner = g_hash_table_lookup(t->ids, t->tokens[id]);
    if (GPOINTER_TO_INT(owner) == id + 1) g_hash_table_remove(t->ids, t->tokens[id]);
    g_free(t->tokens[id]);
  }
  t->tokens[id] = g_strdup(s);
  g_hash_table_replace(t->ids, t->tokens[id], GINT_TO_POINTER(id + 1));
}

void vs_tokenizer_free(vs_tokenizer *t) {
  if (!t) return;
  if (t->cache) g_hash_table_destroy(t->cache);
  g_mutex_clear(&t->cache_lock);
  if (t->split) g_regex_unref(t->split);
  if (t->merges) g_hash_table_destroy(t->merges);
  if (t->ids) g_hash_table_destroy(t->ids);
  if (t->tokens)
    for (int i = 0; i < t->sp.n_vocab; i++)
      g_free(t->tokens[i]);
  g_free(t->tokens);
  g_free(t);
}

/* The three Whisper vocabularies; a tokenizer.json that disagrees is not Whisper's. */
static const struct {
  int n_vocab, eot, sot, translate, no_timestamps;
} KNOWN[] = {
    {51864, 50256, 50257, 50357, 50362},
    {51865, 50257, 50258, 50358, 50363},
    {51866, 50257, 50258, 50359, 50364},
};

static bool find_specials(vs_tokenizer *t, const char *origin, GError **err) {
  vs_special_tokens *sp = &t->sp;
  const struct {
    const char *s, *alt;
    int *dst;
  } names[] = {
      {"<|endoftext|>", NULL, &sp->eot},
      {"<|startoftranscript|>", NULL, &sp->sot},
      {"<|translate|>", NULL, &sp->translate},
      {"<|transcribe|>", NULL, &sp->transcribe},
      {"<|startoflm|>", NULL, &sp->sot_lm},
      {"<|startofprev|>", NULL, &sp->sot_prev},
      {"<|nocaptions|>", "<|nospeech|>", &sp->no_speech},
      {"<|notimestamps|>", NULL, &sp->no_timestamps},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
    int id = lookup(t, names[i].s);
    if (id < 0 && names[i].alt) id = lookup(t, names[i].alt);
    if (id < 0)
      VS_FAIL(err, VS_ERROR_FORMAT, false,
              "%s: special token %s is missing: not a Whisper tokenizer", origin, names[i].s);
    *names[i].dst = id;
  }
  sp->timestamp_begin = sp->no_timestamps + 1;
  sp->lang_first = sp->sot + 1;
  sp->n_langs = sp->translate - sp->sot - 1;
  sp->multilingual = sp->n_vocab >= 51865;
  for (size_t i = 0; i < G_N_ELEMENTS(KNOWN); i++) {
    if (KNOWN[i].n_vocab != sp->n_vocab) continue;
    if (KNOWN[i].eot != sp->eot || KNOWN[i].sot != sp->sot || KNOWN[i].translate != sp->translate ||
        KNOWN[i].no_timestamps != sp->no_timestamps)
      VS_FAIL(err, VS_ERROR_FORMAT, false,
              "%s: special token ids (eot %d, sot %d, translate %d, notimestamps %d) differ from "
              "Whisper's %d-token vocabulary",
              origin, sp->eot, sp->sot, sp->translate, sp->no_timestamps, sp->n_vocab);
  }
  if (sp->n_langs < 1 || sp->transcribe != sp->translate + 1)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: special tokens are not in Whisper's order", origin);
  return true;
}

/* Merge keys are (left id << 32 | right id): g_int64_hash keeps only the low 32 bits, so every
 * merge with the same right symbol would share a bucket; mix both halves. */
static guint merge_key_hash(gconstpointer p) {
  guint64 x = *(const guint64 *)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (guint)x;
}

static void garray_free(gpointer p) {
  g_array_free(p, TRUE);
}

vs_tokenizer *vs_tokenizer_new_from_json(const char *data, size_t len, const char *origin,
                                         GError **err) {
  JsonParser *parser = json_parser_new();
  GError *local = NULL;
  vs_tokenizer *t = NULL;
  if (!json_parser_load_from_data(parser, data, (gssize)len, &local)) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: not valid JSON: %s", origin, local->message);
    g_error_free(local);
    g_object_unref(parser);
    return NULL;
  }
  JsonNode *root = json_parser_get_root(parser);
  JsonObject *ro = JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
  JsonObject *model = NULL;
  if (ro && json_object_has_member(ro, "model") &&
      JSON_NODE_HOLDS_OBJECT(json_object_get_member(ro, "model")))
    model = json_object_get_object_member(ro, "model");
  JsonObject *vocab = NULL;
  JsonArray *merges = NULL;
  if (model && json_object_has_member(model, "vocab") &&
      JSON_NODE_HOLDS_OBJECT(json_object_get_member(model, "vocab")))
    vocab = json_object_get_object_member(model, "vocab");
  if (model && json_object_has_member(model, "merges") &&
      JSON_NODE_HOLDS_ARRAY(json_object_get_member(model, "merges")))
    merges = json_object_get_array_member(model, "merges");
  if (!vocab || !merges) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                "%s: not a BPE tokenizer.json: model.vocab or model.merges is missing", origin);
    g_object_unref(parser);
    return NULL;
  }
  JsonArray *added = NULL;
  if (json_object_has_member(ro, "added_tokens") &&
      JSON_NODE_HOLDS_ARRAY(json_object_get_member(ro, "added_tokens")))
    added = json_object_get_array_member(ro, "added_tokens");

  /* Ids first, to size the table: the largest id, plus the timestamps when they are absent. */
  int max_id = -1, notimestamps = -1;
  GList *members = json_object_get_members(vocab);
  for (GList *l = members; l; l = l->next) {
    gint64 id = json_object_get_int_member(vocab, l->data);
    if (id < 0 || id > 1000000) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: token '%s' has invalid id %" G_GINT64_FORMAT,
                  origin, (char *)l->data, id);
      g_list_free(members);
      g_object_unref(parser);
      return NULL;
    }
    if (id > max_id) max_id = (int)id;
  }
  guint n_added = added ? json_array_get_length(added) : 0;
  for (guint i = 0; i < n_added; i++) {
    JsonObject *a = json_array_get_object_element(added, i);
    if (!a || !json_object_has_member(a, "id") || !json_object_has_member(a, "content")) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: added_tokens[%u] lacks id or content",
                  origin, i);
      g_list_free(members);
      g_object_unref(parser);
      return NULL;
    }
    int id = (int)json_object_get_int_member(a, "id");
    if (id > max_id) max_id = id;
    if (!g_strcmp0(json_object_get_string_member(a, "content"), "<|notimestamps|>"))
      notimestamps = id;
  }
  int n_vocab = max_id + 1;
  if (notimestamps >= 0 && n_vocab < notimestamps + 1 + N_TIMESTAMPS)
    n_vocab = notimestamps + 1 + N_TIMESTAMPS;

  t = g_new0(vs_tokenizer, 1);
  g_mutex_init(&t->cache_lock);
  t->sp.n_vocab = n_vocab;
  t->tokens = g_new0(char *, n_vocab);
  t->ids = g_hash_table_new(g_str_hash, g_str_equal);
  for (GList *l = members; l; l = l->next)
    set_token(t, (int)json_object_get_int_member(vocab, l->data), l->data);
  g_list_free(members);
  for (guint i = 0; i < n_added; i++) {
    JsonObject *a = json_array_get_object_element(added, i);
    set_token(t, (int)json_object_get_int_member(a, "id"),
              json_object_get_string_member(a, "content"));
  }
  if (notimestamps >= 0)
    for (int k = 0; k < N_TIMESTAMPS; k++) {
      int id = notimestamps + 1 + k;
      if (t->tokens[id]) continue;
      char s[32];
      snprintf(s, sizeof s, "<|%d.%02d|>", k / 50, (k % 50) * 2);
      set_token(t, id, s);
    }
  for (int i = 0; i < n_vocab; i++)
    if (!t->tokens[i]) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: no token has id %d (ids must be dense)",
                  origin, i);
      goto fail;
    }

  build_byte_map(t);
  for (int b = 0; b < 256; b++) {
    t->byte_sym[b] = lookup(t, t->byte_str[b]);
    if (t->byte_sym[b] < 0) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s: the vocabulary lacks the symbol of byte 0x%02x: not byte-level BPE", origin,
                  b);
      goto fail;
    }
  }

  t->merges = g_hash_table_new_full(merge_key_hash, g_int64_equal, g_free, g_free);
  guint n_merges = json_array_get_length(merges);
  for (guint r = 0; r < n_merges; r++) {
    JsonNode *e = json_array_get_element(merges, r);
    char *a = NULL, *b = NULL;
    if (JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING) {
      const char *s = json_node_get_string(e);
      const char *sp = strchr(s + (s[0] == ' ' ? 1 : 0), ' '); /* first symbol is never empty */
      if (sp) {
        a = g_strndup(s, (gsize)(sp - s));
        b = g_strdup(sp + 1);
      }
    } else if (JSON_NODE_HOLDS_ARRAY(e) && json_array_get_length(json_node_get_array(e)) == 2) {
      JsonArray *p = json_node_get_array(e);
      a = g_strdup(json_array_get_string_element(p, 0));
      b = g_strdup(json_array_get_string_element(p, 1));
    }
    int ia = a ? lookup(t, a) : -1, ib = b ? lookup(t, b) : -1, im = -1;
    if (ia >= 0 && ib >= 0) {
      char *m = g_strconcat(a, b, NULL);
      im = lookup(t, m);
      g_free(m);
    }
    if (im < 0) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s: merge %u (%s + %s) does not join two vocabulary tokens into a third", origin,
                  r, a ? a : "?", b ? b : "?");
      g_free(a);
      g_free(b);
      goto fail;
    }
    g_free(a);
    g_free(b);
    gint64 *key = g_new(gint64, 1), *val = g_new(gint64, 1);
    *key = (gint64)ia << 32 | (gint64)ib;
    *val = (gint64)r << 32 | (gint64)im;
    if (!g_hash_table_contains(t->merges, key))
      g_hash_table_insert(t->merges, key, val);
    else {
      g_free(key);
      g_free(val);
    }
  }

  if (!find_specials(t, origin, err)) goto fail;
  t->split = g_regex_new(SPLIT_PATTERN, G_REGEX_OPTIMIZE, 0, &local);
  if (!t->split) {
    g_set_error(err, VS_ERROR, VS_ERROR_INTERNAL, "tokenizer: split regex: %s", local->message);
    g_error_free(local);
    goto fail;
  }
  t->cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, garray_free);
  g_object_unref(parser);
  return t;

fail:
  g_object_unref(parser);
  vs_tokenizer_free(t);
  return NULL;
}

vs_tokenizer *vs_tokenizer_load_json(const char *path, GError **err) {
  char *data = NULL;
  gsize len = 0;
  GError *local = NULL;
  if (!g_file_get_contents(path, &data, &len, &local)) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot read: %s", path, local->message);
    g_error_free(local);
    return NULL;
  }
  vs_tokenizer *t = vs_tokenizer_new_from_json(data, len, path, err);
  g_free(data);
  return t;
}

const vs_special_tokens *vs_tokenizer_specials(const vs_tokenizer *t) {
  return &t->sp;
}

/* Merges the piece's byte symbols, always the lowest-ranked adjacent pair first (GPT-2). */
static GArray *bpe(const vs_tokenizer *t, const char *piece, size_t len) {
  GArray *w = g_array_sized_new(FALSE, FALSE, sizeof(int), (guint)len);
  for (size_t i = 0; i < len; i++)
    g_array_append_val(w, t->byte_sym[(uint8_t)piece[i]]);
  int *s = (int *)w->data;
  for (;;) {
    gint64 best = G_MAXINT64;
    int best_merged = -1;
    guint best_i = 0;
    for (guint i = 0; i + 1 < w->len; i++) {
      gint64 key = (gint64)s[i] << 32 | (gint64)s[i + 1];
      gint64 *v = g_hash_table_lookup(t->merges, &key);
      if (v && (*v >> 32) < best) {
        best = *v >> 32;
        best_merged = (int)(*v & 0xffffffff);
        best_i = i;
      }
    }
    if (best_merged < 0) break;
    int l = s[best_i], r = s[best_i + 1];
    guint o = 0;
    for (guint i = 0; i < w->len;) { /* every occurrence, left to right */
      if (i + 1 < w->len && s[i] == l && s[i + 1] == r) {
        s[o++] = best_merged;
        i += 2;
      } else {
        s[o++] = s[i++];
      }
    }
    g_array_set_size(w, o);
    s = (int *)w->data;
  }
  return w;
}

int *vs_tokenizer_encode(const vs_tokenizer *t, const char *text, size_t *n_ids) {
  vs_tokenizer *mt = (vs_tokenizer *)t;
  GArray *out = g_array_new(FALSE, FALSE, sizeof(int));
  GMatchInfo *mi = NULL;
  /* invalid UTF-8 cannot go through the regex: encode its valid form */
  char *valid = g_utf8_validate(text, -1, NULL) ? NULL : g_utf8_make_valid(text, -1);
  const char *src = valid ? valid : text;
  g_regex_match(t->split, src, 0, &mi);
  while (g_match_info_matches(mi)) {
    gint s, e;
    g_match_info_fetch_pos(mi, 0, &s, &e);
    char *piece = g_strndup(src + s, (gsize)(e - s));
    g_mutex_lock(&mt->cache_lock);
    GArray *ids = g_hash_table_lookup(mt->cache, piece);
    g_mutex_unlock(&mt->cache_lock);
    if (!ids) {
      ids = bpe(t, piece, (size_t)(e - s));
      g_mutex_lock(&mt->cache_lock);
      if (g_hash_table_size(mt->cache) > 200000) g_hash_table_remove_all(mt->cache);
      GArray *had = g_hash_table_lookup(mt->cache, piece);
      if (had) {
        g_array_free(ids, TRUE);
        ids = had;
        g_free(piece);
      } else {
        g_hash_table_insert(mt->cache, piece, ids);
      }
      piece = NULL;
      g_array_append_vals(out, ids->data, ids->len);
      g_mutex_unlock(&mt->cache_lock);
    } else {
      g_free(piece);
      g_array_append_vals(out, ids->data, ids->len);
    }
    g_match_info_next(mi, NULL);
  }
  g_match_info_free(mi);
  g_free(valid);
  *n_ids = out->len;
  return (int *)g_array_free(out, FALSE);
}

char *vs_tokenizer_decode(const vs_tokenizer *t, const int *ids, size_t n_ids) {
  GString *bytes = g_string_new(NULL);
  for (size_t i = 0; i < n_ids; i++) {
    if (ids[i] < 0 || ids[i] >= t->sp.eot) continue;
    for (const char *p = t->tokens[ids[i]]; *p; p = g_utf8_next_char(p)) {
      gunichar c = g_utf8_get_char(p);
      if (c < 512 && t->cp_byte[c] >= 0)
        g_string_append_c(bytes, (char)t->cp_byte[c]);
      else
        g_string_append_len(bytes, p, g_utf8_next_char(p) - p);
    }
  }
  char *text = g_utf8_make_valid(bytes->str, (gssize)bytes->len);
  g_string_free(bytes, TRUE);
  return text;
}

const char *vs_tokenizer_token(const vs_tokenizer *t, int id) {
  return id >= 0 && id < t->sp.n_vocab ? t->tokens[id] : NULL;
}

int vs_tokenizer_language_id(const vs_tokenizer *t, const char *code) {
  char *s = g_strdup_printf("<|%s|>", code);
  int id = lookup(t, s);
  g_free(s);
  if (id < t->sp.lang_first || id >= t->sp.lang_first + t->sp.n_langs) return -1;
  return id;
}
