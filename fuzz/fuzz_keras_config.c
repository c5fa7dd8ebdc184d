/* The Keras model-config JSON ({"class_name": ..., "config": ...}) as found in
 * an HDF5 model_config attribute or a TF.js modelTopology: parsed, built into
 * a model, and written back as a config. */
#include "fuzz_util.h"
#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    if (!j) return 0;
    graft_model *m = NULL;
    if (io_model_from_config(j, "fuzz.json", &m) == GRAFT_OK) {
        if (!m) abort();
        cJSON *back = NULL;
        if (io_model_to_config(m, &back) == GRAFT_OK) cJSON_Delete(back);
        graft_model_free(m);
    }
    fuzz_check_message();
    cJSON_Delete(j);
    return 0;
}
