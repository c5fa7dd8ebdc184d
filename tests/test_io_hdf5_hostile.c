/*
 * .h5 files that reach outside themselves (HDF5 external raw storage,
 * external links, soft links, virtual datasets: scripts/
 * gen_fixtures_hostile_h5.py) are refused with a message naming the file
 * and the object, and leave the model's weights as they were; the same
 * file without tricks loads. A FIFO given as a model file is refused at
 * once instead of blocking.
 * Runs alone (tests/run.sh): a FIFO must be refused within an alarm.
 */
#include "check.h"
#include "test_util.h"

#include <graft.h>
#include <signal.h>
#include <stdlib.h>

#define DIR "tests/fixtures/hostile_h5/"

static graft_model *dense_model(void)
{
    graft_model *m = graft_model_new("m");
    graft_input(m, "input_1", graft_shape1(2));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "dense", .units = 2});
    if (graft_model_status(m) != GRAFT_OK || graft_model_init_weights(m, 1) != GRAFT_OK) {
        graft_model_free(m);
        return NULL;
    }
    return m;
}

static void kernel_of(graft_model *m, float out[4])
{
    const float *k = graft_layer_weight_data(graft_model_find(m, "dense"), 0);
    memcpy(out, k, 4 * sizeof *out);
}

static void test_plain_file_loads(void)
{
    graft_model *m = dense_model();
    CHECK(m != NULL);
    if (!m) return;
    CHECK_OK(graft_model_load_weights(m, DIR "plain.h5", NULL));
    float k[4];
    kernel_of(m, k);
    CHECK(k[0] == 1 && k[1] == 2 && k[2] == 3 && k[3] == 4);
    graft_model_free(m);
}

static void expect_refused(const char *file, const char *what)
{
    graft_model *m = dense_model();
    CHECK(m != NULL);
    if (!m) return;
    float before[4], after[4];
    kernel_of(m, before);
    graft_status s = graft_model_load_weights(m, file, NULL);
    CHECK_MSG(s == GRAFT_EFORMAT, "%s: status %s", file, graft_status_name(s));
    const char *msg = graft_last_error();
    CHECK_MSG(strstr(msg, file) && strstr(msg, what), "%s: message '%s' lacks '%s'", file, msg, what);
    kernel_of(m, after);
    CHECK_MSG(memcmp(before, after, sizeof before) == 0, "%s: the kernel changed", file);
    graft_model_free(m);
}

static void test_external_storage(void)
{
    expect_refused(DIR "external_storage.h5", "external files");
    expect_refused(DIR "external_storage_abs.h5", "external files");
}

static void test_links(void)
{
    expect_refused(DIR "external_link.h5", "an external link to another file");
    expect_refused(DIR "group_external_link.h5", "an external link to another file");
    expect_refused(DIR "soft_link.h5", "a soft link");
}

static void test_virtual_dataset(void) { expect_refused(DIR "virtual.h5", "virtual dataset"); }

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "  FAIL: loading a FIFO blocked\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(2);
}

static void test_fifo(void)
{
    char dir[] = "/tmp/graft_h5fifo_XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/model.h5", dir);
    CHECK(mkfifo(path, 0600) == 0);
    graft_model *m = dense_model();
    signal(SIGALRM, on_alarm);
    alarm(10);
    CHECK(graft_model_load_weights(m, path, NULL) != GRAFT_OK);
    alarm(0);
    CHECK(strstr(graft_last_error(), "not a regular file") != NULL);
    graft_model_free(m);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    RUN(test_plain_file_loads);
    RUN(test_external_storage);
    RUN(test_links);
    RUN(test_virtual_dataset);
    RUN(test_fifo);
    return CHECK_SUMMARY();
}
