"""First-match-wins rules for one syscall -> a decision tree -> disjoint libseccomp rules.

libseccomp cannot express rule priority: an unconditional rule swallows the
conditional rules of the same syscall, overlapping conditional rules with
different actions fail with EEXIST, a rule may compare each argument only
once, and a rule whose action equals the default one is refused (EACCES).
So the compiler never hands it overlapping rules.  It builds a decision tree
over the arguments (arg0 first), where sibling branches are disjoint sets of
low-32-bit values (see cubes.py), and emits one rule per root-to-leaf path
with at most one masked comparison per argument.  Paths whose action is the
default action are left out.

Building the tree also shows which rules can never apply (every call they
match is decided by an earlier rule): those are reported as conflicts.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import cubes
from .model import Action, Rule

# Refuse syscalls whose tree would blow past the kernel's 4096-instruction limit anyway.
MAX_PATHS_PER_SYSCALL = 400


@dataclass(frozen=True)
class Leaf:
    action: Action


@dataclass(frozen=True)
class Node:
    arg: int
    branches: tuple[tuple[cubes.CubeSet, "Leaf | Node"], ...]


@dataclass(frozen=True)
class Entry:
    """One conjunction of one rule: per-argument value sets (absent = any value)."""

    rule: int
    action: Action
    sets: tuple[tuple[int, cubes.CubeSet], ...]

    def without(self, arg: int) -> "Entry":
        return Entry(self.rule, self.action, tuple(s for s in self.sets if s[0] != arg))

    def set_for(self, arg: int) -> cubes.CubeSet | None:
        return dict(self.sets).get(arg)


@dataclass(frozen=True)
class SyscallPlan:
    nr: int
    tree: "Leaf | Node"
    # (action, ((arg, mask, value), ...)) per libseccomp rule; None if there would be
    # more than MAX_PATHS_PER_SYSCALL of them (path_count says how many)
    paths: tuple[tuple[Action, tuple[tuple[int, int, int], ...]], ...] | None
    path_count: int
    unreachable: tuple[tuple[int, frozenset[int]], ...]  # (rule index, indices of shadowing rules)


def entries_for(rules: tuple[Rule, ...]) -> list[Entry]:
    """Turn rules into entries: one per satisfiable conjunction, in order."""
    out = []
    for index, rule in enumerate(rules):
        for conj in rule.condition or ((),):
            sets: dict[int, cubes.CubeSet] = {}
            for cmp in conj:
                allowed = cubes.comparison_set(cmp.op, cmp.value, cmp.mask)
                sets[cmp.arg] = cubes.intersect(sets.get(cmp.arg, cubes.UNIVERSE), allowed)
            if all(sets.values()):
                universal = {a for a, s in sets.items() if s == cubes.UNIVERSE}
                out.append(Entry(index, rule.action,
                                 tuple(sorted((a, s) for a, s in sets.items() if a not in universal))))
    return out


def conjunction_satisfiable(conj) -> bool:
    """False if some argument is asked to be in an empty set (e.g. arg0 == 1 && arg0 == 2)."""
    return bool(entries_for((Rule("", 0, Action("allow"), (conj,), None),)))


def plan_syscall(nr: int, rules: tuple[Rule, ...], default: Action) -> SyscallPlan:
    winners: set[int] = set()
    shadowed: dict[int, set[int]] = {}
    tree = _build(entries_for(rules), default, winners, shadowed)
    count = _count(tree, default)
    paths = None
    if count <= MAX_PATHS_PER_SYSCALL:
        paths = tuple(p for p in _paths(tree, ()) if p[0] != default)
    unreachable = tuple((i, frozenset(shadowed.get(i, ()))) for i in range(len(rules))
                        if i not in winners)
    return SyscallPlan(nr, tree, paths, count, unreachable)


def _count(tree, default: Action) -> int:
    """How many non-default paths the tree has, without listing them."""
    if isinstance(tree, Leaf):
        return 0 if tree.action == default else 1
    return sum(len(cube_set) * _count(sub, default) for cube_set, sub in tree.branches)


def _build(entries: list[Entry], default: Action, winners: set[int],
           shadowed: dict[int, set[int]]) -> "Leaf | Node":
    if not entries:
        return Leaf(default)
    for position, entry in enumerate(entries):
        if not entry.sets:  # this entry matches every call left: later ones are moot here
            deciders = {e.rule for e in entries[: position + 1]}
            for other in entries[position + 1:]:
                if other.rule not in deciders:
                    shadowed.setdefault(other.rule, set()).update(deciders)
            entries = entries[: position + 1]
            break
    first = entries[0]
    if not first.sets:
        winners.add(first.rule)
        for other in entries[1:]:
            if other.rule != first.rule:
                shadowed.setdefault(other.rule, set()).add(first.rule)
        return Leaf(first.action)
    arg = min(a for e in entries for a, _ in e.sets)
    # Partition arg's values into regions; each region knows which entries it satisfies.
    regions: list[tuple[cubes.CubeSet, frozenset[int]]] = [(cubes.UNIVERSE, frozenset())]
    for position, entry in enumerate(entries):
        wanted = entry.set_for(arg)
        if wanted is None:
            continue
        split = []
        for region, members in regions:
            inside = cubes.intersect(region, wanted)
            outside = cubes.difference(region, wanted)
            if inside:
                split.append((inside, members | {position}))
            if outside:
                split.append((outside, members))
        regions = split
    by_members: dict[frozenset[int], list[cubes.CubeSet]] = {}
    for region, members in regions:
        by_members.setdefault(members, []).append(region)
    branches: dict["Leaf | Node", list[cubes.CubeSet]] = {}
    for members, parts in by_members.items():
        sub = [e.without(arg) for i, e in enumerate(entries)
               if e.set_for(arg) is None or i in members]
        subtree = _build(sub, default, winners, shadowed)
        branches.setdefault(subtree, []).extend(parts)
    if len(branches) == 1:
        return next(iter(branches))
    return Node(arg, tuple((cubes.union_disjoint(parts), subtree)
                           for subtree, parts in branches.items()))


def _paths(tree, prefix):
    if isinstance(tree, Leaf):
        yield (tree.action, prefix)
        return
    for cube_set, subtree in tree.branches:
        for mask, value in cube_set:
            yield from _paths(subtree, prefix + ((tree.arg, mask, value),))


def decide(tree: "Leaf | Node", args) -> Action:
    """Walk the tree (used by tests to check the tree against the rules)."""
    while isinstance(tree, Node):
        low = args[tree.arg] & cubes.MASK32
        tree = next(sub for cube_set, sub in tree.branches if cubes.contains(cube_set, low))
    return tree.action
