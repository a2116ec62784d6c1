#!/usr/bin/env bash
# The README's test command: dependencies, build, then every test. Tests that need a GPU are
# labelled `gpu` and report SKIPPED on machines without one.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${VOXSHARD_BUILD_DIR:-$here/build}
"$here/scripts/build.sh"
"$here/scripts/fetch-models.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir "$build" --output-on-failure --timeout 1500 "$@"
