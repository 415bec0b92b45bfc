"""Reserved concurrency on real sandboxes: a cap per function, exactly at the
cap; capacity reserved away from other functions; 0 switches a function off
(Event invocations go straight to on_failure); bad values are refused."""
import threading
import time

import pytest

import sandbox
from conftest import requires_sandbox_privileges
from sandbox.functions import InvalidParameterValueException, TooManyRequestsException

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]
HANDLER = "import time\ndef handler(event, context):\n    time.sleep(event.get('s', 0))\n    return 'ok'\n"


@pytest.fixture
def code(tmp_path):
    (tmp_path / "app.py").write_text(HANDLER)
    return str(tmp_path)


def concurrently(rt, calls):
    """Start (name, seconds) invocations together; (results, throttles by reason)."""
    results, throttles = [], []
    lock = threading.Lock()

    def call(name, seconds):
        try:
            r = rt.invoke(name, f'{{"s": {seconds}}}'.encode())
            with lock:
                results.append((name, r))
        except TooManyRequestsException as exc:
            with lock:
                throttles.append((name, exc.reason))

    threads = [threading.Thread(target=call, args=c) for c in calls]
    for t in threads:
        t.start()
        time.sleep(0.15)   # each holds its environment before the next one asks
    for t in threads:
        t.join()
    return results, throttles


def test_throttling_exactly_at_the_reserved_cap(code, no_leaks):
    with sandbox.Runtime(max_environments=8) as rt:
        rt.create_function("f", code, "app.handler", memory_mb=1769)
        assert rt.put_function_concurrency("f", 2) == {"ReservedConcurrentExecutions": 2}
        results, throttles = concurrently(rt, [("f", 1.0)] * 3)
        assert len(results) == 2
        assert throttles == [("f", "ReservedFunctionConcurrentInvocationLimitExceeded")]
        rt.delete_function_concurrency("f")
        assert rt.get_function_concurrency("f") == {}
        results, throttles = concurrently(rt, [("f", 0.6)] * 3)
        assert len(results) == 3 and throttles == []


def test_reserved_capacity_is_kept_from_other_functions(code, no_leaks):
    with sandbox.Runtime(max_environments=3) as rt:
        rt.create_function("reserved", code, "app.handler", memory_mb=1769)
        rt.create_function("other", code, "app.handler", memory_mb=1769)
        rt.put_function_concurrency("reserved", 2)
        results, throttles = concurrently(rt, [("other", 1.0), ("other", 1.0)])
        assert len(results) == 1
        assert throttles == [("other", "ConcurrentInvocationLimitExceeded")]
        results, throttles = concurrently(rt, [("reserved", 0.6), ("reserved", 0.6), ("other", 0.6)])
        assert len(results) == 3 and throttles == []     # the reserved slots were there for it
        with pytest.raises(InvalidParameterValueException):
            rt.put_function_concurrency("other", 2)      # 2 + 2 > 3


def test_zero_switches_a_function_off_and_events_go_to_on_failure(code, no_leaks):
    failed = []
    with sandbox.Runtime() as rt:
        rt.create_function("off", code, "app.handler", memory_mb=1769)
        rt.put_function_concurrency("off", 0)
        with pytest.raises(TooManyRequestsException) as info:
            rt.invoke("off", b"{}")
        assert info.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert info.value.status_code == 429
        rt.put_function_event_invoke_config("off", on_failure=failed.append)
        queued = rt.invoke("off", b'{"s": 0}', invocation_type="Event")
        deadline = time.monotonic() + 5
        while not failed and time.monotonic() < deadline:
            time.sleep(0.02)
    (record,) = failed
    assert record["requestContext"]["requestId"] == queued.request_id
    assert record["requestContext"]["approximateInvokeCount"] == 0     # no retries, no attempt
    assert record["responsePayload"]["errorType"] == "TooManyRequestsException"


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_reserved_values_are_refused(code, bad, no_leaks):
    with sandbox.Runtime() as rt:
        rt.create_function("f", code, "app.handler", memory_mb=1769)
        with pytest.raises(InvalidParameterValueException):
            rt.put_function_concurrency("f", bad)


def test_lowering_the_reservation_ends_warm_environments_over_it(code, no_leaks):
    with sandbox.Runtime() as rt:
        rt.create_function("f", code, "app.handler", memory_mb=1769)
        concurrently(rt, [("f", 0.5)] * 3)
        assert rt._manager.live == 3
        rt.put_function_concurrency("f", 1)
        assert rt._manager.live == 1                      # two idle environments over the new cap ended
        rt.put_function_concurrency("f", 0)
        assert rt._manager.live == 0
        with pytest.raises(TooManyRequestsException):    # a warm environment does not get around 0
            rt.invoke("f", b"{}")
