/* graft grid: every base x head combination as its own run folder, each
 * resumable and skipped once complete, so that an interrupted grid goes on
 * where it stopped; the runs on one base share its frozen features. */
#include "cli.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GRID_MAX 64 /* bases, heads, weights */

typedef struct {
    const char *data, *out;
    char *bases[GRID_MAX], *heads[GRID_MAX];
    int n_bases, n_heads;
    const char *weights_for[GRID_MAX][2]; /* base, file */
    int n_weights;
    run_config proto; /* train's settings for every run (base and head set per run) */
    int epochs, finetune, finetune_epochs, scratch, scratch_epochs, json, report;
    float finetune_lr;
    char title[256];
    enum { GRID_AUTO, GRID_RUNS, GRID_DATA } mpi_mode; /* under mpirun */
} grid_args;

typedef struct {
    char dir[CLI_PATH];
    const char *status; /* trained, skipped, failed */
} grid_result;

/* Splits a comma list in place into out[]; the count, or -1 past GRID_MAX. */
static int split_list(char *s, char **out)
{
    int n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (!*tok) continue;
        if (n == GRID_MAX) return -1;
        out[n++] = tok;
    }
    return n;
}

static const char *weights_for(const grid_args *g, const char *base)
{
    for (int i = 0; i < g->n_weights; i++)
        if (strcmp(g->weights_for[i][0], base) == 0) return g->weights_for[i][1];
    return NULL;
}

/* Brings one run folder to its end: trains it when new, resumes a stage
 * that stopped, fine-tunes a finished frozen stage when asked; *did says
 * whether anything ran. */
static int bring_run(const grid_args *g, const char *base, const char *head, const char *dir,
                     cli_share *sh, bool *did)
{
    bool scratch = strcmp(base, "scratch") == 0;
    *did = false;
    for (int step = 0; step < 8; step++) {
        /* Each run data-parallel: every rank reads the run folder only once
         * rank 0 has written it, so that all take the same next step. */
        graft_status bs = graft_comm_barrier(cli_comm);
        if (bs != GRAFT_OK) return cli_fail_status(bs, "mpi");
        char p[CLI_PATH + 32];
        snprintf(p, sizeof p, "%s/config.json", dir);
        if (access(p, F_OK) != 0) {
            run_config c = g->proto;
            c.classes = NULL;
            snprintf(c.base, sizeof c.base, "%s", base);
            snprintf(c.head, sizeof c.head, "%s", head);
            /* The grid's width and variant go to the bases that take them. */
            if (!run_base_has_alpha(base)) c.alpha = 0;
            if (!run_base_has_minimalistic(base)) c.minimalistic = 0;
            int rc = cli_grid_train(&c, g->data, weights_for(g, base), dir,
                                    scratch ? g->scratch_epochs : g->epochs, scratch ? 0 : g->finetune,
                                    scratch ? NULL : sh);
            run_config_free(&c);
            if (rc) return rc;
            *did = true;
            continue;
        }
        run_config c;
        if (run_config_load(dir, &c)) return 1;
        graft_history h;
        graft_history_stage st[CLI_MAX_STAGES];
        int ns = 0, rc = 0;
        snprintf(p, sizeof p, "%s/history.json", dir);
        if (cli_is_file(p)) rc = run_history_load(dir, &h, st, CLI_MAX_STAGES, &ns);
        else graft_history_init(&h);
        if (rc) {
            run_config_free(&c);
            return rc;
        }
        enum { DONE, RESUME, FINETUNE } next = DONE;
        /* config.json names the base as graft does; --bases, in any spelling. */
        const graft_zoo_arch *za = graft_zoo_find(base);
        if (strcmp(c.base, za ? za->name : base) != 0 || (!scratch && strcmp(c.head, head) != 0))
            rc = cli_fail("%s holds a run of %s with head %s, not %s with %s; give another --out", dir,
                          c.base, c.head, base, head);
        else if (h.n < c.target_epochs)
            next = RESUME;
        else if (!scratch && g->finetune > 0 && strcmp(c.stage, "frozen") == 0)
            next = FINETUNE;
        run_config_free(&c);
        graft_history_free(&h);
        if (rc) return rc;
        if (next == DONE) {
            if (!*did) printf("%s: complete, skipped\n", dir);
            return 0;
        }
        *did = true;
        rc = next == RESUME ? cli_grid_resume(dir, scratch ? NULL : sh)
                            : cli_grid_finetune(dir, g->finetune, g->finetune_lr, g->finetune_epochs, sh);
        if (rc) return rc;
    }
    return cli_fail("%s: the run did not reach its end", dir);
}

static void json_result(FILE *f, const grid_result *r, bool first)
{
    fprintf(f, "%s\n  {\"run\": ", first ? "" : ",");
    cli_json_string(f, r->dir);
    fprintf(f, ", \"status\": \"%s\"", r->status);
    graft_history h;
    graft_history_stage st[CLI_MAX_STAGES];
    int ns;
    if (strcmp(r->status, "failed") != 0 && run_history_load(r->dir, &h, st, CLI_MAX_STAGES, &ns) == 0) {
        double best = -1, last = h.n ? h.val_accuracy[h.n - 1] : NAN;
        for (int i = 0; i < h.n; i++)
            if (h.val_accuracy[i] > best) best = h.val_accuracy[i];
        if (isfinite(last)) fprintf(f, ", \"val_accuracy\": %.6g, \"best_val_accuracy\": %.6g", last, best);
        fprintf(f, ", \"epochs\": %d", h.n);
        graft_history_free(&h);
    }
    fputc('}', f);
}

/* Under mpirun, whether each rank runs whole runs of the grid (rank r runs
 * r, r + N, ...) rather than every run data-parallel over all ranks. */
static bool runs_per_rank(const grid_args *g, int n_runs)
{
    int ranks = graft_comm_size(cli_comm);
    if (ranks < 2 || g->mpi_mode == GRID_DATA) return false;
    return g->mpi_mode == GRID_RUNS || n_runs >= ranks;
}

/* Runs per rank: every rank learns every run's status from its owner, and
 * whether any rank was interrupted (codes: 1 trained, 2 skipped, 3 failed). */
static int gather_statuses(graft_comm *job, grid_result *res, int n_runs, bool *interrupted)
{
    static const char *const names[] = {"failed", "trained", "skipped", "failed"};
    double *v = calloc((size_t)n_runs + 1, sizeof *v);
    if (!v) return cli_fail("out of memory");
    for (int i = 0; i < n_runs; i++)
        if (res[i].status) v[i] = !strcmp(res[i].status, "trained") ? 1 : !strcmp(res[i].status, "skipped") ? 2 : 3;
    v[n_runs] = *interrupted;
    graft_status s = graft_comm_sum(job, v, n_runs + 1);
    for (int i = 0; s == GRAFT_OK && i < n_runs; i++) {
        int code = (int)v[i];
        res[i].status = names[code >= 1 && code <= 3 ? code : 0];
    }
    *interrupted = v[n_runs] > 0;
    free(v);
    return s == GRAFT_OK ? 0 : cli_fail_status(s, "gathering the runs' results");
}

static int run_grid(const grid_args *g)
{
    int n_pairs = g->n_bases * g->n_heads, n_runs = n_pairs + (g->scratch ? 1 : 0), failed = 0;
    grid_result *res = calloc((size_t)n_runs, sizeof *res);
    if (!res) return cli_fail("out of memory");
    /* Runs per rank: each run in this process alone, writing its own folder. */
    const bool per_rank = runs_per_rank(g, n_runs);
    graft_comm *job = cli_comm;
    const int ranks = graft_comm_size(job), rank = graft_comm_rank(job);
    if (per_rank) cli_comm = NULL;
    cli_share sh = {0};
    int sh_base = -1, rc = 0;
    bool interrupted = false;
    for (int k = 0; k < n_runs && !interrupted; k++) {
        grid_result *r = &res[k];
        bool scratch = k == n_pairs;
        const char *base = scratch ? "scratch" : g->bases[k / g->n_heads];
        const char *head = scratch ? "dense1024" : g->heads[k % g->n_heads];
        if (scratch) snprintf(r->dir, sizeof r->dir, "%s/scratch", g->out);
        else snprintf(r->dir, sizeof r->dir, "%s/%s-%s", g->out, base, head);
        if (per_rank && k % ranks != rank) continue; /* another rank's */
        r->status = "failed";
        /* The runs on one base share its frozen features. */
        if (!scratch && sh_base != k / g->n_heads) {
            graft_feature_store_free(sh.store);
            sh = (cli_share){.store = graft_feature_store_new()};
            sh_base = k / g->n_heads;
            if (!sh.store) {
                rc = cli_fail_status(GRAFT_ENOMEM, "feature store");
                break;
            }
        }
        if (scratch)
            printf("== %s (%d of %d): the lesson's CNN from scratch\n", r->dir, k + 1, n_runs);
        else
            printf("== %s (%d of %d): base %s, head %s\n", r->dir, k + 1, n_runs, base, head);
        fflush(stdout);
        bool did;
        int brc = bring_run(g, base, head, r->dir, scratch ? NULL : &sh, &did);
        /* Ctrl-C: the whole grid stops; it resumes from here. */
        interrupted = brc == 130;
        r->status = brc ? "failed" : did ? "trained" : "skipped";
    }
    graft_feature_store_free(sh.store);
    if (per_rank) {
        cli_comm = job;
        if (rc == 0) rc = gather_statuses(job, res, n_runs, &interrupted);
        /* Every rank now knows every run's outcome: they end alike, with
         * no rank failing the job. */
        cli_rc_agreed = rc == 0;
    }
    if (rc || interrupted) {
        free(res);
        if (interrupted) fprintf(stderr, "graft grid: continue the grid with the same command\n");
        return interrupted ? 130 : rc;
    }
    for (int i = 0; i < n_runs; i++) failed += strcmp(res[i].status, "failed") == 0;
    if (g->report && cli_writes()) {
        const char **dirs = calloc((size_t)n_runs, sizeof *dirs);
        int nd = 0;
        for (int i = 0; dirs && i < n_runs; i++)
            if (strcmp(res[i].status, "failed") != 0) dirs[nd++] = res[i].dir;
        char rdir[CLI_PATH + 16];
        snprintf(rdir, sizeof rdir, "%s/report", g->out);
        if (!dirs) rc = cli_fail("out of memory");
        else if (nd > 0) rc = cli_report(dirs, nd, rdir, g->title);
        free(dirs);
    }
    if (!cli_writes()) { /* rank 0 reports for the job */
        free(res);
        return failed ? 1 : rc;
    }
    printf("\n%-48s %s\n", "run", "status");
    for (int i = 0; i < n_runs; i++) printf("%-48s %s\n", res[i].dir, res[i].status);
    if (g->json) {
        FILE *f = cli_json();
        fputc('[', f);
        for (int i = 0; i < n_runs; i++) json_result(f, &res[i], i == 0);
        fprintf(f, "\n]\n");
    }
    free(res);
    if (failed) return cli_fail("%d of %d runs failed (see above); run the same command again to retry them",
                                failed, n_runs);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: graft grid --data DIR --out DIR [--bases LIST] [--heads LIST] [options]\n"
            "Trains every base x head combination as its own run folder, OUT/BASE-HEAD. Each is\n"
            "resumable and skipped once complete, so running the same command again after an\n"
            "interruption continues the grid. Runs on the same base share its frozen features.\n"
            "  --bases LIST          comma-separated (default mobilenet,vgg16); see graft models\n"
            "  --heads LIST          comma-separated from dense1024 (GAP->Dense(1024,relu)->out),\n"
            "                        dropout (GAP->Dropout(0.5)->out) and dense1024-dropout\n"
            "                        (GAP->Dropout(0.5)->Dense(1024,relu)->out); default all three\n"
            "  --epochs N            frozen stage epochs (default 5)\n"
            "  --finetune N          then unfreeze the last N base layers (default 0: no fine-tuning)\n"
            "  --finetune-epochs E   (default 10)   --finetune-lr X (default 1e-5)\n"
            "  --scratch             also the lesson's CNN from scratch (OUT/scratch)\n"
            "  --scratch-epochs N    (default 10)\n"
            "  --weights BASE=FILE   weights for one base (repeatable; default: found as train does)\n"
            "  --alpha A  --minimalistic  --input-size N  --batch N  --lr X  --seed S\n"
            "  --steps-per-epoch N  --validation-steps N  --preprocess model|rescale\n"
            "  --interpolation NAME  --no-cache\n"
            "                        as graft train (--alpha and --minimalistic for the bases\n"
            "                        that take them)\n"
            "  --report              then write OUT/report/report.html and report.md (graft report)\n"
            "  --title T             the report's title\n"
            "  --json                each run's folder, status and validation accuracy as JSON\n"
            "  --mpi-mode MODE       under mpirun -np N: runs (rank r trains runs r, r+N, ... each\n"
            "                        in one process; OUT must be a folder every rank sees) or data\n"
            "                        (every run data-parallel over the N ranks); default runs when\n"
            "                        the grid has at least N runs, else data\n"
            "The lesson's homework is `graft lesson --homework` (see graft lesson --help).\n");
}

enum { G_DATA = 400, G_OUT, G_BASES, G_HEADS, G_EPOCHS, G_FT, G_FTE, G_FTLR, G_SCRATCH, G_SE,
       G_WEIGHTS, G_ALPHA, G_SIZE, G_BATCH, G_LR, G_SEED, G_STEPS, G_VSTEPS, G_PRE, G_INTERP,
       G_NOCACHE, G_REPORT, G_TITLE, G_JSON, G_MPI_MODE, G_MINIMAL, G_HELP };

static int parse_num(const char *opt, const char *v, double lo, double hi, bool whole, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= lo && x <= hi) || (whole && x != floor(x)))
        return cli_usage("--%s: '%s' is not a %s in [%g, %g]", opt, v, whole ? "whole number" : "number", lo, hi);
    *out = x;
    return 0;
}

static void grid_defaults(grid_args *g)
{
    memset(g, 0, sizeof *g);
    cli_train_defaults(&g->proto);
    g->epochs = 5;
    g->finetune_epochs = 10;
    g->finetune_lr = 1e-5f;
    g->scratch_epochs = 10;
}

int cmd_grid(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, G_DATA}, {"out", required_argument, 0, G_OUT},
        {"bases", required_argument, 0, G_BASES}, {"heads", required_argument, 0, G_HEADS},
        {"epochs", required_argument, 0, G_EPOCHS}, {"finetune", required_argument, 0, G_FT},
        {"finetune-epochs", required_argument, 0, G_FTE}, {"finetune-lr", required_argument, 0, G_FTLR},
        {"scratch", no_argument, 0, G_SCRATCH}, {"scratch-epochs", required_argument, 0, G_SE},
        {"weights", required_argument, 0, G_WEIGHTS}, {"alpha", required_argument, 0, G_ALPHA},
        {"input-size", required_argument, 0, G_SIZE}, {"batch", required_argument, 0, G_BATCH},
        {"lr", required_argument, 0, G_LR}, {"seed", required_argument, 0, G_SEED},
        {"steps-per-epoch", required_argument, 0, G_STEPS},
        {"validation-steps", required_argument, 0, G_VSTEPS},
        {"preprocess", required_argument, 0, G_PRE}, {"interpolation", required_argument, 0, G_INTERP},
        {"no-cache", no_argument, 0, G_NOCACHE}, {"report", no_argument, 0, G_REPORT},
        {"title", required_argument, 0, G_TITLE}, {"json", no_argument, 0, G_JSON},
        {"mpi-mode", required_argument, 0, G_MPI_MODE}, {"minimalistic", no_argument, 0, G_MINIMAL},
        {"help", no_argument, 0, G_HELP}, {0, 0, 0, 0}};
    grid_args g;
    grid_defaults(&g);
    char bases[1024] = "mobilenet,vgg16", heads[1024] = "dense1024,dropout,dense1024-dropout";
    run_config *c = &g.proto;
    int o, rc = 0;
    double v;
    optind = 1;
    while (rc == 0 && (o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case G_DATA: g.data = optarg; break;
        case G_OUT: g.out = optarg; break;
        case G_BASES: snprintf(bases, sizeof bases, "%s", optarg); break;
        case G_HEADS: snprintf(heads, sizeof heads, "%s", optarg); break;
        case G_EPOCHS: if (!(rc = parse_num("epochs", optarg, 1, CLI_MAX_EPOCHS, true, &v))) g.epochs = (int)v; break;
        case G_FT: if (!(rc = parse_num("finetune", optarg, 0, CLI_MAX_UNFREEZE, true, &v))) g.finetune = (int)v; break;
        case G_FTE: if (!(rc = parse_num("finetune-epochs", optarg, 1, CLI_MAX_EPOCHS, true, &v))) g.finetune_epochs = (int)v; break;
        case G_FTLR: if (!(rc = parse_num("finetune-lr", optarg, 0, CLI_MAX_LR, false, &v))) g.finetune_lr = (float)v; break;
        case G_SCRATCH: g.scratch = 1; break;
        case G_SE: if (!(rc = parse_num("scratch-epochs", optarg, 1, CLI_MAX_EPOCHS, true, &v))) g.scratch_epochs = (int)v; break;
        case G_WEIGHTS: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) rc = cli_usage("--weights: '%s' is not BASE=FILE", optarg);
            else if (g.n_weights == GRID_MAX) rc = cli_usage("--weights: more than %d", GRID_MAX);
            else {
                *eq = '\0';
                g.weights_for[g.n_weights][0] = optarg;
                g.weights_for[g.n_weights++][1] = eq + 1;
            }
            break;
        }
        case G_ALPHA: if (!(rc = parse_num("alpha", optarg, CLI_MIN_ALPHA, CLI_MAX_ALPHA, false, &v))) c->alpha = (float)v; break;
        case G_SIZE: if (!(rc = parse_num("input-size", optarg, CLI_MIN_INPUT, CLI_MAX_INPUT, true, &v))) c->input_size = (int)v; break;
        case G_BATCH: if (!(rc = parse_num("batch", optarg, 1, CLI_MAX_BATCH, true, &v))) c->batch = (int)v; break;
        case G_LR: if (!(rc = parse_num("lr", optarg, 0, CLI_MAX_LR, false, &v))) c->lr = (float)v; break;
        case G_SEED: if (!(rc = parse_num("seed", optarg, 0, CLI_MAX_SEED, true, &v))) c->seed = (unsigned long long)v; break;
        case G_STEPS: if (!(rc = parse_num("steps-per-epoch", optarg, 1, CLI_MAX_STEPS, true, &v))) c->steps_per_epoch = (int)v; break;
        case G_VSTEPS: if (!(rc = parse_num("validation-steps", optarg, 1, CLI_MAX_STEPS, true, &v))) c->validation_steps = (int)v; break;
        case G_PRE:
            if (strcmp(optarg, "model") != 0 && strcmp(optarg, "rescale") != 0)
                rc = cli_usage("--preprocess: '%s' is not model or rescale", optarg);
            snprintf(c->preprocess, sizeof c->preprocess, "%s", optarg);
            break;
        case G_INTERP: {
            graft_interpolation im;
            if (graft_interpolation_parse(optarg, &im) != GRAFT_OK)
                rc = cli_usage("--interpolation: '%s' is not nearest, bilinear, area, ...", optarg);
            snprintf(c->interpolation, sizeof c->interpolation, "%s", optarg);
            break;
        }
        case G_NOCACHE: c->no_cache = 1; break;
        case G_MINIMAL: c->minimalistic = 1; break;
        case G_REPORT: g.report = 1; break;
        case G_TITLE: snprintf(g.title, sizeof g.title, "%s", optarg); break;
        case G_JSON: g.json = 1; break;
        case G_MPI_MODE:
            if (!strcmp(optarg, "runs")) g.mpi_mode = GRID_RUNS;
            else if (!strcmp(optarg, "data")) g.mpi_mode = GRID_DATA;
            else rc = cli_usage("--mpi-mode: '%s' is not runs or data", optarg);
            break;
        case G_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (rc) return rc;
    if (optind < argc) return cli_usage("unexpected argument '%s' (see graft grid --help)", argv[optind]);
    if (!g.data || !g.out) return cli_usage("--data DIR and --out DIR are required (see graft grid --help)");
    g.n_bases = split_list(bases, g.bases);
    g.n_heads = split_list(heads, g.heads);
    if (g.n_bases < 1 || g.n_heads < 1) return cli_usage("--bases and --heads each need 1 to %d names", GRID_MAX);
    for (int i = 0; i < g.n_bases; i++)
        if (!run_known_base(g.bases[i]) || strcmp(g.bases[i], "scratch") == 0)
            return cli_usage("--bases: unknown base '%s' (see graft models; --scratch adds the CNN from scratch)",
                             g.bases[i]);
    for (int i = 0; i < g.n_heads; i++)
        if (!run_known_head(g.heads[i])) return cli_usage("--heads: unknown head '%s' (" RUN_HEADS ")", g.heads[i]);
    bool takes_alpha = false, takes_minimal = false;
    for (int i = 0; i < g.n_bases; i++) {
        takes_alpha |= run_base_has_alpha(g.bases[i]);
        takes_minimal |= run_base_has_minimalistic(g.bases[i]);
    }
    if (c->alpha > 0 && !takes_alpha)
        return cli_usage("--alpha: none of --bases has a width (MobileNet, MobileNetV2 and MobileNetV3 do)");
    if (c->minimalistic && !takes_minimal)
        return cli_usage("--minimalistic: none of --bases is a MobileNetV3 (MobileNetV3Small, MobileNetV3Large)");
    if (g.json && (rc = cli_json_begin()) != 0) return rc;
    return run_grid(&g);
}

int cli_grid_homework(const char *data_dir, const char *out, bool whole_epochs, bool json)
{
    grid_args g;
    grid_defaults(&g);
    static char b0[] = "mobilenet", b1[] = "vgg16", h0[] = "dense1024", h1[] = "dropout";
    g.bases[0] = b0;
    g.bases[1] = b1;
    g.heads[0] = h0;
    g.heads[1] = h1;
    g.n_bases = g.n_heads = 2;
    g.data = data_dir;
    g.out = out;
    g.proto.steps_per_epoch = whole_epochs ? 0 : 100;
    g.proto.validation_steps = whole_epochs ? 0 : 50;
    /* VGG16's top blocks are 4 layers each: the lesson's "last 20" reaches
     * into its third block (the hint: more layers, more fine-tuning). */
    g.finetune = 20;
    g.scratch = 1;
    g.report = 1;
    g.json = json;
    snprintf(g.title, sizeof g.title, "Homework: MobileNet vs VGG16, with and without Dropout(0.5)");
    return run_grid(&g);
}
