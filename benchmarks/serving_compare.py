"""Lesson 10's engine comparison with the full workload, recorded for the course.

    python benchmarks/serving_compare.py [--threads 1] [--prompts 16] [--tokens 64]
                                         [--concurrency 4]

Runs the same engines as the notebook (transformers generate, the course engine, vLLM offline and
its server, llama.cpp in-process and its server) on the same prompts, and writes
``inferlab/lab/records/serving_cpu.json`` (CPU name, thread count and date included) that notebooks
10 and 11 show as "recorded on ...". Engines that are not installed are recorded with the reason.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def compare(n_prompts: int, max_tokens: int, concurrency: int, threads: int) -> tuple[dict, dict]:
    import torch

    from inferlab.lab.bench import pin_threads
    from inferlab.lab.data import sample_prompts
    from inferlab.lab.models import embedded_gguf, load_model
    from inferlab.serving.clients import stream_completion
    from inferlab.serving.engines import CourseEngine, LlamaCppEngine, TransformersEngine, eos_ids
    from inferlab.serving.latency import summarize
    from inferlab.serving.launch import (
        SERVED_NAME,
        bf16_model_dir,
        llama_cpp_server,
        vllm_server,
        what_is_missing,
    )
    from inferlab.serving.loadgen import closed_loop

    pin_threads(threads)
    prompts = sample_prompts(n_prompts, min_words=8, max_words=200, seed=0)
    model, tokenizer = load_model(dtype=torch.float32)
    banned = eos_ids(tokenizer)
    results, startup = {}, {}

    def run(name, fn):
        print(f"== {name}", flush=True)
        try:
            results[name] = fn()
            print(f"   {results[name].get('throughput_tok_s', 0):.1f} tokens/s", flush=True)
        except Exception as error:  # recorded, not fatal
            results[name] = f"{error.__class__.__name__}: {str(error)[-300:]}"
            print("   failed:", results[name], flush=True)

    engine = TransformersEngine(model, tokenizer)
    engine.stream(prompts[0], 2)
    run("transformers generate", lambda: summarize(
        closed_loop(lambda p: engine.stream(p, max_tokens), prompts, concurrency)))

    def course():
        eng = CourseEngine(model, tokenizer, kv_cache_memory=64 * 2 ** 20, max_model_len=1024,
                           max_num_seqs=concurrency)
        eng.closed_loop(prompts[:1], 2, 1)
        return summarize(eng.closed_loop(prompts, max_tokens, concurrency))
    run("course engine", course)

    if what_is_missing("vllm"):
        results["vLLM offline (LLM.generate)"] = results["vLLM server"] = what_is_missing("vllm")
    else:
        from inferlab.serving.vllm_offline import run_in_child

        def offline():
            out = run_in_child(bf16_model_dir(), prompts, max_tokens,
                               max_num_seqs=max(16, concurrency), cpu_threads=threads)
            startup["vLLM offline (LLM)"] = out["startup_s"]
            return {"throughput_tok_s": out["throughput_tok_s"]}
        run("vLLM offline (LLM.generate)", offline)

        def server():
            with vllm_server(bf16_model_dir(), max_num_seqs=16, cpu_threads=threads) as srv:
                startup["vLLM server"] = srv.startup_seconds
                return summarize(closed_loop(
                    lambda p: stream_completion(srv.url, SERVED_NAME, p, max_tokens),
                    prompts, concurrency))
        run("vLLM server", server)

    if what_is_missing("llama.cpp"):
        results["llama.cpp (in-process)"] = what_is_missing("llama.cpp")
    else:
        def llama():
            started = time.perf_counter()
            eng = LlamaCppEngine(embedded_gguf(), n_threads=threads, banned=banned)
            startup["llama.cpp (in-process)"] = time.perf_counter() - started
            eng.stream(prompts[0], 2)
            try:
                return summarize(closed_loop(lambda p: eng.stream(p, max_tokens), prompts,
                                             concurrency))
            finally:
                eng.close()
        run("llama.cpp (in-process)", llama)

    if what_is_missing("llama.cpp server"):
        results["llama.cpp server"] = what_is_missing("llama.cpp server")
    else:
        def llama_server():
            with llama_cpp_server(n_threads=threads) as srv:
                startup["llama.cpp server"] = srv.startup_seconds
                return summarize(closed_loop(
                    lambda p: stream_completion(srv.url, SERVED_NAME, p, max_tokens,
                                                banned_tokens=banned),
                    prompts, concurrency))
        run("llama.cpp server", llama_server)
    return results, startup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    results, startup = compare(args.prompts, args.tokens, args.concurrency, args.threads)
    from inferlab.lab import records
    from inferlab.lab.bench import device_name
    from inferlab.serving.latency import format_table
    print(format_table(results))
    if not args.no_record:
        path = records.save(
            "serving_cpu", device=device_name("cpu"), date=datetime.date.today().isoformat(),
            results={"engines": results, "startup_s": startup,
                     "workload": {"prompts": args.prompts, "max_tokens": args.tokens,
                                  "concurrency": args.concurrency,
                                  "threads_per_engine": args.threads},
                     "wall_s": time.perf_counter() - started},
            source=f"benchmarks/serving_compare.py: {args.prompts} prompts (8-200 words), "
                   f"{args.tokens} new tokens each, "
                   f"{args.concurrency} concurrent streaming clients, "
                   f"{args.threads} thread(s) per engine, "
                   "on a 2-core machine shared with other work")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
