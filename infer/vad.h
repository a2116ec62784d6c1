/* Silero VAD v6 (16 kHz) in plain C, plus faster-whisper's speech-segment and chunking rules.
 *
 * The product never links an ONNX runtime: vs_vad_convert_onnx() reads the ONNX protobuf once
 * (offline, e.g. when a model directory is prepared) and writes the weights to HDF5; the
 * transcriber loads that file with vs_vad_load(). The network and the layout of the HDF5 file
 * are described in docs/vad.md.
 *
 * Sample positions are always 16 kHz sample indices into the caller's audio.
 */
#ifndef VS_VAD_H
#define VS_VAD_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

#define VS_VAD_SAMPLE_RATE 16000
#define VS_VAD_WINDOW 512 /* samples the network consumes per step */
#define VS_VAD_CONTEXT 64 /* samples of the previous window prepended to each step */

typedef struct vs_vad_model vs_vad_model; /* immutable after load: share between threads */
typedef struct vs_vad_state vs_vad_state; /* one per audio stream: LSTM state and context */

/* Reads a Silero VAD v6 ONNX file (the 16 kHz export shipped with faster-whisper) and writes its
 * weights to `out_h5` (temp file, fsync, rename). Fails with VS_ERROR_IO (cannot read/write),
 * VS_ERROR_FORMAT (not a protobuf/ONNX file, truncated) or VS_ERROR_UNSUPPORTED (an ONNX graph
 * that is not this network); every message names the file. */
bool vs_vad_convert_onnx(const char *onnx_path, const char *out_h5, GError **err);

vs_vad_model *vs_vad_load(const char *h5_path, GError **err);
void vs_vad_free(vs_vad_model *model);

vs_vad_state *vs_vad_state_init(const vs_vad_model *model);
void vs_vad_state_free(vs_vad_state *state);
/* Back to the start of a stream: zero LSTM state and zero context. */
void vs_vad_state_reset(vs_vad_state *state);

/* Streaming: one 512-sample window (16 kHz, float in [-1, 1]); the state keeps the LSTM and the
 * last 64 samples as the next window's context. Returns the speech probability in [0, 1]. */
float vs_vad_process_window(const vs_vad_model *model, vs_vad_state *state,
                            const float *samples512);

/* Per-window probabilities exactly as faster-whisper computes them for get_speech_timestamps:
 * the audio is zero-padded by 512 - n % 512 samples (a whole extra window when n is a multiple
 * of 512), and faster-whisper's context construction zeroes the last 64 samples of the last
 * window, which is reproduced. *n_probs = (n + 512 - n % 512) / 512; *probs is g_malloc'd. */
bool vs_vad_probabilities(const vs_vad_model *model, const float *audio16k, size_t n, float **probs,
                          size_t *n_probs, GError **err);

/* faster-whisper's VadOptions. neg_threshold < 0 means "threshold - 0.15, at least 0.01".
 * Probabilities are float32 and, as with NumPy 2 scalars, compared with the thresholds rounded
 * to float32. */
typedef struct {
  double threshold;
  double neg_threshold;
  int min_speech_duration_ms;
  double max_speech_duration_s; /* INFINITY: no limit */
  int min_silence_duration_ms;
  int speech_pad_ms;
} vs_vad_options;

/* VadOptions() defaults: 0.5, auto, 0 ms, inf, 2000 ms, 400 ms. */
vs_vad_options vs_vad_default_options(void);
/* What BatchedInferencePipeline uses when vad_parameters is None: the defaults with
 * max_speech_duration_s = chunk_length_s and min_silence_duration_ms = 160. */
vs_vad_options vs_vad_batched_options(double chunk_length_s);

typedef struct {
  size_t start, end; /* [start, end) in samples of the original audio */
} vs_vad_segment;

/* get_speech_timestamps: the same segments, sample for sample, for the same probabilities.
 * *segs is g_malloc'd (NULL when *n_segs == 0). */
bool vs_vad_speech_segments(const vs_vad_model *model, const float *audio16k, size_t n,
                            const vs_vad_options *opt, vs_vad_segment **segs, size_t *n_segs,
                            GError **err);
/* The decision part alone, on probabilities from vs_vad_probabilities (n = audio length). */
bool vs_vad_segments_from_probs(const float *probs, size_t n_probs, size_t n,
                                const vs_vad_options *opt, vs_vad_segment **segs, size_t *n_segs,
                                GError **err);

/* One piece of speech inside a chunk: audio[src_start, src_end) is copied to
 * chunk[chunk_offset, chunk_offset + src_end - src_start). */
typedef struct {
  size_t src_start, src_end;
  size_t chunk_offset;
} vs_vad_piece;

typedef struct {
  size_t speech_offset;       /* where the chunk starts on the concatenated-speech timeline, samples
                                 (faster-whisper's chunk "offset" * 16000) */
  size_t n_samples;           /* chunk length = sum of its pieces ("duration" * 16000) */
  const vs_vad_piece *pieces; /* points into the owning vs_vad_chunk_list */
  size_t n_pieces;
} vs_vad_chunk;

typedef struct {
  vs_vad_chunk *chunks;
  size_t n_chunks;
  vs_vad_piece *pieces; /* all pieces, in order (one per input segment) */
  size_t n_pieces;
} vs_vad_chunk_list;

/* faster-whisper's collect_chunks: speech segments are concatenated in order and a new chunk
 * starts whenever adding the next segment would exceed max_duration_s (INFINITY: one chunk).
 * Differences, on purpose: every chunk lists all its pieces (faster-whisper's metadata drops
 * the first segment of each chunk after the first), no speech gives zero chunks (not one empty
 * one), and no empty chunk is emitted before a single segment longer than max_duration_s.
 * Segments must be sorted, non-overlapping and non-empty. */
vs_vad_chunk_list *vs_vad_chunks(const vs_vad_segment *segs, size_t n_segs, double max_duration_s,
                                 GError **err);
void vs_vad_chunk_list_free(vs_vad_chunk_list *list);
/* Maps a sample position inside a chunk back to the original audio. A position on the border of
 * two pieces is the end of the first when `is_end` (a segment end stays in its piece) and the
 * start of the second otherwise. */
size_t vs_vad_chunk_to_source(const vs_vad_chunk *chunk, size_t chunk_sample, bool is_end);

#endif
