"""#21 kill(-1, SIGKILL) from inside kills only the sandbox's own tree: not the
test process, not a host process with the same host uid (65534), not a
sibling sandbox."""
import os
import select
import shutil
import signal
import subprocess

import pytest

import sandbox
from probes.harness import expect_probe, probe_argv

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]


@pytest.fixture
def same_uid_host_process():
    """A host process running as the sandbox's host uid."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to start a uid-65534 host process")
    proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def sibling(probe_config):
    box = sandbox.spawn(probe_argv("inspect_self.py", "--wait"), probe_config(), stdin=sandbox.PIPE,
                        stdout=sandbox.PIPE, stderr=sandbox.DEVNULL)
    with box:
        assert select.select([box.stdout], [], [], 10)[0] and b"ready" in box.stdout.readline()
        yield box


def test_21_kill_minus_one_stays_inside(probe_config, same_uid_host_process, sibling):
    out = expect_probe(probe_config(), "kill_all.py")
    assert out["kill"] == "OK"
    assert all(code == -signal.SIGKILL for code in out["children"].values()), out
    assert same_uid_host_process.poll() is None, "a host process of uid 65534 was killed"
    assert sibling.poll() is None, "the sibling sandbox was killed"
    sibling.stdin.write(b"\n")
    sibling.stdin.flush()
    assert b'"pid": 1' in sibling.stdout.read(), "the sibling sandbox no longer answers"
    assert sibling.wait(timeout=10).exit_code == 0
    os.kill(os.getpid(), 0)  # and we are alive
