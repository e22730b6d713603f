"""A pretend accelerator with a scripted clock: testing a benchmark harness anywhere (lesson 13).

A GPU works *asynchronously*: a call that launches kernels returns as soon as they are queued, and
the work is done later. A harness that reads the clock without first waiting for the device
(``torch.cuda.synchronize``) measures how fast Python queued the work, not how fast the device did
it. On a CPU nothing is queued, so such a harness gives right numbers there and wrong ones on a
GPU: a bug that no CPU run shows. This module imitates that behaviour, deterministically, so that a
harness can be checked on any machine (lesson 13's graded tests do):

* ``generate(requests, max_new_tokens)`` "runs" a scripted workload: it returns the requests'
  outputs at once and *queues* the work's cost on the device;
* ``synchronize()`` waits for the queued work: the device's clock moves on by its cost;
* ``clock()`` reads the device's clock, in seconds.

A scripted request (``request``) is plain data: its prompt's token ids, the ids the model
"generates" - which may run on past an end-of-sequence token, like the padded rows of a batched
``generate`` - and the seconds it costs on each call (a first call can cost more: a cold start).
``workload`` builds a list of them whose calls cost given totals. The module keeps one device
(its clock and its queue) per process; timings are differences of ``clock()``, so where the clock
stands when a harness starts does not matter.
"""
from __future__ import annotations

_DEVICE = {"now": 0.0, "queued": 0.0}


def request(prompt_ids, output_ids, seconds) -> dict:
    """One scripted request: call ``i`` of ``generate`` costs ``seconds[i]`` (the last value once
    the list runs out) and "generates" ``output_ids`` (cut at ``max_new_tokens``)."""
    seconds = [float(s) for s in seconds]
    if not seconds or any(s < 0 for s in seconds):
        raise ValueError("seconds: one or more costs >= 0, one per call")
    return {"prompt": [int(t) for t in prompt_ids], "output": [int(t) for t in output_ids],
            "seconds": seconds, "calls": 0}


def workload(prompts, outputs, call_seconds) -> list[dict]:
    """Requests for ``prompts`` (lists of token ids) with ``outputs``, where the whole workload's
    call ``i`` costs ``call_seconds[i]`` (carried by the first request; the others cost 0)."""
    if len(prompts) != len(outputs) or not prompts:
        raise ValueError("one output per prompt, at least one prompt")
    return [request(p, o, call_seconds if i == 0 else [0.0])
            for i, (p, o) in enumerate(zip(prompts, outputs))]


def generate(requests, max_new_tokens: int) -> list[tuple[list, list]]:
    """``(prompt_ids, output_ids)`` for every request, returned at once; their cost is queued."""
    cost, results = 0.0, []
    for req in requests:
        cost += req["seconds"][min(req["calls"], len(req["seconds"]) - 1)]
        req["calls"] += 1
        results.append((list(req["prompt"]), list(req["output"][:max_new_tokens])))
    _DEVICE["queued"] += cost
    return results


def synchronize(device=None) -> None:
    """Wait until the queued work is done (``device`` is accepted and ignored, like
    ``inferlab.lab.bench.synchronize`` on a CPU)."""
    _DEVICE["now"] += _DEVICE["queued"]
    _DEVICE["queued"] = 0.0


def clock() -> float:
    """The device's time in seconds: it moves only when ``synchronize`` waits for queued work."""
    return _DEVICE["now"]
