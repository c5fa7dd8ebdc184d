/* graft: transfer learning from the command line. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
} commands[] = {
    {"lesson", cmd_lesson, "the whole lesson: transfer, fine-tune, from scratch, figures"},
    {"train", cmd_train, "train a new head on a frozen pretrained base (or a CNN from scratch)"},
    {"finetune", cmd_finetune, "unfreeze the top of a run's base and continue training"},
    {"resume", cmd_resume, "continue an interrupted run from its last finished epoch"},
    {"evaluate", cmd_evaluate, "loss, accuracy, confusion matrix on a folder of images"},
    {"predict", cmd_predict, "top classes of images"},
    {"summary", cmd_summary, "a model's layers, as Keras's model.summary()"},
    {"plot", cmd_plot, "redraw a run's figures from its history"},
    {"grid", cmd_grid, "train every base x head combination, each its own resumable run"},
    {"report", cmd_report, "one HTML and Markdown report comparing runs"},
    {"models", cmd_models, "the bases graft builds: input sizes, parameters, weights"},
};

static void usage(FILE *f)
{
    fprintf(f, "graft %s: transfer learning in C\n\nusage: graft COMMAND [options]   (graft COMMAND --help)\n\n",
            GRAFT_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
}

int main(int argc, char **argv)
{
    /* libgomp reads its wait policy once, when it loads. Its default spinning
     * steals the cores from the image-decoding threads (and from anything
     * else running; docs/PERFORMANCE.md). So unless the user chose, start
     * again with passive waiting. */
    if (!getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "PASSIVE", 1) == 0)
        execv("/proc/self/exe", argv);
    if (argc < 2) { /* not what was asked for: a usage error */
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("graft %s\n", GRAFT_VERSION);
        return 0;
    }
    graft_set_num_threads(0);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            cli_cmd = commands[i].name;
            /* getopt names argv[0] in its messages: "graft CMD: unrecognized option". */
            static char prog[64];
            snprintf(prog, sizeof prog, "graft %s", argv[1]);
            argv[1] = prog;
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "graft: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
