"""The resolved policy model: frozen, validated, independent of libseccomp.

Semantics (the reference the compiled BPF is tested against):
  * for a syscall, its rules are tried in file order (includes expanded in
    place); the first rule whose condition holds decides;
  * if none holds (or the syscall has no rules), the default action decides;
  * a condition is an OR of ANDs of comparisons; every comparison reads the
    low 32 bits of one argument, exactly what the kernel uses for ``int`` and
    ``unsigned int`` parameters, so garbage in the upper half changes nothing;
  * a call from any arch other than the native one, including x32 numbers on
    x86_64, kills the process (that is the compiler's job, not a rule's).
"""
from __future__ import annotations

import errno as _errno
import operator
from dataclasses import dataclass, field

import pyseccomp

from . import abi

MASK32 = 0xFFFFFFFF

OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Action:
    """allow | kill (the process) | log | errno N."""

    kind: str
    errno: int | None = None

    def __post_init__(self):
        if self.kind not in ("allow", "kill", "log", "errno"):
            raise ValueError(f"unknown action {self.kind!r}")
        if (self.kind == "errno") != (self.errno is not None):
            raise ValueError("errno is required for, and only for, the errno action")

    @property
    def value(self) -> int:
        """The SECCOMP_RET_* value the filter returns for this action."""
        if self.kind == "errno":
            return pyseccomp.ERRNO(self.errno)
        return {"allow": pyseccomp.ALLOW, "kill": pyseccomp.KILL_PROCESS, "log": pyseccomp.LOG}[
            self.kind
        ]

    @classmethod
    def from_value(cls, ret: int) -> "Action | None":
        err = abi.errno_of(ret)
        if err is not None:
            return cls("errno", err)
        for kind, value in (("allow", pyseccomp.ALLOW), ("kill", pyseccomp.KILL_PROCESS),
                            ("log", pyseccomp.LOG)):
            if ret == value:
                return cls(kind)
        return None

    def __str__(self) -> str:
        if self.kind != "errno":
            return self.kind
        name = _errno.errorcode.get(self.errno)
        return f"errno {name}" if name else f"errno {self.errno}"


@dataclass(frozen=True)
class Comparison:
    """``(arg{arg} & mask) {op} value``, all on the low 32 bits."""

    arg: int
    op: str
    value: int
    mask: int = MASK32

    def __post_init__(self):
        if not 0 <= self.arg <= 5:
            raise ValueError(f"argument index {self.arg} is not 0..5")
        if self.op not in OPS:
            raise ValueError(f"unknown operator {self.op!r}")
        if not (0 <= self.value <= MASK32 and 0 < self.mask <= MASK32):
            raise ValueError("comparison operands must be 32-bit")

    def holds(self, args) -> bool:
        return OPS[self.op](args[self.arg] & self.mask, self.value)

    def __str__(self) -> str:
        lhs = f"arg{self.arg}" if self.mask == MASK32 else f"arg{self.arg} & {self.mask:#x}"
        return f"{lhs} {self.op} {self.value:#x}"


# A condition in disjunctive normal form: OR over ANDs.  () means "always".
Condition = tuple[tuple[Comparison, ...], ...]


def condition_holds(condition: Condition, args) -> bool:
    if not condition:
        return True
    return any(all(cmp.holds(args) for cmp in conj) for conj in condition)


def condition_text(condition: Condition) -> str:
    return " || ".join(" && ".join(str(c) for c in conj) for conj in condition)


@dataclass(frozen=True)
class Rule:
    syscall: str
    nr: int
    action: Action
    condition: Condition
    location: Location

    def __str__(self) -> str:
        text = f"{self.syscall}: {self.action}"
        return f"{text} if {condition_text(self.condition)}" if self.condition else text


@dataclass(frozen=True)
class Policy:
    """A resolved policy: default action plus ordered rules (first match wins)."""

    name: str
    path: str
    default_action: Action
    default_location: Location
    rules: tuple[Rule, ...]
    sources: tuple[str, ...] = ()
    _by_nr: dict = field(init=False, compare=False, repr=False, hash=False)

    def __post_init__(self):
        by_nr: dict[int, list[Rule]] = {}
        for rule in self.rules:
            by_nr.setdefault(rule.nr, []).append(rule)
        object.__setattr__(self, "_by_nr", {nr: tuple(r) for nr, r in by_nr.items()})

    def rules_for(self, nr: int) -> tuple[Rule, ...]:
        return self._by_nr.get(nr, ())

    @property
    def syscalls(self) -> tuple[int, ...]:
        return tuple(sorted(self._by_nr))

    def decide(self, nr: int, args=(0,) * 6, arch: int | None = None) -> Action:
        """The reference decision for one call (what the BPF must return)."""
        arch = abi.native_arch() if arch is None else arch
        x32 = abi.x32_syscall_bit()
        unsigned_nr = nr & MASK32
        # x32 calls arrive with the native arch token and the x32 bit set: every
        # number at or above that bit is foreign (-1 is the "no syscall" marker).
        if arch != abi.native_arch() or (x32 and x32 <= unsigned_nr != MASK32):
            return Action("kill")
        low = [a & MASK32 for a in (list(args) + [0] * 6)[:6]]
        for rule in self.rules_for(nr):
            if condition_holds(rule.condition, low):
                return rule.action
        return self.default_action
