/* The model graph: building errors name the layer, Keras's automatic names,
 * the summary table, trainable ranges, the buffer planner's reuse, and
 * the weights growing in place. */
#include "check.h"
#include "internal.h"

#include <stdlib.h>
#include <unistd.h>

static void test_invalid_models_refused(void)
{
    graft_model *m = graft_model_new("bad");
    CHECK(graft_input(m, "pixels", graft_shape3(0, 5, 3)) == NULL);
    CHECK(graft_model_status(m) == GRAFT_ESHAPE && strstr(graft_model_error(m), "'pixels'"));
    graft_model_free(m);

    m = graft_model_new("bad");
    CHECK(graft_dense(m, NULL, (graft_dense_cfg){.units = 3}) == NULL); /* no input yet */
    CHECK(strstr(graft_model_error(m), "add an InputLayer first") != NULL);
    graft_model_free(m);

    m = graft_model_new("bad");
    graft_input(m, NULL, graft_shape3(8, 8, 3));
    CHECK(graft_layer_scale(m, NULL, "head", 1e-6f, 4) == NULL); /* 3 channels */
    CHECK(graft_model_status(m) == GRAFT_ESHAPE && strstr(graft_model_error(m), "'head'") &&
          strstr(graft_model_error(m), "projection_dim"));
    /* Sticky: later calls do nothing, the first error stays. */
    CHECK(graft_flatten(m, NULL, NULL) == NULL && strstr(graft_model_error(m), "'head'"));
    graft_model_free(m);

    m = graft_model_new("bad");
    graft_input(m, NULL, graft_shape1(4));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "d", .units = 2});
    CHECK(graft_dense(m, NULL, (graft_dense_cfg){.name = "d", .units = 2}) == NULL);
    CHECK(strstr(graft_model_error(m), "'d' is used twice") != NULL);
    graft_model_free(m);

    graft_model *a = graft_model_new("a"), *b = graft_model_new("b");
    graft_layer *ina = graft_input(a, NULL, graft_shape1(4));
    graft_input(b, NULL, graft_shape1(4));
    CHECK(graft_dense(b, ina, (graft_dense_cfg){.units = 2}) == NULL);
    CHECK(strstr(graft_model_error(b), "another model") != NULL);
    graft_model_free(a);
    graft_model_free(b);

    graft_activation act;
    CHECK(graft_activation_parse("mish", &act) == GRAFT_EUNSUPPORTED && strstr(graft_last_error(), "'mish'"));
    graft_compile_cfg cc = {.optimizer = graft_adam(1e-3f)};
    m = graft_model_new("no_flat");
    graft_input(m, NULL, graft_shape3(4, 4, 1));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 1, .kernel_size = {1, 1}});
    CHECK(graft_model_compile(m, &cc) == GRAFT_ESHAPE); /* a loss needs a flat output */
    graft_model_free(m);
}

static void test_keras_names_and_summary(void)
{
    graft_model *m = graft_model_new("sequential");
    graft_input(m, NULL, graft_shape3(150, 150, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 32, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){0});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 64, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){0});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 128, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    CHECK_OK(graft_model_status(m));
    CHECK(!strcmp(graft_layer_name(graft_model_layer(m, 3)), "conv2d_1"));
    CHECK(!strcmp(graft_layer_name(graft_model_layer(m, -1)), "dense_1"));
    char path[] = "/tmp/graft_summary_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w+");
    graft_model_summary(m, f);
    rewind(f);
    char text[4096] = {0};
    size_t got = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    unlink(path);
    CHECK(got > 0);
    /* Keras's own lines for this model (TF 2.x print_summary). */
    CHECK(strstr(text, " Layer (type)                Output Shape              Param #   \n"));
    CHECK(strstr(text, " conv2d (Conv2D)             (None, 148, 148, 32)      896       \n"));
    CHECK(strstr(text, " max_pooling2d (MaxPooling2D  (None, 74, 74, 32)       0         \n )"));
    CHECK(strstr(text, " dense (Dense)               (None, 128)               10616960  \n"));
    CHECK(strstr(text, "Total params: 10,636,481\nTrainable params: 10,636,481\nNon-trainable params: 0\n"));
    /* Freezing by range (base_model.layers[:-3]) shows in the counts. */
    graft_model_set_trainable(m, 0, -3, 0);
    graft_param_counts pc = graft_model_count_params(m);
    CHECK(pc.trainable == 10616960 + 129 && pc.non_trainable == 896 + 18496);
    CHECK(!graft_layer_trainable(graft_model_layer(m, 3)) && graft_layer_trainable(graft_model_layer(m, -1)));
    graft_model_free(m);
}

/* Inference keeps only live activations: a long chain needs a few buffers, not one per layer. */
static void test_inference_reuses_buffers(void)
{
    graft_model *m = graft_model_new("deep");
    graft_input(m, NULL, graft_shape3(32, 32, 8));
    for (int i = 0; i < 20; i++)
        graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 8, .kernel_size = {3, 3}, .padding = GRAFT_SAME});
    graft_global_average_pooling2d(m, NULL, NULL);
    CHECK_OK(graft_model_prepare(m, 4, false));
    size_t one = 4 * 32 * 32 * 8;
    CHECK_MSG(m->arena_floats <= 3 * one, "arena %zu floats for buffers of %zu", m->arena_floats, one);
    graft_model_free(m);
}

/* GRAFT_PROFILE=1: per-layer seconds for forward, backward and the optimizer,
 * printed to stderr when the model is freed. */
/* The weights grow in place while a model is built (graft_pages_grow's
 * reservation), so that their pages, huge where the system gives them on
 * request, are never moved and split: the first layer's kernel keeps its
 * address and values through 40 more layers (six doublings of the array),
 * under AddressSanitizer too. Outside Linux the arrays come from malloc and
 * do move. */
static void test_weights_grow_in_place(void)
{
    graft_model *m = graft_model_new("grow");
    graft_input(m, NULL, graft_shape1(64));
    graft_layer *first = graft_dense(m, NULL, (graft_dense_cfg){.units = 64});
    CHECK_OK(graft_model_status(m));
    if (!first) {
        graft_model_free(m);
        return;
    }
    const float *k0 = graft_layer_weight_data(first, 0);
    float *copy = malloc(64 * 64 * sizeof(float));
    if (copy) memcpy(copy, k0, 64 * 64 * sizeof(float));
    const size_t cap0 = m->cap_weight_floats;
    for (int i = 0; i < 40; i++) graft_dense(m, NULL, (graft_dense_cfg){.units = 64});
    CHECK_OK(graft_model_status(m));
    CHECK(m->cap_weight_floats >= 32 * cap0);
    CHECK(copy && memcmp(copy, graft_layer_weight_data(first, 0), 64 * 64 * sizeof(float)) == 0);
#ifdef __linux__
    CHECK(graft_layer_weight_data(first, 0) == k0);
#endif
    free(copy);
    graft_model_free(m);
}

static void test_profile_table(void)
{
    setenv("GRAFT_PROFILE", "1", 1);
    graft_model *m = graft_model_new("profiled");
    unsetenv("GRAFT_PROFILE");
    graft_input(m, NULL, graft_shape1(4));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "hidden", .units = 8, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.name = "out", .units = 1, .activation = GRAFT_SIGMOID});
    graft_compile_cfg cc = {.optimizer = graft_adam(1e-3f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    float x[8 * 4], y[8];
    for (int i = 0; i < 32; i++) x[i] = (float)(i % 5) - 2.0f;
    for (int i = 0; i < 8; i++) y[i] = (float)(i % 2);
    graft_source *src = graft_source_arrays(x, y, 8, graft_shape1(4), 1, 4, 0, 1);
    graft_fit_cfg fc = {.epochs = 1};
    CHECK_OK(graft_model_fit(m, src, &fc, NULL));
    CHECK(m->profile != NULL && m->profile[2 * 1] > 0 && m->profile[2 * 1 + 1] > 0 &&
          m->profile[2 * m->n_layers + GRAFT_PROFILE_OPTIMIZER] > 0 &&
          m->profile[2 * m->n_layers + GRAFT_PROFILE_DATA] > 0);
    /* One process: no rank waits. */
    CHECK(m->profile[2 * m->n_layers + GRAFT_PROFILE_ALLREDUCE] == 0);
    /* The table goes to stderr at free: catch it in a file. */
    char path[] = "/tmp/graft_profile_XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    CHECK(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, 2);
    graft_model_free(m);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[2048] = {0};
    CHECK(pread(fd, buf, sizeof buf - 1, 0) > 0);
    close(fd);
    unlink(path);
    CHECK_MSG(strstr(buf, "GRAFT_PROFILE profiled") && strstr(buf, "hidden") && strstr(buf, "Dense") &&
                  strstr(buf, "(optimizer step)") && strstr(buf, "(waiting for data)") &&
                  strstr(buf, "first time after a plan, left out") &&
                  !strstr(buf, "(gradient allreduce)"),
              "%s", buf);
    graft_source_free(src);

    /* Each slot's first time after a plan is kept apart (its buffers'
     * first page faults): one call counts only there, the next in the
     * table, and a new plan (another batch size) starts again. */
    setenv("GRAFT_PROFILE", "1", 1);
    m = graft_model_new("first");
    unsetenv("GRAFT_PROFILE");
    graft_input(m, NULL, graft_shape1(4));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "d", .units = 3});
    CHECK_OK(graft_model_forward(m, x, 2, false));
    CHECK(m->profile && m->profile[2] == 0 && m->profile_first[2] > 0);
    const double once = m->profile_first ? m->profile_first[2] : 0;
    CHECK_OK(graft_model_forward(m, x, 2, false));
    CHECK(m->profile && m->profile[2] > 0 && m->profile_first[2] == once);
    CHECK_OK(graft_model_forward(m, x, 8, false)); /* a larger batch: planned again */
    CHECK(m->profile && m->profile_first[2] > once);
    graft_model_free(m);

    m = graft_model_new("quiet"); /* without the variable: no table, no clock */
    graft_input(m, NULL, graft_shape1(4));
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1});
    CHECK_OK(graft_model_prepare(m, 2, false));
    CHECK_OK(graft_model_forward(m, x, 2, false));
    CHECK(!m->profiling && m->profile == NULL);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_invalid_models_refused);
    RUN(test_keras_names_and_summary);
    RUN(test_inference_reuses_buffers);
    RUN(test_profile_table);
    RUN(test_weights_grow_in_place);
    return CHECK_SUMMARY();
}
