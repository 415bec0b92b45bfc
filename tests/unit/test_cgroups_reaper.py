"""The reaper watchdog, against plain temporary directories (no root, no
cgroupfs): verdict protocol, clean bye, supervisor SIGKILL, leaked write end."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sandbox.cgroups import reaper as reaper_mod
from sandbox.cgroups.reaper import Reaper, wait_for_verdict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_tree(tmp_path):
    """Two 'parent' dirs with nested children, as the supervisor leaves them."""
    dirs = [str(tmp_path / "memory" / "sandbox-1-aa"), str(tmp_path / "pids" / "sandbox-1-aa")]
    for d in dirs:
        os.makedirs(os.path.join(d, "sb1", "inner"))
        os.makedirs(os.path.join(d, "sb2"))
    return dirs


def wait_gone(paths, timeout=5.0):
    deadline = time.monotonic() + timeout
    while any(os.path.exists(p) for p in paths):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_parse_arguments():
    opts = reaper_mod._parse(["--tag", "sandbox.cgroups.reaper", "--pipe", "5", "--pidfd", "6", "--version", "1",
                              "--freezer", "/f/p", "--dir", "/m/p", "--dir", "/f/p"])
    assert opts == {"pipe": 5, "pidfd": 6, "version": 1, "freezer": "/f/p", "dirs": ["/m/p", "/f/p"]}


def test_verdict_bye_then_eof_is_clean():
    r, w = os.pipe2(os.O_CLOEXEC)
    os.write(w, b"bye")
    os.close(w)
    try:
        assert wait_for_verdict(r, -1) is True
    finally:
        os.close(r)


def test_verdict_eof_without_bye_means_death():
    r, w = os.pipe2(os.O_CLOEXEC)
    os.write(w, b"by")
    os.close(w)
    try:
        assert wait_for_verdict(r, -1) is False
    finally:
        os.close(r)


def test_verdict_pidfd_exit_even_if_write_end_is_held():
    r, w = os.pipe2(os.O_CLOEXEC)
    child = subprocess.Popen(["/bin/sleep", "0.1"])
    pidfd = os.pidfd_open(child.pid)
    try:
        assert wait_for_verdict(r, pidfd) is False  # w still open here: only the pidfd can tell
    finally:
        child.wait()
        for fd in (r, w, pidfd):
            os.close(fd)


def test_clean_finish_leaves_everything(tmp_path):
    dirs = make_tree(tmp_path)
    reaper = Reaper.start(2, dirs)
    assert reaper.proc.poll() is None
    deadline = time.monotonic() + 5
    while True:  # the exec'd image sets its argv a moment after Popen returns
        cmdline = open(f"/proc/{reaper.proc.pid}/cmdline", "rb").read().split(b"\0")
        if cmdline[0] or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert cmdline[0] == os.path.realpath(sys.executable).encode()
    assert cmdline[1:3] == [b"-S", b"-I"] and b"sandbox.cgroups.reaper" in cmdline
    assert os.getsid(reaper.proc.pid) == reaper.proc.pid  # own session
    reaper.finish(clean=True)
    assert reaper.proc.returncode == 0
    assert all(os.path.isdir(os.path.join(d, "sb1", "inner")) for d in dirs)


def test_unclean_finish_removes_the_parents(tmp_path):
    dirs = make_tree(tmp_path)
    reaper = Reaper.start(1, dirs, freezer_dir=None)
    reaper.finish(clean=False, timeout=10)
    assert reaper.proc.returncode == 0
    assert not any(os.path.exists(d) for d in dirs)
    assert os.path.isdir(tmp_path / "memory")  # only what it was given


def test_write_end_is_not_inherited_by_exec(tmp_path):
    reaper = Reaper.start(2, make_tree(tmp_path))
    try:
        assert os.get_inheritable(reaper._write_fd) is False
    finally:
        reaper.finish(clean=True)


SUPERVISOR = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, {root!r})
    from sandbox.cgroups.reaper import Reaper
    dirs = sys.argv[2:]
    reaper = Reaper.start(2, dirs)
    holder = 0
    if sys.argv[1] == "leak":
        holder = os.fork()          # keeps the write end open (fork without exec)
        if holder == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)     # so the test's pipes reach EOF
            time.sleep(30)
            os._exit(0)
    print(reaper.proc.pid, holder, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("mode", ["plain", "leak"])
def test_supervisor_sigkill_triggers_cleanup(tmp_path, mode):
    dirs = make_tree(tmp_path)
    sup = subprocess.run([sys.executable, "-c", SUPERVISOR.format(root=ROOT), mode, *dirs],
                         capture_output=True, text=True, timeout=30)
    assert sup.returncode == -signal.SIGKILL, sup.stderr
    reaper_pid, holder = map(int, sup.stdout.split())
    try:
        assert wait_gone(dirs), f"reaper {reaper_pid} did not remove {dirs}"
    finally:
        if holder:
            os.kill(holder, signal.SIGKILL)  # a process this test started (through its supervisor)
