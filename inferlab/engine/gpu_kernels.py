"""The engine's two hand-written GPU kernels, in Triton, for the decode step (lesson 09, GPU part).

**Decode attention.** In a decode step each sequence brings one new query per head and attends
over its whole cached context. Done with generic operations, that step either copies every key
and value out of the paged cache first (``PagedKVCache.gather``) or runs a general attention
kernel over a padded, masked length. With batch 1 both waste the GPU: a general kernel gives each
of the 32 heads one thread block, so 32 of an H100's 132 multiprocessors do all the reading.
``decode_attention`` does what vLLM's paged attention and FlashDecoding do:

* **split the context**: program ``(b, h, s)`` handles sequence ``b``, query head ``h`` and the
  ``s``-th chunk of its context, so even batch 1 launches hundreds of programs;
* **read through the block table**: the cache slot of position ``p`` is
  ``table[p // block_size] * block_size + p % block_size`` (``kv_cache.slot``); nothing is copied;
* **read only the filled cache**: a program stops at the sequence's context length, however long
  the padded length of a CUDA-graph bucket is (so one graph serves every length);
* **online softmax** (lesson 09's exercise) inside a chunk, then a second small kernel merges the
  chunks' partial results with the same rescaling rule.

``rope_store_attention``, what the engine runs, goes further: each program rotates its own query
straight from the Q/K/V projection, the programs holding the new position store its key and value
(the work of ``rope_and_store`` below), and the last chunk of each head to finish - counted with an
atomic add in a buffer of zeros the engine keeps - merges them all. One kernel per layer instead
of three.

**RoPE + cache write.** Before attention, the new queries and keys are rotated by their position
(RoPE) and the keys and values stored at their cache slots. As PyTorch operations, even fused by
``torch.compile``, that is three kernels per layer (queries, keys + store, values + store);
``rope_and_store`` is one. At batch 1 every kernel costs a few microseconds of launch and ramp-up
whatever its size, and a Llama-2-7B step has 32 layers: kernel count is speed.

Shapes: ``q [B, heads, d]``, a layer's cache ``[slots, kv_heads, d]`` (``PagedKVCache.k[layer]``),
``block_tables [B, width]``, ``context_lens [B]``; query head ``h`` reads KV head
``h // (heads // kv_heads)`` (grouped-query attention). The static cache is the special case of
one block per sequence (``block_size = max_len``). On a CPU the kernels run in Triton's
interpreter (``TRITON_INTERPRET=1``), which is how the tests check them against plain PyTorch.
"""
from __future__ import annotations

import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU-only installs without Triton
    triton = None


def available(device) -> bool:
    """True where the kernels run for real: a CUDA device and Triton installed."""
    return triton is not None and torch.device(device).type == "cuda"


def runnable(device) -> bool:
    """True where they run at all: as above, or on a CPU in Triton's interpreter
    (``TRITON_INTERPRET=1``)."""
    return available(device) or (triton is not None and os.environ.get("TRITON_INTERPRET") == "1")


BLOCK_N = 128         # keys per tile: a chunk is one tile up to MAX_SPLITS tiles of context
MAX_SPLITS = 64       # chunks per (sequence, head); longer contexts loop over several tiles


def num_splits(length: int) -> tuple[int, int]:
    """(chunks, keys per chunk) for contexts of up to ``length`` keys: one ``BLOCK_N`` tile per
    chunk (no loop, no dependent loads), at most ``MAX_SPLITS`` chunks."""
    splits = max(1, min(MAX_SPLITS, math.ceil(length / BLOCK_N)))
    chunk = math.ceil(math.ceil(length / splits) / BLOCK_N) * BLOCK_N
    return math.ceil(length / chunk), chunk


if triton is not None:
    @triton.jit
    def _chunk_kernel(q_ptr, k_ptr, v_ptr, tables_ptr, ctx_ptr, acc_ptr, m_ptr, l_ptr,
                      q_stride_b, q_stride_h, kv_stride_slot, kv_stride_head, tables_stride_b,
                      scale, CHUNK: tl.constexpr, BLOCK_SIZE: tl.constexpr, GROUP: tl.constexpr,
                      HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, SPLITS: tl.constexpr):
        b = tl.program_id(0)
        h = tl.program_id(1)
        s = tl.program_id(2)
        kv_head = h // GROUP
        ctx = tl.load(ctx_ptr + b)
        start = s * CHUNK
        end = tl.minimum(start + CHUNK, ctx)
        d = tl.arange(0, HEAD_DIM)
        q = tl.load(q_ptr + b * q_stride_b + h * q_stride_h + d).to(tl.float32)
        q = (q * scale).to(tl.float32)
        m_i = tl.full([], float("-inf"), tl.float32)       # running max of the scores
        l_i = tl.full([], 0.0, tl.float32)                  # running sum of exp(score - max)
        acc = tl.zeros([HEAD_DIM], dtype=tl.float32)         # running sum of exp(...) * value
        for first in range(start, end, BLOCK):
            pos = first + tl.arange(0, BLOCK)
            valid = pos < end
            block = tl.load(tables_ptr + b * tables_stride_b + pos // BLOCK_SIZE, mask=valid,
                            other=0)
            slot = (block * BLOCK_SIZE + pos % BLOCK_SIZE).to(tl.int64)
            offsets = slot[:, None] * kv_stride_slot + kv_head * kv_stride_head + d[None, :]
            k = tl.load(k_ptr + offsets, mask=valid[:, None], other=0.0).to(tl.float32)
            scores = tl.where(valid, tl.sum(k * q[None, :], axis=1), float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, axis=0))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(scores - m_new)
            v = tl.load(v_ptr + offsets, mask=valid[:, None], other=0.0).to(tl.float32)
            l_i = l_i * alpha + tl.sum(p, axis=0)
            acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
            m_i = m_new
        row = (b * tl.num_programs(1) + h) * SPLITS + s
        tl.store(acc_ptr + row * HEAD_DIM + d, acc)
        tl.store(m_ptr + row, m_i)
        tl.store(l_ptr + row, l_i)

    @triton.jit
    def _merge_kernel(acc_ptr, m_ptr, l_ptr, out_ptr, out_stride_b, out_stride_h,
                      HEAD_DIM: tl.constexpr, SPLITS: tl.constexpr, SPLITS_POW2: tl.constexpr):
        b = tl.program_id(0)
        h = tl.program_id(1)
        row = (b * tl.num_programs(1) + h) * SPLITS
        s = tl.arange(0, SPLITS_POW2)
        present = s < SPLITS
        m = tl.load(m_ptr + row + s, mask=present, other=float("-inf"))
        l_s = tl.load(l_ptr + row + s, mask=present, other=0.0)
        m_max = tl.max(m, axis=0)                 # chunk 0 is never empty: m_max is finite
        weight = tl.where(present, tl.exp(m - m_max), 0.0)
        d = tl.arange(0, HEAD_DIM)
        acc = tl.load(acc_ptr + (row + s)[:, None] * HEAD_DIM + d[None, :], mask=present[:, None],
                      other=0.0)
        out = tl.sum(acc * weight[:, None], axis=0) / tl.sum(l_s * weight, axis=0)
        tl.store(out_ptr + b * out_stride_b + h * out_stride_h + d,
                 out.to(out_ptr.dtype.element_ty))


    @triton.jit
    def _rope_store_kernel(qkv_ptr, cos_ptr, sin_ptr, positions_ptr, slots_ptr, q_ptr, k_ptr, v_ptr,
                           qkv_stride, q_stride, cache_stride_slot, HEADS: tl.constexpr,
                           KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr):
        t = tl.program_id(0)                    # token
        h = tl.program_id(1)                    # head of [q heads | k heads | v heads]
        half = tl.arange(0, HEAD_DIM // 2)
        src = qkv_ptr + t * qkv_stride + h * HEAD_DIM
        first = tl.load(src + half).to(tl.float32)
        second = tl.load(src + HEAD_DIM // 2 + half).to(tl.float32)
        slot = tl.load(slots_ptr + t).to(tl.int64)
        if h < HEADS + KV_HEADS:                # rotate: x * cos + rotate_half(x) * sin
            row = tl.load(positions_ptr + t).to(tl.int64) * HEAD_DIM
            cos1 = tl.load(cos_ptr + row + half).to(tl.float32)
            cos2 = tl.load(cos_ptr + row + HEAD_DIM // 2 + half).to(tl.float32)
            sin1 = tl.load(sin_ptr + row + half).to(tl.float32)
            sin2 = tl.load(sin_ptr + row + HEAD_DIM // 2 + half).to(tl.float32)
            first, second = first * cos1 - second * sin1, second * cos2 + first * sin2
            if h < HEADS:
                dst = q_ptr + t * q_stride + h * HEAD_DIM
            else:
                dst = k_ptr + slot * cache_stride_slot + (h - HEADS) * HEAD_DIM
        else:
            dst = v_ptr + slot * cache_stride_slot + (h - HEADS - KV_HEADS) * HEAD_DIM
        tl.store(dst + half, first.to(dst.dtype.element_ty))
        tl.store(dst + HEAD_DIM // 2 + half, second.to(dst.dtype.element_ty))


if triton is not None:
    @triton.jit
    def _rope_chunk_kernel(qkv_ptr, cos_ptr, sin_ptr, positions_ptr, slots_ptr, k_ptr, v_ptr,
                           tables_ptr, ctx_ptr, acc_ptr, m_ptr, l_ptr, out_ptr, counter_ptr,
                           qkv_stride, kv_stride_slot, tables_stride_b, scale,
                           HEADS: tl.constexpr, KV_HEADS: tl.constexpr, CHUNK: tl.constexpr,
                           BLOCK_SIZE: tl.constexpr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
                           BLOCK: tl.constexpr, SPLITS: tl.constexpr, SPLITS_POW2: tl.constexpr,
                           MERGE: tl.constexpr):
        """``_chunk_kernel`` with ``_rope_store_kernel`` inside: program ``(b, h, s)`` rotates
        its query straight from the Q/K/V projection, attends over the cached keys of its chunk
        and, if its chunk holds the new position, over the new key and value from registers
        (rotated and rounded to the cache's dtype, as if read back); the first head of each KV
        group stores them in the cache. Vectors are handled as two halves, RoPE's pairs. With
        ``MERGE``, the last of a head's chunks to finish (an atomic count per head in
        ``counter_ptr``, zero between calls) merges all of them into ``out``, as
        ``_merge_kernel`` does: no second kernel."""
        b = tl.program_id(0)
        h = tl.program_id(1)
        s = tl.program_id(2)
        D2: tl.constexpr = HEAD_DIM // 2
        kv_head = h // GROUP
        new = tl.load(ctx_ptr + b) - 1                  # the new token's position
        start = s * CHUNK
        end = tl.minimum(start + CHUNK, new)            # cached keys of this chunk: [start, end)
        half = tl.arange(0, D2)
        src = qkv_ptr + b * qkv_stride
        trig = tl.load(positions_ptr + b).to(tl.int64) * HEAD_DIM
        cos1 = tl.load(cos_ptr + trig + half).to(tl.float32)
        cos2 = tl.load(cos_ptr + trig + D2 + half).to(tl.float32)
        sin1 = tl.load(sin_ptr + trig + half).to(tl.float32)
        sin2 = tl.load(sin_ptr + trig + D2 + half).to(tl.float32)
        x1 = tl.load(src + h * HEAD_DIM + half).to(tl.float32)
        x2 = tl.load(src + h * HEAD_DIM + D2 + half).to(tl.float32)
        q1 = ((x1 * cos1 - x2 * sin1).to(qkv_ptr.dtype.element_ty).to(tl.float32) * scale).to(
            tl.float32)                                 # scale may come as fp64 (torch.compile)
        q2 = ((x2 * cos2 + x1 * sin2).to(qkv_ptr.dtype.element_ty).to(tl.float32) * scale).to(
            tl.float32)
        m_i = tl.full([], float("-inf"), tl.float32)
        l_i = tl.full([], 0.0, tl.float32)
        acc1 = tl.zeros([D2], dtype=tl.float32)
        acc2 = tl.zeros([D2], dtype=tl.float32)
        for first in range(start, end, BLOCK):
            pos = first + tl.arange(0, BLOCK)
            valid = pos < end
            block = tl.load(tables_ptr + b * tables_stride_b + pos // BLOCK_SIZE, mask=valid,
                            other=0)
            slot = (block * BLOCK_SIZE + pos % BLOCK_SIZE).to(tl.int64)
            rows = slot[:, None] * kv_stride_slot + kv_head * HEAD_DIM + half[None, :]
            k1 = tl.load(k_ptr + rows, mask=valid[:, None], other=0.0).to(tl.float32)
            k2 = tl.load(k_ptr + rows + D2, mask=valid[:, None], other=0.0).to(tl.float32)
            scores = tl.sum(k1 * q1[None, :], axis=1) + tl.sum(k2 * q2[None, :], axis=1)
            scores = tl.where(valid, scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, axis=0))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(scores - m_new)
            v1 = tl.load(v_ptr + rows, mask=valid[:, None], other=0.0).to(tl.float32)
            v2 = tl.load(v_ptr + rows + D2, mask=valid[:, None], other=0.0).to(tl.float32)
            l_i = l_i * alpha + tl.sum(p, axis=0)
            acc1 = acc1 * alpha + tl.sum(p[:, None] * v1, axis=0)
            acc2 = acc2 * alpha + tl.sum(p[:, None] * v2, axis=0)
            m_i = m_new
        if (new >= start) & (new < start + CHUNK):      # this chunk holds the new token
            k_src = src + (HEADS + kv_head) * HEAD_DIM
            v_src = src + (HEADS + KV_HEADS + kv_head) * HEAD_DIM
            y1 = tl.load(k_src + half).to(tl.float32)
            y2 = tl.load(k_src + D2 + half).to(tl.float32)
            k1 = (y1 * cos1 - y2 * sin1).to(k_ptr.dtype.element_ty)
            k2 = (y2 * cos2 + y1 * sin2).to(k_ptr.dtype.element_ty)
            v1 = tl.load(v_src + half).to(v_ptr.dtype.element_ty)
            v2 = tl.load(v_src + D2 + half).to(v_ptr.dtype.element_ty)
            if h % GROUP == 0:                          # one store per KV head
                dst = tl.load(slots_ptr + b).to(tl.int64) * kv_stride_slot + kv_head * HEAD_DIM
                tl.store(k_ptr + dst + half, k1)
                tl.store(k_ptr + dst + D2 + half, k2)
                tl.store(v_ptr + dst + half, v1)
                tl.store(v_ptr + dst + D2 + half, v2)
            score = tl.sum(k1.to(tl.float32) * q1, axis=0) + tl.sum(k2.to(tl.float32) * q2, axis=0)
            m_new = tl.maximum(m_i, score)
            alpha = tl.exp(m_i - m_new)
            p_new = tl.exp(score - m_new)
            l_i = l_i * alpha + p_new
            acc1 = acc1 * alpha + p_new * v1.to(tl.float32)
            acc2 = acc2 * alpha + p_new * v2.to(tl.float32)
            m_i = m_new
        head = b * tl.num_programs(1) + h
        row = head * SPLITS + s
        tl.store(acc_ptr + row * HEAD_DIM + half, acc1)
        tl.store(acc_ptr + row * HEAD_DIM + D2 + half, acc2)
        tl.store(m_ptr + row, m_i)
        tl.store(l_ptr + row, l_i)
        if MERGE:
            tl.debug_barrier()                          # every thread's stores before the count
            if tl.atomic_add(counter_ptr + head, 1) == SPLITS - 1:     # acq_rel, GPU scope
                rows = head * SPLITS + tl.arange(0, SPLITS_POW2)
                present = tl.arange(0, SPLITS_POW2) < SPLITS
                ms = tl.load(m_ptr + rows, mask=present, other=float("-inf"), cache_modifier=".cg")
                ls = tl.load(l_ptr + rows, mask=present, other=0.0, cache_modifier=".cg")
                weight = tl.where(present, tl.exp(ms - tl.max(ms, axis=0)), 0.0)
                at = acc_ptr + rows[:, None] * HEAD_DIM + half[None, :]
                a1 = tl.load(at, mask=present[:, None], other=0.0, cache_modifier=".cg")
                a2 = tl.load(at + D2, mask=present[:, None], other=0.0, cache_modifier=".cg")
                total = tl.sum(ls * weight, axis=0)
                dst = out_ptr + head * HEAD_DIM
                tl.store(dst + half, (tl.sum(a1 * weight[:, None], axis=0) / total)
                         .to(out_ptr.dtype.element_ty))
                tl.store(dst + D2 + half, (tl.sum(a2 * weight[:, None], axis=0) / total)
                         .to(out_ptr.dtype.element_ty))
                tl.store(counter_ptr + head, 0)         # ready for the next call


def rope_and_store(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
                   slot_mapping: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                   heads: int, kv_heads: int) -> torch.Tensor:
    """From the fused projection ``qkv [tokens, (heads + 2 kv_heads) * d]``: rotate queries and keys
    by ``positions`` (tables ``cos/sin [max_len, d]``), store keys and values at ``slot_mapping``
    of the layer's cache ``[slots, kv_heads, d]``; return the rotated queries
    ``[tokens, heads, d]``."""
    if triton is None:
        raise RuntimeError("rope_and_store needs Triton (pip install triton)")
    tokens = qkv.shape[0]
    head_dim = k_cache.shape[-1]
    if qkv.stride(-1) != 1 or not (cos.is_contiguous() and sin.is_contiguous()
                                   and k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError("rope_and_store needs contiguous rows")
    q = torch.empty(tokens, heads, head_dim, dtype=qkv.dtype, device=qkv.device)
    _rope_store_kernel[(tokens, heads + 2 * kv_heads)](
        qkv, cos, sin, positions, slot_mapping, q, k_cache, v_cache, qkv.stride(0), q.stride(0),
        kv_heads * head_dim,                    # contiguous cache: one slot = kv_heads x d values
        HEADS=heads, KV_HEADS=kv_heads, HEAD_DIM=head_dim)
    return q


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     block_tables: torch.Tensor, context_lens: torch.Tensor, length: int,
                     block_size: int, scale: float) -> torch.Tensor:
    """``softmax(q K^T * scale) V`` for one query per sequence over its first ``context_lens[b]``
    cached keys -> ``[B, heads, d]`` in ``q``'s dtype. ``length`` bounds every context length
    (it fixes the launch grid, so a CUDA graph captured for a length bucket stays valid)."""
    if triton is None:
        raise RuntimeError("decode_attention needs Triton (pip install triton)")
    batch, heads, head_dim = q.shape
    kv_heads = k_cache.shape[-2]
    if (heads % kv_heads or head_dim & (head_dim - 1) or k_cache.stride(-1) != 1
            or q.stride(-1) != 1):
        raise ValueError("decode_attention needs heads divisible by kv_heads, a power-of-two head "
                         "dim and contiguous head vectors")
    k_cache, v_cache = k_cache.view(-1, kv_heads, head_dim), v_cache.view(-1, kv_heads, head_dim)
    splits, chunk = num_splits(length)
    acc = torch.empty(batch, heads, splits, head_dim, dtype=torch.float32, device=q.device)
    m = torch.empty(batch, heads, splits, dtype=torch.float32, device=q.device)
    lse = torch.empty_like(m)
    _chunk_kernel[(batch, heads, splits)](
        q, k_cache, v_cache, block_tables, context_lens, acc, m, lse,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), block_tables.stride(0),
        scale, CHUNK=chunk, BLOCK_SIZE=block_size, GROUP=heads // kv_heads, HEAD_DIM=head_dim,
        BLOCK=BLOCK_N, SPLITS=splits)
    out = torch.empty(batch, heads, head_dim, dtype=q.dtype, device=q.device)
    _merge_kernel[(batch, heads)](acc, m, lse, out, out.stride(0), out.stride(1), HEAD_DIM=head_dim,
                                  SPLITS=splits, SPLITS_POW2=triton.next_power_of_2(splits))
    return out


def rope_store_attention(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                         positions: torch.Tensor, slot_mapping: torch.Tensor,
                         k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                         context_lens: torch.Tensor, length: int, block_size: int, scale: float,
                         heads: int, kv_heads: int,
                         counters: torch.Tensor | None = None) -> torch.Tensor:
    """``rope_and_store`` and ``decode_attention`` in one kernel: a decode step's attention
    straight from the Q/K/V projection ``qkv [B, (heads + 2 kv_heads) * d]`` -> ``[B, heads, d]``;
    the new keys and values are stored at ``slot_mapping`` of the layer's cache ``[slots,
    kv_heads, d]`` as ``rope_and_store`` stores them. ``counters``: int32 zeros, at least
    ``B * heads``, kept between calls (the kernel leaves them zero): then the chunks are merged
    inside the kernel too; without it, by the merge kernel."""
    if triton is None:
        raise RuntimeError("rope_store_attention needs Triton (pip install triton)")
    batch, head_dim = qkv.shape[0], k_cache.shape[-1]
    if (heads % kv_heads or head_dim & (head_dim - 1) or qkv.stride(-1) != 1
            or not (cos.is_contiguous() and sin.is_contiguous() and k_cache.is_contiguous()
                    and v_cache.is_contiguous())):
        raise ValueError("rope_store_attention needs heads divisible by kv_heads, a power-of-two "
                         "head dim and contiguous rows")
    if counters is not None and (counters.dtype != torch.int32
                                 or counters.numel() < batch * heads):
        raise ValueError(f"counters must be int32 zeros of at least {batch * heads} values")
    splits, chunk = num_splits(length)
    acc = torch.empty(batch, heads, splits, head_dim, dtype=torch.float32, device=qkv.device)
    m = torch.empty(batch, heads, splits, dtype=torch.float32, device=qkv.device)
    lse = torch.empty_like(m)
    out = torch.empty(batch, heads, head_dim, dtype=qkv.dtype, device=qkv.device)
    pow2 = triton.next_power_of_2(splits)
    _rope_chunk_kernel[(batch, heads, splits)](
        qkv, cos, sin, positions, slot_mapping, k_cache, v_cache, block_tables, context_lens,
        acc, m, lse, out, m if counters is None else counters, qkv.stride(0),
        kv_heads * head_dim, block_tables.stride(0), scale, HEADS=heads, KV_HEADS=kv_heads,
        CHUNK=chunk, BLOCK_SIZE=block_size, GROUP=heads // kv_heads, HEAD_DIM=head_dim,
        BLOCK=BLOCK_N, SPLITS=splits, SPLITS_POW2=pow2, MERGE=counters is not None)
    if counters is None:
        _merge_kernel[(batch, heads)](acc, m, lse, out, out.stride(0), out.stride(1),
                                      HEAD_DIM=head_dim, SPLITS=splits, SPLITS_POW2=pow2)
    return out
