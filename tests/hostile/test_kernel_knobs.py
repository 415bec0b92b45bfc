"""#16 host helpers the kernel runs as root (core_pattern, modprobe,
uevent_helper, sysrq) and #18 /proc and /sys information leaks."""
import os
import signal

import pytest

import sandbox
from probes.harness import expect_probe, last_json, pid1_layout

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]

KNOBS = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe", "/sys/kernel/uevent_helper",
         "/proc/sysrq-trigger", "/proc/sys/kernel/hotplug", "/proc/sys/vm/drop_caches",
         "/proc/sys/kernel/hostname", "/proc/sys/user/max_user_namespaces"]


def _host_value(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # absent, or write-only like sysrq-trigger and drop_caches
        return None


@pytest.mark.parametrize("path", KNOBS)
def test_16_knob_write_fails(probe_config, path):
    before = _host_value(path)
    out = expect_probe(probe_config(), "fs_probe.py", "write", path, "|/tmp/evil %p")
    assert out["open"] in ("EROFS", "EACCES", "ENOENT", "EPERM"), out
    assert _host_value(path) == before


CRASH = ("import ctypes, json, os\n"
         "pid = os.fork()\n"
         "if pid == 0:\n"
         "    os.chdir('/tmp'); ctypes.string_at(0)\n"
         "_, status = os.waitpid(pid, 0)\n"
         "print(json.dumps({'signal': os.WTERMSIG(status), 'core': os.WCOREDUMP(status),"
         " 'tmp': sorted(os.listdir('/tmp'))}))\n")


def test_16_crash_dumps_no_core_and_runs_no_helper(probe_config):
    core_pattern = open("/proc/sys/kernel/core_pattern").read()
    result = sandbox.run(["python3", "-c", CRASH], probe_config())
    out = last_json(result.stdout)
    assert result.exit_code == 0 and out, result.stderr
    assert out == {"signal": signal.SIGSEGV, "core": False, "tmp": []}, out
    assert open("/proc/sys/kernel/core_pattern").read() == core_pattern


HOST_MASKED = [p for p in ("/proc/kcore", "/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/sched_debug",
                           "/proc/kallsyms", "/proc/vmallocinfo", "/proc/slabinfo", "/proc/iomem", "/proc/kmsg",
                           "/proc/kpageflags", "/proc/config.gz") if os.path.exists(p)]


def test_18_masked_proc_files_read_empty(probe_config):
    out = expect_probe(probe_config(), "fs_probe.py", "read", *HOST_MASKED)
    leaked = {p: v for p, v in out.items() if not (v in ("EACCES", "EPERM", "ENOENT") or v["len"] == 0)}
    assert not leaked, f"readable: {sorted(leaked)}"


def test_18_sys_firmware_and_kernel_absent(probe_config):
    paths = ["/sys/firmware", "/sys/kernel", "/sys/fs/cgroup", "/proc/sys/kernel/core_pattern"]
    out = expect_probe(probe_config(), "fs_probe.py", "exists", *paths)
    assert out == {"/sys/firmware": False, "/sys/kernel": False, "/sys/fs/cgroup": False,
                   "/proc/sys/kernel/core_pattern": True}, out


@pid1_layout
def test_18_proc_shows_no_host_or_sibling_pids(probe_config):
    with sandbox.spawn(["sleep", "30"], probe_config(), stdin=sandbox.DEVNULL, stdout=sandbox.DEVNULL,
                       stderr=sandbox.DEVNULL):
        pids = expect_probe(probe_config(), "inspect_self.py")["proc_pids"]
    assert pids == [1], pids
