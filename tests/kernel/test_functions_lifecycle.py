"""Execution environment lifecycle, on real sandboxes: idle timeout, maximum
lifetime (lease), the environment cap and eviction, init timeout, CPU and
memory limits derived from the memory setting, deletion and close()."""
import json
import os
import threading
import time

import pytest

import sandbox
from sandbox.functions import ResourceNotFoundException, TooManyRequestsException
from sandbox.functions.spec import MB_PER_VCPU

pytestmark = pytest.mark.kernel

HANDLERS = """
import os, time
def env_id(event, context):
    return {"stream": context.log_stream_name, "pid_ns": os.readlink("/proc/self/ns/pid")}
def sleepy(event, context):
    time.sleep(event.get("s", 0.5))
    return context.log_stream_name
"""
SLOW_INIT = "import time\ntime.sleep(3)\ndef handler(event, context):\n    return 1\n"


@pytest.fixture
def code(tmp_path):
    (tmp_path / "app.py").write_text(HANDLERS)
    (tmp_path / "slow_init.py").write_text(SLOW_INIT)
    return str(tmp_path)


def stream(rt, name, **kw):
    return json.loads(rt.invoke(name, b"{}", **kw).payload)["stream"]


def test_idle_environments_end_after_the_idle_timeout(code, no_leaks):
    with sandbox.Runtime(idle_timeout_s=0.5) as rt:
        rt.create_function("f", code, "app.env_id", memory_mb=1769)
        first = stream(rt, "f")
        assert stream(rt, "f") == first            # reused while warm
        deadline = time.monotonic() + 5
        while rt._manager.live and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rt._manager.live == 0, "the idle environment outlived its idle timeout"
        assert stream(rt, "f") != first            # a new one on demand


def test_environments_are_recycled_at_the_end_of_their_lease(code, no_leaks):
    with sandbox.Runtime(max_lifetime_s=1.0) as rt:
        rt.create_function("f", code, "app.env_id", memory_mb=1769)
        first = stream(rt, "f")
        streams = {first}
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:   # used continuously, never idle
            streams.add(stream(rt, "f"))
            time.sleep(0.02)
        assert len(streams) >= 2, "a continuously used environment outlived its lease"


def test_busy_environments_are_not_shared_and_the_cap_throttles(code, no_leaks):
    with sandbox.Runtime(max_environments=2) as rt:
        rt.create_function("f", code, "app.sleepy", memory_mb=1769, timeout_s=5)
        results, errors = [], []

        def call():
            try:
                results.append(rt.invoke("f", b'{"s": 1.0}'))
            except TooManyRequestsException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.2)
        for t in threads:
            t.join()
        assert len(results) == 2 and len(errors) == 1
        assert errors[0].reason == "ConcurrentInvocationLimitExceeded"
        assert errors[0].status_code == 429
        assert len({r.environment_id for r in results}) == 2


def test_at_the_cap_an_idle_environment_of_another_function_is_evicted(code, no_leaks):
    with sandbox.Runtime(max_environments=1) as rt:
        rt.create_function("a", code, "app.env_id", memory_mb=1769)
        rt.create_function("b", code, "app.env_id", memory_mb=1769)
        a = stream(rt, "a")
        b = stream(rt, "b")                      # a's idle environment made room
        assert a != b
        assert rt._manager.live == 1
        assert stream(rt, "a") != a              # a starts over: its environment was ended


def test_init_over_its_limit_is_a_timeout_and_the_environment_is_discarded(code, no_leaks):
    with sandbox.Runtime(init_timeout_s=1.0) as rt:
        rt.create_function("slow", code, "slow_init.handler", memory_mb=1769)
        result = rt.invoke("slow", b"{}")
        body = json.loads(result.payload)
        assert result.function_error == "Unhandled"
        assert body["errorType"] == "Sandbox.Timedout"
        assert body["errorMessage"].endswith("Task timed out after 1.00 seconds")
        assert rt._manager.live == 0


def test_cgroup_limits_follow_the_memory_setting(code, no_leaks):
    with sandbox.Runtime() as rt:
        rt.create_function("f", code, "app.sleepy", memory_mb=512, timeout_s=5)
        done = threading.Thread(target=rt.invoke, args=("f", b'{"s": 1.0}'))
        done.start()
        time.sleep(0.5)
        (pool,) = rt._manager.pools()
        (env,) = pool.busy()
        cgroup = env._box._cgroup
        files = {}
        for directory in cgroup.dirs:
            for name in ("memory.limit_in_bytes", "memory.max", "cpu.cfs_quota_us", "cpu.max"):
                path = os.path.join(directory, name)
                if os.path.exists(path):
                    files[name] = open(path).read().split()
        done.join()
        memory = int((files.get("memory.limit_in_bytes") or files["memory.max"])[0])
        assert memory == 512 * 1024 * 1024
        quota = int((files.get("cpu.cfs_quota_us") or files["cpu.max"])[0])
        assert quota == round(512 / MB_PER_VCPU * 100_000)   # 1,769 MB = one CPU per 100 ms period


def test_delete_ends_environments_and_close_leaves_nothing(code, no_leaks):
    rt = sandbox.Runtime()
    rt.create_function("f", code, "app.env_id", memory_mb=1769)
    rt.invoke("f", b"{}")
    assert rt._manager.live == 1
    rt.delete_function("f")
    assert rt._manager.live == 0
    with pytest.raises(ResourceNotFoundException):
        rt.invoke("f", b"{}")
    rt.create_function("g", code, "app.sleepy", memory_mb=1769, timeout_s=10)
    outcome = []

    def call():
        try:
            outcome.append(rt.invoke("g", b'{"s": 8}'))
        except sandbox.functions.LambdaError as exc:
            outcome.append(exc)

    busy = threading.Thread(target=call)
    busy.start()
    time.sleep(0.5)
    state_dir = rt.state_dir
    rt.close()              # ends the busy environment too
    busy.join(timeout=5)
    assert not busy.is_alive()
    assert isinstance(outcome[0], sandbox.functions.ServiceException)   # not a function error
    assert not os.path.exists(state_dir)
    assert rt._manager.live == 0


def test_code_is_encrypted_at_rest_and_a_tampered_blob_is_refused(code, no_leaks):
    from sandbox.functions import ServiceException

    with sandbox.Runtime() as rt:
        rt.create_function("f", code, "app.env_id", memory_mb=1769)
        blobs = os.path.join(rt.state_dir, "code", "blobs")
        (blob,) = [os.path.join(blobs, name) for name in os.listdir(blobs)]
        with open(blob, "rb") as f:
            data = bytearray(f.read())
        assert b"def env_id" not in data                       # no plaintext code at rest
        assert not [n for n in os.listdir(os.path.join(rt.state_dir, "code")) if "." in n and n[0] != "."
                    and not n.endswith(".key")]                # and no tree before an environment needs one
        data[len(data) // 2] ^= 0x01
        with open(blob, "wb") as f:
            f.write(bytes(data))
        with pytest.raises(ServiceException):
            rt.invoke("f", b"{}")
        assert rt._manager.live == 0
