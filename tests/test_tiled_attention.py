"""Tiled attention with the online softmax equals standard attention (lesson 09)."""
import pytest
import torch

from inferlab.engine.tiled_attention import (
    benchmark_attention,
    naive_attention,
    sdpa,
    tiled_attention,
)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("block", [1, 7, 64, 200])
def test_tiled_matches_naive_and_sdpa(causal, block):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 50, 16) for _ in range(3))
    ref = naive_attention(q, k, v, causal)
    torch.testing.assert_close(tiled_attention(q, k, v, causal, block), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sdpa(q, k, v, causal=causal), ref, rtol=1e-5, atol=1e-5)


def test_tiled_handles_fewer_queries_than_keys_and_extreme_scores():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 2, 5, 8) * 30, torch.randn(1, 2, 40, 8) * 30, torch.randn(1, 2, 40, 8)
    out = tiled_attention(q, k, v, True, 16)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, naive_attention(q, k, v, True), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        tiled_attention(q, k, v, True, 0)


def test_benchmark_attention_runs_on_cpu():
    rows = benchmark_attention([64], device="cpu", heads=2, head_dim=16, dtype=torch.float32,
                               repeats=1)
    impls = {r["impl"] for r in rows if r["ms"] is not None}
    assert {"naive", "tiled (PyTorch, online softmax)", "sdpa math"} <= impls
