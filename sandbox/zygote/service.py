"""Sandboxes forked from zygotes: `spawn()`, the counterpart of
launcher.spawn for a command the zygote can run (`python -S -B -u SCRIPT`).

Everything after the fork is the normal path's: a zygote child is a Shell
(pool.py) -- cloned, waiting for its id maps, then set up up to the launch --
so launch, error reporting, waiting, killing and the cgroup are launcher.py's.
Children are pre-forked in the background, per plan, like pre-made sandboxes.
"""
from __future__ import annotations

import atexit
import collections
import errno
import os
import threading
import weakref

from ..errors import ConfigError, SpawnError
from ..launcher import Sandbox, _validated, launch_shell
from ..plan import _init_program, encoded_plan
from ..pool import Shell, ShellPool, release_shell, sandbox_cgroup
from .client import Zygote, ZygoteKind, plan_memfd

MAX_PLANS = 64      # packed plans kept (one sealed memfd each)


class ZygoteService:
    """The zygotes of one supervisor (one per ZygoteKind, started on first use,
    restarted when found dead), the packed plans, and the pre-forked children."""

    def __init__(self, supervisor, pool_size: int = 2):
        self._supervisor = supervisor
        self._zygotes: dict[ZygoteKind, Zygote] = {}
        self._plans: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self._pools: dict[ZygoteKind, _ZygoteShellPool] = {}
        self._pool_size = pool_size
        self._closed = False
        self.restarts = 0

    def zygote(self, kind: ZygoteKind) -> Zygote:
        """The live zygote of `kind`, started (or restarted) if need be."""
        with self._lock:
            if self._closed:
                raise SpawnError(errno.ESHUTDOWN, "the zygote service is closed", "zygote")
            zygote = self._zygotes.get(kind)
            if zygote is not None and zygote.alive():
                return zygote
            if zygote is not None:   # died: nothing of it is needed by its environments
                self.restarts += 1
                zygote.close()
            zygote = self._zygotes[kind] = Zygote(kind, self._supervisor)
            try:
                zygote.start()
            except BaseException:
                del self._zygotes[kind]
                raise
            return zygote

    def zygotes(self) -> list[Zygote]:
        with self._lock:
            return list(self._zygotes.values())

    def _plan(self, encoded) -> tuple[int, int]:
        with self._lock:
            entry = self._plans.get(encoded)
            if entry is not None:
                self._plans.move_to_end(encoded)
                return entry
        fd, n = plan_memfd(encoded)
        with self._lock:
            if encoded in self._plans:   # packed twice concurrently: keep one
                os.close(fd)
                return self._plans[encoded]
            self._plans[encoded] = (fd, n)
            evicted = self._plans.popitem(last=False)[1] if len(self._plans) > MAX_PLANS else None
        if evicted:
            os.close(evicted[0])   # a request in flight sent its own copy (SCM_RIGHTS): safe
        return fd, n

    def fork_shell(self, kind: ZygoteKind, encoded) -> Shell:
        """A zygote child for `encoded`, released into its setup (prepare_shell's twin)."""
        plan_fd, plan_len = self._plan(encoded)
        cgroup = sandbox_cgroup(encoded.plan.config, self._supervisor)   # with io limits too
        try:
            zygote = self.zygote(kind)
            pid, pidfd, error_fd, sync_fd, control_fd = zygote.fork(
                plan_fd, plan_len, encoded.plan.namespaces.clone_flags, _init_program.fd(), cgroup)
        except BaseException:
            if cgroup is not None:
                cgroup.destroy()
            raise
        finally:
            if cgroup is not None:
                cgroup.release_attach_fds()
        return release_shell(Shell(pid, pidfd, error_fd, control_fd, cgroup), encoded, sync_fd)

    def pool(self, kind: ZygoteKind) -> "_ZygoteShellPool":
        with self._lock:
            pool = self._pools.get(kind)
            if pool is None:
                pool = self._pools[kind] = _ZygoteShellPool(self._supervisor, self, kind, self._pool_size)
            return pool

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools, self._pools = list(self._pools.values()), {}
            zygotes, self._zygotes = list(self._zygotes.values()), {}
            plans, self._plans = list(self._plans.values()), collections.OrderedDict()
        for pool in pools:
            pool.close()
        for zygote in zygotes:
            zygote.close()
        for fd, _ in plans:
            os.close(fd)


class _ZygoteShellPool(ShellPool):
    """ShellPool whose shells come from a zygote.  Unlike ShellPool it
    pre-forks for a plan from its first use on: a zygote child costs a fork,
    not a new interpreter."""

    def __init__(self, supervisor, service: ZygoteService, kind: ZygoteKind, size: int):
        super().__init__(supervisor, size=size)
        self._service = service
        self._kind = kind

    def take_or_fork(self, encoded) -> Shell:
        return self.take(encoded) or self._service.fork_shell(self._kind, encoded)

    def replenish(self, encoded) -> None:
        with self._lock:
            self._seen[encoded] = True   # no "seen twice" rule: see the class doc
        super().replenish(encoded)

    def _fill(self, encoded) -> None:
        try:
            shell = self._service.fork_shell(self._kind, encoded)
        except Exception:
            with self._lock:
                self._pending[encoded] -= 1
                self.failures += 1
            return
        with self._lock:
            self._pending[encoded] -= 1
            closed = self._closed
            if not closed:
                self._ready.setdefault(encoded, collections.deque()).append(shell)
                self._ready.move_to_end(encoded)
        if closed:
            shell.discard()


_services: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_services_lock = threading.Lock()


def service_for(supervisor) -> ZygoteService:
    """The ZygoteService of `supervisor` (made on first use, closed with it or at exit)."""
    with _services_lock:
        service = _services.get(supervisor)
        if service is None:
            service = _services[supervisor] = ZygoteService(supervisor, pool_size=supervisor.pool.size)
            atexit.register(service.close)
        return service


def close_service(supervisor) -> None:
    """Stop the zygotes of `supervisor` and discard their pre-forked children
    (environments already made live on)."""
    with _services_lock:
        service = _services.pop(supervisor, None)
    if service is not None:
        service.close()


def check_command(argv, kind: ZygoteKind) -> None:
    if len(argv) < 5 or argv[0] != kind.interpreter or list(argv[1:4]) != ["-S", "-B", "-u"] \
            or argv[4].startswith("-"):
        raise ConfigError(f"a zygote runs only `{kind.interpreter} -S -B -u SCRIPT ...`, not {list(argv[:5])!r}",
                          field="argv")


def spawn(argv, config, kind: ZygoteKind, *, stdin=None, stdout=None, stderr=None, pass_fds=(),
          supervisor=None) -> Sandbox:
    """Start `argv` (`python -S -B -u SCRIPT ...`) in a new sandbox forked from
    the zygote of `kind`.  Same contract as launcher.spawn."""
    from ..supervisor import default_supervisor

    config = _validated(config)
    check_command(argv, kind)
    supervisor = supervisor or default_supervisor()
    encoded = encoded_plan(config)
    if not encoded.plan.init:
        raise ConfigError("a zygote needs the pid layer and init=True (the runtime runs as pid 2)", field="init")
    pool = service_for(supervisor).pool(kind)
    shell = pool.take_or_fork(encoded)
    pool.replenish(encoded)
    return launch_shell(shell, encoded, argv, stdin, stdout, stderr, pass_fds, supervisor)
