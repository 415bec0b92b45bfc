"""sandbox.Runtime: functions, versions and invocations, as embedders call them.

    rt = sandbox.Runtime()
    rt.create_function("hello", "/path/to/code", "app.handler", memory_mb=256)
    result = rt.invoke("hello", b'{"name": "x"}')
    rt.close()

Methods are Lambda's API in Python style.  Control-plane calls return
FunctionConfiguration objects (`.to_dict()` gives Lambda's JSON shape);
invoke() returns an InvokeResult.  Requests Lambda would refuse raise a
LambdaError subclass (sandbox.functions.errors).  Thread-safe.
"""
from __future__ import annotations

import compileall
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field

from ..supervisor import default_supervisor
from .errors import (InvalidParameterValueException, InvalidRequestContentException, LambdaError,
                     RequestTooLargeException, ResourceConflictException, ResourceNotFoundException, ServiceException)
from .events import MAX_EVENT_PAYLOAD, Event, EventQueue
from .invoke import InvokeResult, Invoker, new_request_id
from .layers import LayersAPI, merge_layers
from .metrics import Metrics
from .logs import LoggerSink
from .models import LATEST, FunctionConfiguration, check_function_name, check_revision, check_settings
from .packages import CodeStore
from .access_api import AccessAPI
from .audit import AuditLog
from .auditing import acting_as, audited
from .credentials import fetch as fetch_credentials
from .concurrency_api import ConcurrencyAPI
from .events_api import EventAPI
from .names import split_name
from .provisioned import Provisioner
from .state_store import StateStore
from .pools import EnvironmentManager
from .spec import INIT_TIMEOUT_S, RUNTIME_DIR, build_spec

DEFAULT_MAX_LIFETIME_S = 14 * 3600     # Lambda's worker lease
DEFAULT_IDLE_TIMEOUT_S = 600.0
DEFAULT_MAX_ENVIRONMENTS = 64


@dataclass
class _Function:
    uid: str
    latest: FunctionConfiguration
    versions: dict
    next_version: int = 1
    generation: int = 0            # bumped when $LATEST changes: its old environments drain
    reserved: int | None = None    # reserved concurrency
    credential_epoch: int = 0      # bumped when a pool's role credentials near expiry
    policies: dict = field(default_factory=dict)   # qualifier (None: the function) -> Policy


class Runtime(AccessAPI, ConcurrencyAPI, EventAPI, LayersAPI):
    """Functions and their execution environments.  See docs/functions.md."""

    def __init__(self, *, state_dir: str | None = None, region: str = "us-east-1",
                 account_id: str = "123456789012", max_environments: int = DEFAULT_MAX_ENVIRONMENTS,
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S, max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
                 init_timeout_s: float = INIT_TIMEOUT_S, log_sink=None, supervisor=None, disable=(),
                 event_pollers: int = 2, async_retry_delays_s=(60.0, 120.0), async_throttle_backoff_s=(1.0, 300.0),
                 dead_letter_dir: str | None = None, audit_log: str | None = None, audit_key: bytes | None = None,
                 code_key: bytes | None = None, code_key_file: str | None = None, zygotes=False):
        # zygotes: True forks environments from a runtime zygote; a tuple of
        # package names also preloads those runtime packages (docs/zygotes.md).
        zygotes = None if zygotes is False or zygotes is None else () if zygotes is True else tuple(zygotes)
        for name, value in (("idle_timeout_s", idle_timeout_s), ("max_lifetime_s", max_lifetime_s),
                            ("init_timeout_s", init_timeout_s)):
            if not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if isinstance(max_environments, bool) or not isinstance(max_environments, int) or max_environments < 1:
            raise ValueError(f"max_environments must be an integer >= 1, got {max_environments!r}")
        if dead_letter_dir is not None and not os.path.isdir(dead_letter_dir):
            # Checked before anything is made: a refused Runtime leaves no thread, directory or sandbox.
            raise ValueError(f"dead_letter_dir {dead_letter_dir!r} is not a directory")
        self.region, self.account_id = region, account_id
        self.max_lifetime_s = float(max_lifetime_s)
        self.init_timeout_s = float(init_timeout_s)
        self._own_state_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="sandbox-runtime-")
        # Code at rest is AES-GCM encrypted: under code_key / code_key_file, or a generated 0600 key file.
        self._store = CodeStore(os.path.join(self.state_dir, "code"), key=code_key, key_file=code_key_file,
                                defer_removal=state_dir is not None)
        # A state_dir given is kept: the control plane is saved there and restored from it (state_store.py).
        self._state = StateStore(self.state_dir) if state_dir is not None else None
        self._disable = frozenset(disable)
        self._functions: dict[str, _Function] = {}
        self._layers: dict = {}            # layer name -> {version: LayerVersion}
        self._lock = threading.RLock()
        self._closed = False
        self._epoch = 0          # bumped on every control-plane change: invalidates _routes
        self._events_closed = False
        self._routes: dict = {}
        # The runtime's modules are imported from their cached bytecode inside
        # the sandbox (read-only there), so make sure it exists and is fresh.
        compileall.compile_dir(RUNTIME_DIR, quiet=2)
        self._manager = EnvironmentManager(supervisor or default_supervisor(), max_environments=max_environments,
                                           idle_timeout_s=idle_timeout_s, max_lifetime_s=self.max_lifetime_s,
                                           on_pool_empty=self._pool_gone, zygotes=zygotes)
        # Control-plane calls are recorded: in memory, or hash-chained in a file (docs/audit.md).
        self._audit = AuditLog(audit_log, key=audit_key)
        self.metrics = Metrics()
        self._invoker = Invoker(self, log_sink if log_sink is not None else LoggerSink(), self.metrics)
        self._provisioner = Provisioner(self.metrics)
        self._event_configs: dict = {}
        self._events = EventQueue(self._invoke_for_event, self._event_config, pollers=event_pollers,
                                  retry_delays_s=async_retry_delays_s, throttle_backoff_s=async_throttle_backoff_s,
                                  dead_letter_dir=dead_letter_dir, metrics=self.metrics)
        if self._state is not None:
            try:
                self._state.load(self)
            except BaseException:
                self.close()      # not saved: the state that failed to load stays as it was
                raise

    # -- control plane --------------------------------------------------------------
    @audited("CreateFunction")
    def create_function(self, name, code, handler, runtime="python3", memory_mb=128, timeout_s=3,
                        environment=None, ephemeral_storage_mb=512, policy="default", network="none",
                        description="", publish=False, role=None, layers=None) -> FunctionConfiguration:
        """`role`: the execution role, a callable returning temporary
        credentials (credentials.Credentials or boto3's dict); environments get
        them as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN and
        are retired before they expire."""
        check_function_name(name)
        settings = check_settings(runtime=runtime, handler=handler, memory_mb=memory_mb, timeout_s=timeout_s,
                                  environment=environment, ephemeral_storage_mb=ephemeral_storage_mb,
                                  policy=policy, network=network, description=description, role=role)
        package = self._store.put(code)
        with self._lock:
            try:
                self._check_open()
                if name in self._functions:
                    raise ResourceConflictException(f"Function already exist: {name}")
                stack = self._resolve_layers(layers, package)
            except BaseException:
                self._store.release(package.sha256)
                raise
            latest = FunctionConfiguration(function_name=name, function_arn=self.function_arn(name),
                                           version=LATEST, code=package, layers=stack, **settings)
            for layer in stack:
                self._store.retain(layer.code.sha256)
            self._functions[name] = _Function(uuid.uuid4().hex, latest, {})   # holds put()'s reference
            self._epoch += 1
            return self._publish(name) if publish else latest

    @audited("UpdateFunctionCode")
    def update_function_code(self, name, code, publish=False, revision_id=None) -> FunctionConfiguration:
        """`revision_id`: change only if $LATEST's RevisionId is still this one
        (else PreconditionFailedException), checked under the lock."""
        package = self._store.put(code)
        with self._lock:
            try:
                function = self._function(name)
                check_revision(revision_id, function.latest)
            except LambdaError:
                self._store.release(package.sha256)
                raise
            self._replace_latest(function, function.latest.updated(code=package))
            self._store.release(package.sha256)   # _replace_latest took the new $LATEST's own reference
            return self._publish(name) if publish else function.latest

    @audited("UpdateFunctionConfiguration")
    def update_function_configuration(self, name, revision_id=None, **changes) -> FunctionConfiguration:
        allowed = {"handler", "runtime", "memory_mb", "timeout_s", "environment", "ephemeral_storage_mb",
                   "policy", "network", "description", "role"}
        layers = changes.pop("layers", None)
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(f"update_function_configuration: unknown setting(s) {sorted(unknown)}")
        with self._lock:
            function = self._function(name)
            current = function.latest
            check_revision(revision_id, current)
            merged = {k: getattr(current, k) for k in allowed}
            merged["environment"] = dict(current.environment)
            merged.update(changes)
            settings = check_settings(**merged)
            if layers is not None:
                settings["layers"] = self._resolve_layers(layers, current.code)
            self._replace_latest(function, current.updated(**settings))
            return function.latest

    @audited("PublishVersion")
    def publish_version(self, name, description="", revision_id=None, code_sha256=None) -> FunctionConfiguration:
        """`revision_id` / `code_sha256`: publish only if $LATEST still has
        this RevisionId / CodeSha256 (PreconditionFailedException /
        InvalidParameterValueException), checked under the lock."""
        with self._lock:
            latest = self._function(name).latest
            check_revision(revision_id, latest)
            if code_sha256 is not None and code_sha256 != latest.code.code_sha256:
                raise InvalidParameterValueException(
                    f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST. Please try "
                    "again with the CodeSHA256 in $LATEST.")
            return self._publish(name, description)

    def get_function(self, name, qualifier=None) -> FunctionConfiguration:
        with self._lock:
            return self._resolve(name, qualifier)[1]

    def list_functions(self) -> list[FunctionConfiguration]:
        with self._lock:
            return [f.latest for _, f in sorted(self._functions.items())]

    def list_versions_by_function(self, name) -> list[FunctionConfiguration]:
        with self._lock:
            function = self._function(name)
            return [function.latest] + [function.versions[v] for v in sorted(function.versions, key=int)]

    @audited("DeleteFunction")
    def delete_function(self, name, qualifier=None) -> None:
        """Delete a function (all versions) or one published version; its
        environments end (in-flight invocations finish first)."""
        with self._lock:
            function = self._function(name)
            if qualifier in (None, LATEST) or qualifier == "":
                if qualifier == LATEST:
                    raise ResourceConflictException("$LATEST version cannot be deleted without deleting the function.")
                del self._functions[name]
                self._provisioner.delete(name)
                self.metrics.remove(name)
                self._event_configs = {k: v for k, v in self._event_configs.items() if k[0] != name}
                self._epoch += 1
                for fc in [function.latest, *function.versions.values()]:
                    self._release_config(fc)
                uid = function.uid
                self._manager.set_reserved(uid, None)
                self._manager.drain(lambda key: key[0] == uid)
                return
            self._epoch += 1
            self._event_configs.pop((name, str(qualifier)), None)
            function.policies.pop(str(qualifier), None)
            self._provisioner.delete(name, str(qualifier))
            self.metrics.remove(name, str(qualifier))
            fc = function.versions.pop(str(qualifier), None)
            if fc is None:
                raise ResourceNotFoundException(f"Function not found: {self.function_arn(name)}:{qualifier}")
            self._release_config(fc)
            self._manager.drain(lambda key: key[:2] == (function.uid, fc.version))

    # -- data plane -------------------------------------------------------------------
    def invoke(self, name, payload: bytes = b"", qualifier=None, log_type=None, client_context=None,
               trace_id=None, invocation_type="RequestResponse", principal=None, source_arn=None,
               source_account=None) -> InvokeResult:
        """Invoke a function.  RequestResponse (the default) runs it and returns
        its result: function errors are data in the result.  Event queues the
        payload and returns 202 at once (see put_function_event_invoke_config).
        DryRun only checks the request (204).  Refused requests raise a
        LambdaError.  `principal` (with `source_arn`/`source_account`) names
        a caller other than the embedder: it must be allowed by the function's
        resource policy (add_permission) when the function has one."""
        if principal is not None:
            self._authorize(name, qualifier, principal, source_arn, source_account)
        if invocation_type == "RequestResponse":
            return self._invoker.invoke(name, payload, qualifier, log_type, client_context, trace_id)
        if invocation_type not in ("Event", "DryRun"):
            raise InvalidParameterValueException(
                f"InvocationType must be RequestResponse, Event or DryRun, got {invocation_type!r}")
        payload = bytes(payload) if isinstance(payload, (bytes, bytearray, memoryview)) else payload
        if not isinstance(payload, bytes):
            raise InvalidRequestContentException("Payload must be bytes")
        if len(payload) > MAX_EVENT_PAYLOAD:
            raise RequestTooLargeException(f"Request must be smaller than {MAX_EVENT_PAYLOAD} bytes for the "
                                           "InvokeFunction operation")
        with self._lock:
            self._check_open()
            function, fc = self._resolve(name, qualifier)
            base, qualifier = split_name(name, qualifier, self.region, self.account_id)
        request_id = new_request_id()
        if invocation_type == "DryRun":
            return InvokeResult(204, b"", None, None, fc.version, request_id, 0.0, None, "")
        arn = self.function_arn(base) + f":{fc.version}"
        self._events.submit(Event(request_id, base, qualifier, payload or b"{}", arn))
        return InvokeResult(202, b"", None, None, fc.version, request_id, 0.0, None, "")

    def close(self, event_timeout_s: float = 30.0) -> None:
        """Deliver the queued events that are due (for up to `event_timeout_s`;
        the rest go to on_failure as "RuntimeClosed"), end every environment and
        remove what the runtime created.  Idempotent."""
        with self._lock:
            if self._closed or self._events_closed:
                return
            self._events_closed = True
        self._events.close(event_timeout_s)
        self._provisioner.close()
        with self._lock:
            self._closed = True
            self._epoch += 1
        self._manager.close()
        if self._state is not None:
            self._state.close(self)
        self._audit.close()
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- metrics ----------------------------------------------------------------------
    def metrics_snapshot(self, reset_max: bool = False) -> dict:
        """Invocations, Errors, Throttles, Duration, ConcurrentExecutions,
        provisioned and async metrics per function and version (docs/metrics.md)."""
        return self.metrics.snapshot(reset_max=reset_max)

    def metrics_prometheus(self) -> bytes:
        """The same in Prometheus' text exposition format."""
        return self.metrics.prometheus()

    # -- audit ------------------------------------------------------------------------
    def acting_as(self, principal: str | None):
        """`with rt.acting_as(principal):` -- the caller recorded in the audit
        log for control-plane calls this thread makes inside the block."""
        return acting_as(principal)

    def audit_records(self) -> list[dict]:
        return self._audit.records()

    def audit_head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last audit record: anchor it elsewhere to detect
        truncation (`sandbox audit verify FILE --head SEQ:HASH`)."""
        return self._audit.head()

    # -- internals used by the invoker -------------------------------------------------
    def function_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"

    def _check_open(self) -> None:
        if self._closed:
            raise ServiceException("The runtime is closed")

    def _function(self, name) -> _Function:
        function = self._functions.get(name) if isinstance(name, str) else None
        if function is None:
            raise ResourceNotFoundException(f"Function not found: {self.function_arn(name)}")
        return function

    def _resolve(self, name, qualifier) -> tuple[_Function, FunctionConfiguration]:
        """(function, configuration) for a name, "name:qualifier" or an ARN."""
        base, qualifier = split_name(name, qualifier, self.region, self.account_id)
        function = self._function(base)
        if qualifier in (None, LATEST):
            return function, function.latest
        fc = function.versions.get(qualifier)
        if fc is None:
            raise ResourceNotFoundException(f"Function not found: {self.function_arn(base)}:{qualifier}")
        return function, fc

    def _route(self, name, qualifier):
        """(configuration, pool, invoked ARN bytes) for an invocation.  Cached
        per (name, qualifier) until the next control-plane change (the epoch)."""
        hit = self._routes.get((name, qualifier))
        if hit is not None and hit[0] == self._epoch and not hit[2].draining and \
                (hit[2].retire_at is None or time.monotonic() < hit[2].retire_at):
            return hit[1], hit[2], hit[3]
        with self._lock:
            epoch = self._epoch
            fc, pool = self._pool_for(name, qualifier)
            arn = self.function_arn(fc.function_name) + ("" if fc.version == LATEST else f":{fc.version}")
            if len(self._routes) > 4096:
                self._routes.clear()
            self._routes[(name, qualifier)] = (epoch, fc, pool, arn.encode())
            return fc, pool, arn.encode()

    def _pool_for(self, name, qualifier):
        with self._lock:
            self._check_open()
            function, fc = self._resolve(name, qualifier)
            generation = function.generation if fc.version == LATEST else 0
            key = (function.uid, fc.version, generation, function.credential_epoch)
            pool = self._manager.existing_pool(key)
            if pool is not None and pool.retire_at is not None and time.monotonic() >= pool.retire_at:
                # Its credentials are about to expire: its environments go, new ones get fresh credentials.
                function.credential_epoch += 1
                self._epoch += 1
                self._manager.drain(lambda k: k == key)
                key = key[:3] + (function.credential_epoch,)
            pool = self._manager.existing_pool(key)
            if pool is not None:
                return fc, pool
            credentials = fetch_credentials(fc.role, fc.function_name) if fc.role is not None else None
            # The code is decrypted into a tree only now, for as long as the pool lives.
            code_path = self._store.materialize(fc.code.sha256)
            merged = opt_path = None
            try:
                if fc.layers:
                    merged, opt_path = merge_layers(self._store, fc.layers)
                pool, _ = self._manager.pool(key, lambda: build_spec(
                    fc, code_path, region=self.region, max_lifetime_s=self.max_lifetime_s, disable=self._disable,
                    init_timeout_s=self.init_timeout_s, credentials=credentials, layers_dir=opt_path))
            except BaseException:
                self._store.dematerialize(fc.code.sha256)
                if merged is not None:
                    self._store.dematerialize(merged.sha256)
                raise
            pool.code = fc.code
            pool.layers_code = merged
            pool.retire_at = credentials.retire_at() if credentials is not None else None
            return fc, pool

    def _pool_gone(self, pool) -> None:
        self._store.dematerialize(pool.code.sha256)
        if pool.layers_code is not None:
            self._store.dematerialize(pool.layers_code.sha256)

    def _replace_latest(self, function: _Function, latest: FunctionConfiguration) -> None:
        old = function.latest
        function.latest = latest
        function.generation += 1
        self._epoch += 1
        self._retain_config(latest)
        self._release_config(old)
        uid, generation = function.uid, function.generation
        self._manager.drain(lambda key: key[0] == uid and key[1] == LATEST and key[2] < generation)

    def _publish(self, name, description="") -> FunctionConfiguration:
        function = self._functions[name]
        if function.versions:
            newest = function.versions[str(function.next_version - 1)]
            if newest.same_deployment(function.latest):
                return newest
        version = str(function.next_version)
        function.next_version += 1
        fc = function.latest.updated(version=version, description=description or function.latest.description)
        function.versions[version] = fc
        function.latest = function.latest.revised()   # a publish is a change of the function: a new RevisionId
        self._epoch += 1
        self._retain_config(fc)
        return fc

    def _retain_config(self, fc: FunctionConfiguration) -> None:
        """A kept configuration holds its code and layers."""
        self._store.retain(fc.code.sha256)
        for layer in fc.layers:
            self._store.retain(layer.code.sha256)

    def _release_config(self, fc: FunctionConfiguration) -> None:
        self._store.release(fc.code.sha256)
        for layer in fc.layers:
            self._store.release(layer.code.sha256)
