"""4-bit weights, 16-bit activations (W4A16): packing, a fused Triton kernel, a Linear layer
(lesson 01, section 11).

**Why it pays at batch 1.** Decoding one token multiplies a handful of activations by every
weight of the model once, so its time is the time to *read* the weights (lesson 00's roofline).
Stored in 4 bits the weights are about 4x fewer bytes than fp16 - but only if the matmul reads the
4-bit bytes themselves. Unpacking the whole weight to fp16 first (``dequantize_w4``, or lesson 01's
``QuantLinear``) writes and reads the fp16 copy too, which costs *more* memory traffic than fp16
alone. ``w4a16_matmul`` instead loads a tile of packed bytes into registers, splits the nibbles,
applies the group's zero-point and scale there and multiplies at once: the only weight traffic
is the 4-bit bytes (plus scales). With many tokens (large M) the same weights serve M rows of
activations, the matmul becomes compute-bound, and unpacking costs arithmetic instead: the
advantage fades, which is why this kernel targets M = 1..64.

**The format** (asymmetric, group-wise, like GPTQ/AWQ checkpoints), for a Linear weight
``W [N, K]`` (N outputs, K inputs) and a group size G (128 by default):

* ``qweight uint8 [N, ceil(K / 2)]``: codes 0..15, two per byte along K - byte ``j`` of row
  ``n`` holds ``k = 2j`` in its **low** nibble and ``k = 2j + 1`` in its **high** nibble (lesson
  01's ``pack_int4``); an odd K leaves a padding nibble (code 0) at the end of each row;
* ``scales fp16 [N, ceil(K / G)]`` and ``zeros uint8 [N, ceil(K / G)]``: one per group of G
  consecutive inputs of a row;
* ``W[n, k] = (code[n, k] - zeros[n, k // G]) * scales[n, k // G]``.

Asymmetric, because a group of weights is rarely centred on zero: the integer zero-point lets the
16 levels span the group's own range ``[min(lo, 0), max(hi, 0)]`` (lesson 01's exercise 2), so no
level is wasted and a weight of exactly 0 stays exactly 0. It costs one byte per group
(4 + 24 / G bits per weight: 4.19 at G = 128) and one subtraction per weight in the kernel.

On a CPU, ``w4a16_matmul`` falls back to plain PyTorch (dequantize, then ``F.linear``); the kernel
itself runs there only in Triton's interpreter (``launch_w4a16`` does that for CPU tensors), which
checks correctness, not speed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from inferlab.lab import triton_cpu

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - installs without Triton
    triton = None

GROUP_SIZE = 128
MAX_KERNEL_M = 64      # more tokens than this: compute-bound, dequantize once and use cuBLAS


# ------------------------------------------------------------------------------ the format
def pack_w4(weight: torch.Tensor, group_size: int = GROUP_SIZE):
    """Quantize ``weight [N, K]`` to 4-bit codes with one fp16 scale and integer zero-point per
    group of ``group_size`` inputs -> ``(qweight, scales, zeros, group_size)``."""
    if group_size < 2 or group_size % 2:
        raise ValueError("group_size must be even: the two codes of a byte share a group")
    n, k = weight.shape
    groups = math.ceil(k / group_size)
    w = weight.detach().float()
    pad = groups * group_size - k
    if pad:                                   # pad with the row's last value: min/max unchanged
        w = torch.cat([w, w[:, -1:].expand(n, pad)], dim=1)
    w = w.view(n, groups, group_size)
    lo = w.amin(dim=-1, keepdim=True).clamp(max=0)
    hi = w.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / 15).half().float()    # stored in fp16: quantize with what is stored
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zero = torch.round(-lo / scale).clamp(0, 15)
    codes = (torch.round(w / scale) + zero).clamp(0, 15).to(torch.uint8)
    codes = codes.view(n, -1)[:, :k]
    if k % 2:
        codes = F.pad(codes, (0, 1))          # the padding nibble: code 0
    qweight = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return (qweight.contiguous(), scale.view(n, groups).half(),
            zero.view(n, groups).to(torch.uint8), group_size)


def dequantize_w4(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                  group_size: int, in_features: int | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The reference: the full ``[N, K]`` weight back from the packed format, in plain PyTorch
    (``in_features`` defaults to ``2 * qweight.shape[1]``; pass it when K is odd)."""
    n, groups = scales.shape
    k = in_features or 2 * qweight.shape[1]
    codes = torch.stack([qweight & 0x0F, qweight >> 4], dim=-1).flatten(-2)[:, :k]
    codes = F.pad(codes, (0, groups * group_size - k)).view(n, groups, group_size)
    w = (codes.to(dtype) - zeros.to(dtype)[..., None]) * scales.to(dtype)[..., None]
    return w.view(n, -1)[:, :k]


def bits_per_weight(group_size: int = GROUP_SIZE) -> float:
    """4 bits of code + an fp16 scale and a uint8 zero-point per group."""
    return 4 + (16 + 8) / group_size


# ------------------------------------------------------------------------------ the kernel
def _w4a16_kernel(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, out_ptr, M, N, K,
                  stride_xm, stride_qn, stride_gn, stride_om, k_bytes, split_bytes,
                  GROUP_SIZE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
                  TILE_GROUPS: tl.constexpr = 0, WORDS: tl.constexpr = False):
    """``out[m, n] = sum_k x[m, k] * W[n, k]`` for a ``BLOCK_M x BLOCK_N`` tile of ``out``,
    over the ``pid_k``-th slice of each row's ``k_bytes`` bytes (``split_bytes`` of them; all
    when ``SPLIT_K == 1``).

    A ``BLOCK_K`` tile of weights is loaded as ``[BLOCK_N, BLOCK_K // 2]`` bytes: each row's
    bytes are contiguous in memory and lie along the tile's last (fastest) axis, so neighbouring
    threads read neighbouring bytes, 16 at a time - the loads are *coalesced* and *vectorized*.
    Two details keep them so: the loop runs over byte offsets (multiples of the tile, which the
    compiler can see) and the mask compares bytes with ``k_bytes`` (a mask that changes every
    other element, as ``2 * byte < K`` would, forces one load per byte). The low nibbles are the
    even k and the high nibbles the odd k, multiplied with the even and odd activations.

    One token (``BLOCK_M == 1``) with ``TILE_GROUPS`` > 0 (``fused_w4a16`` sets it when a K tile
    is a whole number of groups, or lies inside one) takes a ``[BLOCK_N, TILE_GROUPS, bytes per
    group]`` view of the tile: each group's scale and zero-point is loaded once per row and
    broadcast, so K tiles can be long - many bytes in flight per thread, which is what a
    one-token matmul needs to keep the memory busy, if its arithmetic keeps up (``_nibble_float``).
    With ``WORDS`` (``fused_w4a16`` sets it where rows lie on 16-byte bounds) that path reads
    32-bit words instead, with fewer instructions a byte (``_one_token_words``). Other cases look
    a group up per byte. Compiled by ``triton.jit`` on first use (``_compiled``)."""
    pid_m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    HALF: tl.constexpr = BLOCK_K // 2
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok, n_ok = offs_m < M, offs_n < N
    b_start = pid_k * split_bytes
    b_end = tl.minimum(b_start + split_bytes, k_bytes)
    if BLOCK_M == 1 and TILE_GROUPS > 0 and WORDS:       # one token, whole groups, in words
        acc = _one_token_words(x_ptr + pid_m * stride_xm, qweight_ptr, scales_ptr, zeros_ptr,
                               offs_n, n_ok, K, stride_qn, stride_gn, k_bytes, b_start, b_end,
                               GROUP_SIZE, BLOCK_N, BLOCK_K, TILE_GROUPS)
    elif BLOCK_M == 1 and TILE_GROUPS > 0:  # one token, whole groups: multiply-add, reduce at end
        SUB: tl.constexpr = HALF // TILE_GROUPS            # bytes of one group in the tile
        parts = tl.arange(0, TILE_GROUPS)
        partial3 = tl.zeros([BLOCK_N, TILE_GROUPS, SUB], dtype=tl.float32)
        x_row = x_ptr + pid_m * stride_xm
        for b0 in range(b_start, b_end, HALF):
            byte = b0 + parts[:, None] * SUB + tl.arange(0, SUB)[None, :]     # [groups, SUB]
            w_ok = n_ok[:, None, None] & (byte[None, :, :] < k_bytes)
            packed = tl.load(qweight_ptr + offs_n[:, None, None] * stride_qn + byte[None, :, :],
                             mask=w_ok, other=0)                  # [BLOCK_N, groups, SUB]
            group = b0 // (GROUP_SIZE // 2) + parts
            g_ok = n_ok[:, None] & (group[None, :] * (GROUP_SIZE // 2) < k_bytes)
            g_off = offs_n[:, None] * stride_gn + group[None, :]
            scale = tl.load(scales_ptr + g_off, mask=g_ok, other=0.0).to(tl.float32)
            zero = tl.load(zeros_ptr + g_off, mask=g_ok, other=0).to(tl.float32) + MAGIC
            k_pair = 2 * byte[:, :, None] + tl.arange(0, 2)[None, None, :]    # [groups, SUB, 2]
            x_pair = tl.load(x_row + k_pair, mask=k_pair < K, other=0.0).to(tl.float32)
            x_lo, x_hi = tl.split(x_pair)             # contiguous loads, then even / odd k
            w_lo = (_nibble_float(packed & 0xF) - zero[:, :, None]) * scale[:, :, None]
            w_hi = (_nibble_float(packed >> 4) - zero[:, :, None]) * scale[:, :, None]
            partial3 += w_lo * x_lo[None, :, :]      # two fused multiply-adds a byte
            partial3 += w_hi * x_hi[None, :, :]
        acc = tl.sum(tl.sum(partial3, axis=2), axis=1)[None, :]
    else:
        acc = _w4a16_generic(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, offs_m, offs_n, m_ok,
                             n_ok, K, stride_xm, stride_qn, stride_gn, k_bytes, b_start, b_end,
                             GROUP_SIZE, BLOCK_M, BLOCK_N, BLOCK_K)
    out_ptrs = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
    if SPLIT_K == 1:
        tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])
    else:                 # slices of K add up in an fp32 buffer
        tl.atomic_add(out_ptrs, acc, mask=m_ok[:, None] & n_ok[None, :])


def _jit(fn):
    """``triton.jit`` where Triton is installed (the module imports without it)."""
    return triton.jit(fn) if triton is not None else fn


#: 2**23: a float32 whose last mantissa bits hold a small integer exactly (a constant in kernels)
MAGIC = tl.constexpr(2.0 ** 23) if triton is not None else 2.0 ** 23


@_jit
def _nibble_float(code):
    """``2**23 + code`` as float32, for codes 0..15, without an int-to-float conversion: the code
    is written into the low mantissa bits of 2**23 (bits ``0x4B000000``) and the bits are read
    as a float. GPUs convert integers to floats at a quarter of their arithmetic rate, and a
    one-token matmul unpacks two codes per byte read, so the conversions alone would cap it far
    below the memory bandwidth; subtracting ``zero + 2**23`` (exact in float32) then gives
    ``code - zero`` exactly."""
    return (code.to(tl.int32) | 0x4B000000).to(tl.float32, bitcast=True)


@_jit
def _code_value(words, i: tl.constexpr, zero):
    """``code - zero`` for nibble ``i`` of every word, as float32 (``zero`` is offset by 2**23,
    as ``_nibble_float``'s result is)."""
    return _nibble_float((words >> (4 * i)) & 0xF) - zero[:, :, None]


@_jit
def _one_token_words(x_row, qweight_ptr, scales_ptr, zeros_ptr, offs_n, n_ok, K, stride_qn,
                     stride_gn, k_bytes, b_start, b_end, GROUP_SIZE: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, TILE_GROUPS: tl.constexpr):
    """The one-token path of ``_w4a16_kernel`` reading 32-bit words: ``[1, BLOCK_N]`` fp32 sums
    over bytes ``b_start..b_end`` of each row (rows, the row stride and the tiles start on 16-byte
    bounds and ``k_bytes`` is a multiple of 4: ``fused_w4a16`` checks, the loads rely on it).

    Nibble ``i`` of word ``j`` (bits ``4i..4i+3``, little-endian) is ``k = 8j + i``: one shift and
    one mask give each code, in k order, so the 8 activations of a word are 8 contiguous values.
    Unpacking bytes instead costs byte extracts and widening conversions for every code - at a
    few bytes of weight per instruction, a one-token matmul runs out of instructions before it
    runs out of memory bandwidth. Each word's 8 products are summed in the thread, then scaled
    once by the group's scale."""
    HALF: tl.constexpr = BLOCK_K // 2
    SUBW: tl.constexpr = HALF // TILE_GROUPS // 4          # words of one group in the tile
    words_ptr = qweight_ptr.to(tl.pointer_type(tl.int32))
    row_words = tl.multiple_of(stride_qn // 4, 4)           # rows start on 16-byte bounds
    k_words = k_bytes // 4
    parts = tl.arange(0, TILE_GROUPS)
    nibble = tl.arange(0, 8)
    partial3 = tl.zeros([BLOCK_N, TILE_GROUPS, SUBW], dtype=tl.float32)
    for b0 in range(b_start, b_end, HALF):
        w0 = tl.multiple_of(b0 // 4, 4)                     # tiles start on 16-byte bounds
        word = w0 + parts[:, None] * SUBW + tl.arange(0, SUBW)[None, :]       # [groups, SUBW]
        w_ok = n_ok[:, None, None] & (word[None, :, :] < k_words)   # whole words: vectors
        words = tl.load(words_ptr + offs_n[:, None, None] * row_words + word[None, :, :],
                        mask=w_ok, other=0)                   # [BLOCK_N, groups, SUBW] int32
        group = b0 // (GROUP_SIZE // 2) + parts
        g_ok = n_ok[:, None] & (group[None, :] * (GROUP_SIZE // 2) < k_bytes)
        g_off = offs_n[:, None] * stride_gn + group[None, :]
        scale = tl.load(scales_ptr + g_off, mask=g_ok, other=0.0).to(tl.float32)
        zero = tl.load(zeros_ptr + g_off, mask=g_ok, other=0).to(tl.float32) + MAGIC
        k = 8 * word[:, :, None] + nibble[None, None, :]               # [groups, SUBW, 8]
        x8 = tl.load(x_row + k, mask=k < K, other=0.0).to(tl.float32)  # 8 contiguous a word
        x_a, x_b = tl.split(tl.reshape(x8, [TILE_GROUPS, SUBW, 4, 2]))    # k = 8j + 2i, +1
        x_0, x_2 = tl.split(tl.reshape(x_a, [TILE_GROUPS, SUBW, 2, 2]))
        x_1, x_3 = tl.split(tl.reshape(x_b, [TILE_GROUPS, SUBW, 2, 2]))
        x_0, x_4 = tl.split(x_0)
        x_2, x_6 = tl.split(x_2)
        x_1, x_5 = tl.split(x_1)
        x_3, x_7 = tl.split(x_3)
        dot = tl.zeros([BLOCK_N, TILE_GROUPS, SUBW], dtype=tl.float32)
        dot += _code_value(words, 0, zero) * x_0[None]
        dot += _code_value(words, 1, zero) * x_1[None]
        dot += _code_value(words, 2, zero) * x_2[None]
        dot += _code_value(words, 3, zero) * x_3[None]
        dot += _code_value(words, 4, zero) * x_4[None]
        dot += _code_value(words, 5, zero) * x_5[None]
        dot += _code_value(words, 6, zero) * x_6[None]
        dot += _code_value(words, 7, zero) * x_7[None]
        partial3 += dot * scale[:, :, None]
    return tl.sum(tl.sum(partial3, axis=2), axis=1)[None, :]


@_jit
def _w4a16_generic(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, offs_m, offs_n, m_ok, n_ok, K,
                   stride_xm, stride_qn, stride_gn, k_bytes, b_start, b_end,
                   GROUP_SIZE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    """The ``[BLOCK_M, BLOCK_N]`` fp32 sums of ``_w4a16_kernel`` over bytes ``b_start..b_end``
    of each row, with ``[BLOCK_N, BLOCK_K // 2]`` byte tiles: tl.dot for a few tokens, multiply-
    add for one; a group per tile when the tile lies in one, else a group per byte."""
    HALF: tl.constexpr = BLOCK_K // 2
    if BLOCK_M == 1:      # one token: multiply-add on the CUDA cores, reduce once at the end
        partial = tl.zeros([BLOCK_N, HALF], dtype=tl.float32)
    else:                 # a few tokens: tensor cores (tl.dot), accumulating in fp32
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for b0 in range(b_start, b_end, HALF):
        byte = tl.max_contiguous(tl.multiple_of(b0 + tl.arange(0, HALF), HALF), HALF)
        k_lo = 2 * byte                                   # k of the low nibbles; high: k_lo + 1
        w_ok = n_ok[:, None] & (byte[None, :] < k_bytes)
        packed = tl.load(qweight_ptr + offs_n[:, None] * stride_qn + byte[None, :], mask=w_ok,
                         other=0)                         # [BLOCK_N, HALF] bytes
        if GROUP_SIZE % BLOCK_K == 0:                     # the tile lies in one group
            g_off = offs_n[:, None] * stride_gn + b0 // (GROUP_SIZE // 2)
            g_ok = n_ok[:, None]
        else:                                             # a group per byte
            g_off = offs_n[:, None] * stride_gn + byte[None, :] // (GROUP_SIZE // 2)
            g_ok = w_ok
        scale = tl.load(scales_ptr + g_off, mask=g_ok, other=0.0).to(tl.float32)
        zero = tl.load(zeros_ptr + g_off, mask=g_ok, other=0).to(tl.float32) + MAGIC
        w_lo = (_nibble_float(packed & 0xF) - zero) * scale
        w_hi = (_nibble_float(packed >> 4) - zero) * scale
        x_row = x_ptr + offs_m[:, None] * stride_xm
        if BLOCK_M == 1:                                  # [1, HALF] activations broadcast
            x_lo = tl.load(x_row + k_lo[None, :], mask=k_lo[None, :] < K, other=0.0)
            x_hi = tl.load(x_row + k_lo[None, :] + 1, mask=k_lo[None, :] + 1 < K, other=0.0)
            partial += w_lo * x_lo.to(tl.float32)
            partial += w_hi * x_hi.to(tl.float32)
        else:             # nibbles back in k order (low, high, low, ...): one dot, rows of x
            k = 2 * b0 + tl.arange(0, BLOCK_K)            # contiguous, like the weight bytes
            x = tl.load(x_row + k[None, :], mask=m_ok[:, None] & (k[None, :] < K), other=0.0)
            w = tl.reshape(tl.join(w_lo, w_hi), [BLOCK_N, BLOCK_K]).to(x.dtype)
            acc += tl.dot(x, tl.trans(w))
    if BLOCK_M == 1:
        acc = tl.sum(partial, axis=1)[None, :]
    return acc


_KERNEL = []


def _compiled():
    """The package's kernel as a ``triton.jit`` function (made on first use, so that the module
    imports without Triton)."""
    if triton is None:
        raise ImportError("the W4A16 kernel needs Triton (pip install triton)")
    if not _KERNEL:
        _KERNEL.append(triton.jit(_w4a16_kernel))
    return _KERNEL[0]


def _check(x, qweight, scales, zeros, group_size):
    if x.dim() != 2 or x.stride(1) != 1:
        raise ValueError("x must be [M, K] with contiguous rows")
    k = x.shape[1]
    if (qweight.dtype != torch.uint8 or zeros.dtype != torch.uint8
            or qweight.shape[1] != math.ceil(k / 2) or qweight.stride(1) != 1):
        raise ValueError(f"qweight must be uint8 [N, {math.ceil(k / 2)}] for K = {k}")
    groups = math.ceil(k / group_size)
    if (scales.shape != (qweight.shape[0], groups) or zeros.shape != scales.shape
            or zeros.stride() != scales.stride() or scales.stride(1) != 1):
        raise ValueError(f"scales and zeros must be [N, {groups}] with the same strides")


def launch_w4a16(kernel, x, qweight, scales, zeros, group_size, *, block_m=None, block_n=64,
                 block_k=128, grid=None, out=None, num_warps=4, num_stages=3, **extra):
    """Launch ``kernel`` (lesson 01's signature: ``x_ptr, qweight_ptr, scales_ptr, zeros_ptr,
    out_ptr, M, N, K, stride_xm, stride_qn, stride_gn, stride_om`` and the constexprs
    ``GROUP_SIZE, BLOCK_M, BLOCK_N, BLOCK_K``) on a ``(cdiv(M, BLOCK_M), cdiv(N, BLOCK_N))`` grid
    and return ``out [M, N]`` in x's dtype. CPU tensors run in Triton's interpreter.

    ``grid`` launches other programs than the whole output (the rest of ``out`` is untouched);
    ``extra`` goes to the kernel by name."""
    if triton is None:
        raise ImportError("launching a Triton kernel needs Triton (pip install triton; Linux)")
    _check(x, qweight, scales, zeros, group_size)
    m, k = x.shape
    n = qweight.shape[0]
    if block_m is None:                      # tl.dot needs tiles of at least 16 on a GPU
        block_m = m_bucket(max(m, 2))
    if out is None:
        out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if grid is None:
        grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    args = (x, qweight, scales, zeros, out, m, n, k, x.stride(0), qweight.stride(0),
            scales.stride(0), out.stride(0))
    meta = dict(GROUP_SIZE=group_size, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, **extra)
    if x.device.type == "cpu":
        triton_cpu.launch(kernel, grid, *args, **meta)
    else:
        kernel[grid](*args, **meta, num_warps=num_warps, num_stages=num_stages)
    return out


def kernel_config(m: int, group_size: int = GROUP_SIZE) -> dict:
    """Default launch settings for the package kernel (the CPU interpreter's, and a GPU's while a
    CUDA graph is being captured, when nothing may be timed): one token takes the multiply-add
    path with narrow N tiles (many programs in flight, each reading whole 16-byte vectors of
    every row); a few tokens take 16-64-row tiles for tl.dot. On a GPU ``tuned_config`` times
    ``candidate_configs`` instead and keeps the fastest."""
    block_k = group_size if group_size in (64, 128, 256) else 128
    if m == 1:            # 8 rows x 4 groups: 64 bytes (four 16-byte loads) a thread per tile
        return dict(block_m=1, block_n=8, block_k=4 * block_k, split_k=1, num_warps=1,
                    num_stages=3)
    block_m = m_bucket(m)
    return dict(block_m=block_m, block_n=64, block_k=block_k, split_k=1, num_warps=4,
                num_stages=3)


def candidate_configs(m: int, group_size: int = GROUP_SIZE, k: int | None = None) -> list[dict]:
    """The tile sizes ``tuned_config`` tries: the default and its neighbours.

    One token waits on memory: what counts is how many weight bytes are *in flight* at once
    (bytes per thread x threads), about bandwidth x latency (~4 MB on an H100/H200: half of a
    4096 x 4096 layer in 4 bits). So the candidates give every thread 64 or 128 bytes per tile
    (four or eight 16-byte loads) and vary the shape: 1-16 rows x 1-32 groups (up to ``k``, the
    layer's K, when given), 1-4 warps - from many narrow programs that each read a whole row at
    once (no loop, no atomics) to fewer, wider ones. Splitting K also makes more programs, but
    its slices add up with atomics in an fp32 buffer (two more small kernels).

    A few tokens try 16-128-column tiles and K split in 1-4: a 4096-row layer makes only 32-256
    programs of tl.dot tiles, too few to keep 100+ multiprocessors reading."""
    base = kernel_config(m, group_size)
    if m == 1:      # (block_n, block_k, num_warps, split_k)
        max_k = max(base["block_k"], triton.next_power_of_2(k)) if k else 32 * base["block_k"]
        tiles = [(n, f * base["block_k"], w, 1) for w in (1, 2, 4) for n in (1, 2, 4, 8, 16)
                 for f in (1, 2, 4, 8, 16, 32)
                 if f * base["block_k"] <= max_k
                 and n * f * base["block_k"] // 2 // (32 * w) in (64, 128)]
        tiles += [(8, 4 * base["block_k"], 1, 4), (8, 8 * base["block_k"], 1, 4)]
    else:
        block_ks = sorted({base["block_k"], 2 * base["block_k"]})
        tiles = [(n, k, 4, s) for n in (16, 32, 64, 128) for k in block_ks for s in (1, 2, 4)
                 if n * s <= 256]
    configs = [dict(base, block_n=n, block_k=k, num_warps=w, split_k=s) for n, k, w, s in tiles]
    return configs if base in configs else [base, *configs]


def m_bucket(m: int) -> int:
    """The M a config is tuned for: 1, or the power of two (16..64) the tl.dot tile rounds up to."""
    return min(MAX_KERNEL_M, max(16, 1 << (m - 1).bit_length())) if m > 1 else 1


def tuned_for(n: int, k: int, m: int, group_size: int = GROUP_SIZE) -> dict | None:
    """The config ``tuned_config`` chose for an ``[N, K]`` weight and M tokens, if it ran."""
    return next((config for key, config in TUNED.items()
                 if key[2:] == (m_bucket(m), n, k, group_size)), None)


#: the configs ``tuned_config`` chose so far: (device index, dtype, M bucket, N, K, group) -> config
TUNED: dict = {}


def tuned_config(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                 zeros: torch.Tensor, group_size: int) -> dict:
    """The fastest of ``candidate_configs`` for this GPU, shape and dtype, measured on first use
    and remembered (what ``triton.autotune`` does): ``triton.testing.do_bench`` runs each
    candidate with the L2 cache flushed before every call, so the weights come from memory as in
    a real model, and takes the median. Tuning a shape costs a few seconds once (compiling
    the candidates, then ~0.1 s each); M is bucketed (1, <= 16, <= 32, <= 64) so a new prompt
    length does not tune again. While a CUDA graph is being captured nothing can be timed: the
    default ``kernel_config`` is used (tune before capturing)."""
    m, k = x.shape
    bucket = m_bucket(m)
    key = (x.device.index, x.dtype, bucket, qweight.shape[0], k, group_size)
    if key in TUNED:
        return TUNED[key]
    if torch.cuda.is_current_stream_capturing():
        return kernel_config(m, group_size)
    from triton.testing import do_bench
    timings = []
    for config in candidate_configs(bucket, group_size, k):
        try:
            ms = do_bench(lambda c=config: fused_w4a16(x, qweight, scales, zeros, group_size, c),
                          warmup=5, rep=20, return_mode="median")
        except Exception:  # noqa: BLE001 - a tile this GPU cannot compile (resources) is skipped
            continue
        timings.append((ms, config))
    TUNED[key] = min(timings, key=lambda t: t[0])[1] if timings else kernel_config(m,
                                                                                     group_size)
    return TUNED[key]


def fused_w4a16(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                zeros: torch.Tensor, group_size: int, config: dict | None = None) -> torch.Tensor:
    """The package kernel, whatever the device: compiled on a GPU, interpreted for CPU tensors
    (tests). ``config`` as ``kernel_config`` returns it (default: ``tuned_config`` on a GPU,
    ``kernel_config`` on a CPU); ``split_k > 1`` adds slices of K up in an fp32 buffer (a third
    grid dimension), then casts."""
    m, k = x.shape
    n = qweight.shape[0]
    if config is None:
        config = (tuned_config(x, qweight, scales, zeros, group_size) if x.is_cuda
                  else kernel_config(m, group_size))
    config = dict(config)
    split_k = config.pop("split_k", 1)
    k_bytes = qweight.shape[1]
    half = config["block_k"] // 2              # bytes per K tile: slices are whole tiles
    split_bytes = triton.cdiv(triton.cdiv(k_bytes, split_k), half) * half
    grid = (triton.cdiv(m, config["block_m"]), triton.cdiv(n, config["block_n"]), split_k)
    out = None if split_k == 1 else torch.zeros(m, n, dtype=torch.float32, device=x.device)
    groups = tile_groups(config["block_m"], config["block_k"], group_size)
    words = (groups > 0 and half // groups % 4 == 0 and half % 16 == 0 and k_bytes % 4 == 0
             and qweight.stride(0) % 16 == 0 and qweight.data_ptr() % 16 == 0)
    result = launch_w4a16(_compiled(), x, qweight, scales, zeros, group_size, grid=grid, out=out,
                          k_bytes=k_bytes, split_bytes=split_bytes, SPLIT_K=split_k,
                          TILE_GROUPS=groups, WORDS=words, **config)
    return result.to(x.dtype)


def tile_groups(block_m: int, block_k: int, group_size: int) -> int:
    """Whole groups per K tile for the kernel's one-token path (1 for a tile inside a group), or
    0 where it does not apply (several tokens; tiles and groups that do not nest; a group of a
    size that is no power of two split across a tile)."""
    if block_m != 1:
        return 0
    if group_size % block_k == 0:
        return 1
    power_of_two = group_size & (group_size - 1) == 0
    return block_k // group_size if block_k % group_size == 0 and power_of_two else 0


def w4a16_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                 zeros: torch.Tensor, group_size: int, config: dict | None = None) -> torch.Tensor:
    """``x @ W.T`` for activations ``x [M, K]`` and the packed ``W [N, K]`` -> ``[M, N]`` in x's
    dtype. CUDA + Triton + fp16/bf16 + M <= 64: the fused kernel (fp32 accumulation); otherwise
    plain PyTorch (dequantize, then ``F.linear``): the CPU fallback, and cuBLAS at large M."""
    if (x.is_cuda and triton is not None and x.dtype in (torch.float16, torch.bfloat16)
            and 0 < x.shape[0] <= MAX_KERNEL_M):
        x = x if x.stride(1) == 1 else x.contiguous()
        return fused_w4a16(x, qweight, scales, zeros, group_size, config)
    weight = dequantize_w4(qweight, scales, zeros, group_size, x.shape[1], dtype=x.dtype)
    return F.linear(x, weight)


# ------------------------------------------------------------------------------ the layer
class W4A16Linear(nn.Module):
    """A Linear layer that keeps only the packed 4-bit weight (buffers) and computes with
    ``w4a16_matmul``: the fused kernel on a GPU, dequantize + matmul on a CPU."""

    def __init__(self, in_features: int, out_features: int, group_size: int = GROUP_SIZE,
                 bias: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = math.ceil(in_features / group_size)
        self.register_buffer("qweight", torch.zeros(out_features, math.ceil(in_features / 2),
                                                    dtype=torch.uint8))
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=torch.float16))
        self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=torch.uint8))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = GROUP_SIZE) -> W4A16Linear:
        layer = cls(linear.in_features, linear.out_features, group_size, linear.bias is not None)
        qweight, scales, zeros, _ = pack_w4(linear.weight.data, group_size)
        layer.qweight.copy_(qweight)
        layer.scales.copy_(scales)
        layer.zeros.copy_(zeros)
        if linear.bias is not None:
            layer.bias.data = linear.bias.data.clone()
        return layer.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        out = w4a16_matmul(flat, self.qweight, self.scales, self.zeros, self.group_size)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"group_size={self.group_size}")


def quantize_model_w4a16(model: nn.Module, group_size: int = GROUP_SIZE) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` except the ``lm_head`` by a ``W4A16Linear``, in
    place (the model keeps its device); returns the model."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and not name.endswith("lm_head"):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child,
                    W4A16Linear.from_linear(module, group_size))
    return model
