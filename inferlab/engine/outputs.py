"""What the engine hands back: per request (``RequestOutput``), per step (``StepResult``), and its
running totals (``EngineStats``). Lesson 06 computes latency percentiles from the first; lesson 07
reads prefix-cache hits and peak block use from the last.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestOutput:
    """What one request produced, with its timings (seconds, or the clock ``run_trace`` used)."""
    request_id: int
    prompt_token_ids: list
    token_ids: list
    text: str | None
    finish_reason: str | None
    arrival: float
    first_token: float | None
    finished: float | None
    num_preemptions: int = 0
    num_cached_prompt_tokens: int = 0    # prompt tokens found in the cache (prefix sharing)

    @property
    def latency(self) -> float | None:
        return None if self.finished is None else self.finished - self.arrival

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival


@dataclass
class StepResult:
    """What one engine step did: the requests it ran (in batch order), the token each one got,
    and the outputs of those that finished. An empty step ran nothing. With chunked prefill,
    ``prefilling`` lists the requests that computed a prompt chunk but get no token yet."""
    is_prefill: bool
    request_ids: list = field(default_factory=list)
    token_ids: list = field(default_factory=list)
    finished: list = field(default_factory=list)      # RequestOutput of each finished request
    prefilling: list = field(default_factory=list)    # chunked prefill: not sampled this step

    @property
    def num_seqs(self) -> int:
        return len(self.request_ids) + len(self.prefilling)


@dataclass
class EngineStats:
    steps: int = 0
    prefill_steps: int = 0
    decode_steps: int = 0
    prefill_tokens: int = 0          # prompt tokens computed
    decode_tokens: int = 0
    preemptions: int = 0
    prefix_hit_tokens: int = 0       # prompt tokens found in the cache instead (the one counter)
    peak_blocks_used: int = 0
    batch_sizes: list = field(default_factory=list)
