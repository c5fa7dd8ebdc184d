/* graft export: a run (or a model file) as ONNX, a TF.js layers model, or a web page. */
#include "cli.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { O_FORMAT = 400, O_BATCH, O_OPSET, O_LAYOUT, O_PRE, O_QUANT, O_RUNTIME, O_INT8, O_CALIB, O_HELP };

static const char usage_text[] =
    "usage: graft export --format onnx RUN_DIR|MODEL_FILE OUT.onnx [--batch N|dynamic] [--opset K]\n"
    "                    [--layout nhwc|nchw] [--include-preprocessing]\n"
    "                    [--int8 DIR [--calibration-images N]]\n"
    "       graft export --format tfjs RUN_DIR|MODEL_FILE OUT_DIR [--quantize uint8|float16]\n"
    "       graft export --format web RUN_DIR|MODEL_FILE OUT_DIR [--quantize uint8|float16]\n"
    "                    [--tfjs-runtime tf.min.js]\n\n"
    "Writes the model for deployment: an ONNX file for ONNX Runtime (input NHWC\n"
    "as graft takes it, or NCHW; dynamic batch by default; opset 13 by default),\n"
    "a TF.js layers model (model.json, weight shards of at most 4 MB,\n"
    "metadata.json with the class names and preprocessing), or that plus a\n"
    "static page (index.html) that classifies a chosen or dropped image with\n"
    "TF.js, opened from disk. The page's tf.min.js is copied from the\n"
    "@tensorflow/tfjs npm package: --tfjs-runtime, else\n"
    "js/node_modules/@tensorflow/tfjs/dist/tf.min.js in graft's repository or\n"
    "the current folder, else /usr/share/nodejs/@tensorflow/tfjs/dist/tf.min.js.\n\n"
    "ONNX with --int8 DIR: the base quantized as graft predict --int8 runs it, in\n"
    "ONNX's QDQ form with graft's scales (QuantizeLinear/DequantizeLinear around\n"
    "each 8-bit tensor, int8 kernels with per-channel scales, int32 biases), which\n"
    "ONNX Runtime runs with its int8 kernels (QLinearConv); the head stays float.\n"
    "Opset 13 or later.\n"
    INT8_HELP;

/* The model and what a run folder knows about it. */
/* What is exported: a run folder or a model file (cli_model_open), and a
 * run folder's last validation accuracy for the web page. */
typedef struct {
    cli_model cm;
    float val_accuracy;
} source;

static int open_source(const char *path, source *src)
{
    src->val_accuracy = 0;
    if (cli_model_open(path, &src->cm)) return 1;
    if (!cli_is_dir(path)) return 0;
    char p[CLI_PATH + 32];
    graft_history h;
    snprintf(p, sizeof p, "%s/history.json", path);
    if (graft_history_load_json(p, &h, NULL, NULL) == GRAFT_OK) {
        if (h.n > 0 && h.val_accuracy && !isnan(h.val_accuracy[h.n - 1]))
            src->val_accuracy = (float)h.val_accuracy[h.n - 1];
        graft_history_free(&h);
    }
    return 0;
}

/* The export metadata of a source: a run's classes and preprocessing, or a zoo model's. */
static graft_export_meta meta_of(const source *src)
{
    graft_export_meta meta = {.val_accuracy = src->val_accuracy};
    const cli_model *cm = &src->cm;
    if (cm->is_run) {
        meta.classes = (const char *const *)cm->run.classes;
        meta.n_classes = cm->run.n_classes;
        bool model_pre = !strcmp(cm->run.preprocess, "model") && strcmp(cm->run.base, "scratch") != 0;
        meta.preprocess = model_pre ? cm->run.base : "rescale";
    } else {
        meta.preprocess = cm->arch;
    }
    return meta;
}

/* tf.min.js from the @tensorflow/tfjs npm package, in the places --help lists. */
static int find_runtime(const char *opt, char out[CLI_PATH])
{
    if (opt) {
        if (!cli_is_file(opt)) return cli_fail("export: --tfjs-runtime %s is not a file", opt);
        snprintf(out, CLI_PATH, "%s", opt);
        return 0;
    }
    static const char rel[] = "js/node_modules/@tensorflow/tfjs/dist/tf.min.js",
                      system_copy[] = "/usr/share/nodejs/@tensorflow/tfjs/dist/tf.min.js";
    /* The repository holding the executable (build/graft, build/x/graft). */
    char exe[CLI_PATH], probe[CLI_PATH];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    for (int up = 0; n > 0 && up < 3; up++) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (!slash) break;
        *slash = '\0';
        n = (ssize_t)strlen(exe);
        if (snprintf(probe, sizeof probe, "%s/%s", exe, rel) < (int)sizeof probe && cli_is_file(probe)) {
            snprintf(out, CLI_PATH, "%s", probe);
            return 0;
        }
    }
    const char *rest[2] = {rel, system_copy};
    for (int i = 0; i < 2; i++)
        if (cli_is_file(rest[i])) {
            snprintf(out, CLI_PATH, "%s", rest[i]);
            return 0;
        }
    return cli_fail("export: the TF.js runtime tf.min.js was not found (in graft's repository and "
                    "the current folder as %s, and %s): run `npm install --ignore-scripts` in js/, "
                    "or give --tfjs-runtime FILE",
                    rel, system_copy);
}

int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {{"format", required_argument, 0, O_FORMAT},
                                         {"batch", required_argument, 0, O_BATCH},
                                         {"opset", required_argument, 0, O_OPSET},
                                         {"layout", required_argument, 0, O_LAYOUT},
                                         {"include-preprocessing", no_argument, 0, O_PRE},
                                         {"quantize", required_argument, 0, O_QUANT},
                                         {"tfjs-runtime", required_argument, 0, O_RUNTIME},
                                         {"int8", required_argument, 0, O_INT8},
                                         {"calibration-images", required_argument, 0, O_CALIB},
                                         {"help", no_argument, 0, O_HELP},
                                         {0, 0, 0, 0}};
    const char *format = NULL, *runtime_opt = NULL, *int8_dir = NULL;
    int calib = CLI_CALIBRATION_IMAGES;
    graft_onnx_opts onnx = {0};
    graft_tfjs_opts tfjs = {0};
    bool onnx_flags = false, tfjs_flags = false;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        switch (o) {
        case O_FORMAT: format = optarg; break;
        case O_BATCH:
            onnx_flags = true;
            if (!strcmp(optarg, "dynamic")) {
                onnx.batch = 0;
                break;
            }
            onnx.batch = (int)strtol(optarg, &end, 10);
            if (*end || end == optarg || onnx.batch < 1 || onnx.batch > CLI_MAX_BATCH)
                return cli_fail("export: --batch %s: a size in 1..%d or 'dynamic'", optarg, CLI_MAX_BATCH);
            break;
        case O_OPSET:
            onnx_flags = true;
            onnx.opset = (int)strtol(optarg, &end, 10);
            if (*end || end == optarg || onnx.opset < 11 || onnx.opset > 17)
                return cli_fail("export: --opset %s: graft writes ONNX opsets 11 to 17", optarg);
            break;
        case O_LAYOUT:
            onnx_flags = true;
            if (!strcmp(optarg, "nchw")) onnx.nchw = 1;
            else if (strcmp(optarg, "nhwc") != 0)
                return cli_fail("export: --layout %s: nhwc or nchw", optarg);
            break;
        case O_PRE: onnx_flags = true; onnx.include_preprocessing = 1; break;
        case O_QUANT:
            tfjs_flags = true;
            if (!strcmp(optarg, "uint8")) tfjs.quantize = GRAFT_QUANT_UINT8;
            else if (!strcmp(optarg, "float16")) tfjs.quantize = GRAFT_QUANT_FLOAT16;
            else return cli_fail("export: --quantize %s: uint8 or float16", optarg);
            break;
        case O_RUNTIME: runtime_opt = optarg; break;
        case O_INT8: onnx_flags = true; int8_dir = optarg; break;
        case O_CALIB:
            onnx_flags = true;
            if ((o = cli_opt_int("calibration-images", optarg, 1, CLI_MAX_CALIBRATION, &calib))) return o;
            break;
        case O_HELP: fputs(usage_text, stdout); return 0;
        default: fputs(usage_text, stderr); return 2;
        }
    }
    if (!format || argc - optind != 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    bool is_onnx = !strcmp(format, "onnx"), is_tfjs = !strcmp(format, "tfjs"), is_web = !strcmp(format, "web");
    if (!is_onnx && !is_tfjs && !is_web) return cli_fail("export: --format %s: onnx, tfjs or web", format);
    if (is_onnx && tfjs_flags) return cli_fail("export: --quantize is for --format tfjs or web");
    if (!is_onnx && onnx_flags)
        return cli_fail("export: --batch, --opset, --layout, --include-preprocessing and --int8 are for --format onnx");
    if (!is_web && runtime_opt) return cli_fail("export: --tfjs-runtime is for --format web");
    if (int8_dir && onnx.opset && onnx.opset < 13)
        return cli_fail("export: --int8 needs --opset 13 or later (per-channel DequantizeLinear)");

    const char *in = argv[optind], *out = argv[optind + 1];
    char runtime[CLI_PATH];
    if (is_web && find_runtime(runtime_opt, runtime)) return 1;
    source src;
    if (open_source(in, &src)) {
        cli_model_free(&src.cm);
        return 1;
    }
    graft_export_meta meta = meta_of(&src);
    graft_status s;
    if (is_onnx) {
        onnx.meta = meta;
        if (onnx.include_preprocessing && !meta.preprocess) {
            cli_model_free(&src.cm);
            return cli_fail("export: %s names no preprocessing to include (not a run folder or a zoo model)", in);
        }
        if (int8_dir) {
            /* Resized for calibration as graft predict reads images for this model. */
            const char *interp_name =
                src.cm.is_run && src.cm.run.interpolation[0] ? src.cm.run.interpolation : "bilinear";
            graft_interpolation interp;
            int rc = graft_interpolation_parse(interp_name, &interp) != GRAFT_OK
                         ? cli_fail("interpolation '%s' of %s is not one graft knows", interp_name, in)
                         : cli_quantize(&src.cm, int8_dir, calib, interp);
            if (rc) {
                cli_model_free(&src.cm);
                return rc;
            }
            onnx.int8 = 1;
        }
        s = graft_export_onnx(src.cm.m, out, &onnx);
    } else {
        tfjs.meta = meta;
        s = is_web ? graft_export_web(src.cm.m, out, &tfjs, runtime) : graft_export_tfjs(src.cm.m, out, &tfjs);
    }
    cli_model_free(&src.cm);
    if (s != GRAFT_OK) return cli_fail_status(s, "export");
    printf("%s: %s\n", is_onnx ? "ONNX model" : is_web ? "web page" : "TF.js model", out);
    if (is_web) printf("open %s/index.html in a browser (no server needed)\n", out);
    return 0;
}
