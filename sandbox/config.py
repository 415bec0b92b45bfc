"""User-facing configuration: validated once, frozen, never written back to.

Config flows one way: user input -> Config (validated here) -> plans
(sandbox/plan.py) -> the C core.  Host facts live in sandbox/host.py.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Iterable, Mapping

from .errors import ConfigError
from .net.options import NetworkOptions

MiB = 1024 * 1024

# Isolation layers a caller may turn off, by name.  Everything is on by default;
# turning a layer off is the only way to get a weaker sandbox.
LAYERS = (
    "user",          # user namespace (uid/gid maps)
    "pid",           # pid namespace (the command is pid 1; its exit kills the rest)
    "mount",         # mount namespace
    "net",           # network namespace
    "ipc",           # ipc namespace
    "uts",           # uts namespace (hostname)
    "cgroupns",      # cgroup namespace
    "rootfs",        # minimal read-only root + pivot_root
    "seccomp",       # seccomp-bpf policy
    "cgroups",       # memory/cpu/pids limits and accounting
    "caps",          # drop every capability, lock securebits, setuid
    "no_new_privs",  # PR_SET_NO_NEW_PRIVS
    "session",       # setsid (no controlling terminal)
)

# loopback: private netns, lo up; none: lo down; egress: a supervisor-made netns with
# a veth, NAT and firewall (docs/network.md); netns: join one the caller made.
NET_MODES = ("loopback", "none", "egress", "netns")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# Destinations the sandbox builds itself; a user bind may not replace them.
_RESERVED_DESTS = ("/", "/proc", "/dev", "/etc", "/tmp", "/usr")


@dataclass(frozen=True)
class Bind:
    """A host path made visible inside the sandbox, read-only unless `writable`."""

    source: str
    dest: str
    writable: bool = False

    @classmethod
    def parse(cls, spec: str) -> "Bind":
        """Parse ``SRC:DST[:rw|:ro]`` (as given to ``sandbox run --bind``)."""
        parts = spec.split(":")
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        if len(parts) == 3 and parts[2] in ("rw", "ro"):
            return cls(parts[0], parts[1], parts[2] == "rw")
        raise ConfigError(f"expected SRC:DST[:rw|:ro], got {spec!r}", field="bind")

    def validated(self) -> "Bind":
        for name, path in (("source", self.source), ("dest", self.dest)):
            if not path.startswith("/"):
                raise ConfigError(f"{name} must be an absolute path, got {path!r}", field="bind")
            if "\0" in path or any(p == ".." for p in path.split("/")):
                raise ConfigError(f"{name} may not contain '..' or NUL: {path!r}", field="bind")
        dest = os.path.normpath(self.dest)
        for reserved in _RESERVED_DESTS:
            if dest == reserved or (reserved in ("/proc", "/dev") and dest.startswith(reserved + "/")):
                raise ConfigError(f"dest {dest!r} is built by the sandbox and cannot be replaced", field="bind")
        source = os.path.realpath(self.source)
        if not os.path.exists(source):
            raise ConfigError(f"source {self.source!r} does not exist", field="bind")
        return Bind(source, dest, self.writable)


@dataclass(frozen=True)
class Config:
    """Everything that shapes one sandbox.  Defaults are the strictest the
    library offers, with finite limits on every resource."""

    memory_mb: int = 512
    cpus: float = 1.0
    pids: int = 256
    timeout_s: float = 60.0
    tmp_size_mb: int = 512
    max_file_mb: int = 1024          # RLIMIT_FSIZE
    max_open_files: int = 1024       # RLIMIT_NOFILE
    binds: tuple[Bind, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    policy: str = "default"
    net: str = "loopback"
    hostname: str = "sandbox"
    cwd: str = "/tmp"
    uid: int = 1000                  # inside the sandbox
    gid: int = 1000
    host_uid: int | None = None      # None: 65534 (nobody) as root, else the caller's uid
    host_gid: int | None = None
    python: bool = True              # bind the running Python installation
    disable: frozenset[str] = field(default_factory=frozenset)
    init: bool = False               # a minimal pid 1 reaps orphans and forwards signals; needs "pid"
    network: NetworkOptions = NetworkOptions()  # egress allowlist, DNS, rates, range; netns to join
    io: tuple = ()                   # cgroups.limits.IoLimit per block device (blkio v1 / io v2 throttles)

    @classmethod
    def create(cls, *, env: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
               binds: Iterable[Bind | str] = (), disable: Iterable[str] = (),
               network: NetworkOptions | Mapping | None = None, io: Iterable = (), **kwargs) -> "Config":
        """Build a validated Config from friendly types (dict env, "SRC:DST" binds,
        network as a dict of NetworkOptions.create arguments, io as IoLimit or
        "DEVICE,wbps=N,..." strings)."""
        if isinstance(network, Mapping):
            network = NetworkOptions.create(**network)
        if network is not None:
            kwargs["network"] = network
        if io:
            from .cgroups.limits import IoLimit

            kwargs["io"] = tuple(i if isinstance(i, IoLimit) else IoLimit.parse(i) for i in io)
        env_items = tuple((env or {}).items()) if isinstance(env, Mapping) else tuple(env or ())
        bind_items = tuple(b if isinstance(b, Bind) else Bind.parse(b) for b in binds)
        return cls(env=env_items, binds=bind_items, disable=frozenset(disable), **kwargs).validated()

    def enabled(self, layer: str) -> bool:
        return layer not in self.disable

    def validated(self) -> "Config":
        """Return an equivalent Config whose every field was checked (binds
        normalized), or raise ConfigError naming the field."""
        _check_int(self.memory_mb, "memory_mb", 8, 1 << 22)
        if not isinstance(self.cpus, (int, float)) or not math.isfinite(self.cpus) or not 0.01 <= self.cpus <= 1024:
            raise ConfigError(f"must be a number in [0.01, 1024], got {self.cpus!r}", field="cpus")
        _check_int(self.pids, "pids", 1, 1 << 22)
        if not isinstance(self.timeout_s, (int, float)) or not math.isfinite(self.timeout_s) or self.timeout_s <= 0:
            raise ConfigError(f"must be a finite number of seconds > 0, got {self.timeout_s!r}", field="timeout_s")
        _check_int(self.tmp_size_mb, "tmp_size_mb", 1, 1 << 22)
        _check_int(self.max_file_mb, "max_file_mb", 1, 1 << 30)
        _check_int(self.max_open_files, "max_open_files", 16, 1 << 20)
        unknown = set(self.disable) - set(LAYERS)
        if unknown:
            raise ConfigError(f"unknown layer(s) {sorted(unknown)}; known: {', '.join(LAYERS)}", field="disable")
        if "mount" in self.disable and "rootfs" not in self.disable:
            raise ConfigError("the rootfs layer needs the mount namespace; disable 'rootfs' too", field="disable")
        if not isinstance(self.init, bool):
            raise ConfigError(f"must be True or False, got {self.init!r}", field="init")
        if self.init and not self.enabled("pid"):
            raise ConfigError("an init process needs the pid namespace; enable the 'pid' layer or set init=False",
                              field="init")
        if self.init and self.pids < 2:
            raise ConfigError(f"init counts as a process: pids must be >= 2 with init=True, got {self.pids}",
                              field="pids")
        if self.net not in NET_MODES:
            raise ConfigError(f"must be one of {NET_MODES}, got {self.net!r}", field="net")
        if not isinstance(self.network, NetworkOptions):
            raise ConfigError(f"must be a NetworkOptions, got {type(self.network).__name__}", field="network")
        network = self.network.validated()
        network.check_mode(self.net)
        if self.net in ("egress", "netns") and not self.enabled("net"):
            raise ConfigError(f"net={self.net!r} needs the 'net' layer (it replaces the private namespace)",
                              field="net")
        if not isinstance(self.hostname, str) or not _HOSTNAME.match(self.hostname):
            raise ConfigError(f"not a valid hostname: {self.hostname!r}", field="hostname")
        if not isinstance(self.cwd, str) or not self.cwd.startswith("/") or "\0" in self.cwd:
            raise ConfigError(f"must be an absolute path, got {self.cwd!r}", field="cwd")
        for name in ("uid", "gid"):
            value = getattr(self, name)
            _check_int(value, name, 1, (1 << 32) - 2)  # never root inside
        for name in ("host_uid", "host_gid"):
            value = getattr(self, name)
            if value is not None:
                _check_int(value, name, 0, (1 << 32) - 2)
        if not isinstance(self.policy, str) or not self.policy:
            raise ConfigError("must name a policy file or path", field="policy")
        for key, value in self.env:
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise ConfigError(f"invalid variable name {key!r}", field="env")
            if not isinstance(value, str) or "\0" in value:
                raise ConfigError(f"value of {key} must be a string without NUL", field="env")
        binds = tuple(b.validated() for b in self.binds)
        dests = [b.dest for b in binds]
        if len(set(dests)) != len(dests):
            raise ConfigError("two binds share a destination", field="bind")
        return replace(self, binds=binds, network=network, io=self._validated_io())

    def _validated_io(self) -> tuple:
        if not self.io:
            return ()
        from .cgroups.limits import IoLimit

        if not isinstance(self.io, tuple) or not all(isinstance(i, IoLimit) for i in self.io):
            raise ConfigError(f"must be a tuple of IoLimit, got {self.io!r}", field="io")
        if not self.enabled("cgroups"):
            raise ConfigError("block I/O limits need the 'cgroups' layer", field="io")
        io = tuple(i.validated() for i in self.io)
        if len({i.device for i in io}) != len(io):
            raise ConfigError("two limits for one device", field="io")
        return io

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["binds"] = [f"{b.source}:{b.dest}:{'rw' if b.writable else 'ro'}" for b in self.binds]
        out["env"] = dict(self.env)
        out["disable"] = sorted(self.disable)
        out["network"] = {f.name: getattr(self.network, f.name) for f in fields(self.network)}
        out["network"]["allow"] = [str(r) for r in self.network.allow]
        out["io"] = [{f.name: getattr(i, f.name) for f in fields(i)} for i in self.io]
        return out


def _check_int(value, name, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"must be an integer in [{low}, {high}], got {value!r}", field=name)
