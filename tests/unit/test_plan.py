"""Plans are pure functions of (Config, HostFeatures): checked without root."""
import dataclasses

import pytest

from sandbox.config import Config
from sandbox.constants import kernel_constant as K
from sandbox.errors import ConfigError, HostUnsupportedError
from sandbox.host import HostFeatures, PythonInstall
from sandbox.namespaces import plan_namespaces
from sandbox.network import plan_network
from sandbox.rlimits import plan_rlimits
from sandbox.rootfs import PROC_MASKED_FILES, plan_rootfs

ALL_NS = frozenset({"user", "pid", "net", "uts", "cgroup", "mnt", "ipc"})


def host(**kw):
    base = dict(kernel="6.1", euid=0, egid=0, privileged=True, user_namespaces=True, max_user_namespaces=100,
                seccomp=True, seccomp_filter=True, last_cap=40, namespaces=ALL_NS,
                python=PythonInstall("/opt/py/bin/python3.11", ("/opt/py",), "/opt/py/bin"),
                usr_merged={"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"})
    base.update(kw)
    return HostFeatures(**base)


def test_all_namespaces_by_default():
    ns = plan_namespaces(Config(), host())
    for flag in ("CLONE_NEWNS", "CLONE_NEWPID", "CLONE_NEWNET", "CLONE_NEWIPC", "CLONE_NEWUTS", "CLONE_NEWUSER"):
        assert ns.clone_flags & K(flag), flag
    assert not ns.clone_flags & K("CLONE_NEWCGROUP"), "cgroup ns is unshared after joining the cgroup"
    assert ns.cgroup_ns and ns.user_ns
    assert ns.uid_map == "1000 65534 1\n" and ns.gid_map == "1000 65534 1\n"
    assert not ns.deny_setgroups


def test_unprivileged_maps_own_ids_and_denies_setgroups():
    ns = plan_namespaces(Config(), host(euid=1234, egid=99, privileged=False))
    assert ns.uid_map == "1000 1234 1\n" and ns.gid_map == "1000 99 1\n"
    assert ns.deny_setgroups
    with pytest.raises(HostUnsupportedError, match="only root"):
        plan_namespaces(Config(host_uid=5), host(euid=1234, privileged=False))


def test_disabling_a_layer_removes_exactly_its_flag():
    ns = plan_namespaces(Config(disable=frozenset({"ipc"})), host())
    assert not ns.clone_flags & K("CLONE_NEWIPC")
    assert ns.clone_flags & K("CLONE_NEWPID")


def test_missing_host_features_fail_closed():
    with pytest.raises(HostUnsupportedError, match="user namespaces"):
        plan_namespaces(Config(), host(user_namespaces=False))
    with pytest.raises(HostUnsupportedError, match="net namespaces"):
        plan_namespaces(Config(), host(namespaces=ALL_NS - {"net"}))
    with pytest.raises(HostUnsupportedError, match="root or a user namespace"):
        plan_namespaces(Config(disable=frozenset({"user"})), host(privileged=False, euid=5))


def test_network_modes():
    assert plan_network(Config()) == plan_network(Config(net="loopback"))
    assert plan_network(Config()).loopback_up and plan_network(Config()).private_namespace
    assert not plan_network(Config(net="none")).loopback_up
    assert not plan_network(Config(disable=frozenset({"net"}))).private_namespace


def test_rootfs_binds_only_what_programs_need(tmp_path):
    plan = plan_rootfs(Config(), host())
    binds = {op.path: op for op in plan.ops if op.kind == "bind"}
    sources = {op.source for op in binds.values()}
    assert {"/usr", "/opt/py", "/dev/null", "/dev/urandom"} <= sources
    for forbidden in ("/etc", "/home", "/root", "/var"):
        assert not any(s == forbidden or s.startswith(forbidden + "/") for s in sources), forbidden
    ro = K("MOUNT_ATTR_RDONLY") | K("MOUNT_ATTR_NOSUID") | K("MOUNT_ATTR_NODEV")
    assert binds["usr"].attr_set & ro == ro
    assert binds["opt/py"].attr_set & ro == ro
    # Devices must not be nodev, but are nosuid and noexec.
    assert not binds["dev/null"].attr_set & K("MOUNT_ATTR_NODEV")
    symlinks = {op.path: op.source for op in plan.ops if op.kind == "symlink"}
    assert symlinks["bin"] == "usr/bin" and symlinks["dev/fd"] == "/proc/self/fd"
    assert "." in plan.ro_paths
    assert plan.path_prefix == ("/opt/py/bin",)


def test_rootfs_generates_etc_and_masks_proc():
    plan = plan_rootfs(Config(hostname="h1"), host())
    files = {op.path: op.data.decode() for op in plan.ops if op.kind == "write"}
    assert set(files) >= {"etc/passwd", "etc/group", "etc/hosts", "etc/resolv.conf", "etc/nsswitch.conf"}
    assert "sbx_user:x:1000:1000" in files["etc/passwd"]
    assert "h1" in files["etc/hosts"]
    masked = {op.path for op in plan.ops if op.kind == "mask"}
    assert {f"proc/{n}" for n in ("kcore", "keys", "kallsyms", "timer_list")} <= masked
    assert len(masked) == len(PROC_MASKED_FILES)
    ro_self = {op.path for op in plan.ops if op.kind == "bind_self_ro"}
    assert {"proc/sys", "proc/sysrq-trigger"} <= ro_self
    tmp = [op for op in plan.ops if op.kind == "mount" and op.path == "tmp"][0]
    assert tmp.data == b"size=512m,mode=1777"


def test_ordering_dev_before_proc_masks_and_tmp_before_user_binds(tmp_path):
    plan = plan_rootfs(Config.create(binds=[f"{tmp_path}:/tmp/data:rw"]), host())
    paths = [(op.kind, op.path) for op in plan.ops]
    assert paths.index(("bind", "dev/null")) < min(i for i, p in enumerate(paths) if p[0] == "mask")
    assert paths.index(("mount", "tmp")) < paths.index(("bind", "tmp/data"))
    user = [op for op in plan.ops if op.path == "tmp/data" and op.kind == "bind"][0]
    assert not user.attr_set & K("MOUNT_ATTR_RDONLY")


def test_user_bind_into_read_only_system_tree_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="read-only"):
        plan_rootfs(Config.create(binds=[f"{tmp_path}:/opt/py/x"]), host())


def test_rlimits_are_finite_and_hard():
    limits = {res: (soft, hard) for res, soft, hard in plan_rlimits(Config(pids=77, max_open_files=100))}
    assert limits[K("RLIMIT_NPROC")] == (77, 77)
    assert limits[K("RLIMIT_NOFILE")] == (100, 100)
    assert limits[K("RLIMIT_CORE")] == (0, 0)
    assert all(soft == hard and soft != K("RLIM_INFINITY") for soft, hard in limits.values())


def test_plan_inputs_are_not_mutated():
    c = Config()
    h = host()
    plan_rootfs(c, h)
    plan_namespaces(c, h)
    assert c == Config() and h == host()
    assert dataclasses.is_dataclass(c)
