/* Keras HDF5 files (full models and weights-only) through libhdf5: the
 * input is written to a file, loaded as a model, then as weights into a
 * fixed model by order and by name. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static graft_model *into;
    if (!into) into = fuzz_small_model();
    const char *p = fuzz_file("in.h5", data, size);
    graft_model *m = NULL;
    if (graft_load_model(p, &m) == GRAFT_OK) {
        if (!m) abort();
        graft_model_free(m);
    }
    fuzz_check_message();
    graft_load_opts by_order = {0}, by_name = {.by_name = 1, .skip_mismatch = 1};
    graft_load_weights(into, p, &by_order);
    fuzz_check_message();
    graft_load_weights(into, p, &by_name);
    fuzz_check_message();
    return 0;
}
