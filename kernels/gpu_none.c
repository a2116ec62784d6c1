/* kernels/gpu.h for builds without a CUDA toolkit: there is never a device. */
#include <stdio.h>

#include "gpu.h"

int vs_gpu_count(char *why_none, size_t why_none_size) {
  if (why_none && why_none_size) snprintf(why_none, why_none_size, "built without CUDA");
  return 0;
}
bool vs_gpu_info_get(int device, vs_gpu_info *info) { return false; }
int vs_gpu_select_for_rank(int node_local_rank) { return -1; }
bool vs_gpu_built(void) { return false; }
