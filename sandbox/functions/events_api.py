"""Runtime methods for Event invocations' configuration and state: a mixin of
sandbox.Runtime (the queue itself is sandbox/functions/events.py)."""
from __future__ import annotations

from .events import EventInvokeConfig
from .invoke import InvokeResult
from .models import LATEST
from .auditing import audited
from .names import split_name

_DEFAULT_EVENT_CONFIG = EventInvokeConfig()


class EventAPI:
    # -- Event mode -----------------------------------------------------------------
    @audited("PutFunctionEventInvokeConfig")
    def put_function_event_invoke_config(self, name, qualifier=None, maximum_retry_attempts=2,
                                         maximum_event_age_s=21600, on_success=None,
                                         on_failure=None) -> EventInvokeConfig:
        config = EventInvokeConfig(maximum_retry_attempts, maximum_event_age_s, on_success, on_failure).validated()
        with self._lock:
            base, qualifier = split_name(name, qualifier, self.region, self.account_id)
            self._resolve(base, qualifier)
            self._event_configs[(base, qualifier or LATEST)] = config
        return config

    def get_function_event_invoke_config(self, name, qualifier=None) -> EventInvokeConfig:
        with self._lock:
            return self._event_config(name, qualifier)

    def failed_events(self) -> list[dict]:
        """Invocation records of events that ended with no destination to take
        them (each was also logged at WARNING)."""
        return list(self._events.failed)

    def pending_events(self) -> int:
        return self._events.pending()

    def _event_config(self, name, qualifier) -> EventInvokeConfig:
        base, qualifier = split_name(name, qualifier, self.region, self.account_id)
        with self._lock:
            self._resolve(base, qualifier)
            return self._event_configs.get((base, qualifier or LATEST)) or _DEFAULT_EVENT_CONFIG

    def _invoke_for_event(self, name, payload, qualifier, request_id) -> InvokeResult:
        return self._invoker.invoke(name, payload, qualifier, None, None, None, request_id=request_id)
