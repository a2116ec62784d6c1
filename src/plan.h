/* Sharding plan: which rank processes which utterance. The only place that knows the world size.
 *
 * Ranks receive equal total audio duration, not equal counts: longest-processing-time-first
 * over (duration desc, id asc), each to the least loaded rank; ties go to the rank holding fewer
 * utterances, then to the lowest rank (so zero-duration utterances spread round-robin rather than
 * all landing on rank 0). Negative, NaN or infinite durations count as 0. The result
 * depends only on the (id, duration) list and the world size, so every rank computes the same
 * plan independently.
 */
#ifndef VS_PLAN_H
#define VS_PLAN_H

#include <stddef.h>

/* rank_of[i] receives the rank of utterance i; load_s (optional, world entries) the seconds per
 * rank. world < 1 is treated as 1. */
void vs_plan_assign(const char *const *ids, const double *durations_s, size_t n, int world,
                    int *rank_of, double *load_s);

#endif
