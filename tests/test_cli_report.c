/* The homework's tools and a CLI that never surprises: graft grid (runs
 * skipped when complete, resumable), graft report (its HTML rendered by
 * headless Chromium when installed), plot --label, usage errors, --force,
 * model_frozen.h5, resume of a finished run, predict on unreadable images
 * and with a bare graft .h5, --int8 (predict and evaluate calibrated
 * alike), Teachable Machine labels, summary of a
 * weights-only .h5, graft models and --weights' alpha. Tiny images, few steps.
 * Starts early (tests/run.sh): one of the longest suites.
 */
#include "check.h"
#include "test_util.h"

#include "graft.h"

#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define H5_025 "../shared/models/mobilenet_2_5_224_tf_no_top.h5"
#define TM "../shared/models/teachable_machine_mobilenet_v2_0.35/model.json"

static char tmp[64] = "/tmp/graft_cli_report_XXXXXX";
static char out[1 << 18], err[1 << 18];
static const char *bin;

static int make_data(void)
{
    return lesson_subset(path_in(tmp, "data"), 8, 4, 0);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* The same "image" and "class" fields, in the same order (the probabilities
 * may differ in their last bits between batch sizes). */
static bool same_classes(const char *a, const char *b)
{
    const char *keys[] = {"\"image\": \"", "\"class\": \""};
    for (;;) {
        const char *na = NULL, *nb = NULL;
        for (int k = 0; k < 2; k++) {
            const char *x = strstr(a, keys[k]), *y = strstr(b, keys[k]);
            if (x && (!na || x < na)) na = x;
            if (y && (!nb || y < nb)) nb = y;
        }
        if (!na || !nb) return !na && !nb;
        size_t la = strcspn(na + 10, "\""), lb = strcspn(nb + 10, "\"");
        if (la != lb || memcmp(na, nb, la + 10) != 0) return false;
        a = na + 10 + la;
        b = nb + 10 + lb;
    }
}

static void test_usage_errors(void)
{
    CHECK(graft("%s", "") == 2 && strstr(err, "usage: graft COMMAND") && !out[0]);
    CHECK(graft("grid --data x") == 2 && strstr(err, "graft grid: --data DIR and --out DIR are required"));
    CHECK(graft("grid --data x --out y --heads dense7") == 2 && strstr(err, "graft grid: --heads: unknown head 'dense7'"));
    CHECK(graft("train --no-such-flag") == 2 && strstr(err, "graft train: unrecognized option"));
    CHECK(graft("report --out x") == 2 && strstr(err, "graft report: no run folder given"));
    CHECK(graft("predict --model x.h5 --top 0 a.jpg") == 2 && strstr(err, "graft predict: --top"));
    CHECK(graft("resume") == 2 && strstr(err, "usage: graft resume"));
    CHECK(graft("models extra") == 2);
    for (const char *c = "grid\0report\0models\0"; *c; c += strlen(c) + 1)
        CHECK_MSG(graft("%s --help", c) == 0 && strstr(out, "usage: graft"), "%s --help", c);
}

#define GRID_ARGS                                                                                  \
    "grid --data %s/data --out %s/grid --bases mobilenet --heads dense1024,dropout,dense1024-dropout " \
    "--weights mobilenet=" H5_025 " --input-size 32 --batch 8 --epochs 2 --finetune 4 "            \
    "--finetune-epochs 1 --scratch --scratch-epochs 1 --json"

static void test_grid(void)
{
    CHECK_MSG(graft(GRID_ARGS, tmp, tmp) == 0, "%s", err);
    /* Only JSON on stdout: one entry per run, all trained. */
    CHECK_MSG(out[0] == '[' && count_of(out, "\"status\": \"trained\"") == 4, "%s", out);
    CHECK(strstr(err, "Epoch 2/2") && strstr(err, "kept from an earlier fit")); /* features shared */
    const char *runs[4] = {"mobilenet-dense1024", "mobilenet-dropout", "mobilenet-dense1024-dropout", "scratch"};
    for (int i = 0; i < 4; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/grid/%s/model.h5", tmp, runs[i]);
        CHECK_MSG(access(p, R_OK) == 0, "%s", p);
        snprintf(p, sizeof p, "%s/grid/%s/model_frozen.h5", tmp, runs[i]);
        CHECK_MSG((access(p, R_OK) == 0) == (i < 3), "%s", p); /* kept beside the fine-tuned model */
    }
    char p[256];
    snprintf(p, sizeof p, "%s/grid/mobilenet-dense1024-dropout/model.h5", tmp);
    CHECK(graft("summary %s", p) == 0 && strstr(out, "dropout_head (Dropout)") && strstr(out, "dense (Dense)"));
    /* Again: everything complete, nothing trained. */
    CHECK_MSG(graft(GRID_ARGS, tmp, tmp) == 0 && count_of(out, "\"status\": \"skipped\"") == 4, "%s", out);
    CHECK(!strstr(err, "Epoch"));
    CHECK(graft("resume %s/grid/scratch", tmp) == 0 && strstr(out, "nothing to resume"));
    /* A folder holding a run is not trained over without --force. */
    CHECK(graft("train --data %s/data --base scratch --input-size 32 --epochs 1 --out %s/grid/scratch", tmp, tmp) == 1 &&
          strstr(err, "graft train: ") && strstr(err, "--force"));
    CHECK_MSG(graft("train --data %s/data --base scratch --input-size 32 --epochs 1 --batch 8 --verbose 0 --force "
                    "--out %s/grid/scratch", tmp, tmp) == 0, "%s", err);
}

/* A grid stopped after its frozen stages goes on with the fine-tuning when
 * asked again, without training the frozen stage anew. */
static void test_grid_continues(void)
{
    const char *args = "grid --data %s/data --out %s/g2 --bases mobilenet --heads dropout --weights mobilenet=" H5_025
                       " --input-size 32 --batch 8 --epochs 1 %s";
    CHECK_MSG(graft(args, tmp, tmp, "") == 0 && strstr(out, "trained"), "%s", err);
    char hist[8192];
    slurp(path_in(tmp, "g2/mobilenet-dropout/history.json"), hist, sizeof hist);
    CHECK(!strstr(hist, "fine-tune"));
    CHECK_MSG(graft(args, tmp, tmp, "--finetune 3 --finetune-epochs 2") == 0, "%s", err);
    CHECK_MSG(strstr(out, "Epoch 2/3") && strstr(out, "Epoch 3/3") && !strstr(out, "Epoch 1/"), "%s", out);
    slurp(path_in(tmp, "g2/mobilenet-dropout/history.json"), hist, sizeof hist);
    CHECK_MSG(strstr(hist, "\"fine-tune\""), "%s", hist);
}

/* evaluate's loss on the lesson subset, and the same computed from predict's
 * probabilities: equal when both read the images alike. */
static double check_same_loss(const char *model, const char *predict_flags, const char *evaluate_flags)
{
    CHECK_MSG(graft("evaluate --model %s --data %s/data --json %s", model, tmp, evaluate_flags) == 0, "%s", err);
    const char *at = strstr(out, "\"loss\": ");
    double eval_loss = at ? atof(at + 8) : -1, loss = 0;
    int seen = 0;
    CHECK_MSG(graft("predict --model %s --json --top 2 %s %s/data/validation/cats %s/data/validation/dogs", model,
                    predict_flags, tmp, tmp) == 0, "%s", err);
    for (const char *line = out; (line = strstr(line, "{\"image\": ")) != NULL; line++) {
        bool dog = strstr(line, "/dogs/") && strstr(line, "/dogs/") < strchr(line, ',');
        const char *cls = strstr(line, dog ? "\"class\": \"dogs\"" : "\"class\": \"cats\"");
        const char *prob = cls ? strstr(cls, "\"probability\": ") : NULL;
        double p = prob ? atof(prob + 15) : 0;
        p = p < 1e-7 ? 1e-7 : p > 1 - 1e-7 ? 1 - 1e-7 : p;
        loss -= log(p);
        seen++;
    }
    loss /= seen ? seen : 1;
    CHECK_MSG(seen == 8 && fabs(loss - eval_loss) < 1e-4 * (1 + eval_loss),
              "%s: %d images, loss from predict %.6f, evaluate's %.6f\n%s%s", model, seen, loss, eval_loss, out, err);
    return eval_loss;
}

static void test_predict_and_evaluate(void)
{
    char model[256];
    snprintf(model, sizeof model, "%s/grid/mobilenet-dropout/model.h5", tmp);
    /* A bare .h5 from graft knows its classes (and its interpolation). */
    CHECK_MSG(graft("predict --model %s --top 1 %s/data/validation/dogs", model, tmp) == 0, "%s", err);
    CHECK(strstr(out, "interpolation: nearest") && (strstr(out, "1. cats") || strstr(out, "1. dogs")));
    CHECK(graft("evaluate --model %s --data %s/data --json", model, tmp) == 0 &&
          strstr(out, "\"classes\": [\"cats\", \"dogs\"]") && strstr(out, "\"confusion_matrix\""));
    /* An unreadable image is skipped, named, and fails the command at the end. */
    char dir[256];
    snprintf(dir, sizeof dir, "%s/mixed", tmp);
    mkdir(dir, 0755);
    CHECK(write_bytes(path_in(dir, "broken.jpg"), "not an image", 12) == 0);
    CHECK(symlink(path_in(tmp, "data/validation/cats/cat.2000.jpg"), path_in(dir, "cat.jpg")) == 0);
    CHECK(graft("predict --model %s --json %s", model, dir) == 1);
    CHECK_MSG(strstr(err, "skipping") && strstr(err, "broken.jpg") && strstr(err, "1 of 2 images"), "%s", err);
    CHECK_MSG(count_of(out, "{\"image\": ") == 1 && strstr(out, "cat.jpg"), "%s", out);
    /* In batches: the same images in the same order with the same classes
     * whatever --batch is, the bad file skipped in the middle of a batch. */
    static char one[sizeof out];
    const char *dirs = "%s/data/validation/cats %s %s/data/validation/dogs";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "predict --model %%s --json --top 2 --batch %%d %s", dirs);
    CHECK(graft(cmd, model, 1, tmp, dir, tmp) == 1);
    snprintf(one, sizeof one, "%s", out);
    CHECK_MSG(count_of(one, "{\"image\": ") == 9 && strstr(err, "1 of 10 images"), "%s%s", one, err);
    const int batches[] = {3, 4, 64};
    for (int b = 0; b < 3; b++) {
        CHECK(graft(cmd, model, batches[b], tmp, dir, tmp) == 1);
        CHECK_MSG(same_classes(one, out), "--batch %d:\n%s\nvs --batch 1:\n%s", batches[b], out, one);
        CHECK_MSG(strstr(err, "skipping") && strstr(err, "broken.jpg") && strstr(err, "1 of 10 images"), "%s", err);
    }
    /* A run's model decodes as its training and evaluate do (JPEGs reduced
     * by DCT scaling): predict's probabilities give evaluate's loss. */
    double float_loss = check_same_loss(model, "", "");
    /* A model of other origin (the run's TF.js export) reads them as Keras
     * would, JPEGs at full size, in both. */
    char tfjs[256];
    snprintf(tfjs, sizeof tfjs, "%s/tfjs", tmp);
    CHECK_MSG(graft("export --format tfjs %s %s", model, tfjs) == 0, "%s", err);
    snprintf(tfjs, sizeof tfjs, "%s/tfjs/model.json", tmp);
    check_same_loss(tfjs, "--interpolation nearest", ""); /* flow_from_directory's default */
    /* --int8: the same calibration images read alike give predict and
     * evaluate the same 8-bit model. */
    char int8[300];
    snprintf(int8, sizeof int8, "--int8 %s/data/train --calibration-images 6", tmp);
    double int8_loss = check_same_loss(model, int8, int8);
    CHECK_MSG(int8_loss != float_loss && fabs(int8_loss - float_loss) < 0.1 * (1 + float_loss),
              "loss %.6f in float, %.6f in int8", float_loss, int8_loss);
    CHECK_MSG(strstr(err, "int8: ") && strstr(err, "layers in 8 bits, float from 'global_average_pooling2d") &&
              strstr(err, "calibrated on 6 images"), "%s", err);
    CHECK(graft("evaluate --model %s --data %s/data --int8 %s/data --calibration-images 0", model, tmp, tmp) == 2 &&
          strstr(err, "--calibration-images"));
    CHECK(graft("predict --model %s --int8 %s/no-such-folder %s", model, tmp, dir) == 1 &&
          strstr(err, "no-such-folder"));
    CHECK(graft("predict --model %s --batch 0 %s", model, dir) == 2 && strstr(err, "--batch"));
    CHECK(graft("predict --model %s --top two %s", model, dir) == 2 && strstr(err, "--top"));
    /* Teachable Machine's metadata.json labels. */
    if (access(TM, R_OK) == 0) {
        CHECK_MSG(graft("predict --model " TM " --top 3 %s/data/validation/cats/cat.2000.jpg", tmp) == 0, "%s", err);
        CHECK_MSG(strstr(out, "1. 1 ") || strstr(out, "1. 2 ") || strstr(out, "1. 3 "), "%s", out);
        CHECK(!strstr(out, "class_0"));
    }
}

static void test_models_summary_alpha(void)
{
    CHECK(graft("summary " H5_025) == 0 && strstr(out, "total params: 218,544") &&
          strstr(out, "mobilenet base (include_top=False) with alpha 0.25") && strstr(out, "conv_pw_13_bn/gamma:0"));
    CHECK(graft("models") == 0 && strstr(out, "mobilenet ") && strstr(out, "vgg16") && strstr(out, "14714688") &&
          strstr(out, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"));
    /* The width comes from the weights; a wrong --alpha names the right one. */
    CHECK_MSG(graft("train --data %s/data --base mobilenet --weights " H5_025 " --input-size 32 --epochs 1 "
                    "--batch 8 --verbose 0 --out %s/alpha", tmp, tmp) == 0, "%s", err);
    char cfg[4096];
    slurp(path_in(tmp, "alpha/config.json"), cfg, sizeof cfg);
    CHECK_MSG(strstr(cfg, "\"alpha\":\t0.25"), "%s", cfg);
    CHECK(graft("train --data %s/data --base mobilenet --alpha 0.5 --weights " H5_025 " --out %s/alpha2", tmp, tmp) == 1 &&
          strstr(err, "pass --alpha 0.25"));
}

static void test_plot_labels(void)
{
    CHECK_MSG(graft("plot %s/grid/mobilenet-dropout %s/grid/scratch --label 'with dropout' --label 'from scratch' --out %s/cmp.png",
                    tmp, tmp, tmp) == 0, "%s", err);
    size_t n = 0;
    unsigned char *png = read_bytes(path_in(tmp, "cmp.png"), &n);
    CHECK(png && n > 8 && memcmp(png, "\x89PNG", 4) == 0);
    free(png);
    CHECK(graft("plot %s/grid/scratch --label a --label b", tmp) == 2 && strstr(err, "give one per run"));
}

/* The report's HTML as a browser renders it: the table's rows, the figures
 * embedded (no file or network fetched), and a screenshot that is not blank. */
static void test_report_in_browser(void)
{
    CHECK_MSG(graft("report %s/grid/mobilenet-dense1024 %s/grid/mobilenet-dropout %s/grid/mobilenet-dense1024-dropout "
                    "%s/grid/scratch --out %s/rep --title 'Tiny grid'", tmp, tmp, tmp, tmp, tmp) == 0, "%s", err);
    char *md = read_text(path_in(tmp, "rep/report.md"), NULL);
    char *html = read_text(path_in(tmp, "rep/report.html"), NULL);
    CHECK(md && strstr(md, "## Runs") && strstr(md, "| mobilenet + dropout | mobilenet | dropout | 32 | frozen 2 + fine-tune 1 |"));
    CHECK(md && strstr(md, "## Summary") && strstr(md, "Dropout(0.5) on mobilenet") && strstr(md, "from scratch"));
    CHECK(md && strstr(md, "| class | precision | recall | F1 | images |") && strstr(md, "](curves.png)"));
    CHECK(html && !strstr(html, "http://") && !strstr(html, "https://") && !strstr(html, "src=\"curves"));
    CHECK(html && count_of(html, "src=\"data:image/png;base64,") >= 5);
    free(md);
    free(html);
    if (system("command -v chromium >/dev/null 2>&1") != 0) {
        printf("# chromium not installed: the browser part is skipped\n");
        return;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir=%s/chrome "
             "--dump-dom file://%s/rep/report.html",
             tmp, tmp);
    static char dom[1 << 22];
    char *dom_err = malloc(1 << 16);
    int rc = run_captured(cmd, path_in(tmp, "dom.txt"), path_in(tmp, "dom_err.txt"), dom, sizeof dom, dom_err, 1 << 16);
    CHECK_MSG(rc == 0, "chromium: %s", dom_err);
    free(dom_err);
    CHECK_MSG(count_of(dom, "<tr class=\"run\">") == 4, "%d rows", count_of(dom, "<tr class=\"run\">"));
    CHECK(count_of(dom, "<tr class=\"class\">") == 8 && strstr(dom, "<h1>Tiny grid</h1>"));
    CHECK(count_of(dom, "<img class=\"figure") == 5 && strstr(dom, "class=\"thumb\""));
    snprintf(cmd, sizeof cmd,
             "cd %s && timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir=%s/chrome "
             "--window-size=1200,1600 --screenshot=%s/shot.png file://%s/rep/report.html",
             tmp, tmp, tmp, tmp);
    CHECK(run_captured(cmd, test_tool.out_path, test_tool.err_path, out, sizeof out, err, sizeof err) == 0);
    /* Not blank: the screenshot's PNG, decoded by graft's own reader, holds
     * dark pixels (text, table borders, curves) as well as the white page. */
    snprintf(cmd, sizeof cmd, "%s/shot.png", tmp);
    int h = 0, w = 0, dark = 0, light = 0;
    CHECK(graft_image_size(cmd, &h, &w) == GRAFT_OK && h == 1600 && w == 1200);
    float *px = h > 0 && w > 0 ? malloc((size_t)h * w * 3 * sizeof(float)) : NULL;
    if (px && graft_image_load(cmd, 0, 0, GRAFT_INTERP_NEAREST, 0, px) == GRAFT_OK)
        for (int i = 0; i < h * w; i++) {
            float v = (px[3 * i] + px[3 * i + 1] + px[3 * i + 2]) / 3;
            dark += v < 128;
            light += v > 200;
        }
    free(px);
    CHECK_MSG(dark > 10000 && light > h * w / 2, "%d dark, %d light pixels", dark, light);
}

int main(void)
{
    bin = tool_bin();
    if (access(bin, X_OK) != 0 || access(LESSON_DATA "/train/cats/cat.0.jpg", R_OK) != 0 || access(H5_025, R_OK) != 0) {
        printf("test_cli_report: skipped (needs %s and ../shared)\n0 passed, 0 failed\n", bin);
        return 0;
    }
    if (make_tmpdir(tmp) != 0) return 1;
    tool_output(tmp, out, sizeof out, err, sizeof err);
    mkdir(path_in(tmp, "data"), 0755);
    if (make_data() != 0) {
        fprintf(stderr, "cannot lay out test data in %s\n", tmp);
        return 1;
    }
    RUN(test_usage_errors);
    RUN(test_grid);
    RUN(test_grid_continues);
    RUN(test_predict_and_evaluate);
    RUN(test_models_summary_alpha);
    RUN(test_plot_labels);
    RUN(test_report_in_browser);
    return CHECK_SUMMARY();
}
