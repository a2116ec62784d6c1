/* Audio decoding: any file libsndfile reads (WAV, FLAC, Ogg/Vorbis, Ogg/Opus, MP3, ...), from a
 * path or from bytes in memory (a tar member read in place), downmixed to mono and resampled
 * with libsoxr to 16 kHz float32 in [-1, 1].
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
} vs_audio;

/* Header-only probe: duration in seconds without decoding the samples (for sharding plans).
 * `name` is what errors call the source (a path, or "shard.tar:member.flac"). */
bool vs_audio_probe_file(const char *path, double *duration_s, GError **err);
bool vs_audio_probe_memory(const void *data, size_t size, const char *name, double *duration_s,
                           GError **err);

/* Decodes [start_s, end_s) of the source (end_s <= 0: to the end). An empty, zero-sample,
 * truncated or corrupt source is a VS_ERROR_AUDIO / VS_ERROR_FORMAT error naming `name`. */
bool vs_audio_decode_file(const char *path, double start_s, double end_s, vs_audio *out,
                          GError **err);
bool vs_audio_decode_memory(const void *data, size_t size, const char *name, double start_s,
                            double end_s, vs_audio *out, GError **err);

void vs_audio_clear(vs_audio *a);

#endif
