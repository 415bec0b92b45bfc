"""Resource policies as data: statement matching and validation (no sandboxes)."""
import json

import pytest

from sandbox.functions.errors import InvalidParameterValueException, ResourceConflictException, \
    ResourceNotFoundException
from sandbox.functions.permissions import PolicyLengthExceededException, Policy, make_statement

ARN = "arn:aws:lambda:us-east-1:123456789012:function:f"
INVOKE = "lambda:InvokeFunction"


def statement(**kw):
    base = dict(statement_id="s1", action=INVOKE, principal="111122223333", resource=ARN)
    base.update(kw)
    return make_statement(**base)


@pytest.mark.parametrize("principal,caller,allowed", [
    ("*", "arn:aws:iam::999999999999:user/x", True),
    ("111122223333", "arn:aws:iam::111122223333:role/r", True),
    ("111122223333", "arn:aws:iam::444455556666:role/r", False),
    ("arn:aws:iam::111122223333:role/r", "arn:aws:iam::111122223333:role/r", True),
    ("arn:aws:iam::111122223333:role/r", "arn:aws:iam::111122223333:role/other", False),
    ("s3.amazonaws.com", "s3.amazonaws.com", True),
    ("s3.amazonaws.com", "sns.amazonaws.com", False),
])
def test_principals(principal, caller, allowed):
    assert statement(principal=principal).allows(INVOKE, caller, None, None) is allowed


def test_actions_and_conditions():
    s = statement(principal="s3.amazonaws.com", source_arn="arn:aws:s3:::bucket-*", source_account="111122223333")
    assert s.allows(INVOKE, "s3.amazonaws.com", "arn:aws:s3:::bucket-a", "111122223333")
    assert not s.allows(INVOKE, "s3.amazonaws.com", "arn:aws:s3:::other", "111122223333")
    assert not s.allows(INVOKE, "s3.amazonaws.com", None, "111122223333")
    assert not s.allows(INVOKE, "s3.amazonaws.com", "arn:aws:s3:::bucket-a", "444455556666")
    assert not s.allows("lambda:GetFunction", "s3.amazonaws.com", "arn:aws:s3:::bucket-a", "111122223333")
    assert statement(action="lambda:*").allows(INVOKE, "arn:aws:iam::111122223333:root", None, None)


def test_policy_document_shape_and_lifecycle():
    policy = Policy()
    policy.add(statement())
    policy.add(statement(statement_id="s2", principal="s3.amazonaws.com", source_arn="arn:aws:s3:::b"))
    doc = json.loads(policy.to_json())
    assert doc["Version"] == "2012-10-17"
    first, second = doc["Statement"]
    assert first == {"Sid": "s1", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                     "Action": INVOKE, "Resource": ARN}
    assert second["Principal"] == {"Service": "s3.amazonaws.com"}
    assert second["Condition"] == {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::b"}}
    revision = policy.revision_id
    with pytest.raises(ResourceConflictException):
        policy.add(statement())
    policy.remove("s1")
    assert policy.revision_id != revision
    with pytest.raises(ResourceNotFoundException):
        policy.remove("s1")


def test_policy_size_is_capped():
    policy = Policy()
    with pytest.raises(PolicyLengthExceededException):
        for i in range(1000):
            policy.add(statement(statement_id=f"s{i}", source_arn="arn:aws:s3:::" + "b" * 200))
    assert len(policy.to_json()) <= 20 * 1024


@pytest.mark.parametrize("kw", [dict(statement_id="bad id"), dict(statement_id=""), dict(action="s3:GetObject"),
                                dict(principal=""), dict(principal="a b"), dict(source_account="12"),
                                dict(source_arn="")])
def test_bad_parameters_are_refused(kw):
    with pytest.raises(InvalidParameterValueException):
        statement(**kw)
