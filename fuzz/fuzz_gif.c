/* graft_decode_gif (giflib) on arbitrary bytes; seeds in fuzz/corpus/fuzz_gif
 * (scripts/gen_fixtures_formats.py writes them). */
#include "fuzz_decoder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_decode(graft_decode_gif, data, size);
    return 0;
}
