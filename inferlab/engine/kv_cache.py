"""The KV cache: keys and values of past tokens, kept so each new token costs O(n), not O(n^2).

Introduced in lesson 05. Without a cache, generating token ``n`` re-runs the model over all
``n`` tokens; with one, each layer stores the keys and values it computed and the next step
only computes them for the one new token. The price is memory, per token:

    layers x 2 (K and V) x KV heads x head dim x bytes per value      (``kv_bytes_per_token``)

Grouped-query attention (GQA) shares each KV head between several query heads, so a model
with 9 query heads but 3 KV heads stores 3x less than multi-head attention would.

Two layouts of the same storage, each a set of *slots* of one token per layer:

* ``StaticKVCache`` (lesson 05, as in gpt-fast): every sequence owns one row of
  ``max_len`` slots, reserved up front whatever its real length.
* ``PagedKVCache`` (lesson 07, as in vLLM): slots come in blocks of ``block_size`` tokens;
  a sequence's *block table* lists the blocks that hold it, so memory is taken as it grows.

A static cache is a paged cache whose only block per sequence is ``max_len`` long, so both
share one interface: ``write`` (store the new tokens' K/V at their slots) and ``gather``
(collect each sequence's K/V, padded to a common length, for attention). One extra block at
the end is scratch space that padded rows of a CUDA-graph batch may write to.
"""
from __future__ import annotations

import torch


def slot(block_table, position, block_size: int):
    """Flat cache slot of token ``position``: ``block_table[position // block_size] * block_size
    + position % block_size`` (its block, then its offset in the block).

    The one place the engine spells this out in Python: ``block_table`` is a list and
    ``position`` an int, or ``block_table`` is a ``[batch, width]`` tensor and ``position`` a
    tensor of positions (one row of slots per sequence). The Triton kernels of ``gpu_kernels``
    compute the same expression on the GPU.
    """
    if isinstance(block_table, torch.Tensor) and block_table.dim() == 2:
        return block_table[:, position // block_size] * block_size + position % block_size
    return block_table[position // block_size] * block_size + position % block_size


def kv_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, dtype_bytes: int) -> int:
    """Bytes the cache needs per token: layers x 2 (K, V) x KV heads x head dim x bytes."""
    return num_layers * 2 * num_kv_heads * head_dim * dtype_bytes


def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, num_tokens: int,
                   dtype_bytes: int = 2, batch: int = 1) -> int:
    """Bytes of K/V for ``batch`` sequences of ``num_tokens`` tokens each."""
    return kv_bytes_per_token(num_layers, num_kv_heads, head_dim, dtype_bytes) * num_tokens * batch


class PagedKVCache:
    """K/V storage in blocks: per layer ``[num_blocks + 1, block_size, kv_heads, head_dim]``.

    Which block belongs to which sequence is decided elsewhere (``BlockManager``); this class
    only stores, writes and gathers. The last block (index ``num_blocks``) is scratch.
    Each layer's K and V is its own tensor, kept flat as ``[slots, kv_heads, head_dim]``: written
    in place with ``index_put_``, which ``torch.compile`` fuses into the kernel that computes the
    keys (a write into a *view* of a shared tensor made it copy the whole cache every step).
    """

    def __init__(self, num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int,
                 head_dim: int, dtype=torch.float32, device="cpu"):
        if min(num_layers, num_blocks, block_size, num_kv_heads, head_dim) < 1:
            raise ValueError("every KV-cache dimension must be >= 1")
        self.num_layers, self.num_blocks, self.block_size = num_layers, num_blocks, block_size
        self.num_kv_heads, self.head_dim = num_kv_heads, head_dim
        shape = ((num_blocks + 1) * block_size, num_kv_heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]

    @property
    def scratch_slot(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def blocks(self, tensor: torch.Tensor) -> torch.Tensor:
        """A layer's K or V seen as ``[num_blocks + 1, block_size, kv_heads, head_dim]``."""
        return tensor.view(-1, self.block_size, self.num_kv_heads, self.head_dim)

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def slot(self, block_table, position: int) -> int:
        """Flat slot index of ``position`` in a sequence with ``block_table`` (see ``slot``)."""
        return slot(block_table, position, self.block_size)

    def write(self, layer: int, slot_mapping: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> None:
        """Store ``k, v`` (``[tokens, kv_heads, head_dim]``) at the flat slots ``slot_mapping``."""
        self.k[layer].index_put_((slot_mapping,), k)
        self.v[layer].index_put_((slot_mapping,), v)

    def gather(self, layer: int, block_tables: torch.Tensor, length: int):
        """K, V of each sequence, ``[batch, length, kv_heads, head_dim]`` (padding = stale data)."""
        blocks = (length + self.block_size - 1) // self.block_size
        index = block_tables[:, :blocks].reshape(-1)      # index_select: ~10x faster than k[tables]
        shape = (block_tables.shape[0], blocks * self.block_size, self.num_kv_heads, self.head_dim)
        k = self.blocks(self.k[layer]).index_select(0, index).view(shape)[:, :length]
        v = self.blocks(self.v[layer]).index_select(0, index).view(shape)[:, :length]
        return k, v

    def copy_blocks(self, pairs) -> None:
        """Copy whole blocks ``src -> dst`` in every layer (copy-on-write, lesson 07)."""
        for src, dst in pairs:
            for tensor in self.k + self.v:
                blocks = self.blocks(tensor)
                blocks[dst].copy_(blocks[src])


class StaticKVCache(PagedKVCache):
    """One contiguous row of ``max_len`` slots per sequence (``max_seqs`` rows), as in gpt-fast.

    Simple and fast to index, but every sequence reserves ``max_len`` tokens of memory even if
    it stops after ten: lesson 07 measures that waste.
    """

    def __init__(self, num_layers: int, max_seqs: int, max_len: int, num_kv_heads: int,
                 head_dim: int, dtype=torch.float32, device="cpu"):
        super().__init__(num_layers, max_seqs, max_len, num_kv_heads, head_dim, dtype, device)

    def gather(self, layer: int, block_tables: torch.Tensor, length: int):
        k, v = self.blocks(self.k[layer])[:, :length], self.blocks(self.v[layer])[:, :length]
        if self.num_blocks == 1 and block_tables.shape[0] == 1:
            return k[:1], v[:1]                      # one sequence, in row 0: no copy at all
        rows = block_tables[:, 0]                    # a sequence's only block is its row
        return k.index_select(0, rows), v.index_select(0, rows)
