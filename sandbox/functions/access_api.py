"""Runtime methods for resource policies (AddPermission, RemovePermission,
GetPolicy) and the check invoke() makes: a mixin of sandbox.Runtime."""
from __future__ import annotations

import json

from .auditing import audited
from .errors import AccessDeniedException, ResourceNotFoundException
from .models import LATEST, check_revision
from .names import split_name
from .permissions import Policy, make_statement


class AccessAPI:
    # -- resource policies ---------------------------------------------------------------
    @audited("AddPermission")
    def add_permission(self, name, statement_id, action, principal, source_arn=None, source_account=None,
                       qualifier=None, revision_id=None) -> dict:
        """Allow `principal` to call `action` ("lambda:InvokeFunction") on the
        function, or on one of its versions with `qualifier`.  `revision_id`:
        only if the function (version) still has this RevisionId."""
        with self._lock:
            function, key, resource = self._policy_target(name, qualifier)
            check_revision(revision_id, self._policy_owner(function, key))
            statement = make_statement(statement_id, action, principal, resource, source_arn, source_account)
            function.policies.setdefault(key, Policy()).add(statement)
            self._revise_policy_owner(function, key)
            return {"Statement": json.dumps(statement.to_dict(), separators=(",", ":"))}

    @audited("RemovePermission")
    def remove_permission(self, name, statement_id, qualifier=None, revision_id=None) -> None:
        with self._lock:
            function, key, _ = self._policy_target(name, qualifier)
            policy = function.policies.get(key)
            if policy is None:
                raise ResourceNotFoundException("No policy is associated with the given resource.")
            check_revision(revision_id, self._policy_owner(function, key))
            policy.remove(statement_id)
            if not policy.statements:
                del function.policies[key]
            self._revise_policy_owner(function, key)

    def get_policy(self, name, qualifier=None) -> dict:
        with self._lock:
            function, key, _ = self._policy_target(name, qualifier)
            policy = function.policies.get(key)
            if policy is None:
                raise ResourceNotFoundException("The resource you requested does not exist.")
            # The policy's RevisionId is its function's (version's), as Lambda's is.
            return {"Policy": policy.to_json(), "RevisionId": self._policy_owner(function, key).revision_id}

    @staticmethod
    def _policy_owner(function, key):
        return function.latest if key is None else function.versions[key]

    def _revise_policy_owner(self, function, key) -> None:
        """A policy change is a change of the function (version): a new RevisionId."""
        if key is None:
            function.latest = function.latest.revised()
        else:
            function.versions[key] = function.versions[key].revised()
        self._epoch += 1

    def _policy_target(self, name, qualifier):
        base, qualifier = split_name(name, qualifier, self.region, self.account_id)
        function, fc = self._resolve(base, qualifier)
        key = None if fc.version == LATEST else fc.version
        return function, key, self.function_arn(base) + ("" if key is None else f":{key}")

    def _authorize(self, name, qualifier, principal, source_arn, source_account) -> None:
        """The embedder (no principal) may always invoke; a named caller needs a
        statement allowing it once the function has any policy."""
        with self._lock:
            function, key, resource = self._policy_target(name, qualifier)
            if not function.policies:
                return
            policy = function.policies.get(key)
            if policy is not None and policy.allows("lambda:InvokeFunction", principal, source_arn, source_account):
                return
        raise AccessDeniedException(f"User: {principal} is not authorized to perform: lambda:InvokeFunction on "
                                    f"resource: {resource} because no resource-based policy allows the "
                                    "lambda:InvokeFunction action")
