#!/bin/bash
# `prepare` over the bad corpus of make_test_corpus.sh (CORPUS/bad, expectations in
# CORPUS/bad/expected.tsv): exit code 3, every expected problem in OUT/errors/rank-*.jsonl with
# its stage, code and a reason, every good utterance present exactly once (test_prepare_check).
#
# usage: prepare_bad_input_test.sh PREPARE_CLI CHECKER CORPUS_DIR WORK_DIR
set -u
PREP=${1:?}
CHECK=${2:?}
CORPUS=${3:?}
WORK=${4:?}
PY=${VOXSHARD_CACHE:-$HOME/.cache/voxshard}/venv/bin/python
[ -x "$PY" ] || PY=python3
B=$CORPUS/bad
INPUTS=()
while read -r line; do [ -n "$line" ] && INPUTS+=("$B/$line"); done <"$B/inputs.txt"
rm -rf "$WORK"
mkdir -p "$WORK"
out=$WORK/out
fails=0

mpirun --allow-run-as-root --oversubscribe -np 2 "$PREP" --out="$out" --shard-seconds=30 --threads=2 \
  --progress=off "${INPUTS[@]}" >"$WORK/run.log" 2>&1
rc=$?
if [ $rc -ne 3 ]; then
  echo "FAIL: exit code $rc, expected 3 (some utterances failed)" >&2
  tail -30 "$WORK/run.log" >&2
  fails=$((fails + 1))
fi

"$PY" - "$B" "$out" <<'PYEOF' || fails=$((fails + 1))
import glob, json, os, sys
bad, out = sys.argv[1], sys.argv[2]
errors = []
for path in sorted(glob.glob(os.path.join(out, "errors", "rank-*.jsonl"))):
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        rec = json.loads(line)
        for key in ("stage", "source", "code", "reason"):
            assert key in rec, f"{path}:{n}: no {key}"
        errors.append(rec)
missing = 0
for line in open(os.path.join(bad, "expected.tsv"), encoding="utf-8"):
    if line.startswith("#") or not line.strip():
        continue
    stage, code, source, why = line.rstrip("\n").split("\t")
    full = os.path.join(bad, source)
    hits = [e for e in errors if e["source"] == full]
    if stage == "ok":
        if any(e["stage"] == "decode" for e in hits):
            print(f"FAIL: {source} ({why}) should decode but is in the errors files", file=sys.stderr)
            missing += 1
        continue
    ok = [e for e in hits if e["stage"] == stage and e["code"] == code and e["reason"].strip()
          and (stage == "scan" or e.get("id"))]
    if not ok:
        print(f"FAIL: expected {stage}/{code} for {source} ({why}); errors files have: "
              f"{[(e['stage'], e['code']) for e in hits]}", file=sys.stderr)
        missing += 1
print(f"bad input: {len(errors)} error records, {missing} expected problem(s) missing")
sys.exit(1 if missing else 0)
PYEOF

grep -q '"exit_code" : 3' "$out/summary.json" || { echo "FAIL: summary.json has no exit_code 3" >&2; fails=$((fails + 1)); }
"$CHECK" --out="$out" --world=2 --allow-failed "${INPUTS[@]}" || fails=$((fails + 1))
if [ $fails -eq 0 ]; then
  echo "prepare_bad_input_test: passed"
  rm -rf "$WORK"
  exit 0
fi
echo "prepare_bad_input_test: $fails failure(s); output kept in $WORK" >&2
exit 1
