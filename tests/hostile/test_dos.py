"""#34 a fork bomb in one sandbox does not stop another from starting and
answering; #35 memory and disk exhaustion stay inside the sandbox's limits."""
import os
import signal
import time

import pytest

import sandbox
from probes.harness import expect_probe, probe_argv, run_probe

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]

MiB = 1 << 20


def test_34_fork_bomb_does_not_starve_another_sandbox(probe_config):
    bomb = sandbox.spawn(probe_argv("bombs.py", "forkbomb", "6"), probe_config(pids=32, timeout_s=30),
                         stdin=sandbox.DEVNULL, stdout=sandbox.DEVNULL, stderr=sandbox.DEVNULL)
    with bomb:
        time.sleep(0.5)  # let it fill its pids limit
        assert bomb.poll() is None, "the bomb ended early: the test would prove nothing"
        started = time.monotonic()
        # Same Config family, same host uid: RLIMIT_NPROC must not be shared.
        other = sandbox.run(["python3", "-c", "import os; os.fork() or os._exit(0); print('alive')"],
                            probe_config(pids=32))
        elapsed = time.monotonic() - started
        assert bomb.poll() is None, "the bomb ended while the other sandbox ran"
        bomb.kill()
    assert other.exit_code == 0 and other.stdout == b"alive\n", other
    assert elapsed < 10, f"the second sandbox took {elapsed:.1f} s under a fork bomb"


def test_35_tmp_fill_stops_at_its_size(probe_config):
    out = expect_probe(probe_config(tmp_size_mb=16), "fs_probe.py", "fill", "/tmp")
    assert out["errno"] == "ENOSPC" and out["written"] <= 16 * MiB, out


def test_35_tmpfs_pages_count_against_the_memory_limit(probe_config):
    """A /tmp larger than the memory limit: filling it must end in ENOSPC,
    ENOMEM or an OOM kill, with the cgroup's peak within its limit."""
    result, out = run_probe(probe_config(tmp_size_mb=256, memory_mb=48), "fs_probe.py", "fill", "/tmp")
    assert result.memory_peak_bytes is not None and result.memory_peak_bytes <= 50 * MiB, result
    if result.oom_killed:
        assert result.signal == signal.SIGKILL, result
    else:
        assert out and out["errno"] in ("ENOSPC", "ENOMEM") and out["written"] < 48 * MiB, (result, out)


def test_35_memory_bomb_kills_only_the_sandbox(probe_config):
    with sandbox.spawn(["sleep", "30"], probe_config(), stdin=sandbox.DEVNULL, stdout=sandbox.DEVNULL,
                       stderr=sandbox.DEVNULL) as neighbour:
        result, _ = run_probe(probe_config(memory_mb=48), "bombs.py", "memory")
        assert result.oom_killed and result.signal == signal.SIGKILL, result
        assert result.memory_peak_bytes <= 50 * MiB
        assert neighbour.poll() is None, "the OOM killer hit a neighbouring sandbox"
    os.kill(os.getpid(), 0)


def test_35_no_swap_escape(probe_config):
    """The memory limit is not stretched by swapping: the peak stays under the
    limit even though the bomb asked for far more."""
    result, _ = run_probe(probe_config(memory_mb=32), "bombs.py", "memory")
    assert result.oom_killed and result.memory_peak_bytes <= 34 * MiB, result
