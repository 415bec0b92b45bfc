"""Entry point of the Python runtime: `python -S -B -u /var/runtime/bootstrap.py
<log stream> <initialization type>`.  Kept tiny because a script run as
__main__ is compiled on every start; the loop lives in lambda_runtime (cached)."""
import sys

import lambda_runtime

lambda_runtime.main(sys.argv[1:])
