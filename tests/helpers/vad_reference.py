#!/usr/bin/env python3
"""Reference values for tests/test_vad.c from faster-whisper's own VAD code and onnxruntime.

Usage: vad_reference.py JOB.json OUT.json

JOB: {"onnx": path, "audios": [{"name", "path" (raw little-endian float32, 16 kHz)}],
      "options": [{"threshold", "neg_threshold" (null: auto), "min_speech_duration_ms",
                   "max_speech_duration_s" (null: inf), "min_silence_duration_ms",
                   "speech_pad_ms", "chunk_max_s" (null: inf)}]}
OUT: per audio: n, probs (faster-whisper's per-window probabilities for get_speech_timestamps),
     and per option set: segments [[start, end]], and collect_chunks' result (offset and
     duration in samples, the segments listed in its metadata, and the CRC-32 of each chunk's
     float32 audio).

Python is a test helper only; the product never runs it.
"""
import json
import math
import sys
import zlib

import numpy as np
import faster_whisper.vad as fv


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    model = fv.SileroVADModel(job["onnx"])
    # get_speech_timestamps looks its model up through this module function: point it at the
    # ONNX file under test (by default the very file faster-whisper ships).
    fv.get_vad_model = lambda: model

    out = {"audios": []}
    for a in job["audios"]:
        audio = np.fromfile(a["path"], dtype="<f4").astype(np.float32)
        # exactly what get_speech_timestamps feeds the model
        padded = np.pad(audio, (0, 512 - audio.shape[0] % 512))
        probs = model(padded)
        res = {"name": a["name"], "n": int(audio.shape[0]),
               "probs": [float(p) for p in probs], "runs": []}
        for o in job["options"]:
            mx = o["max_speech_duration_s"]
            vo = fv.VadOptions(
                threshold=o["threshold"],
                neg_threshold=o["neg_threshold"],
                min_speech_duration_ms=o["min_speech_duration_ms"],
                max_speech_duration_s=math.inf if mx is None else mx,
                min_silence_duration_ms=o["min_silence_duration_ms"],
                speech_pad_ms=o["speech_pad_ms"],
            )
            segs = fv.get_speech_timestamps(audio, vo)
            cm = o["chunk_max_s"]
            chunks, meta = fv.collect_chunks(
                audio, [dict(s) for s in segs], max_duration=math.inf if cm is None else cm)
            res["runs"].append({
                "segments": [[int(s["start"]), int(s["end"])] for s in segs],
                "chunks": [{
                    "offset": int(round(m["offset"] * 16000)),
                    "duration": int(round(m["duration"] * 16000)),
                    "n_samples": int(c.shape[0]),
                    "crc32": zlib.crc32(np.ascontiguousarray(c, dtype="<f4").tobytes()),
                    "segments": [[int(s["start"]), int(s["end"])] for s in m["segments"]],
                } for c, m in zip(chunks, meta)],
            })
        out["audios"].append(res)
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
