"""Compiled BPF vs the policy model, run in the BPF interpreter (no root needed):
targeted cases for the default policy with expected verdicts written from kernel
constants (not from the model), and a secfuzz-style differential test."""
from __future__ import annotations

import dataclasses
import errno
import random
import signal
import socket
import termios

import pyseccomp
import pytest

from sandbox.constants import kernel_constant
from sandbox.seccomp import abi, bpf_sim, linter, load_policy

NATIVE = abi.native_arch()
NR = abi.syscall_table()
ALLOW, KILL = pyseccomp.ALLOW, pyseccomp.KILL_PROCESS
NAMESPACE_FLAGS = ["CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWUSER", "CLONE_NEWPID",
                   "CLONE_NEWNET", "CLONE_NEWCGROUP"]
GARBAGE = 0xDEADBEEF << 32


def err(name):
    return pyseccomp.ERRNO(getattr(errno, name))


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


@pytest.fixture(scope="module")
def permissive():
    return load_policy("permissive")


def verdict(compiled, name_or_nr, *args, arch=NATIVE):
    nr = NR[name_or_nr] if isinstance(name_or_nr, str) else name_or_nr
    return bpf_sim.run(compiled.bpf, bpf_sim.seccomp_data(nr, arch, args))


def test_compiled_policy_shape(default):
    assert default.name == "default" and default.path.endswith("policies/default.policy")
    assert len(default.bpf) % 8 == 0 and default.instructions == len(default.bpf) // 8
    assert 0 < default.instructions <= 4096
    assert default.default_action.kind == "errno" and default.default_action.errno == errno.ENOSYS
    assert any(rule.syscall == "read" for rule in default.rules)
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.bpf = b""


DENIED_EPERM = """mount umount2 pivot_root chroot unshare setns ptrace process_vm_readv
process_vm_writev pidfd_getfd kcmp keyctl add_key request_key bpf perf_event_open userfaultfd
io_uring_setup io_uring_enter io_uring_register kexec_load kexec_file_load init_module
finit_module delete_module reboot swapon swapoff acct settimeofday clock_settime clock_adjtime
adjtimex name_to_handle_at open_by_handle_at memfd_secret fsopen fsconfig fsmount fspick
open_tree move_mount mount_setattr quotactl syslog sethostname setdomainname iopl ioperm
lookup_dcookie""".split()


@pytest.mark.parametrize("policy_name", ["default", "permissive"])
def test_dangerous_syscalls_fail_with_eperm_for_any_arguments(policy_name):
    compiled = load_policy(policy_name)
    rng = random.Random(policy_name)
    for name in DENIED_EPERM:
        for args in [(0,) * 6] + [tuple(rng.getrandbits(64) for _ in range(6)) for _ in range(3)]:
            assert verdict(compiled, name, *args) == err("EPERM"), name


@pytest.mark.parametrize("policy_name", ["default", "permissive"])
def test_clone_namespaces_denied_threads_and_fork_allowed(policy_name):
    compiled = load_policy(policy_name)
    sigchld = int(signal.SIGCHLD)
    all_new = 0
    for flag in NAMESPACE_FLAGS:
        value = kernel_constant(flag)
        all_new |= value
        assert verdict(compiled, "clone", value | sigchld) == err("EPERM"), flag
        assert verdict(compiled, "clone", value | GARBAGE) == err("EPERM"), flag
    assert verdict(compiled, "clone", sigchld) == ALLOW  # fork()
    rng = random.Random(5)
    for _ in range(200):  # any flags without a namespace bit, upper half ignored by the kernel
        flags = rng.getrandbits(64) & ~all_new & ~kernel_constant("CLONE_NEWTIME")
        assert verdict(compiled, "clone", flags) == ALLOW, hex(flags)
    assert verdict(compiled, "clone3", 0, 0) == err("ENOSYS")


@pytest.mark.parametrize("policy_name", ["default", "permissive"])
def test_socket_families(policy_name):
    compiled = load_policy(policy_name)
    cloexec = socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
    for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_STREAM | cloexec):
            assert verdict(compiled, "socket", family, kind, 0) == ALLOW
            assert verdict(compiled, "socket", family | GARBAGE, kind, 0) == ALLOW
    for family in (socket.AF_INET, socket.AF_INET6):
        assert verdict(compiled, "socket", family, socket.SOCK_RAW | cloexec, 1) == err("EPERM")
    route = kernel_constant("NETLINK_ROUTE")
    assert verdict(compiled, "socket", socket.AF_NETLINK, socket.SOCK_RAW, route) == ALLOW
    for proto in ("NETLINK_CRYPTO", "NETLINK_XFRM", "NETLINK_USERSOCK"):
        got = verdict(compiled, "socket", socket.AF_NETLINK, socket.SOCK_RAW, kernel_constant(proto))
        assert got == err("EPROTONOSUPPORT"), proto
    for family in ("AF_ALG", "AF_PACKET", "AF_VSOCK", "AF_KEY", "AF_CAN", "AF_TIPC", "AF_RDS"):
        value = kernel_constant(family)
        assert verdict(compiled, "socket", value, socket.SOCK_RAW, 0) == err("EAFNOSUPPORT")
        assert verdict(compiled, "socket", value | GARBAGE, 1, 0) == err("EAFNOSUPPORT")


@pytest.mark.parametrize("policy_name", ["default", "permissive"])
def test_ioctl_terminal_injection_denied_others_allowed(policy_name):
    compiled = load_policy(policy_name)
    for request in ("TIOCSTI", "TIOCLINUX"):
        value = kernel_constant(request)
        assert verdict(compiled, "ioctl", 0, value) == err("EPERM")
        assert verdict(compiled, "ioctl", 0, value | GARBAGE) == err("EPERM")  # kernel: u32 cmd
    for request in (termios.TCGETS, termios.FIONREAD, termios.TIOCGWINSZ, 0):
        assert verdict(compiled, "ioctl", 1, request) == ALLOW


def test_personality_only_docker_values(default):
    for value in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert verdict(default, "personality", value) == ALLOW
        assert verdict(default, "personality", value | GARBAGE) == ALLOW
    for value in (1, 0x12345, 0x20009, 0xFFFFFFFE):
        assert verdict(default, "personality", value) == err("EPERM")


def test_foreign_abis_are_killed(default, permissive):
    x32 = abi.x32_syscall_bit()
    for compiled in (default, permissive):
        for name in ("read", "socketcall", "execve", "mount"):  # i386 numbers, int 0x80
            nr = abi.syscall_number(name, pyseccomp.Arch.X86)
            assert verdict(compiled, nr, arch=pyseccomp.Arch.X86) == KILL
        if x32:
            for name in ("read", "socket", "execve", "mount"):
                assert verdict(compiled, NR[name] | x32) == KILL, name
            assert verdict(compiled, 0x80000000) == KILL  # above the x32 bit too


def test_unknown_and_new_syscalls(default, permissive):
    newest = max(NR.values())
    for nr in (newest + 1, newest + 7, 1000, 0x3FFFFFFF):
        assert verdict(default, nr) == err("ENOSYS")
        assert verdict(permissive, nr) == ALLOW
    assert verdict(default, -1) == err("ENOSYS")


def test_runtime_syscalls_allowed(default):
    for name in ("read", "write", "futex", "mmap", "epoll_wait", "execve", "execveat", "fork",
                 "wait4", "openat", "getdents64", "pipe2", "rt_sigaction", "getrandom", "bind",
                 "connect", "accept4", "socketpair", "prlimit64", "rseq", "statx"):
        assert verdict(default, name, GARBAGE | 5, 7) == ALLOW, name


def test_hot_syscalls_are_cached_by_the_kernel(default):
    for name in linter.HOT:
        assert bpf_sim.kernel_caches_allow(default.bpf, NR[name], NATIVE), name
    for name in ("socket", "clone", "ioctl", "personality"):
        assert not bpf_sim.kernel_caches_allow(default.bpf, NR[name], NATIVE), name
    cached = [nr for nr in NR.values() if bpf_sim.kernel_caches_allow(default.bpf, nr, NATIVE)]
    allowed_by_number = [nr for nr in default.policy.syscalls
                         if [(r.action.kind, r.condition) for r in default.policy.rules_for(nr)]
                         == [("allow", ())]]
    assert sorted(cached) == sorted(allowed_by_number)


def random_triple(rng, policy):
    x32 = abi.x32_syscall_bit() or 0
    arch = rng.choices([NATIVE, pyseccomp.Arch.X86, pyseccomp.Arch.X32, rng.getrandbits(32)],
                       [85, 5, 5, 5])[0]
    nr = rng.choices([rng.choice(list(policy.syscalls)), rng.choice(list(NR.values())),
                      rng.randrange(1024), rng.randrange(1024) | x32, rng.getrandbits(32)],
                     [40, 30, 15, 10, 5])[0]
    pool = [0, 1, 0xFFFFFFFF, 0x20000] + [kernel_constant(name) for name in (
        "TIOCSTI", "TIOCLINUX", "AF_NETLINK", "AF_INET", "AF_INET6", "AF_ALG", "SOCK_RAW",
        "CLONE_NEWUSER", "CLONE_NEWNS", "NETLINK_ROUTE")]
    args = tuple(rng.choice([rng.getrandbits(64), rng.choice(pool),
                             rng.choice(pool) | (rng.getrandbits(32) << 32)]) for _ in range(6))
    return arch, nr, args


@pytest.mark.parametrize("policy_name", ["default", "permissive"])
def test_differential_against_the_model(policy_name):
    compiled = load_policy(policy_name)
    rng = random.Random(policy_name)
    insns = bpf_sim.decode(compiled.bpf)
    for _ in range(20000):
        arch, nr, args = random_triple(rng, compiled.policy)
        got = bpf_sim.run(insns, bpf_sim.seccomp_data(nr, arch, args))
        assert got == compiled.policy.decide(nr, args, arch).value, (hex(arch), nr, args)
