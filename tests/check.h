/* A tiny test harness: CHECK records a failure and goes on; main() ends with
 * the summary line "N passed, N failed" that tests/run.sh adds up. */
#ifndef GRAFT_CHECK_H
#define GRAFT_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* How light a suite's default selection is (the zoo suites mark each case
 * with the lowest level that runs it): 1, or 2 under AddressSanitizer, where
 * a case takes 5-10 times as long. */
#ifdef __SANITIZE_ADDRESS__
#define SUITE_QUICK 2
#else
#define SUITE_QUICK 1
#endif

static int check_failures_in_test, check_skipped_in_test;
static int tests_passed, tests_failed, tests_skipped;
static const char *current_test;

/* Leaves the running test, skipped, when the file at `path` cannot be read:
 * the tests may read ../shared (the lesson's photos, the genuine Keras and
 * TF.js models), and the suite must also run without it. A skipped test is
 * counted apart, neither passed nor failed. */
#define NEED_FILE(path)                                                                          \
    do {                                                                                         \
        if (access((path), R_OK) != 0) {                                                         \
            printf("  skip: %s is absent\n", (path));                                            \
            check_skipped_in_test = 1;                                                           \
            return;                                                                              \
        }                                                                                        \
    } while (0)

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            check_failures_in_test++;                                                            \
            fprintf(stderr, "  FAIL %s:%d in %s: %s\n", __FILE__, __LINE__, current_test, #cond); \
        }                                                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                     \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            check_failures_in_test++;                                                            \
            fprintf(stderr, "  FAIL %s:%d in %s: %s: ", __FILE__, __LINE__, current_test, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
        }                                                                                        \
    } while (0)

/* A graft call that must succeed; prints graft_last_error() when it does not. */
#define CHECK_OK(expr)                                                                           \
    do {                                                                                         \
        graft_status s_ = (expr);                                                                \
        CHECK_MSG(s_ == GRAFT_OK, "%s: %s", graft_status_name(s_), graft_last_error());          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                    \
    do {                                                                                         \
        double a_ = (a), b_ = (b);                                                               \
        CHECK_MSG(fabs(a_ - b_) <= (tol), "%.9g vs %.9g (tol %g)", a_, b_, (double)(tol));       \
    } while (0)

#define RUN(fn)                                                                                  \
    do {                                                                                         \
        current_test = #fn;                                                                      \
        check_failures_in_test = check_skipped_in_test = 0;                                      \
        fn();                                                                                    \
        if (check_failures_in_test) {                                                            \
            tests_failed++;                                                                      \
            fprintf(stderr, "not ok - %s\n", #fn);                                               \
        } else if (check_skipped_in_test) {                                                      \
            tests_skipped++;                                                                     \
            printf("skip - %s\n", #fn);                                                          \
        } else {                                                                                 \
            tests_passed++;                                                                      \
            printf("ok - %s\n", #fn);                                                            \
        }                                                                                        \
        fflush(stdout);                                                                          \
    } while (0)

#define CHECK_SUMMARY()                                                                          \
    ((tests_skipped ? printf("%d skipped (files absent)\n", tests_skipped) : 0),                  \
     printf("%d passed, %d failed\n", tests_passed, tests_failed), tests_failed ? 1 : 0)

/* Max |a-b| / (atol + rtol*|b|) over n values: <= 1 means close. */
static inline double check_close_ratio(const float *a, const float *b, size_t n, double atol,
                                       double rtol, size_t *worst)
{
    double r = 0;
    for (size_t i = 0; i < n; i++) {
        double q = fabs((double)a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(q <= r)) { /* NaN counts as worst */
            r = isnan(q) ? INFINITY : q;
            if (worst) *worst = i;
        }
    }
    return r;
}

#endif
