"""Event (asynchronous) invocations: an in-memory queue, pollers that deliver
through the same environments as synchronous calls, Lambda's retry rules, and
destinations.  Nothing accepted is dropped silently: every event ends in a
success, an on_success/on_failure destination, the runtime's dead-letter
directory, or (with none configured) a WARNING log record and
`Runtime.failed_events()`.

Retry rules (Lambda's): a function error or timeout is retried
`maximum_retry_attempts` times (0-2), after 1 and then 2 minutes by default;
throttles and service errors are retried with exponential backoff (1 s to
5 min) until the event is older than `maximum_event_age_s`.  Payloads stay
in memory.
"""
from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field

from .errors import InvalidParameterValueException, LambdaError, ResourceNotFoundException, \
    ServiceException, TooManyRequestsException
from .models import log_time

MAX_EVENT_PAYLOAD = 1024 * 1024          # Lambda's asynchronous payload cap (1 MB)
log = logging.getLogger("sandbox.functions.events")


@dataclass(frozen=True)
class EventInvokeConfig:
    """PutFunctionEventInvokeConfig.  A destination is a callable taking the
    invocation record (a dict), or a directory path that receives one JSON file
    per record."""

    maximum_retry_attempts: int = 2
    maximum_event_age_s: int = 21600
    on_success: object = None
    on_failure: object = None

    def validated(self) -> "EventInvokeConfig":
        if isinstance(self.maximum_retry_attempts, bool) or self.maximum_retry_attempts not in (0, 1, 2):
            raise InvalidParameterValueException("MaximumRetryAttempts must be 0, 1 or 2")
        age = self.maximum_event_age_s
        if isinstance(age, bool) or not isinstance(age, int) or not 60 <= age <= 21600:
            raise InvalidParameterValueException("MaximumEventAgeInSeconds must be an integer in [60, 21600]")
        for name in ("on_success", "on_failure"):
            target = getattr(self, name)
            if target is not None and not callable(target) and not (isinstance(target, str) and os.path.isdir(target)):
                raise InvalidParameterValueException(f"{name} must be a callable or an existing directory")
        return self

    def to_dict(self) -> dict:
        def describe(target):
            return None if target is None else {"Destination": target if isinstance(target, str) else repr(target)}
        return {"MaximumRetryAttempts": self.maximum_retry_attempts,
                "MaximumEventAgeInSeconds": self.maximum_event_age_s,
                "DestinationConfig": {"OnSuccess": describe(self.on_success),
                                      "OnFailure": describe(self.on_failure)}}


@dataclass
class Event:
    request_id: str
    name: str
    qualifier: str | None
    payload: bytes
    function_arn: str
    received_wall: float = field(default_factory=time.time)
    received: float = field(default_factory=time.monotonic)
    invoke_count: int = 0         # attempts that reached the function
    failures: int = 0             # function errors and timeouts among them
    throttles: int = 0            # throttles and service errors in a row


class EventQueue:
    """Pollers deliver due events by calling `invoke(name, payload, qualifier,
    request_id)` (the synchronous path) and act on the outcome."""

    def __init__(self, invoke, config_for, *, pollers: int = 2, retry_delays_s=(60.0, 120.0),
                 throttle_backoff_s=(1.0, 300.0), dead_letter_dir: str | None = None, metrics=None):
        self._invoke = invoke
        self._config_for = config_for
        self._retry_delays = tuple(float(d) for d in retry_delays_s)
        self._backoff_min, self._backoff_max = (float(b) for b in throttle_backoff_s)
        self._dead_letter_dir = dead_letter_dir
        self._metrics = metrics
        self._heap: list = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closing = False
        self._close_deadline = 0.0
        self.failed: list[dict] = []       # records no destination took
        self._threads = [threading.Thread(target=self._poll, name=f"sandbox-event-poller-{i}", daemon=True)
                         for i in range(pollers)]
        for thread in self._threads:
            thread.start()

    # -- intake ---------------------------------------------------------------------
    def submit(self, event: Event) -> None:
        with self._cond:
            if self._closing:
                raise ServiceException("The runtime is closing; no new events are accepted")
            heapq.heappush(self._heap, (event.received, next(self._seq), event))
            self._cond.notify()
        if self._metrics is not None:
            self._metrics.async_received(event.name)

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._in_flight

    # -- delivery ---------------------------------------------------------------------
    def _poll(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closing and (not self._heap or self._heap[0][0] > self._close_deadline):
                        return   # what is left comes due too late: close() hands it over
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        _, _, event = heapq.heappop(self._heap)
                        self._in_flight += 1
                        break
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
            try:
                self._deliver(event)
            except Exception:   # never lose the event to a bug of ours
                log.exception("event %s: delivery failed", event.request_id)
                self._finish(event, None, "RetriesExhausted", None)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _deliver(self, event: Event) -> None:
        try:
            config = self._config_for(event.name, event.qualifier)
        except ResourceNotFoundException as exc:
            self._finish(event, None, "RetriesExhausted", exc)
            return
        if time.monotonic() - event.received > config.maximum_event_age_s:
            self._finish(event, config, "EventAgeExceeded", None)
            return
        if self._metrics is not None:
            self._metrics.async_age(event.name, (time.monotonic() - event.received) * 1000)
        try:
            event.invoke_count += 1
            result = self._invoke(event.name, event.payload, event.qualifier, event.request_id)
        except (TooManyRequestsException, ServiceException) as exc:
            event.invoke_count -= 1   # never reached the function
            if getattr(exc, "final", False):   # reserved concurrency 0: straight to on_failure
                self._finish(event, config, "RetriesExhausted", exc)
                return
            event.throttles += 1
            delay = min(self._backoff_max, self._backoff_min * 2 ** (event.throttles - 1))
            if time.monotonic() + delay - event.received > config.maximum_event_age_s:
                self._finish(event, config, "EventAgeExceeded", exc)
            else:
                self._retry(event, delay)
            return
        except LambdaError as exc:   # refused for good (e.g. the payload is not JSON)
            self._finish(event, config, "RetriesExhausted", exc)
            return
        event.throttles = 0
        if result.function_error is None:
            self._finish(event, config, "Success", None, result)
            return
        event.failures += 1
        if event.failures > config.maximum_retry_attempts:
            self._finish(event, config, "RetriesExhausted", None, result)
            return
        delay = self._retry_delays[min(event.failures, len(self._retry_delays)) - 1]
        if time.monotonic() + delay - event.received > config.maximum_event_age_s:
            self._finish(event, config, "EventAgeExceeded", None, result)
        else:
            self._retry(event, delay)

    def _retry(self, event: Event, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), event))
            self._cond.notify()

    # -- outcomes ---------------------------------------------------------------------
    def _finish(self, event: Event, config: EventInvokeConfig | None, condition: str, error, result=None) -> None:
        record = invocation_record(event, condition, error, result)
        target = None
        if config is not None:
            target = config.on_success if condition == "Success" else config.on_failure
        dead_letter = target is None and condition != "Success"
        if dead_letter:
            target = self._dead_letter_dir
        if target is None:
            if condition != "Success":
                if self._metrics is not None:
                    self._metrics.async_dropped(event.name)   # no destination: kept and logged, never silent
                log.warning("event %s of %s ended (%s) with no destination: %s", event.request_id, event.name,
                            condition, json.dumps(record)[:2048])
                with self._cond:
                    self.failed.append(record)
            return
        try:
            deliver_record(target, record)
        except Exception:
            if self._metrics is not None:
                (self._metrics.dead_letter_error if dead_letter else
                 self._metrics.destination_delivery_failure)(event.name)
            log.exception("event %s: destination %r failed; record kept in failed_events()", event.request_id,
                          target)
            with self._cond:
                self.failed.append(record)

    # -- shutdown -----------------------------------------------------------------------
    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what comes due within `timeout_s`, retries included; events
        whose next attempt is later (or left at the timeout) go to on_failure
        with condition "RuntimeClosed"."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closing = True
            self._close_deadline = deadline
            self._cond.notify_all()
            # Deliveries (and retries) that come due before the deadline still happen.
            while self._in_flight or (self._heap and self._heap[0][0] <= deadline):
                if time.monotonic() >= deadline:
                    break
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            left = [event for _, _, event in self._heap]
            self._heap.clear()
        for event in left:
            try:
                config = self._config_for(event.name, event.qualifier)
            except LambdaError:
                config = None
            self._finish(event, config, "RuntimeClosed", None)
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))


def invocation_record(event: Event, condition: str, error, result) -> dict:
    """Lambda's invocation record (destinations' payload)."""
    try:
        request_payload = json.loads(event.payload)
    except ValueError:
        request_payload = event.payload.decode("utf-8", "replace")
    record = {
        "version": "1.0",
        "timestamp": log_time(),
        "requestContext": {"requestId": event.request_id, "functionArn": event.function_arn,
                           "condition": condition, "approximateInvokeCount": event.invoke_count},
        "requestPayload": request_payload,
    }
    if result is not None:
        context = {"statusCode": result.status_code, "executedVersion": result.executed_version}
        if result.function_error:
            context["functionError"] = result.function_error
        record["responseContext"] = context
        try:
            record["responsePayload"] = json.loads(result.payload)
        except ValueError:
            record["responsePayload"] = result.payload.decode("utf-8", "replace")
    elif error is not None:
        record["responseContext"] = {"statusCode": getattr(error, "status_code", 500),
                                     "functionError": getattr(error, "error_type", type(error).__name__)}
        record["responsePayload"] = {"errorType": getattr(error, "error_type", type(error).__name__),
                                     "errorMessage": str(getattr(error, "message", error))}
    return record


def deliver_record(target, record: dict) -> None:
    if callable(target):
        target(record)
        return
    data = json.dumps(record, indent=None).encode()
    name = f"{record['timestamp'].replace(':', '')}-{record['requestContext']['requestId']}-" \
           f"{record['requestContext']['condition']}.json"
    fd, tmp = tempfile.mkstemp(prefix=".record-", dir=target)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(target, name))   # whole records only
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
