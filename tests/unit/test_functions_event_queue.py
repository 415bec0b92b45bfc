"""EventQueue rules with a fake synchronous invoke: retries of function errors,
backoff of throttles until the event's maximum age, destinations, and close()
handing over what is left.  No sandboxes here (tests/kernel has those)."""
import json
import threading
import time
from types import SimpleNamespace

import pytest

from sandbox.functions.errors import InvalidParameterValueException, ResourceNotFoundException, \
    TooManyRequestsException
from sandbox.functions.events import Event, EventInvokeConfig, EventQueue


def result(error=None, payload=b'"ok"'):
    return SimpleNamespace(status_code=200, executed_version="$LATEST", function_error=error,
                           payload=payload)


class Destination:
    def __init__(self):
        self.records = []
        self.done = threading.Event()
        self.expected = 1

    def __call__(self, record):
        self.records.append(record)
        if len(self.records) >= self.expected:
            self.done.set()


def config(**kw):
    base = dict(maximum_retry_attempts=2, maximum_event_age_s=60, on_success=None, on_failure=None)
    base.update(kw)
    return SimpleNamespace(**base)   # bypasses validation: lets the tests use ages of a second


def event(payload=b'{"n": 1}'):
    return Event("req-1", "fn", None, payload, "arn:aws:lambda:us-east-1:123456789012:function:fn:$LATEST")


def run(invoke, cfg, *, delays=(0.01, 0.02), backoff=(0.01, 0.05), events=(None,), expected=1):
    queue = EventQueue(invoke, lambda name, qualifier: cfg, pollers=2, retry_delays_s=delays,
                       throttle_backoff_s=backoff)
    target = cfg.on_failure or cfg.on_success
    target.expected = expected
    for e in events:
        queue.submit(e or event())
    assert target.done.wait(10)
    queue.close(timeout_s=1)
    return queue


def test_success_goes_to_on_success_with_lambdas_record_shape():
    ok = Destination()
    run(lambda *a: result(), config(on_success=ok))
    (record,) = ok.records
    assert record["version"] == "1.0"
    assert record["requestContext"] == {"requestId": "req-1", "condition": "Success", "approximateInvokeCount": 1,
                                        "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:fn:$LATEST"}
    assert record["requestPayload"] == {"n": 1}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == "ok"
    assert record["timestamp"].endswith("Z")


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_function_errors_are_retried_as_configured_then_on_failure(retries):
    calls = []
    failed = Destination()

    def invoke(name, payload, qualifier, request_id):
        calls.append((time.monotonic(), request_id))
        return result("Unhandled", b'{"errorType": "ValueError", "errorMessage": "no"}')

    run(invoke, config(maximum_retry_attempts=retries, on_failure=failed), delays=(0.05, 0.1))
    assert len(calls) == retries + 1
    assert {rid for _, rid in calls} == {"req-1"}            # the same request id on every attempt
    (record,) = failed.records
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == retries + 1
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "ValueError"
    gaps = [b[0] - a[0] for a, b in zip(calls, calls[1:])]
    assert all(g >= d * 0.9 for g, d in zip(gaps, (0.05, 0.1)))   # 1st retry after delay 1, 2nd after delay 2


def test_a_retry_that_succeeds_is_a_success():
    outcomes = iter([result("Unhandled"), result()])
    ok = Destination()
    run(lambda *a: next(outcomes), config(on_success=ok))
    assert ok.records[0]["requestContext"]["approximateInvokeCount"] == 2


def test_throttles_back_off_until_the_event_is_too_old():
    calls = []
    failed = Destination()

    def invoke(*args):
        calls.append(time.monotonic())
        raise TooManyRequestsException("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")

    run(invoke, config(maximum_event_age_s=0.5, on_failure=failed), backoff=(0.02, 0.1))
    (record,) = failed.records
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0     # never reached the function
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert gaps[0] >= 0.018 and gaps[1] >= 0.036 and max(gaps) < 0.2   # doubling, capped at the maximum
    assert calls[-1] - calls[0] < 0.6


def test_a_deleted_function_ends_its_events_on_failure_elsewhere(caplog):
    def config_for(name, qualifier):
        raise ResourceNotFoundException("Function not found: fn")

    queue = EventQueue(lambda *a: result(), config_for, pollers=1)
    queue.submit(event())
    deadline = time.monotonic() + 5
    while not queue.failed and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.close(timeout_s=1)
    (record,) = queue.failed                      # no destination: kept and logged, never silent
    assert record["responsePayload"]["errorType"] == "ResourceNotFoundException"
    assert "no destination" in caplog.text


def test_close_delivers_what_comes_due_and_hands_over_later_retries():
    failed = Destination()
    failed.expected = 2
    cfg = config(on_failure=failed)
    queue = EventQueue(lambda *a: result("Unhandled"), lambda n, q: cfg, pollers=1, retry_delays_s=(30, 30))
    queue.submit(event())
    queue.submit(Event("req-2", "fn", None, b"{}", "arn"))
    time.sleep(0.3)                               # both failed once; their retries are 30 s away
    started = time.monotonic()
    queue.close(timeout_s=1)
    assert time.monotonic() - started < 1.5       # retries due after the deadline are not waited for
    assert sorted(r["requestContext"]["requestId"] for r in failed.records) == ["req-1", "req-2"]
    assert {r["requestContext"]["condition"] for r in failed.records} == {"RuntimeClosed"}
    with pytest.raises(Exception):
        queue.submit(event())


def test_directory_destination_gets_one_whole_json_file_per_record(tmp_path):
    cfg = EventInvokeConfig(on_failure=str(tmp_path)).validated()
    queue = EventQueue(lambda *a: result("Unhandled"), lambda n, q: cfg, pollers=1, retry_delays_s=(0, 0))
    queue.submit(event())
    deadline = time.monotonic() + 5
    while not list(tmp_path.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.close(timeout_s=1)
    (path,) = tmp_path.glob("*.json")
    assert "RetriesExhausted" in path.name
    assert json.loads(path.read_text())["requestContext"]["approximateInvokeCount"] == 3
    assert not list(tmp_path.glob(".record-*"))


@pytest.mark.parametrize("kw", [dict(maximum_retry_attempts=3), dict(maximum_retry_attempts=-1),
                                dict(maximum_event_age_s=59), dict(maximum_event_age_s=21601),
                                dict(on_failure="/no/such/dir"), dict(on_success=42)])
def test_bad_event_invoke_configs_are_refused(kw):
    with pytest.raises(InvalidParameterValueException):
        EventInvokeConfig(**kw).validated()
