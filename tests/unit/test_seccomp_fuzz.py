"""secfuzz-style differential test: random policies (text -> parser -> planner ->
libseccomp -> BPF) must agree with the model on random and boundary inputs.
It also guards against libseccomp miscompilations (GHSA-4q85-33p6-j5g6)."""
from __future__ import annotations

import random
import sys

import pyseccomp
import pytest

from sandbox.errors import HostUnsupportedError, PolicyError
from sandbox.seccomp import abi, bpf_sim, compiler, load_policy, verify
from sandbox.seccomp.resolve import resolve
from sandbox.seccomp.syntax import read_sources

NATIVE = abi.native_arch()
NAMES = sorted(abi.syscall_table())
ACTIONS = ["allow", "allow", "errno EPERM", "errno EIO", "errno 77", "kill", "log"]
VALUES = ["0", "1", "2", "3", "0x10", "0x5412", "0x80000000", "0xffffffff", "AF_INET",
          "TIOCSTI", "CLONE_NEWUSER", "SOCK_RAW"]
MASKS = ["0xf", "0x80000001", "CLONE_NEWNS|CLONE_NEWUSER", "0xffff0000"]


def random_comparison(rng) -> str:
    arg = f"arg{rng.randrange(4)}"
    if rng.random() < 0.3:
        mask = rng.choice(MASKS)
        return f"{arg} & {mask} {rng.choice(['==', '!='])} {rng.choice(['0', mask])}"
    return f"{arg} {rng.choice(['==', '!=', '<', '<=', '>', '>='])} {rng.choice(VALUES)}"


def random_block(rng, name) -> list[str]:
    lines = []
    for _ in range(rng.randint(1, 3)):
        conjs = [" && ".join(random_comparison(rng) for _ in range(rng.randint(1, 2)))
                 for _ in range(rng.randint(1, 2))]
        lines.append(f"{name}: {rng.choice(ACTIONS)} if {' || '.join(conjs)}")
    if rng.random() < 0.5:
        lines.append(f"{name}: {rng.choice(ACTIONS)}")  # the syscall's fallback
    return lines


def compiled_random_policies(tmp_path, count, seed):
    """Random policies of 6 syscalls each; a block that resolve() refuses (conflict,
    never-true condition, too many rules) is drawn again, so every policy compiles."""
    rng = random.Random(seed)
    made, refused = [], 0
    for index in range(count):
        default = f"default {rng.choice(['errno ENOSYS', 'allow', 'errno EPERM', 'kill'])}"
        lines = [default]
        for name in rng.sample(NAMES, 6):
            for _ in range(20):
                block = random_block(rng, name)
                path = tmp_path / "block.policy"
                path.write_text("\n".join([default] + block) + "\n")
                try:
                    resolve(read_sources(str(path)))
                except PolicyError:
                    refused += 1
                    continue
                lines += block
                break
        path = tmp_path / f"r{index}.policy"
        path.write_text("\n".join(lines) + "\n")
        made.append(load_policy(str(path)))
    assert refused  # the generator does reach the checks that refuse bad rules
    return made


def test_random_policies_compile_to_what_they_say(tmp_path):
    policies = compiled_random_policies(tmp_path, 20, seed=2026)
    assert len(policies) == 20
    rng = random.Random(1)
    for compiled in policies:
        policy = compiled.policy
        insns = bpf_sim.decode(compiled.bpf)
        triples = list(verify.probes(policy, seed=9))
        for _ in range(1000):
            nr = rng.choice(list(policy.syscalls) + [rng.randrange(600)])
            args = tuple(rng.choice([rng.getrandbits(64), rng.choice([0, 1, 3, 0x10, 0x5412]),
                                     rng.getrandbits(32)]) for _ in range(6))
            triples.append((NATIVE, nr, args))
        for arch, nr, args in triples:
            got = bpf_sim.run(insns, bpf_sim.seccomp_data(nr, arch, args))
            want = policy.decide(nr, args, arch)
            assert got == want.value, (compiled.path, nr, args, want)


def test_verification_catches_a_miscompiled_filter(tmp_path, monkeypatch):
    path = tmp_path / "p.policy"
    path.write_text("default errno ENOSYS\nread: allow\nioctl: errno EPERM if arg1 == TIOCSTI\n"
                    "ioctl: allow\n")
    real_build = compiler.build

    def miscompile(policy):
        bpf, optimized = real_build(policy)
        # flip every ERRNO(EPERM) return into ALLOW: the filter no longer denies TIOCSTI
        out = bytearray(bpf)
        eperm = pyseccomp.ERRNO(1).to_bytes(4, sys.byteorder)
        out = out.replace(eperm, pyseccomp.ALLOW.to_bytes(4, sys.byteorder))
        return bytes(out), optimized

    compiler.clear_cache()
    monkeypatch.setattr(compiler, "build", miscompile)
    with pytest.raises(HostUnsupportedError, match="disagrees with the policy: ioctl"):
        load_policy(str(path))
    monkeypatch.undo()
    compiler.clear_cache()
    assert load_policy(str(path)).instructions > 0


def test_a_missing_x32_check_is_added(tmp_path, monkeypatch):
    if not abi.x32_syscall_bit():
        pytest.skip("no x32 ABI on this arch")
    path = tmp_path / "p.policy"
    path.write_text("default allow\nmount: errno EPERM\n")
    real_build = compiler.build

    def without_x32_check(policy):
        bpf, optimized = real_build(policy)
        # libseccomp's x32 guard is "jge 0x40000000": make it compare against 0xffffffff
        bit = abi.x32_syscall_bit().to_bytes(4, sys.byteorder)
        return bpf.replace(bit, (0xFFFFFFFF).to_bytes(4, sys.byteorder), 1), optimized

    x32_read = abi.x32_syscall_bit() | abi.syscall_table()["read"]
    unguarded, _ = without_x32_check(load_policy(str(path)).policy)
    assert bpf_sim.run(unguarded, bpf_sim.seccomp_data(x32_read, NATIVE)) == pyseccomp.ALLOW
    compiler.clear_cache()
    monkeypatch.setattr(compiler, "build", without_x32_check)
    guarded = load_policy(str(path))
    assert guarded.instructions == len(unguarded) // 8 + 7
    assert bpf_sim.run(guarded.bpf, bpf_sim.seccomp_data(x32_read, NATIVE)) == \
        pyseccomp.KILL_PROCESS
    assert bpf_sim.run(guarded.bpf, bpf_sim.seccomp_data(-1, NATIVE)) == pyseccomp.ALLOW
    compiler.clear_cache()
