"""`sandbox audit verify FILE`: check an audit log's hash chain (docs/audit.md).

sandbox/cli.py calls ``add_audit_commands(subparsers)``; each command is a
function taking the argparse namespace and returning an exit code:
0 the chain is intact, 1 it is broken (the first bad line and why go to
stdout), 2 the log or key could not be read or an argument is invalid (stderr).
"""
from __future__ import annotations

import argparse
import sys

from .functions.audit import load_key, verify

EXIT_OK, EXIT_BROKEN, EXIT_INVALID = 0, 1, 2


def add_audit_commands(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("audit", help="check tamper-evident audit logs",
                                   description="Audit log tools (docs/audit.md).")
    sub = parser.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")

    check = sub.add_parser("verify", help="check a log's hash chain (exit 1 if broken)")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--key-file", metavar="PATH",
                       help="HMAC key the log was written with (the file's exact bytes)")
    check.add_argument("--head", metavar="SEQ:HASH",
                       help="anchored head from AuditLog.head(): record SEQ must still be there with HASH")
    check.set_defaults(func=cmd_audit_verify)
    return parser


def cmd_audit_verify(args: argparse.Namespace) -> int:
    try:
        key = load_key(args.key_file) if args.key_file else None
        head = parse_head(args.head) if args.head else None
        result = verify(args.file, key=key, expect_head=head)
    except (OSError, ValueError) as exc:
        print(f"sandbox audit verify: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if not result.ok:
        print(f"BROKEN at line {result.first_bad_line}: {result.reason}")
        return EXIT_BROKEN
    print(f"ok: {result.count} records")
    if result.head:
        print(f"head: {result.head[0]}:{result.head[1]}")
    return EXIT_OK


def parse_head(text: str) -> tuple[int, str]:
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit():
        raise ValueError(f"--head: expected SEQ:HASH (e.g. 41:3fa9…), not {text!r}")
    return int(seq), digest.lower()
