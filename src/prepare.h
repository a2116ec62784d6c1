/* `voxshard prepare`: corpus -> Whisper log-mel feature shards (HDF5), across MPI ranks,
 * resumable after a kill with any number of ranks (docs/prepare.md).
 *
 * Exit codes: 0 every utterance succeeded; 3 the job finished but some utterances (or corpus
 * items) failed, see OUT/errors/ and OUT/summary.json; 1 fatal error; 2 bad options.
 */
#ifndef VS_PREPARE_H
#define VS_PREPARE_H

#define VS_PREPARE_EXIT_OK 0
#define VS_PREPARE_EXIT_FATAL 1
#define VS_PREPARE_EXIT_USAGE 2
#define VS_PREPARE_EXIT_SOME_FAILED 3

/* argv[0] is the command name ("prepare"); MPI is initialised and finalised inside. */
int vs_cmd_prepare(int argc, char **argv);

#endif
