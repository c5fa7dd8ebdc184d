/* xoshiro256** seeded through splitmix64: small, fast, and reproducible. */
#include "core/core.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void graft_rng_seed(graft_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* One xoshiro256** step; static, so that loops over draws can inline it
 * (the library is built position-independent, where the exported function
 * may be interposed and is not inlined). */
static inline uint64_t next(uint64_t *s)
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t graft_rng_next(graft_rng *rng) { return next(rng->s); }

float graft_rng_uniform(graft_rng *rng)
{
    return graft_unit_float(next(rng->s));
}

void graft_rng_fill_symmetric(graft_rng *rng, float *dst, size_t n, float limit)
{
    graft_rng r = *rng; /* a local copy: the state stays in registers */
    for (size_t i = 0; i < n; i++) {
        dst[i] = (2.0f * graft_unit_float(next(r.s)) - 1.0f) * limit;
    }
    *rng = r;
}

float graft_rng_normal(graft_rng *rng)
{
    /* Box-Muller; 1 - u keeps the log argument in (0, 1]. */
    double u1 = 1.0 - (double)(graft_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    double u2 = (double)(graft_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

float graft_rng_normal_at(uint64_t key, uint64_t i)
{
    double u1 = 1.0 - (double)(graft_rng_at(key, 2 * i) >> 11) * (1.0 / 9007199254740992.0);
    double u2 = (double)(graft_rng_at(key, 2 * i + 1) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t graft_rng_below(graft_rng *rng, uint32_t n)
{
    /* Lemire's multiply-shift with rejection: unbiased. */
    uint64_t m = (uint64_t)(uint32_t)graft_rng_next(rng) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t t = -n % n;
        while (low < t) {
            m = (uint64_t)(uint32_t)graft_rng_next(rng) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}
