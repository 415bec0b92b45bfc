"""Spawning and waiting: `spawn()` starts a command in a new sandbox and returns a
`Sandbox` handle; `run()` spawns, feeds stdin, captures output and waits."""
from __future__ import annotations

import errno
import functools
import os
import select
import selectors
import signal
import sys
import threading
import time
from dataclasses import dataclass

from ._core import ffi, lib
from .config import MiB, Config
from .errors import SandboxError, SetupError, SpawnError, error_from_child
from .plan import encoded_plan
from .pool import prepare_shell
from .supervisor import Supervisor, default_supervisor

PIPE = -1
DEVNULL = -3
_ERROR_SIZE = ffi.sizeof("struct sbx_error")
_STATUS_SIZE = ffi.sizeof("int")


@dataclass(frozen=True)
class Result:
    """How a sandboxed command ended and what it used."""

    exit_code: int | None        # None when killed by a signal
    signal: int | None
    wall_time_s: float
    cpu_time_s: float            # whole sandbox (cgroup) when cgroups are on, else the command's rusage
    memory_peak_bytes: int | None  # from the cgroup; None when cgroups are off
    oom_killed: bool
    timed_out: bool
    stdout: bytes | None = None
    stderr: bytes | None = None
    output_truncated: bool = False

    @property
    def returncode(self) -> int:
        """subprocess-style: exit code, or -N when killed by signal N."""
        return self.exit_code if self.exit_code is not None else -(self.signal or 0)

    @property
    def shell_status(self) -> int:
        """Shell-style: exit code, or 128+N when killed by signal N."""
        return self.exit_code if self.exit_code is not None else 128 + (self.signal or 0)


class Sandbox:
    """A running sandbox.  Use as a context manager, or call wait()/close()."""

    def __init__(self, pid, pidfd, cgroup, config, stdin, stdout, stderr, supervisor, status_fd=-1):
        self.pid = pid
        self._pidfd = pidfd
        self._status_fd = status_fd  # with init: where it sends the command's wait status
        self._cgroup = cgroup
        self.config = config
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._supervisor = supervisor
        self._started = time.monotonic()
        self._lock = threading.Lock()       # guards the pidfd (signals vs. close)
        self._reap_lock = threading.Lock()  # one thread reaps and builds the Result
        self._result: Result | None = None
        self._status = None
        self.timed_out = False
        self.deadline = self._started + config.timeout_s
        supervisor.watchdog.watch(self.deadline, self._expire)

    # -- signals ---------------------------------------------------------------------
    def kill(self) -> None:
        """SIGKILL the sandbox: its pid 1, and with it every process inside."""
        with self._lock:
            if self._status is None and self._pidfd >= 0:
                try:
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._cgroup is not None and not self.config.enabled("pid"):
            self._cgroup.kill()

    def _expire(self) -> None:
        if self._status is None:
            self.timed_out = True
            self.kill()

    # -- waiting ---------------------------------------------------------------------
    def poll(self) -> Result | None:
        return self.wait(timeout=0) if self._result is None else self._result

    def wait(self, timeout: float | None = None) -> Result | None:
        """Wait for the command to end (the sandbox's own deadline always applies).
        Returns None if `timeout` elapsed first."""
        if self._result is not None:
            return self._result
        # With no timeout, block in wait4 directly: the watchdog enforces the deadline.
        if timeout is not None and not self._wait_pidfd(timeout):
            return None
        return self._finish()

    def _wait_pidfd(self, timeout: float | None) -> bool:
        with selectors.DefaultSelector() as sel:
            sel.register(self._pidfd, selectors.EVENT_READ)
            return bool(sel.select(timeout))

    def _finish(self, stdout=None, stderr=None, truncated=False) -> Result:
        with self._reap_lock:  # one reaper; kill() must stay possible meanwhile (own lock)
            if self._result is not None:
                return self._result
            _, status, rusage = os.wait4(self.pid, 0)
            status = self._command_status(status)
            with self._lock:
                self._status = status
                os.close(self._pidfd)
                self._pidfd = -1
            return self._collect(status, rusage, stdout, stderr, truncated)

    def _command_status(self, status: int) -> int:
        """With init, the command's own wait status, which init sent just before
        it exited; absent when init itself was killed (kill(), the watchdog, the
        OOM killer), and then init's status is the sandbox's."""
        if self._status_fd < 0:
            return status
        fd, self._status_fd = self._status_fd, -1
        try:
            os.set_blocking(fd, False)  # init is reaped: a message is there or never comes
            data = os.read(fd, _STATUS_SIZE + 1)
        except OSError:
            data = b""
        finally:
            os.close(fd)
        if len(data) != _STATUS_SIZE:
            return status
        reported = int.from_bytes(data, sys.byteorder, signed=True)
        try:
            os.waitstatus_to_exitcode(reported)
        except ValueError:
            return status
        return reported

    def _collect(self, status, rusage, stdout, stderr, truncated) -> Result:
        wall = time.monotonic() - self._started
        cpu = rusage.ru_utime + rusage.ru_stime
        peak, oom = None, False
        if self._cgroup is not None:
            try:
                if not self.config.enabled("pid"):
                    self._cgroup.kill()  # daemons the command left behind
                stats = self._cgroup.stats()
                peak = stats.memory_peak_bytes if stats.memory_peak_bytes >= 0 else None  # -1: kernel lacks memory.peak
                oom = stats.oom_kills > 0
                cpu = stats.cpu_time_ns / 1e9
            finally:
                # Read; the rmdirs happen in the background (CgroupManager.retire).
                self._cgroup.retire()
                self._cgroup = None
        code = os.waitstatus_to_exitcode(status)
        self._result = Result(
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            wall_time_s=wall, cpu_time_s=cpu, memory_peak_bytes=peak, oom_killed=oom,
            timed_out=self.timed_out, stdout=stdout, stderr=stderr, output_truncated=truncated,
        )
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        return self._result

    def communicate(self, input: bytes | None = None, max_output: int = 16 * MiB) -> Result:
        """Feed stdin, collect stdout/stderr (each capped at max_output bytes; the
        rest is drained and dropped) and wait for the end."""
        chunks = {"stdout": [], "stderr": []}
        sizes = {"stdout": 0, "stderr": 0}
        truncated = False
        sel = selectors.DefaultSelector()
        if self.stdin is not None:
            if input:
                os.set_blocking(self.stdin.fileno(), False)
                sel.register(self.stdin, selectors.EVENT_WRITE, "stdin")
            else:
                self.stdin.close()
                self.stdin = None
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None:
                sel.register(stream, selectors.EVENT_READ, name)
        pending = memoryview(input or b"")
        try:
            while sel.get_map():
                for key, _ in sel.select():
                    if key.data == "stdin":
                        try:
                            n = os.write(key.fileobj.fileno(), pending[:65536])
                            pending = pending[n:]
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(key.fileobj)
                            key.fileobj.close()
                            self.stdin = None
                        continue
                    data = os.read(key.fileobj.fileno(), 65536)
                    if not data:
                        sel.unregister(key.fileobj)
                        continue
                    room = max_output - sizes[key.data]
                    if len(data) > room:
                        truncated = True
                        data = data[:room]
                    if data:
                        chunks[key.data].append(data)
                        sizes[key.data] += len(data)
        finally:
            sel.close()
        return self._finish(
            stdout=b"".join(chunks["stdout"]) if self.stdout is not None else None,
            stderr=b"".join(chunks["stderr"]) if self.stderr is not None else None,
            truncated=truncated,
        )

    def close(self) -> None:
        """Kill (if still running), reap, and release the cgroup."""
        if self._result is None:
            self.kill()
            self.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _stdio(spec, index: int, fd_map: list, child_ends: list):
    """Resolve a subprocess-style stdio spec into the child's fd and our end."""
    if spec is None:
        fd_map.append(index)
        return None
    if spec == DEVNULL:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        child_ends.append(fd)
        fd_map.append(fd)
        return None
    if spec == PIPE:
        r, w = os.pipe2(os.O_CLOEXEC)
        ours, theirs = (w, r) if index == 0 else (r, w)
        child_ends.append(theirs)
        fd_map.append(theirs)
        return os.fdopen(ours, "wb" if index == 0 else "rb", buffering=0)
    fd_map.append(spec if isinstance(spec, int) else spec.fileno())
    return None


_DEFAULT_CONFIG = Config()


@functools.lru_cache(maxsize=256)
def _validated(config: Config) -> Config:
    """Validation is pure, so a config is checked once, not per spawn."""
    return config.validated()


def spawn(argv, config: Config | None = None, *, stdin=None, stdout=None, stderr=None,
          pass_fds=(), supervisor: Supervisor | None = None, before_launch=None) -> Sandbox:
    """Start `argv` in a new sandbox.  stdio: None (inherit), PIPE, DEVNULL, an fd
    or a file.  `pass_fds` appear inside as 3, 4, ... in order; every other
    descriptor is closed.  `before_launch(pid)`, if given, is called once the
    sandbox's namespaces exist (pid: its first process, not reaped meanwhile)
    and before the command starts, e.g. to make a socket in its network
    namespace; if it raises, the sandbox is discarded.  Raises a SandboxError
    subclass naming the failed step."""
    config = _validated(config or _DEFAULT_CONFIG)
    if not argv or not isinstance(argv[0], str) or not argv[0] or \
            not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise SandboxError(errno.EINVAL, "argv must be a non-empty list of strings without NUL")
    supervisor = supervisor or default_supervisor()
    encoded = encoded_plan(config)
    shell = supervisor.pool.take(encoded) or prepare_shell(encoded, supervisor)
    supervisor.pool.replenish(encoded)
    return launch_shell(shell, encoded, argv, stdin, stdout, stderr, pass_fds, supervisor, before_launch)


def launch_shell(shell, encoded, argv, stdin, stdout, stderr, pass_fds, supervisor: Supervisor,
                 before_launch=None) -> Sandbox:
    """Hand `argv` and its stdio to a pre-made sandbox (made by the pool or a
    zygote) and return it running; on any failure the shell is discarded."""
    fd_map: list[int] = []
    child_ends: list[int] = []
    streams: list = []
    try:
        if before_launch is not None:
            before_launch(shell.pid)
        for i, spec in enumerate((stdin, stdout, stderr)):
            streams.append(_stdio(spec, i, fd_map, child_ends))
        fd_map.extend(pass_fds)
        _launch(shell, encoded, list(argv), fd_map)
        status_fd, shell.control_fd = shell.control_fd, -1
    except BaseException:
        for stream in streams:
            if stream is not None:
                stream.close()  # the file object owns our end: close it once, through it
        shell.discard()
        raise
    finally:
        for fd in child_ends:
            os.close(fd)
    return Sandbox(shell.pid, shell.pidfd, shell.cgroup, encoded.plan.config, *streams, supervisor, status_fd)


def _launch(shell, encoded, argv: list[str], fd_map: list[int]) -> None:
    """Hand the command to a pre-made sandbox and wait until it exec'd."""
    paths = encoded.plan.exec_candidates(argv[0])
    keep = [ffi.new("char[]", a.encode()) for a in argv + paths]
    c_argv = ffi.new("char *[]", keep[:len(argv)])
    c_paths = ffi.new("char *[]", keep[len(argv):] or [ffi.NULL])
    rc = lib.sbx_launch(shell.control_fd, c_argv, len(argv), c_paths, len(paths), fd_map, len(fd_map))
    if not encoded.plan.init or rc < 0:  # init reports the command's wait status on it
        os.close(shell.control_fd)
        shell.control_fd = -1
    error_fd, shell.error_fd = shell.error_fd, -1
    # A setup failure of the shell is reported here, typed; bounded by the
    # sandbox's own wall-clock limit.
    _check_exec(error_fd, shell.pidfd, encoded.plan.config.timeout_s)
    shell.release_stack()  # the command exec'd, so the shell program did long before (on failure: discard)
    if rc < 0:
        raise SpawnError(-rc, "launch message to the pre-made sandbox")


# After the sandbox's first process ended, how long its error pipe may stay
# open: only a copy of the write end held elsewhere would keep it open.
EXITED_GRACE_S = 1.0


def _check_exec(error_fd: int, pidfd: int, timeout_s: float) -> None:
    """Read the error pipe until its end of file (the command exec'd) or a
    record (a step failed).  Bounded, so a launch can never hang: if the
    sandbox's first process ends without either, or the sandbox's wall-clock
    limit passes, something else holds the pipe's write end, and that is
    reported as an error instead of waited for."""
    deadline = time.monotonic() + timeout_s
    exited_at = None
    data = b""
    poller = select.poll()
    poller.register(error_fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    try:
        while len(data) < _ERROR_SIZE:
            limit = deadline if exited_at is None else min(deadline, exited_at + EXITED_GRACE_S)
            remaining = limit - time.monotonic()
            if remaining <= 0:
                why = "its first process ended" if exited_at is not None else f"{timeout_s:g} s passed"
                raise SetupError(errno.ETIMEDOUT, f"the sandbox neither exec'd its command nor reported a failure "
                                 f"before {why} (its error pipe is held open elsewhere)", "launch")
            ready = {fd for fd, _ in poller.poll(int(remaining * 1000) + 1)}
            if error_fd in ready:
                chunk = os.read(error_fd, _ERROR_SIZE - len(data))
                if not chunk:
                    break
                data += chunk
            elif pidfd in ready and exited_at is None:
                exited_at = time.monotonic()
                poller.unregister(pidfd)
    finally:
        os.close(error_fd)
    if not data:
        return  # EOF with no record: execve succeeded
    if len(data) != _ERROR_SIZE:
        raise SetupError(errno.EPROTO, f"truncated error record ({len(data)} bytes)", "protocol")
    rec = ffi.from_buffer("struct sbx_error *", bytearray(data))
    raise error_from_child(rec.stage, rec.err, ffi.string(rec.detail).decode(errors="replace"))


def run(argv, config: Config | None = None, *, input: bytes | None = None, capture_output: bool = True,
        max_output: int = 16 * MiB, pass_fds=(), supervisor: Supervisor | None = None) -> Result:
    """Run `argv` in a new sandbox to completion and return its Result (with
    stdout/stderr when captured)."""
    pipe_or_inherit = PIPE if capture_output else None
    box = spawn(argv, config, stdin=PIPE if input else DEVNULL, stdout=pipe_or_inherit,
                stderr=pipe_or_inherit, pass_fds=pass_fds, supervisor=supervisor)
    try:
        return box.communicate(input, max_output=max_output)
    except BaseException:
        box.close()
        raise
