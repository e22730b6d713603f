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
import queue
import signal
import subprocess
import sys
import threading
import time

from .launch import vllm_env

MARK = "RESULT "


def _build(model_dir: str, enforce_eager: bool, max_model_len: int, max_num_seqs: int):
    """vLLM's ``LLM`` for ``model_dir`` in bf16, and the seconds it took to start."""
    started = time.perf_counter()
    from vllm import LLM
    llm = LLM(model=model_dir, dtype="bfloat16", enforce_eager=enforce_eager,
              max_model_len=max_model_len, max_num_seqs=max_num_seqs)
    return llm, time.perf_counter() - started


def _timed_generate(llm, prompts: list[str], max_tokens: int) -> dict:
    """One greedy ``generate`` of exactly ``max_tokens`` new tokens a prompt, timed."""
    from vllm import SamplingParams
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    started = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"generate_s": seconds, "output_tokens": tokens, "prompts": len(prompts),
            "prompt_tokens": sum(len(o.prompt_token_ids) for o in outputs),
            "throughput_tok_s": tokens / seconds, "first_text": outputs[0].outputs[0].text}


def run_offline(model_dir: str, prompts: list[str], max_tokens: int, *, enforce_eager: bool = True,
                max_model_len: int = 1024, max_num_seqs: int = 16) -> dict:
    """In this process: build ``LLM`` and generate; return start-up and generation timings."""
    llm, startup = _build(model_dir, enforce_eager, max_model_len, max_num_seqs)
    _timed_generate(llm, prompts[:2], 2)                                 # warm-up
    return {"startup_s": startup, **_timed_generate(llm, prompts, max_tokens)}


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


class OfflineWorker:
    """vLLM's offline mode in a child process that stays up between ``generate`` calls.

    A benchmark on a shared machine should alternate the systems it compares, run by run, so
    that a slow minute slows both: ``run_in_child`` starts vLLM afresh for each call (a compiled
    start takes minutes), this keeps one ``LLM`` and times one ``generate`` per call::

        with OfflineWorker(folder, enforce_eager=False, max_num_seqs=32) as vllm:
            for _ in range(3):
                print(vllm.generate(prompts, 64)["throughput_tok_s"], engine_run())

    ``startup_s`` is how long the ``LLM`` took to build (compilation included). Between calls
    the child's processes are stopped (SIGSTOP): an idle vLLM keeps polling for work, which on a
    2-core machine would take CPU from the system measured in between.
    """

    def __init__(self, model_dir, *, enforce_eager: bool = True, max_num_seqs: int = 16,
                 max_model_len: int = 1024, kv_cache_gib: int = 1, cpu_threads: int | None = None,
                 timeout: float = 900.0):
        self.timeout = timeout
        self._log: list[str] = []
        env = dict(os.environ, **vllm_env(kv_cache_gib, cpu_threads))
        self._child = subprocess.Popen(
            [sys.executable, "-m", "inferlab.serving.vllm_offline", "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env, start_new_session=True, bufsize=1)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read_lines, daemon=True).start()
        try:
            self.startup_s = self._ask({"model_dir": str(model_dir), "enforce_eager": enforce_eager,
                                        "max_num_seqs": max_num_seqs,
                                        "max_model_len": max_model_len})["startup_s"]
        except BaseException:
            self.close()
            raise
        self._signal(signal.SIGSTOP)

    def _signal(self, sig) -> None:
        try:
            os.killpg(self._child.pid, sig)                # vLLM's own workers included
        except ProcessLookupError:
            pass

    def _read_lines(self) -> None:
        """(thread) The child's output, line by line, into a queue; None when it ends."""
        for line in self._child.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _ask(self, request: dict) -> dict:
        """Send one JSON line; return the child's ``RESULT`` line (its log lines are kept)."""
        self._child.stdin.write(json.dumps(request) + "\n")
        self._child.stdin.flush()
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:                               # the child ended
                break
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
            self._log = (self._log + [line.rstrip()])[-25:]
        tail = "\n".join(self._log)
        raise RuntimeError(f"the vLLM worker gave no result (exit code {self._child.poll()}):\n"
                           f"{tail}")

    def generate(self, prompts: list[str], max_tokens: int) -> dict:
        """One timed ``generate`` (see ``run_offline``'s keys, without ``startup_s``)."""
        self._signal(signal.SIGCONT)
        try:
            return self._ask({"prompts": prompts, "max_tokens": max_tokens})
        finally:
            self._signal(signal.SIGSTOP)

    def close(self) -> None:
        self._signal(signal.SIGKILL)
        self._child.wait()

    def __enter__(self) -> "OfflineWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve_worker() -> None:
    """The child's side of ``OfflineWorker``: build, warm up, then one result per request line."""
    settings = json.loads(sys.stdin.readline())
    llm, startup = _build(settings["model_dir"], settings["enforce_eager"],
                          settings["max_model_len"], settings["max_num_seqs"])
    _timed_generate(llm, ["Hello", "The weather"], 2)                    # warm-up
    print(MARK + json.dumps({"startup_s": startup}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(MARK + json.dumps(_timed_generate(llm, request["prompts"], request["max_tokens"])),
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="reads a JSON request on stdin, prints RESULT {json}; --worker: one request "
                    "per line after a first line of settings (OfflineWorker)")
    parser.add_argument("--worker", action="store_true")
    if parser.parse_args().worker:
        _serve_worker()
        return
    request = json.loads(sys.stdin.read())
    result = run_offline(request["model_dir"], request["prompts"], request["max_tokens"],
                         enforce_eager=request.get("enforce_eager", True),
                         max_num_seqs=request.get("max_num_seqs", 16))
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
