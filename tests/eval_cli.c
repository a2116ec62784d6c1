/* vs_eval_cli: `voxshard eval` as a stand-alone program, for tests (the voxshard program wires
 * the same vs_cmd_eval into its command table). */
#include "eval.h"

int main(int argc, char **argv) {
  return vs_cmd_eval(argc, argv);
}
