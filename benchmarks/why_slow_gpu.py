"""Lesson 00's measurements on a GPU, recorded for students without one.

Runs on any CUDA machine without network: a Llama-2-7B-shaped model with random fp16 weights (the
speed of a decoder depends on its shapes, not its values). Measures the copy bandwidth, the decode
roofline, transformers' batch-1 decode speed as a fraction of it, prefill vs decode, and throughput
at batch 1, 4 and 16; writes ``inferlab/lab/records/why_slow_gpu.json``.

    python benchmarks/why_slow_gpu.py            # on the GPU machine, from the repository root
"""
from __future__ import annotations

import datetime
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from inferlab.lab import records  # noqa: E402
from inferlab.lab.bench import datasheet_for, decode_roofline, measure_bandwidth  # noqa: E402
from inferlab.lab.generation import timed_greedy  # noqa: E402
from inferlab.lab.models import weight_bytes  # noqa: E402

LLAMA2_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                 tie_word_embeddings=False)


@torch.no_grad()
def throughput(model, batch: int, prompt_len: int, new_tokens: int) -> float:
    ids = torch.randint(100, 30000, (batch, prompt_len), device="cuda")
    model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    torch.cuda.synchronize()
    return batch * new_tokens / (time.perf_counter() - start)


def main() -> None:
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    name = torch.cuda.get_device_name()
    torch.manual_seed(0)
    with torch.device("cuda"):
        config = LlamaConfig(**LLAMA2_7B, dtype=torch.float16)
        model = LlamaForCausalLM(config).to(torch.float16).eval()
    model.generation_config.pad_token_id = 0
    n_bytes = weight_bytes(model)
    bandwidth = measure_bandwidth("cuda", megabytes=2048, repeats=10)
    roofline = decode_roofline(n_bytes, bandwidth)

    prompt = torch.randint(100, 30000, (1, 128))
    timed_greedy(model, prompt, 8)  # warm-up
    runs = [timed_greedy(model, prompt, 64) for _ in range(3)]
    decode_tps = 1 / statistics.median([s for r in runs for s in r.decode_s])
    prefill_tps = 128 / statistics.median([r.prefill_s for r in runs])
    batches = {b: throughput(model, b, 128, 64) for b in (1, 4, 16)}
    sheet = datasheet_for(name)
    results = {
        "model": "Llama-2-7B shape, fp16, random weights",
        "weight_GB": round(n_bytes / 1e9, 2),
        "copy_bandwidth_GB_s": round(bandwidth / 1e9),
        "datasheet_bandwidth_GB_s": sheet[1] if sheet else None,
        "decode_roofline_tok_s": round(roofline, 1),
        "transformers_batch1_decode_tok_s": round(decode_tps, 1),
        "fraction_of_roofline": round(decode_tps / roofline, 3),
        "prefill_tok_s_128_prompt": round(prefill_tps),
        "generate_tok_s_by_batch": {str(b): round(t, 1) for b, t in batches.items()},
    }
    path = records.save("why_slow_gpu", name, datetime.date.today().isoformat(), results,
                        source="benchmarks/why_slow_gpu.py (torch %s)" % torch.__version__)
    print(path.read_text())


if __name__ == "__main__":
    main()
