"""Metrics against counted invocations on real sandboxes: Invocations, Errors,
Throttles (not Invocations), Duration, ConcurrentExecutions, async counters,
provisioned use and spillover -- in the snapshot and in Prometheus text."""
import json
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

import sandbox
from conftest import requires_sandbox_privileges
from sandbox.functions import TooManyRequestsException

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]
HANDLER = ("import time\ndef handler(event, context):\n    time.sleep(event.get('s', 0))\n"
           "    if event.get('fail'):\n        raise ValueError('no')\n    return 1\n")


@pytest.fixture
def rt(tmp_path, no_leaks):
    (tmp_path / "app.py").write_text(HANDLER)
    with sandbox.Runtime(async_retry_delays_s=(0.01, 0.01)) as runtime:
        runtime.create_function("f", str(tmp_path), "app.handler", memory_mb=1769)
        runtime.create_function("off", str(tmp_path), "app.handler", memory_mb=1769)
        yield runtime


def test_counts_match_what_was_done(rt):
    for i in range(30):
        rt.invoke("f", json.dumps({"fail": i % 3 == 0}).encode())
    rt.put_function_concurrency("off", 0)
    for _ in range(4):
        with pytest.raises(TooManyRequestsException):
            rt.invoke("off", b"{}")
    done = []
    rt.put_function_event_invoke_config("f", maximum_retry_attempts=1, on_success=done.append,
                                        on_failure=done.append)
    for i in range(5):
        rt.invoke("f", json.dumps({"fail": i == 0}).encode(), invocation_type="Event")
    deadline = time.monotonic() + 10
    while len(done) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    snapshot = rt.metrics_snapshot()
    f = snapshot["functions"]["f"]["versions"]["$LATEST"]
    # 30 sync + 5 async + 1 retry of the failing event
    assert f["Invocations"] == 36
    assert f["Errors"] == 10 + 2
    assert f["Throttles"] == 0
    assert f["Duration"]["count"] == 36 and f["Duration"]["p50"] > 0
    assert f["ConcurrentExecutions"] == 0 and f["MaxConcurrentExecutions"] >= 1
    assert snapshot["functions"]["f"]["AsyncEventsReceived"] == 5
    assert snapshot["functions"]["off"]["Throttles"] == 4
    assert snapshot["functions"]["off"]["versions"].get("$LATEST", {}).get("Invocations", 0) == 0
    families = {m.name: m for m in text_string_to_metric_families(rt.metrics_prometheus().decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in families.values() for s in m.samples}
    assert samples[("sandbox_function_invocations_total", (("function", "f"), ("version", "$LATEST")))] == 36
    assert samples[("sandbox_function_errors_total", (("function", "f"), ("version", "$LATEST")))] == 12


def test_concurrency_and_provisioned_spillover(rt):
    version = rt.publish_version("f").version
    rt.put_provisioned_concurrency_config("f", version, 1)
    deadline = time.monotonic() + 20
    while rt.get_provisioned_concurrency_config("f", version)["Status"] != "READY" and time.monotonic() < deadline:
        time.sleep(0.05)
    threads = [threading.Thread(target=rt.invoke, args=("f", b'{"s": 0.5}', version)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.25)
    live = rt.metrics_snapshot()["functions"]["f"]["versions"][version]
    for t in threads:
        t.join()
    assert live["ConcurrentExecutions"] == 2
    after = rt.metrics_snapshot()["functions"]["f"]["versions"][version]
    assert after["ProvisionedConcurrencyInvocations"] == 1
    assert after["ProvisionedConcurrencySpilloverInvocations"] == 1
    assert after["Invocations"] == 2
