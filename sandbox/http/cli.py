"""`sandbox serve`: the Lambda REST API for boto3 and the aws CLI (docs/http-api.md).

sandbox/cli.py calls ``add_serve_command(subparsers)``; the command returns
0 when stopped by SIGINT or SIGTERM, 2 when an argument, the credentials file
or the address is unusable (the reason on stderr).

Without --credentials one key pair is generated, printed to stderr and
written 0600 to credentials.json in the runtime's state directory.  Without
--state-dir that directory is temporary: functions and the generated key
last as long as the process.  With --state-dir DIR the control plane and the
code are kept in DIR (sandbox/functions/state_store.py) and so is the
generated key, which the next start reuses.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys

from .server import DEFAULT_HOST, DEFAULT_PORT, LambdaServer, generate_key, load_keys, write_keys

EXIT_OK, EXIT_INVALID = 0, 2


def add_serve_command(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve", help="serve the Lambda REST API (boto3, aws CLI) with SigV4 authentication",
        description="Serve AWS Lambda's REST API for a new sandbox.Runtime (docs/http-api.md).")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}; anything else is reachable from "
                             "other hosts over plain HTTP)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0: any)")
    parser.add_argument("--credentials", metavar="FILE",
                        help='JSON {"ACCESS_KEY_ID": {"secret": "...", "principal": "arn:..."}}; without it one '
                             "key pair is generated and printed to stderr")
    parser.add_argument("--region", default="us-east-1", help="the region callers sign for (default us-east-1)")
    parser.add_argument("--account-id", default="123456789012", help="the account in function ARNs")
    parser.add_argument("--destinations-dir", metavar="DIR",
                        help="directory under which event destinations (OnSuccess/OnFailure) may be named; "
                             "without it destinations are refused")
    parser.add_argument("--max-environments", type=int, default=None, metavar="N",
                        help="cap on live execution environments (the runtime's default otherwise)")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="keep functions, versions, code, layers, policies and concurrency settings in DIR "
                             "so they survive a restart (default: a temporary directory, removed at exit)")
    parser.add_argument("--code-key-file", metavar="FILE",
                        help="the AES-256 key (32 raw bytes, mode 0600) code is sealed with at rest; default: "
                             "a key file generated inside the state directory")
    parser.set_defaults(func=cmd_serve)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    import sandbox

    try:
        keys = load_keys(args.credentials) if args.credentials else None
        if args.destinations_dir is not None and not os.path.isdir(args.destinations_dir):
            raise ValueError(f"--destinations-dir {args.destinations_dir!r} is not a directory")
    except (OSError, ValueError) as exc:
        print(f"sandbox serve: {exc}", file=sys.stderr)
        return EXIT_INVALID
    options = {"region": args.region, "account_id": args.account_id, "state_dir": args.state_dir,
               "code_key_file": args.code_key_file}
    if args.max_environments is not None:
        options["max_environments"] = args.max_environments
    try:
        runtime = sandbox.Runtime(**options)
    except (OSError, ValueError) as exc:     # a state directory or key file that cannot be used (StateError)
        print(f"sandbox serve: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        if keys is None:
            try:
                keys = _own_keys(runtime.state_dir, args.account_id, kept=args.state_dir is not None)
            except (OSError, ValueError) as exc:
                print(f"sandbox serve: {exc}", file=sys.stderr)
                return EXIT_INVALID
        try:
            server = LambdaServer(runtime, keys, args.host, args.port, destinations_dir=args.destinations_dir)
        except (OSError, ValueError) as exc:
            print(f"sandbox serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return EXIT_INVALID
        if not _loopback(args.host):
            print(f"sandbox serve: WARNING: listening on {args.host}: other hosts can reach this server, over "
                  "plain HTTP (requests are signed, not encrypted)", file=sys.stderr)
        print(f"sandbox serve: listening on {server.url} (region {args.region})", file=sys.stderr, flush=True)
        _serve_until_signalled(server)
        return EXIT_OK
    finally:
        runtime.close()


def _own_keys(state_dir: str, account_id: str, kept: bool) -> dict:
    """The server's own key: the one saved in a kept state directory, or a
    new one (printed, and saved 0600 there)."""
    path = os.path.join(state_dir, "credentials.json")
    if kept and os.path.exists(path):
        mode = os.stat(path, follow_symlinks=False).st_mode
        if mode & 0o077:
            raise ValueError(f"{path} has mode {mode & 0o777:04o}: others may read the secret; chmod 600 it")
        keys = load_keys(path)
        print(f"sandbox serve: using the credentials saved in {path}", file=sys.stderr)
        return keys
    keys = dict([generate_key(f"arn:aws:iam::{account_id}:root")])
    write_keys(path, keys)
    (access_key, key), = keys.items()
    fate = "kept with the state" if kept else "removed when the server stops"
    print(f"sandbox serve: generated credentials (also in {path}, {fate}):\n"
          f"  AWS_ACCESS_KEY_ID={access_key}\n  AWS_SECRET_ACCESS_KEY={key.secret}\n"
          f"  principal {key.principal}", file=sys.stderr)
    return keys


def _serve_until_signalled(server: LambdaServer) -> None:
    def stop(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
