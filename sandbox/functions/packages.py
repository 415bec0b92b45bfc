"""A content-addressed store of function code packages, like Lambda's.

A package (a directory, a zip file, or zip bytes) is checked entry by entry,
staged into a temporary directory inside the store root, given a content
address (the SHA-256 of a sorted manifest of paths, types, exec bits, file
digests and link targets) and renamed into place as ``<root>/<address>``.  The
same content is stored once, whatever form it came in.  The stored tree is
read-only for everyone because it is bind-mounted at /var/task inside sandboxes
that run as an unprivileged uid.

Nothing in an upload is trusted: names are checked before anything is
written, header sizes are only a first filter (real decompressed bytes are
counted and cut off at the cap), and a symlink must resolve inside the tree by
the same walk the kernel would do.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import secrets
import shutil
import stat
import struct
import tempfile
import threading
import zipfile
import zlib
from dataclasses import dataclass

from .errors import InvalidParameterValueException, RequestEntityTooLargeException

FILE, DIR, LINK = "file", "dir", "symlink"
_CHUNK = 1 << 20
# Versioned shared libraries form short chains (libfoo.so -> libfoo.so.1 ->
# libfoo.so.1.2); a longer walk is a loop or an attempt to hide one.
_MAX_LINK_HOPS = 8
# Each central-directory record starts with this; zipfile refuses a record
# without it, so its count bounds how many entries zipfile can build.
_CENTRAL_RECORD = b"PK\x01\x02"
# What zipfile and zlib raise on a damaged or hostile archive.
_CORRUPT_ZIP = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError,
                struct.error, NotImplementedError, RuntimeError)
_UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."
_ADDRESS_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class CodePackage:
    sha256: str          # hex content address of the canonical tree
    code_sha256: str     # Lambda's CodeSha256: base64 SHA-256 of the zip bytes
    code_size: int       # zipped size in bytes
    unzipped_size: int   # sum of file sizes in the tree
    path: str            # absolute path of the read-only tree


@dataclass
class _Entry:
    path: str                 # relative, "/"-separated, normalized
    kind: str                 # FILE, DIR or LINK
    executable: bool = False
    digest: str = ""          # hex SHA-256 of a file's bytes
    size: int = 0
    target: str = ""          # a link's target


@dataclass(frozen=True)
class _Limits:
    max_zipped: int
    max_unzipped: int
    max_entries: int
    name_max: int
    path_max: int

    def too_big(self) -> InvalidParameterValueException:
        return InvalidParameterValueException(
            f"Unzipped size must be smaller than {self.max_unzipped} bytes")

    def check_entry_count(self, count: int) -> None:
        if count > self.max_entries:
            raise InvalidParameterValueException(
                f"The code package has more than {self.max_entries} entries "
                "(files, directories and links, counting implied directories)")

    def check_name(self, path: str) -> None:
        """A relative path the sandbox can open under /var/task."""
        if "\\" in path:
            raise _bad_entry(path, "contains a backslash; build the zip with '/' separators")
        try:
            encoded = path.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_entry(path, "is not valid UTF-8") from None
        if len(encoded) > self.path_max:
            raise _bad_entry(path, f"is longer than {self.path_max} bytes")
        if any(len(part.encode()) > self.name_max for part in path.split("/")):
            raise _bad_entry(path, f"has a component longer than {self.name_max} bytes")


def _bad_entry(path: str, why: str) -> InvalidParameterValueException:
    return InvalidParameterValueException(f"Invalid code package entry {path!r}: {why}")


class _Budget:
    """Counts real bytes written; the headers' sizes are never trusted."""

    def __init__(self, limits: _Limits):
        self.limits = limits
        self.left = limits.max_unzipped

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise self.limits.too_big()


class CodeStore:
    """Stores each distinct package tree once, under `root` (which it owns).

    Thread-safe and reference-counted: put() returns the package with one
    reference held for the caller, retain() adds one, release() drops one and
    the tree goes with the last.  Counting here, under the store's lock, is
    what keeps a put() of known content from racing the removal of the same
    tree.  Each materialization gets a fresh path (<address>.<token>), so a
    sandbox prepared against a removed tree can never be mistaken for one of
    a new tree with the same content.  The caller removes `root` when done."""

    def __init__(self, root, *, max_zipped: int = 50 * 1024 * 1024,
                 max_unzipped: int = 250 * 1024 * 1024, max_entries: int = 100_000):
        self.root = os.path.abspath(os.fspath(root))
        os.makedirs(os.path.dirname(self.root), exist_ok=True)
        try:
            os.mkdir(self.root, 0o711)
            os.chmod(self.root, 0o711)   # mkdir's mode is masked by the umask
        except FileExistsError:
            pass
        # Room for "/<address>" after the root so every stored path stays openable.
        path_max = os.pathconf(self.root, "PC_PATH_MAX") - len(self.root) - 66
        self._limits = _Limits(max_zipped, max_unzipped, max_entries,
                               os.pathconf(self.root, "PC_NAME_MAX"), path_max)
        self._lock = threading.Lock()
        self._packages: dict[str, CodePackage] = {}
        self._refs: dict[str, int] = {}
        self._by_upload: dict[str, str] = {}   # code_sha256 -> sha256, skips re-extracting

    def put(self, source) -> CodePackage:
        """Store a directory, a zip file path, or zip bytes; return its package.
        The result carries this upload's code_sha256/code_size and the shared
        path of the tree."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            size = memoryview(source).nbytes
            self._check_zipped_size(size)
            return self._put_zip(bytes(source))
        path = os.fspath(source)
        if os.path.isdir(path):
            return self._put_dir(path)
        with open(path, "rb") as f:
            self._check_zipped_size(os.fstat(f.fileno()).st_size)
            data = f.read(self._limits.max_zipped + 1)   # the file may grow meanwhile
        self._check_zipped_size(len(data))
        return self._put_zip(data)

    def get(self, sha256: str) -> CodePackage | None:
        _check_address(sha256)
        with self._lock:
            return self._packages.get(sha256)

    def retain(self, sha256: str) -> None:
        """Take one more reference to a stored tree."""
        with self._lock:
            if sha256 not in self._packages:
                raise KeyError(f"no stored package {sha256}")
            self._refs[sha256] += 1

    def release(self, sha256: str) -> None:
        """Drop one reference; the last one removes the tree."""
        _check_address(sha256)
        with self._lock:   # decide and unlink in one step: a put() may be reviving it
            count = self._refs.get(sha256, 0) - 1
            if count > 0:
                self._refs[sha256] = count
                return
            doomed = self._take_out(sha256)
        if doomed:
            _remove_tree(doomed)

    def references(self, sha256: str) -> int:
        with self._lock:
            return self._refs.get(sha256, 0)

    def remove(self, sha256: str) -> None:
        """Delete a stored tree whatever its references; a missing one does nothing."""
        _check_address(sha256)
        with self._lock:
            doomed = self._take_out(sha256)
        if doomed:
            _remove_tree(doomed)

    def _take_out(self, sha256: str) -> str | None:
        """Forget a tree and rename it away (lock held); returns where it went.
        Renamed under the lock so a concurrent put() cannot reuse a half-deleted tree."""
        package = self._packages.pop(sha256, None)
        self._refs.pop(sha256, None)
        self._by_upload = {k: v for k, v in self._by_upload.items() if v != sha256}
        if package is None:
            return None
        doomed = os.path.join(self.root, f".removing-{secrets.token_hex(8)}")
        try:
            os.rename(package.path, doomed)
        except FileNotFoundError:
            return None
        return doomed

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
                self._refs[known] += 1
                return dataclasses.replace(self._packages[known], code_sha256=code_sha256,
                                           code_size=len(data))
        return self._store(lambda tmp: _stage_zip(data, tmp, self._limits),
                           upload=(code_sha256, len(data)))

    def _put_dir(self, source: str) -> CodePackage:
        return self._store(lambda tmp: _stage_dir(source, tmp, self._limits), upload=None)

    def _store(self, stage, upload: tuple[str, int] | None) -> CodePackage:
        """Stage into a fresh directory inside the root, then publish it.
        `upload` is the zip's (code_sha256, code_size); None for a directory."""
        tmp = tempfile.mkdtemp(prefix=".staging-", dir=self.root)
        try:
            entries = stage(tmp)
            code_sha256, code_size = upload or self._zip_digest(tmp, entries)
            return self._publish(tmp, entries, code_sha256, code_size)
        finally:
            if os.path.lexists(tmp):
                _remove_tree(tmp)

    def _publish(self, tmp: str, entries: dict[str, _Entry], code_sha256: str,
                 code_size: int) -> CodePackage:
        sha256 = _content_address(entries)
        _seal(tmp, entries)
        with self._lock:
            stored = self._packages.get(sha256)
            if stored is None:   # the first of this content: publish our tree under a fresh name
                final = os.path.join(self.root, f"{sha256}.{secrets.token_hex(6)}")
                os.rename(tmp, final)
                stored = self._packages[sha256] = CodePackage(
                    sha256, code_sha256, code_size, sum(e.size for e in entries.values()), final)
                self._refs[sha256] = 0
            # else: already stored; the staged copy is dropped by the caller
            self._refs[sha256] += 1
            self._by_upload[code_sha256] = sha256
        return dataclasses.replace(stored, code_sha256=code_sha256, code_size=code_size)

    def _zip_digest(self, tmp: str, entries: dict[str, _Entry]) -> tuple[str, int]:
        """CodeSha256 and size of a deterministic zip of a staged tree: sorted
        entries, fixed timestamps, so the same tree always gives the same bytes."""
        digest = hashlib.sha256()
        with tempfile.TemporaryFile(dir=self.root) as out:
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(entries):
                    _write_zip_entry(zf, tmp, entries[path])
            out.seek(0)
            for chunk in iter(lambda: out.read(_CHUNK), b""):
                digest.update(chunk)
            return base64.b64encode(digest.digest()).decode(), out.tell()


def _check_address(sha256: str) -> None:
    if not (isinstance(sha256, str) and len(sha256) == 64 and set(sha256) <= _ADDRESS_CHARS):
        raise ValueError(f"not a code package address: {sha256!r}")


def _write_zip_entry(zf: zipfile.ZipFile, tmp: str, entry: _Entry) -> None:
    info = zipfile.ZipInfo(entry.path + "/" if entry.kind == DIR else entry.path)
    info.create_system = 3   # Unix, so readers honour the mode in external_attr
    if entry.kind == DIR:
        info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10   # 0x10: MS-DOS directory flag
        zf.writestr(info, b"")
        return
    info.compress_type = zipfile.ZIP_DEFLATED
    if entry.kind == LINK:
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, entry.target.encode())
        return
    info.external_attr = (stat.S_IFREG | (0o755 if entry.executable else 0o644)) << 16
    info.file_size = entry.size
    with open(os.path.join(tmp, entry.path), "rb") as src, zf.open(info, "w") as dst:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            dst.write(chunk)


# ---- zip sources ---------------------------------------------------------------

def _stage_zip(data: bytes, tmp: str, limits: _Limits) -> dict[str, _Entry]:
    # Checked before zipfile parses the central directory: a 50 MB archive can
    # hold a million empty entries, which would cost hundreds of MB of ZipInfo.
    limits.check_entry_count(data.count(_CENTRAL_RECORD))
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except _CORRUPT_ZIP as exc:
        raise InvalidParameterValueException(f"{_UNZIP_FAILED} ({exc})") from None
    with zf:
        return _extract(zf, infos, tmp, limits)


def _extract(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], tmp: str,
             limits: _Limits) -> dict[str, _Entry]:
    limits.check_entry_count(len(infos))
    _check_declared_size(infos, limits)
    budget = _Budget(limits)
    entries: dict[str, _Entry] = {}
    sources: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        entry = _zip_entry(info, limits)
        if entry is None:
            continue
        if entry.path in entries:
            raise _bad_entry(info.orig_filename, "duplicate entry")
        if entry.kind == LINK:
            entry.target = _read_link_target(zf, info, limits, budget)
        entries[entry.path] = entry
        sources[entry.path] = info
    _check_layout(entries, limits)
    for path in sorted(entries):   # a parent sorts before its children
        entry = entries[path]
        if entry.kind == DIR:
            os.mkdir(os.path.join(tmp, path), 0o700)
        elif entry.kind == FILE:
            info = sources[path]
            entry.digest, entry.size = _write_file(
                os.path.join(tmp, path), _zip_chunks(zf, info), entry.executable, budget)
            if entry.size != info.file_size:
                raise _bad_entry(path, f"holds {entry.size} bytes but its header says {info.file_size}")
    _make_links(tmp, entries)
    return entries


def _check_declared_size(infos: list[zipfile.ZipInfo], limits: _Limits) -> None:
    """First filter only: the real bytes are counted again while extracting."""
    if sum(info.file_size for info in infos) > limits.max_unzipped:
        raise limits.too_big()


def _zip_entry(info: zipfile.ZipInfo, limits: _Limits) -> _Entry | None:
    raw = info.orig_filename   # zipfile cuts `filename` at a NUL; the original keeps it
    if "\0" in raw:
        raise _bad_entry(raw, "contains a NUL byte")
    if raw.startswith("/"):
        raise _bad_entry(raw, "is an absolute path")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _bad_entry(raw, "contains a '..' component (path traversal)")
    if info.flag_bits & 0x1:
        raise _bad_entry(raw, "is encrypted")
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if file_type == stat.S_IFLNK:
        kind = LINK
    elif raw.endswith("/") or file_type == stat.S_IFDIR:
        kind = DIR
    elif file_type in (0, stat.S_IFREG):
        kind = FILE
    else:
        raise _bad_entry(raw, f"is a special file (mode {mode:#o}); only files, "
                              "directories and symlinks are allowed")
    if not parts:
        if kind == DIR:
            return None   # "./": the root itself
        raise _bad_entry(raw, "has an empty name")
    path = "/".join(parts)
    limits.check_name(path)
    if kind != DIR and info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _bad_entry(raw, f"uses compression method {info.compress_type}; "
                              "only stored and deflate are supported")
    return _Entry(path, kind, executable=kind == FILE and bool(mode & 0o111))


def _zip_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo):
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                yield chunk
    except _CORRUPT_ZIP as exc:
        raise InvalidParameterValueException(
            f"{_UNZIP_FAILED} (entry {info.orig_filename!r}: {exc})") from None


def _read_link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: _Limits,
                      budget: _Budget) -> str:
    data = b""
    for chunk in _zip_chunks(zf, info):
        budget.take(len(chunk))
        data += chunk
        if len(data) > limits.path_max:
            raise _bad_entry(info.orig_filename, "is a symlink with an over-long target")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_entry(info.orig_filename, "is a symlink whose target is not UTF-8") from None


# ---- directory sources -------------------------------------------------------------

def _stage_dir(source: str, tmp: str, limits: _Limits) -> dict[str, _Entry]:
    """Copy a directory without following any link in it.  Directories are
    walked through file descriptors opened with O_NOFOLLOW, so a component
    swapped for a symlink mid-walk cannot lead the copy out of the source."""
    entries: dict[str, _Entry] = {}
    budget = _Budget(limits)
    top = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack = [("", top, iter(sorted(os.listdir(top))))]
    try:
        while stack:
            parent, dir_fd, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(dir_fd)
                stack.pop()
                continue
            path = f"{parent}/{name}" if parent else name
            limits.check_name(path)
            limits.check_entry_count(len(entries) + 1)
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(os.path.join(tmp, path), 0o700)
                entries[path] = _Entry(path, DIR)
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=dir_fd)
                stack.append((path, child, iter(sorted(os.listdir(child)))))
            elif stat.S_ISREG(st.st_mode):
                entries[path] = _copy_file(dir_fd, name, path, tmp, budget)
            elif stat.S_ISLNK(st.st_mode):
                entries[path] = _Entry(path, LINK, target=os.readlink(name, dir_fd=dir_fd))
            else:
                raise _bad_entry(path, "is a special file (device, fifo or socket)")
    finally:
        for _, dir_fd, _ in stack:
            os.close(dir_fd)
    _check_layout(entries, limits)
    _make_links(tmp, entries)
    return entries


def _copy_file(dir_fd: int, name: str, path: str, tmp: str, budget: _Budget) -> _Entry:
    # O_NONBLOCK: if the file was swapped for a fifo, open must not hang.
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    with open(fd, "rb") as src:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _bad_entry(path, "is a special file (device, fifo or socket)")
        executable = bool(st.st_mode & 0o111)
        digest, size = _write_file(os.path.join(tmp, path),
                                   iter(lambda: src.read(_CHUNK), b""), executable, budget)
    return _Entry(path, FILE, executable=executable, digest=digest, size=size)


# ---- the staged tree ---------------------------------------------------------

def _check_layout(entries: dict[str, _Entry], limits: _Limits) -> None:
    """Add implied parent directories, refuse entries below a file or link,
    and refuse links that do not resolve inside the tree."""
    for path in list(entries):
        parent = path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            found = entries.get(parent)
            if found is None:
                entries[parent] = _Entry(parent, DIR)
            elif found.kind != DIR:
                raise _bad_entry(path, f"lies below {parent!r}, which is a {found.kind}")
            else:
                break   # its own parents are handled when it is visited
    limits.check_entry_count(len(entries))
    links = [e for e in entries.values() if e.kind == LINK]
    for link in links:
        if not link.target or "\0" in link.target:
            raise _bad_entry(link.path, "is a symlink with an empty or NUL-containing target")
        if link.target.startswith("/"):
            raise _bad_entry(link.path, f"is a symlink to an absolute path {link.target!r}")
    for link in links:
        _resolve_inside(link, entries)


def _resolve_inside(link: _Entry, entries: dict[str, _Entry]) -> None:
    """Walk the link's target as the kernel would, following links met on the
    way; every step must stay inside the tree.  Checking the target's text
    alone is not enough: through a link to a shallower directory, a '..' that
    looks inside lands outside."""
    where = link.path.split("/")[:-1]
    pending = link.target.split("/")[::-1]
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not where:
                raise _bad_entry(link.path, f"is a symlink whose target {link.target!r} "
                                            "leaves the code package")
            where.pop()
            continue
        where.append(part)
        found = entries.get("/".join(where))
        if found is not None and found.kind == LINK:
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise _bad_entry(link.path, f"is a symlink loop or a chain longer than "
                                            f"{_MAX_LINK_HOPS} links")
            where.pop()
            pending.extend(found.target.split("/")[::-1])


def _write_file(dest: str, chunks, executable: bool, budget: _Budget) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(fd, "wb") as out:
        for chunk in chunks:
            budget.take(len(chunk))   # before writing: never hold more than the cap
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        os.fchmod(fd, 0o555 if executable else 0o444)
    return digest.hexdigest(), size


def _make_links(tmp: str, entries: dict[str, _Entry]) -> None:
    # Made last, after every file is written, so no write can pass through one.
    for entry in entries.values():
        if entry.kind == LINK:
            os.symlink(entry.target, os.path.join(tmp, entry.path))


def _content_address(entries: dict[str, _Entry]) -> str:
    """SHA-256 of the sorted manifest.  Fields are NUL-terminated: no path,
    target or digest can hold a NUL, so the encoding is unambiguous."""
    manifest = hashlib.sha256()
    for path in sorted(entries):
        entry = entries[path]
        flag = "x" if entry.executable else "-"
        payload = entry.digest if entry.kind == FILE else entry.target
        manifest.update(f"{entry.kind}\0{path}\0{flag}\0{payload}\0".encode())
    return manifest.hexdigest()


def _seal(tmp: str, entries: dict[str, _Entry]) -> None:
    # Deepest first: a directory stays writable until its children are sealed.
    for path in sorted((p for p, e in entries.items() if e.kind == DIR), reverse=True):
        os.chmod(os.path.join(tmp, path), 0o555)
    os.chmod(tmp, 0o555)


def _remove_tree(path: str) -> None:
    """rmtree for a sealed tree: without root, 0o555 directories would refuse
    the unlinks, so make them writable first (os.walk never enters links)."""
    for dirpath, _dirs, _files in os.walk(path):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(path)
