"""Zygotes (docs/zygotes.md): cold starts of environments forked from a
zygote beside fresh ones and a bare interpreter start, PSS per idle zygote-made
environment, and N of them idle at once.

Cold start = create -> first response: a version whose idle environment was
just ended is invoked, so the call starts another environment of the same
version (and Config: pre-made sandboxes or pre-forked children are used, on
both sides) and runs the handler.  Rounds interleave, in this order:
`python -c pass`, then a fresh and a zygote-made environment of an echo
handler, then the same for a handler that imports numpy (its zygote preloads
numpy: Runtime(zygotes=("numpy",))).  Speed-ups are python time / environment
time, round by round."""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time

import sandbox
from sandbox.zygote import close_service, service_for

from .memory import mem_available_kib, provision, pss_kib, tree
from .scripts import invoke_bench

ECHO = "def handler(event, context):\n    return event\n"
IMPORT_NUMPY = "python -c 'import numpy'"
NUMPY = "import numpy\n\n\ndef handler(event, context):\n    return {'sum': int(numpy.arange(10).sum())}\n"


def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def _summary(ms: list) -> dict:
    return {"p50_ms": statistics.median(ms), "p10_ms": _pct(ms, 0.1), "p90_ms": _pct(ms, 0.9)}


def _speedup(base: list, other: list) -> dict:
    ratios = [b / o for b, o in zip(base, other)]
    return {"median": statistics.median(ratios), "p10": _pct(ratios, 0.1), "p90": _pct(ratios, 0.9)}


def _numpy_available(python: str) -> bool:
    return subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode == 0


def _code(text: str) -> str:
    path = tempfile.mkdtemp(prefix="sbx-bench-zygote-")
    with open(os.path.join(path, "app.py"), "w") as f:
        f.write(text)
    return path


def _new_environment_ms(rt, name: str) -> float:
    # End the version's idle environment (benchmark-only peek, as memory.py
    # does), so the call starts another one of the same version and Config.
    pool = rt._pool_for(name, None)[1]
    for env in pool.take_idle(lambda env: True):
        rt._manager.destroy(env)
    t = time.perf_counter()
    result = rt.invoke(name, b"{}")
    elapsed = (time.perf_counter() - t) * 1e3
    if result.function_error:
        raise RuntimeError(f"{name}: {result.payload[:500]!r}")
    return elapsed


def cold_starts(rounds: int, memory_mb: int) -> dict:
    python = invoke_bench().PYTHON
    numpy = _numpy_available(python)
    echo, heavy = _code(ECHO), _code(NUMPY)
    sup = sandbox.Supervisor()
    runtimes = {"fresh": sandbox.Runtime(supervisor=sup), "zygote": sandbox.Runtime(supervisor=sup, zygotes=True)}
    if numpy:
        runtimes["zygote_numpy"] = sandbox.Runtime(supervisor=sup, zygotes=("numpy",))
    cases = {"echo, fresh": ("fresh", echo), "echo, zygote": ("zygote", echo)}
    if numpy:
        cases.update({"numpy, fresh": ("fresh", heavy), "numpy, zygote (numpy preloaded)": ("zygote_numpy", heavy)})
    times: dict = {"python -c pass": [], **{case: [] for case in cases}}
    if numpy:
        # The heavy handler's own baseline: a bare interpreter that imports the same package.
        times[IMPORT_NUMPY] = []
    try:
        for case, (rt_name, code) in cases.items():
            rt = runtimes[rt_name]
            fn = f"z-{len(rt.list_functions())}"
            rt.create_function(fn, code, "app.handler", memory_mb=memory_mb)
            rt.invoke(fn, b"{}")   # starts the zygote (once) and warms the version
            cases[case] = (rt, fn)
        for i in range(rounds):
            t = time.perf_counter()
            subprocess.run([python, "-c", "pass"], check=True)
            times["python -c pass"].append((time.perf_counter() - t) * 1e3)
            if numpy:
                t = time.perf_counter()
                subprocess.run([python, "-c", "import numpy"], check=True)
                times[IMPORT_NUMPY].append((time.perf_counter() - t) * 1e3)
            for case, (rt, fn) in cases.items():
                times[case].append(_new_environment_ms(rt, fn))
    finally:
        for rt in runtimes.values():
            rt.close()
        close_service(sup)
        sup.close()
        shutil.rmtree(echo, ignore_errors=True)
        shutil.rmtree(heavy, ignore_errors=True)
    base = times["python -c pass"]
    baselines = ("python -c pass", IMPORT_NUMPY)
    return {"rounds": rounds, "memory_mb": memory_mb, "numpy": numpy,
            "times": {k: _summary(v) for k, v in times.items()},
            "speedup_vs_python": {k: _speedup(base, v) for k, v in times.items() if k not in baselines},
            # numpy handlers against the bare interpreter doing the same import
            "speedup_vs_python_import": {k: _speedup(times[IMPORT_NUMPY], v) for k, v in times.items()
                                         if numpy and k.startswith("numpy,")},
            "samples_ms": times}


def idle(environments: int, memory_mb: int = 128, ready_timeout_s: float = 600.0) -> dict:
    """N provisioned (idle) zygote-made environments of one echo function:
    PSS of each one's processes (init + runtime), the zygote's own, and
    MemAvailable before and with all of them alive."""
    code = _code(ECHO)
    sup = sandbox.Supervisor()
    rt = sandbox.Runtime(supervisor=sup, zygotes=True, max_environments=environments + 2)
    available_before = mem_available_kib()
    try:
        rt.create_function("idle", code, "app.handler", memory_mb=memory_mb)
        version = rt.publish_version("idle").version
        status, ready_s = provision(rt, "idle", version, environments, ready_timeout_s, poll_s=0.1)
        time.sleep(0.5)
        pool = rt._pool_for("idle", version)[1]   # benchmark-only peek, as memory.py does
        envs = pool.busy() + list(pool._idle)
        available_with = mem_available_kib()
        answered = sum(1 for _ in range(20) if rt.invoke("idle", b"{}", version).function_error is None)
        per_env = [sum(pss_kib(p) for p in tree(env._box.pid)) for env in envs if env._box is not None]
        zygotes = service_for(sup).zygotes()
        zygote_pss = sum(pss_kib(z.pid) for z in zygotes if z.pid)
        zygote_peak = sum(z.cgroup.stats().memory_peak_bytes for z in zygotes if z.cgroup is not None)
    finally:
        rt.close()
        close_service(sup)
        sup.close()
        shutil.rmtree(code, ignore_errors=True)
    median = statistics.median(per_env) / 1024 if per_env else 0.0
    return {"environments_requested": environments, "environments_alive": len(per_env), "status": status,
            "answered_of_20": answered, "provision_seconds": ready_s, "memory_mb_limit": memory_mb,
            "pss_mib_per_environment": {"median": median, "min": min(per_env) / 1024 if per_env else 0.0,
                                        "max": max(per_env) / 1024 if per_env else 0.0},
            "pss_mib_total": sum(per_env) / 1024, "zygote_pss_mib": zygote_pss / 1024,
            "zygote_cgroup_peak_mib": zygote_peak / 2**20,
            "mem_available_mib_before": available_before / 1024, "mem_available_mib_with_all": available_with / 1024,
            "mem_used_mib_per_environment": (available_before - available_with) / 1024 / max(1, len(per_env))}


def measure(rounds: int, environments: int, live: int, memory_mb: int = 1769) -> dict:
    out = {"cold_start": cold_starts(rounds, memory_mb), "idle": idle(environments)}
    out["live"] = idle(live) if live > environments else out["idle"]
    return out


def markdown(z: dict) -> list[str]:
    """The report's section 7 (report.markdown)."""
    cold = z["cold_start"]
    out = ["", "## 7. Zygotes", "",
           f"Create → first response, {cold['rounds']} interleaved rounds, {cold['memory_mb']} MB functions. "
           "Speed-up = `python -c pass` time / environment time, round by round: median (p10–p90).", "",
           "The numpy rows are also compared with a bare interpreter that imports numpy "
           "(`python -c 'import numpy'`), the same work without a sandbox or a zygote.", "",
           "| measure | p50 ms (p10–p90) | speed-up vs `python -c pass` | speed-up vs `python -c 'import numpy'` |",
           "|---|---|---|---|"]

    def cell(s):
        return f"**{s['median']:.1f}×** ({s['p10']:.1f}–{s['p90']:.1f})" if s else ""

    for key, t in cold["times"].items():
        out.append(f"| {key} | {t['p50_ms']:.1f} ({t['p10_ms']:.1f}–{t['p90_ms']:.1f}) | "
                   f"{cell(cold['speedup_vs_python'].get(key))} | "
                   f"{cell(cold.get('speedup_vs_python_import', {}).get(key))} |")
    if not cold["numpy"]:
        out.append("| numpy | not installed for the real interpreter | | |")
    for label, m in (("idle", z["idle"]), ("live", z["live"])):
        if label == "live" and m is z["idle"]:
            continue
        pss = m["pss_mib_per_environment"]
        out += ["", f"{m['environments_alive']} of {m['environments_requested']} idle zygote-made environments alive at "
                f"once ({m['status']}, {m['memory_mb_limit']} MB limit each, ready in {m['provision_seconds']:.1f} s; "
                f"{m['answered_of_20']} of 20 invocations answered while all were alive):", "",
                "| measure | value |", "|---|---|",
                f"| PSS per environment (init + runtime), median (min–max) | **{pss['median']:.2f} MiB** "
                f"({pss['min']:.2f}–{pss['max']:.2f}) |",
                f"| PSS of all of them | {m['pss_mib_total']:,.0f} MiB |",
                f"| the zygote's own PSS / its cgroup's peak | {m['zygote_pss_mib']:.1f} / "
                f"{m['zygote_cgroup_peak_mib']:.1f} MiB |",
                f"| MemAvailable drop per environment (page tables, namespaces, cgroups included) | "
                f"{m['mem_used_mib_per_environment']:.2f} MiB |"]
    return out
