"""Code at rest: sealed blobs (AES-256-GCM), the store's key, tampering, and
materialized trees with their counts.  No root needed."""
import io
import os
import stat
import threading
import zipfile

import pytest

from sandbox.functions import package_checks, sealed
from sandbox.functions.errors import LambdaError, ServiceException
from sandbox.functions.packages import CodeStore
from sandbox.functions.sealed import CodeIntegrityError, CodeKeyError

HANDLER = b"def handler(event, context):\n    return 'the handler source'\n"
KEY = bytes(range(32))


def make_zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


SECRET_BYTES = os.urandom(4096)   # incompressible: a plain canonical zip would hold it verbatim
SAMPLE = make_zip([("handler.py", HANDLER), ("lib/secret.bin", SECRET_BYTES)])


@pytest.fixture
def store(tmp_path):
    return CodeStore(str(tmp_path / "store"))


def blob_of(store, sha256):
    return os.path.join(store.root, "blobs", f"{sha256}.blob")


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, dirs, names in os.walk(root) for n in dirs + names)


def assert_refused(store, sha256, match="failed authentication"):
    with pytest.raises(CodeIntegrityError, match=match):
        store.materialize(sha256)
    # Nothing half-made stays, the package is still held by its put(), and a
    # second attempt fails the same way (no materialization stuck "in flight").
    assert [n for n in os.listdir(store.root) if n not in ("blobs", "code.key")] == []
    assert store.references(sha256) == 1
    with pytest.raises(CodeIntegrityError):
        store.materialize(sha256)


# ---- what is on disk ---------------------------------------------------------------

def test_only_sealed_blobs_stay_on_disk(store, tmp_path):
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "handler.py").write_bytes(HANDLER)
    (src / "lib" / "secret.bin").write_bytes(SECRET_BYTES)
    pkg = store.put(str(src))
    assert store.put(SAMPLE).sha256 == pkg.sha256
    assert files_under(store.root) == ["blobs", f"blobs/{pkg.sha256}.blob", "code.key"]
    with open(blob_of(store, pkg.sha256), "rb") as src_blob:
        data = src_blob.read()
    for plain in (HANDLER, b"the handler source", SECRET_BYTES[:64], b"handler.py", b"secret.bin", b"PK\x03\x04"):
        assert plain not in data
    assert stat.S_IMODE(os.stat(blob_of(store, pkg.sha256)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(store.root, "blobs")).st_mode) == 0o700

    path = store.materialize(pkg.sha256)
    with open(os.path.join(path, "handler.py"), "rb") as code:
        assert code.read() == HANDLER
    store.dematerialize(pkg.sha256)
    assert files_under(store.root) == ["blobs", f"blobs/{pkg.sha256}.blob", "code.key"]


def test_each_seal_has_fresh_nonces(tmp_path):
    first = CodeStore(str(tmp_path / "a"), key=KEY)
    second = CodeStore(str(tmp_path / "b"), key=KEY)
    sha = first.put(SAMPLE).sha256
    assert second.put(SAMPLE).sha256 == sha
    with open(blob_of(first, sha), "rb") as a, open(blob_of(second, sha), "rb") as b:
        one, two = a.read(), b.read()
    assert len(one) == len(two) and one != two
    assert first.materialize(sha) and second.materialize(sha)


# ---- the key -----------------------------------------------------------------------

def test_key_file_is_generated_0600_and_reused(tmp_path):
    root = tmp_path / "store"
    store = CodeStore(str(root))
    key_file = root / "code.key"
    st = os.stat(key_file)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid() and st.st_size == 32
    key = key_file.read_bytes()
    sha = store.put(SAMPLE).sha256
    again = CodeStore(str(root))           # a restart: the same key, not a new one
    assert key_file.read_bytes() == key
    assert not [n for n in os.listdir(root) if ".tmp-" in n]
    fd = os.open(blob_of(store, sha), os.O_RDONLY)
    try:   # the blob the first store sealed authenticates under the key the second read
        sealed.BlobReader(fd, sealed.default_key(str(key_file)), sha, "blob").verify_all()
    finally:
        os.close(fd)
    assert again.put(SAMPLE).sha256 == sha


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_reach_is_refused(tmp_path, mode):
    root = tmp_path / "store"
    root.mkdir()
    key_file = root / "code.key"
    key_file.write_bytes(KEY)
    key_file.chmod(mode)
    with pytest.raises(CodeKeyError, match=f"mode {mode:04o}.*chmod 600") as caught:
        CodeStore(str(root))
    assert caught.value.filename == str(key_file)
    with pytest.raises(CodeKeyError, match=f"mode {mode:04o}"):
        CodeStore(str(tmp_path / "other"), key_file=str(key_file))
    key_file.chmod(0o400)   # narrower than 0600 is fine
    CodeStore(str(root))


def test_embedder_keys(tmp_path):
    store = CodeStore(str(tmp_path / "a"), key=KEY)
    assert "code.key" not in os.listdir(store.root)        # nothing generated
    key_file = tmp_path / "my.key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    os.symlink(key_file, tmp_path / "link.key")             # the embedder's own path may be a link
    other = CodeStore(str(tmp_path / "b"), key_file=str(tmp_path / "link.key"))
    sha = store.put(SAMPLE).sha256
    assert other.put(SAMPLE).sha256 == sha
    os.replace(blob_of(store, sha), blob_of(other, sha))   # same key: either store can read it
    with open(os.path.join(other.materialize(sha), "handler.py"), "rb") as code:
        assert code.read() == HANDLER


def test_bad_keys_are_refused_before_anything_is_written(tmp_path):
    root = tmp_path / "store"
    for bad in (b"short", KEY + b"x", "a" * 32):
        with pytest.raises(ValueError, match="32 bytes"):
            CodeStore(str(root), key=bad)
    with pytest.raises(ValueError, match="not both"):
        CodeStore(str(root), key=KEY, key_file=str(tmp_path / "k"))
    with pytest.raises(CodeKeyError, match="does not exist") as caught:
        CodeStore(str(root), key_file=str(tmp_path / "missing.key"))
    assert caught.value.errno == 2
    assert not root.exists()
    short = tmp_path / "short.key"
    short.write_bytes(b"0123")
    short.chmod(0o600)
    with pytest.raises(CodeKeyError, match="holds 4 bytes"):
        CodeStore(str(root), key_file=str(short))


def test_the_generated_key_file_is_never_followed(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    target = tmp_path / "elsewhere.key"
    target.write_bytes(KEY)
    target.chmod(0o600)
    os.symlink(target, root / "code.key")
    with pytest.raises(CodeKeyError, match="symlink"):
        CodeStore(str(root))


def test_a_wrong_key_is_refused(tmp_path):
    ours = CodeStore(str(tmp_path / "ours"))
    theirs = CodeStore(str(tmp_path / "theirs"))
    sha = ours.put(SAMPLE).sha256
    theirs.put(SAMPLE)
    os.replace(blob_of(theirs, sha), blob_of(ours, sha))   # a blob sealed under another key
    assert_refused(ours, sha, match="sealed under another key")


# ---- tampering ------------------------------------------------------------------------

def flip(path, offset):
    with open(path, "r+b") as blob:
        blob.seek(offset)
        byte = blob.read(1)
        blob.seek(offset)
        blob.write(bytes([byte[0] ^ 0x01]))


HEADER = sealed._HEADER.size


@pytest.mark.parametrize("where", ["ciphertext", "last byte (tag)", "nonce", "key id", "length"])
def test_a_tampered_code_blob_is_refused(store, where):
    sha = store.put(SAMPLE).sha256
    path = blob_of(store, sha)
    offset = {"ciphertext": os.path.getsize(path) // 2, "last byte (tag)": os.path.getsize(path) - 1,
              "nonce": HEADER, "key id": 9, "length": HEADER - 1}[where]
    flip(path, offset)
    assert_refused(store, sha, match="failed authentication|another key|truncated or extended")


def test_a_truncated_or_extended_blob_is_refused(store):
    sha = store.put(SAMPLE).sha256
    path = blob_of(store, sha)
    size = os.path.getsize(path)
    os.truncate(path, size - 1)
    assert_refused(store, sha, match="truncated or extended")
    with open(path, "ab") as blob:
        blob.write(b"\0\0")
    assert_refused(store, sha, match="truncated or extended")
    os.truncate(path, 5)
    assert_refused(store, sha, match="shorter than its header")


def test_swapped_blobs_are_refused(store):
    """Each blob is bound to its content address: renaming one package's
    blob into another's place does not pass."""
    a = store.put(SAMPLE).sha256
    b = store.put(make_zip([("handler.py", HANDLER + b"# other\n")])).sha256
    path_a, path_b = blob_of(store, a), blob_of(store, b)
    os.rename(path_a, path_a + ".x")
    os.rename(path_b, path_a)
    os.rename(path_a + ".x", path_b)
    assert_refused(store, a)
    assert_refused(store, b)


def test_a_missing_blob_is_refused(store):
    sha = store.put(SAMPLE).sha256
    os.unlink(blob_of(store, sha))
    assert_refused(store, sha, match="missing")


def test_the_integrity_error_is_a_service_fault(store):
    sha = store.put(SAMPLE).sha256
    flip(blob_of(store, sha), HEADER + 20)
    with pytest.raises(CodeIntegrityError) as caught:
        store.materialize(sha)
    error = caught.value
    assert isinstance(error, ServiceException) and isinstance(error, LambdaError)
    assert (error.error_type, error.status_code, error.kind) == ("ServiceException", 500, "Service")
    assert sha in error.message and "upload the function's code again" in error.message


def reseal(store, sha, plaintext):
    """Replace a package's blob with `plaintext` sealed correctly under the
    store's key: what only a holder of the key (or a bug) could write."""
    path = blob_of(store, sha)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        sealed.write_blob(fd, sealed.BlobKey(KEY), sha, io.BytesIO(plaintext), len(plaintext))
    finally:
        os.close(fd)


def test_an_authentic_archive_is_still_checked(tmp_path):
    """Defence in depth: a blob that authenticates still goes through the
    upload checks, and must hold exactly the package its address names."""
    store = CodeStore(str(tmp_path / "store"), key=KEY)
    sha = store.put(SAMPLE).sha256
    reseal(store, sha, make_zip([("../../escape.py", HANDLER)]))
    assert_refused(store, sha, match="fails the package checks.*path traversal")
    assert not (tmp_path / "escape.py").exists()
    reseal(store, sha, make_zip([("handler.py", b"print('not what was uploaded')\n")]))
    assert_refused(store, sha, match="decrypts to another package")
    reseal(store, sha, make_zip([("handler.py", HANDLER), ("lib/secret.bin", SECRET_BYTES)]))
    assert os.path.isdir(store.materialize(sha))


# ---- trees: counts and fresh paths ---------------------------------------------------

def test_materialize_counts_and_fresh_paths(store):
    sha = store.put(SAMPLE).sha256
    first = store.materialize(sha)
    assert store.materialize(sha) == first and store.references(sha) == 3   # put + 2 trees
    store.dematerialize(sha)
    assert os.path.isdir(first)
    store.dematerialize(sha)
    assert not os.path.exists(first) and store.references(sha) == 1
    with pytest.raises(KeyError, match="not materialized"):
        store.dematerialize(sha)
    second = store.materialize(sha)
    assert second != first and os.path.isdir(second)
    assert stat.S_IMODE(os.stat(second).st_mode) == 0o555


def test_a_tree_holds_its_package(store):
    sha = store.put(SAMPLE).sha256
    path = store.materialize(sha)
    store.release(sha)                       # put()'s reference: the tree still holds one
    assert os.path.isdir(path) and os.path.isfile(blob_of(store, sha))
    store.dematerialize(sha)                 # the last holder: blob and tree go
    assert not os.path.exists(path) and store.get(sha) is None
    assert files_under(store.root) == ["blobs", "code.key"]
    with pytest.raises(KeyError):
        store.materialize(sha)


def test_concurrent_materialize_decrypts_once(store, monkeypatch):
    sha = store.put(SAMPLE).sha256
    staged = []
    real_stage = package_checks.stage_archive
    monkeypatch.setattr(package_checks, "stage_archive",
                        lambda *a: staged.append(1) or real_stage(*a))
    count = 8
    barrier = threading.Barrier(count)
    paths, errors = [], []

    def materialize():
        barrier.wait()
        try:
            paths.append(store.materialize(sha))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=materialize) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(paths)) == 1 and len(staged) == 1
    assert store.references(sha) == 1 + count
    for _ in range(count):
        store.dematerialize(sha)
    assert not os.path.exists(paths[0]) and store.references(sha) == 1


def test_concurrent_materialize_of_a_tampered_blob_fails_everywhere(store):
    sha = store.put(SAMPLE).sha256
    flip(blob_of(store, sha), HEADER + 40)
    count = 6
    barrier = threading.Barrier(count)
    errors = []

    def materialize():
        barrier.wait()
        try:
            store.materialize(sha)
        except CodeIntegrityError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=materialize) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads) and len(errors) == count
    assert store.references(sha) == 1


def test_remove_during_materialize(store, monkeypatch):
    sha = store.put(SAMPLE).sha256
    real_stage = package_checks.stage_archive

    def stage_then_remove(*args):
        entries = real_stage(*args)
        store.remove(sha)
        return entries

    monkeypatch.setattr(package_checks, "stage_archive", stage_then_remove)
    with pytest.raises(KeyError, match="removed while being materialized"):
        store.materialize(sha)
    assert files_under(store.root) == ["blobs", "code.key"]


# ---- the blob format ---------------------------------------------------------------

def seal_bytes(tmp_path, plaintext, address="ab" * 32, segment_size=64, key=KEY):
    path = tmp_path / "blob"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        sealed.write_blob(fd, sealed.BlobKey(key), address, io.BytesIO(plaintext), len(plaintext),
                          segment_size=segment_size)
    finally:
        os.close(fd)
    return path


def read_back(path, address="ab" * 32, key=KEY):
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = sealed.BlobReader(fd, sealed.BlobKey(key), address, str(path))
        data = reader.read()
        reader.verify_all()
        return data
    finally:
        os.close(fd)


@pytest.mark.parametrize("length", [0, 1, 63, 64, 65, 1000])
def test_segments_round_trip(tmp_path, length):
    plaintext = os.urandom(length)
    path = seal_bytes(tmp_path, plaintext)
    assert os.path.getsize(path) == sealed.blob_size(length, 64)
    assert read_back(path) == plaintext


def test_random_access_across_segments(tmp_path):
    plaintext = bytes(range(256)) * 4
    fd = os.open(seal_bytes(tmp_path, plaintext), os.O_RDONLY)
    try:
        reader = sealed.BlobReader(fd, sealed.BlobKey(KEY), "ab" * 32, "blob")
        assert reader.seek(-10, os.SEEK_END) == len(plaintext) - 10
        assert reader.read(100) == plaintext[-10:]
        reader.seek(60)
        assert reader.read(10) == plaintext[60:70] and reader.tell() == 70
        buf = bytearray(200)
        reader.seek(1)
        assert reader.readinto(buf) == 200 and bytes(buf) == plaintext[1:201]
    finally:
        os.close(fd)


def test_moved_or_dropped_segments_are_refused(tmp_path):
    plaintext = os.urandom(64 * 3)
    path = seal_bytes(tmp_path, plaintext)
    data = path.read_bytes()
    record = 64 + sealed.NONCE_BYTES + sealed.TAG_BYTES
    segments = [data[HEADER + i * record:HEADER + (i + 1) * record] for i in range(3)]
    path.write_bytes(data[:HEADER] + segments[1] + segments[0] + segments[2])
    with pytest.raises(CodeIntegrityError, match="segment 0"):
        read_back(path)
    # Dropping the last segment and fixing the header's length: the header is
    # authenticated with every segment, so the first one no longer passes.
    header = bytearray(data[:HEADER])
    header[-8:] = (64 * 2).to_bytes(8, "big")
    path.write_bytes(bytes(header) + segments[0] + segments[1])
    with pytest.raises(CodeIntegrityError, match="segment 0"):
        read_back(path)


def test_verify_all_checks_segments_never_read(tmp_path):
    path = seal_bytes(tmp_path, os.urandom(64 * 4))
    flip(path, os.path.getsize(path) - 1)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = sealed.BlobReader(fd, sealed.BlobKey(KEY), "ab" * 32, "blob")
        reader.read(64)
        with pytest.raises(CodeIntegrityError, match="segment 3"):
            reader.verify_all()
    finally:
        os.close(fd)


def test_another_address_or_format_is_refused(tmp_path):
    path = seal_bytes(tmp_path, b"code")
    with pytest.raises(CodeIntegrityError, match="failed authentication"):
        read_back(path, address="cd" * 32)
    data = bytearray(path.read_bytes())
    data[8] = 2   # the format version
    path.write_bytes(bytes(data))
    with pytest.raises(CodeIntegrityError, match="format version 2"):
        read_back(path)
    path.write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(CodeIntegrityError, match="bad magic"):
        read_back(path)


def test_the_key_is_never_shown():
    key = sealed.BlobKey(KEY)
    assert KEY.hex() not in repr(key) and len(key.key_id) == 8
