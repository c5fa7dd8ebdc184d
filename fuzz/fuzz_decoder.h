/* The body of the one-format decoder targets (fuzz_tiff, fuzz_gif,
 * fuzz_webp): the decoder itself on the input, with the options
 * flow_from_directory uses (RGB, grayscale, RGBA) and a small pixel limit,
 * so that mutations stay in the format instead of being sniffed away. */
#ifndef GRAFT_FUZZ_DECODER_H
#define GRAFT_FUZZ_DECODER_H

#include "data/data.h"
#include "fuzz_util.h"

/* Keeps the fuzzer's memory use bounded; the limit check itself is under test. */
#define FUZZ_MAX_PIXELS (1u << 22)

typedef graft_status (*fuzz_decoder)(const uint8_t *data, size_t size, const char *name,
                                     const graft_decode_opts *opts, graft_img *out);

static inline void fuzz_decode(fuzz_decoder decode, const uint8_t *data, size_t size)
{
    static const graft_decode_opts opts[] = {
        {.channels = 3, .max_pixels = FUZZ_MAX_PIXELS},
        {.channels = 1, .max_pixels = FUZZ_MAX_PIXELS},
        {.channels = 4, .max_pixels = FUZZ_MAX_PIXELS},
    };
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        graft_img img = {0};
        if (decode(data, size, "fuzz", &opts[i], &img) == GRAFT_OK) {
            if (img.h <= 0 || img.w <= 0 || img.c != opts[i].channels || !img.px ||
                (size_t)img.h * (size_t)img.w > FUZZ_MAX_PIXELS)
                abort();
            /* Every byte was written (MSan would say where; here a sum reads them all). */
            volatile unsigned sum = 0;
            for (size_t k = 0; k < (size_t)img.h * img.w * img.c; k++)
                sum += img.px[k];
            (void)sum;
            graft_img_free(&img);
        } else if (img.px) {
            abort(); /* a failure leaves nothing allocated */
        }
        fuzz_check_message();
    }
}

#endif
