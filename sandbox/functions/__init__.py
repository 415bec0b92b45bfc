"""Functions, versions and execution environments: the Lambda-style layer on
top of the isolation core.  Embedders use `sandbox.Runtime` (docs/functions.md)."""
from .errors import (AccessDeniedException, InvalidParameterValueException, InvalidRequestContentException, LambdaError,
                     RequestTooLargeException, ResourceConflictException, ResourceNotFoundException,
                     ServiceException, TooManyRequestsException)
from .invoke import InvokeResult
from .logs import InvocationLog, LoggerSink
from .models import LATEST, FunctionConfiguration
from .runtime_api import Runtime

__all__ = [
    "Runtime", "InvokeResult", "FunctionConfiguration", "InvocationLog", "LoggerSink", "LATEST", "LambdaError",
    "ResourceNotFoundException", "ResourceConflictException", "InvalidParameterValueException",
    "InvalidRequestContentException", "RequestTooLargeException", "TooManyRequestsException", "ServiceException",
    "AccessDeniedException",
]
