"""Per-syscall cost of the default seccomp policy, measured from inside a sandbox.

sandbox/seccomp/bench.py times a policy in a forked host child (no sandbox
around it); here a tiny C loop of getppid() is compiled with gcc at run time
and run in two sandboxes that differ only in the seccomp layer, interleaved
process by process; each process reports its best ns per call of several
batches."""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile

import sandbox

from .scripts import spawn_bench

C_LOOP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 200000;
    int batches = argc > 2 ? atoi(argv[2]) : 5;
    double best = 1e18;
    for (int b = 0; b < batches; b++) {
        long long start = now_ns();
        for (long i = 0; i < calls; i++) syscall(SYS_getppid);   /* a real syscall, never cached by libc */
        double per = (double)(now_ns() - start) / calls;
        if (per < best) best = per;
    }
    printf("%.2f\n", best);
    return 0;
}
"""


def build(workdir: str) -> str:
    """Compile the loop into workdir; return the binary's path."""
    src, binary = os.path.join(workdir, "loop.c"), os.path.join(workdir, "getppid_loop")
    with open(src, "w") as f:
        f.write(C_LOOP)
    subprocess.run(["gcc", "-O2", "-o", binary, src], check=True, capture_output=True)
    os.chmod(workdir, 0o755)   # the sandbox's uid reads it through a bind
    return binary


def measure(processes: int, calls: int, batches: int = 5) -> dict:
    if not shutil.which("gcc"):
        return {"skipped": "gcc not installed"}
    sb = spawn_bench()
    workdir = tempfile.mkdtemp(prefix="sbx-bench-seccomp-")
    try:
        build(workdir)
        bind = sandbox.Bind(workdir, "/bench")
        configs = {"seccomp off": sandbox.Config(binds=(bind,), disable=frozenset({"seccomp"})),
                   "default policy": sandbox.Config(binds=(bind,))}
        argv = ["/bench/getppid_loop", str(calls), str(batches)]
        ns = {name: [] for name in configs}
        for i in range(processes):
            order = list(configs) if i % 2 == 0 else list(configs)[::-1]
            for name in order:
                result = sandbox.run(argv, configs[name])
                if result.exit_code != 0:
                    raise RuntimeError(f"seccomp loop failed under {name}: {result}")
                ns[name].append(float(result.stdout))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    off, on = ns["seccomp off"], ns["default policy"]
    return {"syscall": "getppid", "calls_per_batch": calls, "batches": batches, "processes": processes,
            "ns_per_call": {k: {"median": statistics.median(v), "p10": sb.pct(v, 0.1), "p90": sb.pct(v, 0.9)}
                            for k, v in ns.items()},
            "added_ns_median": statistics.median([b - a for a, b in zip(off, on)]),
            "ratio": {k.replace("delta_median_ms", "delta_median_ns"): v
                      for k, v in sb.paired_ratio(on, off).items()},
            "raw_ns": ns}
