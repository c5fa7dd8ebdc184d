/*
 * LD_PRELOAD shim that makes one write fail (or every write from one on: a
 * disk that stays full), to test that graft never reports success after a
 * failed write and never leaves a damaged file under a real name.
 *
 * Interposing write() is not enough: glibc's stdio and libhdf5 reach the
 * kernel through internal aliases. A seccomp filter installed before main
 * traps the write-side system calls of every thread instead (SIGSYS); the
 * handler counts those on files below FAILWRITE_DIR and either fails the
 * chosen one or performs the call itself through a trampoline the filter lets
 * through.
 *
 * Counted calls, on file descriptors whose path starts with FAILWRITE_DIR:
 * write, pwrite64, writev, pwritev, pwritev2, ftruncate, fsync, fdatasync,
 * and close of a descriptor open for writing.
 *
 *   FAILWRITE_DIR=/path     only files below it count (required)
 *   FAILWRITE_N=n           fail the n-th counted call (1-based; 0 or unset: none)
 *   FAILWRITE_STAY=1        ... and every counted call after it
 *   FAILWRITE_ERRNO=e       the error (a number; default ENOSPC)
 *   FAILWRITE_COUNT=file    keeps the number of counted calls so far in file
 *   FAILWRITE_MARK=file     created when a call was made to fail
 *
 * A failed close still closes the descriptor, as Linux's close does. The
 * filter outlives exec but the handler does not, so execve fails (EPERM)
 * under the shim. A thread that blocks SIGSYS cannot be served: LSan's leak
 * check at exit stops the threads that way and never finishes, so ASan builds
 * run with detect_leaks=0. x86-64 Linux only; elsewhere the shim does nothing (the count file
 * stays absent).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__linux__)

/* The one syscall instruction the filter allows: nr, then up to 6 arguments. */
long fw_raw_syscall(long nr, long a, long b, long c, long d, long e, long f);
extern const char fw_syscall_begin[], fw_syscall_end[];
__asm__(".text\n"
        ".globl fw_raw_syscall\n"
        ".hidden fw_raw_syscall\n"
        ".type fw_raw_syscall,@function\n"
        "fw_raw_syscall:\n"
        "  movq %rdi, %rax\n"
        "  movq %rsi, %rdi\n"
        "  movq %rdx, %rsi\n"
        "  movq %rcx, %rdx\n"
        "  movq %r8, %r10\n"
        "  movq %r9, %r8\n"
        "  movq 8(%rsp), %r9\n"
        ".globl fw_syscall_begin\n"
        ".hidden fw_syscall_begin\n"
        "fw_syscall_begin:\n"
        "  syscall\n"
        ".globl fw_syscall_end\n"
        ".hidden fw_syscall_end\n"
        "fw_syscall_end:\n"
        "  ret\n"
        ".size fw_raw_syscall, .-fw_raw_syscall\n");

static char dir[1024];
static size_t dir_len;
static char count_path[1024], mark_path[1024];
static unsigned long fail_at;
static int stay, fail_errno = ENOSPC;
static unsigned long counter;

static size_t str_len(const char *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* Whether fd names a file below dir (readlink of /proc/self/fd/N). */
static int fd_in_dir(long fd)
{
    char link[64] = "/proc/self/fd/", digits[24], target[1100];
    int nd = 0;
    if (fd < 0) return 0;
    do digits[nd++] = (char)('0' + fd % 10), fd /= 10;
    while (fd > 0);
    size_t p = str_len(link);
    while (nd > 0) link[p++] = digits[--nd];
    link[p] = '\0';
    long n = fw_raw_syscall(SYS_readlink, (long)link, (long)target, (long)sizeof target - 1, 0, 0, 0);
    if (n < (long)dir_len) return 0;
    if (memcmp(target, dir, dir_len) != 0) return 0;
    return n == (long)dir_len || target[dir_len] == '/';
}

static void write_file(const char *path, const char *text, size_t len)
{
    long fd = fw_raw_syscall(SYS_open, (long)path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644,
                             0, 0, 0);
    if (fd < 0) return;
    fw_raw_syscall(SYS_write, fd, (long)text, (long)len, 0, 0, 0);
    fw_raw_syscall(SYS_close, fd, 0, 0, 0, 0, 0);
}

static void record_count(unsigned long n)
{
    char text[32];
    int k = 20;
    text[k] = '\n';
    do text[--k] = (char)('0' + n % 10), n /= 10;
    while (n > 0);
    /* Calls of several threads may finish out of order: the file only grows. */
    static unsigned long written;
    unsigned long now = __atomic_load_n(&counter, __ATOMIC_SEQ_CST);
    if (now <= __atomic_load_n(&written, __ATOMIC_SEQ_CST)) return;
    __atomic_store_n(&written, now, __ATOMIC_SEQ_CST);
    write_file(count_path, text + k, (size_t)(21 - k));
}

static void on_sigsys(int sig, siginfo_t *si, void *vctx)
{
    (void)sig;
    ucontext_t *uc = vctx;
    greg_t *r = uc->uc_mcontext.gregs;
    int saved_errno = errno;
    long nr = si->si_syscall;
    long a = r[REG_RDI], b = r[REG_RSI], c = r[REG_RDX], d = r[REG_R10], e = r[REG_R8],
         f = r[REG_R9];
    int counted = nr != SYS_execve && nr != SYS_execveat && fd_in_dir(a);
    if (counted && nr == SYS_close) {
        long fl = fw_raw_syscall(SYS_fcntl, a, F_GETFL, 0, 0, 0, 0);
        counted = fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
    }
    int fail = 0;
    if (counted) {
        unsigned long n = __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);
        if (count_path[0]) record_count(n);
        fail = fail_at && (n == fail_at || (stay && n > fail_at));
        if (fail && mark_path[0]) write_file(mark_path, "fired\n", 6);
    }
    long ret;
    if (nr == SYS_execve || nr == SYS_execveat)
        ret = -EPERM;
    else if (!fail)
        ret = fw_raw_syscall(nr, a, b, c, d, e, f);
    else if (nr == SYS_close) {
        fw_raw_syscall(nr, a, 0, 0, 0, 0, 0);
        ret = -fail_errno;
    } else {
        ret = -fail_errno;
    }
    r[REG_RAX] = ret;
    errno = saved_errno;
}

static void copy_env(char *dst, size_t cap, const char *name)
{
    const char *v = getenv(name);
    dst[0] = '\0';
    if (v && strlen(v) < cap) strcpy(dst, v);
}

__attribute__((constructor)) static void failwrite_init(void)
{
    copy_env(dir, sizeof dir, "FAILWRITE_DIR");
    dir_len = strlen(dir);
    while (dir_len > 1 && dir[dir_len - 1] == '/') dir[--dir_len] = '\0';
    if (dir_len == 0) return;
    copy_env(count_path, sizeof count_path, "FAILWRITE_COUNT");
    copy_env(mark_path, sizeof mark_path, "FAILWRITE_MARK");
    const char *v = getenv("FAILWRITE_N");
    fail_at = v ? strtoul(v, NULL, 10) : 0;
    v = getenv("FAILWRITE_STAY");
    stay = v && *v == '1';
    v = getenv("FAILWRITE_ERRNO");
    if (v && atoi(v) > 0) fail_errno = atoi(v);
    /* A run with no counted call leaves a count of 0, telling "none" from "shim not loaded". */
    if (count_path[0]) write_file(count_path, "0\n", 2);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) != 0) return;

    uint64_t lo = (uint64_t)(uintptr_t)fw_syscall_begin, hi = (uint64_t)(uintptr_t)fw_syscall_end;
    /* The trampoline lies within one 4 GiB window: compare the high half, then the low. */
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_execve, 11, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_execveat, 10, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 9, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwrite64, 8, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_writev, 7, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwritev, 6, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwritev2, 5, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ftruncate, 4, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fsync, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fdatasync, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* a trapped call: from the trampoline it runs, from anywhere else it traps */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer) + 4),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(lo >> 32), 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer)),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (uint32_t)lo, 0, 1),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, (uint32_t)hi, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {(unsigned short)(sizeof prog / sizeof prog[0]), prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return;
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0);
}

#endif
