"""Spawn-and-wait cost of full isolation, against plain subprocess.run and
bubblewrap, measured interleaved in one run so machine drift cancels.

    python benchmarks/spawn_bench.py [--rounds 200] [--ballast-mb 0] [--json out.json]

Each round runs every (tool, payload) pair once, in a rotating order; ratios are
computed round by round (sandbox time / baseline time of the same round) and
reported as medians with their p10-p90 spread.  Payloads: /bin/true and the real
Python interpreter (`-c pass`, resolved through the pyenv shim).

--ballast-mb N first grows this process by N MiB of touched memory, like a
supervisor that holds many functions' state: a clone copies the page tables of
its parent, so spawn costs that grow with it show up here (pre-made sandboxes
exec the small shell program early for that reason; docs/performance.md)."""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import sandbox  # noqa: E402
from sandbox.host import detect  # noqa: E402

PYTHON = os.path.realpath(sys.executable)


def bwrap_argv(payload):
    host = detect()
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--ro-bind", "/usr", "/usr"]
    for name, target in host.usr_merged.items():
        argv += ["--symlink", target, "/" + name] if target else ["--ro-bind", "/" + name, "/" + name]
    for prefix in host.python.prefixes:
        argv += ["--ro-bind", prefix, prefix]
    return argv + ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--"] + payload


def make_runners(payload):
    config = sandbox.Config(disable=frozenset(os.environ.get("BENCH_DISABLE", "").split(",")) - {""})
    runners = {
        "subprocess": lambda: subprocess.run(payload, stdin=subprocess.DEVNULL),
        "sandbox": lambda: sandbox.spawn(payload, config, stdin=sandbox.DEVNULL).wait(),
    }
    if shutil.which("bwrap"):
        argv = bwrap_argv(payload)
        runners["bwrap"] = lambda: subprocess.run(argv, stdin=subprocess.DEVNULL)
    return runners


def interleave(runners, rounds, warmup):
    """Run every runner once per round, in an order that rotates each round, so
    machine drift is shared; return {name: [ms per call]} without the warm-up."""
    names = list(runners)
    times = {n: [] for n in names}
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            start = time.perf_counter()
            runners[name]()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[name].append(elapsed * 1e3)
    return times


def measure(payloads, rounds, warmup):
    return {label: interleave(make_runners(payload), rounds, warmup) for label, payload in payloads.items()}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def spread(ts):
    """Median and p10-p90 of samples in ms."""
    return {"median_ms": statistics.median(ts), "p10_ms": pct(ts, 0.1), "p90_ms": pct(ts, 0.9), "n": len(ts)}


def paired_ratio(a, b):
    """a / b computed round by round (the two lists come from the same
    interleaved rounds): median with its p10-p90 spread, and the median delta."""
    ratios = [x / y for x, y in zip(a, b)]
    deltas = [x - y for x, y in zip(a, b)]
    return {"ratio_median": statistics.median(ratios), "ratio_p10": pct(ratios, 0.1),
            "ratio_p90": pct(ratios, 0.9), "delta_median_ms": statistics.median(deltas)}


def summarize(results):
    rows = []
    for label, times in results.items():
        for name, ts in times.items():
            rows.append({"payload": label, "tool": name, **spread(ts)})
        for base in ("subprocess", "bwrap"):
            if base in times:
                rows.append({"payload": label, "tool": f"sandbox / {base}",
                             **paired_ratio(times["sandbox"], times[base])})
    return rows


def main(argv=None):
    if os.environ.get("BENCH_HANG_DUMP"):
        faulthandler.dump_traceback_later(int(os.environ["BENCH_HANG_DUMP"]), exit=True)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--ballast-mb", type=int, default=0, help="grow this process by N MiB first")
    ap.add_argument("--json", help="write raw results and summary here")
    args = ap.parse_args(argv)
    ballast = bytearray(args.ballast_mb << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])   # touched: resident, as a real supervisor's heap
    payloads = {"/bin/true": ["/bin/true"], "python -c pass": [PYTHON, "-c", "pass"]}
    results = measure(payloads, args.rounds, args.warmup)
    rows = summarize(results)
    print(f"spawn-and-wait, {args.rounds} interleaved rounds (+{args.warmup} warm-up), kernel {detect().kernel}, "
          f"supervisor ballast {args.ballast_mb} MiB")
    for row in rows:
        if "median_ms" in row:
            print(f"  {row['payload']:16} {row['tool']:12} median {row['median_ms']:7.3f} ms   "
                  f"p10-p90 {row['p10_ms']:.3f}-{row['p90_ms']:.3f}")
        else:
            print(f"  {row['payload']:16} {row['tool']:22} ratio {row['ratio_median']:.2f}x "
                  f"(p10-p90 {row['ratio_p10']:.2f}-{row['ratio_p90']:.2f}), delta {row['delta_median_ms']:+.3f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": rows, "raw_ms": results, "ballast_mb": args.ballast_mb}, f, indent=1)
    del ballast
    return 0


if __name__ == "__main__":
    sys.exit(main())
