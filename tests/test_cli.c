/* The graft tool as a user drives it: errors are one clear line and a
 * non-zero exit; train, finetune, evaluate, predict, plot and summary work on
 * a small folder of real photos. GRAFT_BIN (set by tests/run.sh) names it. */
#include "check.h"
#include "test_util.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define H5_025 "../shared/models/mobilenet_2_5_224_tf_no_top.h5"

static char tmp[64];
static char out[1 << 16], err[1 << 16];
static const char *bin;

static const char *last_line(const char *s)
{
    const char *end = s + strlen(s);
    while (end > s && end[-1] == '\n') end--;
    const char *p = end;
    while (p > s && p[-1] != '\n') p--;
    return p;
}

/* A small copy of the lesson's layout: train/ and validation/, cats and dogs. */
static int make_data(void)
{
    return lesson_subset(path_in(tmp, "data"), 12, 6, 0);
}

static void test_usage_and_errors(void)
{
    CHECK(graft("%s", "") == 2 && strstr(err, "usage: graft COMMAND") && !out[0]);
    CHECK(graft("bogus") == 2 && strstr(err, "unknown command 'bogus'"));
    CHECK(graft("train --help") == 0 && strstr(out, "--base NAME"));
    for (const char *c = "lesson\0train\0finetune\0resume\0evaluate\0predict\0summary\0plot\0"; *c; c += strlen(c) + 1) {
        char a[64];
        snprintf(a, sizeof a, "%s --help", c);
        CHECK_MSG(graft("%s", a) == 0 && strstr(out, "usage: graft"), "%s --help", c);
    }
    char a[512];
    snprintf(a, sizeof a, "train --data %s/nope --base mobilenet --out %s/r", tmp, tmp);
    CHECK(graft("%s", a) == 1 && strstr(err, "does not exist") && strchr(err, '\n') == err + strlen(err) - 1);
    snprintf(a, sizeof a, "train --data %s/data --base resnet18 --out %s/r", tmp, tmp);
    CHECK(graft("%s", a) == 2 && strstr(err, "graft train: unknown base 'resnet18'"));
    snprintf(a, sizeof a, "train --data %s/data --base mobilenet --alpha 1.0 --weights %s --out %s/r", tmp,
             H5_025, tmp);
    CHECK_MSG(graft("%s", a) == 1 && strstr(err, "do not fit"), "%s", err);
    snprintf(a, sizeof a, "train --data %s/data --base vgg16 --input-size 16 --out %s/r", tmp, tmp);
    CHECK(graft("%s", a) == 2 && strstr(err, "graft train: --input-size"));
    snprintf(a, sizeof a, "train --data %s/data --base scratch --epochs zero --out %s/r", tmp, tmp);
    CHECK(graft("%s", a) == 2 && strstr(err, "graft train: --epochs"));
    snprintf(a, sizeof a, "predict --model %s/none.h5 x.jpg", tmp);
    CHECK(graft("%s", a) == 1 && strstr(err, "does not exist"));
    snprintf(a, sizeof a, "lesson --data %s/nothing-here", tmp);
    CHECK(graft("%s", a) == 1 && strstr(err, "train/"));
}

static void test_train_scratch_json(void)
{
    char a[512];
    snprintf(a, sizeof a, "train --data %s/data --base scratch --input-size 32 --epochs 2 --batch 8 "
                          "--out %s/scratch --json --verbose 0", tmp, tmp);
    CHECK_MSG(graft("%s", a) == 0, "%s", err);
    const char *j = last_line(out);
    CHECK_MSG(j[0] == '{' && strstr(j, "\"val_accuracy\"") && strstr(j, "\"loss\""), "%s", j);
    for (const char *f = "config.json\0history.json\0log.csv\0model.h5\0accuracy_loss.png\0checkpoint.graft\0";
         *f; f += strlen(f) + 1) {
        char p[256];
        snprintf(p, sizeof p, "%s/scratch/%s", tmp, f);
        CHECK_MSG(access(p, R_OK) == 0, "%s is missing", p);
    }
}

static void test_transfer_run(void)
{
    char a[768];
    snprintf(a, sizeof a, "train --data %s/data --base mobilenet --alpha 0.25 --weights %s "
                          "--input-size 64 --head dropout --epochs 2 --batch 8 --out %s/mn --json",
             tmp, H5_025, tmp);
    CHECK_MSG(graft("%s", a) == 0, "%s", err);
    CHECK(strstr(err, "Epoch 2/2\n3/3 - ") != NULL); /* Keras's verbose=2 lines, on stderr with --json */
    CHECK_MSG(out[0] == '{' && strchr(out, '\n') == out + strlen(out) - 1, "stdout: %s", out);
    snprintf(a, sizeof a, "finetune %s/mn --unfreeze 6 --lr 1e-5 --epochs 1 --json", tmp);
    CHECK_MSG(graft("%s", a) == 0, "%s", err);
    CHECK(strstr(err, "Epoch 3/3") && strstr(last_line(out), "\"epochs\": 3"));
    snprintf(a, sizeof a, "evaluate --model %s/mn --data %s/data --json", tmp, tmp);
    CHECK_MSG(graft("%s", a) == 0 && strstr(out, "\"confusion_matrix\": [[") && strstr(out, "\"per_class\": {\"cats\": {\"precision\"") &&
                  strstr(out, "\"f1\"") && out[0] == '{', "%s", out);
    snprintf(a, sizeof a, "evaluate --model %s/mn --data %s/data", tmp, tmp);
    CHECK(graft("%s", a) == 0 && strstr(out, "confusion matrix") && strstr(out, "12 images"));
    snprintf(a, sizeof a, "predict --model %s/mn --json %s/data/validation/cats", tmp, tmp);
    CHECK_MSG(graft("%s", a) == 0, "%s", err);
    int lines = 0;
    for (const char *p = out; (p = strstr(p, "{\"image\": ")); p++) lines++;
    CHECK_MSG(lines == 6 && strstr(out, "\"class\": \"cats\""), "%d lines: %s", lines, out);
    snprintf(a, sizeof a, "plot %s/mn %s/scratch", tmp, tmp);
    CHECK_MSG(graft("%s", a) == 0 && strstr(out, "comparison.png"), "%s", err);
    snprintf(a, sizeof a, "summary %s/mn", tmp);
    CHECK(graft("%s", a) == 0 && strstr(out, "conv_pw_13_relu (ReLU)") && strstr(out, "Total params: 218,801"));
    /* Trainable as after the fine-tuning (the last 6 base layers and the
     * head), from the run folder as from its model.h5. */
    char trainable[64] = "";
    const char *t = strstr(out, "Trainable params: ");
    if (t) snprintf(trainable, sizeof trainable, "%.*s", (int)strcspn(t, "\n"), t);
    CHECK_MSG(t && !strstr(trainable, "218,801"), "%s", trainable);
    snprintf(a, sizeof a, "summary %s/mn/model.h5", tmp);
    CHECK(graft("%s", a) == 0 && strstr(out, "Total params: 218,801"));
    CHECK_MSG(trainable[0] && strstr(out, trainable), "%s vs %s", trainable, out);
}

int main(void)
{
    bin = tool_bin();
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "test_cli needs %s\n", bin);
        return 1;
    }
    if (access(LESSON_DATA "/train/cats/cat.0.jpg", R_OK) != 0 || access(H5_025, R_OK) != 0) {
        printf("test_cli: skipped (needs the lesson's photos and %s in ../shared)\n0 passed, 0 failed\n", H5_025);
        return 0;
    }
    snprintf(tmp, sizeof tmp, "/tmp/graft_cli_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    tool_output(tmp, out, sizeof out, err, sizeof err);
    char d[128];
    snprintf(d, sizeof d, "%s/data", tmp);
    mkdir(d, 0755);
    if (make_data() != 0) {
        fprintf(stderr, "cannot lay out test data in %s\n", tmp);
        return 1;
    }
    RUN(test_usage_and_errors);
    RUN(test_train_scratch_json);
    RUN(test_transfer_run);
    remove_tree(tmp);
    rmdir(tmp);
    return CHECK_SUMMARY();
}
