/*
 * sandbox_shell.c: the shell program.  A new sandbox's first process execs it
 * right after the clone (csrc/shell_start.c), inside its new
 * namespaces, once the parent wrote the id maps.  From then on it no longer
 * shares copy-on-write pages with the supervisor: a pre-made sandbox waiting for
 * its command costs the supervisor nothing, and the command's own exec later
 * tears down a small process's memory instead of a copy of the supervisor's
 * (which cost ~1 ms per 30 MB of supervisor RSS).
 *
 * It reads the packed plan (plan_blob.h) and runs the same sbx_child_main() as
 * a clone that does the setup itself (csrc/sandbox_core.c and plan_blob.c are
 * linked in), so the ordered setup exists once.  Linked statically: no dynamic
 * loader on the way.
 */
#include "sbx_sys.h"
#include "sandbox_core.h"
#include "plan_blob.h"
#include "child_setup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#define fail sbx_child_fail

static char *read_plan(int error_fd, size_t *len)
{
    size_t cap = 64 * 1024;
    char *buf = malloc(cap);
    ssize_t n;
    *len = 0;
    if (!buf)
        fail(error_fd, SBX_STAGE_PLAN, ENOMEM, "malloc", "(plan)");
    for (;;) {
        if (*len == cap) {
            char *bigger;
            if (cap >= SBX_PLAN_BLOB_MAX)
                fail(error_fd, SBX_STAGE_PLAN, E2BIG, "plan larger than the limit", NULL);
            cap *= 2;
            bigger = realloc(buf, cap);
            if (!bigger)
                fail(error_fd, SBX_STAGE_PLAN, ENOMEM, "realloc", "(plan)");
            buf = bigger;
        }
        n = read(SBX_SHELL_FD_PLAN, buf + *len, cap - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail(error_fd, SBX_STAGE_PLAN, errno, "read", "(plan)");
        if (n == 0)
            break;
        *len += (size_t)n;
    }
    close(SBX_SHELL_FD_PLAN);
    return buf;
}

int main(void)
{
    int error_fd = SBX_SHELL_FD_ERROR, control_fd = -1, i;
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[2];
    struct sbx_plan *p;
    size_t len;
    char *blob = read_plan(error_fd, &len);

    p = sbx_plan_unpack(blob, len);
    if (!p)
        fail(error_fd, SBX_STAGE_PLAN, EINVAL, "malformed packed plan", NULL);
    /* The ambient set only carried the capabilities across this exec (the
     * clone's uid is not root in its new user namespace, so exec would have
     * cleared them); empty it and the inheritable set again, so nothing below
     * differs from a clone that never exec'd. */
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0,
          SBX_STAGE_AMBIENT, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", "(shell)");
    memset(&hdr, 0, sizeof hdr);
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    CHECK(syscall(SYS_capget, &hdr, data) == 0, SBX_STAGE_CAPSET, "capget", "(shell)");
    data[0].inheritable = data[1].inheritable = 0;
    CHECK(syscall(SYS_capset, &hdr, data) == 0, SBX_STAGE_CAPSET, "capset", "(shell)");
    /* Close-on-exec again, as they were in the supervisor: the error pipe's EOF
     * is how the parent learns that the command's exec happened. */
    CHECK(fcntl(error_fd, F_SETFD, FD_CLOEXEC) == 0, SBX_STAGE_FDS, "fcntl", "(error pipe)");
    if (p->deferred_launch) {
        control_fd = SBX_SHELL_FD_CONTROL;
        CHECK(fcntl(control_fd, F_SETFD, FD_CLOEXEC) == 0, SBX_STAGE_FDS, "fcntl", "(control socket)");
    }
    if (p->init && p->init_fd >= 0)
        CHECK(fcntl(p->init_fd, F_SETFD, FD_CLOEXEC) == 0, SBX_STAGE_FDS, "fcntl", "(init program)");
    for (i = 0; i < p->n_cgroup_procs_fds; i++)
        CHECK(fcntl(p->cgroup_procs_fds[i], F_SETFD, FD_CLOEXEC) == 0, SBX_STAGE_FDS, "fcntl", "(cgroup.procs)");
    sbx_child_main(p, error_fd, -1, control_fd);
}
