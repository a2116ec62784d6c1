// CUDA device discovery (kernels/gpu.h). Errors from the runtime mean "no GPU here", never a
// failure: the program then runs on the CPU.
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "gpu.h"
}

extern "C" int vs_gpu_count(char *why_none, size_t why_none_size) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why_none && why_none_size) snprintf(why_none, why_none_size, "%s", cudaGetErrorString(e));
    cudaGetLastError(); // clear the sticky error so later probes start clean
    return 0;
  }
  if (n == 0 && why_none && why_none_size) snprintf(why_none, why_none_size, "no CUDA device");
  return n;
}

extern "C" bool vs_gpu_info_get(int device, vs_gpu_info *info) {
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return false;
  memset(info, 0, sizeof *info);
  snprintf(info->name, sizeof info->name, "%s", p.name);
  info->compute_major = p.major;
  info->compute_minor = p.minor;
  info->multiprocessors = p.multiProcessorCount;
  info->total_memory_bytes = p.totalGlobalMem;
  return true;
}

extern "C" int vs_gpu_select_for_rank(int node_local_rank) {
  int n = vs_gpu_count(NULL, 0);
  if (n <= 0) return -1;
  int dev = node_local_rank % n;
  if (cudaSetDevice(dev) != cudaSuccess) return -1;
  return dev;
}

extern "C" bool vs_gpu_built(void) { return true; }
