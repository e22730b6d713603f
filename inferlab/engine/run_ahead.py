"""Running one decode step ahead, so the GPU never waits for the CPU between steps (lesson 09).

A plain engine step is: schedule, launch the forward pass, **wait** for the sampled tokens, append
them, check the stop conditions, then schedule and pack the next step. Everything after the wait
happens while the GPU has nothing to do. On an H200 a Llama-2-7B batch-1 step spent about 150 us
of its 4.1 ms there (``benchmarks/results/engine_gpu.md``): a few per cent of the speed, lost
to Python.

The next decode step does not need the CPU to know the tokens. Its inputs are the tokens the step
in flight samples, which can stay on the GPU. Everything else about it is known in advance: each
sequence is one token longer, at the next position, in the next cache slot. So, with
``EngineConfig.run_ahead``, the engine:

1. launches step k + 1 as soon as step k is launched, with step k's arg-max still on the GPU as
   its input tokens (``NextStep`` views of the sequences give the positions and slots);
2. only then waits for step k's tokens (``PendingTokens``: an event after their copy to the CPU,
   not the whole queue), and does step k's bookkeeping while the GPU computes step k + 1.

The engine runs ahead only when step k + 1 is certain to be that decode step: nothing waits to
be admitted, every sequence decodes greedily (the token is picked on the GPU), none can reach its
length limit in step k, and every next position has its cache slot without a copy-on-write or a
preemption. A sequence that stops in step k at an end-of-sequence or stop token was computed once
more for nothing: its row of step k + 1 is dropped. vLLM's asynchronous scheduling makes the same
trade.
"""
from __future__ import annotations

import torch


class NextStep:
    """A running sequence as the step after the one in flight sees it: one token longer, that
    token not yet known on the CPU (0 here; the runner takes the real one from the GPU)."""
    __slots__ = ("seq",)

    def __init__(self, seq):
        self.seq = seq

    def __len__(self) -> int:
        return len(self.seq) + 1

    @property
    def seq_id(self):
        return self.seq.seq_id

    @property
    def block_table(self) -> list:
        return self.seq.block_table

    @property
    def last_token(self) -> int:
        return 0

    @property
    def token_ids(self) -> list:
        return self.seq.token_ids + [0]


class PendingTokens:
    """The greedy tokens of a launched step: ``device`` (the next step's inputs) at once, and
    ``list()`` once their copy to the CPU is done. The arg-max is the built-in sampler's own
    (``max(...).indices``), so the tokens are the ones a plain step picks."""

    def __init__(self, logits: torch.Tensor):
        self.device = logits.max(dim=-1).indices
        self._host, self._event, self._rows = self.device, None, None
        if self.device.is_cuda:        # a pinned copy, then an event: waiting on the event waits
            self._host = self.device.to("cpu", non_blocking=True)          # for this step only
            self._event = torch.cuda.Event()
            self._event.record()

    def list(self) -> list[int]:
        if self._event is not None:
            self._event.synchronize()
        tokens = self._host.tolist()
        return tokens if self._rows is None else [tokens[i] for i in self._rows]

    def keep(self, rows: list[int]) -> None:
        """Keep the tokens of ``rows`` only (the sequences that did not stop meanwhile)."""
        self.device = self.device.index_select(0, torch.tensor(rows, device=self.device.device))
        self._rows = rows if self._rows is None else [self._rows[i] for i in rows]
