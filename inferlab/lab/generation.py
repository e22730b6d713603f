"""Generation taken apart and timed: prefill, each decode step, a request's whole latency.

Introduced in lesson 00. ``model.generate`` hides the two phases that make inference slow:

* **prefill** - one forward pass over the whole prompt (many tokens at once: matrix-matrix work
  that keeps the hardware busy), producing the first new token;
* **decode** - one forward pass *per new token* (one token at a time: matrix-vector work that
  must stream every weight from memory for a single token's worth of arithmetic).

These helpers run the same greedy loop by hand so each phase can be timed on its own.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from inferlab.lab.bench import synchronize


@dataclass
class StepTimes:
    prefill_s: float          # seconds for the prompt's forward pass (gives the first token)
    decode_s: list[float]     # seconds for each further token
    prompt_tokens: int
    token_ids: list[int]      # the generated tokens (greedy)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def timed_greedy(model, input_ids: torch.Tensor, new_tokens: int) -> StepTimes:
    """Greedy generation with a KV cache, timing the prefill and every decode step."""
    if new_tokens < 1:
        raise ValueError("new_tokens must be at least 1")
    device = _device(model)
    input_ids = input_ids.to(device)
    cache = DynamicCache(config=model.config)
    synchronize(device)
    start = time.perf_counter()
    out = model(input_ids, past_key_values=cache, use_cache=True)
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    synchronize(device)
    prefill = time.perf_counter() - start
    tokens, steps = [token.item()], []
    for _ in range(new_tokens - 1):
        start = time.perf_counter()
        out = model(token, past_key_values=cache, use_cache=True)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        synchronize(device)
        steps.append(time.perf_counter() - start)
        tokens.append(token.item())
    return StepTimes(prefill, steps, input_ids.shape[1], tokens)


def request_latency(model, tokenizer, prompt: str, new_tokens: int) -> dict[str, float]:
    """One request end to end, in seconds per stage: tokenize, prefill (= time to first token
    after tokenizing), decode (all further tokens) and detokenize."""
    start = time.perf_counter()
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids
    tokenize = time.perf_counter() - start
    steps = timed_greedy(model, input_ids, new_tokens)
    start = time.perf_counter()
    tokenizer.decode(steps.token_ids, skip_special_tokens=True)
    detokenize = time.perf_counter() - start
    return {"tokenize": tokenize, "prefill": steps.prefill_s, "decode": sum(steps.decode_s),
            "detokenize": detokenize}


@torch.no_grad()
def batch_throughput(model, tokenizer, prompts: list[str], new_tokens: int) -> float:
    """Aggregate generated tokens/s of ``model.generate`` over a batch of prompts (greedy).

    Counts ``len(prompts) * new_tokens`` tokens: generation is forced to run the full length
    (``min_new_tokens``) so that every batch size does the same work per prompt.
    """
    device = _device(model)
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    synchronize(device)
    start = time.perf_counter()
    model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                   pad_token_id=tokenizer.pad_token_id)
    synchronize(device)
    return len(prompts) * new_tokens / (time.perf_counter() - start)
