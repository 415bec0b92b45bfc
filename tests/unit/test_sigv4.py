"""SigV4 verification (sandbox/http/sigv4.py) against requests signed by
botocore itself; every part of a signed request, tampered, is refused."""
from __future__ import annotations

import hashlib
import time
from urllib.parse import urlsplit

import pytest

botocore = pytest.importorskip("botocore")
from botocore.auth import SigV4Auth, SigV4QueryAuth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from sandbox.http.sigv4 import (IncompleteSignature, InvalidSignature, Key, MissingAuthenticationToken,  # noqa: E402
                                UnrecognizedClient, Verifier, canonical_path)

ACCESS, SECRET, PRINCIPAL = "AKIATESTKEY0000001", "s3cr3t/with+chars", "arn:aws:iam::123456789012:user/alice"
ENDPOINT = "http://127.0.0.1:9001"


def verifier(**kwargs):
    return Verifier({ACCESS: Key(SECRET, PRINCIPAL)}, "us-east-1", **kwargs)


def sign(method="POST", path="/2015-03-31/functions/hello/invocations", query="", body=b'{"a": 1}',
         headers=None, access=ACCESS, secret=SECRET, region="us-east-1", service="lambda", token=None,
         presign=False):
    url = ENDPOINT + path + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={"X-Amz-Invocation-Type": "RequestResponse", **(headers or {})})
    credentials = Credentials(access, secret, token)
    if presign:
        SigV4QueryAuth(credentials, service, region, expires=60).add_auth(request)
    else:
        SigV4Auth(credentials, service, region).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    sent = [("Host", parts.netloc)] + list(prepared.headers.items())
    return {"method": method, "raw_path": parts.path, "raw_query": parts.query, "headers": sent,
            "body": prepared.body or b""}


def check(request, v=None):
    signed = (v or verifier()).check(request["method"], request["raw_path"], request["raw_query"],
                                     request["headers"])
    body = request["body"] if isinstance(request["body"], bytes) else request["body"].encode()
    return signed.verify(hashlib.sha256(body).hexdigest())


def replace_header(request, name, value):
    request["headers"] = [(k, value if k.lower() == name.lower() else v) for k, v in request["headers"]]
    return request


def test_botocore_signed_request_verifies_and_names_the_principal():
    assert check(sign()) == PRINCIPAL


def test_arn_in_path_is_double_encoded_as_botocore_signs_it():
    path = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ahello/invocations"
    assert canonical_path(path) == path.replace("%", "%25")
    assert check(sign(path=path)) == PRINCIPAL


def test_query_and_get_without_body_verify():
    assert check(sign(method="GET", path="/2015-03-31/functions", query="Marker=a%2Fb&MaxItems=2", body=b"")) \
        == PRINCIPAL
    assert check(sign(method="DELETE", path="/2015-03-31/functions/f", query="Qualifier=%24LATEST", body=b"")) \
        == PRINCIPAL


@pytest.mark.parametrize("tamper", [
    lambda r: r.update(method="PUT"),
    lambda r: r.update(raw_path="/2015-03-31/functions/other/invocations"),
    lambda r: r.update(raw_query="Qualifier=1"),
    lambda r: r.update(body=b'{"a": 2}'),
    lambda r: replace_header(r, "X-Amz-Invocation-Type", "Event"),
    lambda r: replace_header(r, "Host", "127.0.0.1:9002"),
    lambda r: replace_header(r, "Authorization", r["auth"][:-1] + ("0" if r["auth"][-1] != "0" else "1")),
], ids=["method", "path", "query", "body", "signed-header", "host", "signature"])
def test_each_tampered_part_is_refused(tamper):
    request = sign()
    request["auth"] = dict((k, v) for k, v in request["headers"])["Authorization"]
    tamper(request)
    with pytest.raises(InvalidSignature) as info:
        check(request)
    assert info.value.status_code == 403 and info.value.error_type == "InvalidSignatureException"
    assert info.value.to_dict() == {"message": info.value.message}


def test_unsigned_x_amz_header_is_refused():
    request = sign()
    request["headers"].append(("X-Amz-Log-Type", "Tail"))
    with pytest.raises(InvalidSignature, match="x-amz-log-type must be signed"):
        check(request)


def test_wrong_secret_and_unknown_key():
    with pytest.raises(InvalidSignature):
        check(sign(secret="wrong"))
    with pytest.raises(UnrecognizedClient) as info:
        check(sign(access="AKIAUNKNOWN0000001"))
    assert info.value.error_type == "UnrecognizedClientException" and info.value.status_code == 403
    with pytest.raises(UnrecognizedClient):
        check(sign(token="session-token"))


def test_missing_and_malformed_authorization():
    request = sign()
    request["headers"] = [(k, v) for k, v in request["headers"] if k != "Authorization"]
    with pytest.raises(MissingAuthenticationToken) as info:
        check(request)
    assert info.value.error_type == "MissingAuthenticationTokenException"
    for bad in ("Bearer abc", "AWS4-HMAC-SHA256 Credential=x", "AWS4-HMAC-SHA256 Credential=a/b/c, "
                "SignedHeaders=host, Signature=zz"):
        with pytest.raises(IncompleteSignature):
            check(replace_header(sign(), "Authorization", bad))
    no_date = sign()
    no_date["headers"] = [(k, v) for k, v in no_date["headers"] if k != "X-Amz-Date"]
    with pytest.raises(IncompleteSignature):
        check(no_date)


def test_wrong_region_or_service_scope():
    with pytest.raises(InvalidSignature, match="valid region"):
        check(sign(region="eu-west-1"))
    with pytest.raises(InvalidSignature, match="correct service: 'lambda'"):
        check(sign(service="s3"))


def test_clock_skew_over_five_minutes_is_refused():
    request = sign()
    assert check(request, verifier(clock=lambda: time.time() + 240)) == PRINCIPAL
    with pytest.raises(InvalidSignature, match="Signature expired"):
        check(request, verifier(clock=lambda: time.time() + 360))
    with pytest.raises(InvalidSignature, match="not yet current"):
        check(request, verifier(clock=lambda: time.time() - 360))


def test_content_sha256_header_must_match_the_body():
    body = b'{"a": 1}'
    request = sign(headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}, body=body)
    assert check(request) == PRINCIPAL
    request["body"] = b'{"a": 3}'
    with pytest.raises(InvalidSignature, match="x-amz-content-sha256"):
        check(request)
    with pytest.raises(InvalidSignature, match="unsigned payloads"):
        check(sign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}))


def test_presigned_query_form():
    request = sign(method="GET", path="/2015-03-31/functions/hello", body=b"", presign=True)
    assert "X-Amz-Signature=" in request["raw_query"]
    assert check(request) == PRINCIPAL
    with pytest.raises(InvalidSignature, match="expired"):
        check(request, verifier(clock=lambda: time.time() + 120))
    tampered = dict(request, raw_path="/2015-03-31/functions/other")
    with pytest.raises(InvalidSignature):
        check(tampered)


def test_configuration_is_validated():
    with pytest.raises(ValueError):
        Verifier({"short": Key(SECRET, PRINCIPAL)}, "us-east-1")
    with pytest.raises(ValueError):
        Verifier({ACCESS: Key("", PRINCIPAL)}, "us-east-1")
