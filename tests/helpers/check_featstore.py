"""Reads the shard and index written by tests/test_featstore.c with h5py (an independent HDF5
reader) and checks layout, attributes and values against the pattern the test wrote:
feature[utterance u, mel m, frame t] = u * 1000 + m + t * 0.001 (float32).

usage: check_featstore.py SHARD.h5 INDEX.h5   (exit 0 when everything matches)
"""
import sys

import h5py
import numpy as np


def main():
    shard, index = sys.argv[1], sys.argv[2]
    frames = [7, 1203, 0]
    with h5py.File(shard, "r") as f:
        a = f.attrs
        assert a["format"] == "voxshard-features", a["format"]
        assert int(a["sample_rate"]) == 16000 and int(a["n_fft"]) == 400 and int(a["hop_length"]) == 160
        assert int(a["n_mels"]) == 80 and int(a["padding_samples"]) == 160
        assert a["normalisation"] == "whisper log-mel: log10, clamp max-8, (x+4)/4"
        feats = f["features"]
        assert feats.dtype == np.float32 and feats.shape == (1210, 80), (feats.dtype, feats.shape)
        assert feats.chunks is not None
        utts = f["utterances"][:]
        ids = [x.decode() if isinstance(x, bytes) else x for x in utts["id"]]
        assert ids == ["utt-0", "utt-1", "utt-2"], ids
        assert list(utts["n_frames"]) == frames
        text0 = utts["text"][0]
        text0 = text0.decode() if isinstance(text0, bytes) else text0
        assert text0 == "hello wörld", text0
        for u, n in enumerate(frames):
            off = int(utts["frame_offset"][u])
            got = feats[off:off + n, :]
            t = np.arange(n, dtype=np.float32)[:, None]
            m = np.arange(80, dtype=np.float32)[None, :]
            want = (np.float32(u * 1000) + m) + t * np.float32(0.001)
            assert np.array_equal(got, want.astype(np.float32)), f"utterance {u} differs"
    with h5py.File(index, "r") as f:
        assert f.attrs["format"] == "voxshard-index"
        u = f["utterances"][:]
        assert [x.decode() if isinstance(x, bytes) else x for x in u["id"]] == ["utt-0", "utt-1"]
        assert list(u["row"]) == [0, 1]
        fl = f["failed"][:]
        reason = fl["reason"][0]
        reason = reason.decode() if isinstance(reason, bytes) else reason
        assert reason == "bad.wav: not a WAV file", reason
    print("check_featstore.py: shard and index match")


if __name__ == "__main__":
    main()
