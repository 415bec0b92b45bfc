"""`sandbox bench [--quick] [--out DIR]`: run the benchmark suite and write
results.json, results.md and PNG plots into DIR (docs/performance.md).

sandbox/cli.py calls ``add_bench_command(subparsers)``; `python -m
sandbox.bench` runs the same command.  Exit codes: 0 written, 2 the suite
could not run (e.g. not a source checkout; the reason goes to stderr).
"""
from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_INVALID = 0, 2


def add_bench_command(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("bench", help="run the benchmark suite (JSON, Markdown, PNG)",
                                   description="Run the benchmark suite interleaved (docs/performance.md).")
    _arguments(parser)
    parser.set_defaults(func=cmd_bench)
    return parser


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a smoke run with few samples (< ~60 s)")
    parser.add_argument("--out", metavar="DIR", default="bench-results",
                        help="where results.json, results.md and *.png go (default: ./bench-results)")


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import suite

    try:
        written = suite.run_and_write(args.quick, args.out, log=lambda m: print(m, file=sys.stderr))
    except FileNotFoundError as exc:
        print(f"sandbox bench: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {written['json']}, {written['markdown']}" +
          "".join(f", {p}" for p in written["png"]))
    if not written["png"]:
        print("no plots: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
    return EXIT_OK


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sandbox bench", description=__doc__.splitlines()[0])
    _arguments(parser)
    return cmd_bench(parser.parse_args(argv))
