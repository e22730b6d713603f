"""Measuring what an optimization costs in quality: perplexity, agreement, KL divergence.

Introduced in lesson 01. Speed-ups are only worth having if the model still says the same
things. Three views, from coarse to fine:

* **perplexity** - exp(mean negative log-likelihood) of held-out text: how surprised the model
  is by real text. Lower is better; an fp32 SmolLM2-135M scores ~11.8 on the first 2,048
  tokens of the course's evaluation text (one window).
* **top-1 agreement** - how often the optimized model's most likely next token equals the
  reference model's: what greedy decoding would notice.
* **KL divergence** - KL(reference || optimized) of the next-token distributions, averaged over
  positions: zero only when the two models predict identically.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def logits_of(model, input_ids: torch.Tensor, window: int = 2048) -> torch.Tensor:
    """Next-token logits for every position, computed in independent windows of ``window``."""
    device = next(model.parameters()).device
    chunks = [model(input_ids[:, i:i + window].to(device)).logits.float().cpu()
              for i in range(0, input_ids.shape[1], window)]
    return torch.cat(chunks, dim=1)


@torch.no_grad()
def perplexity(model, input_ids: torch.Tensor, window: int = 2048) -> float:
    """Perplexity of ``input_ids`` (shape ``(1, n)``), scored in non-overlapping windows.

    Each window starts without context, which makes the number slightly higher than a
    sliding-window evaluation would give, but it is fast and identical for every model
    compared, which is what a comparison needs.
    """
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    for start in range(0, input_ids.shape[1], window):
        chunk = input_ids[:, start:start + window].to(device)
        if chunk.shape[1] < 2:
            continue
        logits = model(chunk).logits.float()
        nll = F.cross_entropy(logits[0, :-1], chunk[0, 1:], reduction="sum")
        total_nll += nll.item()
        total_tokens += chunk.shape[1] - 1
    if total_tokens == 0:
        raise ValueError("need at least 2 tokens to measure perplexity")
    return math.exp(total_nll / total_tokens)


def top1_agreement(reference_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Fraction of positions where both models' most likely next token is the same."""
    return (reference_logits.argmax(-1) == logits.argmax(-1)).float().mean().item()


def kl_divergence(reference_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean KL(reference || other) over positions, in nats."""
    ref = F.log_softmax(reference_logits.float(), dim=-1)
    other = F.log_softmax(logits.float(), dim=-1)
    return (ref.exp() * (ref - other)).sum(-1).mean().item()


def token_agreement(reference_ids, ids) -> float:
    """Fraction of generated tokens equal to the reference's, position by position."""
    reference_ids, ids = list(reference_ids), list(ids)
    n = max(len(reference_ids), len(ids))
    if n == 0:
        return 1.0
    return sum(a == b for a, b in zip(reference_ids, ids)) / n
