"""_fastjson.dumps_ascii (csrc/fastjson_encode.c) and fastjson.dumps_bytes
against json itself: dumps_ascii(value) may decline (NotImplemented) but must
never return bytes that differ from json.dumps(value).encode(), nor any where
that raises; for plain values (exact dict with str keys, list, tuple, str, int,
float, True, False, None) it must answer.  fastjson.dumps_bytes must equal
json.dumps(...).encode() everywhere, errors and `default` included."""
from __future__ import annotations

import collections
import json
import random
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from json_support import FLOATS, INTS, SCALARS, SLOW_OK, TEXT, memory_growth, recursion_headroom, run_like_the_bootstrap
from sandbox.functions.runtime import _fastjson, fastjson

# -- dumps_ascii and fastjson.dumps_bytes ---------------------------------------------------------
# Every shape dumps_ascii must answer itself (ints far below the digit limit, nesting far from MAX_DEPTH).
ENCODABLE = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                          st.lists(inner, max_size=6).map(tuple),
                                                          st.dictionaries(TEXT, inner, max_size=6)), max_leaves=40)


class Number(int):
    def __repr__(self):
        return "not how json writes it"


class Real(float):
    pass


class Text(str):
    pass


class Mapping(dict):
    pass


class Items(list):
    pass


class Opaque:
    pass


def named(obj):
    """A `default` for whatever json cannot encode itself."""
    return f"<{type(obj).__name__}>"


ODD_SCALARS = st.one_of(st.builds(Number, INTS), st.builds(Real, FLOATS), st.builds(Text, TEXT), st.builds(Opaque),
                        st.sampled_from([b"x", frozenset({1}), 2 ** 2100]),
                        st.integers(4301, 5000).map(lambda digits: -(10 ** digits)))   # over json's digit limit
ODD_KEYS = st.one_of(st.integers(-3, 3), FLOATS, st.booleans(), st.none(), st.builds(Text, TEXT))
ANYTHING = st.recursive(st.one_of(SCALARS, ODD_SCALARS), lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.lists(inner, max_size=5).map(tuple), st.builds(Items, st.lists(inner, max_size=5)),
    st.dictionaries(st.one_of(TEXT, ODD_KEYS), inner, max_size=5),
    st.builds(Mapping, st.dictionaries(TEXT, inner, max_size=5)),
    st.dictionaries(TEXT, inner, max_size=5).map(collections.OrderedDict)), max_leaves=30)


def dumps_answer(value, default=None):
    """("bytes", json.dumps(value, default=default).encode()) or ("error", exception type)."""
    try:
        return "bytes", json.dumps(value, default=default).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        return "error", type(exc)


def check_dumps_agrees(value, must_answer=False):
    """dumps_ascii gives json's bytes or NotImplemented (never bytes where json
    raises), and fastjson.dumps_bytes gives json's bytes or raises json's
    exception type, with no default and with one.  must_answer: no declining."""
    got = _fastjson.dumps_ascii(value)
    kind, expected = dumps_answer(value)
    if got is NotImplemented:
        assert not must_answer, f"declined a plain value: {repr(value)[:200]}"
    else:
        assert kind == "bytes", f"returned {got[:200]!r} where json raises {expected.__name__}"
        assert type(got) is bytes and got == expected, (repr(value)[:200], got[:200], expected[:200])
    for default in (None, named):
        kind, expected = dumps_answer(value, default)
        if kind == "bytes":
            assert fastjson.dumps_bytes(value, default) == expected
        else:
            with pytest.raises(expected):
                fastjson.dumps_bytes(value, default)


def nested(depth, wrap):
    value = 0
    for _ in range(depth):
        value = wrap(value)
    return value


@given(ENCODABLE)
@settings(SLOW_OK, max_examples=1000)
def test_dumps_ascii_answers_every_plain_value_as_json(value):
    check_dumps_agrees(value, must_answer=True)


@given(ANYTHING)
@settings(SLOW_OK, max_examples=600)
def test_dumps_ascii_never_differs_and_dumps_bytes_equals_json(value):
    check_dumps_agrees(value)


def test_dumps_ascii_escapes_every_code_point_as_json():
    for start in range(0, 0x110000, 0x1000):
        chunk = "".join(map(chr, range(start, start + 0x1000)))
        check_dumps_agrees([chunk, {chunk[::-1]: chunk}], must_answer=True)
        for c in chunk[:: 0x100 if start else 1]:   # every ASCII char alone, a sample of the rest
            check_dumps_agrees(c, must_answer=True)


def test_dumps_ascii_finds_a_char_to_escape_at_every_position():
    for n in range(1, 70):
        for at in range(n):
            for special in '"\\\x00\x1f\x7f\x80é\u2028\U0001F600\ud800 ~':
                text = "a" * at + special + "a" * (n - at - 1)
                check_dumps_agrees({text: text}, must_answer=True)


def test_dumps_ascii_grows_its_buffer_across_every_size():
    """Around the first allocation (256 bytes), across escaped strings' 1024-char chunks, and large."""
    for n in range(240, 270):
        for text in ("x" * n, "é" * n, "\n" * n, "\U0001F600" * n):
            check_dumps_agrees(text, must_answer=True)
            check_dumps_agrees({"data": text}, must_answer=True)
    for n in (1023, 1024, 1025, 2049, 5000):
        for text in ("é" * n, "\n" * n, "\U0001F600" * n, "x" * (n - 1) + "\n", "\u2028" + "x" * n):
            check_dumps_agrees([text, text], must_answer=True)
    items = [{"id": i, "name": f"item{i}", "ok": i % 2 == 0, "score": i / 7, "tags": ("a", None)} for i in range(100)]
    for value in ({"data": "x" * 65524}, items, list(range(10000)), {"k" * 300: "v" * 300}, ["x" * 1000] * 100):
        check_dumps_agrees(value, must_answer=True)


FLOAT_CORNERS = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e16, 1e15, 1e-4,
                 1e-5, 1e-7, 0.1, 1 / 3, 2.0 ** 53, 123456789.0, 1e22, 1e23, float("nan"), -float("nan"),
                 float("inf"), float("-inf")]


def test_floats_are_written_as_float_repr():
    rng = random.Random(7)
    values = FLOAT_CORNERS + [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20000)]
    check_dumps_agrees(values, must_answer=True)   # every NaN payload is NaN
    for value in FLOAT_CORNERS:
        check_dumps_agrees(value, must_answer=True)


def test_ints_are_written_as_int_repr_and_singletons_by_name():
    rng = random.Random(8)
    edges = [0, 1, -1, 9, 10, -10, 2 ** 63 - 1, -(2 ** 63), 2 ** 63, -(2 ** 63) - 1, 2 ** 64, -(2 ** 64), 10 ** 18,
             10 ** 19, 2 ** 2100 - 1, -(2 ** 2100 - 1)]   # 2100 bits: 633 digits, as many as dumps_ascii writes
    values = edges + [rng.randrange(-2 ** bits, 2 ** bits) for bits in (8, 32, 62, 63, 64, 65, 100, 1000, 2099)
                      for _ in range(200)]
    check_dumps_agrees(values, must_answer=True)
    for value in edges + [True, False, None, [True, 1, False, 0, None]]:
        check_dumps_agrees(value, must_answer=True)


def test_ints_that_might_pass_the_digit_limit_go_to_json():
    for value in (2 ** 2100, -(2 ** 2100), 10 ** 700, 10 ** 4299, 10 ** 4300, -(10 ** 5000)):
        assert _fastjson.dumps_ascii(value) is NotImplemented
        assert _fastjson.dumps_ascii({"n": [value]}) is NotImplemented
        check_dumps_agrees({"n": [value]})
    with pytest.raises(ValueError, match="limit"):
        fastjson.dumps_bytes([10 ** 5000], None)
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)   # the lowest limit there is
    try:
        for digits in (600, 632, 633, 639, 640, 641, 700):
            for value in (10 ** digits - 1, -(10 ** digits - 1)):   # exactly `digits` digits
                check_dumps_agrees({"n": value})
        check_dumps_agrees(2 ** 2100 - 1, must_answer=True)
    finally:
        sys.set_int_max_str_digits(old)


def test_exactly_max_depth_is_answered_and_one_more_declined():
    for wrap in (lambda v: [v], lambda v: (v,), lambda v: {"a": v}):
        check_dumps_agrees(nested(200, wrap), must_answer=True)
        assert _fastjson.dumps_ascii(nested(201, wrap)) is NotImplemented
        check_dumps_agrees(nested(201, wrap))


CYCLIC_LIST = []
CYCLIC_LIST.append(CYCLIC_LIST)
CYCLIC_DICT = {}
CYCLIC_DICT["self"] = [1, CYCLIC_DICT]
DUMPS_DECLINED = {
    "int subclass with its own repr": Number(5), "float subclass": Real(1.5), "str subclass": Text("x"),
    "OrderedDict": collections.OrderedDict(a=1), "dict subclass": Mapping(a=1), "list subclass": Items([1]),
    "int key": {1: "a"}, "float key": {1.5: 1}, "nan key": {float("nan"): 1}, "bool key": {True: 1},
    "None key": {None: 1}, "tuple key": {(1,): 1}, "str subclass key": {Text("k"): 1},
    "list cycle": CYCLIC_LIST, "dict cycle": CYCLIC_DICT,
    "1000 lists deep": nested(1000, lambda v: [v]), "1000 dicts deep": nested(1000, lambda v: {"a": v}),
    "int over the digit limit": 10 ** 5000, "object": Opaque(), "bytes": b"x", "set": {1}, "complex": 1j,
    "an object deep inside": {"a": [1, "x", {"b": (2.5, None, Opaque())}]},
}


@pytest.mark.parametrize("value", DUMPS_DECLINED.values(), ids=DUMPS_DECLINED.keys())
def test_dumps_ascii_declines_these(value):
    assert _fastjson.dumps_ascii(value) is NotImplemented
    assert _fastjson.dumps_ascii([value]) is NotImplemented
    check_dumps_agrees(value)


def test_dumps_bytes_raises_json_errors_and_calls_default():
    for cycle in (CYCLIC_LIST, CYCLIC_DICT):
        with pytest.raises(ValueError, match="Circular reference detected"):
            fastjson.dumps_bytes(cycle, named)
    with pytest.raises(TypeError):
        fastjson.dumps_bytes({"a": Opaque()}, None)
    seen = []

    def default(obj):
        seen.append(obj)
        return {"kind": type(obj).__name__}

    thing = Opaque()
    value = {"a": [1, thing, "é"]}
    assert fastjson.dumps_bytes(value, default) == json.dumps(value, default=default).encode()
    assert seen == [thing, thing]


def test_a_nearly_exhausted_recursion_limit_declines_dumps_like_json_fails():
    value = nested(150, lambda v: [v])
    with recursion_headroom(100):
        with pytest.raises(RecursionError):
            json.dumps(value)
        assert _fastjson.dumps_ascii(value) is NotImplemented
        with pytest.raises(RecursionError):
            fastjson.dumps_bytes(value, None)


def test_dumps_ascii_leaks_nothing_answering_or_declining():
    values = list(DUMPS_DECLINED.values()) + [nested(201, lambda v: {"a": [v]}), {"a": [1, 2 ** 100, 1.5, "é\n"]},
                                              {"data": "x" * 5000}, ["\U0001F600" * 300], FLOAT_CORNERS]

    def encode_all():
        for value in values:
            _fastjson.dumps_ascii(value)

    grown = memory_growth(encode_all)
    assert grown < 20000, grown


def test_inside_the_sandbox_dumps_bytes_uses_the_c_encoder():
    out = run_like_the_bootstrap("""
        import fastjson
        data = fastjson.dumps_bytes({"a": [1, 2.5, None, "\\u00e9", (True,)]}, None)
        print(fastjson._dumps_ascii is fastjson._fastjson.dumps_ascii, data.decode(), "json" in sys.modules, sep="|")
    """)
    assert out.strip() == 'True|{"a": [1, 2.5, null, "\\u00e9", [true]]}|False'
