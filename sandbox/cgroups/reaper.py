"""Watchdog that removes a supervisor's cgroups if the supervisor dies.

Supervisor side: `Reaper.start(...)` (first CgroupManager.create()) spawns

    <real python> -S -I <this file> --tag sandbox.cgroups.reaper --pipe R [--pidfd F]
        --version V [--freezer D] --dir D ...

in a new session (a kill of the supervisor's process group does not reach it),
holding the read end R of a pipe whose write end only the supervisor holds
(close-on-exec, so sandboxes never inherit it), and F, a pidfd of the supervisor.

Reaper side: it waits.  "bye" followed by EOF means a clean close(): exit, touch
nothing.  EOF without "bye", or the supervisor's pidfd turning readable (it
died, even if some forked child still holds the write end), means: kill every
process below the given parent directories, remove them deepest first, exit.

It is only ever given the exact parent directories the supervisor creates
(<own cgroup>/<prefix>-<pid>-<random>), and never touches anything else.

Runs as a script with -S -I (no site, no environment, no sandbox package), so
it imports only the standard library and its sibling _teardown.py.
"""
import os
import select
import signal
import subprocess
import sys

BYE = b"bye"
TAG = "sandbox.cgroups.reaper"  # in the command line, so ps and leak checks can tell it apart
CLEANUP_TIMEOUT = 10.0


class Reaper:
    """Supervisor-side handle of a running reaper process."""

    def __init__(self, proc, write_fd):
        self.proc = proc
        self._write_fd = write_fd

    @classmethod
    def start(cls, version, parent_dirs, freezer_dir=None):
        """Start the reaper for `parent_dirs`.  Call it before creating them, so
        there is no moment where they exist without a reaper."""
        exe = os.path.realpath(sys.executable) if sys.executable else ""
        if not exe or not os.access(exe, os.X_OK):
            raise OSError(2, "no Python interpreter to run the cgroup reaper with", sys.executable or "")
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        pidfd = -1
        try:
            try:
                pidfd = os.pidfd_open(os.getpid())
            except (AttributeError, OSError):
                pidfd = -1  # pipe EOF alone then signals death
            argv = [exe, "-S", "-I", os.path.abspath(__file__), "--tag", TAG, "--pipe", str(read_fd),
                    "--version", str(version)]
            if pidfd >= 0:
                argv += ["--pidfd", str(pidfd)]
            if freezer_dir:
                argv += ["--freezer", freezer_dir]
            for d in parent_dirs:
                argv += ["--dir", d]
            proc = subprocess.Popen(argv, pass_fds=tuple(fd for fd in (read_fd, pidfd) if fd >= 0),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd="/",
                                    start_new_session=True)
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
            if pidfd >= 0:
                os.close(pidfd)
        return cls(proc, write_fd)

    def finish(self, clean, timeout=2.0):
        """Tell the reaper we are done.  clean=True: everything is removed, it
        exits without touching anything.  clean=False: it cleans up what is left.
        Waits at most `timeout` for it; a clean reaper that does not exit by then
        is killed (it is our own child)."""
        if self._write_fd < 0:
            return
        try:
            if clean:
                os.write(self._write_fd, BYE)
        except OSError:
            pass
        finally:
            os.close(self._write_fd)
            self._write_fd = -1
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if clean:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- reaper side
def _parse(argv):
    opts = {"dirs": [], "pidfd": -1, "freezer": None}
    it = iter(argv)
    for flag in it:
        value = next(it)
        if flag == "--pipe":
            opts["pipe"] = int(value)
        elif flag == "--pidfd":
            opts["pidfd"] = int(value)
        elif flag == "--version":
            opts["version"] = int(value)
        elif flag == "--freezer":
            opts["freezer"] = value
        elif flag == "--dir":
            opts["dirs"].append(value)
        elif flag == "--tag":
            pass
        else:
            raise SystemExit(f"sandbox cgroup reaper: unknown option {flag}")
    return opts


def _log(msg):
    try:
        sys.stderr.write(f"sandbox cgroup reaper[{os.getpid()}]: {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _drain(fd, buf):
    """Read what is there; returns (buf, eof)."""
    try:
        data = os.read(fd, 64)
    except BlockingIOError:
        return buf, False
    return (buf + data, False) if data else (buf, True)


def wait_for_verdict(pipe_fd, pidfd):
    """Block until the supervisor says bye (True) or dies without it (False)."""
    os.set_blocking(pipe_fd, False)
    poller = select.poll()
    poller.register(pipe_fd, select.POLLIN)
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    buf = b""
    while True:
        events = dict(poller.poll())
        if pipe_fd in events:
            buf, eof = _drain(pipe_fd, buf)
            if eof:
                return BYE in buf
        elif pidfd in events:
            buf, _eof = _drain(pipe_fd, buf)  # a bye written just before exiting still counts
            return BYE in buf


def cleanup(version, dirs, freezer_dir):
    import _teardown  # sibling module, on sys.path via main()

    if version == 2:
        def kill_pass(busy):
            for d in busy:
                _teardown.kill_v2(d)
    else:
        def kill_pass(busy):
            _teardown.kill_v1(busy, freezer_dir if freezer_dir in busy else None)
    existing = [d for d in dirs if os.path.isdir(d)]
    if not existing:
        return
    kill_pass(existing)
    _teardown.remove_dirs(existing, kill_pass, CLEANUP_TIMEOUT)


def main(argv=None):
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # outlive the supervisor's session and its stop signals
    opts = _parse(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if wait_for_verdict(opts["pipe"], opts["pidfd"]):
        return 0
    try:
        cleanup(opts["version"], opts["dirs"], opts["freezer"])
    except OSError as exc:
        _log(f"supervisor died; cleanup failed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
