"""python -m sandbox.bench [--quick] [--out DIR]"""
import sys

from ..bench_cli import main

sys.exit(main())
