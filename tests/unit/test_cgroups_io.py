"""Block I/O limits (blkio v1 / io v2) against the fake cgroupfs
(sandbox.cgroups._fakefs): what is written where, and failing closed when the
controller is missing.  The real v1 throttle is measured from inside a sandbox
in tests/kernel/test_io_limits.py."""
import os

import pytest

from sandbox import Config
from sandbox.cgroups import CgroupLimits, open_manager
from sandbox.cgroups._fakefs import build_v1_tree, build_v2_tree
from sandbox.cgroups.host import host_from_texts
from sandbox.cgroups.limits import IoLimit, v1_limit_writes, v2_limit_writes
from sandbox.errors import CgroupSetupError, ConfigError

IO = (IoLimit("8:0", rbps=1 << 20, wiops=100),)
LIMITS = CgroupLimits(memory_bytes=64 << 20, cpus=1.0, pids_max=16, io=IO)


def read(path):
    with open(path) as f:
        return f.read()


def test_parse_and_validate():
    assert IoLimit.parse("8:0,wbps=1048576,riops=50") == IoLimit("8:0", wbps=1048576, riops=50)
    for bad in ("8:0", "8:0,wbps=-1", "8:0,speed=3", "/etc/passwd,wbps=1", "/nope,wbps=1", ""):
        with pytest.raises(ConfigError) as info:
            IoLimit.parse(bad)
        assert info.value.field == "io"
    with pytest.raises(ConfigError) as info:
        Config.create(io=["8:0,wbps=1"], disable=["cgroups"])
    assert info.value.field == "io"
    with pytest.raises(ConfigError):
        Config.create(io=["8:0,wbps=1", "8:0,rbps=1"])


def test_block_device_path_resolves_to_its_numbers():
    dev = next((f"/dev/{d}" for d in ("vda", "sda", "nvme0n1", "loop0") if os.path.exists(f"/dev/{d}")), None)
    if dev is None:
        pytest.skip("no block device node to resolve on this host")
    rdev = os.stat(dev).st_rdev
    assert IoLimit.parse(f"{dev},wbps=1").device == f"{os.major(rdev)}:{os.minor(rdev)}"


def test_write_plans():
    v1 = [(w.filename, w.value) for w in v1_limit_writes(LIMITS, memsw=False) if w.controller == "blkio"]
    assert v1 == [("blkio.throttle.read_bps_device", b"8:0 1048576"), ("blkio.throttle.write_iops_device", b"8:0 100")]
    v2 = [(w.filename, w.value) for w in v2_limit_writes(LIMITS, memsw=False) if w.controller == "io"]
    assert v2 == [("io.max", b"8:0 rbps=1048576 wiops=100")]


def test_v1_writes_throttles_in_the_blkio_hierarchy(tmp_path):
    root = str(tmp_path)
    cg, mi, fs = build_v1_tree(root, blkio=True)
    host = host_from_texts(cg, mi, fs_root=root)
    assert "blkio" in host.features
    with open_manager(host, fs=fs, reaper=False) as m:
        sandbox_cg = m.create(LIMITS)
        (blkio,) = [d for d in sandbox_cg.dirs if "/blkio/" in d]
        assert read(blkio + "/blkio.throttle.read_bps_device") == "8:0 1048576"
        assert read(blkio + "/blkio.throttle.write_iops_device") == "8:0 100"
        assert len(sandbox_cg.procs_fds) == len(sandbox_cg.dirs)  # the child joins blkio too
        sandbox_cg.release_attach_fds()
        sandbox_cg.destroy()


def test_v1_without_blkio_fails_closed_only_when_asked(tmp_path):
    root = str(tmp_path)
    cg, mi, fs = build_v1_tree(root)
    host = host_from_texts(cg, mi, fs_root=root)
    with open_manager(host, fs=fs, reaper=False) as m:
        plain = m.create(CgroupLimits(memory_bytes=64 << 20, cpus=1.0, pids_max=16))
        plain.release_attach_fds()
        plain.destroy()
        with pytest.raises(CgroupSetupError, match="blkio: no cgroup v1 blkio hierarchy"):
            m.create(LIMITS)


@pytest.mark.cgroupv2
def test_v2_enables_io_and_writes_io_max(tmp_path):
    root = str(tmp_path)
    cg, mi, fs = build_v2_tree(root, own="/s", subtree="cpu memory pids io")
    host = host_from_texts(cg, mi, fs_root=root)
    with open_manager(host, fs=fs, reaper=False) as m:
        sandbox_cg = m.create(LIMITS)
        (d,) = sandbox_cg.dirs
        assert "+io" in read(os.path.dirname(d) + "/cgroup.subtree_control")
        assert read(d + "/io.max") == "8:0 rbps=1048576 wiops=100"
        sandbox_cg.release_attach_fds()
        sandbox_cg.destroy()


@pytest.mark.cgroupv2
def test_v2_without_io_delegated_fails_closed_only_when_asked(tmp_path):
    root = str(tmp_path)
    cg, mi, fs = build_v2_tree(root, own="/s", subtree="cpu memory pids")
    host = host_from_texts(cg, mi, fs_root=root)
    with open_manager(host, fs=fs, reaper=False) as m:
        plain = m.create(CgroupLimits(memory_bytes=64 << 20, cpus=1.0, pids_max=16))
        plain.release_attach_fds()
        plain.destroy()
        with pytest.raises(CgroupSetupError, match="io: controller not available"):
            m.create(LIMITS)
