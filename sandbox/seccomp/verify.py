"""Check compiled BPF against the policy model with the BPF interpreter.

Run once per compilation (results are cached), so a libseccomp
miscompilation (e.g. GHSA-4q85-33p6-j5g6 in libseccomp < 2.6.1) or a bug in
our planner fails closed instead of installing a filter that does not
implement the policy.  The probe set covers foreign arches and x32 numbers,
every syscall number libseccomp knows plus unknown ones, and, for syscalls
with argument conditions, the boundary values of every comparison with and
without garbage in the upper 32 bits.  Tests run the same machinery over
random inputs (tests/unit/test_seccomp_compile.py).
"""
from __future__ import annotations

import random
from typing import Iterator

from ..errors import HostUnsupportedError
from . import abi, bpf_sim
from .model import MASK32, Action, Policy

GARBAGE_HIGH = 0xA5A5A5A5 << 32
PROBES_PER_SYSCALL = 64


def probes(policy: Policy, seed: int = 0) -> Iterator[tuple[int, int, tuple[int, ...]]]:
    """(arch, nr, args) triples worth checking for this policy."""
    native = abi.native_arch()
    numbers = sorted(set(abi.syscall_names()) | set(policy.syscalls))
    top = max(numbers) if numbers else 0
    unknown = list(range(top + 1, top + 8)) + [top + 100, 0x3FFFFFFF, MASK32, 0x7FFFFFFF]
    for nr in numbers + unknown:
        yield native, nr, (0,) * 6
        yield native, nr, (GARBAGE_HIGH,) * 6
    for arch in abi.foreign_arches():
        for name in ("read", "execve", "socketcall", "socket", "clone", "mount", "ptrace"):
            nr = abi.syscall_number(name, arch)
            if nr is not None:
                yield arch, nr, (0,) * 6
        yield arch, 0, (0,) * 6
    x32 = abi.x32_syscall_bit()
    if x32:
        for nr in numbers[:40] + list(policy.syscalls[:40]):
            yield native, nr | x32, (0,) * 6
    rng = random.Random(seed)
    for nr in policy.syscalls:
        pools = _pools(policy, nr)
        if not pools:
            continue
        for arg, pool in pools.items():  # sweep each constrained argument alone
            for value in pool:
                args = [0] * 6
                args[arg] = value
                yield native, nr, tuple(args)
        for _ in range(PROBES_PER_SYSCALL):  # then mix them
            yield native, nr, tuple(rng.choice(pools[i]) if i in pools else
                                    rng.getrandbits(64) for i in range(6))


def _pools(policy: Policy, nr: int) -> dict[int, list[int]]:
    pools: dict[int, set[int]] = {}
    for rule in policy.rules_for(nr):
        for conj in rule.condition:
            for cmp in conj:
                pool = pools.setdefault(cmp.arg, {0, MASK32})
                for base in (cmp.value, cmp.value & cmp.mask, cmp.value | (~cmp.mask & MASK32)):
                    for value in (base, base - 1, base + 1):
                        value &= MASK32
                        pool.update((value, value | GARBAGE_HIGH, value ^ 1))
                bit = cmp.mask
                while bit:
                    low = bit & -bit
                    bit ^= low
                    pool.add(cmp.value ^ low)
    return {arg: sorted(pool) for arg, pool in pools.items()}


def mismatches(policy: Policy, bpf: bytes, triples) -> Iterator[tuple]:
    insns = bpf_sim.decode(bpf)
    for arch, nr, args in triples:
        got = bpf_sim.run(insns, bpf_sim.seccomp_data(nr, arch, args))
        want = policy.decide(nr, args, arch)
        if got != want.value:
            yield arch, nr, args, want, Action.from_value(got) or hex(got)


def check(policy: Policy, bpf: bytes) -> None:
    for arch, nr, args, want, got in mismatches(policy, bpf, probes(policy)):
        name = abi.syscall_names().get(nr, str(nr))
        raise HostUnsupportedError(
            0,
            f"compiled filter for {policy.path} disagrees with the policy: {name} "
            f"(nr={nr:#x}, arch={arch:#x}, args={[hex(a) for a in args]}) gives {got}, "
            f"policy says {want}",
            hint=f"libseccomp {'.'.join(map(str, abi.libseccomp_version()))} may miscompile "
                 "this policy; upgrade to >= 2.6.1 or simplify the rule",
        )
