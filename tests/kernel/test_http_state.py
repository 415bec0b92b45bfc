"""`sandbox serve --state-dir`: the control plane survives a restart and a
SIGKILL; a state directory that cannot be used stops the server with a
precise message and is left as it was."""
from __future__ import annotations

import json
import os
import re
import signal

import pytest

import conftest
from conftest import requires_sandbox_privileges
from http_helpers import (ADMIN, ADMIN_SECRET, MEMORY, OTHER, OTHER_PRINCIPAL, OTHER_SECRET, start_serve,
                          write_credentials)

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]

CODE = "import os\ndef handler(event, context):\n    return [event, os.environ.get('COLOUR'), open('/opt/x').read()]\n"


def client(url, access=ADMIN, secret=ADMIN_SECRET):
    return boto3.client("lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id=access,
                        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1},
                                                                    read_timeout=60))


@pytest.fixture
def leak_checked():
    conftest._drain_supervisor()
    before = conftest.LeakSnapshot()
    yield
    conftest.assert_no_leaks(before)


@pytest.fixture
def credentials(tmp_path):
    return write_credentials(tmp_path / "credentials.json")


def served(state, credentials, *extra):
    server = start_serve("--credentials", credentials, "--state-dir", str(state), *extra)
    assert server.url, server.output
    return server


def test_everything_the_control_plane_holds_survives_a_restart(tmp_path, credentials, leak_checked):
    state = tmp_path / "state"
    server = served(state, credentials)
    try:
        lam = client(server.url)
        layer = lam.publish_layer_version(LayerName="extra", Content={"ZipFile": conftest.zip_of({"x": "layer"})})
        lam.create_function(FunctionName="kept", Runtime="python3", Role="arn:aws:iam::123456789012:role/r",
                            Handler="app.handler", Code={"ZipFile": conftest.zip_of({"app.py": CODE})},
                            MemorySize=MEMORY, Environment={"Variables": {"COLOUR": "teal"}},
                            Layers=[layer["LayerVersionArn"]])
        assert lam.invoke(FunctionName="kept", Payload=b"1")["Payload"].read() == b'[1, "teal", "layer"]'
        version = lam.publish_version(FunctionName="kept", Description="one")["Version"]
        lam.update_function_configuration(FunctionName="kept", Environment={"Variables": {"COLOUR": "red"}})
        for qualifier in ({}, {"Qualifier": version}):
            lam.add_permission(FunctionName="kept", StatementId="only-admins", Action="lambda:InvokeFunction",
                               Principal="123456789012", **qualifier)
        lam.put_function_concurrency(FunctionName="kept", ReservedConcurrentExecutions=2)
        lam.put_function_event_invoke_config(FunctionName="kept", MaximumRetryAttempts=0,
                                             MaximumEventAgeInSeconds=120)
        lam.put_provisioned_concurrency_config(FunctionName="kept", Qualifier=version,
                                               ProvisionedConcurrentExecutions=1)
        before = {"latest": lam.get_function(FunctionName="kept"),
                  "version": lam.get_function(FunctionName="kept", Qualifier=version)["Configuration"],
                  "policy": lam.get_policy(FunctionName="kept"),
                  "version policy": lam.get_policy(FunctionName="kept", Qualifier=version),
                  "events": lam.get_function_event_invoke_config(FunctionName="kept"),
                  "layer": lam.get_layer_version(LayerName="extra", VersionNumber=1)}
    finally:
        assert server.stop() == 0
    assert sorted(os.listdir(state)) == ["code", "lock", "state.json"]
    assert os.stat(state / "state.json").st_mode & 0o777 == 0o600
    assert os.stat(state / "code" / "code.key").st_mode & 0o777 == 0o600

    server = served(state, credentials)
    try:
        lam = client(server.url)
        after = {"latest": lam.get_function(FunctionName="kept"),
                 "version": lam.get_function(FunctionName="kept", Qualifier=version)["Configuration"],
                 "policy": lam.get_policy(FunctionName="kept"),
                 "version policy": lam.get_policy(FunctionName="kept", Qualifier=version),
                 "events": lam.get_function_event_invoke_config(FunctionName="kept"),
                 "layer": lam.get_layer_version(LayerName="extra", VersionNumber=1)}
        for name in before:
            for shown in (before[name], after[name]):
                shown.pop("ResponseMetadata", None)
                shown.pop("LastModified", None)     # the event config's is the time of the Get
            assert after[name] == before[name], name
        assert after["latest"]["Concurrency"] == {"ReservedConcurrentExecutions": 2}
        assert lam.invoke(FunctionName="kept", Payload=b"2")["Payload"].read() == b'[2, "red", "layer"]'
        assert lam.invoke(FunctionName="kept", Qualifier=version, Payload=b"3")["Payload"].read() == \
            b'[3, "teal", "layer"]'
        with pytest.raises(ClientError) as denied:          # the policy still decides
            client(server.url, OTHER, OTHER_SECRET).invoke(FunctionName="kept")
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert OTHER_PRINCIPAL in denied.value.response["Error"]["Message"]
        provisioned = lam.get_provisioned_concurrency_config(FunctionName="kept", Qualifier=version)
        assert provisioned["RequestedProvisionedConcurrentExecutions"] == 1
        lam.delete_provisioned_concurrency_config(FunctionName="kept", Qualifier=version)
        lam.delete_function(FunctionName="kept")
        lam.delete_layer_version(LayerName="extra", VersionNumber=1)
    finally:
        assert server.stop() == 0
    assert os.listdir(state / "code" / "blobs") == []        # nothing named, nothing kept
    assert json.loads((state / "state.json").read_text())["functions"] == {}


def test_a_sigkilled_server_loses_no_completed_call(tmp_path, credentials, leak_checked):
    state = tmp_path / "state"
    server = served(state, credentials)
    lam = client(server.url)
    lam.create_function(FunctionName="crash", Runtime="python3", Role="arn:aws:iam::123456789012:role/r",
                        Handler="app.handler", MemorySize=MEMORY,
                        Code={"ZipFile": conftest.zip_of({"app.py": "def handler(e, c):\n    return 'ok'\n"})})
    published = lam.publish_version(FunctionName="crash")
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL    # no invocation ran: no sandbox is orphaned
    server = served(state, credentials)
    try:
        lam = client(server.url)
        assert lam.get_function(FunctionName="crash", Qualifier="1")["Configuration"]["RevisionId"] == \
            published["RevisionId"]
        assert lam.invoke(FunctionName="crash", Qualifier="1")["Payload"].read() == b'"ok"'
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("content, words", [
    (b'{"schema": 1, "functions": {"x"', r"not valid JSON .*: it was cut short or altered"),
    (b'{"schema": 7}', r"schema 7; this version of sandbox reads schema 1"),
    (b'{"schema": 1, "region": "eu-west-1", "account_id": "123456789012", "functions": {}, "layers": {}}',
     r"the state belongs to region eu-west-1"),
    (b'{"schema": 1, "region": "us-east-1", "account_id": "123456789012", "layers": {}, '
     b'"functions": {"bad name!": {}}}', r"functions\.bad name!: .*functionName"),
])
def test_an_unusable_state_dir_stops_the_server_and_is_left_as_it_was(tmp_path, credentials, content, words):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_bytes(content)
    server = served_or_refused(state, credentials)
    assert server.process.returncode == 2 and not server.url
    assert re.search(words, server.output), server.output
    assert str(state / "state.json") in server.output
    assert (state / "state.json").read_bytes() == content


def test_a_state_file_naming_a_missing_blob_is_refused(tmp_path, credentials, leak_checked):
    state = tmp_path / "state"
    server = served(state, credentials)
    try:
        client(server.url).create_function(
            FunctionName="gone", Runtime="python3", Role="arn:aws:iam::123456789012:role/r", Handler="app.handler",
            Code={"ZipFile": conftest.zip_of({"app.py": "x = 1\n"})})
    finally:
        assert server.stop() == 0
    for blob in os.listdir(state / "code" / "blobs"):
        os.unlink(state / "code" / "blobs" / blob)
    saved = (state / "state.json").read_bytes()
    server = served_or_refused(state, credentials)
    assert server.process.returncode == 2
    assert "the code of function gone:$LATEST" in server.output and "No such file" in server.output
    assert (state / "state.json").read_bytes() == saved


def test_one_server_per_state_dir(tmp_path, credentials, leak_checked):
    state = tmp_path / "state"
    first = served(state, credentials)
    try:
        second = served_or_refused(state, credentials)
        assert second.process.returncode == 2
        assert f"in use by another runtime (pid {first.process.pid})" in second.output
    finally:
        assert first.stop() == 0


def test_a_generated_key_is_kept_with_the_state(tmp_path, leak_checked):
    state = tmp_path / "state"
    server = start_serve("--state-dir", str(state))
    try:
        access = re.search(r"AWS_ACCESS_KEY_ID=(\S+)", server.output).group(1)
        secret = re.search(r"AWS_SECRET_ACCESS_KEY=(\S+)", server.output).group(1)
        assert "kept with the state" in server.output
        client(server.url, access, secret).list_functions()
    finally:
        assert server.stop() == 0
    assert os.stat(state / "credentials.json").st_mode & 0o777 == 0o600
    server = start_serve("--state-dir", str(state))
    try:
        assert "using the credentials saved in" in server.output and access not in server.output
        assert client(server.url, access, secret).list_functions()["Functions"] == []
    finally:
        assert server.stop() == 0


def served_or_refused(state, credentials):
    return start_serve("--credentials", credentials, "--state-dir", str(state))


def test_concurrent_changes_all_reach_the_state_file(tmp_path, credentials, leak_checked):
    import threading

    state = tmp_path / "state"
    server = served(state, credentials)
    try:
        clients = [client(server.url) for _ in range(8)]
        code = conftest.zip_of({"app.py": "def handler(e, c):\n    return e\n"})

        def make(i, lam):
            lam.create_function(FunctionName=f"many-{i}", Runtime="python3", Handler="app.handler",
                                Role="arn:aws:iam::123456789012:role/r", Code={"ZipFile": code})
            lam.publish_version(FunctionName=f"many-{i}")
        threads = [threading.Thread(target=make, args=(i, c)) for i, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL     # only what each call saved counts
    saved = json.loads((state / "state.json").read_text())["functions"]
    assert sorted(saved) == [f"many-{i}" for i in range(8)]
    assert all(list(f["versions"]) == ["1"] for f in saved.values())


def test_a_failed_save_is_reported_and_the_next_one_catches_up(tmp_path, monkeypatch, leak_checked):
    import errno

    import sandbox
    from sandbox.functions.state_store import StateError, StateStore

    code = conftest.zip_of({"app.py": "def handler(e, c):\n    return e\n"})
    with sandbox.Runtime(state_dir=str(tmp_path / "state")) as rt:
        real_write = StateStore.write

        def full(self, state):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(StateStore, "write", full)
        with pytest.raises(StateError) as info:
            rt.create_function("first", code, "app.handler")
        assert info.value.errno == errno.ENOSPC and "the change is in effect in this process" in str(info.value)
        assert rt.get_function("first").function_name == "first"
        monkeypatch.setattr(StateStore, "write", real_write)
        rt.create_function("second", code, "app.handler")
    with sandbox.Runtime(state_dir=str(tmp_path / "state")) as rt:
        assert [fc.function_name for fc in rt.list_functions()] == ["first", "second"]
