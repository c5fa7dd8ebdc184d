/*
 * graft/export.h: Deploying a model: ONNX files for ONNX Runtime and friends,
 * TensorFlow.js layers models, and a static web page that classifies images
 * in the browser with TF.js.
 * Included by graft.h; see there for conventions.
 */
#ifndef GRAFT_API_EXPORT_H
#define GRAFT_API_EXPORT_H

#include "graft/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What every export records beside the weights: the class names (NULL: none),
 * the preprocessing the model expects on RGB 0..255 pixels ("mobilenet",
 * "mobilenet_v2", "resnet50", "vgg16" or the modes "tf"/"caffe": Keras's
 * preprocess_input; "rescale": x / 255; NULL: none, the input is fed as is),
 * and the validation accuracy shown on the web page (0: unknown). */
typedef struct {
    const char *const *classes;
    int n_classes;
    const char *preprocess;
    float val_accuracy;
} graft_export_meta;

typedef struct {
    int batch;                 /* fixed batch size; 0: dynamic (dim "N") */
    int opset;                 /* ONNX opset, 11..17; 0 -> 13 */
    int nchw;                  /* input (N, C, H, W) instead of graft's (N, H, W, C) */
    int include_preprocessing; /* meta.preprocess as the graph's first nodes: input is 0..255 */
    /* The model's int8 run (graft_model_quantize_int8; GRAFT_ESTATE without
     * one) in ONNX's QDQ form, with graft's own scales: QuantizeLinear /
     * DequantizeLinear pairs (zero point 0, uint8 or int8 as graft holds the
     * tensor) on the input and on every step's output, graft's s8 kernels
     * (BatchNormalization folded in) as int8 initializers with per-channel
     * scales, biases as int32 at the input's scale times the kernel's, Add
     * and clamps in float between them, which ONNX Runtime fuses into
     * QLinearConv and friends. The layers after the run as without it.
     * Needs opset 13 or later. */
    int int8;
    graft_export_meta meta;
} graft_onnx_opts;

/* The model (inference mode: Dropout is the identity, BatchNormalization uses
 * its moving statistics, folded into the convolution below it where that is
 * exact) as an ONNX model at `path`, written crash-safely. A layer kind
 * without an ONNX converter fails with GRAFT_EUNSUPPORTED naming the layer
 * and its class. */
graft_status graft_export_onnx(const graft_model *m, const char *path, const graft_onnx_opts *o);

typedef enum { GRAFT_QUANT_NONE = 0, GRAFT_QUANT_UINT8, GRAFT_QUANT_FLOAT16 } graft_quantization;

typedef struct {
    graft_quantization quantize;
    size_t shard_bytes; /* 0 -> 4 MB (4194304), as tensorflowjs_converter */
    graft_export_meta meta;
} graft_tfjs_opts;

/* A TF.js layers model in folder `dir` (made if absent): model.json (the
 * Keras config and the weightsManifest), group1-shardKofN.bin weight shards,
 * and metadata.json (class names, preprocessing, input size). */
graft_status graft_export_tfjs(const graft_model *m, const char *dir, const graft_tfjs_opts *o);

/* graft_export_tfjs, then index.html (classify a chosen or dropped image,
 * the top classes and probabilities, the model's name, classes and
 * validation accuracy) and tf.min.js, copied from `tfjs_runtime` (the
 * @tensorflow/tfjs npm package's dist/tf.min.js): the folder works offline,
 * opened from disk. */
graft_status graft_export_web(const graft_model *m, const char *dir, const graft_tfjs_opts *o,
                              const char *tfjs_runtime);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_API_EXPORT_H */
