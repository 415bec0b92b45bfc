"""A hostile runtime against the Runtime API: forged request ids, bodies over
the limit, slowloris and connection floods, request smuggling, reaching for
the host's loopback, taking over port 9001.  The runtime (tests' own Python,
raw sockets) reports from inside the sandbox what it got; the supervisor must
keep serving the real protocol, stay bounded, and leave nothing behind."""
from __future__ import annotations

import json
import os
import socket

import pytest

import conftest
from conftest import requires_sandbox_privileges

pytestmark = [pytest.mark.hostile, pytest.mark.kernel, requires_sandbox_privileges()]

BOOTSTRAP = "#!/bin/sh\nexec python3 -S /var/task/runtime.py\n"
# The runtime: a loop on raw sockets; the event's "do" picks the abuse, whose
# findings go into the response (or, when the answer itself is the abuse,
# into the next one).
RUNTIME = r'''
import errno, json, os, socket, time

HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
BASE = "/2018-06-01/runtime"
held = []        # connections kept open on purpose
carried = {}     # findings reported with the next answer


def connect():
    return socket.create_connection((HOST, int(PORT)), timeout=10)


def read(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def request(method, path, body=b"", extra=""):
    with connect() as sock:
        sock.sendall(f"{method} {BASE}{path} HTTP/1.1\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
        return read(sock)


def answer(rid, result):
    result.update(carried)
    carried.clear()
    return request("POST", f"/invocation/{rid}/response", json.dumps(result).encode())


while True:
    status, headers, body = request("GET", "/invocation/next")
    rid = headers["lambda-runtime-aws-request-id"]
    do = json.loads(body).get("do")
    result = {"pid": os.getpid()}
    if do == "wrong_id":
        status, _, body = request("POST", "/invocation/4a0c3d1e-0000-4000-8000-000000000000/response", b'"forged"')
        result["wrong"] = [status, json.loads(body)]
    elif do == "twice":
        answer(rid, {"pid": os.getpid(), "first": True})
        status, _, body = request("POST", f"/invocation/{rid}/response", b'"second"')
        carried["second"] = [status, json.loads(body)]
        continue
    elif do == "huge":
        with connect() as sock:   # 7 MB announced; the refusal must come before it is sent
            sock.sendall(f"POST {BASE}/invocation/{rid}/response HTTP/1.1\r\nContent-Length: {7 << 20}\r\n"
                         "Expect: 100-continue\r\n\r\n".encode())
            status, _, body = read(sock)
        carried["huge"] = [status, json.loads(body)]
        continue
    elif do == "huge_chunked":
        with connect() as sock:
            sock.sendall(f"POST {BASE}/invocation/{rid}/response HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                         .encode())
            sent = 0
            try:
                while sent < 8 << 20:
                    sock.sendall(b"100000\r\n" + b"x" * 0x100000 + b"\r\n")
                    sent += 0x100000
            except OSError as exc:
                carried["chunked_error"] = exc.errno
            carried["huge_chunked"] = read(sock)[0]
        continue
    elif do == "slowloris":
        for _ in range(40):
            sock = connect()
            sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHo")
            held.append(sock)
    elif do == "big_header":
        with connect() as sock:
            sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nX: ")
            try:
                for _ in range(4):
                    sock.sendall(b"a" * (1 << 20))
            except OSError as exc:
                result["header_error"] = exc.errno
            result["big_header"] = read(sock)[0]
    elif do == "smuggle":
        status, _, _ = request("POST", f"/invocation/{rid}/response", b"x", "Transfer-Encoding: chunked\r\n")
        result["smuggle"] = status
    elif do == "elsewhere":
        try:
            socket.create_connection(("127.0.0.1", json.loads(body)["port"]), timeout=3).close()
            result["host_loopback"] = "connected"
        except OSError as exc:
            result["host_loopback"] = errno.errorcode.get(exc.errno, str(exc))
        with open("/proc/net/tcp") as f:
            result["listeners"] = [l.split()[1] for l in f.readlines()[1:] if l.split()[3] == "0A"]
        with open("/proc/net/dev") as f:
            result["links"] = sorted(l.split(":")[0].strip() for l in f.readlines()[2:])
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", 9001))
            result["bind9001"] = "bound"
        except OSError as exc:
            result["bind9001"] = errno.errorcode.get(exc.errno)
        s.close()
    answer(rid, result)
'''


@pytest.fixture(scope="module")
def rt(sink):
    for runtime in conftest.leak_checked_runtime(log_sink=sink, max_environments=8):
        yield runtime


@pytest.fixture(scope="module")
def hostile(rt, tmp_path_factory):
    code = tmp_path_factory.mktemp("hostile-runtime")
    (code / "bootstrap").write_text(BOOTSTRAP)
    (code / "bootstrap").chmod(0o755)
    (code / "runtime.py").write_text(RUNTIME)
    rt.create_function("hostile-runtime", str(code), "x.y", runtime="provided.al2023", memory_mb=1769, timeout_s=10)
    yield "hostile-runtime"
    rt.delete_function("hostile-runtime")


def call(rt, name, **event):
    return rt.invoke(name, json.dumps(event).encode())


def test_forged_request_id_is_refused_and_the_real_answer_counts(rt, hostile):
    body = call(rt, hostile, do="wrong_id").json()
    assert body["wrong"] == [400, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}]


def test_second_answer_is_refused(rt, hostile):
    first = call(rt, hostile, do="twice")
    assert first.json()["first"] is True
    second = call(rt, hostile).json()["second"]
    assert second[0] == 403 and second[1]["errorType"] == "InvalidStateTransition"


def test_response_over_the_limit_is_refused_before_it_is_sent(rt, hostile):
    result = call(rt, hostile, do="huge")
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorType"] == "Function.ResponseSizeTooLarge"
    after = call(rt, hostile)
    assert after.environment_id == result.environment_id         # the runtime stays, as in Lambda
    assert after.json()["huge"] == [413, {"errorType": "RequestEntityTooLarge",
                                          "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes)."}]


def test_chunked_response_over_the_limit(rt, hostile):
    result = call(rt, hostile, do="huge_chunked")
    assert json.loads(result.payload)["errorType"] == "Function.ResponseSizeTooLarge"
    assert call(rt, hostile).json()["huge_chunked"] in (413, 0)   # 0: reset before the 413 could be read


def test_slowloris_and_connection_flood_do_not_stop_the_protocol(rt, hostile):
    result = call(rt, hostile, do="slowloris")
    assert result.function_error is None
    for _ in range(3):   # the half-open connections are still held by the runtime
        assert call(rt, hostile).environment_id == result.environment_id


def test_header_block_over_the_limit(rt, hostile):
    body = call(rt, hostile, do="big_header").json()
    assert body["big_header"] in (431, 0)


def test_smuggling_shape_is_refused(rt, hostile):
    assert call(rt, hostile, do="smuggle").json()["smuggle"] == 400


def test_the_api_is_the_only_way_out(rt, hostile):
    """The host's loopback is not the sandbox's: a service listening there is
    unreachable, the only link is the sandbox's own lo, the only listener on
    it is the API's, and the runtime cannot take the API's port."""
    with socket.socket() as service:
        service.bind(("127.0.0.1", 0))
        service.listen(1)
        body = call(rt, hostile, do="elsewhere", port=service.getsockname()[1]).json()
        service.settimeout(0.2)
        with pytest.raises(OSError):
            service.accept()   # nothing came through
    assert body.get("host_loopback") == "ECONNREFUSED", body
    assert body["links"] == ["lo"]
    assert body["listeners"] == ["0100007F:2329"]                # 127.0.0.1:9001
    assert body["bind9001"] == "EADDRINUSE"


def test_nothing_left_after_a_hostile_runtime(tmp_path):
    """Environments of an abusive runtime end without leaving processes,
    cgroups, namespaces or sockets in the supervisor."""
    import sandbox

    def sockets():
        return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:") for fd in os.listdir("/proc/self/fd")
                   if os.path.exists(f"/proc/self/fd/{fd}"))

    conftest._drain_supervisor()
    before, held = conftest.LeakSnapshot(), sockets()
    (tmp_path / "bootstrap").write_text(BOOTSTRAP)
    (tmp_path / "bootstrap").chmod(0o755)
    (tmp_path / "runtime.py").write_text(RUNTIME)
    with sandbox.Runtime() as runtime:
        runtime.create_function("h", str(tmp_path), "x.y", runtime="provided", memory_mb=1769, timeout_s=10)
        for do in ("slowloris", "huge", "wrong_id", None):
            runtime.invoke("h", json.dumps({"do": do}).encode())
        runtime.update_function_configuration("h", timeout_s=1)
        runtime.invoke("h", b'{"do": "slowloris"}')
    conftest.assert_no_leaks(before)
    assert sockets() == held
