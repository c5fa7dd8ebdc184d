/* Training checkpoints. The harness puts the right CRC-32 at the end of the
 * input, so that mutations get past the checksum to the fields behind it
 * (a wrong checksum is refused before anything is read). */
#include "fuzz_util.h"

#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static graft_model *m;
    if (!m) {
        m = fuzz_small_model();
        graft_compile_cfg cc = {.optimizer = graft_adam(1e-3f), .loss = GRAFT_CATEGORICAL_CROSSENTROPY};
        if (graft_model_compile(m, &cc) != GRAFT_OK) abort();
    }
    uint8_t *buf = malloc(size + 1);
    if (!buf) abort();
    if (size) memcpy(buf, data, size);
    if (size >= 12) {
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)(size - 4));
        memcpy(buf + size - 4, &crc, 4);
    }
    const char *p = fuzz_file("checkpoint.graft", buf, size);
    free(buf);
    graft_history h;
    graft_history_init(&h);
    graft_train_state st;
    graft_train_state_load(m, p, &h, &st);
    fuzz_check_message();
    graft_history_free(&h);
    return 0;
}
