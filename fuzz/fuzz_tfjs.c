/* TF.js layers models: the input is model.json, a NUL byte, then the bytes
 * of the one shard "weights.bin" the seeds' manifests name. Loaded as a
 * model and as weights into a fixed model. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static graft_model *into;
    if (!into) into = fuzz_small_model();
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    const char *json = fuzz_file("model.json", data, json_len);
    if (nul) fuzz_file("weights.bin", nul + 1, size - json_len - 1);
    else unlink(fuzz_path("weights.bin"));
    graft_model *m = NULL;
    if (graft_model_load(json, &m) == GRAFT_OK) {
        if (!m) abort();
        graft_model_free(m);
    }
    fuzz_check_message();
    graft_load_opts by_name = {.by_name = 1, .skip_mismatch = 1};
    graft_model_load_weights(into, json, &by_name);
    fuzz_check_message();
    return 0;
}
