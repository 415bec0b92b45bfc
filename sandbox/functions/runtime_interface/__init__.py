"""The Lambda Runtime API inside the sandbox, for custom runtimes (`provided`,
`provided.al2`, `provided.al2023`) and runtime interface clients such as
awslambdaric.  See docs/runtime-interface.md.

    entry.py        which functions use it, their bootstrap, their variables
    listener.py     the listening socket made inside the sandbox's network namespace
    http1.py        bounded HTTP/1.1 parsing and responses
    server.py       the Runtime API's endpoints and the runtime's state machine
    environment.py  the execution environment that serves it

Importing the package imports only entry.py (spec.py needs it)."""
from .entry import ADDRESS, PORT, PROVIDED_RUNTIMES, find_bootstrap, provided_environment

__all__ = ["ADDRESS", "PORT", "PROVIDED_RUNTIMES", "find_bootstrap", "provided_environment"]
