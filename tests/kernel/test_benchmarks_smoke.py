"""The benchmarks still run (a smoke test: `--quick`, no assertion on timings)."""
import json
import os
import subprocess

import pytest

from conftest import REAL_PYTHON, requires_sandbox_privileges

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]
BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")


def test_invoke_benchmark_quick_run_reports_every_measure(tmp_path):
    out = tmp_path / "invoke.json"
    subprocess.run([REAL_PYTHON, os.path.join(BENCHMARKS, "invoke_bench.py"), "--quick", "--json", str(out)],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    results = json.loads(out.read_text())
    placements = ["same_cpu", "unpinned"] + (["cross_cpu"] if (os.cpu_count() or 1) > 1 else [])
    for size in ("100B", "65536B"):
        for placement in placements:
            row = results[f"warm_{size}_{placement}"]
            assert row["raw"]["p50_us"] > 0 and row["sandbox"]["p50_us"] > 0 and row["ratio_p50"] > 0
    for threads in (1, 2):
        assert results[f"throughput_{threads}_env"]["sandbox_per_s"] > 0
    assert results["cold_start"]["ratio_new_function_p50"] > 0
