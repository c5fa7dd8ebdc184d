/*
 * graft/data.h: The input pipeline: Keras's ImageDataGenerator and flow_from_directory,
 * load_img, over graft_source (graft/train.h).
 * Included by graft.h; see there for conventions.
 */
#ifndef GRAFT_API_DATA_H
#define GRAFT_API_DATA_H

#include "graft/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ data pipeline (src/data) */
/*
 * Keras's ImageDataGenerator(...).flow_from_directory(...) and load_img.
 * Images are decoded with libjpeg-turbo, libpng, libtiff, giflib and libwebp
 * (BMP and PPM by graft's own readers) to Pillow's pixels, resized exactly as Pillow
 * does (which is what Keras's flow_from_directory uses), augmented with
 * Keras's transform semantics, and prepared by worker threads ahead of the
 * training loop. A bad file is skipped with one warning naming it (or is an
 * error with `strict`).
 */
typedef enum {
    GRAFT_INTERP_NEAREST = 0, /* Keras's default */
    GRAFT_INTERP_BILINEAR,    /* Pillow's: antialiased when shrinking */
    GRAFT_INTERP_BICUBIC,
    GRAFT_INTERP_BOX,         /* "area": the average of the covered pixels */
    GRAFT_INTERP_HAMMING,
    GRAFT_INTERP_LANCZOS
} graft_interpolation;

/* "nearest", "bilinear", "bicubic", "box" or "area", "hamming", "lanczos". */
graft_status graft_interpolation_parse(const char *name, graft_interpolation *out);

typedef enum {
    GRAFT_FILL_NEAREST = 0, /* Keras's default */
    GRAFT_FILL_CONSTANT,
    GRAFT_FILL_REFLECT,
    GRAFT_FILL_WRAP
} graft_fill_mode;

/*
 * ImageDataGenerator's arguments; zero means Keras's default. The order of
 * operations is Keras's: resize, random affine transform (one resampling
 * pass), channel shift, flips, brightness, then preprocessing_function,
 * rescale, samplewise and featurewise normalisation.
 */
typedef struct {
    int featurewise_center, samplewise_center;
    int featurewise_std_normalization, samplewise_std_normalization;
    const float *mean, *std; /* per channel: what ImageDataGenerator.fit computes */
    /* ZCA whitening: each image, flattened to zca_dim = h*w*c values, times
     * principal_components (zca_dim x zca_dim, row-major), which fit
     * computes; it must outlive the flows made from this generator. */
    int zca_whitening;
    float zca_epsilon;         /* 0 -> Keras's 1e-6 (used by fit) */
    const float *principal_components;
    int zca_dim;
    float rotation_range;      /* degrees */
    float width_shift_range;   /* < 1: fraction of the width; >= 1: pixels */
    float height_shift_range;
    float brightness_range[2]; /* both 0: no brightness change */
    float shear_range;         /* degrees */
    /* [lower, upper]; with zoom_range[1] == 0, zoom_range[0] is Keras's
     * float form: [1 - z, 1 + z]. */
    float zoom_range[2];
    float channel_shift_range;
    graft_fill_mode fill_mode;
    float cval;
    int horizontal_flip, vertical_flip;
    float rescale;             /* 0: none */
    /* Runs on each augmented image (h x w x c floats in place), from worker
     * threads concurrently: it must be thread-safe. */
    graft_status (*preprocessing_function)(void *ctx, float *x, int h, int w, int c);
    void *preprocessing_ctx;
    float validation_split;    /* with graft_flow_cfg.subset */
    int interpolation_order_nearest; /* interpolation_order=0 (Keras's default is 1) */
} graft_image_data_generator;

typedef enum { GRAFT_COLOR_RGB = 0, GRAFT_COLOR_GRAYSCALE, GRAFT_COLOR_RGBA } graft_color_mode;

typedef enum {
    GRAFT_CLASS_CATEGORICAL = 0, /* Keras's default: one-hot */
    GRAFT_CLASS_BINARY,          /* 0/1, two classes */
    GRAFT_CLASS_SPARSE,          /* the class index */
    GRAFT_CLASS_INPUT,           /* y is a copy of x (autoencoders) */
    GRAFT_CLASS_NONE             /* no labels (y_dim 0) */
} graft_class_mode;

typedef enum { GRAFT_SUBSET_ALL = 0, GRAFT_SUBSET_TRAINING, GRAFT_SUBSET_VALIDATION } graft_subset;

typedef struct {
    int target_size[2];         /* (height, width); 0 -> (256, 256) */
    graft_color_mode color_mode;
    const char *const *classes; /* class subfolders in index order; NULL: all, sorted */
    int n_classes;
    graft_class_mode class_mode;
    int batch_size;             /* 0 -> 32 */
    int no_shuffle;             /* shuffle=False */
    uint64_t seed;              /* shuffling and augmentation (0 is a seed too) */
    graft_interpolation interpolation;
    graft_subset subset;
    int follow_links;
    int workers;                /* decoding threads; 0 -> 2 */
    int queue_depth;            /* batches kept ready; 0 -> 2 * workers */
    int strict;                 /* a bad image file is an error instead of skipped */
    int quiet;                  /* no "Found ..." line and no skip warnings */
    /* Decode every JPEG at full size, as Pillow (and so Keras) does, for
     * Keras's exact pixels. By default a JPEG is decoded at 1/2, 1/4 or 1/8
     * by libjpeg's DCT scaling when that still covers target_size (faster;
     * the pixels then differ slightly from Keras's). */
    int jpeg_full_decode;
    size_t max_pixels;          /* decoded pixels above this refuse a file; 0 -> 89478485 */
} graft_flow_cfg;

/*
 * flow_from_directory: one subfolder of `dir` per class (searched
 * recursively), files ending in png, jpg, jpeg, bmp, ppm, tif or tiff (Keras's
 * list), gif (image_dataset_from_directory's) or webp.
 * Prints Keras's "Found N images belonging to K classes." unless quiet.
 * The source is endless; `length` batches make one pass and each pass is a
 * fresh permutation (for the seed). gen may be NULL (no augmentation).
 * Shuffling and each sample's random transform derive from (seed, pass,
 * file) only, so the batches are the same for any number of workers (but
 * not Keras's numpy draws). A file that fails to decode is left out of its
 * batch (which is then shorter, possibly empty), named once on stderr and
 * counted (graft_flow_skipped); with `strict`, next() fails instead.
 */
graft_status graft_flow_from_directory(const char *dir, const graft_image_data_generator *gen,
                                       const graft_flow_cfg *cfg, graft_source **out);

/* What ImageDataGenerator.fit computes (graft_generator_fit fills it and
 * points the generator's mean, std and principal_components at it). */
typedef struct {
    int c;                       /* channels */
    float mean[4], std[4];       /* per channel */
    int dim;                     /* h*w*c with ZCA, else 0 */
    float *principal_components; /* dim x dim, row-major; NULL without ZCA */
} graft_generator_stats;

/*
 * ImageDataGenerator.fit(x) (augment=False): n images of h x w x c floats as
 * loaded (0..255), rescaled by gen->rescale, then as Keras: the per-channel
 * mean over images, rows and columns (featurewise_center) subtracted, the
 * per-channel standard deviation (featurewise_std_normalization, computed
 * whether or not centred, as np.std) divided out (+1e-6), and for
 * zca_whitening sigma = X^T X / n over the flattened images, its
 * eigendecomposition (LAPACK's dsyevd; sigma is symmetric, so this is the
 * SVD Keras takes), principal_components = U diag(1/sqrt(s + zca_epsilon)) U^T.
 * Computed in double precision. Free st with graft_generator_stats_free.
 */
graft_status graft_generator_fit(graft_image_data_generator *gen, const float *x, int n, int h,
                                 int w, int c, graft_generator_stats *st);
/* ImageDataGenerator.fit(x, augment=True, rounds, seed): each image's
 * random transform (the generator's augmentation, drawn from seed, round
 * and index as a flow draws them) `rounds` times, before the statistics. */
graft_status graft_generator_fit_augmented(graft_image_data_generator *gen, const float *x, int n,
                                           int h, int w, int c, int rounds, uint64_t seed,
                                           graft_generator_stats *st);
/* The same on up to n_sample images (0: all) of the folder as a flow with
 * cfg would list them (its target size, colour mode, subset and seed; a
 * random sample when shuffled), decoded and resized without augmentation. */
graft_status graft_generator_fit_directory(graft_image_data_generator *gen, const char *dir,
                                           const graft_flow_cfg *cfg, int n_sample,
                                           graft_generator_stats *st);
void graft_generator_stats_free(graft_generator_stats *st);

/* Accessors on a source from graft_flow_from_directory (Keras's attributes). */
int graft_flow_samples(const graft_source *s);
int graft_flow_num_classes(const graft_source *s);
const char *graft_flow_class_name(const graft_source *s, int class_index);
/* class_indices[name]; -1 when there is no such class. */
int graft_flow_class_index(const graft_source *s, const char *name);
/* filenames[i]: relative to the directory, "cats/cat.0.jpg". */
const char *graft_flow_filename(const graft_source *s, int i);
/* classes[i] */
int graft_flow_class_of(const graft_source *s, int i);
/* Files skipped so far as unreadable or malformed (each counted once). */
int graft_flow_skipped(const graft_source *s);
/* The sample indices (into filenames) of the batch returned last by next();
 * returns their count. idx has room for batch_size. */
int graft_flow_last_indices(const graft_source *s, int *idx);

/* load_img + img_to_array: one image at (target_h, target_w) (0, 0: its own
 * size), full-size decoding as Keras. out: h*w*c floats in 0..255, c = 1 for
 * grayscale else 3. The image's size is checked before decoding. */
graft_status graft_image_load(const char *path, int target_h, int target_w,
                              graft_interpolation interp, int grayscale, float *out);
/* graft_image_load for n files at once, shared among the threads
 * (graft_threads_set): image i goes to out + i * target_h * target_w * c.
 * full_decode 1 decodes every JPEG at full size, as Keras's load_img; 0
 * reduces it by libjpeg's DCT scaling where that still covers the target,
 * as graft_flow_from_directory does by default (what a model trained on
 * such a flow saw). ok[i] is 1 when file i was read; else 0, and why[i]
 * (when why is not NULL) holds the one-line reason, naming the file. A
 * file that fails does not stop the others; only bad arguments fail the
 * call. */
#define GRAFT_WHY_LEN 1024
graft_status graft_image_load_many(const char *const *paths, int n, int target_h, int target_w,
                                   graft_interpolation interp, int grayscale, int full_decode,
                                   float *out, int *ok, char (*why)[GRAFT_WHY_LEN]);
/* The size of an image file without decoding it. */
graft_status graft_image_size(const char *path, int *h, int *w);

/* The image files directly inside `dir` (no class subfolders), sorted, as
 * full paths; free with graft_image_list_free. */
graft_status graft_image_list(const char *dir, char ***paths, int *n);
void graft_image_list_free(char **paths, int n);


#ifdef __cplusplus
}
#endif
#endif /* GRAFT_API_DATA_H */
