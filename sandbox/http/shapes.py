"""Lambda's JSON request and response shapes, checked and translated for
sandbox.Runtime: typed field access, Code.ZipFile, pagination markers, and
the refusals the service makes (InvalidParameterValueException) when a
request asks for what this host does not do.  RevisionId preconditions are
checked by sandbox.Runtime itself, under its lock (models.check_revision)."""
from __future__ import annotations

import base64
import binascii
import json
import os

from ..functions.errors import InvalidParameterValueException, InvalidRequestContentException, LambdaError
from ..functions.models import RUNTIMES

DEFAULT_MAX_ITEMS = 50       # ListFunctions / ListVersionsByFunction page size when MaxItems is not given
MAX_ITEMS = 10000            # the model's MaxListItems


class UnknownOperationException(LambdaError):
    error_type = "UnknownOperationException"
    status_code = 404
    kind = "User"


class LengthRequiredException(LambdaError):
    """A body sent without Content-Length (chunked): limits are checked before reading."""
    error_type = "LengthRequiredException"
    status_code = 411
    kind = "User"


def parse_body(body: bytes) -> dict:
    """The request's JSON object ({} when the body is empty)."""
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestContentException("Could not parse request body into json: the body is not valid "
                                             "JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequestContentException("Could not parse request body into json: expected an object")
    return value


class Fields:
    """Typed access to one JSON object; every field read is remembered so
    that `refuse_unknown()` can name the fields this server does not take."""

    def __init__(self, data: dict, where: str = ""):
        self._data, self._where, self._read = data, where, set()

    def _get(self, name, kinds, kind_name, required):
        self._read.add(name)
        value = self._data.get(name)
        if value is None:
            if required:
                raise InvalidParameterValueException(f"{self._where}{name} is required")
            return None
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise InvalidParameterValueException(f"{self._where}{name} must be {kind_name}")
        return value

    def str(self, name, required=False):
        return self._get(name, (str,), "a string", required)

    def int(self, name, required=False):
        return self._get(name, (int,), "an integer", required)

    def bool(self, name):
        return self._get(name, (bool,), "a boolean", False)

    def list_of_str(self, name):
        value = self._get(name, (list,), "a list of strings", False)
        if value is not None and not all(isinstance(v, str) for v in value):
            raise InvalidParameterValueException(f"{self._where}{name} must be a list of strings")
        return value

    def obj(self, name, required=False) -> "Fields | None":
        value = self._get(name, (dict,), "an object", required)
        return None if value is None else Fields(value, f"{self._where}{name}.")

    def ignore(self, *names):
        self._read.update(names)

    def refuse_unknown(self):
        """Refuse fields that are set but not supported here: silently ignoring
        them (Tags, VpcConfig, KMSKeyArn, ...) would mislead the caller."""
        unsupported = sorted(k for k, v in self._data.items() if k not in self._read and v not in (None, [], {}))
        if unsupported:
            raise InvalidParameterValueException(
                f"{', '.join(self._where + k for k in unsupported)}: not supported by this server "
                "(docs/http-api.md lists what is)")


def zip_bytes(code: Fields | None, what: str = "Code.") -> bytes:
    """{what}ZipFile (base64 in the JSON, as boto3 sends a blob) as bytes;
    `what` is "Code.", "Content." or "" (UpdateFunctionCode's top level)."""
    if code is None:
        raise InvalidParameterValueException(f"{what.rstrip('.')} is required")
    zipped = code.str("ZipFile")
    for other in ("S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri"):
        if code.str(other) is not None:
            raise InvalidParameterValueException(f"{what}{other}: only {what}ZipFile is supported by this server")
    code.ignore("SourceKMSKeyArn")
    code.refuse_unknown()
    if zipped is None:
        raise InvalidParameterValueException(f"{what}ZipFile is required")
    try:
        return base64.b64decode(zipped, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameterValueException(f"{what}ZipFile must be base64") from None


def runtime_name(value: str | None) -> str | None:
    """Lambda's Runtime value, checked against what this host runs."""
    if value is None or value in RUNTIMES:
        return value
    raise InvalidParameterValueException(
        f"Value {value!r} at 'runtime' failed to satisfy constraint: this server runs the host's Python only; "
        f"use one of {list(RUNTIMES)}")


def architectures(values) -> None:
    if values not in (None, [], ["x86_64"]):
        raise InvalidParameterValueException(f"Architectures {values}: this server runs x86_64 only")


def page(items: list, marker: str | None, max_items: str | None, key) -> tuple[list, str | None]:
    """One page of `items` (sorted by `key`) after `marker`, and the next
    marker (None on the last page).  A marker is the opaque key of the last
    item returned, so deletions between pages do not skip or repeat items."""
    if max_items is None:
        limit = DEFAULT_MAX_ITEMS
    elif max_items.isdigit() and 1 <= int(max_items) <= MAX_ITEMS:
        limit = int(max_items)
    else:
        raise InvalidParameterValueException(f"MaxItems must be an integer between 1 and {MAX_ITEMS}")
    start = 0
    if marker:
        try:
            after = json.loads(base64.urlsafe_b64decode(marker.encode()))
        except (ValueError, binascii.Error):
            raise InvalidParameterValueException("Marker is not valid") from None
        try:
            start = next((i for i, item in enumerate(items) if key(item) > after), len(items))
        except TypeError:                     # a marker of another listing
            raise InvalidParameterValueException("Marker is not valid") from None
    chunk = items[start:start + limit]
    if start + limit >= len(items):
        return chunk, None
    return chunk, base64.urlsafe_b64encode(json.dumps(key(chunk[-1])).encode()).decode()


def destination(target: Fields | None, root: str | None, which: str) -> str | None:
    """An OnSuccess/OnFailure destination: a directory under the server's
    destination root (the only place remote callers may have records written)."""
    if target is None:
        return None
    path = target.str("Destination")
    target.refuse_unknown()
    if path is None:
        return None
    if root is None:
        raise InvalidParameterValueException(
            f"DestinationConfig.{which}: this server takes no destinations (start it with --destinations-dir)")
    real_root = os.path.realpath(root)
    resolved = os.path.realpath(os.path.join(real_root, path))
    if os.path.commonpath([real_root, resolved]) != real_root or not os.path.isdir(resolved):
        raise InvalidParameterValueException(
            f"DestinationConfig.{which}.Destination {path!r} must be an existing directory under the server's "
            "destinations directory")
    return resolved


def event_config_dict(config, function_arn: str, last_modified: float) -> dict:
    shown = config.to_dict()
    shown["DestinationConfig"] = {k: v for k, v in shown["DestinationConfig"].items() if v is not None}
    return {"FunctionArn": function_arn, "LastModified": last_modified, **shown}
