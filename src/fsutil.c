#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vs_error.h"

bool vs_fs_mkdir_p(const char *path, GError **err) {
  if (g_mkdir_with_parents(path, 0775) != 0) VS_FAIL_ERRNO(err, false, "cannot create directory", path);
  return true;
}

bool vs_fs_fsync_dir(const char *dir, GError **err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) VS_FAIL_ERRNO(err, false, "cannot open directory", dir);
  if (fsync(fd) != 0 && errno != EINVAL) { /* some filesystems refuse fsync on directories */
    int e = errno;
    close(fd);
    errno = e;
    VS_FAIL_ERRNO(err, false, "fsync of directory failed", dir);
  }
  close(fd);
  return true;
}

char *vs_fs_temp_path(const char *final_path) {
  static gint counter = 0;
  gchar *dir = g_path_get_dirname(final_path);
  gchar *base = g_path_get_basename(final_path);
  char *tmp = g_strdup_printf("%s/.%s.tmp.%ld.%d", dir, base, (long)getpid(),
                              g_atomic_int_add(&counter, 1));
  g_free(dir);
  g_free(base);
  return tmp;
}

bool vs_fs_publish(const char *tmp_path, const char *final_path, GError **err) {
  int fd = open(tmp_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) VS_FAIL_ERRNO(err, false, "cannot open for fsync", tmp_path);
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    VS_FAIL_ERRNO(err, false, "fsync failed", tmp_path);
  }
  close(fd);
  if (rename(tmp_path, final_path) != 0) VS_FAIL_ERRNO(err, false, "rename into place failed", final_path);
  gchar *dir = g_path_get_dirname(final_path);
  bool ok = vs_fs_fsync_dir(dir, err);
  g_free(dir);
  return ok;
}

static bool write_all(int fd, const char *path, const void *data, size_t size, GError **err) {
  const char *p = data;
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      VS_FAIL_ERRNO(err, false, "write failed", path);
    }
    p += n;
    size -= (size_t)n;
  }
  return true;
}

bool vs_fs_write_atomic(const char *final_path, const void *data, size_t size, GError **err) {
  char *tmp = vs_fs_temp_path(final_path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0664);
  if (fd < 0) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot create: %s", tmp, g_strerror(errno));
    g_free(tmp);
    return false;
  }
  bool ok = write_all(fd, tmp, data, size, err);
  if (close(fd) != 0 && ok) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: close failed: %s", tmp, g_strerror(errno));
    ok = false;
  }
  ok = ok && vs_fs_publish(tmp, final_path, err);
  if (!ok) unlink(tmp);
  g_free(tmp);
  return ok;
}

bool vs_fs_append_sync(int fd, const char *path_for_errors, const void *data, size_t size,
                       GError **err) {
  ssize_t n;
  do {
    n = write(fd, data, size);
  } while (n < 0 && errno == EINTR);
  if (n < 0) VS_FAIL_ERRNO(err, false, "append failed", path_for_errors);
  if ((size_t)n != size)
    VS_FAIL(err, VS_ERROR_IO, false, "%s: short append (%zd of %zu bytes)", path_for_errors, n, size);
  if (fdatasync(fd) != 0) VS_FAIL_ERRNO(err, false, "fdatasync failed", path_for_errors);
  return true;
}

bool vs_fs_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}
