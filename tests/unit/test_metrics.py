"""Metrics: exact counts under threads, histogram buckets and percentiles, Lambda's counting rules
(throttles are not invocations), concurrency gauges and their maxima, the snapshot's shape, and the
Prometheus text checked with prometheus_client's own parser against the snapshot.  The per-call
cost is measured and printed, not asserted."""
import json
import math
import random
import re
import threading
import timeit

import pytest

from sandbox.functions.metrics import DURATION_BUCKETS_MS, SUB_BUCKETS, Metrics

prometheus_client = pytest.importorskip("prometheus_client", reason="prometheus_client is not installed")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

DOCS = __file__.rsplit("/tests/", 1)[0] + "/docs/metrics.md"

VERSION_KEYS = {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions", "MaxConcurrentExecutions",
                "ProvisionedConcurrencyInvocations", "ProvisionedConcurrencySpilloverInvocations",
                "ProvisionedConcurrentExecutions", "MaxProvisionedConcurrentExecutions",
                "ProvisionedConcurrencyUtilization", "AllocatedProvisionedConcurrentExecutions",
                "RequestedProvisionedConcurrentExecutions"}
FUNCTION_KEYS = {"versions", "Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions",
                 "MaxConcurrentExecutions", "ProvisionedConcurrencyInvocations",
                 "ProvisionedConcurrencySpilloverInvocations", "ReservedConcurrentExecutions", "AsyncEventsReceived",
                 "AsyncEventAge", "AsyncEventsDropped", "DeadLetterErrors", "DestinationDeliveryFailures"}
RUNTIME_KEYS = {"ConcurrentExecutions", "MaxConcurrentExecutions", "UnreservedConcurrentExecutions",
                "MaxUnreservedConcurrentExecutions", "Invocations", "Errors", "Throttles"}
HISTOGRAM_KEYS = {"count", "sum", "min", "max", "p50", "p90", "p99", "buckets"}


def version(snap, function="fn", ver="1"):
    return snap["functions"][function]["versions"][ver]


def test_counts_from_many_threads_match_exactly():
    m = Metrics()
    threads, rounds = 8, 3000
    start = threading.Barrier(threads)

    def work(t):
        start.wait()
        ver = str(t % 2 + 1)
        for i in range(rounds):
            m.concurrency("fn", ver, +1)
            m.invocation("fn", ver, duration_ms=float(i % 50), error=i % 7 == 0, provisioned=t == 0)
            m.concurrency("fn", ver, -1)
            if i % 3 == 0:
                m.throttle("fn", ver if i % 2 else None)
            m.async_received("fn")
            m.async_age("fn", 10.0)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    snap = m.snapshot()
    fn = snap["functions"]["fn"]
    per_thread_errors = len(range(0, rounds, 7))
    per_thread_throttles = len(range(0, rounds, 3))
    assert fn["Invocations"] == threads * rounds
    assert version(snap, ver="1")["Invocations"] == version(snap, ver="2")["Invocations"] == threads * rounds // 2
    assert fn["Errors"] == threads * per_thread_errors
    assert fn["Throttles"] == threads * per_thread_throttles
    assert fn["ProvisionedConcurrencyInvocations"] == rounds
    assert fn["Duration"]["count"] == threads * rounds
    assert fn["Duration"]["sum"] == threads * sum(float(i % 50) for i in range(rounds))
    assert fn["AsyncEventsReceived"] == fn["AsyncEventAge"]["count"] == threads * rounds
    assert fn["ConcurrentExecutions"] == snap["runtime"]["ConcurrentExecutions"] == 0
    assert 1 <= fn["MaxConcurrentExecutions"] <= threads
    assert snap["runtime"]["Invocations"] == threads * rounds


def test_throttles_are_not_invocations():
    m = Metrics()
    m.throttle("fn", "1")
    m.throttle("fn", None)          # refused before a version was chosen
    m.throttle("other", None)
    snap = m.snapshot()
    assert version(snap)["Throttles"] == 1 and version(snap)["Invocations"] == 0
    assert snap["functions"]["fn"]["Throttles"] == 2 and snap["functions"]["fn"]["Invocations"] == 0
    assert snap["functions"]["other"] == {**snap["functions"]["other"], "versions": {}, "Throttles": 1,
                                          "Invocations": 0}
    assert snap["runtime"]["Throttles"] == 3 and snap["runtime"]["Invocations"] == 0
    assert version(snap)["Duration"]["count"] == 0


def test_histogram_buckets_are_cumulative_with_le_bounds():
    m = Metrics()
    for ms in (0.05, 1.0, 1.0001, 2.0, 7.5, 900000.0, 1e7):
        m.invocation("fn", "1", duration_ms=ms, error=False)
    d = version(m.snapshot())["Duration"]
    assert set(d) == HISTOGRAM_KEYS
    assert list(d["buckets"]) == [float(b) for b in DURATION_BUCKETS_MS] + [math.inf]
    b = d["buckets"]
    assert (b[0.1], b[0.5], b[1.0], b[2.0], b[5.0], b[10.0]) == (1, 1, 2, 4, 4, 5)    # a value on a bound counts in it
    assert b[900000.0] == 6 and b[math.inf] == d["count"] == 7
    assert d["min"] == 0.05 and d["max"] == 1e7
    assert d["sum"] == pytest.approx(0.05 + 1.0 + 1.0001 + 2.0 + 7.5 + 900000.0 + 1e7)
    counts = list(b.values())
    assert counts == sorted(counts)


def test_percentiles_are_within_one_sub_bucket():
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(40), 1.2) for _ in range(20000)]      # ms, 1..~2000
    m = Metrics()
    for v in values:
        m.invocation("fn", "1", duration_ms=v, error=False)
    d = version(m.snapshot())["Duration"]
    ordered = sorted(values)
    widest = max((hi / lo) ** (1 / SUB_BUCKETS) for lo, hi in zip(DURATION_BUCKETS_MS, DURATION_BUCKETS_MS[1:]))
    for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        assert exact / widest <= d[key] <= exact * widest, (key, d[key], exact)
        assert abs(d[key] - exact) / exact < 0.05        # far better in practice: interpolation within a sub-bucket


def test_percentiles_of_one_value_are_exact():
    m = Metrics()
    for _ in range(10):
        m.invocation("fn", "1", duration_ms=3.2, error=False)
    m.async_age("fn", 123456.0)
    snap = m.snapshot()
    d = version(snap)["Duration"]
    assert d["p50"] == d["p90"] == d["p99"] == d["min"] == d["max"] == 3.2
    age = snap["functions"]["fn"]["AsyncEventAge"]
    assert age["p50"] == age["p99"] == 123456.0 and age["buckets"][3_600_000.0] == 1


def test_function_duration_merges_versions():
    m = Metrics()
    m.invocation("fn", "1", duration_ms=1.0, error=False)
    m.invocation("fn", "2", duration_ms=100.0, error=True)
    fn = m.snapshot()["functions"]["fn"]
    assert fn["Duration"]["count"] == 2 and fn["Duration"]["min"] == 1.0 and fn["Duration"]["max"] == 100.0
    assert fn["Duration"]["buckets"][1.0] == 1 and fn["Duration"]["buckets"][100.0] == 2
    assert fn["Errors"] == 1 and fn["Invocations"] == 2


def test_concurrency_gauges_and_their_maxima():
    m = Metrics()
    for _ in range(3):
        m.concurrency("fn", "1", +1)
    m.concurrency("fn", "2", +1)
    m.concurrency("other", "$LATEST", +1)
    m.concurrency("fn", "1", -1)
    snap = m.snapshot(reset_max=True)
    assert (version(snap)["ConcurrentExecutions"], version(snap)["MaxConcurrentExecutions"]) == (2, 3)
    fn = snap["functions"]["fn"]
    assert (fn["ConcurrentExecutions"], fn["MaxConcurrentExecutions"]) == (3, 4)
    assert (snap["runtime"]["ConcurrentExecutions"], snap["runtime"]["MaxConcurrentExecutions"]) == (4, 5)
    assert snap["runtime"]["UnreservedConcurrentExecutions"] == 4
    snap = m.snapshot()                 # a new period: maxima restart from the current values
    assert version(snap)["MaxConcurrentExecutions"] == 2
    assert snap["functions"]["fn"]["MaxConcurrentExecutions"] == 3
    assert snap["runtime"]["MaxConcurrentExecutions"] == 4
    m.concurrency("fn", "1", -1)
    assert m.snapshot()["runtime"]["MaxConcurrentExecutions"] == 4     # without reset_max it keeps its value


def test_unreserved_concurrency_follows_reserved_settings():
    m = Metrics()
    m.concurrency("a", "1", +1)
    m.concurrency("b", "1", +1)
    m.reserved_concurrency("b", 5)
    snap = m.snapshot()
    assert snap["runtime"]["ConcurrentExecutions"] == 2 and snap["runtime"]["UnreservedConcurrentExecutions"] == 1
    assert snap["functions"]["b"]["ReservedConcurrentExecutions"] == 5
    m.concurrency("b", "1", +1)
    assert m.snapshot()["runtime"]["UnreservedConcurrentExecutions"] == 1
    m.reserved_concurrency("b", None)
    snap = m.snapshot()
    assert snap["runtime"]["UnreservedConcurrentExecutions"] == 3
    assert snap["functions"]["b"]["ReservedConcurrentExecutions"] is None


def test_provisioned_concurrency():
    m = Metrics()
    m.provisioned("fn", "1", allocated=4, requested=5)
    m.concurrency("fn", "1", +1, provisioned=True)
    m.concurrency("fn", "1", +1, provisioned=True)
    m.concurrency("fn", "1", +1)            # spilled over to standard concurrency
    v = version(m.snapshot())
    assert v["ProvisionedConcurrentExecutions"] == 2 and v["ConcurrentExecutions"] == 3
    assert v["ProvisionedConcurrencyUtilization"] == 0.5
    assert (v["AllocatedProvisionedConcurrentExecutions"], v["RequestedProvisionedConcurrentExecutions"]) == (4, 5)
    m.invocation("fn", "1", duration_ms=1.0, error=False, provisioned=True)
    m.invocation("fn", "1", duration_ms=1.0, error=False, spillover=True)
    m.concurrency("fn", "1", -1, provisioned=True)
    v = version(m.snapshot())
    assert v["ProvisionedConcurrencyInvocations"] == 1 and v["ProvisionedConcurrencySpilloverInvocations"] == 1
    assert v["Invocations"] == 2 and v["MaxProvisionedConcurrentExecutions"] == 2
    assert v["ProvisionedConcurrencyUtilization"] == 0.25
    m.provisioned("fn", "1", allocated=0, requested=0)      # configuration removed
    v = version(m.snapshot())
    assert v["ProvisionedConcurrencyUtilization"] is None and v["AllocatedProvisionedConcurrentExecutions"] is None


def test_async_metrics_are_per_function():
    m = Metrics()
    for _ in range(3):
        m.async_received("fn")
    m.async_age("fn", 1500.0)
    m.async_age("fn", 60_000.0)
    m.async_dropped("fn")
    m.dead_letter_error("fn")
    m.destination_delivery_failure("fn")
    m.destination_delivery_failure("fn")
    fn = m.snapshot()["functions"]["fn"]
    assert (fn["AsyncEventsReceived"], fn["AsyncEventsDropped"], fn["DeadLetterErrors"],
            fn["DestinationDeliveryFailures"]) == (3, 1, 1, 2)
    assert fn["AsyncEventAge"]["count"] == 2 and fn["AsyncEventAge"]["max"] == 60_000.0
    assert fn["versions"] == {} and fn["Invocations"] == 0


def test_snapshot_shape():
    m = Metrics()
    m.invocation("fn", "1", duration_ms=2.0, error=False)
    m.async_received("fn")
    snap = m.snapshot()
    assert set(snap) == {"functions", "runtime"}
    assert set(snap["runtime"]) == RUNTIME_KEYS
    fn = snap["functions"]["fn"]
    assert set(fn) == FUNCTION_KEYS and set(fn["versions"]) == {"1"}
    assert set(fn["versions"]["1"]) == VERSION_KEYS
    for h in (fn["Duration"], fn["AsyncEventAge"], fn["versions"]["1"]["Duration"]):
        assert set(h) == HISTOGRAM_KEYS
    empty = fn["AsyncEventAge"]
    assert empty["count"] == 0 and empty["min"] is empty["p50"] is None and empty["sum"] == 0.0
    json.loads(json.dumps(snap))                    # plain data
    assert Metrics().snapshot() == {"functions": {}, "runtime": dict.fromkeys(RUNTIME_KEYS, 0)}


def test_remove_forgets_a_function_and_its_running_invocations():
    m = Metrics()
    m.concurrency("fn", "1", +1)
    m.concurrency("fn", "2", +1)
    m.invocation("fn", "2", duration_ms=1.0, error=False)
    m.concurrency("keep", "1", +1)
    m.remove("fn", "2")
    snap = m.snapshot()
    assert set(snap["functions"]["fn"]["versions"]) == {"1"} and snap["runtime"]["ConcurrentExecutions"] == 2
    m.remove("fn")
    m.concurrency("fn", "1", -1)        # an invocation that outlived its function: ignored
    snap = m.snapshot()
    assert set(snap["functions"]) == {"keep"}
    assert snap["runtime"]["ConcurrentExecutions"] == snap["runtime"]["UnreservedConcurrentExecutions"] == 1
    m.remove("never-seen")


def test_bucket_bounds_are_checked():
    for bad in ((), (0, 1), (2, 1), (1, 1), (1, math.inf)):
        with pytest.raises(ValueError):
            Metrics(duration_buckets_ms=bad)
    m = Metrics(duration_buckets_ms=(10, 100))
    m.invocation("fn", "1", duration_ms=50.0, error=False)
    assert version(m.snapshot())["Duration"]["buckets"] == {10.0: 0, 100.0: 1, math.inf: 1}


def busy_metrics():
    m = Metrics()
    for i in range(20):
        m.concurrency("fn", "1", +1)
        m.invocation("fn", "1", duration_ms=0.5 * i, error=i % 4 == 0, provisioned=i < 5, spillover=i >= 15)
    m.concurrency("fn", "1", -1)
    m.provisioned("fn", "1", allocated=10, requested=10)
    m.concurrency("fn", "1", +1, provisioned=True)
    m.invocation("fn", "$LATEST", duration_ms=12000.0, error=True)
    m.throttle("fn", "$LATEST")
    m.throttle("fn", None)
    m.throttle("fn", None)
    m.reserved_concurrency("fn", 50)
    m.concurrency('we"ird\\name', "7", +1)
    for age in (5.0, 70_000.0, 7_200_000.0):
        m.async_age("fn", age)
        m.async_received("fn")
    m.async_dropped("fn")
    m.dead_letter_error("fn")
    m.destination_delivery_failure("fn")
    return m


def parse(text):
    """{(sample name, frozenset of labels): value} and {family name: type}."""
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, key
            samples[key] = s.value
    return samples, types


def test_prometheus_text_parses_and_matches_the_snapshot():
    m = busy_metrics()
    snap = m.snapshot()
    samples, types = parse(m.prometheus().decode())

    def value(name, **labels):
        return samples.pop((name, frozenset(labels.items())))

    def histogram(name, summary, **labels):
        for bound, count in summary["buckets"].items():
            le = "+Inf" if bound == math.inf else prometheus_client.utils.floatToGoString(bound)
            assert value(name + "_bucket", le=le, **labels) == count
        assert value(name + "_count", **labels) == summary["count"]
        assert value(name + "_sum", **labels) == pytest.approx(summary["sum"])

    assert types["sandbox_function_invocations"] == "counter"
    assert types["sandbox_function_duration_milliseconds"] == "histogram"
    assert types["sandbox_function_concurrent_executions"] == "gauge"
    assert types["sandbox_function_provisioned_concurrency_utilization"] == "gauge"
    assert types["sandbox_async_event_age_milliseconds"] == "histogram"
    for name, fn in snap["functions"].items():
        for ver, v in fn["versions"].items():
            labels = dict(function=name, version=ver)
            assert value("sandbox_function_invocations_total", **labels) == v["Invocations"]
            assert value("sandbox_function_errors_total", **labels) == v["Errors"]
            assert value("sandbox_function_throttles_total", **labels) == v["Throttles"]
            assert value("sandbox_function_concurrent_executions", **labels) == v["ConcurrentExecutions"]
            histogram("sandbox_function_duration_milliseconds", v["Duration"], **labels)
            if v["AllocatedProvisionedConcurrentExecutions"] is not None:
                for metric, key in (("sandbox_function_provisioned_concurrency_invocations_total",
                                     "ProvisionedConcurrencyInvocations"),
                                    ("sandbox_function_provisioned_concurrency_spillover_invocations_total",
                                     "ProvisionedConcurrencySpilloverInvocations"),
                                    ("sandbox_function_provisioned_concurrent_executions",
                                     "ProvisionedConcurrentExecutions"),
                                    ("sandbox_function_provisioned_concurrency_allocated",
                                     "AllocatedProvisionedConcurrentExecutions"),
                                    ("sandbox_function_provisioned_concurrency_requested",
                                     "RequestedProvisionedConcurrentExecutions"),
                                    ("sandbox_function_provisioned_concurrency_utilization",
                                     "ProvisionedConcurrencyUtilization")):
                    assert value(metric, **labels) == v[key]
        unattributed = fn["Throttles"] - sum(v["Throttles"] for v in fn["versions"].values())
        if unattributed:
            assert value("sandbox_function_throttles_total", function=name, version="") == unattributed
        if fn["ReservedConcurrentExecutions"] is not None:
            assert value("sandbox_function_reserved_concurrency", function=name) == \
                fn["ReservedConcurrentExecutions"]
        for metric, key in (("sandbox_async_events_received_total", "AsyncEventsReceived"),
                            ("sandbox_async_events_dropped_total", "AsyncEventsDropped"),
                            ("sandbox_dead_letter_errors_total", "DeadLetterErrors"),
                            ("sandbox_destination_delivery_failures_total", "DestinationDeliveryFailures")):
            assert value(metric, function=name) == fn[key]
        histogram("sandbox_async_event_age_milliseconds", fn["AsyncEventAge"], function=name)
    assert value("sandbox_concurrent_executions") == snap["runtime"]["ConcurrentExecutions"]
    assert value("sandbox_unreserved_concurrent_executions") == snap["runtime"]["UnreservedConcurrentExecutions"]
    assert samples == {}, f"samples the snapshot does not explain: {sorted(samples)}"
    # the values the busy run was built to show, so the comparison above is not vacuous
    assert snap["functions"]["fn"]["Throttles"] == 3
    assert version(snap)["ProvisionedConcurrencyUtilization"] == 0.1
    assert 'we"ird\\name' in snap["functions"]


def test_collector_on_another_registry():
    m = busy_metrics()
    registry = prometheus_client.CollectorRegistry()
    registry.register(m.collector())
    assert registry.get_sample_value("sandbox_function_invocations_total",
                                     {"function": "fn", "version": "1"}) == 20
    assert registry.get_sample_value("sandbox_function_throttles_total", {"function": "fn", "version": ""}) == 2
    m.invocation("fn", "1", duration_ms=1.0, error=False)           # read live at each collect
    assert registry.get_sample_value("sandbox_function_invocations_total",
                                     {"function": "fn", "version": "1"}) == 21


def test_per_call_cost(capsys):
    """Measured and printed, not asserted (machines differ).  The warm invoke path is ~16 us."""
    m = busy_metrics()
    n = 20000
    calls = {
        "invocation": lambda: m.invocation("fn", "1", duration_ms=3.7, error=False),
        "concurrency (one call)": lambda: m.concurrency("fn", "1", 1),
        "throttle": lambda: m.throttle("fn", "1"),
        "async_received": lambda: m.async_received("fn"),
        "async_age": lambda: m.async_age("fn", 1234.5),
    }
    costs = {name: min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e9 for name, fn in calls.items()}
    with capsys.disabled():
        print("\nsandbox.functions.metrics per-call cost: " +
              ", ".join(f"{name} {ns:.0f} ns" for name, ns in costs.items()))
    assert all(ns > 0 for ns in costs.values())


def test_docs_example_runs():
    with open(DOCS) as src:
        blocks = re.findall(r"```python\n(.*?)```", src.read(), flags=re.S)
    assert blocks, "docs/metrics.md lost its runnable example"
    for index, code in enumerate(blocks):
        exec(compile(code, f"docs/metrics.md[block {index}]", "exec"), {"__name__": "__docs__"})
