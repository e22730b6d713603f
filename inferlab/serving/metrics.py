"""Monitoring a served model with Prometheus-format metrics. Lesson 11.

Every production server (vLLM, Ray Serve, TGI, Triton) exposes a ``/metrics`` page in the
Prometheus *text exposition format*; a Prometheus server scrapes it every few seconds and
Grafana draws it. The format is plain text, one sample per line::

    # HELP requests_total Requests answered.
    # TYPE requests_total counter
    requests_total{status="ok"} 42
    # TYPE latency_seconds histogram
    latency_seconds_bucket{le="0.5"} 30
    latency_seconds_bucket{le="+Inf"} 42
    latency_seconds_sum 12.5
    latency_seconds_count 42

Three kinds of metric cover what the tutorial asks to "track: latency, throughput, cost":

* **counter** - only goes up (requests, tokens generated). Rates come from differences:
  tokens/s = (tokens_total now - tokens_total before) / seconds between the two reads.
* **gauge** - goes up and down (requests waiting in the queue, replicas running).
* **histogram** - counts of observations at or below each bucket bound ``le`` (cumulative),
  plus their sum and count. Percentiles are *estimated* from the buckets
  (``histogram_quantile``, the same linear interpolation PromQL uses): the server never keeps
  every latency, so a histogram costs the same memory at 10 or 10 million requests.

This module is a small, thread-safe implementation (``Registry``, ``Counter``, ``Gauge``,
``Histogram``) that renders the format, and a parser that reads it back. ``prometheus_client``
is the library real servers use; the test-suite checks this output parses with it.
"""
from __future__ import annotations

import bisect
import math
import re
import threading

DEFAULT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if value != int(value) else str(int(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str):
        self.name, self.help = name, help_text
        self.lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A value that only increases (``inc``)."""
    kind = "counter"

    def __init__(self, name, help_text, labelnames=()):
        super().__init__(name, help_text)
        self.labelnames, self.values = tuple(labelnames), {}

    def inc(self, amount: float = 1.0, **labels) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = tuple(str(labels.get(n, "")) for n in self.labelnames)
        with self.lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def render(self) -> list[str]:
        with self.lock:
            items = sorted(self.values.items()) or ([((), 0.0)] if not self.labelnames else [])
        return self.header() + [f"{self.name}{_labels(dict(zip(self.labelnames, k)))} "
                                f"{_format_value(v)}" for k, v in items]


class Gauge(_Metric):
    """A value that goes up and down (``set``, ``inc``, ``dec``)."""
    kind = "gauge"

    def __init__(self, name, help_text):
        super().__init__(name, help_text)
        self.value = 0.0

    def set(self, value: float) -> None:
        with self.lock:
            self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self.lock:
            self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)

    def render(self) -> list[str]:
        return self.header() + [f"{self.name} {_format_value(self.value)}"]


class Histogram(_Metric):
    """Observations counted in cumulative buckets ``le`` (upper bounds), plus sum and count."""
    kind = "histogram"

    def __init__(self, name, help_text, buckets=DEFAULT_BUCKETS):
        super().__init__(name, help_text)
        self.bounds = tuple(sorted(float(b) for b in buckets)) + (math.inf,)
        self.counts = [0] * len(self.bounds)  # per bucket, not cumulative
        self.sum, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        with self.lock:
            self.counts[bisect.bisect_left(self.bounds, value)] += 1
            self.sum += value
            self.count += 1

    def render(self) -> list[str]:
        with self.lock:
            lines, running = self.header(), 0
            for bound, n in zip(self.bounds, self.counts):
                running += n
                lines.append(f'{self.name}_bucket{{le="{_format_value(bound)}"}} {running}')
            lines += [f"{self.name}_sum {_format_value(self.sum)}",
                      f"{self.name}_count {self.count}"]
        return lines


class Registry:
    """The metrics one server exports; ``render()`` is the body of its ``/metrics`` page."""

    def __init__(self):
        self.metrics: list[_Metric] = []

    def _add(self, metric):
        if any(m.name == metric.name for m in self.metrics):
            raise ValueError(f"metric {metric.name!r} is already registered")
        self.metrics.append(metric)
        return metric

    def counter(self, name, help_text, labelnames=()) -> Counter:
        return self._add(Counter(name, help_text, labelnames))

    def gauge(self, name, help_text) -> Gauge:
        return self._add(Gauge(name, help_text))

    def histogram(self, name, help_text, buckets=DEFAULT_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help_text, buckets))

    def render(self) -> str:
        return "\n".join(line for m in self.metrics for line in m.render()) + "\n"


# ------------------------------------------------------------------------------- reading back
def parse_labels(text: str) -> dict[str, str]:
    """``'a="1",b="x,y"'`` -> ``{"a": "1", "b": "x,y"}`` (quoted values may hold commas)."""
    labels, pos = {}, 0
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if not match:
            if text[pos:].strip(" ,"):
                raise ValueError(f"bad label set: {text!r}")
            break
        value = match.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        labels[match.group(1)] = value
        pos = match.end()
    return labels


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a /metrics page as ``(name, labels, value)``; comments are skipped."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise ValueError(f"not a Prometheus sample line: {line!r}")
        samples.append((match.group(1), parse_labels(match.group(3) or ""), float(match.group(4))))
    return samples


def value(samples, name: str, **labels) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    found = [v for n, labs, v in samples
             if n == name and all(labs.get(k) == str(x) for k, x in labels.items())]
    if not found:
        raise KeyError(f"no sample {name}{labels or ''}")
    return sum(found)


def buckets(samples, name: str) -> list[tuple[float, float]]:
    """A histogram's cumulative ``(le, count)`` pairs, sorted by bound (``name`` without
    _bucket)."""
    pairs: dict[float, float] = {}
    for n, labs, v in samples:
        if n == name + "_bucket":
            bound = float(labs["le"])
            pairs[bound] = pairs.get(bound, 0.0) + v  # sums over other labels (e.g. replicas)
    return sorted(pairs.items())


def histogram_quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Estimate the ``q``-quantile (0-1) from cumulative buckets, as PromQL does: find the bucket
    holding rank ``q * total`` and interpolate linearly inside it (the first bucket starts at 0;
    a rank in the ``+Inf`` bucket returns the largest finite bound)."""
    if not 0 <= q <= 1:
        raise ValueError("q must be in [0, 1]")
    cumulative = sorted(cumulative)
    if not cumulative or cumulative[-1][1] == 0:
        return math.nan
    total = cumulative[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return (lower_bound
                    + (bound - lower_bound) * (rank - lower_count) / (count - lower_count))
        lower_bound, lower_count = bound, count
    return lower_bound
