"""Speculative decoding: a small draft model guesses, the large target model checks in one pass.

Introduced in lesson 08 (Leviathan, Kalman & Matias, ICML 2023, "Fast Inference from Transformers
via Speculative Decoding"; Chen et al. 2023, "Accelerating Large Language Model Decoding with
Speculative Sampling"). At batch 1, a decode step is limited by reading the weights, not by
arithmetic, so the target can score ``k + 1`` positions for about the price of one. Each round:

1. the draft proposes ``k`` tokens ``x_1..x_k`` autoregressively, with distributions ``q_i``;
2. the target runs once over them and gives its distributions ``p_1..p_{k+1}``;
3. ``accept_reject`` keeps ``x_i`` with probability ``min(1, p_i(x_i) / q_i(x_i))``; at the first
   rejection it samples a replacement from the *residual* ``max(0, p_i - q_i)`` (normalised) and
   stops; if all ``k`` survive it samples a bonus token from ``p_{k+1}``.

This returns samples distributed *exactly* as the target's own sampling would (the lesson checks
it statistically), while producing between 1 and ``k + 1`` tokens per target pass. With greedy
decoding (one-hot ``p`` and ``q``) it reduces to "keep the draft tokens while they equal the
target's arg-max, then take the target's token".

It stops paying when the target is no longer memory-bound: with large batches the target pass
over ``k + 1`` positions per sequence costs ~``k + 1`` times a normal step, and rejected tokens
are wasted work.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .kv_cache import StaticKVCache
from .model_runner import ModelRunner
from .sampler import SamplingParams, sampling_probs
from .sequence import Sequence
from .weights import LlamaWeights


def accept_reject(draft_tokens, draft_probs: torch.Tensor, target_probs: torch.Tensor,
                  generator: torch.Generator | None = None) -> list[int]:
    """The speculative sampling rule; returns the tokens to append (1 to ``k + 1`` of them).

    ``draft_tokens``: the ``k`` proposed ids; ``draft_probs [k, V]``: the draft's distributions
    they were sampled from; ``target_probs [k + 1, V]``: the target's distributions at the same
    positions plus one more.
    """
    out = []
    for i, token in enumerate(draft_tokens):
        token = int(token)
        p, q = target_probs[i, token].item(), draft_probs[i, token].item()
        if q > 0 and torch.rand((), generator=generator).item() < min(1.0, p / q):
            out.append(token)
            continue
        residual = (target_probs[i] - draft_probs[i]).clamp(min=0)
        if residual.sum() <= 0:          # p == q up to rounding: the residual is empty
            residual = target_probs[i]
        out.append(int(torch.multinomial(residual / residual.sum(), 1, generator=generator)))
        return out
    out.append(int(torch.multinomial(target_probs[len(draft_tokens)], 1, generator=generator)))
    return out


@dataclass
class SpecStats:
    rounds: int = 0
    proposed: int = 0
    accepted: int = 0
    generated: int = 0
    seconds: float = 0.0
    accepted_per_round: list = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        """Fraction of draft tokens the target kept."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_round(self) -> float:
        """Tokens produced per target forward pass (1 without speculation)."""
        return self.generated / self.rounds if self.rounds else 0.0


class _Model:
    """A model with a one-sequence static KV cache, fed tokens it has not seen yet."""

    def __init__(self, weights: LlamaWeights, max_len: int):
        c = weights.config
        cache = StaticKVCache(c.num_layers, 1, max_len, c.num_kv_heads, c.head_dim,
                              weights.dtype, weights.device)
        self.runner = ModelRunner(weights, cache, max_len)
        self.cached = 0   # leading tokens whose K/V are in the cache and still valid

    def forward(self, tokens: list[int], all_logits: bool = False) -> torch.Tensor:
        """Logits for ``tokens[self.cached:]`` (all of them, or the last one)."""
        seq = Sequence(tokens)
        seq.block_table, seq.num_cached_tokens = [0], self.cached
        logits = self.runner.run([seq], is_prefill=True, all_logits=all_logits)
        self.cached = len(tokens)
        return logits


class SpeculativeDecoder:
    """Batch-1 speculative decoding of ``target`` with ``draft`` proposing ``k`` tokens a round.

    Both are ``LlamaWeights`` sharing a tokenizer (vocabulary). ``k=0`` decodes with the target
    alone, the baseline to compare against.
    """

    def __init__(self, target: LlamaWeights, draft: LlamaWeights | None, k: int = 4,
                 max_len: int = 1024, seed: int = 0, accept_fn=accept_reject):
        if k < 0:
            raise ValueError("k must be >= 0")
        if k > 0 and draft is None:
            raise ValueError("speculation (k > 0) needs a draft model")
        if draft is not None and draft.config.vocab_size != target.config.vocab_size:
            raise ValueError("draft and target must share the vocabulary")
        self.target_weights, self.draft_weights, self.k, self.max_len = target, draft, k, max_len
        self.generator = torch.Generator().manual_seed(seed)
        self.accept_fn = accept_fn      # lesson 08 plugs in the student's version

    def _probs(self, logits, params: SamplingParams) -> torch.Tensor:
        return sampling_probs(logits.float().cpu(), params.temperature, max(params.top_k, 0),
                              params.top_p)

    @torch.inference_mode()
    def generate(self, prompt_ids,
                 params: SamplingParams | None = None) -> tuple[list[int], SpecStats]:
        """New tokens for one prompt (``params.max_tokens`` of them, or fewer at EOS)."""
        params = params or SamplingParams()
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise ValueError("empty prompt")
        if len(prompt) + params.max_tokens + self.k + 1 > self.max_len:
            raise ValueError(f"prompt + max_tokens + k exceeds max_len={self.max_len}")
        eos = set() if params.ignore_eos else set(self.target_weights.config.eos_token_ids)
        eos |= set(params.stop_token_ids)
        target = _Model(self.target_weights, self.max_len)
        draft = _Model(self.draft_weights, self.max_len) if self.k else None
        stats, start = SpecStats(), time.perf_counter()
        tokens = list(prompt)
        # the first token comes from the target's prefill, as in plain decoding
        probs = self._probs(target.forward(tokens), params)
        tokens.append(int(torch.multinomial(probs[0], 1, generator=self.generator)))
        stats.rounds, stats.generated = 1, 1
        while len(tokens) - len(prompt) < params.max_tokens and tokens[-1] not in eos:
            proposed, q_rows = [], []
            for _ in range(self.k):
                q = self._probs(draft.forward(tokens + proposed), params)[0]
                proposed.append(int(torch.multinomial(q, 1, generator=self.generator)))
                q_rows.append(q)
            target.cached = min(target.cached, len(tokens) - 1)
            p = self._probs(target.forward(tokens + proposed, all_logits=True), params)
            if self.k:
                new = self.accept_fn(proposed, torch.stack(q_rows), p, self.generator)
            else:
                new = [int(torch.multinomial(p[0], 1, generator=self.generator))]
            accepted = len(new) - 1       # all but the replacement / bonus token
            stats.rounds += 1
            stats.proposed += self.k
            stats.accepted += accepted
            stats.accepted_per_round.append(accepted)
            for token in new:
                if len(tokens) - len(prompt) >= params.max_tokens:
                    break
                tokens.append(token)
                stats.generated += 1
                if token in eos:
                    break
            # caches stay valid up to the last token both models agree on
            target.cached = min(target.cached, len(tokens) - 1)
            if draft is not None:
                draft.cached = min(draft.cached, len(tokens) - 1)
        stats.seconds = time.perf_counter() - start
        return tokens[len(prompt):], stats
