"""Churn: sandboxes created and destroyed per second, and spawn latency as the
number of live sandboxes grows.

Live sandboxes are `sleep 600` under Config(memory_mb=16, pids=4); at each
checkpoint a few /bin/true spawn-and-waits are timed beside the spawn of the
sleepers themselves.  Every sleeper is killed and reaped at the end, and the
suite checks that no process or cgroup of ours is left."""
from __future__ import annotations

import glob
import os
import time

import sandbox

from .scripts import spawn_bench


def rate(seconds: float) -> dict:
    """sandbox.run(/bin/true) back to back for `seconds`."""
    config = sandbox.Config()
    n, latencies = 0, []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        sandbox.run(["/bin/true"], config)
        latencies.append((time.perf_counter() - t) * 1e3)
        n += 1
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "sandboxes": n, "per_second": n / elapsed, "latency": spawn_bench().spread(latencies)}


def checkpoints(limit: int) -> list[int]:
    points = [p for p in (1, 10, 20, 50, 100, 250, 500, 750, 1000) if p <= limit]
    return points if points and points[-1] == limit else points + [limit]


def _sandbox_cgroups() -> int:
    """Sandbox cgroups under this process's parent directories (the manager's
    `sandbox-<pid>-<random>`), in the memory hierarchy (v1) or the unified one:
    a leak check."""
    pattern = f"sandbox-{os.getpid()}-*/*/"
    return sum(len(glob.glob(f"/sys/fs/cgroup/{h}/**/{pattern}", recursive=True)) for h in ("memory", "unified"))


def growth(limit: int, probes: int = 5, min_available_mib: int = 1024) -> dict:
    sb = spawn_bench()
    sleeper = sandbox.Config(memory_mb=16, pids=4)
    probe_config = sandbox.Config()
    live, rows, spawn_ms, cgroup_dirs = [], [], [], []
    stopped_early = None
    try:
        for point in checkpoints(limit):
            while len(live) < point:
                if len(live) % 50 == 0 and _available_mib() < min_available_mib:
                    stopped_early = f"stopped at {len(live)}: MemAvailable below {min_available_mib} MiB"
                    break
                t = time.perf_counter()
                box = sandbox.spawn(["sleep", "600"], sleeper, stdin=sandbox.DEVNULL)
                spawn_ms.append((time.perf_counter() - t) * 1e3)
                live.append(box)
                if box._cgroup is not None:   # benchmark-only peek: its directories, for the leak check
                    cgroup_dirs.extend(box._cgroup.dirs)
            if stopped_early:
                break
            probe = []
            for _ in range(probes):
                t = time.perf_counter()
                sandbox.spawn(["/bin/true"], probe_config, stdin=sandbox.DEVNULL).wait()
                probe.append((time.perf_counter() - t) * 1e3)
            recent = spawn_ms[-min(len(spawn_ms), 20):]
            rows.append({"live": len(live), "probe_spawn_wait": sb.spread(probe),
                         "sleeper_spawn_recent": sb.spread(recent), "mem_available_mib": _available_mib()})
    finally:
        start = time.perf_counter()
        for box in live:
            box.kill()
        for box in live:
            box.wait()
            box.close()
        teardown_s = time.perf_counter() - start
    leftovers = [b.pid for b in live if os.path.exists(f"/proc/{b.pid}")]
    return {"limit": limit, "reached": len(live), "stopped_early": stopped_early, "rows": rows,
            "teardown_seconds": teardown_s, "leftover_pids": leftovers,
            "cgroup_dirs": cgroup_dirs}


def _available_mib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(seconds: float, limit: int) -> dict:
    out = {"rate": rate(seconds)}
    before = _sandbox_cgroups()   # after the first spawns: the supervisor's pre-made spares exist by now
    out["growth"] = growth(limit)
    dirs = out["growth"].pop("cgroup_dirs")
    deadline = time.monotonic() + 5.0   # cgroups are removed after the reap, asynchronously
    while any(os.path.isdir(d) for d in dirs) and time.monotonic() < deadline:
        time.sleep(0.1)
    out["leak_check"] = {"sleeper_cgroups_checked": len(dirs),
                         "sleeper_cgroups_left": [d for d in dirs if os.path.isdir(d)],
                         "leftover_pids": out["growth"]["leftover_pids"],
                         # informational: the manager's spares and pre-made sandboxes per config stay
                         "sandbox_cgroups_before": before, "sandbox_cgroups_after": _sandbox_cgroups()}
    return out
