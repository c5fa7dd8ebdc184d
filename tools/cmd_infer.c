/* graft predict, evaluate, summary and plot: using a trained model or a run. */
#include "cli.h"
#include "train/source.h" /* each rank's share of the batches */

#include <cjson/cJSON.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { O_MODEL = 300, O_TOP, O_JSON, O_INTERP, O_DATA, O_SIZE, O_HELP, O_OUT, O_PRE, O_BATCH, O_INT8,
       O_CALIB };


/* Teachable Machine's metadata.json beside a TF.js model.json (and graft's
 * TF.js export's): its "labels" name the outputs, or, two of them, the two
 * classes a single sigmoid output scores. */
static int read_tfjs_labels(const char *model_json, cli_model *l)
{
    char p[CLI_PATH + 32];
    snprintf(p, sizeof p, "%s", model_json);
    char *slash = strrchr(p, '/');
    snprintf(slash ? slash + 1 : p, sizeof p - (size_t)(slash ? slash + 1 - p : 0), "metadata.json");
    if (!cli_is_file(p)) return 0;
    FILE *f = fopen(p, "rb");
    char *text = NULL;
    long size = -1;
    if (f && fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (f && size > 0 && size < (1 << 24) && fseek(f, 0, SEEK_SET) == 0 && (text = calloc(1, (size_t)size + 1)) &&
        fread(text, 1, (size_t)size, f) != (size_t)size) {
        free(text);
        text = NULL;
    }
    if (f) fclose(f);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(j, "labels"), *e;
    graft_shape os = graft_layer_output_shape(graft_model_output(l->m));
    int n = cJSON_IsArray(labels) ? cJSON_GetArraySize(labels) : 0, rc = 0;
    size_t n_out = graft_shape_size(&os);
    if (n > 0 && ((size_t)n == n_out || (n_out == 1 && n == 2))) {
        l->run.classes = calloc((size_t)n, sizeof(char *));
        cJSON_ArrayForEach(e, labels)
        {
            if (!l->run.classes || !cJSON_IsString(e)) break;
            if (!(l->run.classes[l->run.n_classes] = strdup(e->valuestring))) break;
            l->run.n_classes++;
        }
        if (l->run.n_classes != n) rc = cli_fail("%s: \"labels\" could not be read", p);
    } else if (j) {
        fprintf(stderr, "graft %s: %s: no \"labels\" for the model's %zu outputs; classes are numbered\n",
                cli_cmd ? cli_cmd : "", p, n_out);
    }
    cJSON_Delete(j);
    return rc;
}

/* A run folder or a model file, for predict and evaluate on RGB images:
 * the run's model trainable as in its last stage (what its model.h5
 * records), a TF.js model's labels from its metadata.json. */
static int open_model(const char *path, cli_model *l)
{
    if (cli_model_open(path, l)) return 1;
    if (cli_is_dir(path)) {
        run_set_trainable(&l->run, l->m);
        return 0;
    }
    graft_shape in = graft_layer_output_shape(graft_model_layer(l->m, 0));
    if (in.rank != 3 || in.dim[2] != 3)
        return cli_fail("%s takes input of rank %d; graft predicts on RGB images (H, W, 3)", path, in.rank);
    size_t len = strlen(path);
    if (len > 5 && strcmp(path + len - 5, ".json") == 0) return read_tfjs_labels(path, l);
    return 0;
}

/* Every image the arguments name, in order: a file as given, a folder's
 * images sorted by name. */
static int list_images(char **args, int n_args, char ***out, int *n_out)
{
    char **all = NULL;
    int n = 0, cap = 0, rc = 0;
    for (int a = 0; a < n_args && rc == 0; a++) {
        if (!cli_is_dir(args[a])) {
            if (!cli_push_path(&all, &n, &cap, args[a])) rc = cli_fail("out of memory listing %s", args[a]);
            continue;
        }
        char **files = NULL;
        int nf = 0;
        graft_status s = graft_image_list(args[a], &files, &nf);
        if (s != GRAFT_OK) rc = cli_fail_status(s, args[a]);
        for (int i = 0; i < nf && rc == 0; i++)
            if (!cli_push_path(&all, &n, &cap, files[i])) rc = cli_fail("out of memory listing %s", args[a]);
        graft_image_list_free(files, nf);
    }
    if (rc == 0 && n == 0) rc = cli_usage("no image given (see graft predict --help)");
    if (rc) {
        graft_image_list_free(all, n);
        return rc;
    }
    *out = all;
    *n_out = n;
    return 0;
}

/* The top k of one image's outputs y as (name, probability): the run's
 * classes, ImageNet's, or class_N. Returns how many were filled. */
static int top_classes(const cli_model *l, const float *y, int n_out, int k, graft_prediction *p)
{
    const float *probs = y;
    int nc = n_out;
    float sigmoid[2];
    if (l->run.n_classes > 0) {
        /* Only classes that have both a name and a score: a sigmoid output
         * scores two classes. */
        if (n_out == 1) {
            sigmoid[0] = 1 - y[0];
            sigmoid[1] = y[0];
            probs = sigmoid;
            nc = 2;
        }
        if (nc > l->run.n_classes) nc = l->run.n_classes;
    } else if (n_out == GRAFT_IMAGENET_CLASSES) {
        return graft_decode_predictions(y, n_out, k, p) == GRAFT_OK ? k : -1;
    }
    if (k > nc) k = nc;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int c = 0; c < nc; c++) {
            bool used = false;
            for (int q = 0; q < j; q++) used |= p[q].index == c;
            if (!used && (best < 0 || probs[c] > probs[best])) best = c;
        }
        p[j].index = best;
        p[j].prob = probs[best];
        if (l->run.n_classes > 0) snprintf(p[j].name, sizeof p[j].name, "%s", l->run.classes[best]);
        else snprintf(p[j].name, sizeof p[j].name, "class_%d", best);
    }
    return k;
}

static void print_top(const char *image, const graft_prediction *p, int k, bool json)
{
    if (json) {
        FILE *jf = cli_json();
        fprintf(jf, "{\"image\": ");
        cli_json_string(jf, image);
        fprintf(jf, ", \"top\": [");
        for (int j = 0; j < k; j++) {
            fprintf(jf, "%s{\"class\": ", j ? ", " : "");
            cli_json_string(jf, p[j].name);
            fprintf(jf, ", \"index\": %d, \"probability\": %.6f}", p[j].index, (double)p[j].prob);
        }
        fprintf(jf, "]}\n");
    } else {
        printf("%s\n", image);
        for (int j = 0; j < k; j++) printf("  %d. %-28s %.4f\n", j + 1, p[j].name, (double)p[j].prob);
    }
}

/* Images [first, first + n) of the list: decoded side by side on the
 * threads, the readable ones predicted as one batch, printed in order. */
static int predict_batch(const cli_model *l, char **list, int first, int n, graft_interpolation interp,
                         int top, bool json, float *x, float *y, int *ok, char (*why)[GRAFT_WHY_LEN],
                         int *failed)
{
    graft_shape in = graft_layer_output_shape(graft_model_layer(l->m, 0));
    graft_shape os = graft_layer_output_shape(graft_model_output(l->m));
    size_t each = graft_shape_size(&in), pixels = (size_t)in.dim[0] * in.dim[1];
    int n_out = (int)graft_shape_size(&os);
    /* A run decodes as its training did; other models as Keras's load_img. */
    graft_status s = graft_image_load_many((const char *const *)list + first, n, in.dim[0], in.dim[1],
                                           interp, 0, !l->is_run, x, ok, why);
    if (s != GRAFT_OK) return cli_fail_status(s, list[first]);
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (ok[i]) {
            if (kept != i) memmove(x + (size_t)kept * each, x + (size_t)i * each, each * sizeof *x);
            kept++;
        }
    s = cli_model_preprocess(l, x, (size_t)kept * pixels);
    if (s == GRAFT_OK && kept) s = graft_model_predict(l->m, x, kept, y);
    if (s != GRAFT_OK) return cli_fail_status(s, list[first]);
    graft_prediction p[1000];
    int k = top < 1000 ? top : 1000;
    for (int i = 0, j = 0; i < n; i++) {
        if (!ok[i]) {
            cli_fail("skipping %s", why[i]); /* it names the file; the others go on */
            ++*failed;
            continue;
        }
        int got = top_classes(l, y + (size_t)j++ * (size_t)n_out, n_out, k, p);
        if (got < 0) return cli_fail_status(GRAFT_EINVAL, "decode_predictions");
        print_top(list[first + i], p, got, json);
    }
    return 0;
}

int cmd_predict(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"top", required_argument, 0, O_TOP},
                                         {"batch", required_argument, 0, O_BATCH},
                                         {"json", no_argument, 0, O_JSON},
                                         {"interpolation", required_argument, 0, O_INTERP},
                                         {"int8", required_argument, 0, O_INT8},
                                         {"calibration-images", required_argument, 0, O_CALIB},
                                         {"help", no_argument, 0, O_HELP},
                                         {0, 0, 0, 0}};
    const char *model = NULL, *interp_name = NULL, *int8_dir = NULL;
    int top = 5, json = 0, batch = 32, calib = CLI_CALIBRATION_IMAGES, o, rc = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case O_MODEL: model = optarg; break;
        case O_TOP: rc = cli_opt_int("top", optarg, 1, INT_MAX, &top); break;
        case O_BATCH: rc = cli_opt_int("batch", optarg, 1, CLI_MAX_BATCH, &batch); break;
        case O_JSON: json = 1; break;
        case O_INTERP: interp_name = optarg; break;
        case O_INT8: int8_dir = optarg; break;
        case O_CALIB: rc = cli_opt_int("calibration-images", optarg, 1, CLI_MAX_CALIBRATION, &calib); break;
        case O_HELP:
            printf("usage: graft predict --model FILE|RUN_DIR [--top K] [--batch N] [--json]\n"
                   "                     [--interpolation nearest|bilinear|area]\n"
                   "                     [--int8 DIR [--calibration-images N]] IMAGE|DIR...\n"
                   "Prints the top K classes of each image (default 5): the class names of a run\n"
                   "folder or of a model.h5 graft saved, a TF.js model's metadata.json \"labels\"\n"
                   "(Teachable Machine), ImageNet's for an ImageNet classifier. A run (or graft\n"
                   "model.h5) decodes, resizes and preprocesses as it was trained (a JPEG reduced\n"
                   "by libjpeg's DCT scaling where that still covers the input size, as graft's\n"
                   "training and evaluate read it); other models decode at full size as Keras's\n"
                   "load_img and resize with bilinear interpolation by default: on the sample\n"
                   "photos it classifies best (nearest, load_img's default, loses detail on large\n"
                   "photos).\n"
                   "Images go through the model N at a time (default 32, as Keras's predict),\n"
                   "decoded side by side on the threads; N changes the speed, not the classes\n"
                   "(a probability at most in its last float bits).\n"
                   "Unreadable images are skipped, each named on stderr, and the exit status is 1\n"
                   "at the end if any was. --json: one JSON object per image on stdout.\n"
                   INT8_HELP);
            return 0;
        default: return cli_usage("see graft predict --help");
        }
        if (rc) return rc;
    }
    if (!model) return cli_usage("--model FILE|RUN_DIR is required (see graft predict --help)");
    if (optind >= argc) return cli_usage("no image given (see graft predict --help)");
    graft_interpolation interp;
    if (interp_name && graft_interpolation_parse(interp_name, &interp) != GRAFT_OK)
        return cli_usage("--interpolation: '%s' is not nearest, bilinear, area, ...", interp_name);
    if (json && cli_json_begin()) return 1;
    cli_model l;
    rc = open_model(model, &l);
    /* Nothing here writes the weights: inference may keep its packed copies. */
    if (rc == 0) graft_model_set_weights_constant(l.m, 1);
    if (rc) {
        cli_model_free(&l);
        return rc;
    }
    /* A run resizes as it was trained, unless told otherwise. */
    if (!interp_name) interp_name = l.is_run && l.run.interpolation[0] ? l.run.interpolation : "bilinear";
    if (graft_interpolation_parse(interp_name, &interp) != GRAFT_OK) {
        cli_model_free(&l);
        return cli_fail("interpolation '%s' of %s is not one graft knows", interp_name, model);
    }
    if (int8_dir) rc = cli_quantize(&l, int8_dir, calib, interp);
    char **list = NULL;
    int count = 0, failed = 0;
    if (rc == 0) rc = list_images(argv + optind, argc - optind, &list, &count);
    if (rc == 0 && batch > count) batch = count;
    graft_shape in = graft_layer_output_shape(graft_model_layer(l.m, 0));
    graft_shape os = graft_layer_output_shape(graft_model_output(l.m));
    float *x = NULL, *y = NULL;
    int *ok = NULL;
    char(*why)[GRAFT_WHY_LEN] = NULL;
    if (rc == 0) {
        x = malloc((size_t)batch * graft_shape_size(&in) * sizeof(float));
        y = malloc((size_t)batch * graft_shape_size(&os) * sizeof(float));
        ok = malloc((size_t)batch * sizeof *ok);
        why = malloc((size_t)batch * sizeof *why);
        if (!x || !y || !ok || !why)
            rc = cli_fail("out of memory for a batch of %d images of %dx%d (--batch)", batch, in.dim[1], in.dim[0]);
    }
    if (!json && rc == 0) printf("interpolation: %s\n", interp_name);
    for (int first = 0; first < count && rc == 0; first += batch) {
        int n = count - first < batch ? count - first : batch;
        rc = predict_batch(&l, list, first, n, interp, top, json, x, y, ok, why, &failed);
    }
    free(x);
    free(y);
    free(ok);
    free(why);
    graft_image_list_free(list, count);
    cli_model_free(&l);
    if (rc == 0 && failed)
        rc = cli_fail("%d of %d images could not be read (each named above)", failed, count);
    return rc;
}

int cmd_evaluate(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"data", required_argument, 0, O_DATA},
                                         {"json", no_argument, 0, O_JSON},
                                         {"preprocess", required_argument, 0, O_PRE},
                                         {"int8", required_argument, 0, O_INT8},
                                         {"calibration-images", required_argument, 0, O_CALIB},
                                         {"help", no_argument, 0, O_HELP},
                                         {0, 0, 0, 0}};
    const char *model = NULL, *data = NULL, *pre = NULL, *int8_dir = NULL;
    int json = 0, o, calib = CLI_CALIBRATION_IMAGES;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case O_MODEL: model = optarg; break;
        case O_DATA: data = optarg; break;
        case O_JSON: json = 1; break;
        case O_PRE: pre = optarg; break;
        case O_INT8: int8_dir = optarg; break;
        case O_CALIB:
            o = cli_opt_int("calibration-images", optarg, 1, CLI_MAX_CALIBRATION, &calib);
            if (o) return o;
            break;
        case O_HELP:
            printf("usage: graft evaluate --model FILE|RUN_DIR --data DIR [--json]\n"
                   "                      [--int8 DIR [--calibration-images N]]\n"
                   "Loss, accuracy, the confusion matrix and per-class precision, recall and F1 on\n"
                   "DIR (one subfolder per class; DIR/validation is used when it exists), with the\n"
                   "run's (or graft .h5's) decoding, preprocessing, resizing and input size; a model\n"
                   "of other origin gets its images as Keras's flow_from_directory gives them (full\n"
                   "size, nearest). --json: one JSON object on stdout with \"confusion_matrix\"\n"
                   "(rows: true class) and \"per_class\".\n"
                   INT8_HELP);
            return 0;
        default: return cli_usage("see graft evaluate --help");
        }
    }
    if (!model || !data) return cli_usage("--model and --data are required (see graft evaluate --help)");
    if (json && cli_json_begin()) return 1;
    cli_model l;
    int rc = open_model(model, &l);
    /* Nothing here writes the weights: inference may keep its packed copies. */
    if (rc == 0) graft_model_set_weights_constant(l.m, 1);
    if (rc) {
        cli_model_free(&l);
        return rc;
    }
    run_config c;
    if (l.is_run) {
        c = l.run;
    } else {
        memset(&c, 0, sizeof c);
        snprintf(c.base, sizeof c.base, "%s", l.arch ? l.arch : "scratch");
        snprintf(c.preprocess, sizeof c.preprocess, "%s", l.arch ? "model" : "rescale");
        c.input_size = graft_layer_output_shape(graft_model_layer(l.m, 0)).dim[0];
        c.batch = 32;
        c.full_decode = 1; /* as Keras reads images for it; a run reads them as it was trained */
    }
    if (pre) snprintf(c.preprocess, sizeof c.preprocess, "%s", pre);
    char dir[CLI_PATH + 16];
    snprintf(dir, sizeof dir, "%s/validation", data);
    snprintf(c.train_dir, sizeof c.train_dir, "%.*s", (int)sizeof c.train_dir - 1, cli_is_dir(dir) ? dir : data);
    c.val_dir[0] = '\0';
    c.augment = 0;
    graft_source *src = NULL;
    if (!l.is_run) { /* the class list comes from the folder */
        c.n_classes = 0;
        c.classes = NULL;
    }
    run_config probe = c;
    if (!l.is_run) {
        graft_flow_cfg fc = {.target_size = {32, 32}, .class_mode = GRAFT_CLASS_SPARSE, .quiet = 1};
        graft_source *p = NULL;
        if (graft_flow_from_directory(c.train_dir, NULL, &fc, &p) != GRAFT_OK) {
            cli_model_free(&l);
            return cli_fail_status(GRAFT_EIO, c.train_dir);
        }
        probe.n_classes = graft_flow_num_classes(p);
        probe.classes = calloc((size_t)probe.n_classes, sizeof(char *));
        bool listed = probe.n_classes == 0 || probe.classes;
        for (int i = 0; listed && i < probe.n_classes; i++)
            listed = (probe.classes[i] = strdup(graft_flow_class_name(p, i))) != NULL;
        graft_source_free(p);
        if (!listed) {
            run_config_free(&probe);
            cli_model_free(&l);
            return cli_fail("out of memory listing the classes of %s", c.train_dir);
        }
    }
    rc = run_open_data(&probe, false, &src, NULL);
    if (rc == 0 && int8_dir) {
        graft_interpolation ci;
        if (graft_interpolation_parse(c.interpolation[0] ? c.interpolation : "nearest", &ci) != GRAFT_OK)
            rc = cli_fail("interpolation '%s' of %s is not one graft knows", c.interpolation, model);
        if (rc == 0) rc = cli_quantize(&l, int8_dir, calib, ci);
    }
    graft_shape os = graft_layer_output_shape(graft_model_output(l.m));
    int n_out = (int)graft_shape_size(&os), nc = probe.n_classes;
    if (rc == 0 && !((n_out == 1 && nc == 2) || n_out == nc))
        rc = cli_fail("the model has %d outputs but %s has %d classes", n_out, c.train_dir, nc);
    long *conf = rc == 0 ? calloc((size_t)nc * (size_t)nc, sizeof(long)) : NULL;
    double loss_sum = 0;
    long seen = 0;
    if (rc == 0 && !conf) rc = cli_fail("out of memory");
    int samples = rc == 0 ? graft_flow_samples(src) : 0;
    size_t xs = rc == 0 ? graft_shape_size(&src->x_shape) : 0;
    float *x = rc == 0 ? malloc((size_t)src->batch_size * xs * sizeof(float)) : NULL;
    float *y = rc == 0 ? malloc((size_t)src->batch_size * sizeof(float)) : NULL;
    float *pred = rc == 0 ? malloc((size_t)src->batch_size * (size_t)n_out * sizeof(float)) : NULL;
    if (rc == 0 && (!x || !y || !pred)) rc = cli_fail("out of memory");
    graft_loss_kind kind = n_out == 1 ? GRAFT_BINARY_CROSSENTROPY : GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY;
    if (rc == 0 && cli_comm) { /* mpirun: each rank takes its share of every batch */
        graft_source_book *sb = graft_source_book_of(src);
        sb->shard_rank = graft_comm_rank(cli_comm);
        sb->shard_count = graft_comm_size(cli_comm);
    }
    for (int b = 0; rc == 0 && b < src->length; b++) {
        int n;
        graft_status s = src->next(src, x, y, &n);
        if (s == GRAFT_OK) s = graft_model_predict(l.m, x, n, pred);
        if (s != GRAFT_OK) {
            rc = cli_fail_status(s, "evaluate");
            break;
        }
        loss_sum += graft_loss_value(kind, 0, pred, y, n, n_out) * n;
        seen += n;
        for (int i = 0; i < n; i++) {
            int truth = (int)y[i], guess = 0;
            if (n_out == 1) guess = pred[i] > 0.5f;
            else
                for (int k = 1; k < n_out; k++)
                    if (pred[(size_t)i * n_out + k] > pred[(size_t)i * n_out + guess]) guess = k;
            conf[truth * nc + guess]++;
        }
    }
    if (rc == 0 && cli_comm) {
        double *sum = malloc(((size_t)nc * (size_t)nc + 2) * sizeof(double));
        if (!sum) rc = cli_fail("out of memory");
        for (size_t i = 0; sum && i < (size_t)nc * (size_t)nc; i++) sum[i] = (double)conf[i];
        if (sum) sum[(size_t)nc * nc] = loss_sum, sum[(size_t)nc * nc + 1] = (double)seen;
        graft_status s = sum ? graft_comm_sum(cli_comm, sum, nc * nc + 2) : GRAFT_OK;
        if (sum && s != GRAFT_OK) rc = cli_fail_status(s, "evaluate");
        for (size_t i = 0; sum && i < (size_t)nc * (size_t)nc; i++) conf[i] = (long)sum[i];
        if (sum) loss_sum = sum[(size_t)nc * nc], seen = (long)sum[(size_t)nc * nc + 1];
        free(sum);
    }
    if (rc == 0) {
        long right = 0;
        for (int k = 0; k < nc; k++) right += conf[k * nc + k];
        double acc = seen ? (double)right / seen : 0, loss = seen ? loss_sum / seen : 0;
        FILE *f = cli_json();
        if (json) {
            fprintf(f, "{\"images\": %ld, \"loss\": %.6g, \"accuracy\": %.6g, \"classes\": [", seen, loss, acc);
            for (int t = 0; t < nc; t++) {
                fprintf(f, "%s", t ? ", " : "");
                cli_json_string(f, probe.classes[t]);
            }
            fprintf(f, "], \"confusion_matrix\": [");
            for (int t = 0; t < nc; t++) {
                fprintf(f, "%s[", t ? ", " : "");
                for (int k = 0; k < nc; k++) fprintf(f, "%s%ld", k ? ", " : "", conf[t * nc + k]);
                fprintf(f, "]");
            }
            fprintf(f, "], \"per_class\": {");
        } else {
            printf("%d images, %d classes\nloss: %.4f - accuracy: %.4f\n\nconfusion matrix (rows: true, columns: predicted)\n",
                   samples, nc, loss, acc);
            printf("%-16s", "");
            for (int k = 0; k < nc; k++) printf(" %10.10s", probe.classes[k]);
            printf("\n");
            for (int t = 0; t < nc; t++) {
                printf("%-16.16s", probe.classes[t]);
                for (int k = 0; k < nc; k++) printf(" %10ld", conf[t * nc + k]);
                printf("\n");
            }
            printf("\n%-16s %9s %9s %9s %9s\n", "class", "precision", "recall", "f1", "images");
        }
        for (int t = 0; t < nc; t++) {
            long row = 0, col = 0, tp = conf[t * nc + t];
            for (int k = 0; k < nc; k++) {
                row += conf[t * nc + k];
                col += conf[k * nc + t];
            }
            double prec = col ? (double)tp / col : NAN, rec = row ? (double)tp / row : NAN;
            double f1 = prec + rec > 0 ? 2 * prec * rec / (prec + rec) : NAN;
            if (json) {
                fprintf(f, "%s", t ? ", " : "");
                cli_json_string(f, probe.classes[t]);
                /* JSON has no NaN: a class never predicted (or absent) has null there. */
                fprintf(f, ": {");
                const char *keys[3] = {"precision", "recall", "f1"};
                double vals[3] = {prec, rec, f1};
                for (int q = 0; q < 3; q++) {
                    if (isfinite(vals[q])) fprintf(f, "\"%s\": %.6g, ", keys[q], vals[q]);
                    else fprintf(f, "\"%s\": null, ", keys[q]);
                }
                fprintf(f, "\"images\": %ld}", row);
            } else {
                printf("%-16.16s %9.4f %9.4f %9.4f %9ld\n", probe.classes[t], prec, rec, f1, row);
            }
        }
        if (json) fprintf(f, "}}\n");
    }
    free(x);
    free(y);
    free(pred);
    free(conf);
    graft_source_free(src);
    if (!l.is_run) run_config_free(&probe);
    cli_model_free(&l);
    return rc;
}

/* graft summary --base NAME: a zoo base built without weights. */
static int summary_base(const char *name, int top, const char *size, float alpha, int minimalistic)
{
    graft_zoo_cfg z = graft_zoo_default_cfg();
    z.include_top = top;
    z.alpha = alpha;
    z.minimalistic = minimalistic;
    if (size) {
        char *end;
        long n = strtol(size, &end, 10);
        if (*end || end == size || n < 1 || n > 4096)
            return cli_fail("--input-size: '%s' is not a size in pixels", size);
        z.input_shape[0] = z.input_shape[1] = (int)n;
    }
    z.skip_init = 1; /* a table needs no weight values */
    graft_model *m;
    graft_status s = graft_zoo_build(name, &z, &m);
    if (s != GRAFT_OK) return cli_fail_status(s, "--base");
    graft_model_summary(m, stdout);
    graft_model_free(m);
    return 0;
}

/* graft summary FILE.h5: the model, or, of weights without a model config
 * (save_weights, Keras Applications' *_no_top.h5), their layers, shapes and
 * the zoo base they fit. The file is read once more only when it holds
 * weights alone: a file the reader gave up on (GRAFT_H5_TIMEOUT) or crashed
 * on is not tried again. */
static int summary_h5(const char *path)
{
    graft_model *m = NULL;
    graft_status s = graft_model_load(path, &m);
    if (s == GRAFT_OK) graft_model_summary(m, stdout);
    graft_model_free(m);
    if (s == GRAFT_OK) return 0;
    if (s == GRAFT_ENOTFOUND && cli_summary_weights(path) == 0) return 0;
    return cli_fail_status(s, path);
}

int cmd_summary(int argc, char **argv)
{
    enum { S_BASE = 400, S_TOP, S_SIZE, S_ALPHA, S_MINIMAL, S_HELP };
    static const struct option opts[] = {{"base", required_argument, 0, S_BASE},
                                         {"include-top", no_argument, 0, S_TOP},
                                         {"input-size", required_argument, 0, S_SIZE},
                                         {"alpha", required_argument, 0, S_ALPHA},
                                         {"minimalistic", no_argument, 0, S_MINIMAL},
                                         {"help", no_argument, 0, S_HELP},
                                         {0, 0, 0, 0}};
    const char *base = NULL, *size = NULL;
    int top = 0, minimalistic = 0, o;
    float alpha = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == S_BASE) base = optarg;
        else if (o == S_TOP) top = 1;
        else if (o == S_SIZE) size = optarg;
        else if (o == S_MINIMAL) minimalistic = 1;
        else if (o == S_ALPHA) {
            char *end;
            alpha = strtof(optarg, &end);
            if (*end || end == optarg || !(alpha >= CLI_MIN_ALPHA && alpha <= CLI_MAX_ALPHA))
                return cli_usage("--alpha: '%s' is not a number in [%g, %g]", optarg, CLI_MIN_ALPHA,
                                 CLI_MAX_ALPHA);
        } else if (o == S_HELP) {
            printf("usage: graft summary FILE|RUN_DIR\n"
                   "       graft summary --base NAME [--include-top] [--input-size N] [--alpha A]\n"
                   "                     [--minimalistic]\n"
                   "Prints the model's layers as Keras's model.summary() does (a Keras .h5 with its\n"
                   "model config, a TF.js model.json, or a run folder), or those of a zoo base\n"
                   "(a Keras Applications name: VGG19, ResNet50V2, ...) built without weights, with\n"
                   "MobileNet's, MobileNetV2's or MobileNetV3's width --alpha and MobileNetV3's\n"
                   "--minimalistic variant; of a weights-only .h5 (save_weights, Keras Applications'\n"
                   "*_no_top.h5) its layers, weight shapes, parameters and the zoo base it fits.\n");
            return 0;
        } else
            return cli_usage("see graft summary --help");
    }
    if (base) {
        if (optind < argc) return cli_usage("--base takes no FILE ('%s')", argv[optind]);
        return summary_base(base, top, size, alpha, minimalistic);
    }
    if (top || size || alpha > 0 || minimalistic)
        return cli_usage("--include-top, --input-size, --alpha and --minimalistic go with --base");
    if (argc - optind != 1) return cli_usage("give one FILE or RUN_DIR, or --base NAME (see graft summary --help)");
    size_t len = strlen(argv[optind]);
    if (len > 3 && strcmp(argv[optind] + len - 3, ".h5") == 0 && cli_is_file(argv[optind]))
        return summary_h5(argv[optind]);
    cli_model l;
    int rc = open_model(argv[optind], &l);
    if (rc == 0) graft_model_summary(l.m, stdout);
    cli_model_free(&l);
    return rc;
}

int cmd_plot(int argc, char **argv)
{
    enum { O_LABEL = O_PRE + 1 };
    static const struct option opts[] = {{"out", required_argument, 0, O_OUT},
                                         {"label", required_argument, 0, O_LABEL},
                                         {"help", no_argument, 0, O_HELP},
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    const char **given = calloc((size_t)argc + 1, sizeof *given);
    int o, n_given = 0;
    if (!given) return cli_fail("out of memory");
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == O_OUT) out = optarg;
        else if (o == O_LABEL) given[n_given++] = optarg;
        else if (o == O_HELP) {
            printf("usage: graft plot RUN_DIR... [--label NAME]... [--out FILE.png]\n"
                   "Redraws each run's accuracy_loss.png from its history.json; with several runs\n"
                   "also their learning curves on shared axes (default: comparison.png in the first\n"
                   "run's folder), each run named by its --label in turn (default: its folder), the\n"
                   "start of each run's fine-tuning marked.\n");
            free(given);
            return 0;
        } else {
            free(given);
            return cli_usage("see graft plot --help");
        }
    }
    int n = argc - optind;
    if (n < 1 || (n_given && n_given != n)) {
        free(given);
        return n < 1 ? cli_usage("no run folder given (see graft plot --help)")
                     : cli_usage("%d --label for %d runs: give one per run", n_given, n);
    }
    graft_history *h = calloc((size_t)n, sizeof *h);
    graft_history_stage(*st)[CLI_MAX_STAGES] = calloc((size_t)n, sizeof *st);
    graft_plot_run *pr = calloc((size_t)n, sizeof *pr);
    int rc = h && st && pr ? 0 : cli_fail("out of memory"), loaded_n = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const char *dir = argv[optind + i];
        int ns = 0;
        if ((rc = run_history_load(dir, &h[i], st[i], CLI_MAX_STAGES, &ns)) != 0) break;
        loaded_n = i + 1;
        char p[CLI_PATH + 32];
        snprintf(p, sizeof p, "%s/accuracy_loss.png", dir);
        graft_stages_plot sp = {st[i], ns, NULL, NULL};
        graft_status s = h[i].n > 0 ? graft_plot_stages(&h[i], &sp, p) : GRAFT_OK;
        if (s != GRAFT_OK) rc = cli_fail_status(s, p);
        else if (h[i].n > 0) printf("%s\n", p);
        pr[i] = (graft_plot_run){n_given ? given[i] : dir, &h[i], st[i], ns};
    }
    if (rc == 0 && n > 1) {
        char p[CLI_PATH + 32];
        snprintf(p, sizeof p, "%s/comparison.png", argv[optind]);
        if (!out) out = p;
        graft_status s = graft_plot_runs(pr, n, "Accuracy of the runs", out);
        if (s != GRAFT_OK) rc = cli_fail_status(s, out);
        else printf("%s\n", out);
    }
    for (int i = 0; i < loaded_n; i++) graft_history_free(&h[i]);
    free(h);
    free(st);
    free(pr);
    free(given);
    return rc;
}
