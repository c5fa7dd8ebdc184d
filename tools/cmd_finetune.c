/* graft finetune: the last layers of a run's base unfrozen, trained on in
 * place; and graft grid's fine-tunings. */
#include "stage.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

/* Loads a run folder's model (its base and head rebuilt, weights from model.h5). */
static int open_run_model(const char *run_dir, run_config *c, graft_model **m)
{
    if (run_config_load(run_dir, c)) return 1;
    run_config built = *c;
    built.weights[0] = '\0';
    int rc = run_build_model(&built, m);
    if (rc) return rc;
    char p[CLI_PATH + 32];
    run_path(p, sizeof p, run_dir, "model.h5");
    if (!cli_is_file(p)) run_path(p, sizeof p, run_dir, "model.weights.h5");
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
    run_path(from, sizeof from, run_dir, "model.h5");
    run_path(to, sizeof to, run_dir, "model_frozen.h5");
    if (!cli_is_file(from)) return 0; /* weights only: model.weights.h5 */
    return cli_copy_file(from, to);
}

int finetune_run(const char *cmd, const char *run_dir, int unfreeze, float lr, int epochs,
                        int verbose, run_state *rs)
{
    int lock = run_lock_existing(cmd, run_dir);
    if (lock < 0) return 1;
    run_config c;
    graft_model *m = NULL;
    int rc = open_run_model(run_dir, &c, &m);
    if (rc == 0) rc = stage_load_history(run_dir, rs);
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
        case OPT_UNFREEZE: rc = cli_opt_int("unfreeze", optarg, 0, CLI_MAX_UNFREEZE, &unfreeze); break;
        case OPT_LR: rc = cli_opt_float("lr", optarg, 0, CLI_MAX_LR, &lr); break;
        case OPT_EPOCHS: rc = cli_opt_int("epochs", optarg, 1, CLI_MAX_EPOCHS, &epochs); break;
        case OPT_VERBOSE: rc = cli_opt_int("verbose", optarg, 0, 2, &verbose); break;
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
    if (rc == 0 && json) stage_print_json(&rs.h);
    graft_history_free(&rs.h);
    return rc;
}

/* graft grid's step (cli.h) */
int cli_grid_finetune(const char *run_dir, int unfreeze, float lr, int epochs, cli_share *sh)
{
    run_state rs = {.share = sh};
    int rc = finetune_run(cli_cmd, run_dir, unfreeze, lr, epochs, 2, &rs);
    graft_history_free(&rs.h);
    return rc;
}
