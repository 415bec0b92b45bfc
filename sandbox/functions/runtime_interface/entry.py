"""Which functions get the Runtime API, and what their environment holds.

A function uses it when its runtime is `provided`, `provided.al2` or
`provided.al2023`: its bootstrap (an executable `bootstrap` at the root of
its code, or of a layer) is the runtime and talks to
http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/.  A Python handler runs under
awslambdaric the same way, with a bootstrap that runs
`python3 -m awslambdaric "$_HANDLER"` (docs/runtime-interface.md)."""
from __future__ import annotations

import os
import stat

PROVIDED_RUNTIMES = ("provided", "provided.al2", "provided.al2023")
HOST, PORT = "127.0.0.1", 9001
ADDRESS = f"{HOST}:{PORT}"        # the runtime's view: its own loopback
# Lambda's search order: the function's code, then the layers.
BOOTSTRAP_PATHS = ("/var/task/bootstrap", "/opt/bootstrap")


def find_bootstrap(code_path: str, layers_dir: str | None) -> str:
    """The bootstrap's path inside the sandbox, "" when there is none (init
    then fails with Runtime.InvalidEntrypoint, as Lambda's does).  Decided
    once per version: its code and layers never change."""
    for inside, tree in zip(BOOTSTRAP_PATHS, (code_path, layers_dir)):
        if tree is None:
            continue
        try:
            st = os.stat(os.path.join(tree, "bootstrap"))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return inside
    return ""


def provided_environment(env: dict, python_bin_dir: str) -> dict:
    """Lambda's variables for a custom runtime, from a Python function's:
    AWS_EXECUTION_ENV is unset (Lambda sets none for provided*), and
    AWS_LAMBDA_RUNTIME_API names the server.  PATH starts with the directory
    of the sandbox's Python (bound read-only inside), so a bootstrap's
    `python3` is an interpreter the sandbox has: Lambda's provided images
    have none of their own."""
    env = dict(env)
    env.pop("AWS_EXECUTION_ENV", None)
    env["AWS_LAMBDA_RUNTIME_API"] = ADDRESS
    env["PATH"] = f"{python_bin_dir}:{env['PATH']}"
    return env
