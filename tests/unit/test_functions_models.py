"""Functions and versions as data (sandbox/functions/models.py): Lambda's
names and limits, the FunctionConfiguration JSON shape, what makes a publish
a new version, and how names, "name:qualifier" and ARNs are split.  Pure."""
from __future__ import annotations

import dataclasses
import re

import pytest

from sandbox.functions import errors
from sandbox.functions.models import (ENVIRONMENT_BYTES, LATEST, FunctionConfiguration, check_environment,
                                      check_function_name, check_settings)
from sandbox.functions.packages import CodePackage
from sandbox.functions.names import split_name
from sandbox.functions.spec import RESERVED_VARIABLES

Invalid = errors.InvalidParameterValueException
ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"


def package(sha="a" * 64, code_sha="Y29kZQ==", size=321) -> CodePackage:
    return CodePackage(sha256=sha, code_sha256=code_sha, code_size=size, unzipped_size=size * 2,
                       path=f"/store/{sha}")


def settings(**changes) -> dict:
    base = dict(runtime="python3", handler="app.handler", memory_mb=128, timeout_s=3, environment=None,
                ephemeral_storage_mb=512, policy="default", network="none", description="")
    base.update(changes)
    return base


def configuration(**changes) -> FunctionConfiguration:
    values = dict(function_name="fn", function_arn=ARN, version=LATEST, runtime="python3",
                  handler="app.handler", code=package())
    values.update(changes)
    return FunctionConfiguration(**values)


# -- function names -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["f", "my-function_1", "A" * 64, "0", "-", "_"])
def test_valid_function_names(name):
    assert check_function_name(name) == name


@pytest.mark.parametrize("name", ["", "A" * 65, "has space", "fn:1", "fn/x", "fn.x", "ünï", "\nfn", None, 7,
                                  b"fn", ARN])
def test_invalid_function_names(name):
    with pytest.raises(Invalid) as info:
        check_function_name(name)
    assert "functionName" in info.value.message
    assert info.value.status_code == 400 and info.value.error_type == "InvalidParameterValueException"


def test_function_name_with_a_trailing_newline_is_refused():
    with pytest.raises(Invalid):
        check_function_name("fn\n")


def test_variable_name_with_a_trailing_newline_is_refused():
    with pytest.raises(Invalid):
        check_environment({"AB\n": "v"})


def test_handler_with_a_trailing_newline_is_refused():
    with pytest.raises(Invalid):
        check_settings(**settings(handler="app.handler\n"))


# -- settings ---------------------------------------------------------------------------
def test_settings_are_normalized():
    out = check_settings(**settings(runtime="python3", timeout_s=5.0, environment={"BB": "2", "A1": "1"}))
    assert out["timeout_s"] == 5 and type(out["timeout_s"]) is int
    assert out["environment"] == (("A1", "1"), ("BB", "2"))  # sorted, hashable
    assert out["runtime"] == "python3" and out["handler"] == "app.handler"


@pytest.mark.parametrize("memory", [128, 1769, 10240])
def test_memory_bounds_accepted(memory):
    assert check_settings(**settings(memory_mb=memory))["memory_mb"] == memory


@pytest.mark.parametrize("field,value", [
    ("memory_mb", 127), ("memory_mb", 10241), ("memory_mb", True), ("memory_mb", 256.0), ("memory_mb", "256"),
    ("timeout_s", 0), ("timeout_s", 901), ("timeout_s", 1.5), ("timeout_s", float("nan")),
    ("timeout_s", float("inf")), ("timeout_s", False), ("timeout_s", None),
    ("ephemeral_storage_mb", 511), ("ephemeral_storage_mb", 10241),
    ("runtime", "python2.7"), ("runtime", "nodejs20.x"), ("runtime", None),
    ("handler", ""), ("handler", "app handler"), ("handler", "a" * 129), ("handler", "app.\thandler"),
    ("handler", None),
    ("policy", ""), ("policy", None),
    ("network", "host"), ("network", None),
    ("description", "d" * 257), ("description", None),
])
def test_invalid_settings(field, value):
    with pytest.raises(Invalid):
        check_settings(**settings(**{field: value}))


@pytest.mark.parametrize("timeout", [1, 900, 3.0])
def test_timeout_bounds_accepted(timeout):
    assert check_settings(**settings(timeout_s=timeout))["timeout_s"] == int(timeout)


def test_handler_may_be_128_characters():
    assert check_settings(**settings(handler="a" * 126 + ".h"))["handler"] == "a" * 126 + ".h"


# -- environment variables --------------------------------------------------------------
def test_no_environment():
    assert check_environment(None) == () and check_environment({}) == ()


@pytest.mark.parametrize("name", ["AB", "a1", "A_", "Key_With_123", "x" * 200])
def test_valid_variable_names(name):
    assert check_environment({name: "v"}) == ((name, "v"),)


@pytest.mark.parametrize("name", ["A", "1A", "_A", "A-B", "A.B", "A B", "", "É1", 5, None])
def test_invalid_variable_names(name):
    # Lambda's pattern is [a-zA-Z]([a-zA-Z0-9_])+: at least two characters.
    with pytest.raises(Invalid):
        check_environment({name: "v"})


@pytest.mark.parametrize("name", sorted(RESERVED_VARIABLES))
def test_reserved_variables_are_refused(name):
    with pytest.raises(Invalid) as info:
        check_environment({"FINE": "1", name: "x"})
    if not name.startswith("_"):  # those already fail the name pattern
        assert "reserved keys" in info.value.message and name in info.value.message


def test_reserved_set_covers_lambdas_runtime_and_platform_variables():
    expected = {"_HANDLER", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
                "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT",
                "LAMBDA_RUNTIME_DIR", "_X_AMZN_TRACE_ID"}
    assert expected <= RESERVED_VARIABLES


@pytest.mark.parametrize("value", [b"bytes", 1, None, ["x"], "nul\0inside"])
def test_variable_values_must_be_strings_without_nul(value):
    with pytest.raises(Invalid):
        check_environment({"KEY": value})


@pytest.mark.parametrize("variables", [["AB", "c"], ("AB", "c"), "AB=c"])
def test_environment_must_be_a_dict(variables):
    with pytest.raises(Invalid):
        check_environment(variables)


def test_environment_cap_is_4kb_of_names_and_values():
    assert ENVIRONMENT_BYTES == 4096
    at_cap = {"AB": "v" * (4096 - 2)}
    assert check_environment(at_cap) == (("AB", "v" * 4094),)
    with pytest.raises(Invalid) as info:
        check_environment({"AB": "v" * (4096 - 1)})
    assert "4KB" in info.value.message


def test_environment_cap_counts_all_variables_together():
    many = {f"K{i:03d}": "v" * 96 for i in range(41)}       # 41 * 100 = 4100 bytes
    with pytest.raises(Invalid):
        check_environment(many)
    many.pop("K000")
    assert len(check_environment(many)) == 40


def test_environment_cap_counts_utf8_bytes_not_characters():
    # 2100 characters, 4200 bytes.
    with pytest.raises(Invalid):
        check_environment({"AB": "é" * 2100})
    assert check_environment({"AB": "é" * 1000})


# -- FunctionConfiguration ---------------------------------------------------------------
def test_to_dict_has_lambdas_shape():
    fc = configuration(memory_mb=256, timeout_s=9, environment=(("A1", "x"),), description="d",
                       ephemeral_storage_mb=1024)
    d = fc.to_dict()
    assert d == {
        "FunctionName": "fn", "FunctionArn": ARN, "Runtime": "python3", "Handler": "app.handler",
        "CodeSize": 321, "CodeSha256": "Y29kZQ==", "Description": "d", "Timeout": 9, "MemorySize": 256,
        "LastModified": fc.last_modified, "Version": LATEST, "Environment": {"Variables": {"A1": "x"}},
        "EphemeralStorage": {"Size": 1024}, "RevisionId": fc.revision_id, "State": "Active",
        "LastUpdateStatus": "Successful", "PackageType": "Zip", "Architectures": ["x86_64"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", d["LastModified"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", d["RevisionId"])


def test_to_dict_of_a_published_version_has_a_qualified_arn():
    d = configuration(version="7").to_dict()
    assert d["FunctionArn"] == ARN + ":7" and d["Version"] == "7"


def test_to_dict_is_json_serializable():
    import json

    assert json.loads(json.dumps(configuration().to_dict()))["FunctionName"] == "fn"


def test_configurations_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        configuration().memory_mb = 256


def test_updated_gives_a_new_revision():
    fc = configuration()
    new = fc.updated(memory_mb=512)
    assert new.memory_mb == 512 and fc.memory_mb == 128
    assert new.revision_id != fc.revision_id
    assert new.function_name == fc.function_name and new.code == fc.code


def test_same_deployment_ignores_names_dates_revisions_and_description():
    fc = configuration()
    assert fc.same_deployment(fc)
    assert fc.same_deployment(fc.updated(version="3", description="other"))
    assert fc.same_deployment(dataclasses.replace(fc, function_arn=ARN + "x", last_modified="then"))
    # Code is compared by content address, not by object identity or path.
    assert fc.same_deployment(dataclasses.replace(fc, code=package(code_sha="other", size=1)))


@pytest.mark.parametrize("change", [
    {"memory_mb": 256}, {"timeout_s": 4}, {"handler": "app.other"}, {"environment": (("A1", "x"),)},
    {"ephemeral_storage_mb": 1024}, {"policy": "strict"}, {"runtime": "python3.11"},
    {"code": package(sha="b" * 64)},
])
def test_same_deployment_sees_code_and_configuration_changes(change):
    fc = configuration()
    assert not fc.same_deployment(dataclasses.replace(fc, **change))
    assert not dataclasses.replace(fc, **change).same_deployment(fc)


# -- names, qualifiers and ARNs ------------------------------------------------------------
@pytest.mark.parametrize("name,qualifier,expected", [
    ("fn", None, ("fn", None)),
    ("fn", "1", ("fn", "1")),
    ("fn:1", None, ("fn", "1")),
    ("fn:$LATEST", None, ("fn", "$LATEST")),
    ("fn:1", "1", ("fn", "1")),
    (ARN, None, ("fn", None)),
    (ARN + ":3", None, ("fn", "3")),
    (ARN, "3", ("fn", "3")),
    (ARN + ":$LATEST", "$LATEST", ("fn", "$LATEST")),
])
def test_split_name(name, qualifier, expected):
    assert split_name(name, qualifier) == expected


@pytest.mark.parametrize("name", ["", None, 5, "a:b:c", "arn:aws:lambda:us-east-1:123456789012:layer:fn",
                                  "arn:aws:lambda:us-east-1:123456789012:function",
                                  ARN + ":1:extra"])
def test_split_name_refuses_what_names_no_function(name):
    with pytest.raises(errors.ResourceNotFoundException) as info:
        split_name(name)
    assert info.value.status_code == 404


@pytest.mark.parametrize("name,qualifier", [("fn:1", "2"), (ARN + ":1", "$LATEST")])
def test_split_name_refuses_conflicting_qualifiers(name, qualifier):
    with pytest.raises(Invalid):
        split_name(name, qualifier)


# -- service errors -----------------------------------------------------------------------
@pytest.mark.parametrize("cls,status,kind", [
    (errors.ResourceNotFoundException, 404, "User"), (errors.ResourceConflictException, 409, "User"),
    (errors.InvalidParameterValueException, 400, "User"), (errors.InvalidRequestContentException, 400, "User"),
    (errors.RequestTooLargeException, 413, "User"), (errors.ServiceException, 500, "Service"),
])
def test_error_shapes(cls, status, kind):
    exc = cls("what went wrong")
    assert isinstance(exc, errors.LambdaError)
    assert exc.status_code == status and exc.error_type == cls.__name__
    assert exc.to_dict() == {"Type": kind, "message": "what went wrong"}
    assert str(exc) == f"{cls.__name__}: what went wrong"


def test_throttle_error_carries_reason_and_retry_after():
    exc = errors.TooManyRequestsException("Rate Exceeded.", "ConcurrentInvocationLimitExceeded", 2)
    assert exc.status_code == 429 and exc.reason == "ConcurrentInvocationLimitExceeded"
    assert exc.to_dict() == {"Type": "User", "message": "Rate Exceeded.",
                             "Reason": "ConcurrentInvocationLimitExceeded", "retryAfterSeconds": "2"}
