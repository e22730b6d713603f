"""Pruning: removing weights, and what that really buys in size and speed.

Introduced in lesson 03. Pruning sets weights to zero (or removes them) on the bet that the
model barely needs them. Three kinds, which differ in *what the hardware can exploit*:

* **unstructured** - zero the individually smallest weights anywhere in a matrix
  (``magnitude_mask``; ``wanda_mask`` also weighs each weight by the size of the activation it
  multiplies). Quality survives best, but the matrix keeps its shape: a dense matmul multiplies
  the zeros just as fast as any other number, so memory and speed do not change until a sparse
  storage format takes over, and on CPUs and GPUs those only pay off at very high sparsity.
* **structured** - remove whole rows/columns: MLP channels (``prune_mlp_channels``) or
  attention heads (``prune_attention_heads``). The matrices really shrink, so every kernel
  runs faster and memory drops - but quality drops faster too, since whole features go.
* **2:4 semi-structured** - in every group of 4 consecutive weights of a row, keep the 2
  largest (``two_four_mask``). Exactly 50% sparsity in a pattern NVIDIA's sparse tensor cores
  (Ampere and later) execute directly: values stored at half size plus 2-bit indices, and up
  to 2x matmul throughput in theory. CPUs have no such kernel.

``prune_linears`` applies any mask function to every Linear of the decoder layers (the tied
embedding / lm_head is left alone); ``sparsity`` measures the result; ``pruned_copy`` is the one
entry point for every method (lesson 03's sweep and panel). Activation-aware scores need
``input_norms`` from a few calibration batches. ``storage_bytes`` and ``matmul_times`` measure
what each format costs, rather than assuming it.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

MaskFn = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------ masks
def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Boolean mask keeping the ``1 - sparsity`` fraction of entries largest in absolute value.

    Exactly ``round(sparsity * numel)`` entries are dropped (ties broken by position).
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    n_drop = int(round(sparsity * weight.numel()))
    mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    if n_drop:
        order = weight.detach().abs().flatten().float().argsort(stable=True)
        mask[order[:n_drop]] = False
    return mask.view_as(weight)


def wanda_mask(weight: torch.Tensor, input_norm: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Wanda (Sun et al. 2023, arXiv:2306.11695): score ``|W_ij| * ||x_j||``, prune per output row.

    ``input_norm[j]`` is the L2 norm of input feature ``j`` over calibration tokens: a small
    weight on a loud input can matter more than a large weight on a quiet one.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    score = weight.detach().abs().float() * input_norm.float().view(1, -1)
    n_drop = int(round(sparsity * weight.shape[1]))
    mask = torch.ones_like(weight, dtype=torch.bool)
    if n_drop:
        drop = score.argsort(dim=1, stable=True)[:, :n_drop]
        mask.scatter_(1, drop, False)
    return mask


def two_four_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """N:M mask: in every group of ``m`` consecutive entries of a row keep the ``n`` largest |w|.

    Groups run along the last (input) dimension, the layout sparse tensor cores expect for
    ``F.linear(x, W)``. The last dimension must be a multiple of ``m``.
    """
    if weight.shape[-1] % m:
        raise ValueError(f"last dimension {weight.shape[-1]} is not a multiple of {m}")
    groups = weight.detach().abs().float().reshape(-1, m)
    keep = groups.topk(n, dim=1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
    return mask.view(weight.shape)


# ------------------------------------------------------------------------ whole model
def prunable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The Linear layers inside the decoder layers (attention and MLP projections).

    The embedding (tied to the output head in SmolLM2) is never pruned: it is a lookup table,
    and its rows are whole tokens.
    """
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and ".layers." in f".{name}"}


@torch.no_grad()
def prune_linears(model: nn.Module, mask_fn: MaskFn, only: str | None = None) -> float:
    """Zero every prunable weight that ``mask_fn(weight)`` marks False; return the sparsity.

    ``only`` restricts pruning to layers whose name contains it (e.g. ``"mlp"``).
    """
    for name, linear in prunable_linears(model).items():
        if only is None or only in name:
            mask = mask_fn(linear.weight)
            if mask.shape != linear.weight.shape or mask.dtype != torch.bool:
                raise ValueError(f"{name}: the mask must be a bool tensor of shape "
                                 f"{tuple(linear.weight.shape)}, "
                                 f"got {mask.dtype} {tuple(mask.shape)}")
            linear.weight.mul_(mask)
    return sparsity(model)


def sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros among the prunable weights."""
    zeros = total = 0
    for linear in prunable_linears(model).values():
        zeros += (linear.weight == 0).sum().item()
        total += linear.weight.numel()
    return zeros / total if total else 0.0


@torch.no_grad()
def input_norms(model: nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """L2 norm of every prunable Linear's input features over ``input_ids`` (for Wanda)."""
    sums, hooks = {}, []
    for name, linear in prunable_linears(model).items():
        def hook(module, args, _out, name=name):
            x = args[0].detach().float().reshape(-1, args[0].shape[-1])
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
        hooks.append(linear.register_forward_hook(hook))
    try:
        device = next(model.parameters()).device
        for row in input_ids:
            model(row[None].to(device))
    finally:
        for handle in hooks:
            handle.remove()
    return {name: total.sqrt() for name, total in sums.items()}


# ------------------------------------------------------------------------- structured
def _linear(weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False,
                      device=weight.device, dtype=weight.dtype)
    layer.weight.data = weight.contiguous().clone()
    return layer


def mlp_channel_scores(down: torch.Tensor, hidden_norm: torch.Tensor | None = None,
                       gate: torch.Tensor | None = None,
                       up: torch.Tensor | None = None) -> torch.Tensor:
    """Importance of each hidden channel ``j`` of a gated MLP ``down @ (silu(gate x) * up x)``.

    Activation-aware (``hidden_norm`` given): ``||h_j|| * ||down[:, j]||`` - how loud channel ``j``
    was on calibration text times how strongly it writes to the output. Weights only (no
    ``hidden_norm``): the product of the norms of ``gate[j]``, ``up[j]`` and ``down[:, j]``.
    Lesson 03 measures both: on SmolLM2 the weight-only score is far worse.
    """
    if hidden_norm is not None:
        return hidden_norm.float() * down.detach().float().norm(dim=0)
    if gate is None or up is None:
        raise ValueError("without hidden_norm the score needs gate and up")
    return (gate.detach().float().norm(dim=1) * up.detach().float().norm(dim=1)
            * down.detach().float().norm(dim=0))


def _layer_norms(norms: dict[str, torch.Tensor] | None, index: int, part: str):
    if norms is None:
        return None
    for name, value in norms.items():
        if name.endswith(f"layers.{index}.{part}"):
            return value
    raise KeyError(f"no input norm for layers.{index}.{part}; pass input_norms(model, ids)")


@torch.no_grad()
def select_mlp_channels(gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor,
                        hidden_norm: torch.Tensor | None, n_keep: int):
    """The ``n_keep`` best channels' weights ``(gate[k], up[k], down[:, k])``, in original order."""
    scores = mlp_channel_scores(down, hidden_norm, gate, up)
    keep = scores.topk(n_keep).indices.sort().values
    return gate[keep], up[keep], down[:, keep]


@torch.no_grad()
def prune_mlp_channels(model: nn.Module, fraction: float,
                       norms: dict[str, torch.Tensor] | None = None,
                       select=select_mlp_channels) -> int:
    """Remove the ``fraction`` least important MLP channels of every layer; return how many remain.

    ``norms`` (from ``input_norms``) makes the score activation-aware. ``select(gate, up, down,
    hidden_norm, n_keep)`` returns the smaller weights (lesson 03 passes the student's own).
    The same number of channels is kept in every layer so the config stays valid
    (``intermediate_size``) and the model can be saved and reloaded.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    layers = model.model.layers
    n_keep = max(1, int(round(layers[0].mlp.gate_proj.out_features * (1 - fraction))))
    for index, layer in enumerate(layers):
        mlp = layer.mlp
        gate, up, down = select(mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight,
                                _layer_norms(norms, index, "mlp.down_proj"), n_keep)
        mlp.gate_proj, mlp.up_proj, mlp.down_proj = _linear(gate), _linear(up), _linear(down)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = n_keep
    model.config.intermediate_size = n_keep
    return n_keep


@torch.no_grad()
def prune_attention_heads(model: nn.Module, keep_per_group: int,
                          norms: dict[str, torch.Tensor] | None = None) -> int:
    """Keep ``keep_per_group`` query heads in each grouped-query group of every layer.

    With grouped-query attention (SmolLM2: 9 query heads share 3 key/value heads) each group must
    keep the same number of query heads, so we drop the same number from every group and keep
    the K/V heads. A head's score is ``||its output|| * ||its o_proj columns||`` with ``norms``
    (from ``input_norms``), else the product of its q and o weight norms. Returns the new number
    of query heads.
    """
    config = model.config
    n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads
    group = n_heads // n_kv
    if not 1 <= keep_per_group <= group:
        raise ValueError(f"keep_per_group must be in 1..{group}, got {keep_per_group}")
    for index, layer in enumerate(model.model.layers):
        attn = layer.self_attn
        d = attn.head_dim
        q = attn.q_proj.weight.view(n_heads, d, -1)
        o_rows = attn.o_proj.weight.shape[0]
        o = attn.o_proj.weight.view(o_rows, n_heads, d)
        head_out = _layer_norms(norms, index, "self_attn.o_proj")
        strength = (head_out.view(n_heads, d).norm(dim=1) if head_out is not None
                    else q.norm(dim=(1, 2)))
        score = (strength * o.norm(dim=(0, 2))).view(n_kv, group)
        keep = score.topk(keep_per_group, dim=1).indices.sort(dim=1).values
        heads = (keep + torch.arange(n_kv, device=keep.device).view(-1, 1) * group).flatten()
        attn.q_proj = _linear(q[heads].reshape(-1, q.shape[-1]))
        attn.o_proj = _linear(o[:, heads].reshape(o_rows, -1))
        attn.num_key_value_groups = keep_per_group
    config.num_attention_heads = keep_per_group * n_kv
    return config.num_attention_heads


# --------------------------------------------------------------------- one entry point
METHODS = ("magnitude", "wanda", "2:4 magnitude", "2:4 wanda", "mlp channels",
           "mlp channels (weights only)", "attention heads")


def decoder_weights(model: nn.Module) -> tuple[int, int]:
    """(nonzero, total) entries of the prunable Linear weights."""
    weights = [linear.weight for linear in prunable_linears(model).values()]
    return sum(int((w != 0).sum()) for w in weights), sum(w.numel() for w in weights)


def pruned_copy(model: nn.Module, method: str, sparsity: float,
                norms: dict[str, torch.Tensor] | None = None) -> tuple[nn.Module, float]:
    """A pruned deep copy of ``model`` and the fraction of decoder weights it really removed.

    ``sparsity`` is the fraction of the decoder's Linear weights to remove. 2:4 methods always
    remove half. Structured methods round to what their granularity allows (MLP channels alone
    hold ~3/4 of the decoder weights; heads go one per GQA group at a time), and say so by the
    returned fraction. ``wanda``, ``2:4 wanda`` and the activation-aware structured methods need
    ``norms`` from ``input_norms``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    needs_norms = method in ("wanda", "2:4 wanda", "mlp channels", "attention heads")
    if needs_norms and norms is None:
        raise ValueError(f"{method!r} is activation-aware: pass norms=input_norms(model, ids)")
    _, total = decoder_weights(model)
    pruned = copy.deepcopy(model)
    linears = prunable_linears(pruned)
    if method == "magnitude":
        prune_linears(pruned, lambda w: magnitude_mask(w, sparsity))
    elif method == "wanda":
        for name, linear in linears.items():
            linear.weight.data *= wanda_mask(linear.weight, norms[name], sparsity)
    elif method.startswith("2:4"):
        for name, linear in linears.items():
            score = linear.weight * norms[name] if method == "2:4 wanda" else linear.weight
            linear.weight.data *= two_four_mask(score)
    elif method.startswith("mlp channels"):
        mlp = pruned.model.layers[0].mlp
        share = 3 * mlp.gate_proj.weight.numel() / (total / len(pruned.model.layers))
        if sparsity > 0.95 * share:
            raise ValueError(f"MLP channels hold only {share:.0%} of the decoder weights: "
                             f"cannot remove {sparsity:.0%} with them alone")
        if sparsity > 0:
            prune_mlp_channels(pruned, sparsity / share,
                               None if "weights only" in method else norms)
    else:
        attn = pruned.model.layers[0].self_attn
        group = pruned.config.num_attention_heads // pruned.config.num_key_value_heads
        per_head = 2 * attn.q_proj.weight.numel() / pruned.config.num_attention_heads
        per_group_share = (per_head * pruned.config.num_key_value_heads
                           / (total / len(pruned.model.layers)))
        drop = min(group - 1, int(round(sparsity / per_group_share)))
        if drop:
            prune_attention_heads(pruned, group - drop, norms)
    nonzero, _ = decoder_weights(pruned)
    return pruned, 1 - nonzero / total


# --------------------------------------------------------------------- size and speed
def storage_bytes(weight: torch.Tensor, fmt: str = "dense") -> int:
    """Bytes a weight matrix occupies in a storage format: what a format *really* costs.

    * ``dense`` - every entry, zeros included.
    * ``csr``   - compressed sparse rows as PyTorch builds them: each nonzero value plus its
      int64 column index, plus one int64 row pointer per row. At 50% sparsity in fp32 that is
      *larger* than dense.
    * ``2:4``   - half the values, plus 2 bits of position per kept value (the metadata
      NVIDIA's sparse tensor cores read); assumes the matrix already follows the 2:4 pattern.
    """
    item = weight.element_size()
    if fmt == "dense":
        return weight.numel() * item
    if fmt == "csr":
        nnz = int((weight != 0).sum())
        return nnz * (item + 8) + (weight.shape[0] + 1) * 8
    if fmt == "2:4":
        kept = weight.numel() // 2
        return kept * item + kept * 2 // 8
    raise ValueError(f"unknown format {fmt!r}: use 'dense', 'csr' or '2:4'")


@torch.no_grad()
def matmul_times(weight: torch.Tensor, x: torch.Tensor, repeats: int = 5) -> dict[str, float]:
    """Median seconds of ``F.linear(x, weight)`` as dense and as CSR sparse, on the CPU.

    The dense kernel does the same work whatever the values are, so a matrix of zeros is no
    faster; the CSR kernel skips zeros but pays for indexing on every one it keeps.
    """
    import warnings

    from inferlab.lab.bench import time_fn
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        csr = weight.to_sparse_csr()
    x_t = x.t().contiguous()
    return {
        "dense": time_fn(lambda: torch.nn.functional.linear(x, weight), repeats=repeats).median,
        "csr": time_fn(lambda: torch.sparse.mm(csr, x_t), repeats=repeats).median,
    }
