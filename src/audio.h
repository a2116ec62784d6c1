/* Audio decoding: any file libsndfile reads (WAV, FLAC, Ogg/Vorbis, Ogg/Opus, MP3, ...), from a
 * path or from bytes in memory (a tar member read in place), downmixed to mono and resampled
 * with libsoxr to 16 kHz float32 in [-1, 1], rounded to the 16-bit grid as faster-whisper's
 * decode_audio does (see round_to_s16_grid in audio.c).
 */
#ifndef VS_AUDIO_H
#define VS_AUDIO_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

#define VS_AUDIO_RATE 16000

typedef struct {
  float *samples; /* host memory, g_malloc'd, mono, VS_AUDIO_RATE Hz */
  size_t n_samples;
  int source_rate; /* the source's sample rate and channel count, for logs and stats */
  int source_channels;
  double decode_s;   /* wall seconds spent decoding (+ downmix) and resampling this call: */
  double resample_s; /* front-end statistics and bench/frontend_bench.c */
} vs_audio;

/* Header-only probe: duration in seconds without decoding the samples (for sharding plans).
 * `name` is what errors call the source (a path, or "shard.tar:member.flac"). */
bool vs_audio_probe_file(const char *path, double *duration_s, GError **err);
bool vs_audio_probe_memory(const void *data, size_t size, const char *name, double *duration_s,
                           GError **err);

/* Decodes [start_s, end_s) of the source (end_s <= 0: to the end). An empty, zero-sample,
 * truncated or corrupt source is a VS_ERROR_AUDIO / VS_ERROR_FORMAT error naming `name`; a
 * missing or unreadable path is VS_ERROR_IO. Truncation is detected when the header (WAV/AIFF
 * data size, FLAC STREAMINFO, Ogg final page, MP3 Xing/Info frame count) promises more than the
 * bytes hold, or when an MP3's last frame is cut short. Resampling is libsoxr's HQ preset; the
 * 16 kHz length is round(n_source * 16000 / rate) (libsoxr flushes its filter delay).
 * Thread-safe: no shared state besides a lock around libsndfile's global open-error slot. */
bool vs_audio_decode_file(const char *path, double start_s, double end_s, vs_audio *out,
                          GError **err);
bool vs_audio_decode_memory(const void *data, size_t size, const char *name, double start_s,
                            double end_s, vs_audio *out, GError **err);

void vs_audio_clear(vs_audio *a);

#endif
