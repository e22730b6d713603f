"""Speculative decoding: a cheap draft guesses, the large target model checks in one pass.

Introduced in lesson 08 (Leviathan, Kalman & Matias, ICML 2023, "Fast Inference from Transformers
via Speculative Decoding"; Chen et al. 2023, "Accelerating Large Language Model Decoding with
Speculative Sampling"). At batch 1, a decode step is limited by reading the weights, not by
arithmetic, so the target can score ``k + 1`` positions for about the price of one. Each round
(``speculative_loop``):

1. the draft proposes ``k`` tokens ``x_1..x_k`` one by one, with distributions ``q_i``;
2. the target runs **once** over them and gives its distributions ``p_1..p_{k+1}``;
3. ``accept_reject`` keeps ``x_i`` with probability ``min(1, p_i(x_i) / q_i(x_i))``; at the first
   rejection it samples a replacement from the *residual* ``max(0, p_i - q_i)`` (normalised) and
   stops; if all ``k`` survive it samples a bonus token from ``p_{k+1}``;
4. both KV caches roll back to the tokens kept: what was computed for rejected guesses is invalid.

This returns samples distributed *exactly* as the target's own sampling would, while producing
between 1 and ``k + 1`` tokens per target pass. With greedy decoding (one-hot ``p`` and ``q``) it
reduces to ``greedy_accept``: keep the draft tokens while they equal the target's arg-max, then
take the target's token - the output is the target's own greedy output, token for token.

The draft is anything with the interface of ``CachedModel`` (``forward(tokens)`` and ``cached``): a
smaller model of the same tokenizer, or ``PromptLookupDraft``, which copies the tokens that
followed an earlier occurrence of the text's last few tokens (prompt lookup / n-gram drafting, as
transformers' ``prompt_lookup_num_tokens`` and vLLM's ``ngram`` speculator do) and costs nothing.

It stops paying when guesses are rejected (high temperature, a poor draft), when the draft is not
much cheaper than the target, and when the target is no longer memory-bound: with large batches a
pass over ``k + 1`` positions per sequence costs up to ``k + 1`` times a normal step, so rejected
guesses are wasted work.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .kv_cache import StaticKVCache
from .model_runner import ModelRunner
from .sampler import SamplingParams, sampling_probs
from .sequence import Sequence
from .weights import LlamaWeights, ModelConfig


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


def greedy_accept(draft_tokens, draft_probs: torch.Tensor, target_probs: torch.Tensor,
                  generator: torch.Generator | None = None) -> list[int]:
    """The rule for greedy decoding (engines' fast path): keep the draft tokens while each is the
    target's arg-max, then append the target's arg-max. Same arguments as ``accept_reject``; it
    ignores ``draft_probs`` and draws no random numbers. Whatever the draft sampled, the output is
    the target's greedy output."""
    best = target_probs.argmax(dim=-1).tolist()
    out = []
    for i, token in enumerate(draft_tokens):
        if int(token) != best[i]:
            break
        out.append(int(token))
    out.append(best[len(out)])
    return out


@dataclass
class SpecStats:
    rounds: int = 0               # target forward passes
    proposed: int = 0
    accepted: int = 0
    generated: int = 0
    seconds: float = 0.0          # the decoding loop, prompt prefill excluded
    prefill_seconds: float = 0.0  # prompt (all but its last token) into both caches
    accepted_per_round: list = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        """Fraction of draft tokens the target kept."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_round(self) -> float:
        """Tokens produced per target forward pass (1 without speculation)."""
        return self.generated / self.rounds if self.rounds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds else 0.0


class CachedModel:
    """One model with its own KV cache for one sequence: what a speculative loop drives.

    ``forward(tokens)`` runs ONE forward pass over ``tokens[cached:]`` (the tokens whose keys and
    values are not in the cache yet), stores their K/V, sets ``cached = len(tokens)`` and returns
    their logits ``[len(tokens) - cached, vocab]`` (float32, on the CPU): row ``i`` scores the
    token that follows ``tokens[cached + i]``. ``cached`` may be set lower to roll the cache back
    (the slots after it are overwritten by the next pass); never higher than what was computed.
    """

    def __init__(self, weights: LlamaWeights, max_len: int = 1024):
        c = weights.config
        cache = StaticKVCache(c.num_layers, 1, max_len, c.num_kv_heads, c.head_dim,
                              weights.dtype, weights.device)
        self.weights, self.max_len = weights, max_len
        self.runner = ModelRunner(weights, cache, max_len)
        self.cached = 0   # leading tokens whose K/V are in the cache and still valid

    @classmethod
    def random(cls, seed: int = 0, num_layers: int | None = None,
               max_len: int = 256) -> "CachedModel":
        """A tiny model with random weights (2 layers, 97 tokens; std 0.3, so greedy decoding has
        no near-ties), ``num_layers=1``: its first layer only, a draft. For tests and timing."""
        config = ModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2,
                             head_dim=16, intermediate_size=128, vocab_size=97, max_position=512,
                             eos_token_ids=(1,))
        weights = LlamaWeights.random(config, dtype=torch.float32, seed=seed, std=0.3)
        return cls(weights.truncated(num_layers) if num_layers else weights, max_len)

    @property
    def vocab_size(self) -> int:
        return self.weights.config.vocab_size

    @torch.inference_mode()
    def forward(self, tokens) -> torch.Tensor:
        tokens = [int(t) for t in tokens]
        if not 0 <= self.cached < len(tokens):
            raise ValueError(f"forward computes the tokens not cached yet: got {len(tokens)} "
                             f"tokens with cached={self.cached}")
        if len(tokens) > self.max_len:
            raise ValueError(f"{len(tokens)} tokens exceed this model's max_len={self.max_len}")
        seq = Sequence(tokens)
        seq.block_table, seq.num_cached_tokens = [0], self.cached
        logits = self.runner.run([seq], is_prefill=True, all_logits=True)
        self.cached = len(tokens)
        return logits.float().cpu()


class PromptLookupDraft:
    """A draft that costs (almost) nothing: prompt lookup, or n-gram drafting.

    It guesses that the text goes on as it did after the most recent earlier occurrence of its last
    ``n`` tokens, trying ``n = max_ngram`` down to ``min_ngram``; with no earlier occurrence at all
    it guesses the last token again (``misses`` counts those guesses). Same interface as
    ``CachedModel``: ``forward(tokens)`` returns one row of logits, 0 at the guess and ``-inf``
    elsewhere (one-hot after any temperature); ``cached`` is kept for the interface only. It pays
    where the output repeats its input: summaries, edits, code, retrieval-augmented answers.
    """

    def __init__(self, vocab_size: int, max_ngram: int = 3, min_ngram: int = 1):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("need 1 <= min_ngram <= max_ngram")
        self.vocab_size, self.max_ngram, self.min_ngram = vocab_size, max_ngram, min_ngram
        self.cached = self.calls = self.misses = 0

    def guess(self, tokens) -> int | None:
        """The token that followed the last ``n`` tokens' most recent earlier occurrence."""
        tokens = list(tokens)
        for n in range(min(self.max_ngram, len(tokens) - 1), self.min_ngram - 1, -1):
            tail = tokens[-n:]
            for start in range(len(tokens) - n - 1, -1, -1):
                if tokens[start:start + n] == tail:
                    return int(tokens[start + n])
        return None

    def forward(self, tokens) -> torch.Tensor:
        guess = self.guess(tokens)
        self.calls += 1
        if guess is None:
            self.misses += 1
            guess = int(tokens[-1])
        self.cached = len(tokens)
        row = torch.full((1, self.vocab_size), float("-inf"))
        row[0, guess] = 0.0
        return row


def speculative_loop(target, draft, prompt, max_tokens: int, k: int = 4, eos_token_ids=(),
                     temperature: float = 0.0, accept=accept_reject,
                     generator: torch.Generator | None = None) -> tuple[list[int], list[int]]:
    """The course's speculative decoding loop (lesson 08 asks you to write it).

    ``target`` and ``draft``: ``CachedModel``-like. Every round the draft proposes ``k`` tokens,
    the target scores them in one pass, ``accept`` decides, the caches roll back to the tokens
    kept; until ``max_tokens`` new tokens or one of ``eos_token_ids`` (kept in the output).
    Returns the new tokens and the number of draft tokens accepted in each round.
    """
    tokens, accepted, stop = [int(t) for t in prompt], [], set(eos_token_ids)
    while len(tokens) - len(prompt) < max_tokens and not (
            len(tokens) > len(prompt) and tokens[-1] in stop):
        proposed, q_rows = [], []
        for _ in range(k):
            q = sampling_probs(draft.forward(tokens + proposed)[-1], temperature)[0]
            proposed.append(int(torch.multinomial(q, 1, generator=generator)))
            q_rows.append(q)
        target.cached = min(target.cached, len(tokens) - 1)    # it must score x_1 from here
        p = sampling_probs(target.forward(tokens + proposed)[-(k + 1):], temperature)
        new = accept(proposed, torch.stack(q_rows) if q_rows else p[:0], p, generator)
        accepted.append(len(new) - 1)
        for token in new:
            tokens.append(int(token))
            if len(tokens) - len(prompt) == max_tokens or token in stop:
                break
        target.cached = min(target.cached, len(tokens) - 1)    # K/V of rejected guesses: invalid
        if draft is not None:
            draft.cached = min(draft.cached, len(tokens) - 1)
    return tokens[len(prompt):], accepted


class SpeculativeDecoder:
    """Batch-1 speculative decoding of ``target`` with ``draft`` proposing ``k`` tokens a round.

    ``target``: ``LlamaWeights``. ``draft``: ``LlamaWeights`` sharing the target's vocabulary, a
    draft object with ``CachedModel``'s interface (``PromptLookupDraft``), or ``None`` with ``k=0``:
    the target decoding alone, one token per pass - the baseline to compare against. ``accept_fn``
    and ``loop`` are plug-in points (lesson 08 plugs in the student's rule and loop, called like
    ``speculative_loop``). Both models run where the target's weights are.
    """

    def __init__(self, target: LlamaWeights, draft=None, k: int = 4, max_len: int = 1024,
                 seed: int = 0, accept_fn=accept_reject, loop=speculative_loop):
        if k < 0:
            raise ValueError("k must be >= 0")
        if k > 0 and draft is None:
            raise ValueError("speculation (k > 0) needs a draft")
        vocab = getattr(getattr(draft, "config", draft), "vocab_size", None)
        if draft is not None and vocab != target.config.vocab_size:
            raise ValueError("draft and target must share the vocabulary")
        self.target_weights, self.draft, self.k, self.max_len = target, draft, k, max_len
        self.generator = torch.Generator().manual_seed(seed)
        self.accept_fn, self.loop = accept_fn, loop

    def _draft_model(self):
        if self.k == 0:
            return None
        if isinstance(self.draft, LlamaWeights):
            return CachedModel(self.draft, self.max_len)
        self.draft.cached = 0
        return self.draft

    def generate(self, prompt_ids,
                 params: SamplingParams | None = None) -> tuple[list[int], SpecStats]:
        """New tokens for one prompt (``params.max_tokens`` of them, or fewer at EOS). The prompt
        but its last token is prefilled into both caches first, timed apart from the decoding."""
        params = params or SamplingParams()
        if params.top_k > 0 or params.top_p < 1:
            raise ValueError("speculative decoding here samples with temperature only")
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise ValueError("empty prompt")
        if len(prompt) + params.max_tokens + self.k + 1 > self.max_len:
            raise ValueError(f"prompt + max_tokens + k exceeds max_len={self.max_len}")
        eos = set() if params.ignore_eos else set(self.target_weights.config.eos_token_ids)
        eos |= set(params.stop_token_ids)
        target, draft = CachedModel(self.target_weights, self.max_len), self._draft_model()
        stats, start = SpecStats(), time.perf_counter()
        for model in (target, draft):
            if isinstance(model, CachedModel) and len(prompt) > 1:
                model.forward(prompt[:-1])
        stats.prefill_seconds = time.perf_counter() - start
        start = time.perf_counter()
        if self.k == 0:
            tokens = list(prompt)
            while len(tokens) - len(prompt) < params.max_tokens and not (
                    len(tokens) > len(prompt) and tokens[-1] in eos):
                probs = sampling_probs(target.forward(tokens)[-1], params.temperature)
                tokens.append(int(torch.multinomial(probs[0], 1, generator=self.generator)))
            new, accepted = tokens[len(prompt):], [0] * (len(tokens) - len(prompt))
        else:
            new, accepted = self.loop(target, draft, prompt, params.max_tokens, k=self.k,
                                      eos_token_ids=tuple(eos), temperature=params.temperature,
                                      accept=self.accept_fn, generator=self.generator)
        stats.seconds = time.perf_counter() - start
        stats.rounds, stats.accepted_per_round = len(accepted), list(accepted)
        stats.proposed, stats.accepted = self.k * len(accepted), sum(accepted)
        stats.generated = len(new)
        return list(new), stats
