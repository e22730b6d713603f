"""vLLM's offline mode - ``LLM.generate`` on a list of prompts - run in a child process. Lesson 10.

Offline (batch) inference is the simplest way to use vLLM: hand it every prompt at once and let
its scheduler (continuous batching over a paged KV cache, lessons 06-07) keep the batch full::

    from vllm import LLM, SamplingParams
    llm = LLM(model=folder, dtype="bfloat16", enforce_eager=True, max_model_len=1024)
    outputs = llm.generate(prompts, SamplingParams(max_tokens=64, temperature=0, ignore_eos=True))

vLLM spawns worker processes and holds its KV-cache memory until the process ends, so the
notebook runs this in a **child process** (``python -m inferlab.serving.vllm_offline``): it is
guarded by ``if __name__ == "__main__"`` as vLLM's spawned workers require, it cannot leave
workers behind in the kernel, and its memory is returned when it exits. It prints one JSON line
(``RESULT {...}``) with the timings.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from .launch import vllm_env

MARK = "RESULT "


def run_offline(model_dir: str, prompts: list[str], max_tokens: int, *, enforce_eager: bool = True,
                max_model_len: int = 1024, max_num_seqs: int = 16) -> dict:
    """In this process: build ``LLM`` and generate; return start-up and generation timings."""
    started = time.perf_counter()
    from vllm import LLM, SamplingParams
    llm = LLM(model=model_dir, dtype="bfloat16", enforce_eager=enforce_eager,
              max_model_len=max_model_len, max_num_seqs=max_num_seqs)
    startup = time.perf_counter() - started
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    llm.generate(prompts[:2], SamplingParams(max_tokens=2, temperature=0.0))  # warm-up
    started = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"startup_s": startup, "generate_s": seconds, "output_tokens": tokens,
            "prompts": len(prompts), "prompt_tokens": sum(len(o.prompt_token_ids) for o in outputs),
            "throughput_tok_s": tokens / seconds, "first_text": outputs[0].outputs[0].text}


def run_in_child(model_dir, prompts: list[str], max_tokens: int, *, enforce_eager: bool = True,
                 max_num_seqs: int = 16, kv_cache_gib: int = 1, cpu_threads: int | None = None,
                 timeout: float = 600.0) -> dict:
    """Run ``run_offline`` in a fresh Python process and return its result (raises with its log)."""
    request = json.dumps({"model_dir": str(model_dir), "prompts": prompts, "max_tokens": max_tokens,
                          "enforce_eager": enforce_eager, "max_num_seqs": max_num_seqs})
    env = dict(os.environ, **vllm_env(kv_cache_gib, cpu_threads))
    child = subprocess.Popen([sys.executable, "-m", "inferlab.serving.vllm_offline"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = child.communicate(request, timeout=timeout)
    finally:  # timeout, interrupt or error: its whole process group goes (workers included)
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()
    done = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
    raise RuntimeError(f"vLLM offline run failed (exit code {done.returncode}):\n{tail}")


def main() -> None:
    argparse.ArgumentParser(
        description="reads a JSON request on stdin, prints RESULT {json}").parse_args()
    request = json.loads(sys.stdin.read())
    result = run_offline(request["model_dir"], request["prompts"], request["max_tokens"],
                         enforce_eager=request.get("enforce_eager", True),
                         max_num_seqs=request.get("max_num_seqs", 16))
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
