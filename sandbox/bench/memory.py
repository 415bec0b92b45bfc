"""Memory per idle execution environment, and how many idle environments fit.

N environments of one echo function are kept initialized with provisioned
concurrency, then the PSS (/proc/<pid>/smaps_rollup) of every sandbox
process - the sandbox's init and the runtime under it - is summed.  PSS
shares pages fairly among the processes mapping them, so the per-environment
figure already charges each one its part of the shared interpreter pages.
How many fit in the host's free memory is an extrapolation from that figure."""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

import sandbox

HANDLER = "def handler(event, context):\n    return event\n"


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def tree(pid: int) -> list[int]:
    """pid and its descendants (via /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            pass
    return out


def mem_available_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def provision(rt, name: str, version: str, environments: int, timeout_s: float,
              poll_s: float = 0.05) -> tuple[str, float]:
    """Ask for `environments` provisioned environments of name:version and wait
    until the provisioning ends; (its status, seconds it took)."""
    start = time.perf_counter()
    rt.put_provisioned_concurrency_config(name, version, environments)
    status = "IN_PROGRESS"
    while time.perf_counter() - start < timeout_s:
        status = rt.get_provisioned_concurrency_config(name, version)["Status"]
        if status != "IN_PROGRESS":
            break
        time.sleep(poll_s)
    return status, time.perf_counter() - start


def _environments(rt, name, qualifier):
    pool = rt._pool_for(name, qualifier)[1]   # benchmark-only peek, as invoke_bench.env_pid does
    return pool.busy() + list(pool._idle)


def measure(environments: int, memory_mb: int = 128, ready_timeout_s: float = 120.0) -> dict:
    code = tempfile.mkdtemp(prefix="sbx-bench-mem-")
    with open(os.path.join(code, "app.py"), "w") as f:
        f.write(HANDLER)
    available_before = mem_available_kib()
    rt = sandbox.Runtime(max_environments=environments + 2)
    try:
        rt.create_function("idle", code, "app.handler", memory_mb=memory_mb)
        version = rt.publish_version("idle").version
        status, ready_s = provision(rt, "idle", version, environments, ready_timeout_s)
        time.sleep(0.2)   # let the last ones settle into idle
        envs = _environments(rt, "idle", version)
        per_env, processes = [], []
        for env in envs:
            pids = tree(env._box.pid)
            processes.append(len(pids))
            per_env.append(sum(pss_kib(p) for p in pids))
    finally:
        rt.close()
        shutil.rmtree(code, ignore_errors=True)
    pss_mib = statistics.median(per_env) / 1024 if per_env else 0.0
    return {"environments_requested": environments, "environments_measured": len(envs), "status": status,
            "provision_seconds": ready_s, "memory_mb_limit": memory_mb,
            "processes_per_environment": statistics.median(processes) if processes else 0,
            "pss_mib_per_environment": {"median": pss_mib,
                                        "min": min(per_env) / 1024 if per_env else 0.0,
                                        "max": max(per_env) / 1024 if per_env else 0.0},
            "pss_mib_total": sum(per_env) / 1024,
            "mem_available_mib_before": available_before / 1024,
            "fit_in_available_memory_extrapolated": int(available_before / 1024 / pss_mib) if pss_mib else None,
            "note": "fit = MemAvailable before the run / median PSS per idle environment: an extrapolation "
                    "(PSS excludes page tables and other kernel memory such as namespaces)"}
