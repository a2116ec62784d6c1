/* voxshard: the command-line entry point. Each command parses its options (src/config.h) and
 * calls the library; only this file's main() decides the process exit code. */
#include <stdio.h>
#include <string.h>

#include "convert.h"
#include "eval.h"
#include "gpu.h"
#include "log.h"
#include "prepare.h"
#include "transcribe.h"
#include "vs_build_config.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} vs_command;

static const vs_command commands[] = {
    {"transcribe", vs_cmd_transcribe, "Whisper transcripts (JSONL/SRT/VTT, CTM/STM), resumable"},
    {"prepare", vs_cmd_prepare, "corpus -> sharded HDF5 log-mel feature stores, resumable"},
    {"eval", vs_cmd_eval, "WER/CER of transcripts against references (sclite-equal counts)"},
    {"convert", vs_cmd_convert, "import a faster-whisper/CTranslate2 or Hugging Face Whisper model"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f) {
  fprintf(f, "usage: voxshard <command> [options]   (voxshard <command> --help for its options)\n\n"
             "commands:\n");
  for (const vs_command *c = commands; c->name; c++) fprintf(f, "  %-12s %s\n", c->name, c->summary);
  fprintf(f, "\n  --version    print the version and build features\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("voxshard %s (cuda: %s, nccl: %s)\n", VS_VERSION, VS_HAVE_CUDA ? "built" : "no",
           VS_HAVE_NCCL ? "built" : "no");
    char why[160] = "";
    int n = vs_gpu_count(why, sizeof why);
    if (n == 0) printf("gpu: none (%s); running on the CPU\n", why);
    for (int i = 0; i < n; i++) {
      vs_gpu_info info;
      if (vs_gpu_info_get(i, &info))
        printf("gpu %d: %s, sm_%d%d, %d SMs, %.1f GiB\n", i, info.name, info.compute_major,
               info.compute_minor, info.multiprocessors,
               (double)info.total_memory_bytes / (1024.0 * 1024.0 * 1024.0));
    }
    return 0;
  }
  for (const vs_command *c = commands; c->name; c++)
    if (!strcmp(argv[1], c->name)) return c->run(argc - 1, argv + 1);
  fprintf(stderr, "voxshard: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
