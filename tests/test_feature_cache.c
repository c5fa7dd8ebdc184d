/* Feature caching gives the run an uncached fit gives, in memory and spilled
 * to a file, and stays off where it would change results. */
#include "check.h"
#include "internal.h"
#include "train/source.h"
#include "train/train.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

enum { N = 72, D = 6 };

static graft_model *frozen_base_model(bool dropout_in_base)
{
    graft_model *m = graft_model_new("cached");
    graft_input(m, NULL, graft_shape1(D));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "base1", .units = 16, .activation = GRAFT_RELU});
    if (dropout_in_base) graft_dropout(m, NULL, "base_dropout", 0.3f);
    graft_dense(m, NULL, (graft_dense_cfg){.name = "base2", .units = 12, .activation = GRAFT_TANH});
    int n_base = graft_model_num_layers(m);
    graft_dense(m, NULL, (graft_dense_cfg){.name = "head", .units = 8, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.name = "out", .units = 1, .activation = GRAFT_SIGMOID});
    graft_model_set_trainable(m, 0, n_base, 0);
    return m;
}

static void data(float *x, float *y)
{
    graft_rng r;
    graft_rng_seed(&r, 77);
    for (int i = 0; i < N; i++) {
        float s = 0;
        for (int k = 0; k < D; k++) s += (x[i * D + k] = graft_rng_normal(&r)) * (k % 2 ? 1.f : -0.5f);
        y[i] = s > 0;
    }
}

/* Trains and returns the weights and the history's last val_loss. */
static void run(bool dropout, int no_cache, size_t max_bytes, float *w, double *val_loss)
{
    static float x[N * D], y[N];
    data(x, y);
    graft_source *tr = graft_source_arrays(x, y, N, graft_shape1(D), 1, 10, 1, 5);
    graft_source *va = graft_source_arrays(x, y, N, graft_shape1(D), 1, 16, 0, 0);
    graft_model *m = frozen_base_model(dropout);
    CHECK_OK(graft_model_status(m));
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 1};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_history h;
    graft_history_init(&h);
    /* steps_per_epoch does not divide a pass: batches cross pass boundaries. */
    graft_fit_cfg fc = {.epochs = 4, .steps_per_epoch = 11, .validation_data = va,
                        .validation_steps = 7, .no_feature_cache = no_cache,
                        .cache_max_bytes = max_bytes};
    CHECK_OK(graft_model_fit(m, tr, &fc, &h));
    memcpy(w, m->weights, m->n_weight_floats * sizeof(float));
    *val_loss = h.n ? h.val_loss[h.n - 1] : NAN;
    graft_history_free(&h);
    graft_model_free(m);
    graft_source_free(tr);
    graft_source_free(va);
}

static void test_cached_equals_uncached(void)
{
    float a[512] = {0}, b[512] = {0}, c[512] = {0};
    double la, lb, lc;
    run(false, 1, 0, a, &la);
    run(false, 0, 0, b, &lb);
    run(false, 0, 1, c, &lc); /* a one-byte budget: everything spills to the file */
    size_t diff_b = 0, diff_c = 0;
    for (int i = 0; i < 512; i++) {
        diff_b += a[i] != b[i];
        diff_c += a[i] != c[i];
    }
    CHECK_MSG(diff_b == 0, "%zu weights differ between cached and uncached runs", diff_b);
    CHECK_MSG(diff_c == 0, "%zu weights differ between spilled and uncached runs", diff_c);
    CHECK(la == lb && la == lc);
}

/* Wraps a source and counts the batches it had to produce x for. */
typedef struct {
    graft_source base;
    graft_source *inner;
    int decoded, ids_only;
} counting_source;

static graft_status counting_next_ids(graft_source *self, float *x, float *y, int *n, long *ids)
{
    counting_source *c = (counting_source *)self;
    if (x) c->decoded++;
    else c->ids_only++;
    return c->inner->next_ids(c->inner, x, y, n, ids);
}

static graft_status counting_next(graft_source *self, float *x, float *y, int *n)
{
    return counting_next_ids(self, x, y, n, NULL);
}

static counting_source counted(graft_source *inner)
{
    counting_source cs = {0};
    cs.inner = inner;
    cs.base = *inner;
    cs.base.next = counting_next;
    cs.base.next_ids = counting_next_ids;
    cs.base.free = NULL;
    return cs;
}

static void test_cache_is_used(void)
{
    static float x[N * D], y[N];
    data(x, y);
    counting_source cs = counted(graft_source_arrays(x, y, N, graft_shape1(D), 1, 8, 1, 5));
    graft_model *m = frozen_base_model(false);
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_fit_cfg fc = {.epochs = 3};
    CHECK_OK(graft_model_fit(m, &cs.base, &fc, NULL));
    CHECK_MSG(cs.decoded == 9 && cs.ids_only == 18, "decoded %d, ids only %d", cs.decoded, cs.ids_only);
    /* Everything trainable: no boundary to cache at, every batch is decoded. */
    graft_model_set_trainable(m, 0, graft_model_num_layers(m), 1);
    CHECK_OK(graft_model_compile(m, &cc));
    cs.decoded = cs.ids_only = 0;
    CHECK_OK(graft_model_fit(m, &cs.base, &fc, NULL));
    CHECK(cs.decoded == 27 && cs.ids_only == 0);
    graft_model_free(m);
    graft_source_free(cs.inner);
}

/* A Dropout in the frozen part moves the cache below it; results unchanged. */
static void test_dropout_in_base(void)
{
    float a[512] = {0}, b[512] = {0};
    double la, lb;
    run(true, 1, 0, a, &la);
    run(true, 0, 0, b, &lb);
    CHECK(memcmp(a, b, sizeof a) == 0);
}

/* A model that trains whole on decoded images: the images themselves are
 * cached after the first pass, with the very results of decoding them again. */
static void run_images(int no_cache, float *w, size_t cap, int *decoded)
{
    graft_flow_cfg fc = {.target_size = {20, 20}, .class_mode = GRAFT_CLASS_BINARY,
                         .batch_size = 100, .seed = 3, .quiet = 1};
    graft_image_data_generator gen = {.rescale = 1.0f / 255};
    graft_source *src = NULL;
    CHECK_OK(graft_flow_from_directory("../shared/data/cats_and_dogs_filtered/validation", &gen, &fc, &src));
    if (!src) return;
    counting_source cs = counted(src);
    graft_model *m = graft_model_new("small_cnn");
    graft_input(m, NULL, graft_shape3(20, 20, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 4, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){0});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_compile_cfg cc = {.optimizer = graft_adam(1e-3f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 2};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_fit_cfg fit = {.epochs = 3, .steps_per_epoch = 7, .no_feature_cache = no_cache};
    CHECK_OK(graft_model_fit(m, &cs.base, &fit, NULL));
    CHECK(m->n_weight_floats <= cap);
    memcpy(w, m->weights, m->n_weight_floats * sizeof(float));
    *decoded = cs.decoded;
    graft_model_free(m);
    graft_source_free(src);
}

static void test_decoded_images_cached(void)
{
    if (access("../shared/data/cats_and_dogs_filtered/validation", R_OK) != 0) {
        printf("  skipped: ../shared is missing\n");
        return;
    }
    static float a[4096], b[4096];
    int da = 0, db = 0;
    run_images(1, a, 4096, &da);
    run_images(0, b, 4096, &db);
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* 21 steps over passes of 10 batches: cached, only the first pass decodes. */
    CHECK_MSG(da == 21 && db == 10, "decoded %d (uncached) and %d (cached) batches", da, db);
}

/* The lesson's two transfer fits on the same sources: the head on a frozen
 * base, then the base's top unfrozen from `keep` (base_relu: no weights, so
 * the second fit's boundary is base2). With a store the first fit also keeps
 * the features below that boundary, and the second decodes nothing. */
typedef struct {
    float w[512];
    double val_loss;
    int decoded; /* batches the second fit decoded, training and validation */
} two_fits;

static void run_two_fits(bool use_store, bool change_base1, const char *keep, two_fits *r)
{
    static float x[N * D], y[N];
    data(x, y);
    counting_source tr = counted(graft_source_arrays(x, y, N, graft_shape1(D), 1, 10, 1, 5));
    counting_source va = counted(graft_source_arrays(x, y, N, graft_shape1(D), 1, 16, 0, 0));
    graft_model *m = graft_model_new("two_fits");
    graft_input(m, NULL, graft_shape1(D));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "base1", .units = 16});
    graft_relu(m, NULL, (graft_relu_cfg){.name = "base_relu"});
    graft_dense(m, NULL, (graft_dense_cfg){.name = "base2", .units = 12, .activation = GRAFT_TANH});
    int n_base = graft_model_num_layers(m);
    graft_dense(m, NULL, (graft_dense_cfg){.name = "head", .units = 8, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.name = "out", .units = 1, .activation = GRAFT_SIGMOID});
    graft_model_set_trainable(m, 0, n_base, 0);
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 1};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_feature_store *store = use_store ? graft_feature_store_new() : NULL;
    graft_fit_cfg fc = {.epochs = 2, .steps_per_epoch = 11, .validation_data = &va.base,
                        .validation_steps = 7, .feature_store = store, .keep_features_below = keep};
    CHECK_OK(graft_model_fit(m, &tr.base, &fc, NULL));
    if (change_base1) m->layers[1]->weights[0].data[3] += 0.25f; /* as a user might */
    graft_layer *from = graft_model_find(m, keep);
    CHECK(from != NULL);
    if (!from) return;
    graft_model_set_trainable(m, graft_layer_index(from), n_base, 1);
    cc.optimizer = graft_adam(1e-3f);
    CHECK_OK(graft_model_compile(m, &cc));
    tr.decoded = va.decoded = 0;
    graft_history h;
    graft_history_init(&h);
    graft_fit_cfg fc2 = {.epochs = 5, .initial_epoch = 2, .steps_per_epoch = 11,
                         .validation_data = &va.base, .validation_steps = 7, .feature_store = store};
    CHECK_OK(graft_model_fit(m, &tr.base, &fc2, &h));
    r->decoded = tr.decoded + va.decoded;
    r->val_loss = h.n ? h.val_loss[h.n - 1] : NAN;
    CHECK(m->n_weight_floats <= 512);
    memcpy(r->w, m->weights, m->n_weight_floats * sizeof(float));
    graft_history_free(&h);
    graft_model_free(m);
    graft_feature_store_free(store);
    graft_source_free(tr.inner);
    graft_source_free(va.inner);
}

static void test_store_keeps_features_for_the_next_fit(void)
{
    static two_fits plain, stored, plain_changed, stored_changed;
    run_two_fits(false, false, "base_relu", &plain);
    run_two_fits(true, false, "base_relu", &stored);
    CHECK_MSG(plain.decoded > 0 && stored.decoded == 0, "decoded %d batches without a store, %d with",
              plain.decoded, stored.decoded);
    CHECK(memcmp(plain.w, stored.w, sizeof plain.w) == 0 && plain.val_loss == stored.val_loss);
    /* A weight below the boundary changed between the fits: the kept features
     * are stale, and the second fit computes its own. */
    run_two_fits(false, true, "base_relu", &plain_changed);
    run_two_fits(true, true, "base_relu", &stored_changed);
    CHECK_MSG(stored_changed.decoded == plain_changed.decoded, "decoded %d, expected %d",
              stored_changed.decoded, plain_changed.decoded);
    CHECK(memcmp(plain_changed.w, stored_changed.w, sizeof plain.w) == 0);
    CHECK(memcmp(plain.w, plain_changed.w, sizeof plain.w) != 0);
}

static void test_store_refusals(void)
{
    static float x[N * D], y[N];
    data(x, y);
    graft_source *tr = graft_source_arrays(x, y, N, graft_shape1(D), 1, 10, 1, 5);
    graft_model *m = frozen_base_model(false);
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_feature_store *store = graft_feature_store_new();
    graft_fit_cfg fc = {.epochs = 1, .feature_store = store, .keep_features_below = "no_such_layer"};
    CHECK(graft_model_fit(m, tr, &fc, NULL) == GRAFT_ENOTFOUND &&
          strstr(graft_last_error(), "'no_such_layer'"));
    /* A layer this fit trains: nothing to keep below it, and no error. */
    fc.keep_features_below = "out";
    CHECK_OK(graft_model_fit(m, tr, &fc, NULL));
    /* Another source with the same samples is not the same source: its
     * features are computed again (the store only knows source objects). */
    graft_source *other = graft_source_arrays(x, y, N, graft_shape1(D), 1, 10, 1, 5);
    counting_source cs = counted(other);
    fc.keep_features_below = NULL;
    CHECK_OK(graft_model_fit(m, &cs.base, &fc, NULL));
    CHECK(cs.decoded > 0);
    cs.decoded = 0;
    CHECK_OK(graft_model_fit(m, &cs.base, &fc, NULL)); /* the same one again: kept */
    CHECK(cs.decoded == 0);
    graft_feature_store_free(store);
    graft_model_free(m);
    graft_source_free(tr);
    graft_source_free(other);
}

/* The memory bound is one budget for the process, not one per cache: a
 * second cache sees what the first holds, also when opened concurrently. */
enum { BUDGET_THREADS = 8 };

typedef struct {
    graft_model *m;
    graft_source *src;
    size_t budget;
    graft_feature_cache *c;
    graft_status s;
} cache_job;

static void *open_cache(void *arg)
{
    cache_job *j = arg;
    /* Layer 3 ("head") reads base2's 12 outputs per sample. */
    j->s = graft_cache_open(j->m, j->src, 3, j->budget, NULL, "budget", false, &j->c);
    return NULL;
}

static void test_one_budget_for_all_caches(void)
{
    static float x[N * D], y[N];
    data(x, y);
    graft_model *m = frozen_base_model(false);
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    const size_t one = (size_t)N * 12 * sizeof(float), base = graft_cache_memory_in_use();
    cache_job j[BUDGET_THREADS];
    for (int t = 0; t < BUDGET_THREADS; t++)
        j[t] = (cache_job){m, graft_source_arrays(x, y, N, graft_shape1(D), 1, 10, 0, 0),
                           base + one + one / 2, NULL, GRAFT_OK};
    open_cache(&j[0]);
    CHECK_OK(j[0].s);
    CHECK(j[0].c && graft_cache_in_memory(j[0].c) && graft_cache_memory_in_use() == base + one);
    open_cache(&j[1]); /* one and a half caches' worth: the second spills */
    CHECK_OK(j[1].s);
    CHECK(j[1].c && !graft_cache_in_memory(j[1].c) && graft_cache_memory_in_use() == base + one);
    graft_cache_close(j[0].c);
    graft_cache_close(j[1].c);
    CHECK(graft_cache_memory_in_use() == base);

    /* Eight at once under a budget of four: exactly four in memory. */
    pthread_t th[BUDGET_THREADS];
    for (int t = 0; t < BUDGET_THREADS; t++) {
        j[t].budget = base + 4 * one;
        j[t].c = NULL;
        CHECK(pthread_create(&th[t], NULL, open_cache, &j[t]) == 0);
    }
    int in_memory = 0;
    for (int t = 0; t < BUDGET_THREADS; t++) {
        pthread_join(th[t], NULL);
        CHECK_OK(j[t].s);
        in_memory += j[t].c && graft_cache_in_memory(j[t].c);
    }
    CHECK_MSG(in_memory == 4, "%d caches in memory", in_memory);
    CHECK(graft_cache_memory_in_use() == base + 4 * one);
    for (int t = 0; t < BUDGET_THREADS; t++) {
        graft_cache_close(j[t].c);
        graft_source_free(j[t].src);
    }
    CHECK(graft_cache_memory_in_use() == base);
    graft_model_free(m);
}

/* A frozen MobileNet-like base (a strided convolution, a depthwise and a
 * pointwise one with folded BatchNormalization and ReLU6, a Winograd 3x3)
 * under a trained head: cached and uncached fits give the same bits. The
 * batches cross pass boundaries and the last one is short, so a sample's
 * features are computed in batches of other sizes and neighbours than in
 * the pass that cached them; the kernels must not let that show.
 * test_feature_cache_avx2 runs this at AVX2 too. */
static void run_conv_base(int no_cache, float *w, size_t cap, double *val_loss)
{
    enum { S = 14, NS = 45 };
    static float x[NS * S * S * 3], y[NS];
    graft_rng r;
    graft_rng_seed(&r, 9);
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = graft_rng_uniform(&r) * 2 - 1;
    for (int i = 0; i < NS; i++) y[i] = (float)(x[i * S * S * 3] > 0);
    graft_source *tr = graft_source_arrays(x, y, NS, graft_shape3(S, S, 3), 1, 8, 1, 5);
    graft_source *va = graft_source_arrays(x, y, NS, graft_shape3(S, S, 3), 1, 7, 0, 0);
    graft_model *m = graft_model_new("conv_base");
    graft_input(m, NULL, graft_shape3(S, S, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 16, .kernel_size = {3, 3}, .strides = {2, 2},
                                             .padding = GRAFT_SAME, .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){0});
    graft_relu(m, NULL, (graft_relu_cfg){.max_value = 6});
    graft_depthwise_conv2d(m, NULL, (graft_depthwise_conv2d_cfg){.kernel_size = {3, 3}, .padding = GRAFT_SAME,
                                                                 .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){0});
    graft_relu(m, NULL, (graft_relu_cfg){.max_value = 6});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 24, .kernel_size = {1, 1}, .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){0});
    graft_relu(m, NULL, (graft_relu_cfg){.max_value = 6});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 16, .kernel_size = {3, 3}, .padding = GRAFT_SAME,
                                             .activation = GRAFT_RELU});
    graft_global_average_pooling2d(m, NULL, NULL);
    int n_base = graft_model_num_layers(m);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 8, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_model_set_trainable(m, 0, n_base, 0);
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 3};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_history h;
    graft_history_init(&h);
    graft_fit_cfg fc = {.epochs = 3, .steps_per_epoch = 7, .validation_data = va,
                        .validation_steps = 5, .no_feature_cache = no_cache};
    CHECK_OK(graft_model_fit(m, tr, &fc, &h));
    CHECK(m->n_weight_floats <= cap);
    memcpy(w, m->weights, (m->n_weight_floats < cap ? m->n_weight_floats : cap) * sizeof(float));
    *val_loss = h.n ? h.val_loss[h.n - 1] : NAN;
    graft_history_free(&h);
    graft_model_free(m);
    graft_source_free(tr);
    graft_source_free(va);
}

static void test_conv_base_cached_equals_uncached(void)
{
    static float a[8192], b[8192];
    double la = 0, lb = 1;
    run_conv_base(1, a, 8192, &la);
    run_conv_base(0, b, 8192, &lb);
    size_t diff = 0;
    for (int i = 0; i < 8192; i++) diff += a[i] != b[i];
    CHECK_MSG(diff == 0 && la == lb, "%zu weights differ; val_loss %.9g vs %.9g", diff, la, lb);
}

/* Data parallelism: a rank whose source is sharded by id caches only its
 * own samples (ids r, r + N, ...): room for about n / N of them, counted so
 * in the process's budget, in memory or spilled, and what it gives back is
 * what the whole source's forward pass gives for those samples. */
static void test_rank_caches_its_shard(void)
{
    static float x[N * D], y[N], ref[N];
    data(x, y);
    graft_model *m = frozen_base_model(false);
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    CHECK_OK(graft_model_predict(m, x, N, ref));
    const size_t row = 12 * sizeof(float), base = graft_cache_memory_in_use();
    for (int ranks = 2; ranks <= 3; ranks++) {
        for (int r = 0; r < ranks; r++) {
            for (int spill = 0; spill < 2; spill++) {
                graft_source *src = graft_source_arrays(x, y, N, graft_shape1(D), 1, 10, 1, 3);
                graft_source_book *sb = graft_source_book_of(src);
                sb->shard_rank = r;
                sb->shard_count = ranks;
                sb->shard_by_id = 1;
                const long mine = (N - r + ranks - 1) / ranks;
                graft_feature_cache *c = NULL;
                CHECK_OK(graft_cache_open(m, src, 3, spill ? base + 1 : 0, NULL, "shard", false, &c));
                CHECK(c && graft_cache_capacity(c) == mine && graft_cache_in_memory(c) == !spill);
                CHECK_MSG(graft_cache_memory_in_use() == base + (spill ? 0 : (size_t)mine * row),
                          "%d ranks, rank %d: %zu bytes held for %ld samples", ranks, r,
                          graft_cache_memory_in_use() - base, mine);
                float bx[10 * D], by[10];
                long ids[10];
                int bad = 0, seen = 0;
                /* Two passes: the first fills the cache, the second reads it. */
                for (int b = 0; c && b < 2 * src->length; b++) {
                    int n = 0;
                    CHECK_OK(graft_cache_fetch_forward(c, NULL, m, src, bx, by, ids, &n, false));
                    const float *out = graft_model_output(m)->out;
                    for (int i = 0; i < n; i++) {
                        bad += ids[i] % ranks != r || fabsf(out[i] - ref[ids[i]]) > 1e-6f;
                        seen++;
                    }
                }
                CHECK_MSG(bad == 0 && seen == 2 * mine && graft_cache_count(c) == mine,
                          "%d ranks, rank %d, spill %d: %d of %d samples wrong, %ld cached of %ld",
                          ranks, r, spill, bad, seen, graft_cache_count(c), mine);
                graft_cache_close(c);
                graft_source_free(src);
            }
        }
    }
    CHECK(graft_cache_memory_in_use() == base);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_cached_equals_uncached);
    RUN(test_cache_is_used);
    RUN(test_dropout_in_base);
    RUN(test_decoded_images_cached);
    RUN(test_store_keeps_features_for_the_next_fit);
    RUN(test_store_refusals);
    RUN(test_one_budget_for_all_caches);
    RUN(test_conv_base_cached_equals_uncached);
    RUN(test_rank_caches_its_shard);
    return CHECK_SUMMARY();
}
