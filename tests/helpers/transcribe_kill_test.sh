#!/bin/bash
# Crash recovery of `transcribe`, end to end: 2 ranks, one killed with SIGKILL once some files
# are published, then a rerun with 3 ranks. Afterwards: every file exactly once (journal and
# transcripts agree, no id twice), and files published before the kill untouched (same inode
# and mtime: not redone).
#   usage: transcribe_kill_test.sh VOXSHARD MODEL PYTHON CHECKER CORPUS_DIR WORK_DIR
set -u
VS=${1:?}; MODEL=${2:?}; PY=${3:?}; CHECK=${4:?}; CORPUS=${5:?}; WORK=${6:?}
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
INPUTS=("$CORPUS/real/manifest.jsonl" "$CORPUS/real/shard.tar")
COMMON=(--model="$MODEL" --out="$WORK/out" --batch-size=1 --precision=fp32 --threads=1 --progress=off)
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
rm -rf "$WORK"; mkdir -p "$WORK"

"${MPIRUN[@]}" -np 2 "$VS" transcribe "${COMMON[@]}" --test-delay-ms=1500 "${INPUTS[@]}" \
  >"$WORK/run1.log" 2>&1 &
mpipid=$!
t=0
until [ "$(cat "$WORK"/out/journal/*.jsonl 2>/dev/null | grep -c '"type":"shard"')" -ge 2 ]; do
  sleep 0.2; t=$((t + 1))
  if [ $t -gt 900 ] || ! kill -0 $mpipid 2>/dev/null; then
    fail "no file journalled before the run ended"; cat "$WORK/run1.log" >&2; wait $mpipid; exit 1
  fi
done
victim=$(pgrep -P $mpipid | tail -1)
[ -n "$victim" ] || { fail "no rank process under mpirun $mpipid"; wait $mpipid; exit 1; }
kill -9 "$victim"
wait $mpipid
rc=$?
[ $rc -ne 0 ] || fail "the killed run exited 0"
[ ! -e "$WORK/out/summary.json" ] || fail "the killed run wrote a summary"
cat "$WORK"/out/journal/*.jsonl | grep -o '"shard":"[^"]*"' | sed 's/"shard":"//; s/"$//' | sort -u |
  while read -r rel; do stat -c '%n %i %Y' "$WORK/out/$rel"; done >"$WORK/before.txt"
n_before=$(wc -l <"$WORK/before.txt")
[ "$n_before" -gt 0 ] || fail "no file published before the kill"

"${MPIRUN[@]}" -np 3 "$VS" transcribe "${COMMON[@]}" "${INPUTS[@]}" >"$WORK/run2.log" 2>&1
rc=$?
[ $rc -eq 0 ] || { fail "rerun with 3 ranks exited $rc"; tail -20 "$WORK/run2.log" >&2; }
"$PY" "$CHECK" check-np "$WORK/out" --corpus "$CORPUS" || fail "exactly-once check after the rerun"
while read -r line; do
  f=${line%% *}
  [ "$(stat -c '%n %i %Y' "$f")" = "$line" ] || fail "a file finished before the kill was redone: $f"
done <"$WORK/before.txt"
skipped=$(grep -o '"skipped_as_done" : [0-9]*' "$WORK/out/summary.json" | grep -o '[0-9]*$')
[ "${skipped:-0}" -ge "$n_before" ] || fail "rerun skipped ${skipped:-0} files, $n_before were done"
echo "killed a rank after $n_before file(s); the 3-rank rerun skipped ${skipped:-0} done files"
echo "$((fails == 0 ? 1 : 0)) passed, $fails failed"
exit $((fails > 0))
