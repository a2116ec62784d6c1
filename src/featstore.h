/* Feature shards: the HDF5 files `prepare` writes and a trainer reads sequentially.
 *
 * One shard file (OUT/shards/shard-runNNNN-rRRRRR-SSSSSS.h5):
 *   /features    float32 [total_frames, n_mels], chunked [1000, n_mels] (10 s of frames). An
 *                utterance is the rows frame_offset .. frame_offset + n_frames - 1; each row is one
 *                hop (10 ms) of Whisper's normalised log-mel.
 *   /utterances  compound [n_utterances] {id, source, frame_offset (u64), n_frames (u64),
 *                n_samples (u64), duration_s (f64), text, speaker, language} (strings are
 *                variable-length UTF-8; "" when the corpus has none)
 *   root attributes: format "voxshard-features", format_version, sample_rate 16000, n_fft 400,
 *   hop_length 160, n_mels, window, mel_scale, normalisation, padding_samples, voxshard_version,
 *   n_utterances, total_frames, total_seconds, layout, units.
 *
 * The corpus index (OUT/index.h5), written once at the end by rank 0:
 *   /utterances  {id, shard (path relative to OUT), row, n_frames, duration_s}, sorted by id
 *   /shards      {file, rank, run, n_utterances, seconds}
 *   /failed      {id, source, code, reason}
 *   root attributes: format "voxshard-index", counts and totals, the feature parameters.
 *
 * Every file is written under a temp name and published (src/fsutil.h). HDF5's own error printing
 * is switched off; a failed HDF5 call becomes a VS_ERROR_HDF5 GError carrying the file name and
 * HDF5's error stack (file:line, function and message of each frame). HDF5 is called from one
 * thread only (the HDF5 build is not thread-safe).
 */
#ifndef VS_FEATSTORE_H
#define VS_FEATSTORE_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VS_FEATSTORE_FORMAT_VERSION 1
#define VS_FEATSTORE_NORMALISATION "whisper log-mel: log10, clamp max-8, (x+4)/4"

/* Switches off HDF5's automatic error printing (we report through GError). Idempotent; every
 * function here calls it, callers touching HDF5 directly may call it too. */
void vs_featstore_hdf5_init(void);

/* Fills *err with `what` failing on `path` plus the current HDF5 error stack, and clears it. */
void vs_featstore_hdf5_error(GError **err, const char *path, const char *what);

/* ---- writing a shard ---- */

typedef struct {
  const char *id, *source;
  const char *text, *speaker, *language; /* NULL: unknown, stored as "" */
  size_t n_samples;                      /* 16 kHz samples the features came from */
  double duration_s;
} vs_featstore_meta;

typedef struct vs_featstore_writer vs_featstore_writer;

/* Starts a shard that will appear at final_path on publish (until then a temp file beside it). */
vs_featstore_writer *vs_featstore_create(const char *final_path, int n_mels, size_t pad_samples,
                                         GError **err);
/* mel: host memory, [n_mels][n_frames] as vs_mel_compute lays it out (stored transposed). */
bool vs_featstore_append(vs_featstore_writer *w, const vs_featstore_meta *meta, const float *mel,
                         size_t n_frames, GError **err);
size_t vs_featstore_n_utts(const vs_featstore_writer *w);
double vs_featstore_seconds(const vs_featstore_writer *w);
const char *vs_featstore_final_path(const vs_featstore_writer *w);
/* Writes the table and attributes, closes, fsyncs and renames into place; frees w either way. */
bool vs_featstore_publish(vs_featstore_writer *w, GError **err);
/* Drops an unpublished shard (temp file removed); NULL is fine. */
void vs_featstore_abort(vs_featstore_writer *w);

/* ---- reading a shard ---- */

typedef struct {
  char *id, *source, *text, *speaker, *language;
  uint64_t frame_offset, n_frames, n_samples;
  double duration_s;
} vs_featstore_row;

typedef struct vs_featstore_reader vs_featstore_reader;

/* Opens a shard and checks its format, shape and table against each other. */
vs_featstore_reader *vs_featstore_open(const char *path, GError **err);
void vs_featstore_close(vs_featstore_reader *r);
int vs_featstore_reader_n_mels(const vs_featstore_reader *r);
size_t vs_featstore_reader_pad_samples(const vs_featstore_reader *r);
size_t vs_featstore_reader_n_utts(const vs_featstore_reader *r);
uint64_t vs_featstore_reader_total_frames(const vs_featstore_reader *r);
const vs_featstore_row *vs_featstore_reader_row(const vs_featstore_reader *r, size_t i);
/* out: host memory, [n_frames][n_mels] of utterance i, as stored. */
bool vs_featstore_read_features(vs_featstore_reader *r, size_t i, float *out, GError **err);

/* ---- the corpus index ---- */

typedef struct {
  const char *id, *shard;
  uint64_t row, n_frames;
  double duration_s;
} vs_featstore_index_utt;

typedef struct {
  const char *file;
  int rank, run;
  uint64_t n_utterances;
  double seconds;
} vs_featstore_index_shard;

typedef struct {
  const char *id, *source, *code, *reason;
} vs_featstore_index_failure;

bool vs_featstore_write_index(const char *final_path, int n_mels, size_t pad_samples,
                              const vs_featstore_index_utt *utts, size_t n_utts,
                              const vs_featstore_index_shard *shards, size_t n_shards,
                              const vs_featstore_index_failure *failed, size_t n_failed,
                              GError **err);

#endif
