"""Resource-based policies: who may invoke a function (AddPermission,
RemovePermission, GetPolicy), and the check invoke() makes.

A policy is a list of Allow statements, kept per function and qualifier as
Lambda keeps them.  A statement allows `action` to `principal` (an account
id, an ARN, a service name, or "*"), optionally only when the caller states a
matching SourceArn (glob) and SourceAccount.  The embedder itself invokes
with no principal and is always allowed; a caller that names a principal
needs a statement that allows it once the function has any policy.
"""
from __future__ import annotations

import fnmatch
import json
import re
import uuid
from dataclasses import dataclass

from .errors import (InvalidParameterValueException, PolicyLengthExceededException, ResourceConflictException,
                     ResourceNotFoundException)

MAX_POLICY_BYTES = 20 * 1024          # Lambda's resource policy limit
_STATEMENT_ID = re.compile(r"[a-zA-Z0-9_.-]{1,100}")
_ACTION = re.compile(r"(lambda:[A-Za-z*]+|\*)")
_ACCOUNT = re.compile(r"\d{12}")


@dataclass(frozen=True)
class Statement:
    sid: str
    action: str
    principal: str
    resource: str
    source_arn: str | None = None
    source_account: str | None = None

    def allows(self, action: str, principal: str, source_arn: str | None, source_account: str | None) -> bool:
        if self.action not in ("*", "lambda:*", action):
            return False
        if not _principal_matches(self.principal, principal):
            return False
        if self.source_arn is not None and (source_arn is None or not fnmatch.fnmatchcase(source_arn,
                                                                                           self.source_arn)):
            return False
        if self.source_account is not None and source_account != self.source_account:
            return False
        return True

    def to_dict(self) -> dict:
        principal = self.principal
        if principal == "*":
            shown = "*"
        elif principal.endswith(".amazonaws.com") or "." in principal and not principal.startswith("arn:"):
            shown = {"Service": principal}
        else:
            shown = {"AWS": principal if principal.startswith("arn:") else f"arn:aws:iam::{principal}:root"}
        statement = {"Sid": self.sid, "Effect": "Allow", "Principal": shown, "Action": self.action,
                     "Resource": self.resource}
        condition = {}
        if self.source_arn is not None:
            condition["ArnLike"] = {"AWS:SourceArn": self.source_arn}
        if self.source_account is not None:
            condition["StringEquals"] = {"AWS:SourceAccount": self.source_account}
        if condition:
            statement["Condition"] = condition
        return statement


def _principal_matches(allowed: str, caller: str) -> bool:
    if allowed == "*" or allowed == caller:
        return True
    # An account id allows every principal of that account.
    return bool(_ACCOUNT.fullmatch(allowed)) and caller.startswith("arn:") and \
        caller.split(":")[4:5] == [allowed]


class Policy:
    """The statements of one function or qualifier."""

    def __init__(self):
        self.statements: dict[str, Statement] = {}
        self.revision_id = str(uuid.uuid4())

    def add(self, statement: Statement) -> None:
        if statement.sid in self.statements:
            raise ResourceConflictException(f"The statement id ({statement.sid}) provided already exists. "
                                            "Please provide a new statement id, or remove the existing statement.")
        self.statements[statement.sid] = statement
        if len(self.to_json().encode()) > MAX_POLICY_BYTES:
            del self.statements[statement.sid]
            raise PolicyLengthExceededException("The final policy size is bigger than the limit.")
        self.revision_id = str(uuid.uuid4())

    def remove(self, sid: str) -> None:
        if self.statements.pop(sid, None) is None:
            raise ResourceNotFoundException(f"Statement {sid} is not found in resource policy.")
        self.revision_id = str(uuid.uuid4())

    def allows(self, action, principal, source_arn, source_account) -> bool:
        return any(s.allows(action, principal, source_arn, source_account) for s in self.statements.values())

    def to_json(self) -> str:
        return json.dumps({"Version": "2012-10-17", "Id": "default",
                           "Statement": [s.to_dict() for s in self.statements.values()]}, separators=(",", ":"))


def make_statement(statement_id, action, principal, resource, source_arn=None, source_account=None) -> Statement:
    """Validate AddPermission's parameters."""
    if not isinstance(statement_id, str) or not _STATEMENT_ID.fullmatch(statement_id):
        raise InvalidParameterValueException("StatementId must match [a-zA-Z0-9-_.]{1,100}")
    if not isinstance(action, str) or not _ACTION.fullmatch(action):
        raise InvalidParameterValueException(f"Action must be lambda:<Operation>, lambda:* or *, got {action!r}")
    if not isinstance(principal, str) or not principal or len(principal) > 256 or any(c.isspace() for c in principal):
        raise InvalidParameterValueException("Principal must be an account id, an ARN, a service name or *")
    for name, value in (("SourceArn", source_arn), ("SourceAccount", source_account)):
        if value is not None and (not isinstance(value, str) or not value or len(value) > 1024):
            raise InvalidParameterValueException(f"{name} must be a non-empty string")
    if source_account is not None and not _ACCOUNT.fullmatch(source_account):
        raise InvalidParameterValueException("SourceAccount must be a 12-digit account id")
    return Statement(statement_id, action, principal, resource, source_arn, source_account)
