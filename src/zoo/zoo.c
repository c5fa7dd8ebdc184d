/* graft_zoo_build: Keras's defaults and argument checks, the model's name and
 * InputLayer, then the architecture's own builder. */
#include "zoo.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

graft_zoo_cfg graft_zoo_default_cfg(void)
{
    return (graft_zoo_cfg){.alpha = 1.0f,
                           .depth_multiplier = 1,
                           .dropout = 1e-3f,
                           .include_top = 1,
                           .input_shape = {0, 0, 3},
                           .pooling = GRAFT_POOL_NONE,
                           .classes = 1000,
                           .include_preprocessing = 1};
}

#define MD5 GRAFT_HASH_MD5
#define KT(f) f "_weights_tf_dim_ordering_tf_kernels.h5", f "_weights_tf_dim_ordering_tf_kernels_notop.h5"

/* Keras's min_size and default_size (imagenet_utils.obtain_input_shape), its
 * preprocess_input mode, and the published weight files with their hashes
 * (keras/applications/<family>.py). */
static const zoo_entry table[] = {
    {{"vgg16", "VGG16", 32, 224, "caffe",
      "block5_conv3"}, "vgg16", graft_zoo_vgg, 16, 0,
     "vgg16", KT("vgg16"), MD5, "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc",
     "block1_conv1"},
    {{"vgg19", "VGG19", 32, 224, "caffe",
      "block5_conv4"}, "vgg19", graft_zoo_vgg, 19, 0,
     "vgg19", KT("vgg19"), MD5, "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6",
     "block5_conv4"},
    {{"resnet50", "ResNet50", 32, 224, "caffe",
      "conv5_block3_3_bn"}, "resnet50", graft_zoo_resnet, 50, 0,
     "resnet", KT("resnet50"), MD5, "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626",
     "conv2_block1_1_conv"},
    {{"resnet101", "ResNet101", 32, 224, "caffe",
      "conv4_block23_3_bn"}, "resnet101", graft_zoo_resnet, 101, 0,
     "resnet", KT("resnet101"), MD5, "f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21",
     "conv4_block23_1_conv"},
    {{"resnet152", "ResNet152", 32, 224, "caffe",
      "conv3_block8_3_bn"}, "resnet152", graft_zoo_resnet, 152, 0,
     "resnet", KT("resnet152"), MD5, "100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c",
     "conv3_block8_1_conv"},
    {{"resnet50v2", "ResNet50V2", 32, 224, "tf",
      "post_bn"}, "resnet50v2", graft_zoo_resnet_v2, 50, 0,
     "resnet", KT("resnet50v2"), MD5, "3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917",
     "conv2_block1_preact_bn"},
    {{"resnet101v2", "ResNet101V2", 32, 224, "tf",
      "conv4_block23_preact_bn"}, "resnet101v2", graft_zoo_resnet_v2, 101, 0,
     "resnet", KT("resnet101v2"), MD5, "6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5",
     "conv4_block23_preact_bn"},
    {{"resnet152v2", "ResNet152V2", 32, 224, "tf",
      "conv3_block8_preact_bn"}, "resnet152v2", graft_zoo_resnet_v2, 152, 0,
     "resnet", KT("resnet152v2"), MD5, "a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33",
     "conv3_block8_preact_bn"},
    {{"densenet121", "DenseNet121", 32, 224, "torch",
      "conv5_block16_2_conv"}, "densenet121", graft_zoo_densenet, 121, 0,
     "densenet", KT("densenet121"), MD5, "9d60b8095a5708f2dcce2bca79d332c7",
     "30ee3e1110167f948a6b9946edeeb738", "conv2_block1_concat"},
    {{"densenet169", "DenseNet169", 32, 224, "torch",
      "conv5_block32_2_conv"}, "densenet169", graft_zoo_densenet, 169, 0,
     "densenet", KT("densenet169"), MD5, "d699b8f76981ab1b30698df4c175e90b",
     "b8c4d4c20dd625c148057b9ff1c1176b", "conv5_block32_concat"},
    {{"densenet201", "DenseNet201", 32, 224, "torch",
      "conv4_block48_2_conv"}, "densenet201", graft_zoo_densenet, 201, 0,
     "densenet", KT("densenet201"), MD5, "1ceb130c1ea1b78c3bf6114dbdfd8807",
     "c13680b51ded0fb44dff2d8f86ac8bb1", "conv4_block48_concat"},
    {{"inceptionv3", "InceptionV3", 75, 299, "tf",
      "batch_normalization_93"}, "inception_v3", graft_zoo_inception_v3, 3, 0,
     "inception_v3", KT("inception_v3"), MD5, "9a0d58056eeedaa3f26cb7ebd46da564",
     "bcbd6486424b2319ff4ef7d526e38f63", "mixed10"},
    {{"xception", "Xception", 71, 299, "tf",
      "block14_sepconv2_bn"}, "xception", graft_zoo_xception, 1, 0,
     "xception", KT("xception"), MD5, "0a58e3b7378bc2990ea3b43d5981f1f6",
     "b0042744bf5b25fce3cb969f33bebb97", "block14_sepconv2"},
    {{"efficientnetb0", "EfficientNetB0", 32, 224, "none",
      "block6d_project_conv"}, "efficientnetb0", graft_zoo_efficientnet,
     0, 0, "https://storage.googleapis.com/keras-applications/", "efficientnetb0.h5",
     "efficientnetb0_notop.h5", MD5, "902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d", "block6d_project_conv"},
    {{"efficientnetb1", "EfficientNetB1", 32, 240, "none",
      "block6e_project_conv"}, "efficientnetb1", graft_zoo_efficientnet,
     1, 0, "https://storage.googleapis.com/keras-applications/", "efficientnetb1.h5",
     "efficientnetb1_notop.h5", MD5, "1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432", "block6e_project_conv"},
    {{"efficientnetb2", "EfficientNetB2", 32, 260, "none",
      "block6e_project_conv"}, "efficientnetb2", graft_zoo_efficientnet,
     2, 0, "https://storage.googleapis.com/keras-applications/", "efficientnetb2.h5",
     "efficientnetb2_notop.h5", MD5, "b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39", "block6e_project_conv"},
    {{"efficientnetb3", "EfficientNetB3", 32, 300, "none",
      "block6f_project_conv"}, "efficientnetb3", graft_zoo_efficientnet,
     3, 0, "https://storage.googleapis.com/keras-applications/", "efficientnetb3.h5",
     "efficientnetb3_notop.h5", MD5, "ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226", "block6f_project_conv"},
    {{"efficientnetb4", "EfficientNetB4", 32, 380, "none",
      "block6h_project_conv"}, "efficientnetb4", graft_zoo_efficientnet,
     4, 0, "https://storage.googleapis.com/keras-applications/", "efficientnetb4.h5",
     "efficientnetb4_notop.h5", MD5, "18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba", "block6h_project_conv"},
    {{"efficientnetb5", "EfficientNetB5", 32, 456, "none",
      "block6i_project_conv"}, "efficientnetb5", graft_zoo_efficientnet,
     5, 0, "https://storage.googleapis.com/keras-applications/", "efficientnetb5.h5",
     "efficientnetb5_notop.h5", MD5, "ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f", "block6i_project_conv"},
    {{"efficientnetb6", "EfficientNetB6", 32, 528, "none",
      "block6k_project_conv"}, "efficientnetb6", graft_zoo_efficientnet,
     6, 0, "https://storage.googleapis.com/keras-applications/", "efficientnetb6.h5",
     "efficientnetb6_notop.h5", MD5, "165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743", "block6k_project_conv"},
    {{"efficientnetb7", "EfficientNetB7", 32, 600, "none",
      "block6m_project_conv"}, "efficientnetb7", graft_zoo_efficientnet,
     7, 0, "https://storage.googleapis.com/keras-applications/", "efficientnetb7.h5",
     "efficientnetb7_notop.h5", MD5, "8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a", "block6m_project_conv"},
    {{"mobilenetv3small", "MobileNetV3Small", 32, 224, "none",
      "expanded_conv_10/project"}, "MobilenetV3small",
     graft_zoo_mobilenet_v3, 0, ZOO_ARG_ALPHA | ZOO_ARG_MINIMALISTIC,
     /* files and MD5s by alpha and minimalistic: zoo/weights.c */
     "mobilenet_v3", NULL, NULL, MD5, NULL, NULL, "expanded_conv_10/project"},
    {{"mobilenetv3large", "MobileNetV3Large", 32, 224, "none",
      "expanded_conv_14/project"}, "MobilenetV3large",
     graft_zoo_mobilenet_v3, 1, ZOO_ARG_ALPHA | ZOO_ARG_MINIMALISTIC,
     /* files and MD5s by alpha and minimalistic: zoo/weights.c */
     "mobilenet_v3", NULL, NULL, MD5, NULL, NULL, "expanded_conv_14/project"},
#define CONVNEXT(lower, keras, v, top_hash, notop_hash)                                            \
    {{"convnext" #lower, keras, 32, 224, "none", "convnext_" #lower "_stage_3_block_2_layer_scale"}, \
     "convnext_" #lower, graft_zoo_convnext, v, 0,      \
     "convnext", "convnext_" #lower ".h5", "convnext_" #lower "_notop.h5", GRAFT_HASH_SHA256,      \
     top_hash, notop_hash, "convnext_" #lower "_stem_conv"}
    CONVNEXT(tiny, "ConvNeXtTiny", 0,
             "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
             "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    CONVNEXT(small, "ConvNeXtSmall", 1,
             "ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c",
             "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab"),
    CONVNEXT(base, "ConvNeXtBase", 2,
             "52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6",
             "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45"),
    CONVNEXT(large, "ConvNeXtLarge", 3,
             "070c5ed9ed289581e477741d3b34beffa920db8cf590899d6d2c67fba2a198a6",
             "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd"),
    CONVNEXT(xlarge, "ConvNeXtXLarge", 4,
             "c1f5ccab661354fc3a79a10fa99af82f0fbf10ec65cb894a3ae0815f17a889ee",
             "de3f8a54174130e0cecdc71583354753d557fcf1f4487331558e2a16ba0cfe05"),
#undef CONVNEXT
    {{"mobilenet", "MobileNet", 32, 224, "tf",
      "conv_pw_13_bn"}, "", graft_zoo_mobilenet, 1,
     ZOO_ARG_ALPHA | ZOO_ARG_DEPTH_MULTIPLIER, NULL, NULL, NULL, GRAFT_HASH_NONE, NULL, NULL,
     "conv_dw_1"},
    {{"mobilenet_v2", "MobileNetV2", 32, 224, "tf",
      "Conv_1_bn"}, "", graft_zoo_mobilenet_v2, 2, ZOO_ARG_ALPHA,
     NULL, NULL, NULL, GRAFT_HASH_NONE, NULL, NULL, "block_1_expand"},
};

#undef KT
#undef MD5

#define N_ARCHS ((int)(sizeof table / sizeof *table))

const graft_zoo_arch *graft_zoo_arch_at(int i)
{
    return i >= 0 && i < N_ARCHS ? &table[i].pub : NULL;
}

/* Lower case without '_' and '-': "MobileNetV2", "mobilenet_v2" and
 * "mobilenetv2" are one name. */
static void fold(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 1 < cap; s++)
        if (*s != '_' && *s != '-') out[o++] = (char)tolower((unsigned char)*s);
    out[o] = '\0';
}

const zoo_entry *graft_zoo_entry(const char *name)
{
    if (!name || strlen(name) >= 64) return NULL;
    char want[64], have[64];
    fold(name, want, sizeof want);
    for (int i = 0; i < N_ARCHS; i++) {
        fold(table[i].pub.keras_name, have, sizeof have);
        if (strcmp(want, have) == 0) return &table[i];
    }
    return NULL;
}

const graft_zoo_arch *graft_zoo_find(const char *name)
{
    const zoo_entry *e = graft_zoo_entry(name);
    return e ? &e->pub : NULL;
}

/* Fills defaults into *s and checks the arguments as Keras does. */
static graft_status resolve(const zoo_entry *a, const graft_zoo_cfg *cfg, zoo_spec *s)
{
    const char *k = a->pub.keras_name;
    graft_zoo_cfg c = cfg ? *cfg : graft_zoo_default_cfg();
    if (c.alpha == 0.0f) c.alpha = 1.0f;
    if (c.depth_multiplier == 0) c.depth_multiplier = 1;
    if (c.classes == 0) c.classes = 1000;
    if (c.input_shape[0] == 0 && c.input_shape[1] == 0) {
        c.input_shape[0] = c.input_shape[1] = a->pub.default_size;
        if (c.input_shape[2] == 0) c.input_shape[2] = 3;
    }
    if (!(c.alpha > 0.0f) || !isfinite(c.alpha))
        return graft_fail(GRAFT_EINVAL, "%s: alpha must be positive (got %g)", k, (double)c.alpha);
    if (!(a->args & ZOO_ARG_ALPHA) && c.alpha != 1.0f)
        return graft_fail(GRAFT_EINVAL, "%s has no alpha (width) argument; leave it at 1", k);
    if (c.depth_multiplier < 1)
        return graft_fail(GRAFT_EINVAL, "%s: depth_multiplier must be at least 1 (got %d)", k,
                          c.depth_multiplier);
    if (!(a->args & ZOO_ARG_DEPTH_MULTIPLIER) && c.depth_multiplier != 1)
        return graft_fail(GRAFT_EINVAL, "%s has no depth_multiplier argument; only MobileNet does",
                          k);
    if (!(a->args & ZOO_ARG_MINIMALISTIC) && c.minimalistic)
        return graft_fail(GRAFT_EINVAL, "%s has no minimalistic argument; only MobileNetV3 does", k);
    if (!(c.dropout >= 0.0f && c.dropout < 1.0f))
        return graft_fail(GRAFT_EINVAL, "%s: dropout must be in [0, 1) (got %g)", k,
                          (double)c.dropout);
    int min = a->pub.min_size;
    if (c.input_shape[0] < min || c.input_shape[1] < min)
        return graft_fail(GRAFT_ESHAPE,
                          "%s: input_shape (%d, %d, %d) is too small; height and width must be "
                          "at least %d",
                          k, c.input_shape[0], c.input_shape[1], c.input_shape[2], min);
    if (c.input_shape[2] < 1)
        return graft_fail(GRAFT_ESHAPE, "%s: input_shape (%d, %d, %d) needs at least one channel",
                          k, c.input_shape[0], c.input_shape[1], c.input_shape[2]);
    if (c.include_top && c.classes < 1)
        return graft_fail(GRAFT_EINVAL, "%s: classes must be positive (got %d)", k, c.classes);
    if (c.pooling != GRAFT_POOL_NONE && c.pooling != GRAFT_POOL_AVG && c.pooling != GRAFT_POOL_MAX)
        return graft_fail(GRAFT_EINVAL, "%s: pooling must be none, avg or max", k);
    s->cfg = c;
    s->arch = a;
    /* The float the user passed, back to the decimal they wrote, so widths
     * such as int(320 * 0.35) round as in Keras's double arithmetic. */
    s->alpha = nearbyint((double)c.alpha * 1e6) / 1e6;
    return GRAFT_OK;
}

graft_status graft_zoo_build(const char *arch, const graft_zoo_cfg *cfg, graft_model **out)
{
    if (!out) return graft_fail(GRAFT_EINVAL, "graft_zoo_build: no output pointer");
    *out = NULL;
    const zoo_entry *a = graft_zoo_entry(arch);
    if (!a) {
        char names[1024];
        size_t o = 0;
        for (int i = 0; i < N_ARCHS && o < sizeof names; i++)
            o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "",
                                  table[i].pub.keras_name);
        return graft_fail(GRAFT_EINVAL, "unknown architecture '%s'; graft builds %s",
                          arch ? arch : "(null)", names);
    }
    zoo_spec s;
    graft_status st = resolve(a, cfg, &s);
    if (st != GRAFT_OK) return st;
    char name[64];
    if (a->build == graft_zoo_mobilenet)
        snprintf(name, sizeof name, "mobilenet_%0.2f_%d", s.alpha, s.cfg.input_shape[0]);
    else if (a->build == graft_zoo_mobilenet_v2)
        snprintf(name, sizeof name, "mobilenetv2_%0.2f_%d", s.alpha, s.cfg.input_shape[0]);
    else
        snprintf(name, sizeof name, "%s", a->model_name);
    graft_model *m = graft_model_new(name);
    if (!m) return GRAFT_ENOMEM;
    m->skip_init = s.cfg.skip_init != 0;
    graft_layer *in = graft_input(
        m, "input_1", graft_shape3(s.cfg.input_shape[0], s.cfg.input_shape[1], s.cfg.input_shape[2]));
    if (in) a->build(m, in, &s);
    m->skip_init = false; /* a head added after the base is drawn as usual */
    st = graft_model_status(m);
    if (st == GRAFT_OK) st = graft_zoo_keras_order(m);
    if (st != GRAFT_OK) {
        graft_status keep = graft_fail(st, "%s: %s", a->pub.keras_name,
                                       graft_model_status(m) != GRAFT_OK ? graft_model_error(m)
                                                                         : graft_last_error());
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
    if (!m) return NULL;
    /* A base as graft_zoo_build made it keeps Keras's model name. */
    for (int i = 0; i < N_ARCHS; i++)
        if (table[i].model_name[0] && strcmp(graft_model_name(m), table[i].model_name) == 0)
            return table[i].pub.name;
    /* Later rows of a family carry the earlier rows' marks too (ResNet152
     * has conv2_block1_1_conv), so the last row whose mark is there wins
     * (EfficientNetB1 and B2 differ only in widths: B2 is named for both);
     * mobilenet_v2's first block has no expand layer of its own mark. */
    for (int i = N_ARCHS - 1; i >= 0; i--)
        if (table[i].mark && graft_model_find(m, table[i].mark)) return table[i].pub.name;
    if (graft_model_find(m, "expanded_conv_depthwise")) return "mobilenet_v2";
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
