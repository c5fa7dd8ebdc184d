/*
 * What every part of the library may use: error reporting, checked sizes,
 * aligned memory, threads and the clock, activation functions and the
 * epilogue a convolution's output pass can apply. Depends on nothing above
 * it (no layer, graph or plan).
 */
#ifndef GRAFT_CORE_H
#define GRAFT_CORE_H

/* An AddressSanitizer build, as GCC (__SANITIZE_ADDRESS__) and Clang
 * (__has_feature) announce it. */
#if defined(__SANITIZE_ADDRESS__)
#define GRAFT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GRAFT_ASAN 1
#endif
#endif

#include "graft.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------- errors */

/* Records a message for graft_last_error() and returns `s`. */
graft_status graft_fail(graft_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#ifdef __clang_analyzer__
/* The analyzer sees one file at a time and cannot know that graft_fail returns
 * `s`, so it would follow every `return graft_fail(GRAFT_E..., ...)` error path
 * on as if it had succeeded. Spelling out the return value prunes those paths. */
#define graft_fail(s, ...) (graft_fail((s), __VA_ARGS__), (s))
#endif
void graft_clear_error(void);

/* Overflow-checked size arithmetic: false when a*b does not fit. */
static inline bool graft_mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

/* 64-byte aligned allocation (AVX loads, no false sharing); NULL on failure. */
void *graft_alloc(size_t bytes);
void graft_free(void *p);

/* Model-sized arrays (weights, their gradients, optimizer state): mapped
 * pages, 64-byte aligned and zero until written, so that the parts never
 * written (a frozen base's gradients) cost neither time nor memory, and huge
 * where the system gives them on request. A growing one (the weights)
 * reserves address space and grows where it lies: it does not move below
 * 1 GiB. NULL on failure, where a grown array stays valid at its old size. */
void *graft_pages_alloc(size_t bytes);
void *graft_pages_grow(void *p, size_t bytes);
void graft_pages_free(void *p);

/* The index of the first NaN or Inf among the n floats at p (any alignment),
 * or n when all are finite; "NaN", "Inf" or "-Inf" for the float at index i. */
size_t graft_first_nonfinite(const void *p, size_t n);
const char *graft_nonfinite_name(const void *p, size_t i);

/* ------------------------------------------------------------- counter-based draws */

/* Draw `i` of the stream `key`: SplitMix64's output for its i-th state, a
 * pure function of (key, i). Training noise draws from these, so that a
 * sample's noise depends only on its key (the batch's, mixed with the
 * sample's id and the layer), not on which rank, thread or position in a
 * share computes it. */
static inline uint64_t graft_rng_at(uint64_t key, uint64_t i)
{
    uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* [0, 1) from a draw's top 24 bits: every uniform float in graft. */
static inline float graft_unit_float(uint64_t draw)
{
    return (float)(draw >> 40) * (1.0f / 16777216.0f);
}
/* [0, 1) from draw i (as graft_rng_uniform). */
static inline float graft_rng_uniform_at(uint64_t key, uint64_t i)
{
    return graft_unit_float(graft_rng_at(key, i));
}
/* N(0, 1) from draws 2i and 2i + 1 (Box-Muller, as graft_rng_normal). */
float graft_rng_normal_at(uint64_t key, uint64_t i);

/* n draws of (2u - 1) * limit, u as graft_rng_uniform's, in its order. */
void graft_rng_fill_symmetric(graft_rng *rng, float *dst, size_t n, float limit);

/* ------------------------------------------------------------- threads, clock */

/* Threads for graft's own loops. */
int graft_threads(void);
/* The last-level cache the planner counts on: GRAFT_CACHE_MIB, else the
 * kernel's figure (sysfs), else the C library's; GRAFT_CACHE_ASSUMED where
 * there is none, or where it is past GRAFT_CACHE_CREDIBLE (then `reported`
 * keeps it). `from` names the source, for GRAFT_PROFILE's plan lines. */
#define GRAFT_CACHE_ASSUMED ((size_t)32 << 20)
#define GRAFT_CACHE_CREDIBLE ((size_t)128 << 20)
typedef struct {
    size_t bytes, reported;
    const char *from;
} graft_cache;
graft_status graft_last_cache(graft_cache *c);
/* Flush-to-zero and denormals-are-zero on the calling thread and the OpenMP team. */
void graft_flush_denormals(void);
/* CLOCK_MONOTONIC seconds. */
double graft_now(void);

/* ------------------------------------------------------------- environment */

/* A switch set to "1" (src/core/env.c; graft_env in graft.h for the value). */
bool graft_env_on(graft_env_var v);

/* ------------------------------------------------------------- activations */

void graft_activation_forward(graft_activation a, float *x, size_t rows, size_t cols);
/* An activation over rows of cols floats ld apart, in place, on the calling
 * thread (softmax: over each row's cols): the same bits per element as
 * graft_activation_forward. */
void graft_activation_rows(graft_activation a, float *x, size_t rows, size_t cols, size_t ld);
/* Whether act'(x) needs the input x (swish, gelu, hard_swish), not only the output y. */
bool graft_activation_needs_input(graft_activation a);
/* dx = dy * act'(x) given the activation's output y and, where
 * graft_activation_needs_input, its input x (else x may be NULL); in place on dy allowed. */
void graft_activation_backward_x(graft_activation a, const float *x, const float *y,
                                 const float *dy, float *dx, size_t rows, size_t cols,
                                 bool accumulate);
/* The same for the activations whose derivative follows from y alone. */
void graft_activation_backward(graft_activation a, const float *y, const float *dy, float *dx,
                               size_t rows, size_t cols, bool accumulate);

/* e^x and e^x - 1 as the activations compute them (vectorisable, within
 * 2 ulp; expm1 for x <= 88): for tests. */
float graft_expf(float x);
float graft_expm1f(float x);

/* TensorFlow's output size and leading pad for one spatial dimension. */
int graft_conv_out_size(int in, int k, int stride, graft_padding p, int *pad_before);

/* ------------------------------------------------------------- epilogue */

/* What a convolution's output pass also applies, per channel, while the
 * output is in cache: an inference-mode BatchNormalization
 * y = (x - mean) * scale + shift, then a clamp to [lo, hi], then an
 * element-wise activation (not softmax), the same code as the Activation
 * layer's so fused and unfused plans agree bit for bit. The plan fills
 * it for a fused step (exec/step_conv_epilogue.c); the convolution sees
 * only these numbers. */
#define GRAFT_EPILOGUE_MAX_C 4096
typedef struct graft_epilogue {
    bool bn;                          /* apply mean, scale, shift */
    const float *mean, *scale, *shift; /* C floats each, with bn */
    bool clamp;                       /* then clamp to [lo, hi] */
    float lo, hi;
    graft_activation act;             /* then this; GRAFT_LINEAR: none */
} graft_epilogue;

/* Whether e (may be NULL) does anything. */
static inline bool graft_epilogue_active(const graft_epilogue *e)
{
    return e && (e->bn || e->clamp || e->act != GRAFT_LINEAR);
}
/* The epilogue over rows of C channels, in place, row by row (for kernels
 * that apply it while a block of output is in cache). */
void graft_epilogue_rows(const graft_epilogue *e, float *out, size_t rows, int C);
/* The same over a whole output, on the thread team; false when e does nothing. */
bool graft_epilogue_apply(const graft_epilogue *e, float *out, size_t rows, int C);

#endif
