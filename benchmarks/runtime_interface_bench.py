"""Warm invoke latency through the Lambda Runtime API inside the sandbox,
beside our native runtime and raw loopback HTTP round trips measured in the
same run.

    python benchmarks/runtime_interface_bench.py [--quick] [--json out.json] [--no-awslambdaric]

Measures (all echo a 100 B JSON event, 1,769 MB = one vCPU per environment):

  native          sandbox.Runtime, runtime python3.11 (framed pipes)
  socket          runtime provided.al2023, a minimal Python runtime on one
                  keep-alive socket (the Runtime API's own cost)
  awslambdaric    runtime provided.al2023, `python3 -m awslambdaric app.handler`
                  (installed from PyPI with pip --target into a temporary dir)
  curl            runtime provided.al2023, a /bin/sh bootstrap that runs two
                  curl processes per invocation (AWS's tutorial shape)
  http_raw        baseline: one HTTP/1.1 keep-alive round trip on loopback,
                  Python on plain sockets at both ends (a minimal one-thread
                  echo server process)
  curl_process    baseline: one `curl` process doing one request to that server
                  (what the curl bootstrap pays twice per invocation)

Samples are interleaved in blocks (each measure runs per_block times per block,
the order alternating), so drift hits all alike.  Ratios are of medians.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import sandbox  # noqa: E402
from invoke_bench import pct, timed  # noqa: E402  (this directory: run as a script)

PYTHON = os.path.realpath(sys.executable)
MEMORY_MB = 1769
PAYLOAD = json.dumps({"data": "x" * 88}).encode()   # 100 B
ECHO = "def handler(event, context):\n    return event\n"
CURL_BOOTSTRAP = r"""#!/bin/sh
API=http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime
while true; do
  H=$(mktemp)
  EVENT=$(curl -sS -D "$H" $API/invocation/next)
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$H"
  curl -sS -o /dev/null --data-binary "$EVENT" $API/invocation/$ID/response
done
"""
# The least a runtime can do over the Runtime API: one keep-alive connection,
# prepared requests, no JSON (the event is echoed as the response).  What the
# API costs beside the native runtime's pipes, without a client library's work.
SOCKET_RUNTIME = r"""
import os, socket
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
sock = socket.create_connection((host, int(port)))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
NEXT = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
buf = b""


def response():
    global buf
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, buf = buf.partition(b"\r\n\r\n")
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(headers[b"Content-Length"])
    while len(buf) < length:
        buf += sock.recv(65536)
    body, buf = buf[:length], buf[length:]
    return headers, body


while True:
    sock.sendall(NEXT)
    headers, event = response()
    rid = headers[b"Lambda-Runtime-Aws-Request-Id"]
    sock.sendall(b"POST /2018-06-01/runtime/invocation/" + rid + b"/response HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(event) + event)
    response()
"""
# A minimal HTTP/1.1 echo server, one thread, non-blocking: the floor for one
# loopback HTTP round trip in Python (curl's connections are served too).
HTTP_SERVER = r"""
import selectors, socket
sel = selectors.DefaultSelector()
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8); srv.setblocking(False)
sel.register(srv, selectors.EVENT_READ)
print(srv.getsockname()[1], flush=True)
buffers = {}
while True:
    for key, _ in sel.select():
        if key.fileobj is srv:
            conn, _ = srv.accept()
            conn.setblocking(True)
            sel.register(conn, selectors.EVENT_READ)
            buffers[conn] = b""
            continue
        conn = key.fileobj
        data = conn.recv(65536)
        if not data:
            sel.unregister(conn); del buffers[conn]; conn.close()
            continue
        buf = buffers[conn] + data
        while b"\r\n\r\n" in buf:
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(rest) < length:
                break
            body, buf = rest[:length], rest[length:]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        buffers[conn] = buf
"""


def summary_us(samples):
    return {"p50_us": pct(samples, 0.5) * 1e6, "p99_us": pct(samples, 0.99) * 1e6, "n": len(samples)}


def install_awslambdaric(target: str) -> str | None:
    done = subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", target,
                           "awslambdaric==4.2.2"], capture_output=True, text=True)
    return None if done.returncode == 0 else done.stderr.strip()[-300:]


def write_code(path: str, files: dict) -> str:
    os.makedirs(path, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
        if name == "bootstrap":
            os.chmod(os.path.join(path, name), 0o755)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples (a smoke run)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--no-awslambdaric", action="store_true", help="skip the awslambdaric measure (no PyPI)")
    args = parser.parse_args()
    blocks, per_block, curl_per_block = (2, 20, 3) if args.quick else (10, 200, 20)

    work = tempfile.mkdtemp(prefix="ri-bench-")
    server = subprocess.Popen([PYTHON, "-S", "-c", HTTP_SERVER], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    client = RawClient(port)
    results = {"payload_bytes": len(PAYLOAD), "memory_mb": MEMORY_MB, "cpus": os.cpu_count(), "notes": []}
    rt = sandbox.Runtime()
    try:
        rt.create_function("native", write_code(f"{work}/native", {"app.py": ECHO}), "app.handler",
                           runtime="python3.11", memory_mb=MEMORY_MB)
        rt.create_function("curl", write_code(f"{work}/curl", {"bootstrap": CURL_BOOTSTRAP}), "x.y",
                           runtime="provided.al2023", memory_mb=MEMORY_MB)
        rt.create_function("socket", write_code(f"{work}/socket", {
            "bootstrap": "#!/bin/sh\nexec python3 -S /var/task/runtime.py\n", "runtime.py": SOCKET_RUNTIME}),
            "x.y", runtime="provided.al2023", memory_mb=MEMORY_MB)
        measures = {
            "native": (lambda: rt.invoke("native", PAYLOAD), per_block),
            "socket": (lambda: rt.invoke("socket", PAYLOAD), per_block),
            "curl": (lambda: rt.invoke("curl", PAYLOAD), curl_per_block),
            "http_raw": (lambda: http_round_trip(client), per_block),
            "curl_process": (lambda: subprocess.run(["curl", "-sS", "-o", "/dev/null", "--data-binary", PAYLOAD,
                                                     f"http://127.0.0.1:{port}/"], check=True), curl_per_block),
        }
        problem = "skipped (--no-awslambdaric)" if args.no_awslambdaric else install_awslambdaric(f"{work}/ric")
        if problem is None:
            shutil.copytree(f"{work}/ric", f"{work}/awslambdaric")
            write_code(f"{work}/awslambdaric", {"app.py": ECHO,
                                                "bootstrap": '#!/bin/sh\nexec python3 -m awslambdaric "$_HANDLER"\n'})
            rt.create_function("awslambdaric", f"{work}/awslambdaric", "app.handler", runtime="provided.al2023",
                               memory_mb=MEMORY_MB)
            measures["awslambdaric"] = (lambda: rt.invoke("awslambdaric", PAYLOAD), per_block)
        else:
            results["notes"].append(f"awslambdaric not measured: {problem}")
        for name in measures:
            if name in ("native", "socket", "curl", "awslambdaric"):
                out = rt.invoke(name, PAYLOAD)   # warm up: init, and check it echoes
                assert out.function_error is None and json.loads(out.payload) == json.loads(PAYLOAD), out.payload
        samples = {name: [] for name in measures}
        ratios = {name: [] for name in measures if name != "http_raw"}
        for b in range(blocks):
            order = list(measures) if b % 2 == 0 else list(reversed(measures))
            block = {}
            for name in order:
                fn, n = measures[name]
                block[name] = timed(fn, n)
                samples[name] += block[name]
            for name in ratios:
                ratios[name].append(statistics.median(block[name]) / statistics.median(block["http_raw"]))
        for name in measures:
            results[name] = summary_us(samples[name])
            if name in ratios:
                results[name]["ratio_p50_vs_http_raw"] = statistics.median(ratios[name])
        for name in ("socket", "awslambdaric", "curl"):
            if name in results:
                results[name]["ratio_p50_vs_native"] = results[name]["p50_us"] / results["native"]["p50_us"]
    finally:
        rt.close()
        client.close()
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


class RawClient:
    """A keep-alive HTTP/1.1 client on a plain socket: a prepared request,
    the response read by its Content-Length (no parsing library in the way)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(PAYLOAD)
                        + PAYLOAD)
        self.expect = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(PAYLOAD) + PAYLOAD

    def round_trip(self):
        self.sock.sendall(self.request)
        got = b""
        while len(got) < len(self.expect):
            got += self.sock.recv(65536)
        assert got == self.expect

    def close(self):
        self.sock.close()


def http_round_trip(client):
    client.round_trip()


def report(results) -> str:
    lines = [f"warm invoke, {results['payload_bytes']} B event, {results['memory_mb']} MB, {results['cpus']} CPUs",
             f"{'measure':<14}{'p50 us':>10}{'p99 us':>10}{'x http_raw':>12}{'x native':>10}{'n':>7}"]
    for name in ("http_raw", "native", "socket", "awslambdaric", "curl_process", "curl"):
        r = results.get(name)
        if r is None:
            continue
        raw = f"{r['ratio_p50_vs_http_raw']:.2f}" if "ratio_p50_vs_http_raw" in r else "1"
        native = f"{r['ratio_p50_vs_native']:.2f}" if "ratio_p50_vs_native" in r else ""
        lines.append(f"{name:<14}{r['p50_us']:>10.0f}{r['p99_us']:>10.0f}{raw:>12}{native:>10}{r['n']:>7}")
    return "\n".join(lines + results["notes"])


if __name__ == "__main__":
    main()
