/* graft resume: an interrupted stage continued from its last finished
 * epoch; and graft grid's resumes. */
#include "stage.h"

#include <stdio.h>
#include <string.h>

/* A stage that ended (its model written, every epoch in history.json). */
static int resume_run(const char *cmd, const char *run_dir, run_state *rs)
{
    run_config c;
    graft_model *m = NULL;
    int lock = run_lock_existing(cmd, run_dir);
    if (lock < 0) return 1;
    int rc = run_config_load(run_dir, &c);
    if (rc == 0) {
        run_config built = c;
        char p[CLI_PATH + 32];
        run_path(p, sizeof p, run_dir, "history.json");
        /* The stages so far: kept in history.json when an epoch ended. */
        if (cli_is_file(p)) rc = stage_load_history(run_dir, rs);
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

/* graft grid's step (cli.h) */
int cli_grid_resume(const char *run_dir, cli_share *sh)
{
    run_state rs = {.share = sh};
    int rc = resume_run(cli_cmd, run_dir, &rs);
    graft_history_free(&rs.h);
    return rc;
}
