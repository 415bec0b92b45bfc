"""What one request to an execution environment produced (Outcome) and what
the handler printed meanwhile (Output); how a runtime's end is worded."""
from __future__ import annotations

LOG_KEEP = 1 << 20             # output kept per invocation for the log sink
TAIL_KEEP = 4096               # Lambda's log tail is the last 4 KB


class Outcome:
    """What one request to the runtime produced.  kind: "result", "error",
    "bad_request", "ready", "init_error", "timeout", "exit", "oom",
    "invalid_response", "too_large"."""

    __slots__ = ("kind", "body", "duration_ms", "output", "output_dropped", "exit_status")

    def __init__(self, kind: str, body: bytes = b"", exit_status: str = ""):
        self.kind = kind
        self.body = body
        self.duration_ms = 0.0
        self.output = b""          # what the handler printed (capped, see output_dropped)
        self.output_dropped = 0
        self.exit_status = exit_status  # "exit status 1" / "signal: killed" when the runtime died

    def __repr__(self):
        return f"Outcome({self.kind!r}, {self.body[:80]!r}, {self.exit_status!r})"


class Output:
    """The handler's stdout/stderr of one phase: the first LOG_KEEP bytes, and
    past that a rolling last TAIL_KEEP bytes."""

    __slots__ = ("chunks", "size", "dropped", "tail")

    def __init__(self):
        self.chunks: list[bytes] = []
        self.size = 0
        self.dropped = 0
        self.tail = b""

    def add(self, data: bytes) -> None:
        if self.size < LOG_KEEP:
            room = LOG_KEEP - self.size
            self.chunks.append(data[:room])
            self.size += min(room, len(data))
            data = data[room:]
        if data:
            self.dropped += len(data)
            self.tail = (self.tail + data)[-TAIL_KEEP:]

    def text(self) -> bytes:
        if not self.dropped:
            return b"".join(self.chunks)
        note = f"\n[sandbox: {self.dropped} bytes of output dropped]\n".encode()
        return b"".join(self.chunks) + note + self.tail


# Go's names for signals: Lambda reports "Runtime exited with error: signal: killed".
_SIGNAL_NAMES = {1: "hangup", 2: "interrupt", 3: "quit", 4: "illegal instruction", 5: "trace/breakpoint trap",
                 6: "aborted", 7: "bus error", 8: "floating point exception", 9: "killed",
                 10: "user defined signal 1", 11: "segmentation fault", 12: "user defined signal 2",
                 13: "broken pipe", 14: "alarm clock", 15: "terminated", 24: "CPU time limit exceeded",
                 25: "file size limit exceeded", 31: "bad system call"}


def exit_status(result) -> str:
    if result is None:
        return "signal: killed"
    if result.signal is not None:
        return f"signal: {_SIGNAL_NAMES.get(result.signal, f'signal {result.signal}')}"
    return f"exit status {result.exit_code}"
