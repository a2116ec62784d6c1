#!/bin/bash
# Bad input for `transcribe`: over the bad-input corpus of make_test_corpus.sh, the job goes on,
# exits 3, records each expected failure with its reason in the errors files, and transcribes
# every good file.
#   usage: transcribe_bad_input_test.sh VOXSHARD MODEL CORPUS_DIR WORK_DIR
set -u
VS=${1:?}; MODEL=${2:?}; CORPUS=${3:?}; WORK=${4:?}
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
rm -rf "$WORK"; mkdir -p "$WORK"
INPUTS=()
while read -r line; do [ -n "$line" ] && INPUTS+=("$CORPUS/bad/$line"); done <"$CORPUS/bad/inputs.txt"
mpirun --allow-run-as-root --oversubscribe -np 2 "$VS" transcribe --model="$MODEL" --out="$WORK/out" \
  --beam-size=1 --progress=off "${INPUTS[@]}" >"$WORK/run.log" 2>&1
rc=$?
[ $rc -eq 3 ] || { fail "exit code $rc, expected 3 (some files failed)"; tail -20 "$WORK/run.log" >&2; }
n_ok=$(awk -F'\t' '$1=="ok"' "$CORPUS/bad/expected.tsv" | wc -l)
n_decode=$(awk -F'\t' '$1=="decode"' "$CORPUS/bad/expected.tsv" | wc -l)
n_bad=$(awk -F'\t' '$1=="scan" || $1=="decode"' "$CORPUS/bad/expected.tsv" | wc -l)
n_tr=$(ls "$WORK"/out/transcripts/*.jsonl 2>/dev/null | wc -l)
summary_int() { grep -o "\"$1\" : [0-9]*" "$WORK/out/summary.json" | grep -o '[0-9]*$'; }
# The listed good members and files, plus the good manifest lines, are transcribed; exactly the
# listed decode-stage failures fail.
[ "$n_tr" -ge "$n_ok" ] || fail "$n_tr transcripts, expected at least $n_ok good files"
[ "$(summary_int done)" = "$n_tr" ] || fail "summary done $(summary_int done), $n_tr transcripts"
[ "$(summary_int failed)" = "$n_decode" ] || fail "summary failed $(summary_int failed), expected $n_decode"
# Every expected failure is in some rank's errors file, by source, with a reason.
while IFS=$'\t' read -r stage code source why; do
  case "$stage" in scan|decode) ;; *) continue ;; esac
  grep -qF "$source" "$WORK"/out/errors/rank-*.jsonl || fail "no error record for $source ($why)"
done <"$CORPUS/bad/expected.tsv"
n_err=$(cat "$WORK"/out/errors/rank-*.jsonl | grep -c '"reason"')
[ "$n_err" -ge "$n_bad" ] || fail "$n_err error records, expected at least $n_bad"
grep -q '"failed"' "$WORK/out/summary.json" || fail "no summary"
# Logs carry metadata only: no transcript text.
for f in "$WORK"/out/transcripts/*.jsonl; do
  txt=$(grep -o '"text" *: *"[^"]*"' "$f" | head -1 | sed 's/.*: *"//; s/"$//' | cut -c1-40)
  [ -z "$txt" ] || ! grep -qF "$txt" "$WORK/run.log" || fail "transcript text leaked into the log"
done
echo "bad input: $n_tr good files transcribed, $n_err error records ($n_bad expected problems)"

# Bad model files: a clear error naming the file (and the tensor), exit 1, nothing published. The
# front end starts once the file's header is read, before the weights: a file whose header is
# fine but whose weights are not must still stop the job cleanly (batched mode also loads the VAD).
PY="${VOXSHARD_CACHE:-$HOME/.cache/voxshard}/venv/bin/python"
good="$CORPUS/bad/tree/good.wav"
printf 'not a model\n' >"$WORK/text.h5"
"$PY" - "$MODEL" "$WORK/no_tensor.h5" <<'PYEOF' || fail "could not make a model file without a tensor"
import shutil, sys, h5py
shutil.copyfile(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    del f["weights/decoder/layer_3/attention/linear_0/bias"]
PYEOF
for c in "missing:$WORK/absent.h5:$WORK/absent.h5" "text:$WORK/text.h5:not an HDF5 file" \
         "no_tensor:$WORK/no_tensor.h5:decoder/layer_3/attention/linear_0/bias"; do
  IFS=: read -r name path want <<<"$c"
  for mode in sequential batched; do
    out="$WORK/model-$name-$mode"
    timeout 120 mpirun --allow-run-as-root --oversubscribe -np 1 "$VS" transcribe --model="$path" \
      --out="$out" --mode=$mode --beam-size=1 --progress=off "$good" >"$out.log" 2>&1
    rc=$?
    [ $rc -eq 1 ] || fail "model $name ($mode): exit code $rc, expected 1"
    grep -qF "$want" "$out.log" || fail "model $name ($mode): the error does not name '$want'"
    n=$(ls "$out"/transcripts/*.jsonl 2>/dev/null | wc -l)
    [ "$n" -eq 0 ] || fail "model $name ($mode): $n transcripts published"
  done
done
echo "bad model files: missing, not HDF5, a tensor missing; each in both modes"
echo "$((fails == 0 ? 1 : 0)) passed, $fails failed"
exit $((fails > 0))
