"""HTTP Invoke latency and throughput of `sandbox serve`, beside a minimal
server of the same framework measured in the same run.

    python benchmarks/http_bench.py [--quick] [--json out.json]
                                    [--connections 1,4] [--seconds 3] [--rounds 3]

The server under test is `python -m sandbox serve` (http.server's
ThreadingHTTPServer, one thread per connection, SigV4 verification, the
Lambda routes) in front of a Runtime whose echo function has one warm
provisioned environment per connection.  The baseline is a
ThreadingHTTPServer of the same interpreter whose handler reads the body and
returns a fixed 200 JSON body: the cost of the framework alone.  Each runs in
its own process.

The load generator is one process per connection (the client's GIL is then
not the bottleneck), each with one keep-alive HTTP/1.1 connection (http.client)
sending the same SigV4-signed request (signed by botocore before each block,
as the server checks the signature but keeps no replay cache) back to back,
closed loop, for --seconds after a warm-up.  Rounds alternate baseline and
sandbox; every ratio (sandbox / baseline) is taken within a round, and the
median over rounds is reported.  Measured: Invoke with a 100-byte JSON payload,
and GetFunction (the HTTP, signature and routing cost without a sandbox).
All of this shares the machine's CPUs with the server: throughput is what a
client on the same host gets.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PYTHON = os.path.realpath(sys.executable)
ACCESS, SECRET = "AKIABENCH00000000001", "bench-secret"
MEMORY_MB = 1769           # a whole vCPU under Lambda's proportional rule
PAYLOAD = json.dumps({"pad": "x" * 88}).encode()     # 100 bytes
ECHO = "def handler(event, context):\n    return event\n"
BASELINE_SERVER = r"""
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = b'{"pad": "' + b"x" * 88 + b'"}'
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True      # as sandbox serve: else each response waits ~40 ms for a delayed ACK
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    do_GET = do_POST
    def log_message(self, *args):
        pass
class Server(ThreadingHTTPServer):
    daemon_threads = True
server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


# -- servers ---------------------------------------------------------------------------------------
def start_baseline() -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([PYTHON, "-c", BASELINE_SERVER], stdout=subprocess.PIPE, text=True)
    return process, int(process.stdout.readline())


def start_sandbox(workdir: str, environments: int) -> tuple[subprocess.Popen, int]:
    credentials = os.path.join(workdir, "credentials.json")
    with open(os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        json.dump({ACCESS: {"secret": SECRET, "principal": "arn:aws:iam::123456789012:user/bench"}}, f)
    process = subprocess.Popen([PYTHON, "-m", "sandbox", "serve", "--port", "0", "--credentials", credentials],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
    output = ""
    while True:
        line = process.stderr.readline()
        if not line:
            raise RuntimeError(f"sandbox serve did not start:\n{output}")
        output += line
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if found:
            break
    port = int(found.group(1))
    _prepare_function(port, environments)
    return process, port


def _prepare_function(port: int, environments: int) -> None:
    """An echo function; version 1 with `environments` provisioned (started
    one at a time by the runtime: ready before the clock starts)."""
    import io
    import zipfile

    import boto3
    from botocore.config import Config

    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("app.py", ECHO)
    lam = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
                       config=Config(retries={"total_max_attempts": 1}, read_timeout=120))
    lam.create_function(FunctionName="echo", Runtime="python3", Role="arn:aws:iam::123456789012:role/bench",
                        Handler="app.handler", Code={"ZipFile": code.getvalue()}, MemorySize=MEMORY_MB)
    lam.publish_version(FunctionName="echo")
    lam.put_provisioned_concurrency_config(FunctionName="echo", Qualifier="1",
                                           ProvisionedConcurrentExecutions=environments)
    deadline = time.monotonic() + 120
    while lam.get_provisioned_concurrency_config(FunctionName="echo", Qualifier="1")["Status"] != "READY":
        if time.monotonic() > deadline:
            raise RuntimeError("the provisioned environments did not become ready in 120 s")
        time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


# -- the load generator -----------------------------------------------------------------------------
REQUESTS = {   # name: (method, path, body, expected status)
    "invoke": ("POST", "/2015-03-31/functions/echo/invocations?Qualifier=1", PAYLOAD, 200),
    "get_function": ("GET", "/2015-03-31/functions/echo", b"", 200),
}


def signed_headers(port: int, method: str, path: str, body: bytes) -> dict:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=f"http://127.0.0.1:{port}{path}", data=body)
    SigV4Auth(Credentials(ACCESS, SECRET), "lambda", "us-east-1").add_auth(request)
    return {"Host": f"127.0.0.1:{port}", **dict(request.headers.items())}


def _client(port, method, path, body, headers, expected, start_at, stop_at, results):
    """One keep-alive connection, closed loop: warm up until start_at, then
    record each request's latency until stop_at."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, errors = [], 0
    try:
        while True:
            began = time.monotonic()
            if began >= stop_at:
                break
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            response.read()
            if response.status != expected:
                errors += 1
            if began >= start_at:
                latencies.append(time.monotonic() - began)
    finally:
        connection.close()
    results.put((latencies, errors))


def measure(port: int, request: str, connections: int, seconds: float) -> dict:
    method, path, body, expected = REQUESTS[request]
    headers = signed_headers(port, method, path, body)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.monotonic() + 0.3 + 0.05 * connections      # warm-up
    stop_at = start_at + seconds
    workers = [context.Process(target=_client, args=(port, method, path, body, headers, expected, start_at,
                                                     stop_at, results)) for _ in range(connections)]
    for worker in workers:
        worker.start()
    collected = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join(30)
    latencies = sorted(x for lat, _ in collected for x in lat)
    errors = sum(e for _, e in collected)
    if errors or not latencies:
        raise RuntimeError(f"{request}: {errors} responses had an unexpected status, {len(latencies)} succeeded")
    return {"p50_us": _percentile(latencies, 50) * 1e6, "p99_us": _percentile(latencies, 99) * 1e6,
            "per_s": len(latencies) / seconds, "requests": len(latencies)}


def _percentile(sorted_values: list, p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))]


# -- the run ----------------------------------------------------------------------------------------
def run(connections: list[int], seconds: float, rounds: int) -> dict:
    workdir = tempfile.mkdtemp(prefix="http-bench-")
    baseline = sandbox = None
    try:
        baseline, baseline_port = start_baseline()
        sandbox, sandbox_port = start_sandbox(workdir, max(connections))
        cases = [("invoke", c) for c in connections] + [("get_function", c) for c in connections]
        samples = {case: {"baseline": [], "sandbox": []} for case in cases}
        for _ in range(rounds):
            for case in cases:
                samples[case]["baseline"].append(measure(baseline_port, case[0], case[1], seconds))
                samples[case]["sandbox"].append(measure(sandbox_port, case[0], case[1], seconds))
        return {f"{request}_c{n}": summarize(samples[(request, n)]) for request, n in cases}
    finally:
        for process in (sandbox, baseline):
            if process is not None:
                stop(process)
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def summarize(pair: dict) -> dict:
    """Medians over rounds, and ratios (sandbox / baseline) taken round by round."""
    out = {}
    for side in ("baseline", "sandbox"):
        out[side] = {k: statistics.median(s[k] for s in pair[side]) for k in ("p50_us", "p99_us", "per_s")}
    for key, name in (("p50_us", "ratio_p50"), ("p99_us", "ratio_p99"), ("per_s", "ratio_throughput")):
        out[name] = statistics.median(s[key] / b[key] for s, b in zip(pair["sandbox"], pair["baseline"]))
    return out


def report(results: dict) -> str:
    lines = ["| request | connections | baseline p50 / p99 (us) | sandbox p50 / p99 (us) | p50 ratio | p99 ratio | "
             "baseline req/s | sandbox req/s | throughput ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        request, connections = name.rsplit("_c", 1)
        b, s = row["baseline"], row["sandbox"]
        lines.append(f"| {request} | {connections} | {b['p50_us']:.0f} / {b['p99_us']:.0f} | "
                     f"{s['p50_us']:.0f} / {s['p99_us']:.0f} | {row['ratio_p50']:.2f}x | {row['ratio_p99']:.2f}x | "
                     f"{b['per_s']:.0f} | {s['per_s']:.0f} | {row['ratio_throughput']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (CI): 1 and 2 connections, short blocks")
    parser.add_argument("--connections", default="1,4", help="comma-separated connection counts (default 1,4)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per block (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    connections = [1, 2] if args.quick else [int(c) for c in args.connections.split(",")]
    seconds, rounds = (0.5, 1) if args.quick else (args.seconds, args.rounds)
    started = time.monotonic()
    results = run(connections, seconds, rounds)
    print(f"sandbox serve vs a bare ThreadingHTTPServer, loopback, {os.cpu_count()} CPUs, {rounds} round(s) of "
          f"{seconds:g} s per case ({time.monotonic() - started:.0f} s in all)")
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
