/*
 * The zoo's bases through the graft tool: `graft summary --base` prints
 * Keras's table with Keras's parameter counts, and `graft train --base NAME`
 * then `graft finetune` run on a few of the lesson's photos with random
 * weights (the path, not the accuracy). Every run writes the whole model, so
 * by default one light member of each family trains (under AddressSanitizer,
 * where a run takes 5-10 times as long, only the two lightest: the others'
 * code paths are the same tool's, and they train in `make test`);
 * GRAFT_ZOO_CLI_BASES="NAME ..." trains those, "all" every new base.
 * GRAFT_BIN (set by tests/run.sh) names the tool; ../shared has the photos.
 * Starts early (tests/run.sh): one of the longest suites.
 */
#include "check.h"
#include "test_util.h"

#include <graft.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>


static char tmp[64] = "/tmp/graft_zoo_cli_XXXXXX";
static char out[1 << 20], err[1 << 16];
static const char *bin;

/* The new bases, with the light ones the suite trains by default (quick 1)
 * and the two it trains under ASan (quick 2). */
static const struct {
    const char *name;
    int quick;
} bases[] = {
    {"VGG19", 0},      {"ResNet101", 0},   {"ResNet152", 0},
    {"ResNet50V2", 1}, {"ResNet101V2", 0}, {"ResNet152V2", 0},
    {"DenseNet121", 1}, {"DenseNet169", 0}, {"DenseNet201", 0},
    {"InceptionV3", 0}, {"Xception", 0},
    {"EfficientNetB0", 2}, {"EfficientNetB1", 0}, {"EfficientNetB2", 0}, {"EfficientNetB3", 0},
    {"EfficientNetB4", 0}, {"EfficientNetB5", 0}, {"EfficientNetB6", 0}, {"EfficientNetB7", 0},
    {"MobileNetV3Small", 2}, {"MobileNetV3Large", 0},
    {"ConvNeXtTiny", 1}, {"ConvNeXtSmall", 0}, {"ConvNeXtBase", 0},
};

static int wanted(int i)
{
    const char *only = getenv("GRAFT_ZOO_CLI_BASES");
    if (!only || !*only) return bases[i].quick >= SUITE_QUICK;
    if (strcmp(only, "all") == 0) return 1;
    size_t n = strlen(bases[i].name);
    for (const char *p = strstr(only, bases[i].name); p; p = strstr(p + 1, bases[i].name))
        if ((p == only || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ')) return 1;
    return 0;
}

/* Four photos per class to train on, two to validate. */
static int make_data(void)
{
    return lesson_subset(path_in(tmp, "data"), 4, 2, 0);
}

/* Keras's model.summary() totals, with the top at the default size. */
static void test_summary_base(void)
{
    static const struct {
        const char *args, *line;
    } want[] = {
        {"--base VGG19 --include-top", "Total params: 143,667,240"},
        {"--base vgg19", "Total params: 20,024,384"},
        {"--base resnet_50_v2 --include-top", "Total params: 25,613,800"},
        {"--base ResNet152V2 --include-top --input-size 64", "Total params: 60,380,648"},
        {"--base DenseNet121 --include-top", "Total params: 8,062,504"},
        {"--base EfficientNetB0 --include-top", "Total params: 5,330,571"},
        {"--base mobilenetv3small --include-top", "Total params: 2,554,968"},
        {"--base InceptionV3 --include-top", "Total params: 23,851,784"},
        {"--base Xception --include-top", "Total params: 22,910,480"},
        {"--base ConvNeXtTiny --include-top", "Total params: 28,589,128"},
        {"--base convnext_base --include-top", "Total params: 88,591,464"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char a[256];
        snprintf(a, sizeof a, "summary %s", want[i].args);
        CHECK_MSG(graft("%s", a) == 0 && strstr(out, want[i].line), "%s: %s%s", a, err,
                  strstr(out, "Total params") ? strstr(out, "Total params") : "");
    }
    CHECK(graft("summary --base ResNet50V2 --include-top") == 0 &&
          strstr(out, "Model: \"resnet50v2\"") && strstr(out, "post_relu (Activation)"));
    CHECK(graft("summary --base ResNet50V2 --input-size 64") == 0 &&
          strstr(out, "(None, 2, 2, 2048)"));
    CHECK(graft("summary --base NoSuchNet") == 1 && strstr(err, "unknown architecture 'NoSuchNet'") &&
          strstr(err, "ResNet50V2"));
    CHECK(graft("summary --base VGG19 --input-size 16") == 1 && strstr(err, "at least 32"));
    CHECK(graft("summary --base VGG19 --input-size x") == 1 && strstr(err, "--input-size"));
    CHECK(graft("summary --include-top") == 2 && strstr(err, "--base")); /* a usage error */
}

/* graft summary of a weights-only file names the base it fits, reading the
 * file's names before building any base (weighted_mark). */
static void test_summary_weights(void)
{
    const char *shared = "../shared/models/mobilenet_2_5_224_tf_no_top.h5";
    if (access(shared, R_OK) != 0) {
        printf("  skip: %s is missing\n", shared);
    } else {
        CHECK_MSG(graft("summary ../shared/models/mobilenet_2_5_224_tf_no_top.h5") == 0 &&
                      strstr(out, "fit the zoo's mobilenet base (include_top=False) with alpha "
                                  "0.25: --base mobilenet --alpha 0.25"),
                  "%s%s", out, err);
    }
    /* EfficientNetB1's weights hold all of B0's layers, and more: B1, the
     * base that takes them all, is named, not B0 (which the table lists first). */
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = 32;
    graft_model *m = NULL;
    char path[128], a[256];
    snprintf(path, sizeof path, "%s/b1.h5", tmp);
    CHECK_OK(graft_zoo_build("EfficientNetB1", &c, &m));
    if (m) CHECK_OK(graft_model_save_weights(m, path));
    graft_model_free(m);
    snprintf(a, sizeof a, "summary %s", path);
    CHECK_MSG(graft("%s", a) == 0 && strstr(out, "fit the zoo's efficientnetb1 base (include_top=False): "
                                            "--base efficientnetb1"),
              "%s%s", out, err);
    unlink(path);
    /* Every base's weighted_mark is a layer of it with weights. */
    c.skip_init = 1;
    for (int i = 0; graft_zoo_arch_at(i); i++) {
        const graft_zoo_arch *z = graft_zoo_arch_at(i);
        if (!z->weighted_mark) continue;
        c.input_shape[0] = c.input_shape[1] = z->min_size;
        m = NULL;
        CHECK_OK(graft_zoo_build(z->name, &c, &m));
        graft_layer *l = m ? graft_model_find(m, z->weighted_mark) : NULL;
        CHECK_MSG(l && graft_layer_num_weights(l) > 0, "%s: no weighted layer %s", z->name,
                  z->weighted_mark);
        graft_model_free(m);
    }
}

static void test_train_finetune(void)
{
    int ran = 0;
    for (int i = 0; i < (int)(sizeof bases / sizeof *bases); i++) {
        if (!wanted(i)) continue;
        const graft_zoo_arch *arch = graft_zoo_find(bases[i].name);
        CHECK(arch != NULL);
        if (!arch) continue;
        char a[1024], run[256];
        snprintf(run, sizeof run, "%s/run_%s", tmp, arch->name);
        snprintf(a, sizeof a,
                 "train --data %s/data --base %s --weights none --input-size %d --epochs 1 "
                 "--batch 4 --out %s --json",
                 tmp, bases[i].name, arch->min_size, run);
        /* --json: the epoch lines on stderr, JSON alone on stdout */
        CHECK_MSG(graft("%s", a) == 0 && strstr(err, "Epoch 1/1") && out[0] == '{', "%s: %s", a, err);
        snprintf(a, sizeof a, "finetune %s --unfreeze 4 --epochs 1 --json", run);
        CHECK_MSG(graft("%s", a) == 0 && strstr(err, "Epoch 2/2") && out[0] == '{', "%s: %s", a, err);
        remove_tree(run);
        rmdir(run);
        ran++;
    }
    printf("  %d bases trained and fine-tuned\n", ran);
    /* With Keras's own EfficientNet file (by its name) the base is the one
     * Keras builds for weights="imagenet": rescaling_1 after the Normalization. */
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = 32;
    graft_model *m = NULL;
    char w[256], run[256], a[1024];
    snprintf(w, sizeof w, "%s/efficientnetb0_notop.h5", tmp);
    snprintf(run, sizeof run, "%s/run_imagenet", tmp);
    CHECK_OK(graft_zoo_build("EfficientNetB0", &c, &m));
    if (m) CHECK_OK(graft_model_save_weights(m, w));
    graft_model_free(m);
    snprintf(a, sizeof a,
             "train --data %s/data --base EfficientNetB0 --weights %s --input-size 32 --epochs 1 "
             "--batch 4 --out %s --json",
             tmp, w, run);
    CHECK_MSG(graft("%s", a) == 0, "%s: %s", a, err);
    snprintf(a, sizeof a, "summary %s", run);
    CHECK_MSG(graft("%s", a) == 0 && strstr(out, "rescaling_1 (Rescaling)"), "%s: %s%s", a, out, err);
    remove_tree(run);
    rmdir(run);
    unlink(w);
}

int main(void)
{
    bin = tool_bin();
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "test_zoo_cli needs %s\n", bin);
        return 1;
    }
    if (make_tmpdir(tmp) != 0) return 1;
    tool_output(tmp, out, sizeof out, err, sizeof err);
    RUN(test_summary_base);
    RUN(test_summary_weights);
    char d[128];
    snprintf(d, sizeof d, "%s/data", tmp);
    mkdir(d, 0755);
    if (access(LESSON_DATA "/train/cats/cat.0.jpg", R_OK) != 0)
        printf("skip: test_train_finetune needs the lesson's photos in ../shared\n");
    else if (make_data() != 0)
        CHECK_MSG(0, "cannot lay out the photos in %s", tmp);
    else
        RUN(test_train_finetune);
    return CHECK_SUMMARY();
}
