"""A step's inputs: the sequences the scheduler picked, packed into the tensors of one forward pass.

Introduced in lesson 06 (why a batch of sequences of different lengths needs no padding in the
linear layers) and lesson 07 (slots and block tables). Every sequence of a step brings ``q`` new
tokens at positions ``[ctx - q, ctx)`` - its whole uncached prompt in a prefill step, its newest
token in a decode step - and attends over its ``ctx`` cached tokens. ``pack_step``:

* concatenates the new tokens of all sequences (``input_ids``, ``positions``): the linear layers,
  where almost all the work is, see one ``[tokens, hidden]`` matrix with no padding;
* maps each new token to the cache slot its K/V goes to (``slot_mapping``, through the block
  table: ``kv_cache.slot``);
* pads only what attention needs: the block tables, and - for gathered attention - a mask of the
  keys each query may see and the row of each token in a padded ``[batch, max_query]`` layout.

``pack_decode`` / ``unpack_decode`` do the same for decode steps replayed from a CUDA graph
(``cuda_graphs``): every input in one int64 buffer of fixed shape, written from pinned memory
with one copy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .kv_cache import slot


@dataclass
class StepInputs:
    """Everything one forward pass needs, packed over the step's sequences."""
    input_ids: torch.Tensor      # [N] new tokens of all sequences, one after another
    positions: torch.Tensor      # [N] their positions in their sequences
    slot_mapping: torch.Tensor   # [N] flat cache slot each new token's K/V goes to
    block_tables: torch.Tensor   # [B, max blocks] (padded with 0)
    context_lens: torch.Tensor   # [B] tokens each sequence attends over (cached + new)
    max_len: int                 # L = max(context_lens)
    max_query: int               # Q = max new tokens of a sequence
    pad_index: torch.Tensor | None  # [N] row of each new token in the padded [B*Q] layout
    mask: torch.Tensor | None    # [B, 1, Q, L] which keys each query may see (None: all)
    logits_index: torch.Tensor | None  # rows of the packed tokens whose logits we need (None: all)
    paged_decode: bool = False   # a decode step the attention backend runs over the blocks
    parts: list | None = None    # chunked prefill: attention of the decode tokens, then of the
    #                              prompt chunks, each over its own inputs (no padding to a chunk)


def pack_step(seqs, is_prefill: bool, block_size: int, max_model_len: int, device,
              all_logits: bool = False, paged_decode: bool = False,
              spans: list | None = None) -> StepInputs:
    """Pack the new tokens of ``seqs``: a prefill step computes every uncached token, a decode
    step the newest token only. ``paged_decode``: the backend attends over the blocks in decode
    steps, so no mask is built for them. ``spans`` (chunked prefill, a multi-token step): the
    ``(start, end)`` token range each sequence computes instead; its logits row is that of
    ``end - 1``."""
    ids, positions, slots, ctx_lens, q_lens, logits_index = [], [], [], [], [], []
    for i, seq in enumerate(seqs):
        n = len(seq)
        start = seq.num_cached_tokens if is_prefill else n - 1
        if spans is not None:
            start, n = spans[i]
        if start >= n:
            raise ValueError(f"sequence {seq.seq_id} has no token to compute")
        table = seq.block_table
        ids += seq.token_ids[start:n]
        positions += range(start, n)
        slots += [slot(table, p, block_size) for p in range(start, n)]
        if all_logits:
            logits_index += range(len(ids) - (n - start), len(ids))
        else:
            logits_index.append(len(ids) - 1)
        ctx_lens.append(n)
        q_lens.append(n - start)
    max_len, max_query = max(ctx_lens), max(q_lens)
    if max_len > max_model_len:
        raise ValueError(f"a sequence of {max_len} tokens exceeds max_model_len={max_model_len}")
    width = (max_len + block_size - 1) // block_size
    tables = [s.block_table[:width] + [0] * (width - len(s.block_table[:width])) for s in seqs]

    def t(values):
        return torch.tensor(values, dtype=torch.long, device=device)

    pad_index = mask = None
    paged = paged_decode and not is_prefill and not all_logits
    uniform = all(q == max_query for q in q_lens) and all(c == max_len for c in ctx_lens)
    if not paged and not (uniform and max_query == 1):
        if not all(q == max_query for q in q_lens):
            pad_index = t([b * max_query + j for b, q in enumerate(q_lens) for j in range(q)])
        # query j of sequence b sits at position ctx_b - q_b + j; padding sees key 0 only
        qpos = torch.zeros(len(seqs), max_query, dtype=torch.long)
        for b, (c, q) in enumerate(zip(ctx_lens, q_lens)):
            qpos[b, :q] = torch.arange(c - q, c)
        keys = torch.arange(max_len)
        mask = (keys[None, None, :] <= qpos[:, :, None]).to(device)[:, None]
    every_row = len(logits_index) == len(ids)        # decode steps: one token, one logits row each
    inputs = StepInputs(t(ids), t(positions), t(slots), t(tables), t(ctx_lens), max_len,
                        max_query, pad_index, mask, None if every_row else t(logits_index), paged)
    decodes = 0                # the leading sequences that compute just their newest token
    while spans is not None and decodes < len(seqs) \
            and tuple(spans[decodes]) == (len(seqs[decodes]) - 1, len(seqs[decodes])):
        decodes += 1
    if spans is not None and 0 < decodes < len(seqs) and max_query > 1:
        # a mixed step (decode tokens first): padding each decode query to the chunk's width
        # would multiply the attention work, so each part attends separately
        inputs.parts = [pack_step(seqs[:decodes], False, block_size, max_model_len, device,
                                  paged_decode=paged_decode),
                        pack_step(seqs[decodes:], True, block_size, max_model_len, device,
                                  spans=spans[decodes:])]
    return inputs


# ------------------------------------------------------------ decode steps from a CUDA graph
def pack_decode(seqs, batch: int, width: int, block_size: int, scratch_slot: int) -> list[int]:
    """The int64 values of a graph's packed input ``[ids | positions | slots | ctx | tables]``,
    padded to ``batch`` rows (padding rows write their K/V to the cache's scratch slot)."""
    ids, pos, slots, ctx, tables = [], [], [], [], []
    for s in seqs:
        p = len(s) - 1
        ids.append(s.last_token)
        pos.append(p)
        slots.append(slot(s.block_table, p, block_size))
        ctx.append(p + 1)
        row = s.block_table[:width]
        tables += row + [0] * (width - len(row))
    pad = batch - len(seqs)
    return (ids + [0] * pad + pos + [0] * pad + slots + [scratch_slot] * pad
            + ctx + [1] * pad + tables + [0] * (pad * width))


def unpack_decode(packed: torch.Tensor, batch: int, width: int, length: int,
                  paged_decode: bool) -> StepInputs:
    """``StepInputs`` of a decode step from ``pack_decode``'s buffer (traced into the graph)."""
    ids, positions, slots, ctx = packed[:4 * batch].view(4, batch)
    tables = packed[4 * batch:].view(batch, width)
    mask = None
    if not paged_decode:
        keys = torch.arange(length, device=packed.device)
        mask = (keys[None, :] < ctx[:, None])[:, None, None, :]
    return StepInputs(ids, positions, slots, tables, ctx, length, 1, None, mask, None, paged_decode)


def empty_decode_buffer(batch: int, width: int, scratch_slot: int, device) -> torch.Tensor:
    """A packed buffer of ``batch`` padding rows (valid to run: context 1, scratch slots)."""
    packed = torch.zeros(4 * batch + batch * width, dtype=torch.long, device=device)
    packed[2 * batch:3 * batch] = scratch_slot
    packed[3 * batch:4 * batch] = 1
    return packed
