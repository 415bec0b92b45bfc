"""An execution environment whose runtime talks the Lambda Runtime API.

Same interface and state machine as environment.Environment (start, invoke,
usable, destroy, kill; STARTING -> READY <-> BUSY -> DEAD), and the same
Outcomes, so the Invoker, the pools, the logs and the metrics treat both
alike.  What differs is the channel: instead of framed pipes, a listening
socket on 127.0.0.1:9001 inside the sandbox's network namespace, served by
RuntimeAPIServer on the calling thread.

Lambda's lifecycle: init ends when the runtime first asks for the next
invocation; /runtime/init/error, an exit, or the init deadline fail it.  An
invocation ends with its /response or /error (the runtime stays), or with a
timeout or the runtime's exit (the environment ends).
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import time

from ...launcher import DEVNULL, spawn
from ..environment import DEAD, PIPE_SIZE, READY, BUSY, Environment, IllegalTransition
from ..outcome import Outcome
from ..spec import EnvironmentSpec, log_stream_name
from .entry import BOOTSTRAP_PATHS
from .listener import listen_in_netns
from .messages import Invocation, error_body
from .server import RuntimeAPIServer

# Outcomes after which the runtime is still in a known state and keeps serving.
_ANSWERED = frozenset(("result", "error", "too_large"))
_FAILED_INIT = frozenset(("init_error", "timeout", "exit", "oom"))


class RuntimeInterfaceEnvironment(Environment):
    _polls_on_send = False   # its invoke() is its own: usable() polls the channel
    def __init__(self, spec: EnvironmentSpec, environment_id: str, supervisor=None):
        super().__init__(spec, environment_id, supervisor)
        self._listener = None
        self._server: RuntimeAPIServer | None = None

    def argv(self) -> list[str]:
        """The bootstrap, with the variables that differ per environment (the
        Config, and so the environment, is shared by every environment of the
        version): env(1) from the sandbox's /usr sets them and execs it."""
        spec = self.spec
        return ["/usr/bin/env", f"AWS_LAMBDA_LOG_STREAM_NAME={log_stream_name(spec.version, self.id)}",
                f"AWS_LAMBDA_INITIALIZATION_TYPE={spec.initialization_type}", spec.bootstrap]

    # -- start ------------------------------------------------------------------
    def start(self) -> Outcome:
        started = time.monotonic()
        if not self.spec.bootstrap:
            self.state = DEAD
            self.init_duration_ms = 0.0
            paths = " ".join(BOOTSTRAP_PATHS)
            return Outcome("init_error", error_body("Runtime.InvalidEntrypoint",
                                                     f"Couldn't find valid bootstrap(s): [{paths}]"))
        self._log_fd, log_w = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                fcntl.fcntl(self._log_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass   # capped by /proc/sys/fs/pipe-max-size: the default size still works
            os.set_blocking(self._log_fd, False)
            self._box = spawn(self.argv(), self.spec.config, stdin=DEVNULL, stdout=log_w, stderr=log_w,
                              supervisor=self._supervisor, before_launch=self._listen)
        except BaseException:
            self._close_fds()
            self.state = DEAD
            raise
        finally:
            os.close(log_w)
        cgroup = self._box._cgroup
        peak_path = cgroup.memory_peak_path if cgroup is not None else None
        if peak_path:
            self._peak_fd = os.open(peak_path, os.O_RDONLY | os.O_CLOEXEC)
        self._poller = select.poll()   # usable()'s check (Environment.usable)
        for fd in (self._log_fd, self._box._pidfd):
            self._poller.register(fd, select.POLLIN)
        server = self._server = RuntimeAPIServer(self._listener)
        self._listener = None
        server.watch(self._log_fd, self._on_log)
        server.watch(self._box._pidfd, self._on_exit)
        output = self._log_output()
        outcome = self._ended(server.serve(started + self.spec.init_timeout_s))
        self.init_duration_ms = (time.monotonic() - started) * 1000
        if outcome.kind == "ready":
            self._move(READY)
        else:
            if outcome.kind not in _FAILED_INIT:   # an answer before any invocation cannot happen
                outcome.kind = "invalid_response"
            self._end(output)
        outcome.output, outcome.output_dropped = output.text(), output.dropped
        self.init_output = outcome.output
        self._output = None
        return outcome

    def _listen(self, pid: int) -> None:
        """spawn()'s before_launch: the sandbox's namespaces exist, its command
        has not started, so the API is there before the runtime looks for it."""
        self._listener = listen_in_netns(pid)

    # -- invoke -----------------------------------------------------------------
    def invoke(self, request_id: str, payload: bytes, deadline_ms: int, arn: bytes,
               trace: bytes = b"", client_context: bytes = b"", cognito_identity: bytes = b"") -> Outcome:
        with self._state_lock:
            if self.state != READY:
                raise IllegalTransition(f"environment {self.id}: {self.state} -> {BUSY}")
            self.state = BUSY
        self._output = None
        started = time.monotonic()
        problem = _not_json(payload)
        if problem is not None:
            # Lambda refuses it before any runtime sees it; the environment stays.
            outcome = Outcome("bad_request", f"Could not parse request body into json: {problem}".encode())
        else:
            self._server.begin(Invocation(request_id, deadline_ms, arn, trace, client_context, cognito_identity,
                                          payload))
            outcome = self._ended(self._server.serve(started + self.spec.timeout_s))
        now = time.monotonic()
        outcome.duration_ms = (now - started) * 1000
        answered = outcome.kind in _ANSWERED or outcome.kind == "bad_request"
        if answered and self._log_fd >= 0:
            self._drain_log()   # what the runtime wrote before it answered is in the pipe now
        return self._close_invocation(outcome, answered, now)

    # -- the server's callbacks ----------------------------------------------------
    def _on_log(self):
        fd = self._log_fd
        self._drain_log()
        if self._log_fd < 0:   # end of file: every writer is gone
            self._server.unwatch(fd)
        return None

    def _on_exit(self):
        # The runtime's last requests count (an answer sent just before exiting).
        self._server.unwatch(self._box._pidfd)
        self._server.drain()
        return Outcome("exit")

    def _ended(self, outcome: Outcome) -> Outcome:
        """Say how the runtime ended (exit status, OOM kill) once it has."""
        return self._died() if outcome.kind == "exit" else outcome

    # -- endings ------------------------------------------------------------------
    def _close_fds(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        super()._close_fds()


def _not_json(payload: bytes) -> str | None:
    """Why `payload` is not JSON (Lambda's Invoke accepts nothing else), or None."""
    if payload == b"{}":
        return None
    try:
        json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return str(exc)
    return None
