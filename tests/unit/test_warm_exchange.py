"""sandbox.functions._warm (csrc/warm_exchange.c), the supervisor's warm invoke
path, against real pipes: it answers only the plain case itself (one whole
answer frame carrying the request's id, nothing else pending) and hands every
other case back with the channel state it reached; it sends nothing to a
channel that is not quiet.  Request ids are version 4 UUIDs, unique, and not
shared with a forked child."""
from __future__ import annotations

import os
import select
import threading
import time
import types
import uuid

import pytest

from sandbox.functions import _warm
from sandbox.functions.runtime import wire

REQUEST_ID = b"0123456789abcdef0123456789abcdef0123"
ARN = b"arn:aws:lambda:us-east-1:123456789012:function:f"
BUFFER_SIZE = 4096


@pytest.fixture
def channel():
    """A fake runtime on real pipes: `channel.reply = bytes` is what it writes
    on the response pipe (and `channel.output` on the log pipe) once it has
    read a request; channel.call(**overrides) runs _warm.exchange on the
    supervisor's ends; channel.requests are the frames it received."""
    request_r, request_w = os.pipe()
    response_r, response_w = os.pipe()
    log_r, log_w = os.pipe()
    for fd in (request_w, response_r, log_r):
        os.set_blocking(fd, False)
    pid_fd = os.pidfd_open(os.getpid())    # a live process: never readable
    state = types.SimpleNamespace(reply=b"", output=b"", requests=[], buffer=bytearray(BUFFER_SIZE),
                                  response_w=response_w, request_r=request_r)

    def runtime():
        while True:
            frame = os.read(request_r, 1 << 16)
            if not frame:
                return
            state.requests.append(frame)
            if state.output:
                os.write(log_w, state.output)
            if state.reply:
                os.write(response_w, state.reply)

    def call(payload=b'{"a": 1}', trace=b"", context=b"", timeout_ms=500, check_quiet=True):
        return _warm.exchange(request_w, response_r, log_r, pid_fd, REQUEST_ID, 1234567890123, ARN, trace,
                              context, payload, timeout_ms, 0, state.buffer, check_quiet)

    state.call = call
    thread = threading.Thread(target=runtime, daemon=True)
    thread.start()
    yield state
    os.close(request_w)
    thread.join(5)
    for fd in (request_r, response_r, response_w, log_r, log_w, pid_fd):
        os.close(fd)


def answer(kind, body, request_id=REQUEST_ID):
    return wire.frame(kind, request_id + body)


def test_constants_agree_with_the_wire_module():
    assert _warm.HEADER_SIZE == wire.HEADER.size
    assert _warm.META_SIZE == wire.INVOKE_META.size
    assert _warm.REQUEST_ID_SIZE == wire.REQUEST_ID_SIZE


def test_the_frame_sent_is_the_wire_modules_frame(channel):
    channel.reply = answer(wire.RESULT, b"1")
    channel.call(payload=b'{"x": [1, 2]}', trace=b"Root=1-abc", context=b'{"c": 1}')
    assert channel.requests == [wire.invoke_frame(REQUEST_ID.decode(), 1234567890123, ARN, b"Root=1-abc",
                                                      b'{"c": 1}', b'{"x": [1, 2]}')]


@pytest.mark.parametrize("kind", [wire.RESULT, wire.ERROR, wire.BAD_REQUEST])
def test_a_whole_answer_with_the_request_id_is_taken(channel, kind):
    channel.reply = answer(kind, b'{"ok": true}')
    assert channel.call() == (kind, b'{"ok": true}')


@pytest.mark.parametrize("frame", [
    pytest.param(answer(wire.RESULT, b"1", request_id=b"x" * 36), id="another-request-id"),
    pytest.param(answer(wire.RESULT, b"1") + answer(wire.RESULT, b"2"), id="two-frames"),
    pytest.param(answer(wire.RESULT, b"12345")[:-2], id="part-of-a-frame"),
    pytest.param(b"\x00" * 60, id="bad-magic"),
    pytest.param(answer(wire.READY, b""), id="not-an-answer-kind"),
    pytest.param(answer(wire.RESULT, b"")[:20], id="shorter-than-a-header-and-id"),
])
def test_anything_else_is_handed_back_with_what_was_read(channel, frame):
    channel.reply = frame
    result = channel.call()
    assert result[0] is None
    _, events, written, got = result
    assert events == 1 and written == len(channel.requests[0])   # SBX_CH_DATA: the general loop takes these bytes
    assert bytes(channel.buffer[:got]) == frame


def test_pending_output_is_handed_back(channel):
    # The runtime writes its output, then its answer: the wait may wake for the
    # output alone, or see both.  Either way the general loop drains it first.
    channel.output = b"printed\n"
    channel.reply = answer(wire.RESULT, b"1")
    result = channel.call()
    assert result[0] is None
    _, events, _, got = result
    assert events & 2                              # SBX_CH_LOG
    assert bool(events & 1) == (got > 0)           # with the answer's bytes, if they came too


def test_a_timeout_is_handed_back(channel):
    assert channel.call(timeout_ms=20)[:2] == (None, 8)    # SBX_CH_TIMEOUT, after the frame went out whole


def test_a_channel_with_bytes_waiting_gets_nothing_sent(channel):
    os.write(channel.response_w, b"forged")
    assert channel.call() is None
    time.sleep(0.05)
    assert channel.requests == []


def test_without_the_check_it_is_sent_and_what_waits_is_handed_back(channel):
    # A new environment's first invocation: what it does is that invocation's outcome.
    os.write(channel.response_w, b"forged")
    _, events, written, got = channel.call(check_quiet=False)
    assert events == 1 and written == len(wire.invoke_frame(REQUEST_ID.decode(), 1, ARN, b"", b"", b'{"a": 1}'))
    assert bytes(channel.buffer[:got]) == b"forged"


def test_an_ended_runtime_gets_nothing_sent():
    request_r, request_w = os.pipe()
    response_r, response_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    pid_fd = os.pidfd_open(pid)
    try:
        select.select([pid_fd], [], [], 5)
        assert _warm.exchange(request_w, response_r, -1, pid_fd, REQUEST_ID, 1, ARN, b"", b"", b"{}", 100, 0,
                              bytearray(BUFFER_SIZE), True) is None
        assert select.select([request_r], [], [], 0)[0] == []
    finally:
        os.waitpid(pid, 0)
        for fd in (request_r, request_w, response_r, response_w, pid_fd):
            os.close(fd)


def test_a_closed_request_pipe_is_handed_back_as_nothing_written():
    request_r, request_w = os.pipe()
    response_r, response_w = os.pipe()
    os.close(request_r)     # the runtime's end is gone: EPIPE, which the general loop reports
    try:
        result = _warm.exchange(request_w, response_r, -1, -1, REQUEST_ID, 1, ARN, b"", b"", b"{}", 20, 0,
                                bytearray(BUFFER_SIZE), True)
        assert result == (None, 0, 0, 0)
    finally:
        for fd in (request_w, response_r, response_w):
            os.close(fd)


@pytest.mark.parametrize("bad", [
    dict(request_id=b"short"), dict(request_id="0" * 36), dict(arn="text"), dict(payload=bytearray(b"{}")),
    dict(arn=b"a" * 0x10000), dict(buffer=bytearray(10)), dict(buffer=b"x" * 4096),
])
def test_bad_arguments_raise_before_anything_is_sent(bad):
    request_r, request_w = os.pipe()
    response_r, response_w = os.pipe()
    args = dict(request_id=REQUEST_ID, arn=ARN, payload=b"{}", buffer=bytearray(BUFFER_SIZE))
    args.update(bad)
    try:
        with pytest.raises((TypeError, ValueError, BufferError)):
            _warm.exchange(request_w, response_r, -1, -1, args["request_id"], 1, args["arn"], b"", b"",
                           args["payload"], 100, 0, args["buffer"], True)
        assert select.select([request_r], [], [], 0)[0] == []
    finally:
        for fd in (request_r, request_w, response_r, response_w):
            os.close(fd)


def test_request_ids_are_version_4_uuids():
    for _ in range(1000):
        text = _warm.request_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_request_ids_are_unique():
    ids = {_warm.request_id() for _ in range(100_000)}
    assert len(ids) == 100_000


def test_a_forked_child_does_not_repeat_the_parents_ids():
    _warm.request_id()     # the pool is filled: a child inheriting it as-is would repeat what follows
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, "".join(_warm.request_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child = os.read(read_end, 1 << 12).decode()
    os.close(read_end)
    parent = "".join(_warm.request_id() for _ in range(10))
    assert {child[i:i + 36] for i in range(0, 360, 36)}.isdisjoint({parent[i:i + 36] for i in range(0, 360, 36)})
