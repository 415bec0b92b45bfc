"""Runtime methods for reserved and provisioned concurrency: a mixin of
sandbox.Runtime."""
from __future__ import annotations

from .errors import InvalidParameterValueException, ProvisionedConcurrencyConfigNotFoundException
from .models import LATEST
from .auditing import audited
from .names import split_name
from .provisioned import ProvisionedConfig


class ConcurrencyAPI:
    # -- provisioned concurrency ----------------------------------------------------------
    @audited("PutProvisionedConcurrencyConfig")
    def put_provisioned_concurrency_config(self, name, qualifier, provisioned_concurrent_executions: int) -> dict:
        """Keep `n` initialized environments of a published version at all
        times.  Status is IN_PROGRESS until they are ready (then READY), FAILED
        when they cannot be initialized."""
        n = provisioned_concurrent_executions
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidParameterValueException("ProvisionedConcurrentExecutions must be an integer >= 1")
        with self._lock:
            base, qualifier = split_name(name, qualifier, self.region, self.account_id)
            if qualifier in (None, LATEST):
                raise InvalidParameterValueException(
                    "Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
            function, fc = self._resolve(base, qualifier)
            limit = function.reserved if function.reserved is not None else \
                self._manager.max_environments - self._manager.reserved_total()
            if n > limit:
                raise InvalidParameterValueException(
                    f"Requested Provisioned Concurrency ({n}) exceeds the concurrency available to the function "
                    f"({limit}).")
            config = ProvisionedConfig(base, fc.version, n, pool_for=lambda: self._pool_for(base, qualifier)[1])
            self._provisioner.put(config)
            return config.to_dict()

    def get_provisioned_concurrency_config(self, name, qualifier) -> dict:
        base, qualifier = split_name(name, qualifier, self.region, self.account_id)
        with self._lock:
            self._resolve(base, qualifier)
        config = self._provisioner.get(base, qualifier)
        if config is None:
            raise ProvisionedConcurrencyConfigNotFoundException("No Provisioned Concurrency Config found for this "
                                                                "function")
        return config.to_dict()

    @audited("DeleteProvisionedConcurrencyConfig")
    def delete_provisioned_concurrency_config(self, name, qualifier) -> None:
        base, qualifier = split_name(name, qualifier, self.region, self.account_id)
        self.get_provisioned_concurrency_config(base, qualifier)
        self._provisioner.delete(base, qualifier)

    # -- concurrency ------------------------------------------------------------------
    @audited("PutFunctionConcurrency")
    def put_function_concurrency(self, name, reserved_concurrent_executions: int) -> dict:
        """Reserve and cap concurrent environments for a function (all its
        versions).  0 switches the function off: every invocation is throttled."""
        n = reserved_concurrent_executions
        with self._lock:
            function = self._function(name)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise InvalidParameterValueException("ReservedConcurrentExecutions must be an integer >= 0")
            others = self._manager.reserved_total(excluding=function.uid)
            if others + n > self._manager.max_environments:
                raise InvalidParameterValueException(
                    f"Specified ReservedConcurrentExecutions for function decreases the runtime's "
                    f"UnreservedConcurrentExecution below its minimum value of [0]: {others} are reserved by "
                    f"other functions of {self._manager.max_environments}")
            self._manager.set_reserved(function.uid, n)
            function.reserved = n
            self.metrics.reserved_concurrency(function.latest.function_name, n)
            return {"ReservedConcurrentExecutions": n}

    def get_function_concurrency(self, name) -> dict:
        with self._lock:
            function = self._function(name)
            return {} if function.reserved is None else {"ReservedConcurrentExecutions": function.reserved}

    @audited("DeleteFunctionConcurrency")
    def delete_function_concurrency(self, name) -> None:
        with self._lock:
            function = self._function(name)
            self._manager.set_reserved(function.uid, None)
            function.reserved = None
            self.metrics.reserved_concurrency(function.latest.function_name, None)
