"""The audit log (sandbox/functions/audit.py), its CLI and docs/audit.md."""
from __future__ import annotations

import argparse
import errno
import hashlib
import hmac
import json
import os
import re
import stat
import threading

import pytest

from sandbox.functions import audit
from sandbox.audit_cli import EXIT_BROKEN, EXIT_INVALID, EXIT_OK, add_audit_commands, cmd_audit_verify
from sandbox.functions.audit import (FAILURE, GENESIS, REDACTED, SUCCESS, AuditLog, AuditLogError, canonical,
                                     record_hash, redact, utc_timestamp, verify)

KEY = b"k" * 32
DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "audit.md")


def fill(log, count, start=0):
    for i in range(start, start + count):
        log.record(caller=f"user{i % 3}", action="UpdateFunctionCode",
                   parameters={"name": f"fn{i}", "code": b"zip" * i}, result=SUCCESS)


@pytest.fixture
def logfile(tmp_path):
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        fill(log, 6)
    return path


def lines_of(path):
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path, lines):
    path.write_bytes(b"".join(lines))


def rewrite(line: bytes, key=None, **changes) -> bytes:
    """The line with fields changed, re-serialised canonically, hash recomputed
    (an attacker without the key recomputing a plain hash)."""
    record = json.loads(line)
    record.update(changes)
    record["hash"] = record_hash(record, key)
    return canonical(record) + b"\n"


# -- the record format and the chain -------------------------------------------------

def test_record_format(tmp_path):
    path = tmp_path / "a.jsonl"
    with AuditLog(path, clock=lambda: 1714564800.1234) as log:
        written = log.record(caller="alice", action="CreateFunction",
                             parameters={"name": "hello", "memory_mb": 256}, result=SUCCESS)
    line = path.read_bytes()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = json.loads(line)
    assert record == written
    assert line[:-1] == json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    assert record["seq"] == 0 and record["prev"] == GENESIS
    assert record["time"] == "2024-05-01T12:00:00.123Z"
    assert record["error"] is None and record["result"] == "Success"
    body = {k: v for k, v in record.items() if k != "hash"}
    assert record["hash"] == hashlib.sha256(canonical(body)).hexdigest()


def test_timestamp_is_utc_with_milliseconds():
    assert utc_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_timestamp(1.5e9 + 0.0004))


def test_chain_links_every_record(logfile):
    records = [json.loads(line) for line in lines_of(logfile)]
    assert [r["seq"] for r in records] == list(range(6))
    for before, after in zip(records, records[1:]):
        assert after["prev"] == before["hash"]
    result = verify(logfile)
    assert result.ok and result.count == 6 and result.first_bad_line is None
    assert result.head == (5, records[-1]["hash"])


def test_many_threads_keep_one_chain(tmp_path):
    path = tmp_path / "a.jsonl"
    with AuditLog(path, fsync_every=0) as log:
        threads = [threading.Thread(target=fill, args=(log, 50)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.head()[0] == 399
        assert [r["seq"] for r in log.records()] == list(range(400))
    assert verify(path).count == 400


def test_in_memory_log():
    log = AuditLog(None)
    assert log.head() is None and log.records() == []
    fill(log, 3)
    records = log.records()
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert log.head() == (2, records[-1]["hash"])
    records[0]["caller"] = "someone else"   # a copy: the log is unchanged
    assert log.records()[0]["caller"] == "user0"


def test_reopen_continues_the_chain(logfile):
    before = verify(logfile).head
    with AuditLog(logfile) as log:
        assert log.head() == before
        written = log.record(caller=None, action="DeleteFunction", parameters={"name": "fn0"}, result=SUCCESS)
        assert written["seq"] == 6 and written["prev"] == before[1]
        assert len(log.records()) == 7
    assert verify(logfile).count == 7


def test_file_is_created_0600(tmp_path):
    path = tmp_path / "a.jsonl"
    old = os.umask(0)
    try:
        AuditLog(path).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_one_writer_per_file(logfile):
    with AuditLog(logfile):
        with pytest.raises(AuditLogError, match="another AuditLog"):
            AuditLog(logfile)
    AuditLog(logfile).close()   # free again once the first one closed


def test_closed_log_refuses_records(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    log.close()
    with pytest.raises(ValueError, match="closed"):
        fill(log, 1)


def test_arguments_are_checked_before_writing(tmp_path):
    path = tmp_path / "a.jsonl"
    with AuditLog(path) as log:
        for bad in ({"result": "OK"}, {"action": ""}, {"caller": 3}):
            kwargs = dict(caller="a", action="CreateFunction", parameters={}, result=SUCCESS) | bad
            with pytest.raises(ValueError):
                log.record(**kwargs)
    assert path.read_bytes() == b""
    with pytest.raises(ValueError):
        AuditLog(None, fsync_every=-1)


def test_a_failed_write_is_taken_back(logfile, monkeypatch):
    before = logfile.read_bytes()
    real_write = os.write

    def half_then_full_disk(fd, data):
        real_write(fd, data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with AuditLog(logfile) as log:
        monkeypatch.setattr(audit.os, "write", half_then_full_disk)
        with pytest.raises(OSError, match="No space"):
            fill(log, 1)
        assert logfile.read_bytes() == before and log.head()[0] == 5
        monkeypatch.setattr(audit.os, "write", real_write)
        fill(log, 1)
    assert verify(logfile).count == 7


def test_audited_records_success_and_failure():
    log = AuditLog(None)
    with log.audited("PublishVersion", {"name": "f"}, caller="bob"):
        pass
    with pytest.raises(KeyError):
        with log.audited("DeleteFunction", {"name": "g"}):
            raise KeyError("g")
    ok, failed = log.records()
    assert (ok["action"], ok["result"], ok["error"], ok["caller"]) == ("PublishVersion", SUCCESS, None, "bob")
    assert (failed["result"], failed["error"]) == (FAILURE, "KeyError: 'g'")


# -- tampering -----------------------------------------------------------------------

def tamper_edit(lines):
    lines[2] = lines[2].replace(b'"fn2"', b'"fn9"')
    return 3


def tamper_edit_rehashed(lines):     # plain hash recomputed: the next line's prev no longer matches
    lines[2] = rewrite(lines[2], caller="mallory")
    return 4


def tamper_delete(lines):
    del lines[3]
    return 4


def tamper_swap(lines):
    lines[1], lines[2] = lines[2], lines[1]
    return 2


def tamper_insert(lines):
    lines.insert(2, lines[4])
    return 3


def tamper_bad_json(lines):
    lines[4] = b'{"seq": 4, oops\n'
    return 5


def tamper_wrong_seq(lines):
    lines[3] = rewrite(lines[3], seq=7)
    return 4


def tamper_whitespace(lines):
    lines[1] = lines[1].replace(b'","', b'", "', 1)
    return 2


def tamper_blank_line(lines):
    lines.insert(5, b"\n")
    return 6


def tamper_torn_tail(lines):
    lines[5] = lines[5][:40]
    return 6


def tamper_extra_field(lines):
    record = json.loads(lines[0])
    record["note"] = "x"
    lines[0] = canonical(record) + b"\n"
    return 1


def tamper_first_prev(lines):
    lines[0] = rewrite(lines[0], prev="1" * 64)
    return 1


@pytest.mark.parametrize("tamper", [tamper_edit, tamper_edit_rehashed, tamper_delete, tamper_swap, tamper_insert,
                                    tamper_bad_json, tamper_wrong_seq, tamper_whitespace, tamper_blank_line,
                                    tamper_torn_tail, tamper_extra_field, tamper_first_prev])
def test_tampering_is_detected_at_the_right_line(logfile, tamper):
    lines = lines_of(logfile)
    bad_line = tamper(lines)
    write_lines(logfile, lines)
    result = verify(logfile)
    assert not result.ok and result.first_bad_line == bad_line, result
    assert result.count == bad_line - 1 and result.reason


@pytest.mark.parametrize("tamper, words", [
    (tamper_edit, "edited"), (tamper_delete, "deleted, inserted or moved"), (tamper_swap, "seq is 2, expected 1"),
    (tamper_bad_json, "not valid JSON"), (tamper_whitespace, "canonical"), (tamper_torn_tail, "torn write"),
    (tamper_edit_rehashed, "prev"), (tamper_extra_field, "unexpected ['note']"),
])
def test_reasons_say_what_happened(logfile, tamper, words):
    lines = lines_of(logfile)
    tamper(lines)
    write_lines(logfile, lines)
    assert words in verify(logfile).reason


def test_tail_truncation_needs_an_anchored_head(logfile):
    head = verify(logfile).head
    lines = lines_of(logfile)
    write_lines(logfile, lines[:4])
    assert verify(logfile).ok                      # a shorter chain is still a chain
    result = verify(logfile, expect_head=head)
    assert not result.ok and result.first_bad_line == 5 and "removed from the end" in result.reason


def test_anchored_head_allows_growth(logfile):
    head = verify(logfile).head
    with AuditLog(logfile) as log:
        fill(log, 3, start=6)
    assert verify(logfile, expect_head=head).ok


def test_anchored_head_catches_a_consistent_rewrite(logfile):
    head = verify(logfile).head
    lines = lines_of(logfile)
    prev = json.loads(lines[2])["hash"]
    for index in range(3, len(lines)):   # rewrite line 4 and re-chain everything after it
        lines[index] = rewrite(lines[index], prev=prev, caller="mallory" if index == 3 else None)
        prev = json.loads(lines[index])["hash"]
    write_lines(logfile, lines)
    assert verify(logfile).ok                      # plain mode cannot tell on its own
    result = verify(logfile, expect_head=head)
    assert not result.ok and result.first_bad_line == 6 and "rewritten" in result.reason


def test_expect_head_is_checked():
    with pytest.raises(ValueError):
        verify(os.devnull, expect_head=(0, "xyz"))
    assert verify(os.devnull).ok and verify(os.devnull).count == 0


def test_refuses_to_append_to_a_broken_file(logfile):
    lines = lines_of(logfile)
    tamper_delete(lines)
    write_lines(logfile, lines)
    before = logfile.read_bytes()
    with pytest.raises(AuditLogError, match="broken at line 4: seq is 4, expected 3") as caught:
        AuditLog(logfile)
    assert "sandbox audit verify" in str(caught.value) and caught.value.path == str(logfile)
    assert logfile.read_bytes() == before


def test_refuses_to_append_after_a_torn_write(logfile):
    write_lines(logfile, lines_of(logfile) + [b'{"action":"Cre'])
    with pytest.raises(AuditLogError, match="line 7: incomplete last line"):
        AuditLog(logfile)


# -- HMAC mode -----------------------------------------------------------------------

def test_hmac_chain(tmp_path):
    path = tmp_path / "a.jsonl"
    with AuditLog(path, key=KEY) as log:
        assert log.keyed
        fill(log, 4)
    record = json.loads(lines_of(path)[0])
    body = canonical({k: v for k, v in record.items() if k != "hash"})
    assert record["hash"] == hmac.new(KEY, body, hashlib.sha256).hexdigest()
    assert verify(path, key=KEY).count == 4
    wrong = verify(path, key=b"w" * 32)
    assert not wrong.ok and wrong.first_bad_line == 1 and "key is wrong" in wrong.reason
    unkeyed = verify(path)
    assert not unkeyed.ok and "keyed" in unkeyed.reason
    with AuditLog(path, key=KEY) as log:
        assert log.record(caller=None, action="X", parameters={}, result=SUCCESS)["seq"] == 4
    with pytest.raises(AuditLogError, match="line 1"):
        AuditLog(path)                                # opened without the key


def test_hmac_detects_a_rewrite_without_the_key(tmp_path):
    path = tmp_path / "a.jsonl"
    with AuditLog(path, key=KEY) as log:
        fill(log, 4)
    lines = lines_of(path)
    lines[1] = rewrite(lines[1], caller="mallory")               # recomputed as a plain hash
    write_lines(path, lines)
    result = verify(path, key=KEY)
    assert not result.ok and result.first_bad_line == 2 and "plain SHA-256" in result.reason


def test_short_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 16 bytes"):
        AuditLog(None, key=b"short")
    with pytest.raises(ValueError):
        verify(os.devnull, key=b"")


# -- redaction -----------------------------------------------------------------------

def test_redacts_secret_keys_at_any_depth():
    params = {
        "name": "f", "AWS_SECRET_ACCESS_KEY": "s", "aws_access_key_id": "AKIDEXAMPLE", "aws_session_token": "t",
        "secretAccessKey": "s", "Password": "p", "api-key": "k", "key": "k", "Credentials": {"a": 1},
        "private_key": "p", "Authorization": "Bearer x",
        "nested": [{"client_secret": "c", "S3Key": "code.zip", "kms_key_arn": "arn:aws:kms:x", "key_id": "k1"}],
    }
    out = redact(params)
    secret = ["AWS_SECRET_ACCESS_KEY", "aws_access_key_id", "aws_session_token", "secretAccessKey", "Password",
              "api-key", "key", "Credentials", "private_key", "Authorization"]
    assert all(out[name] == REDACTED for name in secret)
    assert out["name"] == "f"
    assert out["nested"] == [{"client_secret": REDACTED, "S3Key": "code.zip", "kms_key_arn": "arn:aws:kms:x",
                              "key_id": "k1"}]
    assert params["Password"] == "p"               # the caller's dict is untouched


def test_redacts_secret_looking_values():
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----"
    out = redact({"description": pem, "note": "id AKIAIOSFODNN7EXAMPLE here", "other": "AKIA-not-a-key"})
    assert out == {"description": REDACTED, "note": REDACTED, "other": "AKIA-not-a-key"}


def test_environment_keeps_names_drops_values():
    out = redact({"environment": {"DB_HOST": "db", "MODE": "x"},
                  "Environment": {"Variables": {"A": "1"}},
                  "env": ["A=1", "B"], "variables": [("C", "3")]})
    assert out == {"environment": {"DB_HOST": REDACTED, "MODE": REDACTED},
                   "Environment": {"Variables": {"A": REDACTED}},
                   "env": [f"A={REDACTED}", REDACTED], "variables": [["C", REDACTED]]}


def test_code_blobs_and_odd_values():
    def handler():
        pass

    class Thing:
        def __repr__(self):
            return "Thing(password='hunter2')"

    zipped = b"PK\x03\x04" + bytes(100)
    out = redact({"code": zipped, "buf": bytearray(b"ab"), "fn": handler, "obj": Thing(), "path": tmp_pathlike(),
                  "nan": float("nan"), "set": {2, 1}, "tuple": (1, None, True), 3: "int key",
                  "long": "x" * 5000})
    assert out["code"] == {"bytes": 104, "sha256": hashlib.sha256(zipped).hexdigest()}
    assert out["buf"] == {"bytes": 2, "sha256": hashlib.sha256(b"ab").hexdigest()}
    assert out["fn"].endswith("test_code_blobs_and_odd_values.<locals>.handler")
    assert "hunter2" not in out["obj"] and "Thing" in out["obj"]
    assert out["path"] == "/srv/code" and out["nan"] == "nan"
    assert out["set"] == [1, 2] and out["tuple"] == [1, None, True] and out["3"] == "int key"
    assert out["long"] == {"chars": 5000, "sha256": hashlib.sha256(b"x" * 5000).hexdigest()}
    canonical(out)   # JSON-ready


def tmp_pathlike():
    import pathlib
    return pathlib.PurePosixPath("/srv/code")


def test_cycles_do_not_recurse_forever():
    loop = {"a": 1}
    loop["self"] = loop
    assert redact(loop) == {"a": 1, "self": "<cycle>"}


def test_records_are_redacted_on_disk(tmp_path):
    path = tmp_path / "a.jsonl"
    with AuditLog(path) as log:
        log.record(caller="a", action="CreateFunction", result=FAILURE,
                   parameters={"name": "f", "code": b"secret code", "environment": {"TOKEN": "hunter2"},
                               "password": "hunter2"},
                   error="bad key AKIAIOSFODNN7EXAMPLE")
    text = path.read_text()
    assert "hunter2" not in text and "secret code" not in text and "AKIAIOSFODNN7EXAMPLE" not in text
    assert json.loads(text)["error"] == REDACTED


# -- CLI -----------------------------------------------------------------------------

def run(*argv):
    parser = argparse.ArgumentParser(prog="sandbox")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *argv])
    assert args.func is cmd_audit_verify
    return args.func(args)


def test_cli_ok(logfile, capsys):
    assert run("verify", str(logfile)) == EXIT_OK
    seq, digest = verify(logfile).head
    assert capsys.readouterr().out == f"ok: 6 records\nhead: {seq}:{digest}\n"
    assert run("verify", str(logfile), "--head", f"{seq}:{digest}") == EXIT_OK


def test_cli_broken(logfile, capsys):
    lines = lines_of(logfile)
    tamper_swap(lines)
    write_lines(logfile, lines)
    assert run("verify", str(logfile)) == EXIT_BROKEN
    assert capsys.readouterr().out.startswith("BROKEN at line 2: seq is 2, expected 1")


def test_cli_head_detects_truncation(logfile, capsys):
    seq, digest = verify(logfile).head
    write_lines(logfile, lines_of(logfile)[:-1])
    assert run("verify", str(logfile), "--head", f"{seq}:{digest}") == EXIT_BROKEN
    assert capsys.readouterr().out.startswith("BROKEN at line 6: the log ends at seq 4")


def test_cli_key_file(tmp_path, capsys):
    path, key_file = tmp_path / "a.jsonl", tmp_path / "audit.key"
    key_file.write_bytes(KEY)
    with AuditLog(path, key=KEY) as log:
        fill(log, 2)
    assert run("verify", str(path), "--key-file", str(key_file)) == EXIT_OK
    assert capsys.readouterr().out.startswith("ok: 2 records\n")
    assert run("verify", str(path)) == EXIT_BROKEN
    assert capsys.readouterr().out.startswith("BROKEN at line 1:")


def test_cli_unreadable_inputs(tmp_path, capsys):
    assert run("verify", str(tmp_path / "missing.jsonl")) == EXIT_INVALID
    assert "No such file" in capsys.readouterr().err
    (tmp_path / "empty.key").write_bytes(b"")
    assert run("verify", os.devnull, "--key-file", str(tmp_path / "empty.key")) == EXIT_INVALID
    assert "at least 16 bytes" in capsys.readouterr().err
    assert run("verify", os.devnull, "--head", "nonsense") == EXIT_INVALID
    assert "SEQ:HASH" in capsys.readouterr().err


# -- docs ----------------------------------------------------------------------------

def test_docs_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(DOCS) as src:
        blocks = re.findall(r"```python\n(.*?)```", src.read(), flags=re.S)
    assert blocks, "docs/audit.md lost its runnable example"
    for index, code in enumerate(blocks):
        exec(compile(code, f"docs/audit.md[block {index}]", "exec"), {"__name__": "__docs__"})
