"""From a validated Config to what the C core executes.

Parent-side order of a spawn (launcher.py), one line of why each:
  1. make_plan(config)      pure and cached: every later spawn of the same config is cheap
  2. cgroup create          limits exist before the child can allocate anything
  3. clone3                 all namespaces at once (in the background when pre-made), owned by the new user namespace
  4. uid/gid maps           the child waits for them: files it creates need a mapped owner
  5. release the child      it joins its cgroup, builds the root, then waits (a pre-made sandbox, pool.py)
  6. launch                 argv + fds over the control socket; it drops privileges, loads seccomp, execs
  7. read the error pipe    EOF = exec happened; a record = typed error naming the step
  8. with init, at reaping  the command's wait status, sent by init over the kept control socket
With init, the child gets the init program (InitProgram) as a descriptor.
The child-side order lives in one place: child_main() in csrc/sandbox_core.c.
"""
from __future__ import annotations

import errno
import functools
import os
import stat
import threading
from dataclasses import dataclass

from ._core import ffi, lib
from .capabilities import CapabilityPlan, plan_capabilities
from .config import Config
from .errors import HostUnsupportedError, ProcessSetupError
from .host import HostFeatures, detect
from .namespaces import NamespacePlan, plan_namespaces
from .network import NetworkPlan, plan_network
from .rlimits import plan_rlimits
from .rootfs import Op, RootfsPlan, plan_rootfs

_OP_KINDS = {
    "mkdir": lib.SBX_OP_MKDIR, "bind": lib.SBX_OP_BIND, "mount": lib.SBX_OP_MOUNT,
    "symlink": lib.SBX_OP_SYMLINK, "write": lib.SBX_OP_WRITE_FILE, "mask": lib.SBX_OP_MASK,
    "bind_self_ro": lib.SBX_OP_BIND_SELF_RO,
}
DEFAULT_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
INIT_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_init")  # setup.py builds it
SHELL_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_shell")  # setup.py builds it


class HelperProgram:
    """One of the core's own programs, opened O_PATH|O_CLOEXEC once and handed
    to the child as a descriptor: the init program (csrc/sandbox_init.c) that
    pid 1 execs with `init`, and the shell program (csrc/sandbox_shell.c) every
    new sandbox execs before its setup.  A path would change meaning after
    pivot_root, and the file need not be visible inside.  `fd()` checks the
    descriptor still is that file (one fstat) and opens it again if someone
    closed it, or reused its number, behind our back."""

    def __init__(self, path: str, stage: str):
        self.path = path
        self.stage = stage
        self._fd = -1
        self._identity: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def fd(self) -> int:
        with self._lock:
            if self._fd >= 0:
                try:
                    st = os.fstat(self._fd)
                    if (st.st_dev, st.st_ino) == self._identity:
                        return self._fd
                except OSError:
                    pass
                self._fd = -1  # not ours any more: never close a number someone else may own now
            try:
                fd = os.open(self.path, os.O_PATH | os.O_CLOEXEC)
            except OSError as exc:
                raise ProcessSetupError(exc.errno, f"open {self.path} (rebuild the package: pip install -e .)",
                                        self.stage) from exc
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                raise ProcessSetupError(errno.EACCES, f"{self.path} is not a regular file", self.stage)
            self._fd, self._identity = fd, (st.st_dev, st.st_ino)
            return fd


_init_program = HelperProgram(INIT_PROGRAM, "init-program")
_shell_program = HelperProgram(SHELL_PROGRAM, "shell-program")


@dataclass(frozen=True)
class SandboxPlan:
    config: Config
    namespaces: NamespacePlan
    rootfs: RootfsPlan | None
    network: NetworkPlan
    capabilities: CapabilityPlan
    rlimits: tuple[tuple[int, int, int], ...]
    bpf: bytes | None
    env: tuple[tuple[str, str], ...]
    path_dirs: tuple[str, ...]
    init: bool = False  # pid 1 is a minimal init and the command its child (pid 2)

    def exec_candidates(self, command: str) -> list[str]:
        if "/" in command:
            return [command]
        return [f"{d.rstrip('/')}/{command}" for d in self.path_dirs]


def _compile_policy(config: Config) -> bytes | None:
    if not config.enabled("seccomp"):
        return None
    from .seccomp import load_policy  # compiled once per policy and cached

    return load_policy(config.policy).bpf


@functools.lru_cache(maxsize=64)
def make_plan(config: Config, host: HostFeatures | None = None) -> SandboxPlan:
    host = host or detect()
    if config.enabled("seccomp") and not host.seccomp_filter:
        raise HostUnsupportedError(0, "seccomp filters are not available", hint="disable the 'seccomp' layer")
    namespaces = plan_namespaces(config, host)
    network = plan_network(config)
    rootfs = plan_rootfs(config, host) if config.enabled("rootfs") else None
    env = dict(config.env)
    prefix = rootfs.path_prefix if rootfs else ()
    env.setdefault("PATH", ":".join(prefix + DEFAULT_PATH))
    env.setdefault("HOME", "/tmp")
    env.setdefault("LANG", "C.UTF-8")
    return SandboxPlan(
        config=config,
        namespaces=namespaces,
        rootfs=rootfs,
        network=network,
        capabilities=plan_capabilities(config, host, namespaces),
        rlimits=plan_rlimits(config),
        bpf=_compile_policy(config),
        env=tuple(env.items()),
        path_dirs=tuple(p for p in env["PATH"].split(":") if p.startswith("/")),
        init=config.init and bool(namespaces.clone_flags & lib.CLONE_NEWPID),
    )


class EncodedPlan:
    """The plan as C structs.  Built once per SandboxPlan; `for_spawn` copies the
    top-level struct and fills in what differs per spawn.  Every cffi object is
    kept alive by `self._keep` for as long as this object lives."""

    def __init__(self, plan: SandboxPlan):
        self.plan = plan
        self._keep: list = []
        base = ffi.new("struct sbx_plan *")
        ns, caps, net = plan.namespaces, plan.capabilities, plan.network
        base.clone_flags = ns.clone_flags  # includes CLONE_NEWNET exactly when the net layer is on
        if net.join:
            # egress / netns: cloned into an existing namespace (per spawn: for_prepare), not a new one.
            base.clone_flags &= ~lib.CLONE_NEWNET
            base.join_netns = 1
        base.netns_fd = -1
        base.cgroup_fd = -1
        base.wait_for_parent = 1
        base.cgroup_ns = int(ns.cgroup_ns)
        if plan.rootfs:
            self._encode_rootfs(base, plan.rootfs)
        base.hostname = self._str(plan.config.hostname) if plan.config.enabled("uts") else ffi.NULL
        base.loopback_up = int(net.loopback_up)
        base.new_session = int(plan.config.enabled("session"))
        rl = ffi.new("struct sbx_rlimit[]", len(plan.rlimits))
        for i, (res, soft, hard) in enumerate(plan.rlimits):
            rl[i].resource, rl[i].soft, rl[i].hard = res, soft, hard
        self._keep.append(rl)
        base.rlimits, base.n_rlimits = rl, len(plan.rlimits)
        base.drop_privileges = int(caps.drop)
        base.uid, base.gid = caps.uid, caps.gid
        base.set_groups = int(caps.set_groups)
        base.last_cap = caps.last_cap
        base.no_new_privs = int(caps.no_new_privs)
        base.early_setid = int(ns.user_ns)
        base.cwd = self._str(plan.config.cwd) if plan.rootfs else ffi.NULL
        base.init = int(plan.init)
        base.init_fd = -1  # per sandbox (for_prepare): checked each time
        base.use_shell = 0     # per sandbox (for_prepare), like init_fd
        base.shell_fd = -1
        if plan.bpf:
            buf = ffi.new("unsigned char[]", plan.bpf)
            self._keep.append(buf)
            base.bpf, base.bpf_len = buf, len(plan.bpf)
        base.envp = self._strv([f"{k}={v}" for k, v in plan.env])
        self.base = base

    def _str(self, text: str | bytes):
        data = text.encode() if isinstance(text, str) else text
        obj = ffi.new("char[]", data)
        self._keep.append(obj)
        return obj

    def _strv(self, items: list[str], keep: list | None = None):
        keep = self._keep if keep is None else keep
        strs = [ffi.new("char[]", s.encode()) for s in items]
        arr = ffi.new("char *[]", strs + [ffi.NULL])
        keep.extend(strs)
        keep.append(arr)
        return arr

    def _encode_rootfs(self, base, rootfs: RootfsPlan) -> None:
        ops = ffi.new("struct sbx_op[]", len(rootfs.ops))
        for i, op in enumerate(rootfs.ops):
            self._encode_op(ops[i], op)
        self._keep.append(ops)
        base.new_root = 1
        base.staging_dir = self._str(rootfs.staging_dir)
        base.root_data = self._str(rootfs.root_data)
        base.ops, base.n_ops = ops, len(rootfs.ops)
        base.ro_paths = self._strv(list(rootfs.ro_paths))
        base.n_ro_paths = len(rootfs.ro_paths)

    def _encode_op(self, c, op: Op) -> None:
        c.kind = _OP_KINDS[op.kind]
        c.flags = ((lib.SBX_OPT_OPTIONAL if op.optional else 0) | (lib.SBX_OPT_RECURSIVE if op.recursive else 0)
                   | (lib.SBX_OPT_CREATE_FILE if op.create_file else 0))
        c.path = self._str(op.path)
        c.source = self._str(op.source) if op.source is not None else ffi.NULL
        c.fstype = self._str(op.fstype) if op.fstype is not None else ffi.NULL
        if op.data is not None:
            c.data, c.data_len = self._str(op.data), len(op.data)
        c.mount_flags, c.attr_set, c.mode = op.mount_flags, op.attr_set, op.mode

    def for_prepare(self, procs_fds, clone_fd: int, netns_fd: int = -1):
        """A per-sandbox copy of the struct (cgroup fds and, for egress/netns,
        the namespace to clone into differ), for a pre-made sandbox that
        receives argv and fds later (sbx_launch)."""
        keep: list = []
        p = ffi.new("struct sbx_plan *")
        p[0] = self.base[0]
        keep.append(p)
        p.deferred_launch = 1
        if self.plan.network.join:
            if netns_fd < 0:
                raise ValueError(f"net={self.plan.network.mode!r} needs the namespace to join (net.manager.join_target)")
            p.netns_fd = netns_fd
        if procs_fds:
            cg = ffi.new("int[]", list(procs_fds))
            keep.append(cg)
            p.cgroup_procs_fds, p.n_cgroup_procs_fds = cg, len(procs_fds)
        p.cgroup_fd = clone_fd
        if self.plan.init:
            p.init_fd = _init_program.fd()
        # Every pre-made sandbox execs the shell program as soon as its id maps
        # are written, instead of waiting as a copy of the supervisor's memory.
        p.use_shell = 1
        p.shell_fd = _shell_program.fd()
        return p, keep


@functools.lru_cache(maxsize=64)
def encoded_plan(config: Config) -> EncodedPlan:
    return EncodedPlan(make_plan(config))
