"""Ordinary handlers for tests/kernel/test_functions_runtime.py."""
import errno
import os
import sys
import time

counter = 0
STARTED = time.time()


def echo(event, context):
    return event


def warm(event, context):
    """A module-global counter and a /tmp file, both kept while warm."""
    global counter
    counter += 1
    with open("/tmp/warm.log", "a") as f:
        f.write(f"{context.aws_request_id}\n")
    with open("/tmp/warm.log") as f:
        seen = f.read().split()
    return {"counter": counter, "seen": seen}


def marks(event, context):
    """Reports the marks left in /tmp by earlier invocations, then leaves its own."""
    found = sorted(os.listdir("/tmp"))
    with open(f"/tmp/mark-{event['mark']}", "w") as f:
        f.write("x")
    return {"found": found, "version": context.function_version}


def timed(event, context):
    """Sleeps; reports when it started and ended (wall clock, not namespaced)."""
    start = time.time()
    time.sleep(event.get("sleep", 0.3))
    return {"start": start, "end": time.time(), "token": event.get("token")}


def tagged(event, context):
    """Names its function and echoes a token; reports when it ran."""
    start = time.time()
    time.sleep(0.002)
    return {"fn": os.environ["AWS_LAMBDA_FUNCTION_NAME"], "token": event["token"], "start": start,
            "end": time.time()}


def context_info(event, context):
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "client_context_is_none": context.client_context is None,
        "environ": dict(os.environ),
        "fastjson_c": getattr(sys.modules.get("_fastjson"), "__file__", None),
    }


def heap_kept(event, context):
    """kB of resident memory a 4 MiB block added, while held and after it was freed."""
    def rss_kb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    before = rss_kb()
    block = bytearray(4 << 20)   # zero-filled: every page touched
    grown = rss_kb() - before
    del block
    return {"grown": grown, "kept": rss_kb() - before}


def client_info(event, context):
    """Reads the client context and identity the way Lambda code does (awslambdaric's objects)."""
    cc = context.client_context
    identity = context.identity
    return {"custom": cc.custom, "env": cc.env, "client": cc.client,
            "identity_id": identity.cognito_identity_id, "identity_pool_id": identity.cognito_identity_pool_id}


def _try_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "ok"


def filesystem(event, context):
    def listing(path):
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))

    def readable(path):
        try:
            with open(path, "rb") as f:
                f.read(1)
            return True
        except OSError:
            return False

    return {
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
        "task_write": _try_write("/var/task/intruder.txt"),
        "task_existing_write": _try_write("/var/task/app.py"),
        "tmp_write": _try_write("/tmp/probe.txt"),
        "cwd": os.getcwd(),
        "root": listing("/root"), "home": listing("/home"), "etc": listing("/etc"),
        "shadow_readable": readable("/etc/shadow"),
        "marker": {path: os.path.exists(path) for path in event.get("markers", ())},
    }


def fail(event, context):
    raise ValueError(f"bad value {event.get('n')}")


def nested_fail(event, context):
    def inner():
        raise KeyError("missing")
    inner()


def exit3(event, context):
    sys.exit(3)


def hard_exit(event, context):
    os._exit(event.get("status", 3))


def hog(event, context):
    if event.get("ok"):
        return "fine"
    chunks = []
    while True:
        chunks.append(bytearray(16 << 20))  # touched: bytearray zero-fills


def sleep(event, context):
    time.sleep(event.get("s", 60))
    return "woke"


def big_response(event, context):
    return "x" * event["size"]


def unserializable(event, context):
    return {"value": object()}


def returns_set(event, context):
    return {1, 2}


def noisy(event, context):
    print("line one")
    print("to stderr", file=sys.stderr)
    sys.stdout.write("no newline at the end")
    return "ok"


def chatty(event, context):
    """Prints `size` bytes in lines, ending with a marker line."""
    line = "y" * 99 + "\n"
    for _ in range(event["size"] // 100):
        sys.stdout.write(line)
    print("LAST-LINE-MARKER")
    return "done"


def uses_logging(event, context):
    """Imports logging only when first invoked."""
    import logging

    logging.getLogger().setLevel(logging.INFO)
    logging.info("logged %s", event.get("n"))
    return "ok"
