"""sandbox.Runtime on real sandboxes: execution environments and the invoke loop.

Warm reuse, separation of versions and functions, replacement of $LATEST,
one invocation at a time per environment, every failure's exact Lambda shape,
the context and environment a handler sees, the logs, thread safety, and
nothing left behind after close().  Handlers live in tests/functions_code/.

Most tests share one Runtime (module fixture, leak-checked after close());
tests of the runtime's own lifecycle make their own under `no_leaks`."""
from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import threading
import time
import uuid

import pytest

import conftest
import sandbox
from conftest import requires_sandbox_privileges
from sandbox.functions import (LATEST, InvalidParameterValueException, InvalidRequestContentException,
                               ResourceConflictException, ResourceNotFoundException, ServiceException)
from sandbox.functions.errors import RequestTooLargeException
from sandbox.functions.spec import PYTHON_VERSION
from sandbox.supervisor import default_supervisor

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]

CODE = os.path.join(conftest.HERE, "functions_code")
MB = 1769                       # one vCPU: CPU is proportional to memory
MAX = 6 * 1024 * 1024
RID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ACCOUNT_ARN = "arn:aws:lambda:us-east-1:123456789012:function:"


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rt(sink):
    for runtime in conftest.leak_checked_runtime(log_sink=sink, max_environments=24):
        yield runtime


@pytest.fixture
def code(tmp_path):
    """code("v1") -> a private copy of tests/functions_code/v1 for this test.

    Packages are content-addressed and shared: with the plain directories, one
    test's function could hold (or release) the very tree the next test stores
    (see test_code_released_while_another_function_stores_the_same_code).  A
    marker file makes each test's packages its own."""
    marker = uuid.uuid4().hex

    def copy(name):
        dest = tmp_path / name
        if not dest.exists():
            shutil.copytree(os.path.join(CODE, name), dest)
            (dest / "_test_marker.py").write_text(f"# {marker}\n")
        return str(dest)

    return copy


@pytest.fixture
def make(rt, request, code):
    """make(handler, package="basic", **settings) -> the name of a new function;
    the test's functions are deleted (their environments end) afterwards."""
    made = []

    def create(handler, package="basic", *, memory_mb=MB, timeout_s=3, **settings):
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", request.node.originalname[5:40]) + f"-{uuid.uuid4().hex[:8]}"
        rt.create_function(name, code(package), handler, memory_mb=memory_mb, timeout_s=timeout_s, **settings)
        made.append(name)
        return name

    yield create
    for name in made:
        rt.delete_function(name)


def call(rt, name, event=None, **kw):
    payload = json.dumps({} if event is None else event).encode()
    return rt.invoke(name, payload, **kw)


def error_of(result) -> dict:
    assert result.function_error == "Unhandled", result
    assert result.status_code == 200
    return json.loads(result.payload)


def tail_of(result) -> str:
    assert result.log_result is not None
    data = base64.b64decode(result.log_result, validate=True)
    assert len(data) <= 4096
    return data.decode()


# -- warm reuse ------------------------------------------------------------------------------
def test_warm_invocations_reuse_one_environment(rt, make):
    fn = make("app.warm")
    results = [call(rt, fn) for _ in range(3)]
    assert {r.environment_id for r in results} == {results[0].environment_id}
    bodies = [r.json() for r in results]
    assert [b["counter"] for b in bodies] == [1, 2, 3]                     # module globals persist
    assert bodies[-1]["seen"] == [r.request_id for r in results]          # so does /tmp
    assert results[0].init_duration_ms is not None and results[0].init_duration_ms > 0
    assert [r.init_duration_ms for r in results[1:]] == [None, None]
    assert all(r.function_error is None and r.status_code == 200 and r.executed_version == LATEST
               for r in results)
    assert all(RID.fullmatch(r.request_id) for r in results)
    assert len({r.request_id for r in results}) == 3


def test_empty_payload_is_an_empty_object(rt, make):
    fn = make("app.echo")
    assert rt.invoke(fn, b"").json() == {}
    assert rt.invoke(fn).json() == {}
    assert rt.invoke(fn, b'[1, "two", null]').json() == [1, "two", None]
    assert rt.invoke(fn, bytearray(b'"text"')).json() == "text"


# -- separation ------------------------------------------------------------------------------
def test_versions_never_share_an_environment_or_tmp(rt, make):
    fn = make("app.marks")
    latest = call(rt, fn, {"mark": "latest"})
    assert latest.json() == {"found": [], "version": LATEST}

    assert rt.publish_version(fn).version == "1"
    v1 = call(rt, fn, {"mark": "v1"}, qualifier="1")
    assert v1.environment_id != latest.environment_id
    assert v1.json() == {"found": [], "version": "1"}, "version 1 saw $LATEST's /tmp"
    assert v1.executed_version == "1"

    again = call(rt, fn, {"mark": "latest2"})
    assert again.environment_id == latest.environment_id
    assert again.json()["found"] == ["mark-latest"]

    rt.update_function_configuration(fn, environment={"GENERATION": "2"})
    updated = call(rt, fn, {"mark": "updated"})
    assert updated.environment_id not in (latest.environment_id, v1.environment_id)
    assert updated.json() == {"found": [], "version": LATEST}, "the new $LATEST saw the old one's /tmp"

    # Version 1 is untouched by $LATEST's update: still warm, its own /tmp.
    v1_again = call(rt, fn, {"mark": "v1b"}, qualifier="1")
    assert v1_again.environment_id == v1.environment_id
    assert v1_again.json()["found"] == ["mark-v1"]


def test_functions_never_share_an_environment_or_tmp(rt, make):
    one, two = make("app.marks"), make("app.marks")      # same code, same handler
    first = call(rt, one, {"mark": "one"})
    second = call(rt, two, {"mark": "two"})
    assert first.environment_id != second.environment_id
    assert second.json()["found"] == [], "function two saw function one's /tmp"
    assert call(rt, one, {"mark": "one-again"}).json()["found"] == ["mark-one"]


def test_publish_makes_no_new_version_when_nothing_changed(rt, make, code):
    fn = make("app.echo")
    assert rt.publish_version(fn).version == "1"
    assert rt.publish_version(fn).version == "1"
    assert rt.publish_version(fn, description="same code, new words").version == "1"
    rt.update_function_code(fn, code("basic"))            # the same content again
    assert rt.publish_version(fn).version == "1"
    rt.update_function_configuration(fn, timeout_s=4)
    v2 = rt.publish_version(fn)
    assert v2.version == "2" and v2.timeout_s == 4
    assert rt.publish_version(fn).version == "2"
    assert [c.version for c in rt.list_versions_by_function(fn)] == [LATEST, "1", "2"]
    assert rt.get_function(fn, "1").timeout_s == 3 and rt.get_function(f"{fn}:2").timeout_s == 4


def test_create_with_publish_makes_version_1(rt, make):
    fn = make("app.echo", publish=True)
    assert [c.version for c in rt.list_versions_by_function(fn)] == [LATEST, "1"]
    assert rt.publish_version(fn).version == "1"


def test_update_function_code_replaces_latest_environments(rt, make, code):
    fn = make("app.handler", "v1")
    rt.publish_version(fn)
    old = call(rt, fn)
    assert old.json() == {"code": "v1"}
    rt.update_function_code(fn, code("v2"))
    new = call(rt, fn)
    assert new.json() == {"code": "v2"}
    assert new.environment_id != old.environment_id and new.init_duration_ms is not None
    assert call(rt, fn).environment_id == new.environment_id
    assert call(rt, fn, qualifier="1").json() == {"code": "v1"}, "the published version changed"


def test_in_flight_invocation_finishes_on_old_code_then_its_environment_drains(rt, make, code):
    fn = make("app.handler", "v1")
    warm = call(rt, fn)
    results = {}
    slow = threading.Thread(target=lambda: results.setdefault("slow", call(rt, fn, {"sleep": 0.6})))
    slow.start()
    time.sleep(0.2)
    rt.update_function_code(fn, code("v2"))
    during = call(rt, fn)
    slow.join(10)
    assert results["slow"].json() == {"code": "v1"} and results["slow"].environment_id == warm.environment_id
    assert during.json() == {"code": "v2"} and during.environment_id != warm.environment_id
    later = [call(rt, fn) for _ in range(3)]
    assert all(r.json() == {"code": "v2"} for r in later)
    assert warm.environment_id not in {r.environment_id for r in later}, "a drained environment was reused"


def second_spawn_of_the_same_config(rt, fn):
    """Two environments of one Config: the supervisor then pre-makes shells for it."""
    call(rt, fn)
    rt.update_function_configuration(fn, description="same Config, new generation")
    call(rt, fn)
    default_supervisor().clone_thread.barrier()    # shells are prepared in the background: wait for them


def test_rolling_back_to_earlier_code_works(rt, make, code):
    fn = make("app.handler", "v1")
    second_spawn_of_the_same_config(rt, fn)
    rt.update_function_code(fn, code("v2"))
    assert call(rt, fn).json() == {"code": "v2"}
    rt.update_function_code(fn, code("v1"))     # the rollback
    for _ in range(3):
        assert call(rt, fn).json() == {"code": "v1"}


def test_a_function_deleted_and_created_again_works(rt, code):
    name = f"recreated-{uuid.uuid4().hex[:8]}"
    for attempt in range(3):
        rt.create_function(name, code("v1"), "app.handler", memory_mb=MB)
        try:
            if attempt == 0:
                second_spawn_of_the_same_config(rt, name)
                rt.update_function_configuration(name, description="")
            assert call(rt, name).json() == {"code": "v1"}
        finally:
            rt.delete_function(name)


def test_code_released_while_another_function_stores_the_same_code(rt, code, monkeypatch):
    """The interleaving, made deterministic: while the newcomer's put() has returned
    the shared tree and before create_function counts it, another thread deletes
    the only other function using that code."""
    holder, newcomer = f"holder-{uuid.uuid4().hex[:8]}", f"newcomer-{uuid.uuid4().hex[:8]}"
    rt.create_function(holder, code("v1"), "app.handler", memory_mb=MB)
    real_put, racers = rt._store.put, []

    def put_then_race(source):
        package = real_put(source)
        racer = threading.Thread(target=rt.delete_function, args=(holder,))
        racer.start()
        racer.join(0.5)          # a runtime that holds its lock here makes the racer wait: fine
        racers.append(racer)
        return package

    monkeypatch.setattr(rt._store, "put", put_then_race)
    try:
        rt.create_function(newcomer, code("v1"), "app.handler", memory_mb=MB)
    finally:
        monkeypatch.undo()
        for racer in racers:
            racer.join(10)
    try:
        assert call(rt, newcomer).json() == {"code": "v1"}
    finally:
        rt.delete_function(newcomer)


def test_update_function_configuration_replaces_latest_environments(rt, make):
    fn = make("app.context_info", environment={"GREETING": "one"})
    old = call(rt, fn)
    assert old.json()["environ"]["GREETING"] == "one"
    rt.update_function_configuration(fn, environment={"GREETING": "two"}, memory_mb=1024)
    new = call(rt, fn)
    body = new.json()
    assert new.environment_id != old.environment_id
    assert body["environ"]["GREETING"] == "two"
    assert body["memory_limit_in_mb"] == "1024" and body["environ"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1024"


def test_update_function_configuration_refuses_bad_settings_and_keeps_the_old_ones(rt, make):
    fn = make("app.echo")
    warm = call(rt, fn)
    with pytest.raises(InvalidParameterValueException):
        rt.update_function_configuration(fn, environment={"AWS_REGION": "eu-west-1"})
    with pytest.raises(InvalidParameterValueException):
        rt.update_function_configuration(fn, memory_mb=64)
    with pytest.raises(TypeError):
        rt.update_function_configuration(fn, colour="blue")
    assert rt.get_function(fn).memory_mb == MB
    assert call(rt, fn).environment_id == warm.environment_id


# -- concurrency -------------------------------------------------------------------------------
def run_threads(count, target):
    barrier = threading.Barrier(count)
    out, errors = [None] * count, []

    def body(i):
        try:
            barrier.wait(10)
            out[i] = target(i)
        except BaseException as exc:  # reported below, with the thread's index
            errors.append((i, exc))

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return out


def assert_one_at_a_time(runs):
    """runs: (environment_id, start, end) triples: no overlap within an environment."""
    by_env = {}
    for env, start, end in runs:
        by_env.setdefault(env, []).append((start, end))
    for env, spans in by_env.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end <= start, f"environment {env} ran two invocations at once: {spans}"
    return by_env


def test_parallel_invocations_run_in_distinct_environments(rt, make):
    fn = make("app.timed")
    results = run_threads(4, lambda i: call(rt, fn, {"sleep": 0.3, "token": i}))
    assert [r.json()["token"] for r in results] == [0, 1, 2, 3]
    # All four were asked for at once and each is busy for 0.3 s: none could wait for another.
    assert len({r.environment_id for r in results}) == 4

    # A second wave, more invocations than environments: reuse, never overlap.
    def several(i):
        return [call(rt, fn, {"sleep": 0.05, "token": i}) for _ in range(3)]

    waves = [r for rs in run_threads(4, several) for r in rs]
    by_env = assert_one_at_a_time((r.environment_id, r.json()["start"], r.json()["end"]) for r in waves)
    assert set(by_env) <= {r.environment_id for r in results}, "four warm environments were not enough"
    assert all(r.init_duration_ms is None for r in waves)


def test_threads_on_two_functions_all_get_their_own_answers(rt, make):
    fns = [make("app.tagged"), make("app.tagged")]

    def worker(i):
        got = []
        for j in range(20):
            fn = fns[(i + j) % 2]
            token = f"{i}-{j}-{uuid.uuid4().hex}"
            result = call(rt, fn, {"token": token})
            got.append((fn, token, result))
        return got

    runs = [r for rs in run_threads(8, worker) for r in rs]
    assert len(runs) == 160
    for fn, token, result in runs:
        assert result.function_error is None, result.payload
        body = result.json()
        assert body["fn"] == fn and body["token"] == token
    envs = {fn: {r.environment_id for f, _, r in runs if f == fn} for fn in fns}
    assert not envs[fns[0]] & envs[fns[1]], "two functions shared an environment"
    assert all(1 <= len(e) <= 8 for e in envs.values())
    assert_one_at_a_time((r.environment_id, r.json()["start"], r.json()["end"]) for _, _, r in runs)


# -- failures: the handler's own ----------------------------------------------------------------
def test_handler_exception_shape_and_the_environment_is_kept(rt, make):
    fn = make("app.fail")
    result = call(rt, fn, {"n": 7})
    body = error_of(result)
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert body["errorMessage"] == "bad value 7" and body["errorType"] == "ValueError"
    assert body["requestId"] == result.request_id
    stack = body["stackTrace"]
    assert isinstance(stack, list) and len(stack) == 1 and all(isinstance(s, str) for s in stack)
    assert stack[0].startswith('  File "/var/task/app.py", line ') and ", in fail\n" in stack[0]
    assert "raise ValueError" in stack[0]
    assert not any("/var/runtime/" in s for s in stack), "bootstrap frames leaked into the stack trace"

    again = call(rt, fn, {"n": 8})
    assert again.environment_id == result.environment_id and again.init_duration_ms is None
    assert error_of(again)["errorMessage"] == "bad value 8"


def test_nested_exception_has_every_handler_frame_in_order(rt, make):
    body = error_of(call(rt, make("app.nested_fail")))
    assert body["errorType"] == "KeyError" and body["errorMessage"] == "'missing'"
    assert [re.search(r", in (\w+)\n", s).group(1) for s in body["stackTrace"]] == ["nested_fail", "inner"]


def test_exception_is_logged_as_one_error_record(rt, make, sink):
    result = call(rt, make("app.fail"), {"n": 1}, log_type="Tail")
    text = sink.records[result.request_id].text
    # awslambdaric joins an error record's lines with \r so it stays one log event.
    assert "[ERROR] ValueError: bad value 1\rTraceback (most recent call last):\r" in text
    assert tail_of(result).count("\n") == text.count("\n")


@pytest.mark.parametrize("handler,error_type", [("app.unserializable", "object"), ("app.returns_set", "set")])
def test_unserializable_result_is_a_marshal_error(rt, make, handler, error_type):
    fn = make(handler)
    result = call(rt, fn)
    assert error_of(result) == {
        "errorMessage": f"Unable to marshal response: Object of type {error_type} is not JSON serializable",
        "errorType": "Runtime.MarshalError", "requestId": result.request_id, "stackTrace": []}
    assert call(rt, fn).environment_id == result.environment_id


# -- failures: init --------------------------------------------------------------------------------
INIT_ERRORS = [
    ("nomodule.handler", "basic", "Runtime.ImportModuleError",
     "Unable to import module 'nomodule': No module named 'nomodule'"),
    ("app.missing", "basic", "Runtime.HandlerNotFound", "Handler 'missing' missing on module 'app'"),
    ("app", "basic", "Runtime.MalformedHandlerName",
     "Bad handler 'app': not enough values to unpack (expected 2, got 1)"),
    ("app.handler", "syntax_error", "Runtime.UserCodeSyntaxError", "Syntax error in module 'app': "),
    ("app.handler", "import_raises", "RuntimeError", "boom at import"),
]


@pytest.mark.parametrize("handler,package,error_type,message", INIT_ERRORS, ids=[e[2] for e in INIT_ERRORS])
def test_init_errors_have_lambdas_shape_and_discard_the_environment(rt, make, handler, package, error_type, message):
    fn = make(handler, package)
    first = call(rt, fn, log_type="Tail")
    body = error_of(first)
    assert body["errorType"] == error_type
    assert body["errorMessage"].startswith(message)
    assert {"errorMessage", "errorType", "stackTrace"} <= set(body)
    assert first.init_duration_ms is not None
    tail = tail_of(first)
    assert f"\tPhase: init\tStatus: error\tError Type: {error_type}\n" in tail
    assert f"START RequestId: {first.request_id} Version: $LATEST\n" in tail
    assert re.search(rf"REPORT RequestId: {first.request_id}\t.*\tInit Duration: [\d.]+ ms\tStatus: error\t"
                     rf"Error Type: {re.escape(error_type)}\n", tail)
    second = call(rt, fn)
    assert second.environment_id != first.environment_id, "a failed environment was reused"
    assert error_of(second)["errorType"] == error_type


def test_syntax_error_points_at_the_line(rt, make):
    body = error_of(call(rt, make("app.handler", "syntax_error")))
    assert body["stackTrace"] and '"/var/task/app.py" Line 1' in body["stackTrace"][0]
    assert "def handler(event, context)" in body["stackTrace"][0]


def test_fixing_a_broken_function_takes_effect_at_once(rt, make, code):
    fn = make("app.handler", "syntax_error")
    assert error_of(call(rt, fn))["errorType"] == "Runtime.UserCodeSyntaxError"
    rt.update_function_code(fn, code("v1"))
    assert call(rt, fn).json() == {"code": "v1"}


# -- failures: the platform's ------------------------------------------------------------------------
def test_timeout_shape_and_a_new_environment_after(rt, make, sink):
    fn = make("app.sleep", timeout_s=1)
    started = time.monotonic()
    result = call(rt, fn, {"s": 30}, log_type="Tail")
    elapsed = time.monotonic() - started
    assert error_of(result) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds"}
    assert 1.0 <= elapsed < 3.0, elapsed
    assert result.duration_ms >= 1000
    tail = tail_of(result)
    assert re.search(rf"\n\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z {result.request_id} "
                     rf"Task timed out after 1\.00 seconds\n", tail)
    assert re.search(r"\tStatus: timeout\tError Type: Sandbox.Timedout\n$", tail)

    after = call(rt, fn, {"s": 0})
    assert after.json() == "woke" and after.environment_id != result.environment_id


def test_remaining_time_counts_down_to_the_timeout(rt, make):
    fn = make("app.context_info", timeout_s=2)
    remaining = call(rt, fn).json()["remaining_ms"]
    assert 1000 < remaining <= 2000


@pytest.mark.parametrize("handler", ["app.exit3", "app.hard_exit"])
def test_exit_shape_and_a_new_environment_after(rt, make, handler):
    fn = make(handler)
    result = call(rt, fn, log_type="Tail")
    assert error_of(result) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: exit status 3"}
    tail = tail_of(result)
    assert (f"RequestId: {result.request_id} Error: Runtime exited with error: exit status 3\n"
            "Runtime.ExitError\n") in tail
    assert "\tStatus: error\tError Type: Runtime.ExitError\n" in tail
    assert call(rt, fn).environment_id != result.environment_id


def test_out_of_memory_shape_and_a_new_environment_after(rt, make):
    fn = make("app.hog", memory_mb=128, timeout_s=10)
    result = call(rt, fn)
    assert error_of(result) == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: signal: killed"}
    after = call(rt, fn, {"ok": True})
    assert after.json() == "fine" and after.environment_id != result.environment_id


def test_response_size_limit_is_6mb(rt, make):
    # Lambda's response cap is 100 bytes over its request cap: 6,291,556 bytes,
    # the same through the Runtime API (tests/hostile/test_runtime_interface_abuse.py).
    fn = make("app.big_response", timeout_s=10)
    at_limit = call(rt, fn, {"size": MAX + 100 - 2})         # plus two quotes: exactly the limit
    assert at_limit.function_error is None and len(at_limit.payload) == MAX + 100
    over = call(rt, fn, {"size": MAX + 100 - 1})
    body = error_of(over)
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    assert "(6291556 bytes)" in body["errorMessage"]
    assert call(rt, fn, {"size": 3}).json() == "xxx"


def test_request_size_limit_is_6mb(rt, make):
    fn = make("app.echo", timeout_s=10)
    exact = b'"' + b"y" * (MAX - 2) + b'"'
    result = rt.invoke(fn, exact)
    assert result.function_error is None and result.payload == exact
    with pytest.raises(RequestTooLargeException) as info:
        rt.invoke(fn, exact + b" ")
    assert info.value.status_code == 413
    assert rt.invoke(fn, b'{"after": 1}').environment_id == result.environment_id


@pytest.mark.parametrize("payload", [b"{", b"not json", b"[1,", b'{"a": }', b'{"a": 1} trailing', b"\xff\xfe",
                                     b'"\x01"', b"{'single': 1}", b"1" * 5000])
def test_payload_that_is_not_json_is_refused_and_the_environment_stays(rt, make, payload):
    fn = make("app.echo")
    warm = call(rt, fn)
    with pytest.raises(InvalidRequestContentException) as info:
        rt.invoke(fn, payload)
    assert info.value.status_code == 400 and "Could not parse request body into json" in info.value.message
    after = rt.invoke(fn, b'{"fine": true}')
    assert after.json() == {"fine": True} and after.environment_id == warm.environment_id


def test_deeply_nested_payload_does_not_crash_the_environment(rt, make):
    fn = make("app.echo")
    warm = call(rt, fn)
    try:
        result = rt.invoke(fn, b"[" * 100000 + b"]" * 100000)
        assert result.function_error is None or error_of(result)["errorType"] != "Runtime.ExitError"
    except InvalidRequestContentException:
        pass
    assert call(rt, fn).environment_id == warm.environment_id


def test_bad_client_context_is_refused(rt, make):
    fn = make("app.echo")
    with pytest.raises(InvalidRequestContentException):
        rt.invoke(fn, b"{}", client_context="x" * 3584)
    with pytest.raises(InvalidRequestContentException):
        rt.invoke(fn, b"{}", client_context=12)
    with pytest.raises(InvalidRequestContentException):
        rt.invoke(fn, b"{}", client_context=b"not json")
    assert rt.invoke(fn, b"{}").json() == {}


@pytest.mark.parametrize("payload", ["text", {"a": 1}, None, 5])
def test_payload_must_be_bytes(rt, make, payload):
    with pytest.raises(InvalidRequestContentException):
        rt.invoke(make("app.echo"), payload)


def test_overlong_trace_id_is_refused_and_the_function_keeps_working(rt, make):
    fn = make("app.echo")
    call(rt, fn)
    with pytest.raises(InvalidParameterValueException):
        rt.invoke(fn, b"{}", trace_id="Root=1-" + "x" * 70000)
    assert rt.invoke(fn, b'{"after": 1}').json() == {"after": 1}


def test_largest_accepted_request_reaches_the_handler(rt, make):
    fn = make("app.echo", timeout_s=10)
    payload = b'"' + b"z" * (MAX - 2) + b'"'
    try:
        result = rt.invoke(fn, payload, trace_id="Root=1-" + "t" * 65000, client_context={"custom": {"k": "v" * 3000}})
    except (InvalidParameterValueException, InvalidRequestContentException):
        return  # refusing the request up front is fine too
    assert result.function_error is None, result.payload[:200]


def test_answers_of_every_size_after_the_read_buffer_grows(rt, make):
    """An answer bigger than one read makes the supervisor's read buffer grow
    (to the next power of two, up to 1 MiB) for that environment's next
    answers; small, equal, larger and oversized answers after it all come back
    whole and in order, in the same environment."""
    fn = make("app.echo", timeout_s=10)
    sizes = [100, 100_000, 100_000, 10, 300_000, 2_000_000, 65_000, 1, 1_200_000, 100]
    results = []
    for n in sizes:
        payload = json.dumps("y" * n).encode()
        result = rt.invoke(fn, payload)
        assert result.function_error is None, result.payload[:200]
        assert result.payload == payload
        results.append(result)
    assert len({r.environment_id for r in results}) == 1
    pool = rt._route(fn, None)[1]
    (env,) = pool._idle
    assert env._read_size == 1 << 20      # grew past 64 KiB, capped at 1 MiB


def test_unknown_function_or_version_is_not_found(rt, make):
    fn = make("app.echo")
    rt.publish_version(fn)
    for name, qualifier in [("no-such-function", None), (fn, "2"), (f"{fn}:9", None), (fn, "nope"),
                            (ACCOUNT_ARN + "no-such-function", None), (ACCOUNT_ARN + fn + ":3", None)]:
        with pytest.raises(ResourceNotFoundException) as info:
            rt.invoke(name, b"{}", qualifier=qualifier)
        assert info.value.status_code == 404
    assert rt.invoke(ACCOUNT_ARN + fn, b"{}").executed_version == LATEST
    assert rt.invoke(ACCOUNT_ARN + fn + ":1", b"{}").executed_version == "1"
    assert rt.invoke(f"{fn}:$LATEST", b"{}").executed_version == LATEST
    with pytest.raises(InvalidParameterValueException):
        rt.invoke(f"{fn}:1", b"{}", qualifier="$LATEST")


def test_deleted_functions_and_versions_are_not_found(rt):
    name = f"deleted-{uuid.uuid4().hex[:8]}"
    rt.create_function(name, os.path.join(CODE, "basic"), "app.echo", memory_mb=MB, publish=True)
    call(rt, name)
    call(rt, name, qualifier="1")
    with pytest.raises(ResourceConflictException):
        rt.delete_function(name, LATEST)
    rt.delete_function(name, "1")
    with pytest.raises(ResourceNotFoundException):
        call(rt, name, qualifier="1")
    assert call(rt, name).function_error is None
    rt.delete_function(name)
    with pytest.raises(ResourceNotFoundException):
        call(rt, name)
    with pytest.raises(ResourceNotFoundException):
        rt.delete_function(name)


def test_invalid_log_type_is_refused(rt, make):
    with pytest.raises(InvalidParameterValueException):
        rt.invoke(make("app.echo"), b"{}", log_type="Full")


# -- context and environment ---------------------------------------------------------------------------
def test_context_matches_lambdas(rt, make, monkeypatch):
    monkeypatch.setenv("SANDBOX_TEST_HOST_ONLY", "must not leak")
    fn = make("app.context_info", timeout_s=3, environment={"MY_VAR": "hello", "WITH_EQUALS": "a=b=c"})
    result = call(rt, fn)
    c = result.json()
    assert c["aws_request_id"] == result.request_id
    assert c["function_name"] == fn and c["function_version"] == LATEST
    assert c["invoked_function_arn"] == ACCOUNT_ARN + fn
    assert c["memory_limit_in_mb"] == str(MB)                  # a string, as in awslambdaric
    assert c["log_group_name"] == f"/aws/lambda/{fn}"
    assert re.fullmatch(rf"\d{{4}}/\d\d/\d\d/\[\$LATEST\]{result.environment_id}", c["log_stream_name"])
    assert 0 < c["remaining_ms"] <= 3000
    assert c["client_context_is_none"] is True

    env = c["environ"]
    expected = {
        "AWS_LAMBDA_FUNCTION_NAME": fn, "AWS_LAMBDA_FUNCTION_VERSION": LATEST,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MB), "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn}",
        "AWS_LAMBDA_LOG_STREAM_NAME": c["log_stream_name"], "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EXECUTION_ENV": f"AWS_Lambda_python{PYTHON_VERSION}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand", "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime", "_HANDLER": "app.context_info",
        "MY_VAR": "hello", "WITH_EQUALS": "a=b=c",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert "SANDBOX_TEST_HOST_ONLY" not in env, "the host's environment leaked into the sandbox"
    assert "GLIBC_TUNABLES" not in env   # the runtime's heap policy is a mallopt, not a variable
    # The runtime decodes and encodes with its C JSON module (built with the package), from /var/runtime.
    assert c["fastjson_c"] is not None and c["fastjson_c"].startswith("/var/runtime/_fastjson."), c["fastjson_c"]
    assert "_X_AMZN_TRACE_ID" not in env
    assert not {k for k in env if k.startswith(("AWS_SECRET", "AWS_SESSION", "AWS_ACCESS"))}


def test_the_runtime_keeps_freed_heap_for_the_next_invocation(rt, make):
    # Payload-sized blocks come from the heap, and freeing them does not hand
    # the pages back (lambda_runtime._keep_freed_heap): the next large request
    # finds them resident instead of faulting them in again.
    seen = call(rt, make("app.heap_kept")).json()
    assert seen["grown"] >= 3 * 1024 and seen["kept"] >= 0.9 * seen["grown"], seen


def test_a_functions_own_malloc_tunables_replace_the_runtimes_heap_policy(rt, make):
    own = "glibc.malloc.trim_threshold=0:glibc.malloc.mmap_threshold=131072"
    fn = make("app.heap_kept", environment={"GLIBC_TUNABLES": own})
    seen = call(rt, fn).json()
    assert seen["grown"] >= 3 * 1024 and seen["kept"] <= 0.1 * seen["grown"], seen


def test_context_of_a_published_version(rt, make):
    fn = make("app.context_info")
    rt.publish_version(fn)
    result = call(rt, fn, qualifier="1")
    c = result.json()
    assert result.executed_version == "1"
    assert c["function_version"] == "1" and c["environ"]["AWS_LAMBDA_FUNCTION_VERSION"] == "1"
    assert c["invoked_function_arn"] == ACCOUNT_ARN + fn + ":1"
    assert re.fullmatch(rf"\d{{4}}/\d\d/\d\d/\[1\]{result.environment_id}", c["log_stream_name"])


def test_trace_id_is_set_for_its_invocation_only(rt, make):
    fn = make("app.context_info")
    traced = call(rt, fn, trace_id="Root=1-5e34a614-10bdxmplf1fb44f07bc535a1;Sampled=1").json()
    assert traced["environ"]["_X_AMZN_TRACE_ID"] == "Root=1-5e34a614-10bdxmplf1fb44f07bc535a1;Sampled=1"
    assert "_X_AMZN_TRACE_ID" not in call(rt, fn).json()["environ"]


def test_client_context_and_identity_have_awslambdarics_shape(rt, make):
    fn = make("app.client_info")
    result = rt.invoke(fn, b"{}", client_context={"custom": {"k": "v"}, "env": {"e": "1"}})
    assert result.function_error is None, result.payload
    assert result.json() == {"custom": {"k": "v"}, "env": {"e": "1"}, "client": None, "identity_id": None,
                             "identity_pool_id": None}


def test_handler_sees_its_own_filesystem_only(rt, make):
    markers = [f"/root/.sandbox-test-{uuid.uuid4().hex}", f"/etc/sandbox-test-{uuid.uuid4().hex}",
               f"/tmp/sandbox-test-{uuid.uuid4().hex}"]
    if os.path.isdir("/home"):
        markers.append(f"/home/sandbox-test-{uuid.uuid4().hex}")
    try:
        for path in markers:
            with open(path, "w") as f:
                f.write("host only")
        fs = call(rt, make("app.filesystem"), {"markers": markers}).json()
    finally:
        for path in markers:
            os.unlink(path)
    assert fs["uid"] != 0 and fs["euid"] != 0 and fs["gid"] != 0
    assert fs["task_write"] in ("EROFS", "EACCES") and fs["task_existing_write"] in ("EROFS", "EACCES")
    assert fs["tmp_write"] == "ok" and fs["cwd"] == "/var/task"
    assert fs["marker"] == {path: False for path in markers}
    assert fs["shadow_readable"] is False and "shadow" not in fs["etc"]
    assert fs["home"] == "ENOENT" or not set(fs["home"]) & set(os.listdir("/home"))
    host_root = set(os.listdir("/root")) - {".pyenv"}    # the interpreter itself is bound in
    assert isinstance(fs["root"], str) or not set(fs["root"]) & host_root, fs["root"]
    assert not os.path.exists(os.path.join(CODE, "basic", "intruder.txt"))


# -- logs --------------------------------------------------------------------------------------------
REPORT = (r"REPORT RequestId: (?P<rid>{rid})\tDuration: (?P<duration>\d+\.\d\d) ms\t"
          r"Billed Duration: (?P<billed>\d+) ms\tMemory Size: {mb} MB\tMax Memory Used: (?P<used>\d+) MB"
          r"(?:\tInit Duration: (?P<init>\d+\.\d\d) ms)?\n")


def test_log_tail_has_lambdas_lines_in_order(rt, make):
    fn = make("app.noisy")
    first = call(rt, fn, log_type="Tail")
    second = call(rt, fn, log_type="Tail")
    assert first.environment_id == second.environment_id
    for result, cold in ((first, True), (second, False)):
        lines = tail_of(result).splitlines(keepends=True)
        if cold:
            assert re.fullmatch(rf"INIT_START Runtime Version: python:{PYTHON_VERSION}\.\S+\t"
                                r"Runtime Version ARN: arn:aws:lambda:us-east-1::runtime:\S+\n", lines[0])
            lines = lines[1:]
        assert lines[0] == f"START RequestId: {result.request_id} Version: $LATEST\n"
        assert lines[1:5] == ["line one\n", "to stderr\n", "no newline at the end\n",
                              f"END RequestId: {result.request_id}\n"]
        report = re.fullmatch(REPORT.format(rid=result.request_id, mb=MB), lines[5])
        assert report and len(lines) == 6, lines
        shown = float(report["duration"])      # rounded to 0.01 ms; billing rounds the exact value up
        assert max(1, math.ceil(shown - 0.005)) <= int(report["billed"]) <= max(1, math.ceil(shown + 0.005))
        assert 0 < int(report["used"]) <= MB
        if cold:
            assert report["init"] == f"{result.init_duration_ms:.2f}"
        else:
            assert report["init"] is None and result.init_duration_ms is None


def test_no_tail_unless_asked(rt, make):
    fn = make("app.noisy")
    assert call(rt, fn).log_result is None
    assert call(rt, fn, log_type="None").log_result is None


def test_custom_sink_receives_every_invocations_log(rt, make, sink):
    fn = make("app.context_info")
    results = [call(rt, fn) for _ in range(2)]
    for i, result in enumerate(results):
        record = sink.records[result.request_id]
        c = result.json()
        assert (record.function_name, record.version, record.request_id) == (fn, LATEST, result.request_id)
        assert record.log_group_name == f"/aws/lambda/{fn}" == c["log_group_name"]
        assert record.log_stream_name == c["log_stream_name"]
        assert record.text.startswith("INIT_START " if i == 0 else "START ")
        assert f"END RequestId: {result.request_id}\n" in record.text
        assert re.search(REPORT.format(rid=result.request_id, mb=MB) + "$", record.text)


def test_a_handler_printing_200kb_works_and_its_output_is_kept(rt, make, sink):
    fn = make("app.chatty")
    result = call(rt, fn, {"size": 200_000}, log_type="Tail")
    assert result.json() == "done"
    text = sink.records[result.request_id].text
    assert text.count("y" * 99 + "\n") == 2000
    assert f"LAST-LINE-MARKER\nEND RequestId: {result.request_id}\n" in text
    tail = tail_of(result)
    assert len(base64.b64decode(result.log_result)) == 4096
    assert text.encode().endswith(base64.b64decode(result.log_result))
    assert tail.rstrip("\n").splitlines()[-1].startswith(f"REPORT RequestId: {result.request_id}\t")
    assert call(rt, fn, {"size": 100}).environment_id == result.environment_id


def test_logging_from_a_module_that_imports_it_uses_lambdas_format(rt, make):
    fn = make("log_top.handler")
    for n in (1, 2):
        result = call(rt, fn, {"n": n}, log_type="Tail")
        assert re.search(rf"\n\[INFO\]\t\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\t{result.request_id}\tlogged {n}\n",
                         tail_of(result)), tail_of(result)


def test_logging_imported_inside_the_handler_uses_lambdas_format(rt, make):
    fn = make("app.uses_logging")
    for n in (1, 2):
        result = call(rt, fn, {"n": n}, log_type="Tail")
        assert re.search(rf"\[INFO\]\t\S+Z\t{result.request_id}\tlogged {n}\n", tail_of(result)), tail_of(result)


# -- the runtime's own lifecycle (own Runtime each, leak-checked) -----------------------------------------
def test_close_ends_every_environment_and_leaves_nothing(no_leaks):
    runtime = sandbox.Runtime()
    state_dir = runtime.state_dir
    runtime.create_function("a", os.path.join(CODE, "basic"), "app.timed", memory_mb=MB)
    runtime.create_function("b", os.path.join(CODE, "basic"), "app.echo", memory_mb=MB, publish=True)
    run_threads(3, lambda i: runtime.invoke("a", json.dumps({"sleep": 0.2}).encode()))
    runtime.invoke("b", b"{}")
    runtime.invoke("b", b"{}", qualifier="1")
    runtime.close()
    runtime.close()                                        # idempotent
    assert not os.path.exists(state_dir)
    with pytest.raises(ServiceException):
        runtime.invoke("b", b"{}")


def test_close_during_an_invocation(no_leaks):
    runtime = sandbox.Runtime()
    runtime.create_function("slow", os.path.join(CODE, "basic"), "app.sleep", memory_mb=MB, timeout_s=30)
    out = {}

    def slow():
        try:
            out["result"] = runtime.invoke("slow", b'{"s": 20}')
        except Exception as exc:  # the closing runtime may refuse or fail it
            out["error"] = exc

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    runtime.close()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert "error" in out or out["result"].function_error == "Unhandled", out
