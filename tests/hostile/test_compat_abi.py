"""#27 Multi-ABI seccomp bypass: i386 `int $0x80` (including socketcall, whose
arguments a filter cannot read) and x32-numbered syscalls from a 64-bit
process.  Each attempt must end the process with SIGSYS or return -ENOSYS."""
import errno
import os
import platform
import shutil
import signal
import subprocess

import pytest

import sandbox
from probes.harness import PROBES

pytestmark = [
    pytest.mark.hostile,
    pytest.mark.usefixtures("no_leaks"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="foreign-ABI probes are written for x86_64"),
]


@pytest.fixture(scope="session")
def compat_bin(tmp_path_factory):
    """The C probe, built for each ABI into a directory bound at /cbin."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the foreign-ABI probe (tests/probes/compat_abi.c)")
    out = tmp_path_factory.mktemp("cbin")
    os.chmod(out, 0o755)
    src = os.path.join(PROBES, "compat_abi.c")
    for name, flags in (("compat_i386", []), ("compat_x32", ["-DPROBE_X32"])):
        for link in (["-static"], []):  # static if libc.a is there, else dynamic (/usr/lib is bound)
            proc = subprocess.run(["gcc", *link, "-O1", "-Wall", *flags, "-o", str(out / name), src],
                                  capture_output=True)
            if proc.returncode == 0:
                break
        else:
            pytest.skip(f"gcc could not build {name}: {proc.stderr.decode()[-500:]}")
    return str(out)


CASES = [("compat_i386", "getpid"), ("compat_i386", "socket_alg"), ("compat_i386", "socket_vsock"),
         ("compat_i386", "socketcall_alg"), ("compat_i386", "socketcall_vsock"),
         ("compat_x32", "getpid"), ("compat_x32", "socket_alg"), ("compat_x32", "socket_vsock")]


@pytest.mark.parametrize("abi,case", CASES)
def test_foreign_abi_syscall_is_killed_or_enosys(probe_config, compat_bin, abi, case):
    result = sandbox.run([f"/cbin/{abi}", case], probe_config(binds=[f"{compat_bin}:/cbin"]))
    if result.signal is not None:
        assert result.signal == signal.SIGSYS, result
        return
    assert result.exit_code == 0, result
    assert result.stdout.decode().strip() == f"{case} returned {-errno.ENOSYS}", result.stdout


def test_native_control_runs(probe_config, compat_bin):
    """The probe itself starts and prints inside (so the cases above test the
    syscalls, not an exec failure)."""
    result = sandbox.run(["/cbin/compat_i386", "nonsense"], probe_config(binds=[f"{compat_bin}:/cbin"]))
    assert result.exit_code == 2 and b"unknown case" in result.stderr, result
