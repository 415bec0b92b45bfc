"""Write a suite's results as results.json, results.md and PNG plots."""
from __future__ import annotations

import json
import os


def _ratio(r: dict) -> str:
    return f"{r['ratio_median']:.2f}× ({r['ratio_p10']:.2f}–{r['ratio_p90']:.2f})"


def markdown(results: dict) -> str:
    m = results["machine"]
    out = [f"# sandbox bench ({'quick' if results['quick'] else 'full'} run)", "",
           f"Machine: {m['cpus']} CPUs, kernel {m['kernel']}, cgroup {m['cgroup']}, Python {m['python_version']}, "
           f"{m['mem_total_mib']:.0f} MiB RAM; {m['date']}; took {results['seconds']:.0f} s.",
           "Ratios are computed pair by pair from interleaved runs: median (p10–p90).", ""]
    layers = results["layers"]
    out += ["## 1. Cold spawn-and-wait, layer by layer", "",
            f"{layers['rounds']} interleaved rounds (+{layers['warmup']} warm-up). Times are medians (p10–p90) in ms.", ""]
    labels = list(layers["payloads"])
    out.append("| row | isolation | " + " | ".join(f"{p} ms | vs plain | vs row above" for p in labels) + " |")
    out.append("|---|---|" + "---|---|---|" * len(labels))
    for name in layers["payloads"][labels[0]]["rows"]:
        cells = []
        for p in labels:
            row = layers["payloads"][p]["rows"][name]
            if "skipped" in row:
                cells += [row["skipped"], "", ""]
                continue
            cells += [f"{row['median_ms']:.2f} ({row['p10_ms']:.2f}–{row['p90_ms']:.2f})", _ratio(row["vs_plain"]),
                      _ratio(row["vs_previous"]) if "vs_previous" in row else ""]
        out.append(f"| {name} | {layers['isolation'][name]} | " + " | ".join(cells) + " |")
    inv = results["invoke"]
    cold = inv["cold_start"]
    out += ["", "## 2. Environment cold start (create → first response)", "",
            "| measure | p50 ms (p10–p90) | vs `python -c pass` |", "|---|---|---|"]
    for key, ratio in (("python -c pass", None), ("python -S -c pass", None),
                       ("new function", "new_function"), ("new environment", "new_environment")):
        row = cold[key]
        r = ""
        if ratio:
            lo, hi = cold[f"ratio_{ratio}_p10_p90"]
            r = f"{cold[f'ratio_{ratio}_p50']:.2f}× ({lo:.2f}–{hi:.2f})"
        label = {"new environment": "new environment of an existing version (pre-made sandbox)"}.get(key, key)
        out.append(f"| {label} | {row['p50_ms']:.1f} ({row['p10_ms']:.1f}–{row['p90_ms']:.1f}) | {r} |")
    out += ["", "## 3. Warm invoke latency and throughput", "",
            "| payload, placement | raw pipe p50 / p99 / p99.9 µs | sandbox p50 / p99 / p99.9 µs | ratio of p50s per block |",
            "|---|---|---|---|"]
    for key, row in inv.items():
        if key.startswith("warm_"):
            raw, box = row["raw"], row["sandbox"]
            out.append(f"| {key[5:].replace('_', ', ', 1)} | {raw['p50_us']:.0f} / {raw['p99_us']:.0f} / "
                       f"{raw['p99_9_us']:.0f} | {box['p50_us']:.0f} / {box['p99_us']:.0f} / {box['p99_9_us']:.0f} | "
                       f"{row['ratio_p50']:.2f}× ({row['ratio_p10']:.2f}–{row['ratio_p90']:.2f}) |")
    for n in (1, 2):
        t = inv[f"throughput_{n}_env"]
        out.append(f"| throughput, {n} environment(s), closed loop | {t['raw_pipe_per_s']:,.0f}/s | "
                   f"{t['sandbox_per_s']:,.0f}/s | {t['sandbox_per_s'] / t['raw_pipe_per_s']:.2f}× |")
    sc = results["seccomp"]
    out += ["", "## 4. seccomp cost per syscall", ""]
    if "skipped" in sc:
        out.append(sc["skipped"])
    else:
        off, on = sc["ns_per_call"]["seccomp off"], sc["ns_per_call"]["default policy"]
        out += [f"A C loop of `{sc['syscall']}()` inside a sandbox, best of {sc['batches']} × {sc['calls_per_batch']:,} "
                f"calls per process, {sc['processes']} processes each, interleaved.", "",
                "| sandbox | ns per call, median (p10–p90) |", "|---|---|",
                f"| seccomp layer off | {off['median']:.0f} ({off['p10']:.0f}–{off['p90']:.0f}) |",
                f"| default policy | {on['median']:.0f} ({on['p10']:.0f}–{on['p90']:.0f}) |",
                f"| added per call | {sc['added_ns_median']:+.0f} ns; ratio {_ratio(sc['ratio'])} |"]
    mem = results["memory"]
    out += ["", "## 5. Memory per idle environment", "",
            f"{mem['environments_measured']} idle environments (provisioned concurrency, {mem['memory_mb_limit']} MB "
            f"limit each, {mem['processes_per_environment']:.0f} processes each: init + runtime), "
            f"ready in {mem['provision_seconds']:.1f} s.", "",
            "| measure | value |", "|---|---|",
            f"| PSS per environment, median (min–max) | {mem['pss_mib_per_environment']['median']:.2f} MiB "
            f"({mem['pss_mib_per_environment']['min']:.2f}–{mem['pss_mib_per_environment']['max']:.2f}) |",
            f"| idle environments that fit in {mem['mem_available_mib_before']:,.0f} MiB available, by PSS "
            f"(**extrapolation**: PSS leaves out page tables and kernel memory such as namespaces) | "
            f"{mem['fit_in_available_memory_extrapolated']:,} |"]
    ch = results["churn"]
    rate, growth = ch["rate"], ch["growth"]
    out += ["", "## 6. Churn", "",
            f"`sandbox.run(['/bin/true'])` back to back for {rate['seconds']:.1f} s: **{rate['per_second']:.0f} sandboxes "
            f"created and destroyed per second** (latency {rate['latency']['median_ms']:.2f} ms, "
            f"p10–p90 {rate['latency']['p10_ms']:.2f}–{rate['latency']['p90_ms']:.2f}).", "",
            f"Spawn latency as live `sleep 600` sandboxes grow to {growth['reached']}"
            + (f" ({growth['stopped_early']})" if growth["stopped_early"] else "") + ":", "",
            "| live sandboxes | /bin/true spawn+wait ms, median (p10–p90) | sleeper spawn ms, last 20 | MemAvailable MiB |",
            "|---|---|---|---|"]
    for row in growth["rows"]:
        p, s = row["probe_spawn_wait"], row["sleeper_spawn_recent"]
        out.append(f"| {row['live']} | {p['median_ms']:.2f} ({p['p10_ms']:.2f}–{p['p90_ms']:.2f}) | "
                   f"{s['median_ms']:.2f} ({s['p10_ms']:.2f}–{s['p90_ms']:.2f}) | {row['mem_available_mib']:,.0f} |")
    leak = ch["leak_check"]
    out += ["", f"All {growth['reached']} killed and reaped in {growth['teardown_seconds']:.2f} s; leak check: "
            f"{len(leak['leftover_pids'])} leftover processes, {len(leak['sleeper_cgroups_left'])} of the sleepers' "
            f"{leak['sleeper_cgroups_checked']} cgroup directories left.", ""]
    if "zygote" in results:
        from .zygote import markdown as zygote_section

        out += zygote_section(results["zygote"])
    return "\n".join(out)


def plots(results: dict, out_dir: str) -> list[str]:
    """PNG files written, or [] when matplotlib is missing (results['plots_skipped'] says so)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results["plots_skipped"] = "matplotlib is not installed (pip install matplotlib)"
        return []
    written = []
    layers = results["layers"]
    fig, axes = plt.subplots(1, len(layers["payloads"]), figsize=(12, 4.5))
    for ax, (label, data) in zip(axes, layers["payloads"].items()):
        names = [n for n, r in data["rows"].items() if "skipped" not in r]
        med = [data["rows"][n]["median_ms"] for n in names]
        lo = [m - data["rows"][n]["p10_ms"] for m, n in zip(med, names)]
        hi = [data["rows"][n]["p90_ms"] - m for m, n in zip(med, names)]
        ax.barh(names[::-1], med[::-1], xerr=[lo[::-1], hi[::-1]], color="#4c72b0")
        ax.set_title(f"spawn-and-wait: {label}")
        ax.set_xlabel("ms (median, p10–p90)")
    fig.tight_layout()
    written.append(_save(fig, out_dir, "layers.png"))
    inv = results["invoke"]
    keys = [k for k in inv if k.startswith("warm_")]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = range(len(keys))
    for offset, side, color in ((-0.2, "raw", "#999999"), (0.2, "sandbox", "#4c72b0")):
        ax.bar([i + offset for i in x], [inv[k][side]["p50_us"] for k in keys], 0.4, label=f"{side} p50", color=color)
        ax.scatter([i + offset for i in x], [inv[k][side]["p99_us"] for k in keys], marker="_", s=200, color="black")
    ax.set_xticks(list(x), [k[5:] for k in keys], rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("µs (bar p50, tick p99)")
    ax.set_title("warm invoke round trip")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, out_dir, "invoke.png"))
    rows = results["churn"]["growth"]["rows"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    live = [r["live"] for r in rows]
    ax.plot(live, [r["probe_spawn_wait"]["median_ms"] for r in rows], "o-", label="/bin/true spawn+wait (median)")
    ax.plot(live, [r["sleeper_spawn_recent"]["median_ms"] for r in rows], "s--", label="sleeper spawn (last 20)")
    ax.set_xscale("log")
    ax.set_xlabel("live sandboxes")
    ax.set_ylabel("ms")
    ax.set_title("spawn latency vs live sandboxes")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, out_dir, "churn.png"))
    return written


def _save(fig, out_dir, name):
    import matplotlib.pyplot as plt

    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(results: dict, out_dir: str) -> dict:
    """Write everything into out_dir; return {kind: path or [paths]}."""
    os.makedirs(out_dir, exist_ok=True)
    pngs = plots(results, out_dir)
    results["plots"] = [os.path.basename(p) for p in pngs]
    md_path = os.path.join(out_dir, "results.md")
    with open(md_path, "w") as f:
        f.write(markdown(results))
    json_path = os.path.join(out_dir, "results.json")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    return {"json": json_path, "markdown": md_path, "png": pngs}
