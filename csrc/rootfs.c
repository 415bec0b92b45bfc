/*
 * rootfs.c: the child's new root (csrc/sandbox_core.c calls it at step 6b and
 * step 7): bind sources opened while the host's tree is still visible, then
 * the plan's mount operations in order on a fresh tmpfs, the read-only pass,
 * pivot_root and the detach of the old root.  Child side: async-signal-safe
 * calls only, no allocation.
 */
#include "sbx_sys.h"
#include "sandbox_core.h"
#include "child_setup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define fail sbx_child_fail

/* Child-private scratch space: the child is a copy of the parent (or the
 * shell program), so this static is its own and using it allocates nothing. */
static int bind_source_fds[SBX_MAX_OPS];

/* mkdir -p for a path relative to the current directory (the new root). */
static int make_dirs(char *path, mode_t mode)
{
    char *p;
    for (p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
            *p = '/';
            return -1;
        }
        *p = '/';
    }
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int set_attr(int dfd, const char *path, unsigned int flags, uint64_t attr_set)
{
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = attr_set;
    attr.propagation = MS_PRIVATE;
    return mount_setattr(dfd, path, flags, &attr, sizeof attr);
}

/* Bind sources are opened (as detached mount trees) before the new root is
 * mounted: the staging tmpfs may cover a source, and fds keep meaning after
 * pivot_root where paths do not. */
void sbx_child_open_bind_sources(const struct sbx_plan *p, int error_fd)
{
    int i;
    for (i = 0; i < p->n_ops; i++) {
        const struct sbx_op *op = &p->ops[i];
        unsigned int rec;
        bind_source_fds[i] = -1;
        if (op->kind != SBX_OP_BIND)
            continue;
        rec = (op->flags & SBX_OPT_RECURSIVE) ? AT_RECURSIVE : 0;
        bind_source_fds[i] = open_tree(AT_FDCWD, op->source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
        if (bind_source_fds[i] < 0) {
            if (errno == ENOENT && (op->flags & SBX_OPT_OPTIONAL))
                continue;
            fail(error_fd, SBX_STAGE_BIND_SOURCE, errno, "open_tree", op->source);
        }
        /* Restrict the copy before it is attached anywhere: no window in which
         * a writable or suid view exists inside the sandbox. */
        if (set_attr(bind_source_fds[i], "", AT_EMPTY_PATH | rec, op->attr_set) < 0)
            fail(error_fd, SBX_STAGE_BIND, errno, "mount_setattr", op->source);
    }
}

static void run_op(const struct sbx_plan *p, int i, int error_fd)
{
    const struct sbx_op *op = &p->ops[i];
    static char path[4096];
    int optional = op->flags & SBX_OPT_OPTIONAL;
    int fd;

    switch (op->kind) {
    case SBX_OP_MKDIR:
        sbx_str_copy(path, sizeof path, 0, op->path);
        CHECK(make_dirs(path, op->mode) == 0, SBX_STAGE_MKDIR, "mkdir", op->path);
        return;
    case SBX_OP_BIND:
        if (bind_source_fds[i] < 0)
            return; /* optional source absent */
        if (op->flags & SBX_OPT_CREATE_FILE) {
            fd = open(op->path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
            CHECK(fd >= 0, SBX_STAGE_BIND, "create bind target", op->path);
            close(fd);
        }
        CHECK(move_mount(bind_source_fds[i], "", AT_FDCWD, op->path, MOVE_MOUNT_F_EMPTY_PATH) == 0,
              SBX_STAGE_BIND, "move_mount", op->path);
        close(bind_source_fds[i]);
        return;
    case SBX_OP_MOUNT:
        if (mount(op->fstype, op->path, op->fstype, op->mount_flags, op->data) < 0) {
            if (optional && errno == ENOENT)
                return;
            fail(error_fd, SBX_STAGE_MOUNT, errno, op->fstype, op->path);
        }
        return;
    case SBX_OP_SYMLINK:
        CHECK(symlink(op->source, op->path) == 0, SBX_STAGE_SYMLINK, "symlink", op->path);
        return;
    case SBX_OP_WRITE_FILE: {
        unsigned long done = 0;
        fd = open(op->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, op->mode);
        CHECK(fd >= 0, SBX_STAGE_WRITE_FILE, "open", op->path);
        while (done < op->data_len) {
            ssize_t n = write(fd, op->data + done, op->data_len - done);
            if (n < 0 && errno == EINTR)
                continue;
            CHECK(n > 0, SBX_STAGE_WRITE_FILE, "write", op->path);
            done += (unsigned long)n;
        }
        close(fd);
        return;
    }
    case SBX_OP_MASK:
        /* The new root's dev/null is a bind of the host's /dev/null (a device
         * node on a filesystem that allows devices). */
        if (mount("dev/null", op->path, NULL, MS_BIND, NULL) < 0) {
            if (optional && errno == ENOENT)
                return;
            fail(error_fd, SBX_STAGE_MOUNT, errno, "mask", op->path);
        }
        return;
    case SBX_OP_BIND_SELF_RO:
        fd = open_tree(AT_FDCWD, op->path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (fd < 0) {
            if (optional && errno == ENOENT)
                return;
            fail(error_fd, SBX_STAGE_READ_ONLY, errno, "open_tree", op->path);
        }
        CHECK(set_attr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, op->attr_set) == 0,
              SBX_STAGE_READ_ONLY, "mount_setattr", op->path);
        CHECK(move_mount(fd, "", AT_FDCWD, op->path, MOVE_MOUNT_F_EMPTY_PATH) == 0,
              SBX_STAGE_READ_ONLY, "move_mount", op->path);
        close(fd);
        return;
    default:
        errno = EINVAL;
        fail(error_fd, SBX_STAGE_PLAN, EINVAL, "unknown op", op->path);
    }
}

void sbx_child_build_root(const struct sbx_plan *p, int error_fd)
{
    int i;
    /* The new root is a tmpfs in our private mount namespace; only what the
     * plan puts there exists inside. */
    CHECK(mount("tmpfs", p->staging_dir, "tmpfs", MS_NOSUID | MS_NODEV, p->root_data) == 0,
          SBX_STAGE_ROOT_TMPFS, "mount tmpfs", p->staging_dir);
    CHECK(chdir(p->staging_dir) == 0, SBX_STAGE_ROOT_TMPFS, "chdir", p->staging_dir);
    for (i = 0; i < p->n_ops; i++)
        run_op(p, i, error_fd);
    /* Read-only last, once everything has been written. */
    for (i = 0; i < p->n_ro_paths; i++)
        CHECK(set_attr(AT_FDCWD, p->ro_paths[i], 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) == 0,
              SBX_STAGE_READ_ONLY, "mount_setattr", p->ro_paths[i]);
    /* pivot_root(".", ".") stacks the old root on the new one; detaching it
     * leaves no path back to the host tree.  chroot would leave one. */
    CHECK(syscall(SYS_pivot_root, ".", ".") == 0, SBX_STAGE_PIVOT_ROOT, "pivot_root", p->staging_dir);
    CHECK(umount2(".", MNT_DETACH) == 0, SBX_STAGE_UMOUNT_OLD, "umount2", "old root");
    CHECK(chdir("/") == 0, SBX_STAGE_PIVOT_ROOT, "chdir", "/");
}
