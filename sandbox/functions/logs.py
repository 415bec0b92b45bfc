"""Invocation logs in Lambda's formats (INIT_START, START, END, REPORT) and the
pluggable sink they go to.

A sink is any callable taking an InvocationLog.  The default writes each line
to the Python logger "sandbox.functions" at INFO; nothing is formatted when
that logger is disabled and the caller asked for no log tail, which keeps the
warm path cheap.
"""
from __future__ import annotations

import base64
import logging
import math
from dataclasses import dataclass

TAIL_BYTES = 4096
RUNTIME_VERSION = "python:{version}.sandbox1"


@dataclass(frozen=True)
class InvocationLog:
    function_name: str
    version: str
    request_id: str
    log_group_name: str
    log_stream_name: str
    text: str          # the whole execution log of this invocation, lines ending in "\n"


class LoggerSink:
    """Writes each log line to a Python logger (default "sandbox.functions")."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO):
        self.logger = logger or logging.getLogger("sandbox.functions")
        self.level = level

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(self.level)

    def __call__(self, record: InvocationLog) -> None:
        for line in record.text.splitlines():
            self.logger.log(self.level, "%s %s", record.log_stream_name, line,
                            extra={"function_name": record.function_name, "request_id": record.request_id})


def sink_enabled(sink) -> bool:
    check = getattr(sink, "enabled", None)
    return True if check is None else bool(check())


def init_start_line(runtime_version: str, region: str, runtime_arn_id: str) -> str:
    return (f"INIT_START Runtime Version: {runtime_version}\t"
            f"Runtime Version ARN: arn:aws:lambda:{region}::runtime:{runtime_arn_id}\n")


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}\n"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}\n"


def report_line(request_id: str, duration_ms: float, memory_mb: int, max_memory_used_mb: int | None,
                init_duration_ms: float | None, status: str | None = None, error_type: str | None = None) -> str:
    """Lambda's tab-separated REPORT line.  Billed Duration is rounded up to the
    millisecond; Init Duration only on an environment's first invocation."""
    fields = [f"REPORT RequestId: {request_id}", f"Duration: {duration_ms:.2f} ms",
              f"Billed Duration: {billed_ms(duration_ms)} ms", f"Memory Size: {memory_mb} MB",
              f"Max Memory Used: {max_memory_used_mb if max_memory_used_mb is not None else memory_mb} MB"]
    if init_duration_ms is not None:
        fields.append(f"Init Duration: {init_duration_ms:.2f} ms")
    if status:
        fields.append(f"Status: {status}")
    if error_type:
        fields.append(f"Error Type: {error_type}")
    return "\t".join(fields) + "\n"


def billed_ms(duration_ms: float) -> int:
    return max(1, math.ceil(round(duration_ms, 6)))


def mb_used(peak_bytes: int | None) -> int | None:
    return None if peak_bytes is None else math.ceil(peak_bytes / (1024 * 1024))


def tail(text: str) -> str:
    """X-Amz-Log-Result: base64 of the last 4 KB of the execution log."""
    return base64.b64encode(text.encode("utf-8", "replace")[-TAIL_BYTES:]).decode()
