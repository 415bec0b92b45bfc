"""A tiny classic-BPF interpreter for seccomp programs (test and debug aid).

It runs a compiled filter (raw ``struct sock_filter`` array, as handed to
``seccomp(SECCOMP_SET_MODE_FILTER)``) on one ``struct seccomp_data`` and returns
the filter's 32-bit return value, so the compiled BPF can be checked against the
policy model without root (like minijail's bpf simulator and gVisor's secfuzz).

It accepts only what the kernel's seccomp checker accepts (kernel/seccomp.c
``seccomp_check_filter``): aligned 32-bit loads inside seccomp_data, scratch
memory, ALU, forward jumps, RET.  Anything else raises ``BpfError``, so a
program this interpreter runs is one the kernel would also load.

The opcode numbers below are the classic-BPF instruction encoding
(include/uapi/linux/bpf_common.h): an instruction-set ABI, listed once here.
"""
from __future__ import annotations

import struct
import sys
from dataclasses import dataclass

# Instruction encoding (bpf_common.h): class | size | mode, or class | op | src.
_CLASS, _SIZE, _MODE, _OP, _SRC, _RVAL = 0x07, 0x18, 0xE0, 0xF0, 0x08, 0x18
_LD, _LDX, _ST, _STX, _ALU, _JMP, _RET, _MISC = range(8)
_W, _IMM, _ABS, _MEM, _LEN = 0x00, 0x00, 0x20, 0x60, 0x80
_K, _X, _A = 0x00, 0x08, 0x10
_TAX, _TXA = 0x00, 0x80
_JA, _JEQ, _JGT, _JGE, _JSET = 0x00, 0x10, 0x20, 0x30, 0x40
_MEMWORDS = 16
_MAX_INSNS = 4096
_MASK32 = 0xFFFFFFFF

_ALU_OPS = {
    0x00: lambda a, b: a + b,
    0x10: lambda a, b: a - b,
    0x20: lambda a, b: a * b,
    0x30: lambda a, b: a // b,
    0x40: lambda a, b: a | b,
    0x50: lambda a, b: a & b,
    0x60: lambda a, b: a << b if b < 32 else 0,
    0x70: lambda a, b: a >> b if b < 32 else 0,
    0x90: lambda a, b: a % b,
    0xA0: lambda a, b: a ^ b,
}

# Mnemonics for hand-written programs (tests, docs): name -> opcode.
OPCODES = {
    "ld [k]": _LD | _W | _ABS, "ldh [k]": _LD | 0x08 | _ABS, "ld #k": _LD | _IMM,
    "ld len": _LD | _LEN, "ld M[k]": _LD | _MEM, "ldx #k": _LDX | _IMM, "ldx M[k]": _LDX | _MEM,
    "st M[k]": _ST, "stx M[k]": _STX,
    "add #k": _ALU | 0x00 | _K, "sub #k": _ALU | 0x10 | _K, "mul #k": _ALU | 0x20 | _K,
    "div #k": _ALU | 0x30 | _K, "div x": _ALU | 0x30 | _X, "or #k": _ALU | 0x40 | _K,
    "and #k": _ALU | 0x50 | _K, "lsh #k": _ALU | 0x60 | _K, "rsh #k": _ALU | 0x70 | _K,
    "neg": _ALU | 0x80, "mod #k": _ALU | 0x90 | _K, "xor #k": _ALU | 0xA0 | _K,
    "add x": _ALU | 0x00 | _X,
    "ja": _JMP | _JA, "jeq #k": _JMP | _JEQ | _K, "jgt #k": _JMP | _JGT | _K,
    "jge #k": _JMP | _JGE | _K, "jset #k": _JMP | _JSET | _K, "jeq x": _JMP | _JEQ | _X,
    "ret #k": _RET | _K, "ret a": _RET | _A, "tax": _MISC | _TAX, "txa": _MISC | _TXA,
}

_INSN = struct.Struct("=HBBI")  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
INSN_SIZE = _INSN.size
_LD_ABS, _AND_K = _LD | _W | _ABS, _ALU | 0x50 | _K
_COND_K = {
    _JMP | _JEQ | _K: lambda a, k: a == k,
    _JMP | _JGT | _K: lambda a, k: a > k,
    _JMP | _JGE | _K: lambda a, k: a >= k,
    _JMP | _JSET | _K: lambda a, k: bool(a & k),
}  # struct sock_filter, native byte order
_DATA = struct.Struct("=IIQ6Q")  # struct seccomp_data: int nr, u32 arch, u64 ip, u64 args[6]
SECCOMP_DATA_SIZE = _DATA.size


class BpfError(ValueError):
    """The program is not a valid seccomp BPF program (or fell off its end)."""


@dataclass(frozen=True)
class Insn:
    code: int
    jt: int
    jf: int
    k: int


def assemble(program) -> bytes:
    """``[(mnemonic,), (mnemonic, k), (mnemonic, k, jt, jf), ...]`` -> sock_filter bytes."""
    out = bytearray()
    for item in program:
        name, k, jt, jf = (tuple(item) + (0, 0, 0))[:4]
        out += _INSN.pack(OPCODES[name], jt, jf, k & _MASK32)
    return bytes(out)


def decode(bpf: bytes) -> list[Insn]:
    """Split raw sock_filter bytes into instructions, checking the size."""
    if len(bpf) % _INSN.size or not bpf:
        raise BpfError(f"program size {len(bpf)} is not a positive multiple of {_INSN.size}")
    insns = [Insn(*_INSN.unpack_from(bpf, off)) for off in range(0, len(bpf), _INSN.size)]
    if len(insns) > _MAX_INSNS:
        raise BpfError(f"{len(insns)} instructions exceed the kernel limit of {_MAX_INSNS}")
    return insns


def seccomp_data(nr: int, arch: int, args=(), ip: int = 0) -> bytes:
    """Pack a struct seccomp_data (native byte order, like the kernel builds it);
    ``nr`` may be given signed (-1) or unsigned (0xffffffff)."""
    full = (list(args) + [0] * 6)[:6]
    return _DATA.pack(nr & _MASK32, arch, ip & (2**64 - 1), *(a & (2**64 - 1) for a in full))


def run(bpf: bytes | list[Insn], data: bytes) -> int:
    """Run the program on packed seccomp_data; return the 32-bit RET value."""
    insns = decode(bpf) if isinstance(bpf, (bytes, bytearray)) else bpf
    if len(data) != SECCOMP_DATA_SIZE:
        raise BpfError(f"seccomp_data must be {SECCOMP_DATA_SIZE} bytes")
    acc = idx = 0
    mem = [0] * _MEMWORDS
    words = struct.unpack(f"={SECCOMP_DATA_SIZE // 4}I", data)
    count = len(insns)
    pc = 0
    while pc < count:
        ins = insns[pc]
        code = ins.code
        pc += 1
        # Fast paths for what libseccomp emits; the general cases below check the rest.
        if code == _LD_ABS and ins.k & 3 == 0 and ins.k < SECCOMP_DATA_SIZE:
            acc = words[ins.k >> 2]
            continue
        if code in _COND_K:
            pc += ins.jt if _COND_K[code](acc, ins.k) else ins.jf
            if pc >= count:
                raise BpfError(f"insn {pc - 1}: jump past the end of the program")
            continue
        if code == _AND_K:
            acc &= ins.k
            continue
        cls = code & _CLASS
        if cls == _RET:
            rval = ins.code & _RVAL
            if rval == _K:
                return ins.k
            if rval == _A:
                return acc
            raise BpfError(f"insn {pc - 1}: bad RET source")
        if cls in (_LD, _LDX):
            value = _load(ins, pc - 1, data, mem)
            if cls == _LD:
                acc = value
            else:
                idx = value
        elif cls in (_ST, _STX):
            if ins.code not in (_ST, _STX) or ins.k >= _MEMWORDS:
                raise BpfError(f"insn {pc - 1}: bad store {ins.code:#x} k={ins.k}")
            mem[ins.k] = acc if cls == _ST else idx
        elif cls == _ALU:
            acc = _alu(ins, pc - 1, acc, idx)
        elif cls == _JMP:
            pc = _jump(ins, pc, acc, idx, len(insns))
        elif cls == _MISC:
            if ins.code & 0xF8 == _TAX:
                idx = acc
            elif ins.code & 0xF8 == _TXA:
                acc = idx
            else:
                raise BpfError(f"insn {pc - 1}: bad MISC {ins.code:#x}")
        else:  # pragma: no cover - every 3-bit class is handled above
            raise BpfError(f"insn {pc - 1}: bad class")
    raise BpfError("program fell off its end without RET")


def _load(ins: Insn, at: int, data: bytes, mem: list[int]) -> int:
    size, mode = ins.code & _SIZE, ins.code & _MODE
    if size != _W:
        raise BpfError(f"insn {at}: only 32-bit loads are allowed in seccomp")
    if mode == _ABS and (ins.code & _CLASS) == _LD:
        if ins.k % 4 or ins.k + 4 > SECCOMP_DATA_SIZE:
            raise BpfError(f"insn {at}: load at offset {ins.k} is unaligned or out of range")
        return int.from_bytes(data[ins.k:ins.k + 4], sys.byteorder)
    if mode == _IMM:
        return ins.k
    if mode == _LEN:
        return SECCOMP_DATA_SIZE
    if mode == _MEM:
        if ins.k >= _MEMWORDS:
            raise BpfError(f"insn {at}: scratch slot {ins.k} out of range")
        return mem[ins.k]
    raise BpfError(f"insn {at}: load mode {mode:#x} not allowed in seccomp")


def _alu(ins: Insn, at: int, acc: int, idx: int) -> int:
    op = ins.code & _OP
    if op == 0x80:  # NEG
        return (-acc) & _MASK32
    operand = idx if ins.code & _SRC == _X else ins.k
    fn = _ALU_OPS.get(op)
    if fn is None:
        raise BpfError(f"insn {at}: bad ALU op {op:#x}")
    if op in (0x30, 0x90) and operand == 0:
        # The kernel rejects constant division by zero at load time and returns 0 at run time.
        if ins.code & _SRC == _K:
            raise BpfError(f"insn {at}: division by constant zero")
        return 0
    return fn(acc, operand) & _MASK32


def _jump(ins: Insn, pc: int, acc: int, idx: int, count: int) -> int:
    op = ins.code & _OP
    if op == _JA:
        target = pc + ins.k
    else:
        operand = idx if ins.code & _SRC == _X else ins.k
        if op == _JEQ:
            taken = acc == operand
        elif op == _JGT:
            taken = acc > operand
        elif op == _JGE:
            taken = acc >= operand
        elif op == _JSET:
            taken = bool(acc & operand)
        else:
            raise BpfError(f"insn {pc - 1}: bad jump op {op:#x}")
        target = pc + (ins.jt if taken else ins.jf)
    if target >= count:
        raise BpfError(f"insn {pc - 1}: jump past the end of the program")
    return target


def kernel_caches_allow(bpf: bytes | list[Insn], nr: int, arch: int) -> bool:
    """Would the kernel's constant-action cache (Linux >= 5.11,
    kernel/seccomp.c ``seccomp_is_const_allow``) skip this filter for ``nr``?

    Mirrors the kernel's emulation: only loads of ``nr``/``arch``, ``AND K``,
    ``JA`` and ``JEQ/JGE/JGT/JSET K`` may be executed before a ``RET K`` that
    returns ALLOW; touching the arguments or the instruction pointer, or any
    other instruction, makes the verdict uncacheable.
    """
    insns = decode(bpf) if isinstance(bpf, (bytes, bytearray)) else bpf
    data = seccomp_data(nr, arch)
    acc = pc = 0
    while pc < len(insns):
        ins = insns[pc]
        pc += 1
        cls, op = ins.code & _CLASS, ins.code & _OP
        if ins.code == _LD | _W | _ABS:
            if ins.k not in (0, 4):  # offsetof(seccomp_data, nr), offsetof(..., arch)
                return False
            acc = int.from_bytes(data[ins.k:ins.k + 4], sys.byteorder)
        elif cls == _RET and ins.code & _RVAL == _K:
            return ins.k == _allow_value()
        elif ins.code == _JMP | _JA:
            pc += ins.k
        elif cls == _JMP and ins.code & _SRC == _K and op in (_JEQ, _JGE, _JGT, _JSET):
            taken = {_JEQ: acc == ins.k, _JGE: acc >= ins.k, _JGT: acc > ins.k,
                     _JSET: bool(acc & ins.k)}[op]
            pc += ins.jt if taken else ins.jf
        elif ins.code == _ALU | 0x50 | _K:  # AND K
            acc &= ins.k
        else:
            return False
    return False


def _allow_value() -> int:
    import pyseccomp  # SCMP_ACT_ALLOW == SECCOMP_RET_ALLOW

    return pyseccomp.ALLOW
