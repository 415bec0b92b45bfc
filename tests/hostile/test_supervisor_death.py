"""#36 supervisor death leaves orphans: SIGKILL the supervisor while its
sandbox has several double-forked, setsid'd, SIGHUP-ignoring daemons; every
sandbox process must die within 2 s, including when the sandbox was spawned
from a worker thread that exited long before (the PR_SET_PDEATHSIG gotcha)."""
import os
import tempfile

import pytest

from probes.harness import fresh_supervisor  # noqa: F401  (autouse)
from probes.harness import kill_supervisor_and_check

pytestmark = pytest.mark.hostile


@pytest.fixture
def out_dir():
    with tempfile.TemporaryDirectory(prefix="sbx-out-") as path:
        os.chmod(path, 0o777)
        yield path


def test_36_double_forked_daemons_die_with_the_supervisor(out_dir):
    kill_supervisor_and_check(out_dir, daemons=3)


def test_36_sandbox_spawned_from_an_exited_thread(out_dir):
    kill_supervisor_and_check(out_dir, daemons=2, from_thread=True)
