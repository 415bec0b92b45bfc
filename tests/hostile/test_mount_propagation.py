"""#17 mount propagation: a mount made on the host under a bind source after
the sandbox started does not appear inside, and the sandbox cannot mount
anything that could appear on the host."""
import os
import select
import subprocess

import pytest

import sandbox
from probes.harness import expect_probe, last_json

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]

WATCH = ("import json,os,sys\n"
         "print('ready', flush=True); sys.stdin.readline()\n"
         "print(json.dumps({'sub': sorted(os.listdir('/data/sub')),"
         " 'mounts': [l.split()[4] for l in open('/proc/self/mountinfo')]}))\n")


@pytest.fixture
def bind_source(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "before").write_text("x")
    for p in (tmp_path, tmp_path / "sub"):
        os.chmod(p, 0o755)
    return tmp_path


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting on the host needs root")
def test_17_host_mount_after_start_does_not_appear_inside(probe_config, bind_source):
    sub = bind_source / "sub"
    box = sandbox.spawn(["python3", "-c", WATCH], probe_config(binds=[f"{bind_source}:/data"]),
                        stdin=sandbox.PIPE, stdout=sandbox.PIPE, stderr=sandbox.PIPE)
    mounted = False
    try:
        assert select.select([box.stdout], [], [], 10)[0] and box.stdout.readline() == b"ready\n"
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "sbx-propagation-test", str(sub)], check=True)
        mounted = True
        (sub / "after").write_text("y")
        box.stdin.write(b"go\n")
        box.stdin.flush()
        out = last_json(box.stdout.read())
    finally:
        if mounted:
            subprocess.run(["umount", str(sub)], check=True)
        box.close()
    assert out["sub"] == ["before"], f"the host's new mount is visible inside: {out['sub']}"
    assert "/data/sub" not in out["mounts"]


def test_17_sandbox_cannot_mount_so_nothing_reaches_the_host(probe_config):
    before = open("/proc/self/mountinfo").read()
    out = expect_probe(probe_config(), "try_syscall.py", "mount_tmpfs", "fsopen", "open_tree")
    assert set(out.values()) <= {"EPERM", "ENOSYS"}, out
    assert open("/proc/self/mountinfo").read() == before
