#!/usr/bin/env python3
"""Runs faster-whisper, the peer, over a manifest and times it (benchmark helper only).

Writes hypotheses as JSONL ({"id", "text"}) so that `voxshard eval` scores both engines with
the same normaliser and aligner, and prints one JSON line with the timing.

Configurations: --compute-type float32|int8, --beam-size, and
  --batched N               BatchedInferencePipeline, batch N, as documented upstream: each file
                            is cut by its VAD into <= 30 s chunks and the chunks of THAT file are
                            batched (a clip shorter than 30 s is a batch of one);
  --batched N --cross-file  same pipeline, but N files of <= 30 s are decoded, concatenated and
                            given as `clip_timestamps` (one clip per file, VAD off), so the batch
                            really holds N files; longer files fall back to the per-file path.
                            This is the peer's best use of its batching on short clips.

Timing (`wall_s`): model load + per file (decode/resample of the audio, transcription, and the
lazy segment generator consumed to the end). Interpreter start-up and `import faster_whisper`
are excluded (`import_s` reports them); `load_s` is the model-load share of `wall_s`.
"""
import argparse
import json
import os
import sys
import time

SR = 16000


def read_manifest(path):
    base = os.path.dirname(os.path.abspath(path))
    items = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            it = json.loads(line)
            if "id" not in it or "audio" not in it:
                sys.exit(f"{path}:{n}: record without id or audio")
            audio = it["audio"]
            it["path"] = audio if os.path.isabs(audio) else os.path.join(base, audio)
            if not os.path.exists(it["path"]):
                sys.exit(f"{path}:{n}: audio file not found: {it['path']}")
            items.append(it)
    if not items:
        sys.exit(f"{path}: no records")
    return items


def join(segs):
    return " ".join(s.text.strip() for s in segs if s.text.strip())


def main():
    t_start = time.perf_counter()
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="CTranslate2 Whisper model folder")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--hyp", help="output JSONL of {id, text}")
    ap.add_argument("--durations-only", action="store_true",
                    help="only decode every file and print {files, audio_s} (the corpus length "
                         "both engines' real-time factors are computed from)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--compute-type", default="float32", choices=["float32", "int8",
                                                                    "int8_float32", "bfloat16",
                                                                    "int8_bfloat16"])
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--batched", type=int, default=0, help="batch size; 0 = sequential transcribe")
    ap.add_argument("--cross-file", action="store_true",
                    help="with --batched: batch N short files together (clip_timestamps)")
    ap.add_argument("--no-fallback", action="store_true",
                    help="temperature 0 only (default: faster-whisper's fallback schedule)")
    a = ap.parse_args()
    if a.cross_file and not a.batched:
        sys.exit("--cross-file needs --batched N")
    if not a.durations_only and not os.path.isfile(os.path.join(a.model or "", "model.bin")):
        sys.exit(f"{a.model}: no model.bin (expected a CTranslate2 model folder)")
    items = read_manifest(a.manifest)

    from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio
    import numpy as np

    if a.durations_only:
        audio_s = sum(len(decode_audio(it["path"], sampling_rate=SR)) / SR for it in items)
        print(json.dumps({"files": len(items), "audio_s": round(audio_s, 3)}))
        return 0
    if not a.hyp:
        sys.exit("--hyp is required")

    t_import = time.perf_counter()
    kw = {"beam_size": a.beam_size, "language": "en"}
    if a.no_fallback:
        kw["temperature"] = 0.0

    t0 = time.perf_counter()
    model = WhisperModel(a.model, device="cpu", compute_type=a.compute_type, cpu_threads=a.threads)
    pipe = BatchedInferencePipeline(model) if a.batched else None
    load_s = time.perf_counter() - t0

    audio_s = 0.0
    hyps = {}
    pending = []  # (id, audio) of short files waiting for a cross-file batch

    def flush():
        if not pending:
            return
        starts, t = [], 0.0
        for _, au in pending:
            starts.append(t)
            t += len(au) / SR
        cat = np.concatenate([au for _, au in pending])
        clips = [{"start": s, "end": s + len(au) / SR} for s, (_, au) in zip(starts, pending)]
        segs, _ = pipe.transcribe(cat, batch_size=a.batched, vad_filter=False,
                                  clip_timestamps=clips, **kw)
        texts = [[] for _ in pending]
        for s in segs:
            # A segment belongs to the last clip starting at or before it (its offset).
            k = max(i for i, st in enumerate(starts) if st <= s.start + 1e-3) if s.start >= 0 else 0
            if s.text.strip():
                texts[k].append(s.text.strip())
        for (fid, _), tx in zip(pending, texts):
            hyps[fid] = " ".join(tx)
        pending.clear()

    for it in items:
        audio = decode_audio(it["path"], sampling_rate=SR)
        audio_s += len(audio) / SR
        if a.cross_file and len(audio) / SR <= 30.0:
            pending.append((it["id"], audio))
            if len(pending) == a.batched:
                flush()
            continue
        if pipe:
            segs, _ = pipe.transcribe(audio, batch_size=a.batched, **kw)
        else:
            segs, _ = model.transcribe(audio, **kw)
        hyps[it["id"]] = join(segs)  # consumes the generator: decoding happens here
    flush()
    wall = time.perf_counter() - t0

    with open(a.hyp, "w", encoding="utf-8") as out:
        for it in items:
            out.write(json.dumps({"id": it["id"], "text": hyps.get(it["id"], "")}) + "\n")
    print(json.dumps({"engine": "faster-whisper", "compute_type": a.compute_type,
                      "batched": a.batched, "cross_file": a.cross_file,
                      "beam_size": a.beam_size, "threads": a.threads,
                      "temperature_fallback": not a.no_fallback, "files": len(items),
                      "audio_s": round(audio_s, 3), "wall_s": round(wall, 3),
                      "load_s": round(load_s, 3), "import_s": round(t_import - t_start, 3),
                      "x_real_time": round(audio_s / wall, 3)}))


if __name__ == "__main__":
    sys.exit(main())
