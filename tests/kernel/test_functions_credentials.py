"""Execution-role credentials on real sandboxes: handed to the handler as
Lambda's variables, never on a command line; environments retired and
credentials renewed before they expire; a failing provider is a service
error, not a crash."""
import json
import os
import time

import pytest

import sandbox
from conftest import requires_sandbox_privileges
from sandbox.functions import ServiceException
from sandbox.functions.credentials import Credentials

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]
HANDLER = """import os
def handler(event, context):
    env = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    cmdlines = [open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
                for p in os.listdir("/proc") if p.isdigit()]
    env["secret_in_a_cmdline"] = any(env["AWS_SECRET_ACCESS_KEY"] in c for c in cmdlines)
    env["stream"] = context.log_stream_name
    return env
"""


@pytest.fixture
def code(tmp_path):
    (tmp_path / "app.py").write_text(HANDLER)
    return str(tmp_path)


def test_credentials_reach_the_handler_and_are_renewed_before_expiry(code, no_leaks):
    issued = []

    def provider():
        n = len(issued)
        issued.append(n)
        return {"AccessKeyId": f"ASIA{n:016d}", "SecretAccessKey": f"secret-{n}", "SessionToken": f"token-{n}",
                "Expiration": time.time() + 4}     # renewed a quarter of that before: after ~3 s

    with sandbox.Runtime() as rt:
        rt.create_function("f", code, "app.handler", memory_mb=1769, role=provider)
        first = json.loads(rt.invoke("f", b"{}").payload)
        assert first["AWS_ACCESS_KEY_ID"] == "ASIA0000000000000000"
        assert first["AWS_SECRET_ACCESS_KEY"] == "secret-0" and first["AWS_SESSION_TOKEN"] == "token-0"
        assert first["secret_in_a_cmdline"] is False
        assert json.loads(rt.invoke("f", b"{}").payload)["stream"] == first["stream"]   # still warm
        time.sleep(3.3)
        renewed = json.loads(rt.invoke("f", b"{}").payload)
        assert renewed["AWS_SECRET_ACCESS_KEY"] == "secret-1"
        assert renewed["stream"] != first["stream"]           # the old environment was retired
        assert "secret-0" not in json.dumps(rt.audit_records())


def test_a_failing_provider_is_a_service_error(code, no_leaks):
    def broken():
        raise RuntimeError("sts is down")

    with sandbox.Runtime() as rt:
        rt.create_function("f", code, "app.handler", memory_mb=1769, role=broken)
        with pytest.raises(ServiceException):
            rt.invoke("f", b"{}")
        rt.update_function_configuration("f", role=lambda: Credentials("AKIDEXAMPLE", "s", "t", time.time() + 600))
        assert json.loads(rt.invoke("f", b"{}").payload)["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"
