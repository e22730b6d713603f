"""Weight quantization from scratch: absmax, zero-point, NF4, scales, 4-bit packing, QuantLinear.

Introduced in lesson 01 (and reused by lesson 02's GPTQ and AWQ). Quantizing a weight means
storing small integers ``q`` plus a few floating-point *scales*, and rebuilding an approximation
``w_hat`` of the weight when it is needed:

* **absmax (symmetric)** - ``scale = max|w| / qmax``, ``q = round(w / scale)`` in
  ``[-qmax, qmax]`` with ``qmax = 2**(bits-1) - 1``; ``w_hat = q * scale``. Zero stays exactly zero.
* **zero-point (asymmetric)** - the range ``[min(w, 0), max(w, 0)]`` is mapped onto
  ``[0, 2**bits - 1]``: ``scale = (hi - lo) / (2**bits - 1)``, an integer
  ``zero = round(-lo / scale)``, ``q = round(w / scale) + zero``; ``w_hat = (q - zero) * scale``.
  Uses every level when the values are not centred on zero.
* **min-offset (the GGUF Q4_1 way)** - like zero-point, but the offset is the block's minimum,
  kept as a float: ``w_hat = q * scale + min``.
* **NF4** - 16 fixed levels at the quantiles of a normal distribution (QLoRA), scaled by
  ``max|w|``: more levels where weights are dense (near zero), fewer in the tails.

Every quantizer works row by row on a 2-D tensor: *one scale per row*. The granularity is then
just a choice of view (``to_groups``): the whole tensor as one row (per-tensor), one row per output
channel (per-channel), or rows of ``group_size`` consecutive input weights (per-group). A width
that ``group_size`` does not divide is padded by repeating the row's last value, which changes
neither its max|w| nor its min/max.

``pack_int4`` stores two 4-bit codes per byte, and ``QuantLinear`` keeps only the packed codes and
fp16 scales in memory, dequantizing on every call: the memory saving is real, and so is the
time the dequantization costs (weight-only quantization saves bytes, not FLOPs).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

# The 16 NF4 levels exactly as bitsandbytes (functional.get_4bit_type("nf4")) and QLoRA use them.
NF4_CODEBOOK = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])

METHODS = ("absmax", "zeropoint", "minmax", "nf4")
GRANULARITIES = ("tensor", "channel", "group")


def _safe(scale: torch.Tensor) -> torch.Tensor:
    """A scale of 0 (an all-zero row) would divide by zero; any non-zero scale gives q = 0 there."""
    return torch.where(scale == 0, torch.ones_like(scale), scale)


# ------------------------------------------------------------------------- the quantizers
def absmax_quantize(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantization, one scale per row: returns ``(q int8, scale (rows, 1))``."""
    qmax = 2 ** (bits - 1) - 1
    scale = _safe(x.abs().amax(dim=-1, keepdim=True) / qmax)
    q = torch.round(x / scale).clamp(-qmax, qmax).to(torch.int8)
    return q, scale


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale


def zeropoint_quantize(x: torch.Tensor, bits: int = 8):
    """Asymmetric quantization, one scale and integer zero-point per row.

    Returns ``(q uint8 in [0, 2**bits-1], scale (rows, 1), zero (rows, 1) integer-valued float)``.
    The range always contains 0, so a zero weight is represented exactly (by ``q = zero``).
    """
    qmax = 2 ** bits - 1
    lo = x.amin(dim=-1, keepdim=True).clamp(max=0)
    hi = x.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = _safe((hi - lo) / qmax)
    zero = torch.round(-lo / scale).clamp(0, qmax)
    q = (torch.round(x / scale) + zero).clamp(0, qmax).to(torch.uint8)
    return q, scale, zero


def zeropoint_dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return (q.float() - zero) * scale


def minmax_quantize(x: torch.Tensor, bits: int = 4, scale_dtype: torch.dtype = torch.float32):
    """Asymmetric with a float offset (GGUF Q4_1): ``w_hat = q * scale + min``.

    Returns ``(q uint8, scale, minimum)``; ``scale_dtype=torch.float16`` rounds scale and minimum
    to fp16 first, as the file format stores them.
    """
    qmax = 2 ** bits - 1
    lo = x.amin(dim=-1, keepdim=True).to(scale_dtype).float()
    scale = _safe(((x.amax(dim=-1, keepdim=True) - lo) / qmax).to(scale_dtype).float())
    q = torch.round((x - lo) / scale).clamp(0, qmax).to(torch.uint8)
    return q, scale, lo


def minmax_dequantize(q: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor) -> torch.Tensor:
    return q.float() * scale + minimum


def nf4_codebook_from_normal(offset: float = 0.9677083) -> torch.Tensor:
    """Rebuild the NF4 levels from normal quantiles (QLoRA's recipe, no scipy needed).

    8 positive levels at ``ndtri(linspace(offset, 0.5, 9)[:-1])``, 7 negative ones at
    ``-ndtri(linspace(offset, 0.5, 8)[:-1])``, plus an exact zero; divided by the largest.
    """
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    values = torch.cat([pos, neg, torch.zeros(1, dtype=torch.float64)]).sort().values
    return (values / values.max()).float()


def nf4_quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4: scale each row to [-1, 1] by its absmax, pick the nearest codebook level.

    Returns ``(index uint8 in [0, 15], absmax (rows, 1))``.
    """
    absmax = _safe(x.abs().amax(dim=-1, keepdim=True))
    normed = (x / absmax).unsqueeze(-1)
    index = (normed - NF4_CODEBOOK.to(x.device)).abs().argmin(dim=-1)
    return index.to(torch.uint8), absmax


def nf4_dequantize(index: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
    return NF4_CODEBOOK.to(index.device)[index.long()] * absmax


# ------------------------------------------------------------------------- granularity
def to_groups(w: torch.Tensor, granularity: str = "group", group_size: int = 128) -> torch.Tensor:
    """The 2-D view in which each row shares one scale.

    ``w`` is a ``(out_features, in_features)`` weight. Per-tensor: ``(1, numel)``; per-channel:
    ``(out, in)``; per-group: ``(out * n_groups, group_size)``, padding each row on the right with
    copies of its last value when ``group_size`` does not divide ``in``.
    """
    if w.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(w.shape)}")
    if granularity == "tensor":
        return w.reshape(1, -1)
    if granularity == "channel":
        return w
    if granularity != "group":
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if group_size < 1:
        raise ValueError("group_size must be >= 1")
    pad = (-w.shape[1]) % group_size
    if pad:
        w = torch.cat([w, w[:, -1:].expand(-1, pad)], dim=1)
    return w.reshape(-1, group_size)


def from_groups(view: torch.Tensor, shape: tuple[int, int], granularity: str = "group",
                group_size: int = 128) -> torch.Tensor:
    """Inverse of ``to_groups``: back to ``shape``, dropping the padding."""
    out, width = shape
    if granularity in ("tensor", "channel"):
        return view.reshape(out, width)
    return view.reshape(out, -1)[:, :width]


# ------------------------------------------------------------------------- 4-bit packing
def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes (uint8 values 0..15) per byte along the last dimension.

    Element ``2i`` goes to the low nibble of byte ``i``, element ``2i+1`` to its high nibble; an
    odd length is padded with a zero code.
    """
    if q.dtype != torch.uint8:
        raise TypeError("pack_int4 expects uint8 codes in [0, 15]")
    if q.shape[-1] % 2:
        q = F.pad(q, (0, 1))
    return q[..., 0::2] | (q[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of ``pack_int4``: the first ``n`` codes of the last dimension."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=-1).flatten(-2)[..., :n]


# ------------------------------------------------------------------------- schemes
@dataclass(frozen=True)
class Scheme:
    """How to quantize a weight: bits, method, granularity and (per-group) group size."""
    bits: int = 8
    method: str = "absmax"
    granularity: str = "channel"
    group_size: int = 128

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, "
                             f"got {self.granularity!r}")
        if self.method == "nf4" and self.bits != 4:
            raise ValueError("NF4 is a 4-bit format: use bits=4")
        if not 2 <= self.bits <= 8:
            raise ValueError("bits must be between 2 and 8")
        if self.granularity == "group" and self.group_size < 1:
            raise ValueError("group_size must be >= 1")

    @property
    def packed(self) -> bool:
        return self.bits <= 4

    def describe(self) -> str:
        where = {"tensor": "per-tensor", "channel": "per-channel",
                 "group": f"group-{self.group_size}"}[self.granularity]
        name = "NF4" if self.method == "nf4" else f"int{self.bits} {self.method}"
        return f"{name} {where}"

    def bits_per_weight(self, in_features: int | None = None) -> float:
        """Storage bits per weight: the code (a nibble when <= 4 bits) plus, per row of the grouped
        view, an fp16 scale and the offset (uint8 zero-point or fp16 minimum)."""
        code = 4 if self.packed else 8
        extra = 16 + {"absmax": 0, "nf4": 0, "zeropoint": 8, "minmax": 16}[self.method]
        per_row = {"tensor": None, "channel": in_features,
                   "group": self.group_size}[self.granularity]
        return code + (extra / per_row if per_row else 0.0)


def scale_offset(view: torch.Tensor, scheme: Scheme, scale_dtype=torch.float16):
    """Per-row ``(scale, offset)`` of ``scheme`` for a grouped view, scales rounded to
    ``scale_dtype`` (fp16, as stored). ``offset``: integer zero-point (zeropoint), minimum
    (minmax) or ``None`` (absmax, nf4; for nf4 the "scale" is the row's absmax)."""
    view = view.float()
    m, bits = scheme.method, scheme.bits
    if m == "absmax":
        return _safe((view.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1))
                     .to(scale_dtype).float()), None
    if m == "nf4":
        return _safe(view.abs().amax(-1, keepdim=True).to(scale_dtype).float()), None
    if m == "minmax":
        _, scale, lo = minmax_quantize(view, bits, scale_dtype)
        return scale, lo
    qmax = 2 ** bits - 1
    lo = view.amin(-1, keepdim=True).clamp(max=0)
    hi = view.amax(-1, keepdim=True).clamp(min=0)
    scale = _safe(((hi - lo) / qmax).to(scale_dtype).float())
    return scale, torch.round(-lo / scale).clamp(0, qmax)


def encode(view: torch.Tensor, scale: torch.Tensor, offset, scheme: Scheme) -> torch.Tensor:
    """Codes (uint8) of ``view`` under given scales. absmax codes are stored shifted by
    ``2**(bits-1)`` so that every method's codes are unsigned and fit a nibble/byte."""
    view = view.float()
    m, bits = scheme.method, scheme.bits
    if m == "absmax":
        qmax = 2 ** (bits - 1) - 1
        return (torch.round(view / scale).clamp(-qmax, qmax) + 2 ** (bits - 1)).to(torch.uint8)
    if m == "zeropoint":
        return (torch.round(view / scale) + offset).clamp(0, 2 ** bits - 1).to(torch.uint8)
    if m == "minmax":
        return torch.round((view - offset) / scale).clamp(0, 2 ** bits - 1).to(torch.uint8)
    normed = (view / scale).unsqueeze(-1)
    return (normed - NF4_CODEBOOK.to(view.device)).abs().argmin(dim=-1).to(torch.uint8)


def quantize_view(view: torch.Tensor, scheme: Scheme, scale_dtype=torch.float16):
    """Quantize a grouped view with ``scheme``: ``(codes uint8, scale, offset)``."""
    scale, offset = scale_offset(view, scheme, scale_dtype)
    return encode(view, scale, offset, scheme), scale, offset


def dequantize_view(codes: torch.Tensor, scale: torch.Tensor, offset,
                    scheme: Scheme) -> torch.Tensor:
    m = scheme.method
    if m == "absmax":
        return (codes.float() - 2 ** (scheme.bits - 1)) * scale
    if m == "zeropoint":
        return zeropoint_dequantize(codes, scale, offset)
    if m == "minmax":
        return minmax_dequantize(codes, scale, offset)
    return nf4_dequantize(codes, scale)


def fake_quantize(w: torch.Tensor, scheme: Scheme) -> torch.Tensor:
    """Quantize then dequantize ``w`` (same shape and dtype): what the model will compute with."""
    view = to_groups(w.detach().float(), scheme.granularity, scheme.group_size)
    codes, scale, offset = quantize_view(view, scheme)
    w_hat = dequantize_view(codes, scale, offset, scheme)
    return from_groups(w_hat, tuple(w.shape), scheme.granularity, scheme.group_size).to(w.dtype)


def relative_error(w: torch.Tensor, w_hat: torch.Tensor) -> float:
    """``||w - w_hat|| / ||w||`` (Frobenius): 0 means exact."""
    return ((w.float() - w_hat.float()).norm() / w.float().norm().clamp_min(1e-30)).item()


# ------------------------------------------------------------------------- the module
class QuantLinear(nn.Module):
    """A Linear layer that keeps only quantized codes (packed two per byte at <= 4 bits) and fp16
    scales, and dequantizes its weight on every forward ("weight-only" quantization)."""

    def __init__(self, in_features: int, out_features: int, scheme: Scheme, bias: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.scheme = in_features, out_features, scheme
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self.codes_per_row = 0  # set by from_linear

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, scheme: Scheme) -> "QuantLinear":
        layer = cls(linear.in_features, linear.out_features, scheme, bias=linear.bias is not None)
        view = to_groups(linear.weight.detach().float(), scheme.granularity, scheme.group_size)
        codes, scale, offset = quantize_view(view, scheme)
        layer.codes_per_row = codes.shape[1]
        layer.register_buffer("codes", pack_int4(codes) if scheme.packed else codes)
        layer.register_buffer("scale", scale.half())
        if offset is not None:
            store = offset.to(torch.uint8) if scheme.method == "zeropoint" else offset.half()
            layer.register_buffer("offset", store)
        else:
            layer.offset = None
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer.to(linear.weight.device)

    def _code_values(self) -> torch.Tensor:
        """Float value of each code before scaling: ``q - 2**(bits-1)`` (absmax), the NF4 level
        (nf4) or ``q`` itself (zeropoint, minmax: their offsets are applied per row later)."""
        codes = torch.arange(256 if not self.scheme.packed else 16, dtype=torch.float32)
        if self.scheme.method == "absmax":
            return codes - 2 ** (self.scheme.bits - 1)
        if self.scheme.method == "nf4":
            return NF4_CODEBOOK
        return codes

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        values = self._code_values().to(self.codes.device)
        if self.scheme.packed:
            # One table lookup per *byte* decodes both nibbles at once: 256 rows of (low, high).
            table = torch.stack([values.repeat(16), values.repeat_interleave(16)], dim=1)
            view = F.embedding(self.codes.int(), table).flatten(-2)[..., :self.codes_per_row]
        elif self.scheme.method == "nf4":
            view = values[self.codes.long()]
        else:  # 8-bit codes: the value is the code itself, shifted for absmax
            shift = 2 ** (self.scheme.bits - 1) if self.scheme.method == "absmax" else 0
            view = self.codes.float() - shift
        scale = self.scale.float()
        if self.scheme.method == "zeropoint":
            view = (view - self.offset.float()) * scale
        elif self.scheme.method == "minmax":
            view = view * scale + self.offset.float()
        else:
            view = view * scale
        w = from_groups(view, (self.out_features, self.in_features), self.scheme.granularity,
                        self.scheme.group_size)
        return w.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, {self.scheme.describe()}"


# ------------------------------------------------------------------------- whole models
LAYER_CHOICES = {
    "all": lambda name: True,
    "attention": lambda name: ".self_attn." in name,
    "mlp": lambda name: ".mlp." in name,
    "all but first/last block": None,  # resolved against the model's depth in select_linears
}


def select_linears(model: nn.Module, which: str | Callable[[str], bool] = "all",
                   skip: Iterable[str] = ("lm_head",)) -> list[str]:
    """Names of the ``nn.Linear`` modules to quantize.

    ``lm_head`` is skipped by default: in SmolLM2 it is *tied* to the token embedding (one
    tensor), so quantizing it would add a second copy instead of saving memory; bitsandbytes
    skips it too.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)
             and not any(n == s or n.endswith("." + s) for s in skip)]
    if callable(which):
        return [n for n in names if which(n)]
    if which not in LAYER_CHOICES:
        raise ValueError(f"which must be one of {list(LAYER_CHOICES)} or a function")
    if which == "all but first/last block":
        blocks = sorted({int(n.split(".layers.")[1].split(".")[0])
                         for n in names if ".layers." in n})
        ends = {f".layers.{blocks[0]}.", f".layers.{blocks[-1]}."} if blocks else set()
        return [n for n in names if not any(e in n for e in ends)]
    return [n for n in names if LAYER_CHOICES[which](n)]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@torch.no_grad()
def quantize_model(model: nn.Module, scheme: Scheme, which="all", skip=("lm_head",),
                   fake: bool = False) -> list[str]:
    """Quantize every selected Linear of ``model`` in place; return the names changed.

    ``fake=False`` swaps in ``QuantLinear`` (real memory saving, dequantize per call);
    ``fake=True`` keeps ``nn.Linear`` with the dequantized weight (same numbers, fp speed) -
    handy when only quality is measured.
    """
    names = select_linears(model, which, skip)
    for name in names:
        linear = model.get_submodule(name)
        if fake:
            linear.weight.data = fake_quantize(linear.weight.data, scheme)
        else:
            _set_module(model, name, QuantLinear.from_linear(linear, scheme))
    return names


def model_weight_error(reference: nn.Module, quantized: nn.Module) -> float:
    """Relative error of all quantized Linear weights together (``||W - W_hat|| / ||W||``)."""
    num = den = 0.0
    ref_modules = dict(reference.named_modules())
    for name, module in quantized.named_modules():
        if isinstance(module, QuantLinear):
            w_hat = module.dequantized_weight()
        elif isinstance(module, nn.Linear) and name in ref_modules and not name.endswith("lm_head"):
            w_hat = module.weight.detach().float()
        else:
            continue
        w = ref_modules[name].weight.detach().float()
        num += (w - w_hat).pow(2).sum().item()
        den += w.pow(2).sum().item()
    return (num / den) ** 0.5 if den else 0.0


def serialized_bytes(model: nn.Module) -> int:
    """Size of the model's state dict written with ``torch.save`` (what lands on disk)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
