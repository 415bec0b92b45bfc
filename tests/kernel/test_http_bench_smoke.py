"""benchmarks/http_bench.py still runs (a smoke test: `--quick`, no assertion on timings)."""
import json
import os
import subprocess

import pytest

import conftest
from conftest import REAL_PYTHON, requires_sandbox_privileges

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]
pytest.importorskip("boto3")
BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "http_bench.py")


def test_http_benchmark_quick_run_reports_every_measure(tmp_path):
    conftest._drain_supervisor()
    before = conftest.LeakSnapshot()
    out = tmp_path / "http.json"
    subprocess.run([REAL_PYTHON, BENCH, "--quick", "--json", str(out)], check=True, stdout=subprocess.DEVNULL,
                   timeout=300)
    results = json.loads(out.read_text())
    assert sorted(results) == ["get_function_c1", "get_function_c2", "invoke_c1", "invoke_c2"]
    for row in results.values():
        for side in ("baseline", "sandbox"):
            assert row[side]["p50_us"] > 0 and row[side]["p99_us"] >= row[side]["p50_us"] and row[side]["per_s"] > 0
        assert row["ratio_p50"] > 0 and row["ratio_p99"] > 0 and row["ratio_throughput"] > 0
    conftest.assert_no_leaks(before)     # the servers and their sandboxes are gone
