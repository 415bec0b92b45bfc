"""`sandbox bench`: the benchmark suite in one command (docs/performance.md).

Each measure lives in its own module and returns a plain dict; suite.py runs
them in order and report.py turns the dicts into JSON, Markdown and PNG plots.
The spawn and invoke measures reuse benchmarks/spawn_bench.py and
benchmarks/invoke_bench.py from the source checkout (scripts.py loads them).
"""
