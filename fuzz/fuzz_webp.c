/* graft_decode_webp (libwebp) on arbitrary bytes; seeds in fuzz/corpus/fuzz_webp
 * (scripts/gen_fixtures_formats.py writes them). */
#include "fuzz_decoder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_decode(graft_decode_webp, data, size);
    return 0;
}
