"""Kernel subsystems the sandbox must not reach, one test per catalogue entry:
#15 open_by_handle_at, #19 keyrings, #20 userfaultfd, #23 io_uring,
#24 perf_event_open, #25 host control, #26 bpf, #3/#21 other processes.

Arguments are chosen (tests/probes/try_syscall.py) so that an allowed call
would answer OK/EFAULT/EBADF/ENOKEY, not EPERM/ENOSYS."""
import errno
import os

import pytest

import sandbox
from probes.harness import expect_probe

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]

DENIED = {"EPERM", "ENOSYS"}


def denied(probe_config, *scenarios, accepted=DENIED):
    out = expect_probe(probe_config(), "try_syscall.py", *scenarios)
    bad = {name: err for name, err in out.items() if err not in accepted}
    assert not bad, f"not denied: {bad}"


def test_15_open_by_handle_at(probe_config):
    denied(probe_config, "open_by_handle_at")


def test_19_keyrings(probe_config):
    denied(probe_config, "keyctl", "add_key", "request_key")


def test_20_userfaultfd(probe_config):
    denied(probe_config, "userfaultfd")
    out = expect_probe(probe_config(), "fs_probe.py", "exists", "/dev/userfaultfd")
    assert out["/dev/userfaultfd"] is False


def test_23_io_uring(probe_config):
    denied(probe_config, "io_uring_setup", "io_uring_enter", "io_uring_register")


def test_24_perf_event_open(probe_config):
    denied(probe_config, "perf_event_open")


def test_25_host_control(probe_config):
    denied(probe_config, "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
           "reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime")


def test_26_bpf(probe_config):
    denied(probe_config, "bpf_prog_load", "bpf_map_create")


def test_21_other_processes(probe_config):
    """ptrace, process_vm_readv, pidfd_getfd and kcmp on a same-uid child."""
    denied(probe_config, "ptrace_attach", "process_vm_readv", "pidfd_getfd", "kcmp")


def test_host_pids_are_not_addressable(probe_config):
    """A host pid means nothing inside: signals to the test process's pid
    reach no one (ESRCH), or another sandbox process, never us."""
    code = (f"import os\ntry:\n    os.kill({os.getpid()}, 0)\n    print('OK')\n"
            "except OSError as e:\n    print(e.errno)\n")
    result = sandbox.run(["python3", "-c", code], probe_config())
    assert result.stdout.strip() == str(errno.ESRCH).encode(), result
