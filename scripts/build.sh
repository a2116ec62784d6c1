#!/usr/bin/env bash
# Installs dependencies (idempotent) and builds voxshard into build/ (or $VOXSHARD_BUILD_DIR).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${VOXSHARD_BUILD_DIR:-$here/build}
"$here/scripts/setup-deps.sh" "$@"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
if [ -f "$build/CMakeCache.txt" ]; then cmake "$build" >/dev/null; else cmake -S "$here" -B "$build" "${gen[@]}"; fi
cmake --build "$build" -j "$(nproc)"
