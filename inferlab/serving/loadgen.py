"""Generating load: N concurrent clients, or a request rate that ramps up. Lessons 10 and 11.

Two ways to load a server, and they answer different questions:

* **Closed loop** (``closed_loop``): N clients, each sends a request, waits for the whole answer,
  sends the next. The server never has more than N requests, so this measures "how fast with
  N users" - the knob is *concurrency*. Used in lesson 10 to compare engines.
* **Open loop** (``open_loop``): requests *arrive* at a rate (Poisson: random gaps with a given
  mean), whether or not earlier ones finished - like real traffic. If the server is slower than
  the arrival rate, a queue builds up and latency grows without bound. Used in lesson 11 to watch
  an autoscaler add replicas as the rate ramps up.

``send(prompt)`` is any function that returns a ``RequestTrace`` (an HTTP client from
``clients`` or an in-process engine from ``engines``). Both loops are bounded in requests and
time and use only threads of this process.

``drive`` runs a *sans-I/O* load generator in real time - an object that only decides and records
(``due(now)``: which requests to send now; ``token(i, t)``, ``done(i, t)``: what came back) while
``drive`` does the waiting, the threads and the sending. Lesson 10's student writes such an
object (Poisson arrivals, a concurrency limit, TTFT measured from the send); keeping the clock out
of it is what lets its tests run on a fake clock.
"""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from .latency import RequestTrace

Send = Callable[[str], RequestTrace]


def _safe(send: Send, prompt: str) -> RequestTrace:
    start = time.perf_counter()
    try:
        return send(prompt)
    except Exception as error:  # noqa: BLE001 - a failed request is data, not a crash
        return RequestTrace(start=start, error=f"{error.__class__.__name__}: {error}")


def closed_loop(send: Send, prompts: Sequence[str], concurrency: int) -> list[RequestTrace]:
    """Send every prompt once with ``concurrency`` clients; traces in prompt order."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    traces: list[RequestTrace | None] = [None] * len(prompts)
    next_index = iter(range(len(prompts)))
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            traces[index] = _safe(send, prompts[index])

    workers = [threading.Thread(target=client, daemon=True)
               for _ in range(min(concurrency, len(prompts)))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return traces  # type: ignore[return-value]


def arrival_times(schedule: Sequence[tuple[float, float]], seed: int = 0) -> list[float]:
    """Poisson arrival times (s from the start) for phases
    ``[(duration_s, requests_per_s), ...]``."""
    rng = random.Random(seed)
    times, phase_start = [], 0.0
    for duration, rate in schedule:
        t = phase_start
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= phase_start + duration:
                break
            times.append(t)
        phase_start += duration
    return times


def open_loop(send: Send, prompts: Sequence[str], schedule: Sequence[tuple[float, float]], *,
              max_in_flight: int = 64, seed: int = 0,
              on_tick: Callable[[float], None] | None = None) -> list[tuple[float, RequestTrace]]:
    """Send requests at the rates of ``schedule``; return ``[(arrival_s, trace), ...]``.

    Prompts are used round-robin. ``max_in_flight`` bounds the client threads (a request that
    finds them all busy waits, and its wait counts in its latency, as a real user's would).
    ``on_tick(elapsed_s)`` is called about every 0.5 s while the load runs (to sample metrics).
    """
    arrivals = arrival_times(schedule, seed)
    results: list[tuple[float, RequestTrace]] = []
    begin = time.perf_counter()

    def timed(prompt: str, sent_at: float) -> tuple[float, RequestTrace]:
        trace = _safe(send, prompt)
        trace.start = min(trace.start, begin + sent_at)  # queueing in the client counts
        return sent_at, trace

    with ThreadPoolExecutor(max_workers=max_in_flight) as pool:
        futures = []
        last_tick = 0.0
        for i, at in enumerate(arrivals):
            while (now := time.perf_counter() - begin) < at:
                if on_tick and now - last_tick >= 0.5:
                    on_tick(now)
                    last_tick = now
                time.sleep(min(0.05, at - now))
            futures.append(pool.submit(timed, prompts[i % len(prompts)], at))
        total = sum(d for d, _ in schedule)
        while (now := time.perf_counter() - begin) < total or not all(f.done() for f in futures):
            if on_tick and now - last_tick >= 0.5:
                on_tick(now)
                last_tick = now
            time.sleep(0.05)
        results = [f.result() for f in futures]
    return results


def drive(generator, send: Send, prompts: Sequence[str], *, poll_s: float = 0.005,
          timeout_s: float = 600.0) -> float:
    """Run a sans-I/O load generator against ``send`` in real time; return the wall seconds.

    ``generator`` has ``arrivals`` (one arrival time per request, seconds from the start),
    ``due(now) -> [request index, ...]`` (called from this thread only), ``token(i, t)`` and
    ``done(i, t)``. Each request it releases is sent on a thread of its own with
    ``prompts[i % len(prompts)]``; the trace's token times (measured by the streaming client) are
    reported relative to the start, then ``done`` at the last token (or at the failure).
    """
    n = len(generator.arrivals)
    lock = threading.Lock()
    finished = [0]
    begin = time.perf_counter()

    def run(i: int) -> None:
        trace = _safe(send, prompts[i % len(prompts)])
        end = trace.end if trace.token_times else time.perf_counter()
        with lock:
            for t in trace.token_times:
                generator.token(i, t - begin)
            generator.done(i, end - begin)
            finished[0] += 1

    workers = []
    while True:
        with lock:
            if finished[0] >= n:
                break
            released = generator.due(time.perf_counter() - begin)
        for i in released:
            worker = threading.Thread(target=run, args=(i,), daemon=True)
            worker.start()
            workers.append(worker)
        if time.perf_counter() - begin > timeout_s:
            raise TimeoutError(f"the load did not finish in {timeout_s:.0f} s "
                               f"({finished[0]} of {n} requests done)")
        time.sleep(poll_s)
    for worker in workers:
        worker.join()
    return time.perf_counter() - begin
