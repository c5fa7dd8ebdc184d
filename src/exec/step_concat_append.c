/*
 * A dense block grows one tensor: each of DenseNet's conv blocks ends in
 * x = Concatenate([x, conv(x)]), 32 channels more, and unfused each
 * Concatenate copies the whole of x again (about 11% of DenseNet121's
 * features at 150x150: the copies add up to the square of the block's
 * length). Where a chain of such channel Concatenates needs no gradient,
 * each member is the first input of the next, and each but the last is
 * read otherwise only by POINTWISE steps that start at it (the BN -> ReLU
 * -> 1x1 opening every conv block, which reads its input rows with a
 * stride), one buffer as wide as the chain's last member holds them all:
 * member k is the first C_k channels of each pixel's row. The first member
 * copies all its inputs into place, each later one only the inputs after
 * its first, so a block copies each channel once. The last member is the
 * whole buffer, an ordinary tensor to any reader. The copies are the
 * layer's, so the bits are too. Without POINTWISE steps
 * (GRAFT_NO_FUSED_INFERENCE=1) no chain forms.
 */
#include "exec/plan.h"

#include <stdlib.h>
#include <string.h>

static int channels(const graft_model *m, int i)
{
    return m->layers[i]->out_shape.dim[2];
}

/* A Concatenate that may join a chain: run by itself, needing no gradient,
 * joining (H, W, C) maps along their channels. */
static bool candidate(const graft_model *m, const struct graft_plan *p, int i)
{
    const graft_layer *l = m->layers[i];
    return p->steps[p->step_of[i]].kind == GRAFT_STEP_LAYER && !l->requires_grad &&
           l->n_inputs >= 2 && graft_concatenate_channels(l);
}

/* Whether member v may be a prefix of the chain's buffer with `next` after
 * it: not the model's output; next reads it as its first input only; its
 * other readers are one-input layers that start a POINTWISE step (not a
 * squeeze-and-excitation one, which reads whole images); none across a kept
 * split. */
static bool may_continue(const graft_model *m, const struct graft_plan *p, int v, int next)
{
    const graft_layer *n = m->layers[next];
    if (v == graft_model_output_index(m) || n->inputs[0] != v) return false;
    for (int j = 1; j < n->n_inputs; j++)
        if (n->inputs[j] == v) return false;
    for (int r = v + 1; r < m->n_layers; r++) {
        const graft_layer *l = m->layers[r];
        bool reads = false;
        for (int j = 0; j < l->n_inputs; j++)
            reads = reads || l->inputs[j] == v;
        if (!reads) continue;
        if (graft_plan_split_between(m, v, r)) return false;
        if (r == next) continue;
        const graft_step *s = &p->steps[p->step_of[r]];
        if (s->kind != GRAFT_STEP_POINTWISE || s->layer[0] != r || l->n_inputs != 1 ||
            s->blk.excite >= 0)
            return false;
    }
    return true;
}

graft_status graft_step_concat_chains(const graft_model *m, struct graft_plan *p)
{
    const int L = m->n_layers;
    /* Per layer: 1 + the first member of its chain, and per first member 1
     * + its chain's last (0: none). */
    int *first = calloc((size_t)L, sizeof(int)), *last = calloc((size_t)L, sizeof(int));
    if (!first || !last) {
        free(first);
        free(last);
        return graft_fail(GRAFT_ENOMEM, "out of memory planning steps");
    }
    for (int i = 1; i < L; i++) {
        if (!candidate(m, p, i)) continue;
        const int v = m->layers[i]->inputs[0];
        first[i] = first[v] && may_continue(m, p, v, i) ? first[v] : i + 1;
        last[first[i] - 1] = i + 1;
    }
    for (int i = 1; i < L; i++) {
        const int f = first[i] - 1;
        if (f < 0 || last[f] - 1 == f) continue; /* not in a chain of two or more */
        p->steps[p->step_of[i]].kind = GRAFT_STEP_CONCAT_APPEND;
        p->buf_of[i] = f;
        p->row_floats[i] = channels(m, last[f] - 1);
    }
    free(first);
    free(last);
    return GRAFT_OK;
}

bool graft_step_concat_view(const graft_model *m, const struct graft_plan *p, int i)
{
    return p->row_floats[i] != 0 && p->row_floats[i] != channels(m, i);
}

bool graft_step_concat_crosses(const graft_model *m, const struct graft_plan *p, int k)
{
    for (int v = 1; v < k && v < p->n_layers; v++) {
        if (!graft_step_concat_view(m, p, v)) continue;
        for (int r = k; r < m->n_layers; r++)
            for (int j = 0; j < m->layers[r]->n_inputs; j++)
                if (m->layers[r]->inputs[j] == v) return true;
    }
    return false;
}

void graft_step_concat_append_forward(graft_model *m, const graft_step *s, const graft_fwd *f)
{
    const struct graft_plan *p = m->plan;
    const int i = s->layer[0];
    const graft_layer *l = m->layers[i];
    const size_t width = (size_t)p->row_floats[i];
    const long pixels = (long)f->n * l->out_shape.dim[0] * l->out_shape.dim[1];
    /* The first member copies every input; a later one finds its first
     * input (the member before) in place. */
    const int k0 = p->buf_of[i] == i ? 0 : 1;
    const size_t at = k0 ? (size_t)channels(m, l->inputs[0]) : 0;
    size_t floats = 0;
    for (int k = k0; k < l->n_inputs; k++)
        floats += (size_t)channels(m, l->inputs[k]);
#pragma omp parallel for schedule(static) if ((size_t)pixels * floats > 65536)
    for (long px = 0; px < pixels; px++) {
        float *y = f->out + (size_t)px * width + at;
        for (int k = k0; k < l->n_inputs; k++) {
            const size_t c = (size_t)channels(m, l->inputs[k]);
            memcpy(y, f->in[k] + (size_t)px * c, c * sizeof(float));
            y += c;
        }
    }
}
