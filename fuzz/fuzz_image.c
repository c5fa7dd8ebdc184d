/* Image files as graft decodes them (the format sniffed from the content):
 * from memory with the options flow_from_directory uses (RGB, grayscale and
 * RGBA; JPEG DCT scaling toward a small target), then as a file through
 * graft_image_size (which reads only headers) and load_img. */
#include "fuzz_util.h"
#include "data/data.h"

/* Keeps the fuzzer's memory use bounded; the limit check itself is under test. */
#define MAX_PIXELS (1u << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const graft_decode_opts opts[] = {
        {.channels = 3, .jpeg_full_decode = 1, .max_pixels = MAX_PIXELS},
        {.channels = 1, .target_h = 16, .target_w = 16, .max_pixels = MAX_PIXELS},
        {.channels = 4, .target_h = 5, .target_w = 300, .max_pixels = MAX_PIXELS},
    };
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        graft_img img;
        if (graft_img_decode_mem(data, size, "fuzz", &opts[i], &img) == GRAFT_OK) {
            if (img.h <= 0 || img.w <= 0 || img.c != opts[i].channels || !img.px) abort();
            graft_img out;
            if (graft_img_resize(&img, 7, 5, GRAFT_INTERP_BILINEAR, &out) == GRAFT_OK)
                graft_img_free(&out);
            graft_img_free(&img);
        }
        fuzz_check_message();
    }
    const char *p = fuzz_file("in.img", data, size);
    int h = 0, w = 0;
    if (graft_image_size(p, &h, &w) == GRAFT_OK && (size_t)h * (size_t)w <= MAX_PIXELS) {
        static float x[16 * 16 * 3];
        graft_image_load(p, 16, 16, GRAFT_INTERP_NEAREST, 0, x);
    }
    fuzz_check_message();
    return 0;
}
