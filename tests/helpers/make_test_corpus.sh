#!/bin/sh
# Generates the corpus-input test data in OUTDIR (at test time: nothing here is checked in).
#
#   OUTDIR/tree/                 directory tree: WAV, FLAC, MP3, Ogg at 8-48 kHz, mono and stereo,
#                                espeak-ng voices in en/de/fr/es plus pocketsphinx real speech,
#                                a symlink loop, a second link to a folder, a non-ASCII name,
#                                two files whose readable ids collide (numbers.wav, numbers.flac)
#   OUTDIR/shards/shard-000.tar      WebDataset shard, plain tar (.txt and .json sidecars)
#   OUTDIR/shards/shard-001.tar.gz   WebDataset shard, gzip, "./" member prefixes, a json segment
#   OUTDIR/shards/shard-002.tar.zst  WebDataset shard, zstd
#   OUTDIR/manifest/manifest.jsonl   JSONL manifest: files, "shard.tar:member", {archive, member},
#                                    start/end and start/duration segments, an absolute path
#   OUTDIR/inputs.txt            the good inputs, one per line, relative to OUTDIR
#   OUTDIR/good.tsv              one line per expected utterance (format below)
#   OUTDIR/bad/                  bad inputs, listed in OUTDIR/bad/inputs.txt (relative to bad/)
#   OUTDIR/bad/expected.tsv      the problems they must produce (format below)
#
# good.tsv, tab separated, '#' lines are comments:
#   source  text  speaker  language  start  end  samples  tolerance
# (start 1.5 + duration 0.75 in the manifest is the segment [1.5, 2.25).)
# source is what vs_utt.source must be, relative to OUTDIR unless it starts with '/'; empty
# text/speaker/language mean none; end 0 means "to the end"; samples is the expected count at
# 16 kHz computed from soxi (sox), not voxshard; tolerance in samples (lossy codecs pad frames).
#
# bad/expected.tsv, tab separated, '#' lines are comments:
#   stage  code  source  why
# stage: "scan" (vs_corpus_scan must record it), "decode" (scan lists the utterance; probing
# or decoding it must fail), or "ok" (an utterance with this source is listed and decodes: the
# scan went on past the damage); code is "-" for "ok"; code: vs_error_code_name() of the code; source: the problem's
# source (scan) or the utterance's source (decode), relative to OUTDIR/bad. A job given the bad
# inputs as OUTDIR/bad/<input> sees sources OUTDIR/bad/<source>.
#
# "Unreadable file": tests run as root, so permissions cannot make a file unreadable. The tree
# holds a dangling symlink with an audio name instead (open() fails with ENOENT), which is what
# a file deleted or unmounted between listing and reading looks like.
set -eu

OUT=${1:?usage: make_test_corpus.sh OUTDIR}
PS=/usr/share/pocketsphinx/test/data
CACHE=${VOXSHARD_CACHE:-$HOME/.cache/voxshard}
PY=$CACHE/venv/bin/python
[ -x "$PY" ] || PY=python3

for tool in espeak-ng sox soxi tar gzip zstd; do
  command -v "$tool" >/dev/null 2>&1 || { echo "make_test_corpus: $tool not found" >&2; exit 1; }
done
[ -d "$PS/librivox" ] || { echo "make_test_corpus: $PS missing (pocketsphinx-testdata)" >&2; exit 1; }

# Only ever wipe a folder this script made.
if [ -e "$OUT" ]; then
  [ -f "$OUT/.voxshard-test-corpus" ] || { echo "make_test_corpus: $OUT exists and is not a test corpus" >&2; exit 1; }
  rm -rf "$OUT"
fi
mkdir -p "$OUT"
touch "$OUT/.voxshard-test-corpus"
OUT=$(cd "$OUT" && pwd)
TMP=$OUT/.tmp
mkdir -p "$TMP"

# say VOICE TEXT OUTFILE RATE CHANNELS: espeak-ng to WAV, then sox to the format of OUTFILE.
say() {
  espeak-ng -v "$1" -w "$TMP/say.wav" "$2"
  case "$3" in
    *.oga) sox "$TMP/say.wav" -r "$4" -c "$5" -t ogg "$3" ;; # sox knows Ogg only as .ogg
    *) sox "$TMP/say.wav" -r "$4" -c "$5" "$3" ;;
  esac
}

# samples16k FILE: whole-file sample count at 16 kHz, from sox's own reading of the header.
samples16k() {
  n=$(soxi -s "$1")
  r=$(soxi -r "$1")
  awk -v n="$n" -v r="$r" 'BEGIN { printf "%d", int(n * 16000 / r + 0.5) }'
}
seg16k() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%d", int((e - s) * 16000 + 0.5) }'; }

tol() {
  case "$1" in
    *.mp3) echo 2400 ;; # encoder delay + frame padding of up to one 1152-sample frame each side
    *.ogg | *.oga) echo 40 ;;
    *) echo 2 ;;
  esac
}

GOOD=$OUT/good.tsv
printf '# source\ttext\tspeaker\tlanguage\tstart\tend\tsamples\ttolerance\n' >"$GOOD"
good() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$GOOD"; }

# ---------------------------------------------------------------------------------------------
# Directory tree
T=$OUT/tree
mkdir -p "$T/en/alice" "$T/en/bob" "$T/de/carl" "$T/fr/dana" "$T/es/eva" "$T/librivox" "$T/cards"
say en-us "Hello world, this is a test of the corpus reader." "$T/en/alice/hello.wav" 16000 1
say en-gb+f3 "One two three four five six." "$T/en/bob/numbers.flac" 44100 2
say en-gb "Seven eight nine ten." "$T/en/bob/numbers.wav" 8000 1
say de "Guten Tag, wie geht es Ihnen heute?" "$T/de/carl/guten_tag.mp3" 22050 1
say fr+m3 "Bonjour, je m'appelle Dana et j'habite à Paris." "$T/fr/dana/bonjour.ogg" 48000 2
say es "Hola señor, buenos días." "$T/es/eva/hola señor.oga" 32000 1
cp "$PS/librivox/sense_and_sensibility_01_austen_64kb-0880.wav" "$T/librivox/"
cp "$PS/cards/001.wav" "$T/cards/"
echo "not audio" >"$T/notes.txt"
cp "$T/en/alice/hello.wav" "$T/en/.hidden.wav"
ln -s .. "$T/en/loop"    # a loop: en/loop/en/loop/...
ln -s en "$T/alias"      # the same folder twice
for f in en/alice/hello.wav en/bob/numbers.flac en/bob/numbers.wav de/carl/guten_tag.mp3 \
  fr/dana/bonjour.ogg "es/eva/hola señor.oga" \
  librivox/sense_and_sensibility_01_austen_64kb-0880.wav cards/001.wav; do
  good "tree/$f" "" "" "" 0 0 "$(samples16k "$T/$f")" "$(tol "$f")"
done

# ---------------------------------------------------------------------------------------------
# WebDataset shards
S=$OUT/shards
mkdir -p "$S" "$TMP/s0/sub" "$TMP/s1" "$TMP/s2"
say en-us+f2 "The quick brown fox jumps over the lazy dog." "$TMP/s0/k000.wav" 16000 1
echo "the quick brown fox jumps over the lazy dog" >"$TMP/s0/k000.txt"
printf '{"speaker": "spk-a", "language": "en"}\n' >"$TMP/s0/k000.json"
say en-gb "A stitch in time saves nine." "$TMP/s0/k001.flac" 24000 1
printf 'a stitch in time saves nine\n' >"$TMP/s0/k001.txt"
say en-us+m4 "Every cloud has a silver lining." "$TMP/s0/sub/k002.wav" 11025 2
printf '{"text": "every cloud has a silver lining", "speaker": "spk-b", "language": "en"}\n' >"$TMP/s0/sub/k002.json"
# Member order matters to the readers: sidecars before and after their audio.
tar -C "$TMP/s0" -cf "$S/shard-000.tar" k000.txt k000.wav k000.json k001.flac k001.txt \
  sub/k002.json sub/k002.wav
good "shards/shard-000.tar:k000.wav" "the quick brown fox jumps over the lazy dog" spk-a en 0 0 \
  "$(samples16k "$TMP/s0/k000.wav")" 2
good "shards/shard-000.tar:k001.flac" "a stitch in time saves nine" "" "" 0 0 \
  "$(samples16k "$TMP/s0/k001.flac")" 2
good "shards/shard-000.tar:sub/k002.wav" "every cloud has a silver lining" spk-b en 0 0 \
  "$(samples16k "$TMP/s0/sub/k002.wav")" 2

cp "$PS/librivox/sense_and_sensibility_01_austen_64kb-0870.wav" "$TMP/s1/k010.wav"
printf '{"text": "and mister john dashwood", "speaker": "austen-reader", "language": "en", "start": 0.5, "end": 2.25}\n' >"$TMP/s1/k010.json"
say de+f1 "Ich bin ein Berliner." "$TMP/s1/k011.mp3" 16000 1
printf 'ich bin ein berliner\n' >"$TMP/s1/k011.txt"
say fr "Le petit prince." "$TMP/s1/k012.ogg" 22050 2
printf '{"speaker": "spk-c", "language": "fr"}\n' >"$TMP/s1/k012.json"
(cd "$TMP/s1" && tar -czf "$S/shard-001.tar.gz" ./k010.wav ./k010.json ./k011.mp3 ./k011.txt \
  ./k012.ogg ./k012.json)
good "shards/shard-001.tar.gz:./k010.wav" "and mister john dashwood" austen-reader en 0.5 2.25 \
  "$(seg16k 0.5 2.25)" 2
good "shards/shard-001.tar.gz:./k011.mp3" "ich bin ein berliner" "" "" 0 0 \
  "$(samples16k "$TMP/s1/k011.mp3")" "$(tol x.mp3)"
good "shards/shard-001.tar.gz:./k012.ogg" "" spk-c fr 0 0 "$(samples16k "$TMP/s1/k012.ogg")" \
  "$(tol x.ogg)"

cp "$PS/cards/002.wav" "$TMP/s2/c002.wav"
printf 'four queen of clubs\n' >"$TMP/s2/c002.txt"
tar -C "$TMP/s2" --zstd -cf "$S/shard-002.tar.zst" c002.wav c002.txt
good "shards/shard-002.tar.zst:c002.wav" "four queen of clubs" "" "" 0 0 \
  "$(samples16k "$TMP/s2/c002.wav")" 2

# ---------------------------------------------------------------------------------------------
# JSONL manifest (paths relative to the manifest's folder)
M=$OUT/manifest
mkdir -p "$M/audio"
say en-us "Manifest entry number zero." "$M/audio/m0.wav" 16000 1
say en-gb+f4 "This longer sentence is cut into two segments by the manifest." "$M/audio/m1.flac" 22050 1
LV=$PS/librivox/sense_and_sensibility_01_austen_64kb-0890.wav
cat >"$M/manifest.jsonl" <<EOF
{"audio": "audio/m0.wav", "text": "manifest entry number zero", "speaker": "m-spk", "language": "en"}
{"audio": "audio/m1.flac", "start": 0.5, "end": 1.5, "text": "first part"}

{"audio": "audio/m1.flac", "start": 1.5, "duration": 0.75, "speaker": "m-spk2"}
{"audio": "../shards/shard-000.tar:k001.flac", "text": "a stitch in time", "language": "en"}
{"audio": {"archive": "../shards/shard-001.tar.gz", "member": "./k012.ogg"}, "start": 0.25, "end": 0.75}
{"audio": "$LV", "start": 1, "end": 3.5, "text": "unless to be rather cold hearted"}
EOF
good "manifest/audio/m0.wav" "manifest entry number zero" m-spk en 0 0 \
  "$(samples16k "$M/audio/m0.wav")" 2
good "manifest/audio/m1.flac" "first part" "" "" 0.5 1.5 "$(seg16k 0.5 1.5)" 2
good "manifest/audio/m1.flac" "" m-spk2 "" 1.5 2.25 "$(seg16k 1.5 2.25)" 2
good "manifest/../shards/shard-000.tar:k001.flac" "a stitch in time" "" en 0 0 \
  "$(samples16k "$TMP/s0/k001.flac")" 2
good "manifest/../shards/shard-001.tar.gz:./k012.ogg" "" "" "" 0.25 0.75 "$(seg16k 0.25 0.75)" 40
good "$LV" "unless to be rather cold hearted" "" "" 1 3.5 "$(seg16k 1 3.5)" 2

printf 'tree\nshards/shard-000.tar\nshards/shard-001.tar.gz\nshards/shard-002.tar.zst\nmanifest/manifest.jsonl\n' >"$OUT/inputs.txt"

# ---------------------------------------------------------------------------------------------
# Bad inputs
B=$OUT/bad
mkdir -p "$B/tree"
EXP=$B/expected.tsv
printf '# stage\tcode\tsource\twhy\n' >"$EXP"
expect() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$EXP"; }
expect ok - tree/good.wav "a good file among bad ones"
expect ok - escape.tar:ok.wav "honest member next to escaping ones"
expect ok - badaudio.tar:fine.wav "good member after a corrupt one"
expect ok - trunc.tar:a.wav "member before the truncation"
expect ok - trunc.tar:b.wav "member before the truncation"

# deterministic noise, so failures reproduce
noise() { "$PY" -c "import random,sys; random.seed($2); sys.stdout.buffer.write(bytes(random.getrandbits(8) for _ in range($1)))"; }

say en-us "Still fine." "$B/tree/good.wav" 16000 1
ln -s does-not-exist.wav "$B/tree/dangling.wav"
expect scan io tree/dangling.wav "dangling symlink: cannot be opened"
noise 4000 1 >"$B/tree/random.wav"
expect decode format tree/random.wav "random bytes with a .wav name"
head -c 30 "$B/tree/good.wav" >"$B/tree/trunc.wav"
expect decode format tree/trunc.wav "WAV cut inside its header"
sox "$B/tree/good.wav" "$TMP/full.flac"
head -c 30 "$TMP/full.flac" >"$B/tree/trunc.flac"
expect decode format tree/trunc.flac "FLAC cut inside its STREAMINFO block"
sox "$B/tree/good.wav" "$TMP/full.mp3"
head -c 100 "$TMP/full.mp3" >"$B/tree/trunc.mp3"
expect decode format tree/trunc.mp3 "MP3 cut inside its first frame"
: >"$B/tree/empty.wav"
expect scan audio tree/empty.wav "empty file"
sox -n -r 16000 -c 1 -b 16 "$B/tree/zero.wav" trim 0 0
expect decode audio tree/zero.wav "valid WAV header, zero samples"

# A plain tar cut in the middle of its third member: the first two stay usable.
mkdir -p "$TMP/tr"
for k in a b c; do cp "$PS/librivox/sense_and_sensibility_01_austen_64kb-0930.wav" "$TMP/tr/$k.wav"; done
tar -C "$TMP/tr" -cf "$TMP/trunc-full.tar" a.wav b.wav c.wav
size=$(stat -c %s "$TMP/tr/a.wav")
# two members (header + data padded to 512) + the third header + half its data
cut=$(( 2 * (512 + (size + 511) / 512 * 512) + 512 + size / 2 ))
head -c "$cut" "$TMP/trunc-full.tar" >"$B/trunc.tar"
expect scan format trunc.tar "archive ends inside member c.wav"
expect decode format trunc.tar:c.wav "member data cut short"

# A gzip stream overwritten with noise past its first member: a.wav stays readable.
tar -C "$TMP/tr" -czf "$TMP/corrupt-full.tar.gz" a.wav b.wav c.wav
gzsize=$(stat -c %s "$TMP/corrupt-full.tar.gz")
{ head -c 120000 "$TMP/corrupt-full.tar.gz"; noise $((gzsize - 120000)) 2; } >"$B/corrupt.tar.gz"
expect scan format corrupt.tar.gz "gzip data corrupt after 120000 bytes"
expect ok - corrupt.tar.gz:a.wav "member before the corruption"
expect decode format corrupt.tar.gz:b.wav "member data inside the corrupt stretch"

# Members whose names climb out of the archive root, next to one honest member.
"$PY" - "$B/escape.tar" "$B/tree/good.wav" <<'EOF'
import sys, tarfile
out, src = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for name in ["ok.wav", "../escape.wav", "/abs/abs.wav", "a/../../x.wav"]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        import io
        t.addfile(info, io.BytesIO(data))
EOF
expect scan format escape.tar:../escape.wav "member name starts with .."
expect scan format escape.tar:/abs/abs.wav "absolute member name"
expect scan format escape.tar:a/../../x.wav "member name climbs out through a/../.."

# Corrupt audio inside a valid tar: only decoding can tell.
mkdir -p "$TMP/ba"
noise 6000 3 >"$TMP/ba/noise.wav"
cp "$B/tree/good.wav" "$TMP/ba/fine.wav"
tar -C "$TMP/ba" -cf "$B/badaudio.tar" noise.wav fine.wav
expect decode format badaudio.tar:noise.wav "random bytes inside a valid tar"

cat >"$B/manifest.jsonl" <<'EOF'
{"audio": "tree/good.wav"
{"text": "no audio field"}
{"audio": "tree/good.wav", "start": "zero"}
{"audio": "tree/good.wav", "start": 2.0, "end": 1.0}
{"audio": "missing.wav"}
{"audio": "badaudio.tar:nothere.wav"}
[1, 2, 3]
{"audio": "tree/good.wav", "start": 0.1, "end": 0.5, "text": "the one good line"}
{"audio": "escape.tar:../escape.wav"}
{"audio": 42}
{"audio": "tree/good.wav", "end": 0.5, "language": 7}
EOF
expect scan format manifest.jsonl:1 "bad JSON (unterminated object)"
expect scan format manifest.jsonl:2 "no audio field"
expect scan format manifest.jsonl:3 "start is a string"
expect scan format manifest.jsonl:4 "end <= start"
expect scan io manifest.jsonl:5 "referenced file does not exist"
expect scan io manifest.jsonl:6 "member not in the archive"
expect scan format manifest.jsonl:7 "line is not a JSON object"
expect scan format manifest.jsonl:9 "member name escapes the archive"
expect scan format manifest.jsonl:10 "audio is a number"
expect scan format manifest.jsonl:11 "language is a number"

printf 'tree\ntrunc.tar\ncorrupt.tar.gz\nescape.tar\nbadaudio.tar\nmanifest.jsonl\n' >"$B/inputs.txt"

rm -rf "$TMP"
echo "make_test_corpus: wrote $OUT"
