"""Where one engine step's time goes on a GPU: ``torch.profiler`` over a prefill step and a decode
step of a Llama-2-7B-shaped fp16 model (random weights) at a given concurrency.

    python benchmarks/engine_profile_gpu.py [--concurrency 8] [--rows 15]

Prints each step's wall time and the operators that took the most GPU and CPU time.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inferlab.engine import EngineConfig, LlamaWeights, LLMEngine, ModelConfig, SamplingParams  # noqa: E402
from inferlab.serving.concurrency import sharegpt_like  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args(argv)
    config = ModelConfig.llama2_7b()
    weights = LlamaWeights.random(config, dtype=torch.float16, device="cuda")
    c = args.concurrency
    engine = LLMEngine(weights, config=EngineConfig(max_num_seqs=c, max_model_len=768,
                                                    kv_cache_memory=40 * 2 ** 30))
    requests = sharegpt_like(2 * c, seed=1)
    engine.generate([p for p, _ in requests[:2]], SamplingParams(max_tokens=4))      # warm-up
    for prompt, n in requests:
        engine.add_request(prompt, SamplingParams(max_tokens=n, ignore_eos=True))
    seen = set()
    while engine.has_unfinished() and len(seen) < 2:
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            result = engine.step()
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        kind = "prefill" if result.is_prefill else "decode"
        print(f"{kind} step: {len(result.request_ids)} sequences, {seconds * 1e3:.1f} ms")
        if kind not in seen and (kind == "prefill" or len(result.request_ids) == c):
            seen.add(kind)
            table = prof.key_averages()
            for key in ("cuda_time_total", "cpu_time_total"):
                print(table.table(sort_by=key, row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
