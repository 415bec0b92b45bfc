"""`sandbox serve` through boto3: RevisionId (every change makes a new one;
preconditions are checked atomically with the change), the signing key's
principal as the caller resource policies judge, and many requests at once
beside a long invocation."""
from __future__ import annotations

import json
import threading
import uuid

import pytest

import conftest
from conftest import requires_sandbox_privileges
from http_helpers import ADMIN, ADMIN_PRINCIPAL, ADMIN_SECRET, MEMORY, OTHER, OTHER_PRINCIPAL, OTHER_SECRET

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from sandbox.http.server import LambdaServer  # noqa: E402
from sandbox.http.sigv4 import Key  # noqa: E402

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]

CODE = """\
import time
def handler(event, context):
    return event
def slow(event, context):
    time.sleep(event["sleep"])
    return "slept"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runtimes = conftest.leak_checked_runtime()
    runtime = next(runtimes)
    keys = {ADMIN: Key(ADMIN_SECRET, ADMIN_PRINCIPAL), OTHER: Key(OTHER_SECRET, OTHER_PRINCIPAL)}
    served = LambdaServer(runtime, keys, port=0)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    served.shutdown()
    served.server_close()
    thread.join(5)
    next(runtimes, None)     # closes the runtime, then checks nothing leaked


def client(server, access=ADMIN, secret=ADMIN_SECRET):
    return boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=access,
                        aws_secret_access_key=secret,
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=60, max_pool_connections=64))


@pytest.fixture(scope="module")
def lam(server):
    return client(server)


def create(lam, name, handler="app.handler", **extra):
    return lam.create_function(FunctionName=name, Runtime="python3", Role="arn:aws:iam::123456789012:role/r",
                               Handler=handler, Code={"ZipFile": conftest.zip_of({"app.py": CODE})},
                               MemorySize=MEMORY, **extra)


def revision(lam, name, qualifier=None) -> str:
    extra = {"Qualifier": qualifier} if qualifier else {}
    return lam.get_function_configuration(FunctionName=name, **extra)["RevisionId"]


# -- RevisionId ------------------------------------------------------------------------------------
def test_every_change_makes_a_new_revision_and_stale_ones_are_refused(lam):
    seen = [create(lam, "revised")["RevisionId"]]
    changes = [
        lambda r: lam.update_function_code(FunctionName="revised", RevisionId=r,
                                           ZipFile=conftest.zip_of({"app.py": CODE + "\n# v2\n"})),
        lambda r: lam.update_function_configuration(FunctionName="revised", RevisionId=r, Timeout=9),
        lambda r: lam.publish_version(FunctionName="revised", RevisionId=r),
        lambda r: lam.add_permission(FunctionName="revised", RevisionId=r, StatementId="a",
                                     Action="lambda:InvokeFunction", Principal="123456789012"),
        lambda r: lam.remove_permission(FunctionName="revised", RevisionId=r, StatementId="a"),
    ]
    for change in changes:
        stale = seen[-2] if len(seen) > 1 else str(uuid.uuid4())
        with pytest.raises(lam.exceptions.PreconditionFailedException) as info:
            change(stale)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert revision(lam, "revised") == seen[-1]                 # the refused call changed nothing
        change(seen[-1])
        seen.append(revision(lam, "revised"))
    assert len(set(seen)) == len(seen)


def test_a_policy_shares_its_functions_revision(lam):
    create(lam, "policed")
    version = lam.publish_version(FunctionName="policed")["Version"]
    lam.add_permission(FunctionName="policed", StatementId="v", Action="lambda:InvokeFunction",
                       Principal="123456789012", Qualifier=version, RevisionId=revision(lam, "policed", version))
    assert lam.get_policy(FunctionName="policed", Qualifier=version)["RevisionId"] == \
        revision(lam, "policed", version)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_policy(FunctionName="policed")                      # $LATEST has none of its own
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.remove_permission(FunctionName="policed", StatementId="v", Qualifier=version,
                              RevisionId=revision(lam, "policed"))  # $LATEST's is not the version's
    lam.remove_permission(FunctionName="policed", StatementId="v", Qualifier=version,
                          RevisionId=revision(lam, "policed", version))


@pytest.mark.parametrize("operation", ["UpdateFunctionConfiguration", "AddPermission", "PublishVersion"])
def test_one_revision_admits_exactly_one_of_many_concurrent_changes(server, lam, operation):
    name = f"raced-{operation.lower()}"
    create(lam, name)
    start = revision(lam, name)
    clients = [client(server) for _ in range(8)]
    gate = threading.Barrier(len(clients))
    outcomes = []

    def change(i, c):
        gate.wait()
        try:
            if operation == "UpdateFunctionConfiguration":
                c.update_function_configuration(FunctionName=name, RevisionId=start, Description=f"writer {i}")
            elif operation == "AddPermission":
                c.add_permission(FunctionName=name, RevisionId=start, StatementId=f"s{i}",
                                 Action="lambda:InvokeFunction", Principal="123456789012")
            else:
                c.publish_version(FunctionName=name, RevisionId=start, Description=f"writer {i}")
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=change, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["PreconditionFailedException"] * 7 + ["ok"]
    lam.delete_function(FunctionName=name)


# -- the caller is the signing key's principal ----------------------------------------------------
def test_a_policy_naming_one_principal_admits_only_its_key(server, lam):
    create(lam, "personal")
    other = client(server, OTHER, OTHER_SECRET)
    lam.add_permission(FunctionName="personal", StatementId="mallory", Action="lambda:InvokeFunction",
                       Principal=OTHER_PRINCIPAL)
    assert json.loads(other.invoke(FunctionName="personal", Payload=b'"hi"')["Payload"].read()) == "hi"
    with pytest.raises(ClientError) as denied:
        lam.invoke(FunctionName="personal")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert f"User: {ADMIN_PRINCIPAL} is not authorized" in denied.value.response["Error"]["Message"]
    # An account id admits every principal of that account, and only those.
    lam.remove_permission(FunctionName="personal", StatementId="mallory")
    lam.add_permission(FunctionName="personal", StatementId="account", Action="lambda:InvokeFunction",
                       Principal="444455556666")
    assert other.invoke(FunctionName="personal")["StatusCode"] == 200
    with pytest.raises(ClientError):
        lam.invoke(FunctionName="personal", InvocationType="Event")


def test_control_plane_calls_are_recorded_under_the_signing_principal(server):
    other = client(server, OTHER, OTHER_SECRET)
    create(other, "made-by-other")
    other.add_permission(FunctionName="made-by-other", StatementId="x", Action="lambda:InvokeFunction",
                         Principal="*")
    records = [r for r in server.runtime.audit_records()
               if r.get("action") in ("CreateFunction", "AddPermission") and "made-by-other" in json.dumps(r)]
    assert len(records) == 2 and {r["caller"] for r in records} == {OTHER_PRINCIPAL}


# -- concurrency -------------------------------------------------------------------------------
def test_many_requests_at_once_beside_a_long_invocation(server, lam):
    create(lam, "long", handler="app.slow", Timeout=10)
    create(lam, "quick")
    assert lam.invoke(FunctionName="quick", Payload=b"0")["StatusCode"] == 200     # warm
    callers = [client(server) for _ in range(32)]
    slow = threading.Thread(target=lambda: lam.invoke(FunctionName="long", Payload=b'{"sleep": 5}'))
    slow.start()
    results, errors = [], []

    def call(i, c):
        try:
            kind = i % 4
            if kind == 0:
                results.append(len(c.list_functions(MaxItems=2)["Functions"]))
            elif kind == 1:
                results.append(c.get_function(FunctionName="quick")["Configuration"]["FunctionName"])
            elif kind == 2:
                results.append(c.invoke(FunctionName="quick", InvocationType="DryRun")["StatusCode"])
            else:
                results.append(c.invoke(FunctionName="quick", InvocationType="Event", Payload=b"1")["StatusCode"])
        except Exception as exc:        # noqa: BLE001 -- reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=call, args=(i, c)) for i, c in enumerate(callers)]
    for thread in threads:
        thread.start()
    sequential = [lam.invoke(FunctionName="quick", Payload=str(i).encode())["Payload"].read() for i in range(5)]
    for thread in threads:
        thread.join(60)
    assert slow.is_alive(), "the long invocation ended first: the check proved nothing"
    assert not errors and len(results) == 32
    assert sorted(set(map(str, results))) == ["2", "202", "204", "quick"]
    assert sequential == [b"0", b"1", b"2", b"3", b"4"]
    slow.join(30)
