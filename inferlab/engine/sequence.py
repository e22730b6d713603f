"""A request as the engine sees it: token ids, status, KV blocks and timings.

Introduced in lesson 06 (batching). A *sequence* is one prompt plus the tokens generated for it
so far. The engine never keeps a "batch" object: every step the scheduler picks which sequences
run, so a sequence carries its own state:

* ``status`` - ``WAITING`` (queued, or preempted and waiting to be recomputed), ``RUNNING``
  (holds KV-cache blocks) or ``FINISHED``.
* ``block_table`` - which physical KV-cache blocks hold its keys and values, in order
  (lesson 07). Position ``p`` lives in block ``block_table[p // block_size]`` at offset
  ``p % block_size``.
* ``num_cached_tokens`` - how many leading tokens the block manager found already in the cache
  when it last gave the sequence blocks (shared prefix blocks, lesson 07), so prefill only
  computes the rest. The engine adds them up in ``EngineStats.prefix_hit_tokens``.
* ``num_computed_tokens`` - how many leading tokens have their keys/values in the cache after the
  last step that ran the sequence (0 while waiting; reset by ``Scheduler.preempt``). Chunked
  prefill (``EngineConfig(chunked_prefill=True)``) reads it to know where the next chunk of a
  partly prefilled sequence starts: such a sequence is ``RUNNING`` and holds blocks for all its
  tokens, but has ``num_computed_tokens < len(seq) - 1`` and gets no token until its last chunk.
  The engine keeps it up to date; a ``schedule_step`` plug-in may ignore it.
* timings (``arrival``, ``first_token``, ``finished``) in seconds or simulated steps: latency
  percentiles in lesson 06 are computed from them.
"""
from __future__ import annotations

import itertools
from enum import Enum, auto

_ids = itertools.count()


class SequenceStatus(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


class Sequence:
    """One request: ``prompt_token_ids`` + ``output_token_ids`` and the engine's bookkeeping."""

    def __init__(self, prompt_token_ids, params=None, arrival: float = 0.0, request_id=None):
        if len(prompt_token_ids) == 0:
            raise ValueError("a prompt needs at least one token")
        self.seq_id = next(_ids) if request_id is None else request_id
        self.prompt_token_ids = [int(t) for t in prompt_token_ids]
        self.output_token_ids: list[int] = []
        self.params = params
        self.status = SequenceStatus.WAITING
        self.block_table: list[int] = []
        self.num_cached_tokens = 0   # leading tokens found in the cache at the last allocation
        self.num_computed_tokens = 0  # leading tokens whose K/V are in the cache (see above)
        self.num_preemptions = 0
        self.finish_reason: str | None = None
        self.arrival = arrival
        self.first_token: float | None = None
        self.finished: float | None = None

    # ----------------------------------------------------------------------------- tokens
    @property
    def token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def last_token(self) -> int:
        return self.output_token_ids[-1] if self.output_token_ids else self.prompt_token_ids[-1]

    def __len__(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    def append_token(self, token_id: int) -> None:
        self.output_token_ids.append(int(token_id))

    def num_blocks(self, block_size: int) -> int:
        """Blocks needed to hold every token's keys/values: ceil(len / block_size)."""
        return (len(self) + block_size - 1) // block_size

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def __repr__(self) -> str:
        return (f"Sequence(id={self.seq_id}, {self.status.name}, prompt={self.num_prompt_tokens}, "
                f"out={self.num_output_tokens}, blocks={self.block_table})")
