"""CodeStore: content-addressed packages from directories and zips, their
read-only trees, and the hostile archives it must refuse.  No root needed.
Encryption at rest is tested in test_sealed.py."""
import io
import os
import re
import stat
import threading
import warnings
import zipfile
import zlib

import pytest

from sandbox.functions import package_checks
from sandbox.functions.errors import InvalidParameterValueException, RequestEntityTooLargeException
from sandbox.functions.packages import CodeStore

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "code-packages.md")
HANDLER = b"def handler(event, context):\n    return event\n"


def make_zip(members, *, compression=zipfile.ZIP_DEFLATED, date_time=(2020, 5, 17, 12, 0, 0)):
    """members: (name, data, unix mode) tuples; a mode with S_IFLNK makes a symlink."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # zipfile warns on the duplicate names some tests need
        with zipfile.ZipFile(buf, "w", compression) as zf:
            for name, data, mode in members:
                info = zipfile.ZipInfo(name, date_time)
                info.create_system = 3
                info.external_attr = mode << 16
                info.compress_type = compression
                zf.writestr(info, data)
    return buf.getvalue()


def f(name, data=b"x", mode=0o644):
    return (name, data, stat.S_IFREG | mode)


def link(name, target):
    return (name, target.encode(), stat.S_IFLNK | 0o777)


def sample_dir(path):
    os.makedirs(os.path.join(path, "lib", "empty"))
    with open(os.path.join(path, "handler.py"), "wb") as out:
        out.write(HANDLER)
    with open(os.path.join(path, "lib", "tool.sh"), "wb") as out:
        out.write(b"#!/bin/sh\necho hi\n")
    os.chmod(os.path.join(path, "lib", "tool.sh"), 0o755)
    os.symlink("lib/tool.sh", os.path.join(path, "tool"))
    return path


SAMPLE_ZIP_MEMBERS = [f("handler.py", HANDLER), ("lib/", b"", stat.S_IFDIR | 0o755),
                      ("lib/empty/", b"", stat.S_IFDIR | 0o755),
                      f("lib/tool.sh", b"#!/bin/sh\necho hi\n", 0o755), link("tool", "lib/tool.sh")]


@pytest.fixture
def store(tmp_path):
    return CodeStore(str(tmp_path / "store"))


def tree(path):
    """{relative path: (type letter, mode bits, content or link target)}"""
    found = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("l", None, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("d", stat.S_IMODE(st.st_mode), None)
            else:
                with open(full, "rb") as src:
                    found[rel] = ("f", stat.S_IMODE(st.st_mode), src.read())
    return found


def stored_blobs(store):
    """Content addresses of the sealed blobs on disk (<root>/blobs/<address>.blob)."""
    return sorted(name.split(".")[0] for name in os.listdir(os.path.join(store.root, "blobs")))


def leftovers(store):
    """Anything in the root but the key, the blobs and materialized trees:
    staging directories, sealing files, trees being removed."""
    found = [n for n in os.listdir(store.root) if n.startswith(".")]
    return found + [n for n in os.listdir(os.path.join(store.root, "blobs")) if n.startswith(".")]


def trees_on_disk(store):
    return sorted(n for n in os.listdir(store.root) if n not in ("blobs", "code.key"))


# ---- round trips and addressing ----------------------------------------------

def test_directory_round_trip(store, tmp_path):
    pkg = store.put(sample_dir(str(tmp_path / "src")))
    assert pkg.path is None and trees_on_disk(store) == []   # put() keeps only the sealed blob
    path = store.materialize(pkg.sha256)
    assert os.path.dirname(path) == store.root
    assert os.path.basename(path).startswith(pkg.sha256 + ".")
    assert tree(path) == {
        "handler.py": ("f", 0o444, HANDLER), "lib": ("d", 0o555, None),
        "lib/empty": ("d", 0o555, None), "lib/tool.sh": ("f", 0o555, b"#!/bin/sh\necho hi\n"),
        "tool": ("l", None, "lib/tool.sh")}
    assert pkg.unzipped_size == len(HANDLER) + len(b"#!/bin/sh\necho hi\n")
    assert store.get(pkg.sha256) == pkg


def test_zip_bytes_and_zip_path_round_trip(store, tmp_path):
    data = make_zip(SAMPLE_ZIP_MEMBERS)
    from_bytes = store.put(data)
    path = tmp_path / "code.zip"
    path.write_bytes(data)
    from_path = store.put(str(path))
    assert from_bytes == from_path == store.put(path) == store.put(memoryview(data))
    assert from_bytes.code_size == len(data)
    assert tree(store.materialize(from_bytes.sha256))["lib/tool.sh"] == ("f", 0o555, b"#!/bin/sh\necho hi\n")


def test_dir_and_zip_of_the_same_content_share_one_tree(store, tmp_path):
    from_dir = store.put(sample_dir(str(tmp_path / "src")))
    from_zip = store.put(make_zip(SAMPLE_ZIP_MEMBERS))
    stored_zip = make_zip(list(reversed(SAMPLE_ZIP_MEMBERS)), compression=zipfile.ZIP_STORED,
                          date_time=(1999, 1, 1, 0, 0, 0))
    other_bytes = store.put(stored_zip)
    assert from_dir.sha256 == from_zip.sha256 == other_bytes.sha256
    assert len({from_dir.code_sha256, from_zip.code_sha256, other_bytes.code_sha256}) == 3
    assert stored_blobs(store) == [from_dir.sha256] and store.references(from_dir.sha256) == 3
    # get() reports the first upload; put() reports each upload's own zip.
    assert store.get(from_dir.sha256).code_sha256 == from_dir.code_sha256


def test_directory_code_sha256_is_that_of_a_deterministic_zip(store, tmp_path):
    first = store.put(sample_dir(str(tmp_path / "a")))
    second = store.put(sample_dir(str(tmp_path / "b")))
    assert (first.code_sha256, first.code_size) == (second.code_sha256, second.code_size)


def test_identical_zip_bytes_are_not_extracted_again(store, monkeypatch):
    data = make_zip([f("a.py")])
    first = store.put(data)
    monkeypatch.setattr(package_checks, "stage_zip", lambda *a: pytest.fail("extracted twice"))
    assert store.put(data) == first


def test_different_content_gets_different_addresses(store):
    a = store.put(make_zip([f("a.py", b"1")]))
    b = store.put(make_zip([f("a.py", b"2")]))
    c = store.put(make_zip([f("a.py", b"1", 0o755)]))   # the exec bit is content too
    assert len({a.sha256, b.sha256, c.sha256}) == 3


def test_missing_parent_directories_are_implied(store):
    pkg = store.put(make_zip([f("deep/er/a.py"), f("./b.py"), ("./", b"", stat.S_IFDIR | 0o755)]))
    assert tree(store.materialize(pkg.sha256)) == {"deep": ("d", 0o555, None), "deep/er": ("d", 0o555, None),
                              "deep/er/a.py": ("f", 0o444, b"x"), "b.py": ("f", 0o444, b"x")}


def test_empty_zip_is_an_empty_tree(store):
    pkg = store.put(make_zip([]))
    assert os.listdir(store.materialize(pkg.sha256)) == [] and pkg.unzipped_size == 0


# ---- the stored tree -----------------------------------------------------------

def test_tree_is_read_only_plain_and_owned_by_us(store, tmp_path):
    special = [f("suid", mode=0o4755), f("sgid", mode=0o2755), f("sticky", mode=0o1644),
               f("secret", mode=0o000), ("d/", b"", stat.S_IFDIR | 0o777)]
    path = store.materialize(store.put(make_zip(special)).sha256)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o555
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            assert st.st_uid == os.getuid()
            assert stat.S_IMODE(st.st_mode) in (0o444, 0o555), name
            assert stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1)
    assert tree(path)["suid"][1] == 0o555 and tree(path)["secret"][1] == 0o444
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o711


def test_exec_bit_is_kept_from_dirs(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "run").write_bytes(b"#!/bin/sh\n")
    (src / "run").chmod(0o700)
    (src / "data").write_bytes(b"")
    (src / "data").chmod(0o600)
    found = tree(store.materialize(store.put(str(src)).sha256))
    assert found["run"][1] == 0o555 and found["data"][1] == 0o444


def test_symlinks_inside_the_tree_are_allowed(store):
    pkg = store.put(make_zip([
        f("lib/libfoo.so.1.2"), link("lib/libfoo.so.1", "libfoo.so.1.2"),
        link("lib/libfoo.so", "libfoo.so.1"),             # a chain, as shared libraries have
        link("bin/foo", "../lib/libfoo.so"), link("here", "."), link("dangling", "nothing")]))
    with open(os.path.join(store.materialize(pkg.sha256), "bin", "foo"), "rb") as src:
        assert src.read() == b"x"


# ---- hostile zips --------------------------------------------------------------

@pytest.mark.parametrize("name, why", [
    ("../evil", "traversal"), ("/abs", "absolute"), ("a/../../x", "traversal"),
    ("a/../b", "traversal"), ("..\\evil", "backslash"), ("a" * 300, "longer than"),
])
def test_bad_names_are_refused(store, name, why):
    with pytest.raises(InvalidParameterValueException, match=why) as caught:
        store.put(make_zip([f("ok.py"), f(name)]))
    assert repr(name)[:40] in str(caught.value) or name[:40] in str(caught.value)
    assert stored_blobs(store) == [] and leftovers(store) == []


def test_nul_in_a_name_is_refused(store):
    data = make_zip([f("aXb")]).replace(b"aXb", b"a\0b")   # zipfile itself cannot write a NUL
    with pytest.raises(InvalidParameterValueException, match="NUL"):
        store.put(data)


@pytest.mark.parametrize("members", [
    [f("a.py"), f("a.py")],
    [f("a.py"), f("./a.py")],
    [("d/", b"", stat.S_IFDIR | 0o755), f("d")],
])
def test_duplicates_are_refused(store, members):
    with pytest.raises(InvalidParameterValueException, match="duplicate"):
        store.put(make_zip(members))


@pytest.mark.parametrize("members, why", [
    ([link("l", "/etc/passwd")], "absolute"),
    ([link("a/b/l", "../../../etc/passwd")], "leaves"),
    ([link("l", "..")], "leaves"),
    ([link("l", "")], "empty"),
    ([link("a", "b"), link("b", "a")], "loop"),
    ([link("self", "self")], "loop"),
    # Looks inside as text (x/y/up/../.. is x), but up points at the root.
    ([link("x/y/up", "../.."), link("l", "x/y/up/../..")], "leaves"),
    ([link("l", "d"), f("l/inside")], "below 'l'"),
    ([f("file"), f("file/inside")], "below 'file'"),
])
def test_bad_symlinks_are_refused(store, members, why):
    with pytest.raises(InvalidParameterValueException, match=why):
        store.put(make_zip(members))
    assert stored_blobs(store) == [] and leftovers(store) == []


def test_special_files_encryption_and_compression_are_refused(store):
    with pytest.raises(InvalidParameterValueException, match="special file"):
        store.put(make_zip([("fifo", b"", stat.S_IFIFO | 0o644)]))
    with pytest.raises(InvalidParameterValueException, match="compression method"):
        store.put(make_zip([f("a.py")], compression=zipfile.ZIP_BZIP2))
    data = bytearray(make_zip([f("a.py")]))
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.find(signature) + flag_offset] |= 0x1   # the "encrypted" bit
    with pytest.raises(InvalidParameterValueException, match="encrypted"):
        store.put(bytes(data))


@pytest.mark.parametrize("data", [b"", b"not a zip", make_zip([f("a.py", b"y" * 1000)])[:-30]])
def test_not_a_zip_is_refused(store, data):
    with pytest.raises(InvalidParameterValueException, match="Could not unzip uploaded file"):
        store.put(data)


def test_damaged_zips_fail_only_with_lambda_errors(store):
    good = make_zip(SAMPLE_ZIP_MEMBERS)
    for i in range(0, len(good), 7):
        damaged = bytearray(good)
        damaged[i] ^= 0xA5
        try:
            store.put(bytes(damaged))
        except InvalidParameterValueException:
            pass
    assert leftovers(store) == []


def test_a_nested_zip_is_just_a_file(store):
    inner = make_zip([f("../escape")])
    pkg = store.put(make_zip([f("inner.zip", inner)]))
    assert tree(store.materialize(pkg.sha256)) == {"inner.zip": ("f", 0o444, inner)}


# ---- size and count limits -------------------------------------------------------

def test_zipped_size_over_the_cap_is_refused(tmp_path):
    store = CodeStore(str(tmp_path / "store"), max_zipped=1000)
    data = make_zip([f("a.bin", os.urandom(2000))], compression=zipfile.ZIP_STORED)
    with pytest.raises(RequestEntityTooLargeException, match="Zipped file size"):
        store.put(data)
    (tmp_path / "big.zip").write_bytes(data)
    with pytest.raises(RequestEntityTooLargeException):
        store.put(str(tmp_path / "big.zip"))


def test_declared_unzipped_size_over_the_cap_is_refused(tmp_path):
    store = CodeStore(str(tmp_path / "store"), max_unzipped=1 << 20)
    bomb = make_zip([f(f"zeros{i}", bytes(600 << 10)) for i in range(2)])
    assert len(bomb) < 10_000
    with pytest.raises(InvalidParameterValueException,
                       match=f"Unzipped size must be smaller than {1 << 20} bytes"):
        store.put(bomb)


def lying_zip(real_size, claimed_size, crc_of_prefix=False):
    """A zip whose headers claim `claimed_size` for a file of `real_size` zeros."""
    data = bytearray(make_zip([f("zeros", bytes(real_size))]))
    claimed = claimed_size.to_bytes(4, "little")
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    data[local + 22:local + 26] = claimed
    data[central + 24:central + 28] = claimed
    if crc_of_prefix:   # make the truncated prefix pass the CRC check too
        crc = zlib.crc32(bytes(claimed_size)).to_bytes(4, "little")
        data[local + 14:local + 18] = crc
        data[central + 16:central + 20] = crc
    return bytes(data)


def test_a_header_claiming_a_small_size_cannot_inflate_past_it(tmp_path):
    store = CodeStore(str(tmp_path / "store"), max_unzipped=1 << 20)
    with pytest.raises(InvalidParameterValueException, match="Could not unzip"):
        store.put(lying_zip(8 << 20, 100))
    # With a forged CRC as well, no more than the claimed bytes come out.
    pkg = store.put(lying_zip(8 << 20, 100, crc_of_prefix=True))
    assert os.path.getsize(os.path.join(store.materialize(pkg.sha256), "zeros")) == 100
    assert leftovers(store) == []


def test_real_bytes_are_capped_even_if_the_header_check_is_bypassed(tmp_path, monkeypatch):
    store = CodeStore(str(tmp_path / "store"), max_unzipped=1 << 20)
    monkeypatch.setattr(package_checks, "_check_declared_size", lambda infos, limits: None)
    written = []
    real_write = package_checks._write_file
    monkeypatch.setattr(package_checks, "_write_file", lambda dest, chunks, *a: real_write(
        dest, (written.append(len(c)) or c for c in chunks), *a))
    with pytest.raises(InvalidParameterValueException, match="Unzipped size must be smaller"):
        store.put(make_zip([f("zeros", bytes(8 << 20))]))
    assert sum(written) <= (1 << 20) + package_checks.CHUNK
    assert stored_blobs(store) == [] and leftovers(store) == []


def test_too_many_entries_are_refused(tmp_path):
    store = CodeStore(str(tmp_path / "store"), max_entries=3)
    store.put(make_zip([f("a"), f("b"), f("c")]))
    with pytest.raises(InvalidParameterValueException, match="more than 3 entries"):
        store.put(make_zip([f(str(i)) for i in range(5)]))
    with pytest.raises(InvalidParameterValueException, match="more than 3 entries"):
        store.put(make_zip([f("a/b/c/d")]))   # implied directories count


# ---- hostile directories ---------------------------------------------------------

def test_directory_symlinks_leaving_the_tree_are_refused(store, tmp_path):
    for target, why in (("/etc/passwd", "absolute"), ("../../etc/passwd", "leaves")):
        src = tmp_path / f"src{len(why)}"
        (src / "sub").mkdir(parents=True)
        os.symlink(target, src / "sub" / "link")
        with pytest.raises(InvalidParameterValueException, match=why):
            store.put(str(src))
    assert stored_blobs(store) == [] and leftovers(store) == []


def test_directory_links_to_outside_dirs_are_not_followed(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(str(outside), src / "escape")
    with pytest.raises(InvalidParameterValueException, match="absolute"):
        store.put(str(src))


def test_directory_special_files_are_refused(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "fifo")
    with pytest.raises(InvalidParameterValueException, match="special file"):
        store.put(str(src))


def test_directory_size_and_entry_caps(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(bytes(2000))
    with pytest.raises(InvalidParameterValueException, match="Unzipped size"):
        CodeStore(str(tmp_path / "s1"), max_unzipped=1000).put(str(src))
    with pytest.raises(InvalidParameterValueException, match="more than 0 entries"):
        CodeStore(str(tmp_path / "s2"), max_entries=0).put(str(src))


# ---- concurrency and removal ------------------------------------------------------

def test_concurrent_puts_of_the_same_content_store_one_tree(store):
    uploads = [make_zip(SAMPLE_ZIP_MEMBERS, date_time=(2000 + i, 1, 1, 0, 0, 0)) for i in range(4)]
    uploads += uploads   # the same bytes twice as well
    barrier = threading.Barrier(len(uploads))
    results, errors = [None] * len(uploads), []

    def put(i):
        barrier.wait()
        try:
            results[i] = store.put(uploads[i])
        except Exception as exc:   # surfaced below, with the thread's own traceback lost
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(len(uploads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r.sha256 for r in results}) == 1
    assert stored_blobs(store) == [results[0].sha256] and leftovers(store) == []
    assert store.references(results[0].sha256) == len(uploads)


def test_remove_is_idempotent_and_put_restores(store):
    data = make_zip(SAMPLE_ZIP_MEMBERS)
    pkg = store.put(data)
    path = store.materialize(pkg.sha256)
    store.remove(pkg.sha256)
    assert not os.path.exists(path) and store.get(pkg.sha256) is None
    store.remove(pkg.sha256)
    store.dematerialize(pkg.sha256)   # a holder giving back a removed tree: nothing to do
    assert stored_blobs(store) == [] and trees_on_disk(store) == []
    again = store.put(data)
    assert again.sha256 == pkg.sha256
    again_path = store.materialize(again.sha256)
    assert os.path.isdir(again_path)
    assert again_path != path   # a new materialization never reuses a removed tree's path


def test_references_keep_a_tree_until_the_last_release(store, tmp_path):
    data = make_zip(SAMPLE_ZIP_MEMBERS)
    first = store.put(data)
    second = store.put(data)                 # same content: same blob, one more reference
    assert second.sha256 == first.sha256 and store.references(first.sha256) == 2
    blob = os.path.join(store.root, "blobs", first.sha256 + ".blob")
    store.retain(first.sha256)
    store.release(first.sha256)
    store.release(first.sha256)
    assert os.path.isfile(blob)
    store.release(first.sha256)
    assert not os.path.exists(blob) and store.get(first.sha256) is None


def test_put_of_known_content_never_races_its_removal(store):
    """A put() of content being released concurrently either revives the
    stored blob (its reference counted first) or stores a fresh one: the
    returned package can always be materialized."""
    data = make_zip(SAMPLE_ZIP_MEMBERS)
    for _ in range(50):
        held = store.put(data)
        results = []
        releaser = threading.Thread(target=store.release, args=(held.sha256,))
        putter = threading.Thread(target=lambda: results.append(store.put(data)))
        releaser.start()
        putter.start()
        releaser.join()
        putter.join()
        assert os.path.isdir(store.materialize(results[0].sha256))
        store.dematerialize(results[0].sha256)
        store.release(results[0].sha256)
    assert stored_blobs(store) == [] and trees_on_disk(store) == [] and leftovers(store) == []


def test_addresses_are_checked(store):
    for bad in ("../x", "A" * 64, "0" * 63, None):
        with pytest.raises(ValueError):
            store.get(bad)
        with pytest.raises(ValueError):
            store.remove(bad)
        with pytest.raises(ValueError):
            store.materialize(bad)
        with pytest.raises(ValueError):
            store.dematerialize(bad)


def test_docs_examples_run():
    with open(DOCS) as src:
        blocks = re.findall(r"```python\n(.*?)```", src.read(), flags=re.S)
    assert blocks, "docs/code-packages.md lost its runnable example"
    for index, code in enumerate(blocks):
        exec(compile(code, f"docs/code-packages.md[block {index}]", "exec"), {"__name__": "__docs__"})
