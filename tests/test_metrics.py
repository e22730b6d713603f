"""inferlab.serving.metrics: the Prometheus text format, written and read back (lesson 11)."""
import math
import threading

import pytest

from inferlab.serving import metrics


def make_registry():
    registry = metrics.Registry()
    requests = registry.counter("req_total", "Requests.", labelnames=("status",))
    latency = registry.histogram("lat_seconds", "Latency.", buckets=(0.1, 0.5, 1.0))
    queue = registry.gauge("queue_depth", "Waiting requests.")
    return registry, requests, latency, queue


def test_render_and_parse_round_trip():
    registry, requests, latency, queue = make_registry()
    requests.inc(status="ok")
    requests.inc(2, status="ok")
    requests.inc(status="error")
    for value in (0.05, 0.1, 0.3, 2.0):
        latency.observe(value)
    queue.set(4)
    queue.dec()
    samples = metrics.parse(registry.render())
    assert metrics.value(samples, "req_total", status="ok") == 3
    assert metrics.value(samples, "req_total") == 4
    assert metrics.value(samples, "queue_depth") == 3
    # cumulative buckets; le is inclusive (0.1 falls in le="0.1")
    assert metrics.buckets(samples, "lat_seconds") == [(0.1, 2), (0.5, 3), (1.0, 3), (math.inf, 4)]
    assert metrics.value(samples, "lat_seconds_count") == 4
    assert math.isclose(metrics.value(samples, "lat_seconds_sum"), 2.45)
    with pytest.raises(KeyError):
        metrics.value(samples, "missing_metric")


def test_output_is_valid_for_prometheus_client():
    parser = pytest.importorskip("prometheus_client.parser")
    registry, requests, latency, queue = make_registry()
    requests.inc(status='with "quotes", commas\nand a newline')
    latency.observe(0.2)
    queue.set(1.5)
    families = {f.name: f for f in parser.text_string_to_metric_families(registry.render())}
    assert families["req"].type == "counter"
    assert families["lat_seconds"].type == "histogram"
    assert families["queue_depth"].samples[0].value == 1.5
    label = families["req"].samples[0].labels["status"]
    assert label == 'with "quotes", commas\nand a newline'
    # and our parser reads the same back
    ours = metrics.parse(registry.render())
    assert ("req_total", {"status": label}, 1.0) in ours


def test_parse_handles_timestamps_inf_nan_and_comments():
    text = ('# HELP x y\n# TYPE x gauge\n\nx{a="1 2",b="c,d"} 1.5e3 1700000000000\n'
            'y +Inf\nz NaN\nw{} 3\n')
    samples = metrics.parse(text)
    assert samples[0] == ("x", {"a": "1 2", "b": "c,d"}, 1500.0)
    assert samples[1] == ("y", {}, math.inf)
    assert math.isnan(samples[2][2])
    assert samples[3] == ("w", {}, 3.0)
    with pytest.raises(ValueError):
        metrics.parse("not a sample line at all")


def test_histogram_quantile_follows_promql():
    cumulative = [(0.1, 5), (0.5, 10), (math.inf, 10)]
    assert math.isclose(metrics.histogram_quantile(0.5, cumulative), 0.1)
    assert math.isclose(metrics.histogram_quantile(0.75, cumulative), 0.3)
    assert math.isclose(metrics.histogram_quantile(0.25, cumulative), 0.05)
    assert metrics.histogram_quantile(0.99, [(1.0, 2), (2.0, 3), (math.inf, 10)]) == 2.0
    assert math.isnan(metrics.histogram_quantile(0.5, [(1.0, 0), (math.inf, 0)]))
    with pytest.raises(ValueError):
        metrics.histogram_quantile(1.5, cumulative)


def test_counter_rules_and_duplicates():
    registry, requests, _, _ = make_registry()
    with pytest.raises(ValueError):
        requests.inc(-1, status="ok")
    with pytest.raises(ValueError):
        registry.counter("req_total", "again")
    plain = registry.counter("plain_total", "No labels.")
    assert "plain_total 0" in registry.render()
    plain.inc()
    assert "plain_total 1" in registry.render()


def test_metrics_are_thread_safe():
    registry, requests, latency, _ = make_registry()

    def work():
        for _ in range(1000):
            requests.inc(status="ok")
            latency.observe(0.2)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    samples = metrics.parse(registry.render())
    assert metrics.value(samples, "req_total") == 8000
    assert metrics.value(samples, "lat_seconds_count") == 8000
