"""AWQ from scratch: protect the weights that meet large activations, by scaling, not by skipping.

Introduced in lesson 02 (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM
Compression and Acceleration", 2023). Observation: a few input channels carry much larger
activations than the others, and the weights that multiply them matter most. Keeping them in fp16
would need mixed-precision kernels; instead AWQ multiplies input channel ``j`` of the weight by
``s_j > 1`` before quantizing, and divides the input by ``s_j``:

    y = x W^T = (x / s) (W * s)^T     ->     y_hat = (x / s) Q(W * s)^T

Scaling a channel up makes its *relative* rounding error smaller (the group's scale barely moves
when only a few channels grow). The ``1 / s`` is folded for free into the operation that produces
``x`` (the RMSNorm weight before q/k/v and gate/up, the rows of up_proj before down_proj), so the
deployed model has the same shape and speed as round-to-nearest.

``s = mean|x|^alpha`` (normalised), with ``alpha`` found by a grid search that minimises the
output error on calibration inputs (``awq_search_scale``). A second search shrinks each group's
range (clipping outliers, ``awq_search_clip``). o_proj is only clipped, not scaled: its input
comes from attention over grouped KV heads, and a per-channel scale could not be folded into the
3-times-shared v_proj rows (the reference implementation skips it for the same reason).
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn

from inferlab.compress.gptq import decoder_blocks, run_blockwise
from inferlab.compress.quant import (
    Scheme,
    dequantize_view,
    encode,
    fake_quantize,
    from_groups,
    scale_offset,
    to_groups,
)

SCALED_GROUPS = {("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                 ("mlp.gate_proj", "mlp.up_proj"), ("mlp.down_proj",)}


def output_error(W: torch.Tensor, W_hat: torch.Tensor, X: torch.Tensor) -> float:
    """Mean squared error of the layer's outputs ``X W^T`` vs ``X W_hat^T``."""
    return (X @ (W - W_hat).T).pow(2).mean().item()


@torch.no_grad()
def awq_search_scale(W: torch.Tensor, X: torch.Tensor, scheme: Scheme, n_grid: int = 20):
    """Grid search of ``alpha`` in ``[0, 1)``: returns ``(scales (in,), alpha, losses)``.

    ``W`` is ``(out, in)`` (the Linears sharing input ``X`` stacked by rows), ``X`` is
    ``(tokens, in)``. ``alpha = 0`` means no scaling, i.e. plain round-to-nearest.
    """
    W, X = W.float(), X.float()
    x_mean = X.abs().mean(dim=0)
    reference = X @ W.T
    best = (float("inf"), None, None)
    losses = []
    for i in range(n_grid):
        alpha = i / n_grid
        s = x_mean.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        W_hat = fake_quantize(W * s, scheme) / s
        loss = (X @ W_hat.T - reference).pow(2).mean().item()
        losses.append(loss)
        if loss < best[0]:
            best = (loss, s, alpha)
    return best[1], best[2], losses


@torch.no_grad()
def awq_search_clip(W: torch.Tensor, X: torch.Tensor, scheme: Scheme, n_grid: int = 20,
                    max_shrink: float = 0.5) -> torch.Tensor:
    """For every group of every row, the range shrink ``r`` in ``[1 - max_shrink, 1]`` that
    minimises that group's contribution to the output error; returns ``W`` clamped accordingly.

    The error of group ``g`` of row ``o`` is ``d^T G_g d`` with ``d = w - Q(w)`` and the group's
    input Gram matrix ``G_g = X_g^T X_g`` - exactly the squared output error over the tokens.
    """
    if scheme.granularity != "group" or scheme.method not in ("absmax", "zeropoint"):
        return W
    W, X = W.float(), X.float()
    out, width = W.shape
    g = scheme.group_size
    view = to_groups(W, "group", g).reshape(out, -1, g)                  # (out, ng, g)
    Xg = to_groups(X, "group", g).reshape(X.shape[0], -1, g)             # (T, ng, g)
    gram = torch.einsum("tni,tnj->nij", Xg, Xg) / X.shape[0]            # (ng, g, g)
    hi0 = view.amax(-1, keepdim=True).clamp(min=0)
    lo0 = view.amin(-1, keepdim=True).clamp(max=0)
    best_err = torch.full(view.shape[:2], float("inf"))
    best = view.clone()
    for i in range(n_grid):
        r = 1 - max_shrink * i / n_grid
        if scheme.method == "absmax":
            m = torch.maximum(hi0, -lo0) * r
            clipped = torch.maximum(torch.minimum(view, m), -m)
        else:
            clipped = torch.minimum(torch.maximum(view, lo0 * r), hi0 * r)
        flat = clipped.reshape(-1, g)
        sc, off = scale_offset(flat, scheme)
        q = dequantize_view(encode(flat, sc, off, scheme), sc, off, scheme).reshape(view.shape)
        d = (view - q).transpose(0, 1)                                   # (ng, out, g)
        err = ((d @ gram) * d).sum(-1).transpose(0, 1)                    # (out, ng)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better.unsqueeze(-1), clipped, best)
    return from_groups(best.reshape(-1, g), (out, width), "group", g)


class _InputSampler:
    """Keeps up to ``n_tokens`` input rows (evenly spread) of the Linears it is hooked to."""

    def __init__(self, n_tokens: int):
        self.n_tokens, self.rows = n_tokens, []

    def add(self, x: torch.Tensor) -> None:
        self.rows.append(x.reshape(-1, x.shape[-1]).float())

    def tokens(self) -> torch.Tensor:
        X = torch.cat(self.rows)
        if X.shape[0] > self.n_tokens:
            X = X[torch.linspace(0, X.shape[0] - 1, self.n_tokens).long()]
        return X


@torch.no_grad()
def awq_quantize_model(model: nn.Module, calib_ids: torch.Tensor, scheme: Scheme,
                       n_grid: int = 20, clip: bool = True, n_tokens: int = 512,
                       max_blocks: int | None = None, progress=None) -> dict:
    """AWQ every Linear of the decoder blocks in place (fake-quantized ``Q(W*s)/s``).

    Returns stats: seconds, how many Linears, the chosen ``alpha`` per scaled group.
    """
    start = time.perf_counter()
    alphas = {}
    count = [0]

    def process(index, block, samplers):
        for group, sampler in samplers.items():
            X = sampler.tokens()
            linears = [block.get_submodule(name) for name in group]
            W = torch.cat([linear.weight.data.float() for linear in linears], dim=0)
            if group in SCALED_GROUPS:
                s, alpha, _ = awq_search_scale(W, X, scheme, n_grid)
                alphas[f"layers.{index}.{group[0].split('.')[-1]}"] = alpha
            else:
                s = torch.ones(W.shape[1])
            Ws = W * s
            if clip:
                Ws = awq_search_clip(Ws, X / s, scheme, n_grid)
            W_hat = fake_quantize(Ws, scheme) / s
            for linear, part in zip(linears, W_hat.split([lin.out_features for lin in linears])):
                linear.weight.data = part.to(linear.weight.dtype).contiguous()
            count[0] += len(group)

    run_blockwise(model, calib_ids, process, lambda group: _InputSampler(n_tokens), progress,
                  max_blocks=max_blocks)
    return {"seconds": time.perf_counter() - start, "linears": count[0],
            "blocks": len(decoder_blocks(model)) if max_blocks is None else max_blocks,
            "alphas": alphas}
