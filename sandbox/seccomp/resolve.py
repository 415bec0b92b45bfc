"""Statements -> validated, frozen Policy: names become numbers, rules are checked.

Checks, each reported as ``file:line: ...``: exactly one ``default``; syscall
names known to libseccomp for the native arch; constants known to
``kernel_constant``; errno values in 1..4095; 32-bit operands; conditions that
can hold; and no rule that can never apply because earlier rules already
decide every call it matches (a conflict, or a duplicate).
"""
from __future__ import annotations

import difflib
import errno as _errno
import os

import pyseccomp

from ..constants import kernel_constant
from . import abi, plan
from .model import MASK32, Action, Comparison, Location, Policy, Rule
from .syntax import RawAction, RawComparison, Sources, Statement, fail, parse

_ARCH_NAMES = {value: name.lower() for name, value in vars(pyseccomp.Arch).items()
               if isinstance(value, int) and name != "NATIVE"}


def arch_name(arch: int | None = None) -> str:
    arch = abi.native_arch() if arch is None else arch
    return _ARCH_NAMES.get(arch, hex(arch))


def resolve(sources: Sources, name: str | None = None) -> Policy:
    statements = parse(sources)
    defaults = [s for s in statements if s.kind == "default"]
    if not defaults:
        raise fail(Location(sources.root, 1), "no 'default <action>' line in the policy "
                                              "or its includes", "default")
    if len(defaults) > 1:
        raise fail(defaults[1].location, f"second 'default' line (the first is at "
                                         f"{defaults[0].location})", "default")
    default = resolve_action(defaults[0].action)
    rules = tuple(rule for s in statements if s.kind == "rule" for rule in _rules(s))
    policy = Policy(
        name=name or os.path.splitext(os.path.basename(sources.root))[0],
        path=sources.root,
        default_action=default,
        default_location=defaults[0].location,
        rules=rules,
        sources=tuple(path for path, _ in sources.texts),
    )
    check_reachable(policy)
    return policy


def resolve_action(raw: RawAction) -> Action:
    if raw.kind != "errno":
        return Action(raw.kind)
    if isinstance(raw.errno, int):
        number = raw.errno
    else:
        try:
            number = kernel_constant(raw.errno)
        except KeyError:
            number = None
        if number is None or _errno.errorcode.get(number) is None or \
                getattr(_errno, raw.errno, None) != number:
            raise fail(raw.location, f"unknown errno name {raw.errno!r}", "action")
    if not 1 <= number <= abi.MAX_ERRNO:
        raise fail(raw.location, f"errno {number} is outside 1..{abi.MAX_ERRNO} "
                                 "(0 would fake success)", "action")
    return Action("errno", number)


def _rules(statement: Statement) -> list[Rule]:
    location = statement.location
    action = resolve_action(statement.action)
    condition = tuple(tuple(_comparison(c, location) for c in conj)
                      for conj in statement.condition)
    live = tuple(conj for conj in condition if plan.conjunction_satisfiable(conj))
    if condition and not live:
        raise fail(location, "this condition can never hold", "condition")
    rules = []
    for name in statement.syscalls:
        optional = name.startswith("?")
        name = name.lstrip("?")
        nr = abi.syscall_number(name)
        if nr is None and optional and abi.syscall_exists_somewhere(name):
            continue  # ?name: a syscall this arch does not have (e.g. open on aarch64)
        if nr is None:
            hint = difflib.get_close_matches(name, abi.syscall_table(), n=1)
            also = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise fail(location, f"unknown syscall {name!r} on {arch_name()} "
                                 f"(libseccomp {'.'.join(map(str, abi.libseccomp_version()))})"
                                 f"{also}", "syscall")
        rules.append(Rule(name, nr, action, live, location))
    return rules


def _comparison(raw: RawComparison, location: Location) -> Comparison:
    value = _value(raw.value, location)
    mask = MASK32 if raw.mask is None else _value(raw.mask, location)
    if raw.mask is not None and mask == 0:
        raise fail(location, "a mask of 0 compares nothing", "condition")
    if raw.mask is not None and value & ~mask:
        raise fail(location, f"arg{raw.arg} & {mask:#x} can never be {value:#x} "
                             "(the value has bits outside the mask)", "condition")
    return Comparison(raw.arg, raw.op, value, mask)


def _value(terms, location: Location) -> int:
    total = 0
    for term in terms:
        if isinstance(term, str):
            try:
                term = kernel_constant(term)
            except KeyError:
                raise fail(location, f"unknown constant {term!r}", "condition") from None
        if not 0 <= term <= MASK32:
            raise fail(location, f"value {term:#x} does not fit in 32 bits: comparisons read "
                                 "the low 32 bits of an argument", "condition")
        total |= term
    return total


def check_reachable(policy: Policy) -> None:
    for nr in policy.syscalls:
        rules = policy.rules_for(nr)
        result = plan.plan_syscall(nr, rules, policy.default_action)
        for index, shadows in result.unreachable:
            rule = rules[index]
            earlier = sorted({rules[i].location.line if rules[i].location.file ==
                              rule.location.file else str(rules[i].location) for i in shadows},
                             key=str)
            lines = ", ".join(f"line {x}" if isinstance(x, int) else str(x) for x in earlier)
            kinds = {rules[i].action for i in shadows}
            what = "duplicate" if kinds == {rule.action} else "conflict"
            raise fail(rule.location, f"{what}: rule '{rule}' never applies, {lines} already "
                                      f"decide{'s' if len(earlier) == 1 else ''} every "
                                      f"{rule.syscall} call it matches", "rules")
        if result.paths is None:
            raise fail(rules[0].location, f"the conditions on {rules[0].syscall} need "
                                          f"{result.path_count} libseccomp rules (limit "
                                          f"{plan.MAX_PATHS_PER_SYSCALL}); simplify them",
                       "rules")
