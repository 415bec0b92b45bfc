"""Parsers for /proc texts and cgroup control files, on samples (no root)."""
import pytest

from sandbox.cgroups.parse import (parse_int, parse_keyed, parse_mountinfo, parse_pids, parse_proc_cgroup,
                                   relative_to_mount)

# This project's build host: v1 controllers, cgroup2 with only hugetlb at /sys/fs/cgroup/unified.
HOST_V1_CGROUP = """\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/3815be3374fe9e36ae5334489e8a1611
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""
HOST_V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# A systemd host in unified mode.
V2_MOUNTINFO = ("25 24 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
                "rw,nsdelegate,memory_recursiveprot\n")


def test_parse_int_handles_max():
    assert parse_int("268435456\n") == 268435456
    assert parse_int("max\n") == -1
    assert parse_int(" 0 ") == 0


def test_parse_keyed_memory_events_and_oom_control():
    events = parse_keyed("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert events["oom_kill"] == 1 and events["max"] == 12
    oom = parse_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert oom == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 3}
    cpu = parse_keyed("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n")
    assert cpu["usage_usec"] == 1500


def test_parse_keyed_skips_odd_lines():
    assert parse_keyed("a 1\nb two\nc 3 4\n\nd 5") == {"a": 1, "d": 5}


def test_parse_pids():
    assert parse_pids("12\n34\n") == [12, 34]
    assert parse_pids("") == []


def test_proc_cgroup_v1_host():
    v1, v2 = parse_proc_cgroup(HOST_V1_CGROUP)
    assert v1["memory"] == "/process_api/3815be3374fe9e36ae5334489e8a1611"
    assert v1["cpu"] == v1["pids"] == "/"
    assert "name=systemd" not in v1 and "systemd" not in v1
    assert v2 == "/"


def test_proc_cgroup_comounted_and_pure_v2():
    v1, v2 = parse_proc_cgroup("3:cpu,cpuacct:/a\n2:net_cls,net_prio:/\n")
    assert v1 == {"cpu": "/a", "cpuacct": "/a", "net_cls": "/", "net_prio": "/"} and v2 is None
    v1, v2 = parse_proc_cgroup("0::/user.slice/user-0.slice/session-1.scope\n")
    assert v1 == {} and v2 == "/user.slice/user-0.slice/session-1.scope"


def test_proc_cgroup_path_with_colon():
    _v1, v2 = parse_proc_cgroup("0::/a:b\n")
    assert v2 == "/a:b"


def test_mountinfo_v1_host():
    mounts = parse_mountinfo(HOST_V1_MOUNTINFO)
    assert [m[0] for m in mounts] == ["cgroup"] * 4 + ["cgroup2"]  # tmpfs skipped
    fstype, root, mp, opts = mounts[2]
    assert (fstype, root, mp) == ("cgroup", "/", "/sys/fs/cgroup/memory") and "memory" in opts


def test_mountinfo_optional_fields_and_escapes():
    text = r"40 31 0:38 /ctr\040one /mnt/cg\040x rw shared:5 master:1 - cgroup2 none rw" + "\n"
    ((fstype, root, mp, _opts),) = parse_mountinfo(text)
    assert (fstype, root, mp) == ("cgroup2", "/ctr one", "/mnt/cg x")
    ((fstype, *_),) = parse_mountinfo(V2_MOUNTINFO)
    assert fstype == "cgroup2"


@pytest.mark.parametrize("own,root,expected", [
    ("/a/b", "/", "a/b"),
    ("/", "/", ""),
    ("/docker/x/y", "/docker/x", "y"),
    ("/docker/x", "/docker/x", ""),
    ("/docker/xy", "/docker/x", None),
    ("/other", "/docker/x", None),
])
def test_relative_to_mount(own, root, expected):
    assert relative_to_mount(own, root) == expected
