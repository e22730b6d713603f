"""Which sequences run in the next step: continuous batching with admission by free blocks.

Introduced in lesson 06. Three ways to batch requests:

* **static** - collect ``max_num_seqs`` requests, run them until *all* finish, then take the
  next batch. Short requests wait for the longest one; newcomers wait for the whole batch.
* **dynamic** - like static, but a batch also starts when the oldest request has waited
  ``batch_window`` (seconds or simulated steps), so a quiet server does not wait forever.
* **continuous** (Orca, Yu et al., OSDI 2022; vLLM) - decide again at *every step*: finished
  sequences leave at once and waiting ones join as soon as there is room.

Room means KV-cache blocks (lesson 07). A waiting sequence is admitted (prefilled) only if the
block manager can hold all its tokens. During decode every running sequence needs a slot for
one more token; when blocks run out, the most recently admitted sequence is *preempted*: its
blocks are freed and it goes back to the front of the queue, to be recomputed (prompt +
tokens generated so far) when blocks are free again. Nothing is dropped or truncated.

Like nano-vllm, a step is either a prefill step (new sequences) or a decode step (one token for
every running sequence); prefill goes first so that new requests start early.

The continuous-batching decision is one function, ``continuous_step(scheduler) -> (sequences,
is_prefill)``; ``EngineConfig(schedule_step=...)`` replaces it with another of the same shape
(lesson 06 plugs in the student's). Such a step reads and changes ``scheduler.waiting`` and
``scheduler.running``, asks ``scheduler.block_manager`` for room, grows sequences with
``scheduler.append_slot(seq)`` and preempts with ``scheduler.preempt(seq)``.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from .block_manager import BlockManager
from .sequence import Sequence, SequenceStatus

POLICIES = ("continuous", "static", "dynamic")


def continuous_step(sched: "Scheduler") -> tuple[list[Sequence], bool]:
    """One continuous-batching decision: admit waiting sequences if any fit (a prefill step),
    else give every running sequence room for one more token (a decode step)."""
    scheduled = sched.schedule_prefill()
    if scheduled:
        return scheduled, True
    return sched.schedule_decode(), False


class Scheduler:
    """The ``waiting`` and ``running`` queues and the decision of each step.

    ``step``: a function ``(scheduler) -> (sequences, is_prefill)`` that makes the whole decision
    instead of the built-in ``continuous_step`` (continuous policy only).
    """

    def __init__(self, block_manager: BlockManager, max_num_seqs: int = 64,
                 max_num_batched_tokens: int = 4096, policy: str = "continuous",
                 batch_window: float = 0.0, step: Callable | None = None):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if max_num_seqs < 1 or max_num_batched_tokens < 1:
            raise ValueError("need max_num_seqs >= 1 and max_num_batched_tokens >= 1")
        if step is not None and policy != "continuous":
            raise ValueError(f"a custom scheduling step needs policy='continuous', got {policy!r}")
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.policy, self.batch_window = policy, batch_window
        self.waiting: deque[Sequence] = deque()
        self.running: deque[Sequence] = deque()
        self.num_preemptions = 0
        self.block_copies: list[tuple[int, int]] = []  # copy-on-write work for the next step
        self.step = step

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    # ------------------------------------------------------------------------------ policy
    def may_admit(self, now: float = 0.0) -> bool:
        """May waiting sequences join now? Always for continuous batching."""
        if self.policy == "continuous":
            return True
        if self.running:                    # static/dynamic: the current batch runs to the end
            return False
        if len(self.waiting) >= self.max_num_seqs:
            return True
        if self.policy == "dynamic":
            return bool(self.waiting) and now - self.waiting[0].arrival >= self.batch_window
        return False                        # static: wait for a full batch (see flush)

    # ---------------------------------------------------------------------------- schedule
    def schedule(self, now: float = 0.0, flush: bool = False) -> tuple[list[Sequence], bool]:
        """Pick the sequences of the next step: ``(sequences, is_prefill)``.

        ``flush=True`` lets static batching start a partial batch (no more requests coming).
        """
        self.block_copies = []
        if self.step is not None:
            return self.step(self)
        if self.policy == "continuous":
            return continuous_step(self)
        if self.waiting and (flush or self.may_admit(now)):
            scheduled = self.schedule_prefill()
            if scheduled:
                return scheduled, True
        return self.schedule_decode(), False

    def schedule_prefill(self) -> list[Sequence]:
        """Admit waiting sequences in arrival order while sequences, tokens and blocks allow."""
        scheduled, tokens = [], 0
        while self.waiting and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            new_tokens = len(seq)  # upper bound: prefix hits only make it smaller
            if scheduled and tokens + new_tokens > self.max_num_batched_tokens:
                break
            if not self.block_manager.can_allocate(seq):
                break
            self.block_manager.allocate(seq)
            tokens += len(seq) - seq.num_cached_tokens
            seq.status = SequenceStatus.RUNNING
            self.waiting.popleft()
            self.running.append(seq)
            scheduled.append(seq)
        return scheduled

    def schedule_decode(self) -> list[Sequence]:
        """One more token for every running sequence, preempting the newest when blocks run out."""
        scheduled = []
        while self.running:
            seq = self.running.popleft()
            while not self.block_manager.can_append(seq):
                if self.running:
                    self.preempt(self.running.pop())  # the most recently admitted one
                else:
                    self.preempt(seq)
                    break
            else:
                self.append_slot(seq)
                scheduled.append(seq)
        self.running.extend(scheduled)
        return scheduled

    def append_slot(self, seq: Sequence) -> None:
        """Room for ``seq``'s newest token (``block_manager.append_slot``); any copy-on-write it
        asks for is kept in ``block_copies`` for the cache to perform before the step runs."""
        copies = self.block_manager.append_slot(seq)
        if copies:
            self.block_copies += copies

    def preempt(self, seq: Sequence) -> None:
        """Free ``seq``'s blocks and queue it first; it is recomputed when room returns."""
        seq.status = SequenceStatus.WAITING
        self.block_manager.free(seq)
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    # ------------------------------------------------------------------------ after a step
    def postprocess(self, seqs: list[Sequence], token_ids: list[int], eos_token_ids=(),
                    max_model_len: int | None = None, now: float = 0.0) -> list[Sequence]:
        """Append each sampled token; finish sequences that hit a stop condition."""
        finished = []
        for seq, token in zip(seqs, token_ids):
            seq.append_token(token)
            if seq.first_token is None:
                seq.first_token = now
            params = seq.params
            reason = None
            if not params.ignore_eos and token in eos_token_ids:
                reason = "stop"
            elif token in params.stop_token_ids:
                reason = "stop"
            elif seq.num_output_tokens >= params.max_tokens:
                reason = "length"
            elif max_model_len is not None and len(seq) >= max_model_len:
                reason = "length"
            if reason:
                seq.status, seq.finish_reason, seq.finished = SequenceStatus.FINISHED, reason, now
                self.block_manager.free(seq)
                self.running.remove(seq)
                finished.append(seq)
        return finished
