#!/bin/bash
# Crash recovery of `prepare`, end to end:
#   A. 2 ranks, one rank killed with SIGKILL mid-run, rerun with 3 ranks;
#   B. the same, rerun with 2 ranks;
#   C. a rank exits right after publishing a shard and before journalling it (the window the
#      journal protocol exists for; test hook --test-exit-after-publish), rerun with 2 ranks.
# After each rerun: exactly-once coverage and balance (test_prepare_check), shards finished
# before the kill still there untouched (same inode and mtime: not redone), orphans gone.
#
# usage: prepare_kill_test.sh PREPARE_CLI CHECKER CORPUS_DIR WORK_DIR
set -u
PREP=${1:?}
CHECK=${2:?}
CORPUS=${3:?}
WORK=${4:?}
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
INPUTS=()
while read -r line; do [ -n "$line" ] && INPUTS+=("$CORPUS/$line"); done <"$CORPUS/inputs.txt"
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

rm -rf "$WORK"
mkdir -p "$WORK"

# journalled_shards OUT: the shard files the journals reference, with inode and mtime.
journalled_shards() {
  cat "$1"/journal/*.jsonl 2>/dev/null | grep -o '"shard":"[^"]*"' | sed 's/"shard":"//; s/"$//' |
    sort -u | while read -r rel; do
      [ -f "$1/$rel" ] && stat -c '%n %i %Y' "$1/$rel"
    done
}

kill_scenario() { # NAME RERUN_NP
  local name=$1 np=$2 out=$WORK/$1
  "${MPIRUN[@]}" -np 2 "$PREP" --out="$out" --shard-seconds=4 --threads=1 --test-delay-ms=500 \
    --progress=log --progress-interval=0.5 "${INPUTS[@]}" >"$WORK/$name-run1.log" 2>&1 &
  local mpipid=$!
  # Wait until at least one shard is journalled, then kill one rank (a child of mpirun).
  local t=0
  until grep -qs '"type":"shard"' "$out"/journal/*.jsonl; do
    sleep 0.2
    t=$((t + 1))
    if [ $t -gt 600 ] || ! kill -0 $mpipid 2>/dev/null; then
      fail "$name: no shard journalled before the run ended"
      cat "$WORK/$name-run1.log" >&2
      wait $mpipid
      return
    fi
  done
  local victim
  victim=$(pgrep -P $mpipid | tail -1)
  if [ -z "$victim" ]; then
    fail "$name: no rank process found under mpirun $mpipid"
    wait $mpipid
    return
  fi
  kill -9 "$victim"
  wait $mpipid
  local rc=$?
  [ $rc -ne 0 ] || fail "$name: the killed run exited 0"
  journalled_shards "$out" >"$WORK/$name-before.txt"
  local n_before
  n_before=$(wc -l <"$WORK/$name-before.txt")
  [ "$n_before" -gt 0 ] || fail "$name: no finished shard before the kill"
  [ ! -e "$out/summary.json" ] || fail "$name: killed run wrote a summary"

  "${MPIRUN[@]}" -np "$np" "$PREP" --out="$out" --shard-seconds=4 --threads=2 --progress=log \
    "${INPUTS[@]}" >"$WORK/$name-run2.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || { fail "$name: rerun with $np ranks exited $rc"; tail -20 "$WORK/$name-run2.log" >&2; }
  "$CHECK" --out="$out" --world="$np" "${INPUTS[@]}" || fail "$name: check after the rerun"
  # Finished shards were not redone: same files, same inodes, same mtimes.
  journalled_shards "$out" >"$WORK/$name-after.txt"
  while read -r line; do
    grep -qxF "$line" "$WORK/$name-after.txt" || fail "$name: finished shard changed or vanished: $line"
  done <"$WORK/$name-before.txt"
  local skipped
  skipped=$(grep -o '"skipped_as_done" : [0-9]*' "$out/summary.json" | grep -o '[0-9]*$')
  [ "${skipped:-0}" -gt 0 ] || fail "$name: rerun skipped nothing as done"
  echo "$name: killed a rank after $n_before shard(s); rerun with $np ranks skipped ${skipped:-0} done utterances"
}

kill_scenario A 3
kill_scenario B 2

# C: published but not journalled.
out=$WORK/C
"${MPIRUN[@]}" -np 1 "$PREP" --out="$out" --shard-seconds=4 --threads=1 --test-exit-after-publish=1 \
  --progress=off "${INPUTS[@]}" >"$WORK/C-run1.log" 2>&1
rc=$?
[ $rc -ne 0 ] || fail "C: the run with --test-exit-after-publish exited 0"
orphans=$(ls "$out"/shards/*.h5 2>/dev/null)
[ "$(echo "$orphans" | grep -c .)" -eq 1 ] || fail "C: expected exactly one published shard, got: $orphans"
grep -qs '"type":"shard"' "$out"/journal/*.jsonl && fail "C: the shard was journalled"
"${MPIRUN[@]}" -np 2 "$PREP" --out="$out" --shard-seconds=4 --threads=2 --progress=off "${INPUTS[@]}" \
  >"$WORK/C-run2.log" 2>&1 || fail "C: rerun exited $?"
for f in $orphans; do [ ! -e "$f" ] || fail "C: orphan $f was not removed"; done
grep -q "removed orphan shard" "$WORK/C-run2.log" || fail "C: the rerun did not report the orphan"
"$CHECK" --out="$out" --world=2 "${INPUTS[@]}" || fail "C: check after the rerun"

if [ $fails -eq 0 ]; then
  echo "prepare_kill_test: all scenarios passed"
  rm -rf "$WORK"
  exit 0
fi
echo "prepare_kill_test: $fails failure(s); logs in $WORK" >&2
exit 1
