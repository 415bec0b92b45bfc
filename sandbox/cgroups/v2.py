"""cgroup v2 backend: one directory in the unified tree; the child is born in it
through clone3(CLONE_INTO_CGROUP) with `clone_fd`, so nothing migrates.

The parent we create enables +memory +pids +cpu in its cgroup.subtree_control.
That only works if the cgroup it is created in already delegates them (its own
subtree_control), and we never write to a cgroup we did not create: a missing
delegation is a CgroupSetupError naming the controller.

By default that cgroup is our own.  But v2's no-internal-process rule means a
non-root cgroup that holds processes (the supervisor's own) can never delegate
domain controllers, so on a real v2 host the operator names the delegated
cgroup instead: `delegated_root`, our own cgroup or one of its ancestors (e.g.
the unit systemd delegated with Delegate=yes, with the supervisor in a leaf
below it).  We only mkdir inside it.
"""
from __future__ import annotations

import errno
import os

from ..errors import CgroupSetupError
from . import _teardown
from ._common import WRITE_FLAGS, setup_error, write_value
from .host import LIMIT_CONTROLLERS, CgroupHost, read_words
from .limits import CgroupLimits, CgroupStats, v2_limit_writes
from .parse import parse_int, parse_keyed

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

_DELEGATION_HINT = ("cgroup v2 forbids enabling controllers for the children of a non-root cgroup that holds "
                    "processes (no internal processes), so our own cgroup cannot delegate them; run the "
                    "supervisor in a leaf below a cgroup whose subtree_control enables +memory +pids +cpu "
                    "(systemd Delegate=yes) and pass that cgroup as open_manager(delegated_root=...), "
                    "or run in the root cgroup")


class V2Backend:
    version = 2

    def __init__(self, host: CgroupHost, fs, delegated_root: str | None = None):
        """Validate before any side effect: the controllers reach the base cgroup
        (our own, or `delegated_root`) and it delegates them to children."""
        self.fs = fs
        own = host.unified_path
        if not own:
            raise CgroupSetupError(errno.ENOENT, "cgroup2 is not mounted (or our cgroup in it is not visible)",
                                   hint="mount -t cgroup2 none /sys/fs/cgroup")
        base, controllers, delegated = own, host.controllers, host.delegated
        if delegated_root is not None:
            base = os.path.normpath(delegated_root)
            if own != base and not own.startswith(base.rstrip("/") + "/"):
                raise CgroupSetupError(errno.EINVAL, f"delegated_root {base} is neither our own cgroup {own} "
                                       "nor one of its ancestors",
                                       hint="pass the cgroup2 directory that was delegated to the supervisor")
            if not os.path.exists(os.path.join(base, "cgroup.subtree_control")):
                raise CgroupSetupError(errno.ENOENT, f"delegated_root {base} is not a cgroup2 directory "
                                       "(no cgroup.subtree_control)")
            controllers = read_words(os.path.join(base, "cgroup.controllers"))
            delegated = read_words(os.path.join(base, "cgroup.subtree_control"))
        self.base = base
        for name in LIMIT_CONTROLLERS:
            if name not in controllers:
                raise CgroupSetupError(errno.ENOENT, f"{name}: controller not available to {base} "
                                       "(its cgroup.controllers lacks it)",
                                       hint=f"enable +{name} in the subtree_control of every ancestor, "
                                       "or run without the 'cgroups' layer")
            if name not in delegated:
                raise CgroupSetupError(errno.EOPNOTSUPP, f"{name}: controller is not delegated: "
                                       f"{base}/cgroup.subtree_control lacks it, so our sandbox cgroups "
                                       f"cannot get it", hint=_DELEGATION_HINT)
        self.features = set(host.features)
        self._io_delegated = "io" in delegated and "io" in controllers
        self.hierarchies = ((base, LIMIT_CONTROLLERS),)

    # -- parent ------------------------------------------------------------
    def parent_dirs(self, name: str) -> tuple[str, ...]:
        return (os.path.join(self.base, name),)

    def setup_parent(self, dirs: tuple[str, ...]) -> None:
        """mkdir the parent, give its children memory/pids/cpu, then learn the
        optional files from it (a non-root cgroup of ours shows them all)."""
        (parent,) = dirs
        try:
            self.fs.mkdir(parent, 0o755)
        except OSError as exc:
            raise setup_error(exc, "cgroup2", "mkdir", parent) from exc
        path = os.path.join(parent, "cgroup.subtree_control")
        value = " ".join("+" + c for c in LIMIT_CONTROLLERS).encode()
        try:
            write_value(path, value)
        except OSError as exc:
            try:
                self.fs.rmdir(parent)
            except OSError:
                pass
            raise setup_error(exc, ",".join(LIMIT_CONTROLLERS), f"write {value.decode()!r} to", path,
                              hint=_DELEGATION_HINT if exc.errno in (errno.ENOENT, errno.EBUSY) else None) from exc
        for name, feature in (("cgroup.kill", "cgroup.kill"), ("cgroup.freeze", "cgroup.freeze"),
                              ("memory.peak", "memory.peak"), ("memory.swap.max", "memsw")):
            if os.path.exists(os.path.join(parent, name)):
                self.features.add(feature)
        self._enable_io(parent)
        if "memsw" not in self.features and "swap" in self.features:
            try:
                self.fs.rmdir(parent)
            except OSError:
                pass
            raise CgroupSetupError(errno.EOPNOTSUPP, f"memory: swap is active but {parent}/memory.swap.max is "
                                   "missing, so the memory limit cannot exclude swap",
                                   hint="boot with swapaccount=1 (CONFIG_MEMCG_SWAP), or swapoff -a")

    def _enable_io(self, parent: str) -> None:
        """The io controller only serves block I/O limits, so it is optional:
        given to our children when the base cgroup delegates it (feature 'io');
        a sandbox that asks for limits without it fails in arm()."""
        if not self._io_delegated:
            return  # the base cgroup does not delegate io
        try:
            write_value(os.path.join(parent, "cgroup.subtree_control"), b"+io")
        except OSError:
            return
        self.features.add("io")

    # -- one sandbox -------------------------------------------------------
    def make(self, parents: tuple[str, ...], name: str) -> tuple[str, ...]:
        d = parents[0] + "/" + name
        try:
            self.fs.mkdir(d, 0o755)
        except OSError as exc:
            raise setup_error(exc, "cgroup2", "mkdir", d) from exc
        return (d,)

    def warm(self, dirs: tuple[str, ...]) -> None:
        """Look up every file arm() will open (kernfs builds dentries lazily)."""
        sample = CgroupLimits(memory_bytes=4096, cpus=1.0, pids_max=1)
        for w in v2_limit_writes(sample, memsw="memsw" in self.features):
            try:
                os.stat(dirs[0] + "/" + w.filename)
            except OSError:
                pass  # arm() reports it properly

    def arm(self, dirs: tuple[str, ...], limits: CgroupLimits):
        """Write the limits, open the directory fd for CLONE_INTO_CGROUP.
        Returns (procs_fds=(), clone_fd).  The caller discards `dirs` on failure."""
        (d,) = dirs
        if limits.io and "io" not in self.features:
            raise CgroupSetupError(errno.EOPNOTSUPP, f"io: controller not available to {self.base} (its "
                                   "cgroup.subtree_control lacks +io), so block I/O limits cannot be set",
                                   hint="delegate +io to the supervisor's cgroup, or drop the io limits")
        for w in v2_limit_writes(limits, memsw="memsw" in self.features):
            path = d + "/" + w.filename
            try:
                fd = os.open(path, WRITE_FLAGS)
                try:
                    os.write(fd, w.value)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise setup_error(exc, w.controller, f"write {w.value.decode()} ({w.why}) to", path) from exc
        try:
            return (), os.open(d, _DIR_FLAGS)
        except OSError as exc:
            raise setup_error(exc, "cgroup2", "open", d) from exc

    def discard(self, dirs) -> None:
        """Best-effort rmdir of directories no process ever entered."""
        for d in dirs:
            try:
                self.fs.rmdir(d)
            except OSError:
                pass

    def memory_peak_path(self, dirs) -> str | None:
        return dirs[0] + "/memory.peak" if "memory.peak" in self.features else None

    def stats(self, dirs) -> CgroupStats:
        (d,) = dirs
        path = d
        try:
            peak = -1
            if "memory.peak" in self.features:
                path = d + "/memory.peak"
                peak = parse_int(_teardown.read_text(path))
            path = d + "/cpu.stat"
            usage_usec = parse_keyed(_teardown.read_text(path)).get("usage_usec", 0)
            path = d + "/memory.events"
            oom_kills = parse_keyed(_teardown.read_text(path)).get("oom_kill", 0)
            path = d + "/pids.current"
            pids = parse_int(_teardown.read_text(path))
        except OSError as exc:
            raise setup_error(exc, "stats", "read", path) from exc
        return CgroupStats(memory_peak_bytes=peak, cpu_time_ns=usage_usec * 1000, oom_kills=oom_kills,
                           pids_current=pids)

    def kill(self, dirs) -> None:
        try:
            _teardown.kill_v2(dirs[0], "cgroup.kill" in self.features)
        except OSError as exc:
            raise setup_error(exc, "cgroup2", "kill members of", dirs[0]) from exc

    def remove(self, dirs, timeout: float) -> None:
        cgroup_kill = "cgroup.kill" in self.features

        def kill_pass(busy):
            for d in busy:
                _teardown.kill_v2(d, cgroup_kill)

        try:
            _teardown.remove_dirs(dirs, kill_pass, timeout, rmdir=self.fs.rmdir)
        except OSError as exc:
            raise setup_error(exc, "cgroup2", "rmdir", exc.filename or dirs[0]) from exc
