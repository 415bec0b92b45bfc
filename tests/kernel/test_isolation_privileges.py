"""Privileges inside the sandbox: empty capability sets, no_new_privs, a
seccomp filter, locked securebits, no controlling terminal."""
import pytest

from probes import syscall_table as T
from probes.harness import expect_probe

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leaks")]

CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


@pytest.fixture
def status(probe_config):
    return expect_probe(probe_config(), "inspect_self.py")["status"]


@pytest.mark.parametrize("cap_set", CAP_SETS)
def test_capability_set_is_empty(status, cap_set):
    assert int(status[cap_set], 16) == 0, f"{cap_set} = {status[cap_set]}"


def test_no_new_privs_is_set(status):
    assert status["NoNewPrivs"] == "1"


def test_seccomp_filter_mode(status):
    assert status["Seccomp"] == "2"
    assert int(status.get("Seccomp_filters", "1")) >= 1


def test_no_controlling_terminal_and_own_session(probe_config):
    out = expect_probe(probe_config(), "inspect_self.py")
    assert out["tty_nr"] == 0
    assert out["sid"] == 1, "the command should lead its own session (setsid)"


def test_securebits_locked(probe_config):
    """No root magic on exec, no keep-caps, no ambient raise, none undoable."""
    bits = expect_probe(probe_config(), "inspect_self.py")["securebits"]
    for name in ("SECBIT_NOROOT", "SECBIT_NOROOT_LOCKED", "SECBIT_NO_SETUID_FIXUP_LOCKED",
                 "SECBIT_KEEP_CAPS_LOCKED", "SECBIT_NO_CAP_AMBIENT_RAISE", "SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED"):
        assert bits & getattr(T, name), f"{name} not set (securebits {bits:#x})"
