/*
 * sandbox_core.c: everything between clone and exec.
 *
 * The parent (Python) hands over a fully prepared `struct sbx_plan`.  The child
 * runs only async-signal-safe system calls, allocates nothing, and reports the
 * first failure as (stage, errno, detail) over a close-on-exec pipe; EOF on that
 * pipe without a record means execve succeeded.  The order of the steps lives in
 * child_main(), one line of why per step.
 */
#include "sbx_sys.h"
#include "sandbox_core.h"
#include "child_setup.h"

#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define SBX_MAX_BPF_INSNS 4096


/* Child-private scratch space: the child is a copy of the parent, so these
 * statics are its own and using them allocates nothing. */
static int staged_fds[SBX_MAX_FDS];
static struct sock_filter bpf_copy[SBX_MAX_BPF_INSNS];


size_t sbx_str_copy(char *dst, size_t cap, size_t at, const char *src)
{
    while (src && *src && at + 1 < cap)
        dst[at++] = *src++;
    dst[at] = '\0';
    return at;
}

/* Report the failing step to the parent and die.  Never returns. */
static void __attribute__((noreturn))
fail(int error_fd, int stage, int err, const char *what, const char *path)
{
    struct sbx_error rec;
    size_t at;
    memset(&rec, 0, sizeof rec);
    rec.stage = stage;
    rec.err = err;
    at = sbx_str_copy(rec.detail, sizeof rec.detail, 0, what);
    if (path) {
        at = sbx_str_copy(rec.detail, sizeof rec.detail, at, " ");
        sbx_str_copy(rec.detail, sizeof rec.detail, at, path);
    }
    /* A short write leaves the parent with a truncated record, which it reports
     * as a protocol error; nothing better can be done from here. */
    if (write(error_fd, &rec, sizeof rec) < 0) { /* parent is gone */ }
    _exit(127);
}

#define CLOSE_OR_FAIL(from, to) \
    CHECK(syscall(SYS_close_range, (unsigned)(from), (unsigned)(to), 0) == 0, SBX_STAGE_FDS, "close_range", NULL)

static char launch_buf[SBX_MAX_LAUNCH];
static const char *launch_ptrs[SBX_MAX_ARGS + 1];
static int launch_fds[SBX_MAX_FDS];

/* Close every descriptor from `from` on but the (up to three) in keep[] (-1:
 * unused slot).  A pre-made sandbox may wait a long time and must not keep
 * other sandboxes' pipes open; init must hold none of the command's. */
static void close_all_but(unsigned int from, const int *keep, int n, int error_fd)
{
    int sorted[3], i, j, k = 0, v;
    for (i = 0; i < n && i < 3; i++) {
        if (keep[i] < (int)from)
            continue;
        for (j = k++; j > 0 && sorted[j - 1] > keep[i]; j--)
            sorted[j] = sorted[j - 1];
        sorted[j] = keep[i];
    }
    for (i = 0; i < k; i++) {
        v = sorted[i];
        if ((unsigned int)v > from)
            CLOSE_OR_FAIL(from, v - 1);
        from = (unsigned int)v + 1;
    }
    CLOSE_OR_FAIL(from, ~0U);
}

/* Wait for the launch message of a pre-made sandbox (EOF: the pool was closed). */
static void receive_launch(int control_fd, int error_fd, struct launch_params *lp)
{
    struct sbx_launch hdr;
    struct iovec iov[2];
    struct msghdr msg;
    static char cbuf[CMSG_SPACE(sizeof(int) * SBX_MAX_FDS)];
    struct cmsghdr *cmsg;
    ssize_t n;
    unsigned int i, k = 0, nfds = 0;
    char *at;

    memset(&msg, 0, sizeof msg);
    iov[0].iov_base = &hdr;
    iov[0].iov_len = sizeof hdr;
    iov[1].iov_base = launch_buf;
    iov[1].iov_len = sizeof launch_buf - 1;
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    do {
        n = recvmsg(control_fd, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n == 0)
        _exit(0); /* the supervisor discarded this pre-made sandbox */
    CHECK(n > 0, SBX_STAGE_LAUNCH, "recvmsg", NULL);
    if ((size_t)n < sizeof hdr || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
        hdr.strings_len != (size_t)n - sizeof hdr || hdr.n_argv == 0 ||
        hdr.n_argv + hdr.n_paths + 2 > SBX_MAX_ARGS) {
        errno = EPROTO;
        fail(error_fd, SBX_STAGE_LAUNCH, EPROTO, "malformed launch message", NULL);
    }
    for (cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
            nfds = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(launch_fds, CMSG_DATA(cmsg), nfds * sizeof(int));
        }
    }
    launch_buf[hdr.strings_len] = '\0';
    /* Split the NUL-separated strings: argv, NULL, exec paths, NULL. */
    at = launch_buf;
    for (i = 0; i < hdr.n_argv + hdr.n_paths; i++) {
        if (at >= launch_buf + hdr.strings_len) {
            errno = EPROTO;
            fail(error_fd, SBX_STAGE_LAUNCH, EPROTO, "launch strings truncated", NULL);
        }
        if (i == hdr.n_argv)
            launch_ptrs[k++] = NULL;
        launch_ptrs[k++] = at;
        at += strlen(at) + 1;
    }
    launch_ptrs[k] = NULL;
    lp->argv = launch_ptrs;
    lp->exec_paths = launch_ptrs + hdr.n_argv + 1;
    lp->n_exec_paths = (int)hdr.n_paths;
    lp->fd_map = launch_fds;
    lp->n_fd_map = (int)nfds;
}

/* The signals a fresh CPython sets up at start (SIGINT: its handler; SIGPIPE,
 * SIGXFSZ: ignored) -- a zygote has exactly these, and its child, which
 * returns into that interpreter, keeps them as a fresh one would have them
 * (setting them again from Python would write to pages it shares with the
 * zygote). */
static int interpreter_signal(int sig)
{
    return sig == SIGINT || sig == SIGPIPE || sig == SIGXFSZ;
}

static void reset_signals(int error_fd, int keep_interpreter_signals)
{
    struct sigaction dfl;
    sigset_t none;
    int sig;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    /* Python ignores SIGPIPE and installs handlers; exec keeps ignored signals,
     * so every disposition goes back to default and nothing stays blocked. */
    for (sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || (keep_interpreter_signals && interpreter_signal(sig)))
            continue;
        if (sigaction(sig, &dfl, NULL) < 0 && errno != EINVAL)
            fail(error_fd, SBX_STAGE_SIGNALS, errno, "sigaction", NULL);
    }
    sigemptyset(&none);
    CHECK(sigprocmask(SIG_SETMASK, &none, NULL) == 0, SBX_STAGE_SIGNALS, "sigprocmask", NULL);
}

static void loopback_up(int error_fd)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0, SBX_STAGE_LOOPBACK, "socket", NULL);
    memset(&ifr, 0, sizeof ifr);
    sbx_str_copy(ifr.ifr_name, sizeof ifr.ifr_name, 0, "lo");
    CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0, SBX_STAGE_LOOPBACK, "SIOCGIFFLAGS", "lo");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    CHECK(ioctl(s, SIOCSIFFLAGS, &ifr) == 0, SBX_STAGE_LOOPBACK, "SIOCSIFFLAGS", "lo");
    close(s);
}

/* Child fd i <- parent fd fd_map[i]; everything else closes at exec. */
static int arrange_fds(const int *fd_map, int n, int error_fd)
{
    int i;
    if (n > SBX_MAX_FDS) {
        errno = E2BIG;
        fail(error_fd, SBX_STAGE_FDS, E2BIG, "too many fds", NULL);
    }
    /* Stage every source above the target range first, so no dup2 clobbers a
     * source that a later target still needs (or the error pipe). */
    if (error_fd < n) {
        int moved = fcntl(error_fd, F_DUPFD_CLOEXEC, n);
        CHECK(moved >= 0, SBX_STAGE_FDS, "dup error pipe", NULL); /* still reported on the old fd */
        error_fd = moved;
    }
    for (i = 0; i < n; i++) {
        staged_fds[i] = fcntl(fd_map[i], F_DUPFD_CLOEXEC, n);
        CHECK(staged_fds[i] >= 0, SBX_STAGE_FDS, "dup", NULL);
    }
    for (i = 0; i < n; i++)
        CHECK(dup3(staged_fds[i], i, 0) == i, SBX_STAGE_FDS, "dup3", NULL);
    /* Inherited descriptors (the supervisor's sockets, other sandboxes' pipes,
     * anything a caller leaked without O_CLOEXEC) must never reach the payload. */
    CHECK(syscall(SYS_close_range, (unsigned)n, ~0U, CLOSE_RANGE_CLOEXEC) == 0,
          SBX_STAGE_FDS, "close_range", NULL);
    return error_fd;
}

static void drop_privileges(const struct sbx_plan *p, int error_fd)
{
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[2];
    int cap;
    /* Lock the securebits first (needs CAP_SETPCAP): no root magic on exec, no
     * keep-caps across setuid, no ambient raise, and none of it undoable. */
    CHECK(prctl(PR_SET_SECUREBITS,
                SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
                SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0) == 0,
          SBX_STAGE_SECUREBITS, "prctl(PR_SET_SECUREBITS)", NULL);
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0,
          SBX_STAGE_AMBIENT, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", NULL);
    /* Empty the bounding set while CAP_SETPCAP is still held. */
    for (cap = 0; cap <= p->last_cap; cap++)
        CHECK(prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0, SBX_STAGE_CAPBSET, "prctl(PR_CAPBSET_DROP)", NULL);
    if (p->set_groups)
        CHECK(setgroups(0, NULL) == 0, SBX_STAGE_SETGROUPS, "setgroups", NULL);
    CHECK(setresgid(p->gid, p->gid, p->gid) == 0, SBX_STAGE_SETGID, "setresgid", NULL);
    CHECK(setresuid(p->uid, p->uid, p->uid) == 0, SBX_STAGE_SETUID, "setresuid", NULL);
    /* setuid's fixup may keep capabilities when the old uid was not root in this
     * user namespace, so clear every set explicitly. */
    memset(&hdr, 0, sizeof hdr);
    memset(data, 0, sizeof data);
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    CHECK(syscall(SYS_capset, &hdr, data) == 0, SBX_STAGE_CAPSET, "capset", NULL);
}

static void load_seccomp(const struct sbx_plan *p, int error_fd)
{
    struct sock_fprog prog;
    unsigned long n = p->bpf_len / sizeof(struct sock_filter);
    if (n == 0 || n > SBX_MAX_BPF_INSNS || p->bpf_len % sizeof(struct sock_filter)) {
        errno = EINVAL;
        fail(error_fd, SBX_STAGE_SECCOMP, EINVAL, "bad BPF program length", NULL);
    }
    memcpy(bpf_copy, p->bpf, p->bpf_len); /* alignment of the caller's buffer is unknown */
    prog.len = (unsigned short)n;
    prog.filter = bpf_copy;
    CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0,
          SBX_STAGE_SECCOMP, "seccomp(SECCOMP_SET_MODE_FILTER)", NULL);
}

/* Try the PATH candidates in order like execvp; report the most telling errno. */
static void __attribute__((noreturn))
exec_command(const struct sbx_plan *p, const struct launch_params *lp, int error_fd)
{
    int i, err = ENOENT;
    for (i = 0; i < lp->n_exec_paths; i++) {
        execve(lp->exec_paths[i], (char *const *)lp->argv, (char *const *)p->envp);
        if (errno != ENOENT && errno != ENOTDIR)
            err = errno;
    }
    fail(error_fd, SBX_STAGE_EXEC, err, "execve", lp->argv[0]);
}

/* Passed on to the command by init (csrc/sandbox_init.c, which has the same
 * list): pid 1 drops signals it has no handler for. */
static const int forwarded_signals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};

/* Decimal text of a non-negative int, or "-1", into buf (>= 12 bytes). */
static const char *int_text(char *buf, int value)
{
    char tmp[12];
    int n = 0, at = 0;
    if (value < 0) {
        buf[0] = '-';
        buf[1] = '1';
        buf[2] = '\0';
        return buf;
    }
    do {
        tmp[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    while (n)
        buf[at++] = tmp[--n];
    buf[at] = '\0';
    return buf;
}

/* With `init`: the command runs as our vfork child, pid 2 (vfork: no copy of
 * the page tables of a large supervisor), and we then exec the init program
 * (csrc/sandbox_init.c) from its descriptor, so that pid 1 keeps none of the
 * supervisor's memory.  Everything here is async-signal-safe and allocates
 * nothing.  return_in_child (a zygote, csrc/zygote.c): the command is a fork
 * child that returns from here into the zygote's warm interpreter instead of
 * exec'ing (vfork cannot: its parent would wait for an exec that never comes);
 * pid 1 still execs the init program, so it keeps none of the zygote's memory. */
void sbx_child_run_init(const struct sbx_plan *p, const struct launch_params *lp, int error_fd, int status_fd,
                        int init_fd, int return_in_child)
{
    static char pid_arg[12], fd_arg[12];
    static const char *init_argv[4], *init_envp[1];
    sigset_t waited, none;
    pid_t command;
    int i, keep[3];

    if (init_fd < 0) {
        errno = EBADF;
        fail(error_fd, SBX_STAGE_INIT_EXEC, EBADF, "no descriptor of the init program", NULL);
    }
    sigemptyset(&none);
    sigemptyset(&waited);
    sigaddset(&waited, SIGCHLD);
    for (i = 0; i < (int)(sizeof forwarded_signals / sizeof forwarded_signals[0]); i++)
        sigaddset(&waited, forwarded_signals[i]);
    /* Blocked before the vfork, and kept blocked through the exec (the mask and
     * pending signals survive it): a pid 1 drops an unhandled signal at once, a
     * blocked one waits for the init program's rt_sigtimedwait (a SIGCHLD too). */
    CHECK(sigprocmask(SIG_BLOCK, &waited, NULL) == 0, SBX_STAGE_SIGNALS, "sigprocmask", "(init)");
    command = return_in_child ? fork() : vfork();
    if (command == 0 && return_in_child) {
        /* The zygote's command: nothing blocked, as after an exec (the caller
         * closes its descriptors and returns into Python). */
        CHECK(sigprocmask(SIG_SETMASK, &none, NULL) == 0, SBX_STAGE_SIGNALS, "sigprocmask", NULL);
        return;
    }
    if (command == 0) {
        /* The command starts with nothing blocked, as it would without init.
         * Shared memory until exec: only syscalls and our own stack from here.
         * The init program's descriptor and the status socket are close-on-exec. */
        CHECK(sigprocmask(SIG_SETMASK, &none, NULL) == 0, SBX_STAGE_SIGNALS, "sigprocmask", NULL);
        exec_command(p, lp, error_fd);
    }
    CHECK(command > 0, SBX_STAGE_CLONE, return_in_child ? "fork" : "vfork", "(init)");
    /* vfork returned: the command exec'd, or wrote its error record and exited
     * (init reaps it and exits too).  Keep only what the exec needs: the init
     * program, the status socket (no longer close-on-exec: init inherits it;
     * the command has its own descriptor table and never had it) and the error
     * pipe (close-on-exec: its EOF tells the parent both execs happened).  The
     * command's stdio and pass_fds go: callers rely on EOF when it dies. */
    keep[0] = error_fd;
    keep[1] = status_fd;
    keep[2] = init_fd;
    close_all_but(0, keep, 3, error_fd);
    if (status_fd >= 0)
        CHECK(fcntl(status_fd, F_SETFD, 0) == 0, SBX_STAGE_FDS, "fcntl(F_SETFD) status socket", "(init)");
    init_argv[0] = "sandbox-init";
    init_argv[1] = int_text(pid_arg, command);
    init_argv[2] = int_text(fd_arg, status_fd);
    init_argv[3] = NULL;
    init_envp[0] = NULL;
    execveat(init_fd, "", (char *const *)init_argv, (char *const *)init_envp, AT_EMPTY_PATH);
    /* Fail closed: our exit kills the command (already running) with the
     * namespace, and the parent reports this record. */
    fail(error_fd, SBX_STAGE_INIT_EXEC, errno, "execveat", "(the init program)");
}

/* Steps 1-13: everything between the clone and the exec, in order.  Shared by
 * the supervisor's clones (child_main) and a zygote's (csrc/zygote.c), which
 * differ only in what follows: exec, or a return into a warm interpreter. */
void sbx_child_setup(const struct sbx_plan *p, struct sbx_child *st, int sync_fd)
{
    int i, error_fd = st->error_fd, control_fd = st->control_fd, init_fd = p->init ? p->init_fd : -1;
    char c;
    struct launch_params lp;

    /* 1. Default signal dispositions: nothing of the supervisor's carries over
     *    (a zygote's child keeps what a fresh interpreter would have). */
    reset_signals(error_fd, st->keep_interpreter_signals);
    /* 2. Die with the supervisor (SIGKILL); the sync read below closes the race
     *    where it died before this prctl. */
    CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0, SBX_STAGE_DEATHSIG, "prctl(PR_SET_PDEATHSIG)", NULL);
    /* 3. Wait until the parent wrote uid/gid maps: files created below need a
     *    mapped fsuid.  EOF means the parent died. */
    if (p->wait_for_parent) {
        ssize_t n;
        do {
            n = read(sync_fd, &c, 1);
        } while (n < 0 && errno == EINTR);
        if (n != 1)
            fail(error_fd, SBX_STAGE_SYNC, n < 0 ? errno : EPIPE, "parent sync", NULL);
    }
    close(sync_fd);
    /* 4. Join the cgroups (v1) before allocating anything in the sandbox. */
    for (i = 0; i < p->n_cgroup_procs_fds; i++)
        CHECK(write(p->cgroup_procs_fds[i], "0", 1) == 1, SBX_STAGE_CGROUP_JOIN, "write cgroup.procs", NULL);
    /* 5. New cgroup namespace only now, so its root is the sandbox's own cgroup. */
    if (p->cgroup_ns)
        CHECK(unshare(CLONE_NEWCGROUP) == 0, SBX_STAGE_CGROUP_NS, "unshare(CLONE_NEWCGROUP)", NULL);
    /* 6. Private propagation before any mount, so nothing leaks to the host. */
    if (p->clone_flags & CLONE_NEWNS)
        CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0,
              SBX_STAGE_MOUNT_PRIVATE, "mount(MS_REC|MS_PRIVATE)", "/");
    /* 6b. Open the bind sources while still the host's root: the host path may
     *     cross directories only root can search (e.g. /root/.pyenv). */
    if (p->new_root)
        sbx_child_open_bind_sources(p, error_fd);
    /* 6c. In a user namespace that maps only the sandbox uid, becoming it now
     *     keeps every capability (we were never this namespace's root, so no
     *     setuid fixup) and gives the files created below a mapped owner. */
    if (p->early_setid) {
        if (p->set_groups)
            CHECK(setgroups(0, NULL) == 0, SBX_STAGE_SETGROUPS, "setgroups", NULL);
        CHECK(setresgid(p->gid, p->gid, p->gid) == 0, SBX_STAGE_SETGID, "setresgid", NULL);
        CHECK(setresuid(p->uid, p->uid, p->uid) == 0, SBX_STAGE_SETUID, "setresuid", NULL);
        /* A credential change clears the parent-death signal: arm it again. */
        CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0, SBX_STAGE_DEATHSIG, "prctl(PR_SET_PDEATHSIG)", NULL);
    }
    /* 7. Build the new root and pivot into it (needs CAP_SYS_ADMIN: before the drop). */
    if (p->new_root)
        sbx_child_build_root(p, error_fd);
    /* 8. UTS and loopback need capabilities in the new namespaces. */
    if (p->hostname)
        CHECK(sethostname(p->hostname, strlen(p->hostname)) == 0, SBX_STAGE_HOSTNAME, "sethostname", p->hostname);
    if (p->loopback_up)
        loopback_up(error_fd);
    /* 9. New session: no controlling terminal, so no TIOCSTI into the caller's tty. */
    if (p->new_session)
        CHECK(setsid() >= 0, SBX_STAGE_SETSID, "setsid", NULL);
    /* 9b. A pre-made sandbox stops here until it is handed a command: it keeps
     *     only its error pipe and control socket meanwhile. */
    lp.argv = p->argv;
    lp.exec_paths = p->exec_paths;
    lp.n_exec_paths = p->n_exec_paths;
    lp.fd_map = p->fd_map;
    lp.n_fd_map = p->n_fd_map;
    if (p->deferred_launch) {
        int keep[3];
        keep[0] = error_fd;
        keep[1] = control_fd;
        keep[2] = init_fd;
        close_all_but(3, keep, 3, error_fd);
        receive_launch(control_fd, error_fd, &lp);
        /* 9c. init keeps the control socket: it sends the command's wait status there. */
        if (!p->init) {
            close(control_fd);
            control_fd = -1;
        }
    }
    /* 10. Descriptors before rlimits: a low RLIMIT_NOFILE must not break the shuffle.
     *     init's status socket and program move above the new fds first, out of
     *     the dup3s' way (the moved copies are close-on-exec, as the originals). */
    if (control_fd >= 0 && control_fd < lp.n_fd_map) {
        control_fd = fcntl(control_fd, F_DUPFD_CLOEXEC, lp.n_fd_map);
        CHECK(control_fd >= 0, SBX_STAGE_FDS, "dup control socket", NULL);
    }
    if (init_fd >= 0 && init_fd < lp.n_fd_map) {
        init_fd = fcntl(init_fd, F_DUPFD_CLOEXEC, lp.n_fd_map);
        CHECK(init_fd >= 0, SBX_STAGE_FDS, "dup init program", NULL);
    }
    error_fd = arrange_fds(lp.fd_map, lp.n_fd_map, error_fd);
    for (i = 0; i < p->n_rlimits; i++) {
        struct rlimit rl;
        rl.rlim_cur = p->rlimits[i].soft;
        rl.rlim_max = p->rlimits[i].hard;
        CHECK(setrlimit(p->rlimits[i].resource, &rl) == 0, SBX_STAGE_RLIMIT, "setrlimit", NULL);
    }
    /* 11. Drop every capability and become the unprivileged uid/gid. */
    if (p->drop_privileges) {
        drop_privileges(p, error_fd);
        /* setresuid/setresgid cleared the parent-death signal: arm it again. */
        CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0, SBX_STAGE_DEATHSIG, "prctl(PR_SET_PDEATHSIG)", NULL);
    }
    /* 12. no_new_privs: exec can never gain privileges (and seccomp needs it). */
    if (p->no_new_privs)
        CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, SBX_STAGE_NO_NEW_PRIVS, "prctl(PR_SET_NO_NEW_PRIVS)", NULL);
    if (p->cwd)
        CHECK(chdir(p->cwd) == 0, SBX_STAGE_CHDIR, "chdir", p->cwd);
    /* 12b. With init, we are still a copy of the supervisor's memory after the
     *      command starts, until we exec the init program: not dumpable, so the
     *      command (same uid) can neither ptrace us nor read /proc/1/mem or
     *      /proc/1/environ meanwhile.  After the last credential change, which
     *      would reset it. */
    if (p->init)
        CHECK(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0, SBX_STAGE_NO_NEW_PRIVS, "prctl(PR_SET_DUMPABLE)", NULL);
    /* 13. seccomp last: everything above used syscalls the policy denies. */
    if (p->bpf)
        load_seccomp(p, error_fd);
    st->error_fd = error_fd;
    st->control_fd = control_fd;
    st->init_fd = init_fd;
    st->lp = lp;
}

void sbx_child_main(const struct sbx_plan *p, int error_fd, int sync_fd, int control_fd)
{
    struct sbx_child st;
    st.error_fd = error_fd;
    st.control_fd = control_fd;
    st.keep_interpreter_signals = 0;
    sbx_child_setup(p, &st, sync_fd);
    /* 14. exec, trying the PATH candidates in order like execvp.  With init,
     *     after seccomp so both processes are filtered: the command runs as a
     *     vfork child and we exec the init program as pid 1. */
    if (p->init)
        sbx_child_run_init(p, &st.lp, st.error_fd, st.control_fd, st.init_fd, 0);
    exec_command(p, &st.lp, st.error_fd);
}

void sbx_child_fail(int error_fd, int stage, int err, const char *what, const char *path)
{
    fail(error_fd, stage, err, what, path);
}

void sbx_child_close_all_but(unsigned int from, const int *keep, int n, int error_fd)
{
    close_all_but(from, keep, n, error_fd);
}
