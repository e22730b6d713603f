"""The engine's C++ CPU kernels (``inferlab.engine.cpu_kernels``) against the tensor code they
replace: paged decode attention, RoPE + cache write, residual add + RMS norm. Built once per
machine (the first test pays about 40 s); skipped where this machine cannot build them."""
from __future__ import annotations

import pytest
import torch

from inferlab.engine import LlamaWeights, LLMEngine, ModelConfig, SamplingParams, cpu_kernels
from inferlab.engine.attention import paged_decode_attention
from inferlab.engine.weights import add_rms_norm, rotate_half

pytestmark = pytest.mark.skipif(not cpu_kernels.available(),
                                reason=f"no C++ kernels: {cpu_kernels.unavailable_reason()}")
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def paged_case(dtype, batch=5, heads=6, kv_heads=2, d=16, block_size=4, blocks=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(blocks, block_size, kv_heads, d, generator=g).to(dtype)
    v = torch.randn(blocks, block_size, kv_heads, d, generator=g).to(dtype)
    lens = torch.tensor([1, 4, 5, 17, 9][:batch])
    width = (int(lens.max()) + block_size - 1) // block_size
    tables = torch.randperm(blocks, generator=g)[:batch * width].view(batch, width)
    q = torch.randn(batch, heads, d, generator=g).to(dtype)
    return q, k, v, tables, lens


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_paged_decode_attention_matches_the_tensor_version(dtype):
    q, k, v, tables, lens = paged_case(dtype)
    want = paged_decode_attention(q.float(), k.float(), v.float(), tables, lens, int(lens.max()),
                                  k.shape[1], 0.25)
    got = cpu_kernels.paged_decode_attention(q, k, v, tables, lens, 0.25)
    assert got.dtype == dtype and got.shape == q.shape
    torch.testing.assert_close(got.float(), want, rtol=TOL[dtype], atol=TOL[dtype])
    # each sequence stops at its own length: a longer context changes the answer
    longer = cpu_kernels.paged_decode_attention(q, k, v, tables, lens + 2, 0.25)
    assert not torch.allclose(longer[2:].float(), got[2:].float(), atol=1e-3)
    torch.testing.assert_close(longer[:1], cpu_kernels.paged_decode_attention(
        q[:1], k, v, tables[:1], lens[:1] + 2, 0.25))


def test_rope_and_store_matches_the_tensor_version():
    heads, kv_heads, d, tokens, slots = 6, 2, 16, 5, 30
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * d, generator=g)
    angles = torch.rand(64, d // 2, generator=g) * 6
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    positions, slot_mapping = torch.tensor([0, 7, 3, 63, 12]), torch.tensor([4, 0, 29, 11, 5])
    k_cache, v_cache = torch.zeros(slots, kv_heads, d), torch.zeros(slots, kv_heads, d)
    q = cpu_kernels.rope_and_store(qkv, cos, sin, positions, slot_mapping, k_cache, v_cache,
                                   heads, kv_heads)
    wq, wk, wv = qkv.split([heads * d, kv_heads * d, kv_heads * d], dim=-1)
    c, s = cos[positions][:, None], sin[positions][:, None]
    wq, wk = wq.view(tokens, heads, d), wk.view(tokens, kv_heads, d)
    torch.testing.assert_close(q, wq * c + rotate_half(wq) * s)
    torch.testing.assert_close(k_cache[slot_mapping], wk * c + rotate_half(wk) * s)
    assert torch.equal(v_cache[slot_mapping], wv.view(tokens, kv_heads, d))
    untouched = torch.ones(slots, dtype=torch.bool)
    untouched[slot_mapping] = False
    assert not k_cache[untouched].any() and not v_cache[untouched].any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_add_rms_norm_matches_the_tensor_version(dtype):
    g = torch.Generator().manual_seed(2)
    h, delta = (torch.randn(7, 48, generator=g).to(dtype) for _ in range(2))
    weight = torch.randn(48, generator=g).to(dtype)
    got_h, got_x = cpu_kernels.add_rms_norm(h, delta, weight, 1e-5)
    want_h, want_x = add_rms_norm(h, delta, weight, 1e-5)
    assert torch.equal(got_h, want_h)                       # the residual stream: bit for bit
    torch.testing.assert_close(got_x, want_x, rtol=TOL[dtype], atol=TOL[dtype])


def test_bad_inputs_get_a_clear_error():
    q, k, v, tables, lens = paged_case(torch.float32)
    with pytest.raises(RuntimeError, match="int64"):
        cpu_kernels.paged_decode_attention(q, k, v, tables.int(), lens, 0.25)
    with pytest.raises(RuntimeError, match="one dtype"):
        cpu_kernels.paged_decode_attention(q, k.bfloat16(), v, tables, lens, 0.25)
    with pytest.raises(RuntimeError, match="width"):
        cpu_kernels.add_rms_norm(torch.zeros(2, 8), torch.zeros(2, 8), torch.zeros(9), 1e-5)


def test_the_engine_runs_its_decode_steps_in_the_kernels(monkeypatch):
    config = ModelConfig(num_layers=2, hidden_size=64, num_heads=6, num_kv_heads=2, head_dim=16,
                         intermediate_size=96, vocab_size=97, max_position=256,
                         eos_token_ids=(1,))
    weights = LlamaWeights.random(config, dtype=torch.float32, seed=3, std=0.3)
    calls = []
    for name in ("paged_decode_attention", "rope_and_store", "add_rms_norm"):
        original = getattr(cpu_kernels, name)
        monkeypatch.setattr(cpu_kernels, name, lambda *a, _f=original, _n=name:
                            calls.append(_n) or _f(*a))
    batch = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]
    params = SamplingParams(max_tokens=6, ignore_eos=True)
    fast = LLMEngine(weights, max_model_len=64, block_size=4, attention_backend="cpu")
    got = [o.token_ids for o in fast.generate(batch, params)]
    per_step = config.num_layers
    assert calls.count("paged_decode_attention") == 5 * per_step      # 5 decode steps
    assert calls.count("rope_and_store") == 5 * per_step
    assert calls.count("add_rms_norm") == 6 * 2 * per_step            # every step, 2 per layer
    plain = LLMEngine(weights, max_model_len=64, block_size=4, attention_backend="sdpa")
    assert got == [o.token_ids for o in plain.generate(batch, params)]
