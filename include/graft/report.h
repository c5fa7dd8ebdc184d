/*
 * graft/report.h: Run folders: history.json, the CSV log and the figures.
 * Included by graft.h; see there for conventions.
 */
#ifndef GRAFT_API_REPORT_H
#define GRAFT_API_REPORT_H

#include "graft/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ reports (src/report) */
/*
 * Run folders: history.json, the CSV log and the figures. Every file is
 * written to a temporary file beside it and renamed into place, so a crash
 * or a full disk never leaves a truncated file and a failure leaves none.
 */

/* A named part of a run ("frozen", "fine-tune") and the epoch it starts at. */
#define GRAFT_STAGE_NAME_MAX 64
typedef struct {
    char name[GRAFT_STAGE_NAME_MAX];
    int first_epoch;
} graft_history_stage;

/*
 * history.json in the form of Keras's History object:
 *   {"history": {"loss": [...], "accuracy": [...], "val_loss": [...],
 *                "val_accuracy": [...], "lr": [...]},
 *    "epoch": [0, 1, ...], "seconds": [...],
 *    "stages": [{"name": "frozen", "first_epoch": 0}, ...]}
 * A metric whose every entry is NAN is left out (val_* without validation);
 * a single missing entry is written as null and read back as NAN. "seconds"
 * and "stages" are graft's own; stages may be NULL when n_stages is 0, and
 * must start at increasing epochs.
 */
graft_status graft_history_save_json(const char *path, const graft_history *h,
                                     const graft_history_stage *stages, int n_stages);
/*
 * Reads history.json (also a bare Keras `history.history` dict's keys inside
 * "history", with "epoch" optional and "learning_rate" accepted for "lr";
 * other metrics are ignored). *h is initialized here and freed by the caller
 * with graft_history_free. *stages (free()) and *n_stages may be NULL when
 * not wanted. Malformed files are refused with a message naming the file
 * and the key; on failure *h is empty and *stages NULL.
 */
graft_status graft_history_load_json(const char *path, graft_history *h,
                                     graft_history_stage **stages, int *n_stages);

/*
 * The CSV log as Keras's CSVLogger writes it: "epoch" then the metrics in
 * sorted order (accuracy,loss,lr,val_accuracy,val_loss; all-NAN ones left
 * out), Python's shortest float repr, "NA" for a missing entry, and the
 * csv module's \r\n line ends.
 */
graft_status graft_history_save_csv(const char *path, const graft_history *h);

/*
 * A run's figure by stages (800x800 PNG drawn with cairo): training and
 * validation accuracy on top, loss below, x axis in epochs, and for each
 * stage after the first a dashed "Start <name>" line at the epoch before its
 * first, where its curves begin (as in TensorFlow's transfer-learning
 * tutorial). Stages must start at increasing epochs within the history's.
 * NAN entries leave gaps. cfg may be NULL (one stage, the default titles).
 */
#define GRAFT_PLOT_MAX_STAGES 8 /* lines, so stages after the first */
typedef struct {
    const graft_history_stage *stages; /* as graft_history_save_json takes them; may be NULL */
    int n_stages;
    const char *accuracy_title, *loss_title; /* NULL: "Training and Validation Accuracy" / "Loss" */
} graft_stages_plot;
graft_status graft_plot_stages(const graft_history *h, const graft_stages_plot *cfg,
                               const char *png_path);

/*
 * Validation accuracy per epoch of several runs (800x600 PNG), one curve per
 * run against its own epoch numbers. labels and title may be NULL ("run 1",
 * ... and "Validation accuracy comparison").
 */
graft_status graft_plot_compare(const graft_history *const *runs, const char *const *labels,
                                int n_runs, const char *png_path, const char *title);

/*
 * Learning curves of several runs on shared axes (900x900 PNG): accuracy
 * above, loss below, one colour per run, validation solid and training
 * dashed, labelled by `label` (NULL: "run N"). Where a run's later stage
 * starts (its fine-tuning), a dashed line in the run's colour and a diamond
 * on its validation curve mark it.
 */
typedef struct {
    const char *label;
    const graft_history *h;
    const graft_history_stage *stages; /* may be NULL when n_stages is 0 */
    int n_stages;
} graft_plot_run;
graft_status graft_plot_runs(const graft_plot_run *runs, int n_runs, const char *title,
                             const char *png_path);

/* A confusion matrix as a figure (PNG): counts[true * n + predicted], shaded
 * by count, with the class names on both axes; 2 to 100 classes. */
#define GRAFT_PLOT_MAX_CLASSES 100
graft_status graft_plot_confusion(const long *counts, int n_classes, const char *const *classes,
                                  const char *title, const char *png_path);

/* An image file as a PNG whose longer side is max_side pixels (8 to 1024). */
graft_status graft_image_thumbnail(const char *image_path, int max_side, const char *png_path);

/*
 * A report comparing runs: report.md and one self-contained report.html
 * (figures embedded as data: URIs: nothing is fetched to view it) in
 * out_dir, with the figures beside them as PNG files (for report.md).
 * Sections: a table of the runs, their learning curves on shared axes, for
 * each run evaluated on its validation data a confusion matrix figure and
 * per-class precision, recall and F1, a gallery of its most confidently wrong
 * images, and a summary generated from these numbers only.
 */
typedef struct {
    const char *path;      /* the image file */
    int true_class, predicted_class;
    float probability;     /* of the predicted class */
} graft_report_image;

typedef struct {
    const char *label;     /* the run's name in the report ("mobilenet + dropout") */
    const char *dir;       /* its folder (shown, not read) */
    const char *base;      /* "mobilenet", ..., "scratch" */
    const char *head;      /* "dense1024", ...; NULL or "" for a model without a base */
    int input_size;
    const graft_history *h;
    const graft_history_stage *stages;
    int n_stages;
    size_t params_total, params_trainable; /* as in the run's last stage */
    /* The final model on its validation data (confusion NULL: not evaluated). */
    int n_classes;
    const char *const *classes;
    const long *confusion; /* n_classes x n_classes, rows: true class */
    const graft_report_image *wrong; /* most confidently wrong first */
    int n_wrong;
} graft_report_run;

graft_status graft_report_write(const graft_report_run *runs, int n_runs, const char *title,
                                const char *out_dir);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_API_REPORT_H */
