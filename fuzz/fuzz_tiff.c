/* graft_decode_tiff (libtiff) on arbitrary bytes; seeds in fuzz/corpus/fuzz_tiff
 * (scripts/gen_fixtures_formats.py writes them). */
#include "fuzz_decoder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_decode(graft_decode_tiff, data, size);
    return 0;
}
