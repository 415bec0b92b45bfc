"""#36 supervisor death leaves orphans: SIGKILL the supervisor while its
sandbox has several double-forked, setsid'd, SIGHUP-ignoring daemons; every
sandbox process must be killed within 2 s (and gone within 5 s: the kernel's
namespace teardown is slow on a small VM), including when the sandbox was
spawned from a worker thread that exited long before (the PR_SET_PDEATHSIG
gotcha), and even without the cgroup reaper."""
import os
import tempfile

import pytest

from probes.harness import kill_supervisor_and_check

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]


@pytest.fixture
def out_dir():
    with tempfile.TemporaryDirectory(prefix="sbx-out-") as path:
        os.chmod(path, 0o777)
        yield path


def test_36_double_forked_daemons_die_with_the_supervisor(out_dir):
    kill_supervisor_and_check(out_dir, daemons=3)


def test_36_sandbox_spawned_from_an_exited_thread(out_dir):
    kill_supervisor_and_check(out_dir, daemons=2, from_thread=True)


def test_36_daemons_die_without_the_cgroup_reaper(out_dir):
    """Without cgroups only the parent-death signal and the pid namespace act."""
    kill_supervisor_and_check(out_dir, daemons=2, disable=("cgroups",))
