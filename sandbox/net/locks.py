"""flock'ed files under /run/sandbox-net: address slots (addresses.py) and the
ip_forward users (forwarding.py).  Standard library only: the janitor
(janitor.py), a stand-alone script, imports this module too.

A lock dies with its holder, so a killed supervisor holds nothing.  A lock
file is unlinked by its holder, while still holding it; whoever locks a file
checks afterwards that the path still names the inode it locked (else it lost
a race with an unlink and tries again), so an unlinked file never counts.
"""
from __future__ import annotations

import fcntl
import os

LOCK_DIR = "/run/sandbox-net"


def lock_file(path: str, *, blocking: bool, shared: bool = False) -> int | None:
    """Open and flock `path` (created 0600 if missing, with its directory).
    Returns the fd, or None if not blocking and someone else holds it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # unlinked under us: that lock protects nothing


def unlock_and_remove(path: str, fd: int) -> None:
    """Remove the lock file while still holding it, then release."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.close(fd)


def sweep(lock_dir: str = LOCK_DIR) -> int:
    """Remove address lock files nobody holds (left by a killed supervisor).
    Returns how many were removed."""
    removed = 0
    try:
        names = os.listdir(lock_dir)
    except FileNotFoundError:
        return 0
    for name in names:
        if not name.endswith(".lock") or name.startswith("forward"):
            continue
        path = os.path.join(lock_dir, name)
        fd = lock_file(path, blocking=False)
        if fd is not None:
            unlock_and_remove(path, fd)
            removed += 1
    return removed


def remove_dir_if_empty(lock_dir: str = LOCK_DIR) -> None:
    try:
        os.rmdir(lock_dir)
    except OSError:
        pass  # in use by someone (a slot, a forward user): theirs to remove
