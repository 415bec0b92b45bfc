"""What the Runtime API answers: the event for /next, and Lambda's JSON
shapes for acceptances and refusals (as the Runtime Interface Emulator
renders them: {"errorMessage", "errorType"})."""
from __future__ import annotations

import json
import re

from ..runtime.wire import MAX_RESPONSE
from .http1 import response

MAX_PAYLOAD = MAX_RESPONSE      # Lambda's limit on a response or error body (wire.MAX_RESPONSE)
_ERROR_TYPE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")

ACCEPTED = response(202, b'{"status":"OK"}')


def valid_error_type(value: str) -> str:
    """Lambda accepts any string but reports only Category.Reason forms; others
    become Function.Unknown or Runtime.Unknown (as the RIE's fatalerror does)."""
    if _ERROR_TYPE.fullmatch(value):
        return value
    return "Function.Unknown" if value.startswith("Function.") else "Runtime.Unknown"


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}, separators=(",", ":")).encode()


def error(status: int, error_type: str, message: str, close: bool = False) -> bytes:
    return response(status, error_body(error_type, message), close=close)


def transition(current: str, target: str, close: bool = False) -> bytes:
    return error(403, "InvalidStateTransition", f"State transition from {current} to {target} failed for "
                 "runtime. Error: State transition is not allowed", close)


TOO_LARGE = error(413, "RequestEntityTooLarge", f"Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes).",
                  close=True)
INVALID_ID = error(400, "InvalidRequestID", "Invalid request ID")


class Invocation:
    """One invocation as the runtime gets it from /next."""

    __slots__ = ("request_id", "deadline_ms", "arn", "trace", "client_context", "cognito_identity", "payload")

    def __init__(self, request_id, deadline_ms, arn, trace=b"", client_context=b"", cognito_identity=b"",
                 payload=b"{}"):
        self.request_id, self.deadline_ms, self.arn = request_id, deadline_ms, arn
        self.trace, self.client_context, self.cognito_identity = trace, client_context, cognito_identity
        self.payload = payload

    def next_response(self) -> bytes:
        """The 200 to /next: the event, and only the headers that have a value."""
        headers = [(b"Lambda-Runtime-Aws-Request-Id", self.request_id),
                   (b"Lambda-Runtime-Deadline-Ms", str(self.deadline_ms)),
                   (b"Lambda-Runtime-Invoked-Function-Arn", self.arn)]
        for name, value in ((b"Lambda-Runtime-Trace-Id", self.trace),
                            (b"Lambda-Runtime-Client-Context", self.client_context),
                            (b"Lambda-Runtime-Cognito-Identity", self.cognito_identity)):
            if value:
                headers.append((name, value))
        return response(200, self.payload, headers)


def with_close(data: bytes) -> bytes:
    """The same response, saying the connection ends after it."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if b"\r\nConnection: close" in head:
        return data
    return head + b"\r\nConnection: close" + sep + body
