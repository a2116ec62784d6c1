/* Transcript outputs: per-file JSONL, SRT and WebVTT, per-corpus CTM and STM for NIST sclite.
 * Every file is written whole through vs_fs_write_atomic, so a reader never sees half of one.
 * Formats and the JSONL schema: docs/outputs.md.
 */
#ifndef VS_OUTPUTS_H
#define VS_OUTPUTS_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  double start_s, end_s;
  char *word;  /* UTF-8, owned */
  double prob; /* NAN when unknown */
} vs_out_word;

typedef struct {
  double start_s, end_s; /* from the start of the file */
  char *text;            /* UTF-8, owned (host) */
  double avg_logprob, no_speech_prob, compression_ratio, temperature;
  int32_t *tokens; /* optional: token ids, owned, NULL when not kept */
  size_t n_tokens;
  vs_out_word *words; /* optional word timings, owned, NULL when not known */
  size_t n_words;
} vs_out_segment;

typedef struct {
  char *id;       /* file id: unique in the corpus, used as <file> in CTM/STM */
  char *source;   /* path or URL of the audio, may be NULL */
  char *language; /* ISO code, may be NULL */
  char *speaker;  /* may be NULL: STM then uses the file id */
  double duration_s;
  vs_out_segment *segs; /* owned */
  size_t n_segs;
} vs_out_transcript;

/* Frees what the structs own (not the struct itself). */
void vs_out_segment_clear(vs_out_segment *seg);
void vs_out_transcript_clear(vs_out_transcript *t);
void vs_out_transcript_free(vs_out_transcript *t);

/* "HH:MM:SS,mmm" (sep ',', SRT) or "HH:MM:SS.mmm" (sep '.', WebVTT), rounded to the nearest
 * millisecond (ties to even, as whisper's Python round()); hours grow past two digits when needed;
 * negative and non-finite times print as 0. */
void vs_out_format_timestamp(double seconds, char sep, char buf[32]);

/* Text renderings (g_free). Segments with no text left after sanitising are skipped, and SRT
 * numbering stays consecutive. */
char *vs_out_srt_string(const vs_out_transcript *t);
char *vs_out_vtt_string(const vs_out_transcript *t);
char *vs_out_jsonl_string(const vs_out_transcript *t);
/* CTM and STM lines of several files, in the order given, segments sorted by start time. */
char *vs_out_ctm_string(const vs_out_transcript *const *files, size_t n_files);
char *vs_out_stm_string(const vs_out_transcript *const *files, size_t n_files);

bool vs_out_write_srt(const char *path, const vs_out_transcript *t, GError **err);
bool vs_out_write_vtt(const char *path, const vs_out_transcript *t, GError **err);
bool vs_out_write_jsonl(const char *path, const vs_out_transcript *t, GError **err);
bool vs_out_write_ctm(const char *path, const vs_out_transcript *const *files, size_t n_files,
                      GError **err);
bool vs_out_write_stm(const char *path, const vs_out_transcript *const *files, size_t n_files,
                      GError **err);

/* Writes <dir>/<id>.jsonl, .srt and .vtt (dir is created). `formats` is a comma-separated
 * subset of "jsonl,srt,vtt"; NULL means all three. */
bool vs_out_write_file_outputs(const char *dir, const vs_out_transcript *t, const char *formats,
                               GError **err);

/* Reads a per-file JSONL written by vs_out_write_jsonl. A missing "end" record (a file cut
 * short) or a malformed line is an error naming the file and line. */
vs_out_transcript *vs_out_read_jsonl(const char *path, GError **err);

/* Parses SRT or WebVTT text back into segments (times and text only): for tools and tests.
 * `what` names the source in errors. Returns a transcript with id = NULL. */
vs_out_transcript *vs_out_parse_subtitles(const char *text, const char *what, GError **err);

#endif
