/* Whisper's byte-level BPE tokenizer (GPT-2 style) with the special and timestamp tokens of the
 * three vocabularies (.en 51864, multilingual 51865, large-v3 51866). */
#ifndef VS_TOKENIZER_H
#define VS_TOKENIZER_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
  int n_vocab;
  bool multilingual;
  int eot, sot, translate, transcribe, sot_lm, sot_prev, no_speech, no_timestamps;
  int timestamp_begin; /* <|0.00|>; timestamp k (k * 0.02 s) is timestamp_begin + k, k <= 1500 */
  int lang_first;      /* first language token; n_langs of them */
  int n_langs;
} vs_special_tokens;

typedef struct vs_tokenizer vs_tokenizer;

vs_tokenizer *vs_tokenizer_load_json(const char *tokenizer_json_path, GError **err);
/* Same from tokenizer.json's bytes in memory (the model file stores them); `origin` names the
 * bytes in errors ("model.h5:/tokenizer/tokenizer.json"). The vocabulary size counts the 1501
 * timestamp tokens even when tokenizer.json does not list them. */
vs_tokenizer *vs_tokenizer_new_from_json(const char *data, size_t len, const char *origin,
                                         GError **err);
void vs_tokenizer_free(vs_tokenizer *t);

const vs_special_tokens *vs_tokenizer_specials(const vs_tokenizer *t);

/* Text -> ids (no special tokens added). Returns a g_malloc'd array. */
int *vs_tokenizer_encode(const vs_tokenizer *t, const char *text, size_t *n_ids);
/* Ids -> UTF-8 text; ids >= eot (special and timestamp tokens) are skipped. g_malloc'd. */
char *vs_tokenizer_decode(const vs_tokenizer *t, const int *ids, size_t n_ids);
/* The token's own string ("<|en|>", "Ġthe", ...), or NULL when out of range. */
const char *vs_tokenizer_token(const vs_tokenizer *t, int id);
/* Id of a token string, or -1. */
int vs_tokenizer_token_id(const vs_tokenizer *t, const char *token);
/* Id of a language code ("en", "de", ...) or -1. */
int vs_tokenizer_language_id(const vs_tokenizer *t, const char *code);

#endif
