/* The tests' oracle processes (the ONNX checker, ONNX Runtime, TF.js), started
 * once per suite and asked one line at a time (tests/js/serve.js,
 * tests/onnx_checker.py), instead of one process per model: starting Python
 * or Node and loading their modules cost more than most checks. A request is
 * one line; its reply is one line, "ok ..." or "error MESSAGE". */
#ifndef GRAFT_TESTS_ORACLE_H
#define GRAFT_TESTS_ORACLE_H

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    pid_t pid;
    FILE *to, *from;
} oracle;

static inline void oracle_stop(oracle *o)
{
    if (o->to) fclose(o->to); /* end of its stdin: it exits */
    if (o->from) fclose(o->from);
    if (o->pid > 0) waitpid(o->pid, NULL, 0);
    *o = (oracle){.pid = -1};
}

/* Starts argv (its stderr stays the suite's) and waits for its first line:
 * true on "ready"; otherwise the process is stopped and the line it gave
 * instead ("absent REASON", or nothing) is left in why. */
static inline bool oracle_start(oracle *o, char *const argv[], char *why, size_t why_cap)
{
    int in[2], out[2];
    *o = (oracle){.pid = -1};
    if (why_cap) why[0] = 0;
    /* close-on-exec: another oracle started later must not hold this one's
     * stdin open (it would never see its end) */
    if (pipe2(in, O_CLOEXEC)) return false;
    if (pipe2(out, O_CLOEXEC)) {
        close(in[0]);
        close(in[1]);
        return false;
    }
    fflush(NULL); /* nothing buffered is written twice by the child */
    pid_t p = fork();
    if (p == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (p < 0) {
        close(in[1]);
        close(out[0]);
        return false;
    }
    signal(SIGPIPE, SIG_IGN); /* an oracle that died is a failed request, not the suite's end */
    o->pid = p;
    o->to = fdopen(in[1], "w");
    o->from = fdopen(out[0], "r");
    char line[512] = "";
    if (o->to && o->from && fgets(line, sizeof line, o->from) && !strcmp(line, "ready\n"))
        return true;
    line[strcspn(line, "\n")] = 0;
    snprintf(why, why_cap, "%s", line);
    oracle_stop(o);
    return false;
}

/* oracle_start, with a note where it cannot start: "# skip: WHAT is not run
 * (why)". */
static inline bool oracle_start_or_skip(oracle *o, char *const argv[], const char *what)
{
    char why[512];
    bool up = oracle_start(o, argv, why, sizeof why);
    if (!up) printf("# skip: %s is not run (%s)\n", what, why[0] ? why : "cannot start it");
    return up;
}

/* Sends one request (printf'd from fmt, without its newline) and reads the
 * reply's line into reply; false (and the reason in reply) when the oracle
 * is not running or has gone. */
static inline bool oracle_ask(oracle *o, char *reply, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline bool oracle_ask(oracle *o, char *reply, size_t cap, const char *fmt, ...)
{
    va_list ap;
    if (!o->to) {
        snprintf(reply, cap, "error the oracle is not running");
        return false;
    }
    va_start(ap, fmt);
    vfprintf(o->to, fmt, ap);
    va_end(ap);
    if (fputc('\n', o->to) == EOF || fflush(o->to) != 0 || !fgets(reply, (int)cap, o->from)) {
        snprintf(reply, cap, "error the oracle process ended");
        oracle_stop(o);
        return false;
    }
    size_t len = strcspn(reply, "\n");
    if (!reply[len]) /* longer than reply: the rest of its line is not the next reply */
        for (int c = 0; c != '\n' && c != EOF;)
            c = fgetc(o->from);
    reply[len] = 0;
    return true;
}

/* Whether a reply says the request succeeded. */
static inline bool oracle_ok(const char *reply)
{
    return !strncmp(reply, "ok", 2) && (!reply[2] || reply[2] == ' ');
}

#endif
