"""Model parallelism: tensor-parallel linear layers, a split MLP, and a toy pipeline. Lesson 11.

When a model does not fit one device, or one device is too slow, split it across several:

* **Tensor parallelism** (Megatron-LM) splits each weight matrix. For ``y = x @ W.T`` with an
  ``nn.Linear`` weight ``W`` of shape ``[out, in]``:

  - **column-parallel**: rank ``r`` keeps rows ``r`` of ``W`` split along ``out`` (the columns of
    ``W.T``) and computes its slice of ``y`` - no communication, the output stays split;
  - **row-parallel**: rank ``r`` keeps ``W`` split along ``in`` and multiplies it by *its* slice
    of ``x``; the partial results are **summed across ranks** (``all_reduce``), bias added once.

  A Llama MLP ``down(silu(gate(x)) * up(x))`` puts ``gate``/``up`` column-parallel and ``down``
  row-parallel: the element-wise product works on the split slices, so the whole MLP costs
  **one all-reduce** of a ``[tokens, hidden]`` tensor. Attention splits the same way, by heads.
* **Pipeline parallelism** splits the *layers*: stage 0 runs the first half, sends the activations
  to stage 1, which runs the second half. A single batch leaves one stage idle at a time (the
  *bubble*); cutting the batch into ``m`` micro-batches keeps both busy except for a bubble of
  ``(p - 1) / (m + p - 1)`` of the time with ``p`` stages.

``python -m inferlab.serving.parallel tp|pp ...`` runs the real thing: ``world_size`` processes
joined by ``torch.distributed`` (``gloo`` on CPU, ``nccl`` on GPUs) on this machine only, checking
the split model's output against the single-process one and timing the communication. ``run_tp``
and ``run_pp`` call it from a notebook and return its JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

MARK = "RESULT "


# ----------------------------------------------------------------------------------- shards
def split_columns(weight: torch.Tensor, bias: torch.Tensor | None, rank: int, world: int):
    """Column-parallel shard of an ``nn.Linear`` (``weight [out, in]``): a slice of ``out``."""
    if weight.shape[0] % world:
        raise ValueError(f"out_features {weight.shape[0]} is not divisible by world size {world}")
    w = weight.chunk(world, dim=0)[rank].contiguous()
    return w, (None if bias is None else bias.chunk(world, dim=0)[rank].contiguous())


def split_rows(weight: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Row-parallel shard of an ``nn.Linear``: a slice of ``in`` (the bias is not split)."""
    if weight.shape[1] % world:
        raise ValueError(f"in_features {weight.shape[1]} is not divisible by world size {world}")
    return weight.chunk(world, dim=1)[rank].contiguous()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (a no-op without a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class ColumnParallelLinear(nn.Module):
    """This rank's slice of the outputs; no communication."""

    def __init__(self, linear: nn.Linear, rank: int, world: int):
        super().__init__()
        w, b = split_columns(linear.weight.detach(), linear.bias, rank, world)
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = None if b is None else nn.Parameter(b.detach(), requires_grad=False)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class RowParallelLinear(nn.Module):
    """Partial product of this rank's input slice, summed over ranks; bias added after the sum."""

    def __init__(self, linear: nn.Linear, rank: int, world: int, reduce=all_reduce_sum):
        super().__init__()
        self.weight = nn.Parameter(split_rows(linear.weight.detach(), rank, world),
                                   requires_grad=False)
        self.bias = (None if linear.bias is None
                     else nn.Parameter(linear.bias.detach(), requires_grad=False))
        self.reduce = reduce

    def forward(self, x_shard):
        y = self.reduce(F.linear(x_shard, self.weight))
        return y if self.bias is None else y + self.bias


class LlamaMLP(nn.Module):
    """The Llama/SmolLM2 MLP: ``down(silu(gate(x)) * up(x))``, no biases."""

    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TensorParallelMLP(nn.Module):
    """``LlamaMLP`` split over ``world`` ranks: gate/up column-parallel, down row-parallel."""

    def __init__(self, mlp: LlamaMLP, rank: int, world: int, reduce=all_reduce_sum):
        super().__init__()
        self.gate_proj = ColumnParallelLinear(mlp.gate_proj, rank, world)
        self.up_proj = ColumnParallelLinear(mlp.up_proj, rank, world)
        self.down_proj = RowParallelLinear(mlp.down_proj, rank, world, reduce)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def smollm2_mlp(layer: int = 0) -> LlamaMLP:
    """Layer ``layer``'s MLP of the embedded model (fp32), read straight from its safetensors
    file."""
    from safetensors import safe_open

    from inferlab.lab.models import prepare_default_model
    folder = prepare_default_model()
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        get = lambda name: f.get_tensor(f"model.layers.{layer}.mlp.{name}.weight")  # noqa: E731
        gate, up, down = get("gate_proj"), get("up_proj"), get("down_proj")
    mlp = LlamaMLP(gate.shape[1], gate.shape[0])
    with torch.no_grad():
        mlp.gate_proj.weight.copy_(gate)
        mlp.up_proj.weight.copy_(up)
        mlp.down_proj.weight.copy_(down)
    return mlp.float().eval()


# ---------------------------------------------------------------------------- the workers
def _timed(fn, repeats: int, device, sync: bool = True) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        if sync and dist.is_initialized():
            dist.barrier()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _build_mlp(args) -> LlamaMLP:
    if args.weights == "smollm2":
        return smollm2_mlp()
    torch.manual_seed(0)  # the same random weights on every rank
    mlp = LlamaMLP(args.hidden, args.intermediate)
    dtype = getattr(torch, args.dtype)
    return mlp.to(dtype).eval()


@torch.no_grad()
def _tp_worker(rank: int, args) -> None:
    torch.set_num_threads(args.threads)
    dist.init_process_group(args.backend, init_method=args.init_method, rank=rank,
                            world_size=args.world_size)
    device = torch.device(f"cuda:{rank}" if args.backend == "nccl" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    mlp = _build_mlp(args).to(device)
    dtype = mlp.gate_proj.weight.dtype
    sharded = TensorParallelMLP(mlp, rank, args.world_size)
    shard_only = TensorParallelMLP(mlp, rank, args.world_size, reduce=lambda t: t)
    common = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "world_size": args.world_size, "backend": args.backend,
              "hidden": mlp.gate_proj.in_features, "intermediate": mlp.gate_proj.out_features,
              "dtype": str(dtype).replace("torch.", ""), "threads_per_rank": args.threads,
              "runs": []}
    for tokens in args.tokens:
        torch.manual_seed(1)
        x = torch.randn(tokens, mlp.gate_proj.in_features, dtype=dtype).to(device)
        y_tp = sharded(x)
        run = {"tokens": tokens,
               "tp_forward_s": _timed(lambda: sharded(x), args.repeats, device),
               "shard_compute_s": _timed(lambda: shard_only(x), args.repeats, device)}
        buffer = torch.empty(tokens, mlp.gate_proj.in_features, dtype=dtype, device=device)
        run["all_reduce_s"] = _timed(lambda: dist.all_reduce(buffer), args.repeats, device)
        run["all_reduce_bytes"] = buffer.numel() * buffer.element_size()
        dist.barrier()
        if rank == 0:  # the reference: the whole MLP in one process, while the other ranks wait
            y_ref = mlp(x)
            run["max_abs_diff"] = float((y_tp - y_ref).abs().max())
            run["max_abs_output"] = float(y_ref.abs().max())
            run["single_forward_s"] = _timed(lambda: mlp(x), args.repeats, device, sync=False)
            common["runs"].append(run)
        dist.barrier()
    if rank == 0:
        print(MARK + json.dumps(common), flush=True)
    dist.destroy_process_group()


@torch.no_grad()
def _pp_worker(rank: int, args) -> None:
    """Two-stage pipeline over a stack of MLP blocks; stage 1 reports the timings."""
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=args.init_method, rank=rank,
                            world_size=args.world_size)
    torch.manual_seed(0)
    blocks = [LlamaMLP(args.hidden, args.intermediate).eval() for _ in range(args.layers)]
    per_stage = args.layers // args.world_size
    mine = blocks[rank * per_stage:(rank + 1) * per_stage]
    torch.manual_seed(1)
    batch = torch.randn(args.tokens[0], args.hidden)

    def run_stage(x):
        for block in mine:
            x = x + block(x)
        return x

    timings = {}
    for m in args.microbatches:
        chunks = batch.chunk(m)
        best = float("inf")
        for _ in range(args.repeats):
            dist.barrier()
            start = time.perf_counter()
            outputs, pending = [], []
            for chunk in chunks:
                if rank == 0:
                    pending.append(dist.isend(run_stage(chunk).contiguous(), dst=1))
                else:
                    received = torch.empty_like(chunk)
                    dist.recv(received, src=0)
                    outputs.append(run_stage(received))
            for handle in pending:
                handle.wait()
            dist.barrier()
            best = min(best, time.perf_counter() - start)
        timings[m] = best
    if rank == 1:
        def full(x):
            for block in blocks:
                x = x + block(x)
            return x
        full(batch)
        single = float("inf")
        for _ in range(max(args.repeats, 2)):  # best of repeats, as for the pipeline
            start = time.perf_counter()
            full(batch)
            single = min(single, time.perf_counter() - start)
        print(MARK + json.dumps({"stages": args.world_size, "layers": args.layers,
                                 "tokens": args.tokens[0], "single_process_s": single,
                                 "pipeline_s": timings}), flush=True)
    dist.destroy_process_group()


# --------------------------------------------------------------------------------- launch
def _run(argv: list[str], timeout: float) -> dict:
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", NCCL_SOCKET_IFNAME="lo",
               MASTER_ADDR="127.0.0.1")
    env.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast stays off (shared GPU hosts)
    done = subprocess.run([sys.executable, "-m", "inferlab.serving.parallel", *argv],
                          capture_output=True, text=True, timeout=timeout, env=env)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"parallel run failed ({done.returncode}):\n"
                       f"{(done.stdout + done.stderr)[-3000:]}")


def run_tp(world_size=2, backend="gloo", tokens=(1, 16, 128), weights="smollm2", hidden=576,
           intermediate=1536, dtype="float32", repeats=10, threads=1, timeout=300) -> dict:
    """Tensor-parallel MLP in ``world_size`` processes, for each batch of ``tokens``; returns
    ``{..., "runs": [{"tokens", "tp_forward_s", "single_forward_s", "all_reduce_s", ...}]}``."""
    return _run(["tp", "--world-size", str(world_size), "--backend", backend,
                 "--tokens", *map(str, tokens), "--weights", weights, "--hidden", str(hidden),
                 "--intermediate", str(intermediate), "--dtype", dtype,
                 "--repeats", str(repeats), "--threads", str(threads)], timeout)


def run_pp(microbatches=(1, 2, 4, 8), layers=8, tokens=256, hidden=576, intermediate=1536,
           repeats=3, threads=1, timeout=300) -> dict:
    """Two-stage toy pipeline on CPU (gloo); returns the time per micro-batch count."""
    return _run(["pp", "--microbatches", *map(str, microbatches), "--layers", str(layers),
                 "--tokens", str(tokens), "--hidden", str(hidden),
                 "--intermediate", str(intermediate),
                 "--repeats", str(repeats), "--threads", str(threads)], timeout)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m inferlab.serving.parallel",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["tp", "pp"])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 16, 128])
    parser.add_argument("--weights", default="random", choices=["random", "smollm2"])
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--intermediate", type=int, default=1536)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--microbatches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    # The ranks find each other through a file (FileStore): a TCP rendezvous (tcp://...) would
    # make rank 0 listen on every network interface. Data then flows over loopback sockets
    # (gloo, GLOO_SOCKET_IFNAME=lo) or NVLink/PCIe (nccl).
    import tempfile
    handle, store = tempfile.mkstemp(prefix="inferlab-dist-")
    os.close(handle)
    args.init_method = f"file://{store}"
    if args.mode == "pp" and args.world_size != 2:
        parser.error("the toy pipeline has exactly 2 stages")
    import torch.multiprocessing as mp
    try:
        mp.spawn(_tp_worker if args.mode == "tp" else _pp_worker, args=(args,),
                 nprocs=args.world_size, join=True)
    finally:
        if os.path.exists(store):
            os.unlink(store)


if __name__ == "__main__":
    main()
