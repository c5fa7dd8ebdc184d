/* Keras's model.summary() table. */
#include "graph/graph.h"

#include <stdio.h>
#include <string.h>

static void thousands(size_t v, char *buf, size_t cap)
{
    char raw[32];
    int len = snprintf(raw, sizeof raw, "%zu", v);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
}

static bool is_chain(const graft_model *m)
{
    for (int i = 1; i < m->n_layers; i++)
        if (m->layers[i]->n_inputs != 1 || m->layers[i]->inputs[0] != i - 1) return false;
    return true;
}

/* One table row as Keras's print_row lays it out: each field is cut to its
 * column (less a two-space gap), preferably after "),", "},", "]," or "',",
 * and what does not fit continues on the next lines. */
static void print_row(FILE *out, const char **fields, const int *stops, int n)
{
    const char *left[4];
    for (int i = 0; i < n; i++) left[i] = fields[i];
    for (;;) {
        bool any = false;
        for (int i = 0; i < n; i++) any |= *left[i] != '\0';
        if (!any) break;
        char line[256];
        int len = 0;
        for (int col = 0; col < n; col++) {
            int start = col ? stops[col - 1] : 0, space = col != n - 1 ? 2 : 0;
            int cut = stops[col] - start - space, avail = (int)strlen(left[col]);
            if (cut > avail) cut = avail;
            int best = cut;
            static const char *const breaks[] = {"),", "},", "],", "',"};
            for (int b = 0; b < 4; b++) {
                for (int k = 0; k + 1 < cut; k++) {
                    if (left[col][k] == breaks[b][0] && left[col][k + 1] == breaks[b][1]) {
                        if (k + 2 < best) best = k + 2;
                        break;
                    }
                }
            }
            if (col == 0) line[len++] = ' ';
            memcpy(line + len, left[col], (size_t)best);
            len += best;
            for (int k = 0; k < space; k++) line[len++] = ' ';
            left[col] += best;
            while (len < stops[col]) line[len++] = ' ';
        }
        line[len] = '\0';
        fprintf(out, "%s\n", line);
    }
}

static void rule(FILE *out, char c, int width)
{
    for (int i = 0; i < width; i++) fputc(c, out);
    fputc('\n', out);
}

void graft_model_summary(const graft_model *m, FILE *out)
{
    bool chain = is_chain(m);
    static const int seq_stops[] = {29, 55, 65};
    static const int fun_stops[] = {29, 58, 68, 98};
    const int *stops = chain ? seq_stops : fun_stops;
    int ncol = chain ? 3 : 4, width = stops[ncol - 1];
    fprintf(out, "Model: \"%s\"\n", m->name);
    rule(out, '_', width);
    const char *head[] = {"Layer (type)", "Output Shape", "Param #", "Connected to"};
    print_row(out, head, stops, ncol);
    rule(out, '=', width);
    for (int i = 0; i < m->n_layers; i++) {
        const graft_layer *l = m->layers[i];
        char name[GRAFT_NAME_MAX + 48], shape[112], params[32], conn[GRAFT_NAME_MAX + 16] = "";
        snprintf(name, sizeof name, "%s (%s)", l->name, l->ops->class_name);
        graft_shape_format(&l->out_shape, shape, sizeof shape - 2);
        if (l->n_inputs == 0) { /* Keras prints an InputLayer's shape as a list */
            memmove(shape + 1, shape, strlen(shape) + 1);
            shape[0] = '[';
            strcat(shape, "]");
        }
        snprintf(params, sizeof params, "%zu", graft_layer_count_params(l));
        /* "Connected to": one input per line, as a Python list over the lines. */
        for (int k = 0; k < (chain ? 0 : l->n_inputs > 0 ? l->n_inputs : 1); k++) {
            if (l->n_inputs > 0)
                snprintf(conn, sizeof conn, "%s'%s[0][0]'%s", k == 0 ? "[" : " ",
                         m->layers[l->inputs[k]]->name, k + 1 == l->n_inputs ? "]" : ",");
            else
                snprintf(conn, sizeof conn, "[]");
            const char *row[] = {k ? "" : name, k ? "" : shape, k ? "" : params, conn};
            print_row(out, row, stops, ncol);
        }
        if (chain) {
            const char *row[] = {name, shape, params};
            print_row(out, row, stops, ncol);
        } else if (i + 1 < m->n_layers) {
            fputc('\n', out);
        }
    }
    rule(out, '=', width);
    graft_param_counts c = graft_model_count_params(m);
    char a[32], b[32], d[32];
    thousands(c.total, a, sizeof a);
    thousands(c.trainable, b, sizeof b);
    thousands(c.non_trainable, d, sizeof d);
    fprintf(out, "Total params: %s\nTrainable params: %s\nNon-trainable params: %s\n", a, b, d);
    rule(out, '_', width);
}

