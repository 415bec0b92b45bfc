"""What a code package may contain: the checks and the staging of a tree.

A source (zip bytes, a zip file object, or a directory) is checked entry by
entry and staged into a directory the caller made; the result is a manifest
of `Entry`s.  Nothing in an upload is trusted: names are checked before
anything is written, header sizes are only a first filter (real decompressed
bytes are counted and cut off at the cap), and a symlink must resolve inside
the tree by the same walk the kernel would do.  The code store (packages.py)
runs these checks on every upload and again on every decrypted archive
(sealed.py) before it becomes a tree under /var/task.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass

from .errors import InvalidParameterValueException

FILE, DIR, LINK = "file", "dir", "symlink"
CHUNK = 1 << 20
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


@dataclass
class Entry:
    path: str                 # relative, "/"-separated, normalized
    kind: str                 # FILE, DIR or LINK
    executable: bool = False
    digest: str = ""          # hex SHA-256 of a file's bytes
    size: int = 0
    target: str = ""          # a link's target


@dataclass(frozen=True)
class Limits:
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

    def __init__(self, limits: Limits):
        self.limits = limits
        self.left = limits.max_unzipped

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise self.limits.too_big()


# ---- zip sources ---------------------------------------------------------------

def stage_zip(data: bytes, tmp: str, limits: Limits) -> dict[str, Entry]:
    # Checked before zipfile parses the central directory: a 50 MB archive can
    # hold a million empty entries, which would cost hundreds of MB of ZipInfo.
    limits.check_entry_count(data.count(_CENTRAL_RECORD))
    return stage_archive(io.BytesIO(data), tmp, limits)


def stage_archive(archive, tmp: str, limits: Limits) -> dict[str, Entry]:
    """Stage a zip read from a seekable file object (the store's decrypted
    canonical archive) under exactly the rules of an upload."""
    try:
        zf = zipfile.ZipFile(archive)
        infos = zf.infolist()
    except _CORRUPT_ZIP as exc:
        raise InvalidParameterValueException(f"{_UNZIP_FAILED} ({exc})") from None
    with zf:
        return _extract(zf, infos, tmp, limits)


def _extract(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], tmp: str,
             limits: Limits) -> dict[str, Entry]:
    limits.check_entry_count(len(infos))
    _check_declared_size(infos, limits)
    budget = _Budget(limits)
    entries: dict[str, Entry] = {}
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


def _check_declared_size(infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    """First filter only: the real bytes are counted again while extracting."""
    if sum(info.file_size for info in infos) > limits.max_unzipped:
        raise limits.too_big()


def _zip_entry(info: zipfile.ZipInfo, limits: Limits) -> Entry | None:
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
    return Entry(path, kind, executable=kind == FILE and bool(mode & 0o111))


def _zip_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo):
    try:
        with zf.open(info) as src:
            while chunk := src.read(CHUNK):
                yield chunk
    except _CORRUPT_ZIP as exc:
        raise InvalidParameterValueException(
            f"{_UNZIP_FAILED} (entry {info.orig_filename!r}: {exc})") from None


def _read_link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits,
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

def stage_dir(source: str, tmp: str, limits: Limits) -> dict[str, Entry]:
    """Copy a directory without following any link in it.  Directories are
    walked through file descriptors opened with O_NOFOLLOW, so a component
    swapped for a symlink mid-walk cannot lead the copy out of the source."""
    entries: dict[str, Entry] = {}
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
                entries[path] = Entry(path, DIR)
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=dir_fd)
                stack.append((path, child, iter(sorted(os.listdir(child)))))
            elif stat.S_ISREG(st.st_mode):
                entries[path] = _copy_file(dir_fd, name, path, tmp, budget)
            elif stat.S_ISLNK(st.st_mode):
                entries[path] = Entry(path, LINK, target=os.readlink(name, dir_fd=dir_fd))
            else:
                raise _bad_entry(path, "is a special file (device, fifo or socket)")
    finally:
        for _, dir_fd, _ in stack:
            os.close(dir_fd)
    _check_layout(entries, limits)
    _make_links(tmp, entries)
    return entries


def _copy_file(dir_fd: int, name: str, path: str, tmp: str, budget: _Budget) -> Entry:
    # O_NONBLOCK: if the file was swapped for a fifo, open must not hang.
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    with open(fd, "rb") as src:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _bad_entry(path, "is a special file (device, fifo or socket)")
        executable = bool(st.st_mode & 0o111)
        digest, size = _write_file(os.path.join(tmp, path),
                                   iter(lambda: src.read(CHUNK), b""), executable, budget)
    return Entry(path, FILE, executable=executable, digest=digest, size=size)


# ---- the canonical archive ---------------------------------------------------------

def write_canonical_zip(out, tmp: str, entries: dict[str, Entry]) -> None:
    """A deterministic zip of a staged tree (sorted entries, fixed timestamps,
    Unix modes, exec bits and symlinks kept), written to the seekable `out`:
    the same tree always gives the same bytes with the same zlib."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(entries):
            _write_zip_entry(zf, tmp, entries[path])


def _write_zip_entry(zf: zipfile.ZipFile, tmp: str, entry: Entry) -> None:
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
        for chunk in iter(lambda: src.read(CHUNK), b""):
            dst.write(chunk)


# ---- the staged tree ---------------------------------------------------------

def _check_layout(entries: dict[str, Entry], limits: Limits) -> None:
    """Add implied parent directories, refuse entries below a file or link,
    and refuse links that do not resolve inside the tree."""
    for path in list(entries):
        parent = path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            found = entries.get(parent)
            if found is None:
                entries[parent] = Entry(parent, DIR)
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


def _resolve_inside(link: Entry, entries: dict[str, Entry]) -> None:
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


def _make_links(tmp: str, entries: dict[str, Entry]) -> None:
    # Made last, after every file is written, so no write can pass through one.
    for entry in entries.values():
        if entry.kind == LINK:
            os.symlink(entry.target, os.path.join(tmp, entry.path))


def content_address(entries: dict[str, Entry]) -> str:
    """SHA-256 of the sorted manifest.  Fields are NUL-terminated: no path,
    target or digest can hold a NUL, so the encoding is unambiguous."""
    manifest = hashlib.sha256()
    for path in sorted(entries):
        entry = entries[path]
        flag = "x" if entry.executable else "-"
        payload = entry.digest if entry.kind == FILE else entry.target
        manifest.update(f"{entry.kind}\0{path}\0{flag}\0{payload}\0".encode())
    return manifest.hexdigest()


def seal_tree(tmp: str, entries: dict[str, Entry]) -> None:
    # Deepest first: a directory stays writable until its children are sealed.
    for path in sorted((p for p, e in entries.items() if e.kind == DIR), reverse=True):
        os.chmod(os.path.join(tmp, path), 0o555)
    os.chmod(tmp, 0o555)


def remove_tree(path: str) -> None:
    """rmtree for a sealed tree: without root, 0o555 directories would refuse
    the unlinks, so make them writable first (os.walk never enters links)."""
    for dirpath, _dirs, _files in os.walk(path):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(path)
