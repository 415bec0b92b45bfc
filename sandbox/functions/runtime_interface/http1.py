"""Just enough HTTP/1.1 for the Runtime API: incremental, bounded request
parsing and response formatting.  Pure (no sockets), so it is unit-tested on
bytes.

Only the runtime inside one sandbox talks to it, so it is strict where a
general server would be lenient: CRLF line ends, no header folding, no
request with both Content-Length and Transfer-Encoding (the classic
smuggling ambiguity), only the `chunked` transfer coding.  Every size is
bounded, and a body is judged by its declared size before it is read.
"""
from __future__ import annotations

import re

# Go's net/http default (DefaultMaxHeaderBytes, 1 MiB) plus its 4 KiB of slack:
# awslambdaric sends an X-Ray error cause header of up to 1 MiB on /error.
MAX_HEAD = (1 << 20) + 4096
MAX_CHUNK_LINE = 1024          # "size;extensions" line of one chunk
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = bytes(range(32)) + b"\x7f"
_SANITIZE = bytes.maketrans(_CONTROL, b" " * len(_CONTROL))

REASONS = {100: "Continue", 200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Request Entity Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           505: "HTTP Version Not Supported"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HttpError(Exception):
    """A request that cannot be served: answer `status` and close the connection."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Head:
    """A parsed request line and header block.  Header names are lower-case;
    a repeated header keeps its first value (Content-Length repeats must agree)."""

    __slots__ = ("method", "path", "version", "headers", "content_length", "chunked", "keep_alive",
                 "expect_continue")

    def __init__(self, method: str, path: str, version: str, headers: dict):
        self.method, self.path, self.version, self.headers = method, path, version, headers
        self.chunked = False
        self.content_length = 0
        connection = headers.get("connection", "").lower()
        self.keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        self.expect_continue = headers.get("expect", "").lower() == "100-continue"

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


def parse_head(buf: bytearray, scan_from: int = 0) -> tuple[Head | None, int]:
    """(head, bytes consumed) once `buf` holds a whole header block, else
    (None, where to resume scanning).  Raises HttpError for a malformed or
    oversized one."""
    end = buf.find(b"\r\n\r\n", max(0, scan_from - 3))
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise HttpError(431, "request header block too large")
        return None, len(buf)
    if end > MAX_HEAD:
        raise HttpError(431, "request header block too large")
    lines = bytes(buf[:end]).split(b"\r\n")
    while lines and not lines[0]:   # RFC 9112 2.2: ignore empty lines before a request line
        lines.pop(0)
    if not lines:
        raise HttpError(400, "empty request")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(505 if version.startswith(b"HTTP/") else 400, "unsupported HTTP version")
    headers: dict[str, str] = {}
    lengths = set()
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):   # also refuses obsolete line folding
            raise HttpError(400, "malformed header line")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key == "content-length":
            lengths.add(text)
        headers.setdefault(key, text)
    path = target.split(b"?", 1)[0].decode("latin-1")
    head = Head(method.decode("ascii"), path, version.decode("ascii"), headers)
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if lengths:
            raise HttpError(400, "both Content-Length and Transfer-Encoding")
        if coding.lower() != "chunked" or version != b"HTTP/1.1":
            raise HttpError(501, f"unsupported transfer coding {coding!r}")
        head.chunked = True
    elif lengths:
        if len(lengths) != 1:
            raise HttpError(400, "conflicting Content-Length headers")
        text = lengths.pop()
        if not text.isdigit() or len(text) > 18:
            raise HttpError(400, "malformed Content-Length")
        head.content_length = int(text)
    return head, end + 4


class Body:
    """Collects one request body from the connection's buffer, never more than
    `limit` bytes: a declared length over it is refused before any of it is
    read (check()), a chunked body as soon as it passes it."""

    __slots__ = ("limit", "length", "chunked", "data", "_chunk_left", "_trailers")

    def __init__(self, head: Head, limit: int):
        self.limit = limit
        self.length = head.content_length
        self.chunked = head.chunked
        self.data = bytearray()
        self._chunk_left = -1      # chunked: bytes left in this chunk; -1 before a size line
        self._trailers = False

    def too_large(self) -> bool:
        return not self.chunked and self.length > self.limit

    def feed(self, buf: bytearray) -> bool:
        """Move body bytes out of `buf`; True when the body is complete."""
        if not self.chunked:
            take = self.length - len(self.data)
            self.data += buf[:take]
            del buf[:take]
            return len(self.data) == self.length
        while True:
            if self._trailers:   # trailer fields, ignored, up to the empty line
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise HttpError(400, "trailer line too long")
                    return False
                del buf[:end + 2]
                if end == 0:
                    return True
                continue
            if self._chunk_left < 0:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise HttpError(400, "chunk size line too long")
                    return False
                size = bytes(buf[:end]).split(b";", 1)[0].strip(b" \t")
                if not size or len(size) > 15 or not all(c in b"0123456789abcdefABCDEF" for c in size):
                    raise HttpError(400, "malformed chunk size")
                del buf[:end + 2]
                self._chunk_left = int(size, 16)
                if self._chunk_left == 0:
                    self._trailers = True
                    continue
                if len(self.data) + self._chunk_left > self.limit:
                    raise HttpError(413, "chunked body over the limit")
            if self._chunk_left > 0:
                take = min(self._chunk_left, len(buf))
                self.data += buf[:take]
                del buf[:take]
                self._chunk_left -= take
                if self._chunk_left:
                    return False
            if len(buf) < 2:
                return False
            if buf[:2] != b"\r\n":
                raise HttpError(400, "chunk not followed by CRLF")
            del buf[:2]
            self._chunk_left = -1


def header_value(value) -> bytes:
    """A value safe to put on a header line: control characters (CR, LF, NUL,
    TAB...) become spaces, so no caller-supplied text can end the line.  JSON
    keeps its meaning (control characters are only legal in it as whitespace)."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    return bytes(value).translate(_SANITIZE)


def response(status: int, body: bytes = b"", headers=(), content_type: bytes | None = b"application/json",
             close: bool = False) -> bytes:
    """One whole response.  `headers`: (name, value) pairs of bytes or str."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}".encode()]
    if content_type is not None:
        lines.append(b"Content-Type: " + content_type)
    for name, value in headers:
        lines.append(header_value(name) + b": " + header_value(value))
    lines.append(b"Content-Length: %d" % len(body))
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
