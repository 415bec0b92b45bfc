"""The probes' one table of kernel numbers (tests/probes/syscall_table.py)
agrees with independent sources on this host, so no probe silently tries the
wrong syscall.  Host-only: no sandbox runs here."""
import _prctl
import pyseccomp
import pytest
from pyroute2 import netlink

from probes import syscall_table as T
from sandbox.constants import kernel_constant

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("name", sorted(T.SYSCALLS))
def test_syscall_number_matches_libseccomp(name):
    assert pyseccomp.resolve_syscall(pyseccomp.Arch.X86_64, name) == T.SYSCALLS[name]


@pytest.mark.parametrize("name", ["CLONE_NEWNS", "CLONE_NEWCGROUP", "CLONE_NEWUTS", "CLONE_NEWIPC",
                                  "CLONE_NEWUSER", "CLONE_NEWPID", "CLONE_NEWNET"])
def test_clone_flag_matches_the_c_core(name):
    assert getattr(T, name) == kernel_constant(name)


@pytest.mark.parametrize("name", ["PR_GET_PDEATHSIG", "PR_GET_SECUREBITS", "SECBIT_NOROOT", "SECBIT_NOROOT_LOCKED",
                                  "SECBIT_NO_SETUID_FIXUP_LOCKED", "SECBIT_KEEP_CAPS_LOCKED"])
def test_prctl_constant_matches_python_prctl(name):
    assert getattr(T, name) == getattr(_prctl, name)


def test_ambient_securebits_follow_the_kernel_layout():
    """SECBIT_NO_CAP_AMBIENT_RAISE is bit 6 and its lock bit 7 (linux/securebits.h:
    each flag at an even bit, its lock right above)."""
    assert T.SECBIT_NO_CAP_AMBIENT_RAISE == 1 << 6
    assert T.SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED == T.SECBIT_NO_CAP_AMBIENT_RAISE << 1
    assert T.SECBIT_NOROOT_LOCKED == T.SECBIT_NOROOT << 1


@pytest.mark.parametrize("name", ["NETLINK_SOCK_DIAG", "NETLINK_AUDIT", "NETLINK_NETFILTER",
                                  "NETLINK_KOBJECT_UEVENT", "NETLINK_GENERIC"])
def test_netlink_protocol_matches_pyroute2(name):
    assert getattr(T, name) == getattr(netlink, name)
