"""Zygotes: environments forked from a warm interpreter instead of started
fresh (docs/zygotes.md).

    from sandbox.zygote import spawn, runtime_kind
    box = spawn(argv, config, runtime_kind(preload=("numpy",)), stdout=PIPE)

server.py is the zygote process, client.py the supervisor's end of it,
spawn.py the pool of zygotes and pre-forked children, csrc/zygote.c the fork
with the sandbox's ordered setup.
"""
from __future__ import annotations

import functools
import os

from .client import Zygote, ZygoteKind, default_kind
from .service import ZygoteService, close_service, service_for, spawn

RUNTIME_MODULES = ("wire", "fastjson", "lambda_runtime")   # the Python runtime's modules (none reads the environment at import)


def runtime_kind(preload=()) -> ZygoteKind:
    """The zygote of the function layer's Python runtime (sandbox/functions/runtime)."""
    from ..functions.spec import RUNTIME_DIR

    return default_kind(RUNTIME_DIR, RUNTIME_MODULES, preload)


def unshadowed(preload, binds, python_version: str) -> tuple[str, ...]:
    """The packages of `preload` that no bind (the function's code at /var/task,
    layers at /opt) brings its own copy of: an import there must find the
    function's copy, not the zygote's (sys.path puts them first)."""
    roots = []
    for bind in binds:
        if bind.dest == "/var/task":
            roots.append(bind.source)
        elif bind.dest == "/opt":
            roots += [os.path.join(bind.source, "python"),
                      os.path.join(bind.source, "python", "lib", f"python{python_version}", "site-packages")]
    keep = []
    for name in preload:
        top = name.split(".")[0]
        if not any(os.path.exists(os.path.join(r, top)) or os.path.exists(os.path.join(r, top + ".py"))
                   for r in roots):
            keep.append(name)
    return tuple(keep)


@functools.lru_cache(maxsize=256)
def _kind_for(preload: tuple[str, ...], binds) -> ZygoteKind:
    from ..functions.spec import PYTHON_VERSION

    return runtime_kind(unshadowed(preload, binds, PYTHON_VERSION))


def spawner_for(spec):
    """launcher.spawn's twin for an EnvironmentSpec with `zygote` set: the
    runtime zygote, with those of its preloads the function does not ship."""
    return functools.partial(spawn, kind=_kind_for(tuple(spec.zygote), spec.config.binds))


__all__ = ["spawner_for", "Zygote", "ZygoteKind", "ZygoteService", "close_service", "service_for", "spawn", "runtime_kind",
           "unshadowed", "RUNTIME_MODULES"]
