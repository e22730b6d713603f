"""Weights packed once for the CPU's matrix kernels (lesson 06).

A CPU matrix multiply does not read a weight row by row. oneDNN, the library behind PyTorch's
CPU ``F.linear``, first copies the weight into a *blocked* layout: small tiles laid out in the
order its AVX-512 inner loop consumes them, so that each cache line it fetches is used in full.
Called on a plain ``[out, in]`` tensor, it redoes that copy on every call - for a decode step
that is every weight of the model, every step. Packing each weight once, when the engine starts,
moves the copy out of the loop; vLLM's and Intel's CPU back-ends do the same. On two cores of an
AVX-512 CPU this makes the linear layers of a 32-sequence decode step about 30 % faster, and a
single sequence's about 40 % (``benchmarks/engine_bench.py cpu`` measures the whole engine).

In bfloat16 the packed product is the same computation in another memory order: the tests check
it equals ``F.linear`` exactly. In float32 oneDNN may sum in another order (differences near
1e-5), so float32 is packed only when asked (``EngineConfig.prepack_weights=True``).

``PackedWeights.linear(x, weight, bias)`` is a drop-in ``F.linear``: it uses the packed copy of
``weight`` when there is one and falls back to ``F.linear`` otherwise (a GPU, a dtype oneDNN
cannot pack on this CPU, a PyTorch build without oneDNN). The packed copies are kept beside the
plain tensors, which the rest of the course still reads: packing costs one more copy of the
weights in memory. The copies are taken when the engine is built: an engine keeps multiplying by
the weights it was built with, so build a new one after changing them in place.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .weights import swiglu


def _ops():
    """PyTorch's oneDNN linear operators, or None where this build has none."""
    ops = getattr(torch.ops, "mkldnn", None)
    have = (torch.backends.mkldnn.is_available() and ops is not None
            and hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise"))
    return ops if have else None


def can_pack(device, dtype, exact_only: bool = True) -> bool:
    """Whether weights of ``dtype`` on ``device`` can be packed here. ``exact_only``: only where
    the packed product equals ``F.linear`` exactly (bfloat16 on a CPU with native bf16 support)."""
    ops = _ops()
    if ops is None or torch.device(device).type != "cpu":
        return False
    if dtype == torch.bfloat16:
        return bool(ops._is_mkldnn_bf16_supported())
    return dtype == torch.float32 and not exact_only


class Matmuls:
    """What the model runner multiplies through: ``linear`` (as ``F.linear``) and ``swiglu``, the
    MLP's gate/up product with its activation, which a subclass may compute in one kernel
    (``gemv.GemvWeights``)."""

    def linear(self, x, weight, bias=None):
        raise NotImplementedError

    def swiglu(self, x: torch.Tensor, gate_up: torch.Tensor) -> torch.Tensor:
        return swiglu(self.linear(x, gate_up))


class PackedWeights(Matmuls):
    """Packed copies of a model's matrices, looked up by the plain tensor they stand for.

    ``batch_hint``: the number of rows oneDNN tunes the layout for (the engine passes its
    ``max_num_seqs``, the rows of a full decode step); any number of rows still works.
    """

    def __init__(self, weights, batch_hint: int = 32):
        self._packed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        ops = _ops()
        matrices = [w for layer in weights.layers for w in (layer.qkv, layer.o, layer.gate_up,
                                                            layer.down)] + [weights.lm_head]
        for w in matrices:
            if id(w) not in self._packed:
                # keep w itself alive with its packed copy, so that its id() cannot be reused
                self._packed[id(w)] = (w, ops._reorder_linear_weight(w, batch_hint))

    def __len__(self) -> int:
        return len(self._packed)

    def linear(self, x: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """``F.linear(x, weight, bias)`` through the packed copy of ``weight`` when there is one
        (``x``: ``[rows, in]``)."""
        entry = self._packed.get(id(weight))
        if entry is None or entry[0] is not weight:
            return F.linear(x, weight, bias)
        return torch.ops.mkldnn._linear_pointwise(x, entry[1], bias, "none", [], "")


class PlainWeights(Matmuls):
    """No packing: ``F.linear`` as it is (GPUs, and CPUs where packing is off)."""

    def __len__(self) -> int:
        return 0

    @staticmethod
    def linear(x, weight, bias=None):
        return F.linear(x, weight, bias)
