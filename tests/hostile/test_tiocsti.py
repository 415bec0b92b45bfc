"""#11 CVE-2017-5226: TIOCSTI (and TIOCLINUX) cannot push input into a
terminal.  The test hands the sandbox a real pty as stdin: the worst case of a
caller that shares its terminal."""
import os
import pty
import tty

import pytest

import sandbox
from probes.harness import last_json, probe_argv

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]

REFUSED = {"EPERM", "EIO", "ENOTTY", "EACCES"}


@pytest.fixture
def terminal():
    master, slave = pty.openpty()
    tty.setraw(slave)
    yield master, slave
    os.close(master)
    os.close(slave)


def test_11_tiocsti_on_every_fd_and_dev_tty_fails(probe_config, terminal):
    master, slave = terminal
    box = sandbox.spawn(probe_argv("tiocsti.py"), probe_config(), stdin=slave, stdout=sandbox.PIPE,
                        stderr=sandbox.PIPE, pass_fds=[slave])
    result = box.communicate()
    out = last_json(result.stdout)
    assert result.exit_code == 0 and out, result.stderr
    assert out["isatty"]["0"] is True, "the probe did not get the terminal: the test would prove nothing"
    assert set(out["TIOCSTI"]) >= {"0", "1", "2", "3"}
    bad = {fd: err for fd, err in out["TIOCSTI"].items() if err not in REFUSED}
    assert not bad, f"TIOCSTI accepted on {bad}"
    bad = {fd: err for fd, err in out["TIOCLINUX"].items() if err not in REFUSED | {"EINVAL"}}
    assert not bad, f"TIOCLINUX accepted on {bad}"
    assert out["dev_tty"] in ("ENOENT", "ENXIO"), out["dev_tty"]
    os.set_blocking(slave, False)
    with pytest.raises(BlockingIOError):
        os.read(slave, 16)  # nothing was injected into the terminal's input
