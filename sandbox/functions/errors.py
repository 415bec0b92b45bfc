"""Errors of the function API, named and shaped as Lambda's service errors.

An invocation that reaches a handler never raises: a handler's failure is data
(InvokeResult.function_error plus an error payload).  These exceptions are for
requests Lambda itself would refuse: unknown function, payload too large, bad
parameters, throttling.  Each carries the HTTP status and the error type the
Lambda service returns, so an HTTP front end can map them one to one.
"""
from __future__ import annotations


class LambdaError(Exception):
    """Base of every service-side error.  `error_type` is Lambda's exception
    name (x-amzn-ErrorType); `status_code` the HTTP status Lambda returns;
    `kind` is "User" (the caller's fault) or "Service"."""

    error_type = "ServiceException"
    status_code = 500
    kind = "Service"

    def __init__(self, message: str, **fields):
        super().__init__(message)
        self.message = message
        self.fields = fields

    def to_dict(self) -> dict:
        """The JSON body Lambda sends with this error."""
        return {"Type": self.kind, "message": self.message, **self.fields}

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


class _UserError(LambdaError):
    kind = "User"


class ServiceException(LambdaError):
    error_type = "ServiceException"
    status_code = 500


class ResourceNotFoundException(_UserError):
    error_type = "ResourceNotFoundException"
    status_code = 404


class ResourceConflictException(_UserError):
    error_type = "ResourceConflictException"
    status_code = 409


class InvalidParameterValueException(_UserError):
    error_type = "InvalidParameterValueException"
    status_code = 400


class InvalidRequestContentException(_UserError):
    error_type = "InvalidRequestContentException"
    status_code = 400


class RequestTooLargeException(_UserError):
    error_type = "RequestTooLargeException"
    status_code = 413


class RequestEntityTooLargeException(_UserError):
    """A code package over the direct-upload cap (CreateFunction/UpdateFunctionCode)."""
    error_type = "RequestEntityTooLargeException"
    status_code = 413


class CodeStorageExceededException(_UserError):
    error_type = "CodeStorageExceededException"
    status_code = 400


class TooManyRequestsException(_UserError):
    error_type = "TooManyRequestsException"
    status_code = 429

    def __init__(self, message: str, reason: str, retry_after_s: int = 1):
        super().__init__(message, Reason=reason, retryAfterSeconds=str(retry_after_s))
        self.reason = reason
        self.final = False   # True when retrying cannot help (reserved concurrency 0)


class AccessDeniedException(_UserError):
    error_type = "AccessDeniedException"
    status_code = 403


class PolicyLengthExceededException(_UserError):
    error_type = "PolicyLengthExceededException"
    status_code = 400


class ProvisionedConcurrencyConfigNotFoundException(_UserError):
    error_type = "ProvisionedConcurrencyConfigNotFoundException"
    status_code = 404


class PreconditionFailedException(_UserError):
    """A RevisionId that is not the resource's current one (412)."""
    error_type = "PreconditionFailedException"
    status_code = 412
