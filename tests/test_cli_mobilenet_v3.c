/*
 * MobileNetV3's alpha and minimalistic through the graft tool, as Keras's
 * MobileNetV3Small/Large take them: `graft summary --base` with Keras's
 * parameter counts for each variant, the combinations Keras refuses with
 * weights="imagenet" refused in one line, `graft summary WEIGHTS.h5` naming
 * the variant a weights file fits, and a run of such a base that records its
 * variant, so that finetune, resume, predict, export and summary rebuild it.
 * GRAFT_BIN (set by tests/run.sh) names the tool; ../shared has the photos.
 */
#include "check.h"
#include "test_util.h"

#include <graft.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[64] = "/tmp/graft_cli_v3_XXXXXX";
static char out[1 << 18], err[1 << 16];
static const char *bin;

static bool one_line(const char *s) { return s[0] && strchr(s, '\n') == s + strlen(s) - 1; }

/* A no-top weights file of the base, as save_weights writes one. */
static int write_weights(const char *arch, float alpha, int minimalistic, const char *path)
{
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.include_top = 0;
    c.alpha = alpha;
    c.minimalistic = minimalistic;
    c.input_shape[0] = c.input_shape[1] = 32;
    graft_model *m = NULL;
    graft_status s = graft_zoo_build(arch, &c, &m);
    if (s == GRAFT_OK) s = graft_model_save_weights(m, path);
    graft_model_free(m);
    return s == GRAFT_OK ? 0 : -1;
}

/* Replaces the first `from` in RUN/config.json by `to`; 0, or -1 when absent. */
static int edit_config(const char *run, const char *from, const char *to)
{
    char cfg[8192], edited[8200];
    slurp(path_in(run, "config.json"), cfg, sizeof cfg);
    char *at = strstr(cfg, from);
    if (!at) return -1;
    snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
    return write_bytes(path_in(run, "config.json"), edited, strlen(edited));
}

/* Keras's totals for each variant, counted from the layers of Keras's
 * mobilenet_v3.py by scripts/mobilenet_v3_params.py (alpha 1 without
 * minimalistic: Keras's own model.summary(), as test_zoo_cli checks; Large
 * 0.75 and minimalistic agree with the 4.0M and 3.9M Keras's docstring
 * publishes). */
static void test_summary_variants(void)
{
    static const struct {
        const char *args, *top, *notop;
    } want[] = {
        {"MobileNetV3Small", "2,554,968", "939,120"},
        {"MobileNetV3Small --minimalistic", "2,056,848", "441,000"},
        {"MobileNetV3Small --alpha 0.75", "2,051,552", "583,160"},
        {"MobileNetV3Small --alpha 0.75 --minimalistic", "1,742,192", "273,800"},
        {"MobileNetV3Large", "5,507,432", "2,996,352"},
        {"mobilenetv3large --minimalistic", "3,948,688", "1,437,608"},
        {"MobileNetV3Large --alpha 0.75", "4,012,616", "1,808,736"},
        {"mobilenet_v3_large --alpha 0.75 --minimalistic", "3,069,400", "865,520"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        for (int top = 0; top < 2; top++) {
            char line[64];
            snprintf(line, sizeof line, "Total params: %s\n", top ? want[i].top : want[i].notop);
            int rc = graft("summary --base %s%s", want[i].args, top ? " --include-top" : "");
            const char *total = strstr(out, "Total params");
            CHECK_MSG(rc == 0 && strstr(out, line), "%s%s: %s%s", want[i].args,
                      top ? " with top" : "", err, total ? total : "");
        }
    }
    /* minimalistic: ReLU and 3x3 kernels, no squeeze-and-excite */
    CHECK(graft("summary --base MobileNetV3Small --minimalistic") == 0 && !strstr(out, "squeeze_excite"));
    CHECK(graft("summary --base MobileNetV3Small") == 0 && strstr(out, "squeeze_excite"));
    /* Keras has no such arguments for these bases */
    CHECK_MSG(graft("summary --base MobileNetV2 --minimalistic") == 1 && one_line(err) &&
                  strstr(err, "graft summary: --base: MobileNetV2 has no minimalistic argument"),
              "%s", err);
    CHECK_MSG(graft("summary --base ResNet50 --alpha 0.5") == 1 && one_line(err) &&
                  strstr(err, "ResNet50 has no alpha"),
              "%s", err);
    CHECK(graft("summary --base MobileNetV3Small --alpha 7") == 2 && strstr(err, "--alpha: '7'"));
    CHECK(graft("summary --minimalistic") == 2 && strstr(err, "go with --base"));
}

/* graft summary of a weights-only file names MobileNetV3's variant too,
 * reading it from the weights, and graft train takes it from the file. */
static void test_summary_matches_variant(void)
{
    static const struct {
        const char *arch;
        float alpha;
        int minimalistic;
        const char *line;
    } files[] = {
        {"MobileNetV3Small", 0.75f, 1,
         "fit the zoo's mobilenetv3small base (include_top=False) with alpha 0.75, minimalistic: "
         "--base mobilenetv3small --alpha 0.75 --minimalistic\n"},
        {"MobileNetV3Large", 1.0f, 1,
         "fit the zoo's mobilenetv3large base (include_top=False) with alpha 1, minimalistic: "
         "--base mobilenetv3large --alpha 1 --minimalistic\n"},
        {"MobileNetV3Large", 0.75f, 0,
         "fit the zoo's mobilenetv3large base (include_top=False) with alpha 0.75: "
         "--base mobilenetv3large --alpha 0.75\n"},
        {"MobileNetV3Small", 1.0f, 0,
         "fit the zoo's mobilenetv3small base (include_top=False) with alpha 1: "
         "--base mobilenetv3small --alpha 1\n"},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/w%zu.h5", tmp, i);
        CHECK(write_weights(files[i].arch, files[i].alpha, files[i].minimalistic, path) == 0);
        CHECK_MSG(graft("summary %s", path) == 0 && strstr(out, files[i].line), "%s: %s%s", path,
                  strstr(out, "These weights") ? strstr(out, "These weights") : out, err);
        unlink(path);
    }
}

/* A run of MobileNetV3Small at alpha 0.75, minimalistic: config.json
 * records both, and every command that rebuilds the run gets the same base. */
static void test_run_records_variant(void)
{
    NEED_FILE(LESSON_DATA "/train/cats/cat.0.jpg");
    if (lesson_subset(path_in(tmp, "data"), 4, 2, 0) != 0) {
        CHECK_MSG(0, "cannot lay out the photos in %s", tmp);
        return;
    }
    char run[128], grid[128], cfg[8192], w[128];
    snprintf(run, sizeof run, "%s/run", tmp);
    snprintf(grid, sizeof grid, "%s/grid", tmp);
    snprintf(w, sizeof w, "%s/small_075_min.h5", tmp);
    CHECK(write_weights("MobileNetV3Small", 0.75f, 1, w) == 0);
    /* What Keras refuses for weights="imagenet", and flags without a base
     * to take them: one line each, before anything is written. */
    CHECK_MSG(graft("train --data %s/data --base MobileNetV3Small --alpha 0.5 --out %s", tmp, run) == 2 &&
                  one_line(err) && strstr(err, "graft train: MobileNetV3Small has ImageNet weights for "
                                               "--alpha 0.75 and 1 (with --minimalistic: 1 only), not "
                                               "--alpha 0.5; pass --weights none"),
              "%s", err);
    CHECK_MSG(graft("train --data %s/data --base MobileNetV3Large --alpha 0.75 --minimalistic --out %s", tmp,
                    run) == 2 &&
                  one_line(err) && strstr(err, "not --alpha 0.75 --minimalistic"),
              "%s", err);
    CHECK_MSG(graft("train --data %s/data --base VGG16 --minimalistic --out %s", tmp, run) == 2 &&
                  one_line(err) && strstr(err, "--minimalistic: only MobileNetV3Small and MobileNetV3Large"),
              "%s", err);
    CHECK_MSG(graft("train --data %s/data --base EfficientNetB0 --alpha 0.75 --out %s", tmp, run) == 2 &&
                  one_line(err) && strstr(err, "--alpha: EfficientNetB0 has no width"),
              "%s", err);
    /* A file's variant against the flags: the flags that fit are named. */
    CHECK_MSG(graft("train --data %s/data --base MobileNetV3Small --alpha 1 --weights %s --input-size 32 "
                    "--out %s", tmp, w, run) == 1 &&
                  one_line(err) && strstr(err, "they fit mobilenetv3small --alpha 0.75 --minimalistic; pass "
                                               "--alpha 0.75 --minimalistic"),
              "%s", err);
    CHECK(access(run, F_OK) != 0); /* nothing left behind */

    /* The variant from the file, without flags. */
    CHECK_MSG(graft("train --data %s/data --base MobileNetV3Small --weights %s --input-size 32 --epochs 1 "
                    "--batch 4 --verbose 0 --out %s", tmp, w, run) == 0,
              "%s", err);
    slurp(path_in(run, "config.json"), cfg, sizeof cfg);
    CHECK_MSG(strstr(cfg, "\"alpha\":\t0.75,") && strstr(cfg, "\"minimalistic\":\ttrue,"), "%s", cfg);
    remove_tree(run);
    rmdir(run);

    /* The same variant from the flags, with random weights as Keras's weights=None. */
    CHECK_MSG(graft("train --data %s/data --base MobileNetV3Small --alpha 0.75 --minimalistic --weights none "
                    "--input-size 32 --epochs 1 --batch 4 --verbose 0 --out %s", tmp, run) == 0,
              "%s", err);
    slurp(path_in(run, "config.json"), cfg, sizeof cfg);
    CHECK_MSG(strstr(cfg, "\"alpha\":\t0.75,") && strstr(cfg, "\"minimalistic\":\ttrue,"), "%s", cfg);
    /* The base's 273,800 (as test_summary_variants) and the head's
     * Dense(1024) on its 432 features and Dense(1). */
    CHECK_MSG(graft("summary %s", run) == 0 && !strstr(out, "squeeze_excite") &&
                  strstr(out, "Total params: 718,217\n"),
              "%s%s", out, err);
    CHECK_MSG(graft("finetune %s --unfreeze 5 --epochs 1 --verbose 0", run) == 0, "%s", err);
    /* A stage that stopped before its last epoch: config.json's target one
     * further on, as an interrupted run leaves it; resume rebuilds the base
     * from config.json and loads the checkpoint into it. */
    CHECK(edit_config(run, "\"target_epochs\":\t2", "\"target_epochs\":\t3") == 0);
    CHECK_MSG(graft("resume %s", run) == 0 && strstr(out, "Resuming stage 'fine-tune' at epoch 3 of 3") &&
                  strstr(out, "Epoch 3/3"),
              "%s%s", out, err);
    CHECK_MSG(graft("predict --model %s --json %s/data/validation/cats", run, tmp) == 0 &&
                  strstr(out, "\"class\": \"cats\""),
              "%s", err);
    CHECK_MSG(graft("export --format onnx %s %s/run.onnx", run, tmp) == 0 &&
                  access(path_in(tmp, "run.onnx"), R_OK) == 0,
              "%s", err);
    unlink(path_in(tmp, "run.onnx"));
    /* The model.h5 alone knows its run too. */
    CHECK_MSG(graft("predict --model %s/model.h5 %s/data/validation/dogs", run, tmp) == 0, "%s", err);
    /* Without the variant recorded the base is another one, and said so. */
    CHECK(edit_config(run, "\"minimalistic\":\ttrue", "\"minimalistic\":\tfalse") == 0);
    CHECK_MSG(graft("summary %s", run) == 1 && strstr(err, "\"n_base_layers\" is 103, but the "
                                                             "mobilenetv3small base has 157 layers"),
              "%s", err);
    remove_tree(run);
    rmdir(run);

    /* graft grid: the variant goes to the MobileNetV3 base; the run is
     * found complete the second time, under Keras's spelling of its name. */
    const char *args = "grid --data %s/data --out %s --bases MobileNetV3Small --heads dropout --alpha 0.75 "
                       "--minimalistic --weights MobileNetV3Small=%s --input-size 32 --batch 4 --epochs 1";
    CHECK_MSG(graft(args, tmp, grid, w) == 0, "%s", err);
    slurp(path_in(grid, "MobileNetV3Small-dropout/config.json"), cfg, sizeof cfg);
    CHECK_MSG(strstr(cfg, "\"alpha\":\t0.75,") && strstr(cfg, "\"minimalistic\":\ttrue,"), "%s", cfg);
    CHECK_MSG(graft(args, tmp, grid, w) == 0 && strstr(out, "complete, skipped"), "%s%s", out, err);
    CHECK_MSG(graft("grid --data %s/data --out %s --bases vgg16 --minimalistic", tmp, grid) == 2 &&
                  strstr(err, "--minimalistic: none of --bases is a MobileNetV3"),
              "%s", err);
    remove_tree(grid);
    rmdir(grid);
    unlink(w);
}

int main(void)
{
    bin = tool_bin();
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "test_cli_mobilenet_v3 needs %s\n", bin);
        return 1;
    }
    if (make_tmpdir(tmp) != 0) return 1;
    tool_output(tmp, out, sizeof out, err, sizeof err);
    RUN(test_summary_variants);
    RUN(test_summary_matches_variant);
    RUN(test_run_records_variant);
    return CHECK_SUMMARY();
}
