"""Engines that run inside the notebook, behind one interface: ``stream(prompt, max_tokens)``.
Lesson 10.

To compare engines fairly, each must produce the *same amount of work* (exactly ``max_tokens``
new tokens, greedy) and report *when* each token appeared. Every class here returns a
``RequestTrace`` per request, like the HTTP client does for a server, so ``latency.summarize``
and the load generator treat all engines alike.

* ``TransformersEngine`` - ``model.generate`` with a streamer that timestamps each token. It
  has no scheduler: concurrent clients queue on a lock and are served **one at a time**, which
  is what a plain "generate behind a web handler" server does. The baseline.
* ``CourseEngine`` - the course's ``LLMEngine`` (lessons 05-09) with continuous batching: up to
  ``concurrency`` requests share every decode step; a finished request's slot is refilled.
* ``LlamaCppEngine`` - llama.cpp through llama-cpp-python on the GGUF file itself (4-bit Q4_1
  weights, C++ kernels). One context, so one request at a time, like transformers.

``eos_ids(tokenizer)`` gives the tokens to forbid so that every engine runs the full length.
"""
from __future__ import annotations

import atexit
import threading
import time
from typing import Sequence

import torch

from .latency import RequestTrace


def eos_ids(tokenizer) -> list[int]:
    """Token ids that end generation for this tokenizer (``<|im_end|>``, ``<|endoftext|>``)."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|endoftext|>", "<|im_end|>", "</s>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


class _TimingStreamer:
    """transformers streamer protocol: ``put`` gets the prompt once, then each new token."""

    def __init__(self, trace: RequestTrace):
        self.trace, self.seen_prompt = trace, False

    def put(self, value) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        self.trace.token_times.append(time.perf_counter())

    def end(self) -> None:
        pass


class TransformersEngine:
    """``model.generate`` serving one request at a time (the baseline)."""

    name = "transformers generate"

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.lock = threading.Lock()

    @torch.no_grad()
    def stream(self, prompt: str, max_tokens: int) -> RequestTrace:
        trace = RequestTrace(start=time.perf_counter())
        with self.lock:
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids.to(self.model.device)
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                                      streamer=_TimingStreamer(trace),
                                      pad_token_id=self.tokenizer.pad_token_id)
        new = out[0, ids.shape[1]:]
        trace.n_tokens, trace.prompt_tokens = int(new.numel()), int(ids.shape[1])
        trace.text = self.tokenizer.decode(new, skip_special_tokens=True)
        return trace


class CourseEngine:
    """The course's ``LLMEngine`` driven step by step, so each token's arrival is timestamped."""

    name = "course engine"

    def __init__(self, model=None, tokenizer=None, **engine_kwargs):
        from inferlab.engine import LLMEngine
        self.engine = LLMEngine(model, tokenizer, **engine_kwargs)

    def closed_loop(self, prompts: Sequence[str], max_tokens: int,
                    concurrency: int) -> list[RequestTrace]:
        """Serve ``prompts`` with at most ``concurrency`` in flight (refilled as they finish)."""
        from inferlab.engine import SamplingParams
        params = SamplingParams(max_tokens=max_tokens, ignore_eos=True)
        engine = self.engine
        traces = [RequestTrace(start=0.0) for _ in prompts]
        in_flight: dict[int, int] = {}  # request id -> prompt index
        pending = iter(range(len(prompts)))

        def admit():
            while len(in_flight) < concurrency:
                index = next(pending, None)
                if index is None:
                    return
                traces[index].start = time.perf_counter()
                in_flight[engine.add_request(prompts[index], params)] = index

        admit()
        while in_flight:
            result = engine.step()
            now = time.perf_counter()
            for rid in result.request_ids:          # each request that ran got one token
                traces[in_flight[rid]].token_times.append(now)
            for out in result.finished:
                index = in_flight.pop(out.request_id)
                traces[index].n_tokens = len(out.token_ids)
                traces[index].prompt_tokens = len(out.prompt_token_ids)
            engine.pop_finished()
            admit()
        return traces


class LlamaCppEngine:
    """llama.cpp on the GGUF file through llama-cpp-python (one request at a time)."""

    name = "llama.cpp (in-process)"

    def __init__(self, gguf_path, n_threads: int = 1, n_ctx: int = 2048, banned=()):
        from llama_cpp import Llama
        self.llm = Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=n_threads,
                         n_threads_batch=n_threads, verbose=False)
        self.logit_bias = {int(t): -1e9 for t in banned}
        self.lock = threading.Lock()
        atexit.register(self.close)  # free the model before the interpreter tears modules down

    def stream(self, prompt: str, max_tokens: int) -> RequestTrace:
        trace = RequestTrace(start=time.perf_counter())
        pieces = []
        with self.lock:
            self.llm.reset()
            for chunk in self.llm.create_completion(prompt, max_tokens=max_tokens,
                                                    temperature=0.0, stream=True,
                                                    logit_bias=self.logit_bias or None):
                choice = chunk["choices"][0]
                if choice.get("finish_reason") and not choice.get("text"):
                    continue  # the closing chunk carries no token
                trace.token_times.append(time.perf_counter())
                pieces.append(choice["text"])
        trace.text = "".join(pieces)
        trace.n_tokens = len(trace.token_times)
        return trace

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None and hasattr(llm, "close"):
            llm.close()
