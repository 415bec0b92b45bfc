"""What both backends share: the filesystem seam and error wording."""
from __future__ import annotations

import errno
import os

from ..errors import CgroupSetupError

# Opening files for a write: no O_CREAT (a missing control file must be ENOENT,
# not a new file), O_TRUNC is harmless on cgroupfs.
WRITE_FLAGS = os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC
# What the sandbox child writes "0" into (spec: O_WRONLY|O_CLOEXEC).
PROCS_FLAGS = os.O_WRONLY | os.O_CLOEXEC


class HostFs:
    """The directory operations of the real cgroup filesystem.  Unit tests pass
    sandbox.cgroups._fakefs.FakeCgroupFs instead, which makes a temporary
    directory behave like cgroupfs (control files appear on mkdir)."""

    mkdir = staticmethod(os.mkdir)
    rmdir = staticmethod(os.rmdir)


_HINTS = {
    errno.EACCES: "run the supervisor as root, or delegate this cgroup to its user",
    errno.EPERM: "run the supervisor as root, or delegate this cgroup to its user",
    errno.EROFS: "the cgroup filesystem is mounted read-only (a container?); mount it rw or delegate a subtree",
    errno.ENOSPC: "cgroup.max.descendants or the kernel's cgroup limit was reached",
    errno.EBUSY: "processes are still inside; they did not die in time",
}


def setup_error(exc: OSError, controller: str, operation: str, path: str, hint: str | None = None) -> CgroupSetupError:
    """CgroupSetupError for a failed file operation, naming controller, path and operation."""
    err = exc.errno or errno.EIO
    if hint is None:
        if err == errno.ENOENT and operation == "mkdir":
            hint = "the parent cgroup directory is gone"
        elif err == errno.ENOENT:
            hint = f"the {controller} controller or this file is missing on this kernel"
        else:
            hint = _HINTS.get(err)
    return CgroupSetupError(err, f"{controller}: {operation} {path}", hint=hint)


def write_value(path: str, value: bytes) -> None:
    fd = os.open(path, WRITE_FLAGS)
    try:
        os.write(fd, value)
    finally:
        os.close(fd)


def close_fds(fds) -> None:
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
