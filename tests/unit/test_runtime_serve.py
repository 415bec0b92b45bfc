"""The function runtime's serve loop in C (csrc/runtime_serve.c, module _serve)
against the Python loop it replaces (lambda_runtime.main()).

Each run is a child process that runs lambda_runtime.main() as bootstrap.py
does (python -S -B -u, fds 3 and 4 the channel, stdout and stderr one log
pipe), once with _serve and once with it set to None, fed the same request
bytes through real pipes.  The response frames must be the same byte for byte,
and so must the handler's output.  The runtime's modules are compiled under
their /var/runtime/ names, as in the sandbox, so that both leave the runtime's
frames out of a traceback.

_serve is the module built next to the runtime (sandbox/functions/runtime); a
missing build fails here, it is not skipped, so the C loop cannot stop being
tested unnoticed.  SANDBOX_SERVE_BUILD names another directory to take it from
(a build outside the tree)."""
from __future__ import annotations

import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass

import pytest

from sandbox.functions.runtime import wire
from sandbox.functions.spec import RUNTIME_DIR

SERVE_DIR = os.environ.get("SANDBOX_SERVE_BUILD", RUNTIME_DIR)
RID = "496d4ba6-2efa-4524-a43f-9b766771254d"
ARN = b"arn:aws:lambda:us-east-1:123456789012:function:fn"
TRACE = b"Root=1-5e34a614-10bdxmplf1fb44f07bc535a1;Parent=53995c3f42cd8ad8;Sampled=1"

# Runs main() as bootstrap.py does; argv: runtime dir, _serve's dir, "c" or "python", request fd, response fd.
DRIVER = textwrap.dedent("""
    import fcntl, os, sys
    runtime_dir, serve_dir, loop, request_fd, response_fd = sys.argv[1:]
    sys.path[:0] = [serve_dir, runtime_dir]
    for name in ("wire", "fastjson", "lambda_runtime"):
        module = sys.modules[name] = type(sys)(name)
        module.__file__ = "/var/runtime/" + name + ".py"
        with open(os.path.join(runtime_dir, name + ".py")) as source:
            exec(compile(source.read(), module.__file__, "exec"), module.__dict__)
    import lambda_runtime
    if loop == "python":
        lambda_runtime._serve = None
    elif lambda_runtime._serve is None:
        raise SystemExit("driver: _serve is not built")
    elif loop == "c, counting":   # how many requests the C loop hands to invoke() whole
        whole = []
        invoke = lambda_runtime.invoke
        lambda_runtime.invoke = lambda handler, body: whole.append(1) or invoke(handler, body)
    # Out of the way first: the pipes may have come in as fds 3 and 4 the wrong way round.
    request, response = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in (request_fd, response_fd))
    os.dup2(request, 3)
    os.dup2(response, 4)
    for fd in {request, response, int(request_fd), int(response_fd)} - {3, 4}:
        os.close(fd)
    lambda_runtime.main(["log-stream", "on-demand"])
    if loop == "c, counting":
        print("invoke() ran", len(whole), "times")
""")

HANDLERS = textwrap.dedent("""
    import os, sys, threading, time

    def echo(event, context):
        return event

    def describe(event, context):
        client = context.client_context
        return {"event": event, "request_id": context.aws_request_id, "arn": context.invoked_function_arn,
                "deadline": context._deadline_ms, "trace": os.environ.get("_X_AMZN_TRACE_ID"),
                "function": context.function_name, "stream": context.log_stream_name,
                "client_context": client and [client.custom, client.env, client.client and client.client.app_title]}

    def fails(event, context):
        def deeper():
            raise ValueError(f"bad event {event!r}")
        deeper()

    def recurses(event, context):
        return recurses(event, context)

    def nested(event, context):
        value = []
        for _ in range(event):
            value = [value]
        return value

    def unserializable(event, context):
        return {"fine": 1, "not": {1, 2}}

    def sized(event, context):
        return "x" * event

    def chatty(event, context):
        import logging
        print("to stdout", event)
        print("to stderr", event, file=sys.stderr)
        logging.getLogger().setLevel(logging.INFO)
        logging.info("logged %s", event)
        sys.stdout.write("no newline; ")
        return "ok"

    class Sink:
        def write(self, text):
            sys.__stdout__.write(f"<{text}>")
            return len(text)

        def flush(self):
            raise OSError("this stream cannot flush")

    def replaces_stdout(event, context):
        sys.stdout = Sink()
        print("through the sink", event)
        return event

    def exits(event, context):
        sys.exit(event)

    def signals(event, context):
        import signal
        def on_signal(number, frame):
            print("signal", number, flush=True)
            if event == "raise":
                raise RuntimeError("from the signal handler")
        signal.signal(signal.SIGUSR1, on_signal)
        return event

    ticks = [0]

    def background(event, context):
        if event == "start":
            def tick():
                while True:
                    ticks[0] += 1
                    time.sleep(0.001)
            threading.Thread(target=tick, daemon=True).start()
        return ticks[0]
""")


@dataclass
class Run:
    raw: bytes           # everything on the response pipe
    frames: list         # (kind, body) of each response frame
    output: str          # the log pipe (stdout and stderr), times masked
    returncode: int


def invoke(payload: bytes, rid=RID, arn=ARN, trace=b"", context=b"", deadline=1542409706888) -> bytes:
    return wire.invoke_frame(rid, deadline, arn, trace, context, payload)


def split(raw: bytes) -> list:
    frames, at = [], 0
    while at < len(raw):
        magic, kind, length = wire.HEADER.unpack_from(raw, at)
        assert magic == wire.MAGIC, raw[at:at + 64]
        at += wire.HEADER.size
        frames.append((chr(kind), raw[at:at + length]))
        at += length
    return frames


def run(loop: str, steps, handler: str, tmp_path) -> Run:
    """Runs the loop with `handler` (a function of HANDLERS) and writes `steps`
    to its request pipe: bytes, a float (seconds to wait), or a function to
    call with the child.  Then EOF."""
    handlers = tmp_path / "handlers.py"
    if not handlers.exists():
        handlers.write_text(HANDLERS)
    request_r, request_w = os.pipe()
    response_r, response_w = os.pipe()
    env = {"_HANDLER": f"handlers.{handler}", "PYTHONPATH": str(tmp_path), "AWS_LAMBDA_FUNCTION_NAME": "fn",
           "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}
    child = subprocess.Popen(
        [sys.executable, "-S", "-B", "-u", "-c", DRIVER, RUNTIME_DIR, SERVE_DIR, loop, str(request_r), str(response_w)],
        env=env, pass_fds=(request_r, response_w), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    os.close(request_r)
    os.close(response_w)
    responses = []

    def feed():
        try:
            for step in steps:
                if isinstance(step, float):
                    time.sleep(step)
                elif callable(step):
                    step(child)
                else:
                    _write_all(request_w, step)
        except BrokenPipeError:   # the loop stopped reading: what it answered is the result
            pass
        finally:
            os.close(request_w)

    def drain():
        with os.fdopen(response_r, "rb") as pipe:
            responses.append(pipe.read())

    threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
    for thread in threads:
        thread.start()
    try:
        output = child.communicate(timeout=60)[0].decode("utf-8", "backslashreplace")
    except subprocess.TimeoutExpired:
        child.kill()   # the threads then see EOF and EPIPE
        raise
    for thread in threads:
        thread.join()
    output = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "<time>", output)
    output = re.sub(r" at 0x[0-9a-f]+>", " at 0x...>", output)
    return Run(responses[0], split(responses[0]), output, child.returncode)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def both(steps, handler, tmp_path, compare_output=True) -> Run:
    """The C loop's run, after checking it against the Python loop's."""
    in_c, in_python = run("c", steps, handler, tmp_path), run("python", steps, handler, tmp_path)
    assert [(kind, len(body)) for kind, body in in_c.frames] == [(kind, len(body)) for kind, body in in_python.frames]
    assert in_c.frames == in_python.frames
    assert in_c.raw == in_python.raw
    assert in_c.returncode == in_python.returncode, (in_c.output, in_python.output)
    if compare_output:
        assert in_c.output == in_python.output
    return in_c


def results(run_: Run) -> list:
    assert run_.frames[0] == ("Y", b""), run_.output
    return [(kind, body[:36].decode(), body[36:]) for kind, body in run_.frames[1:]]


# -- the build ------------------------------------------------------------------------------------
def test_serve_is_built():
    built = glob.glob(os.path.join(SERVE_DIR, "_serve*.so"))
    assert built, f"_serve is not built in {SERVE_DIR}: the runtime would fall back to the Python loop"


# -- answers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", [b'{"hello": "world", "n": [1, 2.5, null, true]}', b"{}", b'"\\u00e9t\\u00e9"',
                                     "\"ünïcode 😀\"".encode()])
def test_echo(payload, tmp_path):
    got = results(both([invoke(payload), invoke(payload, rid="r" * 36)], "echo", tmp_path))
    assert [kind for kind, _, _ in got] == ["R", "R"]


def test_echo_of_a_large_payload(tmp_path):
    payload = b'{"data": "' + b"abcdefgh" * (1 << 17) + b'", "list": [' + b"1," * 100000 + b"2]}"
    got = results(both([invoke(payload), invoke(b"[1]"), invoke(payload)], "echo", tmp_path))
    assert got[0][0] == "R" and len(got[0][2]) > 1 << 20


def test_context_and_environment(tmp_path):
    steps = [invoke(b"1", deadline=2**64 - 1), invoke(b"2", arn=b"arn:other:\xc3\xa9", trace=TRACE),
             invoke(b"3", trace=TRACE), invoke(b"4", trace=b"Root=changed"), invoke(b"5"), invoke(b"6", trace=TRACE)]
    got = [json.loads(body) for _, _, body in results(both(steps, "describe", tmp_path))]
    assert [answer["trace"] for answer in got] == [None, TRACE.decode(), TRACE.decode(), "Root=changed", None,
                                                  TRACE.decode()]
    assert [answer["arn"] for answer in got] == [ARN.decode(), "arn:other:é"] + [ARN.decode()] * 4
    assert got[0]["deadline"] == 2**64 - 1 and got[0]["request_id"] == RID and got[0]["function"] == "fn"


def test_a_client_context_goes_the_python_way(tmp_path):
    context = b'{"custom": {"k": "v"}, "env": {"e": 1}, "client": {"app_title": "app"}}'
    got = results(both([invoke(b"{}", context=context), invoke(b"{}"), invoke(b"{}", context=b"not json")],
                       "describe", tmp_path))
    assert [kind for kind, _, _ in got] == ["R", "R", "V"]
    assert b'"client_context": [{"k": "v"}, {"e": 1}, "app"]' in got[0][2]


def test_a_request_split_over_many_writes_and_two_in_one(tmp_path):
    first, second, third = invoke(b'{"a": 1}'), invoke(b'{"b": 2}'), invoke(b'"' + b"z" * 70000 + b'"')
    steps = [first[:3], 0.05, first[3:20], 0.05, first[20:], second + third[:5], 0.05, third[5:40000], 0.05,
             third[40000:] + first]
    got = results(both(steps, "echo", tmp_path))
    assert [body[:8] for _, _, body in got] == [b'{"a": 1}', b'{"b": 2}', b'"zzzzzzz', b'{"a": 1}']


def test_requests_of_every_size_however_the_pipe_splits_them(tmp_path):
    # Frames a byte either side of the receive buffer (so that a header straddles its end),
    # larger than it, and several MB (a buffer that grows, then goes back to its small size).
    rng = random.Random(7)
    frame_overhead = len(invoke(b'""'))
    edge = 16 * 1024 - frame_overhead
    sizes = [0, 1, edge - 9, edge - 8, edge - 1, edge, edge + 1, 3, 5 * 1024 * 1024, 7, 64 * 1024]
    sizes += [rng.randrange(0, 300 * 1024) for _ in range(30)]
    stream = b"".join(invoke(b'"' + bytes([97 + i % 26]) * n + b'"') for i, n in enumerate(sizes))
    steps, at = [], 0
    while at < len(stream):
        step = rng.choice((1, 3, 7, 4096, 65536, 200000))
        steps += [stream[at:at + step]] + ([0.001] if rng.random() < 0.1 else [])
        at += step
    got = results(both(steps, "echo", tmp_path))
    assert [len(body) - 2 for _, _, body in got] == sizes


@pytest.mark.parametrize("payload", [
    b"not json", b"{", b'{"a": 1} extra', b"", b"\xff\xfe", b"[1,]",
    b'"\\ud800 lone surrogate"', b'"\\udc00\\ud800"',         # kept lone, as json keeps them
    b"1" * 5000, b"-" + b"9" * 4301,                          # past int()'s digit limit: _fastjson declines
    b"12345678901234567890123456789", b"1e400", b"-1e-400", b"123456789.123456789e-300",
    b"[" * 300 + b"]" * 300,                                  # deeper than _fastjson goes, not than json
    b"[" * 100000 + b"]" * 100000,                            # deeper than Python goes
])
def test_payloads_the_c_decoder_declines_or_rejects(payload, tmp_path):
    both([invoke(payload), invoke(b"{}")], "echo", tmp_path)


def test_a_handler_exception(tmp_path):
    got = results(both([invoke(b'{"x": 1}'), invoke(b"2")], "fails", tmp_path))
    assert [kind for kind, _, _ in got] == ["E", "E"]
    body = got[0][2].decode()
    assert '"errorType": "ValueError"' in body and "deeper()" in body and "/var/runtime" not in body
    assert '"stackTrace": ["  File' in body


def test_a_handler_that_recurses_until_it_fails(tmp_path):
    # The C loop calls the handler one frame shallower than invoke() does, so
    # the traceback's "repeated N more times" may differ: the error may not.
    for loop in ("c", "python"):
        got = results(run(loop, [invoke(b"1"), invoke(b"2")], "recurses", tmp_path))
        assert [kind for kind, _, _ in got] == ["E", "E"]
        for _, _, body in got:
            error = json.loads(body)
            assert error["errorType"] == "RecursionError" and "Previous line repeated" in "".join(error["stackTrace"])


@pytest.mark.parametrize("depth,kind", [(50, "R"), (100_000, "E")])
def test_results_nested_deeper_than_encoding_goes(tmp_path, depth, kind):
    steps = [invoke(str(depth).encode()), invoke(b"1")]
    if kind == "R":
        got = results(both(steps, "nested", tmp_path))
    else:   # the depth the encoder gives up at is one frame apart in the two: the error is the same
        got = results(run("c", steps, "nested", tmp_path))
        assert got == results(run("python", steps, "nested", tmp_path))
        assert b"Runtime.MarshalError" in got[0][2]
    assert [k for k, _, _ in got] == [kind, "R"]


def test_an_unserializable_result_and_the_next(tmp_path):
    got = results(both([invoke(b"1"), invoke(b"2")], "unserializable", tmp_path))
    assert [kind for kind, _, _ in got] == ["E", "E"]
    assert b"Unable to marshal response: Object of type set is not JSON serializable" in got[0][2]


def test_a_result_over_the_response_limit(tmp_path):
    largest = wire.MAX_RESPONSE - 2   # the quotes make it MAX_RESPONSE bytes of JSON
    got = results(both([invoke(str(largest).encode()), invoke(str(largest + 1).encode()), invoke(b"3")],
                       "sized", tmp_path))
    assert [kind for kind, _, _ in got] == ["R", "E", "R"]
    assert b"Function.ResponseSizeTooLarge" in got[1][2]


def test_handler_output_and_logging(tmp_path):
    run_ = both([invoke(b'"one"'), invoke(b'"two"', rid="r" * 36)], "chatty", tmp_path)
    assert f"[INFO]\t<time>\t{RID}\tlogged one\n" in run_.output
    assert f"[INFO]\t<time>\t{'r' * 36}\tlogged two\n" in run_.output
    assert "to stdout one\nto stderr one\n" in run_.output


def test_a_handler_that_replaces_stdout(tmp_path):
    run_ = both([invoke(b'"one"'), invoke(b'"two"')], "replaces_stdout", tmp_path)
    assert "<through the sink>< ><one><\n><through the sink>< ><two><\n>" in run_.output
    assert [kind for kind, _, _ in results(run_)] == ["R", "R"]


def test_a_handler_that_exits(tmp_path):
    run_ = both([invoke(b"3"), invoke(b"4")], "exits", tmp_path)
    assert run_.returncode == 3 and len(run_.frames) == 1


def test_background_threads_run_while_the_loop_waits(tmp_path):
    for loop in ("c", "python"):
        got = results(run(loop, [invoke(b'"start"'), 0.3, invoke(b'"count"')], "background", tmp_path))
        assert int(got[1][2]) > 50, (loop, got)


@pytest.mark.parametrize("then", ["print", "raise"])
def test_a_signal_while_the_loop_waits(then, tmp_path):
    # The read fails with EINTR; the signal handler runs, and what it raises goes up (PEP 475).
    steps = [invoke(f'"{then}"'.encode()), 0.2, lambda child: child.send_signal(signal.SIGUSR1), 0.2, invoke(b"2")]
    run_ = both(steps, "signals", tmp_path, compare_output=then == "print")
    assert f"signal {int(signal.SIGUSR1)}\n" in run_.output
    if then == "print":
        assert run_.returncode == 0 and len(run_.frames) == 3
    else:
        assert run_.returncode == 1 and len(run_.frames) == 2
        assert run_.output.endswith("RuntimeError: from the signal handler\n")


# -- the channel ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    wire.frame(wire.INVOKE, b"x")[:1].replace(b"\xa5", b"\x00") + b"\x00" * 7,        # magic
    wire.HEADER.pack(wire.MAGIC, wire.INVOKE, wire.MAX_FRAME + 1),                     # length
    wire.frame(ord("Q"), b"body"),                                                     # kind
    wire.frame(wire.INVOKE, b"too short for INVOKE_META"),                            # struct.error from parse_invoke
    invoke(b"{}", rid="é" * 18),                                                       # a request id not ASCII
    invoke(b"{}", trace=b"\xff"),                                                      # a trace id not UTF-8
])
def test_a_bad_request_ends_the_runtime(bad, tmp_path):
    run_ = both([invoke(b"1"), bad, invoke(b"2")], "echo", tmp_path, compare_output=False)
    assert run_.returncode == 1 and len(run_.frames) == 2
    last = run_.output.strip().splitlines()[-1]
    assert last in ("bootstrap: corrupt request frame", "bootstrap: unexpected request kind 81") \
        or last.startswith(("struct.error", "UnicodeDecodeError")), run_.output


@pytest.mark.parametrize("tail", [b"", invoke(b"{}")[:5], invoke(b"{}")[:-1]])
def test_eof_ends_the_loop_cleanly(tail, tmp_path):
    run_ = both([invoke(b"1"), tail], "echo", tmp_path)
    assert run_.returncode == 0 and len(run_.frames) == 2 and run_.output == ""


def test_the_common_case_stays_in_c(tmp_path):
    """Only the requests the C loop cannot answer itself reach invoke(): so a
    change that sent every request the Python way cannot pass unnoticed."""
    steps = [invoke(b'{"a": 1}'), invoke(b"2", trace=TRACE), invoke(b"3", arn=b"arn:2"), invoke(b"[]"),
             invoke(b"{}", context=b"{}"), invoke(b"[" * 300 + b"]" * 300), invoke(b"not json")]
    run_ = run("c, counting", steps, "echo", tmp_path)
    assert [kind for kind, _, _ in results(run_)] == ["R"] * 6 + ["V"]
    assert run_.output == "invoke() ran 3 times\n"


# -- no leaks -------------------------------------------------------------------------------------
LEAK_CHECK = textwrap.dedent("""
    import os, sys, threading
    runtime_dir, serve_dir = sys.argv[1:]
    sys.path[:0] = [serve_dir, runtime_dir]
    import lambda_runtime, wire, _serve

    def handler(event, context):
        if event == "fail":
            raise ValueError("as asked")
        if event == "set":
            return {1}
        return event

    rid, arn = "r" * 36, b"arn:aws:lambda:us-east-1:123456789012:function:fn"
    common = [wire.invoke_frame(rid, 1, arn, b"", b"", b'{"n": [1, 2.5, "x"], "k": null}')]
    # Every other way an invocation ends: a handler exception, an unserializable result,
    # a client context, a payload _fastjson declines, one that is not JSON, trace ids changing.
    others = [wire.invoke_frame(rid, 1, arn, b"", b"", b'"fail"'), wire.invoke_frame(rid, 1, arn, b"", b"", b'"set"'),
              wire.invoke_frame(rid, 1, arn, b"", b'{"custom": {}}', b"1"),
              wire.invoke_frame(rid, 1, arn, b"", b"", b'"\\\\ud800"'), wire.invoke_frame(rid, 1, arn, b"", b"", b"{"),
              wire.invoke_frame(rid, 1, arn, b"Root=1", b"", b"1"), wire.invoke_frame(rid, 1, arn, b"Root=2", b"", b"1")]
    checkpoint = wire.invoke_frame(rid, 1, arn, b"", b"", b'"checkpoint"')
    rounds = [(common, 100000), (others, 3500)]

    def statm_rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    for frames, count in rounds:
        # A checkpoint after a fifth of the invocations and at the end: nothing may grow in between.
        cycles = count // len(frames)
        stream = b"".join(frames) * (cycles // 5) + checkpoint + b"".join(frames) * (cycles - cycles // 5) + checkpoint
        request_r, request_w = os.pipe()
        response_r, response_w = os.pipe()

        def feed():
            view = memoryview(stream)
            while view:
                view = view[os.write(request_w, view):]
            os.close(request_w)

        sink = bytearray(1 << 16)

        def drain():
            while os.readv(response_r, [sink]):
                pass

        threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
        for thread in threads:
            thread.start()
        checkpoints = []

        def counted(event, context):
            if event == "checkpoint":
                checkpoints.append((sys.getallocatedblocks(), statm_rss(), sys.getrefcount(handler),
                                    sys.getrefcount(context.invoked_function_arn), sys.getrefcount(counted)))
            return handler(event, context)

        stdout, sys.stdout = sys.stdout, open(os.devnull, "w")   # the error logs
        _serve.serve(request_r, response_w, counted, vars(lambda_runtime))
        sys.stdout.close()
        sys.stdout = stdout
        os.close(response_w)
        for thread in threads:
            thread.join()
        os.close(request_r)
        os.close(response_r)
        (blocks, rss, *refs), (blocks_after, rss_after, *refs_after) = checkpoints
        print(count, blocks_after - blocks, rss_after - rss, refs == refs_after, flush=True)
""")


def test_no_leaks_per_invocation():
    done = subprocess.run([sys.executable, "-S", "-B", "-c", LEAK_CHECK, RUNTIME_DIR, SERVE_DIR],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        invocations, blocks, rss, same_refs = line.split()
        # After 20 % of the invocations nothing may grow with the rest.
        assert int(blocks) < 100 and int(rss) < 1 << 20 and same_refs == "True", line
