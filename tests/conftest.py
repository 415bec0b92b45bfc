"""Shared fixtures: leak checks around every test that runs sandboxes, probes,
and the markers of the three test tiers.

Tiers: tests/unit (no root, no kernel features), tests/kernel (real sandboxes,
checked from inside with probes), tests/hostile (adversarial payloads)."""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REAL_PYTHON = os.path.realpath(sys.executable)


def pytest_configure(config):
    for marker, text in (
        ("kernel", "runs real sandboxes on this kernel (needs root or user namespaces)"),
        ("hostile", "adversarial payloads that try to escape or exhaust the sandbox"),
        ("cgroupv2", "exercises the cgroup v2 backend; runs for real only on a v2 host (tests/v2vm)"),
        ("v2vm", "boots a QEMU VM with a cgroup v2 kernel"),
        ("slow", "takes more than a few seconds"),
    ):
        config.addinivalue_line("markers", f"{marker}: {text}")


def _own_cgroup_dirs():
    """Every directory below our own cgroup in each hierarchy we might use."""
    found = set()
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for ctrl in controllers.split(",") if controllers else [""]:
                base = {"": "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"}.get(
                    ctrl, f"/sys/fs/cgroup/{ctrl}")
                root = os.path.join(base, path.lstrip("/"))
                if not os.path.isdir(root):
                    continue
                for dirpath, dirnames, _ in os.walk(root):
                    for d in dirnames:
                        full = os.path.join(dirpath, d)
                        # Only this process's supervisor: other processes may run sandboxes too.
                        if f"sandbox-{os.getpid()}-" in full[len(root):]:
                            found.add(full)
    return found


def _descendant_pids():
    me = os.getpid()
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = set(), {me}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier and pid not in out}
        out |= frontier
    return out


def _mounts():
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split(" - ")[0].split(" ", 4)[4] for line in f)


def _net_namespaces_held():
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("net:"):
            held.add(target)
    return held


class LeakSnapshot:
    def __init__(self):
        self.pids = _descendant_pids()
        self.mounts = _mounts()
        self.netns = _net_namespaces_held()
        self.leaf_cgroups = {d for d in _own_cgroup_dirs() if os.path.basename(os.path.dirname(d)).startswith("sandbox-")}

    def diff(self, later: "LeakSnapshot") -> list[str]:
        problems = []
        new_pids = later.pids - self.pids
        # The cgroup reaper is a long-lived helper of the supervisor, not a sandbox.
        new_pids = {p for p in new_pids if not _is_reaper(p)}
        if new_pids:
            problems.append(f"processes left: {sorted(new_pids)}")
        if later.mounts != self.mounts:
            problems.append(f"mounts changed: {sorted(set(later.mounts) ^ set(self.mounts))}")
        if later.leaf_cgroups - self.leaf_cgroups:
            problems.append(f"sandbox cgroups left: {sorted(later.leaf_cgroups - self.leaf_cgroups)}")
        return problems


def _is_reaper(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"sandbox.cgroups.reaper" in f.read()
    except OSError:
        return True  # already gone


def _drain_supervisor():
    """Pre-made sandboxes and spare cgroups are kept on purpose; discard them so
    that what remains is exactly what leaked."""
    from sandbox.supervisor import default_supervisor

    sup = default_supervisor()
    sup.drain_pool()
    return sup


def _spare_cgroups(sup):
    manager = getattr(sup, "_cgroups", None)
    return set(manager.spare_paths()) if manager is not None and hasattr(manager, "spare_paths") else set()


def assert_no_leaks(before: LeakSnapshot, netns_before: set | None = None) -> None:
    """Compare with `before` (taken after _drain_supervisor()): no process,
    mount or sandbox cgroup may be left, nor (when given) a network namespace
    held beyond `netns_before`.  Teardown is asynchronous in places, so the
    check is retried for up to 5 s."""
    import time

    sup = _drain_supervisor()
    deadline = time.monotonic() + 5
    while True:
        after = LeakSnapshot()
        after.leaf_cgroups -= _spare_cgroups(sup)
        problems = before.diff(after)
        if netns_before is not None and _net_namespaces_held() - netns_before:
            problems.append("network namespaces held")
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not problems, "; ".join(problems)


def leak_checked_runtime(**kwargs):
    """A sandbox.Runtime for a module-scoped fixture (use as a generator:
    `yield from conftest.leak_checked_runtime(...)`): after it is closed, its
    state directory is gone and nothing of it is left (assert_no_leaks)."""
    import sandbox

    _drain_supervisor()
    before, netns = LeakSnapshot(), _net_namespaces_held()
    runtime = sandbox.Runtime(**kwargs)
    try:
        yield runtime
    finally:
        runtime.close()
    assert not os.path.exists(runtime.state_dir)
    assert_no_leaks(before, netns)


def zip_of(files: dict) -> bytes:
    """Zip bytes of {name: text}: a code package or layer for the function tests."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


@pytest.fixture(scope="module")
def sink():
    """One RecordingSink per test module (for a module-scoped Runtime's log_sink)."""
    return RecordingSink()


class RecordingSink:
    """A function log sink that keeps every InvocationLog by request id."""

    def __init__(self):
        import threading

        self.records = {}
        self.lock = threading.Lock()

    def __call__(self, record):
        with self.lock:
            self.records[record.request_id] = record


@pytest.fixture
def no_leaks():
    """Asserts that the test left no processes, mounts or sandbox cgroups."""
    _drain_supervisor()
    before = LeakSnapshot()
    yield
    assert_no_leaks(before)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_at_exit():
    """After the whole session and the default supervisor's close(): no cgroup
    of ours at all (not even an empty parent) and no network namespace held."""
    yield
    from sandbox.supervisor import default_supervisor

    default_supervisor().close()
    leftovers = _own_cgroup_dirs()
    assert not leftovers, f"cgroups left after close(): {sorted(leftovers)}"
    assert not _net_namespaces_held(), "network namespaces still held after close()"


@pytest.fixture
def probe_path():
    """Path of tests/probes/NAME.py, readable inside a sandbox through a bind."""
    return lambda name: os.path.join(HERE, "probes", name)


@pytest.fixture
def probe_config():
    """A Config that binds tests/probes read-only at /probes."""
    from sandbox import Config

    def make(**kwargs):
        binds = list(kwargs.pop("binds", ())) + [f"{os.path.join(HERE, 'probes')}:/probes"]
        return Config.create(binds=binds, **kwargs)

    return make


def requires_sandbox_privileges():
    from sandbox.host import detect

    host = detect()
    return pytest.mark.skipif(not (host.privileged or host.user_namespaces),
                              reason="needs root or unprivileged user namespaces")
