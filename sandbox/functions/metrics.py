"""Metrics per function and version, under Lambda's names, read as a Python
snapshot or as Prometheus text.  See docs/metrics.md.

    m = Metrics()
    m.concurrency("fn", "1", +1)
    m.invocation("fn", "1", duration_ms=3.2, error=False)
    m.concurrency("fn", "1", -1)
    m.snapshot()["functions"]["fn"]["versions"]["1"]["Invocations"]    # 1
    m.prometheus()                                                     # text exposition, bytes

Writes are a few attribute updates under one lock (well under a microsecond;
docs/metrics.md has the numbers), so the invoke path makes them on every
invocation.  Reads copy the raw counters under the lock and do the arithmetic
(totals, percentiles) outside it, so a scrape does not stall invocations.
prometheus_client is imported only by prometheus() and collector().

Durations and ages go into fixed histograms.  Each exported bucket is counted
as SUB_BUCKETS log-spaced sub-buckets; percentiles interpolate linearly inside
the sub-bucket that holds the rank and are clamped to the observed min and max.
"""
from __future__ import annotations

import math
import threading
from bisect import bisect_left

# Upper bounds (ms) of the exported buckets, with Prometheus' `le` meaning: a value equal to a bound counts in it.
DURATION_BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
                       30000, 60000, 300000, 900000)
AGE_BUCKETS_MS = DURATION_BUCKETS_MS + (3_600_000, 21_600_000)      # async events live up to 6 h
SUB_BUCKETS = 8
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))


class _Layout:
    """The bucket bounds of one kind of histogram: those exported and the finer ones counted."""
    __slots__ = ("bounds", "fine", "size")

    def __init__(self, bounds):
        bounds = tuple(float(b) for b in bounds)
        if not bounds or bounds[0] <= 0 or any(a >= b for a, b in zip(bounds, bounds[1:])) \
                or not math.isfinite(bounds[-1]):
            raise ValueError(f"bucket bounds must be finite, positive and increasing: {bounds!r}")
        fine, lower = [], 0.0
        for upper in bounds:
            for k in range(1, SUB_BUCKETS):     # linear from 0, geometric after
                fine.append(upper * k / SUB_BUCKETS if lower == 0 else lower * (upper / lower) ** (k / SUB_BUCKETS))
            fine.append(upper)                  # the exported bound itself, exactly
            lower = upper
        self.bounds, self.fine, self.size = bounds, fine, len(fine) + 1     # + the overflow (+Inf) bucket


class _Histogram:
    __slots__ = ("counts", "sum", "min", "max")

    def __init__(self, layout):
        self.counts = [0] * layout.size
        self.sum, self.min, self.max = 0.0, math.inf, -math.inf

    def copy(self):
        return (list(self.counts), self.sum, self.min, self.max)


# _Function.counts indices
_THROTTLES, _RECEIVED, _DROPPED, _DEAD_LETTER, _DESTINATION = range(5)


class _Function:
    __slots__ = ("counts", "concurrent", "max_concurrent", "reserved", "async_age")

    def __init__(self, age_layout):
        self.counts = [0] * 5                   # throttles with no version known, then the async counts
        self.concurrent = self.max_concurrent = 0
        self.reserved = None
        self.async_age = _Histogram(age_layout)


class _Version:
    __slots__ = ("function", "invocations", "errors", "throttles", "pc_invocations", "spillover", "duration",
                 "concurrent", "max_concurrent", "pc_concurrent", "pc_max_concurrent", "pc_allocated", "pc_requested")

    def __init__(self, function, duration_layout):
        self.function = function
        self.invocations = self.errors = self.throttles = self.pc_invocations = self.spillover = 0
        self.duration = _Histogram(duration_layout)
        self.concurrent = self.max_concurrent = self.pc_concurrent = self.pc_max_concurrent = 0
        self.pc_allocated = self.pc_requested = None    # None: no provisioned concurrency configured


class Metrics:
    """Thread-safe counters, gauges and histograms for a Runtime's functions."""

    def __init__(self, *, duration_buckets_ms=DURATION_BUCKETS_MS, age_buckets_ms=AGE_BUCKETS_MS):
        # One lock for all state, held briefly: the hot writers find the bucket before they take it
        # and do nothing inside but a dictionary lookup and arithmetic, so other threads seldom find it
        # taken.
        self._lock = threading.Lock()
        self._duration = _Layout(duration_buckets_ms)
        self._age = _Layout(age_buckets_ms)
        self._functions = {}        # name -> _Function
        self._versions = {}         # (name, version) -> _Version
        self._concurrent = self._max_concurrent = 0
        self._unreserved = self._max_unreserved = 0
        self._registry = None

    # --- writes (the invoke path) -----------------------------------------------------------------------

    def invocation(self, function: str, version: str, *, duration_ms: float, error: bool,
                   provisioned: bool = False, spillover: bool = False, ended: bool = False) -> None:
        """One finished invocation (not a throttled request): Invocations, Errors, Duration and the
        provisioned-concurrency counts.  `error` is a function error, timeout included.  `ended`:
        also concurrency(-1) for it, in the same take of the lock (the warm path's two writes in one)."""
        bucket = bisect_left(self._duration.fine, duration_ms)      # outside the lock: see __init__
        with self._lock:
            v = self._versions.get((function, version))
            if v is None:   # new, or remove()d while this invocation ran: nothing to count down
                v = self._add(function, version)
            elif ended:
                self._move_concurrency(v, -1, provisioned)
            v.invocations += 1
            if error:
                v.errors += 1
            if provisioned:
                v.pc_invocations += 1
            if spillover:
                v.spillover += 1
            h = v.duration
            h.counts[bucket] += 1
            h.sum += duration_ms
            if duration_ms < h.min:
                h.min = duration_ms
            if duration_ms > h.max:
                h.max = duration_ms

    def throttle(self, function: str, version: str | None) -> None:
        """A request refused for lack of concurrency (429).  Not an invocation.  `version` None: refused
        before a version was chosen; counted for the function only."""
        if version is None:
            self._count(function, _THROTTLES)
            return
        with self._lock:
            v = self._versions.get((function, version)) or self._add(function, version)
            v.throttles += 1

    def concurrency(self, function: str, version: str, delta: int, *, provisioned: bool = False) -> None:
        """+1 when an invocation starts running, -1 when it ends (`provisioned`: on a provisioned
        environment, same value both times).  Keeps the current values and their maxima since the
        last snapshot(reset_max=True), per version, function and runtime."""
        with self._lock:
            v = self._versions.get((function, version))
            if v is None:
                if delta < 0:       # the series was remove()d while this invocation ran
                    return
                v = self._add(function, version)
            self._move_concurrency(v, delta, provisioned)

    def _move_concurrency(self, v, delta, provisioned) -> None:
        n = v.concurrent = v.concurrent + delta
        if n > v.max_concurrent:
            v.max_concurrent = n
        if provisioned:
            n = v.pc_concurrent = v.pc_concurrent + delta
            if n > v.pc_max_concurrent:
                v.pc_max_concurrent = n
        f = v.function
        n = f.concurrent = f.concurrent + delta
        if n > f.max_concurrent:
            f.max_concurrent = n
        n = self._concurrent = self._concurrent + delta
        if n > self._max_concurrent:
            self._max_concurrent = n
        if f.reserved is None:
            n = self._unreserved = self._unreserved + delta
            if n > self._max_unreserved:
                self._max_unreserved = n

    def async_received(self, function: str) -> None:
        """An event accepted into the queue (AsyncEventsReceived)."""
        self._count(function, _RECEIVED)

    def async_dropped(self, function: str) -> None:
        """An event discarded without running successfully and without a DLQ or destination to take it
        (AsyncEventsDropped)."""
        self._count(function, _DROPPED)

    def async_age(self, function: str, age_ms: float) -> None:
        """Time from queueing to an attempt to run the event (AsyncEventAge)."""
        bucket = bisect_left(self._age.fine, age_ms)
        with self._lock:
            try:
                h = self._functions[function].async_age
            except KeyError:
                h = self._function(function).async_age
            h.counts[bucket] += 1
            h.sum += age_ms
            if age_ms < h.min:
                h.min = age_ms
            if age_ms > h.max:
                h.max = age_ms

    def dead_letter_error(self, function: str) -> None:
        """A failed write to the dead-letter queue (DeadLetterErrors)."""
        self._count(function, _DEAD_LETTER)

    def destination_delivery_failure(self, function: str) -> None:
        """A failed delivery to an on-success or on-failure destination (DestinationDeliveryFailures)."""
        self._count(function, _DESTINATION)

    # --- configuration gauges ---------------------------------------------------------------------------

    def provisioned(self, function: str, version: str, *, allocated: int, requested: int) -> None:
        """Provisioned concurrency of a version: environments allocated (ready) and requested.  Both 0
        means none is configured; its gauges then leave the Prometheus output."""
        with self._lock:
            v = self._versions.get((function, version)) or self._add(function, version)
            if allocated or requested:
                v.pc_allocated, v.pc_requested = int(allocated), int(requested)
            else:
                v.pc_allocated = v.pc_requested = None

    def reserved_concurrency(self, function: str, reserved: int | None) -> None:
        """The function's reserved concurrency (None: none).  Functions without it make up
        UnreservedConcurrentExecutions."""
        with self._lock:
            f = self._function(function)
            if (f.reserved is None) != (reserved is None):
                n = self._unreserved = self._unreserved + (f.concurrent if reserved is None else -f.concurrent)
                self._max_unreserved = max(self._max_unreserved, n)
            f.reserved = None if reserved is None else int(reserved)

    def remove(self, function: str, version: str | None = None) -> None:
        """Forget a deleted function (or one version).  Invocations still running leave the runtime's
        gauges now; a later invocation() under the same names starts the series again."""
        with self._lock:
            f = self._functions.get(function)
            if f is None:
                return
            keys = [k for k in self._versions if k[0] == function and (version is None or k[1] == version)]
            gone = sum(self._versions[k].concurrent for k in keys)
            for k in keys:
                del self._versions[k]
            f.concurrent -= gone
            self._concurrent -= gone
            if f.reserved is None:
                self._unreserved -= gone
            if version is None:
                del self._functions[function]

    def _count(self, function, index):
        with self._lock:
            try:
                f = self._functions[function]
            except KeyError:
                f = self._function(function)
            f.counts[index] += 1

    def _function(self, name):
        f = self._functions.get(name)
        if f is None:
            f = self._functions[name] = _Function(self._age)
        return f

    def _add(self, name, version):
        v = self._versions[(name, version)] = _Version(self._function(name), self._duration)
        return v

    # --- reads --------------------------------------------------------------------------------------------

    def snapshot(self, *, reset_max: bool = False) -> dict:
        """Everything, as plain dicts and numbers (JSON-serialisable; histogram bucket keys are floats).
        reset_max=True starts a new period for the Max* values (they restart from the current value)."""
        with self._lock:
            functions = {name: (*f.counts, f.concurrent, f.max_concurrent, f.reserved, f.async_age.copy())
                         for name, f in self._functions.items()}
            versions = [(name, version, v.invocations, v.errors, v.throttles, v.duration.copy(), v.concurrent,
                         v.max_concurrent, v.pc_invocations, v.spillover, v.pc_concurrent, v.pc_max_concurrent,
                         v.pc_allocated, v.pc_requested) for (name, version), v in self._versions.items()]
            runtime = (self._concurrent, self._max_concurrent, self._unreserved, self._max_unreserved)
            if reset_max:
                self._reset_max()
        out = {}
        for name, (throttles, received, dropped, dlq, dest, cur, peak, reserved, age) in functions.items():
            out[name] = {"versions": {}, "Invocations": 0, "Errors": 0, "Throttles": throttles, "Duration": None,
                         "ConcurrentExecutions": cur, "MaxConcurrentExecutions": peak,
                         "ProvisionedConcurrencyInvocations": 0, "ProvisionedConcurrencySpilloverInvocations": 0,
                         "ReservedConcurrentExecutions": reserved, "AsyncEventsReceived": received,
                         "AsyncEventAge": _summary(self._age, *age), "AsyncEventsDropped": dropped,
                         "DeadLetterErrors": dlq, "DestinationDeliveryFailures": dest}
        merged = {}
        for (name, version, inv, err, thr, dur, cur, peak, pc_inv, spill, pc_cur, pc_peak, alloc, req) in versions:
            fn = out[name]
            fn["versions"][version] = {
                "Invocations": inv, "Errors": err, "Throttles": thr, "Duration": _summary(self._duration, *dur),
                "ConcurrentExecutions": cur, "MaxConcurrentExecutions": peak,
                "ProvisionedConcurrencyInvocations": pc_inv, "ProvisionedConcurrencySpilloverInvocations": spill,
                "ProvisionedConcurrentExecutions": pc_cur, "MaxProvisionedConcurrentExecutions": pc_peak,
                "ProvisionedConcurrencyUtilization": pc_cur / alloc if alloc else None,
                "AllocatedProvisionedConcurrentExecutions": alloc, "RequestedProvisionedConcurrentExecutions": req}
            for key, n in (("Invocations", inv), ("Errors", err), ("Throttles", thr),
                           ("ProvisionedConcurrencyInvocations", pc_inv),
                           ("ProvisionedConcurrencySpilloverInvocations", spill)):
                fn[key] += n
            m = merged.get(name)
            if m is None:
                merged[name] = (list(dur[0]), dur[1], dur[2], dur[3])
            else:
                merged[name] = ([a + b for a, b in zip(m[0], dur[0])], m[1] + dur[1], min(m[2], dur[2]),
                                max(m[3], dur[3]))
        for name, fn in out.items():
            fn["Duration"] = _summary(self._duration, *merged.get(name, ([0] * self._duration.size, 0.0, 0, 0)))
        return {"functions": out,
                "runtime": {"ConcurrentExecutions": runtime[0], "MaxConcurrentExecutions": runtime[1],
                            "UnreservedConcurrentExecutions": runtime[2],
                            "MaxUnreservedConcurrentExecutions": runtime[3],
                            "Invocations": sum(f["Invocations"] for f in out.values()),
                            "Errors": sum(f["Errors"] for f in out.values()),
                            "Throttles": sum(f["Throttles"] for f in out.values())}}

    def _reset_max(self):
        for v in self._versions.values():
            v.max_concurrent, v.pc_max_concurrent = v.concurrent, v.pc_concurrent
        for f in self._functions.values():
            f.max_concurrent = f.concurrent
        self._max_concurrent, self._max_unreserved = self._concurrent, self._unreserved

    def collector(self):
        """A prometheus_client Collector over this object, to register on another registry
        (`prometheus_client.REGISTRY.register(m.collector())`)."""
        return MetricsCollector(self)

    def prometheus(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of snapshot()."""
        from prometheus_client import CollectorRegistry, generate_latest
        if self._registry is None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(self.collector())
            self._registry = registry
        return generate_latest(self._registry)


def _summary(layout, counts, total, low, high):
    """count, sum, min, max, p50/p90/p99 and the exported buckets (cumulative, keyed by upper bound)."""
    count = sum(counts)
    buckets, running = {}, 0
    for i, bound in enumerate(layout.bounds):
        running += sum(counts[i * SUB_BUCKETS:(i + 1) * SUB_BUCKETS])
        buckets[bound] = running
    buckets[math.inf] = count
    out = {"count": count, "sum": float(total), "min": float(low) if count else None,
           "max": float(high) if count else None}
    for key, q in PERCENTILES:
        out[key] = _quantile(layout.fine, counts, count, q, low, high) if count else None
    out["buckets"] = buckets
    return out


def _quantile(fine, counts, count, q, low, high):
    """The value at rank q*count, interpolated linearly inside its sub-bucket (as Prometheus'
    histogram_quantile does inside a bucket), the sub-bucket first narrowed to [min, max]."""
    rank, seen = q * count, 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            lower = max(fine[i - 1] if i else 0.0, low)
            upper = min(fine[i] if i < len(fine) else high, high)
            return lower + (upper - lower) * max(rank - seen, 0) / n
        seen += n
    return high


# (snapshot key, Prometheus name, help) per version; counters get `_total` from prometheus_client.
_VERSION_COUNTERS = (
    ("Invocations", "sandbox_function_invocations", "Invocations that ran; throttled requests are not counted."),
    ("Errors", "sandbox_function_errors", "Invocations that ended in a function error or timeout."),
    ("Throttles", "sandbox_function_throttles",
     "Requests refused for lack of concurrency; version=\"\" when refused before a version was chosen."))
_PROVISIONED_COUNTERS = (
    ("ProvisionedConcurrencyInvocations", "sandbox_function_provisioned_concurrency_invocations",
     "Invocations that ran on provisioned concurrency."),
    ("ProvisionedConcurrencySpilloverInvocations", "sandbox_function_provisioned_concurrency_spillover_invocations",
     "Invocations that ran on standard concurrency because all provisioned concurrency was in use."))
_PROVISIONED_GAUGES = (
    ("ProvisionedConcurrentExecutions", "sandbox_function_provisioned_concurrent_executions",
     "Invocations running now on provisioned concurrency."),
    ("AllocatedProvisionedConcurrentExecutions", "sandbox_function_provisioned_concurrency_allocated",
     "Provisioned environments ready."),
    ("RequestedProvisionedConcurrentExecutions", "sandbox_function_provisioned_concurrency_requested",
     "Provisioned environments requested."),
    ("ProvisionedConcurrencyUtilization", "sandbox_function_provisioned_concurrency_utilization",
     "Provisioned concurrent executions divided by provisioned concurrency allocated (0-1)."))
_ASYNC_COUNTERS = (
    ("AsyncEventsReceived", "sandbox_async_events_received", "Events accepted into the asynchronous queue."),
    ("AsyncEventsDropped", "sandbox_async_events_dropped",
     "Events discarded without a successful run or a dead-letter queue or destination to take them."),
    ("DeadLetterErrors", "sandbox_dead_letter_errors", "Failed writes to the dead-letter queue."),
    ("DestinationDeliveryFailures", "sandbox_destination_delivery_failures",
     "Failed deliveries to on-success or on-failure destinations."))


class MetricsCollector:
    """A prometheus_client Collector that reads Metrics.snapshot() at each collect(): no
    prometheus_client objects live between scrapes, and none are touched on the invoke path."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        def histogram(family, labels, summary):
            family.add_metric(labels, [(floatToGoString(b), n) for b, n in summary["buckets"].items()],
                              summary["sum"])

        snap = self._metrics.snapshot()
        fv = ("function", "version")
        counters = [(key, CounterMetricFamily(name, doc, labels=fv)) for key, name, doc in _VERSION_COUNTERS]
        pc_counters = [(key, CounterMetricFamily(name, doc, labels=fv)) for key, name, doc in _PROVISIONED_COUNTERS]
        pc_gauges = [(key, GaugeMetricFamily(name, doc, labels=fv)) for key, name, doc in _PROVISIONED_GAUGES]
        concurrent = GaugeMetricFamily("sandbox_function_concurrent_executions", "Invocations running now.",
                                       labels=fv)
        duration = HistogramMetricFamily("sandbox_function_duration_milliseconds",
                                         "Time the handler ran, in milliseconds.", labels=fv)
        reserved = GaugeMetricFamily("sandbox_function_reserved_concurrency",
                                     "Reserved concurrency, for functions that have it.", labels=("function",))
        async_counters = [(key, CounterMetricFamily(name, doc, labels=("function",)))
                          for key, name, doc in _ASYNC_COUNTERS]
        age = HistogramMetricFamily("sandbox_async_event_age_milliseconds",
                                    "Time from queueing an event to an attempt to run it, in milliseconds.",
                                    labels=("function",))
        for name, fn in snap["functions"].items():
            for version, v in fn["versions"].items():
                labels = (name, version)
                for key, family in counters:
                    family.add_metric(labels, v[key])
                concurrent.add_metric(labels, v["ConcurrentExecutions"])
                histogram(duration, labels, v["Duration"])
                configured = v["AllocatedProvisionedConcurrentExecutions"] is not None
                if configured or v["ProvisionedConcurrencyInvocations"] or \
                        v["ProvisionedConcurrencySpilloverInvocations"]:
                    for key, family in pc_counters:
                        family.add_metric(labels, v[key])
                if configured:
                    for key, family in pc_gauges:
                        if v[key] is not None:
                            family.add_metric(labels, v[key])
            unattributed = fn["Throttles"] - sum(v["Throttles"] for v in fn["versions"].values())
            if unattributed:
                counters[2][1].add_metric((name, ""), unattributed)
            if fn["ReservedConcurrentExecutions"] is not None:
                reserved.add_metric((name,), fn["ReservedConcurrentExecutions"])
            for key, family in async_counters:
                family.add_metric((name,), fn[key])
            histogram(age, (name,), fn["AsyncEventAge"])
        runtime = snap["runtime"]
        yield from (family for _, family in counters)
        yield duration
        yield concurrent
        yield from (family for _, family in pc_counters)
        yield from (family for _, family in pc_gauges)
        yield reserved
        yield from (family for _, family in async_counters)
        yield age
        yield GaugeMetricFamily("sandbox_concurrent_executions", "Invocations running now, all functions.",
                                value=runtime["ConcurrentExecutions"])
        yield GaugeMetricFamily("sandbox_unreserved_concurrent_executions",
                                "Invocations running now of functions without reserved concurrency.",
                                value=runtime["UnreservedConcurrentExecutions"])
