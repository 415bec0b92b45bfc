/*
 * child_setup.h: the child-side setup of csrc/sandbox_core.c, shared with the
 * parent side (csrc/spawn.c), the shell program and the zygote (csrc/zygote.c).
 * Internal: not part of the cffi cdef.
 *
 * Both ways of making a sandbox -- clone3 from the supervisor and exec, or
 * clone3 from a zygote and return into its warm interpreter -- run the same
 * ordered setup, sbx_child_setup(); they differ only in the last step.
 */
#ifndef SBX_CHILD_SETUP_H
#define SBX_CHILD_SETUP_H
#include <stddef.h>

struct sbx_plan;

/* Limits both sides check (the plan's arrays, the launch message). */
#define SBX_MAX_OPS 512
#define SBX_MAX_FDS 256
#define SBX_MAX_LAUNCH 65536
#define SBX_MAX_ARGS 4096

/* What the command gets: from the plan, or from a launch message (deferred_launch). */
struct launch_params {
    const char *const *argv;
    const char *const *exec_paths;
    int n_exec_paths;
    const int *fd_map;
    int n_fd_map;
};

/* The descriptors a child carries through setup; they move (dup) on the way. */
struct sbx_child {
    int error_fd;     /* write end of the error pipe (close-on-exec) */
    int control_fd;   /* launch / init status socket, or -1 */
    int init_fd;      /* the init program (O_PATH), or -1 */
    int keep_interpreter_signals;   /* a zygote's child: SIGINT, SIGPIPE, SIGXFSZ stay as CPython set them */
    struct launch_params lp;
};

/* Steps 1-13 of the ordered setup (signals .. seccomp), everything but the
 * exec.  Never returns on failure: the failing step goes to the error pipe. */
void sbx_child_setup(const struct sbx_plan *p, struct sbx_child *st, int sync_fd);

/* With init: start the command as pid 2 and become the init program as pid 1.
 * return_in_child == 0: the command is a vfork child that execs (never returns).
 * return_in_child == 1: the command is a fork child that returns here (a
 * zygote's warm interpreter, csrc/zygote.c); pid 1 never returns. */
void sbx_child_run_init(const struct sbx_plan *p, const struct launch_params *lp, int error_fd,
                        int status_fd, int init_fd, int return_in_child);

/* The whole child of a supervisor's clone: the setup, then the exec (of the
 * command, or of the init program with the command as its child). */
void sbx_child_main(const struct sbx_plan *p, int error_fd, int sync_fd, int control_fd)
    __attribute__((noreturn));

/* csrc/rootfs.c: open every bind source while the host's tree is visible
 * (step 6b), then build the new root and pivot into it (step 7). */
void sbx_child_open_bind_sources(const struct sbx_plan *p, int error_fd);
void sbx_child_build_root(const struct sbx_plan *p, int error_fd);

/* Copy src (NULL: nothing) into dst at `at`, truncating to cap - 1 bytes and
 * NUL-terminating; returns the new end.  No allocation (child side). */
size_t sbx_str_copy(char *dst, size_t cap, size_t at, const char *src);

/* Report (stage, errno, detail) over error_fd and _exit(127). */
void sbx_child_fail(int error_fd, int stage, int err, const char *what, const char *path)
    __attribute__((noreturn));

/* Fail closed: unless cond holds, report the step (stage), errno and what
 * failed on what path, and die.  The caller has its `error_fd` in scope. */
#define CHECK(cond, stage, what, path) \
    do { if (!(cond)) sbx_child_fail(error_fd, (stage), errno, (what), (path)); } while (0)

/* Close every descriptor from `from` on except the (up to three) in keep[]. */
void sbx_child_close_all_but(unsigned int from, const int *keep, int n, int error_fd);

#endif
