/*
 * ImageNet end to end: the label index from Debian's darknet lists,
 * decode_predictions, preprocess_input, and the real Keras MobileNet
 * (alpha 0.75) ImageNet weights in ../shared (TF.js files) classifying
 * darknet's sample photos; the genuine Keras HDF5 release file of MobileNet
 * alpha 0.25 loading into the base.
 */
#include "check.h"

#include <graft.h>
#include <stdlib.h>
#include <unistd.h>

#define DARKNET "/usr/share/darknet/data"
#define TFJS "../shared/models/mobilenet_v1_0.75_224/model.json"
#define H5_025 "../shared/models/mobilenet_2_5_224_tf_no_top.h5"

/* Keras's imagenet_class_index.json indices of the classes used here. */
enum { TENCH = 0, KITE = 21, BALD_EAGLE = 22, ESKIMO_DOG = 248, MALAMUTE = 249, HUSKY = 250,
       ZEBRA = 340, DOGSLED = 537, TOILET_TISSUE = 999 };

static int have_darknet(void)
{
    if (access(DARKNET "/imagenet.labels.list", R_OK) == 0) return 1;
    printf("skip: %s is missing (apt install darknet)\n", DARKNET);
    return 0;
}

static void test_labels_missing(void)
{
    setenv("GRAFT_DARKNET_DATA", "/nonexistent/darknet", 1);
    const char *w = NULL, *n = NULL;
    CHECK(graft_imagenet_class(ZEBRA, &w, &n) == GRAFT_ENOTFOUND);
    CHECK(strstr(graft_last_error(), "/nonexistent/darknet/imagenet.labels.list") != NULL);
    CHECK(strstr(graft_last_error(), "GRAFT_DARKNET_DATA") != NULL);
    float p[GRAFT_IMAGENET_CLASSES] = {0};
    graft_prediction out[1];
    CHECK(graft_decode_predictions(p, GRAFT_IMAGENET_CLASSES, 1, out) == GRAFT_ENOTFOUND);
    unsetenv("GRAFT_DARKNET_DATA");
}

static void test_labels(void)
{
    if (!have_darknet()) return;
    static const struct {
        int index;
        const char *wnid, *name;
    } known[] = {{TENCH, "n01440764", "tench"},
                 {BALD_EAGLE, "n01614925", "bald eagle"},
                 {MALAMUTE, "n02110063", "malamute"},
                 {ZEBRA, "n02391049", "zebra"},
                 {TOILET_TISSUE, "n15075141", "toilet tissue"}};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
        const char *w = NULL, *n = NULL;
        CHECK_OK(graft_imagenet_class(known[i].index, &w, &n));
        CHECK_MSG(w && n && !strcmp(w, known[i].wnid) && !strcmp(n, known[i].name),
                  "class %d: %s '%s'", known[i].index, w ? w : "-", n ? n : "-");
    }
    CHECK(graft_imagenet_class(1000, NULL, NULL) == GRAFT_EINVAL);
    CHECK(graft_imagenet_class(-1, NULL, NULL) == GRAFT_EINVAL);
}

static void test_decode(void)
{
    if (!have_darknet()) return;
    float p[GRAFT_IMAGENET_CLASSES];
    for (int i = 0; i < GRAFT_IMAGENET_CLASSES; i++) p[i] = 1e-5f * (float)(i % 7);
    p[ZEBRA] = 0.5f;
    p[KITE] = 0.2f;
    p[BALD_EAGLE] = 0.2f; /* a tie keeps the lower index first */
    p[TENCH] = 0.05f;
    graft_prediction out[4];
    CHECK_OK(graft_decode_predictions(p, GRAFT_IMAGENET_CLASSES, 4, out));
    CHECK(out[0].index == ZEBRA && !strcmp(out[0].name, "zebra") && out[0].prob == 0.5f);
    CHECK(out[1].index == KITE && out[2].index == BALD_EAGLE && out[3].index == TENCH);
    CHECK(!strcmp(out[2].wnid, "n01614925"));
    CHECK(graft_decode_predictions(p, 10, 4, out) == GRAFT_ESHAPE);
    CHECK(graft_decode_predictions(p, GRAFT_IMAGENET_CLASSES, 0, out) == GRAFT_EINVAL);
    graft_prediction *all = malloc(GRAFT_IMAGENET_CLASSES * sizeof *all);
    if (all) {
        CHECK_OK(graft_decode_predictions(p, GRAFT_IMAGENET_CLASSES, 5000, all));
        int sorted = 1;
        for (int i = 1; i < GRAFT_IMAGENET_CLASSES; i++) sorted &= all[i - 1].prob >= all[i].prob;
        CHECK(sorted && all[0].index == ZEBRA);
    }
    free(all);
}

static void test_preprocess(void)
{
    float x[6] = {0, 127.5f, 255, 10, 20, 30};
    CHECK_OK(graft_preprocess_input("mobilenet", x, 2));
    CHECK(x[0] == -1.0f && x[1] == 0.0f && x[2] == 1.0f);
    CHECK_NEAR(x[3], 10 / 127.5 - 1, 1e-6);
    float y[3] = {10, 20, 30};
    CHECK_OK(graft_preprocess_input("vgg16", y, 1));
    /* Keras caffe mode: BGR order, minus (103.939, 116.779, 123.68). */
    CHECK_NEAR(y[0], 30 - 103.939, 1e-4);
    CHECK_NEAR(y[1], 20 - 116.779, 1e-4);
    CHECK_NEAR(y[2], 10 - 123.68, 1e-4);
    float z[3] = {10, 20, 30};
    CHECK_OK(graft_preprocess_hook((void *)"resnet50", z, 1, 1, 3));
    CHECK(z[0] == y[0] && z[1] == y[1] && z[2] == y[2]);
    CHECK(graft_preprocess_hook((void *)"resnet50", z, 1, 1, 1) == GRAFT_ESHAPE);
    CHECK(graft_preprocess_input("inception", z, 1) == GRAFT_EINVAL);
}

static int contains(const graft_prediction *p, int n, int index)
{
    for (int i = 0; i < n; i++)
        if (p[i].index == index) return 1;
    return 0;
}

static void show(const char *img, const char *interp, const graft_prediction *p)
{
    printf("  %s (%s): %s %.3f, %s %.3f, %s %.3f\n", img, interp, p[0].name, p[0].prob, p[1].name,
           p[1].prob, p[2].name, p[2].prob);
}

static void test_mobilenet_tfjs_predictions(void)
{
    NEED_FILE(TFJS);
    if (!have_darknet()) return;
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.alpha = 0.75f;
    graft_model *m = NULL;
    CHECK_OK(graft_zoo_build("mobilenet", &c, &m));
    if (!m) return;
    graft_load_opts opts = {.by_name = 1};
    graft_status s = graft_model_load_weights(m, TFJS, &opts);
    CHECK_OK(s);
    if (s != GRAFT_OK) {
        graft_model_free(m);
        return;
    }
    graft_prediction p[3];
    /* Pillow-bilinear figures from an independent numpy forward pass. */
    CHECK_OK(graft_zoo_predict_file(m, DARKNET "/giraffe.jpg", GRAFT_INTERP_BILINEAR, 3, p));
    show("giraffe.jpg", "bilinear", p);
    CHECK(p[0].index == ZEBRA);
    CHECK_NEAR(p[0].prob, 0.861, 0.005);
    CHECK_OK(graft_zoo_predict_file(m, DARKNET "/eagle.jpg", GRAFT_INTERP_BILINEAR, 3, p));
    show("eagle.jpg", "bilinear", p);
    CHECK(contains(p, 3, BALD_EAGLE));
    CHECK(p[0].index == BALD_EAGLE && p[1].index == KITE);
    CHECK_NEAR(p[0].prob, 0.347, 0.005);
    CHECK_NEAR(p[1].prob, 0.230, 0.005);
    CHECK_OK(graft_zoo_predict_file(m, DARKNET "/dog.jpg", GRAFT_INTERP_BILINEAR, 3, p));
    show("dog.jpg", "bilinear", p);
    for (int k = 0; k < 3; k++)
        CHECK_MSG(p[k].index == MALAMUTE || p[k].index == ESKIMO_DOG || p[k].index == HUSKY ||
                      p[k].index == DOGSLED,
                  "dog.jpg top-%d is %s", k + 1, p[k].name);
    /* Nearest (Keras load_img's default): numpy gave zebra 0.349 on giraffe,
     * ruddy turnstone 0.230 then bald eagle 0.196 on eagle. */
    CHECK_OK(graft_zoo_predict_file(m, DARKNET "/giraffe.jpg", GRAFT_INTERP_NEAREST, 3, p));
    show("giraffe.jpg", "nearest", p);
    CHECK(p[0].index == ZEBRA);
    CHECK_NEAR(p[0].prob, 0.349, 0.005);
    CHECK_OK(graft_zoo_predict_file(m, DARKNET "/eagle.jpg", GRAFT_INTERP_NEAREST, 3, p));
    show("eagle.jpg", "nearest", p);
    CHECK(p[1].index == BALD_EAGLE);
    CHECK_NEAR(p[0].prob, 0.230, 0.005);
    CHECK_NEAR(p[1].prob, 0.196, 0.005);

    /* The same file loaded as a whole model (its Keras 2.1.4 graph) agrees. */
    graft_model *whole = NULL;
    CHECK_OK(graft_model_load(TFJS, &whole));
    if (whole) {
        float *img = malloc(224 * 224 * 3 * sizeof(float));
        float a[1000], b[1000];
        if (img && graft_image_load(DARKNET "/dog.jpg", 224, 224, GRAFT_INTERP_BILINEAR, 0, img) ==
                       GRAFT_OK) {
            CHECK_OK(graft_preprocess_input("mobilenet", img, 224 * 224));
            CHECK_OK(graft_model_predict(m, img, 1, a));
            CHECK_OK(graft_model_predict(whole, img, 1, b));
            CHECK(check_close_ratio(a, b, 1000, 1e-6, 1e-4, NULL) <= 1.0);
        } else {
            CHECK(0);
        }
        free(img);
    }
    graft_model_free(whole);
    graft_model_free(m);
}

static void test_genuine_keras_h5(void)
{
    NEED_FILE(H5_025);
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.alpha = 0.25f;
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = 150; /* the lesson's size */
    graft_model *m = NULL;
    CHECK_OK(graft_zoo_build("mobilenet", &c, &m));
    if (!m) return;
    graft_load_opts opts = {.by_name = 1};
    CHECK_OK(graft_model_load_weights(m, H5_025, &opts));
    /* Loaded, not initial: BN moving variances of ImageNet are not all ones. */
    graft_layer *bn = graft_model_find(m, "conv1_bn");
    const float *var = graft_layer_weight_data(bn, 3);
    int ones = 0;
    for (int i = 0; i < 8; i++) ones += var[i] == 1.0f;
    CHECK(ones < 8);
    float *img = malloc(150 * 150 * 3 * sizeof(float)), *f = malloc(4 * 4 * 256 * sizeof(float));
    if (img && f && have_darknet() &&
        graft_image_load(DARKNET "/dog.jpg", 150, 150, GRAFT_INTERP_BILINEAR, 0, img) == GRAFT_OK) {
        CHECK_OK(graft_preprocess_input("mobilenet", img, 150 * 150));
        CHECK_OK(graft_model_predict(m, img, 1, f));
        int finite = 1, positive = 0;
        float peak = 0;
        for (int i = 0; i < 4 * 4 * 256; i++) {
            finite &= isfinite(f[i]);
            positive += f[i] > 0;
            if (f[i] > peak) peak = f[i];
        }
        CHECK(finite && positive > 100 && peak <= 6.0f);
    }
    free(img);
    free(f);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_labels_missing);
    RUN(test_labels);
    RUN(test_decode);
    RUN(test_preprocess);
    RUN(test_mobilenet_tfjs_predictions);
    RUN(test_genuine_keras_h5);
    return CHECK_SUMMARY();
}
