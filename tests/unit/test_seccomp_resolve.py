"""Resolution: unknown names, bad values, defaults, conflicting and unreachable rules."""
from __future__ import annotations

import errno
import os
import socket

import pytest

from sandbox.constants import kernel_constant
from sandbox.errors import PolicyError
from sandbox.seccomp.resolve import resolve
from sandbox.seccomp.syntax import read_sources


def error_at(tmp_path, text: str, line: int, *fragments: str) -> str:
    path = tmp_path / "p.policy"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        resolve(read_sources(str(path)))
    message = str(info.value)
    assert f"{os.path.realpath(path)}:{line}:" in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_unknown_syscall_with_suggestion(tmp_path):
    error_at(tmp_path, "default allow\nreed: allow\n", 2, "unknown syscall 'reed' on x86_64",
             "did you mean 'read'")


def test_syscall_of_another_arch_is_unknown(tmp_path):
    # socketcall exists on i386 only: the policy is for the native arch.
    error_at(tmp_path, "default allow\nsocketcall: errno EPERM\n", 2, "unknown syscall 'socketcall'")


def test_unknown_constant(tmp_path):
    error_at(tmp_path, "default allow\nsocket: allow if arg0 == AF_NOPE\n", 2,
             "unknown constant 'AF_NOPE'")


def test_unknown_errno_and_non_errno_names(tmp_path):
    error_at(tmp_path, "default allow\nread: errno EWHAT\n", 2, "unknown errno name 'EWHAT'")
    # AF_INET is a constant but not an errno name
    error_at(tmp_path, "default allow\nread: errno AF_INET\n", 2, "unknown errno name")


@pytest.mark.parametrize("value", ["0", "4096", "65536"])
def test_errno_out_of_range(tmp_path, value):
    error_at(tmp_path, f"default allow\n\nread: errno {value}\n", 3, "outside 1..4095")


def test_default_errno_is_checked_too(tmp_path):
    error_at(tmp_path, "default errno 0\n", 1, "outside 1..4095")


def test_missing_and_duplicate_default(tmp_path):
    error_at(tmp_path, "read: allow\n", 1, "no 'default <action>' line")
    error_at(tmp_path, "default allow\nread: allow\ndefault errno EPERM\n", 3,
             "second 'default' line", ":1)")


def test_values_must_fit_32_bits(tmp_path):
    error_at(tmp_path, "default allow\nread: allow if arg0 == 0x100000000\n", 2,
             "does not fit in 32 bits")


def test_masked_value_outside_mask_never_matches(tmp_path):
    error_at(tmp_path, "default allow\nread: errno EPERM if arg0 & 0xf0 == 0x1\n", 2,
             "can never be 0x1")
    error_at(tmp_path, "default allow\nread: errno EPERM if arg0 & 0 == 0\n", 2, "mask of 0")


def test_condition_that_can_never_hold(tmp_path):
    error_at(tmp_path, "default allow\nread: errno EPERM if arg0 == 1 && arg0 == 2\n", 2,
             "can never hold")
    error_at(tmp_path, "default allow\nread: errno EPERM if arg0 < 0\n", 2, "can never hold")
    error_at(tmp_path, "default allow\nread: errno EPERM if arg0 > 0xffffffff\n", 2,
             "can never hold")


def test_contradictory_rules_are_a_conflict(tmp_path):
    message = error_at(tmp_path, "default errno ENOSYS\nread: allow\nread: errno EPERM\n", 3,
                       "conflict", "line 2")
    assert "never applies" in message


def test_same_condition_different_action_is_a_conflict(tmp_path):
    error_at(tmp_path, "default allow\n"
                       "ioctl: errno EPERM if arg1 == TIOCSTI\n"
                       "ioctl: errno EACCES if arg1 == TIOCSTI\n", 3, "conflict", "line 2")


def test_rule_covered_by_several_earlier_rules(tmp_path):
    error_at(tmp_path, "default allow\n"
                       "read: errno EPERM if arg0 < 10\n"
                       "read: errno EACCES if arg0 >= 10\n"
                       "read: errno EIO if arg0 == 3\n", 4, "line 2")


def test_duplicate_rule_across_include(tmp_path):
    (tmp_path / "inc.policy").write_text("read: allow\n")
    (tmp_path / "p.policy").write_text("default errno ENOSYS\nread: allow\n@include inc.policy\n")
    with pytest.raises(PolicyError) as info:
        resolve(read_sources(str(tmp_path / "p.policy")))
    message = str(info.value)
    assert f"{os.path.realpath(tmp_path / 'inc.policy')}:1: duplicate" in message
    assert f"{os.path.realpath(tmp_path / 'p.policy')}:2 already decides" in message


def test_overlapping_rules_resolve_first_match_wins(tmp_path):
    path = tmp_path / "p.policy"
    path.write_text("default errno ENOSYS\n"
                    "socket: allow if arg0 == AF_NETLINK && arg2 == NETLINK_ROUTE\n"
                    "socket: errno EPROTONOSUPPORT if arg0 == AF_NETLINK\n"
                    "socket: errno EAFNOSUPPORT\n")
    policy = resolve(read_sources(str(path)))
    nr = policy.rules[0].nr
    netlink, raw = socket.AF_NETLINK, socket.SOCK_RAW
    assert policy.decide(nr, (netlink, raw, kernel_constant("NETLINK_ROUTE"))).kind == "allow"
    assert policy.decide(nr, (netlink, raw, socket.NETLINK_XFRM)).errno == errno.EPROTONOSUPPORT
    assert policy.decide(nr, (socket.AF_INET, raw, 0)).errno == errno.EAFNOSUPPORT


def test_conditions_too_complex_for_the_kernel_are_refused(tmp_path):
    conj = " && ".join(f"arg{i} != {i + 7}" for i in range(4))
    error_at(tmp_path, f"default allow\nread: errno EPERM if {conj}\n", 2,
             "libseccomp rules (limit")
