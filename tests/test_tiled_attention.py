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


def test_block_loads_hands_out_counted_views_one_block_at_a_time():
    from inferlab.engine.tiled_attention import BlockLoads
    k, v = torch.arange(10.0).view(5, 2), torch.arange(15.0).view(5, 3)
    blocks = BlockLoads(k, v, 2)
    assert len(blocks) == 3
    kb, vb = blocks[2]
    assert kb.tolist() == [[8.0, 9.0]] and vb.shape == (1, 3)
    assert kb.data_ptr() == k[4:].data_ptr()                      # a view, not a copy
    assert [b[0].shape[0] for b in blocks] == [2, 2, 1]           # iteration loads each block
    assert blocks.loads == [2, 0, 1, 2]
    with pytest.raises(TypeError):
        blocks[0:2]
    with pytest.raises(IndexError):
        blocks[3]


def test_guarded_blocks_refuse_anything_wider_than_one_tile():
    """With a limit, results computed from a block stay within it; concatenating blocks, a row
    of scores over several blocks, or writing a tile into a wider tensor raises."""
    from inferlab.engine.tiled_attention import BlockLoads
    torch.manual_seed(0)
    q, k, v = torch.randn(4, 8), torch.randn(12, 8), torch.randn(12, 8)
    blocks = BlockLoads(k, v, 4, limit=8)
    k0, v0 = blocks[0]
    s = q @ k0.T                                                   # one 4 x 4 tile: fine
    out = (torch.softmax(s, dim=1) @ v0).as_subclass(torch.Tensor)
    assert type(out) is torch.Tensor
    torch.testing.assert_close(out, torch.softmax(q @ k[:4].T, dim=1) @ v[:4])
    k1, _ = blocks[1]
    k2, _ = blocks[2]
    with pytest.raises(RuntimeError, match="one block at a time"):
        torch.cat([k0, k1, k2])                                    # 12 keys
    with pytest.raises(RuntimeError, match="one block at a time"):
        torch.cat([q @ k0.T, q @ k1.T, q @ k2.T], dim=1)           # 12 scores a row
    wide = torch.empty(4, 12)
    with pytest.raises(RuntimeError, match="one block at a time"):
        wide[:, :4] = q @ k0.T
    assert type(BlockLoads(k, v, 4)[0][0]) is torch.Tensor        # no limit: plain views


def test_guarded_blocks_cross_the_grading_sandbox_as_data():
    """Lesson 09's tests pass a guarded BlockLoads into the sandbox; the student's result, a
    guarded tensor there, comes back as a plain tensor, and the loads come back too."""
    from autograder.grading import wire
    from inferlab.engine.tiled_attention import BlockLoads, guarded_type
    def cross(value):
        tree = wire.Encoder(fallback=lambda obj: pytest.fail(f"not data: {obj!r}")).encode(value)
        return wire.Decoder().decode(wire.loads(wire.dumps(tree)))

    blocks = BlockLoads(torch.randn(6, 2), torch.randn(6, 2), 3, limit=3)
    sent = cross(blocks)
    assert type(sent) is BlockLoads and sent.limit == 3
    sent[1]
    assert sent.loads == [1] and type(sent[0][0]) is guarded_type(3)
    back = cross(torch.ones(2, 3).as_subclass(guarded_type(3)))
    assert type(back) is torch.Tensor and back.tolist() == [[1.0] * 3] * 2


def test_by_query_blocks_runs_a_block_function_head_by_head():
    from inferlab.engine.tiled_attention import by_query_blocks, naive_attention

    def block_fn(q_block, q_start, kv_blocks):       # a full-scores reference for one block
        pairs = [kv_blocks[j] for j in range(len(kv_blocks))]
        k, v = torch.cat([kb for kb, _ in pairs]), torch.cat([vb for _, vb in pairs])
        s = q_block @ k.T / q_block.shape[1] ** 0.5
        rows = torch.arange(q_start, q_start + q_block.shape[0])[:, None]
        s = s.masked_fill(torch.arange(k.shape[0])[None, :] > rows, float("-inf"))
        return s.softmax(-1) @ v

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 37, 8) for _ in range(3))
    out, loads = by_query_blocks(block_fn, q, k, v, block=16)
    torch.testing.assert_close(out, naive_attention(q, k, v, causal=True))
    assert loads == 6 * 3 * 3                         # 6 heads x 3 query blocks x 3 key blocks


def test_guarded_blocks_share_one_tile_buffer_like_sram():
    """With a limit, loading a block overwrites the block handed out before: a running state
    is unaffected, keeping blocks for a second pass reads the newest block's values."""
    from inferlab.engine.tiled_attention import BlockLoads
    k, v = torch.arange(10.0)[:, None].repeat(1, 2), -torch.arange(10.0)[:, None].repeat(1, 2)
    blocks = BlockLoads(k, v, 4, limit=8)
    k0, v0 = blocks[0]
    assert k0[:, 0].tolist() == [0, 1, 2, 3] and v0[:, 0].tolist() == [0, -1, -2, -3]
    saved = k0.sum().item()
    k1, _ = blocks[1]
    assert k1[:, 0].tolist() == [4, 5, 6, 7]
    assert k0[:, 0].tolist() == [4, 5, 6, 7] and saved == 12.0      # block 0's tile reused
    k2, v2 = blocks[2]                                              # the shorter last block
    assert k2.shape == (2, 2) and k2[:, 0].tolist() == [8, 9] and v2[:, 0].tolist() == [-8, -9]
    assert k[:, 0].tolist() == list(range(10))                      # the source is untouched
    plain = BlockLoads(k, v, 4)                                     # no limit: plain views
    p0, _ = plain[0]
    plain[1]
    assert p0[:, 0].tolist() == [0, 1, 2, 3]
