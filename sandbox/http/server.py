"""The Lambda REST API over HTTP for one sandbox.Runtime (docs/http-api.md).

One thread per connection (a long invocation never holds up another
request).  Each request goes through the same steps, in this order:

1. authenticate from the request line and headers only (sigv4.Verifier.check):
   nothing is read from a caller who has no valid key, scope or clock;
2. find the operation (routes.py) -- unknown ones are 404 only for callers
   who passed step 1;
3. check Content-Length against the operation's limit before reading the
   body (413; a chunked body is refused, 411): an oversized body is never
   read, and the connection is closed rather than drained;
4. read the body, hashing it, and verify the signature over it;
5. run the operation as the key's principal: `principal=` for Invoke (the
   function's resource policy decides), `runtime.acting_as()` for the
   control plane (the audit log names the caller).

Refusals are rendered as the service renders them: the LambdaError's HTTP
status, `x-amzn-ErrorType: <Type>`, and its JSON body, so botocore raises
the modeled exception class.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from ..functions.errors import InvalidRequestContentException, LambdaError, ServiceException
from .routes import Request, Response, body_limit, match
from .shapes import LengthRequiredException
from .sigv4 import Key, Verifier, normalize_path, query_pairs

log = logging.getLogger("sandbox.http")
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 9001
DEFAULT_MAX_CONNECTIONS = 256
IDLE_TIMEOUT_S = 60                 # a connection that sends nothing for this long is closed
_READ_CHUNK = 1024 * 1024


class LambdaServer(ThreadingHTTPServer):
    """Serves `runtime` to callers holding one of `keys` ({access key id:
    sigv4.Key}).  `destinations_dir`: the only directory tree under which
    PutFunctionEventInvokeConfig may name OnSuccess/OnFailure directories
    (None: destinations are refused)."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a burst of callers overflowed it,
    # and every connection the kernel dropped waited a second for its SYN again.
    request_queue_size = 128

    def __init__(self, runtime, keys: dict, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 destinations_dir: str | None = None, max_connections: int = DEFAULT_MAX_CONNECTIONS):
        if not keys:
            raise ValueError("at least one access key is required")
        if destinations_dir is not None and not os.path.isdir(destinations_dir):
            raise ValueError(f"destinations_dir {destinations_dir!r} is not a directory")
        self.runtime = runtime
        self.verifier = Verifier(keys, runtime.region)
        self.destinations_dir = destinations_dir
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def process_request(self, request, client_address):
        # At most max_connections handler threads: beyond that a connection is closed at once.
        if not self._slots.acquire(blocking=False):
            log.warning("refusing a connection from %s: %s connections open", client_address[0],
                        self.max_connections)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbox-lambda"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    # TCP_NODELAY: the headers and the body go out in two writes; with Nagle the body waits for the
    # client's delayed ACK of the headers, 40 ms per request on a keep-alive connection.
    disable_nagle_algorithm = True

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format, *args):
        log.info("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        self._body_pending = self._declared_length()
        try:
            response = self._serve()
        except LambdaError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("%s %s failed", self.command, self.path.partition("?")[0])
            response = error_response(ServiceException("The server failed to process the request"))
        if self._body_pending:
            self.close_connection = True      # the body was not read: do not parse it as the next request
        self._send(response)

    def _declared_length(self) -> int:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else (1 if value else 0)

    def _serve(self) -> Response:
        server: LambdaServer = self.server
        raw_path, _, raw_query = self.path.partition("?")
        headers = list(self.headers.items())
        signed = server.verifier.check(self.command, raw_path, raw_query, headers)     # 1
        route, params = match(self.command, normalize_path(raw_path), unquote)       # 2
        lower = {k.lower(): v for k, v in headers}
        if "transfer-encoding" in lower:                                              # 3
            raise LengthRequiredException("A body must be sent with Content-Length")
        length_text = lower.get("content-length", "0")
        if not length_text.isdigit():
            raise InvalidRequestContentException("Content-Length must be a number")
        length, limit = int(length_text), body_limit(route, lower)
        if length > limit:
            raise route.too_large(f"Request must be smaller than {limit} bytes for the {route.operation} operation")
        body, digest = self._read_body(length)                                        # 4
        principal = signed.verify(digest)
        query = {}
        for name, value in query_pairs(raw_query):
            if name.startswith("X-Amz-"):
                continue                      # the presigned form's own parameters
            if name in query:
                raise InvalidRequestContentException(f"Query parameter {name} is repeated")
            query[name] = value
        request = Request(server.runtime, principal, params, query, lower, body, server.destinations_dir)
        with server.runtime.acting_as(principal):                                     # 5
            return route.handler(request)

    def _read_body(self, length: int) -> tuple[bytes, str]:
        chunks, digest, left = [], hashlib.sha256(), length
        while left:
            chunk = self.rfile.read(min(left, _READ_CHUNK))
            if not chunk:
                raise InvalidRequestContentException("The request body ended before Content-Length bytes")
            chunks.append(chunk)
            digest.update(chunk)
            left -= len(chunk)
        self._body_pending = 0
        return b"".join(chunks), digest.hexdigest()

    def _send(self, response: Response) -> None:
        body = response.body
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":")).encode()
        body = body or b""
        headers = {"x-amzn-RequestId": str(uuid.uuid4()), **response.headers}
        try:
            self.send_response(response.status)
            for name, value in headers.items():
                self.send_header(name, value)
            if body or response.status not in (204,):
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def error_response(exc: LambdaError) -> Response:
    headers = {"x-amzn-ErrorType": exc.error_type}
    retry_after = exc.fields.get("retryAfterSeconds") if isinstance(exc.fields, dict) else None
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(exc.status_code, exc.to_dict(), headers)


# -- credentials -----------------------------------------------------------------------------
def load_keys(path: str) -> dict:
    """{access key id: Key} from a JSON file {"AKID...": {"secret": ..., "principal": ...}}."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a JSON object of access keys")
    keys = {}
    for access_key, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("secret"), str) or \
                not isinstance(entry.get("principal"), str):
            raise ValueError(f"{path}: key {access_key!r} needs a string \"secret\" and \"principal\"")
        keys[access_key] = Key(entry["secret"], entry["principal"])
    Verifier(keys, "us-east-1")          # validates the ids and secrets
    return keys


def generate_key(principal: str) -> tuple[str, Key]:
    """A fresh access key id (AKIA + 16 upper-case letters and digits, as AWS's
    look) and a 40-character secret."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    access_key = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    return access_key, Key(secrets.token_urlsafe(30), principal)


def write_keys(path: str, keys: dict) -> None:
    """Write keys in load_keys()'s format, created 0600 (never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({k: {"secret": v.secret, "principal": v.principal} for k, v in keys.items()}, f, indent=2)
        f.write("\n")
