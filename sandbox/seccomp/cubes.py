"""Sets of 32-bit argument values as unions of disjoint "cubes".

A cube ``(mask, value)`` is the set ``{x : x & mask == value}``: exactly what
libseccomp's SCMP_CMP_MASKED_EQ can test.  Every comparison of the policy
language (== != < <= > >=, masked == and !=) on the low 32 bits is a finite
union of cubes, and unions of cubes are closed under intersection and
difference, so first-match-wins rules can be turned into disjoint libseccomp
rules that only ever compare the low half of an argument: garbage in the upper
half cannot move a call from one rule to another.
"""
from __future__ import annotations

from typing import Iterable

MASK32 = 0xFFFFFFFF
Cube = tuple[int, int]  # (mask, value), value & ~mask == 0
CubeSet = tuple[Cube, ...]  # pairwise disjoint
UNIVERSE: CubeSet = ((0, 0),)
EMPTY: CubeSet = ()


def contains(cubes: CubeSet, x: int) -> bool:
    return any(x & mask == value for mask, value in cubes)


def size(cubes: CubeSet) -> int:
    """Number of 32-bit values in the set (the cubes are disjoint)."""
    return sum(1 << (32 - bin(mask).count("1")) for mask, _ in cubes)


def _meet(a: Cube, b: Cube) -> Cube | None:
    if (a[1] ^ b[1]) & a[0] & b[0]:
        return None
    return (a[0] | b[0], a[1] | b[1])


def _minus(a: Cube, b: Cube) -> list[Cube]:
    """a - b as disjoint cubes: split on b's extra bits, most significant first."""
    if _meet(a, b) is None:
        return [a]
    pieces = []
    mask, value = a
    free = b[0] & ~a[0]
    bit = 1 << 31
    while bit:
        if free & bit:
            pieces.append((mask | bit, value | (~b[1] & bit)))
            mask, value = mask | bit, value | (b[1] & bit)
        bit >>= 1
    return pieces


def intersect(x: CubeSet, y: CubeSet) -> CubeSet:
    out = []
    for a in x:
        for b in y:
            met = _meet(a, b)
            if met is not None:
                out.append(met)
    return minimize(out)


def difference(x: CubeSet, y: CubeSet) -> CubeSet:
    current = list(x)
    for b in y:
        current = [piece for a in current for piece in _minus(a, b)]
    return minimize(current)


def union_disjoint(sets: Iterable[CubeSet]) -> CubeSet:
    """Union of sets already known to be pairwise disjoint."""
    return minimize([cube for cubes in sets for cube in cubes])


def complement(x: CubeSet) -> CubeSet:
    return difference(UNIVERSE, x)


def minimize(cubes: list[Cube]) -> CubeSet:
    """Merge disjoint cubes that differ in one fixed bit (keeps the set exact)."""
    work = set(cubes)
    merged = len(work) > 1
    while merged:
        merged = False
        by_mask: dict[int, set[int]] = {}
        for mask, value in work:
            by_mask.setdefault(mask, set()).add(value)
        for mask, values in by_mask.items():
            if len(values) < 2:  # only cubes with the same mask can merge
                continue
            for value in sorted(values):
                if value not in values:
                    continue
                bit = mask
                while bit:
                    low = bit & -bit
                    bit ^= low
                    if value ^ low in values:
                        values -= {value, value ^ low}
                        work -= {(mask, value), (mask, value ^ low)}
                        work.add((mask & ~low, value & ~low))
                        merged = True
                        break
    return tuple(sorted(work, key=lambda c: (bin(c[0]).count("1"), c)))


def less_than(bound: int) -> CubeSet:
    """{x : x < bound}: one cube per set bit of ``bound``."""
    out = []
    for shift in range(31, -1, -1):
        bit = 1 << shift
        if bound & bit:
            high = MASK32 & ~((bit << 1) - 1)
            out.append((high | bit, bound & high))
    return tuple(out)


def comparison_set(op: str, value: int, mask: int = MASK32) -> CubeSet:
    """The set of low-32-bit values x for which ``(x & mask) op value`` holds."""
    if op in ("==", "!="):
        equal: CubeSet = ((mask, value),) if value & ~mask == 0 else EMPTY
        return equal if op == "==" else complement(equal)
    if mask != MASK32:
        raise ValueError("masked comparisons only support == and !=")
    if op == "<":
        return less_than(value)
    if op == "<=":
        return UNIVERSE if value == MASK32 else less_than(value + 1)
    if op == ">":
        return EMPTY if value == MASK32 else complement(less_than(value + 1))
    if op == ">=":
        return complement(less_than(value))
    raise ValueError(f"unknown operator {op!r}")
