/* graft train, finetune, resume and lesson (cmd_train.c, cmd_finetune.c,
 * cmd_resume.c, cmd_lesson.c): a stage of a run folder (stage.c), the
 * options' codes and number parsing (options.c), and the steps the lesson
 * chains. */
#ifndef GRAFT_CLI_STAGE_H
#define GRAFT_CLI_STAGE_H

#include "cli.h"

#define MAX_STAGES CLI_MAX_STAGES

/* A command's history across the stages it runs, and what they share. */
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

/* The long options' codes, one set for all four commands. */
enum {
    OPT_DATA = 256, OPT_VAL, OPT_BASE, OPT_WEIGHTS, OPT_ALPHA, OPT_SIZE, OPT_HEAD, OPT_EPOCHS,
    OPT_STEPS, OPT_VSTEPS, OPT_BATCH, OPT_LR, OPT_AUG, OPT_SEED, OPT_OUT, OPT_JSON, OPT_PRE,
    OPT_INTERP, OPT_NOCACHE, OPT_VERBOSE, OPT_UNFREEZE, OPT_HELP, OPT_INSECURE, OPT_FORCE,
    OPT_HOMEWORK, OPT_MINIMAL
};

/* dir/name into buf. */
void run_path(char *buf, size_t cap, const char *dir, const char *name);
/* history.json of a run folder into rs (its epochs and stages). */
int stage_load_history(const char *run_dir, run_state *rs);
/* --json: the last epoch's metrics as one JSON object. */
void stage_print_json(const graft_history *h);
/*
 * Runs (or resumes) the stage named in c->stage up to c->target_epochs on a
 * built model: trainability, compile, data, fit with a checkpoint after every
 * epoch, outputs. Returns the exit code (130 when interrupted).
 */
int run_stage(const char *run_dir, run_config *c, graft_model *m, run_state *rs, int verbose,
              bool resume);
/* The lock of an existing run folder (one without config.json is refused
 * as run_config_load would, before a .lock is left in it); -1 after a message. */
int run_lock_existing(const char *cmd, const char *run_dir);

/* graft train's flags and its first stage (cmd_train.c). */
typedef struct {
    const char *data, *val, *weights, *out;
    int epochs, verbose, json, force;
} train_args;

/* train's defaults, then argv's flags; -1 after --help. */
int train_parse(int argc, char **argv, run_config *c, train_args *a);
/* Resolves the data folders and the base's weights into the config. */
int train_resolve(run_config *c, const train_args *a);
/* A new run in `out`: the base's frozen stage (or the CNN from scratch). */
int train_run(const char *cmd, run_config *c, const train_args *a, const char *out,
              run_state *rs);
/* graft finetune's stage on a run folder (cmd_finetune.c). */
int finetune_run(const char *cmd, const char *run_dir, int unfreeze, float lr, int epochs,
                 int verbose, run_state *rs);

#endif
