"""Attention without the N x N matrix: tiling and the online softmax (FlashAttention's idea).

Introduced in lesson 09 (Dao et al., NeurIPS 2022, "FlashAttention: Fast and Memory-Efficient
Exact Attention with IO-Awareness"; FlashAttention-2, Dao 2023). Standard attention computes
``softmax(Q K^T / sqrt(d)) V`` by materialising the ``N x N`` score matrix: memory grows as
``N^2`` and, on a GPU, the matrix makes round trips through slow HBM.

The *online softmax* (Milakov & Gimelshein 2018) lets us visit the keys in tiles instead. For
each query we keep a running maximum ``m``, a running normaliser ``l = sum exp(s - m)`` and an
unnormalised output ``acc = sum exp(s - m) v``. A new tile of scores ``s_t`` updates them::

    m_new = max(m, max(s_t))
    l     = l * exp(m - m_new) + sum(exp(s_t - m_new))
    acc   = acc * exp(m - m_new) + exp(s_t - m_new) @ v_t
    m     = m_new

and at the end ``out = acc / l``: exactly softmax attention, with only one tile of scores alive
at a time (memory O(N x tile) instead of O(N^2)). FlashAttention runs this inside one GPU kernel
whose tiles stay in on-chip SRAM; ``tiled_attention`` below is the same arithmetic in PyTorch,
to read and to test against, not to be fast.

``BlockLoads`` and ``by_query_blocks`` run lesson 09's causal exercise over whole sequences: the
keys reach the student's function one block at a time, and the blocks it reads are counted.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def naive_attention(q, k, v, causal: bool = True) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` with the full ``[..., N, N]`` score matrix (fp32 softmax)."""
    scores = (q @ k.transpose(-2, -1)).float() * (q.shape[-1] ** -0.5)
    if causal:
        n, m = scores.shape[-2:]
        keep = torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n)
        scores = scores.masked_fill(~keep, float("-inf"))
    return (scores.softmax(-1).to(v.dtype) @ v)


def tiled_attention(q, k, v, causal: bool = True, block: int = 128) -> torch.Tensor:
    """The same result as ``naive_attention``, visiting keys ``block`` at a time (online softmax).

    ``q [..., N, d]``, ``k, v [..., M, d]``; causal alignment is bottom-right (the last query
    sees every key), as in a KV cache.
    """
    if block < 1:
        raise ValueError("block must be >= 1")
    n, m_keys, d = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = d ** -0.5
    shape = q.shape[:-1]
    m = torch.full(shape, float("-inf"), device=q.device)
    l_sum = torch.zeros(shape, device=q.device)          # the paper's l: running sum of exp
    acc = torch.zeros(*shape, v.shape[-1], device=q.device)
    rows = torch.arange(n, device=q.device)[:, None] + (m_keys - n)     # each query's position
    for start in range(0, m_keys, block):
        kt, vt = k[..., start:start + block, :], v[..., start:start + block, :]
        s = (q @ kt.transpose(-2, -1)).float() * scale
        if causal:
            cols = torch.arange(start, start + kt.shape[-2], device=q.device)[None, :]
            s = s.masked_fill(cols > rows, float("-inf"))
        m_new = torch.maximum(m, s.amax(-1))
        safe = torch.where(m_new == float("-inf"), 0.0, m_new)          # rows with no key yet
        p = torch.exp(s - safe[..., None])
        correction = torch.exp(m - safe)
        l_sum = l_sum * correction + p.sum(-1)
        acc = acc * correction[..., None] + p @ vt.float()
        m = m_new
    return (acc / l_sum[..., None]).to(v.dtype)


class OneTileTensor(torch.Tensor):
    """A key or value block from a ``BlockLoads`` with a ``limit``: every tensor computed from it
    (scores, probabilities, sums) must fit within ``limit`` along every axis, and none may be
    written into a larger one - the keys of several blocks are never held at once, as in a
    kernel whose SRAM holds one tile. ``as_subclass(torch.Tensor)`` gives a plain tensor back.
    Each ``limit`` has its own subclass (``guarded_type``)."""

    limit = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.as_subclass:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if func is torch.Tensor.__setitem__:
            cls._check(func, args[0])
        out = super().__torch_function__(func, types, args, kwargs)
        for result in out if isinstance(out, (tuple, list)) else (out,):
            cls._check(func, result)
        return out

    @classmethod
    def _check(cls, func, result):
        if isinstance(result, torch.Tensor) and result.dim() and max(result.shape) > cls.limit:
            raise RuntimeError(
                f"{getattr(func, '__name__', func)} made a tensor of shape {tuple(result.shape)} "
                f"from the key/value blocks: work on one block at a time (at most {cls.limit} "
                "along any axis) and fold it into the running state, instead of one softmax "
                "over several blocks")


_GUARDED_TYPES: dict[int, type] = {}


def guarded_type(limit: int) -> type:
    """The ``OneTileTensor`` subclass for this ``limit`` (made once)."""
    if limit not in _GUARDED_TYPES:
        _GUARDED_TYPES[limit] = type(f"OneTileTensor{limit}", (OneTileTensor,),
                                     {"limit": limit, "__module__": __name__})
    return _GUARDED_TYPES[limit]


class BlockLoads(Sequence):
    """The key/value blocks of one head, handed out one at a time - and counted.

    A FlashAttention kernel cannot index K and V at will: it copies one tile at a time from
    slow memory (HBM) into on-chip SRAM. Lesson 09 gives the student's causal attention its keys
    this way: ``blocks[j]`` is ``(k[j*block:(j+1)*block], v[...])`` (views, no copy), and every
    access is recorded in ``loads``, so the lesson can show how many tiles were read.

    With ``limit`` (the tests' setting) the blocks come as ``OneTileTensor``s: anything computed
    from them longer than ``limit`` along an axis - all the keys concatenated, or one row of
    scores over several blocks - raises. And, as in a kernel's SRAM, one tile buffer serves every
    load: loading block ``j + 1`` overwrites the keys and values of block ``j`` that were handed
    out before. Work that folds each block into a running state is unaffected; work that keeps
    blocks (or their score tiles with their values) for a second pass reads the wrong values.
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor, block: int, limit: int | None = None):
        if block < 1:
            raise ValueError("block must be >= 1")
        self.k, self.v, self.block, self.limit = k, v, block, limit
        self.loads: list[int] = []
        self._tile = None                    # (k buffer, v buffer) with a limit: the SRAM tile

    def __len__(self) -> int:
        return -(-self.k.shape[-2] // self.block)

    def __getitem__(self, j):
        if isinstance(j, slice):
            raise TypeError("one block at a time: blocks[j], not a slice")
        if not -len(self) <= j < len(self):
            raise IndexError(j)
        j %= len(self)
        self.loads.append(j)
        rows = slice(j * self.block, (j + 1) * self.block)
        k, v = self.k[..., rows, :], self.v[..., rows, :]
        if self.limit is not None:
            if self._tile is None:
                self._tile = (self.k[..., :self.block, :].clone(),
                              self.v[..., :self.block, :].clone())
            n = k.shape[-2]
            tile_k, tile_v = self._tile[0][..., :n, :], self._tile[1][..., :n, :]
            tile_k.copy_(k)
            tile_v.copy_(v)
            guarded = guarded_type(self.limit)
            k, v = tile_k.as_subclass(guarded), tile_v.as_subclass(guarded)
        return k, v


def by_query_blocks(block_fn, q, k, v, block: int = 64):
    """Causal attention of ``q, k, v [..., N, d]`` computed one query block at a time by
    ``block_fn(q_block, q_start, kv_blocks)`` (lesson 09's exercise), head by head.

    Returns ``(out, loads)``: the output ``[..., N, dv]`` and how many key/value blocks the
    function read in all (``BlockLoads``).
    """
    heads_q = q.reshape(-1, *q.shape[-2:])
    heads_k, heads_v = k.reshape(-1, *k.shape[-2:]), v.reshape(-1, *v.shape[-2:])
    outs, loads = [], 0
    for qh, kh, vh in zip(heads_q, heads_k, heads_v):
        blocks = BlockLoads(kh, vh, block)
        outs.append(torch.cat([block_fn(qh[start:start + block], start, blocks)
                               for start in range(0, qh.shape[0], block)]))
        loads += len(blocks.loads)
    return torch.stack(outs).reshape(*q.shape[:-1], v.shape[-1]), loads


# ------------------------------------------------------------------------ measurements
def sdpa_backends() -> dict:
    """PyTorch SDPA backends by name (those this PyTorch knows)."""
    from torch.nn.attention import SDPBackend
    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "math": "MATH",
             "cudnn": "CUDNN_ATTENTION"}
    return {k: getattr(SDPBackend, v) for k, v in names.items() if hasattr(SDPBackend, v)}


def sdpa(q, k, v, backend: str | None = None, causal: bool = True) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` on ``[B, H, N, d]``, optionally forcing a backend."""
    if backend is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    from torch.nn.attention import sdpa_kernel
    with sdpa_kernel([sdpa_backends()[backend]]):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _measure(fn, device, repeats: int):
    """(median seconds, extra peak bytes) of ``fn()``; ``None`` if it fails (OOM, no kernel)."""
    from inferlab.lab.bench import peak_memory, time_fn
    try:
        _, peak = peak_memory(fn, device)
        timing = time_fn(fn, warmup=1, repeats=repeats, device=device)
        return timing.median, peak
    except (RuntimeError, torch.OutOfMemoryError) as error:  # no kernel for this input, or OOM
        if "out of memory" in str(error).lower() and torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
        return None


def benchmark_attention(lengths, device="cuda", batch: int = 1, heads: int = 32,
                        head_dim: int = 128, dtype=torch.float16, repeats: int = 5,
                        naive_limit: int = 16384, tiled_limit: int = 8192) -> list[dict]:
    """Causal attention forward: time and extra peak memory of each implementation per length."""
    rows = []
    for n in lengths:
        gen = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn(batch, heads, n, head_dim, device=device, dtype=dtype, generator=gen)
                   for _ in range(3))
        flops = 4 * batch * heads * n * n * head_dim / 2              # causal: half the matrix
        candidates = {"naive": lambda: naive_attention(q, k, v)} if n <= naive_limit else {}
        if n <= tiled_limit:
            candidates["tiled (PyTorch, online softmax)"] = (
                lambda: tiled_attention(q, k, v, block=512))
        for name in sdpa_backends():
            candidates[f"sdpa {name}"] = (lambda b=name: sdpa(q, k, v, b))
        for name, fn in candidates.items():
            got = _measure(fn, device, repeats)
            row = {"length": n, "impl": name, "ms": None, "peak_MB": None, "TFLOPs": None}
            if got is not None:
                seconds, peak = got
                row.update(ms=round(seconds * 1e3, 3), peak_MB=round(peak / 2 ** 20, 1),
                           TFLOPs=round(flops / seconds / 1e12, 1))
            rows.append(row)
            print(row, flush=True)
        q = k = v = None          # free them before the next length
    return rows
