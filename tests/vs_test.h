/* A minimal test harness: each CHECK counts, failures print file:line and go on, and the
 * program ends with the plain "N passed, N failed" line and a non-zero exit on any failure. */
#ifndef VS_TEST_H
#define VS_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int vs_test_passed_ = 0, vs_test_failed_ = 0;

#define CHECK(cond)                                                                           \
  do {                                                                                        \
    if (cond) {                                                                               \
      vs_test_passed_++;                                                                      \
    } else {                                                                                  \
      vs_test_failed_++;                                                                      \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                         \
    }                                                                                         \
  } while (0)

#define CHECK_MSG(cond, ...)                                                                  \
  do {                                                                                        \
    if (cond) {                                                                               \
      vs_test_passed_++;                                                                      \
    } else {                                                                                  \
      vs_test_failed_++;                                                                      \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                         \
      fprintf(stderr, __VA_ARGS__);                                                           \
      fputc('\n', stderr);                                                                    \
    }                                                                                         \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                 \
  CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %g)", (double)(a),   \
            (double)(b), (double)(tol))

static inline int vs_test_finish(void) {
  printf("%d passed, %d failed\n", vs_test_passed_, vs_test_failed_);
  return vs_test_failed_ ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
