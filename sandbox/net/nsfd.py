"""Network namespaces held by descriptor, entered by one thread at a time.

setns(CLONE_NEWNET) and unshare(CLONE_NEWNET) change the namespace of the
calling *thread* only, and a socket (netlink included) belongs for life to the
namespace it was made in.  So the supervisor's network thread (manager.py)
steps into a sandbox's namespace, opens its netlink sockets there, and steps
back; no other thread is affected.  Namespaces are never named (no
/run/netns): when the last descriptor and the last process go, the kernel
destroys the namespace and its veth, whatever happened to the supervisor.
"""
from __future__ import annotations

import contextlib
import ctypes
import os

from ..constants import kernel_constant as K
from ..errors import NetworkError

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_SELF = "/proc/thread-self/ns/net"  # thread-self: threads of this process may differ


def _errno_call(fn, *args) -> None:
    if fn(*args) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netns_type_matches(fd: int) -> bool:
    """True if `fd` is a network namespace (an nsfs inode shows as net:[N])."""
    return os.readlink(f"/proc/self/fd/{fd}").startswith("net:[")


def new_netns() -> int:
    """A fresh network namespace owned by our user namespace, as an O_CLOEXEC
    descriptor; the calling thread stays where it was."""
    home = os.open(_SELF, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _errno_call(_libc.unshare, K("CLONE_NEWNET"))
        except OSError as exc:
            raise NetworkError(exc.errno, "unshare(CLONE_NEWNET) for a sandbox namespace", "netns-create") from exc
        try:
            return os.open(_SELF, os.O_RDONLY | os.O_CLOEXEC)
        finally:
            _go_home(home)
    finally:
        os.close(home)


@contextlib.contextmanager
def inside(netns_fd: int):
    """Run the body with this thread in `netns_fd`'s namespace."""
    home = os.open(_SELF, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _errno_call(_libc.setns, netns_fd, K("CLONE_NEWNET"))
        except OSError as exc:
            raise NetworkError(exc.errno, f"setns into sandbox namespace (fd {netns_fd})", "netns-enter") from exc
        try:
            yield
        finally:
            _go_home(home)
    finally:
        os.close(home)


def _go_home(home: int) -> None:
    try:
        _errno_call(_libc.setns, home, K("CLONE_NEWNET"))
    except OSError:
        # This thread would stay in a sandbox's namespace and everything it
        # made afterwards would live there: no caller can handle that.
        os.abort()
