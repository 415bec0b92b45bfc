/*
 * spawn.c: the parent's side of making a sandbox (csrc/sandbox_core.c is the
 * child's).  sbx_spawn clones -- into a network namespace to join, if the plan
 * says so -- with the packed plan ready in a pipe for the shell program;
 * sbx_launch hands a pre-made sandbox its command.  Runs in the supervisor: it
 * may allocate and block.
 */
#include "sbx_sys.h"
#include "sandbox_core.h"
#include "plan_blob.h"
#include "shell_start.h"
#include "child_setup.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>  /* abort: a thread stuck in a sandbox netns (leave_netns) */
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>

/* The packed plan for the shell, in a pipe: written whole before the clone
 * (so nobody waits on anybody), with the descriptor numbers the shell will
 * see.  Returns the read end (close-on-exec), or -errno. */
static int plan_pipe(const struct sbx_plan *plan)
{
    struct sbx_plan copy = *plan;
    int fds[2], cg[SBX_SHELL_MAX_CGROUP_FDS], i, err;
    size_t len, done = 0;
    char *blob;
    ssize_t w;

    if (plan->n_cgroup_procs_fds < 0 || plan->n_cgroup_procs_fds > SBX_SHELL_MAX_CGROUP_FDS)
        return -E2BIG;
    for (i = 0; i < plan->n_cgroup_procs_fds; i++)
        cg[i] = SBX_SHELL_FD_CGROUP + i;
    copy.cgroup_procs_fds = plan->n_cgroup_procs_fds ? cg : NULL;
    copy.init_fd = plan->init ? SBX_SHELL_FD_INIT : -1;
    copy.wait_for_parent = 0;      /* the clone waited before the exec */
    copy.use_shell = 0;
    copy.shell_fd = -1;
    copy.cgroup_fd = -1;           /* used by clone3 only */
    len = sbx_plan_pack(&copy, NULL, 0);
    if (len > SBX_PLAN_BLOB_MAX)
        return -E2BIG;
    blob = malloc(len);
    if (!blob)
        return -ENOMEM;
    sbx_plan_pack(&copy, blob, len);
    if (pipe2(fds, O_CLOEXEC) < 0) {
        err = errno;
        free(blob);
        return -err;
    }
    /* A plan is a few KiB; make room when one is larger than the default. */
    if (len > 65536 && fcntl(fds[1], F_SETPIPE_SZ, (int)len) < 0) {
        err = errno;
        goto fail;
    }
    while (done < len) {
        w = write(fds[1], blob + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = w < 0 ? errno : EIO;
            goto fail;
        }
        done += (size_t)w;
    }
    free(blob);
    close(fds[1]);
    return fds[0];
fail:
    free(blob);
    close(fds[0]);
    close(fds[1]);
    return -err;
}

/* What the clone needs until it execs the shell (csrc/shell_start.c). */
static void shell_start_of(const struct sbx_plan *plan, struct sbx_shell_start *start, const int *error_pipe,
                           const int *sync_pipe, const int *control, int plan_fd, int home)
{
    int i;
    memset(start, 0, sizeof *start);
    start->clone_flags = plan->clone_flags;
    start->last_cap = plan->last_cap;
    start->error_fd = error_pipe[1];
    start->sync_fd = sync_pipe[0];
    start->control_fd = control[1];
    start->plan_fd = plan_fd;
    start->init_fd = plan->init ? plan->init_fd : -1;
    start->shell_fd = plan->shell_fd;
    start->n_cgroup_fds = plan->n_cgroup_procs_fds;   /* <= SBX_SHELL_MAX_CGROUP_FDS: plan_pipe checked */
    for (i = 0; i < plan->n_cgroup_procs_fds; i++)
        start->cgroup_fds[i] = plan->cgroup_procs_fds[i];
    start->close_fds[start->n_close++] = error_pipe[0];
    start->close_fds[start->n_close++] = sync_pipe[1];
    if (control[0] >= 0)
        start->close_fds[start->n_close++] = control[0];
    if (home >= 0)
        start->close_fds[start->n_close++] = home;
}

/* One sbx_spawn at a time per process.  Between its pipe2() and the close of
 * the child's ends, those ends are open in the supervisor; a sandbox cloned
 * by another thread in that window would hold a copy -- of the error pipe's
 * write end, for one, and the launcher would then wait for an end of file
 * that only comes when that other sandbox closes it. */
static pthread_mutex_t spawn_lock = PTHREAD_MUTEX_INITIALIZER;

static int spawn_locked(const struct sbx_plan *plan, struct sbx_spawn *out);

int sbx_spawn(const struct sbx_plan *plan, struct sbx_spawn *out)
{
    int rc;
    pthread_mutex_lock(&spawn_lock);
    rc = spawn_locked(plan, out);
    pthread_mutex_unlock(&spawn_lock);
    return rc;
}

/* Joining a network namespace (egress, netns modes).  The child cannot do it:
 * after CLONE_NEWUSER its capabilities count only in its new user namespace,
 * and setns(CLONE_NEWNET) needs CAP_SYS_ADMIN over the namespace's owner (the
 * host's user namespace).  So the calling thread enters the namespace, clones
 * without CLONE_NEWNET (a child starts in its parent thread's namespace) and
 * goes back.  setns(CLONE_NEWNET) is per thread, and sbx_spawn is serialized,
 * so no other thread of the supervisor ever runs in there. */
static int enter_netns(const struct sbx_plan *plan, int *home)
{
    int err;
    *home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC); /* thread-self: threads differ */
    if (*home < 0)
        return -errno;
    if (setns(plan->netns_fd, CLONE_NEWNET) < 0) {
        err = errno;
        close(*home);
        *home = -1;
        return -err;
    }
    return 0;
}

static void leave_netns(int home)
{
    /* A thread left in a sandbox's namespace would make every later socket of
     * the supervisor (a listener, a connection) live there, reachable by the
     * sandbox and cut off from where it should be.  No return code makes that
     * safe to ignore: end the process, loudly (as netns_socket.c does). */
    if (setns(home, CLONE_NEWNET) < 0)
        abort();
    close(home);
}

static int spawn_locked(const struct sbx_plan *plan, struct sbx_spawn *out)
{
    struct sbx_clone_args args;
    int error_pipe[2], sync_pipe[2], control[2] = {-1, -1}, pidfd = -1, saved, home = -1, plan_fd = -1;
    long pid;
    struct sbx_shell_start start;
    struct sbx_stack stack = {NULL, 0};

    out->stage = SBX_STAGE_CLONE;
    if (plan->n_ops > SBX_MAX_OPS || plan->n_fd_map > SBX_MAX_FDS)
        return -E2BIG;
    if (plan->use_shell && !plan->wait_for_parent)
        return -EINVAL;  /* the clone must wait for its id maps before it execs the shell */
    if (plan->join_netns && (plan->clone_flags & CLONE_NEWNET))
        return -EINVAL;  /* a plan either joins a namespace or makes one */
    if (pipe2(error_pipe, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(sync_pipe, O_CLOEXEC) < 0) {
        saved = errno;
        close(error_pipe[0]);
        close(error_pipe[1]);
        return -saved;
    }
    if (plan->deferred_launch && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, control) < 0) {
        saved = errno;
        close(error_pipe[0]);
        close(error_pipe[1]);
        close(sync_pipe[0]);
        close(sync_pipe[1]);
        return -saved;
    }
    if (plan->use_shell && (plan_fd = plan_pipe(plan)) < 0) {
        saved = -plan_fd;
        close(error_pipe[0]);
        close(error_pipe[1]);
        close(sync_pipe[0]);
        close(sync_pipe[1]);
        if (control[0] >= 0) {
            close(control[0]);
            close(control[1]);
        }
        return -saved;
    }
    memset(&args, 0, sizeof args);
    args.flags = plan->clone_flags | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    if (plan->cgroup_fd >= 0) {
        /* cgroup v2: born inside its cgroup, no migration on the spawn path. */
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)plan->cgroup_fd;
    }
    if (plan->join_netns && (saved = enter_netns(plan, &home)) < 0) {
        out->stage = SBX_STAGE_NETNS_JOIN;  /* fail closed: never clone into the wrong namespace */
        errno = -saved;
        pid = -1;
    } else if (plan_fd >= 0) {
        shell_start_of(plan, &start, error_pipe, sync_pipe, control, plan_fd, home);
        pid = sbx_shell_clone(&args, &start, &stack);
        if (pid < 0) {
            errno = (int)-pid;
            pid = -1;
        }
    } else {
        pid = syscall(SYS_clone3, &args, sizeof args);
    }
    if (pid == 0) {
        if (home >= 0)
            close(home);
        close(error_pipe[0]);
        close(sync_pipe[1]);
        if (control[0] >= 0)
            close(control[0]);
        sbx_child_main(plan, error_pipe[1], sync_pipe[0], control[1]);
    }
    saved = errno;
    if (plan_fd >= 0)
        close(plan_fd);
    if (home >= 0)
        leave_netns(home);
    close(error_pipe[1]);
    close(sync_pipe[0]);
    if (control[1] >= 0)
        close(control[1]);
    if (pid < 0) {
        close(error_pipe[0]);
        close(sync_pipe[1]);
        if (control[0] >= 0)
            close(control[0]);
        return -saved;
    }
    out->stack_addr = (unsigned long)(uintptr_t)stack.addr;
    out->stack_len = (unsigned long)stack.len;
    out->control_fd = control[0];
    out->pid = (int)pid;
    out->pidfd = pidfd;
    out->error_fd = error_pipe[0];
    out->sync_fd = sync_pipe[1];
    return 0;
}

int sbx_last_cap(void)
{
    int cap;
    /* Probe the bounding set: PR_CAPBSET_READ fails with EINVAL past the last cap. */
    for (cap = 0; cap < 64; cap++)
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
            return cap - 1;
    return 63;
}

int sbx_launch(int control_fd, const char *const *argv, int n_argv, const char *const *paths, int n_paths,
               const int *fds, int n_fds)
{
    static __thread char strings[SBX_MAX_LAUNCH];
    char cbuf[CMSG_SPACE(sizeof(int) * SBX_MAX_FDS)];
    struct sbx_launch hdr;
    struct iovec iov[2];
    struct msghdr msg;
    struct cmsghdr *cmsg;
    size_t len = 0, n;
    int i;

    if (n_fds > SBX_MAX_FDS || n_fds < 0 || n_argv < 1 || n_argv + n_paths + 2 > SBX_MAX_ARGS)
        return -E2BIG;
    for (i = 0; i < n_argv + n_paths; i++) {
        const char *str = i < n_argv ? argv[i] : paths[i - n_argv];
        n = strlen(str) + 1;
        if (len + n >= sizeof strings)
            return -E2BIG;
        memcpy(strings + len, str, n);
        len += n;
    }
    hdr.n_argv = (unsigned)n_argv;
    hdr.n_paths = (unsigned)n_paths;
    hdr.strings_len = (unsigned)len;
    memset(&msg, 0, sizeof msg);
    iov[0].iov_base = &hdr;
    iov[0].iov_len = sizeof hdr;
    iov[1].iov_base = strings;
    iov[1].iov_len = len;
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    if (n_fds > 0) {
        memset(cbuf, 0, sizeof cbuf);
        msg.msg_control = cbuf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds);
        cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)n_fds);
    }
    if (sendmsg(control_fd, &msg, MSG_NOSIGNAL) < 0)
        return -errno;
    return 0;
}
