"""#1 CVE-2019-5736: /proc/self/exe (and every visible /proc/*/exe) cannot be
opened for writing, and the interpreter sits on a read-only mount."""
import pytest

from probes.harness import expect_probe, pid1_layout
from sandbox.host import detect

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]

REFUSED = {"EROFS", "EACCES", "ETXTBSY", "EPERM"}


@pid1_layout
def test_01_proc_exe_not_writable(probe_config):
    out = expect_probe(probe_config(), "proc_exe.py")
    assert len(out["exes"]) >= 2, "expected the probe and its child"
    for pid, entry in out["exes"].items():
        for mode in ("O_WRONLY", "O_RDWR", "O_WRONLY|O_APPEND"):
            assert entry[mode] in REFUSED, (pid, mode, entry)
    assert out["open_real_path_for_writing"] in REFUSED, out


@pid1_layout
def test_01_interpreter_is_on_a_read_only_mount(probe_config):
    out = expect_probe(probe_config(), "proc_exe.py")
    mount = out["exe_mount"]
    assert mount is not None and "ro" in mount["options"], mount
    assert "nosuid" in mount["options"], mount


@pid1_layout
def test_01_only_the_command_runs_inside(probe_config):
    """No supervisor or helper binary is ever exec'd inside: every process
    there runs the command's own executable."""
    out = expect_probe(probe_config(), "proc_exe.py")
    python = detect().python.executable
    assert {entry["target"] for entry in out["exes"].values()} == {python}, out["exes"]
