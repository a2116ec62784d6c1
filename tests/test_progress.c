/* Progress line arithmetic: hours, percentage, speed as a multiple of real time, ETA. */
#include "progress.h"
#include "vs_test.h"

#include <string.h>

int main(void) {
  /* 1.5 h of 4 h done in 60 s: 90x real time, 2.5 h left at 90x = 100 s. */
  char *s = vs_progress_format("prepare", 5400, 14400, 60, 120, 2);
  CHECK_MSG(
      strcmp(
          s,
          "prepare: 1.50/4.00 h audio (37.5%), 120 utts, 2 failed, 90.0x real time, ETA 0:01:40") ==
          0,
      "%s", s);
  g_free(s);
  /* Nothing done yet: no speed, no ETA. */
  s = vs_progress_format("prepare", 0, 3600, 5, 0, 0);
  CHECK_MSG(strstr(s, "ETA unknown") && strstr(s, "0.00/1.00 h") && !strstr(s, "real time"), "%s",
            s);
  g_free(s);
  /* Slower than real time, long ETA in hours. */
  s = vs_progress_format("prepare", 1800, 36000, 3600, 10, 0);
  CHECK_MSG(strstr(s, "0.5x real time") && strstr(s, "ETA 19:00:00"), "%s", s);
  g_free(s);
  /* Done beyond the planned total (decoded lengths differ from probed ones): capped at 100%. */
  s = vs_progress_format("prepare", 3700, 3600, 10, 5, 0);
  CHECK_MSG(strstr(s, "(100.0%)") && strstr(s, "ETA 0:00:00"), "%s", s);
  g_free(s);
  return vs_test_finish();
}
