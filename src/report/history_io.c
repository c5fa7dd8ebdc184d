/* history.json (Keras History form) and the CSVLogger log of a run folder. */
#include "core/atomic_file.h"
#include "core/file_open.h"
#include "internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Far beyond any real history (a million epochs is ~100 MB of JSON). */
#define MAX_JSON_BYTES (256u << 20)

static bool any_finite(const double *v, int n)
{
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) return true;
    return false;
}

/* Python's repr(float), which both json.dump and CSVLogger write: the
 * shortest digits that read back to v, in fixed notation for exponents
 * -4..15 and "d.ddde+XX" outside. NAN gives CSVLogger's "NA" for a missing
 * value (JSON writes null instead). */
static void python_repr(double v, char *buf, size_t cap)
{
    if (isnan(v)) {
        snprintf(buf, cap, "NA"); /* what CSVLogger writes for a missing key */
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, v > 0 ? "inf" : "-inf");
        return;
    }
    char e[40];
    int digits = 1;
    for (; digits < 17; digits++) {
        snprintf(e, sizeof e, "%.*e", digits - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    snprintf(e, sizeof e, "%.*e", digits - 1, v);
    int exp10 = atoi(strchr(e, 'e') + 1);
    if (exp10 < -4 || exp10 >= 16) {
        snprintf(buf, cap, "%s", e);
        return;
    }
    int decimals = digits - 1 - exp10;
    if (decimals > 0)
        snprintf(buf, cap, "%.*f", decimals, v);
    else
        snprintf(buf, cap, "%.0f.0", v);
}

/* --------------------------------------------------------------- writing */

static graft_status check_stages(const char *path, const graft_history_stage *stages, int n)
{
    if (n < 0 || (n > 0 && !stages))
        return graft_fail(GRAFT_EINVAL, "'%s': bad stage list (%d stages)", path, n);
    for (int i = 0; i < n; i++) {
        size_t len = strnlen(stages[i].name, GRAFT_STAGE_NAME_MAX);
        if (len == 0 || len == GRAFT_STAGE_NAME_MAX)
            return graft_fail(GRAFT_EINVAL, "'%s': stage %d needs a name of 1 to %d bytes", path, i,
                              GRAFT_STAGE_NAME_MAX - 1);
        if (stages[i].first_epoch < 0 ||
            (i > 0 && stages[i].first_epoch <= stages[i - 1].first_epoch))
            return graft_fail(GRAFT_EINVAL,
                              "'%s': stage \"%s\" starts at epoch %d; stages must start at "
                              "increasing epochs from 0",
                              path, stages[i].name, stages[i].first_epoch);
    }
    return GRAFT_OK;
}

/* JSON has no NaN: a missing entry becomes null. Numbers are written as
 * Python's json.dump writes them (cJSON's own printing keeps only 15 digits
 * when they are "close enough", which does not read back exactly). */
static bool add_series(cJSON *obj, const char *key, const double *v, int n)
{
    cJSON *arr = cJSON_AddArrayToObject(obj, key);
    if (!arr) return false;
    for (int i = 0; i < n; i++) {
        char num[48];
        if (isfinite(v[i])) python_repr(v[i], num, sizeof num);
        cJSON *x = isfinite(v[i]) ? cJSON_CreateRaw(num) : cJSON_CreateNull();
        if (!x || !cJSON_AddItemToArray(arr, x)) {
            cJSON_Delete(x);
            return false;
        }
    }
    return true;
}

static cJSON *history_to_json(const graft_history *h, const graft_history_stage *stages,
                              int n_stages)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *hist = root ? cJSON_AddObjectToObject(root, "history") : NULL;
    if (!hist) goto fail;
    /* Keras's order; loss is always there, the others only when measured. */
    if (!add_series(hist, "loss", h->loss, h->n)) goto fail;
    if (any_finite(h->accuracy, h->n) && !add_series(hist, "accuracy", h->accuracy, h->n))
        goto fail;
    if (any_finite(h->val_loss, h->n) && !add_series(hist, "val_loss", h->val_loss, h->n))
        goto fail;
    if (any_finite(h->val_accuracy, h->n) &&
        !add_series(hist, "val_accuracy", h->val_accuracy, h->n))
        goto fail;
    if (any_finite(h->lr, h->n) && !add_series(hist, "lr", h->lr, h->n)) goto fail;

    cJSON *epochs = cJSON_AddArrayToObject(root, "epoch");
    if (!epochs) goto fail;
    for (int i = 0; i < h->n; i++) {
        cJSON *e = cJSON_CreateNumber(h->epoch[i]);
        if (!e || !cJSON_AddItemToArray(epochs, e)) {
            cJSON_Delete(e);
            goto fail;
        }
    }
    if (any_finite(h->seconds, h->n) && !add_series(root, "seconds", h->seconds, h->n)) goto fail;
    if (n_stages > 0) {
        cJSON *arr = cJSON_AddArrayToObject(root, "stages");
        if (!arr) goto fail;
        for (int i = 0; i < n_stages; i++) {
            cJSON *st = cJSON_CreateObject();
            if (!st || !cJSON_AddItemToArray(arr, st)) {
                cJSON_Delete(st);
                goto fail;
            }
            if (!cJSON_AddStringToObject(st, "name", stages[i].name) ||
                !cJSON_AddNumberToObject(st, "first_epoch", stages[i].first_epoch))
                goto fail;
        }
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

typedef struct {
    const char *path, *text;
} text_ctx;

static graft_status write_text(FILE *f, void *vctx)
{
    const text_ctx *c = vctx;
    size_t n = strlen(c->text);
    if (fwrite(c->text, 1, n, f) != n || fputc('\n', f) == EOF)
        return graft_fail(GRAFT_EIO, "cannot write '%s': %s", c->path, strerror(errno));
    return GRAFT_OK;
}

static graft_status check_history(const char *path, const graft_history *h)
{
    if (!path) return graft_fail(GRAFT_EINVAL, "no file name for the history");
    if (!h || h->n < 0 ||
        (h->n > 0 && (!h->epoch || !h->loss || !h->accuracy || !h->val_loss || !h->val_accuracy ||
                      !h->lr || !h->seconds)))
        return graft_fail(GRAFT_EINVAL, "'%s': no history to write", path);
    return GRAFT_OK;
}

graft_status graft_history_save_json(const char *path, const graft_history *h,
                                     const graft_history_stage *stages, int n_stages)
{
    graft_status s = check_history(path, h);
    if (s == GRAFT_OK) s = check_stages(path, stages, n_stages);
    if (s != GRAFT_OK) return s;
    cJSON *root = history_to_json(h, stages, n_stages);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return graft_fail(GRAFT_ENOMEM, "out of memory writing '%s'", path);
    s = graft_file_write_atomic(path, write_text, &(text_ctx){path, text});
    cJSON_free(text);
    return s;
}

/* --------------------------------------------------------------- reading */

static graft_status read_whole(const char *path, char **out, size_t *len)
{
    *out = NULL;
    FILE *f;
    struct stat st;
    graft_status s = graft_fopen_regular(path, &f, &st);
    if (s != GRAFT_OK) return s;
    if ((unsigned long long)st.st_size > MAX_JSON_BYTES) {
        fclose(f);
        return graft_fail(GRAFT_ENOMEM, "'%s' is %lld bytes, more than a history can be", path,
                          (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return graft_fail(GRAFT_ENOMEM, "out of memory reading '%s'", path);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return graft_fail(GRAFT_EIO, "reading '%s' failed after %zu of %zu bytes", path, got, n);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return GRAFT_OK;
}

/* An array of numbers (or nulls, read as NAN) of exactly n entries; n < 0: any length. */
static graft_status get_series(const char *path, const char *where, const cJSON *item, int *n,
                               double **out)
{
    *out = NULL;
    if (!cJSON_IsArray(item))
        return graft_fail(GRAFT_EFORMAT, "'%s': \"%s\" is not an array", path, where);
    int len = cJSON_GetArraySize(item);
    if (*n >= 0 && len != *n)
        return graft_fail(GRAFT_EFORMAT, "'%s': \"%s\" has %d entries but \"loss\" has %d", path,
                          where, len, *n);
    double *v = malloc((size_t)(len > 0 ? len : 1) * sizeof *v);
    if (!v) return graft_fail(GRAFT_ENOMEM, "out of memory reading '%s'", path);
    int i = 0;
    for (const cJSON *x = item->child; x; x = x->next, i++) {
        if (cJSON_IsNumber(x))
            v[i] = x->valuedouble;
        else if (cJSON_IsNull(x))
            v[i] = NAN;
        else {
            free(v);
            return graft_fail(GRAFT_EFORMAT, "'%s': \"%s\"[%d] is not a number", path, where, i);
        }
    }
    *n = len;
    *out = v;
    return GRAFT_OK;
}

static bool as_int(const cJSON *x, int *out)
{
    if (!x || !cJSON_IsNumber(x)) return false;
    double d = x->valuedouble;
    if (!(d >= 0 && d <= INT_MAX) || d != floor(d)) return false;
    *out = (int)d;
    return true;
}

static graft_status get_stages(const char *path, const cJSON *arr, graft_history_stage **out,
                               int *n_out)
{
    if (!cJSON_IsArray(arr))
        return graft_fail(GRAFT_EFORMAT, "'%s': \"stages\" is not an array", path);
    int n = cJSON_GetArraySize(arr);
    graft_history_stage *st = calloc((size_t)(n > 0 ? n : 1), sizeof *st);
    if (!st) return graft_fail(GRAFT_ENOMEM, "out of memory reading '%s'", path);
    int i = 0;
    graft_status s = GRAFT_OK;
    for (const cJSON *x = arr->child; x; x = x->next, i++) {
        const cJSON *name = NULL, *first = NULL;
        if (cJSON_IsObject(x)) {
            name = cJSON_GetObjectItemCaseSensitive(x, "name");
            first = cJSON_GetObjectItemCaseSensitive(x, "first_epoch");
        }
        const char *nm = cJSON_GetStringValue(name); /* NULL unless a string */
        if (!nm || !nm[0] || strlen(nm) >= GRAFT_STAGE_NAME_MAX) {
            s = graft_fail(GRAFT_EFORMAT, "'%s': \"stages\"[%d] needs a \"name\" of 1 to %d bytes",
                           path, i, GRAFT_STAGE_NAME_MAX - 1);
            break;
        }
        if (!as_int(first, &st[i].first_epoch) ||
            (i > 0 && st[i].first_epoch <= st[i - 1].first_epoch)) {
            s = graft_fail(GRAFT_EFORMAT,
                           "'%s': \"stages\"[%d].\"first_epoch\" is not an epoch after the "
                           "previous stage's",
                           path, i);
            break;
        }
        memcpy(st[i].name, nm, strlen(nm) + 1);
    }
    if (s != GRAFT_OK) {
        free(st);
        return s;
    }
    *out = st;
    *n_out = n;
    return GRAFT_OK;
}

/* Whether the text ends inside a string, array or object: the mark of a
 * file cut short, worth telling apart from one that is wrong. */
static bool unclosed(const char *text, size_t len)
{
    long depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"')
            in_string = true;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
    }
    return in_string || depth > 0;
}

graft_status graft_history_load_json(const char *path, graft_history *h,
                                     graft_history_stage **stages, int *n_stages)
{
    graft_history_init(h);
    if (stages) *stages = NULL;
    if (n_stages) *n_stages = 0;
    if (!path) return graft_fail(GRAFT_EINVAL, "no history file name");

    enum { LOSS, ACC, VAL_LOSS, VAL_ACC, LR, SECONDS, N_SERIES };
    static const char *const keys[N_SERIES] = {"loss",         "accuracy", "val_loss",
                                               "val_accuracy", "lr",       "seconds"};
    double *series[N_SERIES] = {0};
    int *epoch = NULL;
    graft_history_stage *st = NULL;
    int n_st = 0;
    cJSON *root = NULL;
    char *text = NULL;
    size_t len = 0;
    graft_status s = read_whole(path, &text, &len);
    if (s != GRAFT_OK) return s;

    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
        s = graft_fail(GRAFT_EFORMAT, "'%s' is not valid JSON (%s at byte %zu of %zu)", path,
                       unclosed(text, len) ? "truncated" : "error", at, len);
        goto fail;
    }
    const cJSON *hist = cJSON_GetObjectItemCaseSensitive(root, "history");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(hist)) {
        s = graft_fail(GRAFT_EFORMAT, "'%s': no \"history\" object (Keras History form)", path);
        goto fail;
    }
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(hist, "loss");
    if (!loss) {
        s = graft_fail(GRAFT_EFORMAT, "'%s': \"history\" has no \"loss\"", path);
        goto fail;
    }
    int n = -1;
    s = get_series(path, "loss", loss, &n, &series[LOSS]);
    for (int k = ACC; s == GRAFT_OK && k < N_SERIES; k++) {
        const cJSON *parent = k == SECONDS ? root : hist;
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(parent, keys[k]);
        const char *name = keys[k];
        if (!item && k == LR) { /* Keras 3's name for it */
            name = "learning_rate";
            item = cJSON_GetObjectItemCaseSensitive(hist, name);
        }
        if (item) s = get_series(path, name, item, &n, &series[k]);
    }
    if (s != GRAFT_OK) goto fail;

    epoch = malloc((size_t)(n > 0 ? n : 1) * sizeof *epoch);
    if (!epoch) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory reading '%s'", path);
        goto fail;
    }
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(root, "epoch");
    if (ep) {
        if (!cJSON_IsArray(ep) || cJSON_GetArraySize(ep) != n) {
            s = graft_fail(GRAFT_EFORMAT,
                           "'%s': \"epoch\" is not an array of %d epochs like \"loss\"", path, n);
            goto fail;
        }
        int i = 0;
        for (const cJSON *x = ep->child; x; x = x->next, i++)
            if (!as_int(x, &epoch[i]) || (i > 0 && epoch[i] <= epoch[i - 1])) {
                s = graft_fail(GRAFT_EFORMAT,
                               "'%s': \"epoch\"[%d] is not an epoch number after "
                               "the previous one",
                               path, i);
                goto fail;
            }
    } else {
        for (int i = 0; i < n; i++)
            epoch[i] = i;
    }
    const cJSON *stj = cJSON_GetObjectItemCaseSensitive(root, "stages");
    if (stj) {
        s = get_stages(path, stj, &st, &n_st);
        if (s != GRAFT_OK) goto fail;
    }

    for (int i = 0; i < n && s == GRAFT_OK; i++) {
        double v[N_SERIES];
        for (int k = 0; k < N_SERIES; k++)
            v[k] = series[k] ? series[k][i] : NAN;
        s = graft_history_append(h, epoch[i], v[LOSS], v[ACC], v[VAL_LOSS], v[VAL_ACC], v[LR],
                                 v[SECONDS]);
    }
    if (s != GRAFT_OK) goto fail;
    if (stages) {
        *stages = st;
        st = NULL;
    }
    if (n_stages) *n_stages = n_st;
    goto done;
fail:
    graft_history_free(h);
done:
    free(st);
    free(epoch);
    for (int k = 0; k < N_SERIES; k++)
        free(series[k]);
    cJSON_Delete(root);
    free(text);
    return s;
}

/* ------------------------------------------------------------------- CSV */

typedef struct {
    const char *path;
    const graft_history *h;
    const double *cols[5]; /* NULL: column left out */
} csv_ctx;

static graft_status write_csv(FILE *f, void *vctx)
{
    static const char *const names[5] = {"accuracy", "loss", "lr", "val_accuracy", "val_loss"};
    csv_ctx *c = vctx;
    const graft_history *h = c->h;
    const double *all[5] = {h->accuracy, h->loss, h->lr, h->val_accuracy, h->val_loss};
    int ok = fputs("epoch", f) >= 0;
    for (int k = 0; k < 5; k++)
        if (c->cols[k]) ok = ok && fprintf(f, ",%s", names[k]) > 0;
    ok = ok && fputs("\r\n", f) >= 0;
    for (int i = 0; i < h->n && ok; i++) {
        ok = fprintf(f, "%d", h->epoch[i]) > 0;
        for (int k = 0; k < 5; k++) {
            if (!c->cols[k]) continue;
            char num[48];
            python_repr(all[k][i], num, sizeof num);
            ok = ok && fprintf(f, ",%s", num) > 0;
        }
        ok = ok && fputs("\r\n", f) >= 0;
    }
    return ok ? GRAFT_OK : graft_fail(GRAFT_EIO, "cannot write '%s': %s", c->path, strerror(errno));
}

graft_status graft_history_save_csv(const char *path, const graft_history *h)
{
    graft_status s = check_history(path, h);
    if (s != GRAFT_OK) return s;
    /* CSVLogger's columns are the sorted keys of the epoch logs: loss is
     * always logged, the others only when measured. */
    csv_ctx c = {.path = path, .h = h};
    const double *all[5] = {h->accuracy, h->loss, h->lr, h->val_accuracy, h->val_loss};
    for (int k = 0; k < 5; k++)
        if (k == 1 || any_finite(all[k], h->n)) c.cols[k] = all[k];
    return graft_file_write_atomic(path, write_csv, &c);
}
