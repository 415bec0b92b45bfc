"""The supervisor's side of one zygote: start it (in its own cgroup, from the
clone thread), ask it for forks, notice when it died.

A Zygote serves one runtime and one preload set (ZygoteKind).  Requests are
serialized per zygote (it is single-threaded); each returns a child that
waits for its id maps and then for its launch message, exactly like a
pre-made sandbox of the normal path (pool.Shell)."""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import socket
import subprocess
import sys
import threading

import _cffi_backend
import time
from dataclasses import dataclass

from .._core import ffi, lib
from ..config import MiB
from ..errors import CgroupSetupError, SpawnError
from . import protocol

log = logging.getLogger("sandbox.zygote")

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "server.py")
START_TIMEOUT_S = 30.0      # numpy-sized preloads on a busy 2-CPU VM
REQUEST_TIMEOUT_S = 10.0
# The zygote's own cgroup: its heap (shared copy-on-write by every environment
# it forked, and charged here, not to them) and, on cgroup v1, what the kernel
# allocates for a child during the clone, before the child joins its own
# cgroup -- its page tables above all (~0.4 MiB per environment, measured:
# 1,000 environments put ~420 MiB here).  v2 has none of that
# (CLONE_INTO_CGROUP).  A limit, not a reservation: large enough for
# thousands of environments.
ZYGOTE_MEMORY_BYTES = 4096 * MiB
ZYGOTE_PIDS = 256


@dataclass(frozen=True)
class ZygoteKind:
    interpreter: str                 # the real interpreter binary (sys.executable inside the zygote)
    runtime_dir: str                 # host directory of the runtime (bound at /var/runtime)
    modules: tuple[str, ...]         # the runtime's modules to import (must not read the environment)
    preload: tuple[str, ...] = ()    # runtime-provided packages to import too (e.g. numpy)


def _core_path() -> str:
    from .. import _core

    return os.path.abspath(_core.__file__)


class ZygoteDied(SpawnError):
    pass


class Zygote:
    def __init__(self, kind: ZygoteKind, supervisor):
        self.kind = kind
        self._supervisor = supervisor
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self.cgroup = None
        self.forks = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- life -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the zygote and wait until it imported everything.  Runs on the
        supervisor's clone thread: the environments' parent-death signal is
        tied to the thread that started the zygote (CLONE_PARENT)."""
        self._supervisor.clone_thread.call(self._start)

    def _start(self) -> None:
        from ..cgroups import CgroupLimits

        try:
            cgroup = self._supervisor.cgroups.create(
                CgroupLimits(memory_bytes=ZYGOTE_MEMORY_BYTES, cpus=1.0, pids_max=ZYGOTE_PIDS))
        except CgroupSetupError as exc:
            # The zygote runs no function code, so its cgroup is accounting, not
            # isolation (every environment it forks gets its own, or fails):
            # without one it lives in the supervisor's, and says so.
            log.warning("zygote without a cgroup of its own (charged to the supervisor's): %s", exc)
            cgroup = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            if cgroup is None:
                spec, fds = "none:", []
            elif cgroup.clone_fd >= 0:
                spec, fds = f"v2:{cgroup.clone_fd}", [cgroup.clone_fd]
            else:
                fds = list(cgroup.procs_fds)
                spec = "v1:" + ",".join(map(str, fds))
            k = self.kind
            argv = [k.interpreter, "-S", "-B", "-u", SERVER, str(theirs.fileno()), str(os.getpid()), _core_path(),
                    os.path.dirname(os.path.abspath(_cffi_backend.__file__)),
                    k.runtime_dir, ",".join(k.modules), ",".join(k.preload), str(lib.sbx_last_cap()), spec]
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/"}
            env.update((name, "1") for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"))
            self._proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()] + fds, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        except BaseException:
            ours.close()
            if cgroup is not None:
                cgroup.destroy()
            raise
        finally:
            theirs.close()
            if cgroup is not None:
                cgroup.release_attach_fds()
        self._sock, self.cgroup = ours, cgroup
        ready, _, _ = select.select([ours], [], [], START_TIMEOUT_S)
        message = ours.recv(16) if ready else b""
        if message != protocol.READY:
            detail = self._reap_error()
            self.close()
            raise SpawnError(errno.ECHILD, f"the zygote did not start ({detail or 'no answer'})", "zygote")
        ours.settimeout(REQUEST_TIMEOUT_S)
        self._proc.stderr.close()   # kept only for start-up errors: a full pipe must never block it later

    def _reap_error(self) -> str:
        try:
            self._proc.kill()
            _, err = self._proc.communicate(timeout=5)
            return err.decode(errors="replace").strip()
        except Exception:
            return ""

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._sock is not None

    def close(self) -> None:
        """Stop the zygote (its environments live on: they are not its children)
        and remove its cgroup.  Idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()    # end of file: it exits on its own
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr and not proc.stderr.closed:
                proc.stderr.close()
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is not None:
            cgroup.destroy()

    def kill(self) -> None:
        """SIGKILL (tests: a zygote's death must take no environment with it)."""
        if self._proc is not None:
            self._proc.kill()

    # -- forks ----------------------------------------------------------------------
    def fork(self, plan_fd: int, plan_len: int, clone_flags: int, init_fd: int, cgroup):
        """Ask for one child.  Returns (pid, pidfd, error_fd, sync_fd, control_fd)."""
        fds = [plan_fd, init_fd]
        flags = 0
        procs: tuple[int, ...] = ()
        if cgroup is not None:
            if cgroup.clone_fd >= 0:
                flags |= protocol.FLAG_CGROUP_DIR
                fds.append(cgroup.clone_fd)
            procs = tuple(cgroup.procs_fds)
            fds.extend(procs)
        request = protocol.REQUEST.pack(protocol.MAGIC, flags, clone_flags, plan_len, len(procs))
        with self._lock:
            sock = self._sock
            if sock is None or self._proc.poll() is not None:
                raise ZygoteDied(errno.ECHILD, "the zygote is gone", "zygote")
            try:
                socket.send_fds(sock, [request], fds)
                data, got, msg_flags, _ = socket.recv_fds(sock, protocol.REPLY.size + 1, protocol.REPLY_FDS,
                                                          socket.MSG_CMSG_CLOEXEC)
            except OSError as exc:   # includes the timeout: a zygote that does not answer is dead to us
                self._sock = None
                sock.close()
                self.kill()
                raise ZygoteDied(exc.errno or errno.EPIPE, f"fork request to the zygote: {exc}", "zygote") from exc
            self.forks += 1
        if len(data) != protocol.REPLY.size or msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for fd in got:
                os.close(fd)
            if not data:
                raise ZygoteDied(errno.EPIPE, "the zygote hung up", "zygote")
            raise SpawnError(errno.EPROTO, "malformed reply from the zygote", "zygote")
        magic, result = protocol.REPLY.unpack(data)
        if magic != protocol.MAGIC or (result > 0) != (len(got) == protocol.REPLY_FDS):
            for fd in got:
                os.close(fd)
            raise SpawnError(errno.EPROTO, "malformed reply from the zygote", "zygote")
        if result < 0:
            raise SpawnError(-result, "clone3 in the zygote", "zygote")
        return (result, *got)


def plan_memfd(encoded) -> tuple[int, int]:
    """The plan of `encoded` (an EncodedPlan), packed into a sealed memfd:
    (fd, length).  The zygote passes it on unread; its child maps it."""
    n = lib.sbx_zygote_pack_plan(encoded.base, ffi.NULL, 0)
    if n < 0:
        raise SpawnError(-n, "a zygote cannot make this sandbox (joining a network namespace)", "zygote")
    buf = ffi.new("char[]", n)
    if lib.sbx_zygote_pack_plan(encoded.base, buf, n) != n:
        raise SpawnError(errno.EPROTO, "packing the plan", "zygote")
    fd = os.memfd_create("sandbox-plan", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(ffi.buffer(buf, n))
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd, n


def default_kind(runtime_dir: str, modules, preload=()) -> ZygoteKind:
    return ZygoteKind(os.path.realpath(sys.executable), runtime_dir, tuple(modules), tuple(preload))


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once no process `pid` exists (a test helper for the zygote itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.01)
    return False
