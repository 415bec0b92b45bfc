"""The unprivileged path (catalogue #41): a supervisor that is NOT root creates
the sandbox through a user namespace, and the sandbox is just as empty of
privileges as when root runs it.

The supervisor runs as uid/gid 65534 with no groups and no capabilities
(setpriv).  This interpreter lives under /root (mode 0700 here), unreadable by
that uid, so the driver runs in a private mount namespace in which /root is a
0755 directory holding only a bind of the interpreter's tree; nothing else
changes and the host's mounts are untouched."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from probes.harness import PROBES, REAL_PYTHON, REPO
from sandbox.host import detect

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leaks")]

NOBODY = 65534
CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
DENIED = {"EPERM", "ENOSYS"}


def _reason_to_skip():
    if os.geteuid() != 0:
        return "needs root to drop to uid 65534 (already unprivileged: the whole suite is the unprivileged run)"
    for tool in ("unshare", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    if not detect().user_namespaces:
        return "user namespaces are disabled on this host"
    return None


def _readable_for_nobody_wrapper(tmp: str) -> str:
    """Shell lines making the interpreter readable for uid 65534 inside the
    private mount namespace (only needed when it lives below a 0700 dir)."""
    lines = []
    home = "/root"
    if REAL_PYTHON.startswith(home + "/") and not os.stat(home).st_mode & 0o005:
        top = REAL_PYTHON[len(home) + 1:].split("/")[0]          # e.g. .pyenv
        lines += [f"mkdir -p {tmp}/root/{top}", f"mount --bind {home}/{top} {tmp}/root/{top}",
                  f"chmod 0755 {tmp}/root", f"mount --rbind {tmp}/root {home}"]
    return " && ".join(lines + ["true"])


@pytest.fixture(scope="module")
def report():
    reason = _reason_to_skip()
    if reason:
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="sbx-unpriv-") as tmp:
        os.chmod(tmp, 0o755)
        script = (f"{_readable_for_nobody_wrapper(tmp)} && exec setpriv --reuid={NOBODY} --regid={NOBODY} "
                  f"--clear-groups --inh-caps=-all --bounding-set=-all "
                  f"env PYTHONPATH={REPO} HOME=/tmp {REAL_PYTHON} -B {PROBES}/unpriv_driver.py")
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                              capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def _out(report, name):
    entry = report[name]
    assert entry.get("exit") == 0 and entry.get("out"), entry
    return entry["out"]


def test_caller_really_is_unprivileged(report):
    caller = report["caller"]
    assert (caller["uid"], caller["gid"], caller["groups"]) == (NOBODY, NOBODY, [])
    assert int(caller["CapEff"], 16) == 0


def test_default_config_runs_or_fails_typed(report):
    """Default: either it works (cgroups delegated to the caller) or it fails
    with CgroupSetupError naming the cgroup -- never an untyped crash."""
    default = report["default"]
    if "error" in default:
        assert default["error"].startswith("CgroupSetupError"), default
        assert report["disabled"] == ["cgroups"]
    else:
        assert default["exit"] == 0 and report["disabled"] == []


@pytest.mark.parametrize("cap_set", CAP_SETS)
def test_capability_sets_empty(report, cap_set):
    status = _out(report, "inspect")["status"]
    assert int(status[cap_set], 16) == 0, status[cap_set]


def test_no_new_privs_and_seccomp(report):
    status = _out(report, "inspect")["status"]
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"


def test_identity_inside_and_on_the_host(report):
    inside = _out(report, "inspect")
    assert inside["uid"] == [1000] * 3 and inside["gid"] == [1000] * 3 and inside["pid"] == 1
    assert report["host_view"]["Uid"].split() == [str(NOBODY)] * 4


def test_namespaces_differ_from_the_host(report):
    inside = _out(report, "inspect")["ns"]
    for ns, inode in inside.items():
        assert inode != os.stat(f"/proc/self/ns/{ns}").st_ino, ns


def test_escape_syscalls_fail(report):
    results = _out(report, "syscalls")
    bad = {n: e for n, e in results.items() if e not in ({"ENOSYS"} if n == "clone3" else DENIED)}
    assert not bad, bad


def test_root_is_read_only(report):
    results = _out(report, "create")
    assert all(e in ("EROFS", "EACCES") for e in results.values()), results


def test_dangerous_socket_families_fail(report):
    results = _out(report, "sockets")
    allowed = {"netlink_route", "unix_stream", "inet_stream", "inet6_dgram"}
    assert all(results[c] == "OK" for c in allowed), results
    assert all(e != "OK" for c, e in results.items() if c not in allowed), results
