"""CgroupManager / SandboxCgroup against a temporary directory acting as the
cgroup root (sandbox.cgroups._fakefs), v1 and v2 layouts, no root, no reaper."""
import errno
import os

import pytest

from sandbox.cgroups import CgroupLimits, CgroupStats, open_manager
from sandbox.cgroups import manager as manager_mod
from sandbox.cgroups._fakefs import build_v1_tree, build_v2_tree
from sandbox.cgroups.host import host_from_texts
from sandbox.errors import CgroupSetupError, ConfigError

MiB = 1 << 20
LIMITS = CgroupLimits(memory_bytes=256 * MiB, cpus=0.5, pids_max=64)
# A pid no kernel hands out (above the 2^22 maximum of pid_max): safe if a kill path reads it.
NO_SUCH_PID = "99999999\n"


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def left_below(own_dirs):
    """Every directory below our own cgroups (should be none after a test)."""
    return [os.path.join(dp, d) for own in own_dirs for dp, dns, _ in os.walk(own) for d in dns]


@pytest.fixture
def v1(tmp_path):
    root = str(tmp_path)
    cg, mi, fs = build_v1_tree(root)
    host = host_from_texts(cg, mi, fs_root=root)
    own = sorted({p for _c, p in host.own_paths})
    yield host, fs, own
    assert left_below(own) == [], "a test left cgroup directories behind"


@pytest.fixture
def v2(tmp_path):
    root = str(tmp_path)
    cg, mi, fs = build_v2_tree(root, own="/supervisor.service")
    host = host_from_texts(cg, mi, fs_root=root)
    yield host, fs
    assert left_below([host.unified_path]) == []


def test_v1_layout_limits_and_fds(v1):
    host, fs, _own = v1
    with open_manager(host, fs=fs, reaper=False, name_prefix="lam") as m:
        cg = m.create(LIMITS)
        mem, pids, cpu, acct, frz = cg.dirs
        name = f"lam-{os.getpid()}-"
        assert os.path.basename(os.path.dirname(mem)).startswith(name)
        assert mem.startswith(host.own_path("memory") + "/" + name) and mem.endswith("/sb1")
        assert pids.startswith(host.own_path("pids") + "/") and frz.startswith(host.own_path("freezer") + "/")
        assert read(mem + "/memory.limit_in_bytes") == str(256 * MiB)
        assert read(mem + "/memory.memsw.limit_in_bytes") == str(256 * MiB)
        assert read(cpu + "/cpu.cfs_period_us") == "100000"
        assert read(cpu + "/cpu.cfs_quota_us") == "50000"
        assert read(pids + "/pids.max") == "64"
        assert read(mem + "/memory.oom_control").startswith("oom_kill_disable 0")  # untouched
        assert cg.clone_fd == -1 and len(cg.procs_fds) == 5
        for fd, d in zip(cg.procs_fds, cg.dirs):
            assert os.readlink(f"/proc/self/fd/{fd}") == d + "/cgroup.procs"
            assert os.get_inheritable(fd) is False
        cg.release_attach_fds()
        assert cg.procs_fds == ()
        cg.destroy()
        assert not any(os.path.exists(d) for d in cg.dirs)
        cg.destroy()  # idempotent
    assert not any(os.path.exists(d) for d in m.parent_dirs)


def test_v1_stats_parsed_from_files(v1):
    host, fs, _own = v1
    with open_manager(host, fs=fs, reaper=False) as m:
        cg = m.create(LIMITS)
        mem, pids, _cpu, acct, _frz = cg.dirs
        write(mem + "/memory.memsw.max_usage_in_bytes", "123456789\n")
        write(mem + "/memory.max_usage_in_bytes", "100000000\n")
        write(mem + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
        write(acct + "/cpuacct.usage", "987654321\n")
        write(pids + "/pids.current", "3\n")
        assert cg.stats() == CgroupStats(memory_peak_bytes=123456789, cpu_time_ns=987654321, oom_kills=2,
                                         pids_current=3)


def test_v1_without_memsw_uses_ram_peak(tmp_path):
    root = str(tmp_path)
    cg_text, mi, fs = build_v1_tree(root, memsw=False, freezer=False)
    host = host_from_texts(cg_text, mi, fs_root=root)
    with open_manager(host, fs=fs, reaper=False) as m:
        cg = m.create(LIMITS)
        assert len(cg.dirs) == 4  # memory, pids, cpu, cpuacct
        assert not os.path.exists(cg.dirs[0] + "/memory.memsw.limit_in_bytes")
        write(cg.dirs[0] + "/memory.max_usage_in_bytes", "4242\n")
        assert cg.stats().memory_peak_bytes == 4242


def test_v1_swap_without_memsw_fails_closed(tmp_path):
    root = str(tmp_path)
    cg_text, mi, fs = build_v1_tree(root, memsw=False)
    host = host_from_texts(cg_text, mi, fs_root=root, swap=True)
    with pytest.raises(CgroupSetupError, match="cannot exclude swap") as exc:
        open_manager(host, fs=fs, reaper=False)
    assert "swapaccount=1" in exc.value.hint


def test_v1_comounted_cpu_cpuacct(tmp_path):
    root = str(tmp_path)
    cg_text, mi, fs = build_v1_tree(root, comount_cpu=True)
    host = host_from_texts(cg_text, mi, fs_root=root)
    with open_manager(host, fs=fs, reaper=False) as m:
        cg = m.create(LIMITS)
        assert len(cg.dirs) == 4 and len(cg.procs_fds) == 4
        cpu_dir = [d for d in cg.dirs if "cpu,cpuacct" in d][0]
        assert read(cpu_dir + "/cpu.cfs_quota_us") == "50000"
        assert cg.stats().cpu_time_ns == 0


def test_v1_missing_controller_fails_at_open(tmp_path):
    root = str(tmp_path)
    cg_text, mi, fs = build_v1_tree(root)
    mi = "\n".join(line for line in mi.splitlines() if "cgroup/pids" not in line)
    host = host_from_texts(cg_text, mi, fs_root=root)
    with pytest.raises(CgroupSetupError, match="pids") as exc:
        open_manager(host, fs=fs, reaper=False)
    assert exc.value.errno == errno.ENOENT
    assert fs.calls == []  # validated before any side effect


def test_missing_limit_file_names_controller_and_path(v1):
    host, fs, _own = v1
    fs.mounts = {k: {f: c for f, c in v.items() if f != "pids.max"} for k, v in fs.mounts.items()}
    with open_manager(host, fs=fs, reaper=False, spares=0) as m:
        with pytest.raises(CgroupSetupError) as exc:
            m.create(LIMITS)
        assert exc.value.errno == errno.ENOENT
        assert "pids:" in str(exc.value) and "/pids.max" in str(exc.value) and "write 64" in str(exc.value)
        assert m.open_cgroups() == []


def test_spares_are_used_and_refilled(v1):
    host, fs, _own = v1
    with open_manager(host, fs=fs, reaper=False, spares=2) as m:
        first = m.create(LIMITS)
        assert len(m.spare_paths()) == 5  # one spare left, in 5 hierarchies
        mkdirs = len([c for c in fs.calls if c[0] == "mkdir"])
        second = m.create(LIMITS)  # from the spare: no mkdir on the hot path
        assert len([c for c in fs.calls if c[0] == "mkdir"]) == mkdirs
        third = m.create(LIMITS)  # spares exhausted: inline mkdir
        assert len({first.dirs, second.dirs, third.dirs}) == 3
        for cg in (first, second, third):
            cg.destroy()
        assert len(m.spare_paths()) == 10
        assert not (m.spare_paths() & set(first.dirs + second.dirs + third.dirs))


def test_close_destroys_open_cgroups_and_is_idempotent(v1):
    host, fs, _own = v1
    m = open_manager(host, fs=fs, reaper=False)
    cgs = [m.create(LIMITS) for _ in range(3)]
    m.close()
    m.close()
    assert all(not os.path.exists(d) for cg in cgs for d in cg.dirs)
    with pytest.raises(CgroupSetupError, match="closed"):
        m.create(LIMITS)


def test_close_without_create_touches_nothing(v1):
    host, fs, _own = v1
    open_manager(host, fs=fs, reaper=False).close()
    assert fs.calls == []


def test_busy_cgroup_destroy_times_out_with_typed_error(v1, monkeypatch):
    host, fs, _own = v1
    monkeypatch.setattr(manager_mod, "DESTROY_TIMEOUT", 0.05)
    m = open_manager(host, fs=fs, reaper=False)
    cg = m.create(LIMITS)
    write(cg.dirs[1] + "/cgroup.procs", NO_SUCH_PID)  # looks busy, kill finds no such process
    with pytest.raises(CgroupSetupError) as exc:
        cg.destroy()
    assert exc.value.errno == errno.EBUSY and cg.dirs[1] in str(exc.value)
    assert m.open_cgroups() == [cg]  # still tracked: close() tries again
    write(cg.dirs[1] + "/cgroup.procs", "")
    m.close()
    assert not os.path.exists(cg.dirs[1])


def test_create_rejects_wrong_type_and_bad_prefix(v1):
    host, fs, _own = v1
    with pytest.raises(ConfigError):
        open_manager(host, fs=fs, reaper=False, name_prefix="../x")
    with open_manager(host, fs=fs, reaper=False) as m:
        with pytest.raises(TypeError):
            m.create({"memory_bytes": 1})


def test_close_in_forked_child_is_a_no_op(v1):
    host, fs, _own = v1
    with open_manager(host, fs=fs, reaper=False) as m:
        cg = m.create(LIMITS)
        pid = os.fork()
        if pid == 0:
            try:
                m.close()
                os._exit(0 if os.path.exists(cg.dirs[0]) else 1)
            finally:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.path.exists(cg.dirs[0])


# ----------------------------------------------------------------------- v2
@pytest.mark.cgroupv2
def test_v2_layout_limits_subtree_and_clone_fd(v2):
    host, fs = v2
    with open_manager(host, fs=fs, reaper=False) as m:
        (parent,) = m.parent_dirs
        cg = m.create(LIMITS)
        assert read(parent + "/cgroup.subtree_control") == "+memory +cpu +pids" or \
            set(read(parent + "/cgroup.subtree_control").split()) == {"+memory", "+cpu", "+pids"}
        (d,) = cg.dirs
        assert os.path.dirname(d) == parent and parent.startswith(host.unified_path + "/sandbox-")
        assert read(d + "/memory.max") == str(256 * MiB)
        assert read(d + "/memory.swap.max") == "0"
        assert read(d + "/memory.oom.group") == "1"
        assert read(d + "/cpu.max") == "50000 100000"
        assert read(d + "/pids.max") == "64"
        assert cg.procs_fds == () and cg.clone_fd >= 0
        assert os.readlink(f"/proc/self/fd/{cg.clone_fd}") == d
        assert os.get_inheritable(cg.clone_fd) is False
        write(d + "/memory.peak", "5555\n")
        write(d + "/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
        write(d + "/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
        write(d + "/pids.current", "2\n")
        assert cg.stats() == CgroupStats(5555, 1_500_000, 1, 2)
        cg.kill()  # writes cgroup.kill
        assert read(d + "/cgroup.kill") == "1"
        cg.release_attach_fds()
        assert cg.clone_fd == -1
        cg.destroy()
        assert not os.path.exists(d)


@pytest.mark.cgroupv2
def test_v2_without_memory_peak_reports_minus_one(tmp_path):
    root = str(tmp_path)
    cg_text, mi, fs = build_v2_tree(root, own="/s", files_missing=("memory.peak", "cgroup.kill"))
    host = host_from_texts(cg_text, mi, fs_root=root)
    with open_manager(host, fs=fs, reaper=False) as m:
        cg = m.create(LIMITS)
        assert cg.stats().memory_peak_bytes == -1
        cg.kill()  # no cgroup.kill, empty cgroup: nothing to do
        cg.destroy()


@pytest.mark.cgroupv2
def test_v2_controller_not_delegated(tmp_path):
    root = str(tmp_path)
    cg_text, mi, fs = build_v2_tree(root, own="/user.slice/app.service", subtree="cpu pids")
    host = host_from_texts(cg_text, mi, fs_root=root)
    with pytest.raises(CgroupSetupError) as exc:
        open_manager(host, fs=fs, reaper=False)
    msg = str(exc.value)
    assert "memory" in msg and "not delegated" in msg and "app.service/cgroup.subtree_control" in msg
    assert "no internal processes" in exc.value.hint or "forbids" in exc.value.hint
    assert fs.calls == []


@pytest.mark.cgroupv2
def test_v2_controller_not_available(tmp_path):
    root = str(tmp_path)
    cg_text, mi, fs = build_v2_tree(root, own="/x", controllers="cpu memory", subtree="cpu memory")
    host = host_from_texts(cg_text, mi, fs_root=root)
    with pytest.raises(CgroupSetupError, match="pids: controller not available"):
        open_manager(host, fs=fs, reaper=False)


@pytest.mark.cgroupv2
def test_v2_leaf_layout_needs_delegated_root(tmp_path):
    """The usual v2 host: our cgroup holds us, so it cannot delegate; the
    cgroup above it does (systemd Delegate=yes, or tests/v2vm's "leaf" layout)."""
    from sandbox.cgroups._fakefs import V2_FILES, populate

    root = str(tmp_path)
    cg_text, mi, fs = build_v2_tree(root, own="/test/runner", subtree="")
    populate(root + "/sys/fs/cgroup/test", {**V2_FILES, "cgroup.controllers": "cpu memory pids\n",
                                            "cgroup.subtree_control": "cpu memory pids\n"})
    host = host_from_texts(cg_text, mi, fs_root=root)
    with pytest.raises(CgroupSetupError, match="not delegated") as exc:
        open_manager(host, fs=fs, reaper=False)
    assert "delegated_root" in exc.value.hint
    with pytest.raises(CgroupSetupError, match="ancestors"):
        open_manager(host, fs=fs, reaper=False, delegated_root=root + "/sys/fs/cgroup/other")
    delegated = root + "/sys/fs/cgroup/test"
    with open_manager(host, fs=fs, reaper=False, delegated_root=delegated + "/") as m:
        cg = m.create(LIMITS)
        assert os.path.dirname(os.path.dirname(cg.dirs[0])) == delegated
        assert read(delegated + "/cgroup.subtree_control") == "cpu memory pids\n"  # never written
        cg.destroy()
    assert sorted(os.listdir(delegated)) == sorted(V2_FILES) + ["runner"]


def test_concurrent_create_destroy_from_threads(v1):
    import threading

    host, fs, _own = v1
    errors = []
    with open_manager(host, fs=fs, reaper=False) as m:
        def worker():
            try:
                for _ in range(10):
                    m.create(LIMITS).destroy()
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and m.open_cgroups() == []
