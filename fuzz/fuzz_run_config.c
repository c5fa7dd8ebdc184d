/* A run folder's config.json as `graft resume`, `finetune`, `evaluate` and
 * `predict` read it. The reader lives in the tool (tools/run.c), which this
 * target links. */
#include "fuzz_util.h"
#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    fuzz_file("config.json", data, size);
    /* The tool's messages would flood the log; sanitizer reports write to fd 2 directly. */
    FILE *err = stderr;
    stderr = devnull;
    run_config c;
    if (run_config_load(fuzz_dir, &c) == 0) run_config_free(&c);
    stderr = err;
    return 0;
}
