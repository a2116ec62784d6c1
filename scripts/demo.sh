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
