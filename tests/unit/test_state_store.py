"""The state directory's pieces without a runtime (no root needed): the state
file (atomic replace, schema, refusals of corrupt or foreign files, one holder
at a time), the JSON codec of the control plane's objects, and the code
store's side of persistence (adopt, sweep, deferred blob removal)."""
import errno
import io
import json
import os
import zipfile

import pytest

from sandbox.functions.events import EventInvokeConfig
from sandbox.functions.layers import LayerVersion
from sandbox.functions.models import FunctionConfiguration
from sandbox.functions.packages import CodeStore
from sandbox.functions.permissions import make_statement
from sandbox.functions.sealed import CodeIntegrityError
from sandbox.functions.state_codec import (Reader, StateError, decode_config, decode_event_config, decode_layer,
                                           decode_statement, encode_config, encode_event_config, encode_layer,
                                           encode_statement)
from sandbox.functions.state_store import SCHEMA, StateStore

ARN = "arn:aws:lambda:us-east-1:123456789012:function:hello"


def zipped(text="def handler(e, c):\n    return e\n"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", text)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path):
    return StateStore(str(tmp_path / "state"))


# -- the state file ----------------------------------------------------------------------------
def test_write_then_read_round_trips_and_leaves_only_the_file(store):
    store.write({"schema": SCHEMA, "functions": {}})
    store.write({"schema": SCHEMA, "functions": {"x": 1}})
    assert store.read() == {"schema": SCHEMA, "functions": {"x": 1}}
    assert sorted(os.listdir(store.dir)) == ["lock", "state.json"]
    assert os.stat(store.path).st_mode & 0o777 == 0o600
    assert os.stat(store.dir).st_mode & 0o777 == 0o700


def test_no_file_reads_as_none(store):
    assert store.read() is None


def test_a_failed_write_keeps_the_old_file_and_no_temporary(store, monkeypatch):
    store.write({"schema": SCHEMA, "n": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        store.write({"schema": SCHEMA, "n": 2})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert store.read() == {"schema": SCHEMA, "n": 1}
    assert sorted(os.listdir(store.dir)) == ["lock", "state.json"]


@pytest.mark.parametrize("content, code, words", [
    (b'{"schema": 1, "functions": {', errno.EINVAL, "not valid JSON"),
    (b"\xff\xfe", errno.EINVAL, "not valid JSON"),
    (b"[1, 2]", errno.EINVAL, "no schema number"),
    (b'{"functions": {}}', errno.EINVAL, "no schema number"),
    (b'{"schema": true}', errno.EINVAL, "no schema number"),
    (b'{"schema": 2}', errno.ENOTSUP, "schema 2; this version of sandbox reads schema 1"),
])
def test_corrupt_or_foreign_files_are_refused_precisely(store, content, code, words):
    with open(store.path, "wb") as f:
        f.write(content)
    with pytest.raises(StateError) as info:
        store.read()
    assert info.value.errno == code and words in str(info.value) and info.value.filename == store.path


def test_a_symlinked_state_file_is_refused(store, tmp_path):
    (tmp_path / "elsewhere.json").write_text('{"schema": 1}')
    os.symlink(tmp_path / "elsewhere.json", store.path)
    with pytest.raises(StateError) as info:
        store.read()
    assert info.value.errno == errno.ELOOP


def test_one_holder_at_a_time(store, tmp_path):
    with pytest.raises(StateError) as info:
        StateStore(store.dir)
    assert info.value.errno == errno.EBUSY and f"pid {os.getpid()}" in str(info.value)
    store.close(None)
    StateStore(store.dir).close(None)


def test_calls_with_python_callables_are_refused_up_front(store):
    from sandbox.functions.errors import InvalidParameterValueException

    store.check_call({"name": "f", "role": None, "on_success": "/tmp"})
    for parameters in ({"role": lambda: {}}, {"changes": {"role": print}}, {"on_failure": print}):
        with pytest.raises(InvalidParameterValueException) as info:
            store.check_call(parameters)
        assert "cannot be kept in the runtime's state directory" in info.value.message


# -- the codec ---------------------------------------------------------------------------------
@pytest.fixture
def code(tmp_path):
    codes = CodeStore(str(tmp_path / "code"))
    return codes.put(zipped())


def config(code, **extra):
    layer = LayerVersion("lib", 2, "arn:aws:lambda:us-east-1:123456789012:layer:lib:2", code, "d", ("python3",),
                         "2024-01-01T00:00:00.000+0000")
    return FunctionConfiguration(function_name="hello", function_arn=ARN, version="3", runtime="python3",
                                 handler="app.handler", code=code, memory_mb=256, timeout_s=7,
                                 environment=(("AA", "1"), ("BB", "two")), description="x", layers=(layer,),
                                 **extra)


def decode(data, version="3"):
    return decode_config(Reader(json.loads(json.dumps(data)), "functions.hello.versions.3"), "hello", version, ARN)


def test_configurations_round_trip(code):
    fc = config(code)
    assert decode(encode_config(fc)) == fc
    layer = fc.layers[0]
    assert decode_layer(Reader(encode_layer(layer), "layers.lib.2")) == layer


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(memory_mb="256"), "functions.hello.versions.3: MemorySize must be an integer"),
    (lambda d: d.update(memory_mb=64), "MemorySize must be an integer between 128 and 10240"),
    (lambda d: d.update(tags={"a": "b"}), "unknown field(s) ['tags']: written by a newer version"),
    (lambda d: d.pop("handler"), "functions.hello.versions.3.handler: missing"),
    (lambda d: d["code"].update(sha256="nope"), "versions.3.code.sha256: not a code package address"),
    (lambda d: d["code"].update(code_size=-1), "code.code_size: expected an integer >= 0"),
    (lambda d: d["environment"].update(CC=3), "environment.CC: expected str, found int"),
    (lambda d: d.update(version="4"), "names hello:4"),
    (lambda d: d["layers"][0].update(version=True), "layers.0.version: expected int, found bool"),
])
def test_bad_configurations_are_refused_naming_the_place(code, change, words):
    data = encode_config(config(code))
    change(data)
    with pytest.raises(StateError) as info:
        decode(data)
    assert info.value.errno == errno.EINVAL and words in str(info.value)


def test_a_role_provider_has_no_stored_form(code):
    with pytest.raises(ValueError):
        encode_config(config(code, role=lambda: {}))


def test_statements_and_event_configs_round_trip(tmp_path):
    statement = make_statement("s1", "lambda:InvokeFunction", "123456789012", ARN, "arn:aws:s3:::b*", None)
    assert decode_statement(Reader(encode_statement(statement), "p")) == statement
    bad = dict(encode_statement(statement), action="iam:PassRole")
    with pytest.raises(StateError, match=r"p: Action must be lambda:<Operation>"):
        decode_statement(Reader(bad, "p"))
    events = EventInvokeConfig(1, 120, str(tmp_path), None)
    assert decode_event_config(Reader(encode_event_config(events), "e")) == events
    with pytest.raises(StateError, match="e: MaximumRetryAttempts must be 0, 1 or 2"):
        decode_event_config(Reader(dict(encode_event_config(events), maximum_retry_attempts=5), "e"))
    with pytest.raises(ValueError):
        encode_event_config(EventInvokeConfig(on_success=print))


# -- the code store's side -------------------------------------------------------------------
def test_blobs_outlive_their_last_reference_until_a_save_no_longer_names_them(tmp_path):
    codes = CodeStore(str(tmp_path / "code"), defer_removal=True)
    package = codes.put(zipped())
    blob = os.path.join(codes.root, "blobs", f"{package.sha256}.blob")
    codes.release(package.sha256)
    assert codes.get(package.sha256) is None and os.path.exists(blob)
    codes.flush_removed({package.sha256})          # the saved state still names it
    assert os.path.exists(blob)
    codes.flush_removed(set())
    assert not os.path.exists(blob)


def test_a_blob_stored_again_is_not_flushed(tmp_path):
    codes = CodeStore(str(tmp_path / "code"), defer_removal=True)
    package = codes.put(zipped())
    codes.release(package.sha256)
    again = codes.put(zipped())
    codes.flush_removed(set())
    assert codes.get(again.sha256) is not None
    assert os.path.isdir(codes.materialize(again.sha256))


def test_a_new_store_adopts_blobs_and_sweeps_the_rest(tmp_path):
    root = str(tmp_path / "code")
    first = CodeStore(root, defer_removal=True)
    kept, orphan = first.put(zipped()), first.put(zipped("x = 1\n"))
    first.materialize(kept.sha256)                  # a plaintext tree a crash would leave behind
    os.mkdir(os.path.join(root, ".staging-left"))

    second = CodeStore(root, defer_removal=True)   # the same generated key file
    second.adopt(kept)
    assert second.references(kept.sha256) == 1
    removed = second.sweep()
    assert f"blobs/{orphan.sha256}.blob" in removed and ".staging-left" in removed
    assert sorted(os.listdir(root)) == ["blobs", "code.key"]
    assert os.listdir(os.path.join(root, "blobs")) == [f"{kept.sha256}.blob"]
    tree = second.materialize(kept.sha256)
    assert open(os.path.join(tree, "app.py")).read().startswith("def handler")


def test_adopt_refuses_a_missing_blob_or_another_key(tmp_path):
    root = str(tmp_path / "code")
    package = CodeStore(root).put(zipped())
    with pytest.raises(CodeIntegrityError, match="sealed under another key"):
        CodeStore(root, key=os.urandom(32)).adopt(package)
    os.unlink(os.path.join(root, "blobs", f"{package.sha256}.blob"))
    with pytest.raises(CodeIntegrityError, match="cannot be opened: No such file"):
        CodeStore(root).adopt(package)


def test_sweep_keeps_a_key_file_kept_inside_the_store(tmp_path):
    from sandbox.functions.sealed import create_key_file

    root = tmp_path / "code"
    root.mkdir()
    key_file = str(root / "my.key")
    create_key_file(key_file)
    codes = CodeStore(str(root), key_file=key_file, defer_removal=True)
    codes.sweep()
    assert os.path.exists(key_file)
