"""The batch-1 matrix-vector kernel (inferlab/engine/gemv.py), run here in Triton's interpreter:
the very kernel a GPU runs, against F.linear; and its place in the engine."""
import pytest
import torch
import torch.nn.functional as F

from inferlab.engine import EngineConfig, LlamaWeights, LLMEngine, ModelConfig, SamplingParams

pytest.importorskip("triton")
from inferlab.engine import gemv  # noqa: E402

CONFIG = ModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16,
                     intermediate_size=96, vocab_size=97, max_position=256, eos_token_ids=(1,))


@pytest.mark.parametrize("n,k,tile", [(64, 128, (4, 64, 4, 3)),      # tiles divide: no masks
                                      (30, 100, (4, 64, 4, 3)),      # rows and K left over
                                      (8, 256, (1, 256, 4, 4)),      # one row a program, one tile
                                      (97, 64, (16, 128, 4, 4))])    # a tile wider than K
def test_kernel_equals_linear(n, k, tile):
    g = torch.Generator().manual_seed(n + k)
    w, x = torch.randn(n, k, generator=g), torch.randn(1, k, generator=g)
    out = gemv.launch(x, w, tile)
    assert out.shape == (1, n) and out.dtype == x.dtype
    torch.testing.assert_close(out, F.linear(x, w), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n,k,tile", [(64, 128, (4, 64, 4, 3)),      # tiles divide: no masks
                                      (30, 100, (4, 64, 4, 3)),      # rows and K left over
                                      (22, 64, (1, 256, 4, 4))])     # a tile wider than K
def test_swiglu_inside_the_kernel_equals_the_mlp(n, k, tile):
    """Gate rows above up rows: one kernel gives silu(x @ gate.T) * (x @ up.T)."""
    g = torch.Generator().manual_seed(n * k)
    w, x = torch.randn(n, k, generator=g), torch.randn(1, k, generator=g)
    out = gemv.launch(x, w, tile, swiglu=True)
    gate, up = x @ w[:n // 2].T, x @ w[n // 2:].T         # spelled out: not the code under test
    torch.testing.assert_close(out, gate * torch.sigmoid(gate) * up, rtol=1e-4, atol=1e-4)
    assert out.shape == (1, n // 2)


def test_half_precision_accumulates_in_float32():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 512, generator=g).half()
    x = torch.randn(1, 512, generator=g).half()
    exact = x.double() @ w.double().T
    out = gemv.launch(x, w, (4, 128, 4, 3))
    assert out.dtype == torch.float16
    # one rounding of an fp32 sum: as close as fp16 can hold the exact value
    assert ((out.double() - exact).abs() <= exact.abs() * 2 ** -10 + 1e-3).all()


def test_bad_input_is_refused_with_the_reason():
    w = torch.randn(8, 32)
    with pytest.raises(ValueError, match="one row"):
        gemv.launch(torch.randn(2, 32), w, (4, 32, 4, 3))
    with pytest.raises(ValueError, match="one row"):
        gemv.launch(torch.randn(1, 16), w, (4, 32, 4, 3))
    with pytest.raises(ValueError, match="dtype"):
        gemv.launch(torch.randn(1, 32).half(), w, (4, 32, 4, 3))
    with pytest.raises(ValueError, match="contiguous rows"):
        gemv.launch(torch.randn(1, 8), torch.randn(8, 32).T, (4, 32, 4, 3))
    with pytest.raises(ValueError, match="gate and up rows stacked: an even number, not 7"):
        gemv.launch(torch.randn(1, 32), torch.randn(7, 32), (4, 32, 4, 3), swiglu=True)


def test_the_custom_operator_compiles_as_one_opaque_call():
    w, x = torch.randn(32, 64), torch.randn(1, 64)
    compiled = torch.compile(lambda x, w: gemv.gemv(x, w, (4, 32, 4, 3)) * 2, fullgraph=True)
    torch.testing.assert_close(compiled(x, w), 2 * F.linear(x, w), rtol=1e-5, atol=1e-4)
    mlp = torch.compile(lambda x, w: gemv.gemv(x, w, (4, 32, 4, 3), swiglu=True) + 1,
                        fullgraph=True)
    torch.testing.assert_close(mlp(x, w), gemv.swiglu_reference(x, w) + 1, rtol=1e-4, atol=1e-4)


def test_engine_config_refuses_gemv_where_it_cannot_run():
    with pytest.raises(ValueError, match="gemv must be True or False"):
        EngineConfig(gemv="yes")
    with pytest.raises(ValueError, match="gemv_swiglu must be True or False"):
        EngineConfig(gemv_swiglu=None)
    weights = LlamaWeights.random(CONFIG, dtype=torch.float32, seed=1)
    with pytest.raises(ValueError, match="gemv=True needs a CUDA device"):
        LLMEngine(weights, config=EngineConfig(gemv=True, max_model_len=64))


@pytest.mark.parametrize("swiglu", [False, True])
def test_engine_decodes_through_the_kernel_with_the_same_tokens(monkeypatch, swiglu):
    """One sequence: every decode matmul of a chosen shape is one kernel launch (the prefill's
    many-row products and unchosen shapes stay F.linear; its one row of logits is a one-row
    product too), gate/up with its SwiGLU where that is chosen, and greedy tokens equal the plain
    engine's."""
    weights = LlamaWeights.random(CONFIG, dtype=torch.float32, seed=3, std=0.3)
    prompt, params = [5, 9, 13, 2, 7], SamplingParams(max_tokens=6, ignore_eos=True)
    config = EngineConfig(max_model_len=64, num_blocks=16, block_size=4)
    plain = LLMEngine(weights, config=config).generate([prompt], params)[0].token_ids

    engine = LLMEngine(weights, config=config)
    layer = weights.layers[0]
    chosen = {(tuple(layer.qkv.shape), "plain"): (4, 64, 4, 3),
              (tuple(layer.down.shape), "plain"): (2, 32, 4, 3),
              (tuple(weights.lm_head.shape), "plain"): (8, 64, 4, 3)}
    if swiglu:
        chosen[tuple(layer.gate_up.shape), "swiglu"] = (2, 64, 4, 3)
    engine.runner.matmuls = gemv.GemvWeights(weights, choices=chosen)
    launched = []
    real = gemv.launch
    monkeypatch.setattr(gemv, "launch", lambda x, w, tile, swiglu=False: launched.append(
        ((tuple(w.shape), "swiglu" if swiglu else "plain"), tile)) or real(x, w, tile, swiglu))
    if swiglu:       # PyTorch's SwiGLU is not called in a one-row step
        silu = F.silu
        monkeypatch.setattr(F, "silu", lambda t: silu(t) if t.shape[0] > 1 else pytest.fail(
            "SwiGLU outside the kernel"))
    ours = engine.generate([prompt], params)[0].token_ids
    assert ours == plain
    decode_steps = len(plain) - 1          # the first token comes from the prefill step
    per_step = CONFIG.num_layers * (2 + swiglu) + 1   # qkv, down (gate/up) per layer; lm_head
    assert len(launched) == decode_steps * per_step + 1
    assert {key for key, _ in launched} == set(chosen)
    assert all(tile == chosen[key] for key, tile in launched)
    assert len(engine.runner.matmuls) == len(chosen)


def test_gemv_weights_keep_cublas_for_unchosen_shapes_and_many_rows(monkeypatch):
    weights = LlamaWeights.random(CONFIG, dtype=torch.float32, seed=2)
    layer = weights.layers[0]
    matmuls = gemv.GemvWeights(weights, choices={(tuple(layer.o.shape), "plain"): None,
                                                 (tuple(layer.gate_up.shape), "swiglu"): None})
    monkeypatch.setattr(gemv, "launch", lambda *a, **k: pytest.fail("kernel used"))
    x = torch.randn(3, CONFIG.hidden_size)
    torch.testing.assert_close(matmuls.linear(x, layer.o), F.linear(x, layer.o))
    torch.testing.assert_close(matmuls.linear(x[:1], layer.o), F.linear(x[:1], layer.o))
    torch.testing.assert_close(matmuls.swiglu(x[:1], layer.gate_up),
                               gemv.swiglu_reference(x[:1], layer.gate_up))
    assert len(matmuls) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="tuning times kernels on a CUDA GPU")
def test_tune_picks_a_tile_only_when_it_beats_cublas():
    w = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    for swiglu in (False, True):
        report = gemv.tune(w, candidates=gemv.CANDIDATES[:3], swiglu=swiglu)
        assert report["timings"] and report["cublas_us"] > 0
        if report["best"] is not None:
            assert report["timings"][report["best"]] < report["cublas_us"]
