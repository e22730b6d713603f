"""The engine's CPU fast paths: weights packed once for oneDNN (``packed_weights``) and decode
attention that keeps K/V in place (``attention.one_query_attention``). Each must give the plain
path's numbers; the tests also check that the engine really takes each path."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inferlab.engine import (
    EngineConfig,
    LlamaWeights,
    LLMEngine,
    ModelConfig,
    SamplingParams,
    attention,
)
from inferlab.engine.attention import MathAttention, grouped_attention, one_query_attention
from inferlab.engine.packed_weights import PackedWeights, PlainWeights, can_pack

CONFIG = ModelConfig(num_layers=2, hidden_size=64, num_heads=6, num_kv_heads=2, head_dim=16,
                     intermediate_size=96, vocab_size=97, max_position=256, eos_token_ids=(1,))
BF16_PACKS = can_pack("cpu", torch.bfloat16)
needs_bf16_packing = pytest.mark.skipif(not BF16_PACKS, reason="oneDNN cannot pack bf16 here")


def prompts(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, 97, (int(k),), generator=g).tolist()
            for k in torch.randint(3, 30, (n,), generator=g)]


# ------------------------------------------------------------------------- packed weights
@needs_bf16_packing
def test_packed_linear_equals_f_linear_in_bf16_for_any_number_of_rows():
    weights = LlamaWeights.random(CONFIG, dtype=torch.bfloat16, seed=0)
    packed = PackedWeights(weights, batch_hint=8)
    layer = weights.layers[0]
    assert len(packed) == 4 * CONFIG.num_layers + 1            # every matrix and the head
    for rows in (1, 3, 8, 37):
        for w in (layer.qkv, layer.gate_up, weights.lm_head):
            x = torch.randn(rows, w.shape[1]).bfloat16()
            assert torch.equal(packed.linear(x, w), F.linear(x, w))
        x = torch.randn(rows, layer.down.shape[1]).bfloat16()
        assert torch.equal(packed.linear(x, layer.down), F.linear(x, layer.down))
    bias = torch.randn(layer.qkv.shape[0]).bfloat16()
    x = torch.randn(5, 64).bfloat16()
    assert torch.equal(packed.linear(x, layer.qkv, bias), F.linear(x, layer.qkv, bias))
    stranger = torch.randn(7, 64).bfloat16()                 # not packed: plain F.linear
    assert torch.equal(packed.linear(x, stranger), F.linear(x, stranger))
    assert torch.equal(packed.linear(x, layer.qkv.clone()), F.linear(x, layer.qkv))


def test_engine_config_decides_packing_by_device_and_dtype():
    fp32 = LlamaWeights.random(CONFIG, dtype=torch.float32, seed=0)
    bf16 = LlamaWeights.random(CONFIG, dtype=torch.bfloat16, seed=0)
    assert LLMEngine(fp32, max_model_len=64).config.prepack_weights is False   # not exact
    engine = LLMEngine(bf16, max_model_len=64)
    assert engine.config.prepack_weights is BF16_PACKS
    assert isinstance(engine.runner.matmuls, PackedWeights if BF16_PACKS else PlainWeights)
    off = LLMEngine(bf16, max_model_len=64, prepack_weights=False)
    assert off.config.prepack_weights is False and len(off.runner.matmuls) == 0
    if can_pack("cpu", torch.float32, exact_only=False):
        assert LLMEngine(fp32, max_model_len=64, prepack_weights=True).config.prepack_weights
    with pytest.raises(ValueError, match="prepack_weights must be None .*'yes'"):
        EngineConfig(prepack_weights="yes")
    fp16 = LlamaWeights.random(CONFIG, dtype=torch.float16, seed=0)
    with pytest.raises(ValueError, match="prepack_weights=True .*cannot be packed"):
        LLMEngine(fp16, max_model_len=64, prepack_weights=True)


@needs_bf16_packing
def test_packed_engine_gives_the_plain_engines_tokens_and_calls_the_packed_kernel(monkeypatch):
    weights = LlamaWeights.random(CONFIG, dtype=torch.bfloat16, seed=1, std=0.3)
    params = SamplingParams(max_tokens=12, ignore_eos=True)
    batch = prompts(5, seed=2)
    plain = LLMEngine(weights, max_model_len=64, prepack_weights=False).generate(batch, params)
    calls = []
    kernel = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise",
                        lambda *args: calls.append(1) or kernel(*args), raising=False)
    packed = LLMEngine(weights, max_model_len=64).generate(batch, params)
    assert [o.token_ids for o in packed] == [o.token_ids for o in plain]
    assert len(calls) >= 12 * (4 * CONFIG.num_layers + 1)     # every matmul of every step


# --------------------------------------------------------------------- one-query attention
@pytest.mark.parametrize("kv_heads,group", [(1, 4), (2, 3), (3, 3), (4, 1)])
def test_one_query_attention_equals_grouped_attention(kv_heads, group):
    g = torch.Generator().manual_seed(kv_heads * 10 + group)
    b, length, d = 5, 23, 16
    for dtype, tol in ((torch.float32, 1e-6), (torch.bfloat16, 0.0)):
        q = torch.randn(b, 1, kv_heads * group, d, generator=g).to(dtype)
        # the cache's gather hands out a slice of a padded tensor: not contiguous in length
        keys = torch.randn(b, 32, kv_heads, d, generator=g).to(dtype)[:, :length]
        values = torch.randn(b, 32, kv_heads, d, generator=g).to(dtype)[:, :length]
        lengths = torch.randint(1, length + 1, (b,), generator=g)
        mask = (torch.arange(length)[None] < lengths[:, None])[:, None, None, :]
        want = grouped_attention(q, keys, values, mask, d ** -0.5)
        got = one_query_attention(q, keys, values, mask, d ** -0.5)
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
        # the mask matters: the padded keys change the answer when it is ignored
        unmasked = one_query_attention(q, keys, values, None, d ** -0.5)
        assert not torch.allclose(unmasked.float(), want.float(), atol=1e-2)


def test_math_backend_takes_the_one_query_path_for_decode_steps_of_few_kv_heads(monkeypatch):
    taken = []
    original = attention.one_query_attention
    monkeypatch.setattr(attention, "one_query_attention",
                        lambda *args: taken.append(args[0].shape) or original(*args))
    weights = LlamaWeights.random(CONFIG, dtype=torch.bfloat16, seed=3, std=0.3)
    params = SamplingParams(max_tokens=6, ignore_eos=True)
    batch = prompts(3, seed=4)
    fast = LLMEngine(weights, max_model_len=64, attention_backend="math").generate(batch, params)
    assert taken and all(shape[1] == 1 for shape in taken)    # decode steps only
    assert len(taken) == 5 * CONFIG.num_layers                # 5 decode steps x layers

    class GroupedOnly(MathAttention):
        one_query_max_kv_heads = 0

    taken.clear()
    slow = LLMEngine(weights, max_model_len=64, attention_backend=GroupedOnly()).generate(
        batch, params)
    assert not taken
    assert [o.token_ids for o in fast] == [o.token_ids for o in slow]
