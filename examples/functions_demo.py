"""Demo: Lambda-style functions in warm, isolated execution environments.

Run with `bash scripts/demo.sh` (after the isolation demo)."""
import base64
import json
import os
import tempfile
import threading
import time

import sandbox

HANDLERS = r'''
import os, time, signal
invocations = 0

def hello(event, context):
    global invocations
    invocations += 1
    with open("/tmp/seen", "a") as f:
        f.write(context.aws_request_id + "\n")
    print("hello", event.get("name"), "from pid", os.getpid(), "uid", os.getuid())
    return {"greeting": f"hello {event.get('name')}", "invocations": invocations,
            "tmp_lines": len(open("/tmp/seen").read().splitlines()),
            "remaining_ms": context.get_remaining_time_in_millis(),
            "etc_passwd_users": [l.split(":")[0] for l in open("/etc/passwd")],
            "can_write_code": os.access("/var/task/app.py", os.W_OK)}

def fails(event, context):
    raise ValueError("the order id is missing")

def hangs(event, context):
    while True:
        pass

def hog(event, context):
    blocks = []
    while True:
        blocks.append(bytearray(16 << 20))

def escapes(event, context):
    os.kill(1, signal.SIGKILL)       # try to take the runtime down with us
    os._exit(7)

def echo(event, context):
    return event

def slow(event, context):
    time.sleep(0.3)
    return os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
'''


def section(title):
    print(f"\n== {title}")


def main():
    code = tempfile.mkdtemp(prefix="demo-code-")
    with open(os.path.join(code, "app.py"), "w") as f:
        f.write(HANDLERS)
    with sandbox.Runtime() as rt:
        for name in ("hello", "fails", "hangs", "escapes", "slow", "echo"):
            rt.create_function(name, code, f"app.{name}", memory_mb=1769, timeout_s=2)
        rt.create_function("hog", code, "app.hog", memory_mb=128, timeout_s=5)

        section("a cold start, then warm invocations of one environment")
        for who in ("ada", "grace", "linus"):
            r = rt.invoke("hello", json.dumps({"name": who}).encode(), log_type="Tail")
            print(f"{r.duration_ms:7.2f} ms  init={r.init_duration_ms and round(r.init_duration_ms, 1)} ms  "
                  f"env={r.environment_id[:8]}  {r.payload.decode()[:120]}...")
        print("log tail of the last one:")
        print("  " + base64.b64decode(r.log_result).decode().replace("\n", "\n  "))

        section("failures come back in Lambda's shapes; the runtime keeps serving")
        for name in ("fails", "hangs", "hog", "escapes"):
            r = rt.invoke(name, b"{}")
            body = json.loads(r.payload)
            print(f"{name:8} function_error={r.function_error}  {body['errorType']}: {body['errorMessage'][:90]}")
        r = rt.invoke("hello", b'{"name": "after the storm"}')
        print(f"hello again: {json.loads(r.payload)['greeting']!r}, same warm environment: "
              f"{json.loads(r.payload)['invocations']} invocations")

        section("versions get their own environments")
        v1 = rt.publish_version("hello").version
        rt.update_function_configuration("hello", environment={"STAGE": "new"})
        for qualifier in (v1, None):
            r = rt.invoke("hello", b'{"name": "v"}', qualifier=qualifier)
            print(f"qualifier={qualifier or '$LATEST':8} executed={r.executed_version:8} env={r.environment_id[:8]} "
                  f"invocations={json.loads(r.payload)['invocations']}")

        section("4 concurrent callers get 4 environments")
        streams = []

        def call():
            streams.append(json.loads(rt.invoke("slow", b"{}").payload))

        threads = [threading.Thread(target=call) for _ in range(4)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"{len(set(streams))} distinct environments in {time.perf_counter() - start:.2f} s for 4 x 0.3 s")

        section("20,000 warm invocations of an echo handler, one caller")
        payload = b'{"name": "bench"}'
        rt.invoke("echo", payload)
        start = time.perf_counter()
        for _ in range(20_000):
            rt.invoke("echo", payload)
        elapsed = time.perf_counter() - start
        print(f"{20_000 / elapsed:,.0f} invocations/s, {elapsed * 50:.1f} us per round trip")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
