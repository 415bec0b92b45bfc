"""Code at rest: AES-256-GCM blobs, authenticated before any byte is used.

The code store (packages.py) keeps each package as one blob,
`<root>/blobs/<address>.blob`, mode 0600: the canonical zip of the checked
tree, encrypted under a key the embedder supplies or a generated key file.

Blob layout (all integers big-endian)::

    header   magic "SBXCODE\\0" | version u8 | key id 8 bytes | segment size u32 | length u64
    segment  nonce 12 bytes | ciphertext | GCM tag 16 bytes      (repeated)

The plaintext is cut into segments (1 MiB) so neither sealing nor reading
holds a whole package in memory; each segment is a separate AES-GCM message
with a fresh random 96-bit nonce and, as associated data, the whole header,
the package's content address and the segment's index.  So a flipped bit,
a segment moved or dropped, a truncated file, an edited header, or the blob
of another package renamed into place all fail authentication, and a segment
is only ever used after its tag was checked.  The key id (a keyed hash of the
key, not the key) only lets the error say "another key" instead of
"tampered"; it is authenticated like the rest of the header.
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import io
import os
import secrets
import stat
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ServiceException

KEY_BYTES = 32            # AES-256
NONCE_BYTES = 12          # 96 bits, GCM's native nonce size
TAG_BYTES = 16
SEGMENT = 1 << 20
VERSION = 1
_MAGIC = b"SBXCODE\0"
_HEADER = struct.Struct(">8sB8sIQ")
_AAD_LABEL = b"sandbox code blob\0"
_MAX_SEGMENT = 1 << 26    # refuse absurd header values before authenticating them


class CodeIntegrityError(ServiceException):
    """A stored code blob failed authentication or re-validation.  A service
    fault (HTTP 500, like Lambda's ServiceException): the stored code was
    altered or the store was given the wrong key, nothing the caller sent."""


class CodeKeyError(OSError):
    """The code store's key or key file is unusable: `.errno`, `.filename`."""


class BlobKey:
    """An AES-256-GCM key and its public id (HMAC-SHA256 of a label, 8 bytes)."""

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray, memoryview)) or len(bytes(key)) != KEY_BYTES:
            raise ValueError(f"the code key must be {KEY_BYTES} bytes (AES-256), "
                             f"got {type(key).__name__} of length {len(key) if hasattr(key, '__len__') else '?'}")
        key = bytes(key)
        self.aead = AESGCM(key)
        self.key_id = hmac.new(key, b"sandbox code key id", hashlib.sha256).digest()[:8]

    def __repr__(self) -> str:
        return f"<BlobKey id {self.key_id.hex()}>"   # never the key itself


# ---- keys ----------------------------------------------------------------------

def load_key(*, key=None, key_file=None) -> BlobKey | None:
    """The embedder's key bytes or key file; None if neither was given."""
    if key is not None and key_file is not None:
        raise ValueError("pass key= or key_file=, not both")
    if key is not None:
        return BlobKey(key)
    if key_file is None:
        return None
    key_file = os.fspath(key_file)
    try:
        return BlobKey(read_key_file(key_file, follow_symlinks=True))
    except FileNotFoundError:
        raise CodeKeyError(errno.ENOENT, f"the code key file {key_file} does not exist; make one with "
                                         "sandbox.functions.sealed.create_key_file()", key_file) from None


def default_key(path: str) -> BlobKey:
    """The store's own key file: read it, or generate it on first use.  Never
    followed through a symlink, since the store made it."""
    try:
        return BlobKey(read_key_file(path, follow_symlinks=False))
    except FileNotFoundError:
        pass
    try:
        return BlobKey(create_key_file(path))
    except FileExistsError:   # another process made it first: use theirs
        return BlobKey(read_key_file(path, follow_symlinks=False))


def read_key_file(path: str, *, follow_symlinks: bool = True) -> bytes:
    """Exactly KEY_BYTES raw bytes from a regular file of ours that no one else
    can read or write (mode 0600 or narrower)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        why = "it is a symlink" if exc.errno == errno.ELOOP and not follow_symlinks else exc.strerror
        raise CodeKeyError(exc.errno, f"cannot open the code key file {path}: {why}", path) from None
    with open(fd, "rb") as src:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CodeKeyError(errno.EINVAL, f"the code key file {path} is not a regular file", path)
        if st.st_uid != os.geteuid():
            raise CodeKeyError(errno.EPERM, f"the code key file {path} belongs to uid {st.st_uid}, not to "
                                            f"us (uid {os.geteuid()}): whoever owns it controls the key", path)
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise CodeKeyError(errno.EPERM, f"the code key file {path} has mode "
                                            f"{stat.S_IMODE(st.st_mode):04o}: others may read or change the "
                                            f"key; make it 0600 (chmod 600 {path})", path)
        data = src.read(KEY_BYTES + 1)
    if len(data) != KEY_BYTES:
        raise CodeKeyError(errno.EINVAL, f"the code key file {path} holds {len(data)} bytes; a key is "
                                         f"{KEY_BYTES} raw random bytes", path)
    return data


def create_key_file(path: str) -> bytes:
    """Write a new random key to `path` (mode 0600) and return it.  Written
    to a private temporary name, then linked into place, so no reader ever
    sees a short file; FileExistsError if `path` exists."""
    key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    tmp = f"{path}.tmp-{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with open(fd, "wb") as out:
            os.fchmod(fd, 0o600)   # the umask only narrows; say it outright
            out.write(key)
            out.flush()
            os.fsync(fd)
        os.link(tmp, path)         # fails with EEXIST instead of replacing a key
    finally:
        os.unlink(tmp)
    return key


# ---- blobs ------------------------------------------------------------------------

def segments(length: int, segment_size: int) -> int:
    """Always at least one, so even an empty plaintext carries a tag."""
    return max(1, -(-length // segment_size))


def blob_size(length: int, segment_size: int = SEGMENT) -> int:
    return _HEADER.size + segments(length, segment_size) * (NONCE_BYTES + TAG_BYTES) + length


def _aad(header: bytes, address: str, index: int) -> bytes:
    return _AAD_LABEL + header + address.encode("ascii") + index.to_bytes(8, "big")


def write_blob(fd: int, key: BlobKey, address: str, src, length: int, *,
               segment_size: int = SEGMENT) -> None:
    """Seal `length` bytes read from the file object `src` into the open
    file `fd`, bound to the content address `address`."""
    header = _HEADER.pack(_MAGIC, VERSION, key.key_id, segment_size, length)
    with open(fd, "wb", closefd=False) as out:
        out.write(header)
        for index in range(segments(length, segment_size)):
            want = min(segment_size, length - index * segment_size)
            plain = src.read(want)
            if len(plain) != want:
                raise RuntimeError(f"the archive being sealed changed size: wanted {want} bytes, got {len(plain)}")
            nonce = os.urandom(NONCE_BYTES)
            out.write(nonce + key.aead.encrypt(nonce, plain, _aad(header, address, index)))


class BlobReader(io.RawIOBase):
    """A seekable, read-only view of a blob's plaintext (as zipfile needs).
    Segments are decrypted on demand, and each is authenticated before any
    of its bytes is returned; verify_all() checks the ones never read."""

    def __init__(self, fd: int, key: BlobKey, address: str, name: str):
        super().__init__()
        self._fd, self._key, self._address, self._name = fd, key, address, name
        raw = os.pread(fd, _HEADER.size, 0)
        if len(raw) != _HEADER.size:
            raise self._refused("is shorter than its header")
        magic, version, key_id, self._segment, self._length = _HEADER.unpack(raw)
        if magic != _MAGIC:
            raise self._refused("is not a code blob (bad magic)")
        if version != VERSION:
            raise self._refused(f"has format version {version}; this store reads version {VERSION}")
        if not 0 < self._segment <= _MAX_SEGMENT:
            raise self._refused(f"declares a segment size of {self._segment} bytes")
        if os.fstat(fd).st_size != blob_size(self._length, self._segment):
            raise self._refused("is truncated or extended (its size does not match its header)")
        self._header, self._key_id = raw, key_id
        self._count = segments(self._length, self._segment)
        self._checked = bytearray(self._count)     # 1 once a segment's tag was verified
        self._cached: tuple[int, bytes] = (-1, b"")
        self._pos = 0

    def _refused(self, why: str) -> CodeIntegrityError:
        return CodeIntegrityError(f"The stored code blob {self._name} of package {self._address} {why}. "
                                  "It is not used; upload the function's code again.")

    def _plain(self, index: int) -> bytes:
        if self._cached[0] == index:
            return self._cached[1]
        want = min(self._segment, self._length - index * self._segment)
        raw = os.pread(self._fd, NONCE_BYTES + want + TAG_BYTES,
                       _HEADER.size + index * (self._segment + NONCE_BYTES + TAG_BYTES))
        try:
            if len(raw) != NONCE_BYTES + want + TAG_BYTES:
                raise InvalidTag()
            plain = self._key.aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                           _aad(self._header, self._address, index))
        except InvalidTag:
            if self._key_id != self._key.key_id:
                raise CodeIntegrityError(
                    f"The stored code blob {self._name} of package {self._address} was sealed under another "
                    f"key (key id {self._key_id.hex()}; this store's is {self._key.key_id.hex()}), or its "
                    "header was altered. Give the store the key it was sealed with (CodeStore key= or "
                    "key_file=), or upload the function's code again.") from None
            raise self._refused(f"failed authentication at segment {index}: it was altered, truncated, "
                                "or is another package's blob") from None
        self._checked[index] = 1
        self._cached = (index, plain)
        return plain

    def verify_all(self) -> None:
        for index in range(self._count):
            if not self._checked[index]:
                self._plain(index)

    # -- io.RawIOBase ----------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        """Fills `buffer` up to the end of the plaintext (zipfile takes a short
        read for a truncated file), crossing segments as needed."""
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._length:
            index, offset = divmod(self._pos, self._segment)
            piece = self._plain(index)[offset:offset + len(view) - done]
            view[done:done + len(piece)] = piece
            done += len(piece)
            self._pos += len(piece)
        return done
