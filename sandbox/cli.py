"""Command line: `sandbox run`, `sandbox doctor`, `sandbox policy ...`.

`sandbox run` exits with the command's status (128+N when killed by signal N)
and 125 when the sandbox could not be set up, with the reason on stderr."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .config import LAYERS, Config
from .errors import SandboxError
from .net.cli_args import add_network_arguments, network_from_args

EXIT_SETUP_FAILED = 125


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="run a command in a new sandbox",
                       description="Run CMD in a new sandbox with every isolation layer on.")
    p.add_argument("--bind", action="append", default=[], metavar="SRC:DST[:rw]",
                   help="make a host path visible inside (read-only unless :rw)")
    p.add_argument("--memory", type=int, default=Config.memory_mb, metavar="MB", help="memory limit (no swap)")
    p.add_argument("--cpus", type=float, default=Config.cpus, metavar="N", help="CPU quota in CPUs")
    p.add_argument("--pids", type=int, default=Config.pids, metavar="N", help="max processes+threads")
    p.add_argument("--timeout", type=float, default=Config.timeout_s, metavar="S", help="wall-clock limit")
    p.add_argument("--tmp-size", type=int, default=Config.tmp_size_mb, metavar="MB", help="size of /tmp")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable")
    p.add_argument("--policy", default=Config.policy, metavar="NAME|PATH", help="seccomp policy")
    add_network_arguments(p)
    p.add_argument("--io", action="append", default=[], metavar="DEVICE,KEY=N[,...]",
                   help="block I/O limit on a whole disk (its path or MAJ:MIN); keys rbps, wbps, riops, wiops")
    p.add_argument("--cwd", default=Config.cwd, help="working directory inside")
    p.add_argument("--disable", action="append", default=[], choices=LAYERS, metavar="LAYER",
                   help=f"turn an isolation layer off by name (weaker!): {', '.join(LAYERS)}")
    p.add_argument("--init", action="store_true",
                   help="run a tiny init as pid 1 that reaps orphans and forwards signals (the command is pid 2)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stderr at the end")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from .launcher import spawn

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("sandbox run: no command given (use: sandbox run [options] -- CMD [ARG...])", file=sys.stderr)
        return 2
    try:
        env = dict(item.split("=", 1) for item in args.env)
    except ValueError:
        print("sandbox run: --env expects K=V", file=sys.stderr)
        return 2
    try:
        config = Config.create(binds=args.bind, env=env, disable=args.disable, memory_mb=args.memory,
                               cpus=args.cpus, pids=args.pids, timeout_s=args.timeout,
                               tmp_size_mb=args.tmp_size, policy=args.policy, net=args.net, cwd=args.cwd,
                               init=args.init, network=network_from_args(args), io=args.io)
        with spawn(cmd, config) as box:
            result = box.wait()
    except SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    if args.json:
        fields = {k: getattr(result, k) for k in ("exit_code", "signal", "wall_time_s", "cpu_time_s",
                                                  "memory_peak_bytes", "oom_killed", "timed_out")}
        print(json.dumps(fields), file=sys.stderr)
    elif result.timed_out:
        print(f"sandbox: timed out after {args.timeout} s", file=sys.stderr)
    elif result.oom_killed:
        print("sandbox: killed: out of memory", file=sys.stderr)
    return result.shell_status


def cmd_doctor(args) -> int:
    from .doctor import report

    lines, ok = report()
    if args.json:
        print(json.dumps(lines, indent=2))
    else:
        for item in lines:
            print(f"[{'ok' if item['ok'] else 'MISSING'}] {item['feature']}: {item['detail']}")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandbox", description="Isolated execution environments on Linux")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    d = sub.add_parser("doctor", help="report which isolation features this host offers")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_doctor)
    try:
        from .seccomp.cli import add_policy_commands
    except ImportError:  # policy tooling missing: the rest of the CLI still works
        pass
    else:
        add_policy_commands(sub)
    from .audit_cli import add_audit_commands
    from .bench_cli import add_bench_command
    from .http.cli import add_serve_command

    add_audit_commands(sub)
    add_bench_command(sub)
    add_serve_command(sub)
    return parser


EXIT_BROKEN_PIPE = 141   # 128 + SIGPIPE, as a shell reports a reader that went away


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader (e.g. `| head`) stopped reading: not an error worth a
        # traceback.  Point stdout at /dev/null so the exit-time flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
