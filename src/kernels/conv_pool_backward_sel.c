/*
 * The conv+pool backward without the zeros (conv_pool_backward.c runs it row
 * by row). Each pooled output's gradient goes to one cell of its window (the
 * code's), so rather than four FMAs on the masked gradients of the four cells
 * (three of them zero), one VPERMPS picks each filter's cell from a table of
 * the four cells' inputs, and one FMA adds it times the gradient: a quarter
 * of the FMAs, one shuffle each. The sums are the same, bit for bit: a masked
 * cell added x * 0 exactly, unless x was not finite (then NaN), which is why
 * rows whose band holds an Inf or NaN take the four FMAs (chunkKC,
 * chunk512_KC in conv_pool_backward.c) instead.
 */
#include "kernels/conv_pool.h"

#ifdef __AVX2__

/* Per window and filter of one row: the table index of the winning cell
 * (`lut` by code) and the gradient, 0 where no cell won; FP floats per
 * window, the padding zero. Adds the gradients to gsum as build_g256
 * (conv_pool_backward.c) does, in the same order, 32 filters' sums in
 * registers at a time. */
void graft_conv_pool_build_sel256(const float *gr, const uint8_t *cr, int OW, int F, int FP,
                                  __m256i lut, int32_t *idx, float *gm, float *gsum)
{
    for (int f0 = 0; f0 < FP; f0 += 32) {
        __m256 s[4];
        for (int v = 0; v < 4; v++)
            s[v] = f0 + 8 * v < F ? _mm256_loadu_ps(gsum + f0 + 8 * v) : _mm256_setzero_ps();
        for (int w = 0; w < OW; w++) {
            const float *gv = gr + (size_t)w * F;
            const uint8_t *cv = cr + (size_t)w * F;
            /* The next row's, into L2 for its turn: a row's work is long
             * and its gradient spans pages that the hardware prefetcher
             * would find one at a time. */
            for (int f = f0; f < f0 + 32 && f < F; f += 16)
                _mm_prefetch((const char *)(gv + (size_t)OW * F + f), _MM_HINT_T1);
            _mm_prefetch((const char *)(cv + (size_t)OW * F + f0), _MM_HINT_T1);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                const int f = f0 + 8 * v;
                if (f >= FP) break;
                __m256 gg = _mm256_setzero_ps();
                __m256i k = _mm256_setzero_si256();
                if (f < F) {
                    k = _mm256_cvtepu8_epi32(
                        _mm_loadl_epi64((const __m128i *)(const void *)(cv + f)));
                    __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(4), k));
                    gg = _mm256_and_ps(_mm256_loadu_ps(gv + f), live);
                    s[v] = _mm256_add_ps(s[v], gg);
                }
                _mm256_store_ps(gm + (size_t)w * FP + f, gg);
                _mm256_store_si256((__m256i *)(void *)(idx + (size_t)w * FP + f),
                                   _mm256_permutevar8x32_epi32(lut, k));
            }
        }
        for (int v = 0; v < 4; v++)
            if (f0 + 8 * v < F) _mm256_storeu_ps(gsum + f0 + 8 * v, s[v]);
    }
}

/* The table of kernel row k for the window at x: its four cells' inputs
 * x[off], x[off + C], x[rs + off], x[rs + off + C] at the lanes `lut` names.
 * Three channels or fewer: lanes 0, C, 4, 4 + C of the two rows' four floats
 * each; four: lanes 0, 4 of one row and 1, 5 of the other. Reads up to 3
 * floats past the last cell. */
static inline __attribute__((always_inline)) __m256 cell_table(const float *a, size_t rs, int c4)
{
    if (c4) return _mm256_blend_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(a + rs - 1), 0x22);
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a)), _mm_loadu_ps(a + rs), 1);
}

/* As chunkKC, from the tables: dW[k0 + j][f0 .. f0 + 16) for KC kernel rows,
 * the window's selected inputs times its gradients. */
#define SEL_FN(KC, C4)                                                                             \
    static void sel##KC##_##C4(const int32_t *idx, const float *gm, int OW, int FP, int f0,        \
                               const float *b, size_t rs, int C, const int *off, float *acc_out)   \
    {                                                                                              \
        __m256 s0[KC], s1[KC];                                                                     \
        _Pragma("GCC unroll 8") for (int j = 0; j < KC; j++) s0[j] = s1[j] = _mm256_setzero_ps();  \
        for (int w = 0; w < OW; w++) {                                                             \
            const float *xw = b + (size_t)2 * w * C;                                               \
            const size_t o = (size_t)w * FP + f0;                                                  \
            const __m256i i0 = _mm256_load_si256((const __m256i *)(const void *)(idx + o));        \
            const __m256i i1 = _mm256_load_si256((const __m256i *)(const void *)(idx + o + 8));    \
            const __m256 g0 = _mm256_load_ps(gm + o), g1 = _mm256_load_ps(gm + o + 8);             \
            _Pragma("GCC unroll 8") for (int j = 0; j < KC; j++)                                   \
            {                                                                                      \
                const __m256 t = cell_table(xw + off[j], rs, C4);                                  \
                s0[j] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(t, i0), g0, s0[j]);               \
                s1[j] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(t, i1), g1, s1[j]);               \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int j = 0; j < KC; j++)                                       \
        {                                                                                          \
            _mm256_storeu_ps(acc_out + (size_t)j * 16, s0[j]);                                     \
            _mm256_storeu_ps(acc_out + (size_t)j * 16 + 8, s1[j]);                                 \
        }                                                                                          \
    }
SEL_FN(4, 0)
SEL_FN(3, 0)
SEL_FN(2, 0)
SEL_FN(1, 0)
SEL_FN(4, 1)
SEL_FN(3, 1)
SEL_FN(2, 1)
SEL_FN(1, 1)
#undef SEL_FN

const sel_fn graft_conv_pool_sels256[2][SEL_MAX_KC + 1] = {
    {NULL, sel1_0, sel2_0, sel3_0, sel4_0}, {NULL, sel1_1, sel2_1, sel3_1, sel4_1}};

/* The same on AVX-512: 16 filters per shuffle and FMA, 32 per block, up to
 * 12 kernel rows in the 32 registers. The table is cell_table's (its upper
 * half never picked). */
T512 void graft_conv_pool_build_sel512(const float *gr, const uint8_t *cr, int OW, int F,
                                       int FP, __m256i lut8, int32_t *idx, float *gm,
                                       float *gsum)
{
    const __m512i lut = _mm512_castsi256_si512(lut8);
    for (int f0 = 0; f0 < FP; f0 += 32) {
        __m512 s[2];
        for (int v = 0; v < 2; v++)
            s[v] = f0 + 16 * v < F ? _mm512_loadu_ps(gsum + f0 + 16 * v) : _mm512_setzero_ps();
        for (int w = 0; w < OW; w++) {
            const float *gv = gr + (size_t)w * F;
            const uint8_t *cv = cr + (size_t)w * F;
            for (int f = f0; f < f0 + 32 && f < F; f += 16)
                _mm_prefetch((const char *)(gv + (size_t)OW * F + f), _MM_HINT_T1);
            _mm_prefetch((const char *)(cv + (size_t)OW * F + f0), _MM_HINT_T1);
            for (int v = 0; v < 2; v++) {
                const int f = f0 + 16 * v;
                __m512 gg = _mm512_setzero_ps();
                __m512i k = _mm512_setzero_si512();
                if (f < F) {
                    k = _mm512_cvtepu8_epi32(
                        _mm_loadu_si128((const __m128i *)(const void *)(cv + f)));
                    gg = _mm512_maskz_mov_ps(_mm512_cmplt_epi32_mask(k, _mm512_set1_epi32(4)),
                                             _mm512_loadu_ps(gv + f));
                    s[v] = _mm512_add_ps(s[v], gg);
                }
                _mm512_store_ps(gm + (size_t)w * FP + f, gg);
                _mm512_store_si512((void *)(idx + (size_t)w * FP + f),
                                   _mm512_permutexvar_epi32(k, lut));
            }
        }
        for (int v = 0; v < 2; v++)
            if (f0 + 16 * v < F) _mm512_storeu_ps(gsum + f0 + 16 * v, s[v]);
    }
}

#define SEL512(KC, C4)                                                                             \
    static T512 void sel512_##KC##_##C4(const int32_t *idx, const float *gm, int OW, int FP,       \
                                        int f0, const float *b, size_t rs, int C, const int *off,  \
                                        float *acc_out)                                            \
    {                                                                                              \
        __m512 s0[KC], s1[KC];                                                                     \
        _Pragma("GCC unroll 12") for (int j = 0; j < KC; j++) s0[j] = s1[j] = _mm512_setzero_ps(); \
        for (int w = 0; w < OW; w++) {                                                             \
            const float *xw = b + (size_t)2 * w * C;                                               \
            const size_t o = (size_t)w * FP + f0;                                                  \
            const __m512i i0 = _mm512_load_si512((const void *)(idx + o));                         \
            const __m512i i1 = _mm512_load_si512((const void *)(idx + o + 16));                    \
            const __m512 g0 = _mm512_load_ps(gm + o), g1 = _mm512_load_ps(gm + o + 16);            \
            _Pragma("GCC unroll 12") for (int j = 0; j < KC; j++)                                  \
            {                                                                                      \
                const __m512 t = _mm512_castps256_ps512(cell_table(xw + off[j], rs, C4));          \
                s0[j] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i0, t), g0, s0[j]);                  \
                s1[j] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i1, t), g1, s1[j]);                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 12") for (int j = 0; j < KC; j++)                                      \
        {                                                                                          \
            _mm512_storeu_ps(acc_out + (size_t)j * 32, s0[j]);                                     \
            _mm512_storeu_ps(acc_out + (size_t)j * 32 + 16, s1[j]);                                \
        }                                                                                          \
    }
#define SEL512_BOTH(KC) SEL512(KC, 0) SEL512(KC, 1)
SEL512_BOTH(12)
SEL512_BOTH(11)
SEL512_BOTH(10)
SEL512_BOTH(9)
SEL512_BOTH(8)
SEL512_BOTH(7)
SEL512_BOTH(6)
SEL512_BOTH(5)
SEL512_BOTH(4)
SEL512_BOTH(3)
SEL512_BOTH(2)
SEL512_BOTH(1)
#undef SEL512_BOTH
#undef SEL512

const sel_fn graft_conv_pool_sels512[2][13] = {
    {NULL, sel512_1_0, sel512_2_0, sel512_3_0, sel512_4_0, sel512_5_0, sel512_6_0, sel512_7_0,
     sel512_8_0, sel512_9_0, sel512_10_0, sel512_11_0, sel512_12_0},
    {NULL, sel512_1_1, sel512_2_1, sel512_3_1, sel512_4_1, sel512_5_1, sel512_6_1, sel512_7_1,
     sel512_8_1, sel512_9_1, sel512_10_1, sel512_11_1, sel512_12_1}};

#endif /* __AVX2__ */
