"""Policy text: syntax errors with file:line, includes, cycles, constants, numbers."""
from __future__ import annotations

import errno
import os
import socket
import textwrap

import pytest

from sandbox.constants import kernel_constant
from sandbox.errors import ConfigError, PolicyError
from sandbox.seccomp import abi
from sandbox.seccomp.resolve import resolve
from sandbox.seccomp.syntax import read_sources


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(tmp_path, text, name="p.policy"):
    return resolve(read_sources(str(write(tmp_path, name, text))))


def error_of(tmp_path, text, name="p.policy") -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load(tmp_path, text, name)
    return info.value


def test_comments_blank_lines_and_lists(tmp_path):
    policy = load(tmp_path, """
        # leading comment

        default errno ENOSYS   # trailing comment
        read, write ,close: allow
        getpid: log
        mount: errno EPERM
        ptrace: kill
        uname: errno 13
    """)
    names = [r.syscall for r in policy.rules]
    assert names == ["read", "write", "close", "getpid", "mount", "ptrace", "uname"]
    by_name = {r.syscall: r.action for r in policy.rules}
    assert by_name["read"].kind == "allow"
    assert by_name["getpid"].kind == "log"
    assert by_name["mount"].errno == errno.EPERM
    assert by_name["ptrace"].kind == "kill"
    assert by_name["uname"].errno == 13
    assert policy.default_action.errno == errno.ENOSYS
    assert policy.rules[0].nr == abi.syscall_table()["read"]


SYNTAX_ERRORS = [
    ("read allow", "expected ':'"),
    ("read: permit", "expected an action"),
    ("read:", "expected an action"),
    ("read: errno", "errno needs a name or number"),
    ("read: errno if arg0 == 1", "errno needs a name or number"),
    ("read: allow if", "expected an argument"),
    ("read: allow if arg6 == 1", "expected an argument arg0..arg5"),
    ("read: allow if fd == 1", "expected an argument arg0..arg5"),
    ("read: allow if arg0 1", "expected a comparison operator"),
    ("read: allow if arg0 = 1", "unexpected character '='"),
    ("read: allow if arg0 ==", "expected a number or constant name"),
    ("read: allow if arg0 == 1 &&", "expected an argument"),
    ("read: allow if arg0 == 1 ||", "expected an argument"),
    ("read: allow if arg0 & 1 < 1", "masked comparison can only use == or !="),
    ("read: allow if arg0 == 1 extra", "unexpected 'extra' at end of line"),
    ("read: allow if arg0 == 017", "ambiguous number '017'"),
    ("read: allow if arg0 == $1", "unexpected character '$'"),
    ("default", "expected an action"),
    ("default allow please", "unexpected 'please'"),
    ("@import x.policy", "unknown directive '@import'"),
    ("@include", "@include takes exactly one path"),
    ("@include a.policy b.policy", "@include takes exactly one path"),
    (": allow", "expected a syscall name"),
    ("read,: allow", "expected a syscall name after ','"),
]


@pytest.mark.parametrize("line,message", SYNTAX_ERRORS)
def test_every_syntax_error_names_file_and_line(tmp_path, line, message):
    exc = error_of(tmp_path, f"default allow\n# padding\n{line}\n")
    path = os.path.realpath(tmp_path / "p.policy")
    assert f"{path}:3:" in str(exc)
    assert message in str(exc)
    assert isinstance(exc, ConfigError)


def test_numbers_and_constant_expressions(tmp_path):
    policy = load(tmp_path, """
        default errno ENOSYS
        socket: allow if arg0 == AF_UNIX && arg1 & SOCK_STREAM|SOCK_DGRAM != 0x0
        clone: allow if arg0 & CLONE_NEWUSER|CLONE_NEWNS == 0
        ioctl: errno EPERM if arg1 == TIOCSTI || arg1 == 0o7 || arg1 == 0b101 || arg1 == 10
    """)
    socket_rule, clone_rule, ioctl_rule = policy.rules
    first = socket_rule.condition[0]
    assert first[0].value == socket.AF_UNIX and first[0].op == "=="
    assert first[1].mask == socket.SOCK_STREAM | socket.SOCK_DGRAM and first[1].op == "!="
    assert clone_rule.condition[0][0].mask == (kernel_constant("CLONE_NEWUSER")
                                               | kernel_constant("CLONE_NEWNS"))
    values = [conj[0].value for conj in ioctl_rule.condition]
    assert values == [kernel_constant("TIOCSTI"), 7, 5, 10]


def test_include_is_relative_to_the_including_file(tmp_path):
    write(tmp_path, "sub/inner.policy", "@include ../leaf.policy\nwrite: allow\n")
    write(tmp_path, "leaf.policy", "read: allow\n")
    policy = load(tmp_path, """
        default errno ENOSYS
        @include sub/inner.policy
        close: allow
    """)
    assert [r.syscall for r in policy.rules] == ["read", "write", "close"]
    assert policy.rules[0].location.file == os.path.realpath(tmp_path / "leaf.policy")
    assert policy.rules[0].location.line == 1
    assert policy.rules[1].location.line == 2
    assert len(policy.sources) == 3


def test_include_cycle_is_reported_with_the_chain(tmp_path):
    write(tmp_path, "a.policy", "default allow\n@include b.policy\n")
    write(tmp_path, "b.policy", "read: allow\n@include a.policy\n")
    with pytest.raises(PolicyError) as info:
        read_sources(str(tmp_path / "a.policy"))
    message = str(info.value)
    assert f"{os.path.realpath(tmp_path / 'b.policy')}:2:" in message
    assert "include cycle: a.policy -> b.policy -> a.policy" in message


def test_self_include_is_a_cycle(tmp_path):
    exc = error_of(tmp_path, "default allow\n@include p.policy\n")
    assert "include cycle" in str(exc) and ":2:" in str(exc)


def test_including_the_same_file_twice_is_an_error(tmp_path):
    write(tmp_path, "common.policy", "read: allow\n")
    write(tmp_path, "mid.policy", "@include common.policy\n")
    exc = error_of(tmp_path, "default allow\n@include common.policy\n@include mid.policy\n")
    assert "already included at" in str(exc)
    assert f"{os.path.realpath(tmp_path / 'mid.policy')}:1:" in str(exc)


def test_missing_include_names_the_including_line(tmp_path):
    exc = error_of(tmp_path, "default allow\n\n@include nope.policy\n")
    assert ":3: cannot include" in str(exc) and "nope.policy" in str(exc)


def test_missing_root_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy"):
        read_sources(str(tmp_path / "absent.policy"))


def test_optional_names_skip_syscalls_this_arch_lacks(tmp_path):
    # socketcall exists on i386 only; ?socketcall is skipped, a ?typo is still an error
    policy = load(tmp_path, "default allow\n?socketcall, mount: errno EPERM\n")
    assert [r.syscall for r in policy.rules] == ["mount"]
    exc = error_of(tmp_path, "default allow\n?mountt: errno EPERM\n")
    assert ":2: unknown syscall 'mountt'" in str(exc)


def test_default_policy_resolves_on_aarch64(monkeypatch):
    import pyseccomp

    from sandbox.seccomp import policy_dir

    monkeypatch.setattr(abi, "native_arch", lambda: pyseccomp.Arch.AARCH64)
    policy = resolve(read_sources(str(policy_dir() / "default.policy")))
    names = {r.syscall: r.nr for r in policy.rules}
    assert "open" not in names and "fork" not in names
    assert names["openat"] == abi.syscall_number("openat", pyseccomp.Arch.AARCH64)
    assert names["openat"] != abi.syscall_number("openat", pyseccomp.Arch.X86_64)
