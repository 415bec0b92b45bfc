/*
 * zygote.c: a sandbox forked from a warm interpreter (sandbox/zygote/).
 *
 * A zygote is a Python process that imported a runtime once and then only
 * forks.  sbx_zygote_fork() clone3()s it WITHOUT CLONE_VM -- fork semantics:
 * the child keeps the zygote's imported modules copy-on-write -- with every
 * namespace of the plan, and the child runs the same ordered setup as any
 * sandbox (sbx_child_setup, csrc/sandbox_core.c).  Only the last step differs:
 * with init, pid 1 forks the command (pid 2) and execs the init program as
 * usual, and pid 2 returns 0 from here into Python instead of exec'ing.
 *
 * What the zygote never holds: the plan.  It travels packed (plan_blob.h) in a
 * sealed memfd that only the child maps, after the clone, so one function's
 * environment variables (credentials) never enter the zygote's heap, whose
 * copy every later environment -- of any function -- would inherit.  argv and
 * the stdio/channel descriptors come over the launch socket straight from the
 * supervisor (deferred_launch), as for a pre-made sandbox.
 *
 * Whose child: CLONE_PARENT makes the environment a child of the zygote's
 * parent, the supervisor (its clone thread), not of the zygote.  So the
 * supervisor reaps it, its PR_SET_PDEATHSIG fires when the supervisor's
 * thread dies, and a zygote that dies takes no environment with it.
 */
#include "sbx_sys.h"
#include "sandbox_core.h"
#include "child_setup.h"
#include "plan_blob.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#define ZYGOTE_MAX_PROCS_FDS 16
#define ZYGOTE_NS_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
                         CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWTIME)

struct zygote_clone_args {   /* the kernel's struct clone_args */
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal;
    uint64_t stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

/* The environment's argv and envp, for Python after the return (pid 2 only). */
static const char *const *child_argv;
static const char *const *child_envp;
static int child_procs_fds[ZYGOTE_MAX_PROCS_FDS];

long sbx_zygote_pack_plan(const struct sbx_plan *plan, char *buf, unsigned long cap)
{
    if (plan->join_netns)
        return -EOPNOTSUPP;  /* needs a setns by the cloning thread, with host capabilities */
    return (long)sbx_plan_pack(plan, buf, cap);
}

/* The child's packed plan, mapped until the runtime took what it needs
 * (sbx_zygote_release_plan): its pages are the child's own once unpacked. */
static void *child_blob;
static size_t child_blob_len;

/* In the new child: map and check the plan, run the setup, become pid 2. */
static void zygote_child(const struct sbx_zygote_fork_args *a, int error_fd, int sync_fd, int control_fd)
{
    struct sbx_child st;
    struct sbx_plan *p;
    void *blob;
    int keep[1];

    /* MAP_PRIVATE: unpacking rewrites the offsets in place, in our own copy. */
    blob = mmap(NULL, a->plan_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, a->plan_fd, 0);
    if (blob == MAP_FAILED)
        sbx_child_fail(error_fd, SBX_STAGE_PLAN, errno, "mmap", "(the packed plan)");
    child_blob = blob;
    child_blob_len = a->plan_len;
    close(a->plan_fd);
    p = sbx_plan_unpack(blob, a->plan_len);
    if (!p)
        sbx_child_fail(error_fd, SBX_STAGE_PLAN, EINVAL, "malformed packed plan", NULL);
    /* The request's clone flags made our namespaces: they must be the plan's. */
    if (p->clone_flags != a->clone_flags || !p->init || p->join_netns)
        sbx_child_fail(error_fd, SBX_STAGE_PLAN, EINVAL, "packed plan does not match the fork request", NULL);
    /* Per-environment values: the zygote's descriptor numbers. */
    p->cgroup_procs_fds = child_procs_fds;
    p->n_cgroup_procs_fds = a->n_cgroup_procs_fds;
    p->cgroup_fd = -1;           /* used by the clone (CLONE_INTO_CGROUP), not by the child */
    p->init_fd = a->init_fd;
    p->wait_for_parent = 1;      /* the supervisor writes the id maps */
    p->deferred_launch = 1;      /* argv and fds come from the supervisor, not through us */

    st.error_fd = error_fd;
    st.control_fd = control_fd;
    st.keep_interpreter_signals = 1;   /* the zygote's are a fresh interpreter's (server.py checks) */
    sbx_child_setup(p, &st, sync_fd);
    sbx_child_run_init(p, &st.lp, st.error_fd, st.control_fd, st.init_fd, 1);

    /* pid 2, set up, seccomp on.  An exec would have made us dumpable again
     * (pid 1 turned it off while holding the zygote's memory): so must we, or
     * /proc/self would belong to the overflow uid. */
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
        sbx_child_fail(st.error_fd, SBX_STAGE_NO_NEW_PRIVS, errno, "prctl(PR_SET_DUMPABLE)", NULL);
    /* Keep only the command's descriptors (an exec would close the
     * close-on-exec rest): the zygote's socket, init's status socket and the
     * init program go.  The error pipe goes last: its end of file is the
     * supervisor's "it started". */
    keep[0] = st.error_fd;
    sbx_child_close_all_but((unsigned int)st.lp.n_fd_map, keep, 1, st.error_fd);
    child_argv = st.lp.argv;
    child_envp = p->envp;
    close(st.error_fd);
}

int sbx_zygote_fork(const struct sbx_zygote_fork_args *a, struct sbx_spawn *out)
{
    struct zygote_clone_args args;
    int error_pipe[2], sync_pipe[2], control[2], pidfd = -1, saved, i;
    long pid;

    if ((a->clone_flags & ~(unsigned long long)ZYGOTE_NS_FLAGS) || !(a->clone_flags & CLONE_NEWPID) ||
        a->n_cgroup_procs_fds < 0 || a->n_cgroup_procs_fds > ZYGOTE_MAX_PROCS_FDS || a->plan_fd < 0 ||
        a->plan_len == 0 || a->plan_len > SBX_PLAN_BLOB_MAX || a->init_fd < 0)
        return -EINVAL;
    for (i = 0; i < a->n_cgroup_procs_fds; i++)
        child_procs_fds[i] = a->cgroup_procs_fds[i];
    if (pipe2(error_pipe, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(sync_pipe, O_CLOEXEC) < 0)
        goto fail_sync;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, control) < 0)
        goto fail_control;
    memset(&args, 0, sizeof args);
    /* CLONE_PARENT: the supervisor's child, not ours (see the top).  exit_signal
     * must then be 0: the kernel uses ours (SIGCHLD). */
    args.flags = a->clone_flags | CLONE_PIDFD | CLONE_PARENT;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    if (a->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;   /* v2: born in its own cgroup, never charged to ours */
        args.cgroup = (uint64_t)a->cgroup_fd;
    }
    pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        close(error_pipe[0]);
        close(sync_pipe[1]);
        close(control[0]);
        zygote_child(a, error_pipe[1], sync_pipe[0], control[1]);
        return 0;
    }
    saved = errno;
    close(error_pipe[1]);
    close(sync_pipe[0]);
    close(control[1]);
    if (pid < 0) {
        close(error_pipe[0]);
        close(sync_pipe[1]);
        close(control[0]);
        return -saved;
    }
    out->pid = (int)pid;
    out->pidfd = pidfd;
    out->error_fd = error_pipe[0];
    out->sync_fd = sync_pipe[1];
    out->control_fd = control[0];
    return (int)pid;

fail_control:
    saved = errno;
    close(sync_pipe[0]);
    close(sync_pipe[1]);
    errno = saved;
fail_sync:
    saved = errno;
    close(error_pipe[0]);
    close(error_pipe[1]);
    return -saved;
}

int sbx_zygote_release_plan(void)
{
    void *blob = child_blob;
    child_blob = NULL;
    child_envp = NULL;   /* it pointed into the blob */
    if (!blob)
        return 0;
    return munmap(blob, child_blob_len) < 0 ? -errno : 0;
}

const char *const *sbx_zygote_argv(void)
{
    return child_argv;
}

const char *const *sbx_zygote_envp(void)
{
    return child_envp;
}

int sbx_zygote_harden(int expected_parent, int last_cap)
{
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[2];
    int cap;
    /* Die with the supervisor; and if it is already gone, do not start. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        return -errno;
    if (getppid() != expected_parent)
        return -ESRCH;
    /* The zygote needs no capability on the host: its clones create a user
     * namespace first, which owns every other new namespace, and get a full set
     * there.  It keeps uid 0 only for what the children open on the host as
     * that uid (bind sources under /root, the cgroup files).  Bounding set
     * first, while CAP_SETPCAP is still held. */
    for (cap = 0; cap <= last_cap; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return -errno;
    memset(&hdr, 0, sizeof hdr);
    memset(data, 0, sizeof data);
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    return 0;
}
