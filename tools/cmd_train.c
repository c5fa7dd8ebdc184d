/* graft train: a new run folder, its base frozen under a new head (or the
 * lesson's CNN from scratch), and graft grid's new runs. */
#include "stage.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int train_parse(int argc, char **argv, run_config *c, train_args *a)
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
        case OPT_ALPHA: rc = cli_opt_float("alpha", optarg, CLI_MIN_ALPHA, CLI_MAX_ALPHA, &c->alpha); break;
        case OPT_SIZE: rc = cli_opt_int("input-size", optarg, CLI_MIN_INPUT, CLI_MAX_INPUT, &c->input_size); break;
        case OPT_HEAD: snprintf(c->head, sizeof c->head, "%s", optarg); break;
        case OPT_EPOCHS: rc = cli_opt_int("epochs", optarg, 1, CLI_MAX_EPOCHS, &a->epochs); break;
        case OPT_STEPS: rc = cli_opt_int("steps-per-epoch", optarg, 1, CLI_MAX_STEPS, &c->steps_per_epoch); break;
        case OPT_VSTEPS: rc = cli_opt_int("validation-steps", optarg, 1, CLI_MAX_STEPS, &c->validation_steps); break;
        case OPT_BATCH: rc = cli_opt_int("batch", optarg, 1, CLI_MAX_BATCH, &c->batch); break;
        case OPT_LR: rc = cli_opt_float("lr", optarg, 0, CLI_MAX_LR, &c->lr); break;
        case OPT_AUG: c->augment = 1; break;
        case OPT_MINIMAL: c->minimalistic = 1; break;
        case OPT_SEED: {
            int s;
            rc = cli_opt_int("seed", optarg, 0, CLI_MAX_SEED, &s);
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
        case OPT_VERBOSE: rc = cli_opt_int("verbose", optarg, 0, 2, &a->verbose); break;
        case OPT_HELP: usage_train(stdout); return -1;
        default: usage_train(stderr); return 2;
        }
    }
    if (rc) return rc;
    if (optind < argc) return cli_usage("unexpected argument '%s' (see graft train --help)", argv[optind]);
    return 0;
}

int train_resolve(run_config *c, const train_args *a)
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

int train_run(const char *cmd, run_config *c, const train_args *a, const char *out,
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
    run_path(cj, sizeof cj, out, "config.json");
    if (!a->force && access(cj, F_OK) == 0) {
        if (new_lock) {
            run_path(cj, sizeof cj, out, ".lock");
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
            run_path(p, sizeof p, out, f);
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
    int rc = train_parse(argc, argv, &c, &a);
    if (rc) return rc < 0 ? 0 : rc;
    if (!a.out) return cli_usage("--out RUN_DIR is required (see graft train --help)");
    if (a.json && (rc = cli_json_begin()) != 0) return rc;
    if ((rc = train_resolve(&c, &a)) == 0) {
        run_state rs = {0};
        rc = train_run("train", &c, &a, a.out, &rs);
        if (rc == 0 && a.json) stage_print_json(&rs.h);
        graft_history_free(&rs.h);
    }
    run_config_free(&c);
    return rc;
}

/* graft grid's step (cli.h) */
int cli_grid_train(run_config *c, const char *data, const char *weights, const char *out,
                   int epochs, int next_unfreeze, cli_share *sh)
{
    train_args a = {.data = data, .weights = weights, .epochs = epochs, .verbose = 2};
    run_state rs = {.share = sh, .next_unfreeze = next_unfreeze};
    int rc = train_resolve(c, &a);
    if (rc == 0) rc = train_run(cli_cmd, c, &a, out, &rs);
    graft_history_free(&rs.h);
    return rc;
}
