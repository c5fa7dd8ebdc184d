/* graft_zoo_build: Keras's defaults and argument checks, the model's name and
 * InputLayer, then the architecture's own builder. */
#include "zoo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

graft_zoo_cfg graft_zoo_default_cfg(void)
{
    return (graft_zoo_cfg){.alpha = 1.0f,
                           .depth_multiplier = 1,
                           .dropout = 1e-3f,
                           .include_top = 1,
                           .input_shape = {224, 224, 3},
                           .pooling = GRAFT_POOL_NONE,
                           .classes = 1000};
}

typedef struct {
    const char *arch;
    void (*build)(graft_model *, graft_layer *, const zoo_spec *);
    const char *keras_name; /* for messages */
} arch_entry;

static const arch_entry archs[] = {
    {"mobilenet", graft_zoo_mobilenet, "MobileNet"},
    {"mobilenet_v2", graft_zoo_mobilenet_v2, "MobileNetV2"},
    {"resnet50", graft_zoo_resnet50, "ResNet50"},
    {"vgg16", graft_zoo_vgg16, "VGG16"},
};

const char *graft_zoo_arch_name(int i, const char **keras_name)
{
    if (i < 0 || (size_t)i >= sizeof archs / sizeof *archs) return NULL;
    if (keras_name) *keras_name = archs[i].keras_name;
    return archs[i].arch;
}

static const arch_entry *find_arch(const char *arch)
{
    for (size_t i = 0; arch && i < sizeof archs / sizeof *archs; i++)
        if (strcmp(archs[i].arch, arch) == 0) return &archs[i];
    return NULL;
}

/* Fills defaults into *s and checks the arguments as Keras does. */
static graft_status resolve(const arch_entry *a, const graft_zoo_cfg *cfg, zoo_spec *s)
{
    graft_zoo_cfg c = cfg ? *cfg : graft_zoo_default_cfg();
    if (c.alpha == 0.0f) c.alpha = 1.0f;
    if (c.depth_multiplier == 0) c.depth_multiplier = 1;
    if (c.classes == 0) c.classes = 1000;
    if (c.input_shape[0] == 0 && c.input_shape[1] == 0 && c.input_shape[2] == 0) {
        c.input_shape[0] = c.input_shape[1] = 224;
        c.input_shape[2] = 3;
    }
    bool mobile = a->build == graft_zoo_mobilenet || a->build == graft_zoo_mobilenet_v2;
    if (!(c.alpha > 0.0f) || !isfinite(c.alpha))
        return graft_fail(GRAFT_EINVAL, "%s: alpha must be positive (got %g)", a->keras_name,
                          (double)c.alpha);
    if (!mobile && c.alpha != 1.0f)
        return graft_fail(GRAFT_EINVAL, "%s has no alpha (width) argument; leave it at 1",
                          a->keras_name);
    if (c.depth_multiplier < 1)
        return graft_fail(GRAFT_EINVAL, "%s: depth_multiplier must be at least 1 (got %d)",
                          a->keras_name, c.depth_multiplier);
    if (a->build != graft_zoo_mobilenet && c.depth_multiplier != 1)
        return graft_fail(GRAFT_EINVAL, "%s has no depth_multiplier argument; only MobileNet does",
                          a->keras_name);
    if (!(c.dropout >= 0.0f && c.dropout < 1.0f))
        return graft_fail(GRAFT_EINVAL, "%s: dropout must be in [0, 1) (got %g)", a->keras_name,
                          (double)c.dropout);
    if (c.input_shape[0] < 32 || c.input_shape[1] < 32)
        return graft_fail(GRAFT_ESHAPE,
                          "%s: input_shape (%d, %d, %d) is too small; height and width must be "
                          "at least 32",
                          a->keras_name, c.input_shape[0], c.input_shape[1], c.input_shape[2]);
    if (c.input_shape[2] < 1)
        return graft_fail(GRAFT_ESHAPE, "%s: input_shape (%d, %d, %d) needs at least one channel",
                          a->keras_name, c.input_shape[0], c.input_shape[1], c.input_shape[2]);
    if (c.include_top && c.classes < 1)
        return graft_fail(GRAFT_EINVAL, "%s: classes must be positive (got %d)", a->keras_name,
                          c.classes);
    if (c.pooling != GRAFT_POOL_NONE && c.pooling != GRAFT_POOL_AVG && c.pooling != GRAFT_POOL_MAX)
        return graft_fail(GRAFT_EINVAL, "%s: pooling must be none, avg or max", a->keras_name);
    s->cfg = c;
    /* The float the user passed, back to the decimal they wrote, so widths
     * such as int(320 * 0.35) round as in Keras's double arithmetic. */
    s->alpha = nearbyint((double)c.alpha * 1e6) / 1e6;
    return GRAFT_OK;
}

graft_status graft_zoo_build(const char *arch, const graft_zoo_cfg *cfg, graft_model **out)
{
    if (!out) return graft_fail(GRAFT_EINVAL, "graft_zoo_build: no output pointer");
    *out = NULL;
    const arch_entry *a = find_arch(arch);
    if (!a)
        return graft_fail(GRAFT_EINVAL,
                          "unknown architecture '%s'; graft builds mobilenet, mobilenet_v2, "
                          "resnet50 and vgg16",
                          arch ? arch : "(null)");
    zoo_spec s;
    graft_status st = resolve(a, cfg, &s);
    if (st != GRAFT_OK) return st;
    char name[64];
    if (a->build == graft_zoo_mobilenet)
        snprintf(name, sizeof name, "mobilenet_%0.2f_%d", s.alpha, s.cfg.input_shape[0]);
    else if (a->build == graft_zoo_mobilenet_v2)
        snprintf(name, sizeof name, "mobilenetv2_%0.2f_%d", s.alpha, s.cfg.input_shape[0]);
    else
        snprintf(name, sizeof name, "%s", a->arch);
    graft_model *m = graft_model_new(name);
    if (!m) return GRAFT_ENOMEM;
    graft_layer *in = graft_input(
        m, "input_1", graft_shape3(s.cfg.input_shape[0], s.cfg.input_shape[1], s.cfg.input_shape[2]));
    if (in) a->build(m, in, &s);
    st = graft_model_status(m);
    if (st != GRAFT_OK) {
        graft_status keep = graft_fail(st, "%s: %s", a->keras_name, graft_model_error(m));
        graft_model_free(m);
        return keep;
    }
    *out = m;
    return GRAFT_OK;
}

graft_layer *graft_zoo_pooling(graft_model *m, graft_layer *x, graft_pooling p,
                               const char *avg_name, const char *max_name)
{
    if (p == GRAFT_POOL_AVG) return graft_global_average_pooling2d(m, x, avg_name);
    if (p == GRAFT_POOL_MAX) return graft_global_max_pooling2d(m, x, max_name);
    return x;
}

const char *graft_zoo_detect_arch(const graft_model *m)
{
    static const struct {
        const char *layer, *arch;
    } marks[] = {
        {"conv_dw_1", "mobilenet"},
        {"expanded_conv_depthwise", "mobilenet_v2"},
        {"block_1_expand", "mobilenet_v2"},
        {"conv2_block1_1_conv", "resnet50"},
        {"block1_conv1", "vgg16"},
    };
    if (!m) return NULL;
    for (size_t i = 0; i < sizeof marks / sizeof *marks; i++)
        if (graft_model_find(m, marks[i].layer)) return marks[i].arch;
    return NULL;
}

graft_status graft_zoo_classify(graft_model *m, const float *images, int n, int top,
                                graft_prediction *out)
{
    if (!m || !images || !out || n < 0 || top < 1)
        return graft_fail(GRAFT_EINVAL, "graft_zoo_classify: missing argument or top < 1");
    const char *arch = graft_zoo_detect_arch(m);
    if (!arch)
        return graft_fail(GRAFT_EUNSUPPORTED,
                          "model '%s' is none of the ImageNet architectures graft knows "
                          "(no conv_dw_1, block_1_expand, conv2_block1_1_conv or block1_conv1 "
                          "layer), so its preprocessing is unknown",
                          graft_model_name(m));
    graft_layer *in = graft_model_layer(m, 0), *o = graft_model_output(m);
    graft_shape is = graft_layer_output_shape(in), os = graft_layer_output_shape(o);
    if (os.rank != 1 || os.dim[0] != GRAFT_IMAGENET_CLASSES)
        return graft_fail(GRAFT_ESHAPE,
                          "model '%s': its output has shape %d-D with %d values, not the %d "
                          "ImageNet classes",
                          graft_model_name(m), os.rank, os.dim[0], GRAFT_IMAGENET_CLASSES);
    if (is.rank != 3 || is.dim[2] != 3)
        return graft_fail(GRAFT_ESHAPE, "model '%s' does not take RGB images", graft_model_name(m));
    size_t px = (size_t)is.dim[0] * is.dim[1], total, vals;
    if (!graft_mul_ok(px * 3, (size_t)n, &total) ||
        !graft_mul_ok((size_t)n, GRAFT_IMAGENET_CLASSES, &vals))
        return graft_fail(GRAFT_ENOMEM, "graft_zoo_classify: %d images is too many", n);
    float *x = malloc(total * sizeof(float) + 1), *probs = malloc(vals * sizeof(float) + 1);
    graft_status st = GRAFT_OK;
    if (!x || !probs) {
        st = graft_fail(GRAFT_ENOMEM, "out of memory for %d images of %dx%d", n, is.dim[0],
                        is.dim[1]);
        goto done;
    }
    memcpy(x, images, total * sizeof(float));
    st = graft_preprocess_input(arch, x, px * (size_t)n);
    if (st == GRAFT_OK) st = graft_model_predict(m, x, n, probs);
    for (int i = 0; st == GRAFT_OK && i < n; i++)
        st = graft_decode_predictions(probs + (size_t)i * GRAFT_IMAGENET_CLASSES,
                                      GRAFT_IMAGENET_CLASSES, top, out + (size_t)i * top);
done:
    free(x);
    free(probs);
    return st;
}
