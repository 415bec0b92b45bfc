"""Process-wide services every sandbox of one supervisor shares: the cgroup
manager, the thread that performs clones, and the deadline watchdog.

Why a clone thread: PR_SET_PDEATHSIG fires when the parent *thread* exits, so a
sandbox cloned from a short-lived worker thread would be killed with it.  Clones
from the main thread run inline; others are handed to one long-lived thread.
"""
from __future__ import annotations

import atexit
import os
import sys
import heapq
import queue
import threading
import time
from concurrent.futures import Future


class _CloneThread:
    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, fn):
        """Run fn (which clones) on a thread that outlives its sandboxes."""
        current = threading.current_thread()
        if current is threading.main_thread() or current is self._thread:
            return fn()
        return self.submit(fn).result()

    def submit(self, fn) -> Future:
        """Queue fn on the clone thread without waiting."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="sandbox-clone", daemon=True)
                self._thread.start()
        future: Future = Future()
        self._jobs.put((fn, future))
        return future

    def barrier(self) -> None:
        """Wait until every job queued so far has run."""
        if self._thread is not None and threading.current_thread() is not self._thread:
            self.submit(lambda: None).result()

    def _loop(self):
        while True:
            fn, future = self._jobs.get()
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed back to the caller's thread
                future.set_exception(exc)


class _Watchdog:
    """Kills sandboxes whose wall-clock deadline passed, even if nobody waits."""

    def __init__(self):
        self._heap: list = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._seq = 0

    def watch(self, deadline: float, expire) -> None:
        with self._cond:
            self._seq += 1
            earliest = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, self._seq, expire))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="sandbox-watchdog", daemon=True)
                self._thread.start()
            elif earliest:
                self._cond.notify()  # only an earlier deadline changes what the thread sleeps for

    def _loop(self):
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, expire = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
            expire()


class Supervisor:
    """Owns the shared services; `sandbox.spawn`/`run` use a default instance.
    `pool_size` pre-made sandboxes are kept ready per recently used Config
    (0 turns pre-making off: every spawn then clones on the spot)."""

    def __init__(self, pool_size: int = 2, cgroup_delegated_root: str | None = None):
        from .pool import ShellPool

        self.clone_thread = _CloneThread()
        self.watchdog = _Watchdog()
        self.pool = ShellPool(self, size=pool_size)
        self._cgroups = None
        self._network = None  # egress namespaces (sandbox/net/manager.py), made on first use
        # cgroup v2 only: a delegated subtree (systemd Delegate=yes) we may create
        # sandbox cgroups in; see docs/cgroups.md.
        self._cgroup_root = cgroup_delegated_root or os.environ.get("SANDBOX_CGROUP_DELEGATED_ROOT") or None
        self._lock = threading.Lock()

    @property
    def cgroups(self):
        with self._lock:
            if self._cgroups is None:
                from .cgroups import open_manager

                self._cgroups = open_manager(delegated_root=self._cgroup_root)
            return self._cgroups

    @property
    def network(self):
        """Pre-made egress namespaces and the host table (net='egress' only)."""
        with self._lock:
            if self._network is None:
                from .net.manager import NetworkManager

                self._network = NetworkManager(pool_size=self.pool.size)
            return self._network

    def drain_pool(self) -> None:
        """Discard pre-made sandboxes (they hold processes, cgroups, namespaces)."""
        self.pool.drain()

    def close(self) -> None:
        self.pool.close()
        zygotes = sys.modules.get("sandbox.zygote.service")   # only if zygotes were ever used
        if zygotes is not None:
            zygotes.close_service(self)   # before the cgroups: each zygote lives in one of ours
        with self._lock:
            network, self._network = self._network, None
        if network is not None:
            network.close()  # after the shells: each one's lease is released with it
        with self._lock:
            manager, self._cgroups = self._cgroups, None
        if manager is not None:
            manager.close()


_default: Supervisor | None = None
_default_lock = threading.Lock()


def default_supervisor() -> Supervisor:
    global _default
    with _default_lock:
        if _default is None:
            _default = Supervisor()
            atexit.register(_default.close)
        return _default
