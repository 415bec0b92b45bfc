"""cgroup v1 backend: one directory per hierarchy (memory, cpu, cpuacct, pids and,
when mounted, freezer; co-mounted controllers such as cpu,cpuacct share one).

Control files are written (from the pure plan in limits.py) and read (stats)
through cgroupspy controllers built for the exact sandbox directories: a root
Node per directory, no tree walks.  Their file I/O is replaced by plain
os.open/os.write/os.read, so that a missing control file is ENOENT rather than
a file create, and a write costs one syscall triple (~7 µs) on the spawn path.

Verbs: set up the parent (first create), make / warm / arm a sandbox cgroup,
read stats, kill, remove.  The child joins by writing "0" into each procs fd.
"""
from __future__ import annotations

import errno
import os

from cgroupspy.controllers import Controller, CpuAcctController, CpuController, MemoryController
from cgroupspy.nodes import Node

from ..errors import CgroupSetupError
from . import _teardown
from ._common import PROCS_FLAGS, WRITE_FLAGS, close_fds, setup_error
from .host import V1_CONTROLLERS, CgroupHost
from .limits import CgroupLimits, CgroupStats, v1_limit_writes
from .parse import parse_int


class _FileIO:
    """cgroupspy Controller file access, minus O_CREAT and Python file objects."""

    def set_property(self, filename, value):
        path = os.path.join(self.node.full_path, os.fsencode(filename))
        data = value if isinstance(value, bytes) else str(value).encode()
        fd = os.open(path, WRITE_FLAGS)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def get_property(self, filename):
        return _teardown.read_text(os.path.join(self.node.full_path, os.fsencode(filename))).strip()


class _Memory(_FileIO, MemoryController):
    pass


class _Cpu(_FileIO, CpuController):
    pass


class _CpuAcct(_FileIO, CpuAcctController):
    pass


class _Plain(_FileIO, Controller):
    """pids and freezer: cgroupspy has no class for them."""


_CLASSES = {"memory": _Memory, "cpu": _Cpu, "cpuacct": _CpuAcct}

# Join order for the child: memory first so nothing it allocates is uncharged.
_ORDER = ("memory", "pids", "cpu", "cpuacct", "freezer", "blkio")


def controller(name: str, directory: str) -> Controller:
    """A cgroupspy controller for one known directory (a root Node: no walk)."""
    return _CLASSES.get(name, _Plain)(Node(os.fsencode(directory)))


class V1Backend:
    version = 1

    def __init__(self, host: CgroupHost, fs, delegated_root: str | None = None):
        """Validate before any side effect: every needed controller is mounted and
        our own cgroup in it is visible; swap can be excluded if swap is on.
        `delegated_root` is a v2 notion (v1 cgroups can always nest below our
        own): ignored here."""
        self.fs = fs
        # Optional hierarchies: freezer (kill), blkio (block I/O limits; joined by
        # every sandbox when mounted, so a limit never needs a second migration).
        wanted = list(V1_CONTROLLERS) + [c for c in ("freezer", "blkio") if c in host.features]
        for name in V1_CONTROLLERS:
            if host.own_path(name) is None:
                raise CgroupSetupError(errno.ENOENT, f"{name}: no cgroup v1 hierarchy for this controller is mounted "
                                       "(or our own cgroup in it is not visible)",
                                       hint=f"mount it (mount -t cgroup -o {name} cgroup /sys/fs/cgroup/{name}) "
                                       "or run without the 'cgroups' layer")
        self.memsw = "memsw" in host.features
        if not self.memsw and "swap" in host.features:
            raise CgroupSetupError(errno.EOPNOTSUPP, "memory: swap is active but memory.memsw.* is missing, "
                                   "so the memory limit cannot exclude swap",
                                   hint="boot with swapaccount=1, or turn swap off (swapoff -a)")
        # One entry per hierarchy: (own dir, controllers in it), in join order.
        hier: dict[str, list[str]] = {}
        for name in sorted(wanted, key=_ORDER.index):
            hier.setdefault(host.own_path(name), []).append(name)
        self.hierarchies = tuple((own, tuple(names)) for own, names in hier.items())
        self._index = {n: i for i, (_own, names) in enumerate(self.hierarchies) for n in names}
        self.has_freezer = "freezer" in self._index
        self.features = host.features
        # Files arm() touches, as (hierarchy index, name): warm() looks them up early.
        sample = CgroupLimits(memory_bytes=4096, cpus=1.0, pids_max=1)
        self._arm_files = tuple((self._index[w.controller], w.filename)
                                for w in v1_limit_writes(sample, memsw=self.memsw))
        self._arm_files += tuple((i, "cgroup.procs") for i in range(len(self.hierarchies)))

    # -- parent ------------------------------------------------------------
    def parent_dirs(self, name: str) -> tuple[str, ...]:
        return tuple(os.path.join(own, name) for own, _names in self.hierarchies)

    def setup_parent(self, dirs: tuple[str, ...]) -> None:
        """mkdir the supervisor's parent in every hierarchy (rolled back on failure)."""
        self._mkdir_all(dirs)

    def _mkdir_all(self, dirs: tuple[str, ...]) -> None:
        """mkdir one directory per hierarchy, all or none."""
        made = []
        try:
            for d, (_own, names) in zip(dirs, self.hierarchies):
                try:
                    self.fs.mkdir(d, 0o755)
                except OSError as exc:
                    raise setup_error(exc, ",".join(names), "mkdir", d) from exc
                made.append(d)
        except BaseException:
            self.discard(made)
            raise

    # -- one sandbox -------------------------------------------------------
    def make(self, parents: tuple[str, ...], name: str) -> tuple[str, ...]:
        """mkdir the sandbox cgroup in every hierarchy (off the hot path when a
        spare is ready).  Rolled back on failure."""
        dirs = tuple(p + "/" + name for p in parents)
        self._mkdir_all(dirs)
        return dirs

    def warm(self, dirs: tuple[str, ...]) -> None:
        """Look up every file arm() will open.  kernfs makes a file's dentry and
        inode on first lookup in a new cgroup, which roughly doubles the cost of
        that first open (~15-20 µs instead of ~8); a spare pays it in advance."""
        for i, name in self._arm_files:
            try:
                os.stat(dirs[i] + "/" + name)
            except OSError:
                pass  # arm() reports it properly

    def arm(self, dirs: tuple[str, ...], limits: CgroupLimits):
        """Write the limits and open the procs fds the child joins through.
        Returns (procs_fds, clone_fd=-1).  The caller discards `dirs` on failure."""
        if limits.io and "blkio" not in self._index:
            raise CgroupSetupError(errno.EOPNOTSUPP, "blkio: no cgroup v1 blkio hierarchy is mounted (or our own "
                                   "cgroup in it is not visible), so block I/O limits cannot be set",
                                   hint="mount it (mount -t cgroup -o blkio cgroup /sys/fs/cgroup/blkio) "
                                   "or drop the io limits")
        ctrls: dict[str, Controller] = {}
        for w in v1_limit_writes(limits, memsw=self.memsw):
            ctrl = ctrls.get(w.controller)
            if ctrl is None:
                ctrl = ctrls[w.controller] = controller(w.controller, dirs[self._index[w.controller]])
            try:
                ctrl.set_property(w.filename, w.value)
            except OSError as exc:
                path = dirs[self._index[w.controller]] + "/" + w.filename
                raise setup_error(exc, w.controller, f"write {w.value.decode()} ({w.why}) to", path) from exc
        fds = []
        try:
            for d, (_own, names) in zip(dirs, self.hierarchies):
                path = d + "/cgroup.procs"
                try:
                    fds.append(os.open(path, PROCS_FLAGS))
                except OSError as exc:
                    raise setup_error(exc, ",".join(names), "open", path) from exc
        except BaseException:
            close_fds(fds)
            raise
        return tuple(fds), -1

    def discard(self, dirs) -> None:
        """Best-effort rmdir of directories no process ever entered."""
        for d in reversed(tuple(dirs)):
            try:
                self.fs.rmdir(d)
            except OSError:
                pass

    def _dir(self, dirs, name):
        return dirs[self._index[name]]

    def memory_peak_path(self, dirs) -> str | None:
        name = "memory.memsw.max_usage_in_bytes" if self.memsw else "memory.max_usage_in_bytes"
        return f"{self._dir(dirs, 'memory')}/{name}"

    def stats(self, dirs) -> CgroupStats:
        path = "?"
        try:
            path = self._dir(dirs, "memory")
            mem = controller("memory", path)
            peak = mem.memsw_max_usage_in_bytes if self.memsw else mem.max_usage_in_bytes
            oom = mem.oom_control
            oom_kills = oom.get("oom_kill", 0) if isinstance(oom, dict) else 0
            path = self._dir(dirs, "cpuacct")
            cpu_ns = controller("cpuacct", path).usage
            path = self._dir(dirs, "pids")
            pids = parse_int(controller("pids", path).get_property("pids.current"))
        except OSError as exc:
            raise setup_error(exc, "stats", "read", path) from exc
        return CgroupStats(memory_peak_bytes=peak or 0, cpu_time_ns=cpu_ns or 0, oom_kills=oom_kills,
                           pids_current=pids)

    def kill(self, dirs) -> None:
        freezer = self._dir(dirs, "freezer") if self.has_freezer else None
        try:
            _teardown.kill_v1(dirs, freezer)
        except OSError as exc:
            raise setup_error(exc, "freezer" if freezer else "cgroup", "kill members of", dirs[0]) from exc

    def remove(self, dirs, timeout: float) -> None:
        """Kill what is left, wait until empty, rmdir in every hierarchy."""
        freezer = self._dir(dirs, "freezer") if self.has_freezer else None

        def kill_pass(busy):
            _teardown.kill_v1(busy, freezer if freezer in busy else None)

        try:
            _teardown.remove_dirs(dirs, kill_pass, timeout, rmdir=self.fs.rmdir)
        except OSError as exc:
            raise setup_error(exc, "cgroup", "rmdir", exc.filename or dirs[0]) from exc
