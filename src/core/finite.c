/* Finding NaN and Inf in loaded arrays: one pass, cheap enough for every load. */
#include "internal.h"

#include <math.h>
#include <string.h>

size_t graft_first_nonfinite(const void *p, size_t n)
{
    /* A float is NaN or Inf exactly when its exponent bits are all ones, so
     * the largest |bits| of a block tells. Blocks of a fixed size let -O2's
     * cheap vectoriser turn the max into vector instructions; the block that
     * holds a bad value is then searched one element at a time. Bytes are
     * copied out, so p needs no alignment (checkpoints pack their arrays). */
    enum { BLOCK = 64 };
    const unsigned char *bytes = p;
    size_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) {
        uint32_t bits[BLOCK], top = 0;
        memcpy(bits, bytes + i * sizeof(float), sizeof bits);
        for (int k = 0; k < BLOCK; k++) {
            uint32_t b = bits[k] & 0x7fffffffu;
            top = b > top ? b : top;
        }
        if (top >= 0x7f800000u) break;
    }
    for (; i < n; i++) {
        float v;
        memcpy(&v, bytes + i * sizeof(float), sizeof v);
        if (!isfinite(v)) return i;
    }
    return n;
}

const char *graft_nonfinite_name(const void *p, size_t i)
{
    float v;
    memcpy(&v, (const unsigned char *)p + i * sizeof(float), sizeof v);
    return isnan(v) ? "NaN" : v > 0 ? "Inf" : "-Inf";
}
