/* Keras's optimizers (TF2 optimizer_v2 update rules), compile and the learning rate. */
#include "internal.h"

#include <math.h>
#include <string.h>

graft_optimizer graft_adam(float learning_rate)
{
    graft_optimizer o = {.kind = GRAFT_ADAM, .learning_rate = learning_rate, .beta_1 = 0.9f,
                         .beta_2 = 0.999f, .epsilon = 1e-7f};
    return o;
}

graft_optimizer graft_sgd(float learning_rate, float momentum, int nesterov)
{
    graft_optimizer o = {.kind = GRAFT_SGD, .learning_rate = learning_rate, .momentum = momentum,
                         .nesterov = nesterov};
    return o;
}

graft_optimizer graft_rmsprop(float learning_rate)
{
    graft_optimizer o = {.kind = GRAFT_RMSPROP, .learning_rate = learning_rate, .rho = 0.9f,
                         .epsilon = 1e-7f};
    return o;
}

static graft_status check_optimizer(const graft_optimizer *o)
{
    if (!(o->learning_rate >= 0) || !isfinite(o->learning_rate))
        return graft_fail(GRAFT_EINVAL, "optimizer: learning rate %g is not a finite number >= 0",
                          o->learning_rate);
    switch (o->kind) {
    case GRAFT_SGD:
        if (!(o->momentum >= 0 && o->momentum <= 1))
            return graft_fail(GRAFT_EINVAL, "SGD: momentum %g is not in [0, 1]", o->momentum);
        return GRAFT_OK;
    case GRAFT_ADAM:
        if (!(o->beta_1 >= 0 && o->beta_1 < 1 && o->beta_2 >= 0 && o->beta_2 < 1 && o->epsilon >= 0))
            return graft_fail(GRAFT_EINVAL, "Adam: beta_1 and beta_2 must be in [0, 1), epsilon >= 0");
        return GRAFT_OK;
    case GRAFT_RMSPROP:
        if (!(o->rho >= 0 && o->rho < 1 && o->epsilon >= 0 && o->momentum >= 0 && o->momentum < 1))
            return graft_fail(GRAFT_EINVAL, "RMSprop: rho and momentum must be in [0, 1), epsilon >= 0");
        return GRAFT_OK;
    }
    return graft_fail(GRAFT_EINVAL, "unknown optimizer kind %d", (int)o->kind);
}

graft_status graft_model_compile(graft_model *m, const graft_compile_cfg *cfg)
{
    if (!m || !cfg) return graft_fail(GRAFT_EINVAL, "compile: missing model or config");
    if (m->status != GRAFT_OK)
        return graft_fail(m->status, "model '%s' was not built: %s", m->name, m->error);
    graft_status s = check_optimizer(&cfg->optimizer);
    if (s != GRAFT_OK) return s;
    if ((unsigned)cfg->loss > GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY)
        return graft_fail(GRAFT_EINVAL, "compile: unknown loss %d", (int)cfg->loss);
    const graft_layer *o = graft_model_output(m);
    if (!o) return graft_fail(GRAFT_ESTATE, "compile: model '%s' has no layers", m->name);
    if (o->out_shape.rank != 1)
        return graft_fail(GRAFT_ESHAPE,
                          "compile: the output of '%s' has rank %d; losses take a flat output "
                          "(add Flatten or GlobalAveragePooling2D and Dense)",
                          o->name, o->out_shape.rank);
    m->compile = *cfg;
    /* New optimizer state, as a fresh Keras optimizer at compile. */
    graft_pages_free(m->opt_m);
    graft_pages_free(m->opt_v);
    m->opt_m = m->opt_v = NULL;
    size_t bytes = m->n_weight_floats * sizeof(float);
    bool two_slots = cfg->optimizer.kind == GRAFT_ADAM ||
                     (cfg->optimizer.kind == GRAFT_RMSPROP && cfg->optimizer.momentum > 0);
    bool one_slot = two_slots || cfg->optimizer.kind == GRAFT_RMSPROP || cfg->optimizer.momentum > 0;
    if (one_slot && !(m->opt_m = graft_pages_alloc(bytes)))
        return graft_fail(GRAFT_ENOMEM, "compile: out of memory for optimizer state");
    if (two_slots && !(m->opt_v = graft_pages_alloc(bytes))) {
        graft_pages_free(m->opt_m);
        m->opt_m = NULL;
        return graft_fail(GRAFT_ENOMEM, "compile: out of memory for optimizer state");
    }
    m->opt_iterations = 0;
    graft_rng_seed(&m->rng, cfg->seed);
    for (int i = 0; i < m->n_layers; i++) m->layers[i]->trains = m->layers[i]->trainable;
    m->compiled = true;
    m->capacity = 0; /* trainability may have changed: re-plan buffers */
    return GRAFT_OK;
}

graft_status graft_model_set_learning_rate(graft_model *m, float lr)
{
    if (!m->compiled) return graft_fail(GRAFT_ESTATE, "set_learning_rate: compile the model first");
    if (!(lr >= 0) || !isfinite(lr))
        return graft_fail(GRAFT_EINVAL, "learning rate %g is not a finite number >= 0", lr);
    m->compile.optimizer.learning_rate = lr;
    return GRAFT_OK;
}

float graft_model_learning_rate(const graft_model *m) { return m->compile.optimizer.learning_rate; }

/* Below this many weights a loop is not worth waking the OpenMP team. */
#define PAR_MIN 32768

/* Each weight's update reads only its own gradient and slots, so a static split
 * over threads gives the same bits as one thread. Loops over i < n. Below
 * PAR_MIN no parallel region at all: an `if` clause still costs a call into
 * the runtime, and the sharded step calls this per block of 2048. */
#define EACH_WEIGHT(body)                                                                       \
    do {                                                                                        \
        if (n >= PAR_MIN) {                                                                     \
            _Pragma("omp parallel for simd schedule(static)")                                   \
            for (size_t i = 0; i < n; i++) body                                                 \
        } else {                                                                                \
            _Pragma("omp simd")                                                                 \
            for (size_t i = 0; i < n; i++) body                                                 \
        }                                                                                       \
    } while (0)

static void step_range(const graft_optimizer *o, float *w, const float *g, float *s1, float *s2,
                       size_t n, float lr_t)
{
    const float lr = o->learning_rate, mom = o->momentum, b1 = o->beta_1, b2 = o->beta_2,
                eps = o->epsilon, rho = o->rho;
    /* s1 and s2 are NULL unless compile allocated them, and compile allocates
     * them for exactly the cases below that read them. */
    // NOLINTBEGIN(clang-analyzer-core.NullDereference)
    switch (o->kind) {
    case GRAFT_SGD:
        if (mom == 0) {
            EACH_WEIGHT({ w[i] -= lr * g[i]; });
        } else if (o->nesterov) {
            EACH_WEIGHT({
                s1[i] = mom * s1[i] - lr * g[i];
                w[i] += mom * s1[i] - lr * g[i];
            });
        } else {
            EACH_WEIGHT({
                s1[i] = mom * s1[i] - lr * g[i];
                w[i] += s1[i];
            });
        }
        break;
    case GRAFT_ADAM:
        EACH_WEIGHT({
            s1[i] += (g[i] - s1[i]) * (1 - b1);
            s2[i] += (g[i] * g[i] - s2[i]) * (1 - b2);
            w[i] -= lr_t * s1[i] / (sqrtf(s2[i]) + eps);
        });
        break;
    case GRAFT_RMSPROP:
        if (mom > 0) {
            EACH_WEIGHT({
                s1[i] = rho * s1[i] + (1 - rho) * g[i] * g[i];
                s2[i] = mom * s2[i] + lr * g[i] / sqrtf(s1[i] + eps);
                w[i] -= s2[i];
            });
        } else {
            EACH_WEIGHT({
                s1[i] = rho * s1[i] + (1 - rho) * g[i] * g[i];
                w[i] -= lr * g[i] / (sqrtf(s1[i]) + eps);
            });
        }
        break;
    }
    // NOLINTEND(clang-analyzer-core.NullDereference)
}

float graft_optimizer_begin_step(graft_model *m)
{
    const graft_optimizer *o = &m->compile.optimizer;
    m->opt_iterations++;
    if (o->kind != GRAFT_ADAM) return o->learning_rate;
    double t = (double)m->opt_iterations;
    return (float)(o->learning_rate * sqrt(1 - pow(o->beta_2, t)) / (1 - pow(o->beta_1, t)));
}

void graft_optimizer_step_part(graft_model *m, float lr_t, size_t off, size_t n, const float *g)
{
    step_range(&m->compile.optimizer, m->weights + off, g, m->opt_m ? m->opt_m + off : NULL,
               m->opt_v ? m->opt_v + off : NULL, n, lr_t);
}

void graft_optimizer_step(graft_model *m)
{
    const graft_optimizer *o = &m->compile.optimizer;
    const float lr_t = graft_optimizer_begin_step(m);
    for (int i = 0; i < m->n_layers; i++) {
        graft_layer *l = m->layers[i];
        if (!l->trains) continue;
        for (int k = 0; k < l->n_weights; k++) {
            graft_weight *w = &l->weights[k];
            if (!w->trainable) continue;
            size_t n = graft_shape_size(&w->shape);
            step_range(o, w->data, w->grad, m->opt_m ? m->opt_m + w->offset : NULL,
                       m->opt_v ? m->opt_v + w->offset : NULL, n, lr_t);
        }
    }
}
