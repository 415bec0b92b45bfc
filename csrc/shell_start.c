/*
 * shell_start.c: the first moments of a new sandbox, from the clone to the exec
 * of the shell program (csrc/sandbox_shell.c).
 *
 * On x86_64 the clone shares the supervisor's memory (CLONE_VM, on a stack of
 * its own): cloning then copies no page tables, however large the supervisor
 * is, and the supervisor takes no copy-on-write faults while the child waits
 * for its id maps.  What runs here is therefore careful: raw system calls only
 * (a libc wrapper would write errno into the *supervisor thread's* TLS, and a
 * cancellation point would touch its thread descriptor), no writes to memory but
 * this stack, every signal blocked from before the clone until the dispositions
 * are back to default (a Python signal handler running here would flip flags in
 * the supervisor's memory).  Elsewhere it is a plain fork-style clone running
 * the same function, where those precautions are merely harmless.
 */
#include "sbx_sys.h"
#include "sandbox_core.h"
#include "plan_blob.h"
#include "shell_start.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define STACK_SIZE (64 * 1024)
#define GUARD_SIZE 4096

#if defined(__x86_64__)
#define SHARED_MEMORY_CLONE 1
/* A system call that reports failure as -errno and leaves errno alone. */
static inline long raw(long n, long a, long b, long c, long d, long e)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

/* clone3 whose child starts on its own stack and calls fn(arg), which never
 * returns: the child cannot return through our frames, they are not on its stack. */
static long clone3_calling(void *args, size_t size, void (*fn)(void *), void *arg)
{
    long ret;
    register void *r12 __asm__("r12") = (void *)fn;
    register void *r13 __asm__("r13") = arg;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "mov %%r13, %%rdi\n\t"
                     "call *%%r12\n\t"
                     "ud2\n"
                     "1:\n"
                     : "=a"(ret)
                     : "a"((long)SYS_clone3), "D"(args), "S"(size), "r"(r12), "r"(r13)
                     : "rcx", "r11", "memory");
    return ret;
}
#else
#define SHARED_MEMORY_CLONE 0
static long raw(long n, long a, long b, long c, long d, long e)
{
    long ret = syscall(n, a, b, c, d, e);
    return ret < 0 ? -errno : ret;
}
#endif

/* The error record (struct sbx_error) the launcher reads, then the end. */
static void __attribute__((noreturn)) report(int error_fd, int stage, long err, const char *what)
{
    struct sbx_error rec;
    size_t i;
    for (i = 0; i < sizeof rec; i++)
        ((volatile char *)&rec)[i] = 0;
    rec.stage = stage;
    rec.err = (int)-err;
    for (i = 0; what[i] && i + 1 < sizeof rec.detail; i++)
        rec.detail[i] = what[i];
    raw(SYS_write, error_fd, (long)&rec, sizeof rec, 0, 0);
    for (;;)
        raw(SYS_exit_group, 127, 0, 0, 0, 0);
}

#define TRY(call, stage, what) do { long r_ = (call); if (r_ < 0) report(error_fd, (stage), r_, (what)); } while (0)

struct kernel_sigaction {   /* what rt_sigaction takes (not glibc's struct sigaction) */
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static void __attribute__((noreturn)) shell_start(void *arg)
{
    static const char *const shell_argv[] = {"sandbox-shell", NULL};
    static const char *const shell_envp[] = {NULL};
    const struct sbx_shell_start *s = arg;
    struct kernel_sigaction dfl = {SIG_DFL, 0, NULL, 0};
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    int sources[4 + SBX_SHELL_MAX_CGROUP_FDS], targets[4 + SBX_SHELL_MAX_CGROUP_FDS];
    int error_fd = s->error_fd, n = 0, i, top, shell_fd;
    uint64_t none = 0;
    long got;
    char c;

    /* The parent's ends of the pipes first: our copy of the sync pipe's write
     * end would keep its EOF (the parent died) from ever coming. */
    for (i = 0; i < s->n_close; i++)
        raw(SYS_close, s->close_fds[i], 0, 0, 0, 0);
    /* Default dispositions (exec keeps ignored ones), then unblock: the parent
     * blocked everything before the clone. */
    for (i = 1; i <= 64; i++)
        if (i != SIGKILL && i != SIGSTOP) {
            long r = raw(SYS_rt_sigaction, i, (long)&dfl, 0, sizeof(uint64_t), 0);
            if (r < 0 && r != -EINVAL)
                report(error_fd, SBX_STAGE_SIGNALS, r, "rt_sigaction");
        }
    TRY(raw(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, sizeof none, 0), SBX_STAGE_SIGNALS, "rt_sigprocmask");
    TRY(raw(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), SBX_STAGE_DEATHSIG, "prctl(PR_SET_PDEATHSIG)");
    /* The id maps: exec keeps our capabilities only once they exist (below). */
    do {
        got = raw(SYS_read, s->sync_fd, (long)&c, 1, 0, 0);
    } while (got == -EINTR);
    if (got != 1)
        report(error_fd, SBX_STAGE_SYNC, got < 0 ? got : -EPIPE, "parent sync");
    raw(SYS_close, s->sync_fd, 0, 0, 0, 0);
    /* The descriptors the shell expects (plan_blob.h), first moved above the
     * layout so that no dup3 overwrites a source still to be moved. */
    sources[n] = s->error_fd, targets[n++] = SBX_SHELL_FD_ERROR;
    sources[n] = s->control_fd, targets[n++] = SBX_SHELL_FD_CONTROL;
    sources[n] = s->plan_fd, targets[n++] = SBX_SHELL_FD_PLAN;
    sources[n] = s->init_fd, targets[n++] = SBX_SHELL_FD_INIT;
    for (i = 0; i < s->n_cgroup_fds; i++)
        sources[n] = s->cgroup_fds[i], targets[n++] = SBX_SHELL_FD_CGROUP + i;
    top = SBX_SHELL_FD_CGROUP + s->n_cgroup_fds;
    shell_fd = (int)raw(SYS_fcntl, s->shell_fd, F_DUPFD_CLOEXEC, top, 0, 0);
    TRY(shell_fd, SBX_STAGE_FDS, "dup (shell program)");
    for (i = 0; i < n; i++)
        if (sources[i] >= 0) {
            sources[i] = (int)raw(SYS_fcntl, sources[i], F_DUPFD_CLOEXEC, top, 0, 0);
            TRY(sources[i], SBX_STAGE_FDS, "dup (shell layout)");
        }
    for (i = 0; i < n; i++) {
        if (sources[i] >= 0)
            TRY(raw(SYS_dup3, sources[i], targets[i], 0, 0, 0), SBX_STAGE_FDS, "dup3 (shell layout)");
        else
            raw(SYS_close, targets[i], 0, 0, 0, 0);   /* an unused slot holds nothing of ours */
    }
    error_fd = SBX_SHELL_FD_ERROR;
    /* Everything else closes at the exec (stdio stays, as without a shell). */
    TRY(raw(SYS_close_range, top, ~0U, CLOSE_RANGE_CLOEXEC, 0, 0), SBX_STAGE_FDS, "close_range");
    /* Our uid is not root in the new user namespace (only the sandbox's uid is
     * mapped), so exec would clear every capability; the ambient set carries
     * them across.  The shell empties it (and the inheritable set) first thing. */
    if (s->clone_flags & CLONE_NEWUSER) {
        TRY(raw(SYS_capget, (long)&hdr, (long)data, 0, 0, 0), SBX_STAGE_CAPSET, "capget (shell)");
        data[0].inheritable = data[0].permitted;
        data[1].inheritable = data[1].permitted;
        TRY(raw(SYS_capset, (long)&hdr, (long)data, 0, 0, 0), SBX_STAGE_CAPSET, "capset (shell)");
        for (i = 0; i <= s->last_cap; i++)
            TRY(raw(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, i, 0, 0), SBX_STAGE_AMBIENT,
                "prctl(PR_CAP_AMBIENT_RAISE)");
    }
    got = raw(SYS_execveat, shell_fd, (long)"", (long)shell_argv, (long)shell_envp, AT_EMPTY_PATH);
    report(error_fd, SBX_STAGE_SHELL_EXEC, got, "execveat (the shell program)");
}

long sbx_shell_clone(struct sbx_clone_args *args, const struct sbx_shell_start *start, struct sbx_stack *stack)
{
    sigset_t all, old;
    struct sbx_shell_start *copy;
    char *base;
    long pid;
    int err;

    stack->addr = NULL;
    stack->len = 0;
    sigfillset(&all);
    if (!SHARED_MEMORY_CLONE) {
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pid = syscall(SYS_clone3, args, sizeof *args);
        if (pid == 0)
            shell_start((void *)start);   /* a fork: our copy of *start is our own */
        err = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return pid < 0 ? -err : pid;
    }
#if SHARED_MEMORY_CLONE
    /* Guard page below; the start record at the top, the stack under it. */
    base = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return -errno;
    if (mprotect(base, GUARD_SIZE, PROT_NONE) < 0) {
        err = errno;
        munmap(base, STACK_SIZE);
        return -err;
    }
    copy = (struct sbx_shell_start *)(base + STACK_SIZE - ((sizeof *copy + 63) & ~(size_t)63));
    *copy = *start;
    args->stack = (unsigned long long)(uintptr_t)base;
    args->stack_size = (unsigned long long)((char *)copy - base);   /* up to the record: 64-byte aligned top */
    args->flags |= CLONE_VM;
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = clone3_calling(args, sizeof *args, shell_start, copy);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        munmap(base, STACK_SIZE);
        return pid;
    }
    stack->addr = base;
    stack->len = STACK_SIZE;
    return pid;
#else
    (void)copy;
    (void)base;
    return -ENOSYS;
#endif
}

int sbx_release_stack(unsigned long addr, unsigned long len)
{
    if (!addr || !len)
        return 0;
    return munmap((void *)(uintptr_t)addr, len) < 0 ? -errno : 0;
}
