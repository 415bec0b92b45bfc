"""CgroupManager (one per supervisor process) and SandboxCgroup (one per sandbox).

Layout, per hierarchy:   <own cgroup>/<prefix>-<supervisor pid>-<random>/sb<N>
The parent is made on the first create(), right after the reaper is started,
and removed by close() (or by the reaper if the supervisor dies).

Spares: mkdir is most of a cgroup's cost (v1: 20-40 µs per hierarchy), so the
manager keeps a few empty sandbox directories ready (made on the first create()
and after each destroy()); create() takes one and only writes the limits and
opens the attach fds.  Spares hold no process and no limit; they live under the
parent, so close() and the reaper remove them like the rest.

Retiring: a sandbox whose stats were read is destroyed by one background
thread (retire()), so that waiting for a sandbox does not also wait for its
rmdirs (v1: ~1 ms over five hierarchies) and the spare that replaces it.
close() finishes whatever is still queued, and the reaper covers a crash.
"""
from __future__ import annotations

import atexit
import collections
import errno
import itertools
import os
import secrets
import threading
import weakref

from ..errors import CgroupSetupError
from ._common import HostFs, close_fds, setup_error
from .host import CgroupHost, detect_cgroups
from .limits import CgroupLimits, CgroupStats, check_name_prefix, parent_name, sandbox_name
from .reaper import Reaper
from .v1 import V1Backend
from .v2 import V2Backend

# How long destroy() keeps killing and retrying rmdir before it gives up.
DESTROY_TIMEOUT = 5.0
# Empty sandbox directories kept ready for create().
DEFAULT_SPARES = 2


class SandboxCgroup:
    """The cgroup(s) of one sandbox.  Attach with `procs_fds` (v1: the child
    writes "0" into each) or `clone_fd` (v2: clone3 CLONE_INTO_CGROUP)."""

    __slots__ = ("procs_fds", "clone_fd", "path", "dirs", "_backend", "_manager", "_key", "_lock", "_destroyed")

    def __init__(self, manager, backend, key, dirs, procs_fds, clone_fd):
        self.procs_fds: tuple[int, ...] = procs_fds
        self.clone_fd: int = clone_fd
        self.dirs: tuple[str, ...] = dirs
        self.path: str = dirs[0] if len(dirs) == 1 else f"{dirs[0]} (+{len(dirs) - 1} hierarchies)"
        self._backend = backend
        self._manager = manager
        self._key = key
        self._lock = threading.Lock()
        self._destroyed = False

    def __repr__(self):
        state = "destroyed" if self._destroyed else "open"
        return f"<SandboxCgroup {self.path} {state}>"

    def release_attach_fds(self) -> None:
        """Close procs_fds / clone_fd once the child is spawned (idempotent)."""
        fds, self.procs_fds = self.procs_fds, ()
        fd, self.clone_fd = self.clone_fd, -1
        close_fds(fds + (fd,))

    def stats(self) -> CgroupStats:
        if self._destroyed:
            raise CgroupSetupError(errno.ENOENT, f"stats: {self.path} was destroyed")
        return self._backend.stats(self.dirs)

    @property
    def memory_peak_path(self) -> str | None:
        """The control file holding the memory high-water mark (bytes), for
        callers that read it often; None when the kernel keeps none."""
        return self._backend.memory_peak_path(self.dirs)

    def retire(self) -> None:
        """destroy() in the background (the manager's retiring thread): for a
        sandbox that ended and whose stats were read.  Idempotent."""
        self._manager._retire(self)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (does not wait)."""
        if not self._destroyed:
            self._backend.kill(self.dirs)

    def destroy(self) -> None:
        """Kill, wait until empty, rmdir everywhere, close the fds.  Idempotent.
        Raises CgroupSetupError if the cgroup stays busy (it stays registered:
        close() and the reaper try again)."""
        with self._lock:
            if self._destroyed:
                return
            self.release_attach_fds()
            self._backend.remove(self.dirs, DESTROY_TIMEOUT)
            self._destroyed = True
        self._manager._forget(self._key)
        self._manager._refill()


class CgroupManager:
    """Creates and tracks the sandbox cgroups of one supervisor process.  Thread-safe."""

    def __init__(self, host: CgroupHost, *, name_prefix: str = "sandbox", delegated_root: str | None = None,
                 fs=None, reaper: bool = True, spares: int = DEFAULT_SPARES):
        check_name_prefix(name_prefix)
        self.host = host
        self.fs = fs or HostFs()
        backend_cls = {1: V1Backend, 2: V2Backend}.get(host.version)
        if backend_cls is None:
            raise CgroupSetupError(errno.EINVAL, f"unknown cgroup version {host.version!r}")
        # Validates before any side effect: a missing controller -> CgroupSetupError.
        self._backend = backend_cls(host, self.fs, delegated_root)
        self._owner_pid = os.getpid()
        self._name = parent_name(name_prefix, self._owner_pid, secrets.token_hex(4))
        self.parent_dirs: tuple[str, ...] = self._backend.parent_dirs(self._name)
        self._use_reaper = reaper
        self._reaper: Reaper | None = None
        self._lock = threading.Lock()
        self._ready = False
        self._closed = False
        self._open: dict[str, SandboxCgroup] = {}
        self._seq = itertools.count(1)
        self._spare_target = max(0, int(spares))
        self._spares: collections.deque[tuple[str, ...]] = collections.deque()
        self._retiring: collections.deque[SandboxCgroup] = collections.deque()
        self._retire_wakeup = threading.Condition(self._lock)
        self._retirer: threading.Thread | None = None
        atexit.register(_close_at_exit, weakref.ref(self))

    @property
    def version(self) -> int:
        return self._backend.version

    def __repr__(self):
        return f"<CgroupManager v{self.version} {self._name} open={len(self._open)}>"

    def _set_up_parent(self) -> None:
        """Reaper first, then the parent dirs: they never exist unwatched."""
        if self._use_reaper:
            freezer = None
            if getattr(self._backend, "has_freezer", False):
                freezer = next(d for d, (_own, names) in zip(self.parent_dirs, self._backend.hierarchies)
                               if "freezer" in names)
            try:
                self._reaper = Reaper.start(self.version, self.parent_dirs, freezer)
            except OSError as exc:
                raise setup_error(exc, "reaper", "start watchdog for", self.parent_dirs[0],
                                  hint="the supervisor needs a runnable sys.executable") from exc
        try:
            self._backend.setup_parent(self.parent_dirs)
        except BaseException:
            if self._reaper is not None:
                self._reaper.finish(clean=False)
                self._reaper = None
            raise
        self._ready = True
        for _ in range(self._spare_target):
            self._spares.append(self._make_spare())

    def _make(self) -> tuple[str, ...]:
        return self._backend.make(self.parent_dirs, sandbox_name(next(self._seq)))

    def _make_spare(self) -> tuple[str, ...]:
        dirs = self._make()
        self._backend.warm(dirs)
        return dirs

    def _refill(self) -> None:
        """Top the spares up after a destroy (best effort: create() falls back to mkdir)."""
        if self._closed or len(self._spares) >= self._spare_target:
            return
        try:
            dirs = self._make_spare()
        except CgroupSetupError:
            return
        with self._lock:
            if not self._closed:
                self._spares.append(dirs)
                return
        self._backend.discard(dirs)

    def create(self, limits: CgroupLimits) -> SandboxCgroup:
        """A new sandbox cgroup with `limits` (the hot path)."""
        if not isinstance(limits, CgroupLimits):
            raise TypeError(f"limits must be CgroupLimits, not {type(limits).__name__}")
        if self._closed:
            raise CgroupSetupError(errno.ESHUTDOWN, f"manager {self._name} is closed")
        if not self._ready:
            with self._lock:
                if self._closed:
                    raise CgroupSetupError(errno.ESHUTDOWN, f"manager {self._name} is closed")
                if not self._ready:
                    self._set_up_parent()
        try:
            dirs = self._spares.popleft()
        except IndexError:
            dirs = self._make()
        try:
            fds, clone_fd = self._backend.arm(dirs, limits)
        except BaseException:
            self._backend.discard(dirs)
            raise
        key = dirs[0]
        cg = SandboxCgroup(self, self._backend, key, dirs, fds, clone_fd)
        with self._lock:
            closed = self._closed
            if not closed:
                self._open[key] = cg
        if closed:  # close() ran concurrently: do not leave this one behind
            cg.destroy()
            raise CgroupSetupError(errno.ESHUTDOWN, f"manager {self._name} is closed")
        return cg

    def _retire(self, cg: SandboxCgroup) -> None:
        with self._lock:
            if not self._closed and os.getpid() == self._owner_pid:
                self._retiring.append(cg)
                if self._retirer is None:
                    self._retirer = threading.Thread(target=self._retire_loop, name="sandbox-cgroup-retirer",
                                                     daemon=True)
                    self._retirer.start()
                self._retire_wakeup.notify()
                return
        cg.destroy()   # closed (or closing): close() must not miss it, so do it now

    def _retire_loop(self) -> None:
        while True:
            with self._lock:
                while not self._retiring and not self._closed:
                    self._retire_wakeup.wait()
                if not self._retiring:
                    return   # closed: close() destroys whatever is left
                cg = self._retiring.popleft()
            try:
                cg.destroy()
            except CgroupSetupError:
                pass  # stays registered: close() and the reaper try again

    def _forget(self, key: str) -> None:
        with self._lock:
            self._open.pop(key, None)

    def open_cgroups(self) -> list[SandboxCgroup]:
        with self._lock:
            return list(self._open.values())

    def spare_paths(self) -> frozenset[str]:
        """Directories of the spares (empty, no process, no limits): for leak checks."""
        with self._lock:
            return frozenset(d for dirs in self._spares for d in dirs)

    def close(self) -> None:
        """Destroy every sandbox cgroup still open, remove the parents, dismiss
        the reaper.  Idempotent; a no-op in a forked child.  Raises the first
        CgroupSetupError after trying everything (the reaper then cleans up)."""
        if os.getpid() != self._owner_pid:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._open.values())
            spares = list(self._spares)
            self._spares.clear()
            self._retiring.clear()   # still in _open: destroyed below (destroy() is idempotent)
            self._retire_wakeup.notify()
            retirer, self._retirer = self._retirer, None
        if retirer is not None and retirer is not threading.current_thread():
            retirer.join()   # a destroy in progress finishes before the parent goes
        errors = []
        for cg in pending:
            try:
                cg.destroy()
            except CgroupSetupError as exc:
                errors.append(exc)
        for dirs in spares:
            try:
                self._backend.remove(dirs, DESTROY_TIMEOUT)
            except CgroupSetupError as exc:
                errors.append(exc)
        if self._ready and not errors:
            try:
                self._backend.remove(self.parent_dirs, DESTROY_TIMEOUT)
            except CgroupSetupError as exc:
                errors.append(exc)
        if self._reaper is not None:
            self._reaper.finish(clean=not errors)
            self._reaper = None
        if errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _close_at_exit(ref) -> None:
    manager = ref()
    if manager is not None:
        try:
            manager.close()
        except CgroupSetupError:
            pass  # the reaper was told to clean up


def open_manager(host: CgroupHost | None = None, *, name_prefix: str = "sandbox", delegated_root: str | None = None,
                 fs=None, reaper: bool = True, spares: int = DEFAULT_SPARES) -> CgroupManager:
    """The cgroup manager for this supervisor process (detects the host unless
    given).

    delegated_root  v2 only: the cgroup directory (ours or an ancestor) whose
                    subtree_control delegates +memory +pids +cpu, to create our
                    parent in when our own cgroup cannot delegate (it holds
                    processes).  Default: our own cgroup.  Ignored on v1.
    spares          empty sandbox directories kept ready (0: mkdir in create()).
    fs, reaper      test seams (fake cgroupfs; no watchdog process).
    """
    return CgroupManager(host or detect_cgroups(), name_prefix=name_prefix, delegated_root=delegated_root, fs=fs,
                         reaper=reaper, spares=spares)
