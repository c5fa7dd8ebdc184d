/* The `graft` command-line tool: what its commands share. */
#ifndef GRAFT_CLI_H
#define GRAFT_CLI_H

#include "graft.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

#define CLI_PATH 4096

/* The ranges of a run's settings: the flags of train, finetune and lesson
 * take values in them, and a run folder's files read back are held to them. */
#define CLI_MIN_INPUT 32
#define CLI_MAX_INPUT 4096
#define CLI_MAX_BATCH 65536
#define CLI_MAX_EPOCHS 100000      /* per stage */
#define CLI_MAX_STAGES 16          /* in a run folder */
#define CLI_MAX_STEPS 100000000
#define CLI_MAX_UNFREEZE 100000
#define CLI_MAX_BASE_LAYERS 100000 /* graft's limit on a model's layers */
#define CLI_MAX_SEED 2147483647
#define CLI_MIN_ALPHA 0.1f
#define CLI_MAX_ALPHA 2.0f
#define CLI_MAX_LR 10.0f
#define CLI_MAX_CLASSES 100000 /* as flow_from_directory */

/* A run folder's config.json: what a run was made of, so that finetune,
 * evaluate, predict and a resume can rebuild the same model and data. */
typedef struct {
    char base[32];      /* a zoo architecture's graft name (mobilenet_v2, ...) or scratch */
    float alpha;        /* MobileNet/V2/V3 width; 0 for the others */
    int minimalistic;   /* MobileNetV3's variant without squeeze-excite and hard-swish */
    int input_size;
    char head[32];      /* a run_heads name */
    char weights[CLI_PATH]; /* what the base was loaded from ("" random) */
    char train_dir[CLI_PATH], val_dir[CLI_PATH];
    char preprocess[16]; /* model (preprocess_input) or rescale (1/255) */
    char interpolation[16];
    int batch, steps_per_epoch, validation_steps, augment, no_cache;
    unsigned long long seed;
    int n_base_layers;  /* layers [0, n) are the base */
    int n_classes;
    char **classes;
    /* The stage in progress or last run, so that a resume can finish it. */
    char stage[32];     /* "frozen", "fine-tune", "scratch" */
    int unfreeze;       /* fine-tune: the last N base layers train */
    float lr;
    int target_epochs;
    /* Not in config.json: decode JPEGs at full size, as Keras does (graft
     * evaluate on a model of another origin), not reduced by DCT scaling as
     * graft's runs are trained. */
    int full_decode;
} run_config;

/* config.json is UTF-8, but folder names and paths are bytes. A byte that is
 * not part of valid UTF-8 is stored as "//xHH" (HH: two upper-case hex
 * digits). A class name holds no '/', and in paths a doubled '/' is stored as
 * one (the same path), so a stored "//" always starts such an escape and
 * strings that are valid UTF-8 are stored as they are. encode returns a new
 * string (NULL: out of memory); decode works in place. */
char *run_text_encode(const char *bytes);
void run_text_decode(char *s);

/* The zoo cfg of the run's base (no top, its alpha and input size, built
 * for Keras's ImageNet file where that is its weights). */
void run_base_cfg(const run_config *c, graft_zoo_cfg *z);
void run_config_free(run_config *c);
int run_config_save(const char *run_dir, const run_config *c);
/* Reads config.json back, refusing (with the file and key named) any value
 * outside what train and finetune can write. */
int run_config_load(const char *run_dir, run_config *c);
/* config.json's text (malloc'd; NULL: out of memory) and the same read back
 * from text, with path naming it in messages. */
char *run_config_text(const run_config *c);
int run_config_parse(const char *text, const char *path, run_config *c);
/* "scratch" or a zoo architecture, in any of its spellings. */
bool run_known_base(const char *base);
/* Whether the base takes Keras's alpha (MobileNet, MobileNetV2, MobileNetV3)
 * and minimalistic (MobileNetV3) arguments; any spelling of the name. */
bool run_base_has_alpha(const char *base);
bool run_base_has_minimalistic(const char *base);
/* The "--alpha A [--minimalistic]" that rebuilds such a base (nothing for the
 * others), for messages. */
void run_width_flags(const char *base, float alpha, int minimalistic, char *buf, size_t cap);
/* The heads on a base: dense1024 (GAP -> Dense(1024, relu) -> out, the
 * lesson's), dropout (GAP -> Dropout(0.5) -> out, the homework's) and
 * dense1024-dropout (GAP -> Dropout(0.5) -> Dense(1024, relu) -> out). */
#define RUN_HEADS "dense1024, dropout or dense1024-dropout"
bool run_known_head(const char *head);
/* history.json of a run folder, held to the run's limits (at most max_stages
 * stages, each one graft names). */
int run_history_load(const char *run_dir, graft_history *h, graft_history_stage *stages,
                     int max_stages, int *n_stages);
/* A checkpoint's counters against the run's config and data (path names it). */
int run_check_state(const char *path, const run_config *c, const graft_train_state *st,
                    const graft_source *train, const graft_source *val);

/* Builds the run's model (base + head, or the scratch CNN), loading the
 * base's weights from c->weights when set; *n_base gets the base's layers. */
int run_build_model(const run_config *c, graft_model **out);
/* Sets `trainable` for the run's stage: frozen base, last N unfrozen, or all. */
void run_set_trainable(const run_config *c, graft_model *m);
/* Training and validation sources as the run config says (val may be NULL). */
int run_open_data(const run_config *c, bool training_shuffle, graft_source **train,
                  graft_source **val);

/* Takes RUN_DIR/.lock for a command that writes into the run folder; returns
 * the lock's descriptor, or -1 after printing "graft CMD: RUN_DIR is in use by
 * another graft process (pid N)" (or why the lock could not be taken).
 * *created: the .lock file was made by this call. */
int run_lock(const char *cmd, const char *run_dir, bool *created);
void run_unlock(int fd);

/* The command being run ("train", ...), set by main: every message names it. */
extern const char *cli_cmd;
/* "graft CMD: ..." on stderr; returns 1 (the exit code of a failure). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_fail_status(graft_status s, const char *what);
/* A usage error (a missing or malformed flag or argument): "graft CMD: ..."
 * on stderr; returns 2, the exit code of usage errors. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Strict number parsing: the whole argument must be a number in [lo, hi];
 * else a usage error naming --opt (exit code 2). */
int cli_opt_int(const char *opt, const char *v, int lo, int hi, int *out);
int cli_opt_float(const char *opt, const char *v, float lo, float hi, float *out);
/* --json: from here stdout is stderr (progress, "Found N images", epoch
 * lines), and cli_json() is the real stdout, where only JSON goes. */
int cli_json_begin(void);
FILE *cli_json(void);
/* s as a JSON string (quoted, escaped) on f. */
void cli_json_string(FILE *f, const char *s);
#ifdef __clang_analyzer__
/* As for graft_fail in src/internal.h: show the analyzer, which sees one file at
 * a time, that these return 1, so it does not follow failed paths on as if they
 * had gone well. */
#define cli_fail(...) (cli_fail(__VA_ARGS__), 1)
#define cli_fail_status(s, what) (cli_fail_status((s), (what)), 1)
#define cli_usage(...) (cli_usage(__VA_ARGS__), 2)
#endif
bool cli_is_dir(const char *path);
bool cli_is_file(const char *path);
/* repo/../shared beside the running executable's repository ("" if unknown). */
void cli_shared_dir(char *buf, size_t cap);
/* Where ImageNet weights for `base` (MobileNetV3: minimalistic or not) are
 * found, in the documented order; on failure prints every place looked at.
 * *alpha may be 0 ("any"): then it is set to the alpha of the file found. */
int cli_find_weights(const char *base, float *alpha, int minimalistic, int input_size,
                     const char *opt, char *out, size_t cap);
/* The lesson's dataset folder (holding train/ and validation/), in order;
 * last, downloaded and checked (insecure: a $GRAFT_DATA_URL archive without
 * $GRAFT_DATA_SHA256 is unpacked unchecked). */
int cli_find_lesson_data(const char *opt, int insecure, char *out, size_t cap);

/* Ctrl-C: the model being trained is asked to stop after its batch; a second
 * Ctrl-C, or one after cli_watch_sigint(NULL), ends the process at once. */
void cli_watch_sigint(graft_model *m);

/* The ranks of an `mpirun -np N graft ...` (NULL: one process; tools/graft.c
 * sets it). Rank 0 alone prints and writes the run folder. */
extern graft_comm *cli_comm;
static inline bool cli_writes(void) { return graft_comm_rank(cli_comm) == 0; }
/* Set by a command whose ranks agreed on its outcome (graft grid running
 * whole runs per rank): a failure then ends every rank alike, without
 * MPI_Abort ending the job for it. */
extern bool cli_rc_agreed;

/* Copies a file (crash-safe: a temporary file renamed into place). */
int cli_copy_file(const char *from, const char *to);
/* Saves the run's model as a Keras .h5 holding the run's config.json in its
 * "graft_config" attribute (so that a bare .h5 knows its classes,
 * preprocessing, interpolation and input size), through a temporary file.
 * 0; 1 after a message; 2 when graft cannot write the model's config
 * (GRAFT_EUNSUPPORTED, the reason in graft_last_error(), nothing printed). */
int run_save_model(const graft_model *m, const run_config *c, const char *path);
/* That attribute of a Keras .h5 read back: 0 and *c filled when there, -1
 * when the file has none (or it is not valid), nothing printed. */
int run_config_from_h5(const char *path, run_config *c);

/* A model to use (predict, evaluate, export): a run folder, built from its
 * config.json with its model.h5's weights, or a model file graft reads. A
 * model.h5 graft saved brings its run's config (is_run) too. */
typedef struct {
    graft_model *m;
    run_config run;   /* the run's config when is_run, else zeroed */
    bool is_run;
    const char *arch; /* a zoo architecture recognised in a model file, or NULL */
} cli_model;
/* 0, or 1 after a message naming the path; free with cli_model_free either way. */
int cli_model_open(const char *path, cli_model *out);
void cli_model_free(cli_model *cm);
/* The model's preprocessing over n_pixels RGB pixels in place: a run's
 * (its base's preprocess_input, or x / 255), else the recognised
 * architecture's, else x / 255. */
graft_status cli_model_preprocess(const cli_model *l, float *x, size_t n_pixels);
/* Appends a copy of path to the list; false when out of memory. */
bool cli_push_path(char ***all, int *n, int *cap, const char *path);

/* --int8's calibration set: how many images by default (ONNX Runtime's and
 * TensorFlow Lite's guides calibrate on a hundred or a few hundred), and at
 * most. */
#define CLI_CALIBRATION_IMAGES 200
#define CLI_MAX_CALIBRATION 100000
#define INT8_HELP                                                                              \
    "--int8 DIR: run the base in 8 bits (oneDNN int8, VNNI where the CPU has it), calibrated\n" \
    "on --calibration-images N (default 200) images spread over DIR (its images, or its\n"     \
    "subfolders' ones), read as predict reads them; the head stays in float. The layers it\n"  \
    "takes and the first in float are printed on stderr.\n"
/* --int8 DIR: `count` images spread evenly over DIR's (its own, else its
 * subfolders'), decoded as predict decodes them for this model with
 * `interp` and preprocessed, calibrate graft_model_quantize_int8; prints on
 * stderr how far the 8-bit run goes. 0, or 1 after a message. */
int cli_quantize(const cli_model *l, const char *dir, int count, graft_interpolation interp);

/* graft grid's steps (cmd_train.c, cmd_finetune.c, cmd_resume.c): a new run
 * trained (its frozen stage), a fine-tuning, or a resume. Each run opens its own data; share makes the
 * runs on the same images and base find each other's features in
 * share->store (train_uid/val_uid are set by the first run). */
typedef struct {
    graft_feature_store *store;
    uint64_t train_uid, val_uid;
} cli_share;
int cli_grid_train(run_config *c, const char *data, const char *weights, const char *out,
                   int epochs, int next_unfreeze, cli_share *sh);
int cli_grid_finetune(const char *run_dir, int unfreeze, float lr, int epochs, cli_share *sh);
int cli_grid_resume(const char *run_dir, cli_share *sh);
/* The lesson's homework as a grid (cmd_grid.c): MobileNet and VGG16 under the
 * lesson's and the homework's heads, fine-tuned, the CNN from scratch, and
 * the report, in out. */
int cli_grid_homework(const char *data_dir, const char *out, bool whole_epochs, bool json);
/* graft report's work (cmd_report.c): the report of run folders into out_dir. */
int cli_report(const char *const *run_dirs, int n, const char *out_dir, const char *title);
/* The zoo architecture (only_arch, or any when NULL), alpha and (MobileNetV3)
 * minimalistic whose base without top loads every weighted layer from the
 * weights file: 0, or -1 when none fits. */
int cli_match_weights(const char *file, const char *only_arch, char *arch, size_t cap, float *alpha,
                      int *minimalistic);
/* graft summary of a weights-only .h5: its layers, weight shapes, total
 * parameters and the zoo base they fit; -1 when it is not such a file. */
int cli_summary_weights(const char *path);
/* What train_parse sets before any flag: train's defaults. */
void cli_train_defaults(run_config *c);

int cmd_train(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_lesson(int argc, char **argv);
int cmd_export(int argc, char **argv);

int cmd_grid(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_models(int argc, char **argv);

#endif
