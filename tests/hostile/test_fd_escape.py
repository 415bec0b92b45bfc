"""#2 leaked fd / cwd outside the root (CVE-2024-21626), #31 fds inherited from
the caller, #33 chroot escapes.  The caller deliberately holds non-CLOEXEC
descriptors of host directories (including the host's "/") when it spawns."""
import os
import socket

import pytest

import sandbox
from probes.harness import expect_probe, last_json, probe_argv

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]


@pytest.fixture
def leaked_host_fds():
    fds = [os.open("/", os.O_RDONLY | os.O_DIRECTORY), os.open("/etc", os.O_RDONLY | os.O_DIRECTORY),
           os.open("/", os.O_PATH | os.O_DIRECTORY), os.eventfd(0)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fds.append(sock.fileno())
    for fd in fds:
        os.set_inheritable(fd, True)
    yield fds
    for fd in fds[:-1]:
        os.close(fd)
    sock.close()


def test_02_31_only_stdio_is_open_and_nothing_leads_out(probe_config, leaked_host_fds):
    out = expect_probe(probe_config(), "fd_escape.py")
    assert set(out["fds"]) == {"0", "1", "2"}, out["fds"]
    assert out["fds"]["0"]["kind"] in ("chr", "fifo"), out["fds"]["0"]
    assert out["fds"]["1"]["kind"] == out["fds"]["2"]["kind"] == "fifo"
    for fd, entry in out["fds"].items():
        assert entry.get("dotdot") in ("ENOTDIR", None), (fd, entry)
    assert "(unreachable)" not in out["cwd"], out["cwd"]
    assert out["cwd_climb"]["top_is_root"], out["cwd_climb"]
    assert out["proc_self_root"] == "/" and out["proc_self_cwd"] == "/tmp"


def test_02_cwd_in_a_bind_climbs_to_the_sandbox_root(probe_config, leaked_host_fds, tmp_path):
    """".." from a bound host directory leads to the sandbox's "/", not to the
    bind source's host parent."""
    os.chmod(tmp_path, 0o755)
    result = sandbox.run(probe_argv("fd_escape.py"), probe_config(binds=[f"{tmp_path}:/data"], cwd="/data"))
    out = last_json(result.stdout)
    assert result.exit_code == 0 and out, result.stderr
    assert out["cwd"] == "/data" and out["cwd_climb"]["top_is_root"], out


def test_33_dotdot_from_root_stays_at_root(probe_config):
    out = expect_probe(probe_config(), "fd_escape.py")
    assert out["slash_dotdot_is_slash"] and out["chdir_up_from_slash_is_slash"], out


def test_33_chroot_fails(probe_config):
    assert expect_probe(probe_config(), "try_syscall.py", "chroot")["chroot"] in ("EPERM", "ENOSYS")


def test_02_cwd_through_proc_self_fd_never_lands_outside(probe_config, leaked_host_fds):
    """runc's CVE-2024-21626 shape: the configured cwd names /proc/self/fd/N
    while the caller holds host directory fds.  Setup must fail (typed) or
    the command must start inside the sandbox's tree."""
    for fd in sorted(set(range(3, 12)) | set(leaked_host_fds[:3])):
        config = probe_config(cwd=f"/proc/self/fd/{fd}")
        try:
            result = sandbox.run(probe_argv("fd_escape.py"), config)
        except sandbox.SandboxError as exc:
            assert isinstance(exc, sandbox.SetupError), exc
            continue
        out = last_json(result.stdout)
        assert result.exit_code == 0 and out, (fd, result)
        assert "(unreachable)" not in out["cwd"] and out["cwd_climb"]["top_is_root"], (fd, out)
