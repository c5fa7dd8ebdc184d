/* A zoo architecture with its ImageNet top, at SIZE x SIZE, its weights
 * initialised as Keras initialises them (no download), saved as a Keras
 * .h5 model: what bench_predict_folder.sh gives `graft predict --model`
 * (and exports for ONNX Runtime) when ARCHS names bases.
 * usage: zoo_model ARCH SIZE OUT.h5 */
#include "graft.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ARCH SIZE OUT.h5\n", argv[0]);
        return 2;
    }
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.input_shape[0] = c.input_shape[1] = atoi(argv[2]);
    graft_model *m = NULL;
    graft_status s = graft_zoo_build(argv[1], &c, &m);
    if (s == GRAFT_OK) s = graft_model_save(m, argv[3]);
    if (s != GRAFT_OK) fprintf(stderr, "zoo_model %s: %s\n", argv[1], graft_last_error());
    graft_model_free(m);
    return s == GRAFT_OK ? 0 : 1;
}
