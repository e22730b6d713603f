"""GPTQ from scratch: quantize a layer's columns one by one and push each error onto the rest.

Introduced in lesson 02 (Frantar et al., "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", 2022). Round-to-nearest (RTN) treats each weight alone.
GPTQ instead minimises the error of the layer's *output* on calibration inputs ``X``::

    || X W^T - X Q^T ||^2      with the Hessian  H = 2 X^T X / n  (in_features x in_features)

Column ``j`` is quantized, its error ``(w_j - q_j) / [H^-1]_jj`` is multiplied by row ``j`` of
(the Cholesky factor of) ``H^-1`` and subtracted from the columns not yet quantized - they absorb
what column ``j`` lost, in the directions the inputs actually use. Group scales (``group_size``)
are chosen when the loop reaches a group's first column, from the *already updated* weights.

* ``hessian`` - ``H`` from a batch of inputs (``HessianAccumulator`` sums it over batches);
* ``inverse_hessian_factor`` - damping, then the upper Cholesky factor of ``H^-1``;
* ``gptq_quantize_columns`` - the plain column loop (the lesson's exercise; fp32 scales);
* ``gptq_quantize_weight`` - the same with "lazy batch" blocks of 128 columns (the paper's
  speed-up: same result, far less memory traffic) and fp16 scales as stored;
* ``capture_block_inputs`` / ``run_blockwise`` - run calibration text through the model one
  decoder block at a time, so each block is quantized on the outputs of the already-quantized
  blocks before it (AWQ in lesson 02 reuses them); ``block_linear_inputs`` returns what one
  block's Linears receive (for one-layer experiments);
* ``gptq_quantize_model`` - all of it over a Llama-style model (weights replaced in place by
  their dequantized values: a *fake-quantized* model whose perplexity we can measure).
"""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn as nn

from inferlab.compress.quant import Scheme, dequantize_view, encode, scale_offset

# Linears that read the same input in a Llama-style decoder block: one Hessian serves each group.
LINEAR_GROUPS = (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                 ("self_attn.o_proj",),
                 ("mlp.gate_proj", "mlp.up_proj"),
                 ("mlp.down_proj",))


def hessian(x: torch.Tensor) -> torch.Tensor:
    """``H = 2 X^T X / n`` for inputs ``x`` of shape ``(..., in_features)`` (all tokens pooled)."""
    x = x.reshape(-1, x.shape[-1]).float()
    return (2.0 / x.shape[0]) * (x.T @ x).double()


class HessianAccumulator:
    """Running ``2 X^T X / n`` over batches (a forward hook feeds it), kept in float64."""

    def __init__(self, in_features: int):
        self.H = torch.zeros(in_features, in_features, dtype=torch.float64)
        self.n = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        m = x.shape[0]
        self.H *= self.n / (self.n + m)
        self.n += m
        self.H += (2.0 / self.n) * (x.T @ x).double()


def inverse_hessian_factor(H: torch.Tensor, percdamp: float = 0.01):
    """Upper Cholesky factor ``U`` of ``(H + damp I)^-1`` (``U^T U = H^-1``), and the dead columns.

    Damping by 1% of the mean diagonal keeps the inverse well conditioned with few samples. A
    column whose input is always zero ("dead") gets ``H_jj = 1``; its weight is irrelevant.
    """
    H = H.double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    H += percdamp * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    Hinv = torch.cholesky_inverse(torch.linalg.cholesky(H))
    return torch.linalg.cholesky(Hinv, upper=True), dead


def gptq_quantize_columns(W: torch.Tensor, Hinv: torch.Tensor, bits: int = 4,
                          group_size: int = 128) -> torch.Tensor:
    """The GPTQ column loop, symmetric absmax, fp32 scales: returns the dequantized weight.

    ``W`` is ``(out, in)``; ``Hinv`` the upper Cholesky factor of ``H^-1``
    (``inverse_hessian_factor``).
    """
    W = W.clone().float()
    Hinv = Hinv.float()
    Q = torch.zeros_like(W)
    qmax = 2 ** (bits - 1) - 1
    scale = None
    for j in range(W.shape[1]):
        if j % group_size == 0:
            scale = W[:, j:j + group_size].abs().amax(dim=1) / qmax
            scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        q = torch.round(W[:, j] / scale).clamp(-qmax, qmax) * scale
        Q[:, j] = q
        err = (W[:, j] - q) / Hinv[j, j]
        W[:, j + 1:] -= torch.outer(err, Hinv[j, j + 1:])
    return Q


@torch.no_grad()
def gptq_quantize_weight(W: torch.Tensor, H: torch.Tensor, scheme: Scheme, blocksize: int = 128,
                         percdamp: float = 0.01, act_order: bool = False,
                         scale_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """GPTQ with lazy-batch blocks and any ``Scheme`` (group or per-channel): dequantized weight.

    Inside a block the error is spread column by column, but onto the block's columns only; the
    accumulated errors reach the columns after the block in one matrix product. ``act_order``
    quantizes the columns with the largest ``H_jj`` first (then groups follow that order).
    """
    W = W.detach().clone().float()
    out_f, in_f = W.shape
    Hinv, dead = inverse_hessian_factor(H, percdamp)
    W[:, dead] = 0
    perm = None
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True)
        W = W[:, perm]
        Hinv, _ = inverse_hessian_factor(H[perm][:, perm], percdamp)
    Hinv = Hinv.float()
    group = scheme.group_size if scheme.granularity == "group" else in_f
    if scheme.granularity == "tensor":
        raise ValueError("GPTQ needs per-channel or per-group scales")
    Q = torch.zeros_like(W)
    scale = offset = None
    for i1 in range(0, in_f, blocksize):
        i2 = min(i1 + blocksize, in_f)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        H1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % group == 0:  # new group: scales from the current (updated) weights
                block = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :group]
                scale, offset = scale_offset(block, scheme, scale_dtype)
            w = W1[:, i:i + 1]
            q = dequantize_view(encode(w, scale, offset, scheme), scale, offset, scheme)
            Q[:, col] = q[:, 0]
            err = (w[:, 0] - q[:, 0]) / H1[i, i]
            W1[:, i:] -= torch.outer(err, H1[i, i:])
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    if perm is not None:
        Q = Q[:, torch.argsort(perm)]
    return Q


# --------------------------------------------------------------------- block-by-block calibration
class _Stop(Exception):
    pass


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a Llama-style causal LM (``model.model.layers``)."""
    try:
        return model.model.layers
    except AttributeError as error:
        raise ValueError("expected a Llama-style model with model.model.layers") from error


@torch.no_grad()
def capture_block_inputs(model: nn.Module, input_ids: torch.Tensor):
    """Run the model up to its first block; return ``(hidden_states, kwargs)`` that block received.

    The kwargs (rotary position embeddings, attention mask...) are the same for every block, so
    the blocks can then be run one at a time: ``block(hidden, **kwargs)``.
    """
    captured = {}

    def hook(module, args, kwargs):
        captured["hidden"] = args[0] if args else kwargs.pop("hidden_states")
        captured["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        raise _Stop

    handle = decoder_blocks(model)[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(input_ids, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    kwargs = captured["kwargs"]
    kwargs["use_cache"] = False
    kwargs.pop("past_key_values", None)
    return captured["hidden"], kwargs


def _block_output(out):
    return out[0] if isinstance(out, tuple) else out


def present_groups(block: nn.Module) -> list[tuple[str, ...]]:
    """``LINEAR_GROUPS`` that exist in ``block``; other Linears become groups of one."""
    names = {n for n, m in block.named_modules() if isinstance(m, nn.Linear)}
    groups = [g for g in LINEAR_GROUPS if all(n in names for n in g)]
    known = {n for g in groups for n in g}
    return groups + [(n,) for n in sorted(names - known)]


@torch.no_grad()
def run_blockwise(model: nn.Module, input_ids: torch.Tensor,
                  process: Callable[[int, nn.Module, dict], None],
                  collect: Callable[[tuple[str, ...]], object], progress=None,
                  max_blocks: int | None = None) -> None:
    """For each decoder block: feed the calibration hidden states through it with a forward hook on
    the first Linear of every input-sharing group (``collect(group)`` returns an object with
    ``add(x)``), call ``process(index, block, {group: collector})``, then recompute the block's
    output - with the block's new weights - as the next block's input. Only the first
    ``max_blocks`` blocks are visited when it is given."""
    hidden, kwargs = capture_block_inputs(model, input_ids)
    blocks = list(decoder_blocks(model))[:max_blocks]
    for index, block in enumerate(blocks):
        groups = present_groups(block)
        collectors, handles = {}, []
        for group in groups:
            collectors[group] = collector = collect(group)
            module = block.get_submodule(group[0])
            handles.append(module.register_forward_hook(
                lambda mod, args, out, c=collector: c.add(args[0].detach())))
        try:
            block(hidden, **kwargs)
        finally:
            for handle in handles:
                handle.remove()
        process(index, block, collectors)
        hidden = _block_output(block(hidden, **kwargs))
        if progress is not None:
            progress(index + 1, len(blocks))


@torch.no_grad()
def block_linear_inputs(model: nn.Module, input_ids: torch.Tensor, block_index: int) -> dict:
    """``{group: X (tokens, in_features)}``: what each input-sharing group of Linears of block
    ``block_index`` receives when ``input_ids`` run through the model (for one-layer
    experiments)."""
    hidden, kwargs = capture_block_inputs(model, input_ids)
    blocks = decoder_blocks(model)
    for block in list(blocks)[:block_index]:
        hidden = _block_output(block(hidden, **kwargs))
    block = blocks[block_index]
    store, handles = {}, []
    for group in present_groups(block):
        handles.append(block.get_submodule(group[0]).register_forward_hook(
            lambda mod, args, out, g=group:
                store.__setitem__(g, args[0].reshape(-1, args[0].shape[-1]).float())))
    try:
        block(hidden, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return store


@torch.no_grad()
def gptq_quantize_model(model: nn.Module, calib_ids: torch.Tensor, scheme: Scheme,
                        blocksize: int = 128, percdamp: float = 0.01, act_order: bool = False,
                        max_blocks: int | None = None, progress=None) -> dict:
    """GPTQ every Linear of the decoder blocks in place (fake-quantized); return timing stats.

    ``max_blocks`` limits the work to the first blocks (the fast mode of the lesson); the other
    blocks keep their weights.
    """
    start = time.perf_counter()
    blocks = decoder_blocks(model)
    stop = len(blocks) if max_blocks is None else min(max_blocks, len(blocks))
    done = []

    def process(index, block, collectors):
        for group, acc in collectors.items():
            # Linears reading the same input share H: quantize them as one taller matrix (rows
            # are independent in GPTQ), which factorizes H once and loops over columns once.
            linears = [block.get_submodule(name) for name in group]
            W = torch.cat([linear.weight.data for linear in linears], dim=0)
            Q = gptq_quantize_weight(W, acc.H, scheme, blocksize, percdamp, act_order)
            for linear, part in zip(linears, Q.split([lin.out_features for lin in linears], dim=0)):
                linear.weight.data = part.to(linear.weight.dtype).contiguous()
            done.extend(f"layers.{index}.{name}" for name in group)

    def collect(group):
        return HessianAccumulator(block_in_features(model, group))

    run_blockwise(model, calib_ids, process, collect, progress, max_blocks=stop)
    return {"seconds": time.perf_counter() - start, "linears": len(done), "blocks": stop}


def block_in_features(model: nn.Module, group: tuple[str, ...]) -> int:
    return decoder_blocks(model)[0].get_submodule(group[0]).in_features
