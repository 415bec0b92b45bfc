"""Execution-role credentials: a per-function provider the embedder gives (a
callable returning temporary credentials), handed to environments as Lambda
does -- AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN -- and
environments retired before those credentials expire.

The provider is called when a version's pool of environments is made; its
credentials are part of that pool's sandbox configuration (environment
variables, never the command line, which other processes can read).  A pool
whose credentials come close to expiry is drained and a new one made with
fresh credentials."""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

from .errors import InvalidParameterValueException, ServiceException

RENEW_BEFORE_S = 300.0     # retire environments this long before their credentials expire...
RENEW_FRACTION = 0.25      # ...or this fraction of the credentials' lifetime when that is shorter


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: float          # Unix time

    def environment(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                "AWS_SESSION_TOKEN": self.session_token}

    def retire_at(self) -> float:
        """The monotonic time by which environments holding them must be gone."""
        left = self.expiration - time.time()
        return time.monotonic() + left - min(RENEW_BEFORE_S, max(0.0, left) * RENEW_FRACTION)

    def __repr__(self):   # never the secret
        return f"Credentials(access_key_id={self.access_key_id!r}, expiration={self.expiration})"


def check_provider(provider):
    if provider is not None and not callable(provider):
        raise InvalidParameterValueException("role must be a callable returning credentials, or None")
    return provider


def fetch(provider, function_name: str) -> Credentials:
    """Call the provider and check what it returned (a Credentials, or a dict
    with boto3's keys AccessKeyId, SecretAccessKey, SessionToken, Expiration)."""
    try:
        value = provider()
    except Exception as exc:
        raise ServiceException(f"The credentials provider of {function_name} failed: "
                               f"{type(exc).__name__}") from exc
    if isinstance(value, dict):
        expiration = value.get("Expiration")
        if isinstance(expiration, datetime.datetime):
            expiration = expiration.timestamp()
        value = Credentials(value.get("AccessKeyId"), value.get("SecretAccessKey"), value.get("SessionToken"),
                            expiration)
    if not isinstance(value, Credentials) or not all(
            isinstance(v, str) and v and "\0" not in v
            for v in (value.access_key_id, value.secret_access_key, value.session_token)) or \
            not isinstance(value.expiration, (int, float)) or isinstance(value.expiration, bool):
        raise ServiceException(f"The credentials provider of {function_name} returned no valid credentials")
    if value.expiration <= time.time():
        raise ServiceException(f"The credentials provider of {function_name} returned expired credentials")
    return value
