"""Egress networking costs, measured interleaved in one run so machine drift cancels.

    python benchmarks/net_bench.py [--rounds 100] [--transfer-mb 32] [--rate-mb 8] [--json out.json]

Spawn latency of sandbox.run(["/bin/true"]) in four setups, one round each in a
rotating order:
  loopback/pool     the default mode, pre-made sandboxes (Supervisor pool_size 2)
  egress/pool       egress, pre-made sandboxes and pre-made namespaces
  loopback/nopool   pool_size 0: every spawn clones on the spot
  egress/nopool     pool_size 0: the namespace, veth, addresses, firewall are made
                    on the spawn path
Ratios are computed round by round (median and p10-p90).

Throughput: a download of --transfer-mb from a service in a network namespace
this benchmark makes (tests/probes/netlab.py), measured inside the sandbox,
without a limit and with rate_bytes = --rate-mb MB/s, interleaved.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import sandbox  # noqa: E402
from benchmarks.spawn_bench import interleave, paired_ratio, spread  # noqa: E402
from probes import netlab  # noqa: E402
from probes.harness import last_json, probe_argv  # noqa: E402
from sandbox.supervisor import Supervisor  # noqa: E402

PROBES = os.path.join(HERE, "..", "tests", "probes")


def spawn_latency(rounds: int, warmup: int) -> dict:
    pooled, unpooled = Supervisor(pool_size=2), Supervisor(pool_size=0)
    loopback, egress = sandbox.Config.create(), sandbox.Config.create(net="egress")

    def runner(config, sup):
        def run():
            result = sandbox.run(["/bin/true"], config, supervisor=sup)
            assert result.exit_code == 0, result
        return run

    runners = {"loopback/pool": runner(loopback, pooled), "egress/pool": runner(egress, pooled),
               "loopback/nopool": runner(loopback, unpooled), "egress/nopool": runner(egress, unpooled)}
    try:
        times = interleave(runners, rounds, warmup)
    finally:
        pooled.close()
        unpooled.close()
    return {
        "spread": {name: spread(ts) for name, ts in times.items()},
        "ratios": {
            "egress/pool vs loopback/pool": paired_ratio(times["egress/pool"], times["loopback/pool"]),
            "egress/nopool vs loopback/nopool": paired_ratio(times["egress/nopool"], times["loopback/nopool"]),
            "egress/pool vs egress/nopool": paired_ratio(times["egress/pool"], times["egress/nopool"]),
        },
    }


def throughput(rounds: int, nbytes: int, rate: int) -> dict:
    lab = netlab.RemoteLab()
    sup = Supervisor(pool_size=1)
    binds = [f"{os.path.realpath(PROBES)}:/probes"]
    configs = {"unlimited": sandbox.Config.create(net="egress", binds=binds),
               "limited": sandbox.Config.create(net="egress", binds=binds, network={"rate_bytes": rate})}
    rates: dict[str, list[float]] = {name: [] for name in configs}
    try:
        for r in range(rounds):
            for name in (list(configs) if r % 2 == 0 else list(reversed(configs))):
                result = sandbox.run(probe_argv("egress_probe.py", "recv", netlab.REMOTE_IP, "7004", str(nbytes)),
                                     configs[name], supervisor=sup)
                out = last_json(result.stdout)
                assert result.exit_code == 0 and out and out["bytes"] == nbytes, (result, out)
                rates[name].append(out["bytes"] / out["seconds"])
    finally:
        sup.close()
        lab.close()
    med = {name: statistics.median(v) for name, v in rates.items()}
    return {
        "bytes": nbytes, "rate_limit_Bps": rate,
        "median_Bps": med,
        "limited_vs_limit": med["limited"] / rate,
        "limited_vs_unlimited": med["limited"] / med["unlimited"],
        "samples_Bps": rates,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--transfer-mb", type=float, default=32)
    parser.add_argument("--transfer-rounds", type=int, default=3)
    parser.add_argument("--rate-mb", type=float, default=8)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    report = {"spawn": spawn_latency(args.rounds, args.warmup),
              "throughput": throughput(args.transfer_rounds, int(args.transfer_mb * 1e6), int(args.rate_mb * 1e6))}
    for name, s in report["spawn"]["spread"].items():
        print(f"{name:18s} median {s['median_ms']:7.2f} ms  p10 {s['p10_ms']:7.2f}  p90 {s['p90_ms']:7.2f}  n={s['n']}")
    for name, r in report["spawn"]["ratios"].items():
        print(f"{name:34s} ratio {r['ratio_median']:.2f} (p10 {r['ratio_p10']:.2f}, p90 {r['ratio_p90']:.2f}), "
              f"delta {r['delta_median_ms']:+.2f} ms")
    t = report["throughput"]
    print(f"download {t['bytes'] / 1e6:.0f} MB: unlimited {t['median_Bps']['unlimited'] / 1e6:.1f} MB/s, "
          f"limited {t['median_Bps']['limited'] / 1e6:.2f} MB/s (limit {t['rate_limit_Bps'] / 1e6:.1f} MB/s: "
          f"x{t['limited_vs_limit']:.3f} of the limit, x{t['limited_vs_unlimited']:.3f} of unlimited)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
