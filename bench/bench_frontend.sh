#!/usr/bin/env bash
# Front-end throughput (decode + resample + log-mel) on >= 1 hour of generated speech in mixed
# formats and rates, one thread: prints "N x real time per core" (target >= 500), the split
# between decoding, resampling and the log-mel, and libsoxr's HQ vs MQ presets on the same audio.
#   usage: bench/bench_frontend.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
corpus=${VOXSHARD_CACHE:-$HOME/.cache/voxshard}/bench-frontend
# Bump the marker when the recipe changes: an older corpus is then regenerated, not reused.
marker=$corpus/.done-v3
if [ ! -f "$marker" ]; then
  rm -rf "$corpus"
  mkdir -p "$corpus"
  # 6 voices x 2 texts x 6 format/rate/channel variants, each utterance looped by sox to about
  # a minute: 72 files, about 75 minutes in all. Stereo variants exercise the downmix.
  i=0
  for voice in en-us en-gb en-gb-scotland en-029 en-us+f3 en+m3; do
    for text in "The committee will publish its findings after the hearings conclude next spring." \
                "Rain is expected across the northern valleys, with clearer skies by the weekend."; do
      espeak-ng -v "$voice" -w "$corpus/base.wav" "$text"
      for fmt in wav:22050:1 wav:48000:2 flac:44100:1 flac:48000:2 mp3:44100:1 mp3:22050:2; do
        IFS=: read -r ext rate ch <<< "$fmt"
        sox -G "$corpus/base.wav" -r "$rate" -c "$ch" "$corpus/u$(printf %03d $i).$ext" repeat 14
        i=$((i + 1))
      done
    done
  done
  rm -f "$corpus/base.wav"
  touch "$marker"
fi
"$build/vs_bench_frontend" "$corpus"/u*.*
