/* One image file through an ImageNet classifier (`graft predict`). Its own
 * file so that linking the zoo does not pull in the image decoders. */
#include "zoo.h"

#include <stdlib.h>

graft_status graft_zoo_predict_file(graft_model *m, const char *path, graft_interpolation interp,
                                    int top, graft_prediction *out)
{
    if (!m || !path || !out) return graft_fail(GRAFT_EINVAL, "predict: missing argument");
    graft_layer *in = graft_model_layer(m, 0);
    graft_shape s = in ? graft_layer_output_shape(in) : (graft_shape){0, {0}};
    if (s.rank != 3 || s.dim[2] != 3)
        return graft_fail(GRAFT_ESHAPE, "model '%s' does not take RGB images", graft_model_name(m));
    float *x = malloc((size_t)s.dim[0] * s.dim[1] * 3 * sizeof(float));
    if (!x) return graft_fail(GRAFT_ENOMEM, "out of memory for an image of %dx%d", s.dim[0], s.dim[1]);
    graft_status st = graft_image_load(path, s.dim[0], s.dim[1], interp, 0, x);
    if (st == GRAFT_OK) st = graft_zoo_classify(m, x, 1, top, out);
    free(x);
    return st;
}
