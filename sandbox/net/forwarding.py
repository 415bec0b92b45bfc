"""net.ipv4.ip_forward for egress: routing between a sandbox's veth and the
host's other interfaces needs it.  Turning it on is a host change, so it is
made only when an egress namespace is first made, and undone when the last
user on this host (any supervisor) leaves, if it was off before.

Users hold a shared flock on forward.users.lock; enabling and the last-user
check run under forward.mutex.lock.  forward.saved exists while the original
value (0) must be restored.  A killed supervisor's janitor runs `release` for
it.  Standard library only (the janitor imports this module).
"""
from __future__ import annotations

import os

try:
    from .locks import LOCK_DIR, lock_file, remove_dir_if_empty, unlock_and_remove
except ImportError:  # run from janitor.py, a plain script: its siblings are top-level modules
    from locks import LOCK_DIR, lock_file, remove_dir_if_empty, unlock_and_remove

FORWARD = "/proc/sys/net/ipv4/ip_forward"


def _paths(lock_dir: str):
    return (os.path.join(lock_dir, "forward.mutex.lock"), os.path.join(lock_dir, "forward.users.lock"),
            os.path.join(lock_dir, "forward.saved"))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def acquire(lock_dir: str = LOCK_DIR, forward: str = FORWARD) -> int:
    """Become a user: ip_forward is 1 on return.  Returns the users lock fd,
    to hand back to `release`."""
    mutex_path, users_path, saved_path = _paths(lock_dir)
    mutex = lock_file(mutex_path, blocking=True)
    try:
        users = lock_file(users_path, blocking=True, shared=True)
        try:
            if _read(forward) != "1":
                if not os.path.exists(saved_path):
                    _write(saved_path, _read(forward) + "\n")
                _write(forward, "1")
        except BaseException:
            os.close(users)
            raise
        return users
    finally:
        os.close(mutex)


def release(users: int | None, lock_dir: str = LOCK_DIR, forward: str = FORWARD) -> bool:
    """Stop being a user (users=None: a dead user's janitor).  The last one
    restores the saved value.  Returns True if this call restored it."""
    mutex_path, users_path, saved_path = _paths(lock_dir)
    if users is None and not os.path.exists(users_path):
        return False
    mutex = lock_file(mutex_path, blocking=True)
    restored = False
    try:
        if users is not None:
            os.close(users)
        last = lock_file(users_path, blocking=False)
        if last is not None:
            if os.path.exists(saved_path):
                _write(forward, _read(saved_path))
                os.unlink(saved_path)
                restored = True
            unlock_and_remove(users_path, last)
            os.unlink(mutex_path)  # still holding it: a waiter re-checks and retries
    finally:
        os.close(mutex)
    remove_dir_if_empty(lock_dir)
    return restored
