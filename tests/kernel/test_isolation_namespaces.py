"""Namespaces and identity, checked from inside a real sandbox (and, for the
host uid, from outside through /proc/<pid>/status)."""
import os
import select

import pytest

import sandbox
from probes.harness import expect_probe, host_status, last_json, pid1_layout, probe_argv

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leaks")]

NAMESPACES = ("pid", "mnt", "net", "ipc", "uts", "user", "cgroup")


@pytest.fixture
def inside(probe_config):
    return expect_probe(probe_config(), "inspect_self.py")


@pytest.mark.parametrize("ns", NAMESPACES)
def test_namespace_differs_from_host(inside, ns):
    host_inode = os.stat(f"/proc/self/ns/{ns}").st_ino
    assert inside["ns"][ns] != host_inode, f"the sandbox shares the host's {ns} namespace"


@pid1_layout
def test_command_is_pid_1_and_sees_only_its_own_processes(inside):
    assert inside["pid"] == 1
    assert inside["ppid"] == 0
    assert inside["proc_pids"] == [1], f"/proc shows other processes: {inside['proc_pids']}"


def test_proc_lists_exactly_the_sandboxs_processes(probe_config):
    code = ("import os,time,json\n"
            "kids=[]\n"
            "for _ in range(3):\n"
            "    pid=os.fork()\n"
            "    if pid==0: time.sleep(5); os._exit(0)\n"
            "    kids.append(pid)\n"
            "seen=sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
            "print(json.dumps({'kids': kids, 'seen': seen}))\n")
    result = sandbox.run(["python3", "-c", code], probe_config())
    out = last_json(result.stdout)
    assert result.exit_code == 0 and out, result.stderr
    assert out["seen"] == sorted([1] + out["kids"]), out


def test_hostname_is_sandbox(inside):
    assert inside["hostname"] == "sandbox"
    assert inside["uname_nodename"] == "sandbox"


def test_etc_hostname_is_the_sandboxs_own(probe_config):
    result = sandbox.run(["cat", "/etc/hostname"], probe_config())
    assert result.stdout == b"sandbox\n"


def test_uid_and_gid_inside_are_1000(inside):
    assert inside["uid"] == [1000, 1000, 1000]
    assert inside["gid"] == [1000, 1000, 1000]
    assert inside["groups"] in ([], [1000])


def test_host_sees_the_sandbox_as_nobody(probe_config):
    """From outside: the sandboxed process is uid/gid 65534 on the host."""
    with sandbox.spawn(probe_argv("inspect_self.py", "--wait"), probe_config(),
                       stdin=sandbox.PIPE, stdout=sandbox.PIPE, stderr=sandbox.DEVNULL) as box:
        ready, _, _ = select.select([box.stdout], [], [], 10)
        assert ready, "probe did not start"
        line = box.stdout.readline()
        assert b"ready" in line, line
        status = host_status(box.pid)
        ns_pid = os.readlink(f"/proc/{box.pid}/ns/pid")
        box.stdin.write(b"go\n")
        box.stdin.flush()
        inside = last_json(box.stdout.read())
    assert status["Uid"].split() == ["65534"] * 4, status["Uid"]
    assert status["Gid"].split() == ["65534"] * 4, status["Gid"]
    assert status["Groups"] == "", status["Groups"]
    assert ns_pid != os.readlink("/proc/self/ns/pid")
    assert inside["pid"] == 1


def test_cgroup_namespace_root_is_the_sandbox(inside):
    """In its own cgroup namespace the sandbox sees itself at the root."""
    paths = {line.split(":", 2)[2] for line in inside["proc_cgroup"]}
    assert paths == {"/"}, inside["proc_cgroup"]
