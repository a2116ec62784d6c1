/* Logging: one line per event, prefixed with time, host and rank.
 *
 * Logs carry metadata only (ids, durations, counts, error codes): never transcript text or
 * audio, which are personal data. Callers are responsible for that; this module just formats.
 */
#ifndef VS_LOG_H
#define VS_LOG_H

#include <stdarg.h>

typedef enum { VS_LOG_DEBUG = 0, VS_LOG_INFO, VS_LOG_WARN, VS_LOG_ERROR } vs_log_level;

/* Called once MPI is up so that every line names its rank; before that, rank -1 is printed as "-". */
void vs_log_set_rank(int rank, int world);
void vs_log_set_level(vs_log_level level);
vs_log_level vs_log_get_level(void);
/* Parses "debug|info|warn|error"; returns -1 on an unknown name. */
int vs_log_level_from_name(const char *name);
const char *vs_log_hostname(void);

void vs_log(vs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vs_logv(vs_log_level level, const char *fmt, va_list ap);

#define vs_debug(...) vs_log(VS_LOG_DEBUG, __VA_ARGS__)
#define vs_info(...) vs_log(VS_LOG_INFO, __VA_ARGS__)
#define vs_warn(...) vs_log(VS_LOG_WARN, __VA_ARGS__)
#define vs_error(...) vs_log(VS_LOG_ERROR, __VA_ARGS__)

#endif
