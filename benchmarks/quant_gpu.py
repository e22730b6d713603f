"""bitsandbytes int8 (LLM.int8) and NF4 (double quantization) vs fp16 on a Llama-2-7B-shaped model.

Lesson 01 shows the numbers this script records (``inferlab/lab/records/bnb_llama2_7b.json``) as
"recorded on <card>, <date>" when the notebook runs without a GPU.

The weights are random (std 0.02): that is fine for speed and memory, meaningless for quality
(quality is measured on the real model in the notebook). Measured, for each format and batch
size 1, 8, 32: transformers ``generate`` throughput (greedy, fixed number of new tokens) and the
time of one 4096 -> 11008 projection alone (the kernel without the framework around it).

    python benchmarks/quant_gpu.py            # on a CUDA machine with bitsandbytes; ~3-5 min
    python benchmarks/quant_gpu.py --tiny     # a 2-layer toy on CPU, to test the script
"""
from __future__ import annotations

import argparse
import copy
import datetime
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inferlab.lab.bench import time_fn  # noqa: E402
from inferlab.lab.records import save  # noqa: E402

LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                 max_position_embeddings=4096)
TINY = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, vocab_size=1000, max_position_embeddings=512)


def build_model(shape: dict, device: str, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(**shape, initializer_range=0.02, tie_word_embeddings=False)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def to_bitsandbytes(model, kind: str, device: str):
    """Replace every decoder Linear (not lm_head) by its bitsandbytes version, in place."""
    import bitsandbytes as bnb
    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Linear) or name.endswith("lm_head"):
            continue
        weight = module.weight.data
        if kind == "int8":
            new = bnb.nn.Linear8bitLt(module.in_features, module.out_features, bias=False,
                                      has_fp16_weights=False, threshold=6.0)
            new.weight = bnb.nn.Int8Params(weight.cpu(), requires_grad=False,
                                           has_fp16_weights=False)
        else:
            new = bnb.nn.Linear4bit(module.in_features, module.out_features, bias=False,
                                    compute_dtype=weight.dtype, compress_statistics=True,
                                    quant_type="nf4")
            new.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4",
                                           compress_statistics=True)
        new = new.to(device)  # quantizes here
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, new)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return model


def memory_bytes(model) -> int:
    return model.get_memory_footprint()


def bench_generate(model, batch: int, prompt_len: int, new_tokens: int, repeats: int, device):
    ids = torch.randint(3, model.config.vocab_size, (batch, prompt_len), device=device)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=0, attention_mask=torch.ones_like(ids))
    with torch.no_grad():
        timing = time_fn(lambda: model.generate(ids, **kwargs), warmup=1, repeats=repeats,
                         device=device)
    return {"tokens_per_s": round(batch * new_tokens / timing.median, 2),
            "seconds_median": round(timing.median, 4), "spread": round(timing.spread, 3)}


def bench_linear(kind: str, batch: int, shape: dict, device: str, dtype, repeats: int = 50):
    """One up-projection (hidden -> intermediate) alone, in milliseconds."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(shape["hidden_size"], shape["intermediate_size"], bias=False,
                            device=device, dtype=dtype)
    holder = torch.nn.Sequential(layer)
    if kind != "fp16":
        to_bitsandbytes(holder, kind, device)
    x = torch.randn(batch, shape["hidden_size"], device=device, dtype=dtype)
    with torch.no_grad():
        timing = time_fn(lambda: holder(x), warmup=5, repeats=repeats, device=device)
    return round(timing.median * 1e3, 4)


def run_kind(kind, base, shape, args, device, dtype, results):
    model = base if kind == "fp16" else to_bitsandbytes(copy.deepcopy(base), kind, device)
    results["weight_bytes"][kind] = memory_bytes(model)
    results["generate"][kind] = {}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for batch in args.batches:
        row = bench_generate(model, batch, args.prompt_len, args.new_tokens, args.repeats, device)
        results["generate"][kind][str(batch)] = row
        print(f"{kind:5s} batch {batch:3d}: {row['tokens_per_s']:9.1f} tok/s "
              f"(spread {row['spread']:.0%})", flush=True)
    if device == "cuda":
        results["peak_bytes"][kind] = torch.cuda.max_memory_allocated()
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    results["linear_ms"][kind] = {str(b): bench_linear(kind, b, shape, device, dtype)
                                  for b in args.batches}
    print(f"{kind:5s} one {shape['hidden_size']}->{shape['intermediate_size']} Linear (ms): "
          f"{results['linear_ms'][kind]}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2-layer toy model (CPU test)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=["fp16", "int8", "nf4"])
    parser.add_argument("--name", default="bnb_llama2_7b", help="record name (inferlab/records)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    import bitsandbytes
    import transformers
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.tiny:
        sys.exit("no CUDA device: run with --tiny to test the script on CPU")
    dtype = torch.float16 if device == "cuda" else torch.float32
    shape = TINY if args.tiny else LLAMA2_7B
    device_name = torch.cuda.get_device_name() if device == "cuda" else "CPU (tiny test)"
    print(f"device: {device_name}; torch {torch.__version__}, transformers "
          f"{transformers.__version__}, bitsandbytes {bitsandbytes.__version__}", flush=True)

    start = time.perf_counter()
    torch.manual_seed(0)
    base = build_model(shape, device, dtype)
    print(f"model built in {time.perf_counter() - start:.1f} s", flush=True)
    results = {"shape": shape, "dtype": str(dtype).replace("torch.", ""),
               "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
               "generate": {}, "linear_ms": {}, "weight_bytes": {}, "peak_bytes": {}}
    for kind in args.kinds:
        try:
            run_kind(kind, base, shape, args, device, dtype, results)
        except Exception as error:  # keep the other formats' numbers if one fails
            results.setdefault("errors", {})[kind] = f"{type(error).__name__}: {error}"
            print(f"{kind}: FAILED {error!r}", flush=True)
    results["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                           "bitsandbytes": bitsandbytes.__version__}
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    source = ("benchmarks/quant_gpu.py: Llama-2-7B shape, random fp16 weights, transformers "
              f"generate greedy {args.new_tokens} new tokens "
              f"after {args.prompt_len} prompt tokens, "
              f"median of {args.repeats} after 1 warm-up; bitsandbytes Linear8bitLt "
              "(threshold 6.0) and Linear4bit nf4 with double quantization, lm_head kept fp16")
    if not args.no_save:
        path = save(args.name, device_name, datetime.date.today().isoformat(), results, source)
        print(f"saved {path}")
    return results


if __name__ == "__main__":
    main()
