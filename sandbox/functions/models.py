"""Functions and versions as data: the immutable configuration of one version,
and the validation of what callers ask for (Lambda's limits and names).
"""
from __future__ import annotations

import datetime
import math
import re
import uuid
from dataclasses import dataclass, field, fields, replace

from .credentials import check_provider
from .errors import InvalidParameterValueException, PreconditionFailedException
from .spec import PROVIDED_RUNTIMES, PYTHON_VERSION, RESERVED_VARIABLES

LATEST = "$LATEST"
RUNTIMES = ("python3", f"python{PYTHON_VERSION}") + PROVIDED_RUNTIMES   # provided*: docs/runtime-interface.md
NETWORK_MODES = ("none",)
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")      # always used with fullmatch
_VARIABLE_NAME = re.compile(r"[a-zA-Z]([a-zA-Z0-9_])+")
_HANDLER = re.compile(r"[^\s]{1,128}")
ENVIRONMENT_BYTES = 4096       # Lambda: all variables together


@dataclass(frozen=True)
class FunctionConfiguration:
    """One version of a function ($LATEST or a published number).  Immutable:
    an update makes a new $LATEST configuration; a publish snapshots it."""

    function_name: str
    function_arn: str
    version: str
    runtime: str
    handler: str
    code: object                               # a CodePackage
    memory_mb: int = 128
    timeout_s: int = 3
    environment: tuple[tuple[str, str], ...] = ()
    ephemeral_storage_mb: int = 512
    policy: str = "default"
    network: str = "none"
    description: str = ""
    role: object = None                        # execution-role credentials provider (credentials.py)
    layers: tuple = ()                         # LayerVersions, merged under /opt in this order
    revision_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    last_modified: str = field(default_factory=lambda: api_time())

    def same_deployment(self, other: "FunctionConfiguration") -> bool:
        """True when code and configuration match (what decides whether a
        publish makes a new version); ignores names, dates and revisions."""
        ignored = {"function_arn", "version", "revision_id", "last_modified", "description"}
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(self)
                   if f.name not in ignored and f.name != "code") and self.code.sha256 == other.code.sha256

    def to_dict(self) -> dict:
        """Lambda's FunctionConfiguration shape."""
        return {
            "FunctionName": self.function_name,
            "FunctionArn": self.function_arn if self.version == LATEST else f"{self.function_arn}:{self.version}",
            "Runtime": self.runtime,
            "Handler": self.handler,
            "CodeSize": self.code.code_size,
            "CodeSha256": self.code.code_sha256,
            "Description": self.description,
            "Timeout": self.timeout_s,
            "MemorySize": self.memory_mb,
            "LastModified": self.last_modified,
            "Version": self.version,
            "Environment": {"Variables": dict(self.environment)},
            "EphemeralStorage": {"Size": self.ephemeral_storage_mb},
            "RevisionId": self.revision_id,
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": ["x86_64"],
            **({"Role": getattr(self.role, "__qualname__", type(self.role).__name__)} if self.role else {}),
            **({"Layers": [{"Arn": layer.arn, "CodeSize": layer.code.code_size} for layer in self.layers]}
               if self.layers else {}),
        }

    def updated(self, **changes) -> "FunctionConfiguration":
        return replace(self, revision_id=str(uuid.uuid4()), last_modified=api_time(), **changes)

    def revised(self) -> "FunctionConfiguration":
        """The same configuration under a new RevisionId: for changes that
        touch the function but not this object's fields (its resource
        policy, a publish)."""
        return replace(self, revision_id=str(uuid.uuid4()))


def check_revision(given: str | None, current: "FunctionConfiguration") -> None:
    """RevisionId preconditions (UpdateFunctionCode/Configuration,
    PublishVersion, Add/RemovePermission): the caller holds the runtime's
    lock, so the check and the change it guards are one step."""
    if given is not None and given != current.revision_id:
        raise PreconditionFailedException(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API "
            "to retrieve the latest Revision Id")


def _utc_ms(suffix: str) -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + suffix


def api_time() -> str:
    """Now as the Lambda API writes LastModified/CreatedDate: 2024-01-01T00:00:00.000+0000."""
    return _utc_ms("+0000")


def log_time() -> str:
    """Now as Lambda writes it in logs and invocation records: 2024-01-01T00:00:00.000Z."""
    return _utc_ms("Z")


# -- validation ---------------------------------------------------------------------
def check_function_name(name) -> str:
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        raise InvalidParameterValueException(
            f"1 validation error detected: Value '{name}' at 'functionName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [a-zA-Z0-9-_]{1,64}")
    return name


def _int_in(value, name, low, high) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameterValueException(f"{name} must be an integer between {low} and {high}, got {value!r}")
    return value


def check_settings(*, runtime, handler, memory_mb, timeout_s, environment, ephemeral_storage_mb, policy,
                   network, description="", role=None) -> dict:
    """Validate what create_function/update_function_configuration accept;
    returns the normalized settings."""
    if runtime not in RUNTIMES:
        raise InvalidParameterValueException(f"Value {runtime!r} at 'runtime' failed to satisfy constraint: "
                                             f"Member must be one of {list(RUNTIMES)}")
    if not isinstance(handler, str) or not _HANDLER.fullmatch(handler):
        raise InvalidParameterValueException(f"Value {handler!r} at 'handler' failed to satisfy constraint: "
                                             "Member must satisfy regular expression pattern: [^\\s]{1,128}")
    _int_in(memory_mb, "MemorySize", 128, 10240)
    if isinstance(timeout_s, float) and math.isfinite(timeout_s) and timeout_s == int(timeout_s):
        timeout_s = int(timeout_s)
    _int_in(timeout_s, "Timeout", 1, 900)
    _int_in(ephemeral_storage_mb, "EphemeralStorage.Size", 512, 10240)
    if not isinstance(policy, str) or not policy:
        raise InvalidParameterValueException("policy must name a seccomp policy")
    if network not in NETWORK_MODES:
        raise InvalidParameterValueException(f"network must be one of {list(NETWORK_MODES)}, got {network!r}")
    if not isinstance(description, str) or len(description) > 256:
        raise InvalidParameterValueException("Description must be a string of at most 256 characters")
    return dict(runtime=runtime, handler=handler, memory_mb=memory_mb, timeout_s=timeout_s,
                environment=check_environment(environment), ephemeral_storage_mb=ephemeral_storage_mb,
                policy=policy, network=network, description=description, role=check_provider(role))


def check_environment(variables) -> tuple[tuple[str, str], ...]:
    if variables is None:
        return ()
    if not isinstance(variables, dict):
        raise InvalidParameterValueException("Environment variables must be a dict of strings")
    total = 0
    for key, value in variables.items():
        if not isinstance(key, str) or not _VARIABLE_NAME.fullmatch(key):
            raise InvalidParameterValueException(
                f"Environment variable name {key!r} must match [a-zA-Z]([a-zA-Z0-9_])+")
        if key in RESERVED_VARIABLES:
            raise InvalidParameterValueException(
                f"Lambda was unable to configure your environment variables because the environment variables "
                f"you have provided contains reserved keys that are currently not supported for modification. "
                f"Reserved keys used in this request: {key}")
        if not isinstance(value, str) or "\0" in value:
            raise InvalidParameterValueException(f"Environment variable {key} must be a string without NUL")
        total += len(key.encode()) + len(value.encode())
    if total > ENVIRONMENT_BYTES:
        raise InvalidParameterValueException(
            f"Lambda was unable to configure your environment variables because the environment variables you "
            f"have provided exceeded the 4KB limit. String measured: {total} bytes")
    return tuple(sorted(variables.items()))
