"""Attention backends: how a step's queries read the KV cache (lessons 07 and 09).

Every step's new queries attend over keys and values that live in the cache's blocks (lesson 07).
There are two ways to do it, and the engine has a backend for each trade-off:

* **gather, then attend** - copy each sequence's keys/values out of its blocks into a padded
  ``[batch, length, kv_heads, d]`` tensor (``PagedKVCache.gather``), then run ordinary attention
  with a mask. Works for every step: prefill (many queries per sequence) and decode.
* **attend straight over the blocks** - for decode steps (one query per sequence): look each key up
  through the block table while attending, with no copy. That is vLLM's paged attention; lesson
  09's GPU section explains why it also needs the *online softmax* to be fast at batch 1.

``EngineConfig.attention_backend`` picks one:

========  ======================================  ========================================
name      prefill and other multi-token steps     decode steps
========  ======================================  ========================================
"sdpa"    gather + PyTorch's SDPA                 the same
"math"    gather + two matmuls                    the same
          (``grouped_attention``)
"fused"   gather + SDPA                           ``paged_decode_attention``: element-wise
                                                  ops over the blocks, which
                                                  ``torch.compile`` fuses
"triton"  gather + SDPA                           ``gpu_kernels``: RoPE + cache write in one
                                                  kernel, split-context paged attention
"cpu"     gather + two matmuls, as "math"         ``cpu_kernels`` (C++): RoPE + cache write
                                                  in one pass, paged attention reading each
                                                  key and value once
"auto"    "triton" where Triton and CUDA are; on a CPU in bf16/fp16 "cpu" where the C++ kernels
          build, else "math" (PyTorch's fused CPU attention is slow there for short queries:
          5 ms vs 1 ms for a batch-32 decode step); "sdpa" otherwise
========  ======================================  ========================================

A backend is a small object (subclass ``AttentionBackend``): ``gathered(q, keys, values, mask,
scale)`` for the first way; with ``paged_decode = True`` also ``decode(q, k_blocks, v_blocks,
block_tables, context_lens, length, block_size, scale)`` for the second. All of them give the same
result up to rounding; the tests check each against the others.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import cpu_kernels, gpu_kernels
from .kv_cache import slot

BACKENDS = ("auto", "triton", "cpu", "sdpa", "fused", "math")


# ------------------------------------------------------------------------- the arithmetic
def grouped_attention(q, keys, values, mask, scale):
    """Attention written as two matmuls, each KV head serving its group of query heads.

    ``q [B, Q, heads, d]``, ``keys/values [B, L, kv_heads, d]``, ``mask [B, 1, Q, L]`` (True =
    may attend) -> ``[B, Q, heads, d]``. Query head ``h`` uses KV head ``h // group`` (GQA);
    grouping the queries avoids copying K/V ``group`` times. Softmax in fp32.
    """
    b, nq, heads, d = q.shape
    kv_heads, length = keys.shape[2], keys.shape[1]
    group = heads // kv_heads
    q = q.reshape(b, nq, kv_heads, group, d).permute(0, 2, 3, 1, 4)
    q = q.reshape(b, kv_heads, group * nq, d)
    scores = torch.matmul(q, keys.permute(0, 2, 3, 1)).float() * scale
    if mask is not None:
        scores = scores.view(b, kv_heads, group, nq, length)
        scores = scores.masked_fill(~mask[:, :, None], float("-inf"))
        scores = scores.view(b, kv_heads, group * nq, length)
    out = torch.matmul(scores.softmax(-1).to(values.dtype), values.transpose(1, 2))
    return out.view(b, kv_heads, group, nq, d).permute(0, 3, 1, 2, 4).reshape(b, nq, heads, d)


def one_query_attention(q, keys, values, mask, scale):
    """``grouped_attention`` for decode steps (one query per sequence), without moving K or V.

    The gathered keys are ``[B, L, kv_heads, d]``: the head is not the outer dimension, so the
    matmuls above first copy K and V into ``[B, kv_heads, ...]`` order - on a CPU that copy costs
    as much as the matmul. Here each sequence's keys stay one ``[L, kv_heads * d]`` matrix, and
    the queries become a *block-diagonal* ``[kv_heads * d, heads]`` matrix (query head ``h`` in
    the rows of its KV head, zeros elsewhere), so one batched matmul gives every head's scores.
    The zeros multiply ``kv_heads`` times more numbers than needed, which is why ``MathAttention``
    takes this path only for few KV heads. Same shapes as ``grouped_attention`` (``Q = 1``).
    """
    b, _, heads, d = q.shape
    length, kv_heads = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    diagonal = torch.arange(kv_heads, device=q.device)
    queries = q.new_zeros(b, kv_heads, d, kv_heads, group)
    queries[:, diagonal, :, diagonal] = q.view(b, kv_heads, group, d).permute(1, 0, 3, 2)
    scores = torch.bmm(keys.reshape(b, length, kv_heads * d),
                       queries.view(b, kv_heads * d, heads)).float() * scale     # [B, L, heads]
    scores = scores.transpose(1, 2)                                               # [B, heads, L]
    if mask is not None:
        scores = scores.masked_fill(~mask[:, 0], float("-inf"))
    out = torch.bmm(scores.softmax(-1).to(values.dtype), values.reshape(b, length, kv_heads * d))
    out = out.view(b, kv_heads, group, kv_heads, d)[:, diagonal, :, diagonal]    # [kvh, B, g, d]
    return out.transpose(0, 1).reshape(b, 1, heads, d)


def sdpa_attention(q, keys, values, mask, scale):
    """The same with PyTorch's ``scaled_dot_product_attention`` (same shapes as above).

    On a GPU the cuDNN kernel is left out: PyTorch may prefer it on Hopper GPUs, and it builds a
    new execution plan on the CPU for every new shape - about 20 ms a call on an H200, 32 calls
    per prefill step, and every prompt length is a new shape. The flash and memory-efficient
    kernels need no plan."""
    kwargs = {"enable_gqa": True} if q.shape[2] != keys.shape[2] else {}
    args = (q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2))
    if q.is_cuda and not torch.compiler.is_compiling():   # compiled: inductor picks the kernel
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
        with sdpa_kernel(backends):
            out = F.scaled_dot_product_attention(*args, attn_mask=mask, scale=scale, **kwargs)
    else:
        out = F.scaled_dot_product_attention(*args, attn_mask=mask, scale=scale, **kwargs)
    return out.transpose(1, 2)


def paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, length: int,
                           block_size: int, scale: float) -> torch.Tensor:
    """One query per sequence attending straight over its cache blocks (no gathered copy).

    ``q [B, heads, d]``, caches ``[blocks, block_size, kv_heads, d]`` -> ``[B, heads, d]``.
    Written as element-wise products and sums so that ``torch.compile`` fuses the block-table
    lookup into the reductions: each key and value is read from the cache once, which is what
    vLLM's paged-attention kernel does by hand.
    """
    b, heads, d = q.shape
    kv_heads = k_cache.shape[2]
    pos = torch.arange(length, device=q.device)
    slots = slot(block_tables, pos, block_size)                         # [B, L]
    k = k_cache.view(-1, kv_heads, d)[slots]                            # [B, L, kvh, d]
    v = v_cache.view(-1, kv_heads, d)[slots]
    qg = q.view(b, 1, kv_heads, heads // kv_heads, d).float()
    scores = (qg * k[:, :, :, None, :].float()).sum(-1) * scale         # [B, L, kvh, g]
    past_end = (pos[None, :] >= context_lens[:, None])[:, :, None, None]
    scores = scores.masked_fill(past_end, float("-inf"))
    out = (scores.softmax(1)[..., None] * v[:, :, :, None, :].float()).sum(1)   # [B, kvh, g, d]
    return out.to(q.dtype).reshape(b, heads, d)


# ------------------------------------------------------------------------------ backends
class AttentionBackend:
    """Base: gathered attention with SDPA; no block-reading decode path."""
    name = "sdpa"
    paged_decode = False        # decode steps call ``decode`` over the blocks (no gather, no mask)
    reads_only_context = False  # ``decode`` stops at each context length (no length buckets)
    fused_rope = False          # decode steps call ``rope_and_store`` (RoPE + cache write)
    fused_rope_attention = False  # ... or ``rope_store_attention`` (RoPE, write and attention)

    def gathered(self, q, keys, values, mask, scale):
        return sdpa_attention(q, keys, values, mask, scale)

    def decode(self, q, k_blocks, v_blocks, block_tables, context_lens, length, block_size, scale):
        raise NotImplementedError(f"the {self.name!r} backend has no paged decode path")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class SdpaAttention(AttentionBackend):
    name = "sdpa"


class MathAttention(AttentionBackend):
    name = "math"
    one_query_max_kv_heads = 4   # decode steps of models with at most this many KV heads

    def gathered(self, q, keys, values, mask, scale):
        if q.shape[1] == 1 and keys.shape[2] <= self.one_query_max_kv_heads:
            return one_query_attention(q, keys, values, mask, scale)
        return grouped_attention(q, keys, values, mask, scale)


class FusedAttention(AttentionBackend):
    name = "fused"
    paged_decode = True

    def decode(self, q, k_blocks, v_blocks, block_tables, context_lens, length, block_size, scale):
        return paged_decode_attention(q, k_blocks, v_blocks, block_tables, context_lens, length,
                                      block_size, scale)


class TritonAttention(AttentionBackend):
    name = "triton"
    paged_decode = True
    reads_only_context = True
    fused_rope = True

    def decode(self, q, k_blocks, v_blocks, block_tables, context_lens, length, block_size, scale):
        return gpu_kernels.decode_attention(q, k_blocks, v_blocks, block_tables, context_lens,
                                            length, block_size, scale)

    def rope_and_store(self, qkv, cos, sin, positions, slots, k_cache, v_cache, heads, kv_heads):
        return gpu_kernels.rope_and_store(qkv, cos, sin, positions, slots, k_cache, v_cache,
                                          heads, kv_heads)

    fused_rope_attention = True
    merge_in_kernel = True      # the chunks merged by their last program (the runner's counters)

    def rope_store_attention(self, qkv, cos, sin, positions, slots, k_cache, v_cache,
                             block_tables, context_lens, length, block_size, scale, heads,
                             kv_heads, counters=None):
        return gpu_kernels.rope_store_attention(qkv, cos, sin, positions, slots, k_cache, v_cache,
                                                block_tables, context_lens, length, block_size,
                                                scale, heads, kv_heads, counters)


class CpuKernelAttention(MathAttention):
    """Decode steps in the engine's C++ kernels (``cpu_kernels``), prefill as ``MathAttention``."""
    name = "cpu"
    paged_decode = True
    reads_only_context = True
    fused_rope = True

    def decode(self, q, k_blocks, v_blocks, block_tables, context_lens, length, block_size, scale):
        return cpu_kernels.paged_decode_attention(q, k_blocks, v_blocks, block_tables,
                                                  context_lens, scale)

    def rope_and_store(self, qkv, cos, sin, positions, slots, k_cache, v_cache, heads, kv_heads):
        return cpu_kernels.rope_and_store(qkv, cos, sin, positions, slots, k_cache, v_cache,
                                          heads, kv_heads)


def resolve_backend_name(name: str, device, dtype) -> str:
    """The backend ``name`` stands for on ``device``/``dtype`` ("auto" decides; the others are
    checked). On a CPU in bf16/fp16, "auto" builds the C++ kernels the first time (``cpu_kernels``)
    and keeps "math" where they cannot be built; fp32 keeps "sdpa", whose sums match transformers'
    to the last bit."""
    device = torch.device(device)
    if name == "auto":
        if gpu_kernels.available(device):
            return "triton"
        if device.type != "cpu" or dtype == torch.float32:
            return "sdpa"
        return "cpu" if cpu_kernels.available(device) else "math"
    if name not in BACKENDS:
        raise ValueError(f"attention_backend must be one of {BACKENDS} or an AttentionBackend, "
                         f"got {name!r}")
    if name == "triton" and not gpu_kernels.runnable(device):
        raise ValueError("attention_backend='triton' needs Triton and a CUDA device (or "
                         "TRITON_INTERPRET=1 to run the kernels in Triton's interpreter); on "
                         f"{device.type} use 'auto', 'sdpa', 'math' or 'fused'")
    if name == "cpu" and not cpu_kernels.available(device):
        raise ValueError(f"attention_backend='cpu' needs the engine's C++ kernels on a CPU device "
                         f"(here: {device.type}; {cpu_kernels.unavailable_reason() or 'built'}); "
                         "use 'auto', 'math' or 'sdpa'")
    return name


def make_backend(choice, device, dtype) -> AttentionBackend:
    """An ``AttentionBackend`` from a name in ``BACKENDS`` (or a backend object, returned as is)."""
    if isinstance(choice, AttentionBackend):
        return choice
    name = resolve_backend_name(choice, device, dtype)
    return {"sdpa": SdpaAttention, "math": MathAttention, "fused": FusedAttention,
            "triton": TritonAttention, "cpu": CpuKernelAttention}[name]()
