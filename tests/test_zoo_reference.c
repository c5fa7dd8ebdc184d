/*
 * The four architectures against an independent PyTorch forward pass:
 * scripts/gen_fixtures_zoo.py writes Keras weights-only HDF5 files (random
 * weights and BatchNormalization statistics) and the reference outputs into
 * a temporary folder; graft builds each base, loads the file by name and must
 * match to 1e-4 relative, with the top and without it (the same file loaded
 * into the base alone, skipping the top's layers as Keras's by_name does).
 * The weight files are too big to commit (ResNet50 95 MB, VGG16 160 MB), so
 * this test needs Debian's /usr/bin/python3 with torch and h5py, and says so
 * when they are missing.
 */
#include "zoo_ref.h"

#include <math.h>

static const struct {
    const char *name, *arch;
    float alpha;
    int dm, h, w;
} cases[] = {
    {"mobilenet_a25_64", "mobilenet", 0.25f, 1, 64, 64},
    {"mobilenet_a50_150", "mobilenet", 0.5f, 1, 150, 150},
    {"mobilenet_a25_dm2_35", "mobilenet", 0.25f, 2, 35, 37},
    {"mobilenet_v2_a35_64", "mobilenet_v2", 0.35f, 1, 64, 64},
    {"mobilenet_v2_a50_45", "mobilenet_v2", 0.5f, 1, 45, 45},
    {"resnet50_32", "resnet50", 1.0f, 1, 32, 32},
    {"vgg16_64", "vgg16", 1.0f, 1, 64, 64},
};

static char dir[64];

/* Builds the case (with or without top), loads its file, compares with `ref`. */
static void compare(int c, int top, const fixture *fx)
{
    graft_zoo_cfg cfg = graft_zoo_default_cfg();
    cfg.alpha = cases[c].alpha;
    cfg.depth_multiplier = cases[c].dm;
    cfg.include_top = top;
    cfg.classes = 10;
    cfg.input_shape[0] = cases[c].h;
    cfg.input_shape[1] = cases[c].w;
    char path[128];
    snprintf(path, sizeof path, "%s/zoo_%s.h5", dir, cases[c].name);
    graft_model *m;
    const fixture_array *ref;
    float *y = zoo_ref_predict(cases[c].name, cases[c].arch, &cfg, path, fx, &m, &ref);
    if (y) {
        double peak = 0;
        for (size_t i = 0; i < ref->size; i++)
            if (fabs(ref->data[i]) > peak) peak = fabs(ref->data[i]);
        size_t worst = 0;
        double r = check_close_ratio(y, ref->data, ref->size, 1e-4 * peak, 1e-4, &worst);
        CHECK_MSG(r <= 1.0, "%s %s: error ratio %.3g at %zu (graft %.7g, torch %.7g)",
                  cases[c].name, top ? "top" : "features", r, worst, y[worst], ref->data[worst]);
    }
    free(y);
    graft_model_free(m);
}

static void test_against_pytorch(void)
{
    for (int c = 0; c < (int)(sizeof cases / sizeof *cases); c++) {
        char path[128];
        snprintf(path, sizeof path, "%s/zoo_%s.bin", dir, cases[c].name);
        fixture fx;
        if (fixture_load(&fx, path) != 0) {
            CHECK_MSG(0, "no fixture for %s", cases[c].name);
            continue;
        }
        compare(c, 1, &fx);
        compare(c, 0, &fx);
        fixture_free(&fx);
    }
}

int main(void)
{
    if (!zoo_ref_python_ready("torch, h5py, numpy")) return CHECK_SUMMARY();
    snprintf(dir, sizeof dir, "/tmp/graft_zoo_ref_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, PYTHON " scripts/gen_fixtures_zoo.py %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "  %s failed\n", cmd);
        tests_failed++;
    } else {
        RUN(test_against_pytorch);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
    return CHECK_SUMMARY();
}
