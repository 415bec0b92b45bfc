"""Recording control-plane calls in the runtime's audit log (audit.py): the
`@audited("Action")` decorator and the per-thread caller identity.

An embedder that serves many callers says who is acting with
`with runtime.acting_as("arn:aws:iam::111122223333:user/alice"): ...`; calls
made outside such a block are recorded with caller None (the embedder)."""
from __future__ import annotations

import contextlib
import functools
import inspect
import threading

_caller = threading.local()


def current_caller() -> str | None:
    return getattr(_caller, "value", None)


@contextlib.contextmanager
def acting_as(principal: str | None):
    previous = current_caller()
    _caller.value = principal
    try:
        yield
    finally:
        _caller.value = previous


def audited(action: str):
    """Record every call of the decorated Runtime method -- its arguments
    (redacted by the log), Success or Failure -- under Lambda's action name.
    These are the calls that change the control plane, so with a state
    directory (state_store.py) each success is saved right after it, and a
    change that could not be saved is refused before it is made."""
    def wrap(method):
        signature = inspect.signature(method)

        @functools.wraps(method)
        def call(self, *args, **kwargs):
            try:
                bound = signature.bind(self, *args, **kwargs)
                parameters = {k: v for k, v in bound.arguments.items() if k != "self"}
            except TypeError:
                parameters = {"args": args, "kwargs": kwargs}   # the call itself will say what is wrong
            state = getattr(self, "_state", None)
            with self._audit.audited(action, parameters, caller=current_caller()):
                if state is not None:
                    state.check_call(parameters)
                result = method(self, *args, **kwargs)
            if state is not None:
                state.save(self)        # outside the record: the call did succeed even if the save fails
            return result
        return call
    return wrap
