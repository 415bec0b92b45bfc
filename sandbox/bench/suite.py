"""The suite: every measure in order, with the sizes of a quick (CI smoke,
< ~60 s) or a full run (< 15 min on a 2-core VM)."""
from __future__ import annotations

import datetime
import os
import platform
import time

from . import churn, layers, memory, report, seccomp_cost, zygote
from .scripts import invoke_bench

SIZES = {
    True: {"layer_rounds": 5, "layer_warmup": 1, "invoke": "QUICK", "seccomp_processes": 4,
           "seccomp_calls": 100_000, "environments": 10, "churn_seconds": 2.0, "live": 20,
           "zygote_rounds": 3, "zygote_environments": 10, "zygote_live": 10},
    False: {"layer_rounds": 100, "layer_warmup": 10, "invoke": "FULL", "seccomp_processes": 20,
            "seccomp_calls": 300_000, "environments": 100, "churn_seconds": 10.0, "live": 1000,
            "zygote_rounds": 20, "zygote_environments": 100, "zygote_live": 1000},
}
SECTIONS = ("layers", "invoke", "seccomp", "memory", "churn", "zygote")


def machine() -> dict:
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) / 1024
    cgroup = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1"
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": os.uname().release, "cgroup": cgroup,
            "mem_total_mib": total, "python_version": platform.python_version(),
            "python": invoke_bench().PYTHON, "date": datetime.datetime.now().isoformat(timespec="seconds")}


def run(quick: bool, log=print) -> dict:
    size = SIZES[quick]
    inv = invoke_bench()
    start = time.perf_counter()
    results = {"quick": quick, "sizes": size, "machine": machine()}
    steps = (
        ("layers", lambda: layers.measure(size["layer_rounds"], size["layer_warmup"])),
        ("invoke", lambda: inv.run(**getattr(inv, size["invoke"]))),
        ("seccomp", lambda: seccomp_cost.measure(size["seccomp_processes"], size["seccomp_calls"])),
        ("memory", lambda: memory.measure(size["environments"])),
        ("churn", lambda: churn.measure(size["churn_seconds"], size["live"])),
        ("zygote", lambda: zygote.measure(size["zygote_rounds"], size["zygote_environments"], size["zygote_live"])),
    )
    for name, step in steps:
        t = time.perf_counter()
        results[name] = step()
        log(f"sandbox bench: {name} done in {time.perf_counter() - t:.1f} s")
    results["seconds"] = time.perf_counter() - start
    return results


def run_and_write(quick: bool, out_dir: str, log=print) -> dict:
    results = run(quick, log)
    return report.write(results, out_dir)
