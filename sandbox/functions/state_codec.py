"""The control plane's objects as JSON and back, for the state file
(state_store.py): configurations, code packages, layer versions, policy
statements, event invoke configs.

Decoding trusts nothing: every field is checked for presence and type, the
settings go through the same validation as a CreateFunction call, and
anything unexpected raises StateError naming its place in the file
("functions.hello.versions.2.memory_mb: ...").  A field this version does not
know is refused rather than dropped: it was written by a newer version.
"""
from __future__ import annotations

import errno
import re
from dataclasses import fields

from .errors import LambdaError
from .events import EventInvokeConfig
from .layers import LayerVersion
from .models import LATEST, FunctionConfiguration, check_function_name, check_settings
from .packages import CodePackage
from .permissions import Statement, make_statement

_ADDRESS = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[1-9][0-9]{0,9}")
# Settings re-validated by check_settings on load (role is never stored: see state_store.check_call).
_SETTINGS = ("runtime", "handler", "memory_mb", "timeout_s", "environment", "ephemeral_storage_mb", "policy",
             "network", "description")
_SCALARS = (str, int, float, bool, type(None))


class StateError(OSError):
    """The state directory cannot be used as it is: `.errno`, `.filename`
    (the file), and a message that says what is wrong and what to do."""


def corrupt(where: str, why: str, path: str | None = None) -> StateError:
    return StateError(errno.EINVAL, f"{where}: {why}", path)


class Reader:
    """Typed access to one JSON object at `where` in the state file; every
    key read is remembered so that done() can refuse the ones left over."""

    def __init__(self, data, where: str):
        if not isinstance(data, dict):
            raise corrupt(where, f"expected an object, found {type(data).__name__}")
        self.data, self.where, self._read = data, where, set()

    def get(self, key: str, kinds, *, optional: bool = False, default=None):
        self._read.add(key)
        if key not in self.data:
            if optional:
                return default
            raise corrupt(f"{self.where}.{key}", "missing")
        value = self.data[key]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise corrupt(f"{self.where}.{key}", f"expected {names}, found {type(value).__name__}")
        return value

    def int(self, key: str, low: int = 0, *, optional: bool = False):
        value = self.get(key, (int, type(None)) if optional else int, optional=optional)
        if value is not None and value < low:
            raise corrupt(f"{self.where}.{key}", f"expected an integer >= {low}, found {value}")
        return value

    def obj(self, key: str, *, optional: bool = False) -> "Reader":
        return Reader(self.get(key, dict, optional=optional, default={}), f"{self.where}.{key}")

    def items(self, key: str, *, optional: bool = False):
        """(name, Reader) for each member of the object at `key`."""
        members = self.get(key, dict, optional=optional, default={})
        return [(name, Reader(value, f"{self.where}.{key}.{name}")) for name, value in members.items()]

    def members(self):
        """(name, Reader) for each member of this object."""
        self._read.update(self.data)
        return [(name, Reader(value, f"{self.where}.{name}")) for name, value in self.data.items()]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise corrupt(self.where, f"unknown field(s) {unknown}: written by a newer version of sandbox, or "
                                      "altered")


def _checked(where: str, call):
    """Run a Lambda-side validation on stored values; its refusal names the place."""
    try:
        return call()
    except LambdaError as exc:
        raise corrupt(where, exc.message) from None


# -- code packages ---------------------------------------------------------------------------
def encode_package(package: CodePackage) -> dict:
    return {"sha256": package.sha256, "code_sha256": package.code_sha256, "code_size": package.code_size,
            "unzipped_size": package.unzipped_size}


def decode_package(r: Reader) -> CodePackage:
    sha256 = r.get("sha256", str)
    if not _ADDRESS.fullmatch(sha256):
        raise corrupt(f"{r.where}.sha256", "not a code package address (64 hex digits)")
    package = CodePackage(sha256, r.get("code_sha256", str), r.int("code_size"), r.int("unzipped_size"))
    r.done()
    return package


# -- layer versions --------------------------------------------------------------------------
def encode_layer(layer: LayerVersion) -> dict:
    return {"name": layer.name, "version": layer.version, "arn": layer.arn, "code": encode_package(layer.code),
            "description": layer.description, "compatible_runtimes": list(layer.compatible_runtimes),
            "created": layer.created}


def decode_layer(r: Reader) -> LayerVersion:
    runtimes = r.get("compatible_runtimes", list)
    if not all(isinstance(x, str) for x in runtimes):
        raise corrupt(f"{r.where}.compatible_runtimes", "expected a list of strings")
    layer = LayerVersion(r.get("name", str), r.int("version", 1), r.get("arn", str), decode_package(r.obj("code")),
                         r.get("description", str), tuple(runtimes), r.get("created", str))
    r.done()
    return layer


# -- function configurations -----------------------------------------------------------------
def encode_config(fc: FunctionConfiguration) -> dict:
    out = {}
    for f in fields(fc):
        value = getattr(fc, f.name)
        if f.name == "code":
            value = encode_package(value)
        elif f.name == "layers":
            value = [encode_layer(layer) for layer in value]
        elif f.name == "environment":
            value = dict(value)
        elif f.name == "role":
            if value is not None:    # state_store.check_call refuses these before they are made
                raise ValueError(f"{fc.function_name}: a role provider (a Python callable) cannot be stored")
            continue
        elif not isinstance(value, _SCALARS):
            raise ValueError(f"FunctionConfiguration.{f.name} ({type(value).__name__}) has no JSON form in "
                             "state_codec.py: teach encode_config/decode_config about it")
        out[f.name] = value
    return out


def decode_config(r: Reader, name: str, version: str, arn: str) -> FunctionConfiguration:
    """A configuration stored for function `name`, `version` ($LATEST or a
    number), whose unqualified ARN must be `arn`."""
    known = {f.name: f for f in fields(FunctionConfiguration)}
    values = {}
    for key in ("function_name", "function_arn", "version", "revision_id", "last_modified"):
        values[key] = r.get(key, str)
    if (values["function_name"], values["version"], values["function_arn"]) != (name, version, arn):
        raise corrupt(r.where, f"names {values['function_name']}:{values['version']} ({values['function_arn']}) "
                               f"where {name}:{version} ({arn}) belongs")
    environment = r.obj("environment")
    for key in environment.data:
        environment.get(key, str)
    settings = {key: r.get(key, _SCALARS) for key in _SETTINGS if key != "environment"}
    settings["environment"] = dict(environment.data)
    values.update(_checked(r.where, lambda: check_settings(**settings)))
    values["role"] = None
    values["code"] = decode_package(r.obj("code"))
    layers = r.get("layers", list)
    values["layers"] = tuple(decode_layer(Reader(item, f"{r.where}.layers.{i}")) for i, item in enumerate(layers))
    for key, f in known.items():     # fields added later with a default: plain JSON values
        if key not in values and key in r.data:
            values[key] = r.get(key, _SCALARS)
    r.done()
    return FunctionConfiguration(**values)


def check_name(name: str, where: str) -> str:
    return _checked(where, lambda: check_function_name(name))


def check_version(version: str, where: str) -> str:
    if version != LATEST and not _VERSION.fullmatch(version):
        raise corrupt(where, f"{version!r} is not a version number")
    return version


# -- resource policies -------------------------------------------------------------------------
def encode_statement(s: Statement) -> dict:
    return {"sid": s.sid, "action": s.action, "principal": s.principal, "resource": s.resource,
            "source_arn": s.source_arn, "source_account": s.source_account}


def decode_statement(r: Reader) -> Statement:
    args = [r.get(k, str) for k in ("sid", "action", "principal", "resource")]
    args += [r.get(k, (str, type(None))) for k in ("source_arn", "source_account")]
    r.done()
    return _checked(r.where, lambda: make_statement(*args))


# -- event invoke configs ----------------------------------------------------------------------
def encode_event_config(config: EventInvokeConfig) -> dict:
    for target in (config.on_success, config.on_failure):
        if target is not None and not isinstance(target, str):
            raise ValueError("an event destination that is a Python callable cannot be stored")
    return {"maximum_retry_attempts": config.maximum_retry_attempts,
            "maximum_event_age_s": config.maximum_event_age_s,
            "on_success": config.on_success, "on_failure": config.on_failure}


def decode_event_config(r: Reader) -> EventInvokeConfig:
    limits = EventInvokeConfig(r.int("maximum_retry_attempts"), r.int("maximum_event_age_s"))
    _checked(r.where, limits.validated)
    # Destinations are directories; one removed since is reported when an event is delivered, not here.
    config = EventInvokeConfig(limits.maximum_retry_attempts, limits.maximum_event_age_s,
                               r.get("on_success", (str, type(None))), r.get("on_failure", (str, type(None))))
    r.done()
    return config
