"""The cgroup v2 tests, run for real inside a QEMU/TCG guest whose kernel has only cgroup v2.

The host may run cgroup v1, so tests marked `cgroupv2` cannot exercise the v2 backend here;
tests/v2vm/run.sh boots a Debian 12 kernel (cgroup_no_v1=all) over the host's own tree (9p,
read-only, tmpfs overlay) and runs a command in /sys/fs/cgroup/test/runner.  See
docs/testing-cgroup-v2.md.

Skips only when the VM cannot be prepared: qemu (or cpio/busybox-static) cannot be installed,
or the kernel .deb cannot be downloaded; the reason says which.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import warnings

import pytest

pytestmark = [pytest.mark.v2vm, pytest.mark.slow]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V2VM = os.path.join(REPO, "tests", "v2vm")
PYTHON = os.path.realpath(sys.executable)
# Wall-clock budget of the VM running the cgroupv2 suite (TCG is 5-20x slower than native).
SUITE_TIMEOUT = int(os.environ.get("V2VM_TIMEOUT", "300"))
# The probes boot the VM and import the package under TCG: ~30-60 s alone, and
# more than twice that when the host is busy (a CI run next to other work hit 120).
SELF_CHECK_TIMEOUT = 300


@pytest.fixture(scope="module")
def vm():
    """Runs tests/v2vm/setup.sh once; skips when the VM's ingredients cannot be fetched."""
    if os.environ.get("V2VM_GUEST"):
        pytest.skip("already inside the v2 VM (no nested VMs)")
    try:
        r = subprocess.run([os.path.join(V2VM, "setup.sh")], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail("tests/v2vm/setup.sh took more than 15 minutes")
    why = r.stderr.strip().splitlines()[-3:]
    if r.returncode == 3:
        pytest.skip("v2 VM unavailable: qemu-system-x86/cpio/busybox-static cannot be installed: " + " | ".join(why))
    if r.returncode == 4:
        pytest.skip("v2 VM unavailable: the kernel .deb cannot be downloaded: " + " | ".join(why))
    assert r.returncode == 0, f"tests/v2vm/setup.sh failed (exit {r.returncode}):\n{r.stderr}"
    return run_in_vm


def run_in_vm(argv, *, timeout, env=(), layout="leaf"):
    """(exit status, combined output) of `run.sh -- argv`.  run.sh kills its qemu after
    `timeout`; if run.sh itself hangs, its whole process group (ours) is killed."""
    cmd = [os.path.join(V2VM, "run.sh"), "--timeout", str(timeout), "--layout", layout]
    for kv in env:
        cmd += ["--env", kv]
    cmd += ["--", *argv]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         errors="replace", start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        pytest.fail(f"run.sh did not return {timeout + 60}s after starting:\n{out[-4000:]}")
    print(out)  # shown by pytest on failure / with -s
    return p.returncode, out


SELF_CHECK = r"""
echo "cgroup_self=$(tr '\n' ';' < /proc/self/cgroup)"
echo "v1_mounts=$(awk '$3 == "cgroup"' /proc/mounts | wc -l)"
echo "cgroup2_mounts=$(awk '$3 == "cgroup2" {print $2}' /proc/mounts | tr '\n' ' ')"
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
echo "root_subtree=$(cat /sys/fs/cgroup/cgroup.subtree_control)"
echo "test_subtree=$(cat /sys/fs/cgroup/test/cgroup.subtree_control)"
mkdir /sys/fs/cgroup/test/x \
  && echo 67108864 > /sys/fs/cgroup/test/x/memory.max \
  && echo "memory_max=$(cat /sys/fs/cgroup/test/x/memory.max)" \
  && echo 32 > /sys/fs/cgroup/test/x/pids.max \
  && echo "pids_max=$(cat /sys/fs/cgroup/test/x/pids.max)" \
  && echo "50000 100000" > /sys/fs/cgroup/test/x/cpu.max \
  && echo "cpu_max=$(cat /sys/fs/cgroup/test/x/cpu.max)" \
  && rmdir /sys/fs/cgroup/test/x
echo "userns=$(cat /proc/sys/user/max_user_namespaces)"
unshare --user --map-root-user --pid --fork --mount-proc true && echo "unshare=ok"
echo "kernel=$(uname -r)"
echo "cwd=$(pwd)"
[ -c /dev/null ] && [ -c /dev/urandom ] && head -c 8 /dev/urandom | wc -c | sed 's/^/urandom=/'
touch .v2vm-overlay-probe && echo "overlay_write=ok"
cd / && "$V2VM_PYTHON" -c 'import os, sys, sandbox._core; print("python=" + os.path.realpath(sys.executable)); print("core=" + os.path.dirname(sandbox._core.__file__))'
"""


def _fields(out):
    return dict(line.split("=", 1) for line in out.splitlines() if re.match(r"^[a-z0-9_]+=", line))


def test_vm_boots_pure_cgroup2(vm):
    rc, out = vm(["sh", "-c", SELF_CHECK], timeout=SELF_CHECK_TIMEOUT)
    assert rc == 0, f"self-check exited {rc}"
    f = _fields(out)
    assert f.get("cgroup_self") == "0::/test/runner;", "job must be in a non-root v2-only cgroup"
    assert f.get("v1_mounts") == "0", "a cgroup v1 hierarchy is mounted"
    assert f.get("cgroup2_mounts", "").split() == ["/sys/fs/cgroup"]
    assert {"memory", "pids", "cpu"} <= set(f.get("controllers", "").split())
    assert set(f.get("root_subtree", "").split()) == {"memory", "pids", "cpu"}
    assert set(f.get("test_subtree", "").split()) == {"memory", "pids", "cpu"}
    assert f.get("memory_max") == "67108864", "write to memory.max of a child cgroup failed"
    assert f.get("pids_max") == "32"
    assert f.get("cpu_max") == "50000 100000"
    assert int(f.get("userns", "0")) > 0
    assert f.get("unshare") == "ok", "unshare(CLONE_NEWUSER|CLONE_NEWPID) failed in the guest"
    assert f.get("kernel", "").startswith("6.")
    assert f.get("cwd") == REPO
    assert f.get("urandom") == "8"
    assert f.get("overlay_write") == "ok"
    assert not os.path.exists(os.path.join(REPO, ".v2vm-overlay-probe")), "guest write reached the host"
    assert f.get("python") == PYTHON
    assert f.get("core") == os.path.join(REPO, "sandbox"), "import sandbox._core failed or came from elsewhere"


_SUMMARY = re.compile(r"^=*\s*(?P<body>(?:\d+ \w+|no tests ran)[^=]*?) in [\d.]+s\b.*$")


def pytest_summary(out):
    """{'passed': n, 'failed': n, ...} from pytest's final summary line ({} if absent)."""
    lines = [m.group("body") for m in map(_SUMMARY.match, out.splitlines()) if m]
    if not lines:
        return {}
    counts = {}
    for n, word in re.findall(r"(\d+) (\w+)", lines[-1]):
        counts[{"error": "errors", "warning": "warnings"}.get(word, word)] = int(n)
    return counts


def test_pytest_summary_parser():
    assert pytest_summary("..\n2 passed in 10.95s\n") == {"passed": 2}
    assert pytest_summary("==== 1 failed, 3 passed, 1 warning in 2.00s ====") == {
        "failed": 1, "passed": 3, "warnings": 1}
    assert pytest_summary("===== no tests ran in 0.50s =====") == {}
    assert pytest_summary("8 deselected in 1.2s") == {"deselected": 8}
    assert pytest_summary("nothing") == {}


def test_cgroupv2_suite_in_vm(vm):
    # -rs: the reasons of any skips inside the VM end up in this test's output.
    # faulthandler_timeout: a test stuck inside the VM prints every thread's
    # stack there, so a timeout says where it hung.
    argv = [PYTHON, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-o", "faulthandler_timeout=90",
            "-m", "cgroupv2", "tests/"]

    def run():
        return vm(argv, timeout=SUITE_TIMEOUT, env=["SANDBOX_TEST_CGROUP2=1"],
                  layout=os.environ.get("V2VM_LAYOUT", "leaf"))

    rc, out = run()
    if rc == 124:
        # Once (of many runs) the guest stopped after its first test until the
        # budget ran out, and the next run passed in 80 s.  A second timeout
        # fails; a first one is reported with where it stood.
        warnings.warn(f"the v2 VM ran out of its {SUITE_TIMEOUT}s budget once; ran it again. "
                      f"The first run ended with:\n{out[-3000:]}")
        rc, out = run()
    counts = pytest_summary(out)
    assert rc != 124, f"the VM ran out of its {SUITE_TIMEOUT}s budget (V2VM_TIMEOUT) twice"
    assert rc != 5, "no cgroupv2-marked test was collected in the VM (pytest exit 5: no tests ran)"
    assert rc == 0, f"cgroupv2 tests failed in the VM (exit {rc}; summary {counts or 'missing'})"
    assert counts.get("passed", 0) >= 1, f"no cgroupv2 test passed in the VM (summary {counts or 'missing'})"
    if counts.get("skipped"):
        warnings.warn(f"{counts['skipped']} cgroupv2 test(s) skipped inside the v2 VM; "
                      "their reasons are in this test's captured output (-rs)")


def test_cgroup_manager_from_non_root_cgroup(vm):
    """As on a systemd v2 host: our own cgroup cannot delegate (it holds processes); the
    manager refuses it clearly and works with delegated_root (the delegating parent)."""
    probe = os.path.join(V2VM, "probes", "manager_smoke.py")
    rc, out = vm([PYTHON, probe], timeout=SELF_CHECK_TIMEOUT)
    assert rc == 0, f"probe exited {rc}"
    f = _fields(out)
    assert f.get("version") == "2"
    assert f.get("own") == "/sys/fs/cgroup/test/runner"
    assert f.get("own_cgroup", "").startswith("refused:") and "not delegated" in f["own_cgroup"]
    assert f.get("manager") == "ok", f.get("error", "probe gave no result")
    assert f.get("sandbox_cgroup", "").startswith("/sys/fs/cgroup/test/v2vmprobe-")
    assert f.get("memory_max") == str(64 << 20)
    assert f.get("pids_max") == "16"
    assert f.get("left") == "0", "manager.close() left cgroups behind"
