/* graft report: runs compared in one report.html (self-contained) and
 * report.md: the runs' table, learning curves, each final model evaluated on
 * its validation data, its most confidently wrong images, and a summary. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REPORT_MAX_RUNS 64

typedef struct {
    char label[160];
    const char *dir;
    run_config c;
    graft_history h;
    graft_history_stage stages[CLI_MAX_STAGES];
    int n_stages;
    graft_param_counts params;
    long *confusion;
    graft_report_image *wrong;
    char **wrong_paths;
    int n_wrong;
} report_run;

typedef struct {
    int idx, truth, guess;
    float prob;
} miss;

static int by_confidence(const void *a, const void *b)
{
    float pa = ((const miss *)a)->prob, pb = ((const miss *)b)->prob;
    return pa < pb ? 1 : pa > pb ? -1 : ((const miss *)a)->idx - ((const miss *)b)->idx;
}

/* The run's final model over its validation folder: the confusion matrix and
 * the `keep` most confidently wrong images. */
static int evaluate_run(report_run *r, graft_model *m, int keep)
{
    run_config e = r->c; /* shares r->c's class list: not freed */
    snprintf(e.train_dir, sizeof e.train_dir, "%s", r->c.val_dir);
    e.val_dir[0] = '\0';
    e.augment = 0;
    graft_source *src = NULL;
    if (run_open_data(&e, false, &src, NULL)) return 1;
    int nc = r->c.n_classes, bs = src->batch_size, rc = 0, n_miss = 0;
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    int n_out = (int)graft_shape_size(&os);
    size_t xs = graft_shape_size(&src->x_shape);
    float *x = malloc((size_t)bs * xs * sizeof(float)), *y = malloc((size_t)bs * sizeof(float));
    float *pred = malloc((size_t)bs * (size_t)n_out * sizeof(float));
    int *idx = malloc((size_t)bs * sizeof(int));
    int samples = graft_flow_samples(src);
    miss *misses = malloc((size_t)(samples > 0 ? samples : 1) * sizeof *misses);
    r->confusion = calloc((size_t)nc * (size_t)nc, sizeof(long));
    if (!x || !y || !pred || !idx || !misses || !r->confusion) rc = cli_fail("out of memory evaluating %s", r->dir);
    if (rc == 0 && !((n_out == 1 && nc == 2) || n_out == nc))
        rc = cli_fail("%s: the model has %d outputs for %d classes", r->dir, n_out, nc);
    for (int b = 0; rc == 0 && b < src->length; b++) {
        int n;
        graft_status s = src->next(src, x, y, &n);
        if (s == GRAFT_OK) s = graft_model_predict(m, x, n, pred);
        if (s != GRAFT_OK) {
            rc = cli_fail_status(s, r->c.val_dir);
            break;
        }
        int got = graft_flow_last_indices(src, idx);
        for (int i = 0; i < n; i++) {
            int truth = (int)y[i], guess = 0;
            float prob;
            if (n_out == 1) {
                guess = pred[i] > 0.5f;
                prob = guess ? pred[i] : 1 - pred[i];
            } else {
                const float *p = pred + (size_t)i * n_out;
                for (int k = 1; k < n_out; k++)
                    if (p[k] > p[guess]) guess = k;
                prob = p[guess];
            }
            if (truth < 0 || truth >= nc) continue;
            r->confusion[truth * nc + guess]++;
            if (guess != truth && i < got && n_miss < samples)
                misses[n_miss++] = (miss){idx[i], truth, guess, prob};
        }
    }
    if (rc == 0 && n_miss > 0) {
        qsort(misses, (size_t)n_miss, sizeof *misses, by_confidence);
        int k = n_miss < keep ? n_miss : keep;
        r->wrong = calloc((size_t)k, sizeof *r->wrong);
        r->wrong_paths = calloc((size_t)k, sizeof *r->wrong_paths);
        if (!r->wrong || !r->wrong_paths) rc = cli_fail("out of memory");
        for (int i = 0; rc == 0 && i < k; i++) {
            const char *f = graft_flow_filename(src, misses[i].idx);
            size_t len = strlen(r->c.val_dir) + strlen(f ? f : "") + 2;
            if (!(r->wrong_paths[i] = malloc(len))) {
                rc = cli_fail("out of memory");
                break;
            }
            snprintf(r->wrong_paths[i], len, "%s/%s", r->c.val_dir, f ? f : "");
            r->wrong[i] = (graft_report_image){r->wrong_paths[i], misses[i].truth, misses[i].guess, misses[i].prob};
            r->n_wrong = i + 1;
        }
    }
    free(x);
    free(y);
    free(pred);
    free(idx);
    free(misses);
    graft_source_free(src);
    return rc;
}

static int load_run(report_run *r, const char *dir, const char *label, int keep)
{
    r->dir = dir;
    if (run_config_load(dir, &r->c)) return 1;
    if (run_history_load(dir, &r->h, r->stages, CLI_MAX_STAGES, &r->n_stages)) {
        graft_history_init(&r->h);
        return 1;
    }
    if (r->h.n == 0) return cli_fail("%s: its history.json holds no epoch yet", dir);
    if (label) snprintf(r->label, sizeof r->label, "%s", label);
    else if (strcmp(r->c.base, "scratch") == 0) snprintf(r->label, sizeof r->label, "from scratch");
    else snprintf(r->label, sizeof r->label, "%s + %s", r->c.base, r->c.head);
    run_config built = r->c;
    built.weights[0] = '\0';
    graft_model *m = NULL;
    if (run_build_model(&built, &m)) return 1;
    char p[CLI_PATH + 32];
    snprintf(p, sizeof p, "%s/model.h5", dir);
    if (!cli_is_file(p)) snprintf(p, sizeof p, "%s/model.weights.h5", dir);
    graft_status s = graft_model_load_weights(m, p, &(graft_load_opts){.by_name = 1});
    int rc = s == GRAFT_OK ? 0 : cli_fail_status(s, p);
    if (rc == 0) {
        run_set_trainable(&r->c, m);
        r->params = graft_model_count_params(m);
        if (r->c.val_dir[0]) {
            fprintf(stderr, "Evaluating %s on %s\n", r->label, r->c.val_dir);
            rc = evaluate_run(r, m, keep);
        }
    }
    graft_model_free(m);
    return rc;
}

static void free_run(report_run *r)
{
    for (int i = 0; i < r->n_wrong; i++) free(r->wrong_paths[i]);
    free(r->wrong_paths);
    free(r->wrong);
    free(r->confusion);
    graft_history_free(&r->h);
    run_config_free(&r->c);
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char b[CLI_PATH];
    if (snprintf(b, sizeof b, "%s", path) >= (int)sizeof b) return cli_fail("%s: path too long", path);
    for (char *p = b + 1;; p++) {
        if (*p && *p != '/') continue;
        char end = *p;
        *p = '\0';
        if (mkdir(b, 0755) != 0 && errno != EEXIST) return cli_fail("cannot create %s: %s", b, strerror(errno));
        if (!end) break;
        *p = '/';
    }
    return cli_is_dir(path) ? 0 : cli_fail("%s is not a folder", path);
}

static int report(const char *const *dirs, const char *const *labels, int n, const char *out,
                  const char *title, int keep)
{
    report_run *runs = calloc((size_t)n, sizeof *runs);
    graft_report_run *rr = calloc((size_t)n, sizeof *rr);
    int rc = runs && rr ? 0 : cli_fail("out of memory");
    for (int i = 0; i < n && rc == 0; i++) {
        graft_history_init(&runs[i].h);
        rc = load_run(&runs[i], dirs[i], labels ? labels[i] : NULL, keep);
    }
    /* Two runs with the same default label are told apart by number. */
    for (int i = 0; rc == 0 && i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(runs[i].label, runs[j].label) == 0) {
                size_t l = strlen(runs[j].label);
                snprintf(runs[j].label + l, sizeof runs[j].label - l, " (%d)", j + 1);
            }
    if (rc == 0) rc = make_dirs(out);
    for (int i = 0; rc == 0 && i < n; i++) {
        report_run *r = &runs[i];
        bool scratch = strcmp(r->c.base, "scratch") == 0;
        rr[i] = (graft_report_run){.label = r->label,
                                   .dir = r->dir,
                                   .base = r->c.base,
                                   .head = scratch ? NULL : r->c.head,
                                   .input_size = r->c.input_size,
                                   .h = &r->h,
                                   .stages = r->stages,
                                   .n_stages = r->n_stages,
                                   .params_total = r->params.total,
                                   .params_trainable = r->params.trainable,
                                   .n_classes = r->c.n_classes,
                                   .classes = (const char *const *)r->c.classes,
                                   .confusion = r->confusion,
                                   .wrong = r->wrong,
                                   .n_wrong = r->n_wrong};
    }
    if (rc == 0) {
        graft_status s = graft_report_write(rr, n, title, out);
        if (s != GRAFT_OK) rc = cli_fail_status(s, out);
        else printf("%s/report.html\n%s/report.md\n", out, out);
    }
    for (int i = 0; runs && i < n; i++) free_run(&runs[i]);
    free(runs);
    free(rr);
    return rc;
}

int cli_report(const char *const *run_dirs, int n, const char *out_dir, const char *title)
{
    return report(run_dirs, NULL, n, out_dir, title && *title ? title : NULL, 8);
}

int cmd_report(int argc, char **argv)
{
    enum { R_OUT = 500, R_TITLE, R_LABEL, R_WRONG, R_HELP };
    static const struct option opts[] = {{"out", required_argument, 0, R_OUT},
                                         {"title", required_argument, 0, R_TITLE},
                                         {"label", required_argument, 0, R_LABEL},
                                         {"wrong", required_argument, 0, R_WRONG},
                                         {"help", no_argument, 0, R_HELP},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *title = NULL, *labels[REPORT_MAX_RUNS];
    int n_labels = 0, keep = 8, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case R_OUT: out = optarg; break;
        case R_TITLE: title = optarg; break;
        case R_LABEL:
            if (n_labels == REPORT_MAX_RUNS) return cli_usage("--label: more than %d", REPORT_MAX_RUNS);
            labels[n_labels++] = optarg;
            break;
        case R_WRONG: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > 100)
                return cli_usage("--wrong: '%s' is not a whole number in [0, 100]", optarg);
            keep = (int)v;
            break;
        }
        case R_HELP:
            printf("usage: graft report RUN_DIR... --out REPORT_DIR [--title T] [--label NAME]...\n"
                   "                    [--wrong K]\n"
                   "Compares runs in REPORT_DIR/report.html (self-contained: its figures are embedded,\n"
                   "nothing is fetched to view it) and report.md (with the figures beside it):\n"
                   "a table of the runs (base, head, input size, stages, best and last val_accuracy\n"
                   "and val_loss, the epoch of the best, the train - validation accuracy gap, time\n"
                   "per stage, trainable/total parameters), their learning curves on shared axes,\n"
                   "each final model's confusion matrix and per-class precision, recall and F1 on\n"
                   "its validation folder, its K most confidently wrong images (default 8), and a\n"
                   "summary computed from these numbers.\n"
                   "  --label NAME   the name of each run in turn (default: BASE + HEAD)\n");
            return 0;
        default: return cli_usage("see graft report --help");
        }
    }
    int n = argc - optind;
    if (n < 1) return cli_usage("no run folder given (see graft report --help)");
    if (!out) return cli_usage("--out REPORT_DIR is required (see graft report --help)");
    if (n > REPORT_MAX_RUNS) return cli_usage("at most %d runs", REPORT_MAX_RUNS);
    if (n_labels && n_labels != n) return cli_usage("%d --label for %d runs: give one per run", n_labels, n);
    return report((const char *const *)argv + optind, n_labels ? labels : NULL, n, out, title, keep);
}
