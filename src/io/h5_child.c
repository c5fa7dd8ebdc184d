/*
 * The child process that reads a .h5 file for graft (h5_child.h).
 *
 * One child per file opened, made with fork() so that it runs graft's own
 * reader (src/io/hdf5.c) on a copy of the process: no exec, no second
 * binary. It answers over a socketpair. Each answer is a `reply` header and
 * `len` bytes: on success the listing (once, first) or one weight's floats
 * (per request: the parent sends the io_weight it wants), else the child's
 * own graft message, which the parent reports verbatim. A request is a count
 * and that many io_weights (one, or a small one and the small ones after it
 * in the file); each gets its own answer, in order. graft waits for
 * every byte with poll() and a deadline that restarts whenever bytes arrive;
 * a child that misses it is killed, one that dies is reported by its signal.
 * The child is killed and reaped on every path (io_file_free included), so
 * none outlives the io_file; PR_SET_PDEATHSIG kills it with graft itself.
 */
#include "io/h5_child.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define DEFAULT_TIMEOUT 60.0
#define MAX_TIMEOUT 1e6
/* Bounds on what the parent accepts: a listing holds at most
 * GRAFT_MAX_LAYERS layers and a model_config attribute (hdf5.c caps
 * attributes at 256 MiB); a message fits graft's error buffer. */
#define MAX_LISTING ((uint64_t)1 << 33)
#define MAX_MESSAGE 4096
/* recv() at most this much at a time into the weight's memory. */
#define CHUNK ((size_t)8 << 20)
/* A request for a small weight also asks for the small ones after it in the
 * file, up to this many bytes: loading asks in file order, and a round trip
 * per BatchNormalization vector costs more than the vector. */
#define AHEAD_BYTES ((size_t)1 << 20)
#define AHEAD_MAX 256

/* A reply's status while the child lists a long file: it is not stuck. */
#define PROGRESS (-1)

typedef struct {
    int32_t status; /* GRAFT_OK, PROGRESS, or the child's error: its message follows */
    uint32_t spare;
    uint64_t len; /* bytes that follow */
} reply;

/* The listing's layout: this header, then per layer a wire_layer and its
 * io_weights, then the model_config text. */
typedef struct {
    int32_t n_layers, n_listed, by_name_only, has_config;
    uint64_t config_len;
} wire_head;

typedef struct {
    char name[GRAFT_NAME_MAX];
    int32_t n, spare;
} wire_layer;

/* A weight that came with an earlier request's answer: its floats at `off`
 * in the child's `ahead` buffer, or the child's error message there. */
typedef struct {
    size_t handle;
    graft_status status;
    size_t off, len;
} ahead_entry;

typedef struct {
    pid_t pid; /* -1 once ended and reaped */
    int fd;
    double timeout; /* seconds without progress before giving up */
    const char *path;
    const io_weight **by_handle; /* the listing in file order (handles count from 0) */
    size_t n_weights;
    char *ahead; /* AHEAD_BYTES + room for messages */
    ahead_entry got[AHEAD_MAX];
    int n_got;
} child;

bool h5_child_wanted(void)
{
    const char *v = graft_env(GRAFT_ENV_H5_CHILD);
    return !(v && strcmp(v, "0") == 0);
}

/* ------------------------------------------------------------ the child */

static bool child_send(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t put = send(fd, p, n, MSG_NOSIGNAL);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) return false;
        p += put;
        n -= (size_t)put;
    }
    return true;
}

/* False at the end of the socket: graft closed it or ended. */
static bool child_recv(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t got = recv(fd, p, n, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        p += got;
        n -= (size_t)got;
    }
    return true;
}

/* s's data on success, else graft's message for it. */
static bool send_reply(int fd, graft_status s, const void *data, size_t len)
{
    if (s != GRAFT_OK) {
        data = graft_last_error();
        len = strnlen(data, MAX_MESSAGE - 1);
    }
    reply r = {s, 0, len};
    return child_send(fd, &r, sizeof r) && (len == 0 || child_send(fd, data, len));
}

/*
 * fork() copies only the calling thread: graft's OpenMP team and prefetch
 * threads do not exist here, and whatever locks they held stay held. The
 * child therefore runs only the reader (libhdf5, malloc, which glibc makes
 * fork-safe, and graft's own plain C), never a parallel loop, and leaves with
 * _exit(): no atexit handlers (libhdf5's, OpenMP's), no flush of stdio
 * buffers that are the parent's.
 */
static void child_setup(pid_t parent)
{
#ifdef __linux__
    /* Ended with graft, even while libhdf5 loops (sent when the thread that
     * forked ends: graft reads model files on the thread that asks). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    if (getppid() != parent) _exit(0); /* graft ended before prctl */
    /* A Ctrl-C at the terminal reaches the child too: it ends at once rather
     * than run graft's handler, which marks a model only the parent uses. */
    struct sigaction sa;
    if (sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler != SIG_IGN) signal(SIGINT, SIG_DFL);
}

typedef struct {
    const char *path;
    bool want_config;
} list_job;

/* Appends n bytes to a growing buffer. */
typedef struct {
    char *p;
    size_t len, cap;
} outbuf;

static bool put(outbuf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n) cap *= 2;
        char *grown = realloc(b->p, cap);
        if (!grown) return false;
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return true;
}

static graft_status pack_listing(const io_file *f, const char *config, outbuf *b)
{
    wire_head h = {f->n_layers, f->n_listed, f->by_name_only, config != NULL,
                   config ? strlen(config) : 0};
    bool ok = put(b, &h, sizeof h);
    for (int i = 0; i < f->n_layers && ok; i++) {
        wire_layer l = {{0}, f->layers[i].n, 0};
        memcpy(l.name, f->layers[i].name, sizeof l.name);
        ok = put(b, &l, sizeof l) &&
             (l.n == 0 || put(b, f->layers[i].w, (size_t)l.n * sizeof *f->layers[i].w));
    }
    if (ok && config) ok = put(b, config, h.config_len);
    return ok ? GRAFT_OK : graft_fail(GRAFT_ENOMEM, "out of memory listing %s", f->path);
}

static int progress_fd;
static double progress_sent;

/* A layer listed: tells graft, at most once a second. */
static void send_progress(io_file *f)
{
    (void)f;
    double t = graft_now();
    if (t - progress_sent < 1) return;
    progress_sent = t;
    reply r = {PROGRESS, 0, 0};
    child_send(progress_fd, &r, sizeof r);
}

/* Lists the file, then reads weights on request until graft closes the socket. */
static void run_list(int fd, const void *arg)
{
    const list_job *j = arg;
    io_file f;
    memset(&f, 0, sizeof f);
    f.path = j->path;
    f.progress = send_progress;
    progress_fd = fd;
    progress_sent = graft_now();
    char *config = NULL;
    outbuf b = {0};
    graft_status s = h5_list_here(j->path, &f, j->want_config ? &config : NULL);
    if (s == GRAFT_OK) s = pack_listing(&f, config, &b);
    if (!send_reply(fd, s, b.p, b.len) || s != GRAFT_OK) return;
    free(b.p);
    free(config);
    float *buf = NULL;
    size_t cap = 0;
    uint32_t n;
    io_weight w[AHEAD_MAX] = {0};
    while (child_recv(fd, &n, sizeof n) && n >= 1 && n <= AHEAD_MAX &&
           child_recv(fd, w, n * sizeof *w)) {
        for (uint32_t i = 0; i < n; i++) {
            if (w[i].count > cap || !buf) {
                free(buf);
                cap = 0;
                buf = malloc((w[i].count ? w[i].count : 1) * sizeof *buf);
                if (buf) cap = w[i].count;
            }
            s = buf ? f.read(&f, &w[i], buf)
                    : graft_fail(GRAFT_ENOMEM, "%s: out of memory reading weight '%s'", f.path,
                                 w[i].name);
            if (!send_reply(fd, s, buf, w[i].count * sizeof *buf)) return;
        }
    }
}

typedef struct {
    const char *path, *name;
} meta_job;

static void run_meta(int fd, const void *arg)
{
    const meta_job *j = arg;
    char *text = NULL;
    graft_status s = h5_metadata_here(j->path, j->name, &text);
    send_reply(fd, s, text, text ? strlen(text) : 0);
}

/* ------------------------------------------------------------ graft's side */

static graft_status read_timeout(const char *path, double *out)
{
    const char *v = graft_env(GRAFT_ENV_H5_TIMEOUT);
    *out = DEFAULT_TIMEOUT;
    if (!v) return GRAFT_OK;
    char *end;
    double t = strtod(v, &end);
    if (end == v || *end || !(t > 0 && t <= MAX_TIMEOUT))
        return graft_fail(GRAFT_EINVAL,
                          "reading %s: GRAFT_H5_TIMEOUT='%.40s' is not a number of seconds "
                          "(more than 0, at most 1e6)",
                          path, v);
    *out = t;
    return GRAFT_OK;
}

static graft_status spawn(child *c, const char *path, void (*job)(int, const void *),
                          const void *arg)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    c->pid = -1;
    c->fd = -1;
    graft_status s = read_timeout(path, &c->timeout);
    if (s != GRAFT_OK) return s;
    int sv[2];
    /* CLOEXEC: a program graft runs never holds the child's socket open. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return graft_fail(GRAFT_EIO, "%s: cannot start the process that reads it: %s", path,
                          strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        child_setup(parent);
        job(sv[1], arg);
        _exit(0);
    }
    int e = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return graft_fail(GRAFT_EIO,
                          "%s: cannot start the process that reads it: %s (GRAFT_H5_CHILD=0 reads "
                          "it in graft's own)",
                          path, strerror(e));
    }
    c->pid = pid;
    c->fd = sv[0];
    return GRAFT_OK;
}

/* The child's wait status, -1 when it was reaped elsewhere (SIGCHLD ignored). */
static int reap(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return st;
}

/* Kills the child (whatever it is doing) and reaps it. */
static void stop(child *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        reap(c->pid);
    }
    c->pid = -1;
}

/* The socket ended: the child is ending. Its own exit (a crash) is waited
 * for briefly, so that the message can say how it ended. */
static graft_status child_gone(child *c)
{
    int st = -1;
    pid_t r = 0;
    struct timespec tick = {0, 10000000};
    for (int i = 0; i < 200 && r == 0; i++) {
        r = waitpid(c->pid, &st, WNOHANG);
        if (r < 0 && errno == EINTR) r = 0;
        if (r == 0) nanosleep(&tick, NULL);
    }
    if (r < 0) st = -1;       /* reaped elsewhere (SIGCHLD ignored) */
    if (r != 0) c->pid = -1; /* nothing left to kill */
    stop(c);
    if (st != -1 && WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        if (sig == SIGINT)
            return graft_fail(GRAFT_EINTERRUPTED, "%s: reading it was interrupted (Ctrl-C)",
                              c->path);
        return graft_fail(GRAFT_EFORMAT,
                          "%s: the HDF5 library crashed reading it (signal %d, %s: a corrupt "
                          "file?)",
                          c->path, sig, strsignal(sig));
    }
    if (st != -1 && WIFEXITED(st))
        return graft_fail(GRAFT_EFORMAT,
                          "%s: the process reading it with the HDF5 library ended without an "
                          "answer (exit status %d)",
                          c->path, WEXITSTATUS(st));
    return graft_fail(GRAFT_EFORMAT,
                      "%s: the process reading it with the HDF5 library ended without an answer",
                      c->path);
}

static graft_status timed_out(child *c)
{
    stop(c);
    return graft_fail(GRAFT_EFORMAT,
                      "%s: the HDF5 library stopped responding while reading it (a corrupt "
                      "file?); gave up after %g s (GRAFT_H5_TIMEOUT)",
                      c->path, c->timeout);
}

static graft_status broken(child *c, const char *what, int e)
{
    stop(c);
    return graft_fail(GRAFT_EIO, "%s: %s the process reading it: %s", c->path, what, strerror(e));
}

/* Waits until fd is ready for `events` or the deadline passes (false). */
static graft_status wait_ready(child *c, short events, double deadline, bool *ready)
{
    *ready = false;
    double left = deadline - graft_now();
    if (left <= 0) return timed_out(c);
    struct pollfd p = {c->fd, events, 0};
    int r = poll(&p, 1, (int)ceil(left * 1000));
    if (r < 0 && errno != EINTR) return broken(c, "waiting for", errno);
    *ready = r > 0;
    return GRAFT_OK;
}

static graft_status recv_all(child *c, void *buf, size_t n)
{
    if (c->fd < 0)
        return graft_fail(GRAFT_EIO, "%s: the process reading it has already ended", c->path);
    char *p = buf;
    double deadline = graft_now() + c->timeout;
    while (n > 0) {
        bool ready;
        graft_status s = wait_ready(c, POLLIN, deadline, &ready);
        if (s != GRAFT_OK) return s;
        if (!ready) continue;
        ssize_t got = recv(c->fd, p, n < CHUNK ? n : CHUNK, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (got == 0 || (got < 0 && errno == ECONNRESET)) return child_gone(c);
        if (got < 0) return broken(c, "reading from", errno);
        p += got;
        n -= (size_t)got;
        deadline = graft_now() + c->timeout; /* progress */
    }
    return GRAFT_OK;
}

static graft_status send_all(child *c, const void *buf, size_t n)
{
    if (c->fd < 0)
        return graft_fail(GRAFT_EIO, "%s: the process reading it has already ended", c->path);
    const char *p = buf;
    double deadline = graft_now() + c->timeout;
    while (n > 0) {
        bool ready;
        graft_status s = wait_ready(c, POLLOUT, deadline, &ready);
        if (s != GRAFT_OK) return s;
        if (!ready) continue;
        ssize_t put = send(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (put < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (put < 0 && (errno == EPIPE || errno == ECONNRESET)) return child_gone(c);
        if (put < 0) return broken(c, "writing to", errno);
        p += put;
        n -= (size_t)put;
        deadline = graft_now() + c->timeout;
    }
    return GRAFT_OK;
}

static graft_status malformed(child *c)
{
    stop(c);
    return graft_fail(GRAFT_EIO, "%s: the process reading it sent a malformed answer", c->path);
}

/* A reply's header; the child's error, when it sent one, becomes graft's. */
static graft_status recv_head(child *c, reply *r)
{
    graft_status s;
    do s = recv_all(c, r, sizeof *r);
    while (s == GRAFT_OK && r->status == PROGRESS && r->len == 0);
    if (s != GRAFT_OK) return s;
    if (r->status == GRAFT_OK) return GRAFT_OK;
    char msg[MAX_MESSAGE];
    if (r->status < 0 || r->status > GRAFT_EINTERRUPTED || r->len >= sizeof msg) return malformed(c);
    s = recv_all(c, msg, (size_t)r->len);
    if (s != GRAFT_OK) return s;
    msg[r->len] = '\0';
    return graft_fail((graft_status)r->status, "%s", msg);
}

/* Takes n bytes from the listing at *at. */
static bool take(const char *buf, size_t len, size_t *at, void *dst, size_t n)
{
    if (n > len - *at) return false;
    memcpy(dst, buf + *at, n);
    *at += n;
    return true;
}

static graft_status unpack_listing(child *c, io_file *f, const char *buf, size_t len,
                                   char **model_config)
{
    size_t at = 0;
    wire_head h;
    if (!take(buf, len, &at, &h, sizeof h) || h.n_layers < 0 || h.n_layers > GRAFT_MAX_LAYERS)
        return malformed(c);
    f->layers = calloc((size_t)h.n_layers + 1, sizeof *f->layers);
    if (!f->layers) return graft_fail(GRAFT_ENOMEM, "out of memory listing %s", f->path);
    f->cap = h.n_layers + 1;
    f->n_listed = h.n_listed;
    f->by_name_only = h.by_name_only != 0;
    for (int i = 0; i < h.n_layers; i++) {
        wire_layer wl;
        if (!take(buf, len, &at, &wl, sizeof wl) || wl.n < 0 ||
            (size_t)wl.n > (len - at) / sizeof(io_weight))
            return malformed(c);
        io_layer *l = &f->layers[f->n_layers++];
        memcpy(l->name, wl.name, sizeof l->name);
        l->name[sizeof l->name - 1] = '\0';
        if (wl.n == 0) continue;
        l->w = malloc((size_t)wl.n * sizeof *l->w);
        if (!l->w) return graft_fail(GRAFT_ENOMEM, "out of memory listing %s", f->path);
        l->n = l->cap = wl.n;
        take(buf, len, &at, l->w, (size_t)wl.n * sizeof *l->w);
    }
    for (int i = 0; i < f->n_layers; i++) c->n_weights += (size_t)f->layers[i].n;
    c->by_handle = calloc(c->n_weights + 1, sizeof(const io_weight *));
    if (!c->by_handle) return graft_fail(GRAFT_ENOMEM, "out of memory listing %s", f->path);
    for (int i = 0; i < f->n_layers; i++)
        for (int k = 0; k < f->layers[i].n; k++) {
            const io_weight *w = &f->layers[i].w[k];
            if (w->handle >= c->n_weights || c->by_handle[w->handle]) return malformed(c);
            c->by_handle[w->handle] = w;
        }
    if (!h.has_config) return at == len ? GRAFT_OK : malformed(c);
    if (h.config_len != len - at) return malformed(c);
    if (model_config) {
        *model_config = malloc((size_t)h.config_len + 1);
        if (!*model_config) return graft_fail(GRAFT_ENOMEM, "out of memory reading %s", f->path);
        memcpy(*model_config, buf + at, (size_t)h.config_len);
        (*model_config)[h.config_len] = '\0';
    }
    return GRAFT_OK;
}

static void child_close(io_file *f)
{
    child *c = f->ctx;
    if (!c) return;
    stop(c);
    free(c->by_handle);
    free(c->ahead);
    free(c);
    f->ctx = NULL;
}

/* One answer into dst (n bytes expected), or the child's message into msg. */
static graft_status recv_weight(child *c, void *dst, size_t n, graft_status *status, char *msg)
{
    reply r;
    graft_status s = recv_all(c, &r, sizeof r);
    if (s != GRAFT_OK) return s;
    *status = (graft_status)r.status;
    if (r.status == GRAFT_OK)
        return r.len == n ? recv_all(c, dst, n) : malformed(c);
    if (r.status < 0 || r.status > GRAFT_EINTERRUPTED || r.len >= MAX_MESSAGE) return malformed(c);
    s = recv_all(c, msg, (size_t)r.len);
    msg[r.len] = '\0';
    return s;
}

static graft_status child_read(io_file *f, const io_weight *w, float *dst)
{
    child *c = f->ctx;
    if (!c) return graft_fail(GRAFT_EIO, "%s: the process reading it has already ended", f->path);
    size_t bytes = w->count * sizeof *dst;
    for (int i = 0; i < c->n_got; i++) {
        const ahead_entry *e = &c->got[i];
        if (e->handle != w->handle) continue;
        if (e->status != GRAFT_OK) return graft_fail(e->status, "%s", c->ahead + e->off);
        if (e->len != bytes) break;
        memcpy(dst, c->ahead + e->off, bytes);
        return GRAFT_OK;
    }
    /* This weight, and the small ones after it in the file. */
    const io_weight *ask[AHEAD_MAX];
    uint32_t n = 0;
    ask[n++] = w;
    size_t total = bytes;
    for (size_t h = w->handle + 1; bytes <= AHEAD_BYTES / 4 && h < c->n_weights && n < AHEAD_MAX;
         h++) {
        size_t b = c->by_handle[h]->count * sizeof *dst;
        if (b > AHEAD_BYTES / 4 || total + b > AHEAD_BYTES) break;
        ask[n++] = c->by_handle[h];
        total += b;
    }
    if (n > 1 && !c->ahead && !(c->ahead = malloc(AHEAD_BYTES + AHEAD_MAX * MAX_MESSAGE))) n = 1;
    io_weight req[AHEAD_MAX];
    for (uint32_t i = 0; i < n; i++) req[i] = *ask[i];
    graft_status s = send_all(c, &n, sizeof n);
    if (s == GRAFT_OK) s = send_all(c, req, n * sizeof *req);
    char msg[MAX_MESSAGE];
    graft_status first = GRAFT_OK;
    if (s == GRAFT_OK) s = recv_weight(c, dst, bytes, &first, msg);
    c->n_got = 0;
    size_t off = 0;
    for (uint32_t i = 1; i < n && s == GRAFT_OK; i++) {
        ahead_entry *e = &c->got[c->n_got++];
        e->handle = ask[i]->handle;
        e->off = off;
        e->len = ask[i]->count * sizeof *dst;
        s = recv_weight(c, c->ahead + off, e->len, &e->status, c->ahead + off);
        if (e->status != GRAFT_OK) e->len = strlen(c->ahead + off) + 1;
        off += e->len;
    }
    if (s != GRAFT_OK) {
        c->n_got = 0;
        return s;
    }
    return first == GRAFT_OK ? GRAFT_OK : graft_fail(first, "%s", msg);
}

graft_status h5_child_list(const char *path, io_file *f, char **model_config)
{
    child *c = calloc(1, sizeof *c);
    if (!c) return graft_fail(GRAFT_ENOMEM, "out of memory opening %s", path);
    list_job job = {path, model_config != NULL};
    graft_status s = spawn(c, path, run_list, &job);
    if (s != GRAFT_OK) {
        free(c);
        return s;
    }
    f->ctx = c;
    f->read = child_read;
    f->close = child_close;
    reply r;
    char *buf = NULL;
    s = recv_head(c, &r);
    if (s == GRAFT_OK && r.len > MAX_LISTING) s = malformed(c);
    if (s == GRAFT_OK && !(buf = malloc(r.len ? (size_t)r.len : 1)))
        s = graft_fail(GRAFT_ENOMEM, "out of memory listing %s", path);
    if (s == GRAFT_OK) s = recv_all(c, buf, (size_t)r.len);
    if (s == GRAFT_OK) s = unpack_listing(c, f, buf, (size_t)r.len, model_config);
    free(buf);
    if (s != GRAFT_OK) child_close(f);
    return s;
}

graft_status h5_child_metadata(const char *path, const char *name, char **text)
{
    *text = NULL;
    child c;
    meta_job job = {path, name};
    graft_status s = spawn(&c, path, run_meta, &job);
    if (s != GRAFT_OK) return s;
    reply r;
    s = recv_head(&c, &r);
    if (s == GRAFT_OK && r.len > MAX_LISTING) s = malformed(&c);
    if (s == GRAFT_OK && !(*text = malloc((size_t)r.len + 1)))
        s = graft_fail(GRAFT_ENOMEM, "out of memory reading %s", path);
    if (s == GRAFT_OK) s = recv_all(&c, *text, (size_t)r.len);
    if (s == GRAFT_OK) (*text)[r.len] = '\0';
    stop(&c);
    if (s != GRAFT_OK) {
        free(*text);
        *text = NULL;
    }
    return s;
}
