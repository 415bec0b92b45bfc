"""Tamper-evident audit log of control-plane calls (docs/audit.md).

Each call becomes one JSON line (keys sorted, compact separators, ASCII):

    {"action":"CreateFunction","caller":"alice","error":null,"hash":"…","parameters":{…},
     "prev":"…","result":"Success","seq":0,"time":"2024-05-01T12:00:00.123Z"}

``hash`` is SHA-256 (or, given a key, HMAC-SHA256) over the canonical JSON of
the record without ``hash``; ``prev`` is the previous record's ``hash`` (64
zeros for the first).  Since ``hash`` covers ``prev`` and ``seq``, editing,
deleting, inserting or reordering any line breaks the chain at that line.
Removing lines from the tail is detected only against a head (seq, hash)
anchored elsewhere: ``AuditLog.head()`` gives it, ``verify(expect_head=…)``
checks it.  Parameters pass through ``redact()`` before they are written.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import hmac
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass

from ..errors import SandboxError

SUCCESS, FAILURE = "Success", "Failure"
GENESIS = "0" * 64
REDACTED = "<redacted>"
MIN_KEY_BYTES = 16
MAX_STRING_CHARS = 4096          # longer strings are kept as length + sha256
FIELDS = frozenset({"seq", "time", "caller", "action", "parameters", "result", "error", "prev", "hash"})
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class AuditLogError(SandboxError):
    """The audit log cannot be opened or appended to safely."""

    step = "audit log"

    def __init__(self, path, message, *, hint=None, err=errno.EBADMSG):
        self.path = path
        super().__init__(err, f"{path}: {message}", hint=hint)


# -- redaction ---------------------------------------------------------------------

# Matched against the key with separators removed and lower-cased, so
# AWS_SECRET_ACCESS_KEY, secretAccessKey and aws-session-token all match.
_SECRET_KEY_PARTS = ("secret", "password", "passwd", "passphrase", "token", "credential", "authorization",
                     "cookie", "privatekey", "apikey", "accesskey", "sessionkey", "signingkey", "encryptionkey",
                     "masterkey", "clientkey", "hmackey", "sshkey")
_SECRET_KEYS = frozenset({"key", "auth"})
_ENV_KEYS = frozenset({"environment", "env", "variables", "environmentvariables", "envvars"})
_SECRET_VALUE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def _compact(key: str) -> str:
    return re.sub(r"[^0-9a-z]", "", key.lower())


def is_secret_key(key) -> bool:
    """Whether a parameter named ``key`` holds a secret (its value is dropped)."""
    compact = _compact(str(key))
    return compact in _SECRET_KEYS or any(part in compact for part in _SECRET_KEY_PARTS)


def redact(parameters: dict) -> dict:
    """A JSON-ready copy of ``parameters`` with secrets removed.

    - values under a secret-looking key (see ``is_secret_key``), at any depth,
      become ``"<redacted>"``; so do strings holding a PEM private key or an
      AWS access key id;
    - environment variables (under ``environment``/``env``/``variables``, as a
      dict, ``NAME=value`` strings or (name, value) pairs) keep their names,
      lose their values;
    - bytes (code packages) become ``{"bytes": n, "sha256": hex}``, strings
      over 4096 characters ``{"chars": n, "sha256": hex}``;
    - callables become their qualified name, paths ``os.fspath()``; any other
      object becomes ``"<object module.Type>"`` (its repr might hold a secret).
    """
    return _redact(parameters if isinstance(parameters, dict) else dict(parameters), set())


def _redact(value, seen: set, env: bool = False):
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        if _SECRET_VALUE.search(value):
            return REDACTED
        if len(value) > MAX_STRING_CHARS:
            return {"chars": len(value), "sha256": hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()}
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(value, os.PathLike):
        return _redact(os.fspath(value), seen)
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        if id(value) in seen:
            return "<cycle>"
        seen.add(id(value))
        try:
            return _redact_container(value, seen, env)
        finally:
            seen.discard(id(value))
    if callable(value):
        name = getattr(value, "__qualname__", None) or type(value).__qualname__
        module = getattr(value, "__module__", None)
        return f"{module}.{name}" if module else name
    return f"<object {type(value).__module__}.{type(value).__qualname__}>"


def _redact_container(value, seen, env):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key = str(key)
            if is_secret_key(key):
                out[key] = REDACTED
            elif env:   # a variable's value, or a wrapper such as {"Variables": {...}}
                out[key] = _redact(item, seen, env=True) if isinstance(item, dict) else REDACTED
            else:
                out[key] = _redact(item, seen, env=_compact(key) in _ENV_KEYS)
        return out
    items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
    if env:
        return [_redact_variable(item, seen) for item in items]
    return [_redact(item, seen) for item in items]


def _redact_variable(item, seen):
    if isinstance(item, str):
        return f"{item.partition('=')[0]}={REDACTED}" if "=" in item else REDACTED
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return [_redact(item[0], seen), REDACTED]
    return _redact(item, seen, env=True) if isinstance(item, dict) else REDACTED


# -- the chain -----------------------------------------------------------------------

def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def record_hash(record: dict, key: bytes | None = None) -> str:
    """SHA-256 (HMAC-SHA256 with ``key``) of the record's canonical JSON without ``hash``."""
    body = canonical({k: v for k, v in record.items() if k != "hash"})
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def load_key(path) -> bytes:
    """The HMAC key stored in ``path``: its bytes, exactly (no newline stripping)."""
    with open(path, "rb") as handle:
        return _check_key(handle.read(), path)


def _check_key(key, where="key"):
    if key is None:
        return None
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{where}: an audit HMAC key must be at least {MIN_KEY_BYTES} bytes "
                         f"(e.g. head -c 32 /dev/urandom > audit.key)")
    return bytes(key)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int                         # records that verified (all of them when ok)
    first_bad_line: int | None         # 1-based
    reason: str
    head: tuple[int, str] | None       # (seq, hash) of the last good record

    def __bool__(self):
        return self.ok


class _Chain:
    """Checks lines one at a time; ``check`` returns None or why the line is bad."""

    def __init__(self, key: bytes | None, expect_head=None):
        self.key = key
        self.count = 0
        self.prev = GENESIS
        self.expect_head = expect_head
        self.anchored = None            # hash of record seq == expect_head[0], once seen

    @property
    def head(self):
        return (self.count - 1, self.prev) if self.count else None

    def check(self, line: bytes) -> str | None:
        if not line.endswith(b"\n"):
            return "incomplete last line (no newline): a torn write, or a write still in progress"
        text = line[:-1]
        try:
            record = json.loads(text)
        except ValueError as exc:
            return f"not valid JSON ({exc})"
        if not isinstance(record, dict):
            return "not a JSON object"
        if set(record) != FIELDS:
            missing, extra = sorted(FIELDS - set(record)), sorted(set(record) - FIELDS)
            return f"wrong fields (missing {missing}, unexpected {extra})"
        if not (type(record["seq"]) is int and isinstance(record["hash"], str) and isinstance(record["prev"], str)):
            return "seq must be an integer, hash and prev strings"
        try:
            if canonical(record) != text:
                return "not in canonical form (sorted keys, compact separators, ASCII): the line was edited"
        except ValueError as exc:
            return f"not canonical JSON ({exc})"
        problem = self._check_hash(record)
        if problem:
            return problem
        # The line is intact; now is it in its place?
        if record["seq"] != self.count:
            return (f"seq is {record['seq']}, expected {self.count}: "
                    f"a line was deleted, inserted or moved here")
        if record["prev"] != self.prev:
            return "prev is not the previous record's hash: a line was deleted, inserted or moved here"
        if self.expect_head and record["seq"] == self.expect_head[0]:
            self.anchored = record["hash"]
        self.count += 1
        self.prev = record["hash"]
        return None

    def _check_hash(self, record):
        if record["hash"] == record_hash(record, self.key):
            return None
        if self.key is not None and record["hash"] == record_hash(record):
            return "hash is a plain SHA-256 but a key was given (the log is unkeyed, or was rewritten without the key)"
        if self.key is None and _HEX64.match(record["hash"]):
            return "hash does not match the record: the line was edited (or the log is keyed and no key was given)"
        if self.key is not None:
            return "HMAC does not match the record: the line was edited, or the key is wrong"
        return "hash does not match the record: the line was edited"

    def finish(self) -> tuple[int | None, str]:
        """After the last line: (first bad line, reason) for the anchored head, or (None, "")."""
        if not self.expect_head:
            return None, ""
        seq, digest = self.expect_head
        if seq >= self.count:
            return self.count + 1, (f"the log ends at seq {self.count - 1} but the anchored head is seq {seq}: "
                                    f"records were removed from the end")
        if self.anchored != digest:
            return seq + 1, f"record seq {seq} does not have the anchored hash: the log was rewritten"
        return None, ""


def verify(path, *, key: bytes | None = None, expect_head: tuple[int, str] | None = None) -> VerifyResult:
    """Check the chain of the log at ``path`` (raises OSError if it cannot be read).

    ``expect_head=(seq, hash)``, from ``AuditLog.head()`` kept elsewhere, also
    checks that record ``seq`` is still there with that hash, which catches
    removal of the tail and a consistent rewrite of the whole plain-hash chain.
    """
    with open(path, "rb") as handle:
        return _verify_lines(handle, key, expect_head)


def _verify_lines(lines, key, expect_head) -> VerifyResult:
    chain = _Chain(_check_key(key), _check_head(expect_head))
    for number, line in enumerate(lines, 1):
        problem = chain.check(line)
        if problem:
            return VerifyResult(False, chain.count, number, problem, chain.head)
    bad_line, problem = chain.finish()
    if bad_line:
        return VerifyResult(False, chain.count, bad_line, problem, chain.head)
    return VerifyResult(True, chain.count, None, f"{chain.count} records", chain.head)


def _check_head(head):
    if head is None:
        return None
    seq, digest = head
    if type(seq) is not int or seq < 0 or not isinstance(digest, str) or not _HEX64.match(digest):
        raise ValueError(f"expect_head must be (seq >= 0, 64 lower-case hex digits), not {head!r}")
    return seq, digest


def utc_timestamp(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds and Z: 2024-05-01T12:00:00.123Z."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the writer ----------------------------------------------------------------------

class AuditLog:
    """Appends hash-chained records of control-plane calls; thread-safe.

    ``path=None`` keeps the records in memory.  A file is created 0600 and
    written append-only, one ``write`` per record; ``fsync_every=1`` (the
    default) fsyncs each record, ``N`` every Nth, ``0`` only in ``sync()`` and
    ``close()``.  An existing file is verified first and the chain continues
    from its last line; a broken file is refused (``AuditLogError``).  One
    writer per file: a second ``AuditLog`` on the same path is refused while
    the first is open (flock).
    """

    def __init__(self, path: str | os.PathLike | None, *, key: bytes | None = None, fsync_every: int = 1,
                 clock=time.time):
        if type(fsync_every) is not int or fsync_every < 0:
            raise ValueError(f"fsync_every must be an integer >= 0, not {fsync_every!r}")
        self.path = os.fspath(path) if path is not None else None
        self._key = _check_key(key)
        self._fsync_every = fsync_every
        self._clock = clock
        self._lock = threading.Lock()
        self._memory: list[bytes] = []   # canonical lines, as a file would hold
        self._fd = None
        self._unsynced = 0
        self._count, self._prev = 0, GENESIS
        self._closed = False
        if self.path is not None:
            self._open()

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def _open(self):
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.path, flags, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AuditLogError(self.path, "another AuditLog is writing this file", err=errno.EBUSY,
                                    hint="one writer per log: share one AuditLog object") from None
            with open(fd, "rb", closefd=False) as reader:
                result = _verify_lines(reader, self._key, None)
            if not result.ok:
                raise AuditLogError(self.path, f"broken at line {result.first_bad_line}: {result.reason}",
                                    hint=f"refusing to append; inspect it with `sandbox audit verify {self.path}`"
                                         f" and move it aside to start a new log")
            if result.head:
                self._count, self._prev = result.head[0] + 1, result.head[1]
            _fsync_dir(self.path)   # the new file's directory entry survives a crash too
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._size = os.fstat(fd).st_size

    def record(self, *, caller: str | None, action: str, parameters: dict, result: str,
               error: str | None = None) -> dict:
        """Append one record and return it (as written, with ``seq``, ``time`` and ``hash``)."""
        if not isinstance(action, str) or not action:
            raise ValueError(f"action must be a non-empty string (a Lambda API name), not {action!r}")
        if result not in (SUCCESS, FAILURE):
            raise ValueError(f"result must be {SUCCESS!r} or {FAILURE!r}, not {result!r}")
        if caller is not None and not isinstance(caller, str):
            raise ValueError(f"caller must be a string or None, not {caller!r}")
        entry = {"caller": caller, "action": action, "parameters": redact(parameters or {}), "result": result,
                 "error": None if error is None else _redact(str(error), set())}
        with self._lock:
            if self._closed:
                raise ValueError("audit log is closed")
            entry.update(seq=self._count, time=utc_timestamp(self._clock()), prev=self._prev)
            entry["hash"] = record_hash(entry, self._key)
            line = canonical(entry) + b"\n"
            if self._fd is None:
                self._memory.append(line)
            else:
                self._append(line)
            self._count, self._prev = self._count + 1, entry["hash"]
            return entry

    def _append(self, line: bytes):
        try:
            written = 0
            while written < len(line):
                written += os.write(self._fd, line[written:])
            self._unsynced += 1
            if self._fsync_every and self._unsynced >= self._fsync_every:
                os.fsync(self._fd)
                self._unsynced = 0
        except OSError:
            # Take back a partial line so the chain stays intact; if even that
            # fails the file is unsafe to extend: stop writing.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                self._closed = True
            raise
        self._size += len(line)

    def audited(self, action: str, parameters: dict, *, caller: str | None = None):
        """``with log.audited("CreateFunction", params, caller=who): ...`` records
        Success, or Failure with the exception (re-raised) as the error."""
        return _Audited(self, action, parameters, caller)

    def records(self) -> list[dict]:
        """Every record in the log (read back from the file for a file log)."""
        with self._lock:
            if self._fd is None:
                return [json.loads(line) for line in self._memory]
            with open(self._fd, "rb", closefd=False) as reader:
                reader.seek(0)
                return [json.loads(line) for line in reader]

    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last record, None while empty: store it elsewhere
        (another host, a ticket, a signed message) and pass it to verify()."""
        with self._lock:
            return (self._count - 1, self._prev) if self._count else None

    def sync(self) -> None:
        with self._lock:
            if self._fd is not None and self._unsynced:
                os.fsync(self._fd)
                self._unsynced = 0

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    if self._unsynced:
                        os.fsync(self._fd)
                finally:
                    os.close(self._fd)   # also drops the flock
                    self._fd = None
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Audited(contextlib.AbstractContextManager):
    def __init__(self, log, action, parameters, caller):
        self.log, self.action, self.parameters, self.caller = log, action, parameters, caller

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.log.record(caller=self.caller, action=self.action, parameters=self.parameters, result=SUCCESS)
        else:
            self.log.record(caller=self.caller, action=self.action, parameters=self.parameters, result=FAILURE,
                            error=f"{exc_type.__name__}: {exc}")
        return False


def _fsync_dir(path):
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
