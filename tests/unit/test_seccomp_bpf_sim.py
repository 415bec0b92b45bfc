"""The classic-BPF interpreter: instruction semantics, seccomp's restrictions, and the
kernel's constant-action cache emulation."""
from __future__ import annotations

import pyseccomp
import pytest

from sandbox.seccomp import bpf_sim as bpf

ARCH = pyseccomp.Arch.X86_64  # any token works: the programs here only compare it


def run(program, nr=0, args=(), arch=ARCH, ip=0):
    return bpf.run(bpf.assemble(program), bpf.seccomp_data(nr, arch, args, ip))


def test_seccomp_data_layout():
    data = bpf.seccomp_data(-1, ARCH, [1, 2 << 32], ip=0x1122334455667788)
    assert len(data) == bpf.SECCOMP_DATA_SIZE == 64
    prog = [("ld [k]", 0), ("ret a",)]
    assert bpf.run(bpf.assemble(prog), data) == 0xFFFFFFFF  # nr, unsigned
    for offset, want in ((4, ARCH), (8, 0x55667788), (12, 0x11223344), (16, 1), (20, 0),
                         (24, 0), (28, 2)):
        assert bpf.run(bpf.assemble([("ld [k]", offset), ("ret a",)]), data) == want


def test_conditional_jumps():
    prog = [("ld [k]", 0),
            ("jeq #k", 5, 0, 1), ("ret #k", 100),
            ("jgt #k", 5, 0, 1), ("ret #k", 200),
            ("jset #k", 1, 0, 1), ("ret #k", 300),
            ("jge #k", 2, 0, 1), ("ret #k", 400),
            ("ret #k", 500)]
    assert [run(prog, nr=n) for n in (5, 9, 3, 1, 4, 2, 0)] == [100, 200, 300, 300, 400, 400, 500]


def test_alu_scratch_and_index_register():
    prog = [("ld #k", 7), ("add #k", 5), ("mul #k", 3), ("sub #k", 6), ("div #k", 5),
            ("lsh #k", 4), ("rsh #k", 1), ("or #k", 1), ("xor #k", 3), ("and #k", 0xFF),
            ("st M[k]", 3), ("ldx #k", 2), ("ld M[k]", 3), ("add x",), ("tax",), ("txa",),
            ("ret a",)]
    value = ((((7 + 5) * 3 - 6) // 5) << 4 >> 1 | 1) ^ 3
    assert run(prog) == (value & 0xFF) + 2
    assert run([("ld #k", 1), ("neg",), ("ret a",)]) == 0xFFFFFFFF
    assert run([("ld #k", 0xFFFFFFFF), ("add #k", 2), ("ret a",)]) == 1  # 32-bit wrap
    assert run([("ld #k", 9), ("ldx #k", 0), ("div x",), ("ret a",)]) == 0
    assert run([("ld len",), ("ret a",)]) == 64


def test_ja_is_relative():
    assert run([("ja", 1), ("ret #k", 1), ("ret #k", 2)]) == 2


@pytest.mark.parametrize("program,message", [
    ([("ld [k]", 2), ("ret a",)], "unaligned or out of range"),
    ([("ld [k]", 64), ("ret a",)], "unaligned or out of range"),
    ([("ldh [k]", 0), ("ret a",)], "only 32-bit loads"),
    ([("ld [k]", 0)], "fell off its end"),
    ([("ja", 5), ("ret #k", 0)], "jump past the end"),
    ([("jeq #k", 0, 3, 0), ("ret #k", 0)], "jump past the end"),
    ([("ld M[k]", 16), ("ret a",)], "scratch slot"),
    ([("st M[k]", 16), ("ret a",)], "bad store"),
    ([("ld #k", 1), ("div #k", 0), ("ret a",)], "division by constant zero"),
])
def test_programs_the_kernel_would_refuse(program, message):
    with pytest.raises(bpf.BpfError, match=message):
        run(program)


def test_decode_checks_size_and_limit():
    with pytest.raises(bpf.BpfError, match="multiple of 8"):
        bpf.decode(b"\0" * 12)
    with pytest.raises(bpf.BpfError, match="multiple of 8"):
        bpf.decode(b"")
    with pytest.raises(bpf.BpfError, match="exceed the kernel limit"):
        bpf.decode(bpf.assemble([("ret #k", 0)] * 4097))
    assert len(bpf.decode(bpf.assemble([("ret #k", 0)] * 4096))) == 4096


def test_kernel_cache_emulation():
    allow, eperm = pyseccomp.ALLOW, pyseccomp.ERRNO(1)
    by_number = bpf.assemble([("ld [k]", 4), ("jeq #k", ARCH, 1, 0), ("ret #k", 0),
                              ("ld [k]", 0), ("jeq #k", 1, 0, 1), ("ret #k", allow),
                              ("jeq #k", 2, 0, 3), ("ld [k]", 16), ("jeq #k", 0, 0, 1),
                              ("ret #k", allow), ("ret #k", eperm)])
    assert bpf.kernel_caches_allow(by_number, 1, ARCH)       # number-only allow
    assert not bpf.kernel_caches_allow(by_number, 2, ARCH)   # reads arg0
    assert not bpf.kernel_caches_allow(by_number, 3, ARCH)   # errno is never cached
    assert not bpf.kernel_caches_allow(by_number, 1, pyseccomp.Arch.X86)  # other arch: killed
    uses_index = bpf.assemble([("ld [k]", 0), ("tax",), ("ret #k", allow)])
    assert not bpf.kernel_caches_allow(uses_index, 1, ARCH)
