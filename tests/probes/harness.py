"""Host-side helpers for the kernel and hostile tests (this file is never run
inside a sandbox, although it is visible there like every file in tests/probes).

    result, out = run_probe(probe_config(), "inspect_self.py")

runs ``python3 -B /probes/inspect_self.py`` in a real sandbox and returns the
Result and the JSON object the probe printed last (None if it printed none).
"""
from __future__ import annotations

import json
import os
import sys

import pytest

import sandbox

PROBES = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(PROBES))
REAL_PYTHON = os.path.realpath(sys.executable)
# Inside, `python3` is the same interpreter (its bin dir is first in PATH).
PY = ("python3", "-B")


def probe_argv(script: str, *args: str) -> list[str]:
    return [*PY, f"/probes/{script}", *args]


def last_json(data: bytes | None):
    for line in reversed((data or b"").decode(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def run_probe(config: sandbox.Config, script: str, *args: str, input: bytes | None = None,
              pass_fds=()) -> tuple[sandbox.Result, dict | None]:
    if ZYGOTE_MODE and zygote_capable(config):
        return _run_probe_from_zygote(config, script, *args, input=input, pass_fds=pass_fds)
    result = sandbox.run(probe_argv(script, *args), config, input=input, pass_fds=pass_fds)
    return result, last_json(result.stdout)


def zygote_capable(config: sandbox.Config) -> bool:
    """A zygote forks only sandboxes with user and pid namespaces (it holds no
    host capability; init is always on), on their own network namespace."""
    return config.enabled("pid") and config.enabled("user") and config.net in ("loopback", "none")


ZYGOTE_MODE = os.environ.get("SANDBOX_TEST_ZYGOTE") == "1"
# For tests of the command-is-pid-1 layout, which a zygote-made sandbox never
# has (it always runs init; tests/kernel/test_isolation_init.py covers that one).
pid1_layout = pytest.mark.skipif(ZYGOTE_MODE, reason="SANDBOX_TEST_ZYGOTE=1: zygote-made sandboxes always run "
                                 "init, so the command is pid 2 (test_isolation_init.py covers that layout)")


def _run_probe_from_zygote(config, script, *args, input=None, pass_fds=()):
    """SANDBOX_TEST_ZYGOTE=1: the same probe in a sandbox forked from a zygote
    (sandbox/zygote), so the isolation and hostile suites check zygote-made
    sandboxes too.  Probes run as `python -S -B -u`, as the runtime does; the
    one third-party module they use (pyroute2) is preloaded by the zygote."""
    from dataclasses import replace

    import sandbox.supervisor
    from sandbox.zygote import ZygoteKind, close_service, spawn

    kind = ZygoteKind(REAL_PYTHON, PROBES, (), ("pyroute2",))
    config = replace(config, init=True, pids=max(config.pids, 2))
    try:
        box = spawn([REAL_PYTHON, "-S", "-B", "-u", f"/probes/{script}", *args], config, kind,
                    stdin=sandbox.PIPE if input else sandbox.DEVNULL, stdout=sandbox.PIPE, stderr=sandbox.PIPE,
                    pass_fds=pass_fds)
        try:
            result = box.communicate(input)
        except BaseException:
            box.close()
            raise
    finally:
        # The zygote (and its cgroup) would outlive the test and count as a
        # leak: one per probe run, as a fresh sandbox is.
        close_service(sandbox.supervisor.default_supervisor())
    return result, last_json(result.stdout)


def expect_probe(config: sandbox.Config, script: str, *args: str, **kw) -> dict:
    """run_probe, asserting the probe exited 0 and printed its JSON."""
    result, out = run_probe(config, script, *args, **kw)
    assert result.exit_code == 0 and out is not None, (
        f"probe {script} {args} failed: {result.returncode=}\n"
        f"stdout: {result.stdout[-2000:]!r}\nstderr: {result.stderr[-4000:]!r}")
    return out


def host_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def pids_in_pid_namespace(ns_link: str) -> set[int]:
    """Host pids of every process whose pid namespace is `ns_link` ("pid:[N]")."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns_link:
                    found.add(int(entry))
            except OSError:
                continue
    return found


def sandbox_env() -> dict:
    """Environment for a host subprocess that imports the sandbox package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env



def cgroup_dirs_of_supervisor(pid: int) -> list[str]:
    """Cgroup directories a supervisor with host pid `pid` made below our own
    cgroups (named <prefix>-<pid>-<random> by sandbox.cgroups)."""
    found = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for ctrl in controllers.split(",") if controllers else ["unified"]:
                base = os.path.join("/sys/fs/cgroup", ctrl, path.lstrip("/"))
                if ctrl == "unified" and not os.path.isdir(base):
                    base = os.path.join("/sys/fs/cgroup", path.lstrip("/"))
                try:
                    names = os.listdir(base)
                except OSError:
                    continue
                found += [os.path.join(base, n) for n in names if f"-{pid}-" in n]
    return sorted(set(found))


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _dead_or_dying(pid: int) -> bool:
    """Gone, a zombie, or with SIGKILL pending (it runs no user code again;
    the kernel only finishes its exit)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return True
    pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    return fields["State"].split()[0] in ("Z", "X") or bool(pending & (1 << (9 - 1)))  # SIGKILL is 9


def kill_supervisor_and_check(out_dir: str, daemons: int = 1, from_thread: bool = False,
                              disable: tuple[str, ...] = (), kill_s: float = 2.0, gone_s: float = 5.0) -> None:
    """Start tests/probes/host_supervisor.py (its sandbox leaves `daemons`
    double-forked daemons writing heartbeats into out_dir) and SIGKILL it.
    Then: within kill_s every process of the sandbox is dead or dying (SIGKILL
    pending) and the heartbeats stop; within gone_s they have all exited (the
    kernel's namespace teardown after the kill takes 1-1.8 s on the 2-CPU test
    VM) and the supervisor's reaper has removed its cgroups."""
    import select
    import signal
    import subprocess
    import time

    argv = [REAL_PYTHON, os.path.join(PROBES, "host_supervisor.py"), out_dir, "--daemons", str(daemons)]
    for layer in disable:
        argv += ["--disable", layer]
    proc = subprocess.Popen(argv + (["--from-thread"] if from_thread else []), stdout=subprocess.PIPE,
                            env=sandbox_env())
    beats = [os.path.join(out_dir, f"hb{i}") for i in range(daemons)]
    pidfd = -1
    try:
        line = proc.stdout.readline()
        assert line, f"the supervisor died on its own: {proc.wait()}"
        pid = json.loads(line)["pid"]
        pidfd = os.pidfd_open(pid)
        deadline = time.monotonic() + 15
        while not all(_read(b) for b in beats) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(_read(b) for b in beats), "the daemons never started"
        if from_thread:
            seen = [_read(b) for b in beats]
            time.sleep(0.3)
            assert not select.select([pidfd], [], [], 0)[0], "the sandbox died with the thread that spawned it"
            assert [_read(b) for b in beats] != seen, "the daemons stopped with the spawning thread"
        ns = os.readlink(f"/proc/{pid}/ns/pid")
        members = pids_in_pid_namespace(ns)
        assert len(members) >= 1 + daemons, f"expected pid 1 and {daemons} daemon(s), saw {members}"
    except BaseException:
        proc.kill()
        proc.wait()
        if pidfd >= 0:
            os.close(pidfd)
        raise
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < kill_s:
            if all(_dead_or_dying(p) for p in pids_in_pid_namespace(ns)):
                break
            time.sleep(0.01)
        running = {p for p in pids_in_pid_namespace(ns) if not _dead_or_dying(p)}
        assert not running, f"sandbox processes not killed {kill_s} s after the supervisor died: {running}"
        last = [_read(b) for b in beats]
        time.sleep(0.2)
        assert [_read(b) for b in beats] == last, "a heartbeat goes on"
        while pids_in_pid_namespace(ns) and time.monotonic() - killed_at < gone_s:
            time.sleep(0.02)
        left = pids_in_pid_namespace(ns)
        assert not left, f"sandbox processes still exist {gone_s} s after the supervisor died: {left}"
        assert select.select([pidfd], [], [], 0)[0], f"sandbox pid {pid} is still alive"
        while cgroup_dirs_of_supervisor(proc.pid) and time.monotonic() - killed_at < gone_s:
            time.sleep(0.05)
        assert not cgroup_dirs_of_supervisor(proc.pid), "the supervisor's cgroups outlived it (reaper)"
    finally:
        # If the check failed the sandbox may still run, orphaned: end it
        # (its pid 1, pinned by our pidfd; the pid namespace goes with it).
        if not select.select([pidfd], [], [], 0)[0]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 5)
        os.close(pidfd)
