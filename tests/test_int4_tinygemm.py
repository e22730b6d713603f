"""inferlab.compress.int4_tinygemm: the course's W4A16 format converted for PyTorch's int4 kernel
(tinygemm). On a CPU the ``_for_cpu`` ops run, so the conversion (zero-points, group layout) is
checked exactly against ``dequantize_w4``; the CUDA path (its own nibble order and layout) runs
only where a GPU is, and in ``benchmarks/w4a16_gpu.py``, which checks it before timing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inferlab.compress.int4_tinygemm import (
    Int4TinyGemmLinear,
    check_against_dequantized,
    from_w4a16,
    int4_matmul,
    packed_bytes,
    problems,
    supported,
)
from inferlab.compress.w4a16 import dequantize_w4, pack_w4

HERE = Path(__file__).resolve().parent


def linear(n, k, bias=False, seed=0):
    torch.manual_seed(seed)
    layer = torch.nn.Linear(k, n, bias=bias)
    layer.weight.data = torch.randn(n, k) * 0.05 + 0.01       # off-centre: zero-points != 8
    return layer


@pytest.mark.parametrize("n,k,group", [(16, 64, 32), (64, 96, 32), (32, 256, 64),
                                       (128, 512, 128), (48, 1024, 256)])
def test_layer_equals_linear_on_the_dequantized_weight(n, k, group):
    lin = linear(n, k)
    qweight, scales, zeros, _ = pack_w4(lin.weight.data, group)
    assert zeros.float().std() > 0                   # zero-points vary: the conversion matters
    layer = Int4TinyGemmLinear.from_linear(lin, group)
    x = torch.randn(5, k)
    want = F.linear(x, dequantize_w4(qweight, scales, zeros, group, k))
    got = layer(x)
    assert got.dtype == torch.float32 and got.shape == (5, n)
    assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()
    assert check_against_dequantized(layer, qweight, scales, zeros) < 1e-5


def test_a_wrong_zero_point_is_caught_by_the_check():
    lin = linear(32, 128)
    qweight, scales, zeros, _ = pack_w4(lin.weight.data, 32)
    layer = Int4TinyGemmLinear.from_packed(qweight, scales, zeros, 32)
    swapped = (qweight << 4) | (qweight >> 4)              # the other nibble order
    assert check_against_dequantized(layer, swapped, scales, zeros) > 0.1
    assert check_against_dequantized(layer, qweight, scales, zeros + 1) > 0.1


def test_conversion_layout_and_bytes():
    lin = linear(32, 256)
    qweight, scales, zeros, _ = pack_w4(lin.weight.data, 64)
    packed, scales_and_zeros = from_w4a16(qweight, scales, zeros, 64, dtype=torch.float32)
    assert scales_and_zeros.shape == (256 // 64, 32, 2)          # [K / G, N, 2], group-major
    assert torch.equal(scales_and_zeros[:, :, 0], scales.float().T)
    assert torch.allclose(scales_and_zeros[:, :, 1], ((8 - zeros.float()) * scales.float()).T)
    assert packed_bytes(packed, scales_and_zeros) == 32 * 256 // 2 + 4 * 32 * 2 * 4


def test_leading_dims_bias_and_16_bit_activations():
    lin = linear(64, 128, bias=True)
    qweight, scales, zeros, _ = pack_w4(lin.weight.data, 32)
    weight = dequantize_w4(qweight, scales, zeros, 32, 128)
    x = torch.randn(2, 3, 128)
    got = Int4TinyGemmLinear.from_linear(lin, 32)(x)
    assert got.shape == (2, 3, 64)
    assert torch.allclose(got, F.linear(x, weight, lin.bias), atol=1e-5, rtol=1e-5)
    for dtype, tol in [(torch.bfloat16, 2e-2), (torch.float16, 2e-3)]:
        layer = Int4TinyGemmLinear.from_packed(qweight, scales, zeros, 32, dtype=dtype,
                                               bias=lin.bias.data)
        x16 = x.to(dtype)
        out = layer(x16)
        assert out.dtype == dtype and out.shape == (2, 3, 64)
        want = F.linear(x16.float(), weight, lin.bias)
        assert (out.float() - want).abs().max() <= tol * want.abs().max()
        # fp32 activations given to a layer packed for 16-bit ones: cast in, cast back
        assert layer(x).dtype == torch.float32


def test_from_linear_keeps_the_device_and_refuses_to_move():
    layer = Int4TinyGemmLinear.from_linear(linear(32, 64), 32)
    assert layer.packed.device.type == "cpu" and layer.scales_and_zeros.device.type == "cpu"
    assert "group_size=32" in repr(layer)
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="build the layer again"):
            layer.cuda()


@pytest.mark.parametrize("n,k,group,dtype,message", [
    (32, 256, 16, torch.float32, "group_size must be one of"),
    (32, 256, 96, torch.float32, "group_size must be one of"),
    (32, 96, 64, torch.float32, "must be a multiple of group_size"),
    (24, 256, 64, torch.float32, "multiple of 16"),
    (32, 256, 64, torch.float64, "float32, float16 or bfloat16"),
])
def test_what_it_cannot_take_raises_clearly(n, k, group, dtype, message):
    assert not supported(n, k, group, "cpu", dtype)
    weight = torch.randn(n, k)
    qweight, scales, zeros, _ = pack_w4(weight, 32)
    with pytest.raises(ValueError, match=message):
        from_w4a16(qweight, scales, zeros, group, k, dtype=dtype)
    if group == 64:
        with pytest.raises(ValueError, match=message):
            Int4TinyGemmLinear.from_linear(linear(n, k).to(dtype), group)


def test_cuda_rules_are_stated_without_a_gpu():
    assert supported(11008, 4096, 128, "cuda", torch.bfloat16) == (
        not torch.cuda.is_available() or torch.cuda.get_device_capability() >= (8, 0))
    found = " ".join(problems(100, 4096 + 64, 128, "cuda", torch.float16, inner_k_tiles=8))
    assert "bf16 activations only" in found and "multiple of 8" in found
    assert "multiple of group_size" in found
    assert "inner_k_tiles * 16" in " ".join(problems(64, 1024 + 64, 32, "cuda"))
    assert "inner_k_tiles must be" in " ".join(problems(64, 1024, 32, "cuda", inner_k_tiles=3))


def test_matmul_refuses_activations_of_another_dtype():
    qweight, scales, zeros, _ = pack_w4(torch.randn(32, 64), 32)
    packed, scales_and_zeros = from_w4a16(qweight, scales, zeros, 32, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="cast x first"):
        int4_matmul(torch.randn(1, 64), packed, scales_and_zeros, 32)


def test_time_layer_times_it_on_the_cpu():
    from inferlab.compress.w4a16_bench import time_layer, tinygemm_layer

    rows = time_layer(1, 32, 128, group_size=32, dtype=torch.bfloat16, device="cpu",
                      min_bytes=1e4, calls=2, repeats=1, with_bnb=False, with_w4a16=False,
                      dense_name="bf16", layers={"tinygemm": lambda w: tinygemm_layer(w, 32)})
    assert set(rows) == {"bf16", "tinygemm"}
    assert rows["tinygemm"]["us"] > 0 and rows["tinygemm"]["timing"] == "eager"
    assert rows["tinygemm"]["weight_bytes"] == 32 * 128 // 2 + 4 * 32 * 2 * 2   # bf16 s, z
    bad = time_layer(1, 24, 128, group_size=32, dtype=torch.float32, device="cpu",
                     min_bytes=1e4, calls=2, repeats=1, with_bnb=False,
                     layers={"tinygemm": lambda w: tinygemm_layer(w, 32)})
    assert "multiple of 16" in bad["tinygemm"]["error"] and bad["W4A16"]["us"] > 0


def test_benchmark_smoke_run_includes_tinygemm(tmp_path):
    script = HERE.parent / "benchmarks" / "w4a16_gpu.py"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path),
                          "--batches", "1", "8"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    record = json.loads((tmp_path / "w4a16_gpu.json").read_text())
    row = record["results"]["layers"]["tiny 64x96"]["1"]
    for kind in ("fp16", "bf16", "W4A16", "torch int4 (tinygemm)"):
        assert row[kind]["us"] > 0, (kind, row[kind])
    assert all(err < 2e-2 for err in record["results"]["tinygemm_check_rel_err"].values())
    assert "torch int4 (tinygemm)" in record["results"]["decode_estimate_tok_s"]["1"]
    assert "torch int4 (tinygemm)" in (tmp_path / "w4a16_gpu.md").read_text()


# ------------------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("n,k,group", [(4096, 4096, 128), (11008, 4096, 128), (4096, 11008, 128),
                                       (256, 512, 32), (128, 1024, 256)])
def test_cuda_kernel_matches_the_dequantized_weight(n, k, group):
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("tinygemm needs compute capability 8.0+")
    torch.manual_seed(0)
    weight = (torch.randn(n, k, device="cuda") * 0.02 + 0.005).to(torch.bfloat16)
    qweight, scales, zeros, _ = pack_w4(weight, group)
    layer = Int4TinyGemmLinear.from_packed(qweight, scales, zeros, group, k,
                                           dtype=torch.bfloat16)
    assert layer.packed.is_cuda and layer.packed.dim() == 4
    for m in (1, 5, 32):
        assert check_against_dequantized(layer, qweight, scales, zeros, m=m) < 2e-2
    x = torch.randn(2, 3, k, device="cuda", dtype=torch.float16)   # cast in and back out
    assert layer(x).dtype == torch.float16 and layer(x).shape == (2, 3, n)
    lin = torch.nn.Linear(k, n, bias=True, device="cuda", dtype=torch.bfloat16)
    assert Int4TinyGemmLinear.from_linear(lin, group).packed.is_cuda
