/* `voxshard transcribe`: the product's main job. Every rank transcribes its duration-balanced
 * share of the corpus (src/job.h) with a Whisper model on the CPU (GPU backend: roadmap) and
 * publishes, per file, JSONL/SRT/WebVTT under OUT/transcripts/ before journalling it, so a
 * killed or requeued job resumes with any number of ranks and never publishes a file twice.
 * Rank 0 ends with OUT/corpus.ctm, OUT/corpus.stm (hypotheses), OUT/reference.stm (when the
 * corpus carries reference text) and OUT/summary.json. See docs/transcribe.md.
 */
#ifndef VS_TRANSCRIBE_H
#define VS_TRANSCRIBE_H

#define VS_TRANSCRIBE_EXIT_OK 0
#define VS_TRANSCRIBE_EXIT_FATAL 1
#define VS_TRANSCRIBE_EXIT_USAGE 2
#define VS_TRANSCRIBE_EXIT_SOME_FAILED 3

int vs_cmd_transcribe(int argc, char **argv);

#endif
