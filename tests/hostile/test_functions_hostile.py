"""Hostile handlers against sandbox.Runtime: a handler attacks its own execution
environment (exits, signals, spins, hogs memory, fork-bombs, closes or
scribbles on the channel, forges responses, floods the log, leaves a daemon,
steals requests).  Each time the runtime must stay up, the invocation must end
within its limits, and the NEXT invocation of that function must work; after
close() nothing may be left.  Handlers: tests/functions_code/hostile/app.py."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

import conftest
import sandbox
from conftest import requires_sandbox_privileges

pytestmark = [pytest.mark.hostile, requires_sandbox_privileges()]

CODE = os.path.join(conftest.HERE, "functions_code", "hostile")
MB = 1769
MAX_LOG_KEPT = 2 << 20          # the supervisor keeps ~1 MiB of output per invocation, plus a tail


@pytest.fixture(scope="module")
def rt(sink):
    for runtime in conftest.leak_checked_runtime(log_sink=sink, max_environments=24):
        runtime.create_function("canary", CODE, "app.handler", memory_mb=128, timeout_s=3)
        yield runtime


@pytest.fixture(autouse=True)
def runtime_stays_up(rt):
    """After every attack, another function of the same runtime still answers."""
    yield
    assert ping(rt, "canary").json() == "pong"


@pytest.fixture
def victim(rt):
    """victim(**settings) -> a new function running the hostile handler (deleted after the test)."""
    made = []

    def create(memory_mb=MB, timeout_s=3):
        name = f"victim-{uuid.uuid4().hex[:10]}"
        rt.create_function(name, CODE, "app.handler", memory_mb=memory_mb, timeout_s=timeout_s)
        made.append(name)
        return name

    yield create
    for name in made:
        rt.delete_function(name)


def attack(rt, name, action, **event):
    started = time.monotonic()
    result = rt.invoke(name, json.dumps({"do": action, **event}).encode())
    return result, time.monotonic() - started


def ping(rt, name):
    result = rt.invoke(name, b'{"do": "ping"}')
    assert result.function_error is None, result.payload
    return result


def error_type(result):
    assert result.function_error == "Unhandled", result.payload
    return json.loads(result.payload)["errorType"]


def assert_next_invocation_works(rt, name, attacked=None, *, same_environment=None):
    after = ping(rt, name)
    assert after.json() == "pong"
    if attacked is not None and same_environment is not None:
        assert (after.environment_id == attacked.environment_id) == same_environment, (attacked, after)
    return after


# -- the process itself --------------------------------------------------------------------
@pytest.mark.parametrize("status", [0, 1, 255])
def test_os_exit(rt, victim, status):
    fn = victim()
    result, _ = attack(rt, fn, "exit_now", status=status)
    assert json.loads(result.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: exit status {status}"}
    assert_next_invocation_works(rt, fn, result, same_environment=False)


def test_self_sigkill(rt, victim):
    # The bootstrap is pid 1 of its pid namespace, so its own SIGKILL may be
    # ignored: only the outcome's bounds and the next invocation are checked.
    fn = victim(timeout_s=1)
    result, elapsed = attack(rt, fn, "self_kill")
    assert elapsed < 4, elapsed
    if result.function_error:
        assert error_type(result) in ("Runtime.ExitError", "Sandbox.Timedout")
    assert_next_invocation_works(rt, fn)


def test_infinite_loop_times_out(rt, victim):
    fn = victim(timeout_s=1)
    result, elapsed = attack(rt, fn, "spin")
    assert error_type(result) == "Sandbox.Timedout"
    assert 1.0 <= elapsed < 3.0, elapsed
    assert_next_invocation_works(rt, fn, result, same_environment=False)


def test_memory_hog_is_out_of_memory(rt, victim):
    fn = victim(memory_mb=128, timeout_s=10)
    result, elapsed = attack(rt, fn, "hog")
    assert error_type(result) == "Runtime.OutOfMemory"
    assert elapsed < 8, elapsed
    assert_next_invocation_works(rt, fn, result, same_environment=False)


def test_fork_bomb_is_contained(rt, victim):
    fn = victim(timeout_s=2)
    result, elapsed = attack(rt, fn, "fork_bomb")
    assert error_type(result) in ("Sandbox.Timedout", "Runtime.ExitError", "Runtime.OutOfMemory")
    assert elapsed < 8, f"the fork bomb took {elapsed:.1f} s to end"
    assert subprocess.run(["true"]).returncode == 0       # the host can still fork
    assert_next_invocation_works(rt, fn, result, same_environment=False)


# -- the channel ----------------------------------------------------------------------------
def test_closing_every_descriptor(rt, victim):
    fn = victim()
    result, elapsed = attack(rt, fn, "close_fds")
    assert error_type(result) == "Runtime.ExitError"
    assert elapsed < 3
    assert_next_invocation_works(rt, fn, result, same_environment=False)


def test_garbage_on_every_descriptor(rt, victim, sink):
    fn = victim()
    result, elapsed = attack(rt, fn, "scribble")
    assert error_type(result) in ("Runtime.InvalidResponse", "Runtime.ExitError")
    assert elapsed < 3
    assert "garbage" in sink.records[result.request_id].text     # what it wrote to stdout is just log
    assert_next_invocation_works(rt, fn, result, same_environment=False)


@pytest.mark.parametrize("delay,with_id", [
    (0, False), (0.3, False), pytest.param(0.3, True, id="0.3-with-request-id")])
def test_forged_response_frame_never_answers_the_next_request(rt, victim, delay, with_id):
    """A well-formed RESULT frame written on the response channel, then the real
    answer: the forgery may be taken as this invocation's answer (the handler
    decides its own answer anyway) or end the environment, but it must never
    shift answers onto later, innocent requests."""
    fn = victim()
    result, _ = attack(rt, fn, "forge", delay=delay, with_id=with_id)
    if result.function_error:
        assert error_type(result) == "Runtime.InvalidResponse"
    else:
        assert result.json() in ("forged", "real")
    results = [ping(rt, fn).json() for _ in range(2)]
    assert results == ["pong", "pong"]


def test_forged_answer_while_idle_is_never_taken(rt, victim):
    """A thread writes an answer frame while the environment is idle: the
    environment is not quiet any more, so the next request goes to another
    one, never to it (where the forgery would be read first)."""
    fn = victim()
    armed, _ = attack(rt, fn, "forge_later")
    assert armed.json() == "armed"
    time.sleep(0.3)
    assert_next_invocation_works(rt, fn, armed, same_environment=False)
    assert_next_invocation_works(rt, fn)


def test_reading_the_request_channel_in_the_handler(rt, victim):
    # Nothing is left to read (the runtime took this request): the handler
    # blocks until its timeout, and the environment is replaced.
    fn = victim(timeout_s=1)
    result, elapsed = attack(rt, fn, "steal_now")
    assert error_type(result) == "Sandbox.Timedout" and elapsed < 3
    assert_next_invocation_works(rt, fn, result, same_environment=False)


def test_a_thread_stealing_requests(rt, victim):
    """A thread the handler leaves behind reads the request channel too.  The
    handler sabotages its own environment (as in Lambda, its background threads
    are its own business): an invocation whose request the thief wins times out,
    which replaces the environment.  Never a wrong answer, and once replaced the
    function works again."""
    fn = victim(timeout_s=1)
    result, _ = attack(rt, fn, "steal_next")
    assert result.json() == "thief started"
    for _ in range(5):
        answer = rt.invoke(fn, b'{"do": "ping"}')
        if answer.function_error:
            assert error_type(answer) == "Sandbox.Timedout"
            assert answer.environment_id == result.environment_id
            assert_next_invocation_works(rt, fn, result, same_environment=False)
            break
        assert answer.json() == "pong" and answer.environment_id == result.environment_id


# -- output ------------------------------------------------------------------------------------
def test_printing_1gb_is_capped(rt, victim, sink):
    fn = victim(timeout_s=3)
    result, elapsed = attack(rt, fn, "flood", mb=1024)
    assert elapsed < 6, elapsed
    if result.function_error:
        assert error_type(result) == "Sandbox.Timedout"
    else:
        assert result.json() == "flooded"
    text = sink.records[result.request_id].text
    assert len(text) < MAX_LOG_KEPT, len(text)
    assert "bytes of output dropped]" in text
    assert text.rstrip("\n").splitlines()[-1].startswith(f"REPORT RequestId: {result.request_id}\t")
    assert_next_invocation_works(rt, fn)


def test_closing_stdout_and_stderr(rt, victim):
    fn = victim()
    result, _ = attack(rt, fn, "close_stdout")
    assert result.function_error is None and result.json() == "closed stdout"
    assert_next_invocation_works(rt, fn)


def test_error_message_over_6mb(rt, victim):
    fn = victim(timeout_s=10)
    result, _ = attack(rt, fn, "huge_error")
    assert error_type(result) in ("Function.ResponseSizeTooLarge", "ValueError")
    assert len(result.payload) <= 6 * 1024 * 1024
    assert_next_invocation_works(rt, fn)


def test_result_too_deep_to_serialize(rt, victim):
    fn = victim()
    result, _ = attack(rt, fn, "deep")
    assert error_type(result) == "Runtime.MarshalError"
    assert_next_invocation_works(rt, fn, result, same_environment=True)


# -- what outlives an invocation --------------------------------------------------------------------
def test_daemon_left_behind(rt, victim):
    fn = victim()
    result, _ = attack(rt, fn, "daemon")
    assert result.json() == "daemonized"
    after = assert_next_invocation_works(rt, fn)
    heartbeat = rt.invoke(fn, b'{"do": "heartbeat"}')
    if heartbeat.environment_id == result.environment_id == after.environment_id:
        # Still the same environment: its daemon lives on (Lambda would freeze it), /tmp shows it.
        assert heartbeat.json()["age"] is not None and heartbeat.json()["age"] < 2


def test_daemon_is_gone_after_close(no_leaks):
    runtime = sandbox.Runtime()
    runtime.create_function("daemon", CODE, "app.handler", memory_mb=MB)
    assert runtime.invoke("daemon", b'{"do": "daemon"}').json() == "daemonized"
    assert runtime.invoke("daemon", b'{"do": "ping"}').json() == "pong"
    runtime.close()                        # no_leaks: no process, mount or cgroup left


def test_runtime_dying_while_idle_does_not_fail_the_next_invocation(rt, victim):
    fn = victim()
    result, _ = attack(rt, fn, "exit_in_thread_later")
    assert result.json() == "armed"
    time.sleep(0.3)                        # the runtime exits 50 ms after answering
    after = rt.invoke(fn, b'{"do": "ping"}')
    assert after.function_error is None, after.payload
    assert after.json() == "pong"
