"""PyTorch's own int4 weight-only kernel ("tinygemm") fed with the course's W4A16 format
(lesson 01, section 11).

``inferlab.compress.w4a16`` shows *how* a 4-bit matmul works; this module shows what a
production kernel does with the same numbers. PyTorch ships the int4 kernel that gpt-fast and
torchao use for weight-only int4: ``torch._convert_weight_to_int4pack`` reorders the codes once,
``torch._weight_int4pack_mm`` multiplies (``..._for_cpu`` are the CPU versions).

**Why it can win at batch 1 where a simple kernel does not.** A tensor core multiplies small
fixed tiles (16 x 8 x 16 here), and each of a warp's 32 threads must hold particular elements of
the weight tile - its *fragment*. tinygemm shuffles the codes offline into exactly that order:
``[N / 8, K / (inner_k_tiles * 16), 32, inner_k_tiles / 2]`` int32, so thread ``t`` of a warp
finds the codes of ``inner_k_tiles`` consecutive 16-wide K tiles in one 4, 8 or 16-byte word
(``inner_k_tiles`` = 2, 4, 8). One vector load per thread brings whole fragments, they are
dequantized in registers and go straight to the tensor cores: the one-token matmul becomes a race
to read 4x fewer bytes than fp16, which is what memory-bound decoding needs.

**From the course's format.** ``pack_w4`` stores ``W = (code - zero) * scale`` with an integer
zero-point (uint8) and an fp16 scale per group. tinygemm computes ``W = (code - 8) * scale +
zero_float`` with a *float* zero (the value of code 8). Both are affine in the code, so

    zero_float = (8 - zero) * scale

gives the same weights, and the codes are used as they are. ``scales_and_zeros`` is
``[K / G, N, 2]``: (scale, zero_float) per group and output, group-major.

Conventions (torch >= 2.5; the CPU's checked in the tests, the GPU's on an H200 with torch 2.11 -
``benchmarks/w4a16_gpu.py`` compares the two with ``dequantize_w4`` before it times anything):

* CUDA: the packing op takes ``uint8 [N, K / 2]`` with the **even** k in the **high** nibble -
  the opposite of ``pack_w4`` (even k low), so each byte's nibbles are swapped first. The
  matmul takes **bf16 activations only** (and returns bf16), ``scales_and_zeros`` in bf16 (so the
  course's fp16 scale is rounded to bf16's 8-bit mantissa: weights differ from ``dequantize_w4``
  by up to ~0.4%), needs compute capability 8.0+, ``N % 8 == 0`` and
  ``K % (inner_k_tiles * 16) == 0``. The reordering depends on the GPU's tensor cores:
  **pack on the GPU that will run it** (``Int4TinyGemmLinear.to`` refuses to move packed weights).
* CPU: the packing op takes the codes unpacked, ``int32 [N, K]``, ignores ``inner_k_tiles``, and
  needs ``N % 16 == 0``; the matmul takes fp32, fp16 or bf16 activations with
  ``scales_and_zeros`` in the same dtype, so with fp32 it reproduces ``dequantize_w4`` exactly
  (up to float rounding).
* both: group size 32, 64, 128 or 256, and ``K % group_size == 0``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from inferlab.compress.w4a16 import GROUP_SIZE, pack_w4

GROUP_SIZES = (32, 64, 128, 256)
INNER_K_TILES = (2, 4, 8)


# ------------------------------------------------------------------------------ what it takes
def problems(n: int, k: int, group_size: int, device, dtype: torch.dtype | None = None,
             inner_k_tiles: int = 8) -> list[str]:
    """Why tinygemm cannot take a ``[n, k]`` weight (with ``dtype`` activations) on ``device``:
    an empty list when it can."""
    cuda = torch.device(device).type == "cuda"
    found = []
    if group_size not in GROUP_SIZES:
        found.append(f"group_size must be one of {GROUP_SIZES}, got {group_size}")
    elif k % group_size:
        found.append(f"in_features K = {k} must be a multiple of group_size {group_size}")
    if cuda:
        if inner_k_tiles not in INNER_K_TILES:
            found.append(f"inner_k_tiles must be one of {INNER_K_TILES}, got {inner_k_tiles}")
        elif k % (inner_k_tiles * 16):
            found.append(f"on CUDA, K = {k} must be a multiple of inner_k_tiles * 16 = "
                         f"{inner_k_tiles * 16}")
        if n % 8:
            found.append(f"on CUDA, out_features N = {n} must be a multiple of 8")
        if dtype is not None and dtype != torch.bfloat16:
            found.append(f"on CUDA, tinygemm takes bf16 activations only, got {dtype} "
                         "(cast x to torch.bfloat16)")
        if torch.cuda.is_available() and torch.cuda.get_device_capability(device) < (8, 0):
            found.append("tinygemm needs a GPU of compute capability 8.0 or newer (Ampere+)")
    else:
        if n % 16:
            found.append(f"on a CPU, out_features N = {n} must be a multiple of 16")
        if dtype is not None and dtype not in (torch.float32, torch.float16, torch.bfloat16):
            found.append(f"activations must be float32, float16 or bfloat16, got {dtype}")
    return found


def supported(n: int, k: int, group_size: int, device, dtype: torch.dtype | None = None,
              inner_k_tiles: int = 8) -> bool:
    """True when tinygemm can multiply ``dtype`` activations by a ``[n, k]`` weight on
    ``device`` (``problems`` says why not)."""
    return not problems(n, k, group_size, device, dtype, inner_k_tiles)


def compute_dtype(device, dtype: torch.dtype) -> torch.dtype:
    """The activation dtype tinygemm computes in for activations of ``dtype``: bf16 on CUDA (its
    only choice), the activations' own dtype on a CPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else dtype


# ------------------------------------------------------------------------------ the conversion
def _pack_op(codes: torch.Tensor, inner_k_tiles: int) -> torch.Tensor:
    """Codes ``[N, K]`` (0..15) -> tinygemm's packed weight, by the op for the codes' device."""
    if codes.is_cuda:        # uint8 [N, K/2], even k in the HIGH nibble
        pairs = codes.to(torch.uint8)
        return torch.ops.aten._convert_weight_to_int4pack(
            (pairs[:, 0::2] << 4 | pairs[:, 1::2]).contiguous(), inner_k_tiles)
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(      # int32 [N, K]
        codes.to(torch.int32).contiguous(), inner_k_tiles)


def from_w4a16(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int,
               in_features: int | None = None, *, dtype: torch.dtype = torch.bfloat16,
               inner_k_tiles: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """``pack_w4``'s ``(qweight, scales, zeros)`` -> tinygemm's ``(packed, scales_and_zeros)`` on
    the same device, for activations of ``dtype`` (``scales_and_zeros`` is stored in it).
    Raises ``ValueError`` naming what tinygemm cannot take."""
    n, k = qweight.shape[0], in_features or 2 * qweight.shape[1]
    found = problems(n, k, group_size, qweight.device, dtype, inner_k_tiles)
    if found:
        raise ValueError("tinygemm cannot take this weight: " + "; ".join(found))
    codes = torch.stack([qweight & 0x0F, qweight >> 4], dim=-1).flatten(-2)[:, :k]  # k order
    scale = scales.float()
    zero_float = (8 - zeros.float()) * scale              # the value of code 8, per group
    scales_and_zeros = torch.stack([scale, zero_float], dim=-1)    # [N, K/G, 2]
    scales_and_zeros = scales_and_zeros.transpose(0, 1).contiguous().to(dtype)  # [K/G, N, 2]
    return _pack_op(codes, inner_k_tiles), scales_and_zeros


def int4_matmul(x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor,
                group_size: int) -> torch.Tensor:
    """``x [M, K] @ W.T`` -> ``[M, N]`` by tinygemm, choosing the CUDA or the CPU op by x's
    device. ``x`` must already be in ``scales_and_zeros``' dtype (bf16 on CUDA)."""
    if x.dtype != scales_and_zeros.dtype:
        raise ValueError(f"x is {x.dtype} but the weight was packed for "
                         f"{scales_and_zeros.dtype} activations (cast x first)")
    x = x if x.is_contiguous() else x.contiguous()
    op = (torch.ops.aten._weight_int4pack_mm if x.is_cuda
          else torch.ops.aten._weight_int4pack_mm_for_cpu)
    return op(x, packed, group_size, scales_and_zeros)


def packed_bytes(packed: torch.Tensor, scales_and_zeros: torch.Tensor) -> int:
    """Bytes a call reads for the weight: 4-bit codes + a 16-bit scale and zero per group
    (4 + 32 / G bits per weight: 4.25 at G = 128)."""
    return sum(t.numel() * t.element_size() for t in (packed, scales_and_zeros))


# ------------------------------------------------------------------------------ the layer
class Int4TinyGemmLinear(nn.Module):
    """A bias-optional Linear whose weight lives only in tinygemm's packed layout. Activations of
    any dtype and leading dims are cast to ``compute_dtype`` for the matmul (bf16 on CUDA) and
    the result back to theirs. Build it on the device it will run on (``from_linear`` or
    ``from_packed``): the packed layout of a GPU is not portable."""

    def __init__(self, packed: torch.Tensor, scales_and_zeros: torch.Tensor, in_features: int,
                 out_features: int, group_size: int, inner_k_tiles: int,
                 bias: torch.Tensor | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.group_size, self.inner_k_tiles = group_size, inner_k_tiles
        self.register_buffer("packed", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(),
                                                           requires_grad=False)

    @classmethod
    def from_packed(cls, qweight, scales, zeros, group_size: int, in_features: int | None = None,
                    *, dtype: torch.dtype = torch.float32, inner_k_tiles: int = 8,
                    bias: torch.Tensor | None = None) -> Int4TinyGemmLinear:
        """From ``pack_w4``'s tensors, on their device, for activations of ``dtype``."""
        k = in_features or 2 * qweight.shape[1]
        packed, sz = from_w4a16(qweight, scales, zeros, group_size, k,
                                dtype=compute_dtype(qweight.device, dtype),
                                inner_k_tiles=inner_k_tiles)
        return cls(packed, sz, k, qweight.shape[0], group_size, inner_k_tiles, bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = GROUP_SIZE,
                    inner_k_tiles: int = 8) -> Int4TinyGemmLinear:
        """Quantize ``linear``'s weight with ``pack_w4`` and pack it for tinygemm, on the
        linear's device, for activations of its dtype."""
        weight = linear.weight.data
        qweight, scales, zeros, _ = pack_w4(weight, group_size)
        return cls.from_packed(qweight, scales, zeros, group_size, linear.in_features,
                               dtype=weight.dtype, inner_k_tiles=inner_k_tiles,
                               bias=linear.bias)

    def _apply(self, fn, recurse=True):
        before = self.packed.device
        out = super()._apply(fn, recurse)
        if self.packed.device != before:
            raise RuntimeError("tinygemm's packed weight is laid out for the device it was "
                               "packed on: build the layer again on the new device")
        if self.packed.is_cuda and self.scales_and_zeros.dtype != torch.bfloat16:
            raise RuntimeError("on CUDA tinygemm computes in bf16: keep the layer's dtype "
                               "(activations of other dtypes are cast for you)")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.scales_and_zeros.dtype)
        out = int4_matmul(flat, self.packed, self.scales_and_zeros, self.group_size)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"group_size={self.group_size}, inner_k_tiles={self.inner_k_tiles}, "
                f"dtype={self.scales_and_zeros.dtype}")


def check_against_dequantized(layer: Int4TinyGemmLinear, qweight, scales, zeros,
                              m: int = 4, seed: int = 0) -> float:
    """Largest ``|tinygemm - F.linear(x, dequantize_w4(...))|`` (bias left out) over the
    reference's largest ``|output|``, for random ``x [m, K]`` (rounded to the layer's dtype for
    both sides): a wrong nibble order or zero-point gives ~1, bf16 rounding a few 1e-3."""
    from inferlab.compress.w4a16 import dequantize_w4
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, layer.in_features, generator=gen).to(qweight.device)
    x = x.to(layer.scales_and_zeros.dtype)
    ref = F.linear(x.float(), dequantize_w4(qweight, scales, zeros, layer.group_size,
                                            layer.in_features))
    got = int4_matmul(x, layer.packed, layer.scales_and_zeros, layer.group_size).float()
    return (got - ref).abs().max().item() / max(ref.abs().max().item(), math.ulp(1.0))
