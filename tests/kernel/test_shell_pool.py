"""The pool of pre-made sandboxes sizes itself to demand: a burst of spawns
that finds it empty grows a plan's target, quiet time shrinks it back, and
what it holds is discarded with it."""
from __future__ import annotations

import threading
import time

import pytest

import sandbox
from conftest import requires_sandbox_privileges
from sandbox.launcher import _validated
from sandbox.plan import encoded_plan

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges(), pytest.mark.usefixtures("no_leaks")]


def ready(pool, encoded) -> int:
    with pool._lock:
        return len(pool._ready.get(encoded, ()))


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_burst_grows_the_target_and_quiet_shrinks_it():
    sup = sandbox.Supervisor(pool_size=1)
    pool = sup.pool
    pool.decay_s = 0.3
    config = sandbox.Config(hostname="pool-adapt", memory_mb=64)
    encoded = encoded_plan(_validated(config))
    try:
        for _ in range(2):   # a plan is pre-made for from its second use on
            sandbox.run(["true"], config, supervisor=sup)
        assert pool.target(encoded) == 1
        wait_for(lambda: ready(pool, encoded) == 1)
        boxes, errors = [], []

        def start():
            try:
                boxes.append(sandbox.spawn(["sleep", "0.5"], config, supervisor=sup))
            except Exception as exc:   # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for box in boxes:
            assert box.wait().exit_code == 0
        grown = pool.target(encoded)
        assert grown > 1, grown
        wait_for(lambda: ready(pool, encoded) == grown)   # refilled to the new target
        time.sleep(0.35)
        sandbox.run(["true"], config, supervisor=sup)       # a quiet hit: one step back
        assert pool.target(encoded) == grown - 1
        assert ready(pool, encoded) <= grown - 1
    finally:
        sup.close()


def test_one_off_plans_never_grow():
    sup = sandbox.Supervisor(pool_size=1)
    try:
        config = sandbox.Config(hostname="pool-once", memory_mb=64)
        sandbox.run(["true"], config, supervisor=sup)
        assert sup.pool.target(encoded_plan(_validated(config))) == 1
    finally:
        sup.close()
