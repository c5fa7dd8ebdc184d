/* Status names and the per-thread message behind graft_last_error(). */
#include "core/core.h"

#include <stdio.h>
#include <string.h>

#undef graft_fail /* the analyzer's stand-in from internal.h; this is the real one */

static _Thread_local char last_error[2048]; /* room for the list of layer kinds in a refusal */

const char *graft_status_name(graft_status s)
{
    switch (s) {
    case GRAFT_OK: return "ok";
    case GRAFT_EINVAL: return "invalid argument";
    case GRAFT_EIO: return "I/O error";
    case GRAFT_EFORMAT: return "malformed file";
    case GRAFT_ESHAPE: return "shape mismatch";
    case GRAFT_ENOMEM: return "out of memory";
    case GRAFT_ENOTFOUND: return "not found";
    case GRAFT_EUNSUPPORTED: return "unsupported";
    case GRAFT_ESTATE: return "invalid state";
    case GRAFT_ENAN: return "loss is not finite";
    case GRAFT_EINTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

const char *graft_last_error(void) { return last_error; }

void graft_clear_error(void) { last_error[0] = '\0'; }

graft_status graft_fail(graft_status s, const char *fmt, ...)
{
    /* Callers add context to the message before them, passing
     * graft_last_error() as an argument: formatting straight into last_error
     * would overwrite it while it is read. */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return s;
}
