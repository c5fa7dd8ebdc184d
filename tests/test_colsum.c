/* Per-column sums (src/core/colsum.c): every kind within 1e-6 of a plain
 * double loop (relative to the sum of the terms' magnitudes: sums that
 * cancel lose digits in any order of addition) over awkward sizes (rows off
 * the 32-row block, one row, columns off the vector width and past the stack
 * tile), the ReLU mask written in place, and bits that depend on the number
 * of parts only, not on the threads. */
#include "check.h"
#include "core/colsum.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static unsigned rng_state = 12345;

/* Uniform in [lo, hi), from a fixed LCG: the same data every run. */
static float uniform(float lo, float hi)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(rng_state >> 8) / (float)(1u << 24);
}

static float *fill(size_t n, float lo, float hi)
{
    float *a = malloc(n * sizeof(float));
    for (size_t i = 0; i < n && a; i++)
        a[i] = uniform(lo, hi);
    return a;
}

static const graft_colsum_kind kinds[] = {GRAFT_COLSUM_PLAIN, GRAFT_COLSUM_RELU,
                                          GRAFT_COLSUM_MOMENTS, GRAFT_COLSUM_PRODUCT};

/* Per column: the two sums in double, one element at a time, and the sums of
 * the terms' magnitudes that bound the error of any order of addition. */
static void reference(graft_colsum_kind kind, const float *x, const float *y, const float *m,
                      size_t rows, int C, double *s, double *mag)
{
    memset(s, 0, 2 * (size_t)C * sizeof(double));
    memset(mag, 0, 2 * (size_t)C * sizeof(double));
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) {
            size_t i = r * (size_t)C + (size_t)c;
            double t0 = 0, t1 = 0;
            switch (kind) {
            case GRAFT_COLSUM_PLAIN: t0 = x[i]; break;
            case GRAFT_COLSUM_RELU: t0 = y[i] > 0 ? x[i] : 0; break;
            case GRAFT_COLSUM_MOMENTS:
                t0 = (double)x[i] - m[c];
                t1 = t0 * t0;
                break;
            case GRAFT_COLSUM_PRODUCT:
                t0 = y[i];
                t1 = ((double)x[i] - m[c]) * y[i];
                break;
            }
            s[c] += t0;
            s[C + c] += t1;
            mag[c] += fabs(t0);
            mag[C + c] += fabs(t1);
        }
}

static void test_matches_double_reference(void)
{
    const size_t row_counts[] = {1, 5, 31, 32, 33, 95, 1000};
    const int col_counts[] = {1, 3, 8, 13, 37, 600};
    const int part_counts[] = {1, 3, 64};
    double worst_seen = 0;
    for (size_t ri = 0; ri < sizeof row_counts / sizeof *row_counts; ri++)
        for (size_t ci = 0; ci < sizeof col_counts / sizeof *col_counts; ci++) {
            const size_t rows = row_counts[ri];
            const int C = col_counts[ci];
            const size_t n = rows * (size_t)C;
            float *x = fill(n, -1.0f, 3.0f), *y = fill(n, -0.5f, 2.0f);
            float *m = fill((size_t)C, -0.5f, 0.5f), *out = malloc(n * sizeof(float));
            double *s = malloc(2 * (size_t)C * sizeof(double));
            double *mag = malloc(2 * (size_t)C * sizeof(double));
            double *part =
                malloc(graft_colsum_doubles(GRAFT_COLSUM_PRODUCT, 64, C) * sizeof(double));
            CHECK(x && y && m && out && s && mag && part);
            if (!(x && y && m && out && s && mag && part)) goto next;
            for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
                reference(kinds[k], x, y, m, rows, C, s, mag);
                const int two =
                    kinds[k] == GRAFT_COLSUM_MOMENTS || kinds[k] == GRAFT_COLSUM_PRODUCT;
                for (size_t pi = 0; pi < sizeof part_counts / sizeof *part_counts; pi++) {
                    int parts = part_counts[pi] < (int)rows ? part_counts[pi] : (int)rows;
                    graft_colsums(kinds[k], x, y, m, out, rows, C, parts, part);
                    double worst = 0;
                    for (int w = 0; w <= two; w++)
                        for (int c = 0; c < C; c++) {
                            double e = fabs(part[w * C + c] - s[w * C + c]);
                            double q = e / (1e-6 * mag[w * C + c] + 1e-30);
                            if (q > worst) worst = q;
                        }
                    if (worst > worst_seen) worst_seen = worst;
                    CHECK_MSG(worst <= 1,
                              "kind %d rows %zu C %d parts %d: error %.3g x 1e-6 of |terms|",
                              (int)kinds[k], rows, C, parts, worst);
                }
            }
        next:
            free(x), free(y), free(m), free(out), free(s), free(mag), free(part);
        }
    printf("# worst error: %.3g x 1e-6 of the sum of |terms|\n", worst_seen);
}

static void test_relu_masks_in_place(void)
{
    const size_t rows = 77;
    const int C = 19;
    const size_t n = rows * (size_t)C;
    float *x = fill(n, -1.0f, 1.0f), *y = fill(n, -1.0f, 1.0f), *d = malloc(n * sizeof(float));
    double *part = malloc(graft_colsum_doubles(GRAFT_COLSUM_RELU, 4, C) * sizeof(double));
    CHECK(x && y && d && part);
    if (x && y && d && part) {
        y[0] = NAN; /* not > 0: masked */
        x[1] = NAN; /* kept where y > 0 */
        y[1] = 1.0f;
        y[2] = 0.0f; /* the boundary is masked */
        memcpy(d, x, n * sizeof(float));
        graft_colsums(GRAFT_COLSUM_RELU, d, y, NULL, d, rows, C, 4, part);
        bool same = true;
        for (size_t i = 0; i < n; i++) {
            float want = y[i] > 0 ? x[i] : 0.0f;
            if (!(d[i] == want || (isnan(d[i]) && isnan(want)))) same = false;
        }
        CHECK(same);
        CHECK(d[0] == 0.0f && isnan(d[1]) && d[2] == 0.0f);
        CHECK(isnan(part[1]) && !isnan(part[0]) && !isnan(part[2]));
    }
    free(x), free(y), free(d), free(part);
}

static void test_bits_depend_on_parts_only(void)
{
    const size_t rows = 1000;
    const int C = 45, parts = 7;
    const size_t n = rows * (size_t)C;
    float *x = fill(n, -1.0f, 3.0f), *y = fill(n, -1.0f, 1.0f), *m = fill((size_t)C, 0, 1);
    const size_t nd = graft_colsum_doubles(GRAFT_COLSUM_PRODUCT, parts, C);
    double *a = malloc(nd * sizeof(double)), *b = malloc(nd * sizeof(double));
    CHECK(x && y && m && a && b);
    if (x && y && m && a && b) {
        const int was = graft_threads_get();
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
            if (kinds[k] == GRAFT_COLSUM_RELU) continue; /* writes its input */
            graft_threads_set(1);
            graft_colsums(kinds[k], x, y, m, NULL, rows, C, parts, a);
            graft_threads_set(3);
            graft_colsums(kinds[k], x, y, m, NULL, rows, C, parts, b);
            CHECK_MSG(memcmp(a, b, 2 * (size_t)C * sizeof(double)) == 0, "kind %d", (int)kinds[k]);
        }
        graft_threads_set(was);
    }
    free(x), free(y), free(m), free(a), free(b);
}

int main(void)
{
    RUN(test_matches_double_reference);
    RUN(test_relu_masks_in_place);
    RUN(test_bits_depend_on_parts_only);
    return CHECK_SUMMARY();
}
