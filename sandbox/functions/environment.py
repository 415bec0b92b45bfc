"""One execution environment: a sandbox running the runtime bootstrap for one
function version, and the supervisor's end of its private channel.

State machine (an illegal transition raises):

    STARTING --ready--> READY --invoke--> BUSY --response--> READY
        |                  |                 |
        +--init error------+---destroy-------+--timeout/crash/corrupt channel--> DEAD

The environment never outlives a failure it cannot explain: a timeout, an
exit, a corrupt frame or an oversized response all end it.
"""
from __future__ import annotations

import fcntl
import os
import select
import threading
import time

from .._core import ffi, lib
from ..launcher import DEVNULL, spawn
from ..zygote import spawner_for
from .outcome import Outcome, Output, exit_status
from . import _warm
from .runtime import wire
from .spec import EnvironmentSpec

STARTING, READY, BUSY, DEAD = "starting", "ready", "busy", "dead"
_TRANSITIONS = {
    (STARTING, READY), (STARTING, DEAD), (READY, BUSY), (BUSY, READY), (READY, DEAD), (BUSY, DEAD),
}
PIPE_SIZE = 1 << 20            # channel and log pipes: 1 MiB, /proc/sys/fs/pipe-max-size's default
# How long the supervisor polls for an answer before it sleeps, when this
# environment's last answer came that fast: it saves the waiting thread a
# cross-CPU wake-up (~50 us in a VM) on quick handlers, and costs nothing on
# slow ones, which never qualify.
SPIN_US = 80
SPIN_PROBE = 8
# The largest the supervisor's read buffer grows to, for an environment whose
# answers did not fit a read of wire.READ_CHUNK: 1 MiB, the pipe's size.
MAX_READ_BUFFER = 1 << 20
EXIT_GRACE_S = 0.2             # after the channel closes, how long the runtime may take to exit


class IllegalTransition(RuntimeError):
    pass


class NotIdle(RuntimeError):
    """The environment's channel was not quiet when an invocation was to be
    sent (a forged answer or the runtime's exit waits on it); nothing was
    sent, and the environment must not be used again."""


class Environment:
    """Create with `Environment.start(spec)`; then `invoke()` (one at a time),
    then `destroy()`."""

    # invoke() checks an idle channel is quiet as the first step of its send
    # (_warm.exchange), so usable() need not poll it too.
    _polls_on_send = True

    def __init__(self, spec: EnvironmentSpec, environment_id: str, supervisor=None):
        self.spec = spec
        self.id = environment_id
        self.function = None        # the function uid whose concurrency slot it holds
        self.provisioned = False    # kept initialized ahead of demand (see provisioned.py)
        self.retire_at = None       # monotonic time it must be gone by (its credentials expire)
        self.state = STARTING
        self.created = time.monotonic()
        self.last_used = self.created
        self.invocations = 0
        self.init_duration_ms: float | None = None
        self.init_output = b""
        self._state_lock = threading.Lock()
        self._box = None
        self._supervisor = supervisor
        self._request_fd = self._response_fd = self._log_fd = -1
        self._peak_fd = -1
        self._buffer = bytearray()
        self._large = None   # an answer bigger than one read: its body, filled in place (see _take)
        self._large_kind = 0
        self._large_have = 0
        self._grown_read_size = 0   # the read buffer's next size, set by a large answer (see _grow_reads_for)
        self._poller = None
        self._result = None
        self._output: Output | None = None
        self._previous_request = b""
        self._quick = True          # the last answer came within SPIN_US
        self._tainted = False
        self._timeout_ms = int(spec.timeout_s * 1000) + 1   # the warm path's wait (the deadline is checked again)

    # -- state ------------------------------------------------------------------
    def _move(self, new: str) -> None:
        with self._state_lock:
            if (self.state, new) not in _TRANSITIONS:
                raise IllegalTransition(f"environment {self.id}: {self.state} -> {new}")
            self.state = new

    @property
    def alive(self) -> bool:
        return self.state in (READY, BUSY)

    @property
    def tainted(self) -> bool:
        """Unexplained bytes were left on the channel: do not reuse."""
        return self._tainted

    # -- start ------------------------------------------------------------------
    def start(self) -> Outcome:
        """Spawn the sandbox and run init.  Returns the "ready" outcome, or the
        init failure (the environment is then dead)."""
        started = time.monotonic()
        request_r, self._request_fd = os.pipe2(os.O_CLOEXEC)
        self._response_fd, response_w = os.pipe2(os.O_CLOEXEC)
        self._log_fd, log_w = os.pipe2(os.O_CLOEXEC)
        try:
            for fd in (self._request_fd, self._response_fd, self._log_fd):
                try:
                    # Large payloads and floods of output in fewer wake-ups.
                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
                except OSError:
                    pass  # capped by /proc/sys/fs/pipe-max-size: the default size still works
            for fd in (self._request_fd, self._response_fd, self._log_fd):
                os.set_blocking(fd, False)
            spawner = spawn if self.spec.zygote is None else spawner_for(self.spec)   # fresh or forked
            self._box = spawner(self.spec.argv(self.id), self.spec.config, stdin=DEVNULL, stdout=log_w,
                                stderr=log_w, pass_fds=(request_r, response_w), supervisor=self._supervisor)
        except BaseException:
            self._close_fds()
            self.state = DEAD
            raise
        finally:
            for fd in (request_r, response_w, log_w):
                os.close(fd)
        cgroup = self._box._cgroup
        peak_path = cgroup.memory_peak_path if cgroup is not None else None
        if peak_path:
            self._peak_fd = os.open(peak_path, os.O_RDONLY | os.O_CLOEXEC)
        self._poller = select.poll()   # for usable()'s check; the waits are in C
        for fd in (self._response_fd, self._log_fd, self._box._pidfd):
            self._poller.register(fd, select.POLLIN)
        # Not cleared: only the pages an answer is read into become resident.
        self._read_into(wire.READ_CHUNK)
        self._c_written = ffi.new("size_t *")
        self._c_got = ffi.new("long *")
        output = self._log_output()
        outcome = self._exchange(b"", started + self.spec.init_timeout_s)
        self.init_duration_ms = (time.monotonic() - started) * 1000
        if outcome.kind == "ready":
            self._move(READY)
        else:
            if outcome.kind not in _FAILED_INIT:  # an answer to a request never sent: broken runtime
                outcome.kind = "invalid_response"
            self._end(output)
        outcome.output, outcome.output_dropped = output.text(), output.dropped
        self.init_output = outcome.output
        self._output = None
        return outcome

    # -- invoke -----------------------------------------------------------------
    def invoke(self, request_id: str, payload: bytes, deadline_ms: int, arn: bytes,
               trace: bytes = b"", client_context: bytes = b"", was_idle: bool = True) -> Outcome:
        """Run one invocation (the environment must be READY).  One that
        `was_idle` (taken from its pool's idle ones) is first checked to be
        quiet (see usable): NotIdle is raised, with nothing sent, when it is not.
        A new one is not checked: whatever it does is its first invocation's
        outcome, and a retry would start another that may do the same."""
        if len(payload) > _SURELY_FITS and \
                wire.INVOKE_META.size + len(arn) + len(trace) + len(client_context) + len(payload) > wire.MAX_FRAME:
            raise ValueError("the invoke frame would be over the channel's limit")
        with self._state_lock:
            if self.state != READY:
                raise IllegalTransition(f"environment {self.id}: {self.state} -> {BUSY}")
            self.state = BUSY
        self._output = None
        if self._grown_read_size:
            self._read_into(self._grown_read_size)
            self._grown_read_size = 0
        started = time.monotonic()
        expected = request_id.encode()
        resume = None
        if not self._buffer:
            # The common case in one C call: frame out, whole answer back
            # (csrc/warm_exchange.c).  Anything else comes back as the state
            # the channel is in, and the general loop below takes it from there.
            answer = _warm.exchange(self._request_fd, self._response_fd, self._log_fd, self._box._pidfd, expected,
                                    deadline_ms, arn, trace, client_context, payload,
                                    self._timeout_ms, SPIN_US if self._quick else 0,
                                    self._read_view, was_idle)
            if answer is None:
                with self._state_lock:
                    self.state = READY
                raise NotIdle(f"environment {self.id}: unasked-for bytes or an exit on its channel")
            if answer[0] is not None:
                return self._settle(Outcome(_KIND_NAMES[answer[0]], answer[1]), expected, started, True)
            resume = answer[1:]
        frame = wire.invoke_frame(request_id, deadline_ms, arn, trace, client_context, payload)
        deadline = started + self.spec.timeout_s
        outcome = None
        while outcome is None:
            outcome = self._exchange(frame, deadline, resume)
            frame, resume = b"", None   # sent whole (or the environment is over)
            if outcome.kind in _SERVED:
                answered = outcome.body[:wire.REQUEST_ID_SIZE]
                if answered == expected:
                    outcome.body = outcome.body[wire.REQUEST_ID_SIZE:]
                elif answered == self._previous_request:
                    # The runtime's real answer to the previous request, after a
                    # handler forged one that was taken: drop it, keep waiting.
                    outcome = None
                else:
                    outcome = self._corrupt("invalid_response")
        if self._buffer and outcome.kind in _SERVED:
            self._drop_echoes(expected)
        # No final read of the log pipe: the runtime flushes the handler's
        # output before it answers, so the poll that saw the answer saw that
        # output too, and _exchange drained it.
        return self._settle(outcome, expected, started, outcome.kind in _SERVED)

    def _settle(self, outcome: Outcome, expected: bytes, started: float, answered: bool) -> Outcome:
        """The end of one invocation on this channel: its duration, the id a
        late echo may carry, whether to spin next time; then _close_invocation."""
        now = time.monotonic()
        outcome.duration_ms = (now - started) * 1000
        self._previous_request = expected
        # Spin next time if this answer came within the spin budget; after a
        # slow one, try again every SPIN_PROBE-th invocation (one slow answer,
        # e.g. a preemption, must not turn spinning off for good).
        self._quick = outcome.duration_ms * 1000 < SPIN_US or self.invocations % SPIN_PROBE == 0
        return self._close_invocation(outcome, answered, now)

    def _close_invocation(self, outcome: Outcome, answered: bool, now: float) -> Outcome:
        """The end of every invocation (this runtime's and the Runtime API's):
        count it; back to READY if the runtime answered, else end the
        environment; attach the handler's output to the outcome."""
        self.invocations += 1
        self.last_used = now
        if answered:
            with self._state_lock:
                if self.state == BUSY:
                    self.state = READY
        else:
            self._end(self._log_output())
        if self._output is not None:
            outcome.output, outcome.output_dropped = self._output.text(), self._output.dropped
        return outcome

    def _log_output(self) -> Output:
        if self._output is None:
            self._output = Output()
        return self._output

    def _drop_echoes(self, request_id: bytes) -> None:
        """Bytes left after the answer: further answers to the same request (a
        forged one was taken first) are dropped; anything else taints the
        environment, which is then not reused."""
        while self._buffer:
            outcome = self._parse()
            if outcome is None or outcome.kind not in _SERVED or \
                    outcome.body[:wire.REQUEST_ID_SIZE] != request_id:
                self._tainted = True
                self._buffer.clear()
                return

    def usable(self) -> bool:
        """Ready, alive, and with nothing unasked-for on the channel: checked
        before an idle environment is handed out.  The runtime may have died
        while idle, or a handler may have forged an answer that the real one
        is now following: one poll(0) finds both.  Where the C warm path
        runs, that poll is the first thing of the send instead (invoke raises
        NotIdle), which saves a system call per invocation."""
        if self.state != READY or self._tainted:
            return False
        if self._polls_on_send:
            return True
        for fd, _ in self._poller.poll(0):
            if fd != self._log_fd:
                return False
        return True

    def memory_peak_bytes(self) -> int | None:
        if self._peak_fd < 0:
            result = self._result   # ended: the cgroup's last word
            return result.memory_peak_bytes if result is not None else None
        try:
            return int(os.pread(self._peak_fd, 32, 0))
        except (OSError, ValueError):
            return None

    # -- the channel --------------------------------------------------------------
    def _exchange(self, frame: bytes, deadline: float, resume=None) -> Outcome:
        """Send `frame` (may be empty), then wait for one answer frame, the
        runtime's end, or the deadline.  The write/poll/read loop is one C call
        (csrc/channel.c): one GIL release per wait, not three.  `resume`:
        (events, written, got) where the warm path's call left off."""
        written, got = self._c_written, self._c_got
        written[0] = 0
        length = len(frame)
        if resume is not None:
            events, written[0], got[0] = resume
            if events:
                outcome = self._after_wait(events)
                if outcome is not None:
                    return outcome
        while True:
            if self._buffer:   # left over after the previous answer (see invoke)
                outcome = self._parse()
                if outcome is not None:
                    return outcome
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._timed_out()
            if self._large is None:
                into, cap = self._c_read, self._read_size
            else:   # the rest of a large answer goes straight where it belongs
                into, cap = ffi.from_buffer(self._large) + self._large_have, len(self._large) - self._large_have
            events = lib.sbx_channel_exchange(
                self._request_fd, frame, length, written, self._response_fd, self._log_fd, self._box._pidfd,
                int(remaining * 1000) + 1, SPIN_US if self._quick else 0, into, cap, got)
            outcome = self._after_wait(events)
            if outcome is not None:
                return outcome

    def _after_wait(self, events: int) -> Outcome | None:
        """What one sbx_channel_exchange call found (`events`, with _c_got[0]
        bytes read): the outcome, or None to wait again."""
        if events < 0:   # poll/read/write failed on our own descriptors: end the environment
            outcome = self._corrupt("invalid_response")
            outcome.exit_status = f"channel: {os.strerror(-events)}"
            return outcome
        if events & lib.SBX_CH_LOG:
            self._drain_log()
        if events & lib.SBX_CH_DATA:
            got = self._c_got[0]
            if got == 0:
                return self._died()   # end of file: the runtime is gone
            outcome = self._take(got)
            if outcome is not None:
                return outcome
        if events & lib.SBX_CH_EXIT:
            outcome = self._read_response()   # an answer written just before the end still counts
            return outcome if outcome is not None else self._died()
        if events & lib.SBX_CH_TIMEOUT:
            return self._timed_out()
        return None

    def _read_response(self) -> Outcome | None:
        """Read what is available and return the frame once it is whole."""
        while True:
            if self._large is None:
                into = self._read_view
            else:
                into = memoryview(self._large)[self._large_have:]
            try:
                got = os.readv(self._response_fd, (into,))
            except BlockingIOError:
                return None
            if not got:
                return None
            outcome = self._take(got)
            if outcome is not None:
                return outcome

    def _take(self, got: int) -> Outcome | None:
        """`got` more bytes of the answer were read (into _c_read, or into
        _large when one is being filled); the frame once it is whole."""
        if self._large is not None:
            self._large_have += got
            if self._large_have < len(self._large):
                return None
            body, self._large = bytes(self._large), None
            return Outcome(_KIND_NAMES[self._large_kind], body)
        if not self._buffer and got >= wire.HEADER.size:
            magic, kind, length = wire.HEADER.unpack_from(ffi.buffer(self._c_read, wire.HEADER.size))
            if magic == wire.MAGIC and kind in _KIND_NAMES and length <= wire.MAX_FRAME:
                size = wire.HEADER.size + length
                if got == size:   # the common case: one whole frame in one read, one copy
                    return Outcome(_KIND_NAMES[kind], ffi.unpack(self._c_read + wire.HEADER.size, length))
                if got < size:    # a large answer: the rest is read into a buffer of its size
                    self._grow_reads_for(size)
                    self._large, self._large_kind = bytearray(length), kind
                    self._large_have = got - wire.HEADER.size
                    ffi.memmove(self._large, self._c_read + wire.HEADER.size, self._large_have)
                    return None
        self._buffer += ffi.buffer(self._c_read, got)
        return self._parse()

    def _read_into(self, size: int) -> None:
        """A new read buffer of `size` bytes: _c_read for cffi, _read_view (the
        same memory) for _warm.  Not cleared: only the pages an answer is read
        into become resident."""
        self._c_read = _uncleared("char[]", size)
        self._read_view = ffi.buffer(self._c_read, size)
        self._read_size = size

    def _grow_reads_for(self, frame_size: int) -> None:
        """After an answer bigger than one read: read the next ones whole, in
        a buffer of the next power of two that holds this one (up to
        MAX_READ_BUFFER), so that a function answering 64 KB answers in one
        read and one copy from then on.  Takes effect after this answer, which
        is being read into its own buffer."""
        size = min(1 << (frame_size - 1).bit_length(), MAX_READ_BUFFER)
        if size > self._read_size:
            self._grown_read_size = size

    def _parse(self) -> Outcome | None:
        buffer = self._buffer
        if len(buffer) < wire.HEADER.size:
            return None
        magic, kind, length = wire.HEADER.unpack_from(buffer)
        if magic != wire.MAGIC or kind not in wire.RESPONSE_KINDS:
            return self._corrupt("invalid_response")
        if length > wire.MAX_FRAME:
            return self._corrupt("too_large")
        end = wire.HEADER.size + length
        if len(buffer) < end:
            return None
        body = bytes(buffer[wire.HEADER.size:end])
        del buffer[:end]   # what follows is judged by request id (see invoke)
        return Outcome(_KIND_NAMES[kind], body)

    def _drain_log(self) -> None:
        output = self._log_output()
        size = wire.READ_CHUNK
        while True:
            try:
                chunk = os.read(self._log_fd, size)
            except BlockingIOError:
                return
            size = PIPE_SIZE if len(chunk) == size else wire.READ_CHUNK  # a flood: bigger reads
            if not chunk:
                self._poller.unregister(self._log_fd)
                os.close(self._log_fd)
                self._log_fd = -1
                return
            output.add(chunk)

    # -- endings ------------------------------------------------------------------
    # These only say what happened; the caller ends the environment (_end).
    def _timed_out(self) -> Outcome:
        return Outcome("timeout")

    def _corrupt(self, kind: str) -> Outcome:
        return Outcome(kind)

    def _died(self) -> Outcome:
        # The channel closed: give the runtime a moment to finish exiting on
        # its own, so the status says how it ended rather than "killed".
        box = self._box
        if box is not None:
            box.wait(timeout=EXIT_GRACE_S)
        self._reap()
        result = self._result
        if result is not None and result.oom_killed:
            return Outcome("oom", exit_status="signal: killed")
        return Outcome("exit", exit_status=exit_status(result))

    def _reap(self) -> None:
        with self._state_lock:
            self.state = DEAD
            box, self._box = self._box, None
        if box is not None:
            box.kill()  # pid 1 gone takes the rest; without a pid namespace this is what does
            self._result = box.wait()
            box.close()

    def _end(self, output: Output | None = None) -> None:
        """Kill and reap the sandbox, collect its last output, close the channel."""
        self._reap()
        if output is not None and self._log_fd >= 0:
            self._drain_log()
        self._close_fds()

    def destroy(self) -> None:
        """End the environment whatever its state (idempotent).  Only the thread
        that owns the environment (the invoking one, or the pool when idle) may
        call this; others use kill()."""
        self._end()

    def kill(self) -> None:
        """SIGKILL the sandbox from any thread; the owner notices and cleans up."""
        with self._state_lock:
            box = self._box
        if box is not None:
            box.kill()

    def _close_fds(self) -> None:
        for name in ("_request_fd", "_response_fd", "_log_fd", "_peak_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)


_uncleared = ffi.new_allocator(should_clear_after_alloc=False)
# A payload this small cannot make a frame over the limit (arn and trace are
# at most 64 KiB each: their lengths are 16-bit fields).
_SURELY_FITS = wire.MAX_FRAME - wire.INVOKE_META.size - 2 * 0xFFFF - 64 * 1024
_SERVED = frozenset(("result", "error", "bad_request"))
_FAILED_INIT = frozenset(("init_error", "timeout", "exit", "oom", "invalid_response", "too_large"))
_KIND_NAMES = {wire.READY: "ready", wire.INIT_ERROR: "init_error", wire.RESULT: "result",
               wire.ERROR: "error", wire.BAD_REQUEST: "bad_request"}
