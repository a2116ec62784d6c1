/* Output writers: timestamps (0, ties, > 1 h), SRT/VTT/JSONL written then parsed back, unicode,
 * sanitising of "-->" and blank lines, truncated JSONL detected, atomic per-file outputs.
 *
 * usage: test_outputs WORKDIR
 */
#include "outputs.h"
#include "vs_error.h"
#include "vs_test.h"

#include <math.h>
#include <string.h>

static void ts(double s, char sep, const char *want) {
  char buf[32];
  vs_out_format_timestamp(s, sep, buf);
  CHECK_MSG(!strcmp(buf, want), "%.6f -> %s, want %s", s, buf, want);
}

static void timestamps(void) {
  ts(0, ',', "00:00:00,000");
  ts(0, '.', "00:00:00.000");
  ts(59.9995, ',', "00:01:00,000"); /* 59999.5 ms: tie to even */
  ts(1.0005, ',', "00:00:01,000");  /* 1000.5 ms: tie to even, as Python's round() */
  ts(0.0015, ',', "00:00:00,002");
  ts(59.9994, ',', "00:00:59,999");
  ts(3599.9996, '.', "01:00:00.000");
  ts(3723.456, ',', "01:02:03,456");
  ts(360000.25, '.', "100:00:00.250");
  ts(-3, ',', "00:00:00,000");
  ts(NAN, ',', "00:00:00,000");
}

static vs_out_transcript *sample(void) {
  vs_out_transcript *t = g_new0(vs_out_transcript, 1);
  t->id = g_strdup("talk_01");
  t->source = g_strdup("/data/talk 01.flac");
  t->language = g_strdup("en");
  t->duration_s = 4000.5;
  t->n_segs = 4;
  t->segs = g_new0(vs_out_segment, 4);
  const char *texts[] = {"  Héllo wörld — 日本語 😀 ", "a --> b\n\n  second line  ", "   ",
                         "Tom & <Jerry>"};
  double starts[] = {0, 59.9995, 70, 3661.5};
  for (int i = 0; i < 4; i++) {
    vs_out_segment *s = &t->segs[i];
    s->start_s = starts[i];
    s->end_s = starts[i] + 2.25;
    s->text = g_strdup(texts[i]);
    s->avg_logprob = -0.5 * i;
    s->no_speech_prob = 0.01;
    s->compression_ratio = 1.5;
    s->temperature = i == 1 ? NAN : 0.0;
  }
  t->segs[0].n_tokens = 3;
  t->segs[0].tokens = g_new(int32_t, 3);
  t->segs[0].tokens[0] = 50364;
  t->segs[0].tokens[1] = 2425;
  t->segs[0].tokens[2] = -1;
  t->segs[3].n_words = 2;
  t->segs[3].words = g_new0(vs_out_word, 2);
  t->segs[3].words[0] = (vs_out_word){3661.5, 3662.0, g_strdup("Tom"), 0.9};
  t->segs[3].words[1] = (vs_out_word){3662.0, 3663.75, g_strdup("&"), NAN};
  return t;
}

static void subtitles(void) {
  vs_out_transcript *t = sample();
  char *srt = vs_out_srt_string(t);
  CHECK(g_str_has_prefix(srt, "1\n00:00:00,000 --> 00:00:02,250\nHéllo wörld — 日本語 😀\n\n2\n"
                              "00:01:00,000 --> 00:01:02,250\na -> b\nsecond line\n\n3\n"
                              "01:01:01,500 --> 01:01:03,750\nTom & <Jerry>\n\n"));
  GError *err = NULL;
  vs_out_transcript *back = vs_out_parse_subtitles(srt, "srt", &err);
  VS_GERROR_CHECK(back, err);
  CHECK(back->n_segs == 3); /* the blank segment is skipped, numbering stays 1..3 */
  CHECK(!strcmp(back->segs[0].text, "Héllo wörld — 日本語 😀"));
  CHECK(!strcmp(back->segs[1].text, "a -> b\nsecond line"));
  CHECK_NEAR(back->segs[1].start_s, 60.0, 1e-9);
  CHECK_NEAR(back->segs[2].end_s, 3663.75, 1e-9);
  vs_out_transcript_free(back);

  char *vtt = vs_out_vtt_string(t);
  CHECK(g_str_has_prefix(vtt, "WEBVTT\n\n00:00:00.000 --> 00:00:02.250\n"));
  CHECK(strstr(vtt, "Tom &amp; &lt;Jerry&gt;\n") != NULL);
  back = vs_out_parse_subtitles(vtt, "vtt", &err);
  VS_GERROR_CHECK(back, err);
  CHECK(back->n_segs == 3 && !strcmp(back->segs[2].text, "Tom & <Jerry>"));
  CHECK_NEAR(back->segs[2].start_s, 3661.5, 1e-9);
  vs_out_transcript_free(back);

  back = vs_out_parse_subtitles("1\n00:00:01,000 -> 00:00:02,000\nx\n", "bad.srt", &err);
  CHECK(!back && err && strstr(err->message, "bad.srt"));
  g_clear_error(&err);
  g_free(srt);
  g_free(vtt);
  vs_out_transcript_free(t);
}

static void jsonl_and_files(const char *dir) {
  vs_out_transcript *t = sample();
  GError *err = NULL;
  VS_GERROR_CHECK(vs_out_write_file_outputs(dir, t, NULL, &err), err);
  char *path = g_build_filename(dir, "talk_01.jsonl", NULL);
  vs_out_transcript *back = vs_out_read_jsonl(path, &err);
  VS_GERROR_CHECK(back, err);
  CHECK(!strcmp(back->id, "talk_01") && !strcmp(back->source, "/data/talk 01.flac"));
  CHECK(!strcmp(back->language, "en") && back->speaker == NULL);
  CHECK_NEAR(back->duration_s, 4000.5, 0);
  CHECK(back->n_segs == 4);
  for (size_t i = 0; i < 4 && back->n_segs == 4; i++) {
    CHECK(!strcmp(back->segs[i].text, t->segs[i].text)); /* JSON keeps text verbatim */
    CHECK(back->segs[i].start_s == t->segs[i].start_s && back->segs[i].end_s == t->segs[i].end_s);
    CHECK(back->segs[i].avg_logprob == t->segs[i].avg_logprob);
  }
  CHECK(isnan(back->segs[1].temperature));
  CHECK(back->segs[0].n_tokens == 3 && back->segs[0].tokens[2] == -1);
  CHECK(back->segs[3].n_words == 2 && !strcmp(back->segs[3].words[1].word, "&") &&
        isnan(back->segs[3].words[1].prob));
  vs_out_transcript_free(back);
  for (const char *ext = "srt"; ext; ext = !strcmp(ext, "srt") ? "vtt" : NULL) {
    char *name = g_strconcat("talk_01.", ext, NULL), *p = g_build_filename(dir, name, NULL);
    CHECK(g_file_test(p, G_FILE_TEST_IS_REGULAR));
    g_free(name);
    g_free(p);
  }
  /* no temp files left behind */
  GDir *d = g_dir_open(dir, 0, NULL);
  const char *n;
  int hidden = 0;
  while ((n = g_dir_read_name(d)))
    hidden += n[0] == '.';
  g_dir_close(d);
  CHECK(hidden == 0);

  /* a file cut short (no "end" record) and a broken line are errors naming file and line */
  char *data = NULL;
  CHECK(g_file_get_contents(path, &data, NULL, NULL));
  char *last = g_strrstr(data, "{\"type\":\"end\"");
  CHECK(last != NULL);
  if (last) *last = 0;
  char *cut = g_build_filename(dir, "cut.jsonl", NULL);
  CHECK(g_file_set_contents(cut, data, -1, NULL));
  back = vs_out_read_jsonl(cut, &err);
  CHECK(!back && err && strstr(err->message, cut) && strstr(err->message, "cut short"));
  g_clear_error(&err);
  char *broken = g_strconcat(data, "{not json\n", NULL);
  CHECK(g_file_set_contents(cut, broken, -1, NULL));
  back = vs_out_read_jsonl(cut, &err);
  CHECK(!back && err && strstr(err->message, ":6:"));
  g_clear_error(&err);

  /* CTM: words spread evenly over a segment without word timings; word timings used as given */
  const vs_out_transcript *files[] = {t};
  char *ctm = vs_out_ctm_string(files, 1);
  CHECK(g_str_has_prefix(ctm, "talk_01 1 0.000 0.450 Héllo 1.0000\n"
                              "talk_01 1 0.450 0.450 wörld 1.0000\n"));
  CHECK(strstr(ctm, "talk_01 1 3661.500 0.500 Tom 0.9000\n") != NULL);
  CHECK(strstr(ctm, "talk_01 1 3662.000 1.750 & 0.2231\n") != NULL); /* exp(-1.5) */
  char *stm = vs_out_stm_string(files, 1);
  CHECK(strstr(stm, "talk_01 1 talk_01 59.999 62.249 a --> b second line\n") != NULL);
  g_free(ctm);
  g_free(stm);

  vs_out_transcript bad = {.id = "../x"};
  CHECK(!vs_out_write_file_outputs(dir, &bad, NULL, &err) && strstr(err->message, "../x"));
  g_clear_error(&err);
  CHECK(!vs_out_write_file_outputs(dir, t, "jsonl,txt", &err) && strstr(err->message, "txt"));
  g_clear_error(&err);
  g_free(broken);
  g_free(data);
  g_free(cut);
  g_free(path);
  vs_out_transcript_free(t);
}

int main(int argc, char **argv) {
  if (argc < 2) VS_DIE("usage: test_outputs WORKDIR");
  if (g_mkdir_with_parents(argv[1], 0775) != 0) VS_DIE("cannot create %s", argv[1]);
  timestamps();
  subtitles();
  jsonl_and_files(argv[1]);
  return vs_test_finish();
}
