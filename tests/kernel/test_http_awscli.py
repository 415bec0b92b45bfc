"""`sandbox serve` driven by the aws CLI (PyPI's awscli), unchanged: a zip
uploaded with fileb://, every invocation type, the log tail, versions, the
concurrency cap, Lambda's error classes, a refused signature, and a restart
with --state-dir that keeps the function invocable."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import conftest
from conftest import requires_sandbox_privileges
from http_helpers import ADMIN, ADMIN_SECRET, MEMORY, start_serve, write_credentials

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]


def _aws_command() -> list[str] | None:
    """The aws entry point run by the real interpreter (the pyenv shim costs
    ~120 ms a call); None when awscli is not installed."""
    for directory in (os.path.dirname(conftest.REAL_PYTHON), os.path.dirname(sys.executable)):
        script = os.path.join(directory, "aws")
        if os.path.isfile(script):
            return [conftest.REAL_PYTHON, script]
    found = shutil.which("aws")
    return [found] if found else None


AWS = _aws_command()
if AWS is None:
    pytest.skip("the aws CLI is not installed (pip install awscli; scripts/setup.sh does)", allow_module_level=True)

CODE = """\
import json, time
def handler(event, context):
    print("handling", json.dumps(event))
    return {"echo": event, "version": context.function_version}
def slow(event, context):
    time.sleep(event.get("sleep", 1))
    return "slept"
"""


class Aws:
    """Runs `aws --endpoint-url URL lambda ...` with credentials in the
    environment and a private, empty configuration."""

    def __init__(self, url, home, access=ADMIN, secret=ADMIN_SECRET):
        self.url = url
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret,
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(home / "config"),
                    "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"), "AWS_EC2_METADATA_DISABLED": "true",
                    "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard", "AWS_PAGER": ""}
        for name in ("config", "credentials"):
            (home / name).touch()

    def run(self, *args, check=True) -> subprocess.CompletedProcess:
        done = subprocess.run([*AWS, "--endpoint-url", self.url, "--output", "json", "--cli-read-timeout", "60",
                               "lambda", *args], env=self.env, capture_output=True, text=True, timeout=120)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def json(self, *args) -> dict:
        return json.loads(self.run(*args).stdout)

    def error(self, *args) -> tuple[str, int]:
        """A call that must fail: the CLI's error line ("An error occurred
        (Type) when calling ...") and the HTTP status (from --debug's log)."""
        done = self.run("--debug", *args, check=False)
        assert done.returncode != 0, done.stdout
        statuses = re.findall(r'"(?:GET|POST|PUT|DELETE) [^"]+ HTTP/1.1" (\d{3})', done.stderr)
        message = [line for line in done.stderr.splitlines() if line.startswith("An error occurred")]
        assert statuses and message, done.stderr[-3000:]
        return message[-1], int(statuses[-1])


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("aws-home")


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return tmp_path_factory.mktemp("state") / "dir"


@pytest.fixture(scope="module")
def served(tmp_path_factory, state):
    conftest._drain_supervisor()
    before = conftest.LeakSnapshot()
    credentials = write_credentials(tmp_path_factory.mktemp("keys") / "credentials.json")
    server = start_serve("--credentials", credentials, "--state-dir", str(state))
    assert server.url, server.output
    yield server
    assert server.stop() == 0
    conftest.assert_no_leaks(before)       # the servers' sandboxes were their descendants, so ours


@pytest.fixture(scope="module")
def aws(served, home):
    return Aws(served.url, home)


@pytest.fixture(scope="module")
def function_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("code") / "function.zip"
    path.write_bytes(conftest.zip_of({"app.py": CODE}))
    return path


def create(aws, name, zip_path, handler="app.handler"):
    return aws.json("create-function", "--function-name", name, "--runtime", "python3", "--handler", handler,
                    "--role", "arn:aws:iam::123456789012:role/any", "--memory-size", str(MEMORY), "--timeout", "5",
                    "--zip-file", f"fileb://{zip_path}")


def invoke(aws, tmp_path, name, payload="{}", *extra):
    """The payload goes as fileb:// (raw bytes in aws CLI v1 and v2 alike)."""
    out, event = tmp_path / "out.json", tmp_path / "event.json"
    event.write_text(payload)
    meta = aws.json("invoke", "--function-name", name, "--payload", f"fileb://{event}", *extra, str(out))
    return meta, out.read_bytes() if out.exists() else b""


def test_create_and_invoke_every_type_with_the_log_tail(aws, function_zip, tmp_path):
    created = create(aws, "cli-echo", function_zip)
    assert created["FunctionName"] == "cli-echo" and created["Version"] == "$LATEST"
    assert created["CodeSize"] == function_zip.stat().st_size

    meta, body = invoke(aws, tmp_path, "cli-echo", '{"n": 1}', "--log-type", "Tail")
    assert meta["StatusCode"] == 200 and "FunctionError" not in meta and meta["ExecutedVersion"] == "$LATEST"
    assert json.loads(body) == {"echo": {"n": 1}, "version": "$LATEST"}
    log = base64.b64decode(meta["LogResult"]).decode()
    assert 'handling {"n": 1}' in log and "REPORT RequestId:" in log

    meta, body = invoke(aws, tmp_path, "cli-echo", '{"n": 2}', "--invocation-type", "Event")
    assert meta["StatusCode"] == 202 and body == b""
    meta, body = invoke(aws, tmp_path, "cli-echo", "{}", "--invocation-type", "DryRun")
    assert meta["StatusCode"] == 204 and body == b""


def test_publish_and_invoke_a_version(aws, function_zip, tmp_path):
    published = aws.json("publish-version", "--function-name", "cli-echo", "--description", "first")
    assert published["Version"] == "1"
    meta, body = invoke(aws, tmp_path, "cli-echo", '{"v": 1}', "--qualifier", "1")
    assert meta["ExecutedVersion"] == "1" and json.loads(body)["version"] == "1"
    versions = aws.json("list-versions-by-function", "--function-name", "cli-echo")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]
    assert [f["FunctionName"] for f in aws.json("list-functions")["Functions"]] == ["cli-echo"]


def test_errors_name_lambdas_exception_classes(aws, function_zip, tmp_path):
    message, status = aws.error("get-function", "--function-name", "missing")
    assert "(ResourceNotFoundException)" in message and status == 404
    message, status = aws.error("invoke", "--function-name", "missing", str(tmp_path / "out.json"))
    assert "(ResourceNotFoundException)" in message and status == 404
    big = tmp_path / "big.json"
    big.write_bytes(b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    message, status = aws.error("invoke", "--function-name", "cli-echo", "--payload", f"fileb://{big}",
                                str(tmp_path / "out.json"))
    assert "(RequestTooLargeException)" in message and status == 413
    revision = aws.json("get-function", "--function-name", "cli-echo")["Configuration"]["RevisionId"]
    stale = revision[:-1] + ("0" if revision[-1] != "0" else "1")
    message, status = aws.error("update-function-configuration", "--function-name", "cli-echo", "--timeout", "6",
                                "--revision-id", stale)
    assert "(PreconditionFailedException)" in message and status == 412


def test_the_concurrency_cap_throttles(aws, function_zip, tmp_path):
    create(aws, "cli-off", function_zip)
    assert aws.json("put-function-concurrency", "--function-name", "cli-off",
                    "--reserved-concurrent-executions", "0") == {"ReservedConcurrentExecutions": 0}
    message, status = aws.error("invoke", "--function-name", "cli-off", str(tmp_path / "out.json"))
    assert "(TooManyRequestsException)" in message and status == 429
    aws.run("delete-function-concurrency", "--function-name", "cli-off")
    meta, _ = invoke(aws, tmp_path, "cli-off")
    assert meta["StatusCode"] == 200
    aws.run("delete-function", "--function-name", "cli-off")


def test_a_bad_secret_key_is_refused(served, home):
    message, status = Aws(served.url, home, ADMIN, "not-the-secret").error("list-functions")
    assert "(InvalidSignatureException)" in message and "signature we calculated does not match" in message
    assert status == 403
    message, status = Aws(served.url, home, "AKIAUNKNOWN000000001", "x").error("list-functions")
    assert "(UnrecognizedClientException)" in message and status == 403


def test_a_restart_with_the_state_dir_keeps_the_function(served, state, home, tmp_path):
    aws = Aws(served.url, home)
    before = aws.json("get-function", "--function-name", "cli-echo")["Configuration"]
    assert served.stop() == 0
    again = start_serve("--credentials", _credentials_of(served), "--state-dir", str(state))
    assert again.url, again.output
    try:
        aws = Aws(again.url, home)
        after = aws.json("get-function", "--function-name", "cli-echo")["Configuration"]
        assert after == before
        meta, body = invoke(aws, tmp_path, "cli-echo", '{"after": "restart"}')
        assert meta["StatusCode"] == 200 and json.loads(body)["echo"] == {"after": "restart"}
        meta, body = invoke(aws, tmp_path, "cli-echo", "{}", "--qualifier", "1")
        assert meta["ExecutedVersion"] == "1"
    finally:
        assert again.stop() == 0


def _credentials_of(served) -> str:
    args = served.process.args
    return args[args.index("--credentials") + 1]
