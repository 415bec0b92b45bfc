"""`sandbox bench --quick` runs end to end and writes every section (a smoke
test: no assertion on timings)."""
import importlib.util
import json
import os
import subprocess

import pytest

from conftest import REAL_PYTHON, requires_sandbox_privileges

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SECTIONS = ("layers", "invoke", "seccomp", "memory", "churn")
HEADINGS = ("## 1. Cold spawn-and-wait", "## 2. Environment cold start", "## 3. Warm invoke",
            "## 4. seccomp cost", "## 5. Memory per idle environment", "## 6. Churn")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    subprocess.run([REAL_PYTHON, "-m", "sandbox.bench", "--quick", "--out", str(out)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    return out


def test_json_has_every_section_and_the_machine(quick_run):
    results = json.loads((quick_run / "results.json").read_text())
    for section in SECTIONS + ("machine",):
        assert section in results, section
    layers = results["layers"]
    for payload in ("/bin/true", "python -c pass"):
        rows = layers["payloads"][payload]["rows"]
        for rung in layers["rungs"]:
            assert rows[rung]["median_ms"] > 0 and rows[rung]["vs_plain"]["ratio_p10"] > 0
        for tool in ("bwrap", "unshare", "crun", "runc", "firejail"):
            assert tool in rows and tool in layers["isolation"]
    assert results["invoke"]["warm_100B_same_cpu"]["sandbox"]["p99_9_us"] > 0
    assert results["invoke"]["cold_start"]["ratio_new_environment_p50"] > 0
    if "skipped" not in results["seccomp"]:
        assert results["seccomp"]["ns_per_call"]["default policy"]["median"] > 0
    assert results["memory"]["environments_measured"] == results["memory"]["environments_requested"]
    assert results["memory"]["pss_mib_per_environment"]["median"] > 0
    churn = results["churn"]
    assert churn["rate"]["sandboxes"] > 0 and churn["growth"]["reached"] == churn["growth"]["limit"]


def test_nothing_leaks(quick_run):
    leak = json.loads((quick_run / "results.json").read_text())["churn"]["leak_check"]
    assert leak["leftover_pids"] == []
    assert leak["sleeper_cgroups_checked"] > 0 and leak["sleeper_cgroups_left"] == []


def test_markdown_has_every_section(quick_run):
    text = (quick_run / "results.md").read_text()
    for heading in HEADINGS:
        assert heading in text, heading
    assert "not installed" in text or "crun" in text


def test_plots_are_png(quick_run):
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed: the suite writes no plots (pip install matplotlib)")
    for name in ("layers.png", "invoke.png", "churn.png"):
        assert (quick_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
