"""Limits validation and the pure write plans for v1 and v2 (no root)."""
import pytest

from sandbox.cgroups import CgroupLimits
from sandbox.cgroups.limits import (CPU_PERIOD_US, check_name_prefix, parent_name, sandbox_name, v1_limit_writes,
                                    v2_limit_writes)
from sandbox.errors import ConfigError

MiB = 1 << 20


def files(writes):
    return [(w.controller, w.filename, w.value) for w in writes]


def test_v1_memory_then_memsw_pinned_equal():
    writes = files(v1_limit_writes(CgroupLimits(256 * MiB, 1.0, 64), memsw=True))
    assert writes == [
        ("memory", "memory.limit_in_bytes", b"268435456"),
        ("memory", "memory.memsw.limit_in_bytes", b"268435456"),
        ("cpu", "cpu.cfs_period_us", b"100000"),
        ("cpu", "cpu.cfs_quota_us", b"100000"),
        ("pids", "pids.max", b"64"),
    ]


def test_v1_without_memsw_writes_no_memsw_file():
    names = [f for _c, f, _v in files(v1_limit_writes(CgroupLimits(64 * MiB, 0.5, 8), memsw=False))]
    assert "memory.memsw.limit_in_bytes" not in names
    assert "memory.oom_control" not in names  # the OOM killer stays on


def test_v2_writes():
    writes = files(v2_limit_writes(CgroupLimits(128 * MiB, 2.0, 32), memsw=True))
    assert writes == [
        ("memory", "memory.max", b"134217728"),
        ("memory", "memory.swap.max", b"0"),
        ("memory", "memory.oom.group", b"1"),
        ("cpu", "cpu.max", b"200000 100000"),
        ("pids", "pids.max", b"32"),
    ]


@pytest.mark.parametrize("cpus,quota", [(1.0, 100_000), (0.25, 25_000), (1.5, 150_000), (0.001, 1_000),
                                        (0.0123, 1_230), (4, 400_000)])
def test_cpu_quota(cpus, quota):
    assert CgroupLimits(4096, cpus, 1).cpu_quota_us == quota
    assert CPU_PERIOD_US == 100_000


@pytest.mark.parametrize("kwargs,field", [
    (dict(memory_bytes=0, cpus=1.0, pids_max=1), "memory_bytes"),
    (dict(memory_bytes=1.5e9, cpus=1.0, pids_max=1), "memory_bytes"),
    (dict(memory_bytes=True, cpus=1.0, pids_max=1), "memory_bytes"),
    (dict(memory_bytes=4096, cpus=0, pids_max=1), "cpus"),
    (dict(memory_bytes=4096, cpus=-1.0, pids_max=1), "cpus"),
    (dict(memory_bytes=4096, cpus="1", pids_max=1), "cpus"),
    (dict(memory_bytes=4096, cpus=1.0, pids_max=0), "pids_max"),
])
def test_limits_validated(kwargs, field):
    with pytest.raises(ConfigError) as exc:
        CgroupLimits(**kwargs)
    assert exc.value.field == field


def test_names():
    assert parent_name("sandbox", 42, "0a1b2c3d") == "sandbox-42-0a1b2c3d"
    assert sandbox_name(7) == "sb7"
    assert check_name_prefix("lambda_x.1") == "lambda_x.1"
    for bad in ("", "a/b", "..", ".hidden", "x" * 80, "a b"):
        with pytest.raises(ConfigError):
            check_name_prefix(bad)
