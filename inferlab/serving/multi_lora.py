"""Many fine-tunes on one base model: batched LoRA (lesson 06, section 6).

A LoRA adapter (Hu et al., ICLR 2022) fine-tunes a Linear layer ``W [out, in]`` without touching
it: it learns two thin matrices ``A [r, in]`` and ``B [out, r]`` (rank ``r``, e.g. 8, far below
``in`` and ``out``) and the layer computes

    y = x W^T + scale * (x A^T) B^T

A service that hosts many fine-tunes of one model (one per customer, per task, per language) has
two ways to serve them:

* **merge** each adapter into its own copy of the weights (``W + scale * B A``): N fine-tunes cost
  N copies of the model, and a batch can only hold requests of one fine-tune - a request for a
  rarely used adapter waits for a batch of its own, or is batched with nobody;
* **batch the adapters** (Punica, Chen et al., MLSys 2024; S-LoRA, Sheng et al., MLSys 2024;
  vLLM's ``enable_lora``): keep one copy of ``W`` and the small ``A``/``B`` of every adapter;
  every request carries an adapter id. The base matmul runs once for the whole mixed batch (the
  weight read that sets decoding's pace is shared, as in lesson 00), and only the low-rank
  part differs per row: gather each row's ``A`` and ``B`` and multiply them batched.

``MultiLoRALinear`` is that layer; ``add_adapters`` puts one around each target Linear of a
``transformers`` model with N random adapters (real shapes; the values stand in for trained ones,
which is fine for speed and for checking the arithmetic); ``use_adapters(model, ids)`` says which
adapter each row of the next batches uses (``-1``: the base model); ``merged_model`` builds the
merged copy of one adapter, the reference a batched row must equal.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class MultiLoRALinear(nn.Module):
    """A frozen base ``nn.Linear`` plus ``n`` LoRA adapters; row ``b`` of the batch uses adapter
    ``adapter_ids[b]`` (``-1``: none). ``A [n, r, in]``, ``B [n, out, r]``."""

    def __init__(self, base: nn.Linear, lora_a: torch.Tensor, lora_b: torch.Tensor,
                 scale: float):
        super().__init__()
        n, r, in_features = lora_a.shape
        if in_features != base.in_features or lora_b.shape != (n, base.out_features, r):
            raise ValueError(f"adapters must be A [n, r, {base.in_features}] and "
                             f"B [n, {base.out_features}, r]; got {tuple(lora_a.shape)} and "
                             f"{tuple(lora_b.shape)}")
        self.base, self.scale = base, scale
        self.register_buffer("lora_a", lora_a.to(base.weight))
        self.register_buffer("lora_b", lora_b.to(base.weight))
        self.adapter_ids: torch.Tensor | None = None

    @property
    def n_adapters(self) -> int:
        return self.lora_a.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        ids = self.adapter_ids
        if ids is None:
            return y
        if x.dim() != 3 or x.shape[0] != ids.shape[0]:
            raise ValueError(f"adapter ids are set for a batch of {ids.shape[0]} rows, but the "
                             f"input is {tuple(x.shape)}: call use_adapters for this batch")
        used = ids >= 0
        rows = ids.clamp(min=0)
        a = self.lora_a[rows]                                   # [batch, r, in]
        b = self.lora_b[rows]                                   # [batch, out, r]
        low_rank = torch.bmm(torch.bmm(x, a.transpose(1, 2)), b.transpose(1, 2))
        return y + self.scale * low_rank * used.view(-1, 1, 1).to(y.dtype)

    def delta(self, adapter: int) -> torch.Tensor:
        """The weight change of one adapter, ``scale * B A`` ``[out, in]``."""
        return self.scale * self.lora_b[adapter] @ self.lora_a[adapter]


def add_adapters(model: nn.Module, n_adapters: int, rank: int = 8,
                 targets: tuple[str, ...] = ("q_proj", "v_proj"), alpha: float = 16.0,
                 seed: int = 0) -> list[MultiLoRALinear]:
    """Wrap every Linear of ``model`` whose name ends in one of ``targets`` in a
    ``MultiLoRALinear`` with ``n_adapters`` random adapters of rank ``rank`` (in place). ``A`` is
    drawn as LoRA initialises it; ``B``, zero at the start of training, is drawn small and
    non-zero, as after training, so that the adapters change the outputs. Returns the layers."""
    if n_adapters < 1 or rank < 1:
        raise ValueError("need at least one adapter of rank 1 or more")
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets:
            out_f, in_f = module.weight.shape
            lora_a = torch.randn(n_adapters, rank, in_f, generator=generator) / math.sqrt(in_f)
            lora_b = torch.randn(n_adapters, out_f, rank, generator=generator) * 0.02
            layer = MultiLoRALinear(module, lora_a, lora_b, alpha / rank)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, layer)
            layers.append(layer)
    if not layers:
        raise ValueError(f"no Linear layer of the model is named like {targets}")
    return layers


def lora_layers(model: nn.Module) -> list[MultiLoRALinear]:
    return [m for m in model.modules() if isinstance(m, MultiLoRALinear)]


def use_adapters(model: nn.Module, adapter_ids: list[int] | torch.Tensor | None) -> None:
    """Row ``b`` of the next batches uses adapter ``adapter_ids[b]`` (``-1``: the base model);
    ``None`` switches the adapters off."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no adapters: call add_adapters first")
    if adapter_ids is not None:
        ids = torch.as_tensor(adapter_ids, dtype=torch.long)
        n = layers[0].n_adapters
        if ids.dim() != 1 or ((ids < -1) | (ids >= n)).any():
            raise ValueError(f"adapter ids must be a list of integers in -1..{n - 1} (one per "
                             f"row of the batch; -1 for the base model), got {ids.tolist()}")
        adapter_ids = ids.to(layers[0].lora_a.device)
    for layer in layers:
        layer.adapter_ids = adapter_ids


def merged_model(model: nn.Module, adapter: int) -> nn.Module:
    """A copy of ``model`` with adapter ``adapter`` merged into plain Linear weights
    (``W + scale * B A``): what serving that fine-tune alone would load."""
    merged = copy.deepcopy(model)
    for name, module in list(merged.named_modules()):
        if isinstance(module, MultiLoRALinear):
            module.base.weight.data += module.delta(adapter).to(module.base.weight.dtype)
            parent, _, child = name.rpartition(".")
            setattr(merged.get_submodule(parent), child, module.base)
    return merged


def adapter_bytes(model: nn.Module) -> int:
    """Bytes of every adapter's A and B together (one copy of the base weights serves all)."""
    return sum(t.numel() * t.element_size() for layer in lora_layers(model)
               for t in (layer.lora_a, layer.lora_b))
