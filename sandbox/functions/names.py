"""Function names as callers give them: "fn", "fn:qualifier", or a function ARN."""
from __future__ import annotations

from .errors import InvalidParameterValueException, ResourceNotFoundException


def split_name(name, qualifier=None, region=None, account_id=None) -> tuple[str, str | None]:
    """Accept "fn", "fn:qual", "arn:aws:lambda:region:acct:function:fn[:qual]"
    (an ARN of another region or account names no function of ours)."""
    if not isinstance(name, str) or not name:
        raise ResourceNotFoundException(f"Function not found: {name!r}")
    parts = name.split(":")
    if parts[0] == "arn":
        if len(parts) not in (7, 8) or parts[1:3] != ["aws", "lambda"] or parts[5] != "function" or \
                (region is not None and parts[3] != region) or (account_id is not None and parts[4] != account_id):
            raise ResourceNotFoundException(f"Function not found: {name}")
        base, embedded = parts[6], parts[7] if len(parts) == 8 else None
    elif len(parts) == 2:
        base, embedded = parts
    elif len(parts) == 1:
        base, embedded = name, None
    else:
        raise ResourceNotFoundException(f"Function not found: {name}")
    if embedded is not None and qualifier is not None and embedded != qualifier:
        raise InvalidParameterValueException("The derived qualifier from the function name does not match "
                                             "the specified qualifier.")
    return base, qualifier if qualifier is not None else embedded
