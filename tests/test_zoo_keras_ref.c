/*
 * The zoo's newer architectures against an independent PyTorch network:
 * scripts/gen_zoo_ref.py writes, one case at a time, a Keras weights-only
 * HDF5 file (random weights and BatchNormalization statistics, keyed by
 * Keras's names) and the reference's outputs (torchvision's model with the
 * differences from Keras named and changed in the script, or a module written
 * from Keras's source); graft builds the base, loads the file by name and must
 * match to 1e-4 of the output's largest value, with the top and without it.
 * The files are too big to commit (ResNet152 230 MB), so this test needs
 * Debian's /usr/bin/python3 with torch, torchvision and h5py, and skips
 * without them. GRAFT_ZOO_REF_CASES="case ..." runs those cases, "all" every one.
 * Starts early (tests/run.sh): one of the longest suites.
 */
#include "oracle.h"
#include "zoo_ref.h"

#include <math.h>

/* The script's CASES: case name, architecture, input size, and whether the
 * suite runs it by default. A family's deeper members run the same builder
 * with other block counts (which test_zoo_arch checks against Keras's
 * parameter counts), so by default one member of each family runs;
 * GRAFT_ZOO_REF_CASES=all runs every case. Under AddressSanitizer two run
 * by default (quick 2): most of the suite's time is the reference's, in
 * Python, and every family's forward pass runs under ASan in
 * test_export_onnx_kinds (test_zoo_families) as well. */
static const struct {
    const char *name, *arch;
    int size, quick;
} cases[] = {
    {"vgg19_32", "VGG19", 32, 1},
    {"resnet101_32", "ResNet101", 32, 1},
    {"resnet152_32", "ResNet152", 32, 0},
    {"resnet50v2_32", "ResNet50V2", 32, 1},
    {"resnet101v2_32", "ResNet101V2", 32, 0},
    {"resnet152v2_32", "ResNet152V2", 32, 0},
    {"densenet121_32", "DenseNet121", 32, 1},
    {"densenet169_32", "DenseNet169", 32, 0},
    {"densenet201_32", "DenseNet201", 32, 0},
    {"inceptionv3_75", "InceptionV3", 75, 1},
    {"xception_71", "Xception", 71, 1},
    {"efficientnetb0_32", "EfficientNetB0", 32, 2},
    /* B3 (width 1.2) rounds filters and repeats unlike B0 (test_zoo_arch
     * checks its parameter count against Keras's), and B7 (2.0, 3.1), the
     * widest and deepest, takes minutes: GRAFT_ZOO_REF_CASES=efficientnetb3_33
     * efficientnetb7_32 runs them against the reference. */
    {"efficientnetb3_33", "EfficientNetB3", 33, 0},
    {"efficientnetb7_32", "EfficientNetB7", 32, 0},
    {"mobilenetv3small_32", "MobileNetV3Small", 32, 1},
    {"mobilenetv3large_35", "MobileNetV3Large", 35, 1},
    {"convnexttiny_32", "ConvNeXtTiny", 32, 2},
    {"convnextsmall_32", "ConvNeXtSmall", 32, 0},
    {"convnextbase_32", "ConvNeXtBase", 32, 0},
};

static char dir[64];

/* The largest |graft - reference| over the reference's largest |value|. */
static double rel_error(const float *y, const fixture_array *ref, size_t *worst)
{
    double peak = 0, err = 0;
    for (size_t i = 0; i < ref->size; i++)
        if (fabs(ref->data[i]) > peak) peak = fabs(ref->data[i]);
    for (size_t i = 0; i < ref->size; i++) {
        double e = fabs((double)y[i] - ref->data[i]);
        if (!(e <= err)) {
            err = isnan(e) ? INFINITY : e;
            *worst = i;
        }
    }
    return peak > 0 ? err / peak : err;
}

static void compare(int c, int top, const fixture *fx)
{
    graft_zoo_cfg cfg = graft_zoo_default_cfg();
    cfg.include_top = top;
    cfg.classes = 10;
    cfg.input_shape[0] = cfg.input_shape[1] = cases[c].size;
    char path[128];
    snprintf(path, sizeof path, "%s/ref_%s.h5", dir, cases[c].name);
    graft_model *m;
    const fixture_array *ref;
    float *y = zoo_ref_predict(cases[c].name, cases[c].arch, &cfg, path, fx, &m, &ref);
    if (y) {
        size_t worst = 0;
        double r = rel_error(y, ref, &worst);
        printf("  %-16s %-8s max error %.2e of the largest value\n", cases[c].name,
               top ? "top" : "features", r);
        CHECK_MSG(r <= 1e-4, "%s %s: error %.3g at %zu (graft %.7g, torch %.7g)", cases[c].name,
                  top ? "top" : "features", r, worst, y[worst], ref->data[worst]);
    }
    free(y);
    graft_model_free(m);
}

static int wanted(int c)
{
    const char *name = cases[c].name, *only = getenv("GRAFT_ZOO_REF_CASES");
    if (!only || !*only) return cases[c].quick >= SUITE_QUICK;
    if (strcmp(only, "all") == 0) return 1;
    size_t n = strlen(name);
    for (const char *p = strstr(only, name); p; p = strstr(p + 1, name))
        if ((p == only || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ')) return 1;
    return 0;
}

/* One case at a time, its files removed after: the largest are hundreds of
 * MB. One Python process makes them all (tests/oracle.h). */
static void test_against_pytorch(void)
{
    oracle py;
    char why[512];
    bool up = oracle_start(&py, (char *[]){PYTHON, "scripts/gen_zoo_ref.py", dir, "--serve", NULL},
                           why, sizeof why);
    CHECK_MSG(up, "scripts/gen_zoo_ref.py did not start: %s", why);
    for (int c = 0; up && c < (int)(sizeof cases / sizeof *cases); c++) {
        if (!wanted(c)) continue;
        char reply[1024], path[128];
        if (!oracle_ask(&py, reply, sizeof reply, "%s", cases[c].name) || !oracle_ok(reply)) {
            CHECK_MSG(0, "scripts/gen_zoo_ref.py on %s: %s", cases[c].name, reply);
            continue;
        }
        snprintf(path, sizeof path, "%s/ref_%s.bin", dir, cases[c].name);
        fixture fx;
        if (fixture_load(&fx, path) != 0) {
            CHECK_MSG(0, "no reference for %s", cases[c].name);
        } else {
            compare(c, 1, &fx);
            compare(c, 0, &fx);
            fixture_free(&fx);
        }
        unlink(path);
        snprintf(path, sizeof path, "%s/ref_%s.h5", dir, cases[c].name);
        unlink(path);
    }
    oracle_stop(&py);
}

int main(void)
{
    if (!zoo_ref_python_ready("torch, torchvision, h5py, numpy")) return CHECK_SUMMARY();
    snprintf(dir, sizeof dir, "/tmp/graft_zoo_keras_ref_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_against_pytorch);
    if (rmdir(dir) != 0) fprintf(stderr, "  could not remove %s\n", dir);
    return CHECK_SUMMARY();
}
