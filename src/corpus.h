/* Corpus input: directory trees of audio files, tar shards (plain or compressed, WebDataset
 * style: key.flac + key.txt / key.json) read in place with libarchive, and JSONL manifests, in
 * any mix, become one list of utterance records. Nothing downstream knows where a record came
 * from beyond `source`.
 *
 * Ids are stable: the same corpus gives the same ids on every rerun and on every rank (derived
 * from the source path/member and the time range, never from scan order or timestamps). The
 * scheme (input name, path or member, segment in ms, a short hash only on collisions) is in
 * docs/sharding.md.
 *
 * Directories: files named *.wav *.flac *.mp3 *.ogg *.opus *.oga (any case), walked in byte
 * order; hidden entries are skipped; symlinked folders are followed once (loops are safe).
 * Tar shards: a member's key is its name without the last extension; key.txt is the text,
 * key.json may give text, speaker, language, start, end, duration. Manifests (.jsonl): one
 * object per line, "audio" is a path relative to the manifest's folder, "shard.tar:member" or
 * {"archive": ..., "member": ...}; optional text, speaker, language, start, end, duration
 * (start + duration without end is the segment [start, start + duration)).
 */
#ifndef VS_CORPUS_H
#define VS_CORPUS_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum { VS_SRC_FILE = 0, VS_SRC_TAR_MEMBER = 1 } vs_source_kind;

typedef struct {
  char *id; /* stable, filesystem-safe, unique within the corpus */
  vs_source_kind kind;
  char *path;        /* audio file, or the tar archive that holds the member */
  char *member;      /* tar member name exactly as stored ("./k1.wav"); NULL for files */
  char *source;      /* human-readable: path, or "archive.tar:member" */
  double start_s;    /* segment of the source; 0 */
  double end_s;      /* <= 0: to the end */
  double duration_s; /* of the segment: from the manifest/sidecar or vs_corpus_probe_durations;
                        < 0 unknown */
  char *text;        /* reference transcript or NULL */
  char *speaker;     /* or NULL */
  char *language;    /* or NULL */
} vs_utt;

/* A problem found while reading the corpus: the job goes on without that item. */
typedef struct {
  char *source; /* file, "archive.tar:member", or "manifest.jsonl:LINE" */
  int code;     /* vs_error_code */
  char *reason;
} vs_corpus_problem;

typedef struct vs_corpus vs_corpus;

/* Lists every input (a directory, a .tar/.tar.gz/.tar.zst/... shard, or a .jsonl manifest).
 * Problems with single items are recorded, not fatal; an input that does not exist is fatal. */
vs_corpus *vs_corpus_scan(const char *const *inputs, size_t n_inputs, GError **err);
void vs_corpus_free(vs_corpus *c);

size_t vs_corpus_size(const vs_corpus *c);
vs_utt *vs_corpus_utt(const vs_corpus *c, size_t i); /* sorted by id */
/* Index of the utterance with this id (binary search), or (size_t)-1: journals record ids. */
size_t vs_corpus_find(const vs_corpus *c, const char *id);
size_t vs_corpus_n_problems(const vs_corpus *c);
const vs_corpus_problem *vs_corpus_problem_at(const vs_corpus *c, size_t i);

/* Fills duration_s for utterances i with i % stride == offset (ranks split this work, then
 * share the results); a source that cannot be probed becomes a problem (recorded on the calling
 * rank only) and duration_s = 0. Each archive is read once. */
bool vs_corpus_probe_durations(vs_corpus *c, size_t offset, size_t stride, GError **err);

/* Reads the audio of utterance i (whole file or tar member, then the [start, end) segment). */
bool vs_corpus_load_audio(const vs_corpus *c, size_t i, float **samples, size_t *n_samples,
                          GError **err);

/* Streams the utterances `which` (indices, any order) calling fn for each, reading every tar
 * archive once in member order rather than reopening it per member. fn returning false stops.
 * A per-utterance failure is passed to fn as err != NULL with samples == NULL. */
typedef bool (*vs_corpus_audio_fn)(size_t index, const float *samples, size_t n_samples,
                                   const GError *err, void *user);
bool vs_corpus_for_each_audio(const vs_corpus *c, const size_t *which, size_t n_which,
                              vs_corpus_audio_fn fn, void *user, GError **err);

#endif
