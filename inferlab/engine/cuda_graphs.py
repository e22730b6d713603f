"""CUDA graphs for decode steps: record a whole step once, replay it with one launch (lesson 09).

On a GPU a batch-1 decode step of a 7B model is a few hundred small kernels (about ten per layer).
Launched one by one from Python, the launches cost more than the kernels run: the GPU idles
between them (lesson 09's table: eager 74 tok/s, the same step replayed from a graph 188 tok/s on
an H200). A **CUDA graph** records every kernel of one step, with its arguments, and replays the
whole step with one launch. The price: a graph has fixed shapes and fixed memory addresses. So

* steps are grouped into **buckets**: the batch rounded up to 1, 2, 4, 8, ... (padding rows write
  their K/V to the cache's scratch slot and are ignored), and - unless the attention backend stops
  at each sequence's length by itself (``reads_only_context``, the Triton kernel) - the context
  length rounded up to a power of two, so attention reads little more than the filled cache;
* every input of the step lives in one int64 buffer that the graph reads (``inputs.pack_decode``);
  a step writes the new values into pinned host memory and copies them over with one async copy;
* optionally ``torch.compile`` first fuses the small element-wise kernels (norms, RoPE, SiLU) of
  the step, and the compiled step is what the graph records.

``DecodeGraphs.run(seqs)`` returns the logits of a decode step, capturing the bucket's graph the
first time it is needed.
"""
from __future__ import annotations

import torch

from .inputs import empty_decode_buffer, pack_decode, unpack_decode


class DecodeGraphs:
    """One CUDA graph per (batch, length) bucket, for ``runner``'s decode steps."""
    batch_buckets = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    min_length_bucket = 128

    def __init__(self, runner, compile: bool = False):
        if runner.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.runner = runner
        self.graphs: dict = {}
        self._pool = None
        self._fn = self.decode_fn
        if compile:
            self._fn = torch.compile(self.decode_fn, dynamic=False, fullgraph=True)

    def decode_fn(self, packed: torch.Tensor, batch: int, width: int, length: int) -> torch.Tensor:
        """One decode step from the packed buffer: what the graph records."""
        paged = self.runner.attention.paged_decode
        return self.runner.forward(unpack_decode(packed, batch, width, length, paged))

    def bucket(self, batch: int, length: int) -> tuple[int, int]:
        """Shape of the graph that serves this step: batch and context rounded up, so a few
        graphs serve every step. A backend that stops at each sequence's own length needs one
        length only: the longest."""
        runner = self.runner
        b = next((x for x in self.batch_buckets if x >= batch), batch)
        if runner.attention.reads_only_context:
            return b, runner.max_model_len
        ln = self.min_length_bucket
        while ln < length:
            ln *= 2
        return b, min(ln, runner.max_model_len)

    def capture(self, batch: int, length: int):
        """Record one decode step for ``batch`` sequences of context <= ``length``."""
        cache = self.runner.cache
        width = (length + cache.block_size - 1) // cache.block_size
        packed = empty_decode_buffer(batch, width, cache.scratch_slot, self.runner.device)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(3):                                  # warm-up (and compile)
                self._fn(packed, batch, width, length)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool):
            out = self._fn(packed, batch, width, length)
        self._pool = graph.pool()
        # two pinned buffers, taken in turn: a step launched ahead (run_ahead) writes one while
        # the copy from the other may still wait in the queue
        hosts = [torch.zeros_like(packed, device="cpu").pin_memory() for _ in range(2)]
        self.graphs[(batch, length)] = entry = _Graph(graph, packed, hosts, out, width)
        return entry

    def run(self, seqs, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[len(seqs), vocab]`` of a decode step, replayed from its bucket's graph.
        ``tokens``: the new tokens, already on the device (a step launched ahead, whose
        ``seqs`` are ``run_ahead.NextStep`` views), instead of each sequence's last token."""
        batch, length = self.bucket(len(seqs), max(len(s) for s in seqs))
        entry = self.graphs.get((batch, length)) or self.capture(batch, length)
        cache = self.runner.cache
        host = entry.hosts[entry.turn]
        entry.turn ^= 1
        host.numpy()[:] = pack_decode(seqs, batch, entry.width, cache.block_size,
                                      cache.scratch_slot)
        entry.packed.copy_(host, non_blocking=True)             # pinned memory: one async copy
        if tokens is not None:
            entry.packed[:len(seqs)].copy_(tokens)
        entry.graph.replay()
        return entry.out[:len(seqs)]


class _Graph:
    """One captured bucket: the graph, its input buffer and pinned copies, its output."""

    def __init__(self, graph, packed, hosts, out, width):
        self.graph, self.packed, self.hosts, self.out, self.width = graph, packed, hosts, out, width
        self.turn = 0
