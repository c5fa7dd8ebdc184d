/* The number flags of train, finetune and lesson, parsed strictly. */
#include "stage.h"

#include <errno.h>
#include <stdlib.h>

int cli_opt_int(const char *opt, const char *v, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi)
        return cli_usage("--%s: '%s' is not a whole number in [%d, %d]", opt, v, lo, hi);
    *out = (int)x;
    return 0;
}

int cli_opt_float(const char *opt, const char *v, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (errno || *end || end == v || !(x >= lo && x <= hi))
        return cli_usage("--%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi);
    *out = x;
    return 0;
}
