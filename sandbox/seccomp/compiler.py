"""Policy model -> libseccomp -> raw BPF, checked and cached.

Steps (in this order, each once per distinct policy text):
  1. plan   - per syscall, a decision tree turned into disjoint rules (plan.py);
  2. emit   - libseccomp filter for the native arch only, bad-arch action
              KILL_PROCESS, binary-tree optimizer when available, rules added
              "exactly" (no arch rewriting), exported with seccomp_export_bpf;
  3. check  - the BPF must reject foreign ABIs (x32 numbers included) and must
              agree with the model on a probe set (verify.py): a libseccomp
              miscompilation fails closed here instead of shipping.
The result is cached by the resolved text of the policy and its includes, so
loading the same policy again costs a file read and a hash.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass

import pyseccomp

from ..errors import HostUnsupportedError, PolicyError
from . import abi, bpf_sim, plan, verify
from .model import Action, Policy, Rule
from .resolve import resolve
from .syntax import Sources, read_sources

# Bump when the generated program could change for the same policy text.
COMPILER_VERSION = 1
BPF_INSN_SIZE = bpf_sim.INSN_SIZE  # sizeof(struct sock_filter)


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy ready for seccomp(SECCOMP_SET_MODE_FILTER)."""

    name: str
    path: str
    bpf: bytes  # raw struct sock_filter array, native byte order
    rules: tuple[Rule, ...]  # resolved rules, in evaluation order
    default_action: Action
    instructions: int
    policy: Policy
    digest: str  # sha256 of the resolved sources (the cache key)
    optimized: bool  # libseccomp's binary-tree optimizer was used

    def __repr__(self) -> str:
        return (f"CompiledPolicy(name={self.name!r}, path={self.path!r}, "
                f"instructions={self.instructions}, default={self.default_action})")


def digest(sources: Sources) -> str:
    h = hashlib.sha256()
    h.update(f"v{COMPILER_VERSION} arch={abi.native_arch()} libseccomp="
             f"{abi.libseccomp_version()}\0".encode())
    for path, text in sources.texts:
        h.update(f"{path}\0{len(text)}\0".encode())
        h.update(text.encode())
    return h.hexdigest()


def compile_file(path: str, name: str | None = None) -> CompiledPolicy:
    """Read, resolve and compile the policy at ``path`` (cached by content)."""
    sources = read_sources(path)
    return _compile_cached(digest(sources), sources, name)


def clear_cache() -> None:
    _compile_cached.cache_clear()


def cache_info():
    return _compile_cached.cache_info()


@functools.lru_cache(maxsize=64)
def _compile_cached(key: str, sources: Sources, name: str | None) -> CompiledPolicy:
    policy = resolve(sources, name)
    bpf, optimized = build(policy)
    bpf = guard_foreign_abis(bpf)
    verify.check(policy, bpf)
    return CompiledPolicy(
        name=policy.name,
        path=policy.path,
        bpf=bpf,
        rules=policy.rules,
        default_action=policy.default_action,
        instructions=len(bpf) // BPF_INSN_SIZE,
        policy=policy,
        digest=key,
        optimized=optimized,
    )


def build(policy: Policy) -> tuple[bytes, bool]:
    """Emit the policy through libseccomp; return (raw BPF, optimizer used)."""
    filt, optimized = _filter(policy)
    bpf = _export(filt.export_bpf)
    if len(bpf) % BPF_INSN_SIZE or not bpf:
        raise HostUnsupportedError(0, f"libseccomp exported {len(bpf)} bytes of BPF",
                                   hint="expected a whole number of sock_filter entries")
    bpf_sim.decode(bpf)  # size limit
    return bpf, optimized


def guard_foreign_abis(bpf: bytes) -> bytes:
    """Make sure other arches and x32 numbers hit KILL_PROCESS.

    libseccomp (2.5.4 here) emits both checks itself; if a build ever does not,
    prepend them rather than ship a filter that x32 or int 0x80 can bypass.
    """
    native = abi.native_arch()
    x32 = abi.x32_syscall_bit()
    probes = [(arch, 0) for arch in abi.foreign_arches()]
    probes += [(native, x32 | nr) for nr in (0, 1, 59)] if x32 else []
    insns = bpf_sim.decode(bpf)
    if all(bpf_sim.run(insns, bpf_sim.seccomp_data(nr, arch)) == pyseccomp.KILL_PROCESS
           for arch, nr in probes):
        return bpf
    kill = pyseccomp.KILL_PROCESS
    guard = [("ld [k]", 4), ("jeq #k", native, 1, 0), ("ret #k", kill)]  # 4: seccomp_data.arch
    if x32:
        # nr >= the x32 bit is foreign, except -1 (no syscall), like libseccomp does it
        guard += [("ld [k]", 0), ("jge #k", x32, 0, 2), ("jeq #k", 0xFFFFFFFF, 1, 0),
                  ("ret #k", kill)]
    return bpf_sim.assemble(guard) + bpf  # jumps are relative: the program is unchanged


def pfc(policy: Policy) -> str:
    """libseccomp's pseudo filter code for the policy (human-readable BPF)."""
    filt, _ = _filter(policy)
    return _export(filt.export_pfc).decode()


def _filter(policy: Policy) -> tuple[pyseccomp.SyscallFilter, bool]:
    filt = pyseccomp.SyscallFilter(policy.default_action.value)
    # Native arch only: anything else (i386 int 0x80, x32 numbers) kills the process.
    filt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    try:
        filt.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, 2)  # binary tree (libseccomp >= 2.5)
        optimized = True
    except OSError:
        optimized = False
    for nr in policy.syscalls:
        rules = policy.rules_for(nr)
        for action, comparisons in plan.plan_syscall(nr, rules, policy.default_action).paths:
            args = [pyseccomp.Arg(arg, pyseccomp.MASKED_EQ, mask, value)
                    for arg, mask, value in comparisons]
            try:
                filt.add_rule_exactly(action.value, nr, *args)
            except OSError as exc:
                raise PolicyError(f"{rules[0].location}: libseccomp refused a rule for "
                                  f"{rules[0].syscall} ({action}, {comparisons}): {exc.strerror}",
                                  field="rules") from None
    return filt, optimized


def _export(export) -> bytes:
    try:
        fd = os.memfd_create("sandbox-seccomp", os.MFD_CLOEXEC)
        handle = os.fdopen(fd, "w+b")
    except (AttributeError, OSError):
        handle = tempfile.TemporaryFile("w+b")
    with handle:
        export(handle)
        handle.seek(0)
        return handle.read()
