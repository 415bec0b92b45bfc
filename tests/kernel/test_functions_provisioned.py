"""Provisioned concurrency on real sandboxes: n environments initialized ahead
of demand (they see AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency,
their first invocation has no Init Duration), replaced when one is killed,
only for published versions, gone when deleted."""
import json
import os
import signal
import time

import pytest

import sandbox
from conftest import requires_sandbox_privileges
from sandbox.functions import InvalidParameterValueException
from sandbox.functions.errors import ProvisionedConcurrencyConfigNotFoundException

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]
HANDLER = ("import os\ndef handler(event, context):\n"
           "    return {'type': os.environ['AWS_LAMBDA_INITIALIZATION_TYPE'], 'stream': context.log_stream_name}\n")


def wait_status(rt, version, status, allocated, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        config = rt.get_provisioned_concurrency_config("f", version)
        if config["Status"] == status and config["AllocatedProvisionedConcurrentExecutions"] == allocated:
            return config
        time.sleep(0.05)
    raise AssertionError(f"not {status}/{allocated}: {config}")


@pytest.fixture
def rt(tmp_path, no_leaks):
    (tmp_path / "app.py").write_text(HANDLER)
    with sandbox.Runtime() as runtime:
        runtime.create_function("f", str(tmp_path), "app.handler", memory_mb=1769)
        yield runtime


def test_provisioned_environments_are_warm_and_replaced(rt):
    version = rt.publish_version("f").version
    config = rt.put_provisioned_concurrency_config("f", version, 2)
    assert config["RequestedProvisionedConcurrentExecutions"] == 2
    wait_status(rt, version, "READY", 2)
    result = rt.invoke("f", b"{}", qualifier=version, log_type="Tail")
    assert json.loads(result.payload)["type"] == "provisioned-concurrency"
    assert result.init_duration_ms is None                      # initialized ahead of the call
    import base64
    assert "Init Duration" not in base64.b64decode(result.log_result).decode()
    # kill one provisioned environment's runtime: it is replaced
    (pool,) = [p for p in rt._manager.pools() if p.key[1] == version]
    victim = pool.oldest_idle()
    with open(f"/proc/{victim._box.pid}/task/{victim._box.pid}/children") as f:
        os.kill(int(f.read().split()[0]), signal.SIGKILL)
    time.sleep(0.3)
    rt.invoke("f", b"{}", qualifier=version)                     # notices the dead one, uses the other
    wait_status(rt, version, "READY", 2)
    assert pool.provisioned() == 2
    # $LATEST stays on demand
    assert json.loads(rt.invoke("f", b"{}").payload)["type"] == "on-demand"


def test_only_published_versions_and_bad_values_are_refused(rt):
    with pytest.raises(InvalidParameterValueException):
        rt.put_provisioned_concurrency_config("f", "$LATEST", 1)
    version = rt.publish_version("f").version
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InvalidParameterValueException):
            rt.put_provisioned_concurrency_config("f", version, bad)
    rt.put_function_concurrency("f", 1)
    with pytest.raises(InvalidParameterValueException):
        rt.put_provisioned_concurrency_config("f", version, 2)    # more than the function may have


def test_delete_returns_environments_to_on_demand(rt):
    version = rt.publish_version("f").version
    rt.put_provisioned_concurrency_config("f", version, 1)
    wait_status(rt, version, "READY", 1)
    rt.delete_provisioned_concurrency_config("f", version)
    with pytest.raises(ProvisionedConcurrencyConfigNotFoundException):
        rt.get_provisioned_concurrency_config("f", version)
    (pool,) = [p for p in rt._manager.pools() if p.key[1] == version]
    assert pool.provisioned() == 0
