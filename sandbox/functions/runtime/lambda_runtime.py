"""The Python runtime inside an execution environment (started by /var/runtime/bootstrap.py).

Lifecycle, as in Lambda: import the handler once (init), report READY or
INIT_ERROR, then serve invocations one at a time until the supervisor closes
the request pipe or kills the sandbox.

Descriptors (set up by the supervisor): 0 = /dev/null; 1 and 2 = the log pipe
(the handler's own output); 3 = requests (read); 4 = responses (write).
The channel is moved to high descriptors at start so that a handler that
writes to "fd 3" by accident does not corrupt it; a hostile one can still, and
the supervisor then ends the environment.

Only the standard library, and as little of it as possible: every import here
is paid on each cold start.
"""
import os
import sys
import time

import fastjson
import wire

try:   # the serve loop in C (csrc/runtime_serve.c), built next to this file
    import _serve
except ImportError:   # not built: main() runs the same loop in Python
    _serve = None

REQUEST_FD, RESPONSE_FD = 3, 4
TASK_ROOT = "/var/task"


class InitFault(Exception):
    def __init__(self, error_type, message, stack=()):
        super().__init__(message)
        self.error_type, self.message, self.stack = error_type, message, list(stack)


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, data=None):
        data = data or {}
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self, data):
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")


class ClientContext:
    """context.client_context, from the caller's client context JSON
    ({"client": {...}, "custom": {...}, "env": {...}}) as awslambdaric builds it."""
    __slots__ = ("client", "custom", "env")

    def __init__(self, data):
        data = data if isinstance(data, dict) else {}
        client = data.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = data.get("custom")
        self.env = data.get("env")


class LambdaContext:
    """The `context` argument, with awslambdaric's attribute names and types."""

    def __init__(self, request_id, deadline_ms, invoked_arn, client_context):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_arn
        self._deadline_ms = deadline_ms
        self.client_context = client_context
        self.identity = CognitoIdentity()
        self.function_name = _ENV_FUNCTION_NAME
        self.function_version = _ENV_FUNCTION_VERSION
        self.memory_limit_in_mb = _ENV_MEMORY
        self.log_group_name = _ENV_LOG_GROUP
        self.log_stream_name = _ENV_LOG_STREAM

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, message) -> None:
        sys.stdout.write(str(message))


# The function's identity, read from its environment by _read_environment()
# when main() starts, not at import: a zygote imports this module once, before
# any function's environment exists, and forks every environment from there.
_ENV_FUNCTION_NAME = _ENV_FUNCTION_VERSION = _ENV_MEMORY = _ENV_LOG_GROUP = _ENV_LOG_STREAM = None


def _read_environment() -> None:
    global _ENV_FUNCTION_NAME, _ENV_FUNCTION_VERSION, _ENV_MEMORY, _ENV_LOG_GROUP, _ENV_LOG_STREAM
    env = os.environ
    _ENV_FUNCTION_NAME = env.get("AWS_LAMBDA_FUNCTION_NAME")
    _ENV_FUNCTION_VERSION = env.get("AWS_LAMBDA_FUNCTION_VERSION")
    _ENV_MEMORY = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    _ENV_LOG_GROUP = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
    _ENV_LOG_STREAM = env.get("AWS_LAMBDA_LOG_STREAM_NAME")


# -- the channel ----------------------------------------------------------------
class Channel:
    def __init__(self, request_fd, response_fd):
        self.request_fd, self.response_fd = request_fd, response_fd
        self._new_buffer(RECEIVE_BUFFER)
        self._start = self._end = 0   # the unread bytes: _buffer[_start:_end]

    def send(self, kind, body=b"", request_id=b"") -> None:
        """One frame; answers to an invocation start with its request id."""
        header = wire.HEADER.pack(wire.MAGIC, kind, len(request_id) + len(body))
        sent = os.writev(self.response_fd, (header, request_id, body))
        if sent < len(header) + len(request_id) + len(body):  # a large answer: the rest in a loop
            data = memoryview(header + request_id + body)[sent:]
            while data:
                data = data[os.write(self.response_fd, data):]

    def receive(self):
        """(kind, body) of the next request, or None when the supervisor hung up.
        The body is a view of the receive buffer, valid until the next call:
        requests are read into one reused buffer, so a request costs no
        allocation and no copy before its payload is decoded."""
        size = wire.HEADER.size
        while True:
            start, end = self._start, self._end
            if end - start >= size:
                magic, kind, length = wire.HEADER.unpack_from(self._buffer, start)
                if magic != wire.MAGIC or length > wire.MAX_FRAME:
                    raise SystemExit("bootstrap: corrupt request frame")
                frame_end = start + size + length
                if frame_end <= end:
                    self._start = frame_end
                    return kind, self._view[start + size:frame_end]
                if frame_end > len(self._buffer):
                    self._move_unread(size + length)
            elif start == end:   # all read: start over at the front (in a smaller buffer after a huge request)
                self._start = self._end = 0
                if len(self._buffer) > KEEP_BUFFER_UP_TO:
                    self._new_buffer(RECEIVE_BUFFER)
            elif len(self._buffer) - start < size:
                self._move_unread(size)
            got = os.readv(self.request_fd, (self._view[self._end:],))
            if not got:
                return None
            self._end += got

    def _new_buffer(self, size) -> None:
        # Always a new one, never resized: the previous request's body may still be a view of the old.
        self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)

    def _move_unread(self, need) -> None:
        """The unread bytes to the front of a new buffer with room for `need`
        bytes (a power of two: requests of one size then settle in one buffer)."""
        unread = self._view[self._start:self._end]
        self._new_buffer(max(RECEIVE_BUFFER, 1 << (need - 1).bit_length()))
        self._view[:len(unread)] = unread
        self._start, self._end = 0, len(unread)


# The receive buffer starts small (an idle environment holds it) and grows to
# fit the requests that come; it is kept up to the pipe's size, so a function
# taking 64 KB payloads reads each in one call into the same 128 KiB.
RECEIVE_BUFFER = 16 * 1024
KEEP_BUFFER_UP_TO = 1024 * 1024


# -- errors ---------------------------------------------------------------------
def _stack(tb, skip_bootstrap=True):
    import traceback

    frames = traceback.extract_tb(tb)
    if skip_bootstrap:
        frames = [f for f in frames if not f.filename.startswith("/var/runtime/")]
    return traceback.format_list(frames)


def _error_body(error_type, message, stack, request_id="") -> bytes:
    body = {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack}
    return fastjson.dumps_bytes(body, None)


def _log_error(error_type, message, stack) -> None:
    # Lambda joins the lines of one error record with \r so they stay one log event.
    lines = [f"[ERROR] {error_type}: {message}"]
    if stack:
        lines.append("Traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in stack)
    sys.stdout.write("\r".join(lines) + "\n")


# -- init -----------------------------------------------------------------------
def _set_sys_path() -> None:
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    paths = [TASK_ROOT, f"/opt/python/lib/{version}/site-packages", "/opt/python"]
    extra = os.environ.get("PYTHONPATH")
    if extra:
        paths.extend(p for p in extra.split(":") if p)
    sys.path[:0] = paths
    # The runtime's own libraries, like the packages Lambda ships with its runtime.
    sys.path.append(f"{sys.prefix}/lib/{version}/site-packages")


def load_handler(spec: str):
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as exc:
        raise InitFault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {exc}") from None
    module_name = module_name.replace("/", ".")
    if module_name in sys.builtin_module_names:
        raise InitFault("Runtime.BuiltInModuleConflict",
                        f"Cannot use built-in module {module_name} as a handler module")
    try:
        __import__(module_name)
        module = sys.modules[module_name]
    except ImportError as exc:
        raise InitFault("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from None
    except SyntaxError as exc:
        where = f"  File \"{exc.filename}\" Line {exc.lineno}\n    {(exc.text or '').strip()}\n"
        raise InitFault("Runtime.UserCodeSyntaxError",
                        f"Syntax error in module '{module_name}': {exc}", [where]) from None
    except Exception as exc:  # the module raised while being imported
        raise InitFault(type(exc).__name__, str(exc), _stack(exc.__traceback__)) from None
    handler = getattr(module, function_name, None)
    if handler is None:
        raise InitFault("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


class _LoggingImportHook:
    """Installs Lambda's log handler the moment `logging` is first imported,
    before user code can call basicConfig() or logging.info() (which would
    otherwise add Python's default handler first).  Importing logging eagerly
    would cost every cold start a few milliseconds."""

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        spec = _PATH_FINDER.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                _install_logging_handler()
            spec.loader.exec_module = exec_module
        return spec

    def invalidate_caches(self):
        pass


_PATH_FINDER = sys.modules["_frozen_importlib_external"].PathFinder


def _install_logging_handler() -> None:
    """If the handler uses `logging`, give the root logger Lambda's handler and
    format (level, UTC time, request id, message), as awslambdaric does."""
    import logging

    class _RequestIdFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _current_request_id
            return True

    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.terminator = ""   # the format ends the line, as awslambdaric's does
    formatter = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
                                  "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root.addHandler(handler)


# -- invocations ----------------------------------------------------------------
_current_request_id = ""
_trace = [""]


def _unserializable(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def invoke(handler, body):
    """Run one invocation; returns (response kind, response body).  The C loop
    (_serve) runs the common case itself, with the helpers below, and hands
    every other request to this function whole."""
    global _current_request_id
    request_id, deadline_ms, arn, trace, client_context, payload = wire.parse_invoke(body)
    _current_request_id = request_id
    if trace != _trace[0]:  # os.environ writes cost a few us: only on change
        _trace_changed(trace)
    try:
        event = fastjson.loads_utf8(payload)
        context_data = ClientContext(fastjson.loads_utf8(client_context)) if client_context else None
    except (ValueError, UnicodeDecodeError) as exc:
        return wire.BAD_REQUEST, f"Could not parse request body into json: {exc}".encode()
    except RecursionError:   # valid JSON nested deeper than Python can represent
        message = "Unable to unmarshal input: the JSON is nested too deeply"
        _log_error("Runtime.UnmarshalError", message, [])
        return wire.ERROR, _error_body("Runtime.UnmarshalError", message, [], request_id)
    context = LambdaContext(request_id, deadline_ms, arn, context_data)
    try:
        result = handler(event, context)
    except Exception as exc:
        return _handler_failed(exc, request_id)
    try:
        data = fastjson.dumps_bytes(result, _unserializable)
    except (TypeError, ValueError, RecursionError) as exc:
        return _marshal_failed(exc, request_id)
    if len(data) > wire.MAX_RESPONSE:
        return _response_too_large(len(data), request_id)
    return wire.RESULT, data


# What invoke() and the C loop share: each answers one way an invocation ends.
def _trace_changed(trace) -> None:
    _trace[0] = trace
    if trace:
        os.environ["_X_AMZN_TRACE_ID"] = trace
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)


def _handler_failed(exc, request_id):
    stack = _stack(exc.__traceback__)
    error_type = type(exc).__name__
    _log_error(error_type, str(exc), stack)
    return wire.ERROR, _error_body(error_type, str(exc), stack, request_id)


def _marshal_failed(exc, request_id):
    message = f"Unable to marshal response: {exc}"
    _log_error("Runtime.MarshalError", message, [])
    return wire.ERROR, _error_body("Runtime.MarshalError", message, [], request_id)


def _response_too_large(size, request_id):
    message = (f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
               f"({wire.MAX_RESPONSE} bytes).")
    return wire.ERROR, _error_body("Function.ResponseSizeTooLarge", message, [], request_id)


def _new_result_encoder():
    """For the C loop: the encoder fastjson.dumps_bytes(result, _unserializable)
    falls back to.  Like dumps, the loop drops one that raised."""
    return fastjson.make_encoder(_unserializable)


# The heap between invocations (_heap, csrc/runtime_heap.c): up to 16 MiB of
# freed heap is kept, and blocks under 8 MiB (every payload-sized one: the
# largest frame is ~6 MiB) come from the heap.  With glibc's defaults a
# 200 KB request's blocks were given back and faulted in again on every
# invocation (echo round trip 340 -> 190 us; 1 MB: 3.0 -> 2.0 ms).
KEEP_FREED_HEAP = 16 * 1024 * 1024
MAP_BLOCKS_FROM = 8 * 1024 * 1024


def _keep_freed_heap() -> None:
    """After init, so what init freed is still given back.  A function that
    sets glibc's malloc tunables itself keeps its own choice."""
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return
    try:
        import _heap
    except ImportError:   # not built: glibc's defaults, only slower for large payloads
        return
    _heap.keep_freed(KEEP_FREED_HEAP, MAP_BLOCKS_FROM)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the handler closed or replaced it: its problem, not ours
            pass


def main(argv) -> None:
    # argv: [log stream name, initialization type] -- per environment, so they
    # come on the command line and the sandbox configuration stays shareable.
    os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = argv[0]
    os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = argv[1]
    _read_environment()
    # The channel moves out of the way of the low descriptors a handler might reuse.
    channel = Channel(os.dup(REQUEST_FD), os.dup(RESPONSE_FD))
    os.close(REQUEST_FD)
    os.close(RESPONSE_FD)
    _set_sys_path()
    if "logging" in sys.modules:   # not with -S; kept for embedders that start us otherwise
        _install_logging_handler()
    else:
        sys.meta_path.insert(0, _LoggingImportHook())
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except InitFault as fault:
        _log_error(fault.error_type, fault.message, fault.stack)
        channel.send(wire.INIT_ERROR, _error_body(fault.error_type, fault.message, fault.stack))
        sys.stdout.flush()
        os._exit(1)
    _keep_freed_heap()
    channel.send(wire.READY)
    if _serve is not None:
        # This loop in C, with a fraction of its cost per invocation; it finds
        # its helpers in this module's globals and sets _current_request_id there.
        _serve.serve(channel.request_fd, channel.response_fd, handler, globals())
        return
    # The fallback where _serve is not built, and the reference it is tested
    # against (tests/unit/test_runtime_serve.py).
    while True:
        request = channel.receive()
        if request is None:
            return  # the supervisor closed the channel: shut down
        kind, body = request
        if kind != wire.INVOKE:
            raise SystemExit(f"bootstrap: unexpected request kind {kind}")
        response_kind, response = invoke(handler, body)
        # Output the handler wrote belongs to this invocation: it must be in the
        # log pipe before the response is (the supervisor reads it after).
        _flush_output()
        channel.send(response_kind, response, bytes(body[:wire.REQUEST_ID_SIZE]))
