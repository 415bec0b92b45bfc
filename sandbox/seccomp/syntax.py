"""Policy text -> statements (names and constants still unresolved).

Grammar, one statement per line, ``#`` starts a comment::

    @include PATH                     # relative to the including file
    default ACTION
    NAME[, NAME...]: ACTION [if COND]   # ?NAME: skip if the native arch lacks it
    ACTION := allow | kill | log | errno (ERRNO_NAME | NUMBER)
    COND   := CONJ ( || CONJ )*
    CONJ   := CMP ( && CMP )*
    CMP    := argN [ & VALUE ] OP VALUE       OP := == != < <= > >=
    VALUE  := TERM ( | TERM )*                TERM := NUMBER | CONSTANT_NAME

Every error is a PolicyError whose message starts with ``file:line:``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import PolicyError
from .model import Location

_INCLUDE = re.compile(r"^\s*@include\s+(?P<path>\S+)\s*(#.*)?$")
_TOKEN = re.compile(
    r"\s*(?:(?P<op>\|\||&&|==|!=|<=|>=|<|>|&|\||,|:|\?)"
    r"|(?P<num>0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<bad>\S))"
)
_ARG = re.compile(r"^arg([0-5])$")
_ACTIONS = ("allow", "kill", "log", "errno")


@dataclass(frozen=True)
class Sources:
    """The text of a policy file and of everything it includes, in include order."""

    root: str
    texts: tuple[tuple[str, str], ...]  # (absolute path, text)
    includes: tuple[tuple[str, int, str], ...]  # (file, line, included absolute path)

    def text(self, path: str) -> str:
        return dict(self.texts)[path]

    def included(self, path: str, line: int) -> str:
        return {(f, n): p for f, n, p in self.includes}[(path, line)]


@dataclass(frozen=True)
class RawAction:
    kind: str
    errno: str | int | None
    location: Location


@dataclass(frozen=True)
class RawComparison:
    arg: int
    op: str
    value: tuple[str | int, ...]  # terms OR-ed together
    mask: tuple[str | int, ...] | None


@dataclass(frozen=True)
class Statement:
    location: Location
    kind: str  # "default" or "rule"
    action: RawAction
    syscalls: tuple[str, ...] = ()
    condition: tuple[tuple[RawComparison, ...], ...] = ()


def fail(location: Location, message: str, field: str = "policy") -> PolicyError:
    return PolicyError(f"{location}: {message}", field=field)


def read_sources(path: str) -> Sources:
    """Read ``path`` and, recursively, every ``@include``; detect cycles."""
    texts: dict[str, str] = {}
    includes: list[tuple[str, int, str]] = []
    first_seen: dict[str, Location] = {}

    def visit(file: str, stack: tuple[str, ...], where: Location | None) -> None:
        try:
            with open(file, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            prefix = f"{where}: cannot include {file}" if where else f"cannot read policy {file}"
            raise PolicyError(f"{prefix}: {detail}", field="policy") from None
        texts[file] = text
        for number, line in enumerate(text.splitlines(), 1):
            match = _INCLUDE.match(line)
            if not match:
                continue
            here = Location(file, number)
            target = os.path.realpath(os.path.join(os.path.dirname(file), match["path"]))
            if target in stack:
                chain = " -> ".join(os.path.basename(p) for p in stack + (target,))
                raise fail(here, f"include cycle: {chain}", "include")
            if target in first_seen:
                raise fail(here, f"{match['path']} is already included at {first_seen[target]}",
                           "include")
            first_seen[target] = here
            includes.append((file, number, target))
            visit(target, stack + (target,), here)

    root = os.path.realpath(path)
    visit(root, (root,), None)
    return Sources(root, tuple(texts.items()), tuple(includes))


def parse(sources: Sources) -> tuple[Statement, ...]:
    """All statements, includes expanded in place, in evaluation order."""
    out: list[Statement] = []

    def walk(file: str) -> None:
        for number, line in enumerate(sources.text(file).splitlines(), 1):
            if _INCLUDE.match(line):
                walk(sources.included(file, number))
                continue
            statement = parse_line(line, Location(file, number))
            if statement is not None:
                out.append(statement)

    walk(sources.root)
    return tuple(out)


def tokenize(text: str, location: Location) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        kind = match.lastgroup
        if kind == "bad":
            raise fail(location, f"unexpected character {match[kind]!r}")
        tokens.append((kind, match[kind]))
        pos = match.end()
    return tokens


def parse_line(line: str, location: Location) -> Statement | None:
    code = line.split("#", 1)[0]
    if not code.strip():
        return None
    if code.lstrip().startswith("@"):
        if code.split()[0] == "@include":
            raise fail(location, "@include takes exactly one path", "include")
        raise fail(location, f"unknown directive {code.split()[0]!r} (only @include exists)")
    tokens = _Tokens(tokenize(code, location), location)
    if tokens.peek() == ("name", "default") and tokens.peek(1) != ("op", ":"):
        tokens.next()
        action = _parse_action(tokens)
        tokens.expect_end()
        return Statement(location, "default", action)
    names = [_syscall_name(tokens, "a syscall name")]
    while tokens.accept("op", ","):
        names.append(_syscall_name(tokens, "a syscall name after ','"))
    if not tokens.accept("op", ":"):
        raise fail(location, "expected ':' after the syscall name (NAME: ACTION [if CONDITION])")
    action = _parse_action(tokens)
    condition: tuple = ()
    if tokens.accept("name", "if"):
        condition = _parse_condition(tokens)
    tokens.expect_end()
    return Statement(location, "rule", action, tuple(names), condition)


class _Tokens:
    def __init__(self, tokens, location):
        self.tokens, self.pos, self.location = tokens, 0, location

    def peek(self, ahead: int = 0):
        index = self.pos + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self):
        token = self.peek()
        self.pos += 1
        return token

    def accept(self, kind, text=None) -> bool:
        token = self.peek()
        if token and token[0] == kind and (text is None or token[1] == text):
            self.pos += 1
            return True
        return False

    def expect(self, kind, what) -> str:
        token = self.peek()
        if not token or token[0] != kind:
            raise fail(self.location, f"expected {what}, found {self.describe(token)}")
        self.pos += 1
        return token[1]

    def expect_end(self):
        if self.peek() is not None:
            raise fail(self.location, f"unexpected {self.describe(self.peek())} at end of line")

    @staticmethod
    def describe(token) -> str:
        return "end of line" if token is None else repr(token[1])


def _syscall_name(tokens: _Tokens, what: str) -> str:
    """NAME, or ?NAME: "skip on arches that do not have this syscall"."""
    optional = tokens.accept("op", "?")
    return ("?" if optional else "") + tokens.expect("name", what)


def _parse_action(tokens: _Tokens) -> RawAction:
    token = tokens.peek()
    if token is None or token[0] != "name" or token[1] not in _ACTIONS:
        raise fail(tokens.location, f"expected an action ({', '.join(_ACTIONS)}), "
                                    f"found {tokens.describe(token)}", "action")
    tokens.next()
    errno = None
    if token[1] == "errno":
        value = tokens.peek()
        if value is None or value[0] not in ("name", "num") or value[1] == "if":
            raise fail(tokens.location, "errno needs a name or number, e.g. 'errno EPERM'",
                       "action")
        tokens.next()
        errno = _number(value[1], tokens.location) if value[0] == "num" else value[1]
    return RawAction(token[1], errno, tokens.location)


def _parse_condition(tokens: _Tokens) -> tuple[tuple[RawComparison, ...], ...]:
    disjuncts = []
    while True:
        conj = [_parse_comparison(tokens)]
        while tokens.accept("op", "&&"):
            conj.append(_parse_comparison(tokens))
        disjuncts.append(tuple(conj))
        if not tokens.accept("op", "||"):
            return tuple(disjuncts)


def _parse_comparison(tokens: _Tokens) -> RawComparison:
    name = tokens.expect("name", "an argument (arg0..arg5)")
    match = _ARG.match(name)
    if not match:
        raise fail(tokens.location, f"expected an argument arg0..arg5, found {name!r}",
                   "condition")
    mask = None
    if tokens.accept("op", "&"):
        mask = _parse_value(tokens)
    token = tokens.next()
    if token is None or token[1] not in ("==", "!=", "<", "<=", ">", ">="):
        raise fail(tokens.location, f"expected a comparison operator (== != < <= > >=) "
                                    f"after {name}, found {tokens.describe(token)}", "condition")
    if mask is not None and token[1] not in ("==", "!="):
        raise fail(tokens.location, f"a masked comparison can only use == or !=, not {token[1]}",
                   "condition")
    return RawComparison(int(match[1]), token[1], _parse_value(tokens), mask)


def _parse_value(tokens: _Tokens) -> tuple[str | int, ...]:
    terms = []
    while True:
        token = tokens.next()
        if token is None or token[0] not in ("num", "name"):
            raise fail(tokens.location, f"expected a number or constant name, found "
                                        f"{tokens.describe(token)}", "condition")
        terms.append(_number(token[1], tokens.location) if token[0] == "num" else token[1])
        if not tokens.accept("op", "|"):
            return tuple(terms)


def _number(text: str, location: Location) -> int:
    try:
        return int(text, 0)
    except ValueError:  # "017": C would read octal, Python refuses; say which to write
        raise fail(location, f"ambiguous number {text!r}: write octal as 0o..., "
                             "decimal without leading zeros", "condition") from None
