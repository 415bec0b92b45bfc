"""Load benchmarks/spawn_bench.py and benchmarks/invoke_bench.py from the
source checkout, so the suite and the stand-alone scripts share one copy of
the measuring code."""
from __future__ import annotations

import functools
import importlib.util
import os

BENCHMARKS = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))


@functools.cache
def load(name: str):
    """The module benchmarks/<name>.py; FileNotFoundError when the package was
    installed without its source tree (the suite needs a checkout)."""
    path = os.path.join(BENCHMARKS, name + ".py")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: `sandbox bench` runs from a source checkout of sandbox")
    spec = importlib.util.spec_from_file_location(f"sandbox_benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spawn_bench():
    return load("spawn_bench")


def invoke_bench():
    return load("invoke_bench")
