"""Measuring a quantized model - quality, size, speed - and the two ways to get one (PTQ vs QAT).

Introduced in lesson 01, reused in lesson 02. A quantization scheme is only as good as three
numbers measured together on the same text and machine:

* **quality** - perplexity on held-out text, plus agreement and KL against the fp32 model;
* **size** - bytes in memory (every parameter and buffer, tied tensors once) and on disk;
* **speed** - batch-1 decode tokens/s (median step of a greedy loop with a KV cache).

``measure`` returns all of them as one row. ``finetune`` trains the model on calibration text;
with a ``scheme`` it is *quantization-aware training* (QAT): the forward pass uses the
fake-quantized weights, the backward pass treats rounding as the identity (the "straight-through
estimator"), so the fp32 weights learn to sit where rounding hurts least. Without a scheme it is
the control experiment: the same steps of plain fine-tuning, to tell what QAT fixes from what any
training on similar text would change.

``corpora`` gives texts of different kinds (prose, code, arithmetic) to show where quantization
hurts more.
"""
from __future__ import annotations

import inspect
import random
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from inferlab.compress.quant import (
    Scheme,
    fake_quantize,
    model_weight_error,
    quantize_model,
    select_linears,
    serialized_bytes,
)
from inferlab.lab.data import eval_tokens
from inferlab.lab.generation import timed_greedy
from inferlab.lab.models import load_model, weight_bytes
from inferlab.lab.quality import kl_divergence, logits_of, perplexity, top1_agreement


def decode_tokens_per_s(model, prompt_ids: torch.Tensor, new_tokens: int = 16) -> float:
    """Median batch-1 decode speed of a greedy loop with a KV cache (prefill excluded)."""
    steps = timed_greedy(model, prompt_ids, max(2, new_tokens))
    return 1.0 / statistics.median(steps.decode_s)


@torch.no_grad()
def measure(model, eval_ids: torch.Tensor, reference_logits: torch.Tensor | None = None,
            reference_model=None, prompt_ids: torch.Tensor | None = None, new_tokens: int = 16,
            disk: bool = True) -> dict:
    """One row of the comparison: ppl, agreement/KL with the reference, MB, weight error, tok/s."""
    row = {}
    logits = logits_of(model, eval_ids)
    nll = F.cross_entropy(logits[0, :-1], eval_ids[0, 1:].to(logits.device))
    row["perplexity"] = float(torch.exp(nll))
    if reference_logits is not None:
        row["top1_agreement"] = top1_agreement(reference_logits, logits)
        row["kl"] = kl_divergence(reference_logits, logits)
    row["memory_mb"] = weight_bytes(model) / 1e6
    row["linear_mb"] = linear_weight_bytes(model) / 1e6
    if disk:
        row["disk_mb"] = serialized_bytes(model) / 1e6
    if reference_model is not None:
        row["weight_error"] = model_weight_error(reference_model, model)
    if prompt_ids is not None:
        row["decode_tok_s"] = decode_tokens_per_s(model, prompt_ids, new_tokens)
    return row


def linear_weight_bytes(model, skip=("lm_head",)) -> int:
    """Bytes held by the decoder's Linear layers only (fp32 ``nn.Linear`` or ``QuantLinear``)."""
    from inferlab.compress.quant import QuantLinear
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, QuantLinear)) and not any(name.endswith(s) for s in skip):
            total += weight_bytes(module)
    return total


def quantized_model(scheme: Scheme | None, which="all", fake: bool = False, dtype=torch.float32):
    """A fresh copy of the embedded model (loads in ~0.1 s), quantized with ``scheme``."""
    model, _ = load_model(dtype=dtype)
    if scheme is not None:
        quantize_model(model, scheme, which=which, fake=fake)
    return model


# ------------------------------------------------------------------------------ PTQ vs QAT
class _FakeQuantSTE(nn.Module):
    """Parametrization: the layer sees ``Q(w)``; gradients flow to ``w`` as if ``Q`` were
    identity."""

    def __init__(self, scheme: Scheme):
        super().__init__()
        self.scheme = scheme

    def forward(self, w):
        return w + (fake_quantize(w.detach(), self.scheme) - w).detach()


def finetune(model, calib_ids: torch.Tensor, steps: int, scheme: Scheme | None = None,
             which="all", lr: float = 2e-5, batch_size: int = 2, seed: int = 0) -> list[float]:
    """Train the selected Linear weights for ``steps`` steps of next-token loss; return the losses.

    With ``scheme``: QAT, and at the end the weights are replaced by their quantized values (the
    model is then exactly what a quantized deployment would compute). Without: plain fine-tuning.
    """
    names = select_linears(model, which)
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for name in names:
        linear = model.get_submodule(name)
        if scheme is not None:
            parametrize.register_parametrization(linear, "weight", _FakeQuantSTE(scheme))
            weight = linear.parametrizations.weight.original
        else:
            weight = linear.weight
        weight.requires_grad_(True)
        params.append(weight)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    try:
        for _ in range(steps):
            rows = torch.randint(0, calib_ids.shape[0], (batch_size,), generator=generator)
            batch = calib_ids[rows]
            loss = model(batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        model.eval()
        for name in names:
            linear = model.get_submodule(name)
            if parametrize.is_parametrized(linear, "weight"):
                parametrize.remove_parametrizations(linear, "weight", leave_parametrized=True)
        for p in model.parameters():
            p.requires_grad_(False)
    return losses


# ------------------------------------------------------------------------------ corpora
def arithmetic_text(n_lines: int = 200, seed: int = 0) -> str:
    """Lines ``a + b = c`` with two-digit numbers: only the answers are predictable."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        a, b = rng.randint(10, 49), rng.randint(10, 49)
        lines.append(f"{a} + {b} = {a + b}")
    return "\n".join(lines) + "\n"


def code_text() -> str:
    """Python source code that ships with every Python: the stdlib's ``textwrap`` module."""
    import textwrap
    return inspect.getsource(textwrap)


def corpora(tokenizer, n_tokens: int) -> dict[str, torch.Tensor]:
    """``{"prose": ..., "code": ..., "arithmetic": ...}`` token ids of shape
    ``(1, <= n_tokens)``."""
    def ids(text):
        return tokenizer(text, return_tensors="pt").input_ids[:, :n_tokens]
    return {"prose": eval_tokens(tokenizer, n_tokens), "code": ids(code_text()),
            "arithmetic": ids(arithmetic_text())}


@torch.no_grad()
def answer_accuracy(model, tokenizer, n_lines: int = 40, seed: int = 1) -> float:
    """Fraction of the *answer* tokens of ``a + b = c`` lines the model predicts (teacher
    forcing)."""
    text = arithmetic_text(n_lines, seed)
    encoded = tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
    ids, offsets = encoded.input_ids, encoded.offset_mapping[0]
    answer_chars = set()
    position = 0
    for line in text.splitlines(keepends=True):
        start = position + line.index("=") + 2
        answer_chars.update(range(start, position + len(line.rstrip("\n"))))
        position += len(line)
    logits = logits_of(model, ids)[0]
    hits = total = 0
    for i in range(1, ids.shape[1]):
        begin, end = offsets[i].tolist()
        if end > begin and begin in answer_chars:
            total += 1
            hits += int(logits[i - 1].argmax() == ids[0, i])
    return hits / max(total, 1)


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


__all__ = ["decode_tokens_per_s", "measure", "linear_weight_bytes", "quantized_model", "finetune",
           "corpora", "arithmetic_text", "code_text", "answer_accuracy", "timed", "perplexity"]
