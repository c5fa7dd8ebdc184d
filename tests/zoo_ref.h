/* What the zoo's reference tests share (test_zoo_reference.c,
 * test_zoo_keras_ref.c): whether Debian's python3 can make the references,
 * and a base built, loaded with the reference weights and run on the
 * fixture's input. */
#ifndef GRAFT_TESTS_ZOO_REF_H
#define GRAFT_TESTS_ZOO_REF_H

#include "check.h"
#include "fixture.h"

#include <graft.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

/* Whether PYTHON imports `modules` ("torch, h5py, numpy"); says why not. */
static inline int zoo_ref_python_ready(const char *modules)
{
    if (access(PYTHON, X_OK) != 0) {
        printf("skip: %s is missing (Debian's python3 with %s makes the references)\n", PYTHON,
               modules);
        return 0;
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, PYTHON " -c 'import %s' 2>/dev/null", modules);
    if (system(cmd) != 0) {
        printf("skip: %s lacks one of %s (Debian's python3-* packages)\n", PYTHON, modules);
        return 0;
    }
    return 1;
}

/* Builds `arch` with cfg, loads the weights of `h5` by name (skipping the
 * top where cfg has none) and predicts the fixture's "input": graft's
 * outputs (malloc'd, as many as *ref holds) and in *ref the fixture's "top"
 * or "features"; NULL after a failed check. *m is the model (free it). */
static inline float *zoo_ref_predict(const char *label, const char *arch, const graft_zoo_cfg *cfg,
                                     const char *h5, const fixture *fx, graft_model **m,
                                     const fixture_array **ref)
{
    *m = NULL;
    CHECK_OK(graft_zoo_build(arch, cfg, m));
    const fixture_array *x = fixture_get(fx, "input");
    *ref = fixture_get(fx, cfg->include_top ? "top" : "features");
    if (!*m || !x || !*ref) {
        CHECK(0);
        return NULL;
    }
    graft_load_opts opts = {.by_name = 1, .skip_mismatch = !cfg->include_top};
    CHECK_OK(graft_model_load_weights(*m, h5, &opts));
    graft_shape os = graft_layer_output_shape(graft_model_output(*m));
    size_t out_n = graft_shape_size(&os) * (size_t)x->dim[0];
    CHECK_MSG(out_n == (*ref)->size, "%s: %zu outputs, reference has %zu", label, out_n,
              (*ref)->size);
    float *y = out_n == (*ref)->size ? malloc(out_n * sizeof(float) + 1) : NULL;
    if (y) CHECK_OK(graft_model_predict(*m, x->data, x->dim[0], y));
    return y;
}

#endif
