/*
 * sandbox_init.c: pid 1 of a sandbox started with Config(init=True).
 *
 *     sandbox-init COMMAND_PID STATUS_FD
 *
 * The set-up child (run_init in csrc/sandbox_core.c) vforks the command, which
 * becomes pid 2, and then replaces itself with this program, exec'd from a
 * descriptor (execveat, AT_EMPTY_PATH).  So pid 1 holds none of the
 * supervisor's memory: no copy-on-write image that grows with every page the
 * supervisor writes, nothing for the OOM killer to count as the sandbox's
 * biggest process, no supervisor argv in /proc/1/cmdline.
 *
 * What it does: reap every process that ends up its child (orphans included),
 * pass SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1 and SIGUSR2 on to the
 * command, and when the command is reaped send its raw wait status (an int)
 * over STATUS_FD (-1: none) and exit with its exit code, or 128+N for signal N.
 * Our exit makes the kernel kill whatever is left in the pid namespace.
 *
 * What it relies on, all kept by exec: SIGCHLD and the forwarded signals are
 * already blocked (run_init blocks them before the vfork: a pid 1 drops an
 * unhandled signal at once, a blocked one stays pending, across exec too, for
 * rt_sigtimedwait; blocking them here would be too late); STATUS_FD is the only
 * descriptor; the seccomp filter, credentials, no_new_privs and
 * PR_SET_PDEATHSIG(SIGKILL) are the set-up child's.
 *
 * Freestanding: no libc, no dynamic loader, so nothing is needed from the
 * sandbox's root, nothing of a libc is mapped, and the system calls are exactly
 * the ones below (a custom seccomp policy must allow them, and execveat):
 * prctl, rt_sigtimedwait, wait4, kill, sendto, exit_group.  The C library's
 * headers are used for constants and macros only.
 */
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#if defined(__x86_64__)
__asm__(".text\n"
        ".global _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"
        "    mov %rsp, %rdi\n"        /* argc, argv[], NULL, envp[] */
        "    and $-16, %rsp\n"
        "    call init_main\n"
        "    hlt\n");

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
__asm__(".text\n"
        ".global _start\n"
        ".type _start, %function\n"
        "_start:\n"
        "    mov x29, #0\n"
        "    mov x30, #0\n"
        "    mov x0, sp\n"            /* argc, argv[], NULL, envp[]; sp is 16-byte aligned */
        "    bl init_main\n"
        "    brk #0\n");

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = n, x0 __asm__("x0") = a, x1 __asm__("x1") = b, x2 __asm__("x2") = c,
                  x3 __asm__("x3") = d, x4 __asm__("x4") = e, x5 __asm__("x5") = f;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory", "cc");
    return x0;
}
#else
#error "sandbox_init.c: add an entry point and a system call stub for this architecture"
#endif

/* The kernel's sigset_t (not libc's 128-byte one): 64 signals, one bit each. */
typedef uint64_t kernel_sigset;
#define SIGBIT(sig) ((kernel_sigset)1 << ((sig) - 1))

/* Passed on to the command, as tini does: pid 1 drops signals it has no
 * handler for, so without this a SIGTERM from outside could not stop it. */
#define FORWARDED (SIGBIT(SIGHUP) | SIGBIT(SIGINT) | SIGBIT(SIGQUIT) | SIGBIT(SIGTERM) | SIGBIT(SIGUSR1) | SIGBIT(SIGUSR2))

static void __attribute__((noreturn)) exit_now(int code)
{
    for (;;)
        sys6(SYS_exit_group, code, 0, 0, 0, 0, 0);
}

/* A decimal int, optionally negative; anything else is a usage error. */
static int parse_int(const char *s, long *out)
{
    long value = 0;
    int negative = 0;
    if (!s || !*s)
        return -1;
    if (*s == '-') {
        negative = 1;
        s++;
    }
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || value > 0x7fffffffL / 10)
            return -1;
        value = value * 10 + (*s - '0');
    }
    *out = negative ? -value : value;
    return 0;
}

/* The command ended: give the parent its exact wait status (the Result then
 * reads as without init), and exit as close to it as a pid 1 can.  A pid 1
 * cannot die of a signal it sends itself (the kernel drops even SIGKILL), so a
 * signal death becomes the shell's 128+N. */
static void __attribute__((noreturn)) finish(int status, long status_fd)
{
    if (status_fd >= 0) /* a failure (the parent is gone or stopped listening) leaves the exit code to tell */
        sys6(SYS_sendto, status_fd, (long)&status, sizeof status, MSG_NOSIGNAL | MSG_DONTWAIT, 0, 0);
    exit_now(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

void __attribute__((noreturn, used, visibility("hidden"))) init_main(long *sp);

void init_main(long *sp)
{
    long argc = sp[0], command, status_fd, pid, sig;
    char **argv = (char **)(sp + 1);
    kernel_sigset waited = SIGBIT(SIGCHLD) | FORWARDED;
    int status = 0;

    /* Not dumpable, first: the command runs as the same uid and must not
     * ptrace us or write /proc/1/mem (we hold the status socket).  Exec made
     * us dumpable again; run_init was not (it was a copy of the supervisor).
     * The name is what ps shows inside (exec from a descriptor names us by
     * its number).  Both are best effort: we hold no secret. */
    sys6(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0, 0);
    sys6(SYS_prctl, PR_SET_NAME, (long)"sandbox-init", 0, 0, 0, 0);
    if (argc != 3 || parse_int(argv[1], &command) < 0 || command <= 0 || parse_int(argv[2], &status_fd) < 0)
        exit_now(127);
    for (;;) {
        /* Reap every child that ended (orphans reparented to pid 1 included),
         * first of all: the command may have ended before we started.  One
         * SIGCHLD may stand for several. */
        while ((pid = sys6(SYS_wait4, -1, (long)&status, WNOHANG | __WALL, 0, 0, 0)) > 0)
            if (pid == command)
                finish(status, status_fd);
        if (pid < 0 && pid != -EINTR)
            exit_now(127); /* ECHILD: the command is not our child; or wait4 is denied: fail closed */
        sig = sys6(SYS_rt_sigtimedwait, (long)&waited, 0, 0, sizeof waited, 0, 0);
        if (sig < 0 && sig != -EINTR && sig != -EAGAIN)
            exit_now(127); /* rt_sigtimedwait is denied: fail closed, the namespace dies */
        if (sig > 0 && (SIGBIT(sig) & FORWARDED))
            sys6(SYS_kill, command, sig, 0, 0, 0, 0); /* harmless if it is already a zombie */
    }
}
