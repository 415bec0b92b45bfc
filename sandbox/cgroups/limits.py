"""What a sandbox cgroup is asked for (CgroupLimits), what it reports (CgroupStats),
and the pure plan that turns limits into control-file writes for v1 or v2.

Nothing here touches the filesystem: the plans are unit-tested as plain data.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from ..errors import ConfigError

# CFS period for the CPU quota, in microseconds.  This is the kernel's default
# for a new cgroup (100 ms); we still write it on v1 so the quota means what it says.
CPU_PERIOD_US = 100_000
# The kernel rejects a CFS quota below 1 ms (cpu.cfs_quota_us / cpu.max).
CPU_MIN_QUOTA_US = 1_000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DEVNUM = re.compile(r"^(\d{1,10}):(\d{1,10})$")
IO_KEYS = ("rbps", "wbps", "riops", "wiops")  # io.max keys; v1: blkio.throttle.{read,write}_{bps,iops}_device


@dataclass(frozen=True)
class IoLimit:
    """Block I/O throttle for one device: bytes and operations per second, per
    direction (None: unlimited).  `device` is MAJ:MIN or a block device path,
    resolved by validated() (like a bind source, a path is resolved once)."""

    device: str
    rbps: int | None = None
    wbps: int | None = None
    riops: int | None = None
    wiops: int | None = None

    @classmethod
    def parse(cls, spec: str) -> "IoLimit":
        """``DEVICE,rbps=N,wbps=N,riops=N,wiops=N`` (any subset), e.g. ``/dev/vda,wbps=10485760``."""
        device, *pairs = str(spec).split(",")
        values = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key not in IO_KEYS or not value.isdigit():
                raise ConfigError(f"expected DEVICE,KEY=N,... with KEY in {IO_KEYS}, got {spec!r}", field="io")
            values[key] = int(value)
        return cls(device, **values).validated()

    def validated(self) -> "IoLimit":
        device = self.device
        if not isinstance(device, str) or not device:
            raise ConfigError(f"device must be MAJ:MIN or a block device path, got {device!r}", field="io")
        if not _DEVNUM.match(device):
            try:
                st = os.stat(device)
            except OSError as exc:
                raise ConfigError(f"device {device!r}: {exc.strerror}", field="io") from None
            if not stat.S_ISBLK(st.st_mode):
                raise ConfigError(f"{device!r} is not a block device", field="io")
            device = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        values = [getattr(self, k) for k in IO_KEYS]
        if all(v is None for v in values):
            raise ConfigError(f"no limit given for {self.device!r} (one of {IO_KEYS})", field="io")
        for key, value in zip(IO_KEYS, values):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 1 << 63):
                raise ConfigError(f"{key} must be a positive integer, got {value!r}", field="io")
        return IoLimit(device, *values)

    def v1_writes(self) -> tuple["LimitWrite", ...]:
        names = {"rbps": "read_bps", "wbps": "write_bps", "riops": "read_iops", "wiops": "write_iops"}
        return tuple(LimitWrite("blkio", f"blkio.throttle.{names[k]}_device", f"{self.device} {v}".encode(),
                                f"block I/O {k} limit")
                     for k in IO_KEYS if (v := getattr(self, k)) is not None)

    def v2_write(self) -> "LimitWrite":
        pairs = " ".join(f"{k}={v}" for k in IO_KEYS if (v := getattr(self, k)) is not None)
        return LimitWrite("io", "io.max", f"{self.device} {pairs}".encode(), "block I/O limit")


@dataclass(frozen=True)
class CgroupLimits:
    """Resource limits of one sandbox cgroup.

    memory_bytes: RAM limit, swap excluded (the sandbox may not swap at all);
    cpus: CFS quota in CPUs (1.0 = one CPU's worth of time per period);
    pids_max: most tasks (processes + threads) alive at once.
    """

    memory_bytes: int
    cpus: float
    pids_max: int
    io: tuple[IoLimit, ...] = ()  # blkio (v1) / io (v2) throttles; the controller must be there if given

    def __post_init__(self):
        if isinstance(self.memory_bytes, bool) or not isinstance(self.memory_bytes, int) or self.memory_bytes < 4096:
            raise ConfigError(f"must be an int >= 4096, got {self.memory_bytes!r}", field="memory_bytes")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)) or not 0 < self.cpus < 1e6:
            raise ConfigError(f"must be a number > 0, got {self.cpus!r}", field="cpus")
        if isinstance(self.pids_max, bool) or not isinstance(self.pids_max, int) or self.pids_max < 1:
            raise ConfigError(f"must be an int >= 1, got {self.pids_max!r}", field="pids_max")
        if not isinstance(self.io, tuple) or not all(isinstance(i, IoLimit) for i in self.io):
            raise ConfigError(f"must be a tuple of IoLimit, got {self.io!r}", field="io")

    @property
    def cpu_quota_us(self) -> int:
        """CFS quota per CPU_PERIOD_US, never below the kernel's 1 ms minimum."""
        return max(CPU_MIN_QUOTA_US, round(self.cpus * CPU_PERIOD_US))


@dataclass(frozen=True)
class CgroupStats:
    """Accounting read back from a sandbox cgroup.

    memory_peak_bytes is -1 when the kernel does not record a peak (cgroup v2
    before Linux 5.19 has no memory.peak)."""

    memory_peak_bytes: int
    cpu_time_ns: int
    oom_kills: int
    pids_current: int


@dataclass(frozen=True)
class LimitWrite:
    """One control-file write: `value` into <sandbox dir of `controller`>/`filename`.
    `why` is for error messages and the docs."""

    controller: str
    filename: str
    value: bytes
    why: str


def v1_limit_writes(limits: CgroupLimits, *, memsw: bool) -> tuple[LimitWrite, ...]:
    """Ordered writes for a fresh cgroup-v1 sandbox cgroup.

    Order matters for memory: memsw.limit (RAM + swap) may never be below
    limit_in_bytes, so on a fresh cgroup (both unlimited) RAM goes first, then
    memsw is pinned to the same value, which leaves no room for swap."""
    mem = str(limits.memory_bytes).encode()
    writes = [LimitWrite("memory", "memory.limit_in_bytes", mem, "RAM limit")]
    if memsw:
        writes.append(LimitWrite("memory", "memory.memsw.limit_in_bytes", mem, "RAM+swap = RAM: no swap"))
    writes += [
        LimitWrite("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US).encode(), "CFS period"),
        LimitWrite("cpu", "cpu.cfs_quota_us", str(limits.cpu_quota_us).encode(), "CPU quota"),
        LimitWrite("pids", "pids.max", str(limits.pids_max).encode(), "task limit"),
    ]
    for io in limits.io:
        writes += io.v1_writes()
    return tuple(writes)


def v2_limit_writes(limits: CgroupLimits, *, memsw: bool) -> tuple[LimitWrite, ...]:
    """Ordered writes for a fresh cgroup-v2 sandbox cgroup."""
    writes = [LimitWrite("memory", "memory.max", str(limits.memory_bytes).encode(), "RAM limit")]
    if memsw:
        writes.append(LimitWrite("memory", "memory.swap.max", b"0", "no swap"))
    writes += [
        LimitWrite("memory", "memory.oom.group", b"1", "an OOM kill takes the whole sandbox"),
        LimitWrite("cpu", "cpu.max", f"{limits.cpu_quota_us} {CPU_PERIOD_US}".encode(), "CPU quota"),
        LimitWrite("pids", "pids.max", str(limits.pids_max).encode(), "task limit"),
    ]
    writes += [io.v2_write() for io in limits.io]
    return tuple(writes)


def check_name_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _NAME.match(prefix):
        raise ConfigError(f"must match {_NAME.pattern}, got {prefix!r}", field="name_prefix")
    return prefix


def parent_name(prefix: str, pid: int, token: str) -> str:
    """Name of the supervisor's parent cgroup: <prefix>-<supervisor pid>-<random>."""
    return f"{prefix}-{pid}-{token}"


def sandbox_name(seq: int) -> str:
    """Name of one sandbox cgroup inside the supervisor's parent."""
    return f"sb{seq}"
