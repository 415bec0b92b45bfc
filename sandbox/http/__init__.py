"""`sandbox serve`: the Lambda REST API over HTTP with SigV4 authentication,
so boto3 and the aws CLI drive a sandbox.Runtime unchanged (docs/http-api.md).

    sigv4.py   verifying AWS Signature Version 4 (header and presigned forms)
    shapes.py  Lambda's JSON shapes <-> Runtime arguments and results
    routes.py  the operations: paths from botocore's model, one handler each
    server.py  the threaded HTTP server: limits, authentication, dispatch
    cli.py     the `sandbox serve` command
"""
from .sigv4 import Key, Verifier

__all__ = ["Key", "Verifier"]
