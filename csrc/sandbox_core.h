/*
 * sandbox_core.h: the contract between the Python planner and the C applier.
 *
 * Python builds a `struct sbx_plan` (flat arrays, pre-encoded strings) before the
 * clone; the C child walks it with async-signal-safe calls only and execs.  This
 * header doubles as the cffi cdef (csrc/build_core.py), so it must stay within
 * what cffi's parser accepts: no macros with bodies, no includes.
 */

/* Setup stages.  A failing child reports (stage, errno, detail); Python maps the
 * stage to a typed exception (sandbox/errors.py).  Keep in sync with STAGE_NAMES
 * there; the numbers are part of the child->parent protocol. */
enum sbx_stage {
    SBX_STAGE_NONE = 0,
    SBX_STAGE_CLONE = 1,          /* clone3 in the parent; the vfork of the command below init */
    SBX_STAGE_SYNC = 2,           /* waiting for the parent (uid maps written) */
    SBX_STAGE_SIGNALS = 3,        /* resetting signal dispositions */
    SBX_STAGE_DEATHSIG = 4,       /* PR_SET_PDEATHSIG */
    SBX_STAGE_CGROUP_JOIN = 5,    /* write 0 to cgroup.procs (v1) */
    SBX_STAGE_CGROUP_NS = 6,      /* unshare(CLONE_NEWCGROUP) after joining */
    SBX_STAGE_MOUNT_PRIVATE = 7,  /* make / rprivate */
    SBX_STAGE_BIND_SOURCE = 8,    /* open_tree of a bind source */
    SBX_STAGE_ROOT_TMPFS = 9,     /* mount the new root */
    SBX_STAGE_MKDIR = 10,
    SBX_STAGE_BIND = 11,          /* mount_setattr / move_mount of a bind */
    SBX_STAGE_MOUNT = 12,         /* mount(2) of proc/tmpfs */
    SBX_STAGE_SYMLINK = 13,
    SBX_STAGE_WRITE_FILE = 14,
    SBX_STAGE_READ_ONLY = 15,
    SBX_STAGE_PIVOT_ROOT = 16,
    SBX_STAGE_UMOUNT_OLD = 17,
    SBX_STAGE_HOSTNAME = 18,
    SBX_STAGE_LOOPBACK = 19,
    SBX_STAGE_SETSID = 20,
    SBX_STAGE_RLIMIT = 21,
    SBX_STAGE_FDS = 22,
    SBX_STAGE_SECUREBITS = 23,
    SBX_STAGE_CAPBSET = 24,
    SBX_STAGE_SETGROUPS = 25,
    SBX_STAGE_SETGID = 26,
    SBX_STAGE_SETUID = 27,
    SBX_STAGE_CAPSET = 28,
    SBX_STAGE_NO_NEW_PRIVS = 29,
    SBX_STAGE_CHDIR = 30,
    SBX_STAGE_SECCOMP = 31,
    SBX_STAGE_EXEC = 32,
    SBX_STAGE_AMBIENT = 33,
    SBX_STAGE_PLAN = 34,          /* the plan itself is malformed */
    SBX_STAGE_LAUNCH = 35,        /* receiving the launch message (pre-made sandbox) */
    SBX_STAGE_INIT_EXEC = 36,     /* exec of the init program (csrc/sandbox_init.c) as pid 1 */
    SBX_STAGE_NETNS_JOIN = 37,    /* parent: setns into plan->netns_fd around clone3 (egress, netns) */
    SBX_STAGE_SHELL_EXEC = 38     /* the clone's exec of the shell program (csrc/sandbox_shell.c) */
};

/* Mount-tree operations, executed in order relative to the new root. */
enum sbx_op_kind {
    SBX_OP_MKDIR = 1,       /* path, mode */
    SBX_OP_BIND = 2,        /* source (host path) -> path; attr_set; flags */
    SBX_OP_MOUNT = 3,       /* fstype, path, data, mount flags */
    SBX_OP_SYMLINK = 4,     /* source = link target, path = link */
    SBX_OP_WRITE_FILE = 5,  /* path, data (data_len bytes), mode */
    SBX_OP_BIND_SELF_RO = 6,/* path (inside the new root) re-bound onto itself read-only */
    SBX_OP_MASK = 7         /* bind the host /dev/null over path (optional if absent) */
};

/* sbx_op.flags */
enum sbx_op_flags {
    SBX_OPT_OPTIONAL = 1,   /* ENOENT on the target is not an error */
    SBX_OPT_RECURSIVE = 2,  /* bind with submounts (AT_RECURSIVE) */
    SBX_OPT_CREATE_FILE = 4 /* bind target is a file: create an empty file, not a dir */
};

struct sbx_op {
    int kind;
    int flags;
    const char *source;
    const char *path;
    const char *fstype;
    const char *data;
    unsigned long data_len;
    unsigned long mount_flags;   /* MS_* for SBX_OP_MOUNT */
    unsigned long long attr_set; /* MOUNT_ATTR_* for SBX_OP_BIND */
    unsigned int mode;
};

struct sbx_rlimit {
    int resource;
    unsigned long long soft;
    unsigned long long hard;
};

struct sbx_plan {
    /* clone */
    unsigned long long clone_flags;  /* CLONE_NEW* (never CLONE_NEWCGROUP: see cgroup_ns) */
    int cgroup_fd;                   /* v2: CLONE_INTO_CGROUP dir fd, or -1 */
    int wait_for_parent;             /* 1: block until the parent writes the sync byte */
    int deferred_launch;             /* 1: after the namespace/root setup, wait on the control
                                        socket for a launch message (argv, exec paths, fds):
                                        a pre-made sandbox.  0: argv/fd_map below are used. */

    /* cgroup (v1): fds of cgroup.procs files to write "0" into, before anything else */
    const int *cgroup_procs_fds;
    int n_cgroup_procs_fds;
    int cgroup_ns;                   /* unshare(CLONE_NEWCGROUP) after joining */

    /* filesystem */
    int new_root;                    /* 0: no pivot_root (mount ns only, caller opted out) */
    const char *staging_dir;         /* host dir the new root tmpfs is mounted on (in our ns) */
    const char *root_data;           /* tmpfs options for the root */
    const struct sbx_op *ops;
    int n_ops;
    const char *const *ro_paths;     /* mounts made read-only after all ops (e.g. ".", "dev") */
    int n_ro_paths;

    /* uts / net */
    const char *hostname;            /* NULL: leave as is */
    int loopback_up;
    int join_netns;                  /* 1: clone into the network namespace netns_fd (clone_flags
                                        without CLONE_NEWNET): the parent's thread setns()es there
                                        around clone3 and back.  A namespace owned by the host's
                                        user namespace is out of the child's reach otherwise. */
    int netns_fd;                    /* with join_netns: a network namespace descriptor */

    /* process */
    int new_session;
    const struct sbx_rlimit *rlimits;
    int n_rlimits;
    const int *fd_map;               /* child fd i <- parent fd fd_map[i], i in [0, n_fd_map) */
    int n_fd_map;
    int drop_privileges;             /* caps, securebits, uid/gid */
    unsigned int uid, gid;           /* as seen inside the sandbox */
    int set_groups;                  /* 1: setgroups(0, NULL) (needs setgroups "allow") */
    int early_setid;                 /* userns: become uid/gid right after the sync, keeping caps */
    int last_cap;                    /* highest capability number of this kernel */
    int no_new_privs;
    const char *cwd;
    int init;                        /* 1 (pid namespace only): run the command as a vfork child
                                        (pid 2), then become the init program (pid 1), which reaps
                                        every orphan, passes on termination signals and exits when
                                        the command does; the command's wait status goes to the
                                        parent over the control socket (deferred_launch) */
    int init_fd;                     /* with init: O_PATH|O_CLOEXEC descriptor of the init program,
                                        exec'd with execveat (a path would change meaning after
                                        pivot_root); -1 otherwise */
    int use_shell;                   /* 1: exec the shell program shell_fd (zeroed plans: 0, none) */
    int shell_fd;                    /* O_PATH|O_CLOEXEC descriptor of the shell program
                                        (csrc/sandbox_shell.c): the clone execs it as soon as
                                        the parent wrote its id maps, and it runs the setup
                                        below from a packed copy of this plan (plan_blob.h), so
                                        a pre-made sandbox holds no copy of the supervisor's
                                        memory (use_shell 0: the clone runs the setup itself) */

    /* seccomp: a ready BPF program (struct sock_filter[]), applied last before exec */
    const unsigned char *bpf;
    unsigned long bpf_len;           /* bytes; multiple of 8 */

    /* exec: candidate absolute paths tried in order (PATH search), argv, envp */
    const char *const *exec_paths;
    int n_exec_paths;
    const char *const *argv;         /* NULL-terminated */
    const char *const *envp;         /* NULL-terminated */
};

/* What the child reports when setup fails; sent once over the error pipe. */
struct sbx_error {
    int stage;
    int err;
    char detail[240];
};

struct sbx_spawn {
    int pid;
    int pidfd;
    int error_fd;   /* read end: EOF without a record means exec succeeded */
    int sync_fd;    /* write end: one byte releases the child (if wait_for_parent) */
    int control_fd; /* deferred_launch: our end of the SOCK_SEQPACKET launch channel, else -1 */
    unsigned long stack_addr, stack_len;  /* the clone's stack in our memory (CLONE_VM, csrc/shell_start.c),
                                             or 0: sbx_release_stack it once the child exec'd or was reaped */
    int stage;      /* when sbx_spawn fails: SBX_STAGE_CLONE, or SBX_STAGE_NETNS_JOIN */
};

/* Launch message (deferred_launch): this header, then n_argv NUL-terminated
 * strings, then n_paths NUL-terminated exec candidates; the child's fds 0..n-1
 * travel as SCM_RIGHTS in the same message. */
struct sbx_launch {
    unsigned int n_argv;
    unsigned int n_paths;
    unsigned int strings_len;
};

/* Send a launch message to a pre-made sandbox.  Returns 0 or -errno. */
int sbx_launch(int control_fd, const char *const *argv, int n_argv, const char *const *paths, int n_paths,
               const int *fds, int n_fds);

/* Clone a child that applies `plan` and execs.  Returns 0, or -errno with the
 * clone failure (the child never ran).  Thread-safe; allocates nothing in the child. */
int sbx_spawn(const struct sbx_plan *plan, struct sbx_spawn *out);

/* Capability helpers for the parent (used by doctor and tests). */
int sbx_last_cap(void);

/* netns_socket.c: socket(domain, type | SOCK_CLOEXEC, protocol) created inside
 * the network namespace `netns_fd` (an open /proc/PID/ns/net), the calling
 * thread back in its own namespace on return.  Returns the descriptor, or
 * -errno (setns into the namespace, or socket, failed).  Aborts the process if
 * it cannot return to its own namespace.  Used by the Runtime API listener. */
int sbx_socket_in_netns(int netns_fd, int domain, int type, int protocol);

/* zygote.c: a sandbox forked from a warm interpreter (sandbox/zygote/). */
struct sbx_zygote_fork_args {
    unsigned long long clone_flags;  /* the plan's CLONE_NEW*; CLONE_NEWPID required (init) */
    int plan_fd;                     /* sealed memfd: the packed plan (sbx_zygote_pack_plan) */
    unsigned long plan_len;
    int cgroup_fd;                   /* v2: CLONE_INTO_CGROUP dir fd, or -1 */
    int init_fd;                     /* O_PATH descriptor of the init program */
    const int *cgroup_procs_fds;     /* v1: cgroup.procs files the child writes "0" into */
    int n_cgroup_procs_fds;
};

/* The plan as a flat blob for sbx_zygote_fork (returns the length needed: call
 * with buf=NULL, cap=0 first), or -EOPNOTSUPP for a plan a zygote cannot make. */
long sbx_zygote_pack_plan(const struct sbx_plan *plan, char *buf, unsigned long cap);

/* Fork a sandbox from this (single-threaded) process.  Returns the child's pid
 * in the caller (out filled as by sbx_spawn, the child waiting for the sync
 * byte and then for its launch message), 0 in the child -- pid 2 of its
 * namespace, fully set up, seccomp on, returning into the caller's
 * interpreter -- or -errno.  The child is the caller's parent's child
 * (CLONE_PARENT).  A setup failure is reported over out->error_fd as usual. */
int sbx_zygote_fork(const struct sbx_zygote_fork_args *args, struct sbx_spawn *out);

/* In the child after sbx_zygote_fork returned 0: the launch argv and the plan's
 * environment (NULL-terminated). */
const char *const *sbx_zygote_argv(void);
const char *const *sbx_zygote_envp(void);

/* In the child, once the environment was copied out of it: unmap the packed
 * plan (sbx_zygote_envp() is invalid afterwards).  0 or -errno. */
int sbx_zygote_release_plan(void);

/* Once at zygote start: die with `expected_parent` (-ESRCH if it is already
 * gone), drop every capability on the host, set no_new_privs.  0 or -errno. */
int sbx_zygote_harden(int expected_parent, int last_cap);

/* plan_blob.c: a plan as one flat byte string for the shell program (see
 * csrc/plan_blob.h).  Pack `plan` into `buf` (capacity `cap`).  Returns the
 * blob's length; a result larger than `cap` means nothing usable was written
 * and that many bytes are needed (call again with buf=NULL, cap=0 to size it).
 * Every pointer field of struct sbx_plan and struct sbx_op must be handled
 * there (tests/unit/test_plan_blob.py lists them and fails on a new one). */
size_t sbx_plan_pack(const struct sbx_plan *plan, char *buf, size_t cap);

/* Turn a received blob back into a plan, in place: every offset is checked to
 * lie inside the blob and every string to end inside it.  Returns the plan, or
 * NULL (errno EINVAL) for a malformed blob.  `blob` must be 8-byte aligned. */
struct sbx_plan *sbx_plan_unpack(char *blob, size_t len);

/* shell_start.c: unmap a clone's stack (struct sbx_spawn.stack_addr/len) once
 * the child no longer runs on it (it exec'd, or was reaped).  0 or -errno. */
int sbx_release_stack(unsigned long addr, unsigned long len);
