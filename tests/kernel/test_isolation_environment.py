"""What the command inherits: exactly the environment it was given (plus PATH,
HOME and LANG), only stdio and the descriptors passed on purpose, /tmp as cwd."""
import os
import socket
import tempfile

import pytest

import sandbox
from probes.harness import expect_probe
from sandbox.host import detect

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leaks")]

ADDED = {"PATH", "HOME", "LANG"}


def test_environment_is_exactly_what_was_passed(probe_config, monkeypatch):
    monkeypatch.setenv("SBX_HOST_ONLY_SECRET", "do-not-leak")
    env = expect_probe(probe_config(env={"FOO": "bar", "EMPTY": ""}), "inspect_self.py")["env"]
    assert set(env) == {"FOO", "EMPTY"} | ADDED, sorted(env)
    assert env["FOO"] == "bar" and env["EMPTY"] == ""
    assert env["HOME"] == "/tmp" and env["LANG"] == "C.UTF-8"
    assert env["PATH"].split(":")[0] == detect().python.bin_dir


def test_environment_defaults_can_be_overridden(probe_config):
    env = expect_probe(probe_config(env={"PATH": "/usr/bin:" + detect().python.bin_dir, "HOME": "/home/x"}),
                       "inspect_self.py")["env"]
    assert set(env) == ADDED
    assert env["PATH"] == "/usr/bin:" + detect().python.bin_dir and env["HOME"] == "/home/x"


def test_cwd_is_tmp(probe_config):
    assert expect_probe(probe_config(), "inspect_self.py")["cwd"] == "/tmp"


@pytest.fixture
def leaked_fds():
    """Descriptors a careless caller holds without O_CLOEXEC: a host directory,
    a socket and an eventfd."""
    tmp = tempfile.TemporaryDirectory()
    dir_fd = os.open(tmp.name, os.O_RDONLY | os.O_DIRECTORY)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    event_fd = os.eventfd(0)
    fds = [dir_fd, sock.fileno(), event_fd]
    for fd in fds:
        os.set_inheritable(fd, True)
    yield fds
    os.close(dir_fd)
    os.close(event_fd)
    sock.close()
    tmp.cleanup()


def test_inherited_fds_do_not_reach_the_sandbox(probe_config, leaked_fds):
    fds = expect_probe(probe_config(), "inspect_self.py")["fds"]
    assert set(fds) == {"0", "1", "2"}, fds


def test_pass_fds_appear_from_3_in_order(probe_config, leaked_fds):
    r, w = os.pipe()
    event_fd = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        fds = expect_probe(probe_config(), "inspect_self.py", pass_fds=[event_fd, w])["fds"]
        assert set(fds) == {"0", "1", "2", "3", "4"}, fds
        assert fds["3"] == "anon_inode:[eventfd]", fds
        assert fds["4"].startswith("pipe:"), fds
    finally:
        for fd in (r, w, event_fd):
            os.close(fd)


def test_passed_fd_is_usable_inside(probe_config):
    event_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        result = sandbox.run(["python3", "-c", "import os; os.eventfd_write(3, 42)"], probe_config(),
                             pass_fds=[event_fd])
        assert result.exit_code == 0, result.stderr
        assert os.eventfd_read(event_fd) == 42
    finally:
        os.close(event_fd)
