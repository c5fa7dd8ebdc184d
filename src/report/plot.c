/*
 * The lesson's figures, drawn with cairo's vector API and written as PNG:
 * panels with title, axis labels, ticks at "nice" steps, grid, curves with
 * gaps at missing entries, a legend placed where it hides the fewest data
 * points, and the dashed line where fine-tuning starts. Colours and sizes
 * follow matplotlib's defaults at 100 dpi so they look like the lesson's.
 */
#include "core/atomic_file.h"
#include "internal.h"

#include <cairo.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double r, g, b;
} color;

/* matplotlib's default colour cycle ("tab10"). */
static const color TAB10[10] = {
    {0x1f / 255.0, 0x77 / 255.0, 0xb4 / 255.0}, {0xff / 255.0, 0x7f / 255.0, 0x0e / 255.0},
    {0x2c / 255.0, 0xa0 / 255.0, 0x2c / 255.0}, {0xd6 / 255.0, 0x27 / 255.0, 0x28 / 255.0},
    {0x94 / 255.0, 0x67 / 255.0, 0xbd / 255.0}, {0x8c / 255.0, 0x56 / 255.0, 0x4b / 255.0},
    {0xe3 / 255.0, 0x77 / 255.0, 0xc2 / 255.0}, {0x7f / 255.0, 0x7f / 255.0, 0x7f / 255.0},
    {0xbc / 255.0, 0xbd / 255.0, 0x22 / 255.0}, {0x17 / 255.0, 0xbe / 255.0, 0xcf / 255.0},
};
static const color BLACK = {0, 0, 0};
static const color GRID = {0.69, 0.69, 0.69};
static const color VLINE = {0.15, 0.15, 0.15};

/* A generic family: fontconfig resolves it to whatever sans font is installed. */
#define FONT_FAMILY "sans-serif"
#define TITLE_PX 16.0
#define LABEL_PX 14.0
#define TICK_PX 12.0
#define LEGEND_PX 12.0
#define TICK_LEN 5.0
#define LINE_PX 2.0
#define PLOT_MAX_VLINES 64

typedef struct {
    const char *label; /* NULL: not in the legend */
    const int *x;
    const double *y;
    int n;
    color c;
    bool dashed;
    int mark; /* a diamond on the point at this x (INT_MIN: none) */
} series;

/* Legend positions, in matplotlib's order of preference for loc='best'. */
enum {
    UPPER_RIGHT,
    UPPER_LEFT,
    LOWER_LEFT,
    LOWER_RIGHT,
    RIGHT,
    CENTER_LEFT,
    LOWER_CENTER,
    UPPER_CENTER,
    CENTER,
    N_LOCS
};

typedef struct {
    const char *title, *xlabel, *ylabel;
    const series *s;
    int ns;
    int nv; /* dashed lines where stages start */
    double vline[PLOT_MAX_VLINES];
    const char *vline_label[PLOT_MAX_VLINES]; /* NULL: not in the legend */
    bool vline_colored;
    color vline_c[PLOT_MAX_VLINES];
    const char *note; /* one more legend line, without swatch (may be NULL) */
    int legend_loc; /* preferred position */

    /* axes, from the data */
    double xmin, xmax, xstep, ymin, ymax, ystep;
    int ydecimals;
    /* data area in pixels */
    double px, py, pw, ph;
} panel;

/* ------------------------------------------------------------ axes */

/* NAN and infinities are gaps; so are values so huge that the axis span
 * would overflow. */
static bool plottable(double y)
{
    return isfinite(y) && fabs(y) < 1e300;
}

/* The smallest of 1, 2, 2.5, 5 (x 10^k) at least raw; integer axes skip 2.5. */
static double nice_step(double raw, bool integer)
{
    double mag = pow(10.0, floor(log10(raw)));
    static const double m[] = {1, 2, 2.5, 5, 10};
    double step = 10 * mag;
    for (int i = 0; i < 5; i++) {
        if (integer && m[i] == 2.5 && mag < 10) continue;
        if (m[i] * mag >= raw * (1 - 1e-9)) {
            step = m[i] * mag;
            break;
        }
    }
    return integer && step < 1 ? 1 : step;
}

/* Data limits with matplotlib's 5% margins; a flat range is widened so the
 * axis never has zero length. */
static void finish_axis(double lo, double hi, bool integer, double *amin, double *amax,
                        double *step)
{
    if (!(hi > lo)) {
        double pad = integer ? 0.5 : fmax(fabs(lo) * 0.05, 0.05);
        lo -= pad;
        hi += pad;
    } else {
        double m = 0.05 * (hi - lo);
        lo -= m;
        hi += m;
    }
    *amin = lo;
    *amax = hi;
    /* epochs get a few more ticks: steps of 2 for the lesson's 15 epochs */
    *step = nice_step((hi - lo) / (integer ? 8 : 6), integer);
}

static int decimals_for(double step)
{
    for (int k = 0; k < 12; k++) {
        double s = step * pow(10.0, k);
        if (fabs(s - round(s)) < 1e-6 * s) return k;
    }
    return 12;
}

static void panel_ranges(panel *p)
{
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < p->ns; k++)
        for (int i = 0; i < p->s[k].n; i++) {
            double y = p->s[k].y[i];
            if (!plottable(y)) continue;
            xlo = fmin(xlo, p->s[k].x[i]);
            xhi = fmax(xhi, p->s[k].x[i]);
            ylo = fmin(ylo, y);
            yhi = fmax(yhi, y);
        }
    if (!isfinite(ylo)) { /* nothing measured: still show the epochs */
        ylo = 0;
        yhi = 1;
        for (int k = 0; k < p->ns; k++)
            for (int i = 0; i < p->s[k].n; i++) {
                xlo = fmin(xlo, p->s[k].x[i]);
                xhi = fmax(xhi, p->s[k].x[i]);
            }
    }
    for (int v = 0; v < p->nv; v++) {
        xlo = fmin(xlo, p->vline[v]);
        xhi = fmax(xhi, p->vline[v]);
    }
    finish_axis(xlo, xhi, true, &p->xmin, &p->xmax, &p->xstep);
    finish_axis(ylo, yhi, false, &p->ymin, &p->ymax, &p->ystep);
    p->ydecimals = decimals_for(p->ystep);
}

static double to_px(const panel *p, double x)
{
    return p->px + (x - p->xmin) / (p->xmax - p->xmin) * p->pw;
}
static double to_py(const panel *p, double y)
{
    return p->py + p->ph - (y - p->ymin) / (p->ymax - p->ymin) * p->ph;
}

/* Tick values k*step inside [lo, hi]. */
static int ticks(double lo, double hi, double step, double *out, int cap)
{
    int n = 0;
    for (double k = ceil(lo / step - 1e-9); n < cap; k++) {
        double v = k * step;
        if (v > hi + 1e-9 * step) break;
        out[n++] = fabs(v) < 1e-9 * step ? 0 : v;
    }
    return n;
}

/* ------------------------------------------------------------ text */

static void font(cairo_t *cr, double px)
{
    cairo_select_font_face(cr, FONT_FAMILY, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, px);
}

static double text_width(cairo_t *cr, const char *s, double px)
{
    font(cr, px);
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    return te.x_advance;
}

static double text_height(cairo_t *cr, double px)
{
    font(cr, px);
    cairo_font_extents_t fe;
    cairo_font_extents(cr, &fe);
    return fe.ascent + fe.descent;
}

/* Draws s with its box anchored at (x, y): ax 0/0.5/1 = left/centre/right,
 * ay 0/0.5/1 = top/middle/bottom of the line; angle turns it about the anchor. */
static void text_at(cairo_t *cr, const char *s, double px, double x, double y, double ax, double ay,
                    double angle, color c)
{
    font(cr, px);
    cairo_text_extents_t te;
    cairo_font_extents_t fe;
    cairo_text_extents(cr, s, &te);
    cairo_font_extents(cr, &fe);
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, angle);
    cairo_move_to(cr, -ax * te.x_advance, -ay * (fe.ascent + fe.descent) + fe.ascent);
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
    cairo_show_text(cr, s);
    cairo_restore(cr);
}

/* Fixed decimals as matplotlib shows them, unless the step is so fine that
 * they would run long. */
static void fmt_tick(char *buf, size_t cap, double v, int decimals)
{
    if (decimals > 6)
        snprintf(buf, cap, "%.4g", v);
    else
        snprintf(buf, cap, "%.*f", decimals, v);
}

/* ------------------------------------------------------------ layout */

#define MAX_TICKS 64

/* Pixels left of the data area: y label, tick labels, ticks. */
static double left_margin(cairo_t *cr, const panel *p)
{
    double t[MAX_TICKS], w = 0;
    int n = ticks(p->ymin, p->ymax, p->ystep, t, MAX_TICKS);
    for (int i = 0; i < n; i++) {
        char buf[64];
        fmt_tick(buf, sizeof buf, t[i], p->ydecimals);
        w = fmax(w, text_width(cr, buf, TICK_PX));
    }
    double label = p->ylabel ? text_height(cr, LABEL_PX) + 8 : 0;
    return 12 + label + w + 4 + TICK_LEN;
}

/* Places the data area of p inside the box (x, y, w, h). */
static void layout(cairo_t *cr, panel *p, double x, double y, double w, double h, double left)
{
    double top = 10 + text_height(cr, TITLE_PX) + 8;
    double bottom = TICK_LEN + 4 + text_height(cr, TICK_PX) + 8;
    if (p->xlabel) bottom += text_height(cr, LABEL_PX) + 4;
    p->px = x + left;
    p->py = y + top;
    p->pw = w - left - 25;
    p->ph = h - top - bottom;
}

/* ------------------------------------------------------------ legend */

typedef struct {
    double x, y, w, h, row;
    int n;
} legend_box;

static bool shown(const series *s)
{
    if (!s->label) return false;
    for (int i = 0; i < s->n; i++)
        if (plottable(s->y[i])) return true;
    return false;
}

static int legend_entries(const panel *p)
{
    int n = p->note ? 1 : 0;
    for (int v = 0; v < p->nv; v++) n += p->vline_label[v] != NULL;
    for (int k = 0; k < p->ns; k++) n += shown(&p->s[k]);
    return n;
}

/* Data points (sampled every 2 px along the curves) inside the box. */
static int covered(const panel *p, const legend_box *b)
{
    double x0 = b->x - 3, y0 = b->y - 3, x1 = b->x + b->w + 3, y1 = b->y + b->h + 3;
    int count = 0;
    for (int k = 0; k < p->ns; k++) {
        const series *s = &p->s[k];
        for (int i = 0; i < s->n; i++) {
            if (!plottable(s->y[i])) continue;
            double ax = to_px(p, s->x[i]), ay = to_py(p, s->y[i]);
            double bx = ax, by = ay;
            if (i + 1 < s->n && plottable(s->y[i + 1])) {
                bx = to_px(p, s->x[i + 1]);
                by = to_py(p, s->y[i + 1]);
            }
            int steps = 1 + (int)(hypot(bx - ax, by - ay) / 2);
            for (int j = 0; j < steps; j++) {
                double t = (double)j / steps, x = ax + t * (bx - ax), y = ay + t * (by - ay);
                count += x >= x0 && x <= x1 && y >= y0 && y <= y1;
            }
        }
    }
    for (int v = 0; v < p->nv; v++) {
        double x = to_px(p, p->vline[v]);
        if (x >= x0 && x <= x1) count += (int)(fmin(y1, p->py + p->ph) - fmax(y0, p->py)) / 2;
    }
    return count;
}

static void place_legend(const panel *p, int loc, legend_box *b)
{
    const double inset = 10;
    double left = p->px + inset, right = p->px + p->pw - inset - b->w;
    double top = p->py + inset, bottom = p->py + p->ph - inset - b->h;
    double cx = p->px + (p->pw - b->w) / 2, cy = p->py + (p->ph - b->h) / 2;
    switch (loc) {
    case UPPER_RIGHT: b->x = right, b->y = top; break;
    case UPPER_LEFT: b->x = left, b->y = top; break;
    case LOWER_LEFT: b->x = left, b->y = bottom; break;
    case LOWER_RIGHT: b->x = right, b->y = bottom; break;
    case RIGHT: b->x = right, b->y = cy; break;
    case CENTER_LEFT: b->x = left, b->y = cy; break;
    case LOWER_CENTER: b->x = cx, b->y = bottom; break;
    case UPPER_CENTER: b->x = cx, b->y = top; break;
    default: b->x = cx, b->y = cy; break;
    }
}

static void swatch(cairo_t *cr, double x, double y, color c, bool dashed)
{
    cairo_save(cr);
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
    cairo_set_line_width(cr, dashed ? 1.5 : LINE_PX);
    if (dashed) cairo_set_dash(cr, (double[]){6, 4}, 2, 0);
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + 28, y);
    cairo_stroke(cr);
    cairo_restore(cr);
}

/* The preferred position unless it hides data another position would not. */
static void draw_legend(cairo_t *cr, const panel *p)
{
    legend_box b = {.n = legend_entries(p)};
    if (b.n == 0) return;
    b.row = text_height(cr, LEGEND_PX) * 1.25;
    double tw = 0;
    for (int k = 0; k < p->ns; k++)
        if (shown(&p->s[k])) tw = fmax(tw, text_width(cr, p->s[k].label, LEGEND_PX));
    for (int v = 0; v < p->nv; v++)
        if (p->vline_label[v]) tw = fmax(tw, text_width(cr, p->vline_label[v], LEGEND_PX));
    if (p->note) tw = fmax(tw, text_width(cr, p->note, LEGEND_PX) - 36);
    b.w = 8 + 28 + 8 + tw + 10;
    b.h = 6 + b.n * b.row + 6;

    int best = p->legend_loc, best_cov = -1;
    for (int i = -1; i < N_LOCS; i++) {
        int loc = i < 0 ? p->legend_loc : i;
        place_legend(p, loc, &b);
        int c = covered(p, &b);
        if (best_cov < 0 || c < best_cov) {
            best = loc;
            best_cov = c;
        }
        if (c == 0) break;
    }
    place_legend(p, best, &b);

    cairo_save(cr);
    cairo_rectangle(cr, b.x, b.y, b.w, b.h);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    double y = b.y + 6;
    for (int k = 0; k < p->ns; k++) {
        if (!shown(&p->s[k])) continue;
        swatch(cr, b.x + 8, y + b.row / 2, p->s[k].c, p->s[k].dashed);
        text_at(cr, p->s[k].label, LEGEND_PX, b.x + 44, y + b.row / 2, 0, 0.5, 0, BLACK);
        y += b.row;
    }
    for (int v = 0; v < p->nv; v++) {
        if (!p->vline_label[v]) continue;
        swatch(cr, b.x + 8, y + b.row / 2, p->vline_colored ? p->vline_c[v] : VLINE, true);
        text_at(cr, p->vline_label[v], LEGEND_PX, b.x + 44, y + b.row / 2, 0, 0.5, 0, BLACK);
        y += b.row;
    }
    if (p->note) text_at(cr, p->note, LEGEND_PX, b.x + 8, y + b.row / 2, 0, 0.5, 0, BLACK);
    cairo_restore(cr);
}

/* ------------------------------------------------------------ drawing */

/* Pixel-centred coordinate, so 1 px lines stay sharp. */
static double crisp(double v)
{
    return floor(v) + 0.5;
}

static void draw_series(cairo_t *cr, const panel *p, const series *s)
{
    cairo_set_source_rgb(cr, s->c.r, s->c.g, s->c.b);
    cairo_set_line_width(cr, LINE_PX);
    cairo_set_dash(cr, (double[]){7, 4}, s->dashed ? 2 : 0, 0);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    for (int i = 0; i < s->n; i++) {
        if (!plottable(s->y[i])) continue;
        double x = to_px(p, s->x[i]), y = to_py(p, s->y[i]);
        bool prev = i > 0 && plottable(s->y[i - 1]);
        bool next = i + 1 < s->n && plottable(s->y[i + 1]);
        if (prev)
            cairo_line_to(cr, x, y);
        else
            cairo_move_to(cr, x, y);
        if (!prev && !next) { /* a lone point between gaps: a dot, or it would not show */
            cairo_stroke(cr);
            cairo_arc(cr, x, y, 3, 0, 2 * M_PI);
            cairo_fill(cr);
        }
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    for (int i = 0; i < s->n; i++) {
        if (s->x[i] != s->mark || !plottable(s->y[i])) continue;
        double x = to_px(p, s->x[i]), y = to_py(p, s->y[i]);
        cairo_move_to(cr, x, y - 7);
        cairo_line_to(cr, x + 6, y);
        cairo_line_to(cr, x, y + 7);
        cairo_line_to(cr, x - 6, y);
        cairo_close_path(cr);
        cairo_fill(cr);
    }
}

static void draw_panel(cairo_t *cr, const panel *p)
{
    double t[MAX_TICKS];
    char buf[64];
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    cairo_set_dash(cr, NULL, 0, 0);

    /* grid under everything */
    cairo_set_source_rgb(cr, GRID.r, GRID.g, GRID.b);
    cairo_set_line_width(cr, 1);
    int nx = ticks(p->xmin, p->xmax, p->xstep, t, MAX_TICKS);
    for (int i = 0; i < nx; i++) {
        double x = crisp(to_px(p, t[i]));
        cairo_move_to(cr, x, p->py);
        cairo_line_to(cr, x, p->py + p->ph);
    }
    double ty[MAX_TICKS];
    int ny = ticks(p->ymin, p->ymax, p->ystep, ty, MAX_TICKS);
    for (int i = 0; i < ny; i++) {
        double y = crisp(to_py(p, ty[i]));
        cairo_move_to(cr, p->px, y);
        cairo_line_to(cr, p->px + p->pw, y);
    }
    cairo_stroke(cr);

    cairo_save(cr);
    cairo_rectangle(cr, p->px, p->py, p->pw, p->ph);
    cairo_clip(cr);
    for (int k = 0; k < p->ns; k++)
        draw_series(cr, p, &p->s[k]);
    for (int v = 0; v < p->nv; v++) {
        double x = crisp(to_px(p, p->vline[v]));
        color vc = p->vline_colored ? p->vline_c[v] : VLINE;
        cairo_set_source_rgb(cr, vc.r, vc.g, vc.b);
        cairo_set_line_width(cr, 1.5);
        cairo_set_dash(cr, (double[]){6, 4}, 2, 0);
        cairo_move_to(cr, x, p->py);
        cairo_line_to(cr, x, p->py + p->ph);
        cairo_stroke(cr);
    }
    cairo_restore(cr);

    /* frame, ticks and their labels */
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, crisp(p->px), crisp(p->py), floor(p->pw), floor(p->ph));
    for (int i = 0; i < nx; i++) {
        double x = crisp(to_px(p, t[i]));
        cairo_move_to(cr, x, p->py + p->ph);
        cairo_line_to(cr, x, p->py + p->ph + TICK_LEN);
    }
    for (int i = 0; i < ny; i++) {
        double y = crisp(to_py(p, ty[i]));
        cairo_move_to(cr, p->px, y);
        cairo_line_to(cr, p->px - TICK_LEN, y);
    }
    cairo_stroke(cr);
    for (int i = 0; i < nx; i++) {
        fmt_tick(buf, sizeof buf, t[i], 0);
        text_at(cr, buf, TICK_PX, to_px(p, t[i]), p->py + p->ph + TICK_LEN + 3, 0.5, 0, 0, BLACK);
    }
    for (int i = 0; i < ny; i++) {
        fmt_tick(buf, sizeof buf, ty[i], p->ydecimals);
        text_at(cr, buf, TICK_PX, p->px - TICK_LEN - 4, to_py(p, ty[i]), 1, 0.5, 0, BLACK);
    }

    /* title (shrunk to fit when long), axis labels */
    double tsize = TITLE_PX, tw = text_width(cr, p->title, TITLE_PX);
    if (tw > p->pw) tsize *= p->pw / tw;
    text_at(cr, p->title, tsize, p->px + p->pw / 2, p->py - 8, 0.5, 1, 0, BLACK);
    if (p->xlabel)
        text_at(cr, p->xlabel, LABEL_PX, p->px + p->pw / 2,
                p->py + p->ph + TICK_LEN + 4 + text_height(cr, TICK_PX) + 4, 0.5, 0, 0, BLACK);
    if (p->ylabel) {
        double w = 0;
        for (int i = 0; i < ny; i++) {
            fmt_tick(buf, sizeof buf, ty[i], p->ydecimals);
            w = fmax(w, text_width(cr, buf, TICK_PX));
        }
        text_at(cr, p->ylabel, LABEL_PX, p->px - TICK_LEN - 4 - w - 8, p->py + p->ph / 2, 0.5, 1,
                -M_PI / 2, BLACK);
    }
    draw_legend(cr, p);
}

/* ------------------------------------------------------------ PNG output */

typedef struct {
    const char *path;
    cairo_surface_t *surface;
} png_ctx;

static cairo_status_t png_chunk(void *closure, const unsigned char *data, unsigned int len)
{
    return fwrite(data, 1, len, closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static graft_status write_png(FILE *f, void *vctx)
{
    const png_ctx *c = vctx;
    errno = 0;
    cairo_status_t cs = cairo_surface_write_to_png_stream(c->surface, png_chunk, f);
    if (cs != CAIRO_STATUS_SUCCESS)
        return graft_fail(GRAFT_EIO, "cannot write '%s': %s%s%s", c->path,
                          cairo_status_to_string(cs), errno ? ": " : "",
                          errno ? strerror(errno) : "");
    return GRAFT_OK;
}

/* Draws the panels on a white w x h canvas with one shared left margin (so
 * stacked panels line up) and writes the PNG. */
static graft_status render(panel *panels, int n, int w, int h, const char *path)
{
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    cairo_t *cr = cairo_create(surface);
    cairo_status_t cs = cairo_status(cr);
    if (cs == CAIRO_STATUS_SUCCESS) {
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_paint(cr);
        double left = 0;
        for (int i = 0; i < n; i++) {
            panel_ranges(&panels[i]);
            left = fmax(left, left_margin(cr, &panels[i]));
        }
        for (int i = 0; i < n; i++) {
            layout(cr, &panels[i], 0, (double)h * i / n, w, (double)h / n, left);
            draw_panel(cr, &panels[i]);
        }
        cs = cairo_status(cr);
    }
    cairo_destroy(cr);
    if (cs == CAIRO_STATUS_SUCCESS) {
        cairo_surface_flush(surface);
        cs = cairo_surface_status(surface);
    }
    graft_status s;
    if (cs != CAIRO_STATUS_SUCCESS) {
        s = graft_fail(cs == CAIRO_STATUS_NO_MEMORY ? GRAFT_ENOMEM : GRAFT_EINVAL,
                       "cannot draw '%s': cairo: %s", path, cairo_status_to_string(cs));
    } else {
        s = graft_file_write_atomic(path, write_png, &(png_ctx){path, surface});
    }
    cairo_surface_destroy(surface);
    return s;
}

/* ------------------------------------------------------------ figures */

graft_status graft_plot_stages(const graft_history *h, const graft_stages_plot *cfg,
                               const char *png_path)
{
    if (!png_path) return graft_fail(GRAFT_EINVAL, "no file name for the figure");
    if (!h || h->n <= 0)
        return graft_fail(GRAFT_EINVAL, "'%s': nothing to plot, the history is empty", png_path);
    const graft_stages_plot none = {0};
    if (!cfg) cfg = &none;
    if (cfg->n_stages < 0 || cfg->n_stages > GRAFT_PLOT_MAX_STAGES + 1 || (cfg->n_stages && !cfg->stages))
        return graft_fail(GRAFT_EINVAL, "'%s': %d stages (at most %d)", png_path, cfg->n_stages,
                          GRAFT_PLOT_MAX_STAGES + 1);
    char labels[GRAFT_PLOT_MAX_STAGES][GRAFT_STAGE_NAME_MAX + 8];
    panel proto = {.nv = 0};
    for (int k = 1; k < cfg->n_stages; k++) { /* the first stage needs no line */
        const graft_history_stage *st = &cfg->stages[k];
        int e = st->first_epoch;
        if (e < h->epoch[0] || e > h->epoch[h->n - 1] + 1 || e <= cfg->stages[k - 1].first_epoch)
            return graft_fail(GRAFT_EINVAL,
                              "'%s': stage '%s' starts at epoch %d, outside the history's epochs "
                              "%d..%d or not after the stage before it",
                              png_path, st->name, e, h->epoch[0], h->epoch[h->n - 1]);
        snprintf(labels[proto.nv], sizeof labels[proto.nv], "Start %s", st->name);
        proto.vline_label[proto.nv] = labels[proto.nv];
        proto.vline[proto.nv++] = e - 1; /* where the stage's curves begin */
    }
    series acc[2] = {{"Training Accuracy", h->epoch, h->accuracy, h->n, TAB10[0], false, INT_MIN},
                     {"Validation Accuracy", h->epoch, h->val_accuracy, h->n, TAB10[1], false, INT_MIN}};
    series loss[2] = {{"Training Loss", h->epoch, h->loss, h->n, TAB10[0], false, INT_MIN},
                      {"Validation Loss", h->epoch, h->val_loss, h->n, TAB10[1], false, INT_MIN}};
    panel panels[2] = {proto, proto};
    panels[0].title = cfg->accuracy_title ? cfg->accuracy_title : "Training and Validation Accuracy";
    panels[0].ylabel = "Accuracy";
    panels[0].s = acc;
    panels[0].ns = 2;
    panels[0].legend_loc = LOWER_RIGHT;
    panels[1].title = cfg->loss_title ? cfg->loss_title : "Training and Validation Loss";
    panels[1].xlabel = "Epochs";
    panels[1].ylabel = "Loss";
    panels[1].s = loss;
    panels[1].ns = 2;
    panels[1].legend_loc = UPPER_RIGHT;
    return render(panels, 2, 800, 800, png_path);
}

graft_status graft_plot_compare(const graft_history *const *runs, const char *const *labels,
                                int n_runs, const char *png_path, const char *title)
{
    if (!png_path) return graft_fail(GRAFT_EINVAL, "no file name for the comparison figure");
    if (!runs || n_runs <= 0) return graft_fail(GRAFT_EINVAL, "'%s': no runs to compare", png_path);
    series *s = calloc((size_t)n_runs, sizeof *s);
    char(*names)[32] = calloc((size_t)n_runs, sizeof *names);
    graft_status st = GRAFT_OK;
    if (!s || !names) {
        st = graft_fail(GRAFT_ENOMEM, "out of memory drawing '%s'", png_path);
        goto done;
    }
    for (int i = 0; i < n_runs; i++) {
        snprintf(names[i], sizeof names[i], "run %d", i + 1);
        const char *label = labels && labels[i] ? labels[i] : names[i];
        const graft_history *h = runs[i];
        if (!h || h->n <= 0) {
            st = graft_fail(GRAFT_EINVAL, "'%s': run \"%s\" has an empty history", png_path, label);
            goto done;
        }
        s[i] = (series){label, h->epoch, h->val_accuracy, h->n, TAB10[i % 10], false, INT_MIN};
        if (!shown(&s[i])) {
            st = graft_fail(GRAFT_EINVAL, "'%s': run \"%s\" has no validation accuracy", png_path,
                            label);
            goto done;
        }
    }
    panel p = {.title = title ? title : "Validation accuracy comparison",
               .xlabel = "Epochs",
               .ylabel = "Accuracy",
               .s = s,
               .ns = n_runs,
                              .legend_loc = LOWER_RIGHT};
    st = render(&p, 1, 800, 600, png_path);
done:
    free(s);
    free(names);
    return st;
}

graft_status graft_plot_runs(const graft_plot_run *runs, int n_runs, const char *title,
                             const char *png_path)
{
    if (!png_path) return graft_fail(GRAFT_EINVAL, "no file name for the learning curves");
    if (!runs || n_runs <= 0) return graft_fail(GRAFT_EINVAL, "'%s': no runs to plot", png_path);
    series *s = calloc((size_t)n_runs * 4, sizeof *s);
    char(*names)[32] = calloc((size_t)n_runs, sizeof *names);
    graft_status st = GRAFT_OK;
    if (!s || !names) {
        st = graft_fail(GRAFT_ENOMEM, "out of memory drawing '%s'", png_path);
        goto done;
    }
    panel acc = {.title = title ? title : "Accuracy of the runs",
                 .ylabel = "Accuracy",
                 .s = s,
                 .ns = 2 * n_runs,
                 .legend_loc = LOWER_RIGHT,
                 .vline_colored = true,
                 .note = "dashed: training; solid: validation"};
    panel loss = {.title = "Loss of the runs",
                  .xlabel = "Epochs",
                  .ylabel = "Loss",
                  .s = s + 2 * n_runs,
                  .ns = 2 * n_runs,
                  .legend_loc = UPPER_RIGHT,
                  .vline_colored = true};
    for (int i = 0; i < n_runs; i++) {
        const graft_plot_run *r = &runs[i];
        snprintf(names[i], sizeof names[i], "run %d", i + 1);
        const char *label = r->label ? r->label : names[i];
        const graft_history *h = r->h;
        if (!h || h->n <= 0) {
            st = graft_fail(GRAFT_EINVAL, "'%s': run \"%s\" has an empty history", png_path, label);
            goto done;
        }
        if (r->n_stages < 0 || (r->n_stages && !r->stages)) {
            st = graft_fail(GRAFT_EINVAL, "'%s': run \"%s\": %d stages", png_path, label, r->n_stages);
            goto done;
        }
        /* Where a later stage starts: its first epoch's point is marked, and
         * a dashed line drawn in the run's colour. */
        int mark = INT_MIN;
        for (int k = 1; k < r->n_stages; k++) {
            int e = r->stages[k].first_epoch;
            if (e < h->epoch[0] || e > h->epoch[h->n - 1]) continue;
            if (mark == INT_MIN) mark = e;
            for (int pi = 0; pi < 2; pi++) {
                panel *p = pi ? &loss : &acc;
                if (p->nv == PLOT_MAX_VLINES) continue;
                p->vline_c[p->nv] = TAB10[i % 10];
                p->vline_label[p->nv] = NULL;
                p->vline[p->nv++] = e - 0.5;
            }
        }
        color c = TAB10[i % 10];
        s[2 * i] = (series){label, h->epoch, h->val_accuracy, h->n, c, false, mark};
        s[2 * i + 1] = (series){NULL, h->epoch, h->accuracy, h->n, c, true, INT_MIN};
        s[2 * n_runs + 2 * i] = (series){label, h->epoch, h->val_loss, h->n, c, false, mark};
        s[2 * n_runs + 2 * i + 1] = (series){NULL, h->epoch, h->loss, h->n, c, true, INT_MIN};
    }
    if (acc.nv) loss.note = "dashed vertical line, diamond: fine-tuning starts";
    panel panels[2] = {acc, loss};
    st = render(panels, 2, 900, 900, png_path);
done:
    free(s);
    free(names);
    return st;
}

graft_status graft_plot_confusion(const long *counts, int n_classes, const char *const *classes,
                                  const char *title, const char *png_path)
{
    if (!png_path) return graft_fail(GRAFT_EINVAL, "no file name for the confusion matrix");
    if (!counts || !classes || n_classes < 2 || n_classes > GRAFT_PLOT_MAX_CLASSES)
        return graft_fail(GRAFT_EINVAL, "'%s': a confusion matrix of 2 to %d classes is drawn, not %d",
                          png_path, GRAFT_PLOT_MAX_CLASSES, n_classes);
    int nc = n_classes;
    double cell = nc <= 4 ? 110 : nc <= 10 ? 60 : 600.0 / nc;
    cairo_surface_t *measure = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *mc = cairo_create(measure);
    double label_w = 0;
    for (int i = 0; i < nc; i++) label_w = fmax(label_w, text_width(mc, classes[i] ? classes[i] : "", TICK_PX));
    cairo_destroy(mc);
    cairo_surface_destroy(measure);
    label_w = fmin(label_w, 200);
    double left = 40 + label_w + 10, top = 50, w = fmax(left + nc * cell + 30, 480),
           h = top + nc * cell + label_w + 50;
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)w, (int)h);
    cairo_t *cr = cairo_create(surface);
    long max = 1;
    for (int i = 0; i < nc * nc; i++)
        if (counts[i] > max) max = counts[i];
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    text_at(cr, title ? title : "Confusion matrix", TITLE_PX, w / 2, 10, 0.5, 0, 0, BLACK);
    for (int t = 0; t < nc; t++)
        for (int k = 0; k < nc; k++) {
            long v = counts[t * nc + k];
            double f = (double)v / max; /* white to matplotlib's "Blues" dark end */
            color c = {1 - f * (1 - 0.03), 1 - f * (1 - 0.19), 1 - f * (1 - 0.42)};
            cairo_set_source_rgb(cr, c.r, c.g, c.b);
            cairo_rectangle(cr, left + k * cell, top + t * cell, cell, cell);
            cairo_fill(cr);
            char buf[32];
            snprintf(buf, sizeof buf, "%ld", v);
            color tc = f > 0.5 ? (color){1, 1, 1} : BLACK;
            text_at(cr, buf, fmin(LABEL_PX, cell / 3), left + (k + 0.5) * cell, top + (t + 0.5) * cell, 0.5, 0.5, 0, tc);
        }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, crisp(left), crisp(top), nc * cell, nc * cell);
    cairo_stroke(cr);
    for (int i = 0; i < nc; i++) {
        const char *name = classes[i] ? classes[i] : "";
        text_at(cr, name, TICK_PX, left - 6, top + (i + 0.5) * cell, 1, 0.5, 0, BLACK);
        text_at(cr, name, TICK_PX, left + (i + 0.5) * cell, top + nc * cell + 6, 1, 0.5, -M_PI / 2, BLACK);
    }
    text_at(cr, "true class", LABEL_PX, 8, top + nc * cell / 2, 0.5, 0, -M_PI / 2, BLACK);
    text_at(cr, "predicted class", LABEL_PX, left + nc * cell / 2, h - 8, 0.5, 1, 0, BLACK);
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    graft_status st;
    if (cs != CAIRO_STATUS_SUCCESS) {
        st = graft_fail(cs == CAIRO_STATUS_NO_MEMORY ? GRAFT_ENOMEM : GRAFT_EINVAL, "cannot draw '%s': cairo: %s",
                        png_path, cairo_status_to_string(cs));
    } else {
        cairo_surface_flush(surface);
        st = graft_file_write_atomic(png_path, write_png, &(png_ctx){png_path, surface});
    }
    cairo_surface_destroy(surface);
    return st;
}

graft_status graft_image_thumbnail(const char *image_path, int max_side, const char *png_path)
{
    int h, w;
    if (max_side < 8 || max_side > 1024)
        return graft_fail(GRAFT_EINVAL, "'%s': thumbnail size %d is not in [8, 1024]", png_path, max_side);
    graft_status st = graft_image_size(image_path, &h, &w);
    if (st != GRAFT_OK) return st;
    double scale = (double)max_side / (h > w ? h : w);
    int th = (int)fmax(1, round(h * scale)), tw = (int)fmax(1, round(w * scale));
    float *px = malloc((size_t)th * tw * 3 * sizeof(float));
    if (!px) return graft_fail(GRAFT_ENOMEM, "out of memory for a thumbnail of '%s'", image_path);
    st = graft_image_load(image_path, th, tw, GRAFT_INTERP_BILINEAR, 0, px);
    if (st != GRAFT_OK) {
        free(px);
        return st;
    }
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, tw, th);
    if (cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS) {
        unsigned char *data = cairo_image_surface_get_data(surface);
        int stride = cairo_image_surface_get_stride(surface);
        for (int y = 0; y < th; y++)
            for (int x = 0; x < tw; x++) {
                const float *p = px + ((size_t)y * tw + x) * 3;
                uint32_t v = 0;
                for (int c = 0; c < 3; c++) {
                    float f = p[c] < 0 ? 0 : p[c] > 255 ? 255 : p[c];
                    v = v << 8 | (uint32_t)lrintf(f);
                }
                memcpy(data + (size_t)y * stride + (size_t)x * 4, &v, 4);
            }
        cairo_surface_mark_dirty(surface);
        st = graft_file_write_atomic(png_path, write_png, &(png_ctx){png_path, surface});
    } else {
        st = graft_fail(GRAFT_ENOMEM, "cannot draw a thumbnail of '%s'", image_path);
    }
    cairo_surface_destroy(surface);
    free(px);
    return st;
}
