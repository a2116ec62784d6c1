#!/usr/bin/env python3
"""Generates the two benchmark corpora for `bench/bench_transcribe.sh` (test/bench helper only).

short/: many utterances of 2-10 s (espeak-ng, several English voices, 16-48 kHz WAV/FLAC/MP3),
        plus the real LibriVox and card clips from Debian's pocketsphinx-testdata.
long/:  podcast-like MP3 files of several minutes each (alternating voices, pauses between
        turns), at least `--long-minutes` in total.
Each corpus gets manifest.jsonl ({"id", "audio", "text", "speaker"}) with the reference text.
Text: English prose from /usr/share/common-licenses (always present on Debian).
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile

VOICES = ["en-us", "en-gb", "en-gb-x-rp", "en-us+f3", "en-gb-scotland", "en-029", "en+m3", "en-us+f2"]
PS = "/usr/share/pocketsphinx/test/data"


def sentences():
    text = ""
    for name in ("GPL-3", "Apache-2.0", "MPL-2.0", "GFDL-1.3", "LGPL-2.1"):
        p = os.path.join("/usr/share/common-licenses", name)
        if os.path.exists(p):
            text += open(p, encoding="utf-8", errors="replace").read() + "\n"
    text = re.sub(r"[^A-Za-z0-9,.;:'\- \n]", " ", text)
    out = []
    for s in re.split(r"(?<=[.;:])\s+", re.sub(r"\s+", " ", text)):
        words = s.split()
        if 4 <= len(words) <= 60 and sum(c.isalpha() for c in s) > 0.7 * len(s.replace(" ", "")):
            out.append(" ".join(words))
    return out


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def speak(text, voice, wav):
    run(["espeak-ng", "-v", voice, "-s", "165", "-w", wav, text])


def duration(path):
    return float(subprocess.check_output(["soxi", "-D", path]).decode().strip())


def make_short(outdir, n, rng, sents):
    os.makedirs(outdir, exist_ok=True)
    items = []
    fmts = [("wav", 16000), ("flac", 22050), ("mp3", 44100), ("wav", 48000)]
    i = 0
    for s in sents:
        if len(items) >= n:
            break
        words = s.split()
        if len(words) > 25:
            s = " ".join(words[:25])
        voice = VOICES[i % len(VOICES)]
        ext, rate = fmts[i % len(fmts)]
        with tempfile.TemporaryDirectory() as td:
            raw = os.path.join(td, "a.wav")
            speak(s, voice, raw)
            d = duration(raw)
            if not (2.0 <= d <= 10.0):
                continue
            path = os.path.join(outdir, f"clip{i:04d}.{ext}")
            run(["sox", raw, "-r", str(rate), path])
        items.append({"id": f"clip{i:04d}", "audio": os.path.basename(path), "text": s,
                      "speaker": voice})
        i += 1
    ref = {}
    for line in open(os.path.join(PS, "librivox", "transcription")):
        m = re.match(r"(.*)\((.*)\)\s*$", line.strip())
        if m:
            # sphinx markers (<s>, </s>, <sil>) are not words that were spoken
            ref[m.group(2).strip()] = " ".join(w for w in m.group(1).split()
                                               if not (w.startswith("<") and w.endswith(">")))
    for f in sorted(os.listdir(os.path.join(PS, "librivox"))):
        if f.endswith(".wav") and f[:-4] in ref:
            dst = os.path.join(outdir, f)
            if not os.path.exists(dst):
                os.symlink(os.path.join(PS, "librivox", f), dst)
            items.append({"id": f[:-4], "audio": f, "text": ref[f[:-4]], "speaker": "librivox"})
    with open(os.path.join(outdir, "manifest.jsonl"), "w") as m:
        for it in items:
            m.write(json.dumps(it) + "\n")
    return items


def make_long(outdir, minutes, file_minutes, rng, sents):
    os.makedirs(outdir, exist_ok=True)
    items = []
    total = 0.0
    k = 0
    si = 0
    while total < minutes * 60:
        with tempfile.TemporaryDirectory() as td:
            parts, texts, t = [], [], 0.0
            turn = 0
            while t < file_minutes * 60:
                s = sents[si % len(sents)]
                si += 1
                wav = os.path.join(td, f"p{len(parts)}.wav")
                speak(s, VOICES[(k + turn) % 2 * 3], wav)
                run(["sox", wav, "-r", "16000", "-c", "1", wav + ".r.wav", "pad", "0",
                     f"{rng.uniform(0.3, 1.8):.2f}"])
                parts.append(wav + ".r.wav")
                texts.append(s)
                t += duration(wav + ".r.wav")
                turn += rng.random() < 0.3
            joined = os.path.join(td, "joined.wav")
            run(["sox"] + parts + [joined])
            path = os.path.join(outdir, f"episode{k:02d}.mp3")
            run(["sox", joined, "-C", "64", path])
            d = duration(path)
        items.append({"id": f"episode{k:02d}", "audio": os.path.basename(path),
                      "text": " ".join(texts), "speaker": "podcast"})
        total += d
        k += 1
    with open(os.path.join(outdir, "manifest.jsonl"), "w") as m:
        for it in items:
            m.write(json.dumps(it) + "\n")
    return items, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--short-count", type=int, default=120)
    ap.add_argument("--long-minutes", type=float, default=20)
    ap.add_argument("--file-minutes", type=float, default=5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    sents = sentences()
    rng.shuffle(sents)
    short = make_short(os.path.join(a.outdir, "short"), a.short_count, rng, sents)
    long_items, total = make_long(os.path.join(a.outdir, "long"), a.long_minutes, a.file_minutes,
                                  rng, sents[len(sents) // 2:])
    print(f"short: {len(short)} files; long: {len(long_items)} files, {total / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
