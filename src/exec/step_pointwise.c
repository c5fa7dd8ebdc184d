/*
 * Inference through a 1x1 Conv2D of any stride -> [BatchNormalization] ->
 * [clamp] -> [Add of a tensor an earlier step computed] -> [clamp] as one
 * GEMM (kernels/pointwise.c) whose epilogue applies the rest while each
 * output is in a register: ResNet50's bottlenecks end in 1x1 -> BN -> Add ->
 * ReLU, which unfused are three more passes over the block's largest
 * tensor, and its strided 1x1 convolutions (the first of each stage and the
 * projection shortcuts) become a GEMM over every other input pixel instead
 * of a oneDNN convolution followed by an epilogue pass.
 *
 * Blocks of rows go to the threads; every output's bits are one FMA chain,
 * whatever the block, batch, thread count or ISA. GRAFT_NO_FUSED_INFERENCE=1
 * runs the layers apart.
 */
#include "exec/plan.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <string.h>

/* Output pixels per block of a stride-1 GEMM: a multiple of the AVX-512
 * tile's 12 rows, a few blocks per thread on the smallest images. */
#define BLOCK_PIXELS 96

static bool one_by_one(const graft_model *m, int i, graft_conv_geom *g, int *F, bool *clamp,
                       float *lo, float *hi)
{
    const float *k, *b;
    graft_activation a;
    const graft_layer *l = m->layers[i];
    return !l->requires_grad && graft_conv2d_args(l, g, F, &k, &b, &a) && g->kh == 1 &&
           g->kw == 1 && g->pad_top == 0 && g->pad_left == 0 && *F <= GRAFT_EPILOGUE_MAX_C &&
           graft_step_conv_act(a, clamp, lo, hi);
}

bool graft_step_pointwise_match(const graft_model *m, int i, bool training, const int *step_of,
                                graft_step *s)
{
    if (training || graft_env_on(GRAFT_ENV_NO_FUSED_INFERENCE)) return false;
    graft_step f = {.kind = GRAFT_STEP_POINTWISE, .n = 1, .layer = {i}, .bn = -1};
    graft_dw_block *b = &f.blk;
    b->expand = b->expand_bn = b->pad = b->dw = b->dw_bn = b->project_bn = b->add = -1;
    b->residual = -1;
    b->project = i;
    graft_conv_geom g;
    int F;
    if (!one_by_one(m, i, &g, &F, &b->project_clamp, &b->project_lo, &b->project_hi)) return false;
    int j = graft_step_take_bn_clamp(m, &f, i, b->project_clamp, &b->project_bn, &b->project_clamp,
                                     &b->project_lo, &b->project_hi);
    int r = graft_plan_sole_reader(m, j);
    /* An activation runs on each block after the GEMM's epilogue: no residual then. */
    if (r > 0 && !m->layers[r]->requires_grad && graft_activation_elementwise(m->layers[r], &f.epi.act)) {
        f.layer[f.n++] = r;
        r = -1;
    }
    if (r > 0) {
        const graft_layer *add = m->layers[r];
        if (strcmp(add->ops->class_name, "Add") == 0 && !add->requires_grad && add->n_inputs == 2 &&
            add->inputs[0] != add->inputs[1]) {
            int other = add->inputs[0] == j ? add->inputs[1] : add->inputs[0];
            const graft_shape *os = &m->layers[other]->out_shape;
            if (step_of[other] >= 0 && m->layers[other]->out_shape.rank == 3 &&
                graft_shape_size(os) == graft_shape_size(&add->out_shape) &&
                os->dim[2] == add->out_shape.dim[2]) {
                b->add = r;
                b->residual = other;
                f.layer[f.n++] = r;
                int c = graft_plan_sole_reader(m, r);
                if (c > 0 && !m->layers[c]->requires_grad &&
                    graft_step_act_clamp(m->layers[c], &b->add_lo, &b->add_hi)) {
                    b->add_clamp = true;
                    f.layer[f.n++] = c;
                }
            }
        }
    }
    *s = f;
    return true;
}

size_t graft_step_pointwise_scratch_floats(const graft_model *m, const graft_step *s)
{
    const graft_layer *l = m->layers[s->layer[0]];
    const int C = m->layers[l->inputs[0]]->out_shape.dim[2], F = l->out_shape.dim[2];
    return graft_pw_pack_floats(C, F, true);
}

size_t graft_step_pointwise_param_floats(const graft_model *m, const graft_step *s)
{
    return 3 * (size_t)m->layers[s->layer[0]]->out_shape.dim[2];
}

void graft_step_pointwise_describe(const graft_model *m, const graft_step *s, char *buf, size_t size)
{
    const graft_dw_block *b = &s->blk;
    graft_conv_geom g;
    int F;
    const float *k, *bias;
    graft_activation a;
    graft_conv2d_args(m->layers[s->layer[0]], &g, &F, &k, &bias, &a);
    snprintf(buf, size, "1x1/%d %d -> %d%s%s%s%s, %s", g.sh, g.c, F, b->project_bn >= 0 ? " + BN" : "",
             b->project_clamp ? " + clamp" : "", b->add >= 0 ? " + residual" : "",
             b->add_clamp ? " + clamp" : "", graft_kernels_avx512() ? "AVX-512" : "AVX2");
    if (s->epi.act != GRAFT_LINEAR)
        snprintf(buf + strlen(buf), size - strlen(buf), " + %s", graft_activation_name(s->epi.act));
}

void graft_step_pointwise_forward(graft_model *m, graft_step *s, const graft_fwd *f)
{
    const graft_dw_block *b = &s->blk;
    graft_conv_geom g;
    int F;
    const float *W, *bias;
    graft_activation a;
    graft_conv2d_args(m->layers[s->layer[0]], &g, &F, &W, &bias, &a);
    graft_kernel_epi e = {.bias = bias,
                          .clamp = b->project_clamp,
                          .lo = b->project_lo,
                          .hi = b->project_hi,
                          .res_clamp = b->add_clamp,
                          .res_lo = b->add_lo,
                          .res_hi = b->add_hi};
    if (b->project_bn >= 0 &&
        graft_batch_norm_inference(m->layers[b->project_bn], s->bn_params, s->bn_params + F,
                                   s->bn_params + 2 * F)) {
        e.mean = s->bn_params;
        e.scale = s->bn_params + F;
        e.shift = s->bn_params + 2 * F;
    }
    const bool wide = graft_kernels_avx512();
    const int K = g.c;
    /* The kernel in the GEMM's panels: K * F copies, against n * oh * ow
     * times as many multiply-adds. ldb 0 marks it packed. */
    size_t ldb = (size_t)F;
    const size_t P = (size_t)f->n * g.oh * g.ow;
    if (P >= GRAFT_PW_PACK_MIN_ROWS) {
        graft_pw_pack(K, F, W, (size_t)F, f->scratch, wide);
        W = f->scratch;
        ldb = 0;
    }
    const float *x = f->in[0], *res = b->add >= 0 ? m->layers[b->residual]->out : NULL;
    float *out = m->layers[s->layer[s->n - 1]]->out;
    const int C = g.c;
    /* Work items: blocks of output pixels (stride 1: any run of them, the
     * input's pixels being the output's; strided: one output row, reading
     * every sw-th pixel of input row oy * sh) times groups of 32 columns
     * when there are too few blocks for the threads (a batch of one). */
    const bool unit = g.sh == 1 && g.sw == 1;
    const long row_items = unit ? (long)((P + BLOCK_PIXELS - 1) / BLOCK_PIXELS) : (long)f->n * g.oh;
    const int th = graft_threads(), panels = (F + 31) / 32;
    int groups = row_items >= 2 * th ? 1 : (int)((2 * th + row_items - 1) / row_items);
    if (groups > panels) groups = panels;
    const long items = row_items * groups;
#pragma omp parallel for schedule(static) num_threads(th)
    for (long it = 0; it < items; it++) {
        const long ri = it / groups;
        const int gi = (int)(it % groups);
        const int c0 = panels * gi / groups * 32, c1 = panels * (gi + 1) / groups * 32;
        const int nc = (c1 < F ? c1 : F) - c0;
        size_t p0;
        int rows;
        const float *arow;
        size_t lda;
        if (unit) {
            p0 = (size_t)ri * BLOCK_PIXELS;
            rows = P - p0 < BLOCK_PIXELS ? (int)(P - p0) : BLOCK_PIXELS;
            arow = x + p0 * C;
            lda = (size_t)C;
        } else {
            const int img = (int)(ri / g.oh), oy = (int)(ri % g.oh);
            p0 = (size_t)ri * g.ow;
            rows = g.ow;
            arow = x + (((size_t)img * g.h + (size_t)oy * g.sh) * g.w) * C;
            lda = (size_t)g.sw * C;
        }
        graft_kernel_epi ec = e; /* from column c0 on (packed: its panel starts at c0 * K) */
        if (ec.bias) ec.bias += c0;
        if (ec.mean) ec.mean += c0, ec.scale += c0, ec.shift += c0;
        graft_pw_gemm(rows, nc, K, arow, lda, ldb ? W + c0 : W + (size_t)c0 * K, ldb, out + p0 * F + c0,
                      (size_t)F, &ec, res ? res + p0 * F + c0 : NULL, (size_t)F, wide);
        graft_activation_rows(s->epi.act, out + p0 * F + c0, (size_t)rows, (size_t)nc, (size_t)F);
    }
}
