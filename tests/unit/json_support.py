"""What the tests of the runtime's C JSON module share (test_fastjson_c.py for
loads_utf8 and the string quoter, test_fastjson_encode_c.py for dumps_ascii):
hypothesis strategies for JSON-able values, a run of code the way the bootstrap
runs, and a leak check."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import tracemalloc

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from sandbox.functions.spec import RUNTIME_DIR

SLOW_OK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())   # with surrogates
TEXT = st.text(alphabet=ANY_CHAR, max_size=40)
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-0.0, 0.0, 5e-324, 1e308]))
INTS = st.one_of(st.integers(-2**70, 2**70), st.integers(-10**200, 10**200),
                 st.sampled_from([10**18 - 1, 10**18, -(10**18 - 1), -(10**18), 2**63, -(2**63) - 1]))
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT)


def run_like_the_bootstrap(code: str) -> str:
    """Run `code` with the runtime directory as the only import path (as /var/runtime is), no site."""
    script = f"import sys\nsys.path.insert(0, {RUNTIME_DIR!r})\n" + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-S", "-B", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def memory_growth(run_all, rounds: int = 20) -> int:
    """Bytes still allocated after `rounds` more calls of run_all() than after one (warmed up first)."""
    run_all()
    tracemalloc.start()
    try:
        run_all()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(rounds):
            run_all()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@contextlib.contextmanager
def recursion_headroom(frames: int):
    """The recursion limit set to the caller's depth plus `frames`, for the block."""
    depth, frame = 0, sys._getframe(2)   # the caller's frame (this one and contextmanager's are above it)
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)
