"""Value-set algebra (cubes) and the planner that turns ordered rules into disjoint ones."""
from __future__ import annotations

import operator
import random

import pytest

from sandbox.seccomp import cubes, plan
from sandbox.seccomp.model import Action, Comparison, Location, Rule

M32 = 0xFFFFFFFF
OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
       ">": operator.gt, ">=": operator.ge}


def interesting(rng, around):
    values = {0, 1, M32, M32 - 1, 0x80000000, 0x7FFFFFFF}
    for v in around:
        values.update({v, (v - 1) & M32, (v + 1) & M32, v ^ (1 << rng.randrange(32))})
    values.update(rng.getrandbits(32) for _ in range(20))
    return values


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("value", [0, 1, 5, 0x5412, 0x80000000, M32 - 1, M32])
def test_comparison_sets_are_exact(op, value):
    rng = random.Random(value)
    covered = cubes.comparison_set(op, value)
    for x in interesting(rng, [value]):
        assert cubes.contains(covered, x) == OPS[op](x, value), (op, value, x)
    # disjoint cubes: the sizes add up to the number of matching values
    expected = {"==": 1, "!=": 2**32 - 1, "<": value, "<=": value + 1,
                ">": M32 - value, ">=": 2**32 - value}[op]
    assert cubes.size(covered) == expected


def test_masked_comparisons():
    eq = cubes.comparison_set("==", 0, 0x7E020080)
    ne = cubes.comparison_set("!=", 0, 0x7E020080)
    assert cubes.contains(eq, 0x11) and not cubes.contains(eq, 0x10000011)
    assert cubes.contains(ne, 0x10000011) and not cubes.contains(ne, 0x11)
    assert cubes.size(eq) + cubes.size(ne) == 2**32
    assert len(ne) == bin(0x7E020080).count("1")  # one cube per masked bit


def test_set_operations_against_brute_force():
    rng = random.Random(7)
    for _ in range(200):
        a = cubes.comparison_set(rng.choice(list(OPS)), rng.choice([3, 8, 100, 0x541C]))
        b = cubes.comparison_set(rng.choice(list(OPS)), rng.choice([2, 8, 64, 0x5412]))
        both, only_a = cubes.intersect(a, b), cubes.difference(a, b)
        for x in interesting(rng, [2, 3, 8, 64, 100, 0x5412, 0x541C]):
            in_a, in_b = cubes.contains(a, x), cubes.contains(b, x)
            assert cubes.contains(both, x) == (in_a and in_b)
            assert cubes.contains(only_a, x) == (in_a and not in_b)
        assert cubes.size(both) + cubes.size(only_a) == cubes.size(a)


def test_minimize_merges_adjacent_cubes():
    assert cubes.minimize([(M32, 4), (M32, 5), (M32, 6), (M32, 7)]) == ((M32 & ~3, 4),)
    assert cubes.minimize([(M32, 1), (M32, 2)]) == ((M32, 1), (M32, 2))


def rule(syscall_nr, action, *conjunctions, line=1):
    condition = tuple(tuple(Comparison(*c) for c in conj) for conj in conjunctions)
    return Rule("x", syscall_nr, action, condition, Location("t.policy", line))


ALLOW, EPERM, EIO, ENOSYS = Action("allow"), Action("errno", 1), Action("errno", 5), \
    Action("errno", 38)


def first_match(rules, default, args):
    for r in rules:
        if not r.condition or any(all(OPS[c.op](args[c.arg] & c.mask & M32, c.value)
                                      for c in conj) for conj in r.condition):
            return r.action
    return default


def test_tree_and_paths_follow_first_match_wins():
    rules = (
        rule(41, ALLOW, [(0, "==", 16), (2, "==", 0)]),
        rule(41, EIO, [(0, "==", 16)]),
        rule(41, ALLOW, [(0, "==", 1)], [(0, "==", 2)], [(0, "==", 10)]),
        rule(41, EPERM),
    )
    result = plan.plan_syscall(41, rules, ENOSYS)
    assert result.unreachable == ()
    rng = random.Random(3)
    for _ in range(2000):
        args = [rng.choice([0, 1, 2, 3, 10, 16, 17, M32, rng.getrandbits(64)]) for _ in range(6)]
        want = first_match(rules, ENOSYS, args)
        assert plan.decide(result.tree, args) == want
        hits = [action for action, comps in result.paths
                if all(args[a] & m == v for a, m, v in comps)]
        # paths are disjoint: at most one matches; none means the default action
        assert len(hits) <= 1
        assert (hits[0] if hits else ENOSYS) == want, args
    # every path compares each argument at most once (libseccomp's limit)
    for _, comps in result.paths:
        assert len({a for a, _, _ in comps}) == len(comps)


def test_paths_with_the_default_action_are_left_out():
    rules = (rule(16, EPERM, [(1, "==", 0x5412)]), rule(16, ALLOW))
    allow_default = plan.plan_syscall(16, rules, ALLOW)
    assert [a for a, _ in allow_default.paths] == [EPERM]
    deny_default = plan.plan_syscall(16, rules, ENOSYS)
    assert {a for a, _ in deny_default.paths} == {EPERM, ALLOW}
    assert len(deny_default.paths) == 33  # the complement of one 32-bit value: 32 cubes


def test_explosive_conditions_are_counted_not_listed():
    # 32 cubes per argument on 6 arguments would be 32**6 libseccomp rules
    conj = [(arg, "!=", 7) for arg in range(6)]
    result = plan.plan_syscall(0, (rule(0, ALLOW, conj),), ENOSYS)
    assert result.paths is None and result.path_count == 32**6


def test_unconditional_rule_is_a_single_unconditional_path():
    result = plan.plan_syscall(0, (rule(0, ALLOW),), ENOSYS)
    assert result.paths == ((ALLOW, ()),)


def test_unreachable_rules_are_reported_with_their_shadows():
    rules = (rule(0, EPERM, [(0, "<", 10)]), rule(0, EIO, [(0, ">=", 10)]),
             rule(0, ALLOW, [(0, "==", 3)]), rule(0, ALLOW, [(1, "==", 1)]))
    result = plan.plan_syscall(0, rules, ENOSYS)
    unreachable = dict(result.unreachable)
    assert set(unreachable) == {2, 3}
    assert unreachable[2] == {0}
    assert unreachable[3] == {0, 1}


def test_random_rule_sets_plan_exactly():
    rng = random.Random(11)
    values = [0, 1, 2, 3, 8, 16, 0x5412, 0x80000000, M32]
    checked = 0
    for _ in range(100):
        rules = []
        for line in range(rng.randint(1, 5)):
            conjs = []
            for _ in range(rng.randint(1, 2)):
                conj = []
                for arg in rng.sample(range(3), rng.randint(1, 2)):
                    op = rng.choice(list(OPS))
                    mask = rng.choice([M32, M32, 0xF, 0x80000001]) if op in ("==", "!=") else M32
                    conj.append((arg, op, rng.choice(values) & mask, mask))
                conjs.append(conj)
            action = rng.choice([ALLOW, EPERM, EIO])
            rules.append(rule(0, action, *conjs, line=line + 1))
        rules = tuple(rules)
        result = plan.plan_syscall(0, rules, ENOSYS)
        for _ in range(300):
            args = [rng.choice(values + [rng.getrandbits(64)]) for _ in range(6)]
            want = first_match(rules, ENOSYS, args)
            assert plan.decide(result.tree, args) == want
            if result.paths is None:  # too many to hand to libseccomp: resolve refuses it
                assert result.path_count > plan.MAX_PATHS_PER_SYSCALL
                continue
            hits = [a for a, comps in result.paths if all(args[x] & m == v for x, m, v in comps)]
            assert len(hits) <= 1 and (hits[0] if hits else ENOSYS) == want
        checked += result.paths is not None
    assert checked > 30  # enough random rule sets are small enough to compile
