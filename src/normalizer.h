/* Text normalisers for scoring: a C port of the rules of Whisper's EnglishTextNormalizer and
 * BasicTextNormalizer (openai/whisper, whisper/normalizers/), so that WERs computed here can be
 * compared with the numbers published for Whisper. The rules are listed in docs/eval.md.
 *
 * The British->American spelling map (openai's english.json) is data we do not ship: it is
 * loaded at run time from a path. Without it every other English rule still applies.
 */
#ifndef VS_NORMALIZER_H
#define VS_NORMALIZER_H

#include <glib.h>
#include <stdbool.h>

typedef enum {
  VS_NORM_NONE = 0, /* text used as is (only split on whitespace by the scorer) */
  VS_NORM_BASIC,    /* BasicTextNormalizer(remove_diacritics=False, split_letters=False) */
  VS_NORM_ENGLISH,  /* EnglishTextNormalizer */
} vs_norm_kind;

typedef struct vs_norm vs_norm;

/* "english" | "basic" | "none"; returns -1 on anything else. */
int vs_norm_kind_from_name(const char *name);
const char *vs_norm_kind_name(vs_norm_kind kind);

/* The default spelling-map path: $VOXSHARD_CACHE/english.json, else
 * ~/.cache/voxshard/english.json. Free with g_free. */
char *vs_norm_default_spelling_map_path(void);

/* spelling_map: NULL = the default path, used when present and skipped (with a log warning) when
 * absent; "" = no map; any other path must exist and be a JSON object of string values.
 * Ignored for kinds other than VS_NORM_ENGLISH. */
vs_norm *vs_norm_new(vs_norm_kind kind, const char *spelling_map, GError **err);
void vs_norm_free(vs_norm *norm);

vs_norm_kind vs_norm_get_kind(const vs_norm *norm);
/* Number of entries of the loaded spelling map (0 when none). */
unsigned vs_norm_spelling_map_size(const vs_norm *norm);

/* Normalises UTF-8 `text` (invalid UTF-8 is repaired first). Like the Python original, the result
 * may keep a leading or trailing space; scorers split on whitespace. Free with g_free. */
char *vs_norm_apply(const vs_norm *norm, const char *text);

#endif
