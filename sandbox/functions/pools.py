"""Which environment serves an invocation: one pool of environments per
function version, and the manager that caps, ages and reaps them.

Rules (Lambda's): an environment belongs to exactly one pool -- one
(function, version, $LATEST generation) -- for its whole life; it serves one
invocation at a time; an idle one is reused (most recently used first, so
the warmest stays warm); a new one is started when none is idle.  Pools of
replaced code or configuration drain: idle environments go at once, busy ones
when their invocation ends.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import uuid

from .environment import READY, Environment
from .errors import TooManyRequestsException
from .runtime_interface.environment import RuntimeInterfaceEnvironment


class EnvironmentPool:
    def __init__(self, key, spec, manager: "EnvironmentManager"):
        self.key = key
        self.spec = spec
        self._manager = manager
        self._idle: list[Environment] = []       # LIFO
        self._busy: set[Environment] = set()
        self._lock = threading.Lock()
        self.draining = False
        self.retire_at: float | None = None   # monotonic time its environments must be gone by (credentials)
        self.provisioned_target = 0           # provisioned concurrency asked for (metrics: spillover)
        self.code = None                      # the CodePackage its environments mount (materialized)
        self.layers_code = None               # the merged layers' package at /opt, if any

    def acquire(self) -> Environment | None:
        """An idle environment, now busy; None when a new one must be started."""
        unfit = []
        env = None
        with self._lock:
            while self._idle:
                candidate = self._idle.pop()
                if candidate.usable() and not self._manager.expired(candidate):
                    env = candidate
                    self._busy.add(env)
                    break
                unfit.append(candidate)
        for old in unfit:
            self._manager.destroy(old)
        return env

    def start(self, provisioned: bool = False) -> tuple[Environment, object]:
        """Start a new environment (counted against the runtime's cap) and run
        its init.  Returns (environment, init outcome); the environment is busy
        when its outcome is "ready".  A provisioned one is initialized ahead of
        demand (AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency) and is
        exempt from the idle timeout."""
        self._manager.reserve_slot(self)
        spec = self.spec
        if self._manager.zygotes is not None and not spec.runtime_api and spec.config.init:   # fork it from a zygote
            spec = dataclasses.replace(spec, zygote=self._manager.zygotes)
        if provisioned:
            spec = dataclasses.replace(spec, initialization_type="provisioned-concurrency")
        kind = RuntimeInterfaceEnvironment if spec.runtime_api else Environment
        env = kind(spec, uuid.uuid4().hex, self._manager.supervisor)
        env.function = self.key[0]   # whose slot it holds (see EnvironmentManager.reserve_slot)
        env.provisioned = provisioned
        env.retire_at = self.retire_at
        with self._lock:
            self._busy.add(env)
        try:
            outcome = env.start()
        except BaseException:
            self.discard(env)
            raise
        if outcome.kind != "ready":
            self.discard(env)
        return env, outcome

    def release(self, env: Environment) -> None:
        manager = self._manager
        over = manager.over_reserved(env.function)   # the manager's lock before, never inside, ours
        with self._lock:
            self._busy.discard(env)
            keep = env.state == READY and not env.tainted and not self.draining and not manager.expired(env) \
                and not over
            if keep:
                self._idle.append(env)
        if not keep:
            manager.destroy(env)

    def discard(self, env: Environment) -> None:
        """End a busy environment that must not serve again."""
        with self._lock:
            self._busy.discard(env)
        self._manager.destroy(env)

    def drain(self) -> None:
        """Stop reusing this pool's environments: idle ones end now, busy ones on release."""
        with self._lock:
            self.draining = True
            idle, self._idle = self._idle, []
        for env in idle:
            self._manager.destroy(env)

    def take_idle(self, predicate) -> list[Environment]:
        """Remove and return idle environments for which predicate(env) holds."""
        with self._lock:
            taken, kept = [], []
            for env in self._idle:   # the predicate is asked once per environment (it may count)
                (taken if predicate(env) else kept).append(env)
            if taken:
                self._idle = kept
        return taken

    def oldest_idle(self) -> Environment | None:
        with self._lock:
            return self._idle[0] if self._idle else None

    def provisioned(self) -> int:
        """Live provisioned environments (idle or busy)."""
        with self._lock:
            return sum(1 for e in self._idle if e.provisioned) + sum(1 for e in self._busy if e.provisioned)

    def unprovision(self) -> None:
        """Provisioned environments become ordinary (idle-timeout) ones."""
        with self._lock:
            for env in self._idle + list(self._busy):
                env.provisioned = False

    def busy(self) -> list[Environment]:
        with self._lock:
            return list(self._busy)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self._idle), len(self._busy)

    @property
    def empty(self) -> bool:
        with self._lock:
            return not self._idle and not self._busy


class EnvironmentManager:
    """All pools of one Runtime: the cap on live environments, idle timeout,
    maximum lifetime (lease), and a reaper thread that enforces the last two."""

    def __init__(self, supervisor, *, max_environments: int, idle_timeout_s: float, max_lifetime_s: float,
                 on_pool_empty=None, zygotes: tuple[str, ...] | None = None):
        self.supervisor = supervisor
        self.zygotes = zygotes          # None, or the packages a zygote preloads (Runtime(zygotes=...))
        self.max_environments = max_environments
        self.idle_timeout_s = idle_timeout_s
        self.max_lifetime_s = max_lifetime_s
        self._pools: dict = {}
        self._lock = threading.Lock()
        self._live = 0
        self._live_by_function: dict = {}
        self._reserved: dict = {}        # function uid -> reserved concurrency
        self._closed = False
        self._wake = threading.Condition(self._lock)
        self._on_pool_empty = on_pool_empty
        self._reaper = threading.Thread(target=self._reap_loop, name="sandbox-env-reaper", daemon=True)
        self._reaper.start()

    # -- pools ----------------------------------------------------------------------
    def existing_pool(self, key) -> EnvironmentPool | None:
        with self._lock:
            return self._pools.get(key)

    def pool(self, key, make_spec) -> tuple[EnvironmentPool, bool]:
        """(the pool for key, whether it was just created)."""
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                return pool, False
            pool = self._pools[key] = EnvironmentPool(key, make_spec(), self)
            return pool, True

    def drain(self, match) -> None:
        """Drain every pool whose key satisfies match(key)."""
        with self._lock:
            pools = [p for k, p in self._pools.items() if match(k)]
        for pool in pools:
            pool.drain()
        self._collect_empty()

    def pools(self) -> list[EnvironmentPool]:
        with self._lock:
            return list(self._pools.values())

    # -- the cap ----------------------------------------------------------------------
    def reserve_slot(self, pool: EnvironmentPool) -> None:
        """Count a new environment of pool's function.  A function with reserved
        concurrency may have that many environments and no more; the others
        share what is not reserved.  At a cap, the least recently used idle
        environment that holds the same kind of slot is ended first; with none,
        the call is throttled with Lambda's Reason."""
        function = pool.key[0]
        while True:
            with self._lock:
                if self._closed:
                    raise TooManyRequestsException("The runtime is closing", "ConcurrentInvocationLimitExceeded")
                reserved = self._reserved.get(function)
                if reserved is not None:
                    free = self._live_by_function.get(function, 0) < reserved
                    same_kind = [p for p in self._pools.values() if p.key[0] == function]
                    reason = "ReservedFunctionConcurrentInvocationLimitExceeded"
                else:
                    unreserved_live = self._live - sum(self._live_by_function.get(f, 0) for f in self._reserved)
                    free = unreserved_live < self.max_environments - sum(self._reserved.values())
                    same_kind = [p for p in self._pools.values() if p.key[0] not in self._reserved]
                    reason = "ConcurrentInvocationLimitExceeded"
                if free:
                    self._live += 1
                    self._live_by_function[function] = self._live_by_function.get(function, 0) + 1
                    return
            victim = None
            for other in same_kind:
                env = other.oldest_idle()
                if env is not None and (victim is None or env.last_used < victim[1].last_used):
                    victim = (other, env)
            if victim is None:
                exc = TooManyRequestsException("Rate Exceeded.", reason)
                exc.final = reserved == 0   # reserved concurrency 0: the function is switched off
                raise exc
            if victim[0].take_idle(lambda e, env=victim[1]: e is env):
                self.destroy(victim[1])

    def set_reserved(self, function, count: int | None) -> None:
        """Reserve `count` environments for a function (None: no reservation).
        Idle environments over a lowered count end now; busy ones when their
        invocation ends (release)."""
        with self._lock:
            if count is None:
                self._reserved.pop(function, None)
            else:
                self._reserved[function] = count
            pools = [p for p in self._pools.values() if p.key[0] == function]
            excess = [self._live_by_function.get(function, 0) - count] if count is not None else [0]

        def surplus(env):
            excess[0] -= 1
            return excess[0] >= 0

        for pool in pools:
            for env in pool.take_idle(surplus):
                self.destroy(env)

    def over_reserved(self, function) -> bool:
        if function not in self._reserved:   # the common case, without the lock (a dict lookup is atomic)
            return False
        with self._lock:
            reserved = self._reserved.get(function)
            return reserved is not None and self._live_by_function.get(function, 0) > reserved

    def reserved_total(self, excluding=None) -> int:
        with self._lock:
            return sum(n for f, n in self._reserved.items() if f != excluding)

    def expired(self, env: Environment) -> bool:
        now = time.monotonic()
        return now - env.created >= self.max_lifetime_s or (env.retire_at is not None and now >= env.retire_at)

    def destroy(self, env: Environment) -> None:
        try:
            env.destroy()
        finally:
            with self._lock:
                self._live -= 1
                self._live_by_function[env.function] -= 1
                if not self._live_by_function[env.function]:
                    del self._live_by_function[env.function]
                self._wake.notify_all()

    @property
    def live(self) -> int:
        with self._lock:
            return self._live

    # -- reaping --------------------------------------------------------------------
    def _reap_loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                self._wake.wait(min(1.0, self.idle_timeout_s / 2, self.max_lifetime_s / 2))
                if self._closed:
                    return
            self.reap()

    def reap(self) -> None:
        """End idle environments past the idle timeout or their lease."""
        now = time.monotonic()

        def stale(env):
            idle_too_long = not env.provisioned and now - env.last_used >= self.idle_timeout_s
            retired = env.retire_at is not None and now >= env.retire_at
            return idle_too_long or retired or now - env.created >= self.max_lifetime_s

        for pool in self.pools():
            for env in pool.take_idle(stale):
                self.destroy(env)
        self._collect_empty()

    def _collect_empty(self) -> None:
        with self._lock:
            gone = [p for p in self._pools.values() if p.draining and p.empty]
            for pool in gone:
                del self._pools[pool.key]
        if self._on_pool_empty:
            for pool in gone:
                self._on_pool_empty(pool)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout_s: float = 30.0) -> None:
        """End every environment, busy or not, and stop the reaper.  Busy ones
        are killed; their invoking threads clean up and count them down."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        self._reaper.join()
        for pool in self.pools():
            pool.drain()
            for env in pool.busy():
                env.kill()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._live > 0 and time.monotonic() < deadline:
                self._wake.wait(0.05)
        self._collect_empty()
