/* Filesystem helpers for outputs that must survive a crash: every output is written to a temp
 * file in the destination folder, fsynced, renamed into place, and the folder is fsynced, so a
 * reader sees either nothing or the whole file, and a rerun never sees a half-written one.
 */
#ifndef VS_FSUTIL_H
#define VS_FSUTIL_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

/* mkdir -p; existing directories are fine. */
bool vs_fs_mkdir_p(const char *path, GError **err);

/* fsync a directory so that a rename or a create inside it is durable. */
bool vs_fs_fsync_dir(const char *dir, GError **err);

/* A temp path next to `final_path` (same folder, so rename is atomic): "<dir>/.<base>.tmp.<pid>.<n>". */
char *vs_fs_temp_path(const char *final_path);

/* fsync `tmp_path`, rename it onto `final_path`, fsync the folder. */
bool vs_fs_publish(const char *tmp_path, const char *final_path, GError **err);

/* Whole-file write with the above protocol. */
bool vs_fs_write_atomic(const char *final_path, const void *data, size_t size, GError **err);

/* Appends one record to an append-only file and fsyncs it (journals). The record is written with
 * a single write() so that a crash leaves at worst a torn last line, which readers must skip. */
bool vs_fs_append_sync(int fd, const char *path_for_errors, const void *data, size_t size,
                       GError **err);

/* Whether a path exists (any type). */
bool vs_fs_exists(const char *path);

#endif
