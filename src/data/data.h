/*
 * What the data pipeline's files share: decoded 8-bit images, the decoders,
 * Pillow-exact resizing, the affine augmentation pass and the prefetch queue.
 * Tests include this header to pin transform parameters.
 */
#ifndef GRAFT_DATA_H
#define GRAFT_DATA_H

#include "internal.h"

/* An interleaved 8-bit image: h rows of w pixels of c channels (1, 3 or 4). */
typedef struct {
    int h, w, c;
    uint8_t *px;
} graft_img;

void graft_img_free(graft_img *img);

typedef enum {
    GRAFT_FMT_UNKNOWN = 0,
    GRAFT_FMT_JPEG,
    GRAFT_FMT_PNG,
    GRAFT_FMT_BMP,
    GRAFT_FMT_PPM,
    GRAFT_FMT_TIFF,
    GRAFT_FMT_GIF,
    GRAFT_FMT_WEBP
} graft_img_format;

/* The format from the first bytes of a file (content, not the extension,
 * decides, as in Pillow). */
graft_img_format graft_img_sniff(const uint8_t *head, size_t n);

typedef struct {
    int channels;         /* 1 grayscale, 3 RGB, 4 RGBA (Pillow's convert()) */
    int target_h, target_w; /* the size it will be resized to (0: unknown) */
    int jpeg_full_decode; /* no DCT scaling (Pillow's pixels) unless max_pixels forces it */
    size_t max_pixels;    /* refuse images whose decoded size is larger */
} graft_decode_opts;

/* Decodes a whole image file. Fails with a message naming the file. */
graft_status graft_img_decode(const char *path, const graft_decode_opts *opts, graft_img *out);
/* The same on bytes in memory (`name` is only for messages). */
graft_status graft_img_decode_mem(const uint8_t *data, size_t size, const char *name,
                                  const graft_decode_opts *opts, graft_img *out);

/* TIFF (libtiff), GIF (giflib) and WebP (libwebp) on bytes in memory, in
 * decode_formats.c: the first page or frame, converted as Pillow does. */
graft_status graft_decode_tiff(const uint8_t *data, size_t size, const char *name,
                               const graft_decode_opts *opts, graft_img *out);
graft_status graft_decode_gif(const uint8_t *data, size_t size, const char *name,
                              const graft_decode_opts *opts, graft_img *out);
graft_status graft_decode_webp(const uint8_t *data, size_t size, const char *name,
                               const graft_decode_opts *opts, graft_img *out);

/* The pieces the decoders share (decode.c): an image of h x w x c bytes;
 * Pillow's convert() of one row of src_c channels (1 gray, 2 gray+alpha,
 * 3 RGB, 4 RGBA) to dst_c; the pixel limit; the size check (invalid, or
 * over the limit) every decoder makes before it allocates. */
graft_status graft_img_alloc(graft_img *img, int h, int w, int c, const char *name);
void graft_img_convert_row(const uint8_t *s, int src_c, uint8_t *d, int dst_c, int w);
size_t graft_img_max_pixels(const graft_decode_opts *opts);
graft_status graft_img_check_size(const char *name, long w, long h,
                                  const graft_decode_opts *opts);

/* The DCT scale denominator (1, 2, 4 or 8) libjpeg would decode a w x h JPEG
 * at for these options; 0 when even 1/8 exceeds max_pixels. */
int graft_jpeg_scale_denom(int w, int h, const graft_decode_opts *opts);

/* Pillow's Image.resize on 8-bit data, bit for bit: NEAREST through
 * ImagingScaleAffine, the other filters through the two-pass fixed-point
 * convolution (which antialiases when shrinking, unlike tf.image.resize). */
graft_status graft_img_resize(const graft_img *src, int h, int w, graft_interpolation interp,
                              graft_img *out);

/* The parameters of one random transform (Keras's transform_parameters). */
typedef struct {
    double theta;            /* degrees */
    double tx, ty;           /* Keras's tx (from height_shift_range) and ty */
    double shear;            /* degrees */
    double zx, zy;
    int flip_horizontal, flip_vertical;
    int has_channel_shift;
    double channel_shift_intensity;
    int has_brightness;
    double brightness;
} graft_transform;

/* Draws a transform as ImageDataGenerator.get_random_transform would (with
 * graft's generator in place of numpy's). */
/* Whether the generator draws a random transform (augmentation). */
bool graft_generator_is_random(const graft_image_data_generator *gen);
void graft_transform_random(const graft_image_data_generator *gen, int h, int w, graft_rng *rng,
                            graft_transform *t);

/* Keras's apply_transform on an h x w x c float image: the affine part
 * (rotation, shift, shear, zoom and both flips composed into one matrix) in
 * one scipy.ndimage.affine_transform-exact resampling pass, then the channel
 * shift and the brightness. `tmp` holds h*w*c floats. */
void graft_transform_apply(const graft_transform *t, graft_fill_mode fill, float cval,
                           int order, float *x, float *tmp, int h, int w, int c);

/* Keras's standardize: preprocessing_function, rescale, samplewise and
 * featurewise centering / normalisation. */
graft_status graft_standardize(const graft_image_data_generator *gen, float *x, int h, int w,
                               int c);

/* ------------------------------------------------------------- prefetch */

/* Fills one sample: the pos-th sample of pass `pass`. Returns GRAFT_OK,
 * a negative value to drop the sample from its batch (a skipped bad file),
 * or a failure status with graft_last_error() set. `index` receives the
 * sample's identity (reported by graft_prefetch_next). */
typedef int (*graft_fill_fn)(void *ctx, long pass, int pos, float *x, float *y, int *index);

typedef struct graft_prefetch graft_prefetch;

/* n samples a pass in batches of batch_size; x_floats and y_floats per
 * sample; `workers` threads keep up to `depth` batches ready. */
graft_status graft_prefetch_new(int n, int batch_size, size_t x_floats, size_t y_floats,
                                int workers, int depth, graft_fill_fn fill, void *ctx,
                                graft_prefetch **out);
/* The next batch in order: copies its kept samples to x, y and their
 * indices to idx (may be NULL); *n_out is their count. */
graft_status graft_prefetch_next(graft_prefetch *p, float *x, float *y, int *idx, int *n_out);
/* Makes `batch` (counted from the first batch of the first pass) the next
 * one graft_prefetch_next returns. */
graft_status graft_prefetch_seek(graft_prefetch *p, long batch);
/* Stops and joins the workers. */
void graft_prefetch_free(graft_prefetch *p);

/* A seeded bijection of [0, n) (cycle-walking Feistel), so any worker can
 * find the i-th sample of a shuffled pass without shared state. */
uint32_t graft_permute_index(uint32_t i, uint32_t n, uint64_t key);
uint64_t graft_mix64(uint64_t a, uint64_t b);

#endif
