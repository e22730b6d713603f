"""Serving at a fixed concurrency (inferlab/serving/concurrency.py) and its GPU benchmark script,
on a tiny random model."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inferlab.engine import EngineConfig, LlamaWeights, LLMEngine, ModelConfig
from inferlab.serving.concurrency import (
    decode_roofline,
    engine_traces,
    hf_static_traces,
    sharegpt_like,
    summarize_run,
)
from inferlab.serving.latency import RequestTrace

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16,
                     intermediate_size=96, vocab_size=97, max_position=512, eos_token_ids=(1,))


def test_sharegpt_like_lengths_are_seeded_clipped_and_long_tailed():
    requests = sharegpt_like(2000, seed=4, max_prompt=512, max_output=256, vocab_size=500)
    assert requests == sharegpt_like(2000, seed=4, max_prompt=512, max_output=256, vocab_size=500)
    assert requests != sharegpt_like(2000, seed=5, max_prompt=512, max_output=256, vocab_size=500)
    prompts = [len(p) for p, _ in requests]
    outputs = [n for _, n in requests]
    assert min(prompts) >= 16 and max(prompts) == 512 and min(outputs) >= 16 and max(outputs) == 256
    assert 160 <= statistics.median(prompts) <= 200 and 105 <= statistics.median(outputs) <= 135
    assert statistics.mean(prompts) > statistics.median(prompts)          # a long right tail
    assert all(10 <= t < 500 for p, _ in requests[:50] for t in p)
    with pytest.raises(ValueError, match="max_prompt"):
        sharegpt_like(10, max_prompt=8)


def test_engine_traces_give_each_request_its_tokens_and_each_step_its_contexts():
    weights = LlamaWeights.random(CONFIG, dtype=torch.float32, seed=0)
    engine = LLMEngine(weights, config=EngineConfig(max_num_seqs=3, max_model_len=128,
                                                    num_blocks=64, block_size=8))
    requests = [([5] * 20, 4), ([6] * 7, 9), ([7] * 30, 2), ([8] * 12, 5), ([9] * 16, 3)]
    traces, steps = engine_traces(engine, requests)
    assert [len(t.token_times) for t in traces] == [n for _, n in requests]
    assert [t.prompt_tokens for t in traces] == [len(p) for p, _ in requests]
    assert all(t.start == traces[0].start for t in traces)
    assert all(len(t.itls) == n - 1 and min(t.itls) > 0 for t, (_, n) in zip(traces, requests))
    decode = [s for s in steps if not s["prefill"]]
    assert max(len(s["contexts"]) for s in decode) == 3                 # the concurrency cap
    assert sum(len(s["contexts"]) for s in steps) == sum(n for _, n in requests)
    first_decode = decode[0]["contexts"]        # the first three requests, one token in each
    assert sorted(first_decode) == sorted([21, 8, 31])
    assert all(s["end"] >= s["start"] for s in steps)
    assert not engine.has_unfinished()


def test_summary_and_roofline_arithmetic():
    traces = [RequestTrace(start=0.0, token_times=[0.5, 0.6, 0.8]),
              RequestTrace(start=0.0, token_times=[1.0, 1.1])]
    out = summarize_run(traces)
    assert out["output_tokens"] == 5 and out["tok_s"] == round(5 / 1.1, 1)
    assert out["ttft_p50_ms"] == 750.0
    assert out["itl_p50_ms"] == 100.0 and out["itl_p99_ms"] == pytest.approx(198.0)
    steps = [{"start": 0.0, "end": 0.5, "prefill": True, "contexts": [10, 10]},
             {"start": 0.5, "end": 0.6, "prefill": False, "contexts": [11, 11]},       # memory
             {"start": 0.6, "end": 0.9, "prefill": False, "contexts": [12, 12, 12, 12]}]  # compute
    # step 2 memory-bound: (100 + 2 * 22) / 2000 = 0.072 s > 2 * 10 / 400 = 0.05 s;
    # step 3 compute-bound: 4 * 10 / 400 = 0.1 s > (100 + 2 * 48) / 2000 = 0.098 s
    r = decode_roofline(steps, weight_bytes=100, kv_bytes_per_token=2, bandwidth=2000,
                        flops_per_token=10, peak_flops=400)
    assert r["decode_tok_s"] == 15.0 and r["mean_batch"] == 3.0      # 6 tokens in 0.4 s
    assert r["roofline_decode_tok_s"] == round(6 / (0.072 + 0.1), 1)
    assert r["fraction_of_roofline"] == round(0.172 / 0.4, 3)
    assert r["prefill_steps"] == 1 and r["prefill_s"] == 0.5
    memory_only = decode_roofline(steps, 100, 2, 2000)
    assert memory_only["roofline_decode_tok_s"] == round(6 / (0.072 + 0.098), 1)
    with pytest.raises(ValueError, match="no decode step"):
        decode_roofline(steps[:1], 100, 2, 2000)


def test_transformers_static_batches_count_only_the_tokens_asked_for():
    transformers = pytest.importorskip("transformers")
    hf = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=2, vocab_size=50,
                                  max_position_embeddings=128)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(hf).eval()
    requests = [([3] * 5, 4), ([4] * 9, 2), ([5] * 3, 6)]
    traces = hf_static_traces(model, requests, concurrency=2)
    assert [len(t.token_times) for t in traces] == [4, 2, 6]
    # the first batch ran 4 steps for both rows: the second row's 2 tokens are its first 2 steps
    assert traces[1].token_times == traces[0].token_times[:2]
    assert traces[2].token_times[0] > traces[0].token_times[-1]          # the next batch, after


def test_the_gpu_benchmark_runs_its_whole_path_on_a_tiny_model(tmp_path):
    run = subprocess.run([sys.executable, "benchmarks/engine_serving_gpu.py", "--dry-run",
                          "--concurrency", "2", "4", "--requests", "8", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((tmp_path / "engine_serving_gpu.json").read_text())
    rows = record["results"]["rows"]
    assert [(r["system"], r["concurrency"]) for r in rows] == [
        ("engine", 2), ("engine", 4), ("transformers generate, static batches", 2),
        ("transformers generate, static batches", 4)]
    assert all("error" not in r and r["output_tokens"] > 0 for r in rows)
    assert all(r["mean_batch"] <= r["concurrency"] for r in rows[:2])
    table = (tmp_path / "engine_serving_gpu.md").read_text()
    assert table.count("| engine |") == 2 and "published" not in record
