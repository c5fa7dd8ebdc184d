/* One stage of a run folder, as train, finetune, resume and lesson run it:
 * compile, data, fit with a checkpoint after every epoch, and what a
 * finished stage leaves (history.json, log.csv, the figure, the model). */
#include "stage.h"
#include "train/source.h" /* the sources' uids, shared by the runs of a grid */

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

void run_path(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

int stage_load_history(const char *run_dir, run_state *rs)
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
    run_path(p, sizeof p, run_dir, "history.json");
    if ((s = graft_history_save_json(p, &rs->h, rs->stages, rs->n_stages)) != GRAFT_OK)
        return cli_fail_status(s, p);
    run_path(p, sizeof p, run_dir, "log.csv");
    if ((s = graft_history_save_csv(p, &rs->h)) != GRAFT_OK) return cli_fail_status(s, p);
    run_path(p, sizeof p, run_dir, "accuracy_loss.png");
    if (rs->h.n > 0 && (s = plot_run(rs, p)) != GRAFT_OK)
        return cli_fail_status(s, p);
    run_path(p, sizeof p, run_dir, "model.h5");
    int saved = run_save_model(m, c, p);
    if (saved) {
        /* A layer whose Keras config graft cannot write: keep the weights at least.
         * Any other failure (a full disk) is the run's failure. */
        if (saved != 2) return 1;
        fprintf(stderr, "graft: warning: %s: %s; saving the weights only\n", p, graft_last_error());
        run_path(p, sizeof p, run_dir, "model.weights.h5");
        if ((s = graft_model_save_weights(m, p)) != GRAFT_OK) return cli_fail_status(s, p);
    }
    return 0;
}

void stage_print_json(const graft_history *h)
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

/* A whole number in decimal (no sign), as the switches below take them. */
static bool env_number(const char *v, unsigned long long *out)
{
    char *end;
    errno = 0;
    *out = strtoull(v, &end, 10);
    return !errno && !*end && *v != '-';
}

/* GRAFT_ALLREDUCE and GRAFT_SPLIT_KERNELS, for the fit's allreduce and
 * split_kernels; nonzero (said) when either is not understood. */
static int dist_switches(graft_allreduce *allreduce, size_t *split)
{
    *allreduce = GRAFT_ALLREDUCE_AUTO;
    *split = 0;
    const char *how = graft_env(GRAFT_ENV_ALLREDUCE);
    if (how && strcmp(how, "shared") == 0) *allreduce = GRAFT_ALLREDUCE_SHARED;
    else if (how && strcmp(how, "buckets") == 0) *allreduce = GRAFT_ALLREDUCE_BUCKETS;
    else if (how && *how && strcmp(how, "auto") != 0)
        return cli_fail("GRAFT_ALLREDUCE='%s': expected auto, shared or buckets", how);
    const char *min = graft_env(GRAFT_ENV_SPLIT_KERNELS);
    if (min && strcmp(min, "off") == 0) {
        *split = SIZE_MAX;
    } else if (min && *min) {
        unsigned long long v;
        if (!env_number(min, &v) || v == 0)
            return cli_fail("GRAFT_SPLIT_KERNELS='%s': expected a positive number of weights or off", min);
        *split = (size_t)v;
    }
    return 0;
}

/* GRAFT_FEATURE_CACHE_MIB, for the fit's cache_max_bytes (0: the library's
 * default); nonzero (said) when it is not understood. */
static int cache_budget(size_t *bytes)
{
    *bytes = 0;
    const char *mib = graft_env(GRAFT_ENV_FEATURE_CACHE_MIB);
    if (!mib || !*mib) return 0;
    unsigned long long v;
    if (!env_number(mib, &v) || v > SIZE_MAX / 1048576)
        return cli_fail("GRAFT_FEATURE_CACHE_MIB='%s': expected a number of MiB", mib);
    /* 0 MiB: one byte, which no cache fits in (0 would be the default). */
    *bytes = v ? (size_t)v * 1048576 : 1;
    return 0;
}

int run_stage(const char *run_dir, run_config *c, graft_model *m, run_state *rs, int verbose,
              bool resume)
{
    graft_source *train = NULL, *val = NULL;
    graft_callback ckpt = {0};
    char ck[CLI_PATH + 32];
    run_path(ck, sizeof ck, run_dir, "checkpoint.graft");
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
        run_path(mp, sizeof mp, run_dir, "model.h5");
        run_path(wp, sizeof wp, run_dir, "model.weights.h5");
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
        run_path(hp, sizeof hp, run_dir, "history.json");
        if (cli_writes() && (s = graft_history_save_json(hp, &rs->h, rs->stages, rs->n_stages)) != GRAFT_OK) {
            rc = cli_fail_status(s, hp);
            goto done;
        }
    }
    if ((s = graft_train_state_callback(ck, train, val, &rs->h, &ckpt)) != GRAFT_OK) {
        rc = cli_fail_status(s, "checkpoint");
        goto done;
    }
    graft_allreduce allreduce;
    size_t split;
    if ((rc = dist_switches(&allreduce, &split)) != 0) goto done;
    size_t cache_bytes;
    if ((rc = cache_budget(&cache_bytes)) != 0) goto done;
    graft_fit_cfg fc = {.epochs = c->target_epochs,
                        .initial_epoch = first_epoch,
                        .steps_per_epoch = c->steps_per_epoch,
                        .validation_data = val,
                        .validation_steps = c->validation_steps,
                        .verbose = verbose,
                        .callbacks = &ckpt,
                        .n_callbacks = 1,
                        .no_feature_cache = c->no_cache,
                        .cache_max_bytes = cache_bytes,
                        .feature_store = rs->store ? rs->store : rs->share ? rs->share->store : NULL,
                        .comm = cli_comm,
                        .sync_batch_norm = graft_env(GRAFT_ENV_SYNC_BN) &&
                                           strcmp(graft_env(GRAFT_ENV_SYNC_BN), "1") == 0,
                        .allreduce = allreduce,
                        .split_kernels = split};
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
        run_path(p, sizeof p, run_dir, "history.json");
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

int run_lock_existing(const char *cmd, const char *run_dir)
{
    char p[CLI_PATH + 32];
    run_path(p, sizeof p, run_dir, "config.json");
    if (!cli_is_file(p)) {
        cli_fail("%s is not a run folder: cannot open %s", run_dir, p);
        return -1;
    }
    bool created;
    return run_lock(cmd, run_dir, &created);
}
