/* graft train, finetune, resume and lesson: stages of a run folder. */
#include "cli.h"
#include "train/source.h" /* the sources' uids, shared by the runs of a grid */

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_STAGES CLI_MAX_STAGES

typedef struct {
    graft_history h;
    graft_history_stage stages[MAX_STAGES];
    int n_stages;
    double seconds; /* of the stage just run */
    /* graft lesson: the data sources and a feature store kept from one stage
     * to the next (the fine-tuning's features come from the frozen stage's
     * passes), and the layer that the next stage unfreezes from. NULL: each
     * stage opens its own sources and keeps nothing. */
    graft_source *train, *val;
    graft_feature_store *store;
    int next_unfreeze; /* base layers the next stage unfreezes; 0: none */
    /* graft grid: each run opens its own sources (so that it resumes alone),
     * under the uids of the first run on the same images, preprocessing and
     * size, so that the store finds their features again. */
    cli_share *share;
} run_state;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void path_in(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

static int load_run_history(const char *run_dir, run_state *rs)
{
    return run_history_load(run_dir, &rs->h, rs->stages, MAX_STAGES, &rs->n_stages);
}

/* accuracy_loss.png: accuracy and loss by epoch; a fine-tuned run's has the
 * lesson's titles and a line where its fine-tuning starts. */
static graft_status plot_run(const run_state *rs, const char *png_path)
{
    int ft = -1;
    for (int i = 0; i < rs->n_stages; i++)
        if (strcmp(rs->stages[i].name, "fine-tune") == 0) ft = rs->stages[i].first_epoch;
    if (ft < 0) return graft_plot_stages(&rs->h, NULL, png_path);
    /* The first stage draws no line: INT_MIN lets the fine-tuning start at
     * any epoch of the history, its first included. */
    const graft_history_stage st[2] = {{"frozen", INT_MIN}, {"fine-tuning", ft}};
    const graft_stages_plot cfg = {st, 2, "Accuracy before and after fine-tuning",
                                   "Loss before and after fine-tuning"};
    return graft_plot_stages(&rs->h, &cfg, png_path);
}

/* history.json, log.csv, the figure and the model: everything a finished stage leaves. */
static int save_outputs(const char *run_dir, const run_config *c, graft_model *m, const run_state *rs)
{
    char p[CLI_PATH + 32];
    graft_status s;
    if (!cli_writes()) return 0;
    path_in(p, sizeof p, run_dir, "history.json");
    if ((s = graft_history_save_json(p, &rs->h, rs->stages, rs->n_stages)) != GRAFT_OK)
        return cli_fail_status(s, p);
    path_in(p, sizeof p, run_dir, "log.csv");
    if ((s = graft_history_save_csv(p, &rs->h)) != GRAFT_OK) return cli_fail_status(s, p);
    path_in(p, sizeof p, run_dir, "accuracy_loss.png");
    if (rs->h.n > 0 && (s = plot_run(rs, p)) != GRAFT_OK)
        return cli_fail_status(s, p);
    path_in(p, sizeof p, run_dir, "model.h5");
    int saved = run_save_model(m, c, p);
    if (saved) {
        /* A layer whose Keras config graft cannot write: keep the weights at least.
         * Any other failure (a full disk) is the run's failure. */
        if (saved != 2) return 1;
        fprintf(stderr, "graft: warning: %s: %s; saving the weights only\n", p, graft_last_error());
        path_in(p, sizeof p, run_dir, "model.weights.h5");
        if ((s = graft_model_save_weights(m, p)) != GRAFT_OK) return cli_fail_status(s, p);
    }
    return 0;
}

static void print_json_metrics(const graft_history *h)
{
    FILE *f = cli_json();
    if (h->n == 0) {
        fprintf(f, "{}\n");
        return;
    }
    int i = h->n - 1;
    fprintf(f, "{\"loss\": %.6g, \"accuracy\": %.6g", h->loss[i], h->accuracy[i]);
    if (!isnan(h->val_loss[i]))
        fprintf(f, ", \"val_loss\": %.6g, \"val_accuracy\": %.6g", h->val_loss[i], h->val_accuracy[i]);
    fprintf(f, ", \"epochs\": %d}\n", h->n);
}

/*
 * Runs (or resumes) the stage named in c->stage up to c->target_epochs on a
 * built model: trainability, compile, data, fit with a checkpoint after every
 * epoch, outputs. Returns the exit code (130 when interrupted).
 */
static int run_stage(const char *run_dir, run_config *c, graft_model *m, run_state *rs,
                     int verbose, bool resume)
{
    graft_source *train = NULL, *val = NULL;
    graft_callback ckpt = {0};
    char ck[CLI_PATH + 32];
    path_in(ck, sizeof ck, run_dir, "checkpoint.graft");
    run_set_trainable(c, m);
    graft_compile_cfg cc = {.optimizer = graft_adam(c->lr), .loss = c->n_classes > 2
                                                                        ? GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY
                                                                        : GRAFT_BINARY_CROSSENTROPY,
                            .seed = c->seed};
    graft_status s = graft_model_compile(m, &cc);
    if (s != GRAFT_OK) return cli_fail_status(s, "compile");
    int rc = 0;
    bool own_data = !rs->train;
    if (own_data) rc = run_open_data(c, true, &train, &val);
    else train = rs->train, val = rs->val;
    if (rc) return rc;
    if (own_data && rs->share) {
        cli_share *sh = rs->share;
        graft_source_book *tb = graft_source_book_of(train);
        graft_source_book *vb = val ? graft_source_book_of(val) : NULL;
        if (sh->train_uid) tb->uid = sh->train_uid;
        else sh->train_uid = tb->uid;
        if (vb && sh->val_uid) vb->uid = sh->val_uid;
        else if (vb) sh->val_uid = vb->uid;
    }
    /* Every rank has read the run folder before rank 0 writes to it. */
    if ((s = graft_comm_barrier(cli_comm)) != GRAFT_OK) {
        rc = cli_fail_status(s, "mpi");
        goto done;
    }
    /* Written once the data opened, so that a bad folder leaves an existing
     * run's config alone. */
    if (run_config_save(run_dir, c)) {
        rc = 1;
        goto done;
    }
    /* From here a Ctrl-C asks the stage to stop after its first batch with
     * the resume message: the stage's first checkpoint may already be on disk. */
    cli_watch_sigint(m);
    int first_epoch = rs->h.n;
    if (resume) {
        graft_train_state st;
        if ((s = graft_train_state_load(m, ck, &rs->h, &st)) != GRAFT_OK) {
            rc = cli_fail_status(s, ck);
            goto done;
        }
        if ((rc = run_check_state(ck, c, &st, train, val)) != 0) goto done;
        if ((s = graft_source_skip(train, st.train_batches)) != GRAFT_OK ||
            (val && (s = graft_source_skip(val, st.val_batches)) != GRAFT_OK)) {
            rc = cli_fail_status(s, ck);
            goto done;
        }
        first_epoch = st.epoch;
        char mp[CLI_PATH + 32], wp[CLI_PATH + 32];
        path_in(mp, sizeof mp, run_dir, "model.h5");
        path_in(wp, sizeof wp, run_dir, "model.weights.h5");
        if (first_epoch >= c->target_epochs && (cli_is_file(mp) || cli_is_file(wp))) {
            printf("%s: nothing to resume: its stage '%s' finished all %d epochs\n", run_dir, c->stage,
                   c->target_epochs);
            goto done;
        }
        printf("Resuming stage '%s' at epoch %d of %d in %s\n", c->stage, first_epoch + 1, c->target_epochs,
               run_dir);
    } else {
        if (rs->n_stages < MAX_STAGES) {
            snprintf(rs->stages[rs->n_stages].name, GRAFT_STAGE_NAME_MAX, "%s", c->stage);
            rs->stages[rs->n_stages++].first_epoch = first_epoch;
        }
        /* The stage's starting point, so that a resume before its first epoch
         * ends starts this stage over (not from the previous stage's
         * checkpoint, with that stage's learning rate and optimizer state). */
        graft_train_state st0 = {first_epoch, graft_source_drawn(train),
                                 val ? graft_source_drawn(val) : 0};
        if (cli_writes() && (s = graft_train_state_save(m, &rs->h, &st0, ck)) != GRAFT_OK) {
            rc = cli_fail_status(s, ck);
            goto done;
        }
        /* history.json names the stages for a resume after a crash too. */
        char hp[CLI_PATH + 32];
        path_in(hp, sizeof hp, run_dir, "history.json");
        if (cli_writes() && (s = graft_history_save_json(hp, &rs->h, rs->stages, rs->n_stages)) != GRAFT_OK) {
            rc = cli_fail_status(s, hp);
            goto done;
        }
    }
    if ((s = graft_train_state_callback(ck, train, val, &rs->h, &ckpt)) != GRAFT_OK) {
        rc = cli_fail_status(s, "checkpoint");
        goto done;
    }
    graft_fit_cfg fc = {.epochs = c->target_epochs,
                        .initial_epoch = first_epoch,
                        .steps_per_epoch = c->steps_per_epoch,
                        .validation_data = val,
                        .validation_steps = c->validation_steps,
                        .verbose = verbose,
                        .callbacks = &ckpt,
                        .n_callbacks = 1,
                        .no_feature_cache = c->no_cache,
                        .feature_store = rs->store ? rs->store : rs->share ? rs->share->store : NULL,
                        .comm = cli_comm,
                        .sync_batch_norm = graft_env(GRAFT_ENV_SYNC_BN) &&
                                           strcmp(graft_env(GRAFT_ENV_SYNC_BN), "1") == 0};
    int nb = c->n_base_layers, from = nb - rs->next_unfreeze;
    if (fc.feature_store && rs->next_unfreeze > 0 && from > 0)
        fc.keep_features_below = graft_layer_name(graft_model_layer(m, from));
    double t0 = now();
    s = graft_model_fit(m, train, &fc, &rs->h);
    rs->seconds = now() - t0;
    cli_watch_sigint(NULL);
    if (s == GRAFT_EINTERRUPTED) {
        /* The checkpoint holds the last finished epoch (or the stage's start);
         * the partial epoch is dropped. */
        fprintf(stderr,
                "\ngraft: interrupted (%s). The run is saved up to its last finished epoch "
                "in %s;\ncontinue with:  graft resume %s\n",
                graft_last_error(), ck, run_dir);
        char p[CLI_PATH + 32];
        path_in(p, sizeof p, run_dir, "history.json");
        if (cli_writes()) graft_history_save_json(p, &rs->h, rs->stages, rs->n_stages);
        rc = 130;
        goto done;
    }
    if (s == GRAFT_ENAN) {
        if (rs->h.n > 0)
            rc = cli_fail("training: %s.\nThe last good epoch is kept in %s", graft_last_error(), ck);
        else
            rc = cli_fail("training: %s", graft_last_error());
        goto done;
    }
    if (s != GRAFT_OK) {
        rc = cli_fail_status(s, "training");
        goto done;
    }
    rc = save_outputs(run_dir, c, m, rs);
done:
    cli_watch_sigint(NULL);
    graft_callback_free(&ckpt);
    if (own_data) {
        graft_source_free(train);
        graft_source_free(val);
    }
    return rc;
}

/* mkdir -p; *created gets the topmost folder made here ("" when none). */
static int make_dir(const char *path, char *created, size_t cap)
{
    char buf[CLI_PATH];
    snprintf(buf, sizeof buf, "%s", path);
    created[0] = '\0';
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/') continue;
        char end = *p;
        *p = '\0';
        if (mkdir(buf, 0755) == 0) {
            if (!created[0]) snprintf(created, cap, "%s", buf);
        } else if (errno != EEXIST) {
            return cli_fail("cannot create %s: %s", buf, strerror(errno));
        }
        if (!end) break;
        *p = '/';
    }
    if (access(buf, W_OK) != 0) return cli_fail("cannot write into %s: %s", buf, strerror(errno));
    return 0;
}

/* The files a run writes (the lock last); bit i of a mask stands for ours[i]. */
static const char *const ours[] = {"config.json", "history.json", "log.csv", "accuracy_loss.png",
                                   "model.h5", "model.weights.h5", "model_frozen.h5",
                                   "checkpoint.graft", ".lock"};
#define N_OURS (sizeof ours / sizeof *ours)

static unsigned existing_files(const char *dir)
{
    unsigned had = 0;
    char p[CLI_PATH + 32];
    for (size_t i = 0; i < N_OURS; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, ours[i]);
        if (access(p, F_OK) == 0) had |= 1u << i;
    }
    return had;
}

/* Undoes a train that failed before its first epoch ended: the files it
 * wrote (those not in `had`), then the folders make_dir created, up to
 * `created` (none when ""). A folder holding anything else stays (rmdir
 * fails on it). */
static void undo_new_run(const char *out, const char *created, unsigned had)
{
    char p[CLI_PATH + 32];
    for (size_t i = 0; i < N_OURS; i++) {
        snprintf(p, sizeof p, "%s/%s", out, ours[i]);
        if (!(had & 1u << i)) unlink(p);
    }
    if (!created[0]) return;
    snprintf(p, sizeof p, "%s", out);
    for (size_t n = strlen(p); n > 1 && p[n - 1] == '/'; n--) p[n - 1] = '\0';
    size_t top = strlen(created);
    while (strlen(p) >= top && rmdir(p) == 0) {
        char *slash = strrchr(p, '/');
        if (!slash || strlen(p) == top) break;
        *slash = '\0';
    }
}

/* Fills the class list from the training folder (sorted subfolders, as Keras). */
static int discover_classes(run_config *c)
{
    graft_source *probe = NULL;
    graft_flow_cfg fc = {.target_size = {32, 32}, .class_mode = GRAFT_CLASS_SPARSE, .quiet = 1};
    graft_status s = graft_flow_from_directory(c->train_dir, NULL, &fc, &probe);
    if (s != GRAFT_OK) return cli_fail_status(s, c->train_dir);
    int n = graft_flow_num_classes(probe);
    c->classes = calloc((size_t)n, sizeof(char *));
    for (int i = 0; c->classes && i < n; i++) {
        c->classes[i] = strdup(graft_flow_class_name(probe, i));
        if (!c->classes[i]) break;
        c->n_classes = i + 1;
    }
    graft_source_free(probe);
    if (c->n_classes != n) return cli_fail("out of memory listing classes");
    if (n < 2) return cli_fail("%s has %d class folder(s); training needs at least 2", c->train_dir, n);
    return 0;
}

static void usage_train(FILE *f)
{
    fprintf(f,
            "usage: graft train --data DIR [--validation DIR] --base BASE --out RUN_DIR [options]\n"
            "Trains a new head on a frozen pretrained base (or the lesson's CNN from scratch).\n"
            "  --data DIR            one subfolder per class; DIR/train and DIR/validation are used\n"
            "                        when they exist\n"
            "  --validation DIR      validation images (one subfolder per class)\n"
            "  --base NAME           a Keras Applications base (MobileNetV2, ResNet50V2, any case) or scratch\n"
            "  --weights FILE|imagenet  base weights (.h5 or TF.js model.json; default imagenet)\n"
            "  --alpha A             MobileNet, MobileNetV2 or MobileNetV3 width (default: that of\n"
            "                        the weights found; MobileNetV3's ImageNet files: 0.75 and 1)\n"
            "  --minimalistic        MobileNetV3 without squeeze-excite, hard-swish and 5x5\n"
            "                        kernels (ImageNet file: alpha 1 only)\n"
            "  --input-size N        square input size (default 150)\n"
            "  --head NAME           dense1024 (default): GAP->Dense(1024,relu)->out; dropout:\n"
            "                        GAP->Dropout(0.5)->out; dense1024-dropout:\n"
            "                        GAP->Dropout(0.5)->Dense(1024,relu)->out\n"
            "  --epochs N            (default 5)      --steps-per-epoch N (default: one pass)\n"
            "  --validation-steps N  (default: one pass)\n"
            "  --batch N (default 32)  --lr X (default 1e-3, Adam)  --seed S (default 1)\n"
            "  --augment             rotation 40, shifts 0.2, shear 0.2, zoom 0.2, horizontal flip\n"
            "  --preprocess model|rescale  the base's preprocess_input (default) or x/255 (the\n"
            "                        lesson's ImageDataGenerator(rescale=1./255))\n"
            "  --interpolation nearest|bilinear|area  resizing (default nearest, as Keras)\n"
            "  --no-cache            recompute the frozen base every epoch (Keras's way)\n"
            "  --verbose 0|1|2       (default 2: one line per epoch)\n"
            "  --json                the final metrics as JSON on stdout (everything else on stderr)\n"
            "  --force               train into RUN_DIR even though it holds a run (replacing it)\n");
}

enum {
    OPT_DATA = 256, OPT_VAL, OPT_BASE, OPT_WEIGHTS, OPT_ALPHA, OPT_SIZE, OPT_HEAD, OPT_EPOCHS,
    OPT_STEPS, OPT_VSTEPS, OPT_BATCH, OPT_LR, OPT_AUG, OPT_SEED, OPT_OUT, OPT_JSON, OPT_PRE,
    OPT_INTERP, OPT_NOCACHE, OPT_VERBOSE, OPT_UNFREEZE, OPT_HELP, OPT_INSECURE, OPT_FORCE,
    OPT_HOMEWORK, OPT_MINIMAL
};

static const struct option train_opts[] = {
    {"data", required_argument, 0, OPT_DATA},       {"validation", required_argument, 0, OPT_VAL},
    {"base", required_argument, 0, OPT_BASE},       {"weights", required_argument, 0, OPT_WEIGHTS},
    {"alpha", required_argument, 0, OPT_ALPHA},     {"input-size", required_argument, 0, OPT_SIZE},
    {"head", required_argument, 0, OPT_HEAD},       {"epochs", required_argument, 0, OPT_EPOCHS},
    {"steps-per-epoch", required_argument, 0, OPT_STEPS},
    {"validation-steps", required_argument, 0, OPT_VSTEPS},
    {"batch", required_argument, 0, OPT_BATCH},     {"lr", required_argument, 0, OPT_LR},
    {"augment", no_argument, 0, OPT_AUG},           {"seed", required_argument, 0, OPT_SEED},
    {"out", required_argument, 0, OPT_OUT},         {"json", no_argument, 0, OPT_JSON},
    {"preprocess", required_argument, 0, OPT_PRE},  {"interpolation", required_argument, 0, OPT_INTERP},
    {"no-cache", no_argument, 0, OPT_NOCACHE},      {"verbose", required_argument, 0, OPT_VERBOSE},
    {"unfreeze", required_argument, 0, OPT_UNFREEZE}, {"help", no_argument, 0, OPT_HELP},
    {"force", no_argument, 0, OPT_FORCE},           {"minimalistic", no_argument, 0, OPT_MINIMAL},
    {0, 0, 0, 0}};

/* Strict number parsing: the whole argument must be a number in range. */
static int parse_int(const char *opt, const char *v, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi)
        return cli_usage("--%s: '%s' is not a whole number in [%d, %d]", opt, v, lo, hi);
    *out = (int)x;
    return 0;
}

static int parse_float(const char *opt, const char *v, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (errno || *end || end == v || !(x >= lo && x <= hi))
        return cli_usage("--%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi);
    *out = x;
    return 0;
}

typedef struct {
    const char *data, *val, *weights, *out;
    int epochs, verbose, json, force;
} train_args;

void cli_train_defaults(run_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->head, sizeof c->head, "dense1024");
    snprintf(c->preprocess, sizeof c->preprocess, "model");
    snprintf(c->interpolation, sizeof c->interpolation, "nearest");
    c->input_size = 150;
    c->batch = 32;
    c->lr = 1e-3f;
    c->seed = 1;
}

static int parse_train(int argc, char **argv, run_config *c, train_args *a)
{
    cli_train_defaults(c);
    memset(a, 0, sizeof *a);
    a->epochs = 5;
    a->verbose = 2;
    optind = 1;
    int o, rc = 0;
    while (rc == 0 && (o = getopt_long(argc, argv, "", train_opts, NULL)) != -1) {
        switch (o) {
        case OPT_DATA: a->data = optarg; break;
        case OPT_VAL: a->val = optarg; break;
        case OPT_BASE: snprintf(c->base, sizeof c->base, "%s", optarg); break;
        case OPT_WEIGHTS: a->weights = optarg; break;
        case OPT_ALPHA: rc = parse_float("alpha", optarg, CLI_MIN_ALPHA, CLI_MAX_ALPHA, &c->alpha); break;
        case OPT_SIZE: rc = parse_int("input-size", optarg, CLI_MIN_INPUT, CLI_MAX_INPUT, &c->input_size); break;
        case OPT_HEAD: snprintf(c->head, sizeof c->head, "%s", optarg); break;
        case OPT_EPOCHS: rc = parse_int("epochs", optarg, 1, CLI_MAX_EPOCHS, &a->epochs); break;
        case OPT_STEPS: rc = parse_int("steps-per-epoch", optarg, 1, CLI_MAX_STEPS, &c->steps_per_epoch); break;
        case OPT_VSTEPS: rc = parse_int("validation-steps", optarg, 1, CLI_MAX_STEPS, &c->validation_steps); break;
        case OPT_BATCH: rc = parse_int("batch", optarg, 1, CLI_MAX_BATCH, &c->batch); break;
        case OPT_LR: rc = parse_float("lr", optarg, 0, CLI_MAX_LR, &c->lr); break;
        case OPT_AUG: c->augment = 1; break;
        case OPT_MINIMAL: c->minimalistic = 1; break;
        case OPT_SEED: {
            int s;
            rc = parse_int("seed", optarg, 0, CLI_MAX_SEED, &s);
            if (rc == 0) c->seed = (unsigned long long)s;
            break;
        }
        case OPT_OUT: a->out = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_FORCE: a->force = 1; break;
        case OPT_PRE:
            if (strcmp(optarg, "model") != 0 && strcmp(optarg, "rescale") != 0)
                rc = cli_usage("--preprocess: '%s' is not model or rescale", optarg);
            snprintf(c->preprocess, sizeof c->preprocess, "%s", optarg);
            break;
        case OPT_INTERP: snprintf(c->interpolation, sizeof c->interpolation, "%s", optarg); break;
        case OPT_NOCACHE: c->no_cache = 1; break;
        case OPT_VERBOSE: rc = parse_int("verbose", optarg, 0, 2, &a->verbose); break;
        case OPT_HELP: usage_train(stdout); return -1;
        default: usage_train(stderr); return 2;
        }
    }
    if (rc) return rc;
    if (optind < argc) return cli_usage("unexpected argument '%s' (see graft train --help)", argv[optind]);
    return 0;
}

/* Resolves the data folders and the base's weights into the config. */
static int resolve_train(run_config *c, const train_args *a)
{
    if (!a->data) return cli_usage("--data DIR is required (see graft train --help)");
    if (!c->base[0]) return cli_usage("--base is required: a Keras Applications name (MobileNetV2, ResNet50V2, ...) or scratch");
    if (!run_known_base(c->base))
        return cli_usage("unknown base '%s' (a Keras Applications name such as MobileNetV2 or EfficientNetB0, or scratch; graft models lists them)", c->base);
    if (graft_zoo_find(c->base)) snprintf(c->base, sizeof c->base, "%s", graft_zoo_find(c->base)->name);
    if (!run_known_head(c->head)) return cli_usage("unknown head '%s' (" RUN_HEADS ")", c->head);
    if (!cli_is_dir(a->data)) return cli_fail("data folder %s does not exist", a->data);
    char t[CLI_PATH + 16];
    snprintf(t, sizeof t, "%s/train", a->data);
    snprintf(c->train_dir, sizeof c->train_dir, "%.*s", (int)sizeof c->train_dir - 1, cli_is_dir(t) ? t : a->data);
    snprintf(t, sizeof t, "%s/validation", a->data);
    if (a->val) {
        if (!cli_is_dir(a->val)) return cli_fail("validation folder %s does not exist", a->val);
        snprintf(c->val_dir, sizeof c->val_dir, "%s", a->val);
    } else if (cli_is_dir(t)) {
        snprintf(c->val_dir, sizeof c->val_dir, "%.*s", (int)sizeof c->val_dir - 1, t);
    }
    const graft_zoo_arch *za = graft_zoo_find(c->base);
    if (c->alpha > 0 && za && !run_base_has_alpha(c->base))
        return cli_usage("--alpha: %s has no width; only MobileNet, MobileNetV2 and MobileNetV3 take one",
                         za->keras_name);
    if (c->minimalistic && !run_base_has_minimalistic(c->base))
        return cli_usage("--minimalistic: only MobileNetV3Small and MobileNetV3Large have that variant, "
                         "not %s", za ? za->keras_name : c->base);
    if (strcmp(c->base, "scratch") == 0) {
        snprintf(c->preprocess, sizeof c->preprocess, "rescale");
        c->alpha = 0;
    } else if (!a->weights || strcmp(a->weights, "none") != 0) {
        bool width = run_base_has_alpha(c->base), v3 = run_base_has_minimalistic(c->base);
        /* A file's width (and MobileNetV3's variant) is read from its
         * weights, as the search reads it from the file name. */
        char arch[64];
        float fa;
        int fm;
        if (width && a->weights && strcmp(a->weights, "imagenet") != 0 && cli_is_file(a->weights) &&
            cli_match_weights(a->weights, c->base, arch, sizeof arch, &fa, &fm) == 0) {
            char ga[32] = "", given[64], fits[64];
            if (c->alpha > 0) snprintf(ga, sizeof ga, " --alpha %g", c->alpha);
            snprintf(given, sizeof given, "%s%s", ga, c->minimalistic ? " --minimalistic" : "");
            run_width_flags(c->base, fa, fm, fits, sizeof fits);
            if ((c->alpha != 0 && c->alpha != fa) || (c->minimalistic && !fm))
                return cli_fail("the weights %s do not fit %s%s: they fit %s%s; pass%s%s (or leave "
                                "these flags out)",
                                a->weights, c->base, given, c->base, fits, fits,
                                c->minimalistic && !fm ? " without --minimalistic" : "");
            c->alpha = fa;
            c->minimalistic = fm;
        }
        /* Keras's refusal for weights="imagenet": its MobileNetV3 files are
         * alpha 0.75 and 1, minimalistic at 1 only. */
        const char *env = graft_env(GRAFT_ENV_WEIGHTS);
        bool official = (!a->weights || strcmp(a->weights, "imagenet") == 0) && !(env && *env);
        float want = c->alpha > 0 ? c->alpha : 1.0f;
        if (v3 && za && official && !(want == 1.0f || (want == 0.75f && !c->minimalistic)))
            return cli_usage("%s has ImageNet weights for --alpha 0.75 and 1 (with --minimalistic: 1 "
                            "only), not --alpha %g%s; pass --weights none (random) or --weights FILE",
                            za->keras_name, want, c->minimalistic ? " --minimalistic" : "");
        float alpha = c->alpha;
        if (cli_find_weights(c->base, &alpha, c->minimalistic, c->input_size, a->weights, c->weights,
                             sizeof c->weights))
            return 1;
        if (c->alpha == 0 && width) c->alpha = alpha > 0 ? alpha : 1.0f;
    } else if (run_base_has_alpha(c->base) && c->alpha == 0) {
        c->alpha = 1.0f; /* random weights at Keras's default width, recorded */
    }
    return discover_classes(c);
}

/* The base's layer count: the model built without head. */
static int count_base_layers(run_config *c)
{
    if (strcmp(c->base, "scratch") == 0) {
        c->n_base_layers = 0;
        return 0;
    }
    graft_zoo_cfg z;
    run_base_cfg(c, &z);
    graft_model *b;
    graft_status s = graft_zoo_build(c->base, &z, &b);
    if (s != GRAFT_OK) return cli_fail_status(s, "building the base");
    c->n_base_layers = graft_model_num_layers(b);
    graft_model_free(b);
    return 0;
}

static int train_run(const char *cmd, run_config *c, const train_args *a, const char *out,
                     run_state *rs)
{
    if (count_base_layers(c)) return 1;
    char created[CLI_PATH];
    if (make_dir(out, created, sizeof created)) {
        if (created[0]) undo_new_run(out, created, 0);
        return 1;
    }
    bool new_lock;
    int lock = run_lock(cmd, out, &new_lock);
    if (lock < 0) return 1; /* another graft's folder now, even if made here */
    char cj[CLI_PATH + 32];
    path_in(cj, sizeof cj, out, "config.json");
    if (!a->force && access(cj, F_OK) == 0) {
        if (new_lock) {
            path_in(cj, sizeof cj, out, ".lock");
            unlink(cj);
        }
        run_unlock(lock);
        return cli_fail("%s already holds a run (%s/config.json); pass --force to train over it, or "
                        "choose another --out", out, out);
    }
    unsigned had = existing_files(out) & ~(new_lock ? 1u << (N_OURS - 1) : 0);
    if (a->force) { /* what the run replaced leaves nothing of its own behind */
        char p[CLI_PATH + 32];
        for (const char *f = "model_frozen.h5\0model.weights.h5\0"; *f; f += strlen(f) + 1) {
            path_in(p, sizeof p, out, f);
            unlink(p);
        }
    }
    graft_history_init(&rs->h);
    graft_model *m;
    int rc = run_build_model(c, &m);
    if (rc) goto done;
    snprintf(c->stage, sizeof c->stage, "%s", strcmp(c->base, "scratch") == 0 ? "scratch" : "frozen");
    c->target_epochs = a->epochs;
    if (a->verbose) {
        graft_param_counts pc;
        run_set_trainable(c, m);
        pc = graft_model_count_params(m);
        printf("Model: %s base%s, %d layers, %zu params (%zu trainable)\n", c->base,
               strcmp(c->base, "scratch") ? " + new head" : "", graft_model_num_layers(m), pc.total,
               pc.trainable);
        if (c->weights[0]) printf("Base weights: %s\n", c->weights);
    }
    rc = run_stage(out, c, m, rs, a->verbose, false);
    graft_model_free(m);
done:
    /* Nothing worth keeping before an epoch ended; an interrupted run is kept
     * for the `graft resume` its message suggests. */
    if (rc && rc != 130 && rs->h.n == 0 && cli_writes()) undo_new_run(out, created, had);
    run_unlock(lock);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    run_config c;
    train_args a;
    int rc = parse_train(argc, argv, &c, &a);
    if (rc) return rc < 0 ? 0 : rc;
    if (!a.out) return cli_usage("--out RUN_DIR is required (see graft train --help)");
    if (a.json && (rc = cli_json_begin()) != 0) return rc;
    if ((rc = resolve_train(&c, &a)) == 0) {
        run_state rs = {0};
        rc = train_run("train", &c, &a, a.out, &rs);
        if (rc == 0 && a.json) print_json_metrics(&rs.h);
        graft_history_free(&rs.h);
    }
    run_config_free(&c);
    return rc;
}

/* The lock of an existing run folder (one without config.json is refused
 * as run_config_load would, before a .lock is left in it). */
static int lock_run(const char *cmd, const char *run_dir)
{
    char p[CLI_PATH + 32];
    path_in(p, sizeof p, run_dir, "config.json");
    if (!cli_is_file(p)) {
        cli_fail("%s is not a run folder: cannot open %s", run_dir, p);
        return -1;
    }
    bool created;
    return run_lock(cmd, run_dir, &created);
}

/* Loads a run folder's model (its base and head rebuilt, weights from model.h5). */
static int open_run_model(const char *run_dir, run_config *c, graft_model **m)
{
    if (run_config_load(run_dir, c)) return 1;
    run_config built = *c;
    built.weights[0] = '\0';
    int rc = run_build_model(&built, m);
    if (rc) return rc;
    char p[CLI_PATH + 32];
    path_in(p, sizeof p, run_dir, "model.h5");
    if (!cli_is_file(p)) path_in(p, sizeof p, run_dir, "model.weights.h5");
    graft_status s = graft_model_load_weights(*m, p, &(graft_load_opts){.by_name = 1});
    if (s != GRAFT_OK) {
        graft_model_free(*m);
        *m = NULL;
        return cli_fail_status(s, p);
    }
    return 0;
}

/* The frozen stage's model stays beside the fine-tuned one, as model_frozen.h5. */
static int keep_frozen_model(const char *run_dir)
{
    if (!cli_writes()) return 0; /* rank 0 alone writes the run folder */
    char from[CLI_PATH + 32], to[CLI_PATH + 32];
    path_in(from, sizeof from, run_dir, "model.h5");
    path_in(to, sizeof to, run_dir, "model_frozen.h5");
    if (!cli_is_file(from)) return 0; /* weights only: model.weights.h5 */
    return cli_copy_file(from, to);
}

static int finetune_run(const char *cmd, const char *run_dir, int unfreeze, float lr, int epochs,
                        int verbose, run_state *rs)
{
    int lock = lock_run(cmd, run_dir);
    if (lock < 0) return 1;
    run_config c;
    graft_model *m = NULL;
    int rc = open_run_model(run_dir, &c, &m);
    if (rc == 0) rc = load_run_history(run_dir, rs);
    if (rc == 0 && strcmp(c.base, "scratch") == 0) rc = cli_fail("%s trained a CNN from scratch: nothing to fine-tune", run_dir);
    if (rc == 0 && strcmp(c.stage, "frozen") == 0) rc = keep_frozen_model(run_dir);
    if (rc == 0) {
        snprintf(c.stage, sizeof c.stage, "fine-tune");
        c.unfreeze = unfreeze;
        c.lr = lr;
        c.target_epochs = rs->h.n + epochs;
        rc = run_stage(run_dir, &c, m, rs, verbose, false);
    }
    graft_model_free(m);
    run_config_free(&c);
    run_unlock(lock);
    return rc;
}

int cmd_finetune(int argc, char **argv)
{
    static const struct option opts[] = {{"unfreeze", required_argument, 0, OPT_UNFREEZE},
                                         {"lr", required_argument, 0, OPT_LR},
                                         {"epochs", required_argument, 0, OPT_EPOCHS},
                                         {"verbose", required_argument, 0, OPT_VERBOSE},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"help", no_argument, 0, OPT_HELP},
                                         {0, 0, 0, 0}};
    int unfreeze = 20, epochs = 10, verbose = 2, json = 0, o, rc = 0;
    float lr = 1e-5f;
    optind = 1;
    while (rc == 0 && (o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case OPT_UNFREEZE: rc = parse_int("unfreeze", optarg, 0, CLI_MAX_UNFREEZE, &unfreeze); break;
        case OPT_LR: rc = parse_float("lr", optarg, 0, CLI_MAX_LR, &lr); break;
        case OPT_EPOCHS: rc = parse_int("epochs", optarg, 1, CLI_MAX_EPOCHS, &epochs); break;
        case OPT_VERBOSE: rc = parse_int("verbose", optarg, 0, 2, &verbose); break;
        case OPT_JSON: json = 1; break;
        case OPT_HELP:
            printf("usage: graft finetune RUN_DIR [--unfreeze N] [--lr X] [--epochs N] [--json]\n"
                   "Unfreezes the last N layers of the run's base (default 20) and continues its\n"
                   "training with Adam(X) (default 1e-5) for N more epochs (default 10), in place.\n"
                   "The frozen stage's model.h5 is kept as model_frozen.h5.\n");
            return 0;
        default: return cli_usage("see graft finetune --help");
        }
    }
    if (rc) return rc;
    if (optind != argc - 1) return cli_usage("takes one RUN_DIR (see graft finetune --help)");
    if (json && (rc = cli_json_begin()) != 0) return rc;
    run_state rs = {0};
    rc = finetune_run("finetune", argv[optind], unfreeze, lr, epochs, verbose, &rs);
    if (rc == 0 && json) print_json_metrics(&rs.h);
    graft_history_free(&rs.h);
    return rc;
}

/* A stage that ended (its model written, every epoch in history.json). */
static int resume_run(const char *cmd, const char *run_dir, run_state *rs)
{
    run_config c;
    graft_model *m = NULL;
    int lock = lock_run(cmd, run_dir);
    if (lock < 0) return 1;
    int rc = run_config_load(run_dir, &c);
    if (rc == 0) {
        run_config built = c;
        char p[CLI_PATH + 32];
        path_in(p, sizeof p, run_dir, "history.json");
        /* The stages so far: kept in history.json when an epoch ended. */
        if (cli_is_file(p)) rc = load_run_history(run_dir, rs);
        else graft_history_init(&rs->h);
        built.weights[0] = '\0'; /* the checkpoint holds every weight */
        if (rc == 0) rc = run_build_model(&built, &m);
        /* A finished stage's checkpoint is read and checked too: then it says
         * there is nothing to resume. */
        if (rc == 0) rc = run_stage(run_dir, &c, m, rs, 2, true);
    }
    graft_model_free(m);
    run_config_free(&c);
    run_unlock(lock);
    return rc;
}

/* ------------------------------------------------------------ graft grid's steps */

int cli_grid_train(run_config *c, const char *data, const char *weights, const char *out,
                   int epochs, int next_unfreeze, cli_share *sh)
{
    train_args a = {.data = data, .weights = weights, .epochs = epochs, .verbose = 2};
    run_state rs = {.share = sh, .next_unfreeze = next_unfreeze};
    int rc = resolve_train(c, &a);
    if (rc == 0) rc = train_run(cli_cmd, c, &a, out, &rs);
    graft_history_free(&rs.h);
    return rc;
}

int cli_grid_finetune(const char *run_dir, int unfreeze, float lr, int epochs, cli_share *sh)
{
    run_state rs = {.share = sh};
    int rc = finetune_run(cli_cmd, run_dir, unfreeze, lr, epochs, 2, &rs);
    graft_history_free(&rs.h);
    return rc;
}

int cli_grid_resume(const char *run_dir, cli_share *sh)
{
    run_state rs = {.share = sh};
    int rc = resume_run(cli_cmd, run_dir, &rs);
    graft_history_free(&rs.h);
    return rc;
}

int cmd_resume(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        bool help = argc == 2 && strcmp(argv[1], "--help") == 0;
        fprintf(help ? stdout : stderr, "usage: graft resume RUN_DIR\nContinues an interrupted stage from its last "
                "finished epoch (RUN_DIR/checkpoint.graft).\n");
        return help ? 0 : 2;
    }
    run_state rs = {0};
    int rc = resume_run("resume", argv[1], &rs);
    graft_history_free(&rs.h);
    return rc;
}

/* ------------------------------------------------------------ the lesson */

int cmd_lesson(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, 0, OPT_DATA},
                                         {"base", required_argument, 0, OPT_BASE},
                                         {"weights", required_argument, 0, OPT_WEIGHTS},
                                         {"out", required_argument, 0, OPT_OUT},
                                         {"input-size", required_argument, 0, OPT_SIZE},
                                         {"preprocess", required_argument, 0, OPT_PRE},
                                         {"no-cache", no_argument, 0, OPT_NOCACHE},
                                         {"whole-epochs", no_argument, 0, OPT_STEPS},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"insecure", no_argument, 0, OPT_INSECURE},
                                         {"homework", no_argument, 0, OPT_HOMEWORK},
                                         {"force", no_argument, 0, OPT_FORCE},
                                         {"help", no_argument, 0, OPT_HELP},
                                         {0, 0, 0, 0}};
    const char *data = NULL, *base = "mobilenet", *weights = NULL, *out = "runs/lesson";
    const char *preprocess = "model";
    int size = 150, no_cache = 0, whole = 0, json = 0, insecure = 0, homework = 0, force = 0, o, rc = 0;
    optind = 1;
    while (rc == 0 && (o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case OPT_DATA: data = optarg; break;
        case OPT_BASE: base = optarg; break;
        case OPT_WEIGHTS: weights = optarg; break;
        case OPT_OUT: out = optarg; break;
        case OPT_SIZE: rc = parse_int("input-size", optarg, 32, 1024, &size); break;
        case OPT_PRE: preprocess = optarg; break;
        case OPT_NOCACHE: no_cache = 1; break;
        case OPT_STEPS: whole = 1; break;
        case OPT_JSON: json = 1; break;
        case OPT_INSECURE: insecure = 1; break;
        case OPT_HOMEWORK: homework = 1; break;
        case OPT_FORCE: force = 1; break;
        case OPT_HELP:
            printf("usage: graft lesson [--data DIR] [--base NAME] [--weights FILE] [--out DIR]\n"
                   "                    [--input-size N] [--preprocess model|rescale] [--no-cache]\n"
                   "                    [--whole-epochs] [--json] [--insecure] [--force]\n"
                   "       graft lesson --homework [--data DIR] [--out DIR] [--whole-epochs] [--json]\n"
                   "The whole lesson: a pretrained base (default mobilenet) frozen under a new head\n"
                   "(GAP -> Dense(1024, relu) -> Dense(1, sigmoid)) trained 5 epochs with Adam, the\n"
                   "last 20 base layers fine-tuned 10 more epochs with Adam(1e-5), the lesson's CNN\n"
                   "trained from scratch 10 epochs, both figures and a summary table, in --out\n"
                   "(default runs/lesson). Epochs are 100 steps of 32 with 50 validation steps, as in\n"
                   "the lesson (--whole-epochs: one pass each). Data is looked for in --data,\n"
                   "$GRAFT_DATA, $GRAFT_HOME/datasets (~/.cache/graft/datasets), ../shared/data\n"
                   "beside the repository; weights in --weights, $GRAFT_WEIGHTS, the cache, the\n"
                   "shared folder (MobileNet alpha 0.75), then Keras's download URL.\n"
                   "When the data is downloaded, Google's archive is checked against the digest of\n"
                   "its 3000 images; an archive from $GRAFT_DATA_URL needs its SHA-256 in\n"
                   "$GRAFT_DATA_SHA256, or --insecure to unpack it unchecked.\n"
                   "--force trains over the runs of an earlier lesson in --out.\n"
                   "--homework: the lesson's homework (default --out runs/homework): MobileNet and\n"
                   "VGG16 each under the lesson's head (dense1024) and the homework's (GAP ->\n"
                   "Dropout(0.5) -> out), 5 epochs frozen and the last 20 base layers fine-tuned 10\n"
                   "epochs, the CNN from scratch, then the report comparing them in OUT/report\n"
                   "(report.html, report.md). The same as\n"
                   "  graft grid --data DIR --out runs/homework --bases mobilenet,vgg16\n"
                   "    --heads dense1024,dropout --finetune 20 --scratch --steps-per-epoch 100\n"
                   "    --validation-steps 50 --report\n"
                   "Interrupted, the same command continues it.\n");
            return 0;
        default: return cli_usage("see graft lesson --help");
        }
    }
    if (rc) return rc;
    if (json && (rc = cli_json_begin()) != 0) return rc;
    char data_dir[CLI_PATH];
    if (cli_find_lesson_data(data, insecure, data_dir, sizeof data_dir)) return 1;
    if (homework) return cli_grid_homework(data_dir, strcmp(out, "runs/lesson") ? out : "runs/homework", whole, json);
    char tdir[CLI_PATH + 16], sdir[CLI_PATH + 16];
    snprintf(tdir, sizeof tdir, "%s/transfer", out);
    snprintf(sdir, sizeof sdir, "%s/scratch", out);
    int steps = whole ? 0 : 100, vsteps = whole ? 0 : 50;

    run_config c;
    train_args a;
    char *targv[] = {"train", NULL};
    parse_train(1, targv, &c, &a);
    snprintf(c.base, sizeof c.base, "%s", base);
    snprintf(c.preprocess, sizeof c.preprocess, "%s", preprocess);
    c.input_size = size;
    c.steps_per_epoch = steps;
    c.validation_steps = vsteps;
    c.no_cache = no_cache;
    a.data = data_dir;
    a.weights = weights;
    a.epochs = 5;
    a.force = force;
    double t[3] = {0};
    run_state rs = {0}, ss = {0};
    printf("== Stage 1: %s base frozen, new head, 5 epochs, Adam(1e-3)\n", base);
    if ((rc = resolve_train(&c, &a)) != 0) goto out;
    /* Both transfer stages draw from the same sources, as the lesson's two
     * fits share its generators; the frozen stage's passes also keep the
     * features below the layers that the fine-tuning unfreezes. */
    rs.next_unfreeze = 20;
    if ((rc = run_open_data(&c, true, &rs.train, &rs.val)) != 0) goto out;
    if (!(rs.store = graft_feature_store_new())) {
        rc = cli_fail_status(GRAFT_ENOMEM, "feature store");
        goto out;
    }
    if ((rc = train_run("lesson", &c, &a, tdir, &rs)) != 0) goto out;
    t[0] = rs.seconds;
    graft_history_free(&rs.h);
    printf("== Stage 2: last 20 base layers unfrozen, 10 epochs, Adam(1e-5)\n");
    rs.next_unfreeze = 0;
    if ((rc = finetune_run("lesson", tdir, 20, 1e-5f, 10, 2, &rs)) != 0) goto out;
    t[1] = rs.seconds;
    /* The features and the images are not needed by the CNN from scratch. */
    graft_feature_store_free(rs.store);
    graft_source_free(rs.train);
    graft_source_free(rs.val);
    rs.store = NULL;
    rs.train = rs.val = NULL;
    printf("== Stage 3: the lesson's CNN from scratch, 10 epochs, Adam(1e-3)\n");
    run_config sc;
    train_args sa;
    parse_train(1, targv, &sc, &sa);
    snprintf(sc.base, sizeof sc.base, "scratch");
    sc.input_size = size;
    sc.steps_per_epoch = steps;
    sc.validation_steps = vsteps;
    sa.data = data_dir;
    sa.epochs = 10;
    sa.force = force;
    if ((rc = resolve_train(&sc, &sa)) == 0) rc = train_run("lesson", &sc, &sa, sdir, &ss);
    t[2] = ss.seconds;
    run_config_free(&sc);
    if (rc) goto out;

    const graft_history *runs[2] = {&ss.h, &rs.h};
    const char *labels[2] = {"From scratch", "Transfer learning + fine-tuning"};
    char p[CLI_PATH + 32];
    snprintf(p, sizeof p, "%s/comparison.png", out);
    graft_status s = graft_plot_compare(runs, labels, 2, p, "Validation accuracy: from scratch vs transfer learning");
    if (s != GRAFT_OK) {
        rc = cli_fail_status(s, p);
        goto out;
    }
    double best[3] = {0, 0, 0};
    for (int i = 0; i < rs.h.n; i++) {
        int k = i < 5 ? 0 : 1;
        if (rs.h.val_accuracy[i] > best[k]) best[k] = rs.h.val_accuracy[i];
    }
    for (int i = 0; i < ss.h.n; i++)
        if (ss.h.val_accuracy[i] > best[2]) best[2] = ss.h.val_accuracy[i];
    printf("\n%-40s %18s %10s\n", "stage", "best val_accuracy", "time");
    const char *names[3] = {"1. frozen base + new head (5 epochs)", "2. fine-tune last 20 (10 epochs)",
                            "3. CNN from scratch (10 epochs)"};
    for (int i = 0; i < 3; i++) printf("%-40s %18.4f %9.1fs\n", names[i], best[i], t[i]);
    printf("\nFigures: %s/accuracy_loss.png, %s/accuracy_loss.png, %s\n", tdir, sdir, p);
    if (json)
        fprintf(cli_json(), "{\"frozen_val_accuracy\": %.6g, \"finetune_val_accuracy\": %.6g, "
               "\"scratch_val_accuracy\": %.6g, \"seconds\": [%.1f, %.1f, %.1f]}\n",
               best[0], best[1], best[2], t[0], t[1], t[2]);
out:
    graft_feature_store_free(rs.store);
    graft_source_free(rs.train);
    graft_source_free(rs.val);
    graft_history_free(&rs.h);
    graft_history_free(&ss.h);
    run_config_free(&c);
    return rc;
}
