"""The Lambda Runtime API inside real sandboxes: a custom runtime whose
bootstrap is a shell script using curl, and a handler under awslambdaric
(PyPI), run unchanged and warm; what they see (variables, headers, context);
every failure's Lambda shape; nothing left behind.

The runtimes' own view is the evidence: they report their pid, their
variables and the headers they got from inside the sandbox."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile

import pytest

import conftest
from conftest import requires_sandbox_privileges
from sandbox.functions import InvalidRequestContentException
from sandbox.functions.runtime_interface.listener import RuntimeAPIListenerError

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]

MB = 1769                       # one vCPU: a curl loop at 128 MB (7% of a CPU) takes ~0.3 s a round
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"
AWSLAMBDARIC = "awslambdaric==4.2.2"

# AWS's custom runtime tutorial (docs "Building a custom runtime"), as published:
# the bootstrap sources the handler script named by _HANDLER and loops on curl.
TUTORIAL_BOOTSTRAP = r'''#!/bin/bash
set -euo pipefail

# Initialization - load function handler
source $LAMBDA_TASK_ROOT/"$(echo $_HANDLER | cut -d. -f1).sh"

# Processing
while true
do
  HEADERS="$(mktemp)"
  # Get an event. The HTTP request will block until one is received
  EVENT_DATA=$(curl -sS -LD "$HEADERS" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")

  # Extract request ID by scraping response headers received above
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)

  # Run the handler function from the script
  RESPONSE=$($(echo "$_HANDLER" | cut -d. -f2) "$EVENT_DATA")

  # Send the response
  curl "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response"  -d "$RESPONSE"
done
'''
# The handler: echoes the event, with the bootstrap's pid and a counter in /tmp,
# so the test sees the same process and a growing file across invocations.
TUTORIAL_HANDLER = r'''function handler () {
  EVENT_DATA=$1
  echo "$EVENT_DATA" 1>&2;
  echo x >> /tmp/counter
  RESPONSE="{\"pid\": $$, \"count\": $(wc -l < /tmp/counter), \"event\": $EVENT_DATA}"
  echo $RESPONSE
}
'''
AWSLAMBDARIC_BOOTSTRAP = '#!/bin/sh\nexec python3 -m awslambdaric "$_HANDLER"\n'
AWSLAMBDARIC_APP = '''import os
import time

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    print("handling", context.aws_request_id)
    if event.get("raise"):
        raise ValueError(event["raise"])
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"pid": os.getpid(), "count": COUNT, "event": event, "request_id": context.aws_request_id,
            "arn": context.invoked_function_arn, "remaining_ms": context.get_remaining_time_in_millis(),
            "client_context": context.client_context.custom if context.client_context else None,
            "memory": context.memory_limit_in_mb, "name": context.function_name,
            "stream": context.log_stream_name, "trace": os.environ.get("_X_AMZN_TRACE_ID")}
'''


def sh_bootstrap(body: str) -> str:
    """A /bin/sh bootstrap: the helpers below, then `body`."""
    return ("#!/bin/sh\nset -eu\nAPI=http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime\n"
            "next() { H=$(mktemp); EVENT=$(curl -sS -D \"$H\" $API/invocation/next); "
            "ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id \"$H\" | tr -d '[:space:]' | cut -d: -f2); }\n" + body)


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rt(sink):
    for runtime in conftest.leak_checked_runtime(log_sink=sink, max_environments=16):
        yield runtime


@pytest.fixture
def make(rt, tmp_path, request):
    """make(files, runtime=..., **settings) -> the name of a new function whose
    code is `files` ({path: text}; `bootstrap` and *.sh executable); deleted
    after the test."""
    names = []

    def create(files, runtime="provided.al2023", handler="function.handler", **settings):
        name = f"ri-{request.node.name[:40]}-{len(names)}".replace("[", "-").replace("]", "")
        name = re.sub(r"[^a-zA-Z0-9_-]", "-", name)
        rt.create_function(name, code_dir(tmp_path / name, files), handler, runtime=runtime,
                           **{"memory_mb": MB, **settings})
        names.append(name)
        return name

    yield create
    for name in names:
        rt.delete_function(name)


def code_dir(path, files: dict) -> str:
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text) if isinstance(text, str) else target.write_bytes(text)
        if name == "bootstrap" or name.endswith(".sh"):
            target.chmod(0o755)
    return str(path)


@pytest.fixture(scope="module")
def awslambdaric_dir(tmp_path_factory):
    """awslambdaric and its dependencies, installed from PyPI into a directory
    that the tests copy into function code (as one would zip it)."""
    target = tmp_path_factory.mktemp("awslambdaric")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           "--no-warn-script-location", "--target", str(target), AWSLAMBDARIC],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"pip could not install {AWSLAMBDARIC} (needs PyPI): {done.stderr.strip()[-300:]}")
    return target


def with_awslambdaric(awslambdaric_dir, files: dict) -> dict:
    out = {}
    for root, _, names in os.walk(awslambdaric_dir):
        for name in names:
            full = os.path.join(root, name)
            if "__pycache__" not in full:
                with open(full, "rb") as f:
                    out[os.path.relpath(full, awslambdaric_dir)] = f.read()
    out.update(files)
    return out


def tutorial():
    return {"bootstrap": TUTORIAL_BOOTSTRAP, "function.sh": TUTORIAL_HANDLER}


# -- a custom runtime in shell and curl -----------------------------------------------------
def test_tutorial_bootstrap_runs_unchanged_and_stays_warm(rt, make, sink):
    name = make(tutorial())
    results = [rt.invoke(name, json.dumps({"n": n}).encode()) for n in range(3)]
    bodies = [r.json() for r in results]
    assert [b["event"] for b in bodies] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [b["count"] for b in bodies] == [1, 2, 3]              # /tmp kept between invocations
    assert len({b["pid"] for b in bodies}) == 1                  # the same bootstrap process
    assert len({r.environment_id for r in results}) == 1
    assert results[0].init_duration_ms is not None and results[1].init_duration_ms is None
    assert all(r.function_error is None for r in results)
    assert "INIT_START Runtime Version: provided:al2023.sandbox1\t" in sink.records[results[0].request_id].text
    text = sink.records[results[1].request_id].text
    assert f"START RequestId: {results[1].request_id} Version: $LATEST" in text
    assert '{"n": 1}' in text                                    # the handler's stderr
    assert re.search(rf"REPORT RequestId: {results[1].request_id}\tDuration: [\d.]+ ms", text)


def test_reserved_variables(rt, make):
    name = make({"bootstrap": sh_bootstrap('while true; do next; '
                                           'curl -sS --data-binary "$(env)" $API/invocation/$ID/response; done\n')},
                handler="anything.goes", memory_mb=512, timeout_s=7)
    result = rt.invoke(name, b"{}")
    env = dict(line.split("=", 1) for line in result.payload.decode().splitlines() if "=" in line)
    assert env["_HANDLER"] == "anything.goes"
    assert env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001"
    assert env["LAMBDA_TASK_ROOT"] == "/var/task" and env["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    assert (env["AWS_LAMBDA_FUNCTION_NAME"], env["AWS_LAMBDA_FUNCTION_VERSION"]) == (name, "$LATEST")
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert re.fullmatch(rf"\d{{4}}/\d\d/\d\d/\[\$LATEST\]{result.environment_id}", env["AWS_LAMBDA_LOG_STREAM_NAME"])
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert "AWS_EXECUTION_ENV" not in env                      # Lambda sets none for provided*
    assert env["PATH"].endswith("/usr/local/bin:/usr/bin/:/bin:/opt/bin")


def test_next_headers(rt, make):
    name = make({"bootstrap": sh_bootstrap('while true; do next; '
                                           'curl -sS --data-binary @"$H" $API/invocation/$ID/response; done\n')},
                timeout_s=7)
    before = int(time.time() * 1000)
    result = rt.invoke(f"{name}:$LATEST", b'{"a": 1}', trace_id="Root=1-5e34a614-10bd;Parent=07f5;Sampled=1",
                       client_context={"custom": {"k": "v"}})
    lines = result.payload.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    assert headers["lambda-runtime-aws-request-id"] == result.request_id
    assert before + 7000 <= int(headers["lambda-runtime-deadline-ms"]) <= int(time.time() * 1000) + 7000
    assert headers["lambda-runtime-invoked-function-arn"] == ARN + name
    assert headers["lambda-runtime-trace-id"] == "Root=1-5e34a614-10bd;Parent=07f5;Sampled=1"
    assert json.loads(headers["lambda-runtime-client-context"]) == {"custom": {"k": "v"}}
    assert headers["content-length"] == "8"
    plain = rt.invoke(name, b"{}")
    assert "lambda-runtime-trace-id" not in plain.payload.decode().lower()
    assert "lambda-runtime-client-context" not in plain.payload.decode().lower()


def test_function_error_via_error_endpoint(rt, make):
    error = '{"errorMessage": "Error parsing event data.", "errorType": "InvalidEventDataException"}'
    name = make({"bootstrap": sh_bootstrap(
        f"while true; do next; curl -sS $API/invocation/$ID/error -H 'Lambda-Runtime-Function-Error-Type: "
        f"Unhandled' -d '{error}' >/tmp/answer; cat /tmp/answer >&2; done\n")})
    result = rt.invoke(name, b"{}", log_type="Tail")
    assert result.function_error == "Unhandled"                  # what Lambda reports today
    assert json.loads(result.payload) == json.loads(error)
    again = rt.invoke(name, b"{}", log_type="Tail")               # the runtime keeps serving
    assert again.environment_id == result.environment_id
    import base64
    assert '{"status":"OK"}' in base64.b64decode(again.log_result).decode()   # the runtime got 202


def test_init_error_via_curl(rt, make, sink):
    error = '{"errorMessage": "Failed to load function.", "errorType": "InvalidFunctionException"}'
    name = make({"bootstrap": f"#!/bin/sh\necho loading\ncurl -sS http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/"
                              f"runtime/init/error -H 'Lambda-Runtime-Function-Error-Type: Unhandled' -d '{error}'\n"
                              "sleep 30\n"})
    result = rt.invoke(name, b"{}")
    assert result.function_error == "Unhandled" and json.loads(result.payload) == json.loads(error)
    text = sink.records[result.request_id].text
    assert "loading" in text and "Phase: init\tStatus: error\tError Type: InvalidFunctionException" in text


@pytest.mark.parametrize("when", ["init", "invoke"])
def test_runtime_exit_is_runtime_exit_error(rt, make, when):
    body = "exit 3\n" if when == "init" else "next; exit 3\n"
    name = make({"bootstrap": sh_bootstrap(body)})
    result = rt.invoke(name, b"{}")
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: exit status 3"}


def test_timeout_ends_the_environment(rt, make):
    name = make({"bootstrap": sh_bootstrap(
        'while true; do next; case "$EVENT" in *slow*) sleep 30;; esac; '
        'curl -sS -d "$$" $API/invocation/$ID/response; done\n')}, timeout_s=1)
    first = rt.invoke(name, b"{}")
    result = rt.invoke(name, b'{"slow": 1}')
    assert result.function_error == "Unhandled" and result.environment_id == first.environment_id
    assert json.loads(result.payload) == {"errorType": "Sandbox.Timedout",
                                          "errorMessage": f"RequestId: {result.request_id} Error: Task timed out "
                                                          "after 1.00 seconds"}
    after = rt.invoke(name, b"{}")
    assert after.environment_id != first.environment_id and after.init_duration_ms is not None


def test_concurrent_invocations_get_their_own_environment_and_port(rt, make):
    """Each environment has its own 127.0.0.1:9001, in its own namespace."""
    import threading

    name = make({"bootstrap": sh_bootstrap('while true; do next; sleep 0.5; '
                                           'curl -sS -d "{\\"pid\\": $$}" $API/invocation/$ID/response; done\n')})
    results = []
    threads = [threading.Thread(target=lambda: results.append(rt.invoke(name, b"{}"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.function_error is None for r in results), [r.payload for r in results]
    assert len({r.environment_id for r in results}) == 3


def test_missing_or_not_executable_bootstrap(rt, make):
    for files in ({"function.sh": "x"}, {"bootstrap/x": "not a file"}):
        name = make(files)
        result = rt.invoke(name, b"{}")
        assert json.loads(result.payload) == {
            "errorType": "Runtime.InvalidEntrypoint",
            "errorMessage": "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"}


def test_bootstrap_from_a_layer(rt, tmp_path):
    layer = rt.publish_layer_version("ri-runtime", zip_with_modes(tutorial()))
    name = "ri-layered"
    rt.create_function(name, code_dir(tmp_path / "code", {"function.sh": TUTORIAL_HANDLER}), "function.handler",
                       runtime="provided.al2", memory_mb=MB, layers=[layer.arn])
    try:
        # The layer's bootstrap sources $LAMBDA_TASK_ROOT/function.sh: the function's own.
        assert rt.invoke(name, b'{"layer": true}').json()["event"] == {"layer": True}
    finally:
        rt.delete_function(name)
        rt.delete_layer_version("ri-runtime", layer.version)


def zip_with_modes(files: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o100755 if name == "bootstrap" or name.endswith(".sh") else 0o100644) << 16
            archive.writestr(info, text)
    return out.getvalue()


def test_payload_that_is_not_json_is_refused_and_the_environment_stays(rt, make):
    name = make(tutorial())
    first = rt.invoke(name, b"{}")
    with pytest.raises(InvalidRequestContentException, match="Could not parse request body into json"):
        rt.invoke(name, b"{not json")
    assert rt.invoke(name, b"{}").json()["count"] == first.json()["count"] + 1


def test_net_layer_off_fails_closed(tmp_path):
    """The API must never be put on the supervisor's own network."""
    import sandbox

    conftest._drain_supervisor()
    before = conftest.LeakSnapshot()
    with sandbox.Runtime(disable=["net"]) as runtime:
        runtime.create_function("f", code_dir(tmp_path, tutorial()), "function.handler", runtime="provided")
        with pytest.raises(RuntimeAPIListenerError, match="supervisor's own network namespace"):
            runtime.invoke("f", b"{}")
    conftest.assert_no_leaks(before)


# -- awslambdaric ----------------------------------------------------------------------------
def test_awslambdaric_handler_runs_unchanged_and_stays_warm(rt, make, awslambdaric_dir, sink):
    name = make(with_awslambdaric(awslambdaric_dir, {"bootstrap": AWSLAMBDARIC_BOOTSTRAP, "app.py": AWSLAMBDARIC_APP}),
                handler="app.handler", timeout_s=9)
    results = [rt.invoke(name, json.dumps({"n": n}).encode(), client_context={"custom": {"c": n}},
                         trace_id=f"Root=1-{n}") for n in range(3)]
    bodies = [r.json() for r in results]
    assert [b["count"] for b in bodies] == [1, 2, 3] and len({b["pid"] for b in bodies}) == 1
    for result, body, n in zip(results, bodies, range(3)):
        assert body["event"] == {"n": n} and body["request_id"] == result.request_id
        assert body["arn"] == ARN + name and body["name"] == name and body["memory"] == str(MB)
        assert 7000 < body["remaining_ms"] <= 9000
        assert body["client_context"] == {"c": n} and body["trace"] == f"Root=1-{n}"
        assert body["stream"].endswith(f"[$LATEST]{result.environment_id}")
    assert f"handling {results[2].request_id}" in sink.records[results[2].request_id].text


def test_awslambdaric_errors(rt, make, awslambdaric_dir):
    name = make(with_awslambdaric(awslambdaric_dir, {"bootstrap": AWSLAMBDARIC_BOOTSTRAP, "app.py": AWSLAMBDARIC_APP}),
                handler="app.handler")
    result = rt.invoke(name, b'{"raise": "boom"}')
    body = json.loads(result.payload)
    assert result.function_error == "Unhandled"
    assert (body["errorType"], body["errorMessage"], body["requestId"]) == ("ValueError", "boom", result.request_id)
    assert any('/var/task/app.py", line' in frame for frame in body["stackTrace"])
    assert rt.invoke(name, b"{}").json()["count"] == 2            # the same runtime, still warm
    broken = make(with_awslambdaric(awslambdaric_dir, {"bootstrap": AWSLAMBDARIC_BOOTSTRAP,
                                                       "app.py": "import not_there\n"}), handler="app.handler")
    result = rt.invoke(broken, b"{}")
    body = json.loads(result.payload)
    assert result.function_error == "Unhandled" and body["errorType"] == "Runtime.ImportModuleError"
    assert "No module named 'not_there'" in body["errorMessage"]


def test_awslambdaric_timeout(rt, make, awslambdaric_dir):
    name = make(with_awslambdaric(awslambdaric_dir, {"bootstrap": AWSLAMBDARIC_BOOTSTRAP, "app.py": AWSLAMBDARIC_APP}),
                handler="app.handler", timeout_s=1)
    first = rt.invoke(name, b"{}")
    result = rt.invoke(name, b'{"sleep": 5}')
    assert json.loads(result.payload)["errorType"] == "Sandbox.Timedout"
    assert rt.invoke(name, b"{}").environment_id != first.environment_id


def test_benchmark_quick_run_reports_every_measure(tmp_path):
    """benchmarks/runtime_interface_bench.py still runs (no assertion on timings)."""
    out = tmp_path / "bench.json"
    bench = os.path.join(conftest.HERE, "..", "benchmarks", "runtime_interface_bench.py")
    subprocess.run([sys.executable, bench, "--quick", "--no-awslambdaric", "--json", str(out)], check=True,
                   capture_output=True, timeout=300)
    results = json.loads(out.read_text())
    for name in ("http_raw", "native", "socket", "curl_process", "curl"):
        assert results[name]["n"] > 0 and results[name]["p50_us"] > 0
    assert results["socket"]["ratio_p50_vs_native"] > 0
