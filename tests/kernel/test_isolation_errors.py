"""Setup failures raise typed errors; exit statuses reach the caller (library
and `python -m sandbox run`)."""
import errno
import os
import signal
import subprocess
import time

import pytest

import sandbox
from probes.harness import PROBES, REAL_PYTHON, sandbox_env

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leaks")]

SEGFAULT = "import ctypes; ctypes.string_at(0)"  # a real fault: forced even on pid 1


def cli(*args, timeout=60):
    return subprocess.run([REAL_PYTHON, "-m", "sandbox", "run", *args], capture_output=True,
                          env=sandbox_env(), timeout=timeout)


# -- library ---------------------------------------------------------------------------

def test_bind_of_missing_source_is_a_config_error():
    with pytest.raises(sandbox.ConfigError) as info:
        sandbox.Config.create(binds=["/nonexistent-sbx-source:/data"])
    assert info.value.field == "bind" and info.value.errno == errno.EINVAL


def test_bind_over_a_sandbox_built_path_is_a_config_error():
    with pytest.raises(sandbox.ConfigError):
        sandbox.Config.create(binds=[f"{PROBES}:/proc"])


def test_unvalidated_bad_bind_is_caught_at_spawn():
    config = sandbox.Config(binds=(sandbox.Bind("/nonexistent-sbx-source", "/data"),))
    with pytest.raises(sandbox.ConfigError):
        sandbox.run(["true"], config)


@pytest.mark.parametrize("argv0", ["/nonexistent/binary", "no-such-command-sbx"])
def test_missing_binary_is_an_exec_error_with_enoent(probe_config, argv0):
    with pytest.raises(sandbox.ExecError) as info:
        sandbox.run([argv0], probe_config())
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value, sandbox.SandboxError) and isinstance(info.value, OSError)


def test_non_executable_file_is_an_exec_error_with_eacces(probe_config):
    with pytest.raises(sandbox.ExecError) as info:
        sandbox.run(["/etc/passwd"], probe_config())
    assert info.value.errno == errno.EACCES


def test_exit_code_is_reported(probe_config):
    result = sandbox.run(["python3", "-c", "raise SystemExit(3)"], probe_config())
    assert (result.exit_code, result.signal, result.returncode, result.shell_status) == (3, None, 3, 3)


def test_fault_is_reported_as_signal(probe_config):
    result = sandbox.run(["python3", "-c", SEGFAULT], probe_config())
    assert result.signal == signal.SIGSEGV and result.exit_code is None
    assert result.shell_status == 128 + signal.SIGSEGV


def test_kill_is_reported_as_sigkill(probe_config):
    box = sandbox.spawn(["sleep", "30"], probe_config(), stdin=sandbox.DEVNULL, stdout=sandbox.DEVNULL,
                        stderr=sandbox.DEVNULL)
    box.kill()
    result = box.wait(timeout=10)
    assert result is not None and result.signal == signal.SIGKILL
    assert (result.returncode, result.shell_status) == (-signal.SIGKILL, 128 + signal.SIGKILL)
    assert not result.timed_out


# -- CLI -------------------------------------------------------------------------------

def test_cli_exits_with_the_commands_status():
    proc = cli("--", "python3", "-c", "raise SystemExit(3)")
    assert proc.returncode == 3, proc.stderr


def test_cli_fault_exits_128_plus_signal():
    proc = cli("--", "python3", "-c", SEGFAULT)
    assert proc.returncode == 128 + signal.SIGSEGV, proc.stderr


def test_cli_missing_binary_exits_125():
    proc = cli("--", "/nonexistent/binary")
    assert proc.returncode == 125, proc.stderr
    assert b"exec" in proc.stderr and b"ENOENT" in proc.stderr, proc.stderr


def test_cli_bad_bind_exits_125():
    proc = cli("--bind", "/nonexistent-sbx-source:/data", "--", "true")
    assert proc.returncode == 125, proc.stderr
    assert b"bind" in proc.stderr


def test_cli_sandbox_killed_from_outside_exits_137():
    proc = subprocess.Popen([REAL_PYTHON, "-m", "sandbox", "run", "--", "sleep", "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=sandbox_env())
    try:
        box_pid = _sandbox_child_of(proc.pid)
        os.kill(box_pid, signal.SIGKILL)
        assert proc.wait(timeout=20) == 128 + signal.SIGKILL, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def _sandbox_child_of(parent: int, timeout: float = 20) -> int:
    """The child of `parent` that runs `sleep` in another pid namespace."""
    own_ns = os.readlink("/proc/self/ns/pid")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid != parent or os.readlink(f"/proc/{entry}/ns/pid") == own_ns:
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().startswith(b"sleep\0"):
                        return int(entry)
            except (OSError, IndexError, ValueError):
                continue
        time.sleep(0.05)
    raise AssertionError("the CLI's sandbox never appeared")


# -- the launch never hangs on an error pipe held open elsewhere ----------------------

def _exec_check_with_held_pipe(process_argv, timeout_s):
    """_check_exec on a pipe whose write end we keep (as a leaked copy in another
    process would), with the pidfd of `process_argv`."""
    import subprocess
    import time

    from sandbox.errors import SetupError
    from sandbox.launcher import _check_exec

    r, w = os.pipe()
    proc = subprocess.Popen(process_argv)
    pidfd = os.pidfd_open(proc.pid)
    start = time.monotonic()
    try:
        with pytest.raises(SetupError) as info:
            _check_exec(r, pidfd, timeout_s)
        return info.value, time.monotonic() - start
    finally:
        os.close(w)
        os.close(pidfd)
        proc.kill()
        proc.wait()


def test_launch_check_gives_up_soon_after_the_first_process_ended():
    err, took = _exec_check_with_held_pipe(["true"], timeout_s=60)
    assert err.errno == errno.ETIMEDOUT and "first process ended" in str(err), err
    assert took < 10, took


def test_launch_check_is_bounded_by_the_sandbox_timeout():
    err, took = _exec_check_with_held_pipe(["sleep", "30"], timeout_s=0.3)
    assert err.errno == errno.ETIMEDOUT and "0.3 s passed" in str(err), err
    assert took < 10, took
