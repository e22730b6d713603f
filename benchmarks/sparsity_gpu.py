"""2:4 semi-structured sparse vs dense matmuls on a CUDA GPU (lesson 03's recorded numbers).

Times, in fp16 on Llama-2-7B shapes (random weights pruned 2:4 by magnitude):

* ``F.linear(x, W)`` - how a model's Linear calls it (x: tokens x in_features) - for the dense
  weight and for the same weight as a semi-structured tensor with each PyTorch backend
  (CUTLASS and cuSPARSELt);
* ``W @ x.T`` - "sparse @ dense", the layout the first try in STACK_NOTES used;
* ``torch._cslt_sparse_mm`` called directly with the algorithm ``_cslt_sparse_mm_search`` picks
  for that shape (what a tuned deployment would do);
* a whole Llama MLP block (gate, up, silu, down) dense vs 2:4 sparse.

Every timing is the median over repeats of a CUDA-graph replay of 20 calls that cycle over 4
copies of the weights (the copies together are larger than L2, so each call reads its weight
from HBM as in a real model); eager timings (CUDA events around a Python loop, launch overhead
included) are recorded beside them. Outputs are checked against the dense result.

    python benchmarks/sparsity_gpu.py --out /tmp/out      # on a GPU machine
    python benchmarks/sparsity_gpu.py --smoke             # CPU: checks the script's plumbing

Writes ``inferlab/lab/records/sparsity_2of4.json`` through ``inferlab.lab.records.save`` (and a
copy to ``--out``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inferlab.compress.prune import two_four_mask  # noqa: E402
from inferlab.lab import records  # noqa: E402

SHAPES = {  # name: (out_features, in_features) of Llama-2-7B
    "q_proj 4096x4096": (4096, 4096),
    "gate/up_proj 11008x4096": (11008, 4096),
    "down_proj 4096x11008": (4096, 11008),
}
TOKENS = [1, 8, 32, 128, 512, 2048, 8192]
MLP_TOKENS = [1, 32, 512, 4096]
COPIES, CALLS, REPEATS = 4, 20, 15


def cuda_time(fn, calls: int) -> dict:
    """Per-call ms: eager (events around a loop) and CUDA-graph replay, medians over repeats."""
    for i in range(3):
        fn(i)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    eager = []
    for _ in range(REPEATS):
        start.record()
        for i in range(calls):
            fn(i)
        end.record()
        torch.cuda.synchronize()
        eager.append(start.elapsed_time(end) / calls)
    result = {"eager_ms": statistics.median(eager), "graph_ms": None}
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for i in range(2):
                fn(i)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(calls):
                fn(i)
        graph.replay()
        torch.cuda.synchronize()
        replays = []
        for _ in range(REPEATS):
            start.record()
            graph.replay()
            end.record()
            torch.cuda.synchronize()
            replays.append(start.elapsed_time(end) / calls)
        result["graph_ms"] = statistics.median(replays)
        del graph
    except Exception as error:  # capture can fail for some backends: keep the eager number
        result["graph_error"] = f"{type(error).__name__}: {str(error)[:200]}"
    return result


def sparse_variants(weights: list[torch.Tensor]) -> dict:
    """Semi-structured versions of each weight copy, per backend (or the error that stopped it)."""
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS
    out = {}
    for name, cls in (("cutlass", SparseSemiStructuredTensorCUTLASS),
                      ("cusparselt", SparseSemiStructuredTensorCUSPARSELT)):
        try:
            out[name] = [cls.from_dense(w) for w in weights]
        except Exception as error:
            out[name] = f"{type(error).__name__}: {str(error)[:200]}"
    return out


def tensor_bytes(sparse) -> int:
    total = 0
    for attr in ("packed", "meta"):
        t = getattr(sparse, attr, None)
        if t is not None:
            total += t.numel() * t.element_size()
    return total


def bench_shape(out_f: int, in_f: int, tokens: list[int], device: str) -> dict:
    torch.manual_seed(0)
    dense = []
    for _ in range(COPIES):
        w = torch.randn(out_f, in_f, device=device, dtype=torch.float16) * 0.02
        dense.append(w * two_four_mask(w))
    sparse = sparse_variants(dense)
    row = {"dense_bytes": dense[0].numel() * 2, "backends": {}}
    for name, value in sparse.items():
        row["backends"][name] = (value if isinstance(value, str)
                                 else {"bytes": tensor_bytes(value[0])})
    row["tokens"] = {}
    for m in tokens:
        xs = [torch.randn(m, in_f, device=device, dtype=torch.float16) for _ in range(COPIES)]
        xts = [x.t().contiguous() for x in xs]
        reference = F.linear(xs[0], dense[0]).float()
        cases = {
            "dense F.linear": lambda i: F.linear(xs[i % COPIES], dense[i % COPIES]),
            "dense W@xT": lambda i: dense[i % COPIES] @ xts[i % COPIES],
        }
        for name, value in sparse.items():
            if isinstance(value, str):
                continue
            cases[f"{name} F.linear"] = lambda i, v=value: F.linear(xs[i % COPIES], v[i % COPIES])
            cases[f"{name} W@xT"] = lambda i, v=value: v[i % COPIES] @ xts[i % COPIES]
        if not isinstance(sparse.get("cusparselt"), str):
            packed = [v.packed for v in sparse["cusparselt"]]
            try:
                alg = torch._cslt_sparse_mm_search(packed[0], xts[0])
                cases[f"cusparselt raw alg={alg}"] = (
                    lambda i, a=alg: torch._cslt_sparse_mm(packed[i % COPIES], xts[i % COPIES],
                                                           alg_id=a))
            except Exception as error:
                message = f"search m={m}: {type(error).__name__}: {error}"
                row.setdefault("errors", []).append(message[:300])
        results = {}
        for name, fn in cases.items():
            try:
                out = fn(0).float()
                if out.shape != reference.shape:
                    out = out.t()
                err = ((out - reference).abs().max() / reference.abs().max()).item()
                results[name] = {**cuda_time(fn, CALLS), "max_rel_error": err,
                                 "out_shape": list(fn(0).shape)}
            except Exception as error:
                results[name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        base = results["dense F.linear"].get("graph_ms") or results["dense F.linear"]["eager_ms"]
        for r in results.values():
            t = r.get("graph_ms") or r.get("eager_ms")
            if t:
                r["speedup_vs_dense"] = base / t
        row["tokens"][str(m)] = results
        print(f"  {out_f}x{in_f} tokens={m}: " + ", ".join(
            f"{k} {v.get('graph_ms') or v.get('eager_ms') or float('nan'):.4f}ms"
            for k, v in results.items()), flush=True)
    return row


def bench_mlp(tokens: list[int], device: str, hidden=4096, inter=11008) -> dict:
    torch.manual_seed(1)

    def make(o, i):
        w = torch.randn(o, i, device=device, dtype=torch.float16) * 0.02
        return w * two_four_mask(w)
    layers = [(make(inter, hidden), make(inter, hidden), make(hidden, inter))
              for _ in range(COPIES)]
    out = {}
    for backend in ("dense", "cusparselt", "cutlass"):
        if backend == "dense":
            ws = layers
        else:
            converted = [sparse_variants(list(layer)) for layer in layers]
            if isinstance(converted[0][backend], str):
                out[backend] = {"error": converted[0][backend]}
                continue
            ws = [tuple(c[backend]) for c in converted]
        out[backend] = {}
        for m in tokens:
            xs = [torch.randn(m, hidden, device=device, dtype=torch.float16) for _ in range(COPIES)]

            def mlp(i):
                g, u, d = ws[i % COPIES]
                x = xs[i % COPIES]
                return F.linear(F.silu(F.linear(x, g)) * F.linear(x, u), d)
            try:
                out[backend][str(m)] = cuda_time(mlp, CALLS)
            except Exception as error:
                out[backend][str(m)] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        print(f"  MLP {backend}: {out[backend]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="folder for a copy of the record")
    parser.add_argument("--smoke", action="store_true", help="CPU plumbing check, writes nothing")
    args = parser.parse_args()
    if args.smoke:
        w = torch.randn(64, 128)
        mask = two_four_mask(w)
        assert mask.view(-1, 4).sum(1).eq(2).all()
        print("smoke: 2:4 mask ok; sparse backends need CUDA:", torch.cuda.is_available())
        return
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU (use --smoke on CPU)")
    device = "cuda"
    started = time.time()
    info = {
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cusparselt_available": torch.backends.cusparselt.is_available(),
        "cusparselt_version": (torch.backends.cusparselt.version()
                               if torch.backends.cusparselt.is_available() else None),
        "default_backend": ("cutlass" if torch.sparse.SparseSemiStructuredTensor._FORCE_CUTLASS
                            else "cusparselt"),
        "dtype": "float16", "copies_cycled": COPIES, "calls_per_graph": CALLS, "repeats": REPEATS,
        "timing": "median per-call ms of a CUDA graph replay (graph_ms); "
                  "eager_ms includes launch overhead",
    }
    print(json.dumps(info), flush=True)
    results = {"info": info, "linear": {}, "mlp": {}}
    for name, (out_f, in_f) in SHAPES.items():
        try:
            results["linear"][name] = bench_shape(out_f, in_f, TOKENS, device)
        except Exception:
            results["linear"][name] = {"error": traceback.format_exc()[-1500:]}
        torch.cuda.empty_cache()
    try:
        results["mlp"] = {"shape": "Llama-2-7B MLP 4096->11008->4096",
                          **bench_mlp(MLP_TOKENS, device)}
    except Exception:
        results["mlp"] = {"error": traceback.format_exc()[-1500:]}
    results["info"]["seconds"] = round(time.time() - started, 1)
    path = records.save("sparsity_2of4", device=torch.cuda.get_device_name(),
                        date=datetime.date.today().isoformat(), results=results,
                        source="benchmarks/sparsity_gpu.py: 2:4 semi-structured vs dense fp16 "
                               "matmuls, random Llama-2-7B-shaped weights")
    print(f"wrote {path}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(args.out) / path.name)


if __name__ == "__main__":
    main()
