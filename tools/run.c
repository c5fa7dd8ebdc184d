/* Run folders (config.json), building a run's model and data, and finding
 * weights and the lesson's data in their documented places. */
#include "cli.h"
#include "core/file_open.h" /* the library's reader of inputs, FIFO-safe */

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#undef cli_fail /* the analyzer's stand-ins from cli.h; these are the real ones */
#undef cli_fail_status
#undef cli_usage

const char *cli_cmd;

static void say(const char *fmt, va_list ap)
{
    if (cli_cmd) fprintf(stderr, "graft %s: ", cli_cmd);
    else fputs("graft: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

graft_comm *cli_comm;
bool cli_rc_agreed;

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    return 1;
}

int cli_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    return 2;
}

static FILE *json_out;

int cli_json_begin(void)
{
    if (json_out) return 0;
    fflush(stdout);
    int fd = dup(STDOUT_FILENO);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
        if (f) fclose(f);
        else if (fd >= 0) close(fd);
        return cli_fail("--json: cannot set stdout aside: %s", strerror(errno));
    }
    json_out = f;
    return 0;
}

FILE *cli_json(void) { return json_out ? json_out : stdout; }

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

int cli_fail_status(graft_status s, const char *what)
{
    const char *msg = graft_last_error();
    /* The library's messages name their file first: said once. */
    size_t n = strlen(what);
    if (n && strncmp(msg, what, n) == 0 && (msg[n] == ':' || msg[n] == ' ')) return cli_fail("%s", msg);
    return cli_fail("%s: %s", what, *msg ? msg : graft_status_name(s));
}

bool cli_is_dir(const char *path)
{
    struct stat st;
    return path && *path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool cli_is_file(const char *path)
{
    struct stat st;
    return path && *path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

void cli_shared_dir(char *buf, size_t cap)
{
    /* The binary lives in <repo>/build/graft (or deeper: build/avx2/graft);
     * shared/ sits beside <repo>, the first folder up that holds
     * include/graft.h. */
    char exe[CLI_PATH], probe[CLI_PATH + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    buf[0] = '\0';
    if (n <= 0) return;
    exe[n] = '\0';
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) return;
        *slash = '\0';
        snprintf(probe, sizeof probe, "%s/include/graft.h", exe);
        if (up >= 1 && cli_is_file(probe)) break;
        if (up == 3) return;
    }
    snprintf(buf, cap, "%.*s/../shared", (int)(cap > 16 ? cap - 16 : 0), exe);
}

/* ------------------------------------------------------------ config.json */

void run_config_free(run_config *c)
{
    for (int i = 0; c->classes && i < c->n_classes; i++) free(c->classes[i]);
    free(c->classes);
    c->classes = NULL;
    c->n_classes = 0;
}

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 when s[0] does not
 * start one (overlong forms, surrogates and code points past U+10FFFF too). */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

char *run_text_encode(const char *bytes)
{
    const unsigned char *s = (const unsigned char *)bytes;
    size_t len = strlen(bytes);
    char *out = malloc(5 * len + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_len(s + i);
        if (s[i] == '/' && o > out && o[-1] == '/') {
            i++; /* a//b is a/b: doubled slashes are left for the escapes */
        } else if (n) {
            memcpy(o, s + i, n);
            o += n;
            i += n;
        } else {
            o += snprintf(o, 6, "//x%02X", s[i++]);
        }
    }
    *o = '\0';
    return out;
}

void run_text_decode(char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *o = s;
    for (const char *p = s; *p;) {
        const char *h1 = p[0] == '/' && p[1] == '/' && p[2] == 'x' && p[3] ? strchr(hex, p[3]) : NULL;
        const char *h2 = h1 && p[4] ? strchr(hex, p[4]) : NULL;
        if (h1 && h2) {
            *o++ = (char)((h1 - hex) << 4 | (h2 - hex));
            p += 5;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
}

/* The same crash-safe replacement as every file the library writes; a
 * failed write is caught (and named) by the commit, which checks the stream. */
static graft_status write_text(FILE *f, void *text)
{
    fputs(text, f);
    fputc('\n', f);
    return GRAFT_OK;
}

char *run_config_text(const run_config *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *cls = cJSON_CreateArray();
    if (!j || !cls) {
        cJSON_Delete(j);
        cJSON_Delete(cls);
        return NULL;
    }
    cJSON_AddStringToObject(j, "base", c->base);
    cJSON_AddNumberToObject(j, "alpha", c->alpha);
    cJSON_AddBoolToObject(j, "minimalistic", c->minimalistic);
    cJSON_AddNumberToObject(j, "input_size", c->input_size);
    cJSON_AddStringToObject(j, "head", c->head);
    const char *paths[3][2] = {{"weights", c->weights}, {"train_dir", c->train_dir},
                               {"validation_dir", c->val_dir}};
    bool encoded = true;
    for (int i = 0; i < 3; i++) {
        char *e = run_text_encode(paths[i][1]);
        encoded &= e && cJSON_AddStringToObject(j, paths[i][0], e);
        free(e);
    }
    cJSON_AddStringToObject(j, "preprocess", c->preprocess);
    cJSON_AddStringToObject(j, "interpolation", c->interpolation);
    cJSON_AddNumberToObject(j, "batch_size", c->batch);
    cJSON_AddNumberToObject(j, "steps_per_epoch", c->steps_per_epoch);
    cJSON_AddNumberToObject(j, "validation_steps", c->validation_steps);
    cJSON_AddBoolToObject(j, "augment", c->augment);
    cJSON_AddBoolToObject(j, "no_feature_cache", c->no_cache);
    cJSON_AddNumberToObject(j, "seed", (double)c->seed);
    cJSON_AddNumberToObject(j, "n_base_layers", c->n_base_layers);
    for (int i = 0; i < c->n_classes; i++) {
        char *e = run_text_encode(c->classes[i]);
        encoded &= e && cJSON_AddItemToArray(cls, cJSON_CreateString(e));
        free(e);
    }
    cJSON_AddItemToObject(j, "classes", cls);
    cJSON_AddStringToObject(j, "stage", c->stage);
    cJSON_AddNumberToObject(j, "unfreeze", c->unfreeze);
    cJSON_AddNumberToObject(j, "learning_rate", c->lr);
    cJSON_AddNumberToObject(j, "target_epochs", c->target_epochs);
    char *text = encoded ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    return text;
}

int run_config_save(const char *run_dir, const run_config *c)
{
    if (!cli_writes()) return 0; /* rank 0 alone writes the run folder */
    char *text = run_config_text(c);
    if (!text) return cli_fail("out of memory writing the run config");
    char path[CLI_PATH];
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    graft_status s = graft_file_write_atomic(path, write_text, text);
    free(text);
    if (s != GRAFT_OK) return cli_fail_status(s, path);
    return 0;
}

static const char *const stages[] = {"frozen", "fine-tune", "scratch"};

static bool one_of(const char *v, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v, list[i]) == 0) return true;
    return false;
}

/* "scratch" or a zoo architecture, in any of its spellings (graft_zoo_find). */
bool run_known_base(const char *base)
{
    return base && (strcmp(base, "scratch") == 0 || graft_zoo_find(base));
}

static bool base_is(const char *base, const char *const *names, size_t n)
{
    const graft_zoo_arch *a = base ? graft_zoo_find(base) : NULL;
    return a && one_of(a->name, names, n);
}

bool run_base_has_alpha(const char *base)
{
    static const char *const width[] = {"mobilenet", "mobilenet_v2", "mobilenetv3small",
                                        "mobilenetv3large"};
    return base_is(base, width, sizeof width / sizeof *width);
}

bool run_base_has_minimalistic(const char *base)
{
    static const char *const v3[] = {"mobilenetv3small", "mobilenetv3large"};
    return base_is(base, v3, sizeof v3 / sizeof *v3);
}

void run_width_flags(const char *base, float alpha, int minimalistic, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (run_base_has_alpha(base))
        snprintf(buf, cap, " --alpha %g%s", alpha > 0 ? alpha : 1.0f,
                 minimalistic && run_base_has_minimalistic(base) ? " --minimalistic" : "");
}

static const char *const heads[] = {"dense1024", "dropout", "dense1024-dropout"};

bool run_known_head(const char *head) { return head && one_of(head, heads, sizeof heads / sizeof *heads); }

/* A class is a folder below the data folders: one name, not a path, once
 * its bytes that are not UTF-8 are unescaped (run_text_decode). */
static bool class_name_ok(const char *v)
{
    char name[5 * 256];
    if (snprintf(name, sizeof name, "%s", v) >= (int)sizeof name) return false;
    run_text_decode(name);
    return name[0] && strlen(name) < 256 && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/* The numbers of config.json and the ranges their flags take. */
typedef struct {
    const char *key;
    double lo, hi;
    bool whole;
} num_range;

static const num_range ranges[] = {
    {"alpha", 0, CLI_MAX_ALPHA, false}, /* 0: not a MobileNet */
    {"input_size", CLI_MIN_INPUT, CLI_MAX_INPUT, true},
    {"batch_size", 1, CLI_MAX_BATCH, true},
    {"steps_per_epoch", 0, CLI_MAX_STEPS, true}, /* 0: one pass */
    {"validation_steps", 0, CLI_MAX_STEPS, true},
    {"seed", 0, CLI_MAX_SEED, true},
    {"n_base_layers", 0, CLI_MAX_BASE_LAYERS, true},
    {"unfreeze", 0, CLI_MAX_UNFREEZE, true},
    {"learning_rate", 0, CLI_MAX_LR, false},
    {"target_epochs", 1, (double)CLI_MAX_STAGES * CLI_MAX_EPOCHS, true},
};
enum { N_RANGES = sizeof ranges / sizeof *ranges };

/* Checks every key of config.json into v[] (the numbers, in ranges' order). */
static int check_config(const char *path, const cJSON *j, double v[N_RANGES])
{
    for (int i = 0; i < N_RANGES; i++) {
        const num_range *r = &ranges[i];
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, r->key);
        if (!cJSON_IsNumber(x)) return cli_fail("%s: \"%s\" is missing or not a number", path, r->key);
        double d = x->valuedouble;
        /* Checked before the conversions to int, which are undefined out of range. */
        if (!(d >= r->lo && d <= r->hi) || (r->whole && d != (double)(long long)d))
            return cli_fail("%s: \"%s\" is %.17g; it must be a %s in [%g, %g]", path, r->key, d,
                            r->whole ? "whole number" : "number", r->lo, r->hi);
        v[i] = d;
    }
    if (v[0] != 0 && v[0] < CLI_MIN_ALPHA)
        return cli_fail("%s: \"alpha\" is %g; it must be 0 (not a MobileNet) or in [%g, %g]", path, v[0],
                        CLI_MIN_ALPHA, CLI_MAX_ALPHA);
    const char *base = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "base"));
    const char *stage = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "stage"));
    const char *head = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "head"));
    const char *pre = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "preprocess"));
    const char *interp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "interpolation"));
    graft_interpolation im;
    if (!run_known_base(base))
        return cli_fail("%s: \"base\" '%s' is not a zoo architecture or scratch", path, base);
    if (!one_of(stage, stages, sizeof stages / sizeof *stages))
        return cli_fail("%s: \"stage\" '%s' is not frozen, fine-tune or scratch", path, stage);
    if ((strcmp(base, "scratch") == 0) != (strcmp(stage, "scratch") == 0))
        return cli_fail("%s: \"stage\" '%s' does not go with \"base\" '%s'", path, stage, base);
    if (!run_known_head(head))
        return cli_fail("%s: \"head\" '%s' is not " RUN_HEADS, path, head);
    if (strcmp(pre, "model") != 0 && strcmp(pre, "rescale") != 0)
        return cli_fail("%s: \"preprocess\" '%s' is not model or rescale", path, pre);
    if (interp[0] && graft_interpolation_parse(interp, &im) != GRAFT_OK)
        return cli_fail("%s: \"interpolation\" '%s' is not one graft knows (nearest, bilinear, area, ...)",
                        path, interp);
    for (const char *k = "augment\0no_feature_cache\0minimalistic\0"; *k; k += strlen(k) + 1) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, k);
        if (b && !cJSON_IsBool(b)) return cli_fail("%s: \"%s\" is not true or false", path, k);
    }
    /* Absent in the runs of earlier versions: false. */
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "minimalistic")) &&
        !run_base_has_minimalistic(base))
        return cli_fail("%s: \"minimalistic\" is true, but only a MobileNetV3 base has that variant, "
                        "not '%s'",
                        path, base);
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "classes"), *e;
    int n = cJSON_IsArray(cls) ? cJSON_GetArraySize(cls) : 0;
    if (n < 2 || n > CLI_MAX_CLASSES)
        return cli_fail("%s: \"classes\" must list 2 to %d class names", path, CLI_MAX_CLASSES);
    cJSON_ArrayForEach(e, cls)
    {
        if (!cJSON_IsString(e) || !class_name_ok(e->valuestring))
            return cli_fail("%s: \"classes\" holds an entry that is not a class folder's name", path);
    }
    return 0;
}

int run_config_load(const char *run_dir, run_config *c)
{
    memset(c, 0, sizeof *c);
    char path[CLI_PATH];
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    FILE *f;
    if (graft_fopen_regular(path, &f, NULL) != GRAFT_OK)
        return cli_fail("%s is not a run folder: %s", run_dir, graft_last_error());
    char *text = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size > 0 && size < (1 << 24) && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)size + 1)) &&
        fread(text, 1, (size_t)size, f) == (size_t)size)
        text[size] = '\0';
    else {
        free(text);
        text = NULL;
    }
    fclose(f);
    if (!text) return cli_fail("%s is not a valid run config", path);
    int rc = run_config_parse(text, path, c);
    free(text);
    return rc;
}

int run_config_parse(const char *text, const char *path, run_config *c)
{
    memset(c, 0, sizeof *c);
    cJSON *j = cJSON_Parse(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return cli_fail("%s is not a valid run config", path);
    }
    const char *strs[][2] = {{"base", c->base},       {"head", c->head},
                             {"weights", c->weights}, {"train_dir", c->train_dir},
                             {"validation_dir", c->val_dir}, {"preprocess", c->preprocess},
                             {"interpolation", c->interpolation}, {"stage", c->stage}};
    size_t caps[] = {sizeof c->base, sizeof c->head, sizeof c->weights, sizeof c->train_dir,
                     sizeof c->val_dir, sizeof c->preprocess, sizeof c->interpolation,
                     sizeof c->stage};
    int rc = 0;
    for (size_t i = 0; i < sizeof caps / sizeof *caps; i++) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, strs[i][0]));
        if (!v || strlen(v) >= caps[i]) {
            rc = cli_fail("%s: \"%s\" is missing or too long", path, strs[i][0]);
            break;
        }
        memcpy((char *)strs[i][1], v, strlen(v) + 1);
        run_text_decode((char *)strs[i][1]);
    }
    double v[N_RANGES] = {0};
    if (rc == 0) rc = check_config(path, j, v);
    if (rc == 0) {
        c->alpha = (float)v[0];
        c->input_size = (int)v[1];
        c->batch = (int)v[2];
        c->steps_per_epoch = (int)v[3];
        c->validation_steps = (int)v[4];
        c->seed = (unsigned long long)v[5];
        c->n_base_layers = (int)v[6];
        c->unfreeze = (int)v[7];
        c->lr = (float)v[8];
        c->target_epochs = (int)v[9];
        c->augment = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "augment"));
        c->no_cache = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "no_feature_cache"));
        c->minimalistic = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "minimalistic"));
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "classes"), *e;
        int n = cJSON_GetArraySize(cls);
        c->classes = calloc((size_t)n, sizeof(char *));
        cJSON_ArrayForEach(e, cls)
        {
            if (!c->classes || !(c->classes[c->n_classes] = strdup(e->valuestring))) break;
            run_text_decode(c->classes[c->n_classes]);
            c->n_classes++;
        }
        if (c->n_classes != n) rc = cli_fail("out of memory reading %s", path);
    }
    cJSON_Delete(j);
    if (rc) run_config_free(c);
    return rc;
}

int run_history_load(const char *run_dir, graft_history *h, graft_history_stage *st, int max_stages,
                     int *n_stages)
{
    char p[CLI_PATH + 32];
    snprintf(p, sizeof p, "%s/history.json", run_dir);
    graft_history_stage *read = NULL;
    int n = 0, rc = 0;
    *n_stages = 0;
    graft_status s = graft_history_load_json(p, h, &read, &n);
    if (s != GRAFT_OK) return cli_fail_status(s, p);
    if (h->n > CLI_MAX_STAGES * CLI_MAX_EPOCHS)
        rc = cli_fail("%s: %d epochs, more than a run's %d", p, h->n, CLI_MAX_STAGES * CLI_MAX_EPOCHS);
    else if (n > max_stages)
        rc = cli_fail("%s: \"stages\" lists %d stages, more than a run's %d", p, n, max_stages);
    for (int i = 0; i < n && rc == 0; i++) {
        if (!one_of(read[i].name, stages, sizeof stages / sizeof *stages))
            rc = cli_fail("%s: \"stages\"[%d] is '%s', not frozen, fine-tune or scratch", p, i, read[i].name);
        else if (read[i].first_epoch > h->n)
            rc = cli_fail("%s: \"stages\"[%d] starts at epoch %d, after the %d epochs recorded", p, i,
                          read[i].first_epoch, h->n);
    }
    if (rc == 0) {
        if (n) memcpy(st, read, (size_t)n * sizeof *st);
        *n_stages = n;
    } else {
        graft_history_free(h);
    }
    free(read);
    return rc;
}

int run_check_state(const char *path, const run_config *c, const graft_train_state *st,
                    const graft_source *train, const graft_source *val)
{
    if (st->epoch > c->target_epochs)
        return cli_fail("%s: epoch %d is past the stage's last (%d in config.json)", path, st->epoch,
                        c->target_epochs);
    /* At most every batch of every epoch so far, each retried once per batch
     * of a pass when a whole batch was unreadable. */
    const graft_source *src[2] = {train, val};
    long steps[2] = {c->steps_per_epoch, c->validation_steps};
    long drawn[2] = {st->train_batches, st->val_batches};
    for (int k = 0; k < 2; k++) {
        if (!src[k]) continue;
        double per_epoch = (double)(steps[k] ? steps[k] : src[k]->length) * (src[k]->length + 1);
        if (drawn[k] < 0 || (double)drawn[k] > (st->epoch + 1.0) * per_epoch)
            return cli_fail("%s: %ld %s batches drawn is more than %d epochs of this data can draw",
                            path, drawn[k], k ? "validation" : "training", st->epoch + 1);
    }
    return 0;
}

/* ------------------------------------------------------------ model and data */

static graft_model *scratch_cnn(int size, int n_out)
{
    graft_model *m = graft_model_new("scratch_cnn");
    graft_input(m, "input_1", graft_shape3(size, size, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 32, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 64, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 128, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.units = n_out,
                                           .activation = n_out == 1 ? GRAFT_SIGMOID : GRAFT_SOFTMAX});
    return m;
}

int run_build_model(const run_config *c, graft_model **out)
{
    *out = NULL;
    int n_out = c->n_classes == 2 ? 1 : c->n_classes;
    graft_activation act = n_out == 1 ? GRAFT_SIGMOID : GRAFT_SOFTMAX;
    graft_model *m;
    int base_layers = 0;
    if (strcmp(c->base, "scratch") == 0) {
        m = scratch_cnn(c->input_size, n_out);
    } else {
        graft_zoo_cfg z;
        run_base_cfg(c, &z);
        graft_status s = graft_zoo_build(c->base, &z, &m);
        if (s != GRAFT_OK) return cli_fail_status(s, "building the base");
        base_layers = graft_model_num_layers(m);
        if (!z.imagenet_weights && c->n_base_layers == base_layers + 1) {
            /* A run trained from Keras's ImageNet file, rebuilt without its
             * weights (from its own files): the base it was built as. */
            graft_model_free(m);
            z.imagenet_weights = 1;
            if ((s = graft_zoo_build(c->base, &z, &m)) != GRAFT_OK)
                return cli_fail_status(s, "building the base");
            base_layers = graft_model_num_layers(m);
        }
        graft_layer *x = graft_global_average_pooling2d(m, NULL, "global_average_pooling2d");
        if (!run_known_head(c->head)) {
            graft_model_free(m);
            return cli_fail("unknown head '%s' (" RUN_HEADS ")", c->head);
        }
        if (strstr(c->head, "dropout")) x = graft_dropout(m, x, "dropout_head", 0.5f);
        if (strstr(c->head, "dense1024"))
            x = graft_dense(m, x, (graft_dense_cfg){.name = "dense", .units = 1024, .activation = GRAFT_RELU});
        graft_dense(m, x, (graft_dense_cfg){.name = "predictions_new", .units = n_out, .activation = act});
    }
    if (graft_model_status(m) != GRAFT_OK) {
        int rc = cli_fail("building the model: %s", graft_model_error(m));
        graft_model_free(m);
        return rc;
    }
    if (c->n_base_layers != base_layers) {
        graft_model_free(m);
        return cli_fail("config.json: \"n_base_layers\" is %d, but the %s base has %d layers",
                        c->n_base_layers, c->base, base_layers);
    }
    if (c->weights[0]) {
        int loaded = 0;
        graft_zoo_cfg z;
        run_base_cfg(c, &z);
        graft_status s = graft_zoo_load_weights(m, c->base, &z, c->weights, &loaded);
        if (s != GRAFT_OK) {
            int rc = cli_fail("the weights %s do not fit the %s base: %s", c->weights, c->base,
                              graft_last_error());
            graft_model_free(m);
            return rc;
        }
        int want = 0;
        for (int i = 0; i < c->n_base_layers; i++)
            want += graft_layer_num_weights(graft_model_layer(m, i)) > 0;
        if (loaded < want) {
            graft_model_free(m);
            return cli_fail("the weights %s cover %d of the %d weighted layers of the %s base "
                            "(wrong architecture or alpha?)",
                            c->weights, loaded, want, c->base);
        }
    }
    *out = m;
    return 0;
}

void run_set_trainable(const run_config *c, graft_model *m)
{
    int n = graft_model_num_layers(m), nb = c->n_base_layers;
    graft_model_set_trainable(m, 0, n, 1);
    if (strcmp(c->stage, "frozen") == 0) graft_model_set_trainable(m, 0, nb, 0);
    else if (strcmp(c->stage, "fine-tune") == 0)
        graft_model_set_trainable(m, 0, nb - (c->unfreeze < nb ? c->unfreeze : nb), 0);
}

typedef struct {
    char arch[32];
} preprocess_ctx;

int run_open_data(const run_config *c, bool training_shuffle, graft_source **train,
                  graft_source **val)
{
    static preprocess_ctx pp; /* the hook's context lives as long as the sources */
    *train = NULL;
    if (val) *val = NULL;
    graft_image_data_generator gen = {0};
    if (strcmp(c->preprocess, "model") == 0 && strcmp(c->base, "scratch") != 0) {
        snprintf(pp.arch, sizeof pp.arch, "%s", c->base);
        gen.preprocessing_function = graft_preprocess_hook;
        gen.preprocessing_ctx = pp.arch;
    } else {
        gen.rescale = 1.0f / 255;
    }
    graft_image_data_generator aug = gen;
    if (c->augment) { /* the homework's augmentation */
        aug.rotation_range = 40;
        aug.width_shift_range = aug.height_shift_range = 0.2f;
        aug.shear_range = 0.2f;
        aug.zoom_range[0] = 0.2f;
        aug.horizontal_flip = 1;
    }
    graft_flow_cfg fc = {.target_size = {c->input_size, c->input_size},
                         .class_mode = c->n_classes > 2 ? GRAFT_CLASS_SPARSE : GRAFT_CLASS_BINARY,
                         .batch_size = c->batch,
                         .no_shuffle = !training_shuffle,
                         .seed = c->seed,
                         .jpeg_full_decode = c->full_decode};
    if (c->interpolation[0] && graft_interpolation_parse(c->interpolation, &fc.interpolation) != GRAFT_OK)
        return cli_fail_status(GRAFT_EINVAL, "interpolation");
    if (c->n_classes > 0) {
        fc.classes = (const char *const *)c->classes;
        fc.n_classes = c->n_classes;
    }
    graft_status s = graft_flow_from_directory(c->train_dir, &aug, &fc, train);
    if (s != GRAFT_OK) return cli_fail_status(s, c->train_dir);
    if (val && c->val_dir[0]) {
        fc.no_shuffle = 1; /* evaluation order does not matter; keep it fixed */
        s = graft_flow_from_directory(c->val_dir, &gen, &fc, val);
        if (s != GRAFT_OK) {
            graft_source_free(*train);
            *train = NULL;
            return cli_fail_status(s, c->val_dir);
        }
    }
    return 0;
}

void run_base_cfg(const run_config *c, graft_zoo_cfg *z)
{
    *z = graft_zoo_default_cfg();
    z->include_top = 0;
    z->alpha = c->alpha > 0 ? c->alpha : 1.0f;
    z->minimalistic = c->minimalistic;
    z->input_shape[0] = z->input_shape[1] = c->input_size;
    /* Keras builds for its ImageNet file (EfficientNet: one more Rescaling):
     * the file graft_zoo_imagenet_file names, from the cache or a copy. */
    graft_weights_file wf;
    const char *slash = strrchr(c->weights, '/');
    z->imagenet_weights = c->weights[0] && graft_zoo_imagenet_file(c->base, z, &wf) == GRAFT_OK &&
                          strcmp(slash ? slash + 1 : c->weights, wf.file_name) == 0;
}

/* ------------------------------------------------------------ finding things */

typedef struct {
    char text[8192];
    size_t len;
} looked;

static void note(looked *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(looked *l, const char *fmt, ...)
{
    if (l->len >= sizeof l->text - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->text + l->len, sizeof l->text - l->len, fmt, ap);
    va_end(ap);
    if (n > 0) l->len += (size_t)n < sizeof l->text - l->len ? (size_t)n : sizeof l->text - l->len - 1;
}

int cli_find_weights(const char *base, float *alpha, int minimalistic, int input_size,
                     const char *opt, char *out, size_t cap)
{
    looked l = {.len = 0};
    if (opt && *opt && strcmp(opt, "imagenet") != 0) {
        if (cli_is_file(opt)) {
            snprintf(out, cap, "%s", opt);
            return 0;
        }
        return cli_fail("weights file %s does not exist", opt);
    }
    const char *env = graft_env(GRAFT_ENV_WEIGHTS);
    if (env && *env) {
        if (cli_is_file(env)) {
            snprintf(out, cap, "%s", env);
            return 0;
        }
        note(&l, "  $GRAFT_WEIGHTS=%s (no such file)\n", env);
    } else {
        note(&l, "  $GRAFT_WEIGHTS (not set)\n");
    }
    graft_zoo_cfg z = graft_zoo_default_cfg();
    z.include_top = 0;
    z.alpha = *alpha > 0 ? *alpha : 1.0f;
    z.minimalistic = minimalistic;
    z.input_shape[0] = z.input_shape[1] = input_size;
    graft_weights_file wf;
    char cache[CLI_PATH] = "";
    bool official = graft_zoo_imagenet_file(base, &z, &wf) == GRAFT_OK;
    if (official && graft_zoo_cache_dir(cache, sizeof cache) == GRAFT_OK) {
        char p[CLI_PATH + 256];
        snprintf(p, sizeof p, "%s/%s", cache, wf.file_name);
        if (cli_is_file(p)) {
            snprintf(out, cap, "%s", p);
            *alpha = z.alpha;
            return 0;
        }
        note(&l, "  the cache: %s\n", p);
    }
    /* The shared folder of these machines holds MobileNet alpha 0.75 (TF.js). */
    if (strcmp(base, "mobilenet") == 0 && (*alpha == 0 || *alpha == 0.75f)) {
        char shared[CLI_PATH], p[CLI_PATH + 64];
        const char *roots[2] = {shared, "../shared"};
        cli_shared_dir(shared, sizeof shared);
        for (int i = 0; i < 2; i++) {
            if (!roots[i][0]) continue;
            snprintf(p, sizeof p, "%s/models/mobilenet_v1_0.75_224/model.json", roots[i]);
            if (cli_is_file(p)) {
                snprintf(out, cap, "%s", p);
                *alpha = 0.75f;
                return 0;
            }
            note(&l, "  %s\n", p);
        }
    }
    if (official) {
        char p[CLI_PATH];
        printf("Downloading %s\n", wf.url);
        fflush(stdout);
        if (graft_zoo_fetch_imagenet(base, &z, p, sizeof p) == GRAFT_OK) {
            snprintf(out, cap, "%s", p);
            *alpha = z.alpha;
            return 0;
        }
        note(&l, "  %s (%s)\n", wf.url, graft_last_error());
    }
    return cli_fail("no ImageNet weights for %s%s found; looked at, in order:\n%s"
                    "Pass --weights FILE (a Keras .h5 or a TF.js model.json) or set GRAFT_WEIGHTS.",
                    base, *alpha > 0 ? " at this alpha" : "", l.text);
}

int cli_find_lesson_data(const char *opt, int insecure, char *out, size_t cap)
{
    looked l = {.len = 0};
    const char *cands[5];
    char shared[CLI_PATH], s1[CLI_PATH + 64], home[CLI_PATH + 64] = "";
    int n = 0;
    if (opt && *opt) cands[n++] = opt;
    const char *env = graft_env(GRAFT_ENV_DATA);
    if (env && *env) cands[n++] = env;
    else note(&l, "  $GRAFT_DATA (not set)\n");
    char cache[CLI_PATH];
    if (graft_zoo_cache_dir(cache, sizeof cache) == GRAFT_OK) {
        /* The cache's models/ folder has datasets/ beside it. */
        char *slash = strrchr(cache, '/');
        if (slash) *slash = '\0';
        snprintf(home, sizeof home, "%s/datasets/cats_and_dogs_filtered", cache);
        cands[n++] = home;
    }
    cli_shared_dir(shared, sizeof shared);
    if (shared[0]) {
        snprintf(s1, sizeof s1, "%s/data/cats_and_dogs_filtered", shared);
        cands[n++] = s1;
    }
    cands[n++] = "../shared/data/cats_and_dogs_filtered";
    for (int i = 0; i < n; i++) {
        char t[CLI_PATH + 16];
        snprintf(t, sizeof t, "%s/train", cands[i]);
        if (cli_is_dir(t)) {
            snprintf(out, cap, "%s", cands[i]);
            return 0;
        }
        note(&l, "  %s\n", cands[i]);
        if (i == 0 && opt && *opt) return cli_fail("%s has no train/ folder", opt);
    }
    /* Last, what the lesson itself does: download Google's zip into the cache. */
    const char *url = graft_env(GRAFT_ENV_DATA_URL), *sha = graft_env(GRAFT_ENV_DATA_SHA256);
    /* Google publishes no checksum of its zip: the official download is
     * checked by the digest of the 3000 images it unpacks to (graft_tree_digest,
     * the same images as ../shared/data, whose MANIFEST.sha256 lists them). */
    static const char *const lesson_dirs[] = {"cats_and_dogs_filtered/train",
                                              "cats_and_dogs_filtered/validation"};
    graft_fetch_opts fo = {.insecure = insecure};
    if (url && *url) {
        if (sha && *sha) {
            fo.hash_kind = GRAFT_HASH_SHA256;
            fo.hash = sha;
        } else if (!insecure) {
            note(&l, "  %s (refused: no checksum; set GRAFT_DATA_SHA256 to the archive's SHA-256, "
                     "or pass --insecure)\n", url);
            home[0] = '\0';
        }
    } else {
        url = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip";
        fo.tree_sha256 = "ad5acefe3c4f000e46fcecabc985f9dd6712e94452d052d3d0e45dd8f4f8027a";
        fo.tree_dirs = lesson_dirs;
        fo.n_tree_dirs = 2;
    }
    if (home[0]) {
        char datasets[CLI_PATH + 64], t[CLI_PATH + 80];
        snprintf(datasets, sizeof datasets, "%.*s", (int)(strlen(home) - strlen("/cats_and_dogs_filtered")), home);
        printf("Downloading %s\n", url);
        fflush(stdout);
        graft_status s = graft_dataset_fetch(url, datasets, &fo);
        snprintf(t, sizeof t, "%s/train", home);
        if (s == GRAFT_OK && cli_is_dir(t)) {
            snprintf(out, cap, "%s", home);
            return 0;
        }
        note(&l, "  %s (%s)\n", url, s == GRAFT_OK ? "no cats_and_dogs_filtered/train inside" : graft_last_error());
    }
    return cli_fail("the lesson's data (cats_and_dogs_filtered with train/ and validation/) was "
                    "not found; looked at, in order:\n%s"
                    "Download https://storage.googleapis.com/mledu-datasets/"
                    "cats_and_dogs_filtered.zip, unpack it, and pass --data DIR or set GRAFT_DATA.",
                    l.text);
}

/* ------------------------------------------------------------ Ctrl-C */

static graft_model *volatile watched;

/* The first Ctrl-C during a fit asks it to stop after the batch (SA_RESETHAND
 * restores the default on entry), so that a second one, or one while the fit
 * cannot reach the end of its batch, ends the process at once. Without a fit
 * to stop, Ctrl-C ends the process as it would without a handler. */
static void on_sigint(int sig)
{
    graft_model *m = watched;
    if (!m) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    graft_model_request_stop(m);
    static const char msg[] = "\ngraft: stopping after this batch (Ctrl-C again to quit at once)\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
}

void cli_watch_sigint(graft_model *m)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = m ? on_sigint : SIG_DFL;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    watched = m;
    sigaction(SIGINT, &sa, NULL);
}
