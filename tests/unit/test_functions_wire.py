"""The supervisor <-> runtime channel (sandbox/functions/runtime/wire.py) and the
bootstrap's JSON (runtime/fastjson.py), which must behave exactly like the
standard json module.  Pure; the last tests run the runtime's modules the way
the bootstrap does (python -S, only the runtime directory on sys.path)."""
from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import textwrap
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.functions.runtime import fastjson, wire
from sandbox.functions.spec import RUNTIME_DIR

RID = "496d4ba6-2efa-4524-a43f-9b766771254d"


# -- frames ------------------------------------------------------------------------------
def test_header_layout_is_8_bytes_little_endian():
    assert wire.HEADER.size == 8
    data = wire.frame(wire.RESULT, b"abc")
    assert data == bytes([0xA5, ord("R"), 0, 0, 3, 0, 0, 0]) + b"abc"


@pytest.mark.parametrize("kind", sorted(wire.RESPONSE_KINDS | {wire.INVOKE}))
@pytest.mark.parametrize("body", [b"", b"x", b'{"a": 1}', bytes(range(256)) * 100])
def test_frame_round_trip(kind, body):
    data = wire.frame(kind, body)
    magic, got_kind, length = wire.HEADER.unpack_from(data)
    assert (magic, got_kind, length) == (wire.MAGIC, kind, len(body))
    assert data[wire.HEADER.size:] == body


def test_frame_kinds_are_distinct_and_invoke_is_not_a_response():
    kinds = [wire.INVOKE, wire.READY, wire.INIT_ERROR, wire.RESULT, wire.ERROR, wire.BAD_REQUEST]
    assert len(set(kinds)) == len(kinds)
    assert wire.INVOKE not in wire.RESPONSE_KINDS
    assert wire.RESPONSE_KINDS == {wire.READY, wire.INIT_ERROR, wire.RESULT, wire.ERROR, wire.BAD_REQUEST}


def test_limits():
    assert wire.MAX_PAYLOAD == 6 * 1024 * 1024
    # Room for the largest payload, the longest ARN (256) and client context (3583 bytes).
    assert wire.MAX_FRAME >= wire.MAX_PAYLOAD + wire.INVOKE_META.size + 256 + 3583


def split_invoke(data: bytes):
    magic, kind, length = wire.HEADER.unpack_from(data)
    assert magic == wire.MAGIC and kind == wire.INVOKE
    body = data[wire.HEADER.size:]
    assert len(body) == length
    return wire.parse_invoke(body)


@pytest.mark.parametrize("arn,trace,context,payload", [
    (b"arn:aws:lambda:us-east-1:123456789012:function:fn", b"", b"", b"{}"),
    (b"arn:aws:lambda:us-east-1:123456789012:function:fn:7", b"Root=1-5e34a614-10bdxmplf1fb44f07bc535a1",
     b'{"custom": {"k": "v"}}', b'{"key": "value"}'),
    (b"", b"", b"", b""),
    (b"a" * 65535, b"t" * 65535, b"c" * 3583, b"p" * (1 << 20)),
    ("arn:é".encode(), "tré".encode(), "{\"é\": 1}".encode(), "\"ü\"".encode()),
])
def test_invoke_frame_round_trip(arn, trace, context, payload):
    rid = str(uuid.uuid4())
    data = wire.invoke_frame(rid, 1542409706888, arn, trace, context, payload)
    got = split_invoke(data)
    assert got[:5] == (rid, 1542409706888, arn.decode(), trace.decode(), context)
    assert bytes(got[5]) == payload


def test_parse_invoke_leaves_the_payload_a_view_of_the_buffer():
    data = wire.invoke_frame(RID, 1, b"arn", b"", b"", b'{"big": true}')
    view = memoryview(bytearray(data))[wire.HEADER.size:]
    *_, payload = wire.parse_invoke(view)
    assert isinstance(payload, memoryview) and bytes(payload) == b'{"big": true}'


@pytest.mark.parametrize("deadline", [0, 1, 2**53, 2**64 - 1])
def test_deadline_is_an_unsigned_64_bit_epoch_in_ms(deadline):
    assert split_invoke(wire.invoke_frame(RID, deadline, b"", b"", b"", b"{}"))[1] == deadline


def test_invoke_frame_length_field_matches_the_body():
    data = wire.invoke_frame(RID, 5, b"arn", b"trace", b"ctx", b"payload")
    _, _, length = wire.HEADER.unpack_from(data)
    assert length == len(data) - wire.HEADER.size == wire.INVOKE_META.size + 3 + 5 + 3 + 7


def test_oversized_metadata_cannot_be_framed():
    # Lengths are u16 (ARN, trace) and u32: larger values must fail loudly, not wrap.
    with pytest.raises(struct.error):
        wire.invoke_frame(RID, 1, b"a" * 65536, b"", b"", b"")
    with pytest.raises(struct.error):
        wire.invoke_frame(RID, 1, b"", b"t" * 65536, b"", b"")


@given(rid=st.uuids().map(str), deadline=st.integers(0, 2**64 - 1), arn=st.binary(max_size=300),
       trace=st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
       context=st.binary(max_size=300), payload=st.binary(max_size=2000))
@settings(max_examples=200, deadline=None)
def test_invoke_frame_round_trip_property(rid, deadline, arn, trace, context, payload):
    data = wire.invoke_frame(rid, deadline, arn, trace, context, payload)
    _, _, length = wire.HEADER.unpack_from(data)
    body = data[wire.HEADER.size:]
    assert length == len(body)
    try:
        arn.decode()
        trace.decode()
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            wire.parse_invoke(body)
        return
    assert wire.parse_invoke(body)[:5] == (rid, deadline, arn.decode(), trace.decode(), context)
    assert bytes(wire.parse_invoke(body)[5]) == payload


# -- fastjson.dumps == json.dumps ------------------------------------------------------------
def same(a, b) -> bool:
    """Deep equality where NaN equals NaN and types must match (1 != 1.0 != True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


DUMPED = [
    None, True, False, 0, -1, 2**63, -(2**64), 10**300, 0.0, -0.0, 0.1, 1e-310, 1.7976931348623157e308,
    float("nan"), float("inf"), float("-inf"), 5e-324, 1e16, 123456789.123456789,
    "", "plain", "quote \" backslash \\ slash / controls \b\f\n\r\t \x00 \x1f \x7f",
    "unicode é ü 中文 😀", "\ud800 lone surrogate", "\u2028\u2029",
    [], {}, [1, [2, [3, [4, []]]]], {"a": {"b": {"c": [None, {"d": ""}]}}},
    (1, 2, (3,)), {"z": 1, "a": 2, "m": 3},
    {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
    {float("nan"): 1, float("inf"): 2},
    {"é": "non-ascii key"}, list(range(1000)), {str(i): i for i in range(500)},
]


@pytest.mark.parametrize("value", DUMPED, ids=range(len(DUMPED)))
def test_dumps_matches_json(value):
    assert fastjson.dumps(value, None) == json.dumps(value)


def test_dumps_output_is_ascii():
    assert fastjson.dumps({"k": "é😀"}, None) == '{"k": "\\u00e9\\ud83d\\ude00"}'


def test_dumps_subclasses_like_json():
    import enum

    class Color(enum.IntEnum):
        RED = 1

    class Text(str):
        pass

    value = {"int": Color.RED, "str": Text("t"), "bool": True}
    assert fastjson.dumps(value, None) == json.dumps(value)


def _unserializable(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", {"k": object()}, [1, complex(1, 2)],
                                   {(1, 2): "tuple key"}])
def test_dumps_refuses_what_json_refuses(value):
    with pytest.raises(TypeError) as ours:
        fastjson.dumps(value, _unserializable)
    with pytest.raises(TypeError) as theirs:
        json.dumps(value, default=_unserializable)
    assert str(ours.value) == str(theirs.value)


def test_dumps_calls_default_like_json():
    value = {"when": {1, 2}}
    assert fastjson.dumps(value, sorted) == json.dumps(value, default=sorted) == '{"when": [1, 2]}'


def test_dumps_detects_cycles():
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        fastjson.dumps(loop, None)
    table = {}
    table["self"] = table
    with pytest.raises(ValueError, match="Circular"):
        fastjson.dumps(table, None)


def test_dumps_of_very_deep_values_raises_recursion_error():
    deep = []
    for _ in range(100000):
        deep = [deep]
    with pytest.raises(RecursionError):
        fastjson.dumps(deep, None)


def test_dumps_of_huge_ints_fails_like_json():
    with pytest.raises(ValueError):
        json.dumps(10**5000)
    with pytest.raises(ValueError):
        fastjson.dumps(10**5000, None)


# -- fastjson.loads == json.loads ---------------------------------------------------------------
LOADED = [
    "null", "true", "false", "0", "-0", "-0.0", "1e400", "-1e400", "1E-400", "123456789012345678901234567890",
    "3.141592653589793", "NaN", "Infinity", "-Infinity", '""', '"\\u00e9\\ud83d\\ude00"', '"\\ud800"',
    '"é 中文 😀"', '"\\"\\\\\\/\\b\\f\\n\\r\\t"', "[]", "{}", "[[], {}, [[{}]]]",
    '{"a": 1, "a": 2}', '{"b": 1, "a": 2}', ' \t\r\n {"x" : [ 1 , 2 ] } \n\t ', '[1,2,3]',
    '{"nested": {"deep": [1, {"deeper": [true, false, null]}]}}', '"\u2028"', "[" * 50 + "]" * 50,
]


@pytest.mark.parametrize("text", LOADED, ids=range(len(LOADED)))
def test_loads_matches_json(text):
    assert same(fastjson.loads(text), json.loads(text))


BAD = [
    "", " ", "\n", "{", "}", "[", "[1,]", "[1 2]", '{"a" 1}', '{"a": }', "{'a': 1}", '{"a": 1,}', "nul", "tru",
    "01", "1.", ".5", "+1", "0x10", '"unterminated', '"bad \\x escape"', '"\\ud83d\\u"', '"ctrl \x01"',
    '"tab\tinside"', "1 2", '{"a": 1} x', "[] []", "\ufeff{}", "nan", "infinity", "-NaN", "undefined", "1\u00a0",
    "/* comment */ 1", "[1e]", "--1",
]


@pytest.mark.parametrize("text", BAD, ids=range(len(BAD)))
def test_loads_refuses_what_json_refuses(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(fastjson.DecodeError) as info:
        fastjson.loads(text)
    assert isinstance(info.value, ValueError) and str(info.value)


def test_loads_refuses_ints_past_pythons_digit_limit():
    with pytest.raises(ValueError):
        json.loads("1" * 5000)
    with pytest.raises(ValueError):
        fastjson.loads("1" * 5000)


# Property tests: JSON values (with big ints, NaN/Infinity, any unicode incl. lone
# surrogates, non-string keys) must dump identically and load back identically.
KEYS = st.one_of(st.text(max_size=8), st.integers(-10**20, 10**20), st.booleans(), st.none(),
                 st.floats(allow_nan=True))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**40, 10**40), st.floats(allow_nan=True),
                    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=30)


@given(VALUES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_dumps_matches_json_property(value):
    assert fastjson.dumps(value, None) == json.dumps(value)


@given(VALUES, st.booleans(), st.sampled_from([None, 0, 2, "\t"]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_loads_matches_json_property(value, ascii_only, indent):
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert same(fastjson.loads(text), json.loads(text))
    assert same(fastjson.loads(fastjson.dumps(value, None)), json.loads(json.dumps(value)))


@given(st.text(alphabet='{}[]",:0123456789.eE+-tfalsenuNI \\/ubrx\t\n', max_size=30))
@settings(max_examples=500, deadline=None)
def test_loads_agrees_with_json_on_arbitrary_text(text):
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError):
        with pytest.raises(ValueError):
            fastjson.loads(text)
        return
    assert same(fastjson.loads(text), expected)


# -- as the bootstrap runs them --------------------------------------------------------------------
def run_like_the_bootstrap(code: str) -> str:
    """Run `code` with the runtime directory as the only import path, no site, no json."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {RUNTIME_DIR!r})
    """) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-S", "-B", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_wire_and_fastjson_do_not_import_json():
    out = run_like_the_bootstrap("""
        import fastjson, wire
        value = fastjson.loads('{"a": [1, 2.5, null, "\\\\u00e9"]}')
        text = fastjson.dumps(value, None)
        frame = wire.invoke_frame("r" * 36, 1, b"arn", b"", b"", text.encode())
        print(text, "json" in sys.modules, "re" in sys.modules, sep="|")
    """)
    assert out.strip() == '{"a": [1, 2.5, null, "\\u00e9"]}|False|False'


@pytest.mark.parametrize("text", ["{", '{"a": }', "[1,", '"\\x"', '"ctrl \x01"', "1 2", "", '{"a" 1}', "[1e]"])
def test_bad_json_raises_decode_error_without_json_imported(text):
    out = run_like_the_bootstrap(f"""
        import fastjson
        try:
            fastjson.loads({text!r})
        except fastjson.DecodeError as exc:
            print("DecodeError", isinstance(exc, ValueError), bool(str(exc)))
    """)
    assert out.strip() == "DecodeError True True"


# -- the runtime's end of the request pipe (lambda_runtime.Channel) ---------------------------------
def test_runtime_channel_reassembles_requests_however_they_are_split():
    """Requests of every size (empty, small, one byte either side of the receive
    buffer, several MB) arrive whole and in order however the pipe splits them:
    several frames per read, a header cut in two at the buffer's end, a frame
    larger than the buffer.  The bodies are views of one reused buffer, so each
    is checked before the next receive()."""
    out = run_like_the_bootstrap("""
        import os, random, threading
        import lambda_runtime as runtime, wire

        rng = random.Random(7)
        edge = runtime.RECEIVE_BUFFER - wire.HEADER.size
        sizes = [0, 1, 100, edge - 1, edge, edge + 1, 3, 5 * 1024 * 1024, 7, 64 * 1024]
        sizes += [rng.randrange(0, 300 * 1024) for _ in range(40)]
        bodies = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
        stream = b"".join(wire.frame(wire.INVOKE, body) for body in bodies)
        r, w = os.pipe()

        def feed():
            at = 0
            while at < len(stream):   # random cuts, so frames and headers straddle reads
                step = rng.choice((1, 3, 7, 4096, 65536, 200000))
                at += os.write(w, stream[at:at + step])
            os.close(w)

        writer = threading.Thread(target=feed)
        writer.start()
        channel = runtime.Channel(r, -1)
        got = 0
        while True:
            request = channel.receive()
            if request is None:
                break
            kind, body = request
            assert kind == wire.INVOKE and bytes(body) == bodies[got], (got, len(body))
            got += 1
        writer.join()
        print(got, len(bodies))
    """)
    assert out.split() == ["50", "50"]


def test_runtime_channel_refuses_a_corrupt_frame():
    out = run_like_the_bootstrap("""
        import os
        import lambda_runtime as runtime, wire

        r, w = os.pipe()
        os.write(w, wire.frame(wire.INVOKE, b"ok") + b"\\x00" * 8)
        os.close(w)
        channel = runtime.Channel(r, -1)
        print(bytes(channel.receive()[1]))
        try:
            channel.receive()
        except SystemExit as exc:
            print(exc)
    """)
    assert out.splitlines() == ["b'ok'", "bootstrap: corrupt request frame"]
