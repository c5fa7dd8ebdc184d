/* The zoo's architectures against Keras's own figures: layer counts and names
 * in model.layers order, parameter counts (total and non-trainable, as
 * model.summary() prints them), output shapes, arguments refused.
 * Starts early (tests/run.sh): one of the longest suites.
 */
#include "check.h"
#include "test_util.h"

#include <graft.h>
#include <math.h>
#include <stdlib.h>

static graft_model *build(const char *arch, graft_zoo_cfg c)
{
    graft_model *m = NULL;
    graft_status s = graft_zoo_build(arch, &c, &m);
    CHECK_MSG(s == GRAFT_OK && m, "%s: %s", arch, graft_last_error());
    return m;
}

static graft_zoo_cfg cfg_of(float alpha, int top, int h, int w)
{
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.alpha = alpha;
    c.include_top = top;
    c.input_shape[0] = h;
    c.input_shape[1] = w;
    return c;
}

static void check_shape(graft_model *m, int rank, int a, int b, int c)
{
    graft_shape s = graft_layer_output_shape(graft_model_output(m));
    CHECK_MSG(s.rank == rank && s.dim[0] == a && (rank < 2 || s.dim[1] == b) &&
                  (rank < 3 || s.dim[2] == c),
              "%s: output rank %d (%d, %d, %d)", graft_model_name(m), s.rank, s.dim[0], s.dim[1],
              s.dim[2]);
}

static void check_name(graft_model *m, int index, const char *name)
{
    graft_layer *l = graft_model_layer(m, index);
    CHECK_MSG(l && strcmp(graft_layer_name(l), name) == 0, "%s: layer %d is '%s', not '%s'",
              graft_model_name(m), index, l ? graft_layer_name(l) : "(none)", name);
}

/* Keras: len(model.layers), model.count_params(), non-trainable params. */
static void check_counts(graft_model *m, int layers, size_t total, size_t non_trainable)
{
    graft_param_counts c = graft_model_count_params(m);
    CHECK_MSG(graft_model_num_layers(m) == layers, "%s: %d layers, Keras has %d",
              graft_model_name(m), graft_model_num_layers(m), layers);
    CHECK_MSG(c.total == total, "%s: %zu params, Keras has %zu", graft_model_name(m), c.total, total);
    CHECK_MSG(c.non_trainable == non_trainable, "%s: %zu non-trainable, Keras has %zu",
              graft_model_name(m), c.non_trainable, non_trainable);
}

static void test_mobilenet(void)
{
    graft_model *m = build("mobilenet", cfg_of(1.0f, 1, 224, 224));
    if (!m) return;
    check_counts(m, 92, 4253864, 21888);
    check_name(m, 0, "input_1");
    check_name(m, 1, "conv1");
    check_name(m, 4, "conv_dw_1");
    check_name(m, 10, "conv_pad_2");
    check_name(m, 11, "conv_dw_2");
    check_name(m, 85, "conv_pw_13_relu");
    check_name(m, 86, "global_average_pooling2d");
    check_name(m, 87, "reshape_1");
    check_name(m, 88, "dropout");
    check_name(m, 89, "conv_preds");
    check_name(m, 90, "reshape_2");
    check_name(m, 91, "act_softmax");
    CHECK(strcmp(graft_model_name(m), "mobilenet_1.00_224") == 0);
    graft_layer *dw = graft_model_find(m, "conv_dw_1");
    graft_shape k = graft_layer_weight_shape(dw, 0);
    CHECK(graft_layer_num_weights(dw) == 1 && k.rank == 4 && k.dim[0] == 3 && k.dim[2] == 32 &&
          k.dim[3] == 1);
    CHECK(strcmp(graft_layer_class(graft_model_find(m, "conv_pad_2")), "ZeroPadding2D") == 0);
    CHECK(strcmp(graft_layer_class(graft_model_find(m, "conv1_relu")), "ReLU") == 0);
    check_shape(m, 1, 1000, 0, 0);
    CHECK(strcmp(graft_zoo_detect_arch(m), "mobilenet") == 0);
    graft_model_free(m);

    m = build("mobilenet", cfg_of(1.0f, 0, 224, 224));
    if (m) check_counts(m, 86, 3228864, 21888);
    graft_model_free(m);
    /* The two published files in ../shared. */
    m = build("mobilenet", cfg_of(0.25f, 0, 224, 224));
    if (m) check_counts(m, 86, 218544, 5472);
    graft_model_free(m);
    m = build("mobilenet", cfg_of(0.75f, 1, 224, 224));
    if (m) CHECK(graft_model_count_params(m).total == 2601976);
    graft_model_free(m);

    /* The lesson's base: conv_pad_N + 'valid' gives 4x4 from 150, not 'same''s 5x5. */
    m = build("mobilenet", cfg_of(1.0f, 0, 150, 150));
    if (m) check_shape(m, 3, 4, 4, 1024);
    graft_model_free(m);
    graft_zoo_cfg c = cfg_of(0.5f, 0, 150, 150);
    c.pooling = GRAFT_POOL_AVG;
    m = build("mobilenet", c);
    if (m) {
        check_shape(m, 1, 512, 0, 0);
        check_name(m, -1, "global_average_pooling2d");
    }
    graft_model_free(m);
    c = cfg_of(0.25f, 0, 64, 64);
    c.depth_multiplier = 2;
    c.pooling = GRAFT_POOL_MAX;
    m = build("mobilenet", c);
    if (m) {
        check_shape(m, 1, 256, 0, 0);
        CHECK(graft_layer_output_shape(graft_model_find(m, "conv_dw_1")).dim[2] == 16);
        CHECK(strcmp(graft_layer_class(graft_model_layer(m, -1)), "GlobalMaxPooling2D") == 0);
    }
    graft_model_free(m);
}

static void test_mobilenet_v2(void)
{
    graft_model *m = build("mobilenet_v2", cfg_of(1.0f, 1, 224, 224));
    if (!m) return;
    check_counts(m, 156, 3538984, 34112);
    check_name(m, 1, "Conv1");
    check_name(m, 2, "bn_Conv1");
    check_name(m, 3, "Conv1_relu");
    check_name(m, 4, "expanded_conv_depthwise");
    check_name(m, 9, "block_1_expand");
    check_name(m, 12, "block_1_pad");
    check_name(m, 26, "block_2_add");
    check_name(m, 151, "Conv_1");
    check_name(m, 152, "Conv_1_bn");
    check_name(m, 153, "out_relu");
    check_name(m, 154, "global_average_pooling2d");
    check_name(m, 155, "predictions");
    CHECK(strcmp(graft_model_name(m), "mobilenetv2_1.00_224") == 0);
    CHECK(strcmp(graft_zoo_detect_arch(m), "mobilenet_v2") == 0);
    graft_model_free(m);
    m = build("mobilenet_v2", cfg_of(1.0f, 0, 224, 224));
    if (m) check_counts(m, 154, 2257984, 34112);
    graft_model_free(m);
    /* Odd sizes take correct_pad's ((1,1),(1,1)). */
    m = build("mobilenet_v2", cfg_of(1.0f, 0, 150, 150));
    if (m) check_shape(m, 3, 5, 5, 1280);
    graft_model_free(m);
    /* Widths through _make_divisible; 1.4 widens the last 1x1 as well. */
    m = build("mobilenet_v2", cfg_of(0.35f, 0, 96, 96));
    if (m) {
        CHECK(graft_layer_output_shape(graft_model_find(m, "Conv1")).dim[2] == 16);
        CHECK(graft_layer_output_shape(graft_model_find(m, "block_16_project")).dim[2] == 112);
        check_shape(m, 3, 3, 3, 1280);
    }
    graft_model_free(m);
    m = build("mobilenet_v2", cfg_of(1.4f, 0, 96, 96));
    if (m) check_shape(m, 3, 3, 3, 1792);
    graft_model_free(m);
}

static void test_resnet50(void)
{
    graft_model *m = build("resnet50", cfg_of(1.0f, 1, 224, 224));
    if (!m) return;
    check_counts(m, 177, 25636712, 53120);
    static const char *order[] = {"input_1",           "conv1_pad",          "conv1_conv",
                                  "conv1_bn",          "conv1_relu",         "pool1_pad",
                                  "pool1_pool",        "conv2_block1_1_conv", "conv2_block1_1_bn",
                                  "conv2_block1_1_relu", "conv2_block1_2_conv", "conv2_block1_2_bn",
                                  "conv2_block1_2_relu", "conv2_block1_0_conv", "conv2_block1_3_conv",
                                  "conv2_block1_0_bn", "conv2_block1_3_bn",  "conv2_block1_add",
                                  "conv2_block1_out",  "conv2_block2_1_conv"};
    for (int i = 0; i < (int)(sizeof order / sizeof *order); i++) check_name(m, i, order[i]);
    check_name(m, -3, "conv5_block3_out");
    check_name(m, -2, "avg_pool");
    check_name(m, -1, "predictions");
    graft_layer *bn = graft_model_find(m, "conv1_bn");
    CHECK(graft_layer_num_weights(bn) == 4 &&
          strcmp(graft_layer_weight_name(bn, 3), "moving_variance") == 0);
    CHECK(strcmp(graft_zoo_detect_arch(m), "resnet50") == 0);
    graft_model_free(m);
    graft_zoo_cfg c = cfg_of(1.0f, 0, 150, 150);
    m = build("resnet50", c);
    if (m) {
        check_counts(m, 175, 23587712, 53120);
        check_shape(m, 3, 5, 5, 2048);
    }
    graft_model_free(m);
    c.pooling = GRAFT_POOL_MAX;
    m = build("resnet50", c);
    if (m) check_name(m, -1, "max_pool");
    graft_model_free(m);
}

static void test_vgg16(void)
{
    graft_model *m = build("vgg16", cfg_of(1.0f, 1, 224, 224));
    if (!m) return;
    check_counts(m, 23, 138357544, 0);
    check_name(m, 1, "block1_conv1");
    check_name(m, 3, "block1_pool");
    check_name(m, 18, "block5_pool");
    check_name(m, 19, "flatten");
    check_name(m, 20, "fc1");
    check_name(m, 21, "fc2");
    check_name(m, 22, "predictions");
    CHECK(strcmp(graft_zoo_detect_arch(m), "vgg16") == 0);
    graft_model_free(m);
    m = build("vgg16", cfg_of(1.0f, 0, 150, 150));
    if (m) {
        check_counts(m, 19, 14714688, 0);
        check_shape(m, 3, 4, 4, 512);
    }
    graft_model_free(m);
}

/* The lesson: a head on the base, the base's extent known, the base frozen. */
static void test_head_on_base(void)
{
    graft_model *m = build("mobilenet", cfg_of(1.0f, 0, 150, 150));
    if (!m) return;
    int base = graft_model_num_layers(m);
    graft_global_average_pooling2d(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1024, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    CHECK_OK(graft_model_status(m));
    CHECK(graft_model_num_layers(m) == base + 3);
    CHECK_OK(graft_model_set_trainable(m, 0, base, 0));
    graft_param_counts c = graft_model_count_params(m);
    /* Keras: 3,228,864 base + 1024*1025 + 1025 head; only the head trains. */
    CHECK(c.total == 3228864u + 1049600u + 1025u);
    CHECK(c.trainable == 1049600u + 1025u);
    check_shape(m, 1, 1, 0, 0);
    graft_model_free(m);
}

static void test_refused(void)
{
    graft_model *m = (graft_model *)&m; /* must be reset to NULL on failure */
    graft_zoo_cfg c = cfg_of(1.0f, 0, 31, 64);
    CHECK(graft_zoo_build("mobilenet", &c, &m) == GRAFT_ESHAPE && m == NULL);
    CHECK(strstr(graft_last_error(), "at least 32") != NULL);
    c = cfg_of(1.0f, 0, 64, 64);
    CHECK(graft_zoo_build("inception", &c, &m) == GRAFT_EINVAL);
    CHECK(strstr(graft_last_error(), "inception") != NULL);
    c.alpha = -1.0f;
    CHECK(graft_zoo_build("mobilenet", &c, &m) == GRAFT_EINVAL);
    c.alpha = 0.5f;
    CHECK(graft_zoo_build("resnet50", &c, &m) == GRAFT_EINVAL);
    c = cfg_of(1.0f, 0, 64, 64);
    c.depth_multiplier = 2;
    CHECK(graft_zoo_build("vgg16", &c, &m) == GRAFT_EINVAL);
    c = cfg_of(1.0f, 1, 64, 64);
    c.classes = -3;
    CHECK(graft_zoo_build("vgg16", &c, &m) == GRAFT_EINVAL);
    c = cfg_of(1.0f, 1, 64, 64);
    c.dropout = 1.0f;
    CHECK(graft_zoo_build("mobilenet", &c, &m) == GRAFT_EINVAL);
    CHECK(graft_zoo_build("mobilenet", &c, NULL) == GRAFT_EINVAL);
    /* A NULL cfg means Keras's defaults. */
    CHECK_OK(graft_zoo_build("mobilenet", NULL, &m));
    if (m) check_shape(m, 1, 1000, 0, 0);
    graft_model_free(m);
}

static void test_imagenet_files(void)
{
    graft_weights_file f;
    graft_zoo_cfg c = cfg_of(1.0f, 0, 150, 150);
    CHECK_OK(graft_zoo_imagenet_file("mobilenet", &c, &f));
    CHECK(strcmp(f.file_name, "mobilenet_1_0_224_tf_no_top.h5") == 0);
    CHECK(strcmp(f.url, "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
                        "mobilenet_1_0_224_tf_no_top.h5") == 0);
    CHECK(f.hash_kind == GRAFT_HASH_NONE);
    c = cfg_of(0.25f, 1, 128, 128);
    CHECK_OK(graft_zoo_imagenet_file("mobilenet", &c, &f));
    CHECK(strcmp(f.file_name, "mobilenet_2_5_128_tf.h5") == 0);
    c = cfg_of(0.35f, 0, 96, 96);
    CHECK_OK(graft_zoo_imagenet_file("mobilenet_v2", &c, &f));
    CHECK(strcmp(f.file_name, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5") == 0);
    c = cfg_of(1.0f, 1, 224, 224);
    CHECK_OK(graft_zoo_imagenet_file("resnet50", &c, &f));
    CHECK(strcmp(f.url, "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                        "resnet50_weights_tf_dim_ordering_tf_kernels.h5") == 0);
    CHECK(f.hash_kind == GRAFT_HASH_MD5 && strcmp(f.hash, "2cb95161c43110f7111970584f804107") == 0);
    c.include_top = 0;
    CHECK_OK(graft_zoo_imagenet_file("vgg16", &c, &f));
    CHECK(strcmp(f.file_name, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5") == 0);
    CHECK(strcmp(f.hash, "6d6bbae143d832006294945121d1f1fc") == 0);
    /* mobilenet_v3.py's WEIGHTS_HASHES, any input size as Keras loads them. */
    c = cfg_of(1.0f, 0, 160, 160);
    CHECK_OK(graft_zoo_imagenet_file("MobileNetV3Large", &c, &f));
    CHECK(strcmp(f.file_name, "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5") == 0);
    CHECK(strcmp(f.url, "https://storage.googleapis.com/tensorflow/keras-applications/"
                        "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5") == 0);
    CHECK(f.hash_kind == GRAFT_HASH_MD5 && strcmp(f.hash, "07fb09a5933dd0c8eaafa16978110389") == 0);
    c = cfg_of(0.75f, 1, 224, 224);
    CHECK_OK(graft_zoo_imagenet_file("mobilenetv3small", &c, &f));
    CHECK(strcmp(f.file_name, "weights_mobilenet_v3_small_224_0.75_float.h5") == 0);
    CHECK(strcmp(f.hash, "cb65d4e5be93758266aa0a7f2c6708b7") == 0);
    c = cfg_of(1.0f, 0, 224, 224);
    c.minimalistic = 1;
    CHECK_OK(graft_zoo_imagenet_file("MobileNetV3Small", &c, &f));
    CHECK(strcmp(f.file_name, "weights_mobilenet_v3_small_minimalistic_224_1.0_float_no_top_v2.h5") == 0);
    CHECK(strcmp(f.hash, "cde8136e733e811080d9fcd8a252f7e4") == 0);
    c.include_top = 1;
    CHECK_OK(graft_zoo_imagenet_file("MobileNetV3Large", &c, &f));
    CHECK(strcmp(f.hash, "675e7b876c45c57e9e63e6d90a36599c") == 0);
    c.alpha = 0.75f; /* no minimalistic file at 0.75 */
    CHECK(graft_zoo_imagenet_file("MobileNetV3Large", &c, &f) == GRAFT_EUNSUPPORTED);
    c = cfg_of(0.5f, 0, 224, 224);
    CHECK(graft_zoo_imagenet_file("MobileNetV3Small", &c, &f) == GRAFT_EUNSUPPORTED);
    c = cfg_of(0.6f, 0, 224, 224);
    CHECK(graft_zoo_imagenet_file("mobilenet", &c, &f) == GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "0.25, 0.5, 0.75 and 1.0") != NULL);
    c = cfg_of(1.0f, 1, 150, 150);
    CHECK(graft_zoo_imagenet_file("vgg16", &c, &f) == GRAFT_ESHAPE);
    c = cfg_of(1.0f, 1, 224, 224);
    c.classes = 2;
    CHECK(graft_zoo_imagenet_file("mobilenet", &c, &f) == GRAFT_EINVAL);
}

/* Keras's published model.count_params() at the default size with the top
 * (keras.io/api/applications and each model's summary), and len(model.layers)
 * (0: not checked; MobileNetV3's Keras 2 hard_swish is several TF-op layers,
 * one Activation here). */
static void test_keras_counts(void)
{
    static const struct {
        const char *name;
        int top, layers;
        size_t params;
    } want[] = {
        {"VGG19", 1, 26, 143667240},       {"VGG19", 0, 22, 20024384},
        {"ResNet101", 1, 347, 44707176},   {"ResNet152", 1, 517, 60419944},
        {"ResNet101", 0, 345, 42658176},   {"ResNet152", 0, 515, 58370944},
        {"ResNet50V2", 1, 192, 25613800},  {"ResNet101V2", 1, 379, 44675560},
        {"ResNet152V2", 1, 566, 60380648}, {"ResNet50V2", 0, 190, 23564800},
        {"DenseNet121", 1, 429, 8062504},  {"DenseNet169", 1, 597, 14307880},
        {"DenseNet201", 1, 709, 20242984}, {"DenseNet121", 0, 427, 7037504},
        {"InceptionV3", 1, 313, 23851784}, {"Xception", 1, 134, 22910480},
        {"EfficientNetB0", 1, 240, 5330571}, {"EfficientNetB1", 1, 342, 7856239},
        {"EfficientNetB2", 1, 342, 9177569}, {"EfficientNetB3", 1, 387, 12320535},
        {"EfficientNetB4", 1, 477, 19466823}, {"EfficientNetB5", 1, 579, 30562527},
        {"EfficientNetB6", 1, 669, 43265143}, {"EfficientNetB7", 1, 816, 66658687},
        {"EfficientNetB0", 0, 237, 4049571},
        {"MobileNetV3Small", 1, 0, 2554968}, {"MobileNetV3Small", 0, 0, 939120},
        {"MobileNetV3Large", 1, 0, 5507432}, {"MobileNetV3Large", 0, 0, 2996352},
        /* Keras 2 saves ConvNeXt's stem and downsamplers as nested models
         * (one layer each) and its residual sums as TFOpLambda layers. */
        {"ConvNeXtTiny", 1, 0, 28589128}, {"ConvNeXtSmall", 1, 0, 50223688},
        {"ConvNeXtBase", 1, 0, 88591464}, {"ConvNeXtTiny", 0, 0, 27820128},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        graft_zoo_cfg c = graft_zoo_default_cfg();
        c.include_top = want[i].top;
        c.skip_init = 1; /* counts and names only */
        graft_model *m = NULL;
        CHECK_OK(graft_zoo_build(want[i].name, &c, &m));
        if (!m) continue;
        CHECK_MSG(!want[i].layers || graft_model_num_layers(m) == want[i].layers,
                  "%s top=%d: %d layers, Keras has %d",
                  want[i].name, want[i].top, graft_model_num_layers(m), want[i].layers);
        size_t got = graft_model_count_params(m).total;
        CHECK_MSG(got == want[i].params, "%s top=%d: %zu params, Keras has %zu", want[i].name,
                  want[i].top, got, want[i].params);
        const graft_zoo_arch *a = graft_zoo_find(want[i].name);
        CHECK(a && strcmp(graft_zoo_detect_arch(m), a->name) == 0);
        graft_model_free(m);
    }
}

/* Keras's function names in any case, with or without underscores; the old
 * spellings keep their names. */
static void test_names(void)
{
    static const struct {
        const char *spelling, *name;
    } names[] = {
        {"MobileNetV2", "mobilenet_v2"}, {"mobilenet_v2", "mobilenet_v2"},
        {"mobilenetv2", "mobilenet_v2"}, {"MOBILENET", "mobilenet"},
        {"ResNet50", "resnet50"},        {"resnet50v2", "resnet50v2"},
        {"ResNet50V2", "resnet50v2"},    {"resnet_152_v2", "resnet152v2"},
        {"vgg19", "vgg19"},              {"VGG16", "vgg16"},
        {"DenseNet121", "densenet121"},  {"densenet_201", "densenet201"},
        {"EfficientNetB0", "efficientnetb0"}, {"efficientnetb7", "efficientnetb7"},
        {"MobileNetV3Small", "mobilenetv3small"}, {"mobilenet_v3_large", "mobilenetv3large"},
        {"InceptionV3", "inceptionv3"}, {"inception_v3", "inceptionv3"}, {"XCEPTION", "xception"},
        {"ConvNeXtTiny", "convnexttiny"}, {"convnext_base", "convnextbase"},
        {"ConvNeXtXLarge", "convnextxlarge"},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const graft_zoo_arch *a = graft_zoo_find(names[i].spelling);
        CHECK_MSG(a && strcmp(a->name, names[i].name) == 0, "%s: %s", names[i].spelling,
                  a ? a->name : "not found");
    }
    CHECK(graft_zoo_find("resnet") == NULL && graft_zoo_find("") == NULL &&
          graft_zoo_find(NULL) == NULL);
    int n = 0;
    for (const graft_zoo_arch *a; (a = graft_zoo_arch_at(n)) != NULL; n++) {
        CHECK(graft_zoo_find(a->keras_name) == a && graft_zoo_find(a->name) == a);
        CHECK(a->min_size >= 32 && a->default_size >= a->min_size);
        CHECK(!strcmp(a->preprocess, "tf") || !strcmp(a->preprocess, "caffe") ||
              !strcmp(a->preprocess, "torch") || !strcmp(a->preprocess, "none"));
    }
    CHECK(n >= 10 && graft_zoo_arch_at(-1) == NULL);
    /* The default input is the architecture's default size. */
    graft_model *m = NULL;
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.include_top = 0;
    CHECK_OK(graft_zoo_build("ResNet50V2", &c, &m));
    if (m) check_shape(m, 3, 7, 7, 2048);
    graft_model_free(m);
}

/* ResNetV2: pre-activation blocks, the stride on each stage's last block,
 * and Keras's order (the shortcut's 1x1 max pool before 3_conv). */
static void test_resnet_v2(void)
{
    graft_model *m = build("ResNet50V2", cfg_of(1.0f, 1, 224, 224));
    if (!m) return;
    static const char *order[] = {
        "input_1",           "conv1_pad",          "conv1_conv",          "pool1_pad",
        "pool1_pool",        "conv2_block1_preact_bn", "conv2_block1_preact_relu",
        "conv2_block1_1_conv", "conv2_block1_1_bn", "conv2_block1_1_relu", "conv2_block1_2_pad",
        "conv2_block1_2_conv", "conv2_block1_2_bn", "conv2_block1_2_relu", "conv2_block1_0_conv",
        "conv2_block1_3_conv", "conv2_block1_out"};
    for (int i = 0; i < (int)(sizeof order / sizeof *order); i++) check_name(m, i, order[i]);
    graft_layer *pool = graft_model_find(m, "max_pooling2d");
    CHECK(pool && strcmp(graft_layer_class(pool), "MaxPooling2D") == 0);
    int p = -1, c3 = -1;
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        if (graft_model_layer(m, i) == pool) p = i;
        if (!strcmp(graft_layer_name(graft_model_layer(m, i)), "conv2_block3_3_conv")) c3 = i;
    }
    CHECK(p >= 0 && p + 1 == c3);
    CHECK(graft_layer_output_shape(graft_model_find(m, "conv2_block3_out")).dim[0] == 28);
    check_name(m, -4, "post_bn");
    check_name(m, -3, "post_relu");
    graft_model_free(m);
}

/* ConvNeXt: the 4x4 stride-4 stem, LayerNormalization everywhere, the
 * PreStem only with 3 channels, and the unnamed LayerNormalization Keras
 * puts after the pooling without top; its SHA-256-checked weight files. */
static void test_convnext(void)
{
    graft_zoo_cfg c = cfg_of(1.0f, 0, 64, 64);
    c.pooling = GRAFT_POOL_AVG;
    graft_model *m = build("ConvNeXtTiny", c);
    if (!m) return;
    check_name(m, 0, "input_1");
    check_name(m, 1, "convnext_tiny_prestem_normalization");
    check_name(m, 2, "convnext_tiny_stem_conv");
    check_name(m, -2, "global_average_pooling2d");
    check_name(m, -1, "layer_normalization");
    graft_layer *l = graft_model_find(m, "convnext_tiny_stage_2_block_8_pointwise_conv_1");
    graft_shape s = l ? graft_layer_output_shape(l) : (graft_shape){0};
    CHECK(s.rank == 3 && s.dim[0] == 4 && s.dim[2] == 4 * 384);
    l = graft_model_find(m, "convnext_tiny_stage_0_block_0_depthwise_conv");
    CHECK(l && graft_layer_weight_shape(l, 0).dim[2] == 1 && graft_layer_weight_shape(l, 0).dim[3] == 96);
    CHECK(graft_model_find(m, "convnext_tiny_downsampling_conv_2") != NULL);
    graft_model_free(m);
    c = cfg_of(1.0f, 0, 32, 32);
    c.input_shape[2] = 1;
    m = build("ConvNeXtTiny", c);
    CHECK(m && !graft_model_find(m, "convnext_tiny_prestem_normalization"));
    graft_model_free(m);
    graft_weights_file f;
    c = graft_zoo_default_cfg();
    CHECK_OK(graft_zoo_imagenet_file("ConvNeXtSmall", &c, &f));
    CHECK(strcmp(f.url, "https://storage.googleapis.com/tensorflow/keras-applications/convnext/"
                        "convnext_small.h5") == 0);
    CHECK(f.hash_kind == GRAFT_HASH_SHA256 &&
          strcmp(f.hash, "ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c") == 0);
    c.include_top = 0;
    CHECK_OK(graft_zoo_imagenet_file("convnext_tiny", &c, &f));
    CHECK(strcmp(f.file_name, "convnext_tiny_notop.h5") == 0);
    CHECK(strcmp(f.hash, "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1") == 0);
}

/* Keras's EfficientNet for weights="imagenet": rescaling_1 after the
 * Normalization, scaling by 1 / sqrt(IMAGENET_STDDEV_RGB), no weights of its
 * own; without ImageNet weights no such layer. */
static void test_efficientnet_imagenet(void)
{
    graft_model *plain = build("EfficientNetB0", cfg_of(1.0f, 1, 224, 224));
    graft_zoo_cfg c = cfg_of(1.0f, 1, 224, 224);
    c.imagenet_weights = 1;
    graft_model *m = build("EfficientNetB0", c);
    if (!plain || !m) goto done;
    check_counts(plain, 240, 5330571, 42023);
    check_counts(m, 241, 5330571, 42023);
    check_name(plain, 3, "stem_conv_pad");
    CHECK(graft_model_find(plain, "rescaling_1") == NULL);
    check_name(m, 1, "rescaling");
    check_name(m, 2, "normalization");
    check_name(m, 3, "rescaling_1");
    check_name(m, 4, "stem_conv_pad");
    graft_layer *r = graft_model_find(m, "rescaling_1");
    CHECK(r && strcmp(graft_layer_class(r), "Rescaling") == 0 && graft_layer_num_weights(r) == 0);
    /* Its values as the model's Keras config says them. */
    char dir[] = "/tmp/graft_zoo_en_XXXXXX", *config = NULL;
    if (make_tmpdir(dir) != 0) {
        CHECK(0);
        goto done;
    }
    CHECK_OK(graft_model_save(m, path_in(dir, "b0.h5")));
    CHECK_OK(graft_h5_metadata_read(path_in(dir, "b0.h5"), "model_config", &config));
    const char *at = config ? strstr(config, "\"name\":\"rescaling_1\"") : NULL;
    const char *scale = at ? strstr(at, "\"scale\"") : NULL;
    const char *open = scale ? strchr(scale, '[') : NULL;
    CHECK_MSG(open != NULL, "no rescaling_1 with a list of scales in the model's config");
    static const double stddev[3] = {0.229, 0.224, 0.225};
    for (int i = 0; open && i < 3; i++) {
        char *end;
        double v = strtod(open + 1, &end);
        CHECK_MSG(fabs(v - 1.0 / sqrt(stddev[i])) < 1e-6, "scale %d is %.9g, Keras's %.9g", i, v,
                  1.0 / sqrt(stddev[i]));
        open = strchr(end, i < 2 ? ',' : ']');
    }
    free(config);
    /* The official weights refuse a model built without the layer. */
    CHECK(graft_zoo_load_imagenet(plain, "EfficientNetB0", NULL) == GRAFT_EINVAL);
    CHECK(strstr(graft_last_error(), "imagenet_weights") != NULL);
done:
    graft_model_free(plain);
    graft_model_free(m);
}

/* skip_init lays the weights out without drawing them: all zero, the same
 * counts, and graft_model_init_weights with the build's seed (42) then draws
 * what a plain build holds, bit for bit; a head added after the base is
 * drawn as usual. */
static void test_skip_init(void)
{
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = 32;
    graft_model *plain = build("EfficientNetB0", c);
    c.skip_init = 1;
    graft_model *bare = build("EfficientNetB0", c);
    if (!plain || !bare) goto done;
    CHECK(graft_model_count_params(bare).total == graft_model_count_params(plain).total);
    size_t nonzero = 0, differ = 0, total = 0;
    for (int i = 0; i < graft_model_num_layers(bare); i++) {
        graft_layer *l = graft_model_layer(bare, i);
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            graft_shape s = graft_layer_weight_shape(l, k);
            const float *w = graft_layer_weight_data(l, k);
            for (size_t j = 0; j < graft_shape_size(&s); j++) nonzero += w[j] != 0.0f;
            total += graft_shape_size(&s);
        }
    }
    CHECK_MSG(total > 4000000 && nonzero == 0, "%zu of %zu weights drawn", nonzero, total);
    CHECK_OK(graft_model_init_weights(bare, 42));
    for (int i = 0; i < graft_model_num_layers(bare); i++) {
        graft_layer *a = graft_model_layer(bare, i), *b = graft_model_layer(plain, i);
        for (int k = 0; k < graft_layer_num_weights(a); k++) {
            graft_shape s = graft_layer_weight_shape(a, k);
            differ += memcmp(graft_layer_weight_data(a, k), graft_layer_weight_data(b, k),
                             graft_shape_size(&s) * sizeof(float)) != 0;
        }
    }
    CHECK_MSG(differ == 0, "%zu weights differ from a plain build's after drawing", differ);
    graft_layer *head = graft_dense(bare, NULL, (graft_dense_cfg){.name = "head", .units = 4});
    CHECK(head != NULL);
    if (head) {
        const float *k = graft_layer_weight_data(head, 0);
        int drawn = 0;
        for (int j = 0; j < 1280 * 4; j++) drawn += k[j] != 0.0f;
        CHECK_MSG(drawn > 5000, "the head's kernel: %d of 5120 drawn", drawn);
    }
done:
    graft_model_free(plain);
    graft_model_free(bare);
}

int main(void)
{
    RUN(test_names);
    RUN(test_skip_init);
    RUN(test_convnext);
    RUN(test_keras_counts);
    RUN(test_resnet_v2);
    RUN(test_mobilenet);
    RUN(test_mobilenet_v2);
    RUN(test_resnet50);
    RUN(test_vgg16);
    RUN(test_head_on_base);
    RUN(test_refused);
    RUN(test_imagenet_files);
    RUN(test_efficientnet_imagenet);
    return CHECK_SUMMARY();
}
