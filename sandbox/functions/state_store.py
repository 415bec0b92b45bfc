"""A Runtime's control-plane state on disk, so that it survives a restart
(`Runtime(state_dir=DIR)`, `sandbox serve --state-dir DIR`).

    DIR/state.json   functions, versions, $LATEST, layer versions, resource
                     policies, reserved and provisioned concurrency, event
                     invoke configs -- JSON, "schema": 1, mode 0600
    DIR/code/        the code store (packages.py): blobs/<address>.blob and,
                     unless code_key/code_key_file is given, code.key (0600)
    DIR/lock         flock()ed by the one runtime that uses DIR

state.json is replaced whole after every successful control-plane call
(write a temporary file, fsync, rename over, fsync the directory), so a
crash leaves the previous state or the new one, never a mix.  It names code
by content address only; the bytes stay sealed in code/.  Disk order keeps
the two consistent across a crash: a new blob is written before a state
naming it (a blob left unnamed is removed at the next start), and a blob no
longer used is unlinked only after a state not naming it was saved
(CodeStore(defer_removal=True)).

Loading never guesses: a state file that is not JSON, has another schema,
names a region/account other than the runtime's, holds a value a
CreateFunction call would refuse, or names a blob that is missing or sealed
under another key raises StateError (.errno, .filename) naming the place in
the file -- and nothing is written over it.  Not stored: in-flight and
queued Event invocations, metrics, the audit log (it has its own file), and
Python callables (role providers, callable destinations), which a runtime
with a state directory refuses up front (check_call).
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import secrets
import threading

from .errors import InvalidParameterValueException
from .models import LATEST
from .permissions import Policy
from .provisioned import ProvisionedConfig
from .sealed import CodeIntegrityError
from .state_codec import (Reader, StateError, check_name, check_version, corrupt, decode_config,
                          decode_event_config, decode_layer, decode_statement, encode_config, encode_event_config,
                          encode_layer, encode_statement)

__all__ = ["StateStore", "StateError", "SCHEMA"]

SCHEMA = 1
STATE_FILE = "state.json"
MAX_STATE_BYTES = 256 * 1024 * 1024
_UNSTORABLE = ("role", "on_success", "on_failure")
log = logging.getLogger("sandbox.functions.state")


class StateStore:
    """The state file of one directory, held (flock) for as long as it is open."""

    def __init__(self, state_dir: str):
        self.dir = os.path.abspath(os.fspath(state_dir))
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(self.dir, STATE_FILE)
        self._lock_fd = _hold(os.path.join(self.dir, "lock"))
        self._save_lock = threading.Lock()
        self._taken = self._written = 0      # snapshot numbers: taken, and the newest on disk
        self.loaded = False        # saves are refused until load() succeeded: never overwrite what failed to load

    def close(self, runtime) -> None:
        """A last save (it also unlinks the blobs no longer named), then let
        go of the directory.  A failed save is logged: the last good state
        stays on disk."""
        try:
            self.save(runtime)
        except StateError as exc:
            log.error("state %s: %s", self.dir, exc)
        finally:
            self.loaded = False
            if self._lock_fd is not None:
                os.close(self._lock_fd)   # releases the flock
                self._lock_fd = None

    # -- the file --------------------------------------------------------------------------
    def read(self) -> dict | None:
        """The stored state (schema checked), or None when there is none yet."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(exc.errno, f"cannot open the state file: {exc.strerror}", self.path) from None
        with open(fd, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
        if len(data) > MAX_STATE_BYTES:
            raise StateError(errno.EFBIG, f"the state file is over {MAX_STATE_BYTES} bytes", self.path)
        try:
            state = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StateError(errno.EINVAL, f"the state file is not valid JSON ({exc}): it was cut short or "
                                           "altered. Restore it from a backup, or move the directory away to "
                                           "start empty", self.path) from None
        if not isinstance(state, dict) or not isinstance(state.get("schema"), int) or \
                isinstance(state.get("schema"), bool):
            raise StateError(errno.EINVAL, "the state file has no schema number: it is not a sandbox state file",
                             self.path)
        if state["schema"] != SCHEMA:
            raise StateError(errno.ENOTSUP, f"the state file has schema {state['schema']}; this version of "
                                            f"sandbox reads schema {SCHEMA}. Use the version that wrote it",
                             self.path)
        return state

    def write(self, state: dict) -> None:
        """Replace the state file atomically and durably."""
        data = json.dumps(state, indent=1, sort_keys=True).encode()
        tmp = os.path.join(self.dir, f".{STATE_FILE}.tmp-{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)        # the rename itself survives a power loss
        finally:
            os.close(dir_fd)

    # -- the runtime -------------------------------------------------------------------------
    def check_call(self, parameters: dict) -> None:
        """Refuse, before it happens, a change whose result could not be saved."""
        values = dict(parameters)
        values.update(parameters.get("changes") or {})      # update_function_configuration(**changes)
        for name in _UNSTORABLE:
            if callable(values.get(name)):
                raise InvalidParameterValueException(
                    f"{name}: a Python callable cannot be kept in the runtime's state directory ({self.dir}); "
                    "use a Runtime without state_dir for it" +
                    (", or a destination directory" if name != "role" else ""))

    def save(self, runtime) -> None:
        """Write the runtime's state now; StateError if it cannot be written
        (the change is in effect in this process; the next save includes it)."""
        if not self.loaded:
            return
        # Snapshots are numbered under the runtime's lock and written under our own, never both held
        # (no lock order to get wrong); a snapshot older than one already written is dropped.
        with runtime._lock:
            state, named = snapshot(runtime)
            self._taken += 1
            number = self._taken
        with self._save_lock:
            if number <= self._written:
                return
            try:
                self.write(state)
            except OSError as exc:
                raise StateError(exc.errno, f"could not save the state ({exc.strerror}): the change is in "
                                            "effect in this process but would not survive a restart; the next "
                                            "successful save includes it", self.path) from None
            self._written = number
            runtime._store.flush_removed(named)

    def load(self, runtime) -> None:
        """Restore the stored state into a new runtime (nothing else done
        with it yet), then remove leftovers and save (normalizing the file)."""
        state = self.read()
        if state is None:
            blobs = os.path.join(runtime._store.root, "blobs")
            if any(n.endswith(".blob") for n in os.listdir(blobs)):
                raise StateError(errno.ENOENT, f"{blobs} holds code but there is no state file naming it: the "
                                               "state file was removed. Restore it, or remove the code directory "
                                               "to start empty", self.path)
        else:
            try:
                restore(runtime, Reader(state, STATE_FILE))
            except StateError as exc:
                raise StateError(exc.errno, exc.strerror, exc.filename or self.path) from None
        swept = runtime._store.sweep()
        for name in os.listdir(self.dir):
            if name.startswith(f".{STATE_FILE}.tmp-"):
                os.unlink(os.path.join(self.dir, name))
                swept.append(name)
        if swept:
            log.info("state %s: removed what a previous process left unfinished: %s", self.dir, ", ".join(swept))
        start_provisioned(runtime, state)
        self.loaded = True
        self.save(runtime)


def _hold(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StateError(errno.EBUSY, f"the state directory is in use by another runtime (pid {holder}); one "
                                      "process at a time may use it", path) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


# -- snapshot and restore (the runtime's lock is held while they look at it) -----------------------
def snapshot(rt) -> tuple[dict, set]:
    """(the state as JSON values, the code addresses it names)."""
    named = set()

    def config(fc):
        named.add(fc.code.sha256)
        named.update(layer.code.sha256 for layer in fc.layers)
        return encode_config(fc)

    with rt._lock:
        functions = {}
        for name, function in rt._functions.items():
            versions = {v: config(fc) for v, fc in function.versions.items()}
            provisioned = {}
            for version in function.versions:
                found = rt._provisioner.get(name, version)
                if found is not None:
                    provisioned[version] = found.requested
            functions[name] = {
                "latest": config(function.latest), "versions": versions, "next_version": function.next_version,
                "reserved": function.reserved, "provisioned": provisioned,
                "policies": {key or LATEST: [encode_statement(s) for s in policy.statements.values()]
                             for key, policy in function.policies.items()},
                "event_configs": {q: encode_event_config(c) for (n, q), c in rt._event_configs.items() if n == name}}
        layers = {}
        for name, versions in rt._layers.items():
            layers[name] = {str(number): encode_layer(layer) for number, layer in versions.items()}
            named.update(layer.code.sha256 for layer in versions.values())
    return {"schema": SCHEMA, "region": rt.region, "account_id": rt.account_id, "functions": functions,
            "layers": layers}, named


def restore(rt, r: Reader) -> None:
    """Decode everything first (no side effect on a refusal), then take the
    code store references and install it."""
    from .runtime_api import _Function     # the runtime's own record; imported late (it imports us)

    region, account = r.get("region", str), r.get("account_id", str)
    if (region, account) != (rt.region, rt.account_id):
        raise corrupt("region/account_id", f"the state belongs to region {region}, account {account}; this runtime "
                                           f"is region {rt.region}, account {rt.account_id}: start it with those")
    layers = {}
    for name, versions in r.items("layers"):
        layers[name] = {}
        for number, item in versions.members():
            layer = decode_layer(item)
            if (layer.name, str(layer.version)) != (name, number):
                raise corrupt(item.where, f"holds layer {layer.name}:{layer.version}")
            layers[name][layer.version] = layer
        versions.done()
    functions, event_configs, reserved_total = {}, {}, 0
    for name, f in r.items("functions"):
        check_name(name, f.where)
        arn = rt.function_arn(name)
        latest = decode_config(f.obj("latest"), name, LATEST, arn)
        versions = {}
        for version, item in f.items("versions"):
            versions[check_version(version, item.where)] = decode_config(item, name, version, arn)
        next_version = f.int("next_version", 1)
        if versions and next_version <= max(map(int, versions)):
            raise corrupt(f"{f.where}.next_version", f"{next_version} is not above the newest version")
        function = _Function(os.urandom(16).hex(), latest, versions, next_version=next_version,
                             reserved=f.int("reserved", optional=True))
        reserved_total += function.reserved or 0
        for key, statements in f.get("policies", dict).items():
            qualifier = None if key == LATEST else key
            if qualifier is not None and qualifier not in versions:
                raise corrupt(f"{f.where}.policies.{key}", "a policy of a version that does not exist")
            if not isinstance(statements, list) or not statements:
                raise corrupt(f"{f.where}.policies.{key}", "expected a non-empty list of statements")
            policy = Policy()
            for i, item in enumerate(statements):
                statement = decode_statement(Reader(item, f"{f.where}.policies.{key}.{i}"))
                policy.statements[statement.sid] = statement
            function.policies[qualifier] = policy
        for qualifier, item in f.items("event_configs"):
            if qualifier != LATEST and qualifier not in versions:
                raise corrupt(item.where, "the configuration of a version that does not exist")
            event_configs[(name, qualifier)] = decode_event_config(item)
        for qualifier, n in f.get("provisioned", dict).items():
            if qualifier not in versions or isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise corrupt(f"{f.where}.provisioned.{qualifier}", "expected a version's count >= 1")
        f.done()
        functions[name] = function
    r.get("schema", int)
    r.done()
    if reserved_total > rt._manager.max_environments:
        raise corrupt("functions.*.reserved", f"{reserved_total} environments are reserved, over this runtime's "
                                              f"max_environments ({rt._manager.max_environments}): start it with "
                                              "at least that many")
    _adopt_code(rt, functions, layers)
    with rt._lock:
        rt._layers.update(layers)
        rt._functions.update(functions)
        rt._event_configs.update(event_configs)
        for name, function in functions.items():
            if function.reserved is not None:
                rt._manager.set_reserved(function.uid, function.reserved)
                rt.metrics.reserved_concurrency(name, function.reserved)
        rt._epoch += 1


def _adopt_code(rt, functions: dict, layers: dict) -> None:
    """One store reference per holder, as the live runtime counts them: a
    layer version holds its code; a configuration its code and its layers'."""
    holders = [(f"layer {lv.arn}", lv.code) for versions in layers.values() for lv in versions.values()]
    for name, function in functions.items():
        for fc in [function.latest, *function.versions.values()]:
            holders.append((f"function {name}:{fc.version}", fc.code))
            holders += [(f"function {name}:{fc.version} (layer {lv.arn})", lv.code) for lv in fc.layers]
    for holder, package in holders:
        try:
            rt._store.adopt(package)
        except CodeIntegrityError as exc:
            raise StateError(errno.EIO, f"the code of {holder}: {exc.message}", None) from None


def start_provisioned(rt, state: dict | None) -> None:
    """Provisioned concurrency is started again once everything is in place."""
    for name, f in (state or {}).get("functions", {}).items():
        for qualifier, n in f.get("provisioned", {}).items():
            rt._provisioner.put(ProvisionedConfig(name, qualifier, n,
                                                  pool_for=lambda b=name, q=qualifier: rt._pool_for(b, q)[1]))

