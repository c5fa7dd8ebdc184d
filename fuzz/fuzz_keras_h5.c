/* Keras HDF5 files (full models and weights-only) through libhdf5: the
 * input is written to a file, loaded as a model, then as weights into a
 * fixed model by order and by name. In graft's own process
 * (GRAFT_H5_CHILD=0): libFuzzer sees only the code it runs itself, so a
 * loop or crash inside libhdf5 shows here as a timeout or a crash, which the
 * child process contains outside the fuzzer (fuzz/libhdf5_findings/). */
#include "fuzz_util.h"

#include <hdf5.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static graft_model *into;
    if (!into) {
        setenv("GRAFT_H5_CHILD", "0", 1);
        into = fuzz_small_model();
        /* libhdf5 keeps freed structures on free lists up to 64 KiB a type:
         * the metadata cache of every file opened (about 600 KiB) came fresh
         * from the sanitizer's allocator each run, page faults and all. Room
         * for it; the block and array lists (sized by the file) stay as
         * they are. */
        H5set_free_list_limits(32 << 20, 4 << 20, 4 << 20, 256 << 10, 16 << 20, 1 << 20);
    }
    const char *p = fuzz_file("in.h5", data, size);
    graft_model *m = NULL;
    if (graft_model_load(p, &m) == GRAFT_OK) {
        if (!m) abort();
        graft_model_free(m);
    }
    fuzz_check_message();
    graft_load_opts by_order = {0}, by_name = {.by_name = 1, .skip_mismatch = 1};
    graft_model_load_weights(into, p, &by_order);
    fuzz_check_message();
    graft_model_load_weights(into, p, &by_name);
    fuzz_check_message();
    return 0;
}
