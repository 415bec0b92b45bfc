"""The linter: dangerous allowances, unfiltered argument-checked syscalls, allow default,
hot syscalls with conditions."""
from __future__ import annotations

import os

import pytest

from sandbox.seccomp import lint, load_policy
from sandbox.seccomp.resolve import resolve
from sandbox.seccomp.syntax import read_sources

SAFE_ARGS = """
clone: allow if arg0 & CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET|CLONE_NEWCGROUP == 0
socket: allow if arg0 == AF_UNIX
ioctl: errno EPERM if arg1 == TIOCSTI || arg1 == TIOCLINUX
ioctl: allow
personality: allow if arg0 == 0
"""


def findings(tmp_path, text):
    path = tmp_path / "p.policy"
    path.write_text(text)
    return lint(resolve(read_sources(str(path))))


def messages(found, severity=None):
    return [f.message for f in found if severity in (None, f.severity)]


def test_shipped_default_policy_is_clean():
    assert lint("default") == []
    assert lint(load_policy("default")) == []


def test_permissive_policy_only_warns_about_its_default():
    found = lint("permissive")
    assert [f.severity for f in found] == ["warning"]
    assert "default action is allow" in found[0].message
    assert found[0].line == 6


def test_unfiltered_dangerous_syscalls_are_errors_with_lines(tmp_path):
    found = findings(tmp_path, "default errno ENOSYS\nread: allow\nptrace: allow\n"
                               "bpf: log\n" + SAFE_ARGS)
    errors = [f for f in found if f.severity == "error"]
    assert {f.syscall for f in errors} == {"ptrace", "bpf"}
    ptrace = next(f for f in errors if f.syscall == "ptrace")
    assert ptrace.line == 3 and ptrace.location.file == os.path.realpath(tmp_path / "p.policy")
    assert "allowed for every argument" in ptrace.message
    assert str(ptrace).startswith(f"{ptrace.location.file}:3: error:")


def test_argument_filtered_dangerous_syscall_is_a_warning(tmp_path):
    found = findings(tmp_path, "default errno ENOSYS\nptrace: allow if arg0 == 0\n" + SAFE_ARGS)
    assert [(f.severity, f.syscall) for f in found] == [("warning", "ptrace")]


@pytest.mark.parametrize("name", ["socket", "clone", "ioctl", "personality"])
def test_unrestricted_argument_checked_syscalls(tmp_path, name):
    text = "default errno ENOSYS\n" + "\n".join(
        line for line in SAFE_ARGS.splitlines() if not line.startswith(name)) + f"\n{name}: allow\n"
    found = [f for f in findings(tmp_path, text) if f.severity == "error"]
    assert any(f.syscall == name and "without an argument filter" in f.message for f in found)


def test_semantic_checks_see_through_the_conditions(tmp_path):
    text = ("default errno ENOSYS\n"
            "clone: allow if arg0 & CLONE_NEWNS == 0\n"     # forgets CLONE_NEWUSER & co
            "socket: allow if arg0 != AF_UNIX\n"            # allows AF_ALG
            "ioctl: errno EPERM if arg1 == TIOCSTI\nioctl: allow\n"  # forgets TIOCLINUX
            "personality: allow if arg0 == 0\n")
    errors = messages(findings(tmp_path, text), "error")
    assert any("CLONE_NEWUSER" in m for m in errors)
    assert not any("CLONE_NEWNS" in m for m in errors)
    assert any("socket(AF_ALG)" in m for m in errors)
    assert any("TIOCLINUX" in m for m in errors) and not any("TIOCSTI" in m for m in errors)


def test_allow_by_default_reports_the_default_line(tmp_path):
    found = findings(tmp_path, "# comment\ndefault allow\n")
    ptrace = next(f for f in found if f.syscall == "ptrace")
    assert ptrace.severity == "error" and ptrace.line == 2 and "by the default action" in \
        ptrace.message
    assert any("default action is allow" in m for m in messages(found, "warning"))


def test_hot_syscalls_with_conditions_warn(tmp_path):
    found = findings(tmp_path, "default errno ENOSYS\nread: allow if arg0 == 0\n" + SAFE_ARGS)
    assert [(f.severity, f.syscall) for f in found] == [("warning", "read")]
    assert "cannot cache" in found[0].message
