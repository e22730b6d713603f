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

**Chunked prefill** (``EngineConfig(chunked_prefill=True)``; Sarathi-Serve, Agrawal et al., OSDI
2024; vLLM's ``enable_chunked_prefill``). A long prompt's prefill step stalls every running
sequence for as long as the whole prompt takes. ``chunked_step`` instead computes at most
``prefill_chunk_tokens`` prompt tokens a step, *mixed into the same step* as one decode token of
every running sequence (not alternating prefill and decode steps): a partly prefilled sequence
is running, holds blocks for its whole prompt, and is sampled only after its last chunk. The
step's per-sequence token ranges are in ``scheduler.spans``; a step with no prompt tokens is an
ordinary decode step (CUDA graphs still replay it).

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


def chunked_step(sched: "Scheduler") -> tuple[list[Sequence], bool]:
    """One step of continuous batching with chunked prefill.

    1. Every running sequence that has finished its prefill gets room for one more token
       (preempting the most recently admitted when blocks run out, as ``schedule_decode``).
    2. Up to ``sched.prefill_chunk_tokens`` prompt tokens are handed out: first to partly
       prefilled running sequences (oldest first), then to waiting sequences admitted while
       sequences and blocks allow (each is given blocks for all its tokens at once).

    Returns ``(decodes + prefills, True)`` with ``sched.spans`` set to each one's ``(start,
    end)`` token range, or ``(decodes, False)`` when no prompt token is due (a plain decode step).
    """
    bm, budget = sched.block_manager, sched.prefill_chunk_tokens
    decodes, prefills, spans, kept = [], [], [], []
    queue = sched.running
    while queue:
        seq = queue.popleft()
        if seq.seq_id in sched.prefilling:              # holds blocks for all its tokens already
            kept.append(seq)
            continue
        while not bm.can_append(seq):
            if queue:
                sched.preempt(queue.pop())               # the most recently admitted one
            else:
                sched.preempt(seq)
                break
        else:
            sched.append_slot(seq)
            kept.append(seq)
            decodes.append(seq)
    queue.extend(kept)
    for seq in kept:                                     # partly prefilled ones, oldest first
        if budget and seq.seq_id in sched.prefilling:
            budget = _chunk(sched, seq, budget, prefills, spans)
    while budget and sched.waiting and len(sched.running) < sched.max_num_seqs:
        seq = sched.waiting[0]
        if not bm.can_allocate(seq):
            break
        bm.allocate(seq, register=False)        # blocks are offered to others once computed
        seq.num_computed_tokens = seq.num_cached_tokens
        seq.status = SequenceStatus.RUNNING
        sched.waiting.popleft()
        sched.running.append(seq)
        sched.prefilling.add(seq.seq_id)
        budget = _chunk(sched, seq, budget, prefills, spans)
    if not prefills:
        return decodes, False
    sched.spans = [(len(s) - 1, len(s)) for s in decodes] + spans
    sched.num_decodes = len(decodes)
    return decodes + prefills, True


def _chunk(sched, seq, budget: int, prefills: list, spans: list) -> int:
    """Schedule ``seq``'s next prompt chunk within ``budget`` tokens; return what is left."""
    start = seq.num_computed_tokens
    end = min(len(seq), start + budget)
    if end == len(seq):                   # its last chunk: sampled after this step, then decodes
        sched.prefilling.discard(seq.seq_id)
    prefills.append(seq)
    spans.append((start, end))
    return budget - (end - start)


class Scheduler:
    """The ``waiting`` and ``running`` queues and the decision of each step.

    ``step``: a function ``(scheduler) -> (sequences, is_prefill)`` that makes the whole decision
    instead of the built-in ``continuous_step`` (continuous policy only).
    ``prefill_chunk_tokens``: an int switches on chunked prefill (``chunked_step``; continuous
    policy, no ``step``); then ``max_num_batched_tokens`` is not used.
    """

    def __init__(self, block_manager: BlockManager, max_num_seqs: int = 64,
                 max_num_batched_tokens: int = 4096, policy: str = "continuous",
                 batch_window: float = 0.0, step: Callable | None = None,
                 prefill_chunk_tokens: int | None = None):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if max_num_seqs < 1 or max_num_batched_tokens < 1:
            raise ValueError("need max_num_seqs >= 1 and max_num_batched_tokens >= 1")
        if step is not None and policy != "continuous":
            raise ValueError(f"a custom scheduling step needs policy='continuous', got {policy!r}")
        if prefill_chunk_tokens is not None and (prefill_chunk_tokens < 1 or step is not None
                                                 or policy != "continuous"):
            raise ValueError("chunked prefill needs prefill_chunk_tokens >= 1, policy='continuous' "
                             "and no custom scheduling step")
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.policy, self.batch_window = policy, batch_window
        self.waiting: deque[Sequence] = deque()
        self.running: deque[Sequence] = deque()
        self.num_preemptions = 0
        self.block_copies: list[tuple[int, int]] = []  # copy-on-write work for the next step
        self.step = step
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self.spans: list[tuple[int, int]] | None = None  # chunked: token range of each sequence
        self.num_decodes = 0                # chunked: the first num_decodes of spans are decodes
        self.prefilling: set = set()        # chunked: ids of partly prefilled running sequences

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
        self.block_copies, self.spans = [], None
        if self.step is not None:
            return self.step(self)
        if self.prefill_chunk_tokens is not None:
            return chunked_step(self)
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
        seq.num_computed_tokens = 0
        self.prefilling.discard(seq.seq_id)
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
