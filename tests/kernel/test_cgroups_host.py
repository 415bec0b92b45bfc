"""sandbox.cgroups on the real kernel: create, limits read back, a real child
attached, memory limit enforced (OOM), accounting, kill, destroy, close, and
the reaper after a SIGKILLed supervisor.  Every test checks that no cgroup of
ours is left below our own cgroups.

Markers: `kernel` on all; `cgroupv2` on those that also mean something on a
cgroup v2 host (run in the QEMU VM with SANDBOX_TEST_CGROUP2=1); tests of one
version's specifics skip with a reason on the other.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sandbox.cgroups import CgroupLimits, detect_cgroups, open_manager
from sandbox.errors import CgroupSetupError

MiB = 1 << 20
PREFIX = "sbxtest"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = os.path.realpath(sys.executable)

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root on this host"),
]


def _host_or_none():
    try:
        return detect_cgroups()
    except CgroupSetupError:
        return None


HOST = _host_or_none()
# On a v2 host our own cgroup holds us and so cannot delegate controllers; the
# cgroup2 VM (tests/v2vm, "leaf" layout) names the delegated cgroup above it.
DELEGATED = None
if HOST is not None and HOST.version == 2 and not {"memory", "pids", "cpu"} <= HOST.delegated:
    DELEGATED = os.environ.get("V2VM_CGROUP_PARENT") or os.environ.get("SANDBOX_TEST_CGROUP_ROOT")


def _unusable_reason():
    """Why a manager cannot be opened here (validation only, no side effect), or None."""
    if HOST is None:
        return "no cgroup hierarchy for our controllers is mounted"
    try:
        open_manager(HOST, name_prefix=PREFIX, delegated_root=DELEGATED, reaper=False)
    except CgroupSetupError as exc:
        return f"cgroups unusable here: {exc}"
    return None


UNUSABLE = _unusable_reason()
needs_cgroups = pytest.mark.skipif(UNUSABLE is not None, reason=str(UNUSABLE))
only_v1 = pytest.mark.skipif(UNUSABLE is not None or HOST.version != 1,
                             reason="cgroup v1 specifics; this host serves memory/cpu/pids with v2")
only_v2 = pytest.mark.skipif(UNUSABLE is not None or HOST.version != 2,
                             reason="cgroup v2 specifics; this host serves memory/cpu/pids with v1 "
                                    "(run in the cgroup2 VM: tests/v2vm, SANDBOX_TEST_CGROUP2=1)")


def own_dirs():
    dirs = {path for _c, path in HOST.own_paths} | ({HOST.unified_path} if HOST.version == 2 else set())
    return sorted(dirs | ({DELEGATED} if DELEGATED else set()))


def ours():
    """Our test cgroups (any supervisor pid) below our own cgroups."""
    found = []
    for own in own_dirs():
        for entry in os.listdir(own):
            if entry.startswith(PREFIX + "-"):
                for dirpath, _dirs, _files in os.walk(os.path.join(own, entry)):
                    found.append(dirpath)
    return found


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def manager():
    assert ours() == [], "cgroups left over from an earlier run"
    m = open_manager(HOST, name_prefix=PREFIX, delegated_root=DELEGATED)
    try:
        yield m
    finally:
        m.close()
        assert wait_until(lambda: not ours(), 5), f"cgroups left behind: {ours()}"
        assert all(not os.path.exists(d) for d in m.parent_dirs)


def spawn_in(cg, argv):
    """Fork a child that joins `cg` itself (as the C core does: write "0" into
    every procs fd; on v2, into its cgroup.procs) and execs `argv`."""
    pid = os.fork()
    if pid == 0:
        try:
            if cg.procs_fds:
                for fd in cg.procs_fds:
                    os.write(fd, b"0")
            else:
                fd = os.open(cg.dirs[0] + "/cgroup.procs", os.O_WRONLY)
                os.write(fd, b"0")
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    cg.release_attach_fds()
    return pid


def reap(pid, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)  # our own child
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid} did not finish in {timeout}s")
        time.sleep(0.01)


def members(cg):
    pids = set()
    for d in cg.dirs:
        with open(d + "/cgroup.procs") as f:
            pids.update(int(x) for x in f.read().split())
    return pids


def read(path):
    with open(path) as f:
        return f.read().strip()


@pytest.mark.cgroupv2
@pytest.mark.skipif(HOST is None or HOST.version != 2 or {"memory", "pids", "cpu"} <= HOST.delegated,
                    reason="needs a v2 host whose own cgroup does not delegate memory/pids/cpu")
def test_v2_own_cgroup_without_delegation_fails_clearly():
    """The supervisor's own v2 cgroup holds processes, so it cannot delegate;
    without delegated_root that is a clear error, before any side effect."""
    with pytest.raises(CgroupSetupError, match="not delegated") as exc:
        open_manager(HOST, name_prefix=PREFIX, reaper=False)
    assert "delegated_root" in exc.value.hint
    assert ours() == []


@needs_cgroups
@pytest.mark.cgroupv2
def test_create_destroy_leaves_nothing(manager):
    cg = manager.create(CgroupLimits(64 * MiB, 0.5, 16))
    assert all(os.path.isdir(d) for d in cg.dirs)
    for d in cg.dirs:
        assert os.path.dirname(os.path.dirname(d)) in own_dirs()  # <own or delegated>/<parent>/<sandbox>
    cg.release_attach_fds()
    cg.destroy()
    assert not any(os.path.exists(d) for d in cg.dirs)
    cg.destroy()


@only_v1
def test_v1_limits_read_back(manager):
    cg = manager.create(CgroupLimits(96 * MiB, 0.25, 12))
    mem, pids, cpu, acct = (next(d for d in cg.dirs if d.startswith(HOST.own_path(c) + "/"))
                            for c in ("memory", "pids", "cpu", "cpuacct"))
    assert int(read(mem + "/memory.limit_in_bytes")) == 96 * MiB
    if "memsw" in HOST.features:
        assert int(read(mem + "/memory.memsw.limit_in_bytes")) == 96 * MiB
    assert read(mem + "/memory.oom_control").startswith("oom_kill_disable 0")
    assert read(cpu + "/cpu.cfs_period_us") == "100000"
    assert read(cpu + "/cpu.cfs_quota_us") == "25000"
    assert read(pids + "/pids.max") == "12"
    assert len(cg.procs_fds) == len(cg.dirs) and cg.clone_fd == -1
    cg.destroy()


@only_v2
@pytest.mark.cgroupv2
def test_v2_limits_read_back(manager):
    cg = manager.create(CgroupLimits(96 * MiB, 0.25, 12))
    (d,) = cg.dirs
    assert int(read(d + "/memory.max")) == 96 * MiB
    if os.path.exists(d + "/memory.swap.max"):
        assert read(d + "/memory.swap.max") == "0"
    assert read(d + "/memory.oom.group") == "1"
    assert read(d + "/cpu.max") == "25000 100000"
    assert read(d + "/pids.max") == "12"
    assert set(read(manager.parent_dirs[0] + "/cgroup.subtree_control").split()) >= {"memory", "pids", "cpu"}
    assert cg.procs_fds == () and cg.clone_fd >= 0
    assert os.readlink(f"/proc/self/fd/{cg.clone_fd}") == d
    cg.destroy()


@needs_cgroups
@pytest.mark.cgroupv2
def test_child_joins_and_is_accounted(manager):
    cg = manager.create(CgroupLimits(128 * MiB, 1.0, 16))
    code = "b = bytearray(24 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nx = sum(range(3_000_000))"
    pid = spawn_in(cg, [PYTHON, "-S", "-c", code])
    assert wait_until(lambda: pid in members(cg) or os.waitpid(pid, os.WNOHANG)[0], 5)
    status = reap(pid)
    assert os.waitstatus_to_exitcode(status) == 0
    stats = cg.stats()
    assert 24 * MiB <= stats.memory_peak_bytes <= 128 * MiB or stats.memory_peak_bytes == -1
    assert stats.cpu_time_ns > 10_000_000  # the interpreter start alone is more than 10 ms
    assert stats.oom_kills == 0 and stats.pids_current == 0
    cg.destroy()


@needs_cgroups
@pytest.mark.cgroupv2
def test_memory_limit_is_enforced_by_oom_kill(manager):
    cg = manager.create(CgroupLimits(48 * MiB, 1.0, 16))
    code = "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1"
    pid = spawn_in(cg, [PYTHON, "-S", "-c", code])
    status = reap(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    stats = cg.stats()
    assert stats.oom_kills >= 1
    assert stats.memory_peak_bytes <= 48 * MiB + 1 * MiB or stats.memory_peak_bytes == -1
    cg.destroy()


@needs_cgroups
@pytest.mark.cgroupv2
def test_cpu_quota_throttles(manager):
    cg = manager.create(CgroupLimits(64 * MiB, 0.2, 8))
    code = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.0: pass"
    start = time.monotonic()
    pid = spawn_in(cg, [PYTHON, "-S", "-c", code])
    reap(pid)
    wall = time.monotonic() - start
    cpu = cg.stats().cpu_time_ns / 1e9
    assert cpu < 0.2 * wall + 0.15, f"{cpu:.2f}s CPU in {wall:.2f}s wall at a 0.2 CPU quota"
    cg.destroy()


@needs_cgroups
@pytest.mark.cgroupv2
def test_pids_max_stops_fork(manager):
    cg = manager.create(CgroupLimits(64 * MiB, 1.0, 5))
    code = textwrap.dedent("""
        import os, sys, time
        n = 0
        try:
            while n < 50:
                if os.fork() == 0:
                    time.sleep(30); os._exit(0)
                n += 1
        except OSError:
            pass
        sys.exit(n)
    """)
    pid = spawn_in(cg, [PYTHON, "-S", "-c", code])
    forked = os.waitstatus_to_exitcode(reap(pid))
    assert forked == 4, "the parent plus 4 children fill pids.max=5"
    assert cg.stats().pids_current == 4
    cg.destroy()  # kills the sleeping grandchildren


@needs_cgroups
@pytest.mark.cgroupv2
def test_kill_then_destroy_takes_the_whole_tree(manager):
    cg = manager.create(CgroupLimits(64 * MiB, 1.0, 32))
    code = "import os, time\nfor _ in range(5):\n    if os.fork() == 0: break\ntime.sleep(60)"
    pid = spawn_in(cg, [PYTHON, "-S", "-c", code])
    assert wait_until(lambda: len(members(cg)) >= 6, 10)
    victims = members(cg)
    cg.kill()
    status = reap(pid, 10)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    cg.destroy()
    assert not any(os.path.exists(d) for d in cg.dirs)
    for v in victims - {pid}:
        assert not os.path.exists(f"/proc/{v}") or read(f"/proc/{v}/stat").split(") ")[1][0] == "Z"


@needs_cgroups
@pytest.mark.cgroupv2
def test_destroy_without_kill_kills_and_removes(manager):
    cg = manager.create(CgroupLimits(64 * MiB, 1.0, 8))
    pid = spawn_in(cg, ["/bin/sleep", "60"])
    assert wait_until(lambda: pid in members(cg), 5)
    cg.destroy()
    status = reap(pid, 5)
    assert os.WIFSIGNALED(status)
    assert not any(os.path.exists(d) for d in cg.dirs)


@needs_cgroups
@pytest.mark.cgroupv2
def test_close_removes_open_cgroups_and_parents():
    m = open_manager(HOST, name_prefix=PREFIX, delegated_root=DELEGATED)
    cg = m.create(CgroupLimits(64 * MiB, 1.0, 8))
    pid = spawn_in(cg, ["/bin/sleep", "60"])
    assert wait_until(lambda: pid in members(cg), 5)  # joined (else close() may win the race)
    assert all(os.path.isdir(d) for d in m.parent_dirs)
    reaper = m._reaper.proc
    m.close()
    assert reaper.returncode == 0  # told "bye", exited cleanly
    assert os.WIFSIGNALED(reap(pid, 5))
    assert not any(os.path.exists(d) for d in m.parent_dirs)
    assert ours() == []


@only_v1
def test_v1_freezer_kill_is_used(manager):
    if "freezer" not in HOST.features:
        pytest.skip("no v1 freezer hierarchy on this host")
    cg = manager.create(CgroupLimits(64 * MiB, 1.0, 8))
    frz = next(d for d in cg.dirs if d.startswith(HOST.own_path("freezer") + "/"))
    pid = spawn_in(cg, ["/bin/sleep", "60"])
    assert wait_until(lambda: pid in members(cg), 5)
    cg.kill()
    assert os.WIFSIGNALED(reap(pid, 5))
    assert read(frz + "/freezer.state") == "THAWED"
    cg.destroy()


SUPERVISOR = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from sandbox.cgroups import CgroupLimits, open_manager
    m = open_manager(name_prefix={prefix!r}, delegated_root={delegated!r})
    children = []
    for _ in range(2):
        cg = m.create(CgroupLimits(64 << 20, 1.0, 8))
        pid = os.fork()
        if pid == 0:
            for fd in cg.procs_fds:
                os.write(fd, b"0")
            if not cg.procs_fds:
                fd = os.open(cg.dirs[0] + "/cgroup.procs", os.O_WRONLY)
                os.write(fd, b"0")
            os.setsid()  # not in the supervisor's process group
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.execv("/bin/sleep", ["sleep", "60"])
        cg.release_attach_fds()
        children.append(pid)
    print(" ".join(map(str, children)), flush=True)
    print("\\n".join(m.parent_dirs), flush=True)
    time.sleep(60)
""")


@needs_cgroups
@pytest.mark.cgroupv2
def test_reaper_cleans_up_after_supervisor_sigkill():
    assert ours() == []
    sup = subprocess.Popen([PYTHON, "-c", SUPERVISOR.format(root=ROOT, prefix=PREFIX, delegated=DELEGATED)],
                           stdout=subprocess.PIPE, text=True)
    children = []
    try:
        children = [int(p) for p in sup.stdout.readline().split()]
        parents = [sup.stdout.readline().strip() for _ in own_dirs_count()]
        assert len(children) == 2 and all(os.path.isdir(p) for p in parents)
        sup.kill()  # SIGKILL: no close(), no atexit
        sup.wait()
        assert wait_until(lambda: all(_dead(c) for c in children), 5), "sandbox processes survived"
        assert wait_until(lambda: not any(os.path.exists(p) for p in parents), 5), "parent cgroups left"
        assert ours() == []
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
        sup.stdout.close()


def own_dirs_count():
    """How many parent dirs a manager makes here (one per hierarchy it uses)."""
    m = open_manager(HOST, name_prefix=PREFIX, reaper=False, delegated_root=DELEGATED)
    try:
        return m.parent_dirs
    finally:
        m.close()


def _dead(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # gone between open and read
        return True


@needs_cgroups
@pytest.mark.cgroupv2
@pytest.mark.skipif(DELEGATED is not None, reason="the launcher's supervisor does not pass delegated_root yet, "
                    "which this v2 layout needs")
def test_launcher_spawns_into_the_cgroup():
    """End to end with the C core: the child joins through procs_fds (v1) or is
    born in clone_fd (v2), and the memory limit holds."""
    import sandbox

    result = sandbox.run([PYTHON, "-S", "-c", "b = bytearray(200 << 20)"], sandbox.Config(memory_mb=48))
    assert result.oom_killed and result.signal == signal.SIGKILL
    result = sandbox.run([PYTHON, "-S", "-c", "b = bytearray(8 << 20); print(1)"], sandbox.Config(memory_mb=64))
    assert result.exit_code == 0 and not result.oom_killed
