"""The hostile-handler suite (test_functions_hostile.py) against environments
forked from a zygote: every attack there, the same expectations, and after
close() nothing left -- the zygote, its cgroup and its pre-forked children
included."""
from __future__ import annotations

import pytest

import conftest
import sandbox
from sandbox.zygote import close_service
from test_functions_hostile import *  # noqa: F401,F403  (the tests, collected again here)
from test_functions_hostile import CODE, MB, requires_sandbox_privileges

pytestmark = [pytest.mark.hostile, requires_sandbox_privileges()]


@pytest.fixture(scope="module")
def rt(sink):
    """Overrides the module's runtime: the same, with zygotes."""
    conftest._drain_supervisor()
    before, netns = conftest.LeakSnapshot(), conftest._net_namespaces_held()
    sup = sandbox.Supervisor()
    runtime = sandbox.Runtime(log_sink=sink, max_environments=24, zygotes=True, supervisor=sup)
    try:
        runtime.create_function("canary", CODE, "app.handler", memory_mb=128, timeout_s=3)
        yield runtime
    finally:
        runtime.close()
        close_service(sup)
        sup.close()
    conftest.assert_no_leaks(before, netns)


def test_daemon_is_gone_after_close(no_leaks):
    sup = sandbox.Supervisor()
    runtime = sandbox.Runtime(zygotes=True, supervisor=sup)
    runtime.create_function("daemon", CODE, "app.handler", memory_mb=MB)
    assert runtime.invoke("daemon", b'{"do": "daemon"}').json() == "daemonized"
    assert runtime.invoke("daemon", b'{"do": "ping"}').json() == "pong"
    runtime.close()
    close_service(sup)
    sup.close()                            # no_leaks: no process, mount or cgroup left
