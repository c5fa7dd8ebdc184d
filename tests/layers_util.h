/* Helpers for the tests of the layer kinds added for Keras Applications:
 * a multi-input layer run directly (forward, and a central-difference
 * gradient check of its input gradients), models read from a Keras config
 * string, and the round trip through graft's .h5 writer. */
#ifndef GRAFT_LAYERS_UTIL_H
#define GRAFT_LAYERS_UTIL_H

#include "io/io.h"
#include "io_util.h"
#include "layer_check.h"

#define FIXTURE_LAYERS_C "tests/fixtures/layers/layers_c.bin"

/* A test-only kind without inputs that stands for a tensor of a given shape
 * (a graft model has one InputLayer; layer_run feeds every input itself). */
static graft_status source_build(graft_layer *l, const graft_shape *in)
{
    (void)in;
    l->out_shape = *(const graft_shape *)l->cfg;
    return GRAFT_OK;
}
static void source_forward(graft_layer *l, const graft_fwd *f)
{
    (void)l;
    (void)f;
}
static const graft_layer_ops source_ops = {
    .class_name = "Source", .build = source_build, .forward = source_forward};

/* A model with an InputLayer of shapes[0] and sources of the other shapes
 * (the layer under test is added by the caller and run with layer_run). */
static inline graft_model *inputs_model(int n, const graft_shape *shapes, graft_layer **ins)
{
    graft_model *m = graft_model_new("t");
    ins[0] = graft_input(m, NULL, shapes[0]);
    for (int k = 1; k < n; k++)
        ins[k] = graft_model_add_layer(m, &source_ops, NULL, "source", &shapes[k], sizeof *shapes,
                                       0, NULL);
    return m;
}

/* Runs layer l's forward on the given inputs (n samples) into out (inference). */
static inline void layer_run(graft_layer *l, int n, const float *const *in, float *out)
{
    graft_fwd f = {.n = n, .training = false, .in = in, .out = out};
    l->ops->forward(l, &f);
}

static inline size_t layer_in_size(const graft_layer *l, int k)
{
    return graft_shape_size(&l->model->layers[l->inputs[k]]->out_shape);
}

/* Central differences of L = sum(out * r) against the layer's backward, for
 * every input element (layers without aux or scratch). Returns mismatches. */
static inline int layer_gradcheck(graft_layer *l, int n, float *const *in, uint64_t seed)
{
    const double eps = 1e-2, atol = 2e-3, rtol = 2e-2;
    const int K = l->n_inputs;
    size_t osz = (size_t)n * graft_shape_size(&l->out_shape);
    float *out = malloc(osz * sizeof(float)), *r = malloc(osz * sizeof(float));
    float *dout = malloc(osz * sizeof(float));
    float *din[64];
    bool acc[64] = {0};
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    for (size_t i = 0; i < osz; i++) r[i] = graft_rng_normal(&rng);
    for (int k = 0; k < K; k++) din[k] = malloc((size_t)n * layer_in_size(l, k) * sizeof(float));
    layer_run(l, n, (const float *const *)in, out);
    memcpy(dout, r, osz * sizeof(float));
    graft_bwd b = {.n = n, .training = true, .in = (const float *const *)in, .out = out,
                   .dout = dout, .din = din, .din_accumulate = acc};
    l->ops->backward(l, &b);
    int bad = 0;
    for (int k = 0; k < K; k++) {
        size_t sz = (size_t)n * layer_in_size(l, k);
        for (size_t i = 0; i < sz; i++) {
            float keep = in[k][i];
            double lp = 0, lm = 0;
            in[k][i] = keep + (float)eps;
            layer_run(l, n, (const float *const *)in, out);
            for (size_t j = 0; j < osz; j++) lp += (double)out[j] * r[j];
            in[k][i] = keep - (float)eps;
            layer_run(l, n, (const float *const *)in, out);
            for (size_t j = 0; j < osz; j++) lm += (double)out[j] * r[j];
            in[k][i] = keep;
            double num = (lp - lm) / (2 * eps), ana = din[k][i];
            if (!(fabs(num - ana) <= atol + rtol * fabs(num)) && bad++ < 5)
                CHECK_MSG(0, "%s: d(input %d)[%zu]: analytic %.6g, numeric %.6g", l->name, k, i,
                          ana, num);
        }
        free(din[k]);
    }
    free(out);
    free(r);
    free(dout);
    return bad;
}

/* Compares n floats with a fixture array. */
static inline void check_array(const float *got, const fixture_array *want, size_t n, double atol,
                               double rtol)
{
    CHECK_MSG(want && want->size == n, "reference %s: %zu floats, want %zu",
              want ? want->name : "(missing)", want ? want->size : 0, n);
    if (!want || want->size != n) return;
    size_t worst = 0;
    double r = check_close_ratio(got, want->data, n, atol, rtol, &worst);
    CHECK_MSG(r <= 1.0, "%s: [%zu] %.9g vs reference %.9g", want->name, worst, (double)got[worst],
              (double)want->data[worst]);
}

/* Copies a fixture array into weight k of layer l (sizes must agree). */
static inline void set_weight(graft_layer *l, int k, const fixture_array *a)
{
    CHECK_MSG(l && a && k < graft_layer_num_weights(l), "weight %d of %s", k, l ? l->name : "?");
    if (!l || !a || k >= graft_layer_num_weights(l)) return;
    graft_shape s = graft_layer_weight_shape(l, k);
    CHECK_MSG(graft_shape_size(&s) == a->size, "%s: %zu floats for weight %s of %zu", a->name,
              a->size, graft_layer_weight_name(l, k), graft_shape_size(&s));
    if (graft_shape_size(&s) == a->size)
        memcpy(graft_layer_weight_data(l, k), a->data, a->size * sizeof(float));
}

/* A model from a Keras model config string. */
static inline graft_status model_from_json(const char *json, graft_model **m)
{
    cJSON *j = cJSON_Parse(json);
    *m = NULL;
    if (!j) return GRAFT_EFORMAT;
    graft_status s = io_model_from_config(j, "cfg.json", m);
    cJSON_Delete(j);
    return s;
}

/* "{Sequential of an InputLayer of `shape` and the given layer entries}". */
static inline graft_status sequential_from_json(const char *shape, const char *layers,
                                                graft_model **m)
{
    char json[8192];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
             "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"in\", "
             "\"batch_input_shape\": [null, %s]}}, %s]}}",
             shape, layers);
    return model_from_json(json, m);
}

/* Every weight drawn from `seed` (variances kept positive). */
static inline void fill_random_weights(graft_model *m, uint64_t seed)
{
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            graft_shape s = graft_layer_weight_shape(l, k);
            float *w = graft_layer_weight_data(l, k);
            bool pos = strstr(graft_layer_weight_name(l, k), "variance") != NULL;
            for (size_t j = 0; w && j < graft_shape_size(&s); j++)
                w[j] = pos ? 0.5f + graft_rng_uniform(&rng) : graft_rng_uniform(&rng) - 0.5f;
        }
    }
}

/* The model's Keras config as text. */
static inline char *model_config_text(const graft_model *m)
{
    cJSON *c = NULL;
    CHECK_OK(io_model_to_config(m, &c));
    char *t = c ? cJSON_PrintUnformatted(c) : NULL;
    cJSON_Delete(c);
    return t;
}

/* Saves m as a Keras .h5, loads it back, and checks the classes, the
 * config written again and the predictions on n random samples (bit for bit). */
static inline void check_h5_round_trip(graft_model *a, int n)
{
    static bool init;
    if (!init) {
        CHECK(io_tmp_init() == 0);
        init = true;
    }
    const char *p = io_tmp("round_trip.h5");
    graft_model *b = NULL;
    CHECK_OK(graft_model_save(a, p));
    CHECK_OK(graft_model_load(p, &b));
    if (!b) return;
    CHECK(graft_model_num_layers(a) == graft_model_num_layers(b));
    for (int i = 0; i < graft_model_num_layers(a) && i < graft_model_num_layers(b); i++)
        CHECK(strcmp(graft_layer_class(graft_model_layer(a, i)),
                     graft_layer_class(graft_model_layer(b, i))) == 0);
    char *ca = model_config_text(a), *cb = model_config_text(b);
    CHECK_MSG(ca && cb && strcmp(ca, cb) == 0, "\n%s\n%s", ca ? ca : "", cb ? cb : "");
    cJSON_free(ca);
    cJSON_free(cb);
    graft_shape is = graft_layer_output_shape(graft_model_layer(a, 0));
    graft_shape os = graft_layer_output_shape(graft_model_output(a));
    size_t nin = (size_t)n * graft_shape_size(&is), nout = (size_t)n * graft_shape_size(&os);
    float *x = malloc(nin * sizeof *x), *ya = calloc(nout, sizeof *ya), *yb = calloc(nout, sizeof *yb);
    graft_rng rng;
    graft_rng_seed(&rng, 7);
    for (size_t i = 0; i < nin; i++) x[i] = 4.0f * graft_rng_uniform(&rng) - 2.0f;
    CHECK_OK(graft_model_predict(a, x, n, ya));
    CHECK_OK(graft_model_predict(b, x, n, yb));
    CHECK_MSG(memcmp(ya, yb, nout * sizeof(float)) == 0, "predictions differ after the round trip");
    free(x);
    free(ya);
    free(yb);
    graft_model_free(b);
}

#endif
