/*
 * graft_report_write: the comparison of runs as report.md and one
 * self-contained report.html. The figures are written beside them as PNG
 * (report.md links them) and embedded in the HTML as data: URIs, so the page
 * needs nothing but itself. Every number in the summary is computed here
 * from the runs given; a claim the numbers do not show is not made.
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ text buffers */

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const char *text, size_t len)
{
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + len + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, text, len);
    b->n += len;
    b->s[b->n] = '\0';
}

static void bprintf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf *b, const char *fmt, ...)
{
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    put(b, big, (size_t)n);
    free(big);
}

/* Text in HTML, escaped. */
static void html_text(buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': put(b, "&lt;", 4); break;
        case '>': put(b, "&gt;", 4); break;
        case '&': put(b, "&amp;", 5); break;
        case '"': put(b, "&quot;", 6); break;
        default: put(b, s, 1);
        }
    }
}

/* Text in a Markdown table cell or line: | and the markup characters escaped. */
static void md_text(buf *b, const char *s)
{
    for (; s && *s; s++) {
        if (strchr("|\\*_`[]<>#", *s)) put(b, "\\", 1);
        if (*s == '\n') put(b, " ", 1);
        else put(b, s, 1);
    }
}

static void base64(buf *b, const unsigned char *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        char q[4] = {tab[v >> 18 & 63], tab[v >> 12 & 63], i + 1 < n ? tab[v >> 6 & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        put(b, q, 4);
    }
}

/* <img> with the PNG file's bytes as a data: URI. */
static graft_status html_img(buf *b, const char *png_path, const char *alt, const char *cls)
{
    FILE *f = fopen(png_path, "rb");
    if (!f) return graft_fail(GRAFT_EIO, "cannot read '%s': %s", png_path, strerror(errno));
    unsigned char *d = NULL;
    size_t n = 0, cap = 0;
    graft_status st = GRAFT_OK;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            unsigned char *g = realloc(d, cap);
            if (!g) {
                st = graft_fail(GRAFT_ENOMEM, "out of memory reading '%s'", png_path);
                break;
            }
            d = g;
        }
        size_t r = fread(d + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) st = graft_fail(GRAFT_EIO, "cannot read '%s'", png_path);
            break;
        }
    }
    fclose(f);
    if (st == GRAFT_OK) {
        bprintf(b, "<img class=\"%s\" alt=\"", cls);
        html_text(b, alt);
        put(b, "\" src=\"data:image/png;base64,", 29);
        base64(b, d, n);
        put(b, "\">", 2);
    }
    free(d);
    return st;
}

static graft_status write_text(FILE *f, void *text)
{
    fputs(text, f);
    return GRAFT_OK;
}

/* ------------------------------------------------------------ the numbers */

typedef struct {
    double best_acc, last_acc, best_loss, last_loss, gap;
    int best_epoch; /* 1-based, as Keras prints epochs */
    int n_val;      /* validation images evaluated (0: none) */
    double eval_acc;
    char stages[256];
    char times[256];
    double frozen_best, later_best; /* best val_accuracy in the first stage and in the ones after */
    bool has_later;
} run_stats;

static void stats_of(const graft_report_run *r, run_stats *s)
{
    const graft_history *h = r->h;
    memset(s, 0, sizeof *s);
    s->best_acc = s->last_acc = s->best_loss = s->last_loss = s->gap = NAN;
    s->frozen_best = s->later_best = NAN;
    int later = r->n_stages > 1 ? r->stages[1].first_epoch : h->n;
    for (int i = 0; i < h->n; i++) {
        double a = h->val_accuracy[i], l = h->val_loss[i];
        if (isfinite(a) && !(a <= s->best_acc)) {
            s->best_acc = a;
            s->best_epoch = h->epoch[i] + 1;
        }
        if (isfinite(l) && !(l >= s->best_loss)) s->best_loss = l;
        if (isfinite(a)) {
            double *slot = i < later ? &s->frozen_best : &s->later_best;
            if (!(a <= *slot)) *slot = a;
        }
    }
    s->has_later = later < h->n;
    if (h->n > 0) {
        int i = h->n - 1;
        s->last_acc = h->val_accuracy[i];
        s->last_loss = h->val_loss[i];
        s->gap = h->accuracy[i] - h->val_accuracy[i];
    }
    size_t o = 0;
    for (int k = 0; k < (r->n_stages ? r->n_stages : 1); k++) {
        int from = r->n_stages ? r->stages[k].first_epoch : 0;
        int to = k + 1 < r->n_stages ? r->stages[k + 1].first_epoch : h->n;
        if (to > h->n) to = h->n;
        double sec = 0;
        for (int i = from; i < to; i++)
            if (isfinite(h->seconds[i])) sec += h->seconds[i];
        const char *name = r->n_stages ? r->stages[k].name : "training";
        if (o < sizeof s->stages)
            o += (size_t)snprintf(s->stages + o, sizeof s->stages - o, "%s%s %d", k ? " + " : "", name, to - from);
        size_t t = strlen(s->times);
        if (t < sizeof s->times)
            snprintf(s->times + t, sizeof s->times - t, "%s%s %.1f s", k ? ", " : "", name, sec);
    }
    if (r->confusion) {
        long right = 0, all = 0;
        for (int t = 0; t < r->n_classes; t++)
            for (int k = 0; k < r->n_classes; k++) {
                all += r->confusion[t * r->n_classes + k];
                if (t == k) right += r->confusion[t * r->n_classes + k];
            }
        s->n_val = (int)all;
        s->eval_acc = all ? (double)right / all : NAN;
    }
}

/* "0.9500" or "n/a" */
static const char *num(char *b, double v, int decimals)
{
    if (isfinite(v)) snprintf(b, 32, "%.*f", decimals, v);
    else snprintf(b, 32, "n/a");
    return b;
}

static const char *signed_num(char *b, double v)
{
    if (isfinite(v)) snprintf(b, 32, "%+.4f", v);
    else snprintf(b, 32, "n/a");
    return b;
}

static bool is_base(const graft_report_run *r, const char *base)
{
    return r->base && strcmp(r->base, base) == 0;
}

static bool head_is(const graft_report_run *r, const char *head)
{
    return r->head && strcmp(r->head, head) == 0;
}

/* The summary's sentences, into b as plain text lines ("- ..."): the same
 * text goes into both files (HTML-escaped in one). */
static void summary(buf *b, const graft_report_run *runs, const run_stats *st, int n)
{
    char x[32], y[32], z[32], x2[32], y2[32], z2[32];
    int best = -1, second = -1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(st[i].best_acc)) continue;
        if (best < 0 || st[i].best_acc > st[best].best_acc) {
            second = best;
            best = i;
        } else if (second < 0 || st[i].best_acc > st[second].best_acc) {
            second = i;
        }
    }
    if (best < 0) {
        bprintf(b, "- No run recorded a validation accuracy, so the runs are not compared.\n");
        return;
    }
    bprintf(b, "- The best validation accuracy is %s's: %s (epoch %d of %d).", runs[best].label,
            num(x, st[best].best_acc, 4), st[best].best_epoch, runs[best].h->n);
    if (second >= 0)
        bprintf(b, " The next best, %s, reached %s: %s lower.", runs[second].label,
                num(y, st[second].best_acc, 4), num(z, st[best].best_acc - st[second].best_acc, 4));
    bprintf(b, "\n");
    int nv = 0;
    for (int i = 0; i < n; i++)
        if (st[i].n_val > nv) nv = st[i].n_val;
    if (nv > 0)
        bprintf(b, "- The final models were evaluated on %d validation images: one image more or less "
                   "right moves accuracy by %s, so differences of that size are noise.\n",
                nv, num(x, 1.0 / nv, 4));
    /* Dropout: the same base with and without it, the rest of the head the same
     * (dense1024 against dense1024-dropout), then the homework's pair. */
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            if (i == j || !runs[i].base || !runs[j].base || strcmp(runs[i].base, runs[j].base) != 0) continue;
            bool clean = head_is(&runs[i], "dense1024") && head_is(&runs[j], "dense1024-dropout");
            bool homework = head_is(&runs[i], "dense1024") && head_is(&runs[j], "dropout");
            if (!clean && !homework) continue;
            if (!isfinite(st[i].gap) || !isfinite(st[j].gap)) continue;
            double dg = st[j].gap - st[i].gap;
            bprintf(b,
                    "- Dropout(0.5) on %s (%s against %s%s): the gap between training and validation "
                    "accuracy at the last epoch went from %s to %s (%s), the best validation accuracy "
                    "from %s to %s (%s).",
                    runs[i].base, runs[j].label, runs[i].label,
                    homework ? ", which also has no Dense(1024) layer" : "", num(x, st[i].gap, 4),
                    num(y, st[j].gap, 4), signed_num(z, dg), num(x2, st[i].best_acc, 4),
                    num(y2, st[j].best_acc, 4), signed_num(z2, st[j].best_acc - st[i].best_acc));
            if (dg < 0) bprintf(b, " Here the gap narrowed with Dropout: less overfitting measured.\n");
            else if (dg > 0) bprintf(b, " Here the gap did not narrow with Dropout.\n");
            else bprintf(b, "\n");
        }
    }
    for (int i = 0; i < n; i++) {
        if (!st[i].has_later || !isfinite(st[i].frozen_best) || !isfinite(st[i].later_best)) continue;
        double d = st[i].later_best - st[i].frozen_best;
        bprintf(b, "- Fine-tuning %s: best validation accuracy %s with the base frozen, %s after "
                   "(%s).\n",
                runs[i].label, num(x, st[i].frozen_best, 4), num(y, st[i].later_best, 4), signed_num(z, d));
    }
    int scratch = -1, transfer = -1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(st[i].best_acc)) continue;
        if (is_base(&runs[i], "scratch")) {
            if (scratch < 0 || st[i].best_acc > st[scratch].best_acc) scratch = i;
        } else if (transfer < 0 || st[i].best_acc > st[transfer].best_acc) {
            transfer = i;
        }
    }
    if (scratch >= 0 && transfer >= 0) {
        double d = st[transfer].best_acc - st[scratch].best_acc;
        bprintf(b, "- Transfer learning against training from scratch: %s reached %s, the CNN from "
                   "scratch (%s) %s: %s.\n",
                runs[transfer].label, num(x, st[transfer].best_acc, 4), runs[scratch].label,
                num(y, st[scratch].best_acc, 4), signed_num(z, d));
    }
}

/* ------------------------------------------------------------ the report */

static double safe_div(double a, double b) { return b > 0 ? a / b : NAN; }

/* Per-class precision, recall, F1 and support of a confusion matrix. */
static void class_metrics(const graft_report_run *r, int c, double *p, double *rec, double *f1, long *support)
{
    int nc = r->n_classes;
    long tp = r->confusion[c * nc + c], col = 0, row = 0;
    for (int k = 0; k < nc; k++) {
        col += r->confusion[k * nc + c];
        row += r->confusion[c * nc + k];
    }
    *p = safe_div((double)tp, (double)col);
    *rec = safe_div((double)tp, (double)row);
    *f1 = isfinite(*p) && isfinite(*rec) && *p + *rec > 0 ? 2 * *p * *rec / (*p + *rec) : NAN;
    *support = row;
}

static const char *class_name(const graft_report_run *r, int c)
{
    return c >= 0 && c < r->n_classes && r->classes[c] ? r->classes[c] : "?";
}

graft_status graft_report_write(const graft_report_run *runs, int n, const char *title,
                                const char *out_dir)
{
    if (!out_dir) return graft_fail(GRAFT_EINVAL, "graft_report_write: no output folder");
    if (!runs || n <= 0) return graft_fail(GRAFT_EINVAL, "'%s': no runs to report", out_dir);
    for (int i = 0; i < n; i++) {
        const graft_report_run *r = &runs[i];
        if (!r->label || !r->h || r->h->n <= 0)
            return graft_fail(GRAFT_EINVAL, "'%s': run %d has no label or an empty history", out_dir, i + 1);
        if (r->confusion && (r->n_classes < 2 || !r->classes))
            return graft_fail(GRAFT_EINVAL, "'%s': run \"%s\": a confusion matrix needs its classes",
                              out_dir, r->label);
        for (int k = 0; k < r->n_wrong; k++)
            if (!r->wrong || !r->wrong[k].path)
                return graft_fail(GRAFT_EINVAL, "'%s': run \"%s\": wrong image %d has no path", out_dir,
                                  r->label, k);
    }
    if (!title || !*title) title = "Comparison of the runs";
    run_stats *st = calloc((size_t)n, sizeof *st);
    graft_plot_run *pr = calloc((size_t)n, sizeof *pr);
    buf md = {0}, html = {0}, sum = {0};
    char path[4096], name[64], x[32], y[32], z[32], w[32];
    graft_status s = GRAFT_OK;
    if (!st || !pr) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory writing the report");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        stats_of(&runs[i], &st[i]);
        pr[i] = (graft_plot_run){runs[i].label, runs[i].h, runs[i].stages, runs[i].n_stages};
    }
    summary(&sum, runs, st, n);

    bprintf(&html, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    html_text(&html, title);
    bprintf(&html, "</title>\n<style>\nbody{font-family:sans-serif;max-width:1100px;margin:2em auto;"
                   "padding:0 1em;color:#222}\ntable{border-collapse:collapse;margin:1em 0}\n"
                   "th,td{border:1px solid #bbb;padding:4px 8px;text-align:right}\ntd{white-space:nowrap}\n"
                   "th:first-child,td:first-child{text-align:left}\nth{background:#eef}\n"
                   "img.figure{max-width:100%%;border:1px solid #ddd}\n"
                   ".gallery{display:flex;flex-wrap:wrap;gap:10px}\n"
                   ".gallery figure{margin:0;width:140px;font-size:12px}\n"
                   "img.thumb{max-width:128px;max-height:128px}\n</style></head>\n<body>\n<h1>");
    html_text(&html, title);
    bprintf(&html, "</h1>\n");
    bprintf(&md, "# ");
    md_text(&md, title);
    bprintf(&md, "\n\n");

    /* Summary first: what a reader wants; the tables are its evidence. */
    bprintf(&html, "<h2 id=\"summary\">Summary</h2>\n<ul class=\"summary\">\n");
    bprintf(&md, "## Summary\n\n");
    for (const char *line = sum.s; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        put(&md, line, len);
        put(&md, "\n", 1);
        char *one = strndup(line + 2, len > 2 ? len - 2 : 0);
        if (!one) html.oom = true;
        bprintf(&html, "<li>");
        html_text(&html, one);
        bprintf(&html, "</li>\n");
        free(one);
        line = end ? end + 1 : line + len;
    }
    bprintf(&html, "</ul>\n");
    bprintf(&md, "\n");

    static const char *const cols[] = {"run", "base", "head", "input", "stages (epochs)",
                                       "best val_accuracy", "epoch of best", "last val_accuracy",
                                       "best val_loss", "last val_loss", "train - val accuracy",
                                       "time per stage", "trainable / total params"};
    enum { NCOLS = sizeof cols / sizeof *cols };
    bprintf(&html, "<h2 id=\"runs\">Runs</h2>\n<table class=\"runs\">\n<tr>");
    bprintf(&md, "## Runs\n\n|");
    for (int c = 0; c < NCOLS; c++) {
        bprintf(&html, "<th>%s</th>", cols[c]);
        bprintf(&md, " %s |", cols[c]);
    }
    bprintf(&html, "</tr>\n");
    bprintf(&md, "\n|");
    for (int c = 0; c < NCOLS; c++) bprintf(&md, "%s|", c ? "---:" : "---");
    bprintf(&md, "\n");
    for (int i = 0; i < n; i++) {
        const graft_report_run *r = &runs[i];
        char input[32], epoch[32], params[64];
        snprintf(input, sizeof input, "%d", r->input_size);
        snprintf(epoch, sizeof epoch, "%d", st[i].best_epoch);
        snprintf(params, sizeof params, "%zu / %zu", r->params_trainable, r->params_total);
        const char *cell[NCOLS] = {r->label, r->base ? r->base : "", r->head && *r->head ? r->head : "-",
                                   input, st[i].stages, num(x, st[i].best_acc, 4), epoch,
                                   num(y, st[i].last_acc, 4), num(z, st[i].best_loss, 4),
                                   num(w, st[i].last_loss, 4), NULL, st[i].times, params};
        char gap[32];
        cell[10] = num(gap, st[i].gap, 4);
        bprintf(&html, "<tr class=\"run\">");
        bprintf(&md, "|");
        for (int c = 0; c < NCOLS; c++) {
            bprintf(&html, "<td>");
            html_text(&html, cell[c]);
            bprintf(&html, "</td>");
            put(&md, " ", 1);
            md_text(&md, cell[c]);
            bprintf(&md, " |");
        }
        bprintf(&html, "</tr>\n");
        bprintf(&md, "\n");
    }
    bprintf(&html, "</table>\n<p>The gap is training minus validation accuracy at the last epoch "
                   "(overfitting shows as a large positive gap). Folders: ");
    bprintf(&md, "\nThe gap is training minus validation accuracy at the last epoch (overfitting "
                 "shows as a large positive gap). Folders: ");
    for (int i = 0; i < n; i++) {
        bprintf(&html, "%s", i ? ", " : "");
        html_text(&html, runs[i].label);
        bprintf(&html, " in <code>");
        html_text(&html, runs[i].dir ? runs[i].dir : "?");
        bprintf(&html, "</code>");
        bprintf(&md, "%s", i ? ", " : "");
        md_text(&md, runs[i].label);
        bprintf(&md, " in `%s`", runs[i].dir ? runs[i].dir : "?");
    }
    bprintf(&html, ".</p>\n");
    bprintf(&md, ".\n\n");

    snprintf(path, sizeof path, "%s/curves.png", out_dir);
    if ((s = graft_plot_runs(pr, n, "Accuracy of the runs", path)) != GRAFT_OK) goto done;
    bprintf(&html, "<h2 id=\"curves\">Learning curves</h2>\n<figure>");
    if ((s = html_img(&html, path, "learning curves of all runs", "figure")) != GRAFT_OK) goto done;
    bprintf(&html, "<figcaption>Accuracy and loss per epoch, all runs on the same axes; a diamond "
                   "and a dashed vertical line mark where a run's fine-tuning starts.</figcaption></figure>\n");
    bprintf(&md, "## Learning curves\n\n![learning curves of all runs](curves.png)\n\n");

    bprintf(&html, "<h2 id=\"evaluation\">The final models on their validation data</h2>\n");
    bprintf(&md, "## The final models on their validation data\n\n");
    for (int i = 0; i < n; i++) {
        const graft_report_run *r = &runs[i];
        bprintf(&html, "<h3>");
        html_text(&html, r->label);
        bprintf(&html, "</h3>\n");
        bprintf(&md, "### ");
        md_text(&md, r->label);
        bprintf(&md, "\n\n");
        if (!r->confusion) {
            bprintf(&html, "<p>Not evaluated (the run has no validation data).</p>\n");
            bprintf(&md, "Not evaluated (the run has no validation data).\n\n");
            continue;
        }
        bprintf(&html, "<p>%d images, accuracy %s.</p>\n", st[i].n_val, num(x, st[i].eval_acc, 4));
        bprintf(&md, "%d images, accuracy %s.\n\n", st[i].n_val, num(x, st[i].eval_acc, 4));
        snprintf(name, sizeof name, "confusion_%d.png", i + 1);
        snprintf(path, sizeof path, "%s/%s", out_dir, name);
        char ctitle[320];
        snprintf(ctitle, sizeof ctitle, "Confusion matrix: %s", r->label);
        if (r->n_classes <= GRAFT_PLOT_MAX_CLASSES) {
            if ((s = graft_plot_confusion(r->confusion, r->n_classes, r->classes, ctitle, path)) != GRAFT_OK)
                goto done;
            bprintf(&html, "<figure>");
            if ((s = html_img(&html, path, ctitle, "figure confusion")) != GRAFT_OK) goto done;
            bprintf(&html, "</figure>\n");
            bprintf(&md, "![");
            md_text(&md, ctitle);
            bprintf(&md, "](%s)\n\n", name);
        }
        bprintf(&html, "<table class=\"classes\">\n<tr><th>class</th><th>precision</th><th>recall</th>"
                       "<th>F1</th><th>images</th></tr>\n");
        bprintf(&md, "| class | precision | recall | F1 | images |\n|---|---:|---:|---:|---:|\n");
        for (int c = 0; c < r->n_classes; c++) {
            double p, rec, f1;
            long support;
            class_metrics(r, c, &p, &rec, &f1, &support);
            bprintf(&html, "<tr class=\"class\"><td>");
            html_text(&html, class_name(r, c));
            bprintf(&html, "</td><td>%s</td><td>%s</td><td>%s</td><td>%ld</td></tr>\n", num(x, p, 4),
                    num(y, rec, 4), num(z, f1, 4), support);
            bprintf(&md, "| ");
            md_text(&md, class_name(r, c));
            bprintf(&md, " | %s | %s | %s | %ld |\n", num(x, p, 4), num(y, rec, 4), num(z, f1, 4), support);
        }
        bprintf(&html, "</table>\n");
        bprintf(&md, "\n");
        if (r->n_wrong == 0) {
            bprintf(&html, "<p>No validation image was classified wrongly.</p>\n");
            bprintf(&md, "No validation image was classified wrongly.\n\n");
            continue;
        }
        bprintf(&html, "<p>The %d most confidently wrong validation images:</p>\n<div class=\"gallery\">\n",
                r->n_wrong);
        bprintf(&md, "The %d most confidently wrong validation images:\n\n", r->n_wrong);
        for (int k = 0; k < r->n_wrong; k++) {
            const graft_report_image *im = &r->wrong[k];
            snprintf(name, sizeof name, "wrong_%d_%d.png", i + 1, k + 1);
            snprintf(path, sizeof path, "%s/%s", out_dir, name);
            char caption[512];
            snprintf(caption, sizeof caption, "true %s, predicted %s (%.3f)", class_name(r, im->true_class),
                     class_name(r, im->predicted_class), (double)im->probability);
            const char *base = strrchr(im->path, '/');
            base = base ? base + 1 : im->path;
            bprintf(&html, "<figure>");
            if (graft_image_thumbnail(im->path, 128, path) == GRAFT_OK) {
                if ((s = html_img(&html, path, caption, "thumb")) != GRAFT_OK) goto done;
                bprintf(&md, "![");
                md_text(&md, caption);
                bprintf(&md, "](%s) ", name);
            }
            bprintf(&html, "<figcaption>");
            html_text(&html, base);
            bprintf(&html, "<br>");
            html_text(&html, caption);
            bprintf(&html, "</figcaption></figure>\n");
            md_text(&md, base);
            bprintf(&md, ": ");
            md_text(&md, caption);
            bprintf(&md, "\n\n");
        }
        bprintf(&html, "</div>\n");
    }
    bprintf(&html, "<p><small>Written by graft %s.</small></p>\n</body></html>\n", GRAFT_VERSION);
    bprintf(&md, "Written by graft %s.\n", GRAFT_VERSION);
    if (md.oom || html.oom || sum.oom) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory writing the report in '%s'", out_dir);
        goto done;
    }
    snprintf(path, sizeof path, "%s/report.md", out_dir);
    if ((s = graft_file_write_atomic(path, write_text, md.s)) != GRAFT_OK) goto done;
    snprintf(path, sizeof path, "%s/report.html", out_dir);
    s = graft_file_write_atomic(path, write_text, html.s);
done:
    free(st);
    free(pr);
    free(md.s);
    free(html.s);
    free(sum.s);
    return s;
}
