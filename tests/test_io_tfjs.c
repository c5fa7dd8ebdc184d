/* TensorFlow.js layers models: the genuine MobileNet 0.75 and Teachable
 * Machine exports, quantized weights, and broken manifests and shards. */
#include "check.h"
#include "io/io.h"
#include "io_util.h"

#include <sys/resource.h>
#include <sys/wait.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define MOBILENET "../shared/models/mobilenet_v1_0.75_224/model.json"
#define TM "../shared/models/teachable_machine_mobilenet_v2_0.35/model.json"

static void test_mobilenet_075(void)
{
    NEED_FILE(MOBILENET);
    graft_model *m = NULL;
    CHECK_OK(graft_model_load(MOBILENET, &m));
    if (!m) return;
    graft_param_counts pc = graft_model_count_params(m);
    CHECK_MSG(pc.total == 2601976, "%zu", pc.total); /* the README's count */
    /* Keras: BatchNormalization's moving statistics do not train (27 BN x 2 x channels) */
    CHECK(pc.non_trainable > 0 && pc.trainable + pc.non_trainable == pc.total);
    CHECK(strcmp(graft_layer_name(graft_model_layer(m, 0)), "input_1") == 0);
    CHECK(graft_model_find(m, "conv_dw_13_bn") && graft_model_find(m, "conv_preds"));
    graft_layer *o = graft_model_output(m);
    CHECK(strcmp(graft_layer_name(o), "reshape_2") == 0);
    CHECK(graft_layer_output_shape(o).rank == 1 && graft_layer_output_shape(o).dim[0] == 1000);
    graft_layer *k = graft_model_find(m, "conv1");
    graft_shape ks = graft_layer_weight_shape(k, 0);
    CHECK(ks.rank == 4 && ks.dim[3] == 24 && graft_layer_num_weights(k) == 1);
    /* the first float of group1-shard1of1 is conv1/kernel[0,0,0,0] */
    float first;
    FILE *f = fopen("../shared/models/mobilenet_v1_0.75_224/group1-shard1of1", "rb");
    CHECK(f && fread(&first, 4, 1, f) == 1);
    if (f) fclose(f);
    CHECK(graft_layer_weight_data(k, 0)[0] == first);
    char buf[16384];
    FILE *mem = fmemopen(buf, sizeof buf, "w");
    graft_model_summary(m, mem);
    fclose(mem);
    CHECK_MSG(strstr(buf, "Total params: 2,601,976"), "%s", buf);
    graft_model_free(m);
}

static void test_teachable_machine(void)
{
    NEED_FILE(TM);
    graft_model *m = NULL;
    CHECK_OK(graft_model_load(TM, &m));
    if (!m) return;
    /* the nested MobileNetV2 is flattened, keeping its inner names */
    CHECK(strcmp(graft_layer_name(graft_model_layer(m, 0)), "input_1") == 0);
    CHECK(graft_model_find(m, "block_16_project_BN") && graft_model_find(m, "out_relu"));
    CHECK(graft_model_find(m, "model5") == NULL);
    graft_layer *o = graft_model_output(m);
    CHECK(strcmp(graft_layer_name(o), "dense_Dense10") == 0);
    CHECK(graft_layer_output_shape(o).dim[0] == 3);
    CHECK(graft_layer_num_weights(o) == 1); /* use_bias false */
    /* weights.bin holds exactly the manifest's float32 values */
    long bytes = 0;
    FILE *f = fopen("../shared/models/teachable_machine_mobilenet_v2_0.35/weights.bin", "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        bytes = ftell(f);
        fclose(f);
    }
    CHECK((size_t)bytes == 4 * graft_model_count_params(m).total);
    float x[224 * 224 * 3], y[3];
    for (int i = 0; i < 224 * 224 * 3; i++) x[i] = (float)((i * 7) % 255) / 127.5f - 1.0f;
    CHECK_OK(graft_model_predict(m, x, 1, y));
    CHECK_NEAR(y[0] + y[1] + y[2], 1.0, 1e-5);
    graft_model_free(m);
}

/* A tiny two-layer model.json with shards written here. */
static const char *TOPO =
    "{\"modelTopology\": {\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d1\", \"units\": 2, \"activation\": \"relu\","
    " \"batch_input_shape\": [null, 3]}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d2\", \"units\": 1, \"use_bias\": false}}]}},";

static const char *write_json(const char *manifest)
{
    static char text[4096];
    snprintf(text, sizeof text, "%s \"weightsManifest\": %s}", TOPO, manifest);
    const char *p = io_tmp("model.json");
    io_write_file(p, text, strlen(text));
    return p;
}

static void test_quantized_and_int(void)
{
    /* d1/kernel uint8 (6 codes), d1/bias uint16 (2 codes), d2/kernel int32 (2) */
    unsigned char shard[6 + 4 + 8];
    for (int i = 0; i < 6; i++) shard[i] = (unsigned char)(i * 50);
    uint16_t b[2] = {0, 1000};
    int32_t k2[2] = {-3, 7};
    memcpy(shard + 6, b, 4);
    memcpy(shard + 10, k2, 8);
    io_write_file(io_tmp("g1"), shard, 10);
    io_write_file(io_tmp("g2"), shard + 10, 8);
    const char *p = write_json(
        "[{\"paths\": [\"g1\"], \"weights\": ["
        "{\"name\": \"d1/kernel\", \"shape\": [3, 2], \"dtype\": \"float32\","
        " \"quantization\": {\"dtype\": \"uint8\", \"scale\": 0.01, \"min\": -1.0}},"
        "{\"name\": \"d1/bias\", \"shape\": [2], \"dtype\": \"uint16\","
        " \"quantization\": {\"scale\": 0.001, \"min\": 0.5, \"dtype\": \"uint16\", \"original_dtype\": \"float32\"}}]},"
        "{\"paths\": [\"g2\"], \"weights\": [{\"name\": \"s/d2/kernel\", \"shape\": [2, 1], \"dtype\": \"int32\"}]}]");
    graft_model *m = NULL;
    CHECK_OK(graft_model_load(p, &m));
    if (!m) return;
    float *k = graft_layer_weight_data(graft_model_find(m, "d1"), 0);
    float *bias = graft_layer_weight_data(graft_model_find(m, "d1"), 1);
    float *k2f = graft_layer_weight_data(graft_model_find(m, "d2"), 0);
    CHECK_NEAR(k[0], -1.0, 1e-6);
    CHECK_NEAR(k[5], 250 * 0.01 - 1.0, 1e-6);
    CHECK_NEAR(bias[0], 0.5, 1e-6);
    CHECK_NEAR(bias[1], 1000 * 0.001 + 0.5, 1e-6);
    CHECK(k2f[0] == -3.0f && k2f[1] == 7.0f);
    CHECK(strcmp(graft_layer_name(graft_model_layer(m, 0)), "d1_input") == 0);
    graft_model_free(m);
}

static void expect_model_fail(const char *p, graft_status want, const char *needle)
{
    graft_model *m = NULL;
    graft_status s = graft_model_load(p, &m);
    CHECK_MSG(s == want && m == NULL, "got %s: %s", graft_status_name(s), graft_last_error());
    CHECK_MSG(strstr(graft_last_error(), needle) != NULL, "'%s' lacks '%s'", graft_last_error(),
              needle);
    graft_model_free(m);
}

static void test_broken_files(void)
{
    static const char *manifest =
        "[{\"paths\": [\"s1\", \"s2\"], \"weights\": ["
        "{\"name\": \"d1/kernel\", \"shape\": [3, 2], \"dtype\": \"float32\"},"
        "{\"name\": \"d1/bias\", \"shape\": [2], \"dtype\": \"float32\"},"
        "{\"name\": \"d2/kernel\", \"shape\": [2, 1], \"dtype\": \"float32\"}]}]";
    float w[11] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}; /* w + 6 is read for 20 bytes below */
    const char *p = write_json(manifest);
    io_write_file(io_tmp("s1"), w, 24);
    io_write_file(io_tmp("s2"), w + 6, 16);
    graft_model *m = NULL;
    CHECK_OK(graft_model_load(p, &m)); /* the good case first */
    if (m) CHECK(graft_layer_weight_data(graft_model_find(m, "d2"), 0)[1] == 10.0f);
    graft_model_free(m);

    io_write_file(io_tmp("s2"), w + 6, 12);
    expect_model_fail(p, GRAFT_EFORMAT, "s2");
    CHECK(strstr(graft_last_error(), "36 bytes") && strstr(graft_last_error(), "40 bytes"));
    io_write_file(io_tmp("s2"), w + 6, 20);
    expect_model_fail(p, GRAFT_EFORMAT, "longer");
    unlink(io_tmp("s2"));
    expect_model_fail(p, GRAFT_ENOTFOUND, "s2");

    const char *bad = io_tmp("bad.json");
    io_write_file(bad, "{\"modelTopology\": {\"class_name\": ", 34);
    expect_model_fail(bad, GRAFT_EFORMAT, "not valid JSON");
    io_write_file(bad, "{\"modelTopology\": {}}", 21);
    expect_model_fail(bad, GRAFT_EFORMAT, "weightsManifest");
    io_write_file(bad, "", 0);
    expect_model_fail(bad, GRAFT_EFORMAT, "bad.json");

    /* an unknown layer class is refused by name */
    const char *unk =
        "{\"modelTopology\": {\"class_name\": \"Sequential\", \"config\": {\"layers\": ["
        "{\"class_name\": \"LSTM\", \"config\": {\"name\": \"rnn\", \"units\": 4,"
        " \"batch_input_shape\": [null, 3, 2]}}]}}, \"weightsManifest\": []}";
    io_write_file(bad, unk, strlen(unk));
    expect_model_fail(bad, GRAFT_EUNSUPPORTED, "'rnn' (LSTM)");
    /* a shard path outside the model's folder */
    p = write_json("[{\"paths\": [\"../x\"], \"weights\": []}]");
    expect_model_fail(p, GRAFT_EFORMAT, "relative");
    /* a manifest with an absurd shape is refused before any allocation */
    p = write_json("[{\"paths\": [\"s1\"], \"weights\": [{\"name\": \"d1/kernel\","
                   " \"shape\": [100000, 100000, 100000], \"dtype\": \"float32\"}]}]");
    expect_model_fail(p, GRAFT_EFORMAT, "d1/kernel");
}

/* A manifest claiming 6.4 GB of weights over a 16-byte shard is refused with
 * the byte counts, allocating only what the shard holds: checked in a child
 * whose address space is capped at 2 GiB (not under AddressSanitizer, which
 * reserves terabytes of shadow). */
static void test_manifest_claims_more_than_shards(void)
{
    const char *p = write_json("[{\"paths\": [\"s1\"], \"weights\": [{\"name\": \"d1/kernel\","
                               " \"shape\": [40000, 40000], \"dtype\": \"float32\"}]}]");
    float w[4] = {1, 2, 3, 4};
    io_write_file(io_tmp("s1"), w, sizeof w);
    expect_model_fail(p, GRAFT_EFORMAT, "hold 16 bytes");
#ifndef UNDER_ASAN
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit lim = {(rlim_t)2 << 30, (rlim_t)2 << 30};
        graft_model *m = NULL;
        _exit(setrlimit(RLIMIT_AS, &lim) == 0 && graft_model_load(p, &m) == GRAFT_EFORMAT &&
                      strstr(graft_last_error(), "hold 16 bytes")
                  ? 0
                  : 1);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "under a 2 GiB address space: status %d", st);
#endif
    unlink(io_tmp("s1"));
}

/* model.json is read into a buffer the size of the file; 64 MiB is the limit. */
static void test_model_json_size_limit(void)
{
    const char *p = io_tmp("big.json");
    static const char head[] = "{\"modelTopology\": {}}";
    io_write_file(p, head, strlen(head));
    /* NUL bytes after the JSON: sparse, and cJSON stops at the first */
    CHECK(truncate(p, (off_t)64 << 20) == 0);
    expect_model_fail(p, GRAFT_EFORMAT, "weightsManifest"); /* read whole and parsed */
    CHECK(truncate(p, ((off_t)64 << 20) + 1) == 0);
    expect_model_fail(p, GRAFT_EFORMAT, "larger than 64 MiB");
    unlink(p);
}

int main(void)
{
    if (io_tmp_init() != 0) return 1;
    RUN(test_mobilenet_075);
    RUN(test_teachable_machine);
    RUN(test_quantized_and_int);
    RUN(test_broken_files);
    RUN(test_model_json_size_limit);
    RUN(test_manifest_claims_more_than_shards);
    return CHECK_SUMMARY();
}
