"""The synchronous invoke path: pick or start an environment, run one request,
turn the outcome into Lambda's result and error shapes, write the logs."""
from __future__ import annotations

import time
from dataclasses import dataclass

from . import _warm, logs
from .errors import InvalidParameterValueException, InvalidRequestContentException, RequestTooLargeException, \
    ServiceException, TooManyRequestsException
from .models import log_time
from .environment import NotIdle
from .runtime import fastjson
from .runtime.wire import MAX_PAYLOAD, MAX_RESPONSE
from .spec import PYTHON_VERSION, log_stream_name

MAX_TRACE_ID = 2048   # an X-Ray trace header is well under this
MAX_CLIENT_CONTEXT = 3583  # Lambda's limit (bytes of JSON)


@dataclass(slots=True)
class InvokeResult:
    """What Invoke returns.  `function_error` is "Unhandled" when `payload` is
    an error object ({errorMessage, errorType, ...}); `log_result` is the
    base64 log tail when log_type="Tail" was asked for."""

    status_code: int
    payload: bytes
    function_error: str | None
    log_result: str | None
    executed_version: str
    request_id: str
    duration_ms: float
    init_duration_ms: float | None
    environment_id: str

    def json(self):
        import json

        return json.loads(self.payload)


class Invoker:
    def __init__(self, runtime, sink, metrics):
        self._runtime = runtime
        self.sink = sink
        self.metrics = metrics

    def invoke(self, name, payload, qualifier, log_type, client_context, trace_id, request_id=None) -> InvokeResult:
        if payload.__class__ is bytes and 0 < len(payload) <= MAX_PAYLOAD and log_type is None \
                and client_context is None and trace_id is None:
            context = trace = b""   # the usual request: nothing more to check
        else:
            payload, context, trace = _checked(payload, log_type, client_context, trace_id)
        fc, pool, arn = self._runtime._route(name, qualifier)
        metrics = self.metrics
        function, version = fc.function_name, fc.version
        request_id = request_id or new_request_id()
        while True:
            env = pool.acquire()
            init = None
            if env is None:
                try:
                    env, init = pool.start()
                except TooManyRequestsException:
                    metrics.throttle(function, version)   # a throttle is not an Invocation
                    raise
                if init.kind != "ready":
                    metrics.invocation(function, version, duration_ms=0.0, error=True)
                    return self._init_failed(fc, env, init, request_id, log_type)
            provisioned = env.provisioned
            metrics.concurrency(function, version, 1, provisioned=provisioned)
            try:
                outcome = env.invoke(request_id, payload, int(time.time() * 1000) + fc.timeout_s * 1000, arn,
                                     trace, context, init is None)
                break
            except NotIdle:   # not sent: this environment is done for, another one runs it
                metrics.concurrency(function, version, -1, provisioned=provisioned)
                pool.discard(env)
            except BaseException:
                metrics.concurrency(function, version, -1, provisioned=provisioned)
                pool.release(env)
                raise
        pool.release(env)
        kind = outcome.kind
        metrics.invocation(function, version, duration_ms=outcome.duration_ms,
                           error=kind not in ("result", "bad_request"), provisioned=provisioned,
                           spillover=not provisioned and pool.provisioned_target > 0, ended=True)
        if kind == "result":
            body, function_error, status, error_type = outcome.body, None, None, None
        elif kind == "bad_request":
            raise InvalidRequestContentException(outcome.body.decode("utf-8", "replace"))
        else:
            if self._runtime._manager.closed and kind != "error":
                raise ServiceException("The runtime closed during the invocation")
            body, function_error, status, error_type = _response(outcome, request_id, fc.timeout_s)
        log_text = None
        want_logs = logs.sink_enabled(self.sink)
        if want_logs or log_type == "Tail":
            log_text = self._log_text(fc, env, request_id, outcome, init, status, error_type)
            if want_logs:
                self._emit(fc, env, request_id, log_text)
        return InvokeResult(200, body, function_error, logs.tail(log_text) if log_type == "Tail" else None,
                            version, request_id, outcome.duration_ms,
                            env.init_duration_ms if init is not None else None, env.id)

    # -- init failures ------------------------------------------------------------
    def _init_failed(self, fc, env, init, request_id, log_type) -> InvokeResult:
        if init.kind == "init_error":
            body, error_type = init.body, _error_type(init.body)
        else:
            body, _, _, error_type = _response(init, request_id, env.spec.init_timeout_s)
        text = None
        want_logs = logs.sink_enabled(self.sink)
        if want_logs or log_type == "Tail":
            text = (self._init_start(fc) + init.output.decode("utf-8", "replace")
                    + f"INIT_REPORT Init Duration: {env.init_duration_ms:.2f} ms\tPhase: init\tStatus: error"
                    f"\tError Type: {error_type}\n"
                    + logs.start_line(request_id, fc.version) + logs.end_line(request_id)
                    + logs.report_line(request_id, 0.0, fc.memory_mb, None, env.init_duration_ms,
                                       "error", error_type))
            if want_logs:
                self._emit(fc, env, request_id, text)
        return InvokeResult(200, body, "Unhandled", logs.tail(text) if log_type == "Tail" else None,
                            fc.version, request_id, 0.0, env.init_duration_ms, env.id)

    # -- logs -----------------------------------------------------------------------
    def _init_start(self, fc) -> str:
        if fc.runtime.startswith("provided"):   # "provided.al2023" -> "provided:al2023.sandbox1", as Lambda names it
            version = fc.runtime.replace(".", ":", 1) + ".sandbox1" if "." in fc.runtime else "provided:sandbox1"
        else:
            version = logs.RUNTIME_VERSION.format(version=PYTHON_VERSION)
        return logs.init_start_line(version, self._runtime.region, "sandbox")

    def _log_text(self, fc, env, request_id, outcome, init, status, error_type) -> str:
        parts = []
        if init is not None:
            parts.append(self._init_start(fc))
            parts.append(env.init_output.decode("utf-8", "replace"))
        parts.append(logs.start_line(request_id, fc.version))
        parts.append(outcome.output.decode("utf-8", "replace"))
        if outcome.output and not outcome.output.endswith(b"\n"):
            parts.append("\n")
        if outcome.kind == "timeout":
            parts.append(f"{log_time()} {request_id} Task timed out after {fc.timeout_s:.2f} seconds\n")
        elif status == "error" and outcome.kind != "error":
            parts.append(f"RequestId: {request_id} Error: {_message(outcome, fc.timeout_s)}\n{error_type}\n")
        parts.append(logs.end_line(request_id))
        peak = logs.mb_used(env.memory_peak_bytes()) if env.alive else None
        parts.append(logs.report_line(request_id, outcome.duration_ms, fc.memory_mb, peak,
                                      env.init_duration_ms if init is not None else None,
                                      status if outcome.kind != "error" else None,
                                      error_type if outcome.kind != "error" else None))
        return "".join(parts)

    def _emit(self, fc, env, request_id, text) -> None:
        record = logs.InvocationLog(fc.function_name, fc.version, request_id, f"/aws/lambda/{fc.function_name}",
                                    log_stream_name(fc.version, env.id), text)
        try:
            self.sink(record)
        except Exception:  # a broken sink must not fail the invocation
            import logging

            logging.getLogger("sandbox.functions").exception("log sink failed")


def _checked(payload, log_type, client_context, trace_id) -> tuple[bytes, bytes, bytes]:
    """(payload, client context, trace id) of a request, checked; a bad one raises."""
    if log_type not in (None, "None", "Tail"):
        raise InvalidParameterValueException(f"LogType must be None or Tail, got {log_type!r}")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise InvalidRequestContentException("Payload must be bytes")
    if payload.__class__ is not bytes:
        payload = bytes(payload)
    if not payload:
        payload = b"{}"  # Lambda hands an empty request to the handler as {}
    if len(payload) > MAX_PAYLOAD:
        raise RequestTooLargeException(f"Request must be smaller than {MAX_PAYLOAD} bytes for the "
                                       "InvokeFunction operation")
    context = _client_context(client_context) if client_context is not None else b""
    if trace_id is not None and (not isinstance(trace_id, str) or len(trace_id) > MAX_TRACE_ID
                                 or not trace_id.isascii() or not trace_id.isprintable()):
        raise InvalidParameterValueException(f"trace_id must be printable ASCII of at most {MAX_TRACE_ID} "
                                             "characters")
    return payload, context, trace_id.encode() if trace_id else b""


def _response(outcome, request_id, timeout_s) -> tuple[bytes, str | None, str | None, str | None]:
    """(payload, function error, REPORT status, error type) for an outcome."""
    if outcome.kind == "result":
        return outcome.body, None, None, None
    if outcome.kind == "error":
        return outcome.body, "Unhandled", None, _error_type(outcome.body)
    error_type = _PLATFORM_ERRORS[outcome.kind]
    status = "timeout" if outcome.kind == "timeout" else "error"
    body = {"errorType": error_type, "errorMessage": f"RequestId: {request_id} Error: {_message(outcome, timeout_s)}"}
    return fastjson.dumps(body, None).encode(), "Unhandled", status, error_type


_PLATFORM_ERRORS = {
    "timeout": "Sandbox.Timedout",
    "exit": "Runtime.ExitError",
    "oom": "Runtime.OutOfMemory",
    "invalid_response": "Runtime.InvalidResponse",
    "too_large": "Function.ResponseSizeTooLarge",
}


def _message(outcome, timeout_s) -> str:
    if outcome.kind == "timeout":
        return f"Task timed out after {timeout_s:.2f} seconds"
    if outcome.kind in ("exit", "oom"):
        return f"Runtime exited with error: {outcome.exit_status}"
    if outcome.kind == "too_large":
        return f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE} bytes)."
    return "Runtime sent a malformed response; the environment was ended"


def _error_type(body: bytes) -> str:
    try:
        # The body comes from inside the sandbox: in the supervisor it is parsed
        # by CPython's own json only, never by the runtime's C fast path.
        return str(fastjson.loads(body.decode("utf-8")).get("errorType", "Unknown"))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return "Unknown"


def _client_context(value) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (dict, list)):
        return fastjson.dumps(value, None).encode()
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, (bytes, bytearray)) or len(value) > MAX_CLIENT_CONTEXT:
        raise InvalidRequestContentException(f"Client context must be JSON of at most {MAX_CLIENT_CONTEXT} bytes")
    return bytes(value)


# A random (version 4) UUID from a pool of getrandom() bytes, in C: request
# ids must be unique, not secret.
new_request_id = _warm.request_id
