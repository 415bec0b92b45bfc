"""Every control-plane call of a Runtime lands in its hash-chained audit log:
action, caller, redacted parameters, result; an edited line is detected."""
import json

import pytest

import sandbox
from conftest import requires_sandbox_privileges
from sandbox.functions import ResourceConflictException
from sandbox.functions.audit import verify

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]


def test_control_plane_calls_are_recorded_and_tampering_is_detected(tmp_path, no_leaks):
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return 1\n")
    log = tmp_path / "audit.jsonl"
    with sandbox.Runtime(audit_log=str(log)) as rt:
        with rt.acting_as("arn:aws:iam::111122223333:user/alice"):
            rt.create_function("f", str(tmp_path), "app.handler", memory_mb=1769,
                               environment={"DB_PASSWORD": "hunter2"})
            with pytest.raises(ResourceConflictException):
                rt.create_function("f", str(tmp_path), "app.handler")
        rt.update_function_configuration("f", timeout_s=5)
        version = rt.publish_version("f").version
        rt.put_function_concurrency("f", 3)
        rt.add_permission("f", "s1", "lambda:InvokeFunction", "111122223333")
        rt.invoke("f", b"{}")                                   # the data plane is not audited
        rt.delete_function("f")
        head = rt.audit_head()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["action"] for r in records] == ["CreateFunction", "CreateFunction", "UpdateFunctionConfiguration",
                                              "PublishVersion", "PutFunctionConcurrency", "AddPermission",
                                              "DeleteFunction"]
    assert [r["result"] for r in records][:2] == ["Success", "Failure"]
    assert "ResourceConflictException" in records[1]["error"]
    assert records[0]["caller"] == "arn:aws:iam::111122223333:user/alice" and records[2]["caller"] is None
    assert "hunter2" not in log.read_text()                     # environment values are redacted
    assert records[0]["parameters"]["environment"] != {"DB_PASSWORD": "hunter2"}
    assert version == "1"
    assert verify(str(log), expect_head=head).ok
    lines = log.read_text().splitlines()
    lines[3] = lines[3].replace('"PublishVersion"', '"PublishVersion "')
    log.write_text("\n".join(lines) + "\n")
    result = verify(str(log))
    assert not result.ok and result.first_bad_line == 4
