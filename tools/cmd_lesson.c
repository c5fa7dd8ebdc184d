/* graft lesson: the lesson's three stages (a frozen base under a new head,
 * its fine-tuning, the CNN from scratch) and their comparison, or its
 * homework as a grid. */
#include "stage.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

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
        case OPT_SIZE: rc = cli_opt_int("input-size", optarg, 32, 1024, &size); break;
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
    train_parse(1, targv, &c, &a);
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
    if ((rc = train_resolve(&c, &a)) != 0) goto out;
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
    train_parse(1, targv, &sc, &sa);
    snprintf(sc.base, sizeof sc.base, "scratch");
    sc.input_size = size;
    sc.steps_per_epoch = steps;
    sc.validation_steps = vsteps;
    sa.data = data_dir;
    sa.epochs = 10;
    sa.force = force;
    if ((rc = train_resolve(&sc, &sa)) == 0) rc = train_run("lesson", &sc, &sa, sdir, &ss);
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
