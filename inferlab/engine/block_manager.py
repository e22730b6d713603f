"""Handing out KV-cache blocks: allocate, append, free, share prefixes, copy on write.

Introduced in lesson 07 (PagedAttention, Kwon et al., SOSP 2023). Reserving ``max_len``
contiguous slots per request wastes whatever the request never uses. Instead the cache is cut
into fixed-size *blocks* of ``block_size`` tokens, and each sequence keeps a *block table*: the
list of physical blocks holding its tokens in order. A sequence takes a new block only when its
last one is full, so at most ``block_size - 1`` slots per sequence are ever wasted.

Blocks are reference counted, which makes sharing cheap:

* **prefix caching** - a full block is identified by a hash of its tokens *and of everything
  before it*; a new prompt that starts with the same blocks (a shared system prompt) points its
  block table at the existing blocks instead of computing and storing them again.
* **fork** - a child sequence (parallel sampling, beam search) starts with its parent's blocks.
* **copy on write** - before a sequence writes into a block that others still reference, it gets
  its own copy (``append_slot`` returns the ``(src, dst)`` pairs the cache must copy).
"""
from __future__ import annotations

from collections import deque

from .sequence import Sequence


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "token_ids")

    def __init__(self, block_id: int):
        self.block_id = block_id
        self.ref_count = 0
        self.hash = -1
        self.token_ids: tuple = ()

    def __repr__(self) -> str:
        return f"Block({self.block_id}, refs={self.ref_count})"


def block_hash(token_ids, previous_hash: int = -1) -> int:
    """Hash of a full block: its tokens and the hash of the block before it (the whole prefix)."""
    return hash((previous_hash, tuple(token_ids)))


class BlockManager:
    """Owns ``num_blocks`` blocks of ``block_size`` token slots each."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError("need num_blocks >= 1 and block_size >= 1")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_block_ids: deque[int] = deque(range(num_blocks))
        self.used_block_ids: set[int] = set()
        self.hash_to_block: dict[int, int] = {}

    # ------------------------------------------------------------------------- bookkeeping
    @property
    def num_free_blocks(self) -> int:
        return len(self.free_block_ids)

    @property
    def num_used_blocks(self) -> int:
        return len(self.used_block_ids)

    def _take_free_block(self) -> int:
        block_id = self.free_block_ids.popleft()  # the least recently freed block
        block = self.blocks[block_id]
        if block.hash != -1 and self.hash_to_block.get(block.hash) == block_id:
            del self.hash_to_block[block.hash]    # its old content is about to be overwritten
        block.hash, block.token_ids, block.ref_count = -1, (), 1
        self.used_block_ids.add(block_id)
        return block_id

    def _register(self, block_id: int, token_ids, previous_hash: int) -> None:
        if self.enable_prefix_caching:
            block = self.blocks[block_id]
            block.hash, block.token_ids = block_hash(token_ids, previous_hash), tuple(token_ids)
            self.hash_to_block[block.hash] = block_id

    def _release(self, block_id: int) -> None:
        block = self.blocks[block_id]
        block.ref_count -= 1
        if block.ref_count == 0:
            self.used_block_ids.remove(block_id)
            self.free_block_ids.append(block_id)  # keeps its hash: may be revived by a hit

    # ---------------------------------------------------------------------------- prefill
    def can_allocate(self, seq: Sequence) -> bool:
        """Enough free blocks for all of ``seq``'s tokens (ignoring possible prefix hits)."""
        return self.num_free_blocks >= seq.num_blocks(self.block_size)

    def allocate(self, seq: Sequence, register: bool = True) -> None:
        """Give ``seq`` blocks for all its tokens, reusing cached full prefix blocks; sets
        ``seq.num_cached_tokens`` to the number of tokens found in them.

        ``register=False`` (chunked prefill): its new full blocks are not offered to other
        sequences yet - their keys/values are computed over several steps - until
        ``register_computed`` says they are."""
        if seq.block_table:
            raise RuntimeError(f"sequence {seq.seq_id} already has blocks")
        if not self.can_allocate(seq):
            raise RuntimeError(f"not enough free blocks for sequence {seq.seq_id}")
        bs, tokens = self.block_size, seq.token_ids
        previous, missed = -1, False
        seq.num_cached_tokens = 0
        for i in range(seq.num_blocks(bs)):
            chunk = tokens[i * bs:(i + 1) * bs]
            full = len(chunk) == bs
            # The block holding the last token is never a hit: its logits must be computed.
            reusable = self.enable_prefix_caching and (i + 1) * bs <= len(tokens) - 1
            h = block_hash(chunk, previous) if full else -1
            block_id = self.hash_to_block.get(h, -1) if reusable and not missed else -1
            if block_id != -1 and self.blocks[block_id].token_ids == tuple(chunk):
                block = self.blocks[block_id]
                if block_id in self.used_block_ids:
                    block.ref_count += 1
                else:                                   # freed but intact: revive it
                    self.free_block_ids.remove(block_id)
                    self.used_block_ids.add(block_id)
                    block.ref_count = 1
                seq.num_cached_tokens += bs     # the engine counts them (EngineStats)
            else:
                missed = True
                block_id = self._take_free_block()
                if full and register:
                    self._register(block_id, chunk, previous)
            seq.block_table.append(block_id)
            previous = h

    def register_computed(self, seq: Sequence, num_tokens: int) -> None:
        """The first ``num_tokens`` of ``seq`` now have their keys/values in the cache: offer its
        full blocks among them for prefix sharing (those ``allocate(register=False)`` held back)."""
        if not self.enable_prefix_caching:
            return
        bs, previous = self.block_size, -1
        for index in range(min(num_tokens, len(seq)) // bs):
            block = self.blocks[seq.block_table[index]]
            if block.hash == -1:
                if index and previous == -1:
                    return                       # an unregistered block before it: keep order
                self._register(block.block_id, seq.token_ids[index * bs:(index + 1) * bs],
                               previous)
            previous = block.hash

    # ----------------------------------------------------------------------------- decode
    def _needs_block(self, seq: Sequence) -> bool:
        position = len(seq) - 1          # the token whose K/V the next step writes
        if position // self.block_size >= len(seq.block_table):
            return True                  # its block does not exist yet
        return self.blocks[seq.block_table[-1]].ref_count > 1  # shared: copy on write

    def can_append(self, seq: Sequence) -> bool:
        return not self._needs_block(seq) or self.num_free_blocks >= 1

    def append_slot(self, seq: Sequence) -> list[tuple[int, int]]:
        """Make room for ``seq``'s newest token; return block copies ``(src, dst)`` to perform."""
        copies = []
        position = len(seq) - 1
        if position // self.block_size >= len(seq.block_table):
            seq.block_table.append(self._take_free_block())
        elif self.blocks[seq.block_table[-1]].ref_count > 1:
            shared = seq.block_table[-1]
            seq.block_table[-1] = self._take_free_block()
            self._release(shared)
            copies.append((shared, seq.block_table[-1]))
        if (position + 1) % self.block_size == 0:  # this write fills the block: make it sharable
            index = position // self.block_size
            previous = self.blocks[seq.block_table[index - 1]].hash if index else -1
            chunk = seq.token_ids[index * self.block_size:(index + 1) * self.block_size]
            self._register(seq.block_table[index], chunk, previous)
        return copies

    def reserve_next_slots(self, seqs) -> bool:
        """Make room, in each of ``seqs``, for the token after its newest before that token is
        known (the engine running a step ahead): a new block where that position starts one.
        False, changing nothing, where a position needs a copy-on-write or the free blocks do not
        suffice. ``append_slot`` after the token is appended then only registers a block it
        fills."""
        new_blocks = 0
        for seq in seqs:
            if len(seq) // self.block_size >= len(seq.block_table):
                new_blocks += 1
            elif self.blocks[seq.block_table[-1]].ref_count > 1:
                return False
        if new_blocks > self.num_free_blocks:
            return False
        for seq in seqs:
            if len(seq) // self.block_size >= len(seq.block_table):
                seq.block_table.append(self._take_free_block())
        return True

    # ------------------------------------------------------------------------- free, fork
    def free(self, seq: Sequence) -> None:
        """Return ``seq``'s blocks (those still shared stay in use for the others)."""
        for block_id in reversed(seq.block_table):
            self._release(block_id)
        seq.block_table = []

    def fork(self, parent: Sequence, child: Sequence) -> None:
        """``child`` shares all of ``parent``'s blocks (its tokens must start with the parent's)."""
        if child.block_table:
            raise RuntimeError(f"sequence {child.seq_id} already has blocks")
        for block_id in parent.block_table:
            self.blocks[block_id].ref_count += 1
        child.block_table = list(parent.block_table)
        child.num_cached_tokens = len(parent)
