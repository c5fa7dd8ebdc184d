/*
 * graft/zoo.h: Pretrained bases (Keras Applications), ImageNet labels and predictions,
 * the official weight files (fetched through graft/fetch.h).
 * Included by graft.h; see there for conventions.
 */
#ifndef GRAFT_API_ZOO_H
#define GRAFT_API_ZOO_H

#include "graft/data.h"
#include "graft/fetch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ pretrained bases (src/zoo) */
/*
 * The Keras Applications bases, built with Keras's layer names, layer order
 * and weight layouts, so Keras and TF.js weight files load by name. Names are
 * Keras's function names, case-insensitively and with or without
 * underscores ("ResNet50V2", "efficientnetb0", "mobilenet_v2"); graft_zoo_arch_at
 * lists them.
 */
typedef enum { GRAFT_POOL_NONE = 0, GRAFT_POOL_AVG, GRAFT_POOL_MAX } graft_pooling;

typedef struct {
    float alpha;          /* width multiplier (MobileNet, MobileNetV2, MobileNetV3); 0 -> 1.0 */
    int depth_multiplier; /* MobileNet's DepthwiseConv2D depth_multiplier; 0 -> 1 */
    float dropout;        /* MobileNet's top Dropout rate (Keras default 1e-3) */
    int include_top;      /* the ImageNet classifier on top */
    int input_shape[3];   /* (H, W, C); H = W = 0: the architecture's default size (C 0: 3) */
    graft_pooling pooling; /* without top: none (4-D features), avg or max (2-D) */
    int classes;          /* with top; 0 -> 1000 */
    int minimalistic;     /* MobileNetV3: no squeeze-excite, ReLU, 3x3 kernels */
    /* MobileNetV3 and ConvNeXt: the Rescaling/Normalization layers Keras puts
     * in front (its default, on); the others ignore it. */
    int include_preprocessing;
    /* Built to hold Keras's ImageNet weights, as Keras builds for
     * weights="imagenet": EfficientNet then has one more layer, a Rescaling
     * after its Normalization (graft_zoo_load_imagenet refuses an
     * EfficientNet built without it); the others are the same either way. */
    int imagenet_weights;
    /* The layers and weight shapes only: the weights are laid out but not
     * drawn (they read zero) until graft_model_init_weights. For summaries,
     * parameter counts and layer names, which it makes far faster on the
     * largest bases (VGG19's 143M draws and their pages). */
    int skip_init;
} graft_zoo_cfg;

/* One architecture of the zoo. */
typedef struct {
    const char *name;       /* graft's name: "mobilenet_v2", "resnet50v2", "efficientnetb0" */
    const char *keras_name; /* Keras's function: "MobileNetV2", "ResNet50V2", "EfficientNetB0" */
    int min_size;           /* the smallest input height and width Keras accepts */
    int default_size;       /* Keras's default input size (its top's weights are for it) */
    /* preprocess_input's mode: "caffe", "tf", "torch" or "none" (the model
     * scales its 0..255 input itself) */
    const char *preprocess;
    /* A layer with weights that every file of this base's weights (without
     * top) holds, and the smaller members of its family lack; NULL: none
     * known. A quick test before building the base to try a file on it. */
    const char *weighted_mark;
} graft_zoo_arch;

/* The architecture called `name` (any of its spellings), or NULL. */
const graft_zoo_arch *graft_zoo_find(const char *name);
/* The i-th architecture, in the order Keras documents them; NULL past the last. */
const graft_zoo_arch *graft_zoo_arch_at(int i);

/* Keras's defaults: alpha 1, depth_multiplier 1, dropout 1e-3, include_top,
 * input of the architecture's default size (zeros here), no pooling, 1000
 * classes, include_preprocessing. */
graft_zoo_cfg graft_zoo_default_cfg(void);

/* Builds a base with fresh weights (the layer initializers). The caller may
 * add a head to *out (layers added with input NULL follow the base's output);
 * graft_model_num_layers(*out) just after building is where the base ends. */
graft_status graft_zoo_build(const char *arch, const graft_zoo_cfg *cfg, graft_model **out);

/* The architecture whose layer names a model carries (graft's name:
 * "mobilenet", "resnet101", ...), or NULL. */
const char *graft_zoo_detect_arch(const graft_model *m);

/* Keras's preprocess_input for `arch` on n_pixels RGB pixels in 0..255, in
 * place, by the architecture's mode (graft_zoo_arch.preprocess): "tf" scales
 * to [-1, 1]; "caffe" swaps to BGR and subtracts the ImageNet channel means;
 * "torch" scales to [0, 1] and standardises by the ImageNet means and
 * deviations; "none" leaves the pixels (the model scales them itself). The
 * mode names are accepted in place of an architecture. */
graft_status graft_preprocess_input(const char *arch, float *x, size_t n_pixels);

/* The same as an ImageDataGenerator preprocessing_function: ctx is the
 * architecture's name (a const char *), x one h*w*3 image; thread-safe. */
graft_status graft_preprocess_hook(void *ctx, float *x, int h, int w, int c);

/* ImageNet's 1000 classes in Keras's order, from Debian darknet's label lists
 * (imagenet.labels.list: WordNet ids, imagenet.shortnames.list: names) in
 * $GRAFT_DARKNET_DATA, else /usr/share/darknet/data. */
#define GRAFT_IMAGENET_CLASSES 1000
typedef struct {
    int index;     /* class index in Keras's order */
    char wnid[16]; /* "n02391049" */
    char name[64]; /* "zebra" */
    float prob;
} graft_prediction;

/* The name and WordNet id of class `index` (loads the lists once). */
graft_status graft_imagenet_class(int index, const char **wnid, const char **name);
/* Keras's decode_predictions for one sample: the `top` largest of n_classes
 * (= 1000) probabilities, best first, into out[top]. */
graft_status graft_decode_predictions(const float *probs, int n_classes, int top,
                                      graft_prediction *out);
/* preprocess_input for the model's architecture, predict and decode: n images
 * of the model's input shape, RGB 0..255 NHWC (not modified); out[n * top]. */
graft_status graft_zoo_classify(graft_model *m, const float *images, int n, int top,
                                graft_prediction *out);

/* For `graft predict`: loads an image file at the model's input size with
 * `interp` (Keras's load_img resamples with nearest by default;
 * image_dataset_from_directory with bilinear, which classifies better on
 * downscaled photos) and classifies it as graft_zoo_classify does. */
graft_status graft_zoo_predict_file(graft_model *m, const char *path, graft_interpolation interp,
                                    int top, graft_prediction *out);

/* Pretrained ImageNet weights as Keras Applications publishes them. */
typedef struct {
    char file_name[128]; /* Keras's cache file name, e.g. mobilenet_1_0_224_tf_no_top.h5 */
    char url[256];
    graft_hash_kind hash_kind; /* NONE where Keras publishes no checksum */
    char hash[65];             /* lowercase hex */
} graft_weights_file;

/* The official file for a base built with cfg (MobileNet: alpha 0.25/0.5/0.75/1.0,
 * square 128/160/192/224 input, else the 224 file as Keras does; MobileNetV2:
 * alpha 0.35/0.5/0.75/1.0/1.3/1.4, 96/128/160/192/224; MobileNetV3: alpha
 * 0.75/1.0, minimalistic 1.0, the 224 files at any size). */
graft_status graft_zoo_imagenet_file(const char *arch, const graft_zoo_cfg *cfg,
                                     graft_weights_file *out);
/* The cache folder: $GRAFT_HOME/models, default ~/.cache/graft/models. */
graft_status graft_zoo_cache_dir(char *buf, size_t cap);
/* The cached file's path, downloading it first when absent (a file already at
 * that path is used as is: copy a local file there to work offline). */
graft_status graft_zoo_fetch_imagenet(const char *arch, const graft_zoo_cfg *cfg, char *path,
                                      size_t cap);
/* Loads a Keras weights file into m, a zoo base `arch` built with cfg (and
 * perhaps a head on it), as Keras's load_weights would into the base: by
 * layer name where the file's names are the base's, else in the order of the
 * layers with weights (Keras 2.0's files of InceptionV3 and Xception carry
 * its 1-based automatic names: conv2d_1 for graft's conv2d). layers_loaded
 * (may be NULL): m's layers that received weights. All or nothing. */
graft_status graft_zoo_load_weights(graft_model *m, const char *arch, const graft_zoo_cfg *cfg,
                                    const char *path, int *layers_loaded);
/* Fetches and loads ImageNet weights into a model built with the same cfg. */
graft_status graft_zoo_load_imagenet(graft_model *m, const char *arch, const graft_zoo_cfg *cfg);


#ifdef __cplusplus
}
#endif
#endif /* GRAFT_API_ZOO_H */
