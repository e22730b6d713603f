"""Timing one Linear layer's matmul on a GPU: fp16/bf16, bitsandbytes NF4, the W4A16 kernel and
PyTorch's int4 kernel (lesson 01, section 11, and ``benchmarks/w4a16_gpu.py``).

A decoding step's matmul with one token takes microseconds, so three things would otherwise
measure something else than the kernel:

* **the L2 cache.** A Hopper GPU's L2 holds tens of megabytes: one 4-bit layer fits, and calling
  it twice reads it from the cache the second time. Every format gets enough *copies* of its
  weights (together ``min_bytes`` or more) and the calls cycle over them, so each call reads its
  weights from memory, as the layers of a real model do;
* **launch overhead.** Launching a kernel from Python costs a few microseconds of CPU time, as
  much as the kernel itself: ``calls`` calls are captured in one CUDA graph and the graph's
  replay is timed (``inferlab.lab.bench.time_fn``: warm-up, synchronisation, median). Where
  capture fails, a plain loop is timed and the row says ``"eager"``;
* **bytes.** Achieved bandwidth is the bytes of the *weight format* read per call (codes, scales,
  zero-points; activations are negligible at small M) over the time per call.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from inferlab.compress.w4a16 import pack_w4, w4a16_matmul
from inferlab.lab.bench import time_fn

LLAMA2_7B_LINEARS = {          # name: (out_features N, in_features K, count per decoder layer)
    "q/k/v/o 4096x4096": (4096, 4096, 4),
    "gate/up 11008x4096": (11008, 4096, 2),
    "down 4096x11008": (4096, 11008, 1),
}
LLAMA2_7B_LAYERS = 32


def tensor_bytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def time_calls(call, copies: int, calls: int = 40, repeats: int = 20,
               device: str = "cuda") -> tuple[float, str]:
    """Median microseconds per ``call(i)`` (``i`` cycling over ``copies``), and how it was timed
    ("graph" or "eager"; always eager on a CPU, which only checks this plumbing)."""
    for i in range(copies):                  # warm-up: compiles kernels, fills allocator pools
        call(i)

    def run():
        for i in range(calls):
            call(i % copies)
    mode = "eager"
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                run()
            run, mode = graph.replay, "graph"
        except Exception:  # noqa: BLE001 - a library that cannot be captured is timed eagerly
            torch.cuda.synchronize()
    timing = time_fn(run, warmup=3, repeats=repeats, device=device)
    return timing.median / calls * 1e6, mode


def _copies(one_copy_bytes: int, min_bytes: float) -> int:
    return max(2, min(64, math.ceil(min_bytes / one_copy_bytes)))


def bnb_nf4_layer(weight: torch.Tensor):
    """A bitsandbytes NF4 Linear (blocks of 64, double quantization) and its weight bytes."""
    import bitsandbytes as bnb
    n, k = weight.shape
    layer = bnb.nn.Linear4bit(k, n, bias=False, compute_dtype=weight.dtype,
                              compress_statistics=True, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(weight.cpu(), requires_grad=False, quant_type="nf4",
                                     compress_statistics=True)
    layer = layer.to(weight.device)          # quantizes here
    state = layer.weight.quant_state
    nested = getattr(state, "state2", None)
    size = tensor_bytes(layer.weight.data, state.absmax, getattr(state, "code", None),
                        getattr(nested, "absmax", None), getattr(nested, "code", None))
    return layer, size


def tinygemm_layer(weight: torch.Tensor, group_size: int = 128, inner_k_tiles: int = 8):
    """PyTorch's int4 kernel (``inferlab.compress.int4_tinygemm``) holding ``weight`` quantized
    by ``pack_w4``, on its device, for activations of its dtype (bf16 on CUDA: give it bf16
    weights and activations, or the layer casts every call), and its weight bytes."""
    from inferlab.compress.int4_tinygemm import Int4TinyGemmLinear, packed_bytes
    qweight, scales, zeros, _ = pack_w4(weight, group_size)
    layer = Int4TinyGemmLinear.from_packed(qweight, scales, zeros, group_size, weight.shape[1],
                                           dtype=weight.dtype, inner_k_tiles=inner_k_tiles)
    return layer, packed_bytes(layer.packed, layer.scales_and_zeros)


def time_layer(m: int, n: int, k: int, *, kernels: dict | None = None, group_size: int = 128,
               dtype: torch.dtype = torch.float16, with_bnb: bool = True,
               layers: dict | None = None, with_w4a16: bool = True, dense_name: str = "fp16",
               min_bytes: float = 256e6, calls: int = 40, repeats: int = 20,
               device: str = "cuda") -> dict:
    """Time ``x [m, k] @ W.T`` for a random ``W [n, k]`` on the GPU, each way:

    ``"fp16"`` (``F.linear``, cuBLAS, in ``dtype``: ``dense_name`` renames it, e.g. ``"bf16"``),
    ``"W4A16"`` (``w4a16_matmul``, this package's kernel; unless ``with_w4a16=False``),
    ``"bnb NF4"`` (bitsandbytes, if importable), every ``kernels[name](x, qweight, scales,
    zeros, group_size)`` (e.g. your own kernel's launcher) and every ``layers[name](weight)
    -> (callable, weight_bytes)`` (a layer built from the weight, e.g. ``tinygemm_layer``).
    Returns name -> {"us", "weight_bytes", "GB_s", "timing", "copies"} (or {"error": ...} for a
    way that failed). ``device="cpu"`` only tests the plumbing (there ``w4a16_matmul`` is its
    PyTorch fallback)."""
    torch.manual_seed(0)
    x = torch.randn(m, k, device=device, dtype=dtype)
    weight = torch.randn(n, k, device=device, dtype=dtype) * 0.02
    rows = {}
    fp16_copies = _copies(tensor_bytes(weight), min_bytes)
    weights = [weight.clone() for _ in range(fp16_copies)]
    rows[dense_name] = (lambda i: F.linear(x, weights[i]), tensor_bytes(weight), fp16_copies)
    packed = pack_w4(weight, group_size)
    w4_bytes = tensor_bytes(*packed[:3])
    w4_copies = _copies(w4_bytes, min_bytes)
    copies = [tuple(t.clone() for t in packed[:3]) for _ in range(w4_copies)]
    if with_w4a16:
        rows["W4A16"] = (lambda i: w4a16_matmul(x, *copies[i], group_size), w4_bytes, w4_copies)
    for name, launch in (kernels or {}).items():
        rows[name] = (lambda i, launch=launch: launch(x, *copies[i], group_size), w4_bytes,
                      w4_copies)
    for name, build in (layers or {}).items():
        try:
            first, size = build(weight)
            n_copies = _copies(size, min_bytes)
            built = [first] + [build(weight)[0] for _ in range(n_copies - 1)]
            rows[name] = (lambda i, built=built: built[i](x), size, n_copies)
        except Exception as error:  # noqa: BLE001 - a shape or GPU this way cannot take
            rows[name] = error
    if with_bnb:
        try:
            layer, nf4_bytes = bnb_nf4_layer(weight)
            nf4_copies = _copies(nf4_bytes, min_bytes)
            layers = [layer] + [bnb_nf4_layer(weight)[0] for _ in range(nf4_copies - 1)]
            rows["bnb NF4"] = (lambda i: layers[i](x), nf4_bytes, nf4_copies)
        except Exception as error:  # noqa: BLE001 - not installed, or no kernel for this GPU
            rows["bnb NF4"] = error
    results = {}
    with torch.no_grad():
        for name, row in rows.items():
            if isinstance(row, Exception):
                results[name] = {"error": f"{type(row).__name__}: {row}"[:300]}
                continue
            call, size, n_copies = row
            try:
                us, mode = time_calls(call, n_copies, calls, repeats, device)
            except Exception as error:  # noqa: BLE001 - one failing way must not stop the rest
                results[name] = {"error": f"{type(error).__name__}: {error}"[:300]}
                continue
            results[name] = {"us": round(us, 2), "weight_bytes": size,
                             "GB_s": round(size / us / 1e3, 1), "timing": mode,
                             "copies": n_copies}
    return results


def decode_estimate(per_shape_us: dict, m: int, linears: dict = LLAMA2_7B_LINEARS,
                    layers: int = LLAMA2_7B_LAYERS) -> float:
    """Tokens/s of a decoder's Linear layers alone (Llama-2-7B by default), at ``m`` tokens per
    step, from the microseconds of one call of each shape (attention, norms, embeddings, lm_head
    and the gaps between kernels excluded: an upper bound)."""
    step_us = layers * sum(per_shape_us[name] * count
                           for name, (_, _, count) in linears.items())
    return m / (step_us * 1e-6)
