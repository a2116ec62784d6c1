#!/usr/bin/env bash
# The README's first command: on a fresh Debian machine, installs what is missing, builds, and
# runs voxshard's main jobs on a small real sample (Debian's pocketsphinx-testdata: LibriVox
# recordings and spoken card names, with reference transcripts), on two MPI ranks.
#   usage: scripts/demo.sh [OUT_DIR]      (default: ./demo-out)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${VOXSHARD_BUILD_DIR:-$here/build}
out=$(realpath -m "${1:-$PWD/demo-out}")
"$here/scripts/build.sh"
"$here/scripts/fetch-models.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
data=/usr/share/pocketsphinx/test/data
mpirun=(mpirun -np 2 --oversubscribe)

echo "== voxshard prepare: $data/librivox + $data/cards -> $out/prepare"
rc=0
"${mpirun[@]}" "$build/voxshard" prepare --config "$here/configs/prepare.ini" \
  --out "$out/prepare" "$data/librivox" "$data/cards" || rc=$?
[ $rc -eq 0 ] || [ $rc -eq 3 ] || exit $rc
cat "$out/prepare/summary.json"; echo
echo "feature shards:"; ls -l "$out/prepare/shards"

# Transcription of the same real speech, with references from a manifest.
manifest=$out/sample.jsonl
mkdir -p "$out"
{
  for sub in librivox cards; do
    tr_file=$data/$sub/transcription; [ -f "$tr_file" ] || tr_file=$data/$sub/cards.transcription
    sed -E 's#</?s>##g' "$tr_file" | sed -nE 's#^ *(.*[^ ]) *\((.*)\) *$#\2\t\1#p' |
      while IFS=$'\t' read -r id text; do
        [ -f "$data/$sub/$id.wav" ] || continue
        printf '{"id": "%s-%s", "audio": "%s", "text": "%s", "speaker": "%s"}\n' \
          "$sub" "$id" "$data/$sub/$id.wav" "$text" "$sub"
      done
  done
} >"$manifest"
model=${VOXSHARD_CACHE:-$HOME/.cache/voxshard}/models/tiny.en.h5
echo "== voxshard transcribe: $(wc -l <"$manifest") files -> $out/transcribe"
rc=0
"${mpirun[@]}" "$build/voxshard" transcribe --model "$model" --out "$out/transcribe" "$manifest" || rc=$?
[ $rc -eq 0 ] || [ $rc -eq 3 ] || exit $rc
cat "$out/transcribe/summary.json"; echo
echo "== voxshard eval"
"$build/voxshard" eval --ref "$manifest" --hyp "$out/transcribe"
echo "outputs: $out/transcribe/transcripts/*.{jsonl,srt,vtt}, $out/transcribe/corpus.{ctm,stm}"
