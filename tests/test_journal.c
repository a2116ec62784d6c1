/* Journal: records survive a reload, a torn last line is skipped and cut off before the next
 * append, journals of several ranks (and runs with different world sizes) are merged, shards no
 * journal references are removed as orphans, and a listed shard that went missing is redone. */
#include "fsutil.h"
#include "journal.h"
#include "vs_error.h"
#include "vs_test.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

static void touch(const char *out, const char *rel) {
  char *p = g_build_filename(out, rel, NULL);
  GError *err = NULL;
  VS_GERROR_CHECK(vs_fs_write_atomic(p, "x", 1, &err), err);
  g_free(p);
}

static bool exists(const char *out, const char *rel) {
  char *p = g_build_filename(out, rel, NULL);
  bool e = vs_fs_exists(p);
  g_free(p);
  return e;
}

static void append_raw(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_APPEND);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) VS_DIE("append %s", path);
  close(fd);
}

static char *read_all(const char *path) {
  char *data = NULL;
  if (!g_file_get_contents(path, &data, NULL, NULL)) VS_DIE("read %s", path);
  return data;
}

int main(void) {
  GError *err = NULL;
  char *out = g_dir_make_tmp("vs-journal-XXXXXX", NULL);
  char *shards = g_build_filename(out, "shards", NULL);
  VS_GERROR_CHECK(vs_fs_mkdir_p(shards, &err), err);

  /* Empty output: nothing done, run 0. */
  vs_journal_state *s = vs_journal_load(out, &err);
  CHECK(s != NULL);
  CHECK(vs_journal_n_done(s) == 0 && vs_journal_max_run(s) == 0);
  vs_journal_state_free(s);

  /* Run 1 with 2 ranks. */
  vs_journal *j0 = vs_journal_open(out, 0, 1, 2, &err);
  vs_journal *j1 = vs_journal_open(out, 1, 1, 2, &err);
  VS_GERROR_CHECK(j0 && j1, err);
  const char *ids_a[] = {"utt-a", "utt-b"}, *ids_b[] = {"utt-c"}, *ids_c[] = {"utt-d", "utt-e"};
  double d_a[] = {1.5, 2.0}, d_b[] = {3.25}, d_c[] = {1, 1};
  int64_t f_a[] = {151, 201}, f_b[] = {326}, f_c[] = {101, 101};
  touch(out, "shards/shard-run0001-r00000-000001.h5");
  CHECK(
      vs_journal_add_shard(j0, "shards/shard-run0001-r00000-000001.h5", ids_a, d_a, f_a, 2, &err));
  touch(out, "shards/shard-run0001-r00001-000001.h5");
  CHECK(
      vs_journal_add_shard(j1, "shards/shard-run0001-r00001-000001.h5", ids_b, d_b, f_b, 1, &err));
  CHECK(vs_journal_add_failure(j1, "utt-x", "bad.wav", VS_ERROR_FORMAT,
                               "bad.wav: not audio \"quoted\"\n", &err));
  /* Published but killed before its journal line: an orphan. */
  touch(out, "shards/shard-run0001-r00001-000002.h5");
  touch(out, "shards/.shard-run0001-r00000-000002.h5.tmp.123.0"); /* killed mid-write */
  /* Killed in the middle of an append: a torn line. */
  append_raw(vs_journal_path(j0),
             "{\"type\":\"shard\",\"run\":1,\"rank\":0,\"shard\":\"shards/x.h5\",\"ids\":[\"utt-");
  char *path0 = g_strdup(vs_journal_path(j0));
  vs_journal_close(j0);
  vs_journal_close(j1);

  s = vs_journal_load(out, &err);
  VS_GERROR_CHECK(s, err);
  CHECK(vs_journal_n_done(s) == 3);
  CHECK(vs_journal_is_done(s, "utt-a") && vs_journal_is_done(s, "utt-b") &&
        vs_journal_is_done(s, "utt-c"));
  CHECK(!vs_journal_is_done(s, "utt-x") && !vs_journal_is_done(s, "utt-d"));
  CHECK(vs_journal_n_torn(s) == 1);
  CHECK(vs_journal_n_corrupt(s) == 0);
  CHECK(vs_journal_max_run(s) == 1);
  CHECK(vs_journal_n_shards(s) == 2);
  size_t si = 99, row = 99;
  CHECK(vs_journal_lookup(s, "utt-b", &si, &row));
  const vs_journal_shard *sh = vs_journal_shard_at(s, si);
  CHECK(sh && row == 1 && strcmp(sh->ids[row], "utt-b") == 0);
  CHECK(sh && sh->durations_s[1] == 2.0 && sh->n_frames[1] == 201 && sh->rank == 0 && sh->run == 1);
  CHECK(vs_journal_n_failures(s) == 1);
  const vs_journal_failure *f = vs_journal_failure_at(s, 0);
  CHECK(f && !strcmp(f->id, "utt-x") && !strcmp(f->code, "format") &&
        !strcmp(f->source, "bad.wav") && !strcmp(f->reason, "bad.wav: not audio \"quoted\"\n"));

  size_t removed = 0;
  CHECK(vs_journal_remove_orphans(s, out, &removed, &err));
  CHECK(removed == 2);
  CHECK(!exists(out, "shards/shard-run0001-r00001-000002.h5"));
  CHECK(!exists(out, "shards/.shard-run0001-r00000-000002.h5.tmp.123.0"));
  CHECK(exists(out, "shards/shard-run0001-r00000-000001.h5"));
  CHECK(exists(out, "shards/shard-run0001-r00001-000001.h5"));
  vs_journal_state_free(s);

  /* Run 2 with 3 ranks: reopening rank 0 cuts the torn tail so the new record is not glued to it.
   */
  j0 = vs_journal_open(out, 0, 2, 3, &err);
  vs_journal *j2 = vs_journal_open(out, 2, 2, 3, &err);
  VS_GERROR_CHECK(j0 && j2, err);
  char *text = read_all(path0);
  CHECK(strstr(text, "\"ids\":[\"utt-\n") == NULL && strstr(text, "[\"utt-{") == NULL);
  CHECK(text[strlen(text) - 1] == '\n');
  g_free(text);
  touch(out, "shards/shard-run0002-r00002-000001.h5");
  CHECK(
      vs_journal_add_shard(j2, "shards/shard-run0002-r00002-000001.h5", ids_c, d_c, f_c, 2, &err));
  /* The failed utterance succeeded on the retry. */
  const char *ids_x[] = {"utt-x"};
  double d_x[] = {0.5};
  int64_t f_x[] = {51};
  touch(out, "shards/shard-run0002-r00000-000001.h5");
  CHECK(
      vs_journal_add_shard(j0, "shards/shard-run0002-r00000-000001.h5", ids_x, d_x, f_x, 1, &err));
  vs_journal_close(j0);
  vs_journal_close(j2);

  /* A shard listed in the journal but deleted by someone: its ids are not done any more. */
  char *gone = g_build_filename(out, "shards/shard-run0001-r00001-000001.h5", NULL);
  g_unlink(gone);
  g_free(gone);

  s = vs_journal_load(out, &err);
  VS_GERROR_CHECK(s, err);
  CHECK(vs_journal_n_torn(s) == 0);
  CHECK(vs_journal_max_run(s) == 2);
  CHECK(vs_journal_n_missing(s) == 1);
  CHECK(!vs_journal_is_done(s, "utt-c"));
  CHECK(vs_journal_is_done(s, "utt-d") && vs_journal_is_done(s, "utt-e") &&
        vs_journal_is_done(s, "utt-x"));
  CHECK(vs_journal_n_done(s) == 5);
  CHECK(vs_journal_n_failures(s) == 0); /* utt-x is done now */
  CHECK(vs_journal_n_shards(s) == 3);
  /* Sorted by file name, whatever order the ranks wrote. */
  CHECK(strcmp(vs_journal_shard_at(s, 0)->file, vs_journal_shard_at(s, 1)->file) < 0);
  vs_journal_state_free(s);

  /* A torn line in the middle (not the last) is corruption: counted, the rest still read. */
  char *path2 = g_build_filename(out, "journal", "rank-00002.jsonl", NULL);
  char *t2 = read_all(path2);
  char *broken = g_strconcat("{\"type\":\"shard\",\"ru\n", t2, NULL);
  VS_GERROR_CHECK(g_file_set_contents(path2, broken, -1, &err), err);
  s = vs_journal_load(out, &err);
  VS_GERROR_CHECK(s, err);
  CHECK(vs_journal_n_corrupt(s) == 1 && vs_journal_n_torn(s) == 0);
  CHECK(vs_journal_is_done(s, "utt-d"));
  vs_journal_state_free(s);
  g_free(t2);
  g_free(broken);
  g_free(path2);

  /* An unreadable journal folder entry is an error naming it. */
  char *jdir = g_build_filename(out, "journal", "rank-00009.jsonl", NULL);
  g_mkdir(jdir, 0755);
  s = vs_journal_load(out, &err);
  CHECK(s == NULL && err && strstr(err->message, "rank-00009.jsonl"));
  g_clear_error(&err);
  g_rmdir(jdir);
  g_free(jdir);

  g_free(path0);
  g_free(shards);
  char *cmd = g_strdup_printf("rm -rf '%s'", out);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", out);
  g_free(cmd);
  g_free(out);
  return vs_test_finish();
}
