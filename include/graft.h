/*
 * graft — transfer learning in C.
 *
 * The public header: an umbrella over the topical headers in include/graft/,
 * in the order a user meets them (model, train, data, io, zoo, report, export); each
 * can be included alone. Keras names and semantics throughout: layers carry
 * Keras names and weight layouts (Conv2D kernel HWIO, DepthwiseConv2D HWC1,
 * Dense IO), activations are NHWC float32, `trainable` works per layer.
 *
 * Errors: every fallible call returns a graft_status; graft_last_error()
 * holds a human message (naming the file, layer or tensor) for the calling
 * thread. Layer-building calls record the first error in the model (sticky)
 * and return NULL, so a chain of calls can be checked once at the end with
 * graft_model_status().
 */
#ifndef GRAFT_H
#define GRAFT_H

#define GRAFT_VERSION "0.2.0"

#include "graft/model.h"  /* status, shapes, building a model, its layers and weights */
#include "graft/train.h"  /* compile, sources, callbacks, fit / evaluate / predict */
#include "graft/data.h"   /* flow_from_directory, ImageDataGenerator, load_img */
#include "graft/io.h"     /* Keras HDF5 and TF.js model files */
#include "graft/fetch.h"  /* downloads, dataset archives, checksums */
#include "graft/zoo.h"    /* pretrained bases, ImageNet labels */
#include "graft/report.h" /* history.json, CSV logs, figures */
#include "graft/export.h" /* ONNX, TF.js and web-page exports */

#endif /* GRAFT_H */
