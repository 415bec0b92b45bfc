"""Layers: versioned code packages that functions stack read-only under /opt.

A layer version is stored like function code (the same checks, encrypted at
rest, content-addressed).  A function names up to five layer versions; when an
environment pool is made, their trees are merged in order -- a later layer's
file replaces an earlier one's -- into one tree that is itself stored and
bind-mounted at /opt.  Equal stacks share one merged tree."""
from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass

from .auditing import audited
from .errors import InvalidParameterValueException, ResourceNotFoundException
from .models import api_time

MAX_LAYERS = 5
MAX_TOTAL_UNZIPPED = 250 * 1024 * 1024    # function code and its layers together (Lambda's cap)
_LAYER_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


@dataclass(frozen=True)
class LayerVersion:
    name: str
    version: int
    arn: str                  # the layer version's ARN
    code: object              # CodePackage
    description: str = ""
    compatible_runtimes: tuple[str, ...] = ()
    created: str = ""

    def to_dict(self) -> dict:
        return {"LayerArn": self.arn.rsplit(":", 1)[0], "LayerVersionArn": self.arn, "Version": self.version,
                "Description": self.description, "CreatedDate": self.created,
                "CompatibleRuntimes": list(self.compatible_runtimes),
                "Content": {"CodeSha256": self.code.code_sha256, "CodeSize": self.code.code_size}}


class LayersAPI:
    """Runtime methods for layers (a mixin of sandbox.Runtime)."""

    @audited("PublishLayerVersion")
    def publish_layer_version(self, name, content, compatible_runtimes=(), description="") -> LayerVersion:
        if not isinstance(name, str) or not _LAYER_NAME.fullmatch(name):
            raise InvalidParameterValueException("LayerName must match [a-zA-Z0-9-_]{1,64}")
        if not isinstance(description, str) or len(description) > 256:
            raise InvalidParameterValueException("Description must be a string of at most 256 characters")
        package = self._store.put(content)
        with self._lock:
            versions = self._layers.setdefault(name, {})
            number = max(versions, default=0) + 1
            layer = LayerVersion(name, number, f"arn:aws:lambda:{self.region}:{self.account_id}:layer:{name}:{number}",
                                 package, description, tuple(compatible_runtimes or ()), api_time())
            versions[number] = layer   # holds put()'s reference
            return layer

    def get_layer_version(self, name, version: int) -> LayerVersion:
        with self._lock:
            layer = self._layers.get(name, {}).get(version)
            if layer is None:
                raise ResourceNotFoundException(f"Layer version {name}:{version} does not exist")
            return layer

    def list_layer_versions(self, name) -> list[LayerVersion]:
        with self._lock:
            return [self._layers.get(name, {})[v] for v in sorted(self._layers.get(name, {}), reverse=True)]

    @audited("DeleteLayerVersion")
    def delete_layer_version(self, name, version: int) -> None:
        """Functions that use the version keep their copy (as in Lambda)."""
        with self._lock:
            layer = self._layers.get(name, {}).pop(version, None)
        if layer is not None:
            self._store.release(layer.code.sha256)

    def _resolve_layers(self, arns, code) -> tuple:
        """Validate a function's layer list against `code`; returns its
        LayerVersions (references are taken by whoever keeps them)."""
        if arns is None:
            return ()
        if isinstance(arns, str) or not all(isinstance(a, str) for a in arns):
            raise InvalidParameterValueException("Layers must be a list of layer version ARNs")
        arns = list(arns)
        if len(arns) > MAX_LAYERS:
            raise InvalidParameterValueException(f"Cannot reference more than {MAX_LAYERS} layers.")
        layers = []
        with self._lock:
            for arn in arns:
                parts = arn.split(":")
                if len(parts) != 8 or parts[:3] != ["arn", "aws", "lambda"] or parts[5] != "layer" or \
                        parts[3] != self.region or parts[4] != self.account_id or not parts[7].isdigit():
                    raise InvalidParameterValueException(f"Layer version ARN {arn!r} is not valid for this runtime")
                layer = self._layers.get(parts[6], {}).get(int(parts[7]))
                if layer is None:
                    raise InvalidParameterValueException(f"Layer version {arn} does not exist.")
                layers.append(layer)
            total = code.unzipped_size + sum(layer.code.unzipped_size for layer in layers)
            if total > MAX_TOTAL_UNZIPPED:
                raise InvalidParameterValueException(
                    f"Function code combined with layers exceeds the maximum allowed size of {MAX_TOTAL_UNZIPPED} "
                    f"bytes. The actual size is {total} bytes.")
        return tuple(layers)


def merge_layers(store, layers) -> tuple[object, str]:
    """Merge the layers' trees in order into one stored package; returns it and
    its materialized path (the caller dematerializes it when done)."""
    staging = tempfile.mkdtemp(prefix=".merge-", dir=store.root)
    try:
        for layer in layers:
            tree = store.materialize(layer.code.sha256)
            try:
                _overlay(tree, staging)
            finally:
                store.dematerialize(layer.code.sha256)
        merged = store.put(staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        path = store.materialize(merged.sha256)   # holds its own reference
    finally:
        store.release(merged.sha256)
    return merged, path


def _overlay(source: str, target: str) -> None:
    """Copy source's files over target's, replacing what is there (a file may
    replace a directory of an earlier layer and the reverse)."""
    for directory, dirnames, filenames in os.walk(source):
        relative = os.path.relpath(directory, source)
        destination = os.path.join(target, relative) if relative != "." else target
        if os.path.lexists(destination) and not os.path.isdir(destination):
            os.unlink(destination)
        os.makedirs(destination, mode=0o755, exist_ok=True)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(directory, d))]:
            src, dst = os.path.join(directory, name), os.path.join(destination, name)
            if os.path.isdir(dst) and not os.path.islink(dst):
                shutil.rmtree(dst)
            elif os.path.lexists(dst):
                os.unlink(dst)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o755 if os.stat(src).st_mode & stat.S_IXUSR else 0o644)

