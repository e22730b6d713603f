"""Serving at a fixed concurrency: throughput and inter-token latency of the course engine and of
transformers' static batches on one workload (lesson 06; ``benchmarks/engine_serving_gpu.py``).

A serving engine is judged at the number of requests it holds at once - its *concurrency*. At 8
concurrent sequences a decode step still reads every weight for few tokens (memory-bound, like
batch 1); at 128-256 the same read serves hundreds of tokens and the step's arithmetic and the
K/V reads of all those contexts take over. So the figures to compare are tokens/s *and* the
inter-token latency (ITL) each user sees, p50 and p99, at each concurrency.

* **The workload.** Real chat traffic has a long tail of prompt and answer lengths; a fixed
  length would hide what continuous batching is for. ``sharegpt_like`` draws lengths from
  log-normal distributions with medians and spreads like the ShareGPT conversations that vLLM's
  benchmarks replay (median prompt ~180 tokens, answer ~120, clipped) - lengths only, generated
  offline with a seed: no text is downloaded.
* **The engine** (``engine_traces``): every request is queued at time 0 and ``max_num_seqs``
  caps how many run at once - a closed loop at that concurrency. Each step's end time is a token
  arrival for each request it served, so a prefill step that makes running requests wait shows up
  in their ITL, as it would for a streaming user.
* **transformers** (``hf_static_traces``): ``generate`` on batches of ``concurrency`` requests,
  left-padded, each batch running until its longest answer is done (static batching, lesson 06);
  only the tokens each request asked for count.
* **The roofline** (``decode_roofline``): the least time the decode steps could take - per
  step, the weights plus the K/V of every context at the memory bandwidth, or the step's
  multiply-adds at the datasheet's peak, whichever is longer.
"""
from __future__ import annotations

import math
import time

import torch

from .latency import RequestTrace, percentile


def sharegpt_like(n: int, seed: int = 0, max_prompt: int = 512, max_output: int = 256,
                  vocab_size: int = 32000) -> list[tuple[list[int], int]]:
    """``n`` requests ``(prompt token ids, answer length)`` with ShareGPT-like lengths:
    log-normal, median 180 prompt and 120 answer tokens, clipped to 16..``max_prompt`` and
    16..``max_output``; token ids are random (for speed measurements on random weights)."""
    if n < 1 or max_prompt < 16 or max_output < 16:
        raise ValueError("need n >= 1 and max_prompt, max_output >= 16")
    gen = torch.Generator().manual_seed(seed)

    def lengths(median, sigma, top):
        draw = torch.randn(n, generator=gen) * sigma + math.log(median)
        return [int(min(top, max(16, round(math.exp(v))))) for v in draw.tolist()]

    prompts, outputs = lengths(180, 0.8, max_prompt), lengths(120, 0.7, max_output)
    ids = torch.randint(10, vocab_size, (sum(prompts),), generator=gen).tolist()
    requests, start = [], 0
    for p, o in zip(prompts, outputs):
        requests.append((ids[start:start + p], o))
        start += p
    return requests


def engine_traces(engine, requests) -> tuple[list[RequestTrace], list[dict]]:
    """Run ``requests`` (``(prompt ids, answer length)``) through ``engine``, all queued at once;
    its ``max_num_seqs`` is the concurrency. Returns one ``RequestTrace`` per request and one
    record per step: ``{"start", "end", "prefill", "contexts"}`` (context lengths of the
    sequences it ran)."""
    from inferlab.engine import SamplingParams
    traces, ids = {}, {}
    begin = time.perf_counter()
    for prompt, n_out in requests:
        rid = engine.add_request(list(prompt), SamplingParams(max_tokens=n_out, ignore_eos=True))
        ids[rid] = len(prompt)
        traces[rid] = RequestTrace(start=begin, prompt_tokens=len(prompt))
    steps = []
    while engine.has_unfinished():
        start = time.perf_counter()
        result = engine.step()
        end = time.perf_counter()           # the step returned its tokens: the GPU is done
        contexts = []
        for rid in result.request_ids:
            trace = traces[rid]
            contexts.append(ids[rid] + len(trace.token_times))
            trace.token_times.append(end)
        steps.append({"start": start, "end": end, "prefill": result.is_prefill,
                      "contexts": contexts})
    engine.pop_finished()
    return list(traces.values()), steps


def hf_static_traces(model, requests, concurrency: int,
                     pad_token_id: int = 0) -> list[RequestTrace]:
    """transformers ``generate`` (greedy) on batches of ``concurrency`` requests, left-padded;
    each batch generates its longest answer length for all its rows. A request's tokens arrive
    with the steps of its batch, up to its own answer length."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class StepClock(LogitsProcessor):
        """Records when each step's logits are ready (generate syncs every step)."""
        def __init__(self):
            self.times = []

        def __call__(self, input_ids, scores):
            self.times.append(time.perf_counter())
            return scores

    device = next(model.parameters()).device
    traces = []
    begin = time.perf_counter()
    for i in range(0, len(requests), concurrency):
        batch = requests[i:i + concurrency]
        width = max(len(p) for p, _ in batch)
        ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (prompt, _) in enumerate(batch):
            ids[row, width - len(prompt):] = torch.tensor(prompt)
            mask[row, width - len(prompt):] = 1
        longest = max(n for _, n in batch)
        clock = StepClock()
        model.generate(ids.to(device), attention_mask=mask.to(device), do_sample=False,
                       max_new_tokens=longest, min_new_tokens=longest, pad_token_id=pad_token_id,
                       logits_processor=LogitsProcessorList([clock]))
        for prompt, n_out in batch:
            traces.append(RequestTrace(start=begin, token_times=clock.times[:n_out],
                                       prompt_tokens=len(prompt)))
    return traces


def summarize_run(traces: list[RequestTrace]) -> dict:
    """Output tokens/s over the run, and ITL / TTFT percentiles in milliseconds."""
    begin = min(t.start for t in traces)
    finish = max(t.end for t in traces)
    tokens = sum(len(t.token_times) for t in traces)
    itls = [gap for t in traces for gap in t.itls]
    ttfts = [t.ttft for t in traces]
    out = {"requests": len(traces), "output_tokens": tokens, "duration_s": round(finish - begin, 3),
           "tok_s": round(tokens / (finish - begin), 1),
           "ttft_p50_ms": round(percentile(ttfts, 50) * 1e3, 2)}
    if itls:
        out.update(itl_p50_ms=round(percentile(itls, 50) * 1e3, 2),
                   itl_p99_ms=round(percentile(itls, 99) * 1e3, 2))
    return out


def decode_roofline(steps: list[dict], weight_bytes: int, kv_bytes_per_token: int,
                    bandwidth: float, flops_per_token: float | None = None,
                    peak_flops: float | None = None) -> dict:
    """The decode steps of ``engine_traces`` against their roofline: measured decode tokens/s
    (tokens / the steps' own time) beside the least time each step could take -
    ``max((weights + K/V of its contexts) / bandwidth, tokens x flops_per_token / peak_flops)``;
    and the time the prefill steps took."""
    decode = [s for s in steps if not s["prefill"] and s["contexts"]]
    prefill = [s for s in steps if s["prefill"]]
    if not decode:
        raise ValueError("no decode step to compare")
    tokens = sum(len(s["contexts"]) for s in decode)
    measured = sum(s["end"] - s["start"] for s in decode)
    least = 0.0
    for s in decode:
        memory = (weight_bytes + kv_bytes_per_token * sum(s["contexts"])) / bandwidth
        compute = len(s["contexts"]) * flops_per_token / peak_flops if peak_flops else 0.0
        least += max(memory, compute)
    return {"decode_tok_s": round(tokens / measured, 1),
            "roofline_decode_tok_s": round(tokens / least, 1),
            "fraction_of_roofline": round(least / measured, 3),
            "mean_batch": round(tokens / len(decode), 1),
            "decode_s": round(measured, 3), "prefill_steps": len(prefill),
            "prefill_s": round(sum(s["end"] - s["start"] for s in prefill), 3)}
