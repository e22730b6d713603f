"""One-token matrix multiplies on a GPU: a Triton matrix-vector kernel for batch-1 decode steps
(lesson 09, GPU part).

A batch-1 decode step multiplies one row of activations by every weight matrix of the model. Each
weight is read once and used for one multiply-add: the step is a race to read the weights, and
its speed limit is the memory bandwidth (lesson 00's roofline). A general matrix-multiply library
(cuBLAS, behind ``F.linear``) picks its tiles for many rows; for one row it reads a 4096 x 4096
weight at about two thirds of the copy bandwidth of an H200, a 4096 x 11008 one at about 85 %
(``benchmarks/results/w4a16_gpu.md``).

``gemv`` is written for the one-row case only:

* program ``i`` computes outputs ``i * BLOCK_N ... i * BLOCK_N + BLOCK_N - 1``, so a 4096-row
  weight makes hundreds to thousands of programs - every multiprocessor reads, none waits for
  another (no split of K, no atomics, no second kernel);
* each program walks along its rows ``BLOCK_K`` inputs at a time; the rows' bytes are contiguous,
  so every thread loads 16 bytes at once, and Triton pipelines the loop (``num_stages``) so the
  next tiles are in flight while this one is multiplied: what keeps memory busy is the number of
  bytes in flight, about bandwidth x latency (several MB on a Hopper GPU);
* products accumulate in fp32 registers, one row sum at the end.

The best tile depends on the GPU and the weight's shape, so ``tune`` times ``CANDIDATES`` on the
student's GPU once per shape and keeps the fastest - or cuBLAS, when no candidate beats it. It
times them as a decode step runs them: recorded in one CUDA graph (no launch cost: a graph's
kernels start back to back) over the model's own matrices of that shape, one after another, so each
call reads a weight that is not in the L2 cache. Timed one call at a time instead, a 4096 x 4096
product reads 5-8 us slower than it runs inside a step, the launch included, and that had handed
the shape to cuBLAS in some builds. On an H200 the kernel reads Llama-2-7B's weights 9-26 % faster
than cuBLAS, timed so, and a whole decode step ran 12-15 % faster
(``benchmarks/results/engine_gpu.md``).

``GemvWeights.linear`` is the engine's drop-in ``F.linear`` (``EngineConfig.gemv``): one row and
a tuned shape take the kernel, anything else ``F.linear``. ``GemvWeights.swiglu`` multiplies by
the MLP's stacked gate/up matrix and applies SwiGLU in the same kernel (each program reads a gate
row and its up row against the same inputs), which saves a decode step one small kernel per
layer (on an H200, a gain within the spread between repeats: ``benchmarks/results/engine_gpu.md``,
which also says why folding the RMS norms in did not pay). The kernel is wrapped as a PyTorch
custom operator, so ``torch.compile`` and CUDA graphs treat it as one opaque call.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .packed_weights import Matmuls
from .weights import swiglu

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU-only installs without Triton
    triton = None

#: (BLOCK_N, BLOCK_K, num_warps, num_stages) that ``tune`` tries: 1-4 rows a program, 32-64 bytes
#: of fp16 weights a thread per tile, 2-4 tiles in flight (the tiles that won on an H200 for
#: Llama-2-7B's shapes, and their neighbours)
CANDIDATES = ((1, 2048, 4, 4), (2, 1024, 4, 4), (2, 2048, 4, 3), (4, 512, 4, 4), (4, 1024, 4, 4),
              (4, 2048, 8, 3), (1, 4096, 8, 2), (2, 4096, 8, 2))


def _gemv_kernel(x_ptr, w_ptr, out_ptr, N, K, stride_wn, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, EVEN: tl.constexpr, SWIGLU: tl.constexpr):
    """``out[n] = sum_k x[k] * w[n, k]`` for ``BLOCK_N`` rows ``n`` of ``w [N, K]``; ``EVEN``
    when N and K are multiples of the tile (no masks: every load is a whole 16-byte vector).

    ``SWIGLU``: ``w`` is ``[2N, K]``, the MLP's gate rows above its up rows; each program also
    reads the up rows that match its gate rows, against the same loaded inputs, and stores
    ``silu(gate) * up``: the activation costs no kernel of its own."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_K)
    row_ptrs = w_ptr + rows[:, None].to(tl.int64) * stride_wn
    up_ptrs = row_ptrs + N * stride_wn
    acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    up = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + cols
        if EVEN:
            x = tl.load(x_ptr + k).to(tl.float32)
            w = tl.load(row_ptrs + k[None, :])
            if SWIGLU:
                up += tl.load(up_ptrs + k[None, :]).to(tl.float32) * x[None, :]
        else:
            k_ok = k < K
            w_ok = (rows[:, None] < N) & k_ok[None, :]
            x = tl.load(x_ptr + k, mask=k_ok, other=0.0).to(tl.float32)
            w = tl.load(row_ptrs + k[None, :], mask=w_ok, other=0.0)
            if SWIGLU:
                w_up = tl.load(up_ptrs + k[None, :], mask=w_ok, other=0.0)
                up += w_up.to(tl.float32) * x[None, :]
        acc += w.to(tl.float32) * x[None, :]
    out = tl.sum(acc, axis=1)
    if SWIGLU:
        out = out / (1.0 + tl.exp(-out)) * tl.sum(up, axis=1)
    tl.store(out_ptr + rows, out.to(out_ptr.dtype.element_ty), mask=rows < N)


_KERNEL: list = []


def _kernel():
    if triton is None:
        raise ImportError("the gemv kernel needs Triton (pip install triton)")
    if not _KERNEL:
        _KERNEL.append(triton.jit(_gemv_kernel))
    return _KERNEL[0]


def launch(x: torch.Tensor, weight: torch.Tensor, config: tuple,
           swiglu: bool = False) -> torch.Tensor:
    """``x [1, K] @ weight.T`` with the kernel and ``config`` (a row of ``CANDIDATES``) ->
    ``[1, N]`` in x's dtype; with ``swiglu``, ``weight`` is gate rows over up rows and the result
    ``silu(gate) * up``, ``[1, N / 2]``. CPU tensors run in Triton's interpreter (tests)."""
    if x.dim() != 2 or x.shape[0] != 1 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"gemv multiplies one row x [1, K] by weight [N, K]; got x "
                         f"{tuple(x.shape)} and weight {tuple(weight.shape)}")
    if weight.stride(1) != 1 or x.dtype != weight.dtype:
        raise ValueError("gemv needs a weight with contiguous rows and x of the weight's dtype")
    n, k = weight.shape
    if swiglu and n % 2:
        raise ValueError(f"swiglu needs gate and up rows stacked: an even number, not {n}")
    n //= 2 if swiglu else 1
    block_n, block_k, num_warps, num_stages = config
    x = x.contiguous()
    out = torch.empty(1, n, dtype=x.dtype, device=x.device)
    even = n % block_n == 0 and k % block_k == 0
    grid = (triton.cdiv(n, block_n),)
    args = (x, weight, out, n, k, weight.stride(0))
    meta = dict(BLOCK_N=block_n, BLOCK_K=block_k, EVEN=even, SWIGLU=swiglu)
    if x.device.type == "cpu":
        from inferlab.lab import triton_cpu
        triton_cpu.launch(_kernel(), grid, *args, **meta)
    else:
        _kernel()[grid](*args, **meta, num_warps=num_warps, num_stages=num_stages)
    return out


@torch.library.custom_op("inferlab::gemv", mutates_args=())
def _gemv_op(x: torch.Tensor, weight: torch.Tensor, swiglu: bool, block_n: int, block_k: int,
             num_warps: int, num_stages: int) -> torch.Tensor:
    """``launch`` as the custom operator ``inferlab::gemv``: torch.compile and graph capture see
    one call with a known output shape instead of tracing into Triton."""
    return launch(x, weight, (block_n, block_k, num_warps, num_stages), swiglu=swiglu)


@_gemv_op.register_fake
def _(x, weight, swiglu, block_n, block_k, num_warps, num_stages):
    return x.new_empty(x.shape[0], weight.shape[0] // (2 if swiglu else 1))


def gemv(x: torch.Tensor, weight: torch.Tensor, config: tuple,
         swiglu: bool = False) -> torch.Tensor:
    """The kernel through the custom operator (what the engine calls)."""
    return _gemv_op(x, weight, swiglu, *config)


def time_us(fn) -> float:
    """Median microseconds of ``fn()`` with the L2 cache flushed before each call."""
    from triton.testing import do_bench
    return do_bench(fn, warmup=10, rep=40, return_mode="median") * 1e3


def time_in_graph_us(fn, calls: int) -> float:
    """Median microseconds per call of ``fn(0), ..., fn(calls - 1)``, recorded in one CUDA graph
    and replayed (after a warm-up that also compiles): the kernels start back to back, as in a
    decode step's graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for i in range(calls):
            fn(i)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(i)
    return time_us(graph.replay) / calls


def tune(weights, candidates=CANDIDATES, swiglu: bool = False) -> dict:
    """Time cuBLAS and every candidate tile on one weight shape -> ``{"cublas_us", "timings":
    {config: us}, "best": config or None}``; ``best`` is None where no candidate beats cuBLAS.

    ``weights``: a matrix, or the model's matrices of one shape (each layer's, say). The calls
    run through all of them in one CUDA graph (``time_in_graph_us``; at least 4 calls, a
    matrix again where there are fewer), one random row of activations; with ``swiglu``, the
    kernel's SwiGLU against cuBLAS's matrix multiply alone. A tile whose output differs from
    the reference is not timed."""
    mats = [weights] if isinstance(weights, torch.Tensor) else list(weights)
    weight = mats[0]
    x = torch.randn(1, weight.shape[1], dtype=weight.dtype, device=weight.device)
    expected = swiglu_reference(x, weight) if swiglu else F.linear(x, weight)
    expected = expected.float()
    calls = max(len(mats), 4)

    def each(i):
        return mats[i % len(mats)]

    cublas = time_in_graph_us(lambda i: F.linear(x, each(i)), calls)
    timings = {}
    for config in candidates:
        try:
            got = launch(x, weight, config, swiglu).float()
            if not torch.allclose(got, expected, rtol=2e-2, atol=2e-2 * expected.abs().max()):
                continue
            timings[config] = time_in_graph_us(
                lambda i, c=config: launch(x, each(i), c, swiglu), calls)
        except Exception:  # noqa: BLE001 - a tile this GPU cannot compile is skipped
            continue
    best = min(timings, key=timings.get) if timings else None
    if best is not None and timings[best] >= cublas:
        best = None
    return {"cublas_us": cublas, "timings": timings, "best": best}


def available(device, dtype) -> bool:
    """Whether ``gemv`` runs compiled here: CUDA, Triton, fp16/bf16, and not switched off with
    ``INFERLAB_GEMV=0``."""
    return (triton is not None and torch.device(device).type == "cuda"
            and dtype in (torch.float16, torch.bfloat16)
            and os.environ.get("INFERLAB_GEMV", "1") != "0")


class GemvWeights(Matmuls):
    """The engine's matrix multiplies with ``gemv`` for one-row products of tuned shapes.

    Built once per engine: each weight shape of the model is tuned (``tune``) on the GPU - the
    MLP's gate/up matrix with its SwiGLU unless ``swiglu`` is False; ``choices`` keeps, per
    ``(shape, "plain" or "swiglu")``, the kernel tile that beat cuBLAS (or None: PyTorch ops
    stay). ``report`` holds the timings, for lessons and benchmarks. Passing ``choices`` skips
    the timing."""

    def __init__(self, weights, candidates=CANDIDATES, choices: dict | None = None,
                 swiglu: bool = True):
        matrices = [(w, False) for layer in weights.layers for w in (layer.qkv, layer.o,
                                                                    layer.down)]
        matrices += [(layer.gate_up, swiglu) for layer in weights.layers]
        matrices.append((weights.lm_head, False))
        self.report: dict = {}
        self.choices: dict = dict(choices or {})     # given: no timing (tests, the interpreter)
        shapes: dict = {}                            # (shape, kind) -> the matrices of that kind
        for w, fused in matrices if choices is None else ():
            shapes.setdefault((tuple(w.shape), "swiglu" if fused else "plain"), []).append(w)
        for key, mats in shapes.items():
            self.report[key] = tune(mats, candidates, key[1] == "swiglu")
            self.choices[key] = self.report[key]["best"]

    def __len__(self) -> int:
        return sum(config is not None for config in self.choices.values())

    def _config(self, x: torch.Tensor, weight: torch.Tensor, kind: str):
        return self.choices.get((tuple(weight.shape), kind)) if x.shape[0] == 1 else None

    def linear(self, x: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """The engine's drop-in ``F.linear``."""
        config = self._config(x, weight, "plain")
        if config is None:
            return F.linear(x, weight, bias)
        out = gemv(x, weight, config)
        return out if bias is None else out + bias

    def swiglu(self, x: torch.Tensor, gate_up: torch.Tensor) -> torch.Tensor:
        """The MLP's ``silu(x @ gate.T) * (x @ up.T)``, one kernel for one row."""
        config = self._config(x, gate_up, "swiglu")
        if config is None:
            return super().swiglu(x, gate_up)
        return gemv(x, gate_up, config, swiglu=True)


def swiglu_reference(x: torch.Tensor, gate_up: torch.Tensor) -> torch.Tensor:
    """``GemvWeights.swiglu`` in PyTorch ops."""
    return swiglu(F.linear(x, gate_up))
