"""What a served request is measured by. Lesson 10 (graded there), used by lesson 11.

A streaming client records, for each request, when it was sent and when each piece of output
arrived. Everything a serving dashboard shows follows from those timestamps:

* **TTFT** (time to first token) = first arrival - send time. What a chat user feels as "it
  started answering". It contains queueing + prefill of the whole prompt.
* **ITL** (inter-token latency) = the gaps between consecutive arrivals. What the user feels as
  reading speed. Pooled over all requests, its percentiles describe the stream's smoothness.
* **End-to-end latency** = last arrival - send time.
* **Throughput** = all output tokens / (last arrival of any request - first send). A *system*
  number: the mean of per-request speeds would ignore the time requests spent waiting.
* **p50/p95** - the median and the 95th percentile (linear interpolation between the two
  closest ranks, NumPy's default). Tails matter: p95 is what one request in twenty sees.

A streamed chunk usually carries one token; when a server batches several into one chunk,
``n_tokens`` (the server's own count, from the ``usage`` field) is the number to trust for
throughput, and the ITL is then the gap between chunks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class RequestTrace:
    """One request as the client saw it (``time.perf_counter()`` seconds)."""
    start: float
    token_times: list[float] = field(default_factory=list)
    n_tokens: int | None = None       # the server's count of generated tokens, if it gave one
    prompt_tokens: int | None = None
    text: str = ""
    error: str | None = None

    @property
    def output_tokens(self) -> int:
        return self.n_tokens if self.n_tokens is not None else len(self.token_times)

    @property
    def end(self) -> float:
        return self.token_times[-1] if self.token_times else self.start

    @property
    def ttft(self) -> float | None:
        return self.token_times[0] - self.start if self.token_times else None

    @property
    def itls(self) -> list[float]:
        return [b - a for a, b in zip(self.token_times, self.token_times[1:])]


def percentile(values, q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation, like ``numpy.percentile``."""
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    rank = (len(data) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def summarize(traces: list[RequestTrace]) -> dict[str, float]:
    """Throughput and latency percentiles of a run (times in seconds)."""
    done = [t for t in traces if t.error is None and t.token_times]
    if not done:
        errors = [t.error for t in traces if t.error]
        raise ValueError(f"no request succeeded ({len(traces)} sent); first error: {errors[:1]}")
    begin = min(t.start for t in done)
    finish = max(t.end for t in done)
    tokens = sum(t.output_tokens for t in done)
    itls = [gap for t in done for gap in t.itls]
    ttfts = [t.ttft for t in done]
    e2e = [t.end - t.start for t in done]
    out = {"requests": len(done), "failed": len(traces) - len(done), "output_tokens": tokens,
           "duration_s": finish - begin,
           "throughput_tok_s": tokens / (finish - begin) if finish > begin else float("nan"),
           "requests_per_s": len(done) / (finish - begin) if finish > begin else float("nan"),
           "ttft_p50": percentile(ttfts, 50), "ttft_p95": percentile(ttfts, 95),
           "e2e_p50": percentile(e2e, 50), "e2e_p95": percentile(e2e, 95)}
    out["itl_p50"] = percentile(itls, 50) if itls else float("nan")
    out["itl_p95"] = percentile(itls, 95) if itls else float("nan")
    return out


COLUMNS = (("throughput_tok_s", "tok/s", 1), ("ttft_p50", "TTFT p50 ms", 1e3),
           ("ttft_p95", "TTFT p95 ms", 1e3), ("itl_p50", "ITL p50 ms", 1e3),
           ("itl_p95", "ITL p95 ms", 1e3))


def format_table(results: dict[str, dict | str]) -> str:
    """A fixed-width table: one row per engine; a string value is the reason it did not run."""
    head = f"{'engine':<34}" + "".join(f"{title:>13}" for _, title, _ in COLUMNS)
    rows = [head, "-" * len(head)]
    for name, summary in results.items():
        if isinstance(summary, str):
            rows.append(f"{name:<34}  not run: {summary}")
            continue
        cells = []
        for key, _, scale in COLUMNS:
            value = summary.get(key)
            cells.append(f"{'n/a':>13}" if value is None or value != value
                         else f"{value * scale:>13.1f}")
        rows.append(f"{name:<34}" + "".join(cells))
    return "\n".join(rows)
