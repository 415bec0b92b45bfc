"""Detection of v1 / v2 / hybrid layouts from /proc texts plus a temporary
directory playing the cgroup filesystem (no root)."""
import dataclasses
import os

import pytest

from sandbox.cgroups import CgroupHost, detect_cgroups
from sandbox.cgroups._fakefs import build_v1_tree, build_v2_tree, populate
from sandbox.cgroups.host import host_from_texts
from sandbox.errors import CgroupSetupError


def test_v1_host_layout(tmp_path):
    root = str(tmp_path)
    cg, mi, _fs = build_v1_tree(root)
    host = host_from_texts(cg, mi, fs_root=root)
    assert host.version == 1
    assert host.own_path("memory") == root + "/sys/fs/cgroup/memory/process_api/abc"
    assert host.own_path("cpu") == root + "/sys/fs/cgroup/cpu"
    assert host.mount("pids") == root + "/sys/fs/cgroup/pids"
    assert {"memory", "cpu", "cpuacct", "pids", "freezer"} <= host.controllers
    assert host.features == {"memsw", "freezer"}
    assert host.unified_path == root + "/sys/fs/cgroup/unified"  # hybrid: hugetlb-only cgroup2 is ignored


def test_v1_without_memsw_or_freezer(tmp_path):
    root = str(tmp_path)
    cg, mi, _fs = build_v1_tree(root, memsw=False, freezer=False)
    host = host_from_texts(cg, mi, fs_root=root)
    assert "memsw" not in host.features and "freezer" not in host.features
    assert "swap" in host_from_texts(cg, mi, fs_root=root, swap=True).features


def test_v1_comounted_cpu_cpuacct_share_one_dir(tmp_path):
    root = str(tmp_path)
    cg, mi, _fs = build_v1_tree(root, comount_cpu=True, own={"memory": "/m", "cpu": "/c"})
    host = host_from_texts(cg, mi, fs_root=root)
    assert host.own_path("cpu") == host.own_path("cpuacct") == root + "/sys/fs/cgroup/cpu,cpuacct/c"


def test_v2_root_and_nested_own_cgroup(tmp_path):
    root = str(tmp_path)
    cg, mi, _fs = build_v2_tree(root, own="/system.slice/sup.service")
    host = host_from_texts(cg, mi, fs_root=root)
    assert host.version == 2
    assert host.unified_path == root + "/sys/fs/cgroup/system.slice/sup.service"
    assert host.own_path("memory") == host.unified_path
    assert host.delegated == {"cpu", "memory", "pids"}
    assert {"cgroup.kill", "memory.peak", "memsw", "cgroup.freeze"} <= host.features


def test_v2_old_kernel_features(tmp_path):
    root = str(tmp_path)
    cg, mi, _fs = build_v2_tree(root, own="/x", files_missing=("cgroup.kill", "memory.peak"))
    host = host_from_texts(cg, mi, fs_root=root)
    assert "cgroup.kill" not in host.features and "memory.peak" not in host.features


def test_v2_container_mount_root(tmp_path):
    """A container that sees only its own subtree: mount root /ctr, own path /ctr/app."""
    root = str(tmp_path)
    os.makedirs(root + "/sys/fs/cgroup/app")
    populate(root + "/sys/fs/cgroup/app", {"cgroup.controllers": "memory pids cpu\n",
                                           "cgroup.subtree_control": "memory pids cpu\n"})
    mi = "31 24 0:27 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    host = host_from_texts("0::/ctr/app\n", mi, fs_root=root)
    assert host.unified_path == root + "/sys/fs/cgroup/app"


def test_own_cgroup_not_visible_is_an_error(tmp_path):
    mi = "31 24 0:27 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    with pytest.raises(CgroupSetupError, match="no cgroup hierarchy"):
        host_from_texts("0::/elsewhere\n", mi, fs_root=str(tmp_path))


def test_no_cgroup_mounts_is_an_error():
    with pytest.raises(CgroupSetupError) as exc:
        host_from_texts("0::/\n", "22 1 0:5 / /proc rw - proc proc rw\n")
    assert exc.value.errno == 2 and exc.value.hint


def test_detect_reads_proc_seam(tmp_path):
    root = str(tmp_path)
    cg, mi, _fs = build_v1_tree(root)
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cg)
    (proc / "self" / "mountinfo").write_text(mi)
    (proc / "swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n/swap file 1 0 -2\n")
    host = detect_cgroups(proc=str(proc), fs_root=root)
    assert host.version == 1 and "swap" in host.features


def test_host_is_frozen(tmp_path):
    cg, mi, _fs = build_v1_tree(str(tmp_path))
    host = host_from_texts(cg, mi, fs_root=str(tmp_path))
    assert isinstance(host, CgroupHost)
    with pytest.raises(dataclasses.FrozenInstanceError):
        host.version = 2
    assert "cgroup v1" in host.describe()
