"""Event invocations on real sandboxes: 202 at once, delivery through the same
environments, retries and destinations -- and a fault run of 2,000 events with
20 % handler failures and random environment kills in which every event ends
exactly once, as configured."""
import json
import os
import random
import signal
import tempfile
import threading
import time

import pytest

import sandbox
from conftest import requires_sandbox_privileges
from sandbox.functions import InvalidParameterValueException, RequestTooLargeException, ResourceNotFoundException

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]

HANDLER = """
import os
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    with open("/tmp/seen", "a") as f:
        f.write(context.aws_request_id + "\\n")
    return {"n": event.get("n"), "pid": os.getpid()}
"""


@pytest.fixture
def code(tmp_path):
    (tmp_path / "app.py").write_text(HANDLER)
    return str(tmp_path)


class Collect:
    def __init__(self):
        self.records = []
        self.lock = threading.Lock()

    def __call__(self, record):
        with self.lock:
            self.records.append(record)

    def wait(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.records) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.records


def test_event_returns_202_at_once_and_is_delivered(code, no_leaks):
    ok = Collect()
    with sandbox.Runtime() as rt:
        rt.create_function("f", code, "app.handler", memory_mb=1769)
        rt.put_function_event_invoke_config("f", on_success=ok)
        started = time.monotonic()
        result = rt.invoke("f", b'{"n": 7}', invocation_type="Event")
        assert time.monotonic() - started < 0.5          # queued, not run
        assert result.status_code == 202 and result.payload == b""
        (record,) = ok.wait(1)
        assert record["requestContext"]["requestId"] == result.request_id
        assert record["requestContext"]["condition"] == "Success"
        assert record["responsePayload"]["n"] == 7
        # delivered through the same kind of environment a synchronous call uses
        sync = rt.invoke("f", b'{"n": 8}')
        assert json.loads(sync.payload)["pid"] == record["responsePayload"]["pid"]


def test_failures_are_retried_then_written_to_a_dead_letter_directory(code, tmp_path, no_leaks):
    dlq = tmp_path / "dlq"
    dlq.mkdir()
    with sandbox.Runtime(async_retry_delays_s=(0.05, 0.05), dead_letter_dir=str(dlq)) as rt:
        rt.create_function("f", code, "app.handler", memory_mb=1769)
        result = rt.invoke("f", b'{"fail": true}', invocation_type="Event")
        deadline = time.monotonic() + 10
        while not list(dlq.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.02)
    (path,) = dlq.glob("*.json")
    record = json.loads(path.read_text())
    assert record["requestContext"]["requestId"] == result.request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"] == {"fail": True}
    assert record["responsePayload"]["errorType"] == "RuntimeError"


def test_dry_run_checks_only_and_bad_event_requests_are_refused(code, no_leaks):
    with sandbox.Runtime() as rt:
        rt.create_function("f", code, "app.handler", memory_mb=1769)
        assert rt.invoke("f", b"{}", invocation_type="DryRun").status_code == 204
        assert rt.pending_events() == 0 and rt._manager.live == 0      # nothing ran
        with pytest.raises(ResourceNotFoundException):
            rt.invoke("nope", b"{}", invocation_type="Event")
        with pytest.raises(RequestTooLargeException):
            rt.invoke("f", b"x" * (1024 * 1024 + 1), invocation_type="Event")
        with pytest.raises(InvalidParameterValueException):
            rt.invoke("f", b"{}", invocation_type="Sometimes")
        with pytest.raises(InvalidParameterValueException):
            rt.put_function_event_invoke_config("f", maximum_retry_attempts=5)


def test_close_delivers_queued_events_first(code, no_leaks):
    ok = Collect()
    rt = sandbox.Runtime()
    rt.create_function("f", code, "app.handler", memory_mb=1769)
    rt.put_function_event_invoke_config("f", on_success=ok)
    ids = {rt.invoke("f", json.dumps({"n": i}).encode(), invocation_type="Event").request_id for i in range(50)}
    rt.close()
    assert {r["requestContext"]["requestId"] for r in ok.records} == ids


@pytest.mark.slow
def test_fault_run_every_event_ends_exactly_once_as_configured(code, no_leaks):
    """2,000 events, 20 % asked to fail, environments SIGKILLed at random while
    they work: each event reaches on_success or on_failure exactly once; those
    asked to fail after exactly 1 + 2 retries; none is lost."""
    ok, failed = Collect(), Collect()
    rng = random.Random(1234)
    plan = {}
    with sandbox.Runtime(async_retry_delays_s=(0.01, 0.02), event_pollers=4) as rt:
        rt.create_function("f", code, "app.handler", memory_mb=1769)
        rt.put_function_event_invoke_config("f", maximum_retry_attempts=2, on_success=ok, on_failure=failed)
        stop = threading.Event()
        kills = []

        def killer():
            while not stop.is_set():
                time.sleep(0.05)
                for pool in rt._manager.pools():
                    for env in pool.busy():
                        box = env._box
                        if box is None:
                            continue
                        try:
                            with open(f"/proc/{box.pid}/task/{box.pid}/children") as f:
                                children = f.read().split()
                        except OSError:
                            continue
                        if children and rng.random() < 0.5:
                            try:
                                os.kill(int(children[0]), signal.SIGKILL)   # the runtime, pid 2 inside
                                kills.append(children[0])
                            except ProcessLookupError:
                                pass

        thread = threading.Thread(target=killer)
        thread.start()
        try:
            for i in range(2000):
                fail = rng.random() < 0.2
                rid = rt.invoke("f", json.dumps({"n": i, "fail": fail}).encode(), invocation_type="Event").request_id
                plan[rid] = fail
            ok.wait(2000 - sum(plan.values()), timeout=120)
            deadline = time.monotonic() + 120
            while len(ok.records) + len(failed.records) < 2000 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join()
        assert rt.failed_events() == []
    ended = [r["requestContext"]["requestId"] for r in ok.records + failed.records]
    assert len(ended) == 2000 and set(ended) == set(plan), "an event was lost or delivered twice"
    assert kills, "the fault run killed no environment"
    for record in failed.records:
        context = record["requestContext"]
        assert context["condition"] == "RetriesExhausted"
        assert context["approximateInvokeCount"] == 3
    for record in ok.records:
        assert not plan[record["requestContext"]["requestId"]]
        assert 1 <= record["requestContext"]["approximateInvokeCount"] <= 3
    failed_ids = {r["requestContext"]["requestId"] for r in failed.records}
    assert {rid for rid, fail in plan.items() if fail} <= failed_ids   # every event asked to fail ended there
    # the others failed only if the killer hit all three of their attempts


def test_a_refused_dead_letter_dir_leaves_nothing_behind(tmp_path, no_leaks):
    """Bad input is refused before anything is made: no thread, state
    directory or sandbox outlives the ValueError."""
    threads = set(threading.enumerate())
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(ValueError, match="dead_letter_dir"):
        sandbox.Runtime(dead_letter_dir=str(tmp_path / "missing"))
    assert set(threading.enumerate()) <= threads
    made = {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("sandbox-runtime-")}
    assert not made, made
