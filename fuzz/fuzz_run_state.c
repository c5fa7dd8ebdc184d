/* A run folder's whole state as `graft resume` reads it before training:
 * config.json, history.json and checkpoint.graft together (tools/run.c and
 * the library; the steps of cmd_resume and run_stage in tools/cmd_train.c,
 * which are static there, are followed here one by one).
 *
 * The input is the three files joined by SEP below: config.json SEP
 * history.json SEP checkpoint. A file not given, or given empty, is absent
 * from the folder.
 * The checkpoint part is the checkpoint without its weights: the harness
 * appends the zero weights and optimizer state that the model built from the
 * config needs (megabytes that mutations gain nothing from), then the CRC-32
 * (see fuzz_checkpoint.c): Adam's two moments, as resume compiles. Configs asking for models bigger than MAX_SIZE
 * pixels a side or MAX_CLASSES classes are read but not built: their memory
 * would only slow the fuzzer down (the zoo's own tests build those).
 *
 * What resume writes back (config.json) must read back to what saves the
 * same text again. */
#include "fuzz_util.h"
#include "cli.h"

#include <zlib.h>

#define MAX_SIZE 64
#define MAX_CLASSES 64
/* graft_source_skip draws batch by batch, and run_check_state allows up to
 * (epoch + 1) x steps x (batches a pass + 1): more than this many are not
 * skipped here, only for speed. */
#define MAX_SKIP 4096

static const char SEP[] = "\n#graft-run-file#\n";

static const uint8_t *find_sep(const uint8_t *p, const uint8_t *end)
{
    size_t n = sizeof SEP - 1;
    for (; p && (size_t)(end - p) >= n; p++)
        if (*p == (uint8_t)SEP[0] && memcmp(p, SEP, n) == 0) return p;
    return NULL;
}

static size_t weight_floats(graft_model *m)
{
    size_t n = 0;
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            graft_shape s = graft_layer_weight_shape(l, k);
            n += graft_shape_size(&s);
        }
    }
    return n;
}

static void write_checkpoint(const char *path, const uint8_t *head, size_t n, size_t payload)
{
    size_t size = n + payload + 4;
    uint8_t *buf = calloc(size, 1);
    if (!buf) abort();
    if (n) memcpy(buf, head, n);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)(size - 4));
    memcpy(buf + size - 4, &crc, 4);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, size, f) != size || fclose(f) != 0) abort();
    free(buf);
}

/* The text of config.json as just saved (NULL if it cannot be read). */
static char *saved_text(const char *dir)
{
    char p[300];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

/* What resume writes must load back to what writes the same text again
 * (paths are normalised once: a//b is saved as a/b). */
static void check_round_trip(const char *dir, const run_config *c)
{
    run_config back;
    if (run_config_save(dir, c) != 0) abort(); /* a tmpfs folder of our own */
    char *first = saved_text(dir);
    if (run_config_load(dir, &back) != 0) {
        fprintf(stderr, "fuzz_run_state: config.json as saved does not load back\n");
        abort();
    }
    if (run_config_save(dir, &back) != 0) abort();
    char *second = saved_text(dir);
    if (!first || !second || strcmp(first, second) != 0) {
        fprintf(stderr, "fuzz_run_state: config.json read back saves differently:\n%s\n---\n%s\n",
                first ? first : "?", second ? second : "?");
        abort();
    }
    free(first);
    free(second);
    run_config_free(&back);
}

static void resume(const char *dir, const uint8_t *ck_part, size_t ck_n)
{
    run_config c;
    graft_model *m = NULL;
    graft_history h;
    graft_history_init(&h);
    graft_history_stage stages[CLI_MAX_STAGES];
    int n_stages = 0;
    if (run_config_load(dir, &c) != 0) return;
    const char *hp = fuzz_path("history.json");
    int rc = 0;
    if (cli_is_file(hp)) rc = run_history_load(dir, &h, stages, CLI_MAX_STAGES, &n_stages);
    fuzz_check_message();
    if (rc == 0 && c.input_size <= MAX_SIZE && c.n_classes <= MAX_CLASSES) {
        run_config built = c;
        built.weights[0] = '\0'; /* the checkpoint holds every weight */
        rc = run_build_model(&built, &m);
    } else {
        rc = 1;
    }
    if (rc == 0) {
        run_set_trainable(&c, m);
        graft_compile_cfg cc = {.optimizer = graft_adam(c.lr),
                                .loss = c.n_classes > 2 ? GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY
                                                        : GRAFT_BINARY_CROSSENTROPY,
                                .seed = c.seed};
        rc = graft_model_compile(m, &cc) != GRAFT_OK;
        fuzz_check_message();
    }
    if (rc == 0) check_round_trip(dir, &c);
    if (rc == 0) {
        const char *ck = fuzz_path("checkpoint.graft");
        if (ck_part) write_checkpoint(ck, ck_part, ck_n, weight_floats(m) * sizeof(float) * 3);
        graft_train_state st;
        if (graft_train_state_load(m, ck, &h, &st) == GRAFT_OK) {
            if (st.epoch < 0 || st.train_batches < 0 || st.val_batches < 0) abort();
            /* A fresh source fast-forwarded to where the checkpoint stopped. */
            static const float x[8] = {0}, y[8] = {0};
            int batch = c.batch < 8 ? c.batch : 8;
            graft_source *s = graft_source_arrays(x, y, 8, graft_shape3(1, 1, 1), 1, batch, 1, c.seed);
            if (!s) abort();
            if (run_check_state(ck, &c, &st, s, NULL) == 0 && st.train_batches <= MAX_SKIP &&
                graft_source_skip(s, st.train_batches) != GRAFT_OK)
                abort();
            graft_source_free(s);
            /* The history resumes from the checkpoint's epoch. */
            if (h.n < 0) abort();
        }
        fuzz_check_message();
    }
    graft_model_free(m);
    graft_history_free(&h);
    run_config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    const uint8_t *end = data + size, *s1 = find_sep(data, end);
    const uint8_t *h = s1 ? s1 + sizeof SEP - 1 : NULL, *s2 = find_sep(h, end);
    const uint8_t *ck = s2 ? s2 + sizeof SEP - 1 : NULL;
    size_t n_cfg = (size_t)((s1 ? s1 : end) - data), n_h = h ? (size_t)((s2 ? s2 : end) - h) : 0;
    unlink(fuzz_path("config.json"));
    unlink(fuzz_path("history.json"));
    unlink(fuzz_path("checkpoint.graft"));
    if (n_cfg) fuzz_file("config.json", data, n_cfg);
    if (n_h) fuzz_file("history.json", h, n_h);
    if (ck == end) ck = NULL;
    FILE *err = stderr;
    stderr = devnull; /* the tool's messages would flood the log */
    resume(fuzz_dir, ck, ck ? (size_t)(end - ck) : 0);
    stderr = err;
    return 0;
}
