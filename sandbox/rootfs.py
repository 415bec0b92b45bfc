"""The sandbox's root filesystem: a small tmpfs holding read-only binds of what
programs need (/usr, /lib*, the running Python), a generated /etc, a minimal
/dev, a fresh /proc with sensitive entries masked, and a bounded private /tmp.
Nothing of the host's /etc, /home, /root or /var is ever bound.

This module only plans: a tuple of `Op`s the C child executes in order
(csrc/sandbox_core.c, build_root)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from .config import Config
from .constants import kernel_constant as K
from .errors import ConfigError
from .host import HostFeatures
from .network import resolv_conf

# Proc entries that expose kernel memory, addresses or other tenants' activity:
# masked with /dev/null (files) or an empty read-only tmpfs (directories).
PROC_MASKED_FILES = (
    "kcore", "kmsg", "keys", "key-users", "kallsyms", "timer_list", "timer_stats",
    "sched_debug", "latency_stats", "kpagecount", "kpageflags", "kpagecgroup",
    "vmallocinfo", "config.gz", "slabinfo", "pagetypeinfo", "iomem", "ioports", "dma",
)
PROC_MASKED_DIRS = ("acpi", "scsi", "asound", "driver")
# Writable-by-root knobs (core_pattern, modprobe, sysrq): read-only.
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus", "fs")
DEVICES = ("null", "zero", "full", "random", "urandom")
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class Op:
    kind: str                 # mkdir | bind | mount | symlink | write | mask | bind_self_ro
    path: str                 # relative to the new root
    source: str | None = None
    fstype: str | None = None
    data: bytes | None = None
    mount_flags: int = 0
    attr_set: int = 0
    mode: int = 0o755
    optional: bool = False
    recursive: bool = False
    create_file: bool = False


@dataclass(frozen=True)
class RootfsPlan:
    staging_dir: str
    root_data: str
    ops: tuple[Op, ...]
    ro_paths: tuple[str, ...]
    path_prefix: tuple[str, ...]   # PATH entries inside (python's bin dir first)


def _attr(*names: str) -> int:
    value = 0
    for name in names:
        value |= K("MOUNT_ATTR_" + name)
    return value


def _ms(*names: str) -> int:
    value = 0
    for name in names:
        value |= K("MS_" + name)
    return value


def _rel(path: str) -> str:
    return os.path.normpath(path).lstrip("/")


def _etc_files(config: Config) -> dict[str, str]:
    uid, gid, host = config.uid, config.gid, config.hostname
    return {
        "etc/passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"sbx_user:x:{uid}:{gid}:sandbox user:/tmp:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "etc/group": f"root:x:0:\nsbx_user:x:{gid}:\nnogroup:x:65534:\n",
        "etc/hosts": f"127.0.0.1\tlocalhost {host}\n::1\tlocalhost ip6-localhost\n",
        "etc/resolv.conf": resolv_conf(config),
        "etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
        "etc/hostname": host + "\n",
    }


def _staging_dir() -> str:
    for candidate in ("/tmp", "/mnt", "/run", "/var/tmp"):
        if os.path.isdir(candidate) and not os.path.islink(candidate):
            return candidate
    raise ConfigError("no host directory to stage the new root on (tried /tmp, /mnt, /run, /var/tmp)")


def plan_rootfs(config: Config, host: HostFeatures) -> RootfsPlan:
    ro_bind = _attr("RDONLY", "NOSUID", "NODEV")
    ops: list[Op] = []
    system_prefixes = ["/usr"]

    # System directories: merged-/usr symlinks are recreated, real dirs bound read-only.
    for name, target in host.usr_merged.items():
        ops.append(Op("symlink", name, source=target) if target else Op("mkdir", name))
        if not target:
            ops.append(Op("bind", name, source="/" + name, attr_set=ro_bind, recursive=True))
            system_prefixes.append("/" + name)
    ops[:0] = [Op("mkdir", "usr"), Op("bind", "usr", source="/usr", attr_set=ro_bind, recursive=True)]

    # The running Python (resolved through shims and symlinks), same path inside.
    path_prefix: tuple[str, ...] = ()
    if config.python:
        for prefix in host.python.prefixes:
            ops += [Op("mkdir", _rel(prefix)), Op("bind", _rel(prefix), source=prefix, attr_set=ro_bind, recursive=True)]
            system_prefixes.append(prefix)
        path_prefix = (host.python.bin_dir,)

    # A generated /etc: never the host's.
    ops.append(Op("mkdir", "etc"))
    for path, text in _etc_files(config).items():
        ops.append(Op("write", path, data=text.encode(), mode=0o644))

    # Minimal /dev: binds of the host's harmless character devices (mknod is
    # impossible in a user namespace), on a noexec tmpfs.
    ops += [Op("mkdir", "dev"), Op("mount", "dev", fstype="tmpfs", data=b"size=64k,nr_inodes=64,mode=0755",
                                   mount_flags=_ms("NOSUID", "NOEXEC"))]
    for dev in DEVICES:
        ops.append(Op("bind", f"dev/{dev}", source=f"/dev/{dev}", attr_set=_attr("NOSUID", "NOEXEC"), create_file=True))
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        ops.append(Op("symlink", f"dev/{name}", source=target))

    # A fresh /proc for the new pid namespace, sensitive entries masked.
    proc_flags = _ms("NOSUID", "NODEV", "NOEXEC")
    ops += [Op("mkdir", "proc"), Op("mount", "proc", fstype="proc", mount_flags=proc_flags)]
    ops += [Op("mask", f"proc/{name}", optional=True) for name in PROC_MASKED_FILES]
    ops += [Op("mount", f"proc/{name}", fstype="tmpfs", data=b"size=4k,nr_inodes=1,mode=0555",
               mount_flags=proc_flags | _ms("RDONLY"), optional=True) for name in PROC_MASKED_DIRS]
    ops += [Op("bind_self_ro", f"proc/{name}", attr_set=_attr("RDONLY", "NOSUID", "NODEV", "NOEXEC"), optional=True)
            for name in PROC_READ_ONLY]

    # A private, bounded /tmp.
    ops += [Op("mkdir", "tmp"), Op("mount", "tmp", fstype="tmpfs",
                                   data=f"size={config.tmp_size_mb}m,mode=1777".encode(),
                                   mount_flags=_ms("NOSUID", "NODEV"))]

    # User binds, read-only unless asked.
    for bind in config.binds:
        for prefix in system_prefixes:
            if bind.dest == prefix or bind.dest.startswith(prefix + "/"):
                raise ConfigError(f"dest {bind.dest!r} lies inside the read-only {prefix}", field="bind")
        is_file = not os.path.isdir(bind.source)
        parent = os.path.dirname(_rel(bind.dest))
        if is_file and parent:
            ops.append(Op("mkdir", parent))
        elif not is_file:
            ops.append(Op("mkdir", _rel(bind.dest)))
        attrs = _attr("NOSUID", "NODEV") | (0 if bind.writable else _attr("RDONLY"))
        ops.append(Op("bind", _rel(bind.dest), source=bind.source, attr_set=attrs, recursive=True, create_file=is_file))

    return RootfsPlan(
        staging_dir=_staging_dir(),
        root_data="size=1m,nr_inodes=4096,mode=0755",
        ops=tuple(ops),
        ro_paths=(".", "dev"),
        path_prefix=path_prefix,
    )
