/* Scoring: word and character error rates with the alignment NIST sclite uses (weights:
 * correct 0, substitution 4, insertion 3, deletion 3), per file, per speaker and for the corpus,
 * and the `voxshard eval` command. Inputs and report: docs/eval.md.
 */
#ifndef VS_EVAL_H
#define VS_EVAL_H

#include "normalizer.h"

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
  long n_ref, n_hyp; /* tokens (words or characters) */
  long cor, sub, del, ins;
} vs_eval_counts;

/* Minimum-cost alignment of two token sequences (compared bytewise); adds its counts to *acc.
 * Ties between equally cheap paths are broken as sclite does, so S/D/I match its counts.
 * Memory is O(n_hyp). */
void vs_eval_align(const char *const *ref, size_t n_ref, const char *const *hyp, size_t n_hyp,
                   vs_eval_counts *acc);
/* Word level: whitespace-separated words. Character level: the Unicode code points of the
 * words (whitespace is not a character here, as with sclite -c). */
void vs_eval_align_words(const char *ref, const char *hyp, vs_eval_counts *acc);
void vs_eval_align_chars(const char *ref, const char *hyp, vs_eval_counts *acc);

/* (S + D + I) / N_ref; 0 when N_ref = 0 and nothing was inserted, else +inf. */
double vs_eval_error_rate(const vs_eval_counts *c);
void vs_eval_counts_add(vs_eval_counts *acc, const vs_eval_counts *c);

typedef struct {
  char *id;
  char *speaker;
  char *text; /* UTF-8 */
} vs_eval_utt;

typedef struct {
  char *path;
  const char *format; /* "transcripts", "trn", "stm", "ctm", "manifest", "transcript" */
  GPtrArray *utts;    /* vs_eval_utt*, in input order */
  GHashTable *by_id;  /* id -> vs_eval_utt* (borrowed) */
} vs_eval_set;

/* Loads REF or HYP, telling the format from the path: a folder of per-file transcript JSONL
 * (src/outputs.h), *.stm, *.ctm, *.trn, or *.jsonl (a transcript if its first record is a
 * voxshard "file" record, else a manifest of {"id","text"[,"speaker"]} lines). Duplicate ids
 * and malformed lines are errors naming the file and line. */
vs_eval_set *vs_eval_set_load(const char *path, GError **err);
void vs_eval_set_free(vs_eval_set *set);

typedef struct {
  char *id, *speaker;
  vs_eval_counts words, chars;
  bool missing_hyp; /* no hypothesis for this reference: scored as all deletions */
} vs_eval_file_result;

typedef struct {
  char *normalizer;
  vs_eval_file_result *files; /* one per reference utterance, in reference order */
  size_t n_files;
  GPtrArray *speakers;                   /* char* speaker names, sorted */
  vs_eval_counts *spk_words, *spk_chars; /* parallel to speakers */
  vs_eval_counts words, chars;
  GPtrArray *extra_hyp; /* char* ids in HYP that REF lacks (not scored) */
  long n_missing_hyp;
} vs_eval_report;

vs_eval_report *vs_eval_score(const vs_eval_set *ref, const vs_eval_set *hyp, const vs_norm *norm);
void vs_eval_report_free(vs_eval_report *r);
/* Fixed-width tables (per file when per_file, per speaker, totals): ids and counts only. */
void vs_eval_report_print(const vs_eval_report *r, FILE *f, bool per_file);
char *vs_eval_report_json(const vs_eval_report *r, const char *ref_path, const char *hyp_path);

/* voxshard eval --ref REF --hyp HYP [--normalizer=english|basic|none] [--spelling-map=PATH]
 *               [--out report.json] [--[no-]per-file]
 * Returns the process exit code: 0 ok, 1 on bad input, 2 on bad usage. */
int vs_cmd_eval(int argc, char **argv);

#endif
