"""A content-addressed store of function code packages, like Lambda's,
encrypted at rest.

put() checks a package (a directory, a zip file, or zip bytes) entry by entry
(package_checks.py), gives it a content address (the SHA-256 of a sorted
manifest of paths, types, exec bits, file digests and link targets), and keeps
only a sealed blob, `<root>/blobs/<address>.blob`: the canonical zip of the
checked tree under AES-256-GCM, bound to its address (sealed.py).  The
plaintext staged for the checks is deleted before put() returns.

materialize() is the only way back to plaintext: it authenticates the blob,
checks the archive again under the upload rules while extracting it, checks
that the result has the expected address, and publishes a read-only tree,
`<root>/<address>.<token>`, for sandboxes to bind-mount at /var/task.  The
tree lives while some materialize() is not yet matched by a dematerialize().
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass

from . import package_checks as checks
from . import sealed
from .errors import InvalidParameterValueException, RequestEntityTooLargeException
from .sealed import CodeIntegrityError, CodeKeyError

__all__ = ["CodePackage", "CodeStore", "CodeIntegrityError", "CodeKeyError"]

_ADDRESS_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class CodePackage:
    sha256: str          # hex content address of the canonical tree
    code_sha256: str     # Lambda's CodeSha256: base64 SHA-256 of the zip bytes
    code_size: int       # zipped size in bytes
    unzipped_size: int   # sum of file sizes in the tree
    path: str | None = None   # the store leaves it None: trees come from materialize()


@dataclass(eq=False)
class _Stored:
    package: CodePackage
    blob: str                  # <root>/blobs/<address>.blob
    refs: int = 0              # put(), retain() and materialize() not yet given back
    tree: str | None = None    # the plaintext tree while trees > 0
    trees: int = 0             # materialize() calls not yet matched by dematerialize()
    making: bool = False       # a thread is decrypting it now; others wait for it


class CodeStore:
    """Stores each distinct package once, sealed, under `root` (which it owns).

    `key` (32 bytes) or `key_file` (a file of 32 raw bytes, ours, mode 0600 or
    narrower) is the AES-256 key; with neither, `<root>/code.key` is made on
    first use and reused after.

    Thread-safe and reference-counted: put() returns the package with one
    reference held for the caller, retain() adds one, release() drops one and
    the blob goes with the last.  materialize() holds a reference too, until
    its dematerialize().  Counting here, under the store's lock, is what keeps
    a put() of known content from racing the removal of the same blob.  Each
    materialization gets a fresh path (<address>.<token>), so a sandbox
    prepared against a removed tree can never be mistaken for one of a new
    tree with the same content.  The caller removes `root` when done."""

    def __init__(self, root, *, key: bytes | None = None, key_file=None,
                 max_zipped: int = 50 * 1024 * 1024, max_unzipped: int = 250 * 1024 * 1024,
                 max_entries: int = 100_000, defer_removal: bool = False):
        given_key = sealed.load_key(key=key, key_file=key_file)   # checked before touching the disk
        self.root = os.path.abspath(os.fspath(root))
        os.makedirs(os.path.dirname(self.root), exist_ok=True)
        # 0711: sandboxes traverse the root to reach their tree, and list nothing.
        _make_dir(self.root, 0o711)
        self._blobs = os.path.join(self.root, "blobs")
        _make_dir(self._blobs, 0o700)
        self._key = given_key or sealed.default_key(os.path.join(self.root, "code.key"))
        self._key_file = os.path.abspath(os.fspath(key_file)) if key_file is not None else None
        # Room for "/<address>.<token>" after the root so every stored path stays openable.
        path_max = os.pathconf(self.root, "PC_PATH_MAX") - len(self.root) - 80
        self._limits = checks.Limits(max_zipped, max_unzipped, max_entries,
                                     os.pathconf(self.root, "PC_NAME_MAX"), path_max)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)   # a materialization ended
        self._stored: dict[str, _Stored] = {}
        self._by_upload: dict[str, str] = {}   # code_sha256 -> sha256, skips re-extracting
        # With a persistent state (state_store.py) a blob outlives its last reference until a saved
        # state no longer names it: a crash between the two must not leave the state naming a lost blob.
        self._defer_removal = defer_removal
        self._removed: set[str] = set()        # addresses whose blob awaits flush_removed()

    # -- packages -------------------------------------------------------------------
    def put(self, source) -> CodePackage:
        """Store a directory, a zip file path, or zip bytes; return its package
        with this upload's code_sha256/code_size (path is None)."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            size = memoryview(source).nbytes
            self._check_zipped_size(size)
            return self._put_zip(bytes(source))
        path = os.fspath(source)
        if os.path.isdir(path):
            return self._store(lambda tmp: checks.stage_dir(path, tmp, self._limits), upload=None)
        with open(path, "rb") as f:
            self._check_zipped_size(os.fstat(f.fileno()).st_size)
            data = f.read(self._limits.max_zipped + 1)   # the file may grow meanwhile
        self._check_zipped_size(len(data))
        return self._put_zip(data)

    def get(self, sha256: str) -> CodePackage | None:
        _check_address(sha256)
        with self._lock:
            record = self._stored.get(sha256)
            return record.package if record else None

    def retain(self, sha256: str) -> None:
        """Take one more reference to a stored package."""
        with self._lock:
            if sha256 not in self._stored:
                raise KeyError(f"no stored package {sha256}")
            self._stored[sha256].refs += 1

    def release(self, sha256: str) -> None:
        """Drop one reference; the last one removes the blob (and any tree)."""
        _check_address(sha256)
        with self._lock:   # decide and unlink in one step: a put() may be reviving it
            doomed = self._drop(sha256, self._stored.get(sha256))
        _remove_trees(doomed)

    def references(self, sha256: str) -> int:
        with self._lock:
            record = self._stored.get(sha256)
            return record.refs if record else 0

    def remove(self, sha256: str) -> None:
        """Delete a package's blob and tree whatever its references; a missing
        one does nothing.  A materialization in flight fails with KeyError."""
        _check_address(sha256)
        with self._lock:
            doomed = self._take_out(sha256)
        _remove_trees(doomed)

    # -- persistence (state_store.py) ----------------------------------------------------
    def adopt(self, package: CodePackage) -> None:
        """Take one reference to a blob a previous process stored here (its
        package as the state recorded it).  The blob must be ours and sealed
        under this store's key: its header and first segment are checked
        now, the rest when it is materialized.  CodeIntegrityError otherwise."""
        _check_address(package.sha256)
        with self._lock:
            record = self._stored.get(package.sha256)
            if record is not None:
                record.refs += 1
                self._by_upload.setdefault(package.code_sha256, package.sha256)
                return
        blob = os.path.join(self._blobs, f"{package.sha256}.blob")
        try:
            fd = os.open(blob, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise CodeIntegrityError(f"The stored code blob {blob} of package {package.sha256} cannot be "
                                     f"opened: {exc.strerror}") from None
        try:
            sealed.BlobReader(fd, self._key, package.sha256, blob).read(1)   # authenticates segment 0
        finally:
            os.close(fd)
        with self._lock:
            record = self._stored.setdefault(package.sha256, _Stored(dataclasses.replace(package, path=None), blob))
            record.refs += 1
            self._by_upload.setdefault(package.code_sha256, package.sha256)

    def sweep(self) -> list[str]:
        """Remove what a previous process left that no adopted package owns:
        blobs, half-sealed blobs, staging directories, plaintext trees.  Call
        once, after adopt() and before any materialize(); returns the names
        removed."""
        removed = []
        with self._lock:
            keep = {os.path.basename(r.blob) for r in self._stored.values()}
            for name in os.listdir(self._blobs):
                if name not in keep:
                    _remove_path(os.path.join(self._blobs, name))
                    removed.append(f"blobs/{name}")
            for name in os.listdir(self.root):
                if name not in ("blobs", "code.key") and os.path.join(self.root, name) != self._key_file:
                    _remove_path(os.path.join(self.root, name))
                    removed.append(name)
        return removed

    def flush_removed(self, still_named: set[str]) -> None:
        """Unlink the blobs of removed packages (defer_removal) except those
        stored again or named by the state just saved (`still_named`:
        addresses); those wait for a later flush."""
        with self._lock:
            for sha256 in list(self._removed):
                if sha256 in self._stored:
                    self._removed.discard(sha256)      # stored again: the blob is live
                elif sha256 not in still_named:
                    self._removed.discard(sha256)
                    try:
                        os.unlink(os.path.join(self._blobs, f"{sha256}.blob"))
                    except FileNotFoundError:
                        pass

    # -- trees ------------------------------------------------------------------------
    def materialize(self, sha256: str) -> str:
        """The path of the package's read-only tree, decrypting it if no one
        holds it yet; holds one tree count and one package reference until
        dematerialize().  Raises KeyError for a package not stored and
        CodeIntegrityError for a blob that fails authentication or checks."""
        _check_address(sha256)
        with self._lock:
            while True:
                record = self._stored.get(sha256)
                if record is None:
                    raise KeyError(f"no stored package {sha256}")
                if record.tree is not None:
                    record.trees += 1
                    record.refs += 1
                    return record.tree
                if not record.making:
                    break
                self._changed.wait()   # one thread decrypts; the others take its tree
            record.making = True
            record.refs += 1
        try:
            return self._make_tree(sha256, record)
        except BaseException:
            with self._lock:
                record.making = False
                self._changed.notify_all()
                doomed = self._drop(sha256, record)
            _remove_trees(doomed)
            raise

    def dematerialize(self, sha256: str) -> None:
        """Give back one materialize(): the tree goes with the last, and the
        reference it held is dropped as by release()."""
        _check_address(sha256)
        with self._lock:
            record = self._stored.get(sha256)
            if record is None:
                return   # removed meanwhile, as release() of a removed package
            if record.trees <= 0:
                raise KeyError(f"package {sha256} is not materialized")
            record.trees -= 1
            doomed = []
            if record.trees == 0:
                doomed = self._rename_away(record.tree)
                record.tree = None
            doomed += self._drop(sha256, record)
        _remove_trees(doomed)

    def _make_tree(self, sha256: str, record: _Stored) -> str:
        """Decrypt and check a blob into a fresh tree (outside the lock)."""
        tmp = tempfile.mkdtemp(prefix=".staging-", dir=self.root)
        try:
            try:
                fd = os.open(record.blob, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                with self._lock:
                    if self._stored.get(sha256) is not record:   # remove() unlinked it meanwhile
                        raise KeyError(f"package {sha256} was removed while being materialized") from None
                raise CodeIntegrityError(f"The stored code blob {record.blob} of package {sha256} "
                                         "is missing. Upload the function's code again.") from None
            try:
                reader = sealed.BlobReader(fd, self._key, sha256, record.blob)
                try:   # the same rules as an upload: the archive is not trusted either
                    entries = checks.stage_archive(reader, tmp, self._limits)
                except InvalidParameterValueException as exc:
                    raise CodeIntegrityError(f"The stored code of package {sha256} fails the package "
                                             f"checks: {exc.message}") from None
                reader.verify_all()
            finally:
                os.close(fd)
            if checks.content_address(entries) != sha256:
                raise CodeIntegrityError(f"The stored code blob {record.blob} decrypts to another "
                                         f"package than {sha256}. Upload the function's code again.")
            checks.seal_tree(tmp, entries)
            with self._lock:
                if self._stored.get(sha256) is not record:
                    raise KeyError(f"package {sha256} was removed while being materialized")
                final = os.path.join(self.root, f"{sha256}.{secrets.token_hex(6)}")
                os.rename(tmp, final)
                record.tree, record.trees, record.making = final, 1, False
                self._changed.notify_all()
                return final
        finally:
            if os.path.lexists(tmp):
                checks.remove_tree(tmp)

    # -- bookkeeping (lock held) ---------------------------------------------------------
    def _drop(self, sha256: str, record: _Stored | None) -> list[str]:
        """Drop one reference of `record` if it is still the stored one."""
        if record is None or self._stored.get(sha256) is not record:
            return []
        record.refs -= 1
        return self._take_out(sha256) if record.refs <= 0 else []

    def _take_out(self, sha256: str) -> list[str]:
        """Forget a package, unlink its blob and rename its tree away; returns
        the trees to delete.  Renamed under the lock so a concurrent
        materialize() cannot hand out a half-deleted tree."""
        record = self._stored.pop(sha256, None)
        self._by_upload = {k: v for k, v in self._by_upload.items() if v != sha256}
        if record is None:
            return []
        self._changed.notify_all()   # waiters in materialize() find it gone
        if self._defer_removal:
            self._removed.add(sha256)
        else:
            try:
                os.unlink(record.blob)
            except FileNotFoundError:
                pass
        return self._rename_away(record.tree) if record.tree else []

    def _rename_away(self, tree: str) -> list[str]:
        doomed = os.path.join(self.root, f".removing-{secrets.token_hex(8)}")
        try:
            os.rename(tree, doomed)
        except FileNotFoundError:   # deleted behind our back: nothing left to remove
            return []
        return [doomed]

    # -- putting --------------------------------------------------------------------------
    def _check_zipped_size(self, size: int) -> None:
        if size > self._limits.max_zipped:
            raise RequestEntityTooLargeException(
                f"Zipped file size exceeds the limit: {size} bytes, "
                f"it must be at most {self._limits.max_zipped} bytes")

    def _put_zip(self, data: bytes) -> CodePackage:
        code_sha256 = base64.b64encode(hashlib.sha256(data).digest()).decode()
        with self._lock:
            known = self._by_upload.get(code_sha256)
        if known is not None:
            package = self._reference(known, code_sha256, len(data))
            if package is not None:
                return package
        return self._store(lambda tmp: checks.stage_zip(data, tmp, self._limits),
                           upload=(code_sha256, len(data)))

    def _reference(self, sha256: str, code_sha256: str, code_size: int) -> CodePackage | None:
        """One more reference to a stored package, as this upload; None if not stored."""
        with self._lock:
            record = self._stored.get(sha256)
            if record is None:
                return None
            record.refs += 1
            self._by_upload[code_sha256] = sha256
            return dataclasses.replace(record.package, code_sha256=code_sha256, code_size=code_size)

    def _store(self, stage, upload: tuple[str, int] | None) -> CodePackage:
        """Check and stage into a fresh directory inside the root, archive and
        seal it, delete the plaintext, then publish the blob.  `upload` is the
        zip's (code_sha256, code_size); None for a directory, whose values are
        those of the canonical zip."""
        tmp = tempfile.mkdtemp(prefix=".staging-", dir=self.root)
        blob = None
        try:
            entries = stage(tmp)
            sha256 = checks.content_address(entries)
            known = upload and self._reference(sha256, *upload)
            if known:
                return known
            # Unnamed from birth (O_TMPFILE): the plaintext archive is never linked in.
            with tempfile.TemporaryFile(dir=self.root) as archive:
                checks.write_canonical_zip(archive, tmp, entries)
                length = archive.tell()
                checks.remove_tree(tmp)   # the staged plaintext goes as soon as it is archived
                if upload is None:
                    upload = (_digest(archive), length)
                archive.seek(0)
                blob = self._seal(archive, length, sha256)
            size = sum(e.size for e in entries.values())
            return self._publish(blob, CodePackage(sha256, *upload, size))
        finally:
            if os.path.lexists(tmp):
                checks.remove_tree(tmp)
            if blob is not None and os.path.lexists(blob):
                os.unlink(blob)

    def _seal(self, archive, length: int, sha256: str) -> str:
        path = os.path.join(self._blobs, f".sealing-{secrets.token_hex(8)}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            sealed.write_blob(fd, self._key, sha256, archive, length)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        return path

    def _publish(self, blob: str, package: CodePackage) -> CodePackage:
        with self._lock:
            record = self._stored.get(package.sha256)
            if record is None:   # the first of this content: ours becomes the blob
                final = os.path.join(self._blobs, f"{package.sha256}.blob")
                os.rename(blob, final)
                record = self._stored[package.sha256] = _Stored(package, final)
            # else: stored meanwhile; our sealed copy is dropped by the caller
            record.refs += 1
            self._by_upload[package.code_sha256] = package.sha256
        return dataclasses.replace(record.package, code_sha256=package.code_sha256,
                                   code_size=package.code_size)


def _make_dir(path: str, mode: int) -> None:
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    os.chmod(path, mode)   # mkdir's mode is masked by the umask


def _digest(archive) -> str:
    """Lambda's CodeSha256 of the archive written so far."""
    archive.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: archive.read(checks.CHUNK), b""):
        digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def _check_address(sha256: str) -> None:
    if not (isinstance(sha256, str) and len(sha256) == 64 and set(sha256) <= _ADDRESS_CHARS):
        raise ValueError(f"not a code package address: {sha256!r}")


def _remove_path(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        checks.remove_tree(path)
    else:
        os.unlink(path)


def _remove_trees(paths: list[str]) -> None:
    for path in paths:
        checks.remove_tree(path)
