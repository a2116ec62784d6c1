/* Test driver: `vs_prepare_cli ARGS` runs `voxshard prepare ARGS` without the full program, so the
 * prepare tests do not depend on which commands src/main.c wires in. */
#include "prepare.h"

int main(int argc, char **argv) {
  return vs_cmd_prepare(argc, argv);
}
