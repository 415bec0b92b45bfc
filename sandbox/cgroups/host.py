"""Host detection: which cgroup version serves our controllers, where each
hierarchy is mounted, where this process's own cgroups are, and which optional
files the kernel has.  The result is a frozen CgroupHost; it is never written
into any config.

Seams for tests: `proc` (where self/cgroup, self/mountinfo and swaps are read)
and `fs_root` (a prefix put before every mount point, so a temporary directory
can play the cgroup filesystem).
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from ..errors import CgroupSetupError
from .parse import parse_mountinfo, parse_proc_cgroup, relative_to_mount

# Controllers the limits need.  v1 also needs cpuacct for CPU time (on v2 the
# cpu controller's cpu.stat has it).
LIMIT_CONTROLLERS = ("memory", "cpu", "pids")
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")


@dataclass(frozen=True)
class CgroupHost:
    """What detection found; immutable.

    version      1 or 2: the API that serves memory/cpu/pids here.
    mounts       (controller, mount point) pairs; on v2 every v2 controller maps
                 to the cgroup2 mount.
    own_paths    (controller, absolute directory of this process's cgroup).
    controllers  usable controllers: v1 mounted hierarchies we can see; v2 the
                 own cgroup's cgroup.controllers.
    delegated    v2: the own cgroup's cgroup.subtree_control (what children may
                 use); v1: same as controllers.
    features     optional kernel files: 'memsw' (swap can be limited),
                 'memory.peak', 'cgroup.kill', 'cgroup.freeze' (v2), 'freezer'
                 (v1 freezer hierarchy), 'blkio' (v1 blkio hierarchy: block I/O
                 limits), 'swap' (swap is active on the host).
    unified_path own directory in the cgroup2 tree ('' when none is mounted).
    """

    version: int
    mounts: tuple[tuple[str, str], ...]
    own_paths: tuple[tuple[str, str], ...]
    controllers: frozenset[str]
    delegated: frozenset[str]
    features: frozenset[str]
    unified_path: str = ""

    def mount(self, controller: str) -> str | None:
        return dict(self.mounts).get(controller)

    def own_path(self, controller: str) -> str | None:
        return dict(self.own_paths).get(controller)

    def describe(self) -> str:
        ctrls = ",".join(sorted(self.controllers)) or "none"
        feats = ",".join(sorted(self.features)) or "none"
        return f"cgroup v{self.version} (controllers {ctrls}; features {feats})"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_words(path: str) -> frozenset[str]:
    """Whitespace-separated words of a file (cgroup.controllers, ...); empty if unreadable."""
    try:
        return frozenset(_read(path).split())
    except OSError:
        return frozenset()


def _swap_active(proc: str) -> bool:
    try:
        return len(_read(os.path.join(proc, "swaps")).strip().splitlines()) > 1
    except OSError:
        return False


def _probe_dir(own: str, mount_point: str) -> str | None:
    """A non-root cgroup directory whose file list tells which optional files
    this kernel has: our own, or (when we sit at the root, which lacks most
    files) any child of the root.  Read-only."""
    if os.path.realpath(own) != os.path.realpath(mount_point):
        return own
    try:
        with os.scandir(own) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    return entry.path
    except OSError:
        pass
    return None


def host_from_texts(proc_cgroup: str, mountinfo: str, *, fs_root: str = "", swap: bool = False) -> CgroupHost:
    """Build the CgroupHost from the texts of /proc/self/cgroup and
    /proc/self/mountinfo; files below the mount points are read (under fs_root)
    for v2 controllers and optional features."""
    v1_paths, v2_path = parse_proc_cgroup(proc_cgroup)
    mounts = parse_mountinfo(mountinfo)

    v1_mounts: dict[str, str] = {}
    v1_own: dict[str, str] = {}
    unified_mount = unified_path = ""
    for fstype, root, mount_point, superopts in mounts:
        mp = fs_root + mount_point if fs_root else mount_point
        if fstype == "cgroup":
            for ctrl, own in v1_paths.items():
                if ctrl in superopts and ctrl not in v1_own:
                    rel = relative_to_mount(own, root)
                    if rel is not None:
                        v1_mounts[ctrl] = mp
                        v1_own[ctrl] = os.path.join(mp, rel) if rel else mp
        elif fstype == "cgroup2" and v2_path is not None and not unified_path:
            rel = relative_to_mount(v2_path, root)
            if rel is not None:
                unified_mount = mp
                unified_path = os.path.join(mp, rel) if rel else mp

    features = {"swap"} if swap else set()
    if any(c in v1_own for c in LIMIT_CONTROLLERS):
        controllers = frozenset(v1_own)
        if "memory" in v1_own and os.path.exists(os.path.join(v1_own["memory"], "memory.memsw.limit_in_bytes")):
            features.add("memsw")
        for optional in ("freezer", "blkio"):  # kill; block I/O limits
            if optional in v1_own:
                features.add(optional)
        return CgroupHost(1, tuple(sorted(v1_mounts.items())), tuple(sorted(v1_own.items())), controllers,
                          controllers, frozenset(features), unified_path)
    if unified_path:
        controllers = read_words(os.path.join(unified_path, "cgroup.controllers"))
        delegated = read_words(os.path.join(unified_path, "cgroup.subtree_control"))
        probe = _probe_dir(unified_path, unified_mount)
        if probe:
            for name, feature in (("cgroup.kill", "cgroup.kill"), ("cgroup.freeze", "cgroup.freeze"),
                                  ("memory.peak", "memory.peak"), ("memory.swap.max", "memsw")):
                if os.path.exists(os.path.join(probe, name)):
                    features.add(feature)
        return CgroupHost(2, tuple((c, unified_mount) for c in sorted(controllers)),
                          tuple((c, unified_path) for c in sorted(controllers)), controllers, delegated,
                          frozenset(features), unified_path)
    raise CgroupSetupError(errno.ENOENT, "no cgroup hierarchy holding this process is mounted "
                           "(looked at /proc/self/cgroup and /proc/self/mountinfo)",
                           hint="mount cgroup2 at /sys/fs/cgroup, or run without the 'cgroups' layer")


def detect_cgroups(*, proc: str = "/proc", fs_root: str = "") -> CgroupHost:
    """Detect the host's cgroup setup for this process (see CgroupHost)."""
    try:
        cg = _read(os.path.join(proc, "self", "cgroup"))
        mi = _read(os.path.join(proc, "self", "mountinfo"))
    except OSError as exc:
        raise CgroupSetupError(exc.errno or errno.EIO, f"read {exc.filename}",
                               hint="is /proc mounted?") from exc
    return host_from_texts(cg, mi, fs_root=fs_root, swap=_swap_active(proc))
