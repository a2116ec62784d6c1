#!/usr/bin/env python3
"""Reference log-mel features for tests/test_mel.c, computed independently of voxshard.

Float64 numpy throughout: the Slaney filterbank built from its definition (librosa's
formulas), numpy.fft.rfft on reflect-padded Hann frames. The speech case is also checked
against faster-whisper's own FeatureExtractor, the implementation voxshard must match, and
faster-whisper's features are written as cases of their own (tag fw-speech.*).

Writes into OUTDIR: cases.txt with lines "tag name n_samples n_mels pad n_frames", and for each
case NAME.in.f32 (the 16 kHz input) and NAME.ref.f32 ([n_mels][n_frames] float32).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

SR, N_FFT, HOP = 16000, 400, 160


def slaney_mel_filters(n_mels):
    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log, lin)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        lin = m * (200.0 / 3)
        log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log, lin)

    fft_freqs = np.arange(N_FFT // 2 + 1) * SR / N_FFT
    mel_pts = mel_to_hz(np.linspace(0.0, hz_to_mel(SR / 2), n_mels + 2))
    w = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        lo, c, hi = mel_pts[i], mel_pts[i + 1], mel_pts[i + 2]
        up = (fft_freqs - lo) / (c - lo)
        down = (hi - fft_freqs) / (hi - c)
        w[i] = np.maximum(0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return w


def log_mel(x, n_mels, pad):
    x = np.concatenate([x.astype(np.float64), np.zeros(pad)])
    xp = np.pad(x, (N_FFT // 2, N_FFT // 2), mode="reflect")
    n_frames = 1 + (len(xp) - N_FFT) // HOP
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    frames = np.stack([xp[t * HOP : t * HOP + N_FFT] * win for t in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = slaney_mel_filters(n_mels) @ power[:-1].T
    logm = np.log10(np.maximum(mel, 1e-10))
    logm = np.maximum(logm, logm.max() - 8.0)
    return (logm + 4.0) / 4.0


def espeak_16k(text, voice):
    with tempfile.TemporaryDirectory() as td:
        wav, raw = os.path.join(td, "a.wav"), os.path.join(td, "a.f32")
        subprocess.run(["espeak-ng", "-v", voice, "-w", wav, text], check=True)
        subprocess.run(["sox", wav, "-r", "16000", "-c", "1", "-t", "f32", raw], check=True)
        return np.fromfile(raw, dtype=np.float32)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    t = np.arange(SR * 3) / SR
    cases = {
        "speech": espeak_16k("The quick brown fox jumps over the lazy dog near the river bank.", "en-us"),
        "speech_odd": espeak_16k("Numbers like twenty five and ninety nine.", "en-gb")[:-37],
        "chirp": (0.5 * np.sin(2 * np.pi * (100 + 2500 * t) * t)).astype(np.float32),
        "silence_tone": np.concatenate([np.zeros(SR // 2), 0.3 * np.sin(2 * np.pi * 440 * t[:SR])]).astype(np.float32),
        "noise_short": (0.1 * rng.standard_normal(333)).astype(np.float32),
        "tiny": (0.2 * rng.standard_normal(37)).astype(np.float32),
        "zeros": np.zeros(4001, dtype=np.float32),
    }
    with open(os.path.join(out, "cases.txt"), "w") as listing:
        for name, x in cases.items():
            x.astype(np.float32).tofile(os.path.join(out, f"{name}.in.f32"))
            for n_mels in (80, 128):
                for pad in ((160, 480000) if name in ("speech", "noise_short") else (160,)):
                    ref = log_mel(x, n_mels, pad).astype(np.float32)
                    tag = f"{name}.{n_mels}.{pad}"
                    ref.tofile(os.path.join(out, f"{tag}.ref.f32"))
                    listing.write(f"{tag} {name} {len(x)} {n_mels} {pad} {ref.shape[1]}\n")
    # faster-whisper's extractor must agree with this reference (so the reference is the
    # behaviour voxshard must reproduce, not just a formula), and its own output is one more
    # case that test_mel compares voxshard with directly.
    try:
        from faster_whisper.feature_extractor import FeatureExtractor
    except ImportError:
        sys.exit("faster-whisper is not installed in the test venv (scripts/setup-deps.sh)")
    with open(os.path.join(out, "cases.txt"), "a") as listing:
        for n_mels in (80, 128):
            fw = FeatureExtractor(feature_size=n_mels)(cases["speech"], padding=160)
            mine = log_mel(cases["speech"], n_mels, 160)
            if fw.shape != mine.shape:
                sys.exit(f"faster-whisper gives {fw.shape} features, the reference {mine.shape}")
            diff = float(np.max(np.abs(fw - mine)))
            print(f"faster-whisper vs reference ({n_mels} mels): max abs diff {diff:.2e}")
            if diff > 1e-4:
                sys.exit(f"reference disagrees with faster-whisper by {diff}")
            tag = f"fw-speech.{n_mels}.160"
            fw.astype(np.float32).tofile(os.path.join(out, f"{tag}.ref.f32"))
            listing.write(f"{tag} speech {len(cases['speech'])} {n_mels} 160 {fw.shape[1]}\n")

if __name__ == "__main__":
    main()
