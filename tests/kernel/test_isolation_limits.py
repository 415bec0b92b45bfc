"""Resource limits and lifetime, on real sandboxes: memory (OOM kill reported),
processes (pids limit), CPU quota, wall-clock timeout, daemons left behind,
and the death of the supervisor."""
import os
import signal
import subprocess
import tempfile
import time

import pytest

import sandbox
from probes.harness import expect_probe, kill_supervisor_and_check, pid1_layout, pids_in_pid_namespace, probe_argv, run_probe

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leaks")]

MiB = 1 << 20


def test_memory_bomb_is_oom_killed_and_reported(probe_config):
    result, _ = run_probe(probe_config(memory_mb=64), "bombs.py", "memory")
    assert result.oom_killed, result
    assert result.signal == signal.SIGKILL, result
    assert result.returncode == -signal.SIGKILL and result.shell_status == 128 + signal.SIGKILL
    assert result.memory_peak_bytes is not None
    assert 48 * MiB <= result.memory_peak_bytes <= 66 * MiB, result.memory_peak_bytes


def test_ordinary_command_is_not_reported_oom(probe_config):
    result, _ = run_probe(probe_config(memory_mb=64), "bombs.py", "sleep", "0")
    assert result.exit_code == 0 and not result.oom_killed and not result.timed_out, result
    assert 0 < result.memory_peak_bytes < 64 * MiB


def test_pids_limit_stops_fork(probe_config):
    result, out = run_probe(probe_config(pids=16), "bombs.py", "forkcount")
    assert result.exit_code == 0 and out, result
    assert out["errno"] == "EAGAIN", out
    assert out["forked"] < 16, out


def test_fork_bomb_is_contained(probe_config):
    """A real fork bomb: every process forks.  Seen from the host, the sandbox
    never holds more than its pids limit, the host can still fork, and the
    bomb's end is reported."""
    box = sandbox.spawn(probe_argv("bombs.py", "forkbomb", "2"), probe_config(pids=16, timeout_s=20),
                        stdin=sandbox.DEVNULL, stdout=sandbox.PIPE, stderr=sandbox.PIPE)
    with box:
        ns = os.readlink(f"/proc/{box.pid}/ns/pid")
        most = 0
        while box.poll() is None:
            most = max(most, len(pids_in_pid_namespace(ns)))
            time.sleep(0.05)
        result = box.wait()
    assert 4 <= most <= 16, f"{most} processes seen in the sandbox (pids limit 16)"
    assert result.exit_code == 0, result
    assert not pids_in_pid_namespace(ns)
    host_child = subprocess.run(["true"])
    assert host_child.returncode == 0


def test_cpu_quota_gives_about_half_a_cpu(probe_config):
    result, out = run_probe(probe_config(cpus=0.5), "bombs.py", "busy", "2")
    assert result.exit_code == 0 and out, result
    share = result.cpu_time_s / result.wall_time_s
    assert 0.3 <= share <= 0.7, f"cpu {result.cpu_time_s:.2f}s over wall {result.wall_time_s:.2f}s = {share:.2f}"


def test_timeout_kills_and_is_reported(probe_config):
    result, _ = run_probe(probe_config(timeout_s=1), "bombs.py", "sleep", "30")
    assert result.timed_out, result
    assert result.signal == signal.SIGKILL, result
    assert 0.9 <= result.wall_time_s < 5, result.wall_time_s


@pytest.fixture
def out_dir():
    """A host directory the sandbox (host uid 65534) may write into via a rw bind."""
    with tempfile.TemporaryDirectory(prefix="sbx-out-") as path:
        os.chmod(path, 0o777)
        yield path


def _beat(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def test_daemon_left_behind_dies_with_the_command(probe_config, out_dir):
    hb = os.path.join(out_dir, "hb")
    result, out = run_probe(probe_config(binds=[f"{out_dir}:/out:rw"]), "daemon.py", "/out/hb")
    assert result.exit_code == 0 and out == {"daemon": True}, result
    first = _beat(hb)
    time.sleep(0.5)
    assert first is not None and _beat(hb) == first, "the daemon outlived its sandbox"


def test_killing_the_supervisor_kills_the_sandbox(out_dir):
    """The parent-death signal (re-armed after every credential change) ends
    pid 1 and with it the pid namespace; the cgroup reaper removes the cgroups."""
    kill_supervisor_and_check(out_dir)


@pid1_layout
def test_parent_death_signal_is_armed_at_exec(probe_config):
    """PR_SET_PDEATHSIG survives the child's own setresuid/capset (the kernel
    clears it on every credential change, so the C core re-arms it)."""
    assert expect_probe(probe_config(), "inspect_self.py")["pdeath_signal"] == signal.SIGKILL


def test_killing_the_supervisor_kills_the_sandbox_without_cgroups(out_dir):
    """No reaper: the parent-death signal alone must do it."""
    kill_supervisor_and_check(out_dir, disable=("cgroups",))
