"""The engine's Triton kernels (inferlab/engine/gpu_kernels.py), checked on a CPU.

Run by tests/test_gpu_kernels.py in a child process started with ``TRITON_INTERPRET=1``: Triton's
interpreter then runs each kernel's body with NumPy, so the very kernels that run on a GPU are
compared here against the engine's plain-PyTorch paths. (The flag must be set before Triton is
imported, which is why this is not collected in the main test process.)
"""
import math
import os

import pytest
import torch

from inferlab.engine import EngineConfig, LlamaWeights, LLMEngine, ModelConfig, SamplingParams
from inferlab.engine.attention import paged_decode_attention
from inferlab.engine.weights import rotate_half

pytest.importorskip("triton")
torch.set_num_threads(1)
CONFIG = ModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16,
                     intermediate_size=128, vocab_size=97, max_position=256, eos_token_ids=(1,))


@pytest.fixture
def kernels():
    assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/test_gpu_kernels.py"
    from inferlab.engine import gpu_kernels
    saved = gpu_kernels.BLOCK_N, gpu_kernels.MAX_SPLITS
    yield gpu_kernels
    gpu_kernels.BLOCK_N, gpu_kernels.MAX_SPLITS = saved


def random_cache(num_blocks, block_size, kv_heads, head_dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (num_blocks * block_size, kv_heads, head_dim)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("heads,kv_heads,head_dim,block_size",
                         [(4, 2, 16, 4), (6, 6, 32, 16), (9, 3, 64, 8)])
@pytest.mark.parametrize("small_tiles", [False, True])
def test_decode_attention_matches_pytorch(kernels, heads, kv_heads, head_dim, block_size,
                                          small_tiles):
    if small_tiles:   # several chunks per head, several tiles per chunk, chunks past the context
        kernels.BLOCK_N, kernels.MAX_SPLITS = 8, 3
    g = torch.Generator().manual_seed(1)
    num_blocks, batch = 48, 3
    k, v = random_cache(num_blocks, block_size, kv_heads, head_dim)
    q = torch.randn(batch, heads, head_dim, generator=g)
    context = torch.tensor([1, 37, 60])
    length = 64                                        # a graph bucket: longer than every context
    width = math.ceil(length / block_size)
    tables = torch.stack([torch.randperm(num_blocks, generator=g)[:width] for _ in range(batch)])
    scale = head_dim ** -0.5
    want = paged_decode_attention(q, k.view(-1, block_size, kv_heads, head_dim),
                                  v.view(-1, block_size, kv_heads, head_dim), tables, context,
                                  length, block_size, scale)
    got = kernels.decode_attention(q, k, v, tables, context, length, block_size, scale)
    assert got.shape == (batch, heads, head_dim)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # only the first context_lens keys count: garbage beyond them changes nothing
    k[tables[0, 1:].repeat_interleave(block_size) * block_size
      + torch.arange(block_size).repeat(width - 1)] = 1e4
    again = kernels.decode_attention(q, k, v, tables, context, length, block_size, scale)
    torch.testing.assert_close(again[0], got[0], rtol=1e-5, atol=1e-5)


def test_decode_attention_on_a_static_cache_row(kernels):
    """The static cache is one block of max_len slots per sequence: table = [row]."""
    max_len, rows, kv_heads, head_dim = 40, 3, 2, 16
    k, v = random_cache(rows, max_len, kv_heads, head_dim, seed=3)
    q = torch.randn(2, 4, head_dim)
    tables, context = torch.tensor([[2], [0]]), torch.tensor([40, 9])
    want = paged_decode_attention(q, k.view(rows, max_len, kv_heads, head_dim),
                                  v.view(rows, max_len, kv_heads, head_dim), tables, context,
                                  max_len, max_len, 0.25)
    got = kernels.decode_attention(q, k, v, tables, context, max_len, max_len, 0.25)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_rope_and_store_matches_pytorch(kernels):
    tokens, heads, kv_heads, head_dim = 5, 4, 2, 16
    g = torch.Generator().manual_seed(2)
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * head_dim, generator=g)
    positions = torch.tensor([0, 3, 7, 8, 30])
    slots = torch.tensor([11, 2, 5, 40, 0])
    angles = torch.randn(64, head_dim // 2, generator=g)
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    k_cache, v_cache = torch.zeros(48, kv_heads, head_dim), torch.zeros(48, kv_heads, head_dim)
    q = kernels.rope_and_store(qkv, cos, sin, positions, slots, k_cache, v_cache, heads, kv_heads)

    kv = kv_heads * head_dim
    q_ref, k_ref, v_ref = qkv.split([heads * head_dim, kv, kv], -1)
    c, s = cos[positions][:, None], sin[positions][:, None]
    q_ref = q_ref.view(tokens, heads, head_dim)
    k_ref = k_ref.view(tokens, kv_heads, head_dim)
    torch.testing.assert_close(q, q_ref * c + rotate_half(q_ref) * s)
    torch.testing.assert_close(k_cache[slots], k_ref * c + rotate_half(k_ref) * s)
    torch.testing.assert_close(v_cache[slots], v_ref.view(tokens, kv_heads, head_dim))
    untouched = torch.ones(48, dtype=torch.bool)
    untouched[slots] = False
    assert k_cache[untouched].abs().sum() == 0 and v_cache[untouched].abs().sum() == 0


@pytest.mark.parametrize("kind", ["paged", "static"])
def test_engine_with_triton_kernels_generates_the_same_tokens(kernels, kind):
    weights = LlamaWeights.random(CONFIG, dtype=torch.float32, seed=0, std=0.3)
    g = torch.Generator().manual_seed(5)
    batch = [torch.randint(2, 97, (n,), generator=g).tolist() for n in (3, 11, 6)]
    params = SamplingParams(max_tokens=12, ignore_eos=True)
    config = EngineConfig(kv_cache=kind, max_model_len=64,
                          **({"num_blocks": 32, "block_size": 4} if kind == "paged" else {}))
    plain = LLMEngine(weights, config=config)
    assert plain.runner.attention.name == "sdpa"            # CPU default: no Triton path
    fast = LLMEngine(weights, config=config.replace(attention_backend="triton"))  # interpreted
    assert fast.runner.attention.name == "triton"
    want = [o.token_ids for o in plain.generate(batch, params)]
    assert [o.token_ids for o in fast.generate(batch, params)] == want


def test_split_plan_covers_every_length(kernels):
    for length in (1, 63, 128, 129, 1000, 4096, 70000):
        splits, chunk = kernels.num_splits(length)
        assert splits * chunk >= length > (splits - 1) * chunk
        assert chunk % kernels.BLOCK_N == 0 and 1 <= splits <= kernels.MAX_SPLITS


def test_kernels_refuse_what_they_cannot_do(kernels):
    assert not kernels.available("cpu")
    k = torch.zeros(8, 2, 12)
    with pytest.raises(ValueError, match="power-of-two head"):
        kernels.decode_attention(torch.zeros(1, 4, 12), k, k, torch.zeros(1, 1, dtype=torch.long),
                                 torch.tensor([1]), 8, 8, 1.0)


@pytest.mark.parametrize("heads,kv_heads,head_dim,block_size",
                         [(4, 2, 16, 4), (6, 6, 32, 16), (9, 3, 64, 8)])
@pytest.mark.parametrize("small_tiles", [False, True])
def test_rope_store_attention_is_rope_and_store_then_decode_attention(
        kernels, heads, kv_heads, head_dim, block_size, small_tiles):
    """The fused kernel: the same output and the same cache as the two kernels it replaces, for
    contexts whose new token starts, ends or sits inside a chunk (and padding rows of context 1)."""
    if small_tiles:
        kernels.BLOCK_N, kernels.MAX_SPLITS = 8, 3
    g = torch.Generator().manual_seed(5)
    num_blocks, length = 48, 64
    width = math.ceil(length / block_size)
    context = torch.tensor([1, 8, 9, 37, 64])
    batch = len(context)
    tables = torch.stack([torch.randperm(num_blocks, generator=g)[:width] for _ in range(batch)])
    positions = context - 1
    slots = tables.gather(1, (positions // block_size)[:, None])[:, 0] * block_size \
        + positions % block_size
    qkv = torch.randn(batch, (heads + 2 * kv_heads) * head_dim, generator=g)
    angles = torch.rand(length, head_dim // 2, generator=g) * 6
    cos, sin = (torch.cat([f(angles)] * 2, -1) for f in (torch.cos, torch.sin))
    scale = head_dim ** -0.5
    k, v = random_cache(num_blocks, block_size, kv_heads, head_dim, seed=6)
    k2, v2 = k.clone(), v.clone()
    q = kernels.rope_and_store(qkv, cos, sin, positions, slots, k, v, heads, kv_heads)
    want = kernels.decode_attention(q, k, v, tables, context, length, block_size, scale)
    k3, v3 = k2.clone(), v2.clone()
    got = kernels.rope_store_attention(qkv, cos, sin, positions, slots, k2, v2, tables, context,
                                       length, block_size, scale, heads, kv_heads)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(k2, k) and torch.equal(v2, v)
    counters = torch.zeros(batch * heads + 3, dtype=torch.int32)   # merged inside the kernel
    for _ in range(2):                                  # and left zero for the next call
        merged = kernels.rope_store_attention(qkv, cos, sin, positions, slots, k3, v3, tables,
                                              context, length, block_size, scale, heads,
                                              kv_heads, counters)
        torch.testing.assert_close(merged, want, rtol=1e-5, atol=1e-5)
        assert not counters.any() and torch.equal(k3, k) and torch.equal(v3, v)
