"""Running the model: one forward pass over the new tokens of many sequences, reading the KV cache.

Introduced in lesson 05 (the forward pass, written out) and used by every later lesson. The runner
holds a Llama-family model as plain tensors (``LlamaWeights``) and computes, for a step's sequences:

* **prefill** - all not-yet-cached prompt tokens of each new sequence, in one pass;
* **decode** - the one newest token of each running sequence.

Both are the same computation, over tokens packed without padding (``inputs.pack_step``). Per
layer: RMS norm, one fused Q/K/V matrix multiply, RoPE on queries and keys, the new keys and values
written to their cache slots, attention over the cache (``attention``: the backend chosen by
``EngineConfig.attention_backend``), the output projection, then the MLP with gate and up fused into
one matrix multiply. The vocabulary projection runs only on the rows whose logits are needed. On
a CPU the matrix multiplies read weights packed once for oneDNN (``packed_weights``, lesson 06),
and in bf16 the decode steps' attention, RoPE and norms run in C++ kernels (``cpu_kernels``,
lesson 07).

On a GPU, decode steps can be replayed from CUDA graphs (``cuda_graphs``, lesson 09):
``enable_cuda_graphs`` switches that on.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import cpu_kernels
from .attention import AttentionBackend, CpuKernelAttention, make_backend
from .cuda_graphs import DecodeGraphs
from .gemv import GemvWeights
from .inputs import StepInputs, pack_step
from .kv_cache import PagedKVCache
from .packed_weights import PackedWeights, PlainWeights
from .run_ahead import NextStep
from .weights import LlamaWeights, add_rms_norm, rms_norm, rotate_half


class ModelRunner:
    """Forward passes of ``weights`` over sequences whose K/V live in ``cache``.

    ``attention``: a backend name of ``attention.BACKENDS`` ("auto" by default) or an
    ``AttentionBackend``. ``prepack_weights``: multiply through weights packed once for the CPU's
    matrix kernels (``packed_weights``; the engine decides it in ``EngineConfig.resolve``), with
    ``batch_hint`` the rows of a full decode step. ``gemv``: one-row products through the tuned
    Triton kernel of ``gemv`` (a GPU's batch-1 decode steps), the MLP's SwiGLU inside it unless
    ``gemv_swiglu`` is False.
    """

    def __init__(self, weights: LlamaWeights, cache: PagedKVCache, max_model_len: int | None = None,
                 attention: str | AttentionBackend = "auto", prepack_weights: bool = False,
                 batch_hint: int = 32, gemv: bool = False, gemv_swiglu: bool = True):
        self.weights, self.cache, self.config = weights, cache, weights.config
        c = self.config
        self.device, self.dtype = weights.device, weights.dtype
        self.scale = c.head_dim ** -0.5
        kv = c.num_kv_heads * c.head_dim
        self.split = [c.num_heads * c.head_dim, kv, kv]
        self.max_model_len = max_model_len or c.max_position
        self.attention: AttentionBackend = make_backend(attention, self.device, self.dtype)
        self.graphs: DecodeGraphs | None = None
        self.matmuls = (PackedWeights(weights, batch_hint) if prepack_weights
                        else GemvWeights(weights, swiglu=gemv_swiglu) if gemv
                        else PlainWeights())
        # the C++ attention backend brings its residual + norm kernel (cpu_kernels, lesson 07)
        fused = isinstance(self.attention, CpuKernelAttention)
        self.add_rms_norm = cpu_kernels.add_rms_norm if fused else add_rms_norm
        self._rope_tables(self.max_model_len)
        # int32 zeros the fused attention kernel counts finished chunks in (it leaves them zero),
        # made once so that CUDA graphs and torch.compile see one persistent buffer
        self.counters = None
        if getattr(self.attention, "merge_in_kernel", False):
            self.counters = torch.zeros(DecodeGraphs.batch_buckets[-1] * c.num_heads,
                                        dtype=torch.int32, device=self.device)

    def _rope_tables(self, length: int) -> None:
        """cos/sin tables for positions < length (same arithmetic as transformers' rotary)."""
        pos = torch.arange(length, device=self.device, dtype=torch.float32)
        freqs = pos[:, None] * self.weights.inv_freq.to(self.device, torch.float32)[None]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = (emb.cos() * self.weights.attention_scaling).to(self.dtype)
        self.sin = (emb.sin() * self.weights.attention_scaling).to(self.dtype)

    def prepare(self, seqs, is_prefill: bool, all_logits: bool = False,
                spans: list | None = None) -> StepInputs:
        """The packed inputs of a step over ``seqs`` (see ``inputs.pack_step``)."""
        return pack_step(seqs, is_prefill, self.cache.block_size, self.max_model_len, self.device,
                         all_logits, self.attention.paged_decode, spans)

    # -------------------------------------------------------------------------- forward
    def rope_and_store(self, layer: int, qkv: torch.Tensor, inp: StepInputs, cos,
                       sin) -> torch.Tensor:
        """Rotate the new queries and keys by their positions (RoPE), store keys and values in the
        cache; return the queries ``[tokens, heads, d]``. One kernel where the backend has one."""
        c, attention = self.config, self.attention
        if inp.paged_decode and attention.fused_rope:
            return attention.rope_and_store(qkv, self.cos, self.sin, inp.positions,
                                            inp.slot_mapping, self.cache.k[layer],
                                            self.cache.v[layer], c.num_heads, c.num_kv_heads)
        n = qkv.shape[0]
        q, k, v = qkv.split(self.split, dim=-1)
        q = q.view(n, c.num_heads, c.head_dim)
        k = k.view(n, c.num_kv_heads, c.head_dim)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        self.cache.write(layer, inp.slot_mapping, k, v.view(n, c.num_kv_heads, c.head_dim))
        return q

    def attend(self, layer: int, q, inp: StepInputs) -> torch.Tensor:
        """Attend each query over its sequence's cached keys (the new ones already stored)."""
        c, cache = self.config, self.cache
        if inp.parts:                        # chunked prefill: decode tokens, then prompt chunks
            first = len(inp.parts[0].input_ids)
            return torch.cat([self.attend(layer, q[:first], inp.parts[0]),
                              self.attend(layer, q[first:], inp.parts[1])])
        if inp.paged_decode:
            out = self.attention.decode(q.view(-1, c.num_heads, c.head_dim),
                                        cache.blocks(cache.k[layer]), cache.blocks(cache.v[layer]),
                                        inp.block_tables, inp.context_lens, inp.max_len,
                                        cache.block_size, self.scale)
            return out.reshape(-1, c.num_heads * c.head_dim)
        keys, values = cache.gather(layer, inp.block_tables, inp.max_len)  # [B, L, kvh, d]
        batch, width = keys.shape[0], inp.max_query
        if inp.pad_index is None:
            q = q.view(batch, width, c.num_heads, c.head_dim)
        else:
            q = q.new_zeros(batch * width, c.num_heads, c.head_dim).index_copy_(0, inp.pad_index, q)
            q = q.view(batch, width, c.num_heads, c.head_dim)
        out = self.attention.gathered(q, keys, values, inp.mask, self.scale)
        out = out.reshape(batch * width, c.num_heads * c.head_dim)
        return out if inp.pad_index is None else out.index_select(0, inp.pad_index)

    def attend_new(self, layer: int, qkv: torch.Tensor, inp: StepInputs, cos,
                   sin) -> torch.Tensor:
        """RoPE, cache write and attention for the step's new tokens -> ``[tokens, heads * d]``:
        one kernel where the backend has it for decode steps (``rope_store_attention``), else
        ``rope_and_store`` then ``attend``."""
        c, attention, cache = self.config, self.attention, self.cache
        if inp.paged_decode and attention.fused_rope_attention:
            counters = self.counters
            if counters is not None and counters.numel() < qkv.shape[0] * c.num_heads:
                counters = None                 # a batch beyond the graphs' largest: two kernels
            out = attention.rope_store_attention(
                qkv, self.cos, self.sin, inp.positions, inp.slot_mapping, cache.k[layer],
                cache.v[layer], inp.block_tables, inp.context_lens, inp.max_len,
                cache.block_size, self.scale, c.num_heads, c.num_kv_heads, counters)
            return out.reshape(-1, c.num_heads * c.head_dim)
        return self.attend(layer, self.rope_and_store(layer, qkv, inp, cos, sin), inp)

    def forward(self, inp: StepInputs) -> torch.Tensor:
        """Logits (fp32) at ``inp.logits_index`` of the packed tokens."""
        c, w, linear = self.config, self.weights, self.matmuls.linear
        h = F.embedding(inp.input_ids, w.embed)
        cos = sin = None
        if not (inp.paged_decode and self.attention.fused_rope):
            cos, sin = self.cos[inp.positions][:, None], self.sin[inp.positions][:, None]
        x = rms_norm(h, w.layers[0].input_norm, c.rms_norm_eps)
        for i, layer in enumerate(w.layers):
            o = self.attend_new(i, linear(x, layer.qkv, layer.qkv_bias), inp, cos, sin)
            h, x = self.add_rms_norm(h, linear(o, layer.o), layer.post_norm, c.rms_norm_eps)
            next_norm = w.layers[i + 1].input_norm if i + 1 < len(w.layers) else w.norm
            mlp = self.matmuls.swiglu(x, layer.gate_up)
            h, x = self.add_rms_norm(h, linear(mlp, layer.down), next_norm,
                                     c.rms_norm_eps)
        if inp.logits_index is not None:
            x = x.index_select(0, inp.logits_index)
        return linear(x, w.lm_head).float()

    @torch.inference_mode()
    def run(self, seqs, is_prefill: bool, all_logits: bool = False,
            spans: list | None = None) -> torch.Tensor:
        """Logits ``[len(seqs), vocab]`` for the next token of each sequence (or, with
        ``all_logits``, one row per computed token, sequence after sequence). ``spans``: the
        ``(start, end)`` tokens each sequence computes in a chunked-prefill step (a multi-token
        step: ``is_prefill`` True); the logits are those after token ``end - 1``."""
        if not is_prefill and not all_logits and self.graphs is not None:
            return self.graphs.run(seqs)
        return self.forward(self.prepare(seqs, is_prefill, all_logits, spans))

    @torch.inference_mode()
    def run_ahead(self, seqs, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of the decode step after the one in flight: each of ``seqs`` one token longer,
        that token being ``tokens[i]``, still on the device (``run_ahead``)."""
        views = [NextStep(s) for s in seqs]
        if self.graphs is not None:
            return self.graphs.run(views, tokens)
        inp = self.prepare(views, False)
        inp.input_ids = tokens
        return self.forward(inp)

    # ---------------------------------------------------------------------- CUDA graphs
    @property
    def graphs_enabled(self) -> bool:
        return self.graphs is not None

    def enable_cuda_graphs(self, compile: bool = False) -> None:
        """Replay decode steps from CUDA graphs (captured on first use of each shape bucket),
        optionally of the step compiled by ``torch.compile``."""
        self.graphs = DecodeGraphs(self, compile=compile)
