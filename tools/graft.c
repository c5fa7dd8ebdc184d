/* graft: transfer learning from the command line. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef GRAFT_MPI
#include "graft/mpi.h"
#endif

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
    {"export", cmd_export, "a run or model as ONNX, a TF.js model, or a web page"},
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

/* Started by mpirun (Open MPI's or a PMI launcher's environment). */
static bool under_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

/* Compute threads: OMP_NUM_THREADS when set, else the cores shared by the
 * ranks on this machine. */
static int thread_count(void)
{
    const char *v = getenv("OMP_NUM_THREADS");
    int n = v ? atoi(v) : 0;
    if (n > 0) return n;
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    long cores = sysconf(_SC_NPROCESSORS_ONLN), ranks = local ? atol(local) : 1;
    if (cores <= 0 || ranks <= 0) return 0;
    return cores / ranks > 1 ? (int)(cores / ranks) : 1;
}

/* Under mpirun: every rank runs the same command on its share of each batch
 * (cli_comm); only rank 0 prints and writes the run folder. A rank that
 * fails ends the job (MPI_Abort), so the others never wait on it. */
static int run_command(int (*cmd)(int, char **), int argc, char **argv)
{
    if (!under_mpirun()) return cmd(argc, argv);
#ifdef GRAFT_MPI
    /* Ranks share the cores: one waiting in a collective yields its core
     * instead of spinning on it (unless the user chose). */
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        fprintf(stderr, "graft: MPI_Init failed\n");
        return 1;
    }
    graft_comm *comm = NULL;
    if (graft_comm_from_mpi(MPI_COMM_WORLD, &comm) != GRAFT_OK) {
        fprintf(stderr, "graft: %s\n", graft_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int rank = graft_comm_rank(comm), size = graft_comm_size(comm);
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "graft: rank %d: cannot silence its output\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    cli_comm = size > 1 ? comm : NULL;
    int rc = cmd(argc, argv);
    /* 130: every rank agreed to stop after the same batch (Ctrl-C). */
    if (rc != 0 && rc != 130 && size > 1 && !cli_rc_agreed) {
        fprintf(stderr, "graft %s: rank %d of %d failed (exit status %d); ending the job\n", cli_cmd,
                rank, size, rc);
        fflush(stdout);
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
    cli_comm = NULL;
    graft_comm_free(comm);
    MPI_Finalize();
    return rc;
#else
    fprintf(stderr, "graft: started by mpirun, but this graft was built without MPI (make MPI=1)\n");
    return 1;
#endif
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
    graft_threads_set(thread_count());
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            cli_cmd = commands[i].name;
            /* getopt names argv[0] in its messages: "graft CMD: unrecognized option". */
            static char prog[64];
            snprintf(prog, sizeof prog, "graft %s", argv[1]);
            argv[1] = prog;
            return run_command(commands[i].run, argc - 1, argv + 1);
        }
    fprintf(stderr, "graft: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
