"""Running the model: one forward pass over the tokens of many sequences, reading the KV cache.

Introduced in lessons 05-07; CUDA graphs in lesson 09's GPU section. The runner holds a Llama-
family model as plain tensors (``LlamaWeights``) and computes, for a step's sequences:

* **prefill** - all not-yet-cached prompt tokens of each new sequence, in one pass;
* **decode** - the one newest token of each running sequence.

Both are the same computation: every sequence brings ``q`` new tokens at positions
``[ctx - q, ctx)`` and attends over its ``ctx`` cached tokens. New tokens are *packed* (no padding)
for the linear layers, where almost all the work is, and padded only inside attention. Keys and
values are written to the cache slots their block table names, then gathered back per sequence.

Two cheap wins over a naive port: the Q, K, V projections are one matrix multiply (and gate/up
another), and the vocabulary projection runs only on the last position of each sequence.

On a GPU, a batch-1 decode step is ~10 small kernels per layer: launching them from Python costs
more than running them. ``capture_decode`` records a whole step once as a **CUDA graph** (one
launch replays every kernel) for a fixed batch size and context length bucket, optionally after
``torch.compile`` has fused the small element-wise kernels. Where Triton runs (CUDA), decode steps
use the two kernels of ``gpu_kernels``: RoPE + cache write in one launch, and attention that reads
the cache through the block table up to each sequence's length, so one graph per batch size
serves every context length.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import gpu_kernels
from .kv_cache import PagedKVCache
from .weights import LayerWeights, LlamaWeights, ModelConfig, rms_norm, rotate_half  # noqa: F401


def grouped_attention(q, keys, values, mask, scale):
    """Attention written as two matmuls, each KV head serving its group of query heads.

    ``q [B, Q, heads, d]``, ``keys/values [B, L, kv_heads, d]``, ``mask [B, 1, Q, L]`` (True =
    may attend) -> ``[B, Q, heads, d]``. Query head ``h`` uses KV head ``h // group`` (GQA);
    grouping the queries avoids copying K/V ``group`` times. Softmax in fp32.
    """
    b, nq, heads, d = q.shape
    kv_heads, length = keys.shape[2], keys.shape[1]
    group = heads // kv_heads
    q = q.reshape(b, nq, kv_heads, group, d).permute(0, 2, 3, 1, 4).reshape(b, kv_heads, group * nq, d)
    scores = torch.matmul(q, keys.permute(0, 2, 3, 1)).float() * scale
    if mask is not None:
        scores = scores.view(b, kv_heads, group, nq, length).masked_fill(~mask[:, :, None], float("-inf"))
        scores = scores.view(b, kv_heads, group * nq, length)
    out = torch.matmul(scores.softmax(-1).to(values.dtype), values.transpose(1, 2))
    return out.view(b, kv_heads, group, nq, d).permute(0, 3, 1, 2, 4).reshape(b, nq, heads, d)


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
    slots = block_tables[:, pos // block_size] * block_size + pos % block_size       # [B, L]
    k = k_cache.view(-1, kv_heads, d)[slots]                                         # [B, L, kvh, d]
    v = v_cache.view(-1, kv_heads, d)[slots]
    qg = q.view(b, 1, kv_heads, heads // kv_heads, d).float()
    scores = (qg * k[:, :, :, None, :].float()).sum(-1) * scale                      # [B, L, kvh, g]
    scores = scores.masked_fill((pos[None, :] >= context_lens[:, None])[:, :, None, None], float("-inf"))
    out = (scores.softmax(1)[..., None] * v[:, :, :, None, :].float()).sum(1)         # [B, kvh, g, d]
    return out.to(q.dtype).reshape(b, heads, d)


# ------------------------------------------------------------------- a step's inputs
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
    logits_index: torch.Tensor   # rows of the packed tokens whose logits we need
    decode_kernel: str | None = None  # decode: attend straight over the blocks, with "fused"
    #                                   (paged_decode_attention) or "triton" (gpu_kernels.py)


class ModelRunner:
    """Forward passes of ``weights`` over sequences whose K/V live in ``cache``."""

    def __init__(self, weights: LlamaWeights, cache: PagedKVCache, max_model_len: int | None = None):
        self.weights, self.cache, self.config = weights, cache, weights.config
        c = self.config
        self.device, self.dtype = weights.device, weights.dtype
        self.scale = c.head_dim ** -0.5
        self.gqa = c.num_heads != c.num_kv_heads
        # PyTorch's fused CPU attention is slow in bf16/fp16 for short queries (measured 5 ms vs
        # 1 ms for a batch-32 decode step): there, plain matmuls with grouped heads win.
        self.math_attention = self.device.type == "cpu" and self.dtype != torch.float32
        self.split = [c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.num_kv_heads * c.head_dim]
        self.max_model_len = max_model_len or c.max_position
        self._rope_tables(self.max_model_len)
        # decode attention: "triton" (gpu_kernels.py, where Triton and CUDA are), "sdpa" on the
        # gathered K/V, or "fused" (paged_decode_attention, element-wise ops for torch.compile)
        self.decode_attention = "triton" if gpu_kernels.available(self.device) else "sdpa"
        self.graphs: dict = {}
        self._graph_pool = None
        self._compiled = None

    def _rope_tables(self, length: int) -> None:
        """cos/sin tables for positions < length (same arithmetic as transformers' rotary)."""
        pos = torch.arange(length, device=self.device, dtype=torch.float32)
        freqs = pos[:, None] * self.weights.inv_freq.to(self.device, torch.float32)[None]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = (emb.cos() * self.weights.attention_scaling).to(self.dtype)
        self.sin = (emb.sin() * self.weights.attention_scaling).to(self.dtype)

    # --------------------------------------------------------------------------- inputs
    def prepare(self, seqs, is_prefill: bool, all_logits: bool = False) -> StepInputs:
        """Pack the new tokens of ``seqs``: a prefill step computes every uncached token,
        a decode step the newest token only."""
        bs = self.cache.block_size
        ids, positions, slots, ctx_lens, q_lens, logits_index = [], [], [], [], [], []
        for seq in seqs:
            n = len(seq)
            start = seq.num_cached_tokens if is_prefill else n - 1
            if start >= n:
                raise ValueError(f"sequence {seq.seq_id} has no token to compute")
            table = seq.block_table
            ids += seq.token_ids[start:]
            positions += range(start, n)
            slots += [table[p // bs] * bs + p % bs for p in range(start, n)]
            if all_logits:
                logits_index += range(len(ids) - (n - start), len(ids))
            else:
                logits_index.append(len(ids) - 1)
            ctx_lens.append(n)
            q_lens.append(n - start)
        max_len, max_query = max(ctx_lens), max(q_lens)
        if max_len > self.max_model_len:
            raise ValueError(f"a sequence of {max_len} tokens exceeds max_model_len={self.max_model_len}")
        width = (max_len + bs - 1) // bs
        tables = [s.block_table[:width] + [0] * (width - len(s.block_table[:width])) for s in seqs]
        dev = self.device

        def t(values):
            return torch.tensor(values, dtype=torch.long, device=dev)

        pad_index = mask = None
        kernel = None if is_prefill or all_logits or self.decode_attention == "sdpa" else self.decode_attention
        uniform = all(q == max_query for q in q_lens) and all(c == max_len for c in ctx_lens)
        if kernel is None and not (uniform and max_query == 1):
            if not all(q == max_query for q in q_lens):
                pad_index = t([b * max_query + j for b, q in enumerate(q_lens) for j in range(q)])
            # query j of sequence b sits at position ctx_b - q_b + j; padding sees key 0 only
            qpos = torch.zeros(len(seqs), max_query, dtype=torch.long)
            for b, (c, q) in enumerate(zip(ctx_lens, q_lens)):
                qpos[b, :q] = torch.arange(c - q, c)
            keys = torch.arange(max_len)
            mask = (keys[None, None, :] <= qpos[:, :, None]).to(dev)[:, None]
        return StepInputs(t(ids), t(positions), t(slots), t(tables), t(ctx_lens), max_len,
                          max_query, pad_index, mask, t(logits_index), kernel)

    # -------------------------------------------------------------------------- forward
    def rope_and_store(self, layer: int, qkv: torch.Tensor, inp: StepInputs, cos, sin) -> torch.Tensor:
        """Rotate the new queries and keys by their positions (RoPE), store keys and values in the
        cache; return the queries ``[tokens, heads, d]``. One Triton kernel in Triton decode steps."""
        c = self.config
        if inp.decode_kernel == "triton":
            return gpu_kernels.rope_and_store(qkv, self.cos, self.sin, inp.positions, inp.slot_mapping,
                                              self.cache.k[layer], self.cache.v[layer], c.num_heads,
                                              c.num_kv_heads)
        n = qkv.shape[0]
        q, k, v = qkv.split(self.split, dim=-1)
        q = q.view(n, c.num_heads, c.head_dim)
        k = k.view(n, c.num_kv_heads, c.head_dim)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        self.cache.write(layer, inp.slot_mapping, k, v.view(n, c.num_kv_heads, c.head_dim))
        return q

    def attention(self, layer: int, q, inp: StepInputs) -> torch.Tensor:
        """Attend each query over its sequence's cached keys (the new ones already stored)."""
        c = self.config
        if inp.decode_kernel is not None:
            kernel = gpu_kernels.decode_attention if inp.decode_kernel == "triton" else paged_decode_attention
            out = kernel(q.view(-1, c.num_heads, c.head_dim), self.cache.blocks(self.cache.k[layer]),
                         self.cache.blocks(self.cache.v[layer]), inp.block_tables, inp.context_lens,
                         inp.max_len, self.cache.block_size, self.scale)
            return out.reshape(-1, c.num_heads * c.head_dim)
        keys, values = self.cache.gather(layer, inp.block_tables, inp.max_len)  # [B, L, kvh, d]
        batch, width = keys.shape[0], inp.max_query
        if inp.pad_index is None:
            q = q.view(batch, width, c.num_heads, c.head_dim)
        else:
            q = q.new_zeros(batch * width, c.num_heads, c.head_dim).index_copy_(0, inp.pad_index, q)
            q = q.view(batch, width, c.num_heads, c.head_dim)
        if self.math_attention:
            out = grouped_attention(q, keys, values, inp.mask, self.scale)
        else:
            kwargs = {"enable_gqa": True} if self.gqa else {}
            out = F.scaled_dot_product_attention(q.transpose(1, 2), keys.transpose(1, 2),
                                                 values.transpose(1, 2), attn_mask=inp.mask,
                                                 scale=self.scale, **kwargs).transpose(1, 2)
        out = out.reshape(batch * width, c.num_heads * c.head_dim)
        return out if inp.pad_index is None else out.index_select(0, inp.pad_index)

    def forward(self, inp: StepInputs) -> torch.Tensor:
        """Logits (fp32) at ``inp.logits_index`` of the packed tokens."""
        c, w = self.config, self.weights
        h = F.embedding(inp.input_ids, w.embed)
        cos = sin = None
        if inp.decode_kernel != "triton":
            cos, sin = self.cos[inp.positions][:, None], self.sin[inp.positions][:, None]
        for i, layer in enumerate(w.layers):
            x = rms_norm(h, layer.input_norm, c.rms_norm_eps)
            q = self.rope_and_store(i, F.linear(x, layer.qkv, layer.qkv_bias), inp, cos, sin)
            o = self.attention(i, q, inp)
            h = h + F.linear(o, layer.o)
            x = rms_norm(h, layer.post_norm, c.rms_norm_eps)
            gate, up = F.linear(x, layer.gate_up).chunk(2, dim=-1)
            h = h + F.linear(F.silu(gate) * up, layer.down)
        h = rms_norm(h.index_select(0, inp.logits_index), w.norm, c.rms_norm_eps)
        return F.linear(h, w.lm_head).float()

    @torch.inference_mode()
    def run(self, seqs, is_prefill: bool, all_logits: bool = False) -> torch.Tensor:
        """Logits ``[len(seqs), vocab]`` for the next token of each sequence (or, with
        ``all_logits``, one row per computed token, sequence after sequence)."""
        if not is_prefill and not all_logits and self.graphs_enabled:
            return self._run_graph(seqs)
        return self.forward(self.prepare(seqs, is_prefill, all_logits))

    # ---------------------------------------------------------------------- CUDA graphs
    graphs_enabled = False
    batch_buckets = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    min_length_bucket = 128

    def enable_cuda_graphs(self, compile: bool = False) -> None:
        """Replay decode steps from CUDA graphs (captured on first use of each shape bucket)."""
        if self.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.graphs_enabled = True
        if compile and self._compiled is None:
            self._compiled = torch.compile(self._decode_fn, dynamic=False, fullgraph=True)

    def _decode_fn(self, packed: torch.Tensor, batch: int, width: int, length: int) -> torch.Tensor:
        """One decode step from a packed int64 buffer [ids | positions | slots | ctx | tables]."""
        ids, positions, slots, ctx = packed[:4 * batch].view(4, batch)
        tables = packed[4 * batch:].view(batch, width)
        kernel = None if self.decode_attention == "sdpa" else self.decode_attention
        mask = None
        if kernel is None:
            keys = torch.arange(length, device=packed.device)
            mask = (keys[None, :] < ctx[:, None])[:, None, None, :]
        inp = StepInputs(ids, positions, slots, tables, ctx, length, 1, None, mask,
                         torch.arange(batch, device=packed.device), decode_kernel=kernel)
        return self.forward(inp)

    def _bucket(self, batch: int, length: int) -> tuple[int, int]:
        """Shape of the graph that serves this step: batch and context rounded up, so a few
        graphs serve every step and attention reads little more than the filled cache. The
        Triton kernel stops at each sequence's own length by itself: one length serves all."""
        b = next((x for x in self.batch_buckets if x >= batch), batch)
        if self.decode_attention == "triton":
            return b, self.max_model_len
        ln = self.min_length_bucket
        while ln < length:
            ln *= 2
        return b, min(ln, self.max_model_len)

    def capture_decode(self, batch: int, length: int):
        """Record one decode step for ``batch`` sequences of context <= ``length``."""
        bs = self.cache.block_size
        width = (length + bs - 1) // bs
        packed = torch.zeros(4 * batch + batch * width, dtype=torch.long, device=self.device)
        packed[2 * batch:3 * batch] = self.cache.scratch_slot   # padding rows write to scratch
        packed[3 * batch:4 * batch] = 1
        fn = self._compiled or self._decode_fn
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(3):                                  # warm-up (and compile)
                fn(packed, batch, width, length)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._graph_pool):
            out = fn(packed, batch, width, length)
        self._graph_pool = graph.pool()
        host = torch.zeros_like(packed, device="cpu").pin_memory()
        self.graphs[(batch, length)] = (graph, packed, host, host.numpy(), out, width)
        return self.graphs[(batch, length)]

    def pack_decode(self, seqs, batch: int, width: int) -> list[int]:
        """The int64 values of ``_decode_fn``'s packed input, padded to ``batch`` rows."""
        bs = self.cache.block_size
        ids, pos, slots, ctx, tables = [], [], [], [], []
        for s in seqs:
            p = len(s) - 1
            ids.append(s.last_token)
            pos.append(p)
            slots.append(s.block_table[p // bs] * bs + p % bs)
            ctx.append(p + 1)
            row = s.block_table[:width]
            tables += row + [0] * (width - len(row))
        pad = batch - len(seqs)
        return (ids + [0] * pad + pos + [0] * pad + slots + [self.cache.scratch_slot] * pad
                + ctx + [1] * pad + tables + [0] * (pad * width))

    def _run_graph(self, seqs) -> torch.Tensor:
        batch, length = self._bucket(len(seqs), max(len(s) for s in seqs))
        entry = self.graphs.get((batch, length)) or self.capture_decode(batch, length)
        graph, packed, host, host_array, out, width = entry
        host_array[:] = self.pack_decode(seqs, batch, width)   # into pinned memory, one async copy
        packed.copy_(host, non_blocking=True)
        graph.replay()
        return out[:len(seqs)]
