"""JSON for the bootstrap without `import json`.

`json` pulls in `re` and `enum`, about 10 ms of a cold start on a small VM.
The C accelerator `_json` does the real work in both directions anyway; this
module drives it directly with the same settings as json.loads()/json.dumps()
(strict parsing, ASCII output, NaN/Infinity allowed as Python does), and falls
back to `json` where `_json` is missing.

The C extension _fastjson (csrc/fastjson.c), built next to this file, is
faster still: loads_utf8() parses the payload's bytes directly,
dumps_bytes() writes a result's JSON bytes directly, and the _json encoder
quotes plain ASCII strings with one copy.  It declines (returns
NotImplemented) whatever it cannot answer exactly as json would, and the path
below then runs, raising json's error.  Inside the sandbox this file is the
top-level module `fastjson`, on the host `sandbox.functions.runtime.fastjson`.
"""
try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None

try:
    if __package__:
        from . import _fastjson
    else:
        import _fastjson
except ImportError:  # not built: the same answers, more slowly
    _fastjson = None

_dumps_ascii = _fastjson.dumps_ascii if _fastjson is not None else None

_WHITESPACE = " \t\n\r"


def _constant(name):
    return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


class _DecodeSettings:
    """What json.JSONDecoder() hands the C scanner by default."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo = {}


def _float_repr(value):
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == -float("inf"):
        return "-Infinity"
    return float.__repr__(value)


class DecodeError(ValueError):
    pass


if _json is not None:
    _scan = _json.make_scanner(_DecodeSettings())

    def loads(text: str):
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = _scan(text, start)
        except StopIteration as stop:
            raise DecodeError(f"Expecting value: char {stop.value}") from None
        except (ValueError, SystemError):
            # The scanner builds its error from json.decoder, which fails unless
            # `json` was imported: let json itself say what is wrong (rare path).
            import json

            try:
                json.loads(text)
            except ValueError as exc:
                raise DecodeError(str(exc)) from None
            raise
        if text[end:].strip(_WHITESPACE):
            raise DecodeError(f"Extra data: char {end}")
        return value

    _encode_string = _fastjson.encode_basestring_ascii if _fastjson is not None else _json.encode_basestring_ascii
    _encoders = {}

    def make_encoder(default):
        """json.dumps's C encoder with its default settings: encoder(value, 0)
        gives the chunks of the text.  One that raised may hold stale cycle
        markers: make a new one then."""
        # (markers, default, encoder, indent, key_separator, item_separator,
        #  sort_keys, skipkeys, allow_nan) -- json.encoder's c_make_encoder call.
        return _json.make_encoder({}, default, _encode_string, None, ": ", ", ", False, False, True)

    def dumps(value, default) -> str:
        # An encoder is reused while it succeeds (see make_encoder).
        encoder = _encoders.pop(default, None) or make_encoder(default)
        text = "".join(encoder(value, 0))
        _encoders[default] = encoder
        return text
else:  # pragma: no cover
    import json

    def loads(text: str):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise DecodeError(str(exc)) from None

    def dumps(value, default) -> str:
        return json.dumps(value, default=default)


def dumps_bytes(value, default) -> bytes:
    """dumps(value, default).encode(): the same bytes or the same error,
    written straight to bytes by the C module when it can."""
    if _dumps_ascii is not None:
        data = _dumps_ascii(value)
        if data is not NotImplemented:
            return data
    return dumps(value, default).encode()


def loads_utf8(data):
    """loads(str(data, "utf-8")), with the same value or the same error, parsed
    from the bytes (or any buffer) when the C module can."""
    if _fastjson is not None:
        value = _fastjson.loads_utf8(data)
        if value is not NotImplemented:
            return value
    return loads(str(data, "utf-8"))
