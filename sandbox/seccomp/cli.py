"""`sandbox policy compile|show|lint`: the command-line face of the seccomp module.

sandbox/cli.py calls ``add_policy_commands(subparsers)``; each command is a
function taking the argparse namespace and returning an exit code:
0 success, 1 lint found an error-severity finding, 2 the policy is invalid
(the message, with file:line, goes to stderr).
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import PolicyError
from . import load_policy, pfc
from .linter import lint
from .resolve import arch_name

EXIT_OK, EXIT_LINT, EXIT_INVALID = 0, 1, 2


def add_policy_commands(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("policy", help="compile, show and lint seccomp policies",
                                   description="Seccomp policy tools (docs/seccomp.md).")
    sub = parser.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")

    comp = sub.add_parser("compile", help="compile a policy to raw BPF")
    comp.add_argument("policy", metavar="NAME|PATH")
    comp.add_argument("-o", "--output", metavar="FILE",
                      help="write the raw struct sock_filter array here ('-' for stdout)")
    comp.set_defaults(func=cmd_policy_compile)

    show = sub.add_parser("show", help="print the resolved rules")
    show.add_argument("policy", metavar="NAME|PATH")
    show.add_argument("--pfc", action="store_true",
                      help="print libseccomp's pseudo filter code instead")
    show.set_defaults(func=cmd_policy_show)

    check = sub.add_parser("lint", help="warn about dangerous allowances (exit 1 on errors)")
    check.add_argument("policy", metavar="NAME|PATH")
    check.set_defaults(func=cmd_policy_lint)
    return parser


def cmd_policy_compile(args: argparse.Namespace) -> int:
    compiled = _load(args.policy)
    if compiled is None:
        return EXIT_INVALID
    summary = (f"{compiled.name}: {compiled.instructions} BPF instructions "
               f"({len(compiled.bpf)} bytes, {arch_name()})")
    if args.output == "-":
        sys.stdout.buffer.write(compiled.bpf)
        sys.stdout.buffer.flush()
        print(summary, file=sys.stderr)
        return EXIT_OK
    if args.output:
        tmp = f"{args.output}.tmp{os.getpid()}"
        with open(tmp, "wb") as handle:
            handle.write(compiled.bpf)
        os.replace(tmp, args.output)
        summary += f" -> {args.output}"
    print(summary)
    return EXIT_OK


def cmd_policy_show(args: argparse.Namespace) -> int:
    compiled = _load(args.policy)
    if compiled is None:
        return EXIT_INVALID
    if args.pfc:
        print(pfc(compiled.policy), end="")
        return EXIT_OK
    print(render(compiled))
    return EXIT_OK


def cmd_policy_lint(args: argparse.Namespace) -> int:
    compiled = _load(args.policy)
    if compiled is None:
        return EXIT_INVALID
    findings = lint(compiled)
    base = os.path.dirname(compiled.path)
    for finding in findings:
        where = f"{os.path.relpath(finding.location.file, base)}:{finding.location.line}"
        print(f"{where}: {finding.severity}: {finding.message}")
    errors = sum(f.severity == "error" for f in findings)
    print(f"{compiled.name}: {errors} error(s), {len(findings) - errors} warning(s)")
    return EXIT_LINT if errors else EXIT_OK


def render(compiled) -> str:
    """The resolved policy, one block per syscall (by name), rules in evaluation order."""
    policy = compiled.policy
    base = os.path.dirname(policy.path)

    def where(location) -> str:
        return f"{os.path.relpath(location.file, base)}:{location.line}"

    lines = [
        f"policy {policy.name} ({policy.path})",
        "sources: " + ", ".join(os.path.relpath(s, base) for s in policy.sources),
        f"default: {policy.default_action}  [{where(policy.default_location)}]",
        f"other ABIs (only {arch_name()} is native; i386, x32 numbers): kill process",
        f"BPF: {compiled.instructions} instructions"
        + (" (binary tree)" if compiled.optimized else ""),
        "",
    ]
    blocks = {}
    for nr in policy.syscalls:
        rules = policy.rules_for(nr)
        rows = [(str(rule).split(": ", 1)[1], where(rule.location)) for rule in rules]
        if rules[-1].condition:
            rows.append((f"otherwise {policy.default_action} (default)", ""))
        blocks[rules[0].syscall] = rows
    width = max((len(name) for name in blocks), default=8) + 2
    counts: dict[str, int] = {}
    for name in sorted(blocks):
        for index, (text, loc) in enumerate(blocks[name]):
            label = name if index == 0 else ""
            lines.append(f"{label:<{width}}{text:<56} {loc}".rstrip())
        kind = "conditional" if len(blocks[name]) > 1 else blocks[name][0][0].split()[0]
        counts[kind] = counts.get(kind, 0) + 1
    lines += ["", f"{len(blocks)} syscalls named: "
              + ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))]
    return "\n".join(lines)


def _load(name_or_path: str):
    try:
        return load_policy(name_or_path)
    except PolicyError as exc:
        print(f"sandbox policy: {exc}", file=sys.stderr)
        return None
