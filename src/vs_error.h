/* Errors and fail-fast checks shared by every module.
 *
 * Library code reports failure through GLib's GError (domain VS_ERROR) and returns false/NULL:
 * only a program's main() decides to exit. The *_CHECK macros are for top-level programs and
 * tests, where the right reaction to a library failure is to stop with file:line and the
 * library's own message. The *_TRY macros are for library code: they set the GError and return.
 */
#ifndef VS_ERROR_H
#define VS_ERROR_H

#include <errno.h>
#include <glib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VS_ERROR (vs_error_quark())
GQuark vs_error_quark(void);

typedef enum {
  VS_ERROR_IO = 1,    /* open/read/write/fsync/rename failed: message has path and strerror */
  VS_ERROR_FORMAT,    /* the bytes are not what the format says (audio, tar, JSON, model) */
  VS_ERROR_CONFIG,    /* unknown option or bad value */
  VS_ERROR_AUDIO,     /* decodable file that holds no usable audio (empty, zero samples) */
  VS_ERROR_MODEL,     /* missing, truncated or mismatched tensor */
  VS_ERROR_MPI,
  VS_ERROR_HDF5,
  VS_ERROR_CUDA,
  VS_ERROR_UNSUPPORTED,
  VS_ERROR_INTERNAL,
} vs_error_code;

/* Short stable name of a code, for errors files and summaries ("io", "format", ...). */
const char *vs_error_code_name(int code);

/* Library code: set *err (when err != NULL) and return `ret`. */
#define VS_FAIL(err, code, ret, ...)                                                          \
  do {                                                                                        \
    g_set_error((err), VS_ERROR, (code), __VA_ARGS__);                                        \
    return ret;                                                                               \
  } while (0)

/* Library code: an errno-setting libc call failed on `path`. */
#define VS_FAIL_ERRNO(err, ret, what, path)                                                   \
  do {                                                                                        \
    int vs_saved_errno_ = errno;                                                              \
    g_set_error((err), VS_ERROR, VS_ERROR_IO, "%s: %s: %s", (path), (what),                   \
                g_strerror(vs_saved_errno_));                                                 \
    return ret;                                                                               \
  } while (0)

/* Top-level programs and tests: stop at once with where and why. */
#define VS_DIE(...)                                                                           \
  do {                                                                                        \
    fprintf(stderr, "[voxshard] fatal at %s:%d: ", __FILE__, __LINE__);                       \
    fprintf(stderr, __VA_ARGS__);                                                             \
    fputc('\n', stderr);                                                                      \
    exit(EXIT_FAILURE);                                                                       \
  } while (0)

/* Top-level: a call that filled a GError *local must have succeeded. */
#define VS_GERROR_CHECK(ok, gerr)                                                             \
  do {                                                                                        \
    if (!(ok)) VS_DIE("%s", (gerr) ? (gerr)->message : "unknown error");                      \
  } while (0)

#define VS_IO_CHECK(call)                                                                     \
  do {                                                                                        \
    if ((call) < 0) VS_DIE("%s: %s", #call, g_strerror(errno));                               \
  } while (0)

#endif
