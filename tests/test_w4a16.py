"""inferlab.compress.w4a16: 4-bit packing, the fused Triton kernel (in Triton's interpreter on this
CPU, through inferlab.lab.triton_cpu), the CPU fallback, the Linear swap on the real model, and
the GPU benchmark's plumbing. tests/w4a16_interpreted.py runs the kernel again in a child process
started with TRITON_INTERPRET=1 (Triton's own switch, read at import)."""
from __future__ import annotations

import copy
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inferlab.compress import w4a16
from inferlab.compress.w4a16 import (
    W4A16Linear,
    bits_per_weight,
    dequantize_w4,
    fused_w4a16,
    launch_w4a16,
    pack_w4,
    quantize_model_w4a16,
    w4a16_matmul,
)

HERE = Path(__file__).resolve().parent
triton = pytest.importorskip("triton")


def random_weight(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * torch.rand(n, 1, generator=g) + 0.2


# ------------------------------------------------------------------------------ the format
def test_packing_layout_low_nibble_first_and_an_odd_k_padded():
    codes = torch.tensor([[1, 2, 15, 0, 7]])          # an exact grid: lo = 0, hi = 15
    qweight, scales, zeros, group = pack_w4(codes.float(), group_size=8)
    assert qweight.dtype == torch.uint8 and qweight.tolist() == [[0x21, 0x0F, 0x07]]
    assert scales.dtype == torch.float16 and scales.tolist() == [[1.0]] and zeros.tolist() == [[0]]
    assert torch.equal(dequantize_w4(qweight, scales, zeros, group, 5), codes.float())


def test_round_trip_is_exact_on_a_4bit_grid_and_within_half_a_step_otherwise():
    n, k, group = 6, 100, 32                            # 4 groups, the last one short
    g = torch.Generator().manual_seed(1)
    step = torch.rand(n, 4, generator=g).half().float() + 0.1
    zero = torch.randint(0, 16, (n, 4), generator=g).float()
    code = torch.randint(0, 16, (n, k), generator=g).float()
    col = torch.arange(k) // group
    grid = (code - zero[:, col]) * step[:, col]
    grid[:, col == 0] = grid[:, col == 0].clamp(max=grid.max())  # keep 0 inside every range
    packed = pack_w4(grid, group)
    assert packed[0].shape == (n, 50) and packed[1].shape == (n, 4)
    rebuilt = dequantize_w4(*packed, in_features=k)
    scale = packed[1].float()[:, col]
    assert ((rebuilt - grid).abs() <= scale * 0.5 + 1e-6).all()

    w = random_weight(16, 200, seed=2)
    qweight, scales, zeros, _ = pack_w4(w, 64)
    rebuilt = dequantize_w4(qweight, scales, zeros, 64, 200)
    col = torch.arange(200) // 64
    assert ((rebuilt - w).abs() <= scales.float()[:, col] * 0.5 + 1e-5).all()
    relative = (rebuilt - w).norm() / w.norm()
    assert 0 < relative < 0.1, relative
    zero_weight = torch.zeros(3, 64)
    zero_weight[0, 5] = 1.0
    assert dequantize_w4(*pack_w4(zero_weight, 32))[1:].abs().max() == 0   # zeros stay zeros


def test_storage_and_refusals():
    qweight, scales, zeros, group = pack_w4(torch.randn(64, 256), 128)
    stored = sum(t.numel() * t.element_size() for t in (qweight, scales, zeros))
    assert stored * 8 / (64 * 256) == pytest.approx(bits_per_weight(128))
    with pytest.raises(ValueError, match="even"):
        pack_w4(torch.randn(4, 8), group_size=3)
    with pytest.raises(ValueError, match="qweight"):
        launch_w4a16(w4a16._compiled(), torch.randn(1, 10), qweight, scales, zeros, group)


# ------------------------------------------------------------------------------ the kernel
def reference(x, packed, k):
    return x.double() @ dequantize_w4(*packed, in_features=k).double().T


CONFIGS = {
    "package": None,                                                         # kernel_config
    "narrow tiles, split K": dict(block_m=1, block_n=16, block_k=32, split_k=2, num_warps=4,
                                  num_stages=2),
    "dot, scale per byte": dict(block_m=16, block_n=16, block_k=64, split_k=1, num_warps=4,
                                num_stages=2),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m,n,k,group", [(1, 40, 200, 32), (1, 24, 544, 32), (3, 48, 201, 64),
                                         (17, 24, 128, 128), (64, 16, 96, 32)])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_kernel_matches_pytorch_in_the_interpreter(dtype, m, n, k, group, config):
    settings = CONFIGS[config]
    if settings and m > 1 and settings["block_m"] == 1:
        settings = dict(settings, block_m=16)
    packed = pack_w4(random_weight(n, k, seed=k), group)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)).to(dtype)
    got = fused_w4a16(x, *packed, config=settings)
    want = reference(x, packed, k)
    assert got.shape == (m, n) and got.dtype == dtype
    tol = (2e-2 if dtype == torch.bfloat16 else 3e-3) * want.abs().max().item()
    assert (got.double() - want).abs().max().item() <= tol


@pytest.mark.parametrize("m", [1, 5])
def test_every_tuning_candidate_computes_the_same_product(m):
    """tuned_config may pick any candidate on a GPU: each must be right (group 32: K tiles of
    one group and of two; K = 200 leaves a tail and N = 40 a partial N tile)."""
    packed = pack_w4(random_weight(40, 200, seed=3), 32)
    x = torch.randn(m, 200, generator=torch.Generator().manual_seed(m)).half()
    want = reference(x, packed, 200)
    candidates = w4a16.candidate_configs(1 if m == 1 else 16, 32, k=200 if m == 1 else None)
    assert w4a16.kernel_config(m, 32) in candidates and len(candidates) > 4
    for config in candidates:
        got = fused_w4a16(x, *packed, config=config)
        assert (got.double() - want).abs().max().item() <= 3e-3 * want.abs().max().item(), config


def test_one_token_path_reads_words_where_rows_allow(monkeypatch):
    """Rows on 16-byte bounds (K a multiple of 32) take the 32-bit-word path, other rows the byte
    path; both compute the product, partial tiles and K split included."""
    taken = []
    launch = w4a16.launch_w4a16
    monkeypatch.setattr(w4a16, "launch_w4a16",
                        lambda *a, **kw: taken.append(kw["WORDS"]) or launch(*a, **kw))
    for k, group, words in [(544, 32, True), (768, 128, True), (200, 32, False)]:
        packed = pack_w4(random_weight(24, k, seed=k), group)
        x = torch.randn(1, k, generator=torch.Generator().manual_seed(k)).half()
        want = reference(x, packed, k)
        for config in w4a16.candidate_configs(1, group, k)[:4]:
            taken.clear()
            got = fused_w4a16(x, *packed, config=config)
            assert taken == [words], (k, config)
            assert (got.double() - want).abs().max().item() <= 3e-3 * want.abs().max().item()


def test_kernel_accumulates_in_float32():
    k = 512                                 # 2048 from group 0, then 480 terms of 1/32
    codes = torch.ones(16, k, dtype=torch.uint8)
    codes[:, :32] = 8
    qweight = codes[:, 0::2] | (codes[:, 1::2] << 4)
    scales = torch.full((16, k // 32), 1 / 32, dtype=torch.float16)
    scales[:, 0] = 8.0
    zeros = torch.zeros(16, k // 32, dtype=torch.uint8)
    x = torch.ones(1, k, dtype=torch.float16)
    for config in (None, dict(block_m=16, block_n=16, block_k=16, split_k=1, num_warps=4,
                              num_stages=2)):
        out = fused_w4a16(x, qweight, scales, zeros, 32, config=config)
        assert (out.float() - 2063).abs().max() <= 1.01, out   # 2063 -> 2064 in fp16


def test_launcher_partial_grid_and_clean_process():
    import triton.language as tl
    language = [(module, dict(vars(module))) for module in (tl, tl.core, tl.math, tl.core.tensor)]
    packed = pack_w4(random_weight(48, 64), 32)
    x = torch.randn(20, 64).half()
    out = torch.full((20, 48), float("nan"), dtype=torch.float16)
    launch_w4a16(w4a16._compiled(), x, *packed, block_m=16, block_n=16, block_k=32, grid=(1, 2, 1),
                 out=out, k_bytes=32, split_bytes=32, SPLIT_K=1)
    assert torch.isnan(out[16:]).all() and torch.isnan(out[:, 32:]).all()
    want = reference(x, packed, 64)[:16, :32]
    assert (out[:16, :32].double() - want).abs().max() <= 3e-3 * want.abs().max()
    # the interpreter was switched on for those launches only: triton.language is as it was
    # (a function left swapped would break compiling any kernel later in the process)
    for module, saved in language:
        assert dict(vars(module)) == saved, module
    from triton.runtime.jit import JITFunction

    from inferlab.lab import triton_cpu
    assert os.environ.get("TRITON_INTERPRET") is None or os.environ["TRITON_INTERPRET"] == "1"
    if os.environ.get("TRITON_INTERPRET") is None:
        with pytest.raises(RuntimeError, match="outside of the scope of a kernel"):
            JITFunction.__call__(w4a16._compiled())
    with pytest.raises(TypeError, match="not a Triton kernel"):
        triton_cpu.launch(lambda *a: None, (1,))


# ------------------------------------------------------------------------------ fallback, layer
def test_cpu_fallback_and_the_layer():
    """The fallback dequantizes into x's dtype (each weight rounds once, at unit roundoff u) and
    multiplies there (PyTorch accumulates CPU matmuls in float32, k roundings at float32's u32,
    then rounds the result once). Per entry the error is bounded by
    (2u + k u32) * (|x| @ |W|.T) + u * |result|: relative to the terms' magnitudes, not a fixed
    tolerance, which cancellation exceeds."""
    packed = pack_w4(random_weight(24, 70), 16)
    weight = dequantize_w4(*packed, in_features=70).double()
    g = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(5, 70, generator=g).to(dtype)
        got = w4a16_matmul(x, *packed)
        assert got.dtype == dtype
        u, u32 = torch.finfo(dtype).eps / 2, torch.finfo(torch.float32).eps / 2
        want = reference(x, packed, 70)
        bound = (2 * u + 70 * u32) * (x.double().abs() @ weight.abs().T) + u * want.abs()
        error = (got.double() - want).abs()
        assert (error <= bound).all(), (error - bound).max()
        assert bound.max() < 0.05 * want.abs().max()                    # the bound still bites
    linear = torch.nn.Linear(70, 24, bias=True)
    layer = W4A16Linear.from_linear(linear, group_size=16)
    x = torch.randn(2, 3, 70)
    want = torch.nn.functional.linear(x, dequantize_w4(layer.qweight, layer.scales, layer.zeros,
                                                       16, 70), linear.bias)
    torch.testing.assert_close(layer(x), want)
    assert "group_size=16" in repr(layer)


def test_swap_keeps_the_real_models_greedy_output_close(model_and_tokenizer):
    """On the CPU the swapped layers compute exactly the dequantized weights (greedy tokens
    identical to a model holding them in nn.Linear); those stay close to fp32 (the embedded model
    was Q4_1, whose float minimum an integer zero-point does not reproduce exactly)."""
    from inferlab.lab.data import eval_tokens
    from inferlab.lab.models import weight_bytes
    from inferlab.lab.quality import logits_of, top1_agreement

    model, tokenizer = model_and_tokenizer
    swapped = quantize_model_w4a16(copy.deepcopy(model), group_size=32)
    layers = {name: m for name, m in swapped.named_modules() if isinstance(m, W4A16Linear)}
    assert len(layers) == 7 * model.config.num_hidden_layers
    assert isinstance(swapped.lm_head, torch.nn.Linear)
    assert weight_bytes(swapped) < weight_bytes(model)
    fake = copy.deepcopy(model)
    for name, layer in layers.items():
        fake.get_submodule(name).weight.data = dequantize_w4(
            layer.qweight, layer.scales, layer.zeros, 32, layer.in_features)
    ids = eval_tokens(tokenizer, 128)
    prompt = ids[:, :16]
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    with torch.no_grad():
        torch.testing.assert_close(logits_of(swapped, ids), logits_of(fake, ids), rtol=1e-4,
                                   atol=1e-3)
        assert torch.equal(swapped.generate(prompt, **kwargs), fake.generate(prompt, **kwargs))
        reference, quantized_logits = logits_of(model, ids), logits_of(swapped, ids)
        assert top1_agreement(reference, quantized_logits) > 0.7
        nll = [torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]).item()
               for logits in (reference, quantized_logits)]
        assert nll[1] < nll[0] + math.log(1.5)          # perplexity at most 1.5x fp32's
        plain = model.generate(prompt, **kwargs)[0, 16:]
        quantized = swapped.generate(prompt, **kwargs)[0, 16:]
    assert torch.equal(plain[:2], quantized[:2]), (plain.tolist(), quantized.tolist())


# ------------------------------------------------------------------------------ benchmark plumbing
def test_benchmark_plumbing_on_the_cpu():
    from inferlab.compress.w4a16_bench import LLAMA2_7B_LINEARS, decode_estimate, time_layer

    rows = time_layer(2, 32, 64, group_size=32, dtype=torch.float32, device="cpu",
                      kernels={"kernel": lambda x, q, s, z, g: fused_w4a16(x, q, s, z, g)},
                      min_bytes=1e4, calls=2, repeats=1, with_bnb=False)
    assert set(rows) == {"fp16", "W4A16", "kernel"}
    assert all(r["us"] > 0 and r["timing"] == "eager" for r in rows.values())
    assert rows["W4A16"]["weight_bytes"] == 32 * 32 + 2 * 32 * 3   # codes, fp16 scales, zeros
    per_shape = {name: 10.0 for name in LLAMA2_7B_LINEARS}           # 10 us per call
    assert decode_estimate(per_shape, 1) == pytest.approx(1 / (32 * 7 * 10e-6))


@pytest.mark.slow  # two processes that import torch, transformers and bitsandbytes
def test_benchmark_script_needs_cuda_and_its_smoke_run_writes_results(tmp_path):
    script = HERE.parent / "benchmarks" / "w4a16_gpu.py"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode != 0 and "needs a CUDA GPU" in run.stderr
    run = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path),
                          "--batches", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "w4a16_gpu.json").is_file() and "| tiny 64x96 | 1 |" in (
        tmp_path / "w4a16_gpu.md").read_text()


def test_kernel_in_a_process_started_with_triton_interpret():
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-o", "addopts=", str(HERE / "w4a16_interpreted.py")],
                         cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


# ------------------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_compiled_kernel_matches_pytorch_on_the_gpu(dtype):
    from inferlab.compress.w4a16_bench import time_layer

    for m, n, k, group in [(1, 4096, 4096, 128), (8, 11008, 4096, 128), (32, 4096, 11008, 128),
                           (64, 1000, 1001, 64), (5, 96, 200, 32)]:
        on_cpu = pack_w4(random_weight(n, k), group)
        packed = [t.cuda() for t in on_cpu[:3]] + [group]
        x = torch.randn(m, k, device="cuda").to(dtype)
        want = reference(x.cpu(), on_cpu, k)
        tol = (2e-2 if dtype == torch.bfloat16 else 3e-3) * want.abs().max().item()
        for config in [None, *(dict(c, block_m=c["block_m"] if m == 1 else 16)
                               for c in CONFIGS.values() if c)]:
            got = fused_w4a16(x, *packed, config=config)
            assert (got.cpu().double() - want).abs().max().item() <= tol, (m, n, k, config)
        assert (w4a16_matmul(x, *packed).cpu().double() - want).abs().max().item() <= tol
    rows = time_layer(1, 4096, 4096, dtype=torch.float16, repeats=3)
    assert rows["fp16"]["timing"] == "graph" and rows["W4A16"]["us"] > 0, rows


# ------------------------------------------------------------------------------ what it compiles to
@pytest.mark.parametrize("words", [False, True])
def test_one_token_tiles_read_weights_in_16_byte_vectors(words):
    """Compiled for an H100/H200 (no GPU needed), the one-token path loads each thread's weight
    bytes with one 16-byte vector instruction per tile, not byte by byte (a tile transposed, or
    masked per nibble, compiles to one ``ld.global.b8`` per byte and reads at a fraction of the
    memory bandwidth) - reading bytes, or 32-bit words (``WORDS``, rows on 16-byte bounds)."""
    pytest.importorskip("triton.backends.nvidia.compiler")
    from inferlab.lab.ptx import compile_ptx, global_loads
    pointers = {"x_ptr": "float16", "qweight_ptr": "uint8", "scales_ptr": "float16",
                "zeros_ptr": "uint8", "out_ptr": "float16"}
    config = w4a16.kernel_config(1)
    ptx = compile_ptx(w4a16._compiled(), pointers,
                      dict(GROUP_SIZE=128, BLOCK_M=1, BLOCK_N=config["block_n"],
                           BLOCK_K=config["block_k"], SPLIT_K=1,
                           TILE_GROUPS=w4a16.tile_groups(1, config["block_k"], 128),
                           WORDS=words),
                      divisible=("N", "K", "stride_xm", "stride_qn", "stride_gn", "stride_om",
                                 "k_bytes", "split_bytes"),
                      num_warps=config["num_warps"], num_stages=config["num_stages"])
    loads = global_loads(ptx)
    per_thread = config["block_n"] * config["block_k"] // 2 // (32 * config["num_warps"])
    assert loads["ld.global.v4.b32"] >= per_thread // 16, loads
    assert loads["ld.global.b8"] <= 1, loads        # the zero-point byte of the row's group
    # codes become floats through their bits (_nibble_float), not int-to-float conversions,
    # which run at a quarter of the arithmetic rate: one is left, for the group's zero-point
    assert len(re.findall(r"cvt\.rn\.f32\.[us]\d+", ptx)) <= 2, "int-to-float conversions"
