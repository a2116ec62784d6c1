#!/usr/bin/env bash
# Front-end throughput (decode + resample + log-mel) on >= 1 hour of generated speech in mixed
# formats and rates, one thread: prints "N x real time per core" (target >= 500).
#   usage: bench/bench_frontend.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
corpus=${VOXSHARD_CACHE:-$HOME/.cache/voxshard}/bench-frontend
if [ ! -f "$corpus/.done" ]; then
  mkdir -p "$corpus"
  # 12 base utterances x 5 formats, looped by sox to ~1 minute each: 60+ minutes in all.
  i=0
  for voice in en-us en-gb en-gb-scotland en-029 en-us+f3 en+m3; do
    for text in "The committee will publish its findings after the hearings conclude next spring." \
                "Rain is expected across the northern valleys, with clearer skies by the weekend."; do
      espeak-ng -v "$voice" -w "$corpus/base.wav" "$text"
      for fmt in wav:16000 flac:22050 mp3:44100 ogg:48000 wav:44100; do
        ext=${fmt%%:*}; rate=${fmt##*:}
        sox "$corpus/base.wav" -r "$rate" "$corpus/u$(printf %03d $i).$ext" repeat 14
        i=$((i + 1))
      done
    done
  done
  rm -f "$corpus/base.wav"
  touch "$corpus/.done"
fi
"$build/vs_bench_frontend" "$corpus"/u*.*
