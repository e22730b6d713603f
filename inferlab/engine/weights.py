"""A Llama-family model as plain tensors: the shapes, the weights, and two small building blocks.

Introduced in lesson 05. ``LlamaWeights.from_hf`` takes the tensors of any transformers Llama-family
model (Llama, Mistral, Qwen2, SmolLM), fusing the Q/K/V projections into one matrix and gate/up into
another (one matrix multiply instead of three, or two); ``LlamaWeights.random`` builds a model of a
given shape with random weights, enough to measure speed (lesson 09's Llama-2-7B-shaped benchmark);
``truncated`` keeps the first layers, a cheap draft model for lesson 08.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


# --------------------------------------------------------------------------- the model
@dataclass
class ModelConfig:
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position: int = 4096
    eos_token_ids: tuple = ()

    @classmethod
    def from_hf(cls, config) -> "ModelConfig":
        head_dim = (getattr(config, "head_dim", None)
                    or config.hidden_size // config.num_attention_heads)
        rope = getattr(config, "rope_parameters", None) or {}
        eos = config.eos_token_id
        eos = () if eos is None else tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)
        return cls(config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
                   config.num_key_value_heads or config.num_attention_heads, head_dim,
                   config.intermediate_size, config.vocab_size, config.rms_norm_eps,
                   rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)),
                   config.max_position_embeddings, eos)

    def random_hf_model(self, device="cpu", dtype=torch.float32):
        """transformers' ``LlamaForCausalLM`` of this shape with random weights, made on
        ``device`` in ``dtype`` (the baseline of the speed-only benchmarks)."""
        from transformers import LlamaConfig, LlamaForCausalLM
        hf_config = LlamaConfig(hidden_size=self.hidden_size,
                                intermediate_size=self.intermediate_size,
                                num_hidden_layers=self.num_layers,
                                num_attention_heads=self.num_heads,
                                num_key_value_heads=self.num_kv_heads, head_dim=self.head_dim,
                                vocab_size=self.vocab_size, rms_norm_eps=self.rms_norm_eps,
                                max_position_embeddings=self.max_position)
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                return LlamaForCausalLM(hf_config).eval()
        finally:
            torch.set_default_dtype(default)

    @classmethod
    def llama2_7b(cls) -> "ModelConfig":
        """The shape of Llama-2-7B (32 layers, hidden 4096, 32 heads, MLP 11008, vocab 32000)."""
        return cls(32, 4096, 32, 32, 128, 11008, 32000, 1e-5, 10000.0, 4096, (2,))


class LayerWeights:
    __slots__ = ("input_norm", "qkv", "qkv_bias", "o", "post_norm", "gate_up", "down")

    def __init__(self, input_norm, qkv, qkv_bias, o, post_norm, gate_up, down):
        self.input_norm, self.qkv, self.qkv_bias, self.o = input_norm, qkv, qkv_bias, o
        self.post_norm, self.gate_up, self.down = post_norm, gate_up, down

    def tensors(self):
        return [t for t in (self.input_norm, self.qkv, self.qkv_bias, self.o, self.post_norm,
                            self.gate_up, self.down) if t is not None]


class LlamaWeights:
    """A Llama-family model (Llama, Mistral, Qwen2, SmolLM) as plain tensors."""

    def __init__(self, config: ModelConfig, embed, layers, norm, lm_head, inv_freq,
                 attention_scaling: float = 1.0):
        self.config, self.embed, self.layers, self.norm = config, embed, layers, norm
        self.lm_head, self.inv_freq, self.attention_scaling = lm_head, inv_freq, attention_scaling

    @property
    def dtype(self):
        return self.embed.dtype

    @property
    def device(self):
        return self.embed.device

    @classmethod
    @torch.no_grad()
    def from_hf(cls, model, dtype=None, device=None) -> "LlamaWeights":
        """Take the weights of a transformers ``*ForCausalLM`` (fusing QKV and gate/up)."""
        config = ModelConfig.from_hf(model.config)
        body = model.model

        def cast(t):
            if t is None:
                return None
            return t.detach().to(device=device or t.device, dtype=dtype or t.dtype)

        layers = []
        for layer in body.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
            bias = None
            if attn.q_proj.bias is not None:
                bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
            layers.append(LayerWeights(cast(layer.input_layernorm.weight), cast(qkv), cast(bias),
                                       cast(attn.o_proj.weight),
                                       cast(layer.post_attention_layernorm.weight),
                                       cast(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                                       cast(mlp.down_proj.weight)))
        embed = cast(body.embed_tokens.weight)
        head = model.lm_head.weight
        lm_head = embed if head.data_ptr() == body.embed_tokens.weight.data_ptr() else cast(head)
        rotary = body.rotary_emb
        return cls(config, embed, layers, cast(body.norm.weight), lm_head,
                   rotary.inv_freq.detach().float().to(embed.device),
                   float(getattr(rotary, "attention_scaling", 1.0)))

    @classmethod
    @torch.no_grad()
    def random(cls, config: ModelConfig, dtype=torch.float16, device="cpu", seed: int = 0,
               std: float = 0.02) -> "LlamaWeights":
        """Random weights of a given shape: meaningless text, realistic speed."""
        gen = torch.Generator(device=device).manual_seed(seed)
        h, d = config.hidden_size, config.head_dim
        qkv_rows = (config.num_heads + 2 * config.num_kv_heads) * d

        def w(*shape):
            return torch.empty(shape, dtype=dtype, device=device).normal_(0, std, generator=gen)

        def ones(n):
            return torch.ones(n, dtype=dtype, device=device)

        layers = [LayerWeights(ones(h), w(qkv_rows, h), None, w(h, config.num_heads * d), ones(h),
                               w(2 * config.intermediate_size, h), w(h, config.intermediate_size))
                  for _ in range(config.num_layers)]
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float) / d))
        return cls(config, w(config.vocab_size, h), layers, ones(h), w(config.vocab_size, h),
                   inv_freq.to(device))

    def truncated(self, num_layers: int) -> "LlamaWeights":
        """The first ``num_layers`` layers with the same embedding and head: a cheap draft model."""
        if not 1 <= num_layers <= len(self.layers):
            raise ValueError(f"num_layers must be in [1, {len(self.layers)}]")
        config = ModelConfig(**{**self.config.__dict__, "num_layers": num_layers})
        return LlamaWeights(config, self.embed, self.layers[:num_layers], self.norm, self.lm_head,
                            self.inv_freq, self.attention_scaling)

    def tensors(self):
        out = [self.embed, self.norm, self.lm_head]
        for layer in self.layers:
            out += layer.tensors()
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of all weights, a tied embedding/head counted once."""
        seen = {}
        for t in self.tensors():
            seen[t.data_ptr()] = t.numel() * t.element_size()
        return sum(seen.values())

    @property
    def bytes_read_per_token(self) -> int:
        """Weight bytes one decode step reads: every matrix except the embedding table
        (of which it reads one row per token); a tied table is read whole as the head."""
        lm = self.lm_head.numel() * self.lm_head.element_size()
        body = sum(t.numel() * t.element_size() for layer in self.layers for t in layer.tensors())
        return body + lm + self.norm.numel() * self.norm.element_size()


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight, computed in fp32 as transformers does."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def add_rms_norm(h: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual stream after adding ``delta``, and its RMS norm (the next sublayer's input)."""
    h = h + delta
    return h, rms_norm(h, weight, eps)


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """The MLP's activation on its stacked gate/up product: ``silu(gate) * up``."""
    gate, up = gate_up.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
