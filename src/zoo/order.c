/*
 * Keras's model.layers order for a Functional model (functional.py,
 * _map_graph_network): a layer's depth is the longest path from it to the
 * output; layers are listed by decreasing depth, and layers of equal depth in
 * the order a depth-first walk from the output, taking each layer's inputs in
 * order, first meets them. Builders add layers in an order that runs, and
 * this puts them where Keras's summary and topological weight loading
 * expect them. The weights stay where they are in the weight array.
 */
#include "zoo.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int *depth, *seen_at, *stack, *next_input;
    int n_seen;
} walk;

/* Pre-order from the output over input edges (each layer once), iteratively:
 * the zoo's deepest models are about a thousand layers long. */
static void visit(const graft_model *m, walk *w, int root)
{
    int top = 0;
    w->stack[top++] = root;
    w->seen_at[root] = w->n_seen++;
    w->next_input[root] = 0;
    while (top > 0) {
        int i = w->stack[top - 1];
        const graft_layer *l = m->layers[i];
        if (w->next_input[i] < l->n_inputs) {
            int j = l->inputs[w->next_input[i]++];
            if (w->seen_at[j] < 0) {
                w->seen_at[j] = w->n_seen++;
                w->next_input[j] = 0;
                w->stack[top++] = j;
            }
        } else {
            top--;
        }
    }
}

static const int *sort_depth, *sort_seen;

static int by_keras_order(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_depth[i] != sort_depth[j]) return sort_depth[i] > sort_depth[j] ? -1 : 1;
    return (sort_seen[i] > sort_seen[j]) - (sort_seen[i] < sort_seen[j]);
}

graft_status graft_zoo_keras_order(graft_model *m)
{
    if (graft_model_status(m) != GRAFT_OK) return graft_model_status(m);
    int n = m->n_layers, out = graft_model_output_index(m);
    graft_status st = GRAFT_OK;
    int *buf = malloc((size_t)n * 6 * sizeof(int) + 1);
    graft_layer **layers = malloc((size_t)n * sizeof(graft_layer *) + 1);
    if (!buf || !layers) {
        st = graft_fail(GRAFT_ENOMEM, "model '%s': out of memory ordering %d layers", m->name, n);
        goto done;
    }
    walk w = {.depth = buf, .seen_at = buf + n, .stack = buf + 2 * n, .next_input = buf + 3 * n};
    int *order = buf + 4 * n, *new_index = buf + 5 * n;
    for (int i = 0; i < n; i++) {
        w.depth[i] = 0;
        w.seen_at[i] = -1;
    }
    visit(m, &w, out);
    /* Layers come after their inputs, so one backward sweep settles the
     * longest path of each to the output. */
    for (int i = n - 1; i >= 0; i--) {
        const graft_layer *l = m->layers[i];
        for (int k = 0; k < l->n_inputs; k++)
            if (w.depth[l->inputs[k]] < w.depth[i] + 1) w.depth[l->inputs[k]] = w.depth[i] + 1;
    }
    for (int i = 0; i < n; i++) {
        if (w.seen_at[i] < 0) {
            st = graft_fail(GRAFT_EINVAL, "model '%s': layer '%s' does not lead to the output",
                            m->name, m->layers[i]->name);
            goto done;
        }
        order[i] = i;
    }
    sort_depth = w.depth;
    sort_seen = w.seen_at;
    qsort(order, (size_t)n, sizeof *order, by_keras_order);
    for (int i = 0; i < n; i++) new_index[order[i]] = i;
    for (int i = 0; i < n; i++) {
        graft_layer *l = m->layers[order[i]];
        for (int k = 0; k < l->n_inputs; k++) l->inputs[k] = new_index[l->inputs[k]];
        l->index = i;
        layers[i] = l;
    }
    memcpy(m->layers, layers, (size_t)n * sizeof(graft_layer *));
    if (m->output >= 0) m->output = new_index[m->output];
    graft_names_free(&m->names);
    memset(&m->names, 0, sizeof m->names);
    if (graft_names_reserve(&m->names, (size_t)n) != GRAFT_OK) {
        st = graft_fail(GRAFT_ENOMEM, "model '%s': out of memory indexing %d layers", m->name, n);
        goto done;
    }
    for (int i = 0; i < n; i++) (void)graft_names_add(&m->names, m->layers[i]->name, i);
done:
    free(buf);
    free(layers);
    return st;
}
