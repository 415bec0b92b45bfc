"""Kernel constants for the planners, resolved by the C compiler (csrc/build_core.py)
or by the standard library; nothing here is a hard-coded number."""
import errno as _errno
import socket as _socket

from ._core import lib as _lib


def kernel_constant(name: str) -> int:
    """Value of a kernel constant by name: C-core constants (CLONE_*, MS_*,
    MOUNT_ATTR_*, RLIMIT_*, TIOCSTI, NETLINK_ROUTE, ...), socket (AF_*, SOCK_*),
    errno names.  Raises KeyError for an unknown name."""
    value = getattr(_lib, name, None)
    if isinstance(value, int):
        return value
    value = getattr(_socket, name, None)
    if isinstance(value, int):
        return value
    value = getattr(_errno, name, None)
    if isinstance(value, int):
        return value
    raise KeyError(name)
