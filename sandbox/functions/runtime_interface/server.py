"""The Runtime API (version 2018-06-01) as Lambda serves it to a runtime: one
server per execution environment, on a listening socket that lives in the
sandbox's network namespace.

It runs only inside start() and invoke(), on the calling thread: the
environment is frozen in between (as Lambda's is), so an idle environment
costs no thread.  A runtime's request that arrives meanwhile waits in the
socket until the next call.

The runtime's side is a state machine, as Lambda's (names as its error
messages print them):

    Started --/next--> Ready --(invocation handed out)--> Running
       |                 ^                                   | /response, /error
       +--/init/error    +-------------/next---------- RuntimeResponseSentState

A request that does not fit the state gets 403 InvalidStateTransition; an
answer for another request id 400 InvalidRequestID; a body over the payload
limit 413 RequestEntityTooLarge, refused before it is read.
"""
from __future__ import annotations

import collections
import errno
import re
import select
import socket
import time

from ..outcome import Outcome
from .http1 import CONTINUE, MAX_HEAD, Body, Head, HttpError, parse_head, response
from .messages import (ACCEPTED, INVALID_ID, MAX_PAYLOAD, TOO_LARGE, Invocation, error, error_body, transition,
                       valid_error_type, with_close)

PREFIX = "/2018-06-01"
MAX_SMALL_BODY = 64 * 1024               # any other request's body (none is expected)
MAX_CONNECTIONS = 8                      # per environment; awslambdaric uses 1-2, a curl loop 1 at a time
RECV_SIZE = 256 * 1024
MAX_BUFFERED = MAX_HEAD + RECV_SIZE       # unparsed bytes kept per connection

STARTED, READY, RUNNING, RESPONDING, SENT, INIT_FAILED = (
    "Started", "Ready", "Running", "InvocationResponse", "RuntimeResponseSentState", "InitError")
_ROUTE = re.compile(PREFIX + r"/runtime/(?:invocation/(?:(next)|([^/]+)/(response|error))|init/(error))")


class Connection:
    __slots__ = ("sock", "fd", "inbuf", "scan", "head", "body", "route", "out", "close_after", "parked",
                 "delivering", "last_active")

    def __init__(self, sock: socket.socket):
        self.sock, self.fd = sock, sock.fileno()
        self.inbuf = bytearray()
        self.scan = 0
        self.head: Head | None = None   # the request being read
        self.body: Body | None = None
        self.route = None
        self.out = bytearray()
        self.close_after = False        # close once `out` is written
        self.parked = False             # holds a /next waiting for an invocation
        self.delivering = False         # the invocation is being written to it
        self.last_active = time.monotonic()

    @property
    def evictable(self) -> bool:
        """Not carrying the runtime's protocol: no parked /next, no answer
        being received, no invocation being written.  An idle keep-alive or
        a half-sent request (a slowloris) may be closed to make room."""
        return not self.parked and not self.delivering and (self.route is None or self.route[0] != "answer")


class RuntimeAPIServer:
    """Serves one environment's runtime.  `watch(fd, callback)` adds another
    descriptor to the same wait (the log pipe, the pidfd); a callback may return
    an Outcome, which ends the current serve()."""

    def __init__(self, listener: socket.socket):
        self._listener = listener
        listener.setblocking(False)
        self._poll = select.poll()
        self._poll.register(listener, select.POLLIN)
        self._accepting = True
        self._conns: dict[int, Connection] = {}
        self._watched: dict = {}
        self._parked: collections.deque[Connection] = collections.deque()
        self.state = STARTED
        self._invocation: Invocation | None = None   # the one being served
        self._delivered = False
        self._result: Outcome | None = None
        self._unparked = False     # a /next was answered: requests pipelined behind it may be waiting

    def watch(self, fd: int, callback) -> None:
        self._watched[fd] = callback
        self._poll.register(fd, select.POLLIN)

    def unwatch(self, fd: int) -> None:
        if self._watched.pop(fd, None) is not None:
            self._poll.unregister(fd)

    # -- what the environment asks -----------------------------------------------
    def begin(self, invocation: Invocation) -> None:
        """Hand `invocation` to the runtime: now, to a waiting /next, or when one comes."""
        self._invocation, self._delivered, self._result = invocation, False, None
        self._deliver()

    def serve(self, deadline: float) -> Outcome:
        """Serve until an outcome (init done or failed, an answer, the runtime's
        end through a watched callback) or `deadline` (monotonic): "timeout"."""
        self._result = None
        while True:
            if self._unparked:
                self._unparked = False
                self._process_buffered()
            if self._result is not None:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Outcome("timeout")
            for fd, events in self._poll.poll(remaining * 1000 + 1):
                if fd == self._listener.fileno():
                    self._accept()
                elif fd in self._conns:
                    self._on_conn(self._conns[fd], events)
                else:
                    callback = self._watched.get(fd)
                    outcome = callback() if callback is not None else None
                    if outcome is not None and self._result is None:
                        self._result = outcome
        result, self._result = self._result, None
        return result

    def drain(self) -> None:
        """Read and handle whatever the runtime already sent, without waiting
        (its last words before it exited)."""
        for conn in list(self._conns.values()):
            for _ in range(64):   # up to 16 MiB: a whole answer and more
                before = len(conn.inbuf) + (len(conn.body.data) if conn.body is not None else 0)
                self._on_conn(conn, select.POLLIN)
                if conn.fd not in self._conns or self._result is not None or \
                        len(conn.inbuf) + (len(conn.body.data) if conn.body is not None else 0) == before:
                    break

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)
        for fd in list(self._watched):
            self.unwatch(fd)
        self._listener.close()

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- connections ------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            if len(self._conns) >= MAX_CONNECTIONS and not self._evict():
                # Full of busy connections: leave new ones in the backlog (the
                # kernel bounds it) until one ends, rather than spin on them.
                self._poll.modify(self._listener, 0)
                self._accepting = False
                return
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                raise
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock)
            self._conns[conn.fd] = conn
            self._poll.register(conn.fd, select.POLLIN)

    def _evict(self) -> bool:
        """Make room by closing the least recently active connection that
        does not carry the protocol (see Connection.evictable)."""
        spare = [c for c in self._conns.values() if c.evictable]
        if not spare:
            return False
        self._drop(min(spare, key=lambda c: c.last_active))
        return True

    def _drop(self, conn: Connection) -> None:
        if self._conns.pop(conn.fd, None) is None:
            return
        self._poll.unregister(conn.fd)
        conn.sock.close()
        if conn.parked:
            conn.parked = False
            self._parked.remove(conn)
        if conn.route is not None and conn.route[0] == "answer" and self.state == RESPONDING:
            # The runtime went away in the middle of its answer.
            self.state = SENT
            self._finish(Outcome("error", error_body("Runtime.TruncatedResponse",
                                                      "The runtime closed the connection before the whole "
                                                      "response was received")))
        if not self._accepting:
            self._accepting = True
            self._poll.modify(self._listener, select.POLLIN)

    def _on_conn(self, conn: Connection, events: int) -> None:
        if events & select.POLLOUT:
            self._flush(conn)
            if conn.fd not in self._conns:
                return
        if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try:
                data = conn.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._drop(conn)
                return
            conn.inbuf += data
            conn.last_active = time.monotonic()
            if len(conn.inbuf) > MAX_BUFFERED:
                # Only possible while its requests wait (a parked /next, an
                # answer being written): more pipelined bytes than any request.
                self._drop(conn)
                return
            self._process(conn)

    def _process_buffered(self) -> None:
        for conn in list(self._conns.values()):
            if conn.inbuf and not conn.parked:
                self._process(conn)

    def _process(self, conn: Connection) -> None:
        """Parse and handle every whole request in the buffer, in order; stop
        at a parked /next (its answer must go first: HTTP/1.1 keeps order)."""
        try:
            while conn.fd in self._conns and not conn.parked and not conn.close_after:
                if conn.head is None:
                    if not conn.inbuf:
                        return
                    head, used = parse_head(conn.inbuf, conn.scan)
                    if head is None:
                        conn.scan = used
                        return
                    del conn.inbuf[:used]
                    conn.scan = 0
                    conn.head = head
                    if not self._on_head(conn, head):
                        continue
                if not conn.body.feed(conn.inbuf):
                    return
                head, body, route = conn.head, conn.body, conn.route
                conn.head = conn.body = conn.route = None
                self._on_request(conn, head, bytes(body.data), route)
        except HttpError as exc:
            route, conn.route, conn.head, conn.body = conn.route, None, None, None
            if route is not None and route[0] == "answer" and self.state == RESPONDING:
                self.state = SENT
                if exc.status == 413:
                    self._finish(Outcome("too_large"))
                else:
                    self._finish(Outcome("error", error_body("Runtime.TruncatedResponse", str(exc))))
            elif route is not None and route[0] == "init_error":
                self._finish(Outcome("init_error", error_body("Runtime.Unknown", f"init error not received: {exc}")))
            self._send(conn, TOO_LARGE if exc.status == 413 else
                       error(exc.status, "InvalidRequest", str(exc), close=True), close=True)

    def _send(self, conn: Connection, data: bytes, close: bool = False) -> None:
        conn.out += data
        conn.close_after = conn.close_after or close
        self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        try:
            while conn.out:
                sent = conn.sock.send(conn.out)
                del conn.out[:sent]
        except (BlockingIOError, InterruptedError):
            self._poll.modify(conn.fd, select.POLLIN | select.POLLOUT)
            return
        except OSError:
            self._drop(conn)
            return
        conn.delivering = False
        if conn.close_after:
            self._drop(conn)
        else:
            self._poll.modify(conn.fd, select.POLLIN)

    # -- the API ------------------------------------------------------------------------
    def _on_head(self, conn: Connection, head: Head) -> bool:
        """Route a request by its head.  True: read its body (conn.body set);
        False: it was answered (and its body refused) already."""
        match = _ROUTE.fullmatch(head.path)
        if match is None:
            self._refuse(conn, head, response(404, b"404 page not found\n", content_type=b"text/plain"))
            return False
        nxt, request_id, kind, init_error = match.groups()
        method = "GET" if nxt else "POST"
        if head.method != method:
            self._refuse(conn, head, response(405, b"", [(b"Allow", method)], content_type=None))
            return False
        limit = MAX_SMALL_BODY
        if nxt:
            route = ("next",)
        elif init_error:
            if self.state != STARTED:
                self._refuse(conn, head, transition(self.state, INIT_FAILED))
                return False
            self.state = INIT_FAILED
            route, limit = ("init_error",), MAX_PAYLOAD
        else:
            target = "InvocationResponse" if kind == "response" else "InvocationErrorResponse"
            if self.state != RUNNING:
                self._refuse(conn, head, transition(self.state, target))
                return False
            if request_id != self._invocation.request_id:
                self._refuse(conn, head, INVALID_ID)
                return False
            mode = head.header("lambda-runtime-function-response-mode")
            if kind == "response" and mode and mode != "streaming":
                self.state = SENT
                self._finish(Outcome("error", error_body("Runtime.InvalidResponseModeHeader",
                                                          f"Invalid function response mode {mode!r}")))
                self._refuse(conn, head, error(400, "InvalidFunctionResponseMode", "Invalid function response mode"))
                return False
            self.state = RESPONDING
            route, limit = ("answer", kind), MAX_PAYLOAD
        conn.route = route
        conn.body = Body(head, limit)
        if conn.body.too_large():
            raise HttpError(413, "body over the limit")
        if head.expect_continue and (head.content_length or head.chunked):
            self._send(conn, CONTINUE)
        return True

    def _refuse(self, conn: Connection, head: Head, data: bytes) -> None:
        """Answer without reading the body: a small body is skipped, a larger
        one ends the connection (not read, so the stream cannot be resynced)."""
        conn.head = None
        skip = None if head.chunked else head.content_length
        if skip == 0 or (skip is not None and skip <= len(conn.inbuf) and not head.expect_continue):
            del conn.inbuf[:skip]
            self._send(conn, data, close=not head.keep_alive)
        else:
            self._send(conn, with_close(data), close=True)

    def _on_request(self, conn: Connection, head: Head, body: bytes, route) -> None:
        close = not head.keep_alive
        if route[0] == "next":
            if self.state == RUNNING or self.state == RESPONDING or self.state == INIT_FAILED:
                self._send(conn, transition(self.state, READY), close)
                return
            was_starting = self.state == STARTED
            self.state = READY
            conn.parked = True
            self._parked.append(conn)
            if was_starting:
                self._finish(Outcome("ready"))   # Lambda's init ends with the first /next
            self._deliver()
            return
        if route[0] == "init_error":
            error_type = valid_error_type(head.header("lambda-runtime-function-error-type"))
            self._send(conn, ACCEPTED, close)
            self._finish(Outcome("init_error", body or error_body(error_type, "")))
            return
        error_type = valid_error_type(head.header("lambda-runtime-function-error-type"))
        self.state = SENT
        self._send(conn, ACCEPTED, close)
        if route[1] == "response":
            self._finish(Outcome("result", body))
        else:
            self._finish(Outcome("error", body or error_body(error_type, "")))

    def _deliver(self) -> None:
        """Answer the oldest waiting /next with the pending invocation."""
        if self._invocation is None or self._delivered or self.state != READY:
            return
        while self._parked:
            conn = self._parked.popleft()
            conn.parked = False
            if not self._still_open(conn):
                self._drop(conn)
                continue
            self._unparked = True
            self._delivered = True
            self.state = RUNNING
            conn.delivering = True
            self._send(conn, self._invocation.next_response())
            return

    def _still_open(self, conn: Connection) -> bool:
        """Whether the runtime may still read an answer on `conn`: a /next
        parked for a while may belong to a process that has gone since."""
        if conn.fd not in self._conns:
            return False
        try:
            return conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def _finish(self, outcome: Outcome) -> None:
        if self._result is None:
            self._result = outcome
