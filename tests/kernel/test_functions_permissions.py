"""invoke() with a caller principal, on real sandboxes: allowed by the policy,
denied with AccessDeniedException (403) otherwise, per qualifier, for every
invocation type; the embedder itself is never refused."""
import json

import pytest

import sandbox
from conftest import requires_sandbox_privileges
from sandbox.functions import AccessDeniedException, ResourceNotFoundException

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]
CALLER = "arn:aws:iam::111122223333:role/caller"


@pytest.fixture
def rt(tmp_path, no_leaks):
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return 'ran'\n")
    with sandbox.Runtime() as runtime:
        runtime.create_function("f", str(tmp_path), "app.handler", memory_mb=1769)
        yield runtime


def test_without_a_policy_everyone_may_invoke(rt):
    assert rt.invoke("f", b"{}", principal=CALLER).payload == b'"ran"'
    with pytest.raises(ResourceNotFoundException):
        rt.get_policy("f")


def test_a_policy_allows_its_principals_and_denies_the_others(rt):
    added = json.loads(rt.add_permission("f", "allow-account", "lambda:InvokeFunction", "111122223333")["Statement"])
    assert added["Sid"] == "allow-account" and added["Resource"].endswith(":function:f")
    assert rt.invoke("f", b"{}", principal=CALLER).payload == b'"ran"'
    for invocation_type in ("RequestResponse", "Event", "DryRun"):
        with pytest.raises(AccessDeniedException) as info:
            rt.invoke("f", b"{}", principal="arn:aws:iam::444455556666:role/stranger", invocation_type=invocation_type)
        assert info.value.status_code == 403
    assert rt.invoke("f", b"{}").payload == b'"ran"'        # the embedder itself
    rt.remove_permission("f", "allow-account")
    assert rt.invoke("f", b"{}", principal="arn:aws:iam::444455556666:role/stranger").payload == b'"ran"'


def test_permissions_are_per_qualifier_with_conditions(rt):
    version = rt.publish_version("f").version
    rt.add_permission("f", "s3", "lambda:InvokeFunction", "s3.amazonaws.com", source_arn="arn:aws:s3:::uploads-*",
                      qualifier=version)
    assert json.loads(rt.get_policy("f", qualifier=version)["Policy"])["Statement"][0]["Resource"].endswith(
        f":function:f:{version}")
    assert rt.invoke("f", b"{}", qualifier=version, principal="s3.amazonaws.com",
                     source_arn="arn:aws:s3:::uploads-2024").payload == b'"ran"'
    with pytest.raises(AccessDeniedException):
        rt.invoke("f", b"{}", qualifier=version, principal="s3.amazonaws.com", source_arn="arn:aws:s3:::other")
    with pytest.raises(AccessDeniedException):     # the function now has a policy; $LATEST's allows nobody
        rt.invoke("f", b"{}", principal="s3.amazonaws.com", source_arn="arn:aws:s3:::uploads-2024")
