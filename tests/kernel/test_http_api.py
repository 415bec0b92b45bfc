"""`sandbox serve` (sandbox/http): boto3, unchanged, against the HTTP server
in front of a real sandbox.Runtime -- the control plane, every invocation
type, Lambda's error classes, SigV4 refusals, body limits, and concurrency
(a slow invocation never blocks a fast one)."""
from __future__ import annotations

import base64
import json
import os
import select
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

import conftest
from conftest import requires_sandbox_privileges

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from sandbox.http.server import LambdaServer  # noqa: E402
from sandbox.http.sigv4 import Key  # noqa: E402

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]

ADMIN, ADMIN_SECRET = "AKIAADMIN00000000001", "admin-secret"
OTHER, OTHER_SECRET = "AKIAOTHER00000000001", "other-secret"
ADMIN_PRINCIPAL = "arn:aws:iam::123456789012:user/admin"
OTHER_PRINCIPAL = "arn:aws:iam::444455556666:user/mallory"
MEMORY = 1769

CODE = """\
import json, os, time
def handler(event, context):
    print("event", json.dumps(event))
    return {"echo": event, "version": context.function_version, "flavour": os.environ.get("FLAVOUR")}
def fails(event, context):
    raise ValueError("bad input")
def slow(event, context):
    time.sleep(event.get("sleep", 1))
    return "slept"
def layered(event, context):
    return open("/opt/greeting.txt").read()
"""



APP = conftest.zip_of({"app.py": CODE})


@pytest.fixture(scope="module")
def runtime():
    yield from conftest.leak_checked_runtime(async_retry_delays_s=(0.05, 0.05), event_pollers=1)


@pytest.fixture(scope="module")
def server(runtime, tmp_path_factory):
    keys = {ADMIN: Key(ADMIN_SECRET, ADMIN_PRINCIPAL), OTHER: Key(OTHER_SECRET, OTHER_PRINCIPAL)}
    served = LambdaServer(runtime, keys, port=0, destinations_dir=str(tmp_path_factory.mktemp("destinations")))
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    served.shutdown()
    served.server_close()
    thread.join(5)


def client(server, access=ADMIN, secret=ADMIN_SECRET):
    return boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=access,
                        aws_secret_access_key=secret,
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=30))


@pytest.fixture(scope="module")
def lam(server):
    return client(server)


def create(lam, name, handler="app.handler", **extra):
    settings = {"MemorySize": MEMORY, "Timeout": 3, **extra}
    return lam.create_function(FunctionName=name, Runtime="python3", Role="arn:aws:iam::123456789012:role/r",
                               Handler=handler, Code={"ZipFile": APP}, **settings)


def error_code(info) -> str:
    return info.value.response["Error"]["Code"]


def test_create_and_invoke_every_type(lam, server):
    created = create(lam, "echo", Environment={"Variables": {"FLAVOUR": "mint"}}, Description="echoes")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionName"] == "echo" and created["MemorySize"] == MEMORY
    assert created["Environment"]["Variables"] == {"FLAVOUR": "mint"} and created["Version"] == "$LATEST"

    result = lam.invoke(FunctionName="echo", Payload=b'{"n": 1}', LogType="Tail")
    assert result["StatusCode"] == 200 and "FunctionError" not in result
    assert json.loads(result["Payload"].read()) == {"echo": {"n": 1}, "version": "$LATEST", "flavour": "mint"}
    assert result["ExecutedVersion"] == "$LATEST"
    request_id = result["ResponseMetadata"]["RequestId"]
    tail = base64.b64decode(result["LogResult"]).decode()
    assert f"START RequestId: {request_id} Version: $LATEST" in tail and 'event {"n": 1}' in tail

    arn = created["FunctionArn"]
    by_arn = lam.invoke(FunctionName=arn, Payload=b'{"n": 2}')     # an ARN in the path, percent-encoded
    assert json.loads(by_arn["Payload"].read())["echo"] == {"n": 2}

    assert lam.invoke(FunctionName="echo", Payload=b"{}", InvocationType="DryRun")["StatusCode"] == 204
    queued = lam.invoke(FunctionName="echo", Payload=b'{"n": 3}', InvocationType="Event")
    assert queued["StatusCode"] == 202 and queued["Payload"].read() == b""


def test_event_destination_directory(lam, server):
    destination = os.path.join(server.destinations_dir, "echo-ok")
    os.mkdir(destination)
    config = lam.put_function_event_invoke_config(FunctionName="echo", MaximumRetryAttempts=0,
                                                  DestinationConfig={"OnSuccess": {"Destination": "echo-ok"}})
    assert config["DestinationConfig"]["OnSuccess"]["Destination"] == os.path.realpath(destination)
    queued = lam.invoke(FunctionName="echo", Payload=b'{"n": 4}', InvocationType="Event")
    deadline = time.monotonic() + 10
    while not os.listdir(destination) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(os.path.join(destination, os.listdir(destination)[0])) as f:
        record = json.load(f)
    assert record["requestContext"]["requestId"] == queued["ResponseMetadata"]["RequestId"]
    assert record["responsePayload"]["echo"] == {"n": 4}
    for outside in ("/etc", "../..", "missing"):
        with pytest.raises(lam.exceptions.InvalidParameterValueException):
            lam.put_function_event_invoke_config(FunctionName="echo",
                                                 DestinationConfig={"OnFailure": {"Destination": outside}})
    lam.put_function_event_invoke_config(FunctionName="echo", DestinationConfig={})


def test_function_error_header(lam):
    create(lam, "fails", handler="app.fails")
    result = lam.invoke(FunctionName="fails", Payload=b"{}")
    assert result["StatusCode"] == 200 and result["FunctionError"] == "Unhandled"
    assert json.loads(result["Payload"].read())["errorType"] == "ValueError"


def test_list_with_pagination(lam):
    for i in range(3):
        create(lam, f"page-{i}")
    first = lam.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and first["NextMarker"]
    names = [f["FunctionName"] for f in first["Functions"]]
    marker = first["NextMarker"]
    while marker:
        more = lam.list_functions(MaxItems=2, Marker=marker)
        names += [f["FunctionName"] for f in more["Functions"]]
        marker = more.get("NextMarker")
    assert names == sorted(names) and {"page-0", "page-1", "page-2"} <= set(names)
    paged = [f["FunctionName"] for p in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 1})
             for f in p["Functions"]]
    assert paged == names
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.list_functions(Marker="not a marker")


def test_get_update_publish_versions_delete(lam):
    create(lam, "life")
    got = lam.get_function(FunctionName="life")
    assert got["Configuration"]["Handler"] == "app.handler" and got["Code"]["RepositoryType"] == "S3"
    assert lam.get_function_configuration(FunctionName="life")["FunctionName"] == "life"

    v1 = lam.publish_version(FunctionName="life", Description="first")
    assert v1["Version"] == "1" and v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    new_code = conftest.zip_of({"app.py": "def handler(event, context):\n    return 'v2'\n"})
    updated = lam.update_function_code(FunctionName="life", ZipFile=new_code)
    assert updated["CodeSha256"] != v1["CodeSha256"]
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_configuration(FunctionName="life", Timeout=5, RevisionId=v1["RevisionId"])
    configured = lam.update_function_configuration(FunctionName="life", Timeout=5, RevisionId=updated["RevisionId"],
                                                   Environment={"Variables": {"AB": "c"}})
    assert configured["Timeout"] == 5 and configured["Environment"]["Variables"] == {"AB": "c"}
    assert lam.invoke(FunctionName="life", Payload=b"{}")["Payload"].read() == b'"v2"'
    v2 = lam.publish_version(FunctionName="life", CodeSha256=configured["CodeSha256"])
    assert v2["Version"] == "2"
    versions = lam.list_versions_by_function(FunctionName="life")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    page = lam.list_versions_by_function(FunctionName="life", MaxItems=2)
    assert len(page["Versions"]) == 2 and page["NextMarker"]
    old = lam.invoke(FunctionName="life", Qualifier="1", Payload=b'{"x": 1}')
    assert old["ExecutedVersion"] == "1" and json.loads(old["Payload"].read())["echo"] == {"x": 1}

    lam.delete_function(FunctionName="life", Qualifier="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="life", Qualifier="1")
    assert lam.delete_function(FunctionName="life")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="life")


def test_layers(lam):
    layer = lam.publish_layer_version(LayerName="greeting", Content={"ZipFile": conftest.zip_of({"greeting.txt": "hi"})})
    assert layer["Version"] == 1
    create(lam, "layered", handler="app.layered", Layers=[layer["LayerVersionArn"]])
    assert lam.invoke(FunctionName="layered")["Payload"].read() == b'"hi"'
    assert lam.get_layer_version(LayerName="greeting", VersionNumber=1)["LayerVersionArn"] == \
        layer["LayerVersionArn"]


def test_resource_policy_decides_who_invokes(lam, server):
    create(lam, "guarded")
    other = client(server, OTHER, OTHER_SECRET)
    assert other.invoke(FunctionName="guarded")["StatusCode"] == 200          # no policy yet
    added = lam.add_permission(FunctionName="guarded", StatementId="admins", Action="lambda:InvokeFunction",
                               Principal="123456789012")
    assert json.loads(added["Statement"])["Sid"] == "admins"
    policy = json.loads(lam.get_policy(FunctionName="guarded")["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["admins"]
    assert lam.invoke(FunctionName="guarded")["StatusCode"] == 200
    for invocation_type in ("RequestResponse", "Event", "DryRun"):
        with pytest.raises(ClientError) as info:
            other.invoke(FunctionName="guarded", InvocationType=invocation_type)
        assert error_code(info) == "AccessDeniedException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert OTHER_PRINCIPAL in info.value.response["Error"]["Message"]
    assert lam.remove_permission(FunctionName="guarded", StatementId="admins")["ResponseMetadata"][
        "HTTPStatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_policy(FunctionName="guarded")
    assert other.invoke(FunctionName="guarded")["StatusCode"] == 200


def test_reserved_concurrency_throttles(lam, server):
    create(lam, "narrow", handler="app.slow", Timeout=5)
    assert lam.put_function_concurrency(FunctionName="narrow", ReservedConcurrentExecutions=1)[
        "ReservedConcurrentExecutions"] == 1
    assert lam.get_function(FunctionName="narrow")["Concurrency"] == {"ReservedConcurrentExecutions": 1}
    busy = threading.Thread(target=lambda: client(server).invoke(FunctionName="narrow", Payload=b'{"sleep": 2}'))
    busy.start()
    time.sleep(0.8)
    with pytest.raises(lam.exceptions.TooManyRequestsException) as info:
        lam.invoke(FunctionName="narrow", Payload=b'{"sleep": 0}')
    busy.join()
    assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    lam.delete_function_concurrency(FunctionName="narrow")
    lam.delete_function(FunctionName="narrow")
    create(lam, "off")
    lam.put_function_concurrency(FunctionName="off", ReservedConcurrentExecutions=0)
    with pytest.raises(lam.exceptions.TooManyRequestsException) as info:
        lam.invoke(FunctionName="off")
    assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]
    lam.delete_function(FunctionName="off")


def test_provisioned_concurrency(lam):
    create(lam, "warm")
    version = lam.publish_version(FunctionName="warm")["Version"]
    put = lam.put_provisioned_concurrency_config(FunctionName="warm", Qualifier=version,
                                                 ProvisionedConcurrentExecutions=1)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202 and put["RequestedProvisionedConcurrentExecutions"] == 1
    deadline = time.monotonic() + 10
    while lam.get_provisioned_concurrency_config(FunctionName="warm", Qualifier=version)["Status"] != "READY":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_provisioned_concurrency_config(FunctionName="warm", Qualifier="$LATEST",
                                               ProvisionedConcurrentExecutions=1)
    lam.delete_provisioned_concurrency_config(FunctionName="warm", Qualifier=version)
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName="warm", Qualifier=version)
    lam.delete_function(FunctionName="warm")


def test_errors_raise_the_modeled_exception_classes(lam):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="missing")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="missing")
    with pytest.raises(lam.exceptions.ResourceConflictException):
        create(lam, "echo")
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as info:
        lam.create_function(FunctionName="node", Runtime="nodejs20.x", Role="arn:aws:iam::1:role/r",
                            Handler="index.handler", Code={"ZipFile": APP})
    assert "runtime" in info.value.response["Error"]["Message"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        create(lam, "tagged", Tags={"team": "x"})          # unsupported fields are refused, not ignored
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke(FunctionName="echo", Payload=b"{not json")
    with pytest.raises(lam.exceptions.RequestTooLargeException) as info:
        lam.invoke(FunctionName="echo", Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    with pytest.raises(lam.exceptions.RequestTooLargeException):
        lam.invoke(FunctionName="echo", Payload=b'"' + b"x" * (1024 * 1024) + b'"', InvocationType="Event")


def test_oversized_body_is_refused_before_it_is_read(server):
    """Content-Length alone decides: the 413 comes back while the body is unsent."""
    signed = _signed_headers(server, "POST", "/2015-03-31/functions/echo/invocations", b"")
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as s:
        lines = ["POST /2015-03-31/functions/echo/invocations HTTP/1.1"] + \
            [f"{k}: {v}" for k, v in signed.items() if k.lower() != "content-length"] + \
            [f"Content-Length: {7 * 1024 * 1024}", "", ""]
        s.sendall("\r\n".join(lines).encode())
        answer = s.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413") and "x-amzn-ErrorType: RequestTooLargeException" in answer
    assert "Connection: close" in answer


def _signed_headers(server, method, path, body) -> dict:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=server.url + path, data=body)
    SigV4Auth(Credentials(ADMIN, ADMIN_SECRET), "lambda", "us-east-1").add_auth(request)
    host, port = server.server_address[:2]
    return {"Host": f"{host}:{port}", **dict(request.headers.items())}


def test_unsigned_and_badly_signed_requests_get_403(server):
    request = urllib.request.Request(server.url + "/2015-03-31/functions/echo/invocations", data=b"{}",
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 403
    assert info.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert json.loads(info.value.read()) == {"message": "Missing Authentication Token"}

    with pytest.raises(ClientError) as bad:
        client(server, ADMIN, "wrong-secret").invoke(FunctionName="echo")
    assert error_code(bad) == "InvalidSignatureException"
    assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as unknown:
        client(server, "AKIAUNKNOWN000000001", "x").list_functions()
    assert error_code(unknown) == "UnrecognizedClientException"


def test_slow_invocations_do_not_block_a_fast_one(lam, server):
    # Three environments made ready first (one at a time, by provisioned concurrency): several cold
    # starts at once can hang in the launcher's exec check (a core race, reported separately).
    create(lam, "sleepy", handler="app.slow", Timeout=5)
    version = lam.publish_version(FunctionName="sleepy")["Version"]
    lam.put_provisioned_concurrency_config(FunctionName="sleepy", Qualifier=version,
                                           ProvisionedConcurrentExecutions=3)
    deadline = time.monotonic() + 15
    while lam.get_provisioned_concurrency_config(FunctionName="sleepy", Qualifier=version)["Status"] != "READY":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    slow = [threading.Thread(target=lambda: client(server).invoke(FunctionName="sleepy", Qualifier=version,
                                                                  Payload=b'{"sleep": 2}'))
            for _ in range(3)]
    for thread in slow:
        thread.start()
    time.sleep(0.5)
    assert lam.invoke(FunctionName="echo", Payload=b"{}")["StatusCode"] == 200
    assert lam.list_functions()["Functions"]
    assert all(thread.is_alive() for thread in slow)   # served while all three still ran (no timing asserted)
    for thread in slow:
        thread.join()
    lam.delete_function(FunctionName="sleepy")


def test_control_plane_calls_are_audited_as_the_caller(runtime):
    records = [r for r in runtime.audit_records() if r.get("action") == "CreateFunction"]
    assert records and all(r.get("caller") == ADMIN_PRINCIPAL for r in records)


def test_serve_command_generates_a_key_and_stops_on_sigterm(tmp_path):
    """`sandbox serve` (through add_serve_command, as sandbox/cli.py wires it):
    the generated key works with boto3; SIGTERM stops it cleanly."""
    import re
    import signal
    import subprocess
    import sys

    script = ("import argparse, sys\n"
              "from sandbox.http.cli import add_serve_command\n"
              "parser = argparse.ArgumentParser(prog='sandbox')\n"
              "add_serve_command(parser.add_subparsers(dest='command'))\n"
              "args = parser.parse_args(sys.argv[1:])\n"
              "sys.exit(args.func(args))\n")
    process = subprocess.Popen([sys.executable, "-c", script, "serve", "--port", "0"], stderr=subprocess.PIPE,
                               text=True)
    try:
        output = ""
        while "listening on" not in output:
            line = process.stderr.readline()
            assert line, output
            output += line
        access = re.search(r"AWS_ACCESS_KEY_ID=(\S+)", output).group(1)
        secret = re.search(r"AWS_SECRET_ACCESS_KEY=(\S+)", output).group(1)
        path = re.search(r"also in (\S+),", output).group(1)
        assert os.stat(path).st_mode & 0o777 == 0o600
        url = re.search(r"listening on (\S+)", output).group(1)
        lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id=access,
                           aws_secret_access_key=secret)
        assert lam.list_functions()["Functions"] == []
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        process.stderr.close()
    assert not os.path.exists(path)


def test_docs_example_runs(no_leaks):
    """The ```python block of docs/http-api.md runs as written."""
    import re

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "http-api.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert blocks
    for index, code in enumerate(blocks):
        exec(compile(code, f"docs/http-api.md[block {index}]", "exec"), {"__name__": "__docs__"})


def test_a_burst_of_connections_completes_before_the_server_accepts(runtime):
    """The listen backlog holds a burst: 64 callers connecting at once all
    finish the TCP handshake while no connection has been accepted yet.  With
    socketserver's default backlog of 5 the kernel dropped the rest of the
    SYNs, and each of those callers waited a second to send it again."""
    served = LambdaServer(runtime, {ADMIN: Key(ADMIN_SECRET, ADMIN_PRINCIPAL)}, port=0)   # listening, not serving
    sockets = []
    try:
        for _ in range(64):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(served.server_address)
            sockets.append(s)
        deadline = time.monotonic() + 0.5   # well under the 1 s SYN retransmission
        pending = set(sockets)
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], list(pending), [], 0.05)
            pending -= set(writable)
        assert not pending, f"{len(pending)} of 64 connections still in their handshake"
    finally:
        for s in sockets:
            s.close()
        served.server_close()
