"""The runtime's C JSON module (csrc/fastjson.c, fastjson_decode.c) against json itself.

_fastjson.loads_utf8(data) may decline (NotImplemented) but must never return
a value that differs from json.loads(str(data, "utf-8")), nor one where that
raises; encode_basestring_ascii must equal _json's for every str.  (dumps_ascii:
test_fastjson_encode_c.py.)  Pure: the
module is the one built next to the runtime (a missing build fails here, it is
not skipped, so a broken build cannot fall back to the slow path unnoticed)."""
from __future__ import annotations

import _json
import ctypes
import json
import mmap
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from json_support import SCALARS, SLOW_OK, TEXT, memory_growth, recursion_headroom, run_like_the_bootstrap
from sandbox.functions.runtime import _fastjson, fastjson



def strictly_same(a, b) -> bool:
    """Deep equality with exact types (True is not 1, 1 is not 1.0), floats by
    their bits (NaN equals only the same NaN, -0.0 is not 0.0), key order."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) is list:
        return len(a) == len(b) and all(strictly_same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(strictly_same(ka, kb) and strictly_same(a[ka], b[kb])
                                        for ka, kb in zip(a, b))
    return a == b


def json_answer(data):
    """("value", v) or ("error", exception type) of json.loads(str(data, "utf-8"))."""
    try:
        return "value", json.loads(str(data, "utf-8"))
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError is a ValueError
        return "error", type(exc)


def check_agrees(data, must_answer=False):
    """The C module's answer is json's or NotImplemented (never a value where
    json raises).  must_answer: it may not decline either."""
    got = _fastjson.loads_utf8(data)
    kind, expected = json_answer(data)
    if got is NotImplemented:
        assert not must_answer, f"declined a valid document: {data[:200]!r}"
        return
    assert kind == "value", f"returned {got!r} where json raises {expected.__name__}: {data[:200]!r}"
    assert strictly_same(got, expected), (data[:200], got, expected)


# -- strategies -----------------------------------------------------------------------------------
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                       st.dictionaries(TEXT, inner, max_size=6)), max_leaves=40)
WHITESPACE = st.text(alphabet=" \t\n\r", max_size=3)


def has_lone_surrogate(value) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    return False


@st.composite
def documents(draw):
    """(value, document bytes) from json.dumps, ASCII or not, with random whitespace."""
    value = draw(VALUES)
    ascii_only = draw(st.booleans())
    item = draw(WHITESPACE) + "," + draw(WHITESPACE)
    key = draw(WHITESPACE) + ":" + draw(WHITESPACE)
    text = draw(WHITESPACE) + json.dumps(value, ensure_ascii=ascii_only, separators=(item, key)) + draw(WHITESPACE)
    return value, ascii_only, text.encode("utf-8", "surrogatepass")


# -- the module is built and used -----------------------------------------------------------------
def test_the_module_is_built_and_fastjson_uses_it():
    assert _fastjson.__name__ == "sandbox.functions.runtime._fastjson"
    assert fastjson._fastjson is _fastjson
    assert fastjson._encode_string is _fastjson.encode_basestring_ascii
    assert fastjson._dumps_ascii is _fastjson.dumps_ascii


def test_inside_the_sandbox_it_is_the_top_level_module_and_pulls_in_no_json():
    out = run_like_the_bootstrap("""
        import fastjson
        value = fastjson.loads_utf8(memoryview(b'{"a": [1, 2.5, null, "\\\\u00e9"]}'))
        print(fastjson._fastjson.__name__, fastjson.dumps(value, None), "json" in sys.modules, "re" in sys.modules,
              sep="|")
    """)
    assert out.strip() == '_fastjson|{"a": [1, 2.5, null, "\\u00e9"]}|False|False'


# -- loads_utf8: property tests ------------------------------------------------------------------
@given(documents())
@settings(SLOW_OK, max_examples=600)
def test_loads_utf8_equals_json_on_generated_documents(document):
    value, ascii_only, data = document
    # Lone surrogates written raw are not UTF-8: json refuses, the C must decline.
    check_agrees(data, must_answer=ascii_only or not has_lone_surrogate(value))


@given(documents(), st.data())
@settings(SLOW_OK, max_examples=600)
def test_loads_utf8_never_differs_on_mutated_documents(document, data):
    doc = bytearray(document[2])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(doc)))
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        byte = data.draw(st.sampled_from(b'"\\{}[],:0-.eE+u \t\x00\x1f\x7f\x80\xbf\xc3\xe2\xed\xef\xf0\xf4\xf5\xff'))
        if op == "insert":
            doc.insert(at, byte)
        elif at < len(doc):
            if op == "flip":
                doc[at] = byte
            elif op == "delete":
                del doc[at]
            else:
                del doc[at:]
    check_agrees(bytes(doc))


TOKENS = [b"{", b"}", b"[", b"]", b'"', b",", b":", b" ", b"\n", b"\t", b"0", b"1", b"9", b"-", b"+", b".", b"e",
          b"E", b"\\", b"u", b"d83d", b"DE00", b"\\ud800", b"\\udc00", b"\\n", b"\\/", b"\\x", b"null", b"true",
          b"false", b"NaN", b"Infinity", b"-Infinity", b"nul", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80",
          b"\xed\xa0\x80", b"\xc0\x80", b"\xe2\x82", b"\x80", b"\xff", b"\xef\xbb\xbf", b"\x00", b"\x1f", b"\x7f",
          b"abc", b"x" * 40, b"12345678901234567890", b"n", b"t", b"/", b"0041"]


@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join))
@settings(SLOW_OK, max_examples=1500)
def test_loads_utf8_never_differs_on_token_soup(data):
    check_agrees(data)


@given(st.from_regex(rb"\A-?(0|[1-9][0-9]{0,19})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,4})?\Z"))
@settings(SLOW_OK, max_examples=1500)
def test_numbers_equal_json_bit_for_bit(text):
    check_agrees(text, must_answer=True)
    check_agrees(b"[" + text + b"]", must_answer=True)


def test_short_decimals_take_the_exact_fast_path_correctly():
    """Up to 15 digits and 10**+-22 (Clinger's fast path) against float(), many at random."""
    rng = random.Random(1234)
    texts = []
    for _ in range(50000):
        digits = str(rng.randrange(10 ** rng.randrange(1, 16)))
        point = rng.randrange(len(digits) + 1)
        text = digits[:point] + "." + digits[point:] if 0 < point < len(digits) else digits
        text = text.lstrip("0") or "0"
        if text.startswith("."):
            text = "0" + text
        if rng.random() < 0.5:
            text += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randrange(0, 40))
        texts.append(("-" if rng.random() < 0.3 else "") + text)
    data = ("[" + ",".join(texts) + "]").encode()
    check_agrees(data, must_answer=True)


# -- loads_utf8: corners --------------------------------------------------------------------------
ACCEPTED = [
    b"null", b"true", b"false", b"0", b"-0", b"-0.0", b"0.0", b"1e400", b"-1e400", b"1E-400", b"2.5e-324",
    b"123456789012345678", b"-123456789012345678", b"1234567890123456789", b"9223372036854775808",
    b"123456789012345678901234567890", b"1" * 4300, b"-" + b"1" * 4300,
    b"NaN", b"Infinity", b"-Infinity", b"[NaN,Infinity,-Infinity]", b'{"a": 1, "b": 2, "a": 3}',
    b'{"a": 1, "a": {"x": 1}, "b": [], "a": null}', b' \t\r\n {"x" : [ 1 , 2 ] } \n\t ', b"[]", b"{}", b'""',
    b'"\\u0000"', b'"\\"\\\\\\/\\b\\f\\n\\r\\t"', b'"\\uAbCd\\uabcd\\uABCD"', b'"\\ud83d\\ude00"', b'"\\uD83D\\uDE00"',
    b'"\\ud800"', b'"\\udc00"', b'"\\udc00\\ud800"', b'"\\ud800\\ud800\\udc00"', b'"\\ud83dx\\ude00"',
    b'"\\ud83d\\n"', b'"\\ud83d\\\\ude00"', b'"\\ud800\\u0041"', b'"\\udbff\\udfff"', b'"\x7f"',
    b'"\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"', b'"\xc3\xa9\\n\xe2\x82\xac\\u00e9"',
    b'"\xed\x9f\xbf"', b'"\xee\x80\x80"', "[" * 200 + "]" * 200, b'{"a":' * 199 + b"1" + b"}" * 199,
    b'"' + b"x" * 65524 + b'"', b'{"data": "' + "é😀".encode() * 10000 + b'"}',
]


@pytest.mark.parametrize("data", ACCEPTED, ids=range(len(ACCEPTED)))
def test_answers_these_exactly(data):
    data = data.encode() if isinstance(data, str) else data
    check_agrees(data, must_answer=True)


DECLINED = [
    b"", b" ", b"\xef\xbb\xbf{}", b"\xef\xbb\xbf1", b"1 2", b'{"a": 1} x', b"[] []", b"1\x00", b"[1,]", b"[1 2]",
    b'{"a" 1}', b'{"a": }', b"{'a': 1}", b'{"a": 1,}', b'{"a"}', b"{1: 2}", b"nul", b"tru", b"nulll", b"01", b"-01",
    b"1.", b".5", b"+1", b"1e", b"1e+", b"1.e5", b"0x10", b"--1", b"-", b"-I", b"-Infinit", b"-NaN", b"nan",
    b"infinity", b"Infinit", b'"unterminated', b'"\\', b'"\\x"', b'"\\u12"', b'"\\u12G4"', b'"\\ud83d\\u"',
    b'"\\ud83d\\uZZZZ"', b'"\\ud83d\\ude0"', b'"\\U0041"', b'"\\a"', b'"\\\'"', b'"ctrl \x01"', b'"tab\tinside"',
    b'"nl\ninside"', b'"\x00"', b'"\x1f"', b'"\x01n"', b'"\x1fu0041"', b'"\\n\x00t"', b'"\x0a/"', b"\x0b1", b"\x0c1", b"1\xc2\xa0", b"\xc2\xa01",
    b'"\xed\xa0\x80"', b'"\xed\xbf\xbf"', b'"\xc0\x80"', b'"\xc1\xbf"', b'"\xe0\x80\x80"', b'"\xf0\x80\x80\x80"',
    b'"\xf4\x90\x80\x80"', b'"\xf5\x80\x80\x80"', b'"\xff"', b'"\x80"', b'"\xe2\x82"', b'"\xe2\x82"x"',
    b'"\xc3"', b'"ok"\xff', b'\xff"ok"', b'["\\n\xed\xa0\x80"]', b'"\\ud800\xed\xb0\x80"',
    b"1" * 4301, b"-" + b"1" * 4301, b"1" * 5000, b"[" + b"1" * 5000 + b"]",
    b"[" * 201 + b"]" * 201, b'{"a":' * 201 + b"1" + b"}" * 201, b"[" * 100000, b"[" * 100000 + b"]" * 100000,
    b"/* comment */ 1", b"undefined",
]


@pytest.mark.parametrize("data", DECLINED, ids=range(len(DECLINED)))
def test_declines_these(data):
    assert _fastjson.loads_utf8(data) is NotImplemented
    check_agrees(data)


def test_every_raw_byte_inside_a_string():
    """Controls are refused, DEL and printable ASCII kept, bytes >= 0x80 alone are not UTF-8."""
    for byte in range(256):
        for filler in (0, 5, 20, 40):
            check_agrees(b'"' + b"a" * filler + bytes([byte]) + b"a" * filler + b'"',
                         must_answer=0x20 <= byte < 0x80 and byte not in b'"\\')


def test_special_bytes_at_every_position_of_strings_up_to_70_bytes():
    """The word-at-a-time scan's edges: a stop or a non-ASCII byte at every offset."""
    specials = [b'\\"', b"\\\\", b"\\u00e9", b"\xc3\xa9", b"\xf0\x9f\x98\x80", b"\x7f", b"\n", b"\xff", b'"']
    for n in range(70):
        for at in range(n):
            for special in specials:
                body = b"x" * at + special + b"x" * (n - at - 1)
                check_agrees(b'"' + body + b'"')
                check_agrees(b'{"' + body + b'": 1}')


def test_every_bmp_escape_in_both_cases():
    escapes = [f"\\u{cp:04x}" for cp in range(0x10000)] + [f"\\u{cp:04X}" for cp in range(0, 0x10000, 7)]
    data = ('["' + '","'.join(escapes) + '"]').encode()
    check_agrees(data, must_answer=True)
    check_agrees(('"' + "".join(escapes) + '"').encode(), must_answer=True)


def test_surrogate_pairs_combine_exactly_as_json():
    rng = random.Random(5)
    high = [0xD800, 0xD83D, 0xDBFF] + [rng.randrange(0xD800, 0xDC00) for _ in range(50)]
    low = [0xDC00, 0xDE00, 0xDFFF] + [rng.randrange(0xDC00, 0xE000) for _ in range(50)]
    pieces = [f"\\u{h:04x}\\u{lo:04X}" for h in high for lo in low]
    pieces += [f"\\u{lo:04x}\\u{h:04x}" for h in high[:5] for lo in low[:5]]   # reversed: stay lone
    check_agrees(('"' + "".join(pieces) + '"').encode(), must_answer=True)
    check_agrees(('["' + '","'.join(pieces) + '"]').encode(), must_answer=True)


def ending_at_a_guard_page(data: bytes):
    """(mapping, view): `data` as the last bytes before an unreadable page, so
    that reading one byte past its end crashes instead of passing unnoticed."""
    page = mmap.PAGESIZE
    size = (len(data) // page + 2) * page
    mapping = mmap.mmap(-1, size)
    start = size - page - len(data)
    mapping[start:start + len(data)] = data
    address = ctypes.addressof(ctypes.c_char.from_buffer(mapping))
    assert ctypes.CDLL(None, use_errno=True).mprotect(ctypes.c_void_p(address + size - page), page, 0) == 0   # PROT_NONE
    return mapping, memoryview(mapping)[start:size - page]


def test_never_reads_past_the_end_of_the_buffer():
    doc = ('{"a": [1, -2.5e+3, 12345678901234567890, "x\\u00e9\\ud83d\\ude00\\n' + "é" * 20 + '", null, true, false,'
           ' NaN, -Infinity, Infinity, 0.5E-2], "' + "k" * 40 + '": {}, "s": "' + "x" * 70 + '"}').encode()
    docs = [doc[:n] for n in range(len(doc) + 1)] + [d if isinstance(d, bytes) else d.encode() for d in ACCEPTED + DECLINED]
    rng = random.Random(3)
    docs += [b"".join(rng.choices(TOKENS, k=rng.randrange(1, 30))) for _ in range(2000)]
    for data in docs:
        mapping, view = ending_at_a_guard_page(data)
        got = _fastjson.loads_utf8(view)
        kind, expected = json_answer(data)
        assert got is NotImplemented or (kind == "value" and strictly_same(got, expected)), data
        view.release()


def test_no_path_leaks_memory():
    """Declining half-way through a container, a string or a number frees what it built."""
    doc = ('{"a": [1, -2.5e+3, 1e400, 12345678901234567890, "x\\u00e9\\ud83d\\n' + "é" * 20 + '", null],'
           ' "' + "k" * 40 + '": {"q": "' + "x" * 70 + '"}, "a": 3}').encode()
    docs = [doc[:n] for n in range(len(doc) + 1)] + [d if isinstance(d, bytes) else d.encode() for d in ACCEPTED[:40]]
    docs += [d for d in DECLINED if len(d) < 10000] + [b"1" * 5000, b"[" + b"1" * 5000 + b"]"]

    def parse_all():
        for data in docs:
            _fastjson.loads_utf8(data)

    grown = memory_growth(parse_all)
    assert grown < 20000, grown


def test_key_memo_shares_one_str_per_key():
    keys = [f"key{i}" for i in range(300)] + ["é", "\\u00e9x", "a\\nb", "k" * 100]   # more keys than cache slots
    doc = json.dumps([{k: i for k in keys} for i in range(3)]).encode()
    got = _fastjson.loads_utf8(doc)
    assert strictly_same(got, json.loads(doc))
    for first, later in zip(got[0], got[2]):
        assert first is later


def test_any_buffer_is_read_and_other_objects_declined():
    doc = b'{"a": [1, "x"]}'
    for data in (doc, bytearray(doc), memoryview(doc), memoryview(b"xx" + doc + b"yy")[2:-2]):
        assert _fastjson.loads_utf8(data) == {"a": [1, "x"]}
    for other in ("{}", None, 1, memoryview(b"[1, 2]")[::2]):
        assert _fastjson.loads_utf8(other) is NotImplemented


def test_a_nearly_exhausted_recursion_limit_declines_like_json_fails():
    doc = b"[" * 150 + b"]" * 150
    with recursion_headroom(100):
        with pytest.raises(RecursionError):
            json.loads(doc)
        assert _fastjson.loads_utf8(doc) is NotImplemented
        with pytest.raises(RecursionError):
            fastjson.loads_utf8(doc)


# -- fastjson.loads_utf8 / dumps: same values and errors as the pure path --------------------------
@pytest.mark.parametrize("data", ACCEPTED[:40] + DECLINED[:80], ids=range(120))
def test_fastjson_loads_utf8_matches_the_pure_path(data):
    data = data.encode() if isinstance(data, str) else data
    try:
        expected = fastjson.loads(str(data, "utf-8"))
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)) as info:
            fastjson.loads_utf8(data)
        assert str(info.value) == str(exc)
        return
    assert strictly_same(fastjson.loads_utf8(data), expected)


def test_fastjson_loads_utf8_refuses_non_buffers_like_str_does():
    with pytest.raises(TypeError, match="decoding str is not supported"):
        fastjson.loads_utf8("{}")


@given(VALUES)
@settings(SLOW_OK, max_examples=300)
def test_fastjson_dumps_equals_json_dumps(value):
    assert fastjson.dumps(value, None) == json.dumps(value)


# -- encode_basestring_ascii ----------------------------------------------------------------------
@given(st.one_of(TEXT, st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=100)))
@settings(SLOW_OK, max_examples=1000)
def test_encode_equals_json_on_arbitrary_text(text):
    assert _fastjson.encode_basestring_ascii(text) == _json.encode_basestring_ascii(text)


def test_encode_equals_json_on_every_code_point():
    for start in range(0, 0x110000, 0x1000):
        chunk = "".join(map(chr, range(start, start + 0x1000)))
        assert _fastjson.encode_basestring_ascii(chunk) == _json.encode_basestring_ascii(chunk)
        for c in chunk[:: 0x100 if start else 1]:   # every ASCII char alone, a sample of the rest
            assert _fastjson.encode_basestring_ascii(c) == _json.encode_basestring_ascii(c)


def test_encode_finds_a_char_to_escape_at_every_position():
    for n in range(1, 70):
        for at in range(n):
            for special in '"\\\x00\x1f\x7f\x80é\u2028\U0001F600\ud800 ~':
                text = "a" * at + special + "a" * (n - at - 1)
                assert _fastjson.encode_basestring_ascii(text) == _json.encode_basestring_ascii(text)


def test_encode_subclasses_and_refuses_non_str_like_json():
    class Text(str):
        pass

    assert _fastjson.encode_basestring_ascii(Text("ab")) == '"ab"'
    assert type(_fastjson.encode_basestring_ascii(Text("ab"))) is str
    for other in (b"ab", 1, None):
        with pytest.raises(TypeError) as ours:
            _fastjson.encode_basestring_ascii(other)
        with pytest.raises(TypeError) as theirs:
            _json.encode_basestring_ascii(other)
        assert str(ours.value) == str(theirs.value)
