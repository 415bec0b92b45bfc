"""Provisioned concurrency: keep n initialized environments of a published
version at all times (re-created when one dies or reaches its lease), so that
invocations find them warm and their first invocation has no Init Duration.

One thread, the provisioner, compares each configuration's target with the
provisioned environments alive in the version's pool and starts what is
missing, one at a time.  Status: IN_PROGRESS until all are ready, READY, or
FAILED when an environment cannot be initialized (retried with backoff).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from .models import api_time

log = logging.getLogger("sandbox.functions.provisioned")
RETRY_AFTER_FAILURE_S = 5.0
CHECK_INTERVAL_S = 0.25


@dataclass
class ProvisionedConfig:
    function: str
    qualifier: str
    requested: int
    pool_for: object            # () -> EnvironmentPool of the version (creates it on first use)
    status: str = "IN_PROGRESS"
    reason: str | None = None
    allocated: int = 0
    retry_at: float = 0.0
    last_modified: str = field(default_factory=api_time)

    def to_dict(self) -> dict:
        out = {"RequestedProvisionedConcurrentExecutions": self.requested,
               "AvailableProvisionedConcurrentExecutions": self.allocated,
               "AllocatedProvisionedConcurrentExecutions": self.allocated,
               "Status": self.status, "LastModified": self.last_modified}
        if self.reason:
            out["StatusReason"] = self.reason
        return out


class Provisioner:
    def __init__(self, metrics=None):
        self.metrics = metrics
        self._configs: dict = {}
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="sandbox-provisioner", daemon=True)
        self._thread.start()

    def put(self, config: ProvisionedConfig) -> None:
        with self._lock:
            old = self._configs.get((config.function, config.qualifier))
            self._configs[(config.function, config.qualifier)] = config
            self._lock.notify_all()
        if old is not None and config.requested < old.requested:
            old.pool_for().unprovision()   # the surplus becomes ordinary; the loop tops up again

    def get(self, function: str, qualifier: str) -> ProvisionedConfig | None:
        with self._lock:
            return self._configs.get((function, qualifier))

    def delete(self, function: str, qualifier: str | None = None) -> None:
        with self._lock:
            gone = [k for k in self._configs if k[0] == function and qualifier in (None, k[1])]
            configs = [self._configs.pop(k) for k in gone]
        for config in configs:
            if self.metrics is not None:
                self.metrics.provisioned(config.function, config.qualifier, allocated=0, requested=0)
            try:
                pool = config.pool_for()
                pool.provisioned_target = 0
                pool.unprovision()
            except Exception:   # the version is gone with its pool
                pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                configs = list(self._configs.values())
            for config in configs:
                # Start what is missing back to back (one at a time: cold starts
                # in parallel on a small machine only slow each other down).
                while self._top_up(config):
                    pass
            with self._lock:
                if self._closed:
                    return
                self._lock.wait(CHECK_INTERVAL_S)

    def _top_up(self, config: ProvisionedConfig) -> bool:
        """Start one missing environment; True when another may be needed."""
        try:
            pool = config.pool_for()
        except Exception as exc:
            config.status, config.reason = "FAILED", str(exc)
            return False
        pool.provisioned_target = config.requested
        alive = pool.provisioned()
        config.allocated = min(alive, config.requested)
        if self.metrics is not None:
            self.metrics.provisioned(config.function, config.qualifier, allocated=config.allocated,
                                     requested=config.requested)
        if alive >= config.requested:
            config.status, config.reason = "READY", None
            return False
        if time.monotonic() < config.retry_at or self._closed or self._configs.get(
                (config.function, config.qualifier)) is not config:
            return False
        config.status = "IN_PROGRESS" if config.status != "FAILED" else config.status
        try:
            env, outcome = pool.start(provisioned=True)
        except Exception as exc:   # throttled by a cap, or the host refused a sandbox
            config.status, config.reason = "FAILED", f"{type(exc).__name__}: {exc}"
            config.retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S
            log.warning("provisioned concurrency for %s:%s: %s", config.function, config.qualifier, config.reason)
            return False
        if outcome.kind != "ready":
            config.status = "FAILED"
            config.reason = f"an environment failed to initialize ({outcome.kind}): {outcome.body[:200]!r}"
            config.retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S
            return False
        pool.release(env)   # ready and idle: invocations take it like any other
        config.allocated = min(pool.provisioned(), config.requested)
        if config.allocated >= config.requested:
            config.status, config.reason = "READY", None
            return False
        return True
