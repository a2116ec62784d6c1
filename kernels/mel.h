/* Whisper's log-mel front end (../shared/docs/whisper-reference.md, "Audio front end"):
 * 16 kHz, n_fft 400, hop 160, periodic Hann, centred STFT with reflect padding, power
 * spectrum, Slaney mel filterbank (80 or 128 bins, fmax 8000), log10(max(x, 1e-10)), clamp to
 * (global max - 8), (x + 4) / 4.
 *
 * `pad_samples` zeros are appended before the STFT, as the reference implementations do:
 * faster-whisper appends 160 (VS_MEL_PAD_FASTER_WHISPER), openai appends 30 s (480000). The
 * clamp uses the maximum over all frames computed here, so the choice changes values slightly.
 */
#ifndef VS_MEL_H
#define VS_MEL_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

#define VS_MEL_N_FFT 400
#define VS_MEL_HOP 160
#define VS_MEL_PAD_FASTER_WHISPER 160

typedef struct vs_mel vs_mel; /* filterbank, window and FFT plan: read-only, share across threads */

vs_mel *vs_mel_init(int n_mels, GError **err);
void vs_mel_free(vs_mel *mel);
int vs_mel_n_mels(const vs_mel *mel);

/* Number of frames vs_mel_compute produces for n_samples input samples and pad_samples of padding. */
size_t vs_mel_n_frames(size_t n_samples, size_t pad_samples);

/* out: host memory, [n_mels][n_frames] row-major (frame index fastest, as Whisper lays it out),
 * caller-allocated with vs_mel_n_frames(...) * n_mels floats. Thread-safe on a shared vs_mel. */
bool vs_mel_compute(const vs_mel *mel, const float *samples, size_t n_samples, size_t pad_samples,
                    float *out, GError **err);

#endif
