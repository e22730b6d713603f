"""The course engine at serving concurrencies on a GPU, beside transformers and the roofline.

    python benchmarks/engine_serving_gpu.py --out DIR         # on a CUDA machine
    python benchmarks/engine_serving_gpu.py --dry-run         # tiny model on the CPU (the plumbing)

A Llama-2-7B-shaped fp16 model with random weights (speed only), a ShareGPT-like length mix
generated offline (``inferlab.serving.concurrency.sharegpt_like``: prompts 16-512 tokens, answers
16-256), at 8, 32, 128 and 256 concurrent sequences:

* the engine (continuous batching, paged cache, CUDA graphs, Triton decode kernels), every request
  queued at once with ``max_num_seqs`` = the concurrency; optionally also with chunked prefill;
* transformers ``generate`` on static batches of the same size (left padding), fewer requests;
* per concurrency: output tokens/s, inter-token latency p50/p99, and the decode steps against
  their roofline (weights + K/V at the measured copy bandwidth, or the datasheet's fp16 peak).

Result: ``DIR/engine_serving_gpu.json`` (``inferlab.lab.records`` format) and a Markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inferlab.engine import EngineConfig, LlamaWeights, LLMEngine, ModelConfig  # noqa: E402
from inferlab.lab.bench import device_name, measure_bandwidth  # noqa: E402
from inferlab.serving.concurrency import (  # noqa: E402
    decode_roofline,
    engine_traces,
    hf_static_traces,
    sharegpt_like,
    summarize_run,
)

RESULTS = ROOT / "benchmarks" / "results"
#: dense fp16/bf16 tensor-core peak, FLOP/s, from NVIDIA's datasheets (SXM parts)
PEAK_FP16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12}


#: vLLM's serving figures closest to this benchmark that are published with their raw results
PUBLISHED_VLLM = {
    "what": ("vLLM 0.5.4 serving Meta-Llama-3-8B-Instruct (its default dtype) on one "
             "H100-80GB-SXM, ShareGPT prompts, all N sent at once (benchmark_serving.py, "
             "request rate inf), 2024-09-07. "
             "Not the same setting: an H100 reads 3.35 TB/s against the H200's 4.8 (datasheets); "
             "Llama-3-8B has 8 K/V heads (a quarter of Llama-2-7B's K/V bytes per token) and a "
             "128k vocabulary; TPOT is vLLM's time per output token after the first."),
    "source": ("Lambda's vllm-benchmark raw results, github.com/LambdaLabsML/vllm-benchmark "
               "(commit a4f9f43), results/prompt_N/1xH100-80GB-SXM/"
               "Meta-Llama-3-8B-Instruct_tp1_len2048.json"),
    "rows": [{"prompts": 10, "tok_s": 347.89, "tpot_median_ms": 7.56, "tpot_p99_ms": 33.80},
             {"prompts": 40, "tok_s": 1294.07, "tpot_median_ms": 8.78, "tpot_p99_ms": 86.45},
             {"prompts": 160, "tok_s": 3922.35, "tpot_median_ms": 13.07, "tpot_p99_ms": 297.69},
             {"prompts": 320, "tok_s": 6026.61, "tpot_median_ms": 20.03, "tpot_p99_ms": 389.44}],
}


def peak_for(name: str) -> float | None:
    return next((v for k, v in PEAK_FP16.items() if k in name), None)


def capture_all(engine, concurrency: int) -> None:
    """Record every decode graph this concurrency can need before the clock starts."""
    graphs = engine.runner.graphs
    if graphs is None:
        return
    for b in graphs.batch_buckets:
        if b <= concurrency:
            key = graphs.bucket(b, 1)
            if key not in graphs.graphs:
                graphs.capture(*key)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128, 256])
    parser.add_argument("--requests", type=int, default=0,
                        help="requests per concurrency (0: 2 x concurrency, at least 64)")
    parser.add_argument("--hf-batches", type=int, default=1,
                        help="static batches transformers runs per concurrency (0: none)")
    parser.add_argument("--chunked", action="store_true",
                        help="also the engine with chunked prefill")
    parser.add_argument("--out", default=os.environ.get("OUT", str(RESULTS)))
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("this benchmark needs a CUDA device (or --dry-run)")
    device = "cpu" if args.dry_run else "cuda"
    dtype = torch.float32 if args.dry_run else torch.float16
    config = ModelConfig.llama2_7b()
    if args.dry_run:
        config = ModelConfig(2, 64, 4, 4, 16, 128, 97, max_position=1024, eos_token_ids=(2,))
    max_prompt, max_output = (64, 32) if args.dry_run else (512, 256)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"device": device_name(device), "date": datetime.date.today().isoformat(),
            "torch": torch.__version__}
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    bandwidth = measure_bandwidth(device, megabytes=64 if args.dry_run else 2048, repeats=10)
    peak = None if args.dry_run else peak_for(info["device"])
    weights = LlamaWeights.random(config, dtype=dtype, device=device)
    kv_per_token = (2 * config.num_layers * config.num_kv_heads * config.head_dim
                    * weights.dtype.itemsize)
    flops_per_token = 2 * weights.nbytes / weights.dtype.itemsize
    record = {**info, "source": "benchmarks/engine_serving_gpu.py", "results": {
        "model": ("tiny random model (dry run)" if args.dry_run
                  else "Llama-2-7B shape, fp16, random weights"),
        "workload": (f"ShareGPT-like lengths (log-normal, median 180 prompt / 120 answer tokens, "
                     f"clipped to 16-{max_prompt} / 16-{max_output}), generated offline, seed 0"),
        "copy_bandwidth_GBs": round(bandwidth / 1e9, 1),
        "peak_fp16_TFLOPs": peak and peak / 1e12, "rows": []}}
    if not args.dry_run:
        record["published"] = PUBLISHED_VLLM
    rows = record["results"]["rows"]
    print(info, flush=True)

    def save():
        (out / "engine_serving_gpu.json").write_text(json.dumps(record, indent=1) + "\n")

    variants = [("engine", {})] + ([("engine, chunked prefill", dict(chunked_prefill=True))]
                                   if args.chunked else [])
    for c in args.concurrency:
        n = args.requests or max(2 * c, 64)
        requests = sharegpt_like(n, seed=0, max_prompt=max_prompt, max_output=max_output,
                                 vocab_size=config.vocab_size)
        for name, extra in variants:
            start = time.perf_counter()
            try:
                free = torch.cuda.mem_get_info()[0] if device == "cuda" else 2 ** 30
                engine = LLMEngine(weights, config=EngineConfig(
                    max_num_seqs=c, max_model_len=max_prompt + max_output,
                    kv_cache_memory=int(free * 0.8), attention_backend="auto", **extra))
                capture_all(engine, c)
                engine.generate([p for p, _ in requests[:min(c, 8)]])        # warm-up
                traces, steps = engine_traces(engine, requests)
                row = {"system": name, "concurrency": c, **summarize_run(traces),
                       **decode_roofline(steps, weights.bytes_read_per_token, kv_per_token,
                                         bandwidth, flops_per_token, peak),
                       "preemptions": engine.stats.preemptions}
                del engine
            except Exception as error:  # noqa: BLE001 - record it, go on with the rest
                row = {"system": name, "concurrency": c, "error": repr(error)[:300]}
            row["setup_and_run_s"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            print(row, flush=True)
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
            save()
    if args.hf_batches:
        del weights
        gc.collect()
        model = config.random_hf_model(device, dtype)
        for c in args.concurrency:
            requests = sharegpt_like(args.hf_batches * c, seed=0, max_prompt=max_prompt,
                                     max_output=max_output, vocab_size=config.vocab_size)
            start = time.perf_counter()
            try:
                hf_static_traces(model, requests[:min(c, 4)], c)                  # warm-up
                row = {"system": "transformers generate, static batches", "concurrency": c,
                       **summarize_run(hf_static_traces(model, requests, c))}
            except Exception as error:  # noqa: BLE001
                row = {"system": "transformers generate, static batches", "concurrency": c,
                       "error": repr(error)[:300]}
            row["setup_and_run_s"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            print(row, flush=True)
            if device == "cuda":
                torch.cuda.empty_cache()
            save()
    save()
    (out / "engine_serving_gpu.md").write_text(markdown(record))


def markdown(record: dict) -> str:
    res = record["results"]
    lines = [f"# The engine at serving concurrencies ({record['device']}, {record['date']})", "",
             f"{res['model']}; {res['workload']}. Copy bandwidth {res['copy_bandwidth_GBs']} GB/s"
             + (f", fp16 peak {res['peak_fp16_TFLOPs']:.0f} TFLOP/s (datasheet)"
                if res.get("peak_fp16_TFLOPs") else "")
             + f"; torch {record['torch']}, transformers {record.get('transformers', '-')}. "
             "Written by `benchmarks/engine_serving_gpu.py`.", "",
             "| system | concurrent | requests | output tok/s | ITL p50 ms | ITL p99 ms | "
             "TTFT p50 ms | decode tok/s | decode roofline tok/s | of roofline |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['system']} | {r['concurrency']} | failed: {r['error'][:120]} "
                         "|||||||")
            continue
        share = format(r["fraction_of_roofline"], ".0%") if "fraction_of_roofline" in r else "-"
        lines.append(f"| {r['system']} | {r['concurrency']} | {r['requests']} | {r['tok_s']} | "
                     f"{r.get('itl_p50_ms', '-')} | {r.get('itl_p99_ms', '-')} | "
                     f"{r['ttft_p50_ms']} | {r.get('decode_tok_s', '-')} | "
                     f"{r.get('roofline_decode_tok_s', '-')} | {share} |")
    for note in res.get("notes", []):
        lines += ["", note]
    published = record.get("published")
    if published:
        lines += ["", f"Published vLLM figures for comparison: {published['what']} "
                      f"Source: {published['source']}.", "",
                  "| prompts sent at once | output tok/s | TPOT median ms | TPOT p99 ms |",
                  "|---:|---:|---:|---:|"]
        lines += [f"| {r['prompts']} | {r['tok_s']} | {r['tpot_median_ms']} | {r['tpot_p99_ms']} |"
                  for r in published["rows"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
