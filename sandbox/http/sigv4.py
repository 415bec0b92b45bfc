"""Server-side verification of AWS Signature Version 4, as botocore signs.

A request is checked in two steps so that nothing is read from an unknown
caller: `Verifier.check()` looks at the request line and headers only (the
Authorization header or a presigned query, the access key, the credential
scope, the clock) and returns a `SignedRequest`; once the body has been read,
`SignedRequest.verify(body_sha256)` recomputes the signature and compares it
in constant time.  Every refusal is an `AuthError` (HTTP 403) carrying the
error type the AWS front end returns, which botocore turns into
`ClientError` with that code:

  MissingAuthenticationTokenException  no Authorization header and no presigned query
  IncompleteSignatureException         an Authorization header that cannot be parsed
  UnrecognizedClientException          unknown access key (or a session token: none is issued)
  InvalidSignatureException            wrong signature, scope, date, or a stale/future clock

The canonical request is botocore's (SigV4Auth.canonical_request): the path
as sent (still percent-encoded), dot segments and empty segments removed, then
percent-encoded again except "/" and "~" (Lambda, unlike S3, double-encodes);
the query pairs decoded and re-encoded with RFC 3986's unreserved set, sorted;
the signed headers lower-cased, trimmed, sorted; the payload's SHA-256 (or the
x-amz-content-sha256 header, which must then match the body).

Beyond what AWS insists on, every x-amz-* header of the request must be
signed (botocore signs them all): they select the invocation type and the
log tail, so an unsigned one could be changed in flight.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from ..functions.errors import LambdaError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 300                        # AWS refuses requests signed more than 5 minutes off
MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ACCESS_KEY = re.compile(r"[A-Za-z0-9]{16,128}")


class AuthError(LambdaError):
    """A request the signature check refuses (403).  The body is AWS's:
    {"message": ...}; the type goes in x-amzn-ErrorType."""
    status_code = 403
    kind = "User"

    def to_dict(self) -> dict:
        return {"message": self.message}


class MissingAuthenticationToken(AuthError):
    error_type = "MissingAuthenticationTokenException"


class IncompleteSignature(AuthError):
    error_type = "IncompleteSignatureException"


class UnrecognizedClient(AuthError):
    error_type = "UnrecognizedClientException"


class InvalidSignature(AuthError):
    error_type = "InvalidSignatureException"


_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
             "Secret Access Key and signing method. Consult the service documentation for details.")


@dataclass(frozen=True)
class Key:
    """A credential the server accepts: its secret and the principal (an ARN
    or account id) the caller acts as."""
    secret: str
    principal: str


def derive_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def canonical_path(raw_path: str) -> str:
    """botocore's _normalize_url_path: remove dot and empty segments, then
    percent-encode what was sent (so %3A becomes %253A)."""
    return quote(normalize_path(raw_path), safe="/~")


def normalize_path(raw_path: str) -> str:
    """RFC 3986 remove_dot_segments plus the removal of empty segments, as
    botocore does before signing (the server routes on the same path)."""
    if not raw_path:
        return "/"
    out: list[str] = []
    for segment in raw_path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
        else:
            out.append(segment)
    first = "/" if raw_path.startswith("/") else ""
    last = "/" if raw_path.endswith("/") and out else ""
    return first + "/".join(out) + last


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The decoded (name, value) pairs of a query string, in order."""
    pairs = []
    for pair in raw_query.split("&") if raw_query else ():
        name, _, value = pair.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def canonical_query(pairs) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_headers(headers, signed: list[str]) -> str:
    lines = []
    for name in signed:
        values = [" ".join(v.split()) for k, v in headers if k.lower() == name]
        lines.append(f"{name}:{','.join(values)}")
    return "\n".join(lines) + "\n"


@dataclass
class SignedRequest:
    """A request whose key, scope and clock are good; verify() decides."""
    principal: str
    access_key: str
    _key: bytes
    _timestamp: str
    _scope: str
    _prefix: str               # method, path, query, headers, signed header list: all but the payload hash
    _signature: str
    _claimed_payload: str | None

    def verify(self, body_sha256: str) -> str:
        """Check the signature against the body's SHA-256 (hex); returns the
        principal or raises InvalidSignature."""
        payload = body_sha256
        if self._claimed_payload is not None:
            if not hmac.compare_digest(self._claimed_payload, body_sha256):
                raise InvalidSignature("The provided 'x-amz-content-sha256' header does not match what was computed.")
            payload = self._claimed_payload
        canonical = self._prefix + payload
        string_to_sign = "\n".join((ALGORITHM, self._timestamp, self._scope,
                                    hashlib.sha256(canonical.encode()).hexdigest()))
        expected = hmac.new(self._key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), self._signature.encode()):
            raise InvalidSignature(_MISMATCH)
        return self.principal


class Verifier:
    """Checks requests against `keys` ({access key id: Key}) for one region
    and service.  `clock` returns the time (seconds since the epoch)."""

    def __init__(self, keys: dict, region: str, service: str = "lambda", max_skew_s: float = MAX_SKEW_S,
                 clock=None):
        import time

        for access_key, key in keys.items():
            if not isinstance(access_key, str) or not _ACCESS_KEY.fullmatch(access_key):
                raise ValueError(f"access key id {access_key!r} must be 16-128 letters and digits")
            if not isinstance(key, Key) or not key.secret or not key.principal:
                raise ValueError(f"access key {access_key}: a secret and a principal are required")
        self._keys = dict(keys)
        self.region, self.service = region, service
        self.max_skew_s = max_skew_s
        self._clock = clock or time.time

    def check(self, method: str, raw_path: str, raw_query: str, headers) -> SignedRequest:
        """`headers`: (name, value) pairs as received (repeats allowed).
        Raises AuthError; reads no body."""
        authorization = [v for k, v in headers if k.lower() == "authorization"]
        pairs = query_pairs(raw_query)
        presigned = any(k == "X-Amz-Algorithm" for k, _ in pairs)
        if len(authorization) > 1 or (authorization and presigned):
            raise IncompleteSignature("Only one authentication method is allowed per request.")
        if authorization:
            credential, signed, signature, timestamp = _parse_authorization(authorization[0], headers)
            expires = None
        elif presigned:
            credential, signed, signature, timestamp, expires = _parse_presigned(pairs)
            pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
        else:
            raise MissingAuthenticationToken("Missing Authentication Token")

        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise IncompleteSignature(f"Credential must have exactly 5 slash-delimited elements, e.g. "
                                      f"keyid/date/region/service/term, got '{credential}'")
        access_key, date, region, service, _ = parts
        key = self._keys.get(access_key)
        if key is None:
            raise UnrecognizedClient("The security token included in the request is invalid.")
        if any(k.lower() == "x-amz-security-token" for k, _ in headers) or \
                any(k == "X-Amz-Security-Token" for k, _ in pairs):
            raise UnrecognizedClient("The security token included in the request is invalid.")
        if region != self.region:
            raise InvalidSignature(f"Credential should be scoped to a valid region, not '{region}'. ")
        if service != self.service:
            raise InvalidSignature(f"Credential should be scoped to correct service: '{self.service}'. ")
        self._check_time(timestamp, date, expires)

        if "host" not in signed:
            raise InvalidSignature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
        unsigned = sorted({k.lower() for k, _ in headers if k.lower().startswith("x-amz-")} - set(signed))
        if unsigned:   # includes X-Amz-Date, which the Authorization form must sign
            raise InvalidSignature(f"Headers {', '.join(unsigned)} must be signed.")
        claimed = [v.strip() for k, v in headers if k.lower() == "x-amz-content-sha256"]
        if len(claimed) > 1 or (claimed and not _HEX64.fullmatch(claimed[0])):
            raise InvalidSignature("x-amz-content-sha256 must be the hex SHA-256 of the body "
                                   "(unsigned payloads are not accepted)")

        prefix = "\n".join((method.upper(), canonical_path(raw_path), canonical_query(pairs),
                            canonical_headers(headers, signed), ";".join(signed), ""))
        return SignedRequest(key.principal, access_key, derive_key(key.secret, date, region, service), timestamp,
                             f"{date}/{region}/{service}/aws4_request", prefix, signature,
                             claimed[0] if claimed else None)

    def _check_time(self, timestamp: str, date: str, expires: int | None) -> None:
        try:
            signed_at = datetime.datetime.strptime(timestamp, _AMZ_DATE).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            raise IncompleteSignature(f"Date must be in ISO-8601 'basic format'. Got '{timestamp}'.") from None
        if timestamp[:8] != date:
            raise InvalidSignature(f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                                   f"from HTTP: '{date}' != '{timestamp[:8]}', from '{timestamp}'.")
        now = datetime.datetime.fromtimestamp(self._clock(), datetime.timezone.utc)
        skew = datetime.timedelta(seconds=self.max_skew_s)
        show = now.strftime(_AMZ_DATE)
        if signed_at > now + skew:
            raise InvalidSignature(f"Signature not yet current: {timestamp} is still later than "
                                   f"{(now + skew).strftime(_AMZ_DATE)} ({show} + 5 min.)")
        if expires is None and signed_at < now - skew:
            raise InvalidSignature(f"Signature expired: {timestamp} is now earlier than "
                                   f"{(now - skew).strftime(_AMZ_DATE)} ({show} - 5 min.)")
        if expires is not None and now > signed_at + datetime.timedelta(seconds=expires):
            raise InvalidSignature(f"Signature expired: {timestamp} is now earlier than "
                                   f"{(now - datetime.timedelta(seconds=expires)).strftime(_AMZ_DATE)} "
                                   f"({show} - {expires} sec.)")


def _parse_authorization(value: str, headers):
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignature(f"Authorization header requires the {ALGORITHM} algorithm")
    fields = {}
    for item in rest.split(","):
        name, sep, content = item.strip().partition("=")
        if not sep or name in fields:
            raise IncompleteSignature(f"Authorization header is malformed near '{item.strip()}'")
        fields[name] = content
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(required):
            raise IncompleteSignature(f"Authorization header requires '{required}' parameter. "
                                      f"Authorization={value}")
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise IncompleteSignature(f"Authorization header has unknown parameters: {sorted(fields)}")
    dates = [v.strip() for k, v in headers if k.lower() == "x-amz-date"]
    if len(dates) != 1:
        raise IncompleteSignature("Authorization header requires existence of a 'X-Amz-Date' header. "
                                  f"Authorization={value}")
    return fields["Credential"], _signed_list(fields["SignedHeaders"]), _signature(fields["Signature"]), dates[0]


def _parse_presigned(pairs):
    values = {}
    for name, value in pairs:
        if name.startswith("X-Amz-"):
            if name in values:
                raise IncompleteSignature(f"Query parameter {name} is repeated")
            values[name] = value
    for required in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                     "X-Amz-SignedHeaders", "X-Amz-Signature"):
        if not values.get(required):
            raise IncompleteSignature(f"AWS query-string parameters must include '{required}'. "
                                      "Re-examine the query-string parameters.")
    if values["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignature(f"X-Amz-Algorithm must be {ALGORITHM}")
    expires = values["X-Amz-Expires"]
    if not expires.isdigit() or not 1 <= int(expires) <= MAX_PRESIGN_EXPIRES_S:
        raise IncompleteSignature(f"X-Amz-Expires must be between 1 and {MAX_PRESIGN_EXPIRES_S} seconds")
    return (values["X-Amz-Credential"], _signed_list(values["X-Amz-SignedHeaders"]),
            _signature(values["X-Amz-Signature"]), values["X-Amz-Date"], int(expires))


def _signed_list(text: str) -> list[str]:
    names = text.split(";")
    if any(not n or n != n.strip().lower() for n in names) or names != sorted(set(names)):
        raise IncompleteSignature(f"SignedHeaders must be lower-case, sorted and ';'-separated: '{text}'")
    return names


def _signature(text: str) -> str:
    if not _HEX64.fullmatch(text):
        raise IncompleteSignature("Signature must be 64 lower-case hex digits")
    return text
