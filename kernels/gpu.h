/* GPU discovery. A binary built with CUDA runs on the CPU when no device (or no driver) is
 * found: every function here answers "none" rather than failing in that case. Built without
 * CUDA, the same functions exist and always answer "none". */
#ifndef VS_GPU_H
#define VS_GPU_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char name[256];
  int compute_major, compute_minor;
  int multiprocessors;
  size_t total_memory_bytes;
} vs_gpu_info;

/* Number of usable CUDA devices; 0 without a driver or a device. `why_none` (optional) receives
 * the CUDA runtime's reason when it is 0. */
int vs_gpu_count(char *why_none, size_t why_none_size);
bool vs_gpu_info_get(int device, vs_gpu_info *info);

/* One rank per GPU: the device for a node-local rank (node_local_rank % count), made current.
 * Returns -1 (CPU) when there is no device. */
int vs_gpu_select_for_rank(int node_local_rank);

/* Whether this binary was built with the CUDA backend. */
bool vs_gpu_built(void);

#endif
