"""Invocation logs in Lambda's formats (sandbox/functions/logs.py): the exact
START/END/REPORT/INIT_START lines, Billed Duration, the 4 KB base64 log tail,
and the logger sink.  Pure."""
from __future__ import annotations

import base64
import logging

import pytest

from sandbox.functions import logs

RID = "8f507cfc-1234-4697-b07a-ac58fc914c95"


# -- REPORT ------------------------------------------------------------------------------
def test_report_line_with_init_duration_is_lambdas_exact_format():
    line = logs.report_line(RID, 15.74, 128, 56, 130.49)
    assert line == (f"REPORT RequestId: {RID}\tDuration: 15.74 ms\tBilled Duration: 16 ms\t"
                    "Memory Size: 128 MB\tMax Memory Used: 56 MB\tInit Duration: 130.49 ms\n")


def test_report_line_without_init_duration():
    line = logs.report_line(RID, 2.5, 1769, 40, None)
    assert line == (f"REPORT RequestId: {RID}\tDuration: 2.50 ms\tBilled Duration: 3 ms\t"
                    "Memory Size: 1769 MB\tMax Memory Used: 40 MB\n")
    assert "Init Duration" not in line


def test_report_line_fields_are_tab_separated_and_single_line():
    line = logs.report_line(RID, 1.0, 128, 1, 3.0, "timeout", "Sandbox.Timedout")
    assert line.endswith("\n") and line.count("\n") == 1
    fields = line.rstrip("\n").split("\t")
    assert [f.split(":")[0] for f in fields] == [
        "REPORT RequestId", "Duration", "Billed Duration", "Memory Size", "Max Memory Used", "Init Duration",
        "Status", "Error Type"]
    assert fields[-2:] == ["Status: timeout", "Error Type: Sandbox.Timedout"]
    assert "  " not in line


def test_report_line_status_without_init_duration():
    line = logs.report_line(RID, 1000.37, 128, None, None, "error", "Runtime.ExitError")
    assert line == (f"REPORT RequestId: {RID}\tDuration: 1000.37 ms\tBilled Duration: 1001 ms\t"
                    "Memory Size: 128 MB\tMax Memory Used: 128 MB\tStatus: error\tError Type: Runtime.ExitError\n")


def test_unknown_peak_memory_reports_the_memory_size_like_the_rie():
    assert "Max Memory Used: 512 MB" in logs.report_line(RID, 1.0, 512, None, None)


@pytest.mark.parametrize("duration,billed", [
    (0.0, 1), (0.01, 1), (0.99, 1), (1.0, 1), (1.0001, 2), (15.74, 16), (100.0, 100), (100.000000001, 100),
    (2999.5, 3000), (3000.0, 3000),
])
def test_billed_duration_is_rounded_up_to_the_millisecond(duration, billed):
    assert logs.billed_ms(duration) == billed
    assert f"\tBilled Duration: {billed} ms\t" in logs.report_line(RID, duration, 128, 1, None)


@pytest.mark.parametrize("duration,shown", [(0.0, "0.00"), (0.004, "0.00"), (15.746, "15.75"), (1234.5, "1234.50")])
def test_duration_has_two_decimals(duration, shown):
    assert f"\tDuration: {shown} ms\t" in logs.report_line(RID, duration, 128, 1, None)


@pytest.mark.parametrize("peak,mb", [(None, None), (0, 0), (1, 1), (1 << 20, 1), ((1 << 20) + 1, 2),
                                     (56 * (1 << 20) - 5, 56)])
def test_memory_used_is_rounded_up_to_the_megabyte(peak, mb):
    assert logs.mb_used(peak) == mb


# -- START / END / INIT_START -------------------------------------------------------------
def test_start_and_end_lines():
    assert logs.start_line(RID, "$LATEST") == f"START RequestId: {RID} Version: $LATEST\n"
    assert logs.start_line(RID, "12") == f"START RequestId: {RID} Version: 12\n"
    assert logs.end_line(RID) == f"END RequestId: {RID}\n"


def test_init_start_line():
    line = logs.init_start_line("python:3.11.sandbox1", "eu-south-1", "sandbox")
    assert line == ("INIT_START Runtime Version: python:3.11.sandbox1\t"
                    "Runtime Version ARN: arn:aws:lambda:eu-south-1::runtime:sandbox\n")


# -- the log tail --------------------------------------------------------------------------
def test_tail_of_a_short_log_is_all_of_it():
    text = logs.start_line(RID, "$LATEST") + "hello\n" + logs.end_line(RID)
    assert base64.b64decode(logs.tail(text)).decode() == text


def test_tail_is_base64_of_the_last_4096_bytes():
    text = "".join(f"line {i}\n" for i in range(5000))
    tail = logs.tail(text)
    assert isinstance(tail, str)
    decoded = base64.b64decode(tail, validate=True)
    assert len(decoded) == logs.TAIL_BYTES == 4096
    assert decoded == text.encode()[-4096:]


def test_tail_of_exactly_4096_and_4097_bytes():
    assert base64.b64decode(logs.tail("a" * 4096)) == b"a" * 4096
    assert base64.b64decode(logs.tail("b" + "a" * 4096)) == b"a" * 4096


def test_tail_counts_bytes_not_characters():
    text = "é" * 3000                       # 6000 bytes
    decoded = base64.b64decode(logs.tail(text))
    assert decoded == text.encode()[-4096:] and len(decoded) == 4096


def test_tail_survives_unencodable_text():
    # Lone surrogates (a handler printing undecodable bytes) must not break the tail.
    decoded = base64.b64decode(logs.tail("ok \ud800 end\n"))
    assert decoded.startswith(b"ok ") and decoded.endswith(b" end\n")


def test_tail_of_nothing():
    assert logs.tail("") == ""


# -- sinks ---------------------------------------------------------------------------------
def record(text="START x\nhello\nEND x\n"):
    return logs.InvocationLog("fn", "$LATEST", RID, "/aws/lambda/fn", "2024/01/01/[$LATEST]abc", text)


def test_logger_sink_writes_each_line_with_the_stream_name(caplog):
    logger = logging.getLogger("test.functions.sink")
    sink = logs.LoggerSink(logger)
    with caplog.at_level(logging.INFO, logger="test.functions.sink"):
        assert sink.enabled()
        sink(record())
    messages = [r.getMessage() for r in caplog.records if r.name == "test.functions.sink"]
    assert messages == ["2024/01/01/[$LATEST]abc START x", "2024/01/01/[$LATEST]abc hello",
                        "2024/01/01/[$LATEST]abc END x"]
    assert all(r.function_name == "fn" and r.request_id == RID for r in caplog.records)


def test_logger_sink_is_disabled_with_its_logger():
    logger = logging.getLogger("test.functions.quiet")
    logger.setLevel(logging.WARNING)
    try:
        assert not logs.LoggerSink(logger).enabled()
        assert not logs.sink_enabled(logs.LoggerSink(logger))
        assert logs.sink_enabled(logs.LoggerSink(logger, level=logging.ERROR))
    finally:
        logger.setLevel(logging.NOTSET)


def test_any_callable_is_an_enabled_sink():
    got = []
    assert logs.sink_enabled(got.append)
    assert logs.sink_enabled(lambda r: None)


def test_default_logger_is_sandbox_functions():
    assert logs.LoggerSink().logger.name == "sandbox.functions"
