#!/usr/bin/env python3
"""Test helper for `voxshard transcribe` (never in the product's path).

  make-corpus DIR      real corpus (pocketsphinx-testdata clips in a manifest with references,
                       plus a WebDataset tar shard of generated speech with .txt sidecars) and a
                       mixed corpus (short clips + a long-form file of several minutes joined from
                       clips with silences; speech intervals recorded in mixed/speech.json)
  check-np OUT... --corpus DIR    every file exactly once in each OUT, same texts in all OUTs,
                       summaries consistent, sclite accepts corpus.ctm against reference.stm
  check-modes SEQ BAT --corpus DIR --eval VOXSHARD   batched WER within 1 point of sequential;
                       segments ordered, non-overlapping, inside the file, covering its speech
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

PS = "/usr/share/pocketsphinx/test/data"
fails = 0


def fail(msg):
    global fails
    fails += 1
    print("FAIL:", msg, file=sys.stderr)


def sh(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def soxi(path):
    return float(subprocess.check_output(["soxi", "-D", path]).decode())


def references():
    ref = {}
    for line in open(os.path.join(PS, "librivox", "transcription")):
        m = re.match(r"(.*)\((.*)\)\s*$", line.strip())
        if m:
            ref[("librivox", m.group(2).strip())] = m.group(1).replace("<s>", "").replace("</s>", "").strip()
    for line in open(os.path.join(PS, "cards", "cards.transcription")):
        m = re.match(r"(.*)\((.*)\)\s*$", line.strip())
        if m:
            ref[("cards", m.group(2).strip())] = m.group(1).replace("<s>", "").replace("</s>", "").strip()
    return ref


def make_corpus(d):
    real = os.path.join(d, "real")
    os.makedirs(real, exist_ok=True)
    ref = references()
    with open(os.path.join(real, "manifest.jsonl"), "w") as m:
        for (sub, name), text in sorted(ref.items()):
            wav = os.path.join(PS, sub, name + ".wav")
            if os.path.exists(wav):
                m.write(json.dumps({"id": f"{sub}-{name}", "audio": wav, "text": text,
                                    "speaker": sub}) + "\n")
    sentences = ["The harbour lights were switched off at midnight.",
                 "Please send the quarterly figures before Friday.",
                 "Seven engineers repaired the bridge in two days."]
    with tempfile.TemporaryDirectory() as td, tarfile.open(os.path.join(real, "shard.tar"), "w") as tar:
        for i, s in enumerate(sentences):
            wav = os.path.join(td, f"utt{i}.wav")
            sh("espeak-ng", "-v", ["en-us", "en-gb", "en-us+f3"][i], "-w", wav + ".raw.wav", s)
            sh("sox", wav + ".raw.wav", "-r", "22050", wav)
            with open(os.path.join(td, f"utt{i}.txt"), "w") as t:
                t.write(s + "\n")
            tar.add(wav, arcname=f"utt{i}.wav")
            tar.add(os.path.join(td, f"utt{i}.txt"), arcname=f"utt{i}.txt")

    mixed = os.path.join(d, "mixed")
    os.makedirs(mixed, exist_ok=True)
    clips = sorted(glob.glob(os.path.join(PS, "librivox", "*.wav"))) + sorted(glob.glob(os.path.join(PS, "cards", "*.wav")))
    texts = {os.path.join(PS, s, n + ".wav"): t for (s, n), t in ref.items()}
    items, parts, speech, t, long_text = [], [], [], 0.0, []
    with tempfile.TemporaryDirectory() as td:
        gaps = [2.5, 0.8, 4.0, 1.2, 3.0]
        for rep in range(3):  # several minutes: the clips three times over, with silences
            for k, c in enumerate(clips):
                if c not in texts:
                    continue
                p = os.path.join(td, f"p{len(parts)}.wav")
                gap = gaps[(k + rep) % len(gaps)]
                sh("sox", c, "-r", "16000", "-c", "1", p, "pad", "0", str(gap))
                d_clip = soxi(c)
                speech.append([t, t + d_clip])
                parts.append(p)
                long_text.append(texts[c])
                t += soxi(p)
        sh("sox", *parts, os.path.join(mixed, "longform.wav"))
    items.append({"id": "longform", "audio": os.path.join(mixed, "longform.wav"),
                  "text": " ".join(long_text), "speaker": "mix"})
    for c in clips:
        if c in texts:
            base = os.path.basename(os.path.dirname(c)) + "-" + os.path.basename(c)[:-4]
            items.append({"id": base, "audio": c, "text": texts[c], "speaker": "clip"})
    with open(os.path.join(mixed, "manifest.jsonl"), "w") as m:
        for it in items:
            m.write(json.dumps(it) + "\n")
    json.dump({"longform": speech}, open(os.path.join(mixed, "speech.json"), "w"))
    print(f"real: {len(ref)} clips + 3 tar members; mixed: longform {t:.0f} s + {len(items) - 1} clips")


def load_out(out):
    texts = {}
    for path in glob.glob(os.path.join(out, "transcripts", "*.jsonl")):
        fid, segs = None, []
        for line in open(path):
            rec = json.loads(line)
            if "start" in rec and "end" in rec and "text" in rec:
                segs.append(rec)
        fid = os.path.basename(path)[:-6]
        texts[fid] = segs
    ids = []
    for j in glob.glob(os.path.join(out, "journal", "rank-*.jsonl")):
        for line in open(j):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("type") == "shard":
                ids += rec["ids"]
    return texts, ids


def check_np(outs, corpus):
    n_expected = sum(1 for _ in open(os.path.join(corpus, "real", "manifest.jsonl"))) + 3
    base = None
    for out in outs:
        texts, ids = load_out(out)
        if len(texts) != n_expected:
            fail(f"{out}: {len(texts)} transcripts, expected {n_expected}")
        if len(ids) != len(set(ids)):
            fail(f"{out}: an id is journalled twice")
        if set(ids) != set(texts):
            fail(f"{out}: journal and transcripts disagree")
        summ = json.load(open(os.path.join(out, "summary.json")))
        if summ["done"] + summ["skipped_as_done"] != n_expected or summ["failed"] != 0:
            fail(f"{out}: summary says done {summ['done']} + {summ['skipped_as_done']} resumed, "
                 f"failed {summ['failed']}")
        flat = {k: " ".join(s["text"].strip() for s in v) for k, v in texts.items()}
        if base is None:
            base = (out, flat)
        else:
            for k in flat:
                if flat[k] != base[1].get(k):
                    fail(f"{out} and {base[0]} differ on {k}")
        # sclite reads what we wrote and scores it.
        sclite = shutil.which("sclite") or "/usr/lib/sctk/bin/sclite"  # Debian's sctk
        r = subprocess.run([sclite, "-r", os.path.join(out, "reference.stm"), "stm", "-h",
                            os.path.join(out, "corpus.ctm"), "ctm", "-o", "sum", "stdout"],
                           capture_output=True, text=True)
        m = re.search(r"\|\s*Sum/Avg\s*\|\s*(\d+)\s+(\d+)\s*\|\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", r.stdout)
        if r.returncode != 0 or not m:
            fail(f"{out}: sclite did not score corpus.ctm against reference.stm ({r.returncode})")
        else:
            wer = float(m.group(7))
            print(f"{out}: {len(texts)} files exactly once; sclite WER {wer:.1f}% (no normaliser)")
            if int(m.group(2)) == 0 or wer > 60:
                fail(f"{out}: sclite WER {wer} implausible")


def check_modes(seq, bat, corpus, voxshard):
    manifest = os.path.join(corpus, "mixed", "manifest.jsonl")
    wers = []
    for out in (seq, bat):
        rep = os.path.join(out, "eval.json")
        subprocess.run([voxshard, "eval", "--ref", manifest, "--hyp", out, "--out", rep],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        data = json.load(open(rep))
        wers.append(float(find_wer(data)))
    print(f"WER sequential {wers[0]:.2f}%, batched {wers[1]:.2f}%")
    if abs(wers[0] - wers[1]) > 1.0:
        fail(f"batched WER {wers[1]:.2f} differs from sequential {wers[0]:.2f} by more than 1 point")
    speech = json.load(open(os.path.join(corpus, "mixed", "speech.json")))["longform"]
    dur = soxi(os.path.join(corpus, "mixed", "longform.wav"))
    for out in (seq, bat):
        texts, _ = load_out(out)
        segs = texts.get("longform", [])
        if len(segs) < 3:
            fail(f"{out}: long-form file has {len(segs)} segments")
            continue
        for a, b in zip(segs, segs[1:]):
            if b["start"] < a["end"] - 1e-6 or b["start"] < a["start"]:
                fail(f"{out}: segments out of order or overlapping at {a['start']:.2f}/{b['start']:.2f}")
                break
        for s in segs:
            if s["start"] < 0 or s["end"] > dur + 0.05 or s["end"] < s["start"]:
                fail(f"{out}: segment [{s['start']}, {s['end']}] outside the file ({dur:.2f} s)")
        # Every stretch of speech overlaps some segment, and the segments span the speech.
        for a, b in speech:
            if not any(s["start"] < b and s["end"] > a for s in segs):
                fail(f"{out}: speech [{a:.1f}, {b:.1f}] s is covered by no segment")
        if segs[0]["start"] > speech[0][0] + 1.0 or segs[-1]["end"] < speech[-1][1] - 1.0:
            fail(f"{out}: segments span [{segs[0]['start']:.1f}, {segs[-1]['end']:.1f}], speech "
                 f"[{speech[0][0]:.1f}, {speech[-1][1]:.1f}]")
        print(f"{out}: long-form {len(segs)} segments, ordered and covering its speech")


def find_wer(report):
    return 100.0 * report["words"]["rate"]


def main():
    cmd = sys.argv[1]
    args = sys.argv[2:]
    opt = {}
    pos = []
    i = 0
    while i < len(args):
        if args[i].startswith("--"):
            opt[args[i][2:]] = args[i + 1]
            i += 2
        else:
            pos.append(args[i])
            i += 1
    if cmd == "make-corpus":
        make_corpus(pos[0])
    elif cmd == "check-np":
        check_np(pos, opt["corpus"])
    elif cmd == "check-modes":
        check_modes(pos[0], pos[1], opt["corpus"], opt["eval"])
    else:
        sys.exit(f"unknown command {cmd}")
    print(f"{0 if fails else 1} passed, {fails} failed")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
