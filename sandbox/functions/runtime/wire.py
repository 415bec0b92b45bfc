"""The private channel between the supervisor and the runtime bootstrap.

Shared verbatim by both ends: the supervisor imports it as
sandbox.functions.runtime.wire, the bootstrap (inside the sandbox, where this
directory is /var/runtime) as plain `wire`.  It must import nothing but the
standard library's struct, so the bootstrap starts fast.

Two pipes, one per direction.  Every message is one frame:

    header  = magic (1 byte) | kind (1 byte) | 2 zero bytes | body length (u32 LE)
    body    = `length` bytes

The magic byte lets the supervisor tell a frame from bytes a handler scribbled
on the channel; a bad header ends the environment.
"""
import struct

MAGIC = 0xA5
HEADER = struct.Struct("<BBxxI")

# supervisor -> runtime
INVOKE = ord("I")        # body: INVOKE_META, then arn, trace id, client context, payload

# runtime -> supervisor
READY = ord("Y")         # init finished; body empty
INIT_ERROR = ord("N")    # init failed; body: error JSON; the runtime exits next
# The answers to an invocation start with its 36-byte request id, so that a
# frame a handler forged on the channel cannot be taken for a later answer.
RESULT = ord("R")        # body: request id, the handler's result as JSON
ERROR = ord("E")         # body: request id, error JSON ({errorMessage, errorType, stackTrace})
BAD_REQUEST = ord("V")   # the payload was not JSON; body: request id, the parser's message (UTF-8)

RESPONSE_KINDS = frozenset((READY, INIT_ERROR, RESULT, ERROR, BAD_REQUEST))

# request id (ASCII, 36), deadline (Unix epoch ms), then the lengths of the
# invoked ARN, the trace id and the client context that follow it.
INVOKE_META = struct.Struct("<36sQHHI")
REQUEST_ID_SIZE = 36

READ_CHUNK = 64 * 1024                   # the supervisor's read size (a larger answer is read into a buffer of its size)
MAX_PAYLOAD = 6 * 1024 * 1024            # Lambda's synchronous request cap (6,291,456 bytes)
# ...and its response cap, which is 100 bytes larger: the limit Lambda's
# Runtime API applies to a response or error body (the RIE's MaxPayloadSize).
# The error names it: "exceeded maximum allowed payload size (6291556 bytes)".
MAX_RESPONSE = MAX_PAYLOAD + 100
MAX_FRAME = MAX_PAYLOAD + 64 * 1024      # payload plus metadata; larger is a protocol violation


def frame(kind: int, body: bytes) -> bytes:
    return HEADER.pack(MAGIC, kind, len(body)) + body


def invoke_frame(request_id: str, deadline_ms: int, arn: bytes, trace: bytes, context: bytes,
                 payload: bytes) -> bytes:
    meta = INVOKE_META.pack(request_id.encode(), deadline_ms, len(arn), len(trace), len(context))
    body_len = len(meta) + len(arn) + len(trace) + len(context) + len(payload)
    return b"".join((HEADER.pack(MAGIC, INVOKE, body_len), meta, arn, trace, context, payload))


def parse_invoke(body) -> tuple:
    """(request_id, deadline_ms, arn, trace, client_context, payload) from an INVOKE body."""
    request_id, deadline_ms, arn_len, trace_len, ctx_len = INVOKE_META.unpack_from(body)
    at = INVOKE_META.size
    arn = str(body[at:at + arn_len], "utf-8")
    at += arn_len
    trace = str(body[at:at + trace_len], "utf-8")
    at += trace_len
    context = bytes(body[at:at + ctx_len])
    at += ctx_len
    return str(request_id, "ascii"), deadline_ms, arn, trace, context, body[at:]
