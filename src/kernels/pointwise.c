/*
 * The pointwise (1x1) convolution of fused inference steps: C = A B over
 * NHWC rows and an IO kernel, each output finished by the step's epilogue
 * (bias, folded BatchNormalization, clamp, residual add, clamp) while it is
 * still in a register, on the calling thread: the steps in exec/ call it on
 * small blocks of rows that are in cache.
 *
 * Every output is one FMA chain over k = 0..K-1 starting from zero, whatever
 * the tile, ISA or thread computes it, so the bits never depend on how rows
 * are grouped (batch size, thread count, bands with halos) nor on AVX2 or
 * AVX-512. The kernel is read in place (rows of N floats): no packing per
 * call, and the weights may change between calls.
 */
#include "core/core.h"
#include "kernels/kernels.h"

#include <math.h>
#include <omp.h>
#include <string.h>
#include <strings.h>

#ifdef __AVX2__
#include <immintrin.h>
#endif

bool graft_kernels_avx512(void)
{
#ifdef __AVX2__
    if (!__builtin_cpu_supports("avx512f")) return false;
    const char *cap = graft_env(GRAFT_ENV_ONEDNN_MAX_CPU_ISA);
    return !cap || !*cap || strncasecmp(cap, "AVX512", 6) == 0 || strcasecmp(cap, "ALL") == 0;
#else
    return false;
#endif
}

/* The epilogue that changes nothing, for the calls that have none. */
static const graft_kernel_epi no_epi = {0};

/* One output through the epilogue, in the order of the unfused layers. */
static inline float epi_one(const graft_kernel_epi *e, int n, float v, const float *res)
{
    if (e->bias) v = v + e->bias[n];
    if (e->mean) v = (v - e->mean[n]) * e->scale[n] + e->shift[n];
    if (e->clamp) v = v < e->lo ? e->lo : (v > e->hi ? e->hi : v);
    if (res) v = res[n] + v;
    if (e->res_clamp) v = v < e->res_lo ? e->res_lo : (v > e->res_hi ? e->res_hi : v);
    return v;
}

/* Columns [n0, n1) of rows [0, M): the reference path, and the last
 * columns that fill no vector. */
static void gemm_scalar(int M, int n0, int n1, int K, const float *A, size_t lda, const float *B,
                        size_t ldb, int pw, float *C, size_t ldc, const graft_kernel_epi *e,
                        const float *R, size_t ldr, bool load)
{
    for (int m = 0; m < M; m++)
        for (int n = n0; n < n1; n++) {
            float acc = load ? C[(size_t)m * ldc + n] : 0.0f; /* load: go on from C */
            for (int k = 0; k < K; k++) {
                const float b = ldb ? B[(size_t)k * ldb + n]
                                    : B[(size_t)(n / pw) * K * pw + (size_t)k * pw + n % pw];
                acc = fmaf(A[(size_t)m * lda + k], b, acc);
            }
            C[(size_t)m * ldc + n] = epi_one(e, n, acc, R ? R + (size_t)m * ldr : NULL);
        }
}

#ifdef __AVX2__

#define INLINE static inline __attribute__((always_inline))
#define T256 __attribute__((target("avx2,fma")))
#define T512 __attribute__((target("avx512f,avx2,fma")))

/* Rows of B a multiple of 512 floats apart map to few cache sets (a 2 KiB
 * stride puts them in 2 of L1's 64 sets and 32 of L2's 1024), so that a
 * row tile reading a column panel down them finds little of it left from
 * the tile before: such a B is copied PW_KC rows at a time into a panel on
 * the stack, which every row tile then reads from L1. The chains go on from
 * the partial sums in C between these blocks of k: the same FMAs in the
 * same order, the same bits. */
#define PW_KC 256
/* Rows of B ahead that the stream kernel's copying tile asks for. */
#define PW_AHEAD 32

static bool copy_b(size_t ldb, int M, int MR) { return ldb && ldb % 512 == 0 && M > MR; }

/* Columns [n0, n0 + w) of B's rows [k0, k0 + kc) into buf as one panel of
 * 16 columns (w 8 or 16), or of 32 (w up to 32), zeros past w. */
static T256 void copy_block16(const float *B, size_t ldb, int k0, int kc, int n0, int w, float *buf)
{
    for (int k = 0; k < kc; k++) {
        const float *b = B + (size_t)(k0 + k) * ldb + n0;
        _mm256_store_ps(buf + 16 * k, _mm256_loadu_ps(b));
        _mm256_store_ps(buf + 16 * k + 8, w > 8 ? _mm256_loadu_ps(b + 8) : _mm256_setzero_ps());
    }
}

static T512 void copy_block32(const float *B, size_t ldb, int k0, int kc, int n0, int w, float *buf)
{
    const __mmask16 lo = (__mmask16)(w >= 16 ? 0xffff : (1u << w) - 1);
    const __mmask16 hi = (__mmask16)(w >= 32 ? 0xffff : w > 16 ? (1u << (w - 16)) - 1 : 0);
    for (int k = 0; k < kc; k++) {
        const float *b = B + (size_t)(k0 + k) * ldb + n0;
        _mm512_store_ps(buf + 32 * k, _mm512_maskz_loadu_ps(lo, b));
        _mm512_store_ps(buf + 32 * k + 16, _mm512_maskz_loadu_ps(hi, b + 16));
    }
}

/* GCC keeps the tiles' accumulators in registers only with these loops
 * unrolled. Clang (the fuzzing build) is left to unroll by itself: with
 * the pragmas its sanitizer build of this file took over ten minutes. */
#if defined(__GNUC__) && !defined(__clang__)
#define PW_PRAGMA(x) _Pragma(#x)
#define PW_UNROLL(n) PW_PRAGMA(GCC unroll n)
#else
#define PW_UNROLL(n)
#endif


/* ------------------------------------------------------------ AVX2: 6 rows x 16 columns */

/* The epilogue's parameters for one vector of columns, loaded once per
 * tile: the C stores between rows could alias them, so the compiler would
 * load them again for every row. */
typedef struct {
    __m256 bias, mean, scale, shift;
} epi_v256;

INLINE T256 epi_v256 epi_load256(const graft_kernel_epi *e, int n)
{
    epi_v256 p = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    if (e->bias) p.bias = _mm256_loadu_ps(e->bias + n);
    if (e->mean) {
        p.mean = _mm256_loadu_ps(e->mean + n);
        p.scale = _mm256_loadu_ps(e->scale + n);
        p.shift = _mm256_loadu_ps(e->shift + n);
    }
    return p;
}

INLINE T256 __m256 epi256(const graft_kernel_epi *e, const epi_v256 *p, int n, __m256 v,
                          const float *res)
{
    if (e->bias) v = _mm256_add_ps(v, p->bias);
    if (e->mean) v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, p->mean), p->scale), p->shift);
    /* MAXPS/MINPS return the second operand when one is NaN: NaN passes, as in epi_one. */
    if (e->clamp)
        v = _mm256_min_ps(_mm256_set1_ps(e->hi), _mm256_max_ps(_mm256_set1_ps(e->lo), v));
    if (res) v = _mm256_add_ps(_mm256_loadu_ps(res + n), v);
    if (e->res_clamp)
        v = _mm256_min_ps(_mm256_set1_ps(e->res_hi), _mm256_max_ps(_mm256_set1_ps(e->res_lo), v));
    return v;
}

/* copy: as tile512's, rows of 16 (NV 2 only). */
INLINE T256 void tile256(const int MR, const int NV, int K, const float *A, size_t lda,
                         const float *B, size_t ldb, float *C, size_t ldc,
                         const graft_kernel_epi *e, int n0, const float *R, size_t ldr, bool load,
                         float *copy)
{
    __m256 acc[6][2];
    PW_UNROLL(12)
    for (int i = 0; i < MR; i++)
        PW_UNROLL(2)
        for (int v = 0; v < NV; v++)
            acc[i][v] = load ? _mm256_loadu_ps(C + (size_t)i * ldc + n0 + 8 * v) : _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        __m256 b0 = _mm256_loadu_ps(b), b1 = NV > 1 ? _mm256_loadu_ps(b + 8) : b0;
        if (copy) {
            if (k + PW_AHEAD < K) _mm_prefetch((const char *)(b + PW_AHEAD * ldb), _MM_HINT_T0);
            _mm256_store_ps(copy + 16 * k, b0);
            _mm256_store_ps(copy + 16 * k + 8, b1);
        }
        PW_UNROLL(12)
        for (int i = 0; i < MR; i++) {
            __m256 a = _mm256_broadcast_ss(A + (size_t)i * lda + k);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            if (NV > 1) acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    epi_v256 p[2];
    PW_UNROLL(2)
    for (int v = 0; v < NV; v++) p[v] = epi_load256(e, n0 + 8 * v);
    PW_UNROLL(12)
    for (int i = 0; i < MR; i++) {
        const float *res = R ? R + (size_t)i * ldr : NULL;
        PW_UNROLL(2)
        for (int v = 0; v < NV; v++)
            _mm256_storeu_ps(C + (size_t)i * ldc + n0 + 8 * v,
                             epi256(e, &p[v], n0 + 8 * v, acc[i][v], res));
    }
}

#define ROWS256(NV, KST, CP)                                                                       \
    switch (mr) {                                                                                  \
    case 6: tile256(6, NV, kc, a, lda, bp, KST, c, ldc, ek, n0, r, ldr, load, CP); break;          \
    case 5: tile256(5, NV, kc, a, lda, bp, KST, c, ldc, ek, n0, r, ldr, load, CP); break;          \
    case 4: tile256(4, NV, kc, a, lda, bp, KST, c, ldc, ek, n0, r, ldr, load, CP); break;          \
    case 3: tile256(3, NV, kc, a, lda, bp, KST, c, ldc, ek, n0, r, ldr, load, CP); break;          \
    case 2: tile256(2, NV, kc, a, lda, bp, KST, c, ldc, ek, n0, r, ldr, load, CP); break;          \
    default: tile256(1, NV, kc, a, lda, bp, KST, c, ldc, ek, n0, r, ldr, load, CP); break;         \
    }

/* The tile of rows [m0, m0 + mr) for a block of k (k0, kc) and a panel of
 * 16 columns from n0 (two vectors) or 8 (bp: its rows, kst apart); the
 * epilogue ek and the residual R at the last block (fin). */
INLINE T256 void rows256(int m0, int mr, bool two, int k0, int kc, const float *A, size_t lda,
                         const float *bp, size_t kst, float *C, size_t ldc,
                         const graft_kernel_epi *ek, int n0, const float *R, size_t ldr, bool fin,
                         bool load, float *copy)
{
    const float *a = A + (size_t)m0 * lda + k0;
    const float *r = R && fin ? R + (size_t)m0 * ldr : NULL;
    float *c = C + (size_t)m0 * ldc;
    if (copy) {
        ROWS256(2, kst, copy)
    } else if (two) {
        ROWS256(2, kst, NULL)
    } else {
        ROWS256(1, kst, NULL)
    }
}

static T256 int gemm256(int M, int N, int K, const float *A, size_t lda, const float *B,
                        size_t ldb, float *C, size_t ldc, const graft_kernel_epi *e,
                        const float *R, size_t ldr)
{
    const bool copy = copy_b(ldb, M, 6);
    float buf[PW_KC * 16] __attribute__((aligned(32)));
    int n0 = 0;
    for (; n0 + 8 <= N; n0 += 16) {
        const bool two = n0 + 16 <= N;
        const int kb = copy ? PW_KC : K;
        for (int k0 = 0; k0 < K; k0 += kb) {
            const int kc = K - k0 < kb ? K - k0 : kb;
            const bool load = k0 > 0, fin = k0 + kc == K;
            /* ldb 0: B is packed (graft_pw_pack), panels of 16 columns */
            const float *bp = ldb ? B + n0 : B + (size_t)(n0 / 16) * K * 16;
            size_t kst = ldb ? ldb : 16;
            if (copy) {
                copy_block16(B, ldb, k0, kc, n0, two ? 16 : 8, buf);
                bp = buf, kst = 16;
            }
            const graft_kernel_epi *ek = fin ? e : &no_epi;
            for (int m0 = 0; m0 < M; m0 += 6)
                rows256(m0, M - m0 < 6 ? M - m0 : 6, two, k0, kc, A, lda, bp, kst, C, ldc, ek, n0,
                        R, ldr, fin, load, NULL);
        }
        if (!two) n0 -= 8;
    }
    return n0;
}

/* graft_pw_gemm_stream at AVX2's width (gemm512_stream below has the
 * order): panels of 16 columns, or 8 at the end; returns the columns done,
 * the caller does the rest (fewer than 8). */
static T256 int gemm256_stream(int M, int N, int K, const float *A, size_t lda, const float *B,
                               size_t ldb, float *C, size_t ldc, const graft_kernel_epi *e,
                               const float *R, size_t ldr)
{
    const int tiles = (M + 5) / 6, MR = (M + tiles - 1) / tiles;
    float buf[PW_KC * 16] __attribute__((aligned(32)));
    int n0 = 0;
    for (; n0 + 8 <= N; n0 += 16) {
        const bool two = n0 + 16 <= N;
        for (int k0 = 0; k0 < K; k0 += PW_KC) {
            const int kc = K - k0 < PW_KC ? K - k0 : PW_KC;
            const bool load = k0 > 0, fin = k0 + kc == K;
            const graft_kernel_epi *ek = fin ? e : &no_epi;
            int m0 = 0;
            if (two) {
                m0 = MR;
                rows256(0, MR, two, k0, kc, A, lda, B + (size_t)k0 * ldb + n0, ldb, C, ldc, ek, n0,
                        R, ldr, fin, load, buf);
            } else {
                copy_block16(B, ldb, k0, kc, n0, 8, buf);
            }
            for (; m0 < M; m0 += MR)
                rows256(m0, M - m0 < MR ? M - m0 : MR, two, k0, kc, A, lda, buf, 16, C, ldc, ek, n0,
                        R, ldr, fin, load, NULL);
        }
        if (!two) n0 -= 8;
    }
    return n0;
}

/* graft_pw_gemm_part at AVX2's width: whole panels of 16 columns. */
static T256 void part256(int M, int N, int K, const float *A, size_t lda, const float *B, float *C,
                         size_t ldc, bool more)
{
    for (int n0 = 0; n0 < N; n0 += 16)
        for (int m0 = 0; m0 < M; m0 += 6)
            rows256(m0, M - m0 < 6 ? M - m0 : 6, true, 0, K, A, lda, B + (size_t)n0 * K, 16, C, ldc,
                    &no_epi, n0, NULL, 0, true, more, NULL);
}

/* ------------------------------------------------------------ AVX-512: 12 rows x 32 columns */

typedef struct {
    __m512 bias, mean, scale, shift;
} epi_v512;

INLINE T512 epi_v512 epi_load512(const graft_kernel_epi *e, int n, __mmask16 mk)
{
    epi_v512 p = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    if (e->bias) p.bias = _mm512_maskz_loadu_ps(mk, e->bias + n);
    if (e->mean) {
        p.mean = _mm512_maskz_loadu_ps(mk, e->mean + n);
        p.scale = _mm512_maskz_loadu_ps(mk, e->scale + n);
        p.shift = _mm512_maskz_loadu_ps(mk, e->shift + n);
    }
    return p;
}

INLINE T512 __m512 epi512(const graft_kernel_epi *e, const epi_v512 *p, int n, __m512 v,
                          const float *res, __mmask16 mk)
{
    if (e->bias) v = _mm512_add_ps(v, p->bias);
    if (e->mean) v = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, p->mean), p->scale), p->shift);
    if (e->clamp)
        v = _mm512_min_ps(_mm512_set1_ps(e->hi), _mm512_max_ps(_mm512_set1_ps(e->lo), v));
    if (res) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, res + n), v);
    if (e->res_clamp)
        v = _mm512_min_ps(_mm512_set1_ps(e->res_hi), _mm512_max_ps(_mm512_set1_ps(e->res_lo), v));
    return v;
}

/* NV vectors of 16 columns, the last one masked by mk. load: the chains
 * go on from the partial sums in C (a later block of k) instead of zero.
 * copy (a constant NULL where unused): B's rows are also stored there as
 * they are read (rows of 32, for the stream kernel's other tiles), the row
 * PW_AHEAD further on asked for into L1 meanwhile. */
INLINE T512 void tile512(const int MR, const int NV, int K, const float *A, size_t lda,
                         const float *B, size_t ldb, float *C, size_t ldc, __mmask16 mk,
                         const graft_kernel_epi *e, int n0, const float *R, size_t ldr,
                         bool load, float *copy)
{
    __m512 acc[12][2];
    const __mmask16 m0 = NV > 1 ? 0xffff : mk;
    if (load) {
        PW_UNROLL(12)
        for (int i = 0; i < MR; i++) {
            acc[i][0] = _mm512_maskz_loadu_ps(m0, C + (size_t)i * ldc + n0);
            if (NV > 1) acc[i][1] = _mm512_maskz_loadu_ps(mk, C + (size_t)i * ldc + n0 + 16);
        }
    } else {
        PW_UNROLL(12)
        for (int i = 0; i < MR; i++)
            PW_UNROLL(2)
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
        __m512 b1 = NV > 1 ? _mm512_maskz_loadu_ps(mk, b + 16) : b0;
        if (copy) {
            if (k + PW_AHEAD < K) {
                _mm_prefetch((const char *)(b + PW_AHEAD * ldb), _MM_HINT_T0);
                _mm_prefetch((const char *)(b + PW_AHEAD * ldb + 16), _MM_HINT_T0);
            }
            _mm512_store_ps(copy + 32 * k, b0);
            _mm512_store_ps(copy + 32 * k + 16, b1);
        }
        PW_UNROLL(12)
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(A[(size_t)i * lda + k]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            if (NV > 1) acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    const epi_v512 p0 = epi_load512(e, n0, m0);
    const epi_v512 p1 = NV > 1 ? epi_load512(e, n0 + 16, mk) : p0;
    PW_UNROLL(12)
    for (int i = 0; i < MR; i++) {
        const float *res = R ? R + (size_t)i * ldr : NULL;
        float *c = C + (size_t)i * ldc + n0;
        if (NV > 1) {
            _mm512_storeu_ps(c, epi512(e, &p0, n0, acc[i][0], res, 0xffff));
            _mm512_mask_storeu_ps(c + 16, mk, epi512(e, &p1, n0 + 16, acc[i][1], res, mk));
        } else {
            _mm512_mask_storeu_ps(c, mk, epi512(e, &p0, n0, acc[i][0], res, mk));
        }
    }
}

#define ROWS512(NV, KST, MK, CP)                                                                   \
    switch (mr) {                                                                                  \
    case 12: tile512(12, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;    \
    case 11: tile512(11, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;    \
    case 10: tile512(10, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;    \
    case 9: tile512(9, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;      \
    case 8: tile512(8, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;      \
    case 7: tile512(7, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;      \
    case 6: tile512(6, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;      \
    case 5: tile512(5, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;      \
    case 4: tile512(4, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;      \
    case 3: tile512(3, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;      \
    case 2: tile512(2, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;      \
    default: tile512(1, NV, kc, a, lda, bp, KST, c, ldc, MK, ek, n0, r, ldr, load, CP); break;     \
    }

/* The tile of rows [m0, m0 + mr) for a block of k (k0, kc) and a panel of
 * w <= 32 columns from n0 (bp: its rows, kst apart); the epilogue ek and
 * the residual R at the last block (fin). copy: a whole panel's rows are
 * also copied there as they are read (tile512). */
INLINE T512 void rows512(int m0, int mr, int w, int k0, int kc, const float *A, size_t lda,
                         const float *bp, size_t kst, float *C, size_t ldc,
                         const graft_kernel_epi *ek, int n0, const float *R, size_t ldr, bool fin,
                         bool load, float *copy)
{
    const bool two = w > 16;
    const __mmask16 mk = (__mmask16)((1u << (two ? w - 16 : w)) - 1); /* the last vector's */
    const float *a = A + (size_t)m0 * lda + k0;
    const float *r = R && fin ? R + (size_t)m0 * ldr : NULL;
    float *c = C + (size_t)m0 * ldc;
    if (copy) {
        ROWS512(2, kst, (__mmask16)0xffff, copy)
    } else if (two && w == 32 && kst == 32) {
        /* A whole panel from packed or copied rows of 32: with the stride
         * and the masks constant, the inner loop keeps all twelve rows'
         * offsets in registers (with them variable GCC spilled two to the
         * stack at every k). */
        ROWS512(2, 32, (__mmask16)0xffff, NULL)
    } else if (two) {
        ROWS512(2, kst, mk, NULL)
    } else {
        ROWS512(1, kst, mk, NULL)
    }
}

/* The height of an AVX-512 GEMM's row tiles over M rows, as even as they
 * come: at most 12, or 8 where rows of A lie 4 KiB apart (they share an L1
 * set, and a tile's 12 rows then evicted each other at every k on an 8-way
 * L1). */
static int tile_rows512(int M, size_t lda, int K)
{
    const int most = lda % 1024 == 0 && K >= 256 ? 8 : 12, tiles = (M + most - 1) / most;
    return (M + tiles - 1) / tiles;
}

static T512 void gemm512(int M, int N, int K, const float *A, size_t lda, const float *B,
                         size_t ldb, float *C, size_t ldc, const graft_kernel_epi *e,
                         const float *R, size_t ldr)
{
    const int MR = tile_rows512(M, lda, K);
    const bool copy = copy_b(ldb, M, MR);
    float buf[PW_KC * 32] __attribute__((aligned(64)));
    for (int n0 = 0; n0 < N; n0 += 32) {
        const int w = N - n0 < 32 ? N - n0 : 32;
        const int kb = copy ? PW_KC : K;
        for (int k0 = 0; k0 < K; k0 += kb) {
            const int kc = K - k0 < kb ? K - k0 : kb;
            const bool load = k0 > 0, fin = k0 + kc == K;
            /* ldb 0: B is packed (graft_pw_pack), panels of 32 columns */
            const float *bp = ldb ? B + n0 : B + (size_t)(n0 / 32) * K * 32;
            size_t kst = ldb ? ldb : 32;
            if (copy) {
                copy_block32(B, ldb, k0, kc, n0, w, buf);
                bp = buf, kst = 32;
            }
            const graft_kernel_epi *ek = fin ? e : &no_epi;
            for (int m0 = 0; m0 < M; m0 += MR) {
                const int mr = M - m0 < MR ? M - m0 : MR;
                /* The residual's and the output's lines of this tile's rows
                 * in the next panel, asked for into L2 while this panel's
                 * tile runs: they lie a row (F floats) apart, and without
                 * this the epilogue waited on memory for each of them. */
                if (R && fin && n0 + 32 < N)
                    for (int i = 0; i < mr; i++) {
                        const float *r = R + (size_t)(m0 + i) * ldr + n0 + 32;
                        float *c = C + (size_t)(m0 + i) * ldc + n0 + 32;
                        __builtin_prefetch(r, 0, 2);
                        __builtin_prefetch(r + 16, 0, 2);
                        __builtin_prefetch(c, 1, 2);
                        __builtin_prefetch(c + 16, 1, 2);
                    }
                rows512(m0, mr, w, k0, kc, A, lda, bp, kst, C, ldc, ek, n0, R, ldr, fin, load, NULL);
            }
        }
    }
}

/* ------------------------------------------------------------ few rows, B streamed */

/* graft_pw_gemm_stream: a 32-column panel at a time, PW_KC of its rows at a
 * time. The first row tile reads them in place and copies them to a block
 * on the stack as it goes, asking for the rows PW_AHEAD further on; the
 * other tiles read the block from L1; then the panel's next rows, then the
 * next panel's. Each element of B is read once. Against the k-outermost
 * order this replaced (blocks of 64 rows of B across all columns, the
 * partial sums stored and loaded between them), ResNet50 at batch 1 took
 * 3-5% less time; against copying each block before its tiles (its lines
 * asked for during the block before), 4-5% less on one thread, 2-3% on two
 * (docs/PERFORMANCE.md). */
static T512 void gemm512_stream(int M, int N, int K, const float *A, size_t lda, const float *B,
                                size_t ldb, float *C, size_t ldc, const graft_kernel_epi *e,
                                const float *R, size_t ldr)
{
    const int MR = tile_rows512(M, lda, K);
    float buf[PW_KC * 32] __attribute__((aligned(64)));
    for (int n0 = 0; n0 < N; n0 += 32) {
        const int w = N - n0 < 32 ? N - n0 : 32;
        for (int k0 = 0; k0 < K; k0 += PW_KC) {
            const int kc = K - k0 < PW_KC ? K - k0 : PW_KC;
            const bool load = k0 > 0, fin = k0 + kc == K;
            const graft_kernel_epi *ek = fin ? e : &no_epi;
            int m0 = 0;
            if (w == 32) { /* MR <= M: tile_rows512 */
                m0 = MR;
                rows512(0, MR, w, k0, kc, A, lda, B + (size_t)k0 * ldb + n0, ldb, C, ldc, ek, n0,
                        R, ldr, fin, load, buf);
            } else {
                copy_block32(B, ldb, k0, kc, n0, w, buf);
            }
            for (; m0 < M; m0 += MR)
                rows512(m0, M - m0 < MR ? M - m0 : MR, w, k0, kc, A, lda, buf, 32, C, ldc, ek, n0, R,
                        ldr, fin, load, NULL);
        }
    }
}

/* graft_pw_gemm_part at AVX-512's width: whole panels of 32 columns. */
static T512 void part512(int M, int N, int K, const float *A, size_t lda, const float *B, float *C,
                         size_t ldc, bool more)
{
    const int MR = tile_rows512(M, lda, K);
    for (int n0 = 0; n0 < N; n0 += 32)
        for (int m0 = 0; m0 < M; m0 += MR)
            rows512(m0, M - m0 < MR ? M - m0 : MR, 32, 0, K, A, lda, B + (size_t)n0 * K, 32, C,
                    ldc, &no_epi, n0, NULL, 0, true, more, NULL);
}

/* ------------------------------------------------------------ a few rows: rows of B in order */

/* graft_pw_gemm_stream for at most GEMV_ROWS rows (a Dense layer at a
 * batch of one), where each element of B serves so few products that B's
 * reading is the whole cost: k outermost over whole rows of B, GEMV_COLS of
 * a row's columns read in order (what the prefetchers follow best; a panel
 * at a time, B's rows 16 KB apart in VGG16's 25088 x 4096 fc1, left them
 * far behind), the partial sums in C, in L1, between rows; the epilogue in
 * a pass of its own at the end. The same FMA chains from zero. Rows
 * GEMV_AHEAD ahead are asked for as each row is read. */
#define GEMV_ROWS GRAFT_PW_FEW_ROWS
#define GEMV_COLS 2048
#define GEMV_AHEAD 4

static T512 void gemv512(int M, int N, int K, const float *A, size_t lda, const float *B,
                         size_t ldb, float *C, size_t ldc, const graft_kernel_epi *e,
                         const float *R, size_t ldr)
{
    for (int n0 = 0; n0 < N; n0 += GEMV_COLS) {
        const int w = N - n0 < GEMV_COLS ? N - n0 : GEMV_COLS;
        for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc + n0, 0, (size_t)w * sizeof(float));
        for (int k = 0; k < K; k++) {
            const float *b = B + (size_t)k * ldb + n0;
            if (k + GEMV_AHEAD < K)
                for (int j = 0; j < w; j += 16)
                    _mm_prefetch((const char *)(b + GEMV_AHEAD * ldb + j), _MM_HINT_T0);
            __m512 a[GEMV_ROWS];
            for (int m = 0; m < M; m++) a[m] = _mm512_set1_ps(A[(size_t)m * lda + k]);
            for (int j = 0; j < w; j += 16) {
                const __mmask16 mk = (__mmask16)(w - j >= 16 ? 0xffff : (1u << (w - j)) - 1);
                const __m512 bv = _mm512_maskz_loadu_ps(mk, b + j);
                for (int m = 0; m < M; m++) {
                    float *c = C + (size_t)m * ldc + n0 + j;
                    _mm512_mask_storeu_ps(c, mk, _mm512_fmadd_ps(a[m], bv, _mm512_maskz_loadu_ps(mk, c)));
                }
            }
        }
        for (int j = 0; j < w; j += 16) {
            const __mmask16 mk = (__mmask16)(w - j >= 16 ? 0xffff : (1u << (w - j)) - 1);
            const epi_v512 p = epi_load512(e, n0 + j, mk);
            for (int m = 0; m < M; m++) {
                float *c = C + (size_t)m * ldc + n0 + j;
                _mm512_mask_storeu_ps(c, mk, epi512(e, &p, n0 + j, _mm512_maskz_loadu_ps(mk, c),
                                                    R ? R + (size_t)m * ldr : NULL, mk));
            }
        }
    }
}

/* gemv512 at AVX2's width; the columns past the last 8 by scalar FMAs. */
static T256 void gemv256(int M, int N, int K, const float *A, size_t lda, const float *B,
                         size_t ldb, float *C, size_t ldc, const graft_kernel_epi *e,
                         const float *R, size_t ldr)
{
    for (int n0 = 0; n0 < N; n0 += GEMV_COLS) {
        const int w = N - n0 < GEMV_COLS ? N - n0 : GEMV_COLS, w8 = w & ~7;
        for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc + n0, 0, (size_t)w * sizeof(float));
        for (int k = 0; k < K; k++) {
            const float *b = B + (size_t)k * ldb + n0;
            if (k + GEMV_AHEAD < K)
                for (int j = 0; j < w; j += 16)
                    _mm_prefetch((const char *)(b + GEMV_AHEAD * ldb + j), _MM_HINT_T0);
            for (int m = 0; m < M; m++) {
                const float am = A[(size_t)m * lda + k];
                const __m256 a = _mm256_set1_ps(am);
                float *c = C + (size_t)m * ldc + n0;
                for (int j = 0; j < w8; j += 8)
                    _mm256_storeu_ps(c + j, _mm256_fmadd_ps(a, _mm256_loadu_ps(b + j), _mm256_loadu_ps(c + j)));
                for (int j = w8; j < w; j++) c[j] = fmaf(am, b[j], c[j]);
            }
        }
        for (int m = 0; m < M; m++) {
            float *c = C + (size_t)m * ldc + n0;
            const float *res = R ? R + (size_t)m * ldr : NULL;
            for (int j = 0; j < w8; j += 8) {
                const epi_v256 p = epi_load256(e, n0 + j);
                _mm256_storeu_ps(c + j, epi256(e, &p, n0 + j, _mm256_loadu_ps(c + j), res));
            }
            for (int j = w8; j < w; j++) c[j] = epi_one(e, n0 + j, c[j], res);
        }
    }
}

#endif /* __AVX2__ */

/* The epilogue's parameters from column c0 on. */
static graft_kernel_epi epi_from(const graft_kernel_epi *e, int c0)
{
    graft_kernel_epi ec = *e;
    if (ec.bias) ec.bias += c0;
    if (ec.mean) ec.mean += c0, ec.scale += c0, ec.shift += c0;
    return ec;
}

void graft_pw_gemm_cols(int M, int c0, int nc, int K, const float *A, size_t lda, const float *B,
                        size_t ldb, float *C, size_t ldc, const graft_kernel_epi *e, const float *R,
                        size_t ldr, bool wide)
{
    const graft_kernel_epi ec = epi_from(e, c0);
    graft_pw_gemm(M, nc, K, A, lda, ldb ? B + c0 : B + (size_t)c0 * K, ldb, C + c0, ldc, &ec,
                  R ? R + c0 : NULL, ldr, wide);
}

void graft_pw_gemm_stream(int M, int c0, int nc, int K, const float *A, size_t lda, const float *B,
                          size_t ldb, float *C, size_t ldc, const graft_kernel_epi *e,
                          const float *R, size_t ldr)
{
    if (M <= 0 || nc <= 0) return;
    const graft_kernel_epi ec = epi_from(e ? e : &no_epi, c0);
    const float *Bc = B + c0, *Rc = R ? R + c0 : NULL;
    float *Cc = C + c0;
    int done = 0;
#ifdef __AVX2__
    if (M <= GEMV_ROWS) {
        if (graft_kernels_avx512()) gemv512(M, nc, K, A, lda, Bc, ldb, Cc, ldc, &ec, Rc, ldr);
        else gemv256(M, nc, K, A, lda, Bc, ldb, Cc, ldc, &ec, Rc, ldr);
        return;
    }
    if (graft_kernels_avx512()) {
        gemm512_stream(M, nc, K, A, lda, Bc, ldb, Cc, ldc, &ec, Rc, ldr);
        return;
    }
    done = gemm256_stream(M, nc, K, A, lda, Bc, ldb, Cc, ldc, &ec, Rc, ldr);
#endif
    if (done < nc) gemm_scalar(M, done, nc, K, A, lda, Bc, ldb, 16, Cc, ldc, &ec, Rc, ldr, false);
}

bool graft_pw_share_even(int N, int nt) { return N % (32 * nt) == 0; }

void graft_pw_share(int N, int t, int nt, int *c0, int *c1)
{
    const int panels = (N + 31) / 32;
    *c0 = panels * t / nt * 32;
    *c1 = panels * (t + 1) / nt * 32;
    if (*c1 > N) *c1 = N;
}

/* Panel width of the packed kernel: the AVX-512 tile's 32 columns, or the
 * AVX2 tile's 16 (and the scalar path's, which reads either). */
static int panel(bool wide)
{
#ifdef __AVX2__
    return wide && __builtin_cpu_supports("avx512f") ? 32 : 16;
#else
    (void)wide;
    return 16;
#endif
}

size_t graft_pw_pack_floats(int K, int N, bool wide)
{
    const size_t pw = (size_t)panel(wide);
    return ((size_t)N + pw - 1) / pw * pw * (size_t)K;
}

/* Rows [k0, k1) of B into every panel. B is read row by row, in memory
 * order: by panels, each row's few floats lie a row apart, and a kernel
 * larger than L2 went at memory latency (docs/PERFORMANCE.md). */
static void pack_rows(int K, int N, int pw, int k0, int k1, const float *B, size_t ldb,
                      float *packed)
{
    const int full = N / pw, w = N - full * pw; /* whole panels; columns past them */
    const size_t next = (size_t)K * pw;          /* from a panel's row k to the next panel's */
    for (int k = k0; k < k1; k++) {
        const float *restrict b = B + (size_t)k * ldb;
        float *restrict p = packed + (size_t)k * pw;
        /* a copy of a constant size: a few vector moves, not a call */
        if (pw == 32)
            for (int j = 0; j < full; j++)
                memcpy(p + (size_t)j * next, b + j * 32, 32 * sizeof(float));
        else
            for (int j = 0; j < full; j++)
                memcpy(p + (size_t)j * next, b + j * 16, 16 * sizeof(float));
        if (w > 0) {
            float *q = p + (size_t)full * next;
            memcpy(q, b + full * pw, (size_t)w * sizeof(float));
            memset(q + w, 0, (size_t)(pw - w) * sizeof(float));
        }
    }
}

void graft_pw_pack(int K, int N, const float *B, size_t ldb, float *packed, bool wide)
{
    const int pw = panel(wide);
    /* On all threads: the steps pack before their parallel part, which the
     * other threads would otherwise wait for. */
    if ((size_t)K * N < 65536) {
        pack_rows(K, N, pw, 0, K, B, ldb, packed);
        return;
    }
#pragma omp parallel num_threads(graft_threads())
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        pack_rows(K, N, pw, (int)((long)K * t / nt), (int)((long)K * (t + 1) / nt), B, ldb,
                  packed);
    }
}

void graft_pw_prologue(int M, int K, const float *A, size_t lda, const graft_kernel_epi *p,
                       float *out)
{
    const float *restrict mean = p->mean, *restrict scale = p->scale, *restrict shift = p->shift;
    const float lo = p->lo, hi = p->hi;
    for (int m = 0; m < M; m++) {
        const float *restrict a = A + (size_t)m * lda;
        float *restrict o = out + (size_t)m * K;
        if (mean && p->clamp) {
#pragma omp simd
            for (int k = 0; k < K; k++) {
                float v = (a[k] - mean[k]) * scale[k] + shift[k];
                o[k] = v < lo ? lo : (v > hi ? hi : v);
            }
        } else if (mean) {
#pragma omp simd
            for (int k = 0; k < K; k++) o[k] = (a[k] - mean[k]) * scale[k] + shift[k];
        } else if (p->clamp) {
#pragma omp simd
            for (int k = 0; k < K; k++) o[k] = a[k] < lo ? lo : (a[k] > hi ? hi : a[k]);
        } else {
            memcpy(o, a, (size_t)K * sizeof(float));
        }
    }
}

void graft_pw_gemm(int M, int N, int K, const float *A, size_t lda, const float *B, size_t ldb,
                   float *C, size_t ldc, const graft_kernel_epi *e, const float *R, size_t ldr,
                   bool wide)
{
    if (M <= 0 || N <= 0) return;
    if (!e) e = &no_epi;
#ifdef __AVX2__
    if (wide && __builtin_cpu_supports("avx512f")) {
        gemm512(M, N, K, A, lda, B, ldb, C, ldc, e, R, ldr);
        return;
    }
    int done = gemm256(M, N, K, A, lda, B, ldb, C, ldc, e, R, ldr);
    if (done < N) gemm_scalar(M, done, N, K, A, lda, B, ldb, 16, C, ldc, e, R, ldr, false);
#else
    (void)wide;
    gemm_scalar(M, 0, N, K, A, lda, B, ldb, 16, C, ldc, e, R, ldr, false);
#endif
}

void graft_pw_gemm_part(int M, int N, int K, const float *A, size_t lda, const float *B, float *C,
                        size_t ldc, bool more, bool wide)
{
    if (M <= 0 || N <= 0) return;
#ifdef __AVX2__
    if (wide && __builtin_cpu_supports("avx512f")) {
        part512(M, N, K, A, lda, B, C, ldc, more);
        return;
    }
    part256(M, N, K, A, lda, B, C, ldc, more);
#else
    (void)wide;
    gemm_scalar(M, 0, N, K, A, lda, B, 0, 16, C, ldc, &no_epi, NULL, 0, more);
#endif
}
