"""The Runtime API server without a sandbox: HTTP/1.1 parsing on bytes, and
the endpoints, state machine, status codes and error shapes over a plain
loopback socket of the test process (the sandbox side is
tests/kernel/test_runtime_interface.py).

Requests are written before serve() runs: the server handles what is waiting
in its sockets, so each step is deterministic and single-threaded."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from sandbox.functions.runtime_interface import http1, server
from sandbox.functions.runtime_interface.messages import Invocation, valid_error_type
from sandbox.functions.runtime_interface.server import RuntimeAPIServer

RID = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
BASE = "/2018-06-01/runtime"


# -- helpers --------------------------------------------------------------------------
@pytest.fixture
def api():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    srv = RuntimeAPIServer(listener)
    srv.port = listener.getsockname()[1]
    clients = []

    def connect():
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        clients.append(sock)
        return sock

    srv.connect = connect
    yield srv
    for sock in clients:
        sock.close()
    srv.close()
    _LEFT.clear()


def send(sock, method, path, body=b"", headers=(), length=True):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:9001"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length and body is not None:
        lines.append(f"Content-Length: {len(body)}")
    sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + (body or b""))


_LEFT: dict = {}   # bytes read past the previous response, per socket (cleared by the fixture)


def read_response(sock):
    """(status, {lower-case header: value}, body) of one response."""
    data = _LEFT.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    if rest[length:]:
        _LEFT[sock] = rest[length:]
    return status, headers, rest[:length]


def serve(srv, seconds=2.0):
    return srv.serve(time.monotonic() + seconds)


def closed(sock):
    sock.settimeout(2)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def ready(srv):
    """Init done: a connection with its /next parked."""
    sock = srv.connect()
    send(sock, "GET", f"{BASE}/invocation/next")
    assert serve(srv).kind == "ready"
    return sock


def running(srv, rid=RID, **fields):
    """An invocation handed out; returns (connection, /next's response)."""
    sock = ready(srv)
    srv.begin(Invocation(rid, 1542409706888, b"arn:aws:lambda:us-east-1:123456789012:function:f", **fields))
    return sock, read_response(sock)


# -- http1 ------------------------------------------------------------------------------
def test_parse_head_incremental():
    buf = bytearray(b"GET /x?q=1 HTTP/1.1\r\nHost: a\r\nX-A: 1")
    head, scan = http1.parse_head(buf)
    assert head is None and scan == len(buf)
    buf += b"\r\nX-A: 2\r\n\r\nrest"
    head, used = http1.parse_head(buf, scan)
    assert (head.method, head.path, head.version) == ("GET", "/x", "HTTP/1.1")
    assert head.header("x-a") == "1" and head.keep_alive and bytes(buf[used:]) == b"rest"


@pytest.mark.parametrize("raw, status", [
    (b"GET /x\r\n\r\n", 400),
    (b"GET /x HTTP/2.0\r\n\r\n", 505),
    (b"GET /x HTTP/1.1\r\nBad Header: 1\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", 400),
    (b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
])
def test_parse_head_refuses(raw, status):
    with pytest.raises(http1.HttpError) as info:
        http1.parse_head(bytearray(raw))
    assert info.value.status == status


def test_parse_head_too_large_before_the_end():
    with pytest.raises(http1.HttpError) as info:
        http1.parse_head(bytearray(b"GET /x HTTP/1.1\r\nA: " + b"a" * (http1.MAX_HEAD + 1)))
    assert info.value.status == 431


def test_http10_closes_unless_keep_alive():
    assert not http1.parse_head(bytearray(b"GET / HTTP/1.0\r\n\r\n"))[0].keep_alive
    assert http1.parse_head(bytearray(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))[0].keep_alive
    assert not http1.parse_head(bytearray(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))[0].keep_alive


def test_chunked_body_in_pieces_and_limit():
    head, _ = http1.parse_head(bytearray(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
    body = http1.Body(head, 10)
    buf = bytearray(b"3;ext=1\r\nabc\r\n4\r")
    assert not body.feed(buf)
    buf += b"\ndefg\r\n0\r\nTrailer: x\r\n\r\nnext"
    assert body.feed(buf) and bytes(body.data) == b"abcdefg" and bytes(buf) == b"next"
    with pytest.raises(http1.HttpError) as info:
        http1.Body(head, 10).feed(bytearray(b"b\r\n"))
    assert info.value.status == 413


def test_declared_length_over_limit_is_judged_before_reading():
    head, _ = http1.parse_head(bytearray(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"))
    assert http1.Body(head, 10).too_large()


def test_header_values_cannot_end_the_line():
    raw = http1.response(200, b"{}", [(b"X-Context", b'{"a":\r\n"b"}\x00')])
    assert b'X-Context: {"a":  "b"} \r\n' in raw


@pytest.mark.parametrize("given, reported", [
    ("Runtime.ImportModuleError", "Runtime.ImportModuleError"), ("Function.MyError", "Function.MyError"),
    ("Function.bad", "Function.Unknown"), ("Unhandled", "Runtime.Unknown"), ("", "Runtime.Unknown"),
    ("Runtime.X1", "Runtime.Unknown"),
])
def test_error_type_validation(given, reported):
    assert valid_error_type(given) == reported


# -- the API ----------------------------------------------------------------------------
def test_init_ends_with_the_first_next_and_the_event_goes_to_it(api):
    sock, (status, headers, body) = running(api, trace=b"Root=1-5e3;Parent=7;Sampled=1",
                                            client_context=b'{"custom":{"a":1}}', payload=b'{"k": 1}')
    assert status == 200 and body == b'{"k": 1}'
    assert headers["lambda-runtime-aws-request-id"] == RID
    assert headers["lambda-runtime-deadline-ms"] == "1542409706888"
    assert headers["lambda-runtime-invoked-function-arn"] == "arn:aws:lambda:us-east-1:123456789012:function:f"
    assert headers["lambda-runtime-trace-id"] == "Root=1-5e3;Parent=7;Sampled=1"
    assert headers["lambda-runtime-client-context"] == '{"custom":{"a":1}}'
    assert "lambda-runtime-cognito-identity" not in headers   # only the headers that have a value
    assert headers["content-type"] == "application/json"
    send(sock, "POST", f"{BASE}/invocation/{RID}/response", b'"done"')
    outcome = serve(api)
    assert (outcome.kind, outcome.body) == ("result", b'"done"')
    assert read_response(sock) == (202, {"content-type": "application/json", "content-length": "15"},
                                   b'{"status":"OK"}')


def test_next_waits_for_an_invocation(api):
    sock = ready(api)
    assert serve(api, 0.1).kind == "timeout"   # nothing handed out: /next stays parked
    api.begin(Invocation(RID, 1, b"arn"))
    assert read_response(sock)[0] == 200


def test_an_invocation_waits_for_next(api):
    sock = ready(api)
    api.begin(Invocation(RID, 1, b"arn"))
    read_response(sock)
    send(sock, "POST", f"{BASE}/invocation/{RID}/response", b"1")
    assert serve(api).kind == "result"
    read_response(sock)
    api.begin(Invocation("second", 1, b"arn"))   # no /next yet
    send(sock, "GET", f"{BASE}/invocation/next")
    send(sock, "POST", f"{BASE}/invocation/second/response", b"2")
    assert serve(api).body == b"2"
    assert read_response(sock)[1]["lambda-runtime-aws-request-id"] == "second"


def test_wrong_request_id_is_400_and_the_right_one_still_counts(api):
    sock, _ = running(api)
    send(sock, "POST", f"{BASE}/invocation/someone-else/response", b'"forged"')
    send(sock, "POST", f"{BASE}/invocation/{RID}/response", b'"real"')
    outcome = serve(api)
    assert outcome.body == b'"real"'
    status, _, body = read_response(sock)
    assert status == 400 and json.loads(body) == {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
    assert read_response(sock)[0] == 202


def test_answers_outside_an_invocation_are_403(api):
    sock = api.connect()
    send(sock, "POST", f"{BASE}/invocation/{RID}/response", b"1")   # during init
    send(sock, "GET", f"{BASE}/invocation/next")
    assert serve(api).kind == "ready"
    status, _, body = read_response(sock)
    assert status == 403 and json.loads(body) == {
        "errorType": "InvalidStateTransition",
        "errorMessage": "State transition from Started to InvocationResponse failed for runtime. "
                        "Error: State transition is not allowed"}
    other = api.connect()
    send(other, "POST", f"{BASE}/init/error", b"{}")   # after init
    send(other, "POST", f"{BASE}/invocation/{RID}/error", b"{}")   # no invocation
    assert serve(api, 0.2).kind == "timeout"
    assert json.loads(read_response(other)[2])["errorMessage"].startswith("State transition from Ready to InitError")
    assert json.loads(read_response(other)[2])["errorMessage"].startswith(
        "State transition from Ready to InvocationErrorResponse")


def test_a_second_answer_is_403(api):
    sock, _ = running(api)
    send(sock, "POST", f"{BASE}/invocation/{RID}/response", b"1")
    send(sock, "POST", f"{BASE}/invocation/{RID}/response", b"2")
    assert serve(api).body == b"1"
    assert read_response(sock)[0] == 202
    serve(api, 0.1)   # the second, if it came in a later segment
    status, _, body = read_response(sock)
    assert status == 403 and "RuntimeResponseSentState to InvocationResponse" in json.loads(body)["errorMessage"]


def test_function_error_keeps_the_body_and_an_empty_one_gets_the_header_type(api):
    sock, _ = running(api)
    error = b'{"errorMessage":"bad","errorType":"InvalidEventDataException","stackTrace":[]}'
    send(sock, "POST", f"{BASE}/invocation/{RID}/error", error, [("Lambda-Runtime-Function-Error-Type", "Unhandled")])
    outcome = serve(api)
    assert (outcome.kind, outcome.body) == ("error", error)
    assert read_response(sock)[0] == 202
    send(sock, "GET", f"{BASE}/invocation/next")
    api.begin(Invocation("two", 1, b"arn"))
    send(sock, "POST", f"{BASE}/invocation/two/error", b"", [("Lambda-Runtime-Function-Error-Type", "Function.Oops")])
    outcome = serve(api)
    assert json.loads(outcome.body) == {"errorMessage": "", "errorType": "Function.Oops"}


def test_init_error(api):
    sock = api.connect()
    body = b'{"errorMessage":"Unable to import module","errorType":"Runtime.ImportModuleError","stackTrace":[]}'
    send(sock, "POST", f"{BASE}/init/error", body, [("Lambda-Runtime-Function-Error-Type", "Runtime.ImportModuleError")])
    outcome = serve(api)
    assert (outcome.kind, outcome.body) == ("init_error", body)
    assert read_response(sock)[0] == 202
    send(sock, "GET", f"{BASE}/invocation/next")   # the runtime should exit now; it gets no invocation
    assert serve(api, 0.2).kind == "timeout"
    assert read_response(sock)[0] == 403


def test_response_too_large_is_refused_before_it_is_sent(api):
    sock, _ = running(api)
    sock.sendall(f"POST {BASE}/invocation/{RID}/response HTTP/1.1\r\nContent-Length: {server.MAX_PAYLOAD + 1}\r\n"
                 "Expect: 100-continue\r\n\r\n".encode())
    assert serve(api).kind == "too_large"
    status, headers, body = read_response(sock)
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body) == {"errorType": "RequestEntityTooLarge",
                                "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes)."}
    assert closed(sock)


def test_expect_100_continue_then_the_body(api):
    sock, _ = running(api)
    sock.sendall(f"POST {BASE}/invocation/{RID}/response HTTP/1.1\r\nContent-Length: 5\r\n"
                 "Expect: 100-continue\r\n\r\n".encode())
    assert serve(api, 0.2).kind == "timeout"   # waits for the body
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"hello")
    assert serve(api).body == b"hello"


def test_chunked_response_and_limit(api):
    sock, _ = running(api)
    sock.sendall(f"POST {BASE}/invocation/{RID}/response HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "2\r\n{}\r\n0\r\n\r\n".encode())
    assert serve(api).body == b"{}"
    read_response(sock)
    send(sock, "GET", f"{BASE}/invocation/next")
    api.begin(Invocation("two", 1, b"arn"))
    sock.sendall(f"POST {BASE}/invocation/two/response HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 f"{server.MAX_PAYLOAD + 1:x}\r\n".encode())
    assert serve(api).kind == "too_large"


def test_large_event_and_response(api):
    """6 MB each way: written and read as the sockets allow, by the server's
    loop (the runtime side is a thread here)."""
    payload = b'"' + b"x" * (6 * 1024 * 1024 - 2) + b'"'
    sock = ready(api)
    got = {}

    def runtime():
        got["event"] = read_response(sock)[2]
        send(sock, "POST", f"{BASE}/invocation/{RID}/response", payload)

    thread = threading.Thread(target=runtime)
    thread.start()
    api.begin(Invocation(RID, 1, b"arn", payload=payload))
    outcome = serve(api, 10)
    thread.join()
    assert got["event"] == payload and outcome.body == payload


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/2018-06-01/runtime/invocation/next/extra", 404), ("GET", "/2020-01-01/extension/register", 404),
    ("POST", f"{BASE}/invocation/next", 405), ("GET", f"{BASE}/invocation/{RID}/response", 405),
])
def test_unknown_paths_and_methods(api, method, path, status):
    sock = api.connect()
    send(sock, method, path)
    send(sock, "GET", f"{BASE}/invocation/next")
    assert serve(api).kind == "ready"
    assert read_response(sock)[0] == status


def test_malformed_request_closes_the_connection(api):
    sock = api.connect()
    sock.sendall(b"GARBAGE\r\n\r\n")
    assert serve(api, 0.2).kind == "timeout"
    assert read_response(sock)[0] == 400 and closed(sock)


def test_truncated_answer(api):
    sock, _ = running(api)
    sock.sendall(f"POST {BASE}/invocation/{RID}/response HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc".encode())
    assert serve(api, 0.2).kind == "timeout"
    sock.close()
    outcome = serve(api)
    assert outcome.kind == "error" and json.loads(outcome.body)["errorType"] == "Runtime.TruncatedResponse"


def test_a_parked_next_whose_client_left_is_skipped(api):
    gone = ready(api)
    other = api.connect()
    send(other, "GET", f"{BASE}/invocation/next")
    assert serve(api, 0.1).kind == "timeout"
    gone.close()
    time.sleep(0.05)
    api.begin(Invocation(RID, 1, b"arn"))
    assert read_response(other)[1]["lambda-runtime-aws-request-id"] == RID


def test_connections_are_capped(api):
    idle = [api.connect() for _ in range(server.MAX_CONNECTIONS + 4)]
    sock = api.connect()
    send(sock, "GET", f"{BASE}/invocation/next")
    assert serve(api).kind == "ready"   # the oldest idle ones made room
    assert api.connections <= server.MAX_CONNECTIONS
    assert sum(closed(s) for s in idle[:4]) == 4


def test_keep_alive_serves_several_requests_on_one_connection(api):
    sock, _ = running(api)
    for n in range(3):
        send(sock, "POST", f"{BASE}/invocation/{RID if n == 0 else f'r{n}'}/response", str(n).encode())
        send(sock, "GET", f"{BASE}/invocation/next")
        assert serve(api).body == str(n).encode()
        assert read_response(sock)[0] == 202
        api.begin(Invocation(f"r{n + 1}", 1, b"arn"))
        serve(api, 0.1)   # the /next, if it came in a later segment
        assert read_response(sock)[1]["lambda-runtime-aws-request-id"] == f"r{n + 1}"
    assert api.connections == 1
