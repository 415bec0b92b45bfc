"""Lint a policy for dangerous allowances (like minijail's policy linter).

Severity ``error``: a syscall from the dangerous list can be allowed (or only
logged) for every argument; clone can create a namespace; socket can open a
dangerous family; ioctl can run TIOCSTI/TIOCLINUX; socket, clone, ioctl or
personality are allowed with no argument filter.
Severity ``warning``: a dangerous syscall is allowed for some arguments; the
default action is allow (or log); a hot syscall has argument conditions, so
the kernel cannot cache its verdict.
The checks ask the model what it decides (semantics), not how it is written.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..constants import kernel_constant
from . import abi, plan
from .model import Location, Policy

DANGEROUS = {
    "ptrace": "inspects and rewrites other processes",
    "process_vm_readv": "reads other processes' memory",
    "process_vm_writev": "writes other processes' memory",
    "pidfd_getfd": "steals file descriptors from other processes",
    "kcmp": "probes other processes' kernel objects",
    "bpf": "loads eBPF programs (verifier bugs give kernel read/write)",
    "perf_event_open": "large kernel surface and side channels",
    "userfaultfd": "makes kernel race exploits reliable",
    "io_uring_setup": "io_uring bypasses seccomp and has a long CVE list",
    "io_uring_enter": "io_uring bypasses seccomp and has a long CVE list",
    "io_uring_register": "io_uring bypasses seccomp and has a long CVE list",
    "keyctl": "kernel keyrings are not namespaced",
    "add_key": "kernel keyrings are not namespaced",
    "request_key": "kernel keyrings are not namespaced",
    "mount": "changes the mount tree", "umount2": "changes the mount tree",
    "pivot_root": "changes the root", "chroot": "changes the root",
    "fsopen": "new mount API", "fsconfig": "new mount API (CVE-2022-0185)",
    "fsmount": "new mount API", "fspick": "new mount API", "open_tree": "new mount API",
    "move_mount": "new mount API", "mount_setattr": "new mount API",
    "unshare": "creates namespaces (userns multiplies kernel attack surface)",
    "setns": "joins namespaces",
    "clone3": "its flags live in memory seccomp cannot read, so namespaces cannot be filtered",
    "kexec_load": "replaces the kernel", "kexec_file_load": "replaces the kernel",
    "init_module": "loads kernel code", "finit_module": "loads kernel code",
    "delete_module": "unloads kernel code", "reboot": "reboots the host",
    "swapon": "host swap", "swapoff": "host swap", "acct": "host process accounting",
    "settimeofday": "sets the host clock", "clock_settime": "sets the host clock",
    "clock_adjtime": "sets the host clock", "adjtimex": "sets the host clock",
    "open_by_handle_at": "opens host inodes by handle (Shocker)",
    "name_to_handle_at": "file handles for open_by_handle_at",
    "iopl": "raw I/O ports", "ioperm": "raw I/O ports", "syslog": "kernel log",
    "quotactl": "host quotas", "sethostname": "host identity", "setdomainname": "host identity",
    "lookup_dcookie": "kernel internals", "memfd_secret": "unmapped kernel memory",
}
ARGUMENT_FILTERED = ("socket", "clone", "ioctl", "personality")
HOT = ("read", "write", "readv", "writev", "pread64", "pwrite64", "close", "futex", "mmap",
       "munmap", "mprotect", "madvise", "brk", "epoll_wait", "epoll_pwait", "epoll_ctl",
       "poll", "ppoll", "openat", "newfstatat", "fstat", "lseek", "rt_sigprocmask",
       "rt_sigaction", "recvfrom", "sendto", "recvmsg", "sendmsg", "getpid", "gettid",
       "clock_gettime", "nanosleep", "clock_nanosleep", "sched_yield", "fcntl")
NAMESPACE_FLAGS = ("CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWUSER",
                   "CLONE_NEWPID", "CLONE_NEWNET", "CLONE_NEWCGROUP")
DANGEROUS_FAMILIES = ("AF_ALG", "AF_PACKET", "AF_VSOCK", "AF_KEY", "AF_BLUETOOTH", "AF_RDS",
                      "AF_TIPC", "AF_CAN", "AF_LLC", "AF_NFC", "AF_XDP", "AF_SMC")
TTY_INJECTION = ("TIOCSTI", "TIOCLINUX")
PERMISSIVE = ("allow", "log")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" | "warning"
    location: Location
    message: str
    syscall: str | None = None

    @property
    def line(self) -> int:
        return self.location.line

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message}"


def lint(policy) -> list[Finding]:
    """Findings for a Policy, a CompiledPolicy, or a policy name/path."""
    policy = _as_policy(policy)
    findings: list[Finding] = []
    if policy.default_action.kind in PERMISSIVE:
        findings.append(Finding("warning", policy.default_location,
                                f"default action is {policy.default_action}: every syscall "
                                "not listed (including future ones) is allowed"))
    table = abi.syscall_table()
    for name, why in DANGEROUS.items():
        nr = table.get(name)
        if nr is None:
            continue
        actions = _reachable(policy, nr)
        if actions <= {"allow", "log"}:
            findings.append(_finding(policy, nr, name, "error",
                                     f"{name} is allowed for every argument: {why}"))
        elif actions & {"allow", "log"}:
            findings.append(_finding(policy, nr, name, "warning",
                                     f"{name} is allowed for some arguments: {why}"))
    for name in ARGUMENT_FILTERED:
        nr = table.get(name)
        if nr is not None and _reachable(policy, nr) <= {"allow", "log"}:
            findings.append(_finding(policy, nr, name, "error",
                                     f"{name} is allowed without an argument filter"))
    findings += _semantic_checks(policy, table)
    for name in HOT:
        nr = table.get(name)
        if nr is not None and any(rule.condition for rule in policy.rules_for(nr)):
            findings.append(_finding(policy, nr, name, "warning",
                                     f"{name} is hot but has argument conditions: the kernel "
                                     "cannot cache its verdict, so every call runs the filter"))
    return sorted(findings, key=lambda f: (f.location.file, f.location.line, f.message))


def _semantic_checks(policy: Policy, table: dict[str, int]) -> list[Finding]:
    out = []
    allowed = lambda nr, args: policy.decide(nr, args).kind in PERMISSIVE  # noqa: E731
    if "clone" in table:
        for flag in _constants(NAMESPACE_FLAGS):
            if allowed(table["clone"], (flag[1],)):
                out.append(_finding(policy, table["clone"], "clone", "error",
                                    f"clone with {flag[0]} is allowed: it creates a namespace"))
    if "socket" in table:
        for family in _constants(DANGEROUS_FAMILIES):
            if any(allowed(table["socket"], (family[1], kind, 0)) for kind in range(1, 6)):
                out.append(_finding(policy, table["socket"], "socket", "error",
                                    f"socket({family[0]}) is allowed"))
    if "ioctl" in table:
        for request in _constants(TTY_INJECTION):
            if allowed(table["ioctl"], (0, request[1])):
                out.append(_finding(policy, table["ioctl"], "ioctl", "error",
                                    f"ioctl {request[0]} is allowed: it injects terminal input"))
    return out


def _constants(names) -> list[tuple[str, int]]:
    out = []
    for name in names:
        try:
            out.append((name, kernel_constant(name)))
        except KeyError:
            continue
    return out


def _reachable(policy: Policy, nr: int) -> set[str]:
    tree = plan.plan_syscall(nr, policy.rules_for(nr), policy.default_action).tree
    kinds, stack = set(), [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, plan.Leaf):
            kinds.add(node.action.kind)
        else:
            stack.extend(sub for _, sub in node.branches)
    return kinds


def _finding(policy: Policy, nr: int, name: str, severity: str, message: str) -> Finding:
    rules = policy.rules_for(nr)
    where = rules[0].location if rules else policy.default_location
    if not rules:
        message += f" (by the default action, {policy.default_action})"
    return Finding(severity, where, message, name)


def _as_policy(policy) -> Policy:
    if isinstance(policy, Policy):
        return policy
    if hasattr(policy, "policy") and isinstance(policy.policy, Policy):
        return policy.policy
    from . import load_policy

    return load_policy(policy).policy

