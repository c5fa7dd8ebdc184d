/* Hostile files: a run folder whose config.json, history.json or checkpoint
 * holds values out of range is refused with a message naming the file and
 * key (never a crash); model configs load in time linear in their layers
 * (counted, not timed), also listed in reverse; absurd sizes are refused
 * before gigabytes are allocated. GRAFT_BIN (set by tests/run.sh) names the tool. */
#include "check.h"
#include "config_gen.h"
#include "io/io.h"
#include "test_util.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[64];
static char out[1 << 16], err[1 << 16];
static const char *bin;

static bool one_line(const char *s) { return *s && strchr(s, '\n') == s + strlen(s) - 1; }

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = strlen(text), w = fwrite(text, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int copy_file(const char *from, const char *to)
{
    size_t cap = 1 << 24;
    char *buf = malloc(cap);
    FILE *f = fopen(from, "rb"), *g = f && buf ? fopen(to, "wb") : NULL;
    size_t n = g ? fread(buf, 1, cap, f) : 0;
    int rc = g && n > 0 && n < cap && fwrite(buf, 1, n, g) == n ? 0 : -1;
    if (f) fclose(f);
    if (g && fclose(g) != 0) rc = -1;
    free(buf);
    return rc;
}

/* A tiny image (PPM) so that graft can train a scratch CNN on two classes. */
static int write_ppm(const char *path, int size, unsigned seed)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fprintf(f, "P6\n%d %d\n255\n", size, size);
    for (int i = 0; i < size * size * 3; i++) fputc((int)((seed * 2654435761u + (unsigned)i * 40503u) >> 7) & 255, f);
    return fclose(f);
}

static char run_dir[128];

/* A real run folder: graft train on 2 x 4 images, scratch CNN at 32x32. */
static int make_run(void)
{
    char p[256];
    const char *cls[2] = {"cats", "dogs"};
    snprintf(p, sizeof p, "%s/data", tmp);
    mkdir(p, 0755);
    for (int c = 0; c < 2; c++) {
        snprintf(p, sizeof p, "%s/data/%s", tmp, cls[c]);
        if (mkdir(p, 0755) != 0) return -1;
        for (int i = 0; i < 4; i++) {
            snprintf(p, sizeof p, "%s/data/%s/%d.ppm", tmp, cls[c], i);
            if (write_ppm(p, 40, (unsigned)(c * 10 + i)) != 0) return -1;
        }
    }
    snprintf(run_dir, sizeof run_dir, "%s/run", tmp);
    char a[512];
    snprintf(a, sizeof a, "train --data %s/data --base scratch --input-size 32 --epochs 1 --batch 4 "
                          "--out %s --verbose 0", tmp, run_dir);
    int rc = graft("%s", a);
    if (rc != 0) fprintf(stderr, "graft train failed (%d): %s", rc, err);
    return rc;
}

/* The run's config.json with `key` set to the JSON `value`, alone in folder `dir`. */
static int hostile_config(const char *dir, const char *key, const char *value)
{
    char p[256], text[1 << 14];
    snprintf(p, sizeof p, "%s/config.json", run_dir);
    slurp(p, text, sizeof text);
    cJSON *j = cJSON_Parse(text), *v = cJSON_Parse(value);
    int rc = -1;
    if (j && v && cJSON_ReplaceItemInObjectCaseSensitive(j, key, v)) {
        v = NULL;
        char *s = cJSON_Print(j);
        mkdir(dir, 0755);
        snprintf(p, sizeof p, "%s/config.json", dir);
        rc = s ? write_text(p, s) : -1;
        free(s);
    }
    cJSON_Delete(v);
    cJSON_Delete(j);
    return rc;
}

static void test_resume_refuses_out_of_range_config(void)
{
    /* Each value is out of what `graft train`/`finetune` accept for it. */
    static const char *cases[][2] = {
        {"batch_size", "1000000"},     {"batch_size", "0"},          {"input_size", "100000"},
        {"input_size", "16"},          {"stage", "\"bogus\""},       {"stage", "\"frozen\""},
        {"n_base_layers", "1e9"},      {"n_base_layers", "-1"},      {"seed", "1e19"},
        {"learning_rate", "1e9"},      {"learning_rate", "-1"},      {"alpha", "0.05"},
        {"alpha", "7"},                {"target_epochs", "0"},       {"target_epochs", "1e12"},
        {"steps_per_epoch", "1.5"},    {"validation_steps", "1e300"}, {"unfreeze", "1e6"},
        {"base", "\"resnet18\""},      {"head", "\"dense4096\""},    {"preprocess", "\"none\""},
        {"interpolation", "\"cubic-ish\""}, {"augment", "\"yes\""},  {"classes", "[\"cats\"]"},
        {"classes", "[\"../../etc\", \"dogs\"]"}, {"classes", "[\"cats\", 7]"},
    };
    char dir[128], a[256];
    snprintf(dir, sizeof dir, "%s/hostile", tmp);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK(hostile_config(dir, cases[i][0], cases[i][1]) == 0);
        snprintf(a, sizeof a, "resume %s", dir);
        int rc = graft("%s", a);
        CHECK_MSG(rc == 1 && one_line(err) && strstr(err, "config.json") && strstr(err, cases[i][0]),
                  "\"%s\": %s gave exit %d: %s", cases[i][0], cases[i][1], rc, err);
    }
    /* Within range but not what this base has: refused once the model is built. */
    CHECK(hostile_config(dir, "n_base_layers", "5") == 0);
    snprintf(a, sizeof a, "resume %s", dir);
    CHECK_MSG(graft("%s", a) == 1 && one_line(err) && strstr(err, "config.json: \"n_base_layers\" is 5"), "%s", err);
    /* The run's own config passes every check (the resume stops later, without a checkpoint). */
    CHECK(hostile_config(dir, "seed", "1") == 0);
    CHECK_MSG(graft("%s", a) == 1 && !strstr(err, "config.json") && strstr(err, "checkpoint"), "%s", err);
    remove_tree(dir);
    rmdir(dir);
}

/* The run folder's other files read back: history.json and the checkpoint. */
static void test_resume_refuses_hostile_history_and_state(void)
{
    char dir[128], p[256], q[256], a[256];
    snprintf(dir, sizeof dir, "%s/state", tmp);
    mkdir(dir, 0755);
    for (const char *f = "config.json\0history.json\0checkpoint.graft\0"; *f; f += strlen(f) + 1) {
        snprintf(p, sizeof p, "%s/%s", run_dir, f);
        snprintf(q, sizeof q, "%s/%s", dir, f);
        CHECK_MSG(copy_file(p, q) == 0, "copying %s", p);
    }
    snprintf(a, sizeof a, "resume %s", dir);
    CHECK_MSG(graft("%s", a) == 0, "the copied run does not resume: %s", err); /* a finished stage */

    static const char *histories[] = {
        "{\"history\": {\"loss\": [1]}, \"stages\": [{\"name\": \"bogus\", \"first_epoch\": 0}]}",
        "{\"history\": {\"loss\": [1]}, \"stages\": [{\"name\": \"scratch\", \"first_epoch\": 5}]}",
        NULL, /* 17 stages, filled below */
    };
    char many[4096];
    int len = snprintf(many, sizeof many, "{\"history\": {\"loss\": [");
    for (int i = 0; i < 17; i++) len += snprintf(many + len, sizeof many - (size_t)len, "%s1", i ? ", " : "");
    len += snprintf(many + len, sizeof many - (size_t)len, "]}, \"stages\": [");
    for (int i = 0; i < 17; i++)
        len += snprintf(many + len, sizeof many - (size_t)len, "%s{\"name\": \"scratch\", \"first_epoch\": %d}",
                        i ? ", " : "", i);
    snprintf(many + len, sizeof many - (size_t)len, "]}");
    snprintf(p, sizeof p, "%s/history.json", dir);
    char good[1 << 14];
    slurp(p, good, sizeof good);
    for (int i = 0; i < 3; i++) {
        CHECK(write_text(p, histories[i] ? histories[i] : many) == 0);
        int rc = graft("%s", a);
        CHECK_MSG(rc == 1 && one_line(err) && strstr(err, "history.json") && strstr(err, "stages"),
                  "history %d: exit %d: %s", i, rc, err);
    }
    CHECK(write_text(p, good) == 0);

    /* A checkpoint (valid checksum) claiming more batches drawn than its epochs hold:
     * skipping them would take forever. */
    snprintf(q, sizeof q, "%s/checkpoint.graft", dir);
    snprintf(p, sizeof p, "%s/model.h5", run_dir);
    graft_model *m = NULL;
    CHECK_OK(graft_model_load(p, &m));
    if (!m) return;
    graft_compile_cfg cc = {.optimizer = graft_adam(1e-3f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 1};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_history h;
    graft_history_init(&h);
    graft_train_state st;
    CHECK_OK(graft_train_state_load(m, q, &h, &st));
    graft_train_state bad[2] = {st, st};
    bad[0].train_batches = 1L << 60;
    bad[1].epoch = 1000;
    for (int i = 0; i < 2; i++) {
        CHECK_OK(graft_train_state_save(m, &h, &bad[i], q));
        int rc = graft("%s", a);
        CHECK_MSG(rc == 1 && one_line(err) && strstr(err, "checkpoint.graft") &&
                      strstr(err, i ? "epoch 1000" : "batches drawn"),
                  "state %d: exit %d: %s", i, rc, err);
    }
    graft_history_free(&h);
    graft_model_free(m);
    remove_tree(dir);
    rmdir(dir);
}

/* A failure after flow_from_directory has listed its files (the prefetch
 * buffers of a huge batch cannot be allocated) is an error, not a crash. */
static void test_flow_failure_after_listing(void)
{
#ifdef __SANITIZE_ADDRESS__
    printf("  (skipped under ASan: its allocator aborts rather than return NULL)\n");
#else
    char dir[128];
    snprintf(dir, sizeof dir, "%s/data", tmp);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        long pages = 0, page = sysconf(_SC_PAGESIZE);
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1) _exit(3);
        fclose(f);
        struct rlimit r = {(rlim_t)pages * (rlim_t)page + (512L << 20), RLIM_INFINITY};
        if (setrlimit(RLIMIT_AS, &r) != 0) _exit(3);
        graft_flow_cfg fc = {.target_size = {64, 64}, .class_mode = GRAFT_CLASS_BINARY,
                             .batch_size = 65536, .quiet = 1};
        graft_source *s = NULL;
        graft_status st = graft_flow_from_directory(dir, NULL, &fc, &s);
        _exit(st == GRAFT_ENOMEM && !s ? 0 : 4);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
#endif
}

/* Operations counted while building a chain of n layers. */
static uint64_t build_ops(int n, bool dense, bool reverse, bool *ok)
{
    char *text = chain_config(n, dense, reverse);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    graft_model *m = NULL;
    uint64_t before = graft_ops_count();
    graft_status s = j ? io_model_from_config(j, "chain.json", &m) : GRAFT_ENOMEM;
    uint64_t ops = graft_ops_count() - before;
    *ok = s == GRAFT_OK && m && graft_model_num_layers(m) == n;
    /* Built in chain order whatever the listing's. */
    for (int i = 0; *ok && i < n; i += n / 10) {
        char name[16];
        snprintf(name, sizeof name, "l%d", i);
        graft_layer *l = graft_model_find(m, name);
        *ok = l && graft_layer_index(l) == i;
    }
    if (!*ok) fprintf(stderr, "  building %d layers: %s\n", n, graft_last_error());
    graft_model_free(m);
    cJSON_Delete(j);
    return ops;
}

static void test_config_loads_in_linear_time(void)
{
    for (int k = 0; k < 4; k++) {
        bool dense = k & 1, reverse = k & 2, ok_small, ok_big;
        uint64_t small = build_ops(2500, dense, reverse, &ok_small);
        uint64_t big = build_ops(10000, dense, reverse, &ok_big);
        CHECK(ok_small && ok_big);
        /* 4x the layers: 4x the work when linear (16x when quadratic). */
        CHECK_MSG(small > 0 && big <= 5 * small, "%s %s: %llu ops for 2500 layers, %llu for 10000",
                  dense ? "Dense" : "Activation", reverse ? "reversed" : "in order",
                  (unsigned long long)small, (unsigned long long)big);
    }
}

/* Out of order: the same order as passing over the list until every layer is
 * built (Keras's), whose layer indices weight files and `unfreeze` rely on. */
static void test_out_of_order_listing_keeps_pass_order(void)
{
#define L(name, from)                                                                             \
    "{\"class_name\": \"Activation\", \"name\": \"" name "\", \"config\": {\"name\": \"" name  \
    "\", \"activation\": \"relu\"}, \"inbound_nodes\": [[[\"" from "\", 0, 0, {}]]]}"
    const char *json =
        "{\"class_name\": \"Functional\", \"config\": {\"name\": \"m\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"in\", \"config\": {\"name\": \"in\", "
        "\"batch_input_shape\": [null, 2]}, \"inbound_nodes\": []}, " L("b", "c") ", " L("c", "in") ", "
        L("d", "b") ", " L("e", "in") ", " L("f", "g") ", " L("g", "d") "], "
        "\"input_layers\": [[\"in\", 0, 0]], \"output_layers\": [[\"f\", 0, 0]]}}";
#undef L
    cJSON *j = cJSON_Parse(json);
    graft_model *m = NULL;
    CHECK_OK(io_model_from_config(j, "order.json", &m));
    cJSON_Delete(j);
    if (!m) return;
    /* Pass 1: in, c, e (b, d, f wait); pass 2: b, d, g (f waits); pass 3: f. */
    const char *want[] = {"in", "c", "e", "b", "d", "g", "f"};
    CHECK(graft_model_num_layers(m) == 7);
    for (int i = 0; i < 7 && i < graft_model_num_layers(m); i++)
        CHECK_MSG(strcmp(graft_layer_name(graft_model_layer(m, i)), want[i]) == 0, "layer %d is %s, not %s",
                  i, graft_layer_name(graft_model_layer(m, i)), want[i]);
    graft_model_free(m);
    /* A cycle is named. */
    j = cJSON_Parse("{\"class_name\": \"Functional\", \"config\": {\"name\": \"m\", \"layers\": ["
                    "{\"class_name\": \"InputLayer\", \"name\": \"in\", \"config\": {\"name\": \"in\", "
                    "\"batch_input_shape\": [null, 2]}, \"inbound_nodes\": []}, "
                    "{\"class_name\": \"Add\", \"name\": \"x\", \"config\": {\"name\": \"x\"}, "
                    "\"inbound_nodes\": [[[\"in\", 0, 0, {}], [\"y\", 0, 0, {}]]]}, "
                    "{\"class_name\": \"Activation\", \"name\": \"y\", \"config\": {\"name\": \"y\", "
                    "\"activation\": \"relu\"}, \"inbound_nodes\": [[[\"x\", 0, 0, {}]]]}], "
                    "\"input_layers\": [[\"in\", 0, 0]], \"output_layers\": [[\"y\", 0, 0]]}}");
    m = NULL;
    CHECK(j && io_model_from_config(j, "cycle.json", &m) == GRAFT_EFORMAT && !m &&
          strstr(graft_last_error(), "cycle"));
    cJSON_Delete(j);
}

/* The .h5 side: listing a file's layers and matching them by name. */
static uint64_t h5_ops(int n, bool *ok)
{
    char *text = chain_config(n, true, false), path[128];
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    graft_model *m = NULL, *back = NULL;
    snprintf(path, sizeof path, "%s/chain.h5", tmp);
    *ok = j && io_model_from_config(j, "chain.json", &m) == GRAFT_OK && graft_model_save(m, path) == GRAFT_OK;
    uint64_t before = graft_ops_count();
    graft_load_opts by_name = {.by_name = 1};
    *ok = *ok && graft_model_load(path, &back) == GRAFT_OK && graft_model_load_weights(m, path, &by_name) == GRAFT_OK;
    uint64_t ops = graft_ops_count() - before;
    if (!*ok) fprintf(stderr, "  %d layers through .h5: %s\n", n, graft_last_error());
    graft_model_free(m);
    graft_model_free(back);
    cJSON_Delete(j);
    unlink(path);
    return ops;
}

static void test_h5_loads_in_linear_time(void)
{
    bool ok_small, ok_big;
    uint64_t small = h5_ops(500, &ok_small), big = h5_ops(2000, &ok_big);
    CHECK(ok_small && ok_big);
    CHECK_MSG(small > 0 && big <= 5 * small, "%llu ops for 500 layers, %llu for 2000",
              (unsigned long long)small, (unsigned long long)big);
}

/* Builds `json` in a child process; true when refused with `needle` in the
 * message and a peak RSS under 1 GiB. */
static bool refused_small(const char *json, const char *needle)
{
    int pipefd[2];
    if (pipe(pipefd) != 0) return false;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        cJSON *j = cJSON_Parse(json);
        graft_model *m = NULL;
        graft_status s = j ? io_model_from_config(j, "absurd.json", &m) : GRAFT_EFORMAT;
        const char *msg = graft_last_error();
        if (write(pipefd[1], msg, strlen(msg) + 1) < 0) _exit(3);
        _exit(s != GRAFT_OK && !m && strstr(msg, needle) ? 0 : 4);
    }
    close(pipefd[1]);
    char msg[1024] = "";
    ssize_t n = read(pipefd[0], msg, sizeof msg - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(pipefd[0]);
    int status = 0;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) != pid) return false;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && ru.ru_maxrss < (1L << 20); /* KiB */
    if (!ok) fprintf(stderr, "  status %d, peak RSS %ld KiB: %s\n", status, ru.ru_maxrss, msg);
    return ok;
}

static void test_absurd_sizes_refused_early(void)
{
    /* A million layers: refused on the count, before one is built. */
    gen_buf b = {0};
    gen_add(&b, "{\"class_name\": \"Functional\", \"config\": {\"name\": \"big\", \"input_layers\": "
                "[[\"l0\", 0, 0]], \"output_layers\": [[\"l0\", 0, 0]], \"layers\": [");
    for (int i = 0; i < 1000000; i++) gen_add(&b, i ? ", {}" : "{}");
    gen_add(&b, "]}}");
    CHECK(!b.failed && refused_small(b.s, "graft reads at most 100000"));
    free(b.s);
    char *seq = chain_config(100001, false, false);
    CHECK(seq && refused_small(seq, "graft reads at most 100000"));
    free(seq);
#define SEQ(input, layers)                                                                        \
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": [{\"class_name\": " \
    "\"InputLayer\", \"config\": {\"name\": \"i\", \"batch_input_shape\": [null, " input "]}}, " layers "]}}"
#define LAYER(cls, name, cfg) "{\"class_name\": \"" cls "\", \"config\": {\"name\": \"" name "\", " cfg "}}"
    /* A million channels: 27M weights in the first convolution, 9e12 in the second. */
    CHECK(refused_small(SEQ("8, 8, 3", LAYER("Conv2D", "c1", "\"filters\": 1000000, \"kernel_size\": 3") ", "
                                       LAYER("Conv2D", "c2", "\"filters\": 1000000, \"kernel_size\": 3")),
                        "parameters"));
    CHECK(refused_small(SEQ("1000000", LAYER("Dense", "d", "\"units\": 1000000")), "parameters"));
    /* An output of 4096 x 4096 x 1e6 values per sample. */
    CHECK(refused_small(SEQ("4096, 4096, 3", LAYER("Conv2D", "c", "\"filters\": 1000000, \"kernel_size\": 1")),
                        "values per sample"));
    /* A nested model does not escape the count. */
    char *inner = chain_config(60000, false, false), *outer = NULL;
    size_t cap = inner ? 2 * strlen(inner) + 512 : 0;
    if (inner && (outer = malloc(cap)))
        snprintf(outer, cap,
                 "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"o\", \"layers\": [%s, %s]}}",
                 inner, inner);
    CHECK(outer && refused_small(outer, "in all with the models around it"));
    free(inner);
    free(outer);
#undef SEQ
#undef LAYER
}

static void make_run_failed(void) { CHECK(!"graft train could not make a run folder"); }

int main(void)
{
    bin = tool_bin();
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "test_hostile_config needs %s\n", bin);
        return 1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/graft_hostile_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    tool_output(tmp, out, sizeof out, err, sizeof err);
    if (make_run() == 0) {
        RUN(test_resume_refuses_out_of_range_config);
        RUN(test_resume_refuses_hostile_history_and_state);
        RUN(test_flow_failure_after_listing);
    } else {
        RUN(make_run_failed);
    }
    RUN(test_config_loads_in_linear_time);
    RUN(test_out_of_order_listing_keeps_pass_order);
    RUN(test_h5_loads_in_linear_time);
    RUN(test_absurd_sizes_refused_early);
    remove_tree(tmp);
    rmdir(tmp);
    return CHECK_SUMMARY();
}
