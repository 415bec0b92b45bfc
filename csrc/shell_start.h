/*
 * shell_start.h: cloning a sandbox whose first act is to exec the shell
 * program (csrc/shell_start.c).  Internal to the C core, not part of the cffi
 * cdef; include after sandbox_core.h and plan_blob.h.
 */
#ifndef SBX_SHELL_START_H
#define SBX_SHELL_START_H
#include <stddef.h>

struct sbx_clone_args {   /* the kernel's struct clone_args */
    unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal;
    unsigned long long stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

/* What the child needs until the exec, copied where it can read it without
 * touching the supervisor's memory (the top of its own stack). */
struct sbx_shell_start {
    unsigned long long clone_flags;
    int last_cap;
    int error_fd, sync_fd, control_fd, plan_fd, init_fd, shell_fd;   /* -1: none */
    int n_cgroup_fds;
    int cgroup_fds[SBX_SHELL_MAX_CGROUP_FDS];
    int n_close;              /* the parent's own ends, closed first in the child */
    int close_fds[4];
};

struct sbx_stack {
    void *addr;
    size_t len;
};

/* clone3(args) a child that execs the shell program as `start` says.  On
 * x86_64 the child shares our memory (CLONE_VM is added to args->flags) and
 * runs on a stack returned in *stack: release it (sbx_release_stack) once the
 * child has exec'd the shell or was reaped, never before.  Elsewhere a
 * fork-style clone, and *stack stays empty.  Returns the pid or -errno. */
long sbx_shell_clone(struct sbx_clone_args *args, const struct sbx_shell_start *start, struct sbx_stack *stack);

#endif
