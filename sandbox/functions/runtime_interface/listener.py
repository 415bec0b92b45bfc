"""The Runtime API's listening socket: made inside the sandbox's own network
namespace (csrc/netns_socket.c), served by the supervisor from outside.

The sandbox keeps its private namespace with only `lo`; the socket is the one
thing on it that leads out, and it leads only to the Runtime API.  Nothing of
the host's network, loopback included, becomes reachable."""
from __future__ import annotations

import errno
import os
import socket

from ..._core import lib
from ...constants import kernel_constant
from ...errors import SandboxError
from .entry import HOST, PORT

BACKLOG = 8


class RuntimeAPIListenerError(SandboxError):
    """The Runtime API could not be set up in the sandbox's network namespace;
    the environment is not started (no runtime without its API)."""

    step = "runtime-api"

    def __init__(self, err, syscall, hint=None):
        self.syscall = syscall
        super().__init__(err, syscall, hint=hint)


def listen_in_netns(pid: int) -> socket.socket:
    """A non-blocking TCP socket listening on 127.0.0.1:9001 in the network
    namespace of `pid` (a sandbox's first process, ours and not reaped, so the
    number cannot be reused meanwhile)."""
    path = f"/proc/{pid}/ns/net"
    try:
        ns = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise RuntimeAPIListenerError(exc.errno, f"open {path}") from None
    try:
        theirs, ours = os.fstat(ns), os.stat("/proc/self/ns/net")
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
            # Listening there would put the Runtime API on the host's loopback.
            raise RuntimeAPIListenerError(errno.EINVAL, f"{path} is the supervisor's own network namespace",
                                          hint="the Runtime API needs the sandbox's private network "
                                               "namespace: do not disable the 'net' layer")
        fd = lib.sbx_socket_in_netns(ns, socket.AF_INET, socket.SOCK_STREAM, 0)
    finally:
        os.close(ns)
    if fd < 0:
        raise RuntimeAPIListenerError(-fd, f"setns into {path} + socket(AF_INET, SOCK_STREAM)")
    sock = socket.socket(fileno=fd)
    try:
        # A shell prepared on the spot may not have brought its lo up yet (the
        # child does that after this point): bind the address before it exists.
        sock.setsockopt(socket.IPPROTO_IP, kernel_constant("IP_FREEBIND"), 1)
        sock.bind((HOST, PORT))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise RuntimeAPIListenerError(exc.errno, f"bind/listen {HOST}:{PORT} in {path}") from None
    return sock
