"""The shell program (csrc/sandbox_shell.c): every new sandbox execs it right
after its clone, so a pre-made sandbox is a small program of its own, not a
copy-on-write copy of the supervisor; and a shell that cannot be had fails
closed with a typed error naming the step."""
from __future__ import annotations

import errno
import os
import time

import pytest

import sandbox
import sandbox.plan as plan_module
from sandbox.errors import ProcessSetupError
from sandbox.plan import SHELL_PROGRAM, HelperProgram, encoded_plan
from sandbox.pool import prepare_shell
from sandbox.supervisor import Supervisor

pytestmark = pytest.mark.usefixtures("no_leaks")


def status_field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def test_a_pre_made_sandbox_runs_the_shell_not_a_copy_of_the_supervisor():
    ballast = bytearray(64 << 20)          # make the supervisor clearly larger than any shell
    ballast[::4096] = b"x" * len(ballast[::4096])
    supervisor = Supervisor(pool_size=0)
    try:
        shell = prepare_shell(encoded_plan(sandbox.Config(hostname="shell-rss").validated()), supervisor)
        try:
            deadline = time.monotonic() + 5
            while os.readlink(f"/proc/{shell.pid}/exe") != os.path.realpath(SHELL_PROGRAM):
                assert time.monotonic() < deadline, "the clone never exec'd the shell program"
                time.sleep(0.005)
            with open(f"/proc/{shell.pid}/maps") as f:
                maps = f.read()
            assert "libpython" not in maps and "python3" not in maps, maps
            shell_kb, own_kb = status_field(shell.pid, "VmRSS"), status_field(os.getpid(), "VmRSS")
            assert shell_kb < 4096 and shell_kb * 10 < own_kb, (shell_kb, own_kb)
        finally:
            shell.discard()
    finally:
        supervisor.close()
        del ballast


def test_commands_run_after_the_shell(tmp_path):
    """The shell's setup is the full one: an ordinary run through it still
    lands in the minimal root with no capabilities and seccomp on."""
    result = sandbox.run(["sh", "-c", "grep -E '^(CapEff|CapAmb|CapInh|NoNewPrivs|Seccomp):' /proc/self/status; "
                                      "test -e /etc/shadow || echo no-shadow"],
                         sandbox.Config(hostname="shell-run"))
    out = result.stdout.decode()
    assert result.exit_code == 0, result
    assert "CapEff:\t0000000000000000" in out and "CapAmb:\t0000000000000000" in out, out
    assert "CapInh:\t0000000000000000" in out and "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out, out
    assert "no-shadow" in out, out


@pytest.fixture
def shell_program(monkeypatch):
    """Swap the supervisor's shell program for another file (fresh configs, so
    no pre-made sandbox was made with the real one)."""
    def use(path):
        monkeypatch.setattr(plan_module, "_shell_program", HelperProgram(path, "shell-program"))
    return use


def test_missing_shell_program_is_a_typed_error(shell_program):
    shell_program("/nonexistent/sandbox-shell")
    with pytest.raises(ProcessSetupError) as info:
        sandbox.run(["true"], sandbox.Config(hostname="shell-missing"))
    assert info.value.errno == errno.ENOENT and info.value.stage_name == "shell-program", info.value
    assert "/nonexistent/sandbox-shell" in str(info.value)


def test_shell_program_that_cannot_exec_fails_closed(shell_program, tmp_path):
    os.chmod(tmp_path, 0o777)
    shell_program("/etc/passwd")  # a regular file without execute permission
    with pytest.raises(ProcessSetupError) as info:
        sandbox.run(["sh", "-c", "echo ran > /out/ran"],
                    sandbox.Config(hostname="shell-noexec", binds=(sandbox.Bind(str(tmp_path), "/out", True),)))
    assert info.value.errno == errno.EACCES and info.value.stage_name == "shell-exec", info.value
    assert not (tmp_path / "ran").exists()
