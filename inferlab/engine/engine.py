"""``LLMEngine``: the course's small inference engine, in the style of nano-vllm and gpt-fast.

Built up over lessons 05-09: a KV cache (05), a scheduler doing continuous batching (06), paged
blocks with prefix sharing (07), sampling and speculative decoding (08), CUDA graphs (09's GPU
section). One engine step is::

    sequences, is_prefill = scheduler.schedule()       # who runs (blocks permitting)
    logits = model_runner.run(sequences, is_prefill)   # one forward pass over all of them
    tokens = sampler(logits, params)                   # one new token each
    finished = scheduler.postprocess(sequences, tokens)

``generate(prompts, SamplingParams(...))`` repeats steps until every request has finished.
``add_request`` + ``step`` let requests arrive while others are running, and ``run_trace``
replays a timed arrival process (lesson 06).

Example::

    from inferlab.engine import LLMEngine, SamplingParams
    engine = LLMEngine()                    # the embedded SmolLM2-135M, fp32, CPU
    out = engine.generate(["The capital of France is"], SamplingParams(max_tokens=8))
    print(out[0].text)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .block_manager import BlockManager
from .kv_cache import PagedKVCache, StaticKVCache, kv_bytes_per_token
from .model_runner import ModelRunner
from .weights import LlamaWeights
from .sampler import Sampler, SamplingParams
from .scheduler import Scheduler
from .sequence import Sequence


@dataclass
class RequestOutput:
    """What one request produced, with its timings (seconds, or the clock ``run_trace`` used)."""
    request_id: int
    prompt_token_ids: list
    token_ids: list
    text: str | None
    finish_reason: str | None
    arrival: float
    first_token: float | None
    finished: float | None
    num_preemptions: int = 0
    num_cached_prompt_tokens: int = 0

    @property
    def latency(self) -> float | None:
        return None if self.finished is None else self.finished - self.arrival

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival


@dataclass
class EngineStats:
    steps: int = 0
    prefill_steps: int = 0
    decode_steps: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    preemptions: int = 0
    prefix_hit_tokens: int = 0
    peak_blocks_used: int = 0
    batch_sizes: list = field(default_factory=list)


def _load(model, tokenizer, dtype, device):
    if model is None or isinstance(model, str):
        from inferlab.lab.models import DEFAULT_MODEL, load_model
        model, tokenizer = load_model(model or DEFAULT_MODEL)
    if isinstance(model, LlamaWeights):
        weights = model
        if dtype is not None or device is not None:
            raise ValueError("pass LlamaWeights already in the dtype/device you want")
    else:
        weights = LlamaWeights.from_hf(model, dtype=dtype, device=device)
    return weights, tokenizer


class LLMEngine:
    """Continuous-batching inference over a Llama-family model with a static or paged KV cache.

    ``model``: ``None`` (the embedded SmolLM2-135M), a model name for ``load_model``, a
    transformers ``*ForCausalLM`` or ``LlamaWeights``. ``kv_cache="static"`` reserves
    ``max_model_len`` slots for each of ``max_num_seqs`` sequences; ``"paged"`` hands out
    ``num_blocks`` blocks of ``block_size`` tokens (default: as many as fit in
    ``kv_cache_memory`` bytes, 512 MiB unless given).
    """

    def __init__(self, model=None, tokenizer=None, *, kv_cache: str = "paged", block_size: int = 16,
                 num_blocks: int | None = None, kv_cache_memory: int | None = None,
                 max_num_seqs: int = 32, max_num_batched_tokens: int = 4096,
                 max_model_len: int | None = None, enable_prefix_caching: bool = True,
                 policy: str = "continuous", batch_window: float = 0.0, dtype=None, device=None,
                 cuda_graphs: bool | None = None, compile: bool = False, seed: int = 0):
        if kv_cache not in ("static", "paged"):
            raise ValueError(f"kv_cache must be 'static' or 'paged', got {kv_cache!r}")
        self.weights, self.tokenizer = _load(model, tokenizer, dtype, device)
        config = self.config = self.weights.config
        self.max_model_len = max_model_len or min(config.max_position, 2048)
        if self.max_model_len < 2 or self.max_model_len > config.max_position:
            raise ValueError(f"max_model_len must be in [2, {config.max_position}]")
        per_token = kv_bytes_per_token(config.num_layers, config.num_kv_heads, config.head_dim,
                                       self.weights.embed.element_size())
        cache_args = (config.num_layers,)
        head_args = (config.num_kv_heads, config.head_dim, self.weights.dtype, self.weights.device)
        if kv_cache == "static":
            block_size, num_blocks = self.max_model_len, max_num_seqs
            enable_prefix_caching = False
            self.cache = StaticKVCache(*cache_args, max_num_seqs, self.max_model_len, *head_args)
        else:
            if num_blocks is None:
                budget = kv_cache_memory or 512 * 2 ** 20
                wanted = -(-max_num_seqs * self.max_model_len // block_size)
                num_blocks = max(1, min(wanted, budget // (per_token * block_size)))
            if num_blocks * block_size < self.max_model_len:
                raise ValueError(
                    f"the KV cache holds {num_blocks} blocks x {block_size} = {num_blocks * block_size} "
                    f"tokens, fewer than one sequence of max_model_len={self.max_model_len}; "
                    "give more blocks/memory or a smaller max_model_len")
            self.cache = PagedKVCache(*cache_args, num_blocks, block_size, *head_args)
        self.kv_cache_kind = kv_cache
        self.block_manager = BlockManager(num_blocks, block_size, enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, max_num_seqs, max(max_num_batched_tokens, 1),
                                   policy, batch_window)
        self.runner = ModelRunner(self.weights, self.cache, self.max_model_len)
        self.sampler = Sampler(seed)
        if cuda_graphs is None:
            cuda_graphs = self.weights.device.type == "cuda"
        if cuda_graphs:
            self.runner.enable_cuda_graphs(compile=compile)
        self.stats = EngineStats()
        self._seqs: dict[int, Sequence] = {}
        self._finished: dict[int, Sequence] = {}
        self._prompts: dict[int, object] = {}
        self._clock0 = time.perf_counter()

    # --------------------------------------------------------------------------- requests
    def encode(self, prompt) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("this engine has no tokenizer: pass prompts as lists of token ids")
            return self.tokenizer.encode(prompt)
        if isinstance(prompt, torch.Tensor):
            prompt = prompt.flatten().tolist()
        ids = list(prompt)
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
            raise TypeError("a prompt is a string or a list of token ids (ints)")
        if any(t < 0 or t >= self.config.vocab_size for t in ids):
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size})")
        return ids

    def now(self) -> float:
        return time.perf_counter() - self._clock0

    def add_request(self, prompt, params: SamplingParams | None = None,
                    arrival: float | None = None) -> int:
        """Queue a prompt (text or token ids); returns its request id."""
        params = params or SamplingParams()
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be SamplingParams, got {type(params).__name__}")
        ids = self.encode(prompt)
        if not ids:
            raise ValueError("empty prompt: a prompt needs at least one token")
        if len(ids) >= self.max_model_len:
            raise ValueError(f"the prompt has {len(ids)} tokens but the context holds "
                             f"max_model_len={self.max_model_len} (prompt + at least one new token)")
        seq = Sequence(ids, params, arrival=self.now() if arrival is None else arrival)
        self._seqs[seq.seq_id] = seq
        self._prompts[seq.seq_id] = prompt
        self.scheduler.add(seq)
        return seq.seq_id

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    # ------------------------------------------------------------------------------- step
    def step(self, now: float | None = None, flush: bool = True) -> list[Sequence]:
        """Run one engine step; return the sequences that finished in it."""
        seqs, is_prefill = self.scheduler.schedule(self.now() if now is None else now, flush)
        if not seqs:
            self.stats.preemptions = self.scheduler.num_preemptions
            return []
        self._execute(seqs, is_prefill)
        return self._finish(seqs, self.now() if now is None else now)

    def _execute(self, seqs, is_prefill: bool) -> None:
        stats = self.stats
        stats.preemptions = self.scheduler.num_preemptions
        if self.scheduler.block_copies:
            self.cache.copy_blocks(self.scheduler.block_copies)
        if is_prefill:
            stats.prefill_steps += 1
            stats.prefill_tokens += sum(len(s) - s.num_cached_tokens for s in seqs)
            stats.prefix_hit_tokens += sum(s.num_cached_tokens for s in seqs)
            for s in seqs:
                s.num_prefix_hits = s.num_cached_tokens
        else:
            stats.decode_steps += 1
            stats.decode_tokens += len(seqs)
        stats.steps += 1
        stats.batch_sizes.append(len(seqs))
        stats.peak_blocks_used = max(stats.peak_blocks_used, self.block_manager.num_used_blocks)
        logits = self.runner.run(seqs, is_prefill)
        self._tokens = self.sampler(logits, [s.params for s in seqs], [s.seq_id for s in seqs])

    def _finish(self, seqs, now: float) -> list[Sequence]:
        done = self.scheduler.postprocess(seqs, self._tokens, self.config.eos_token_ids,
                                          self.max_model_len, now)
        for seq in done:
            self.sampler.forget(seq.seq_id)
            self._finished[seq.seq_id] = seq
        return done

    def output(self, request_id: int) -> RequestOutput:
        seq = self._seqs[request_id]
        text = None
        if self.tokenizer is not None:
            text = self.tokenizer.decode(seq.output_token_ids, skip_special_tokens=True)
        return RequestOutput(seq.seq_id, seq.prompt_token_ids, list(seq.output_token_ids), text,
                             seq.finish_reason, seq.arrival, seq.first_token, seq.finished,
                             seq.num_preemptions, seq.num_prefix_hits)

    def pop_finished(self) -> list[RequestOutput]:
        """Outputs of the requests finished since the last call (and forget them)."""
        out = [self.output(i) for i in sorted(self._finished)]
        for i in self._finished:
            self._seqs.pop(i, None)
            self._prompts.pop(i, None)
        self._finished = {}
        return out

    # --------------------------------------------------------------------------- generate
    def generate(self, prompts, params: SamplingParams | list | None = None) -> list[RequestOutput]:
        """Generate for every prompt; outputs in the order of ``prompts``."""
        if isinstance(prompts, (str, torch.Tensor)) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            raise ValueError("generate() needs at least one prompt (got an empty list)")
        if isinstance(params, (list, tuple)):
            if len(params) != len(prompts):
                raise ValueError("give one SamplingParams, or one per prompt")
            plist = list(params)
        else:
            plist = [params or SamplingParams()] * len(prompts)
        for p in plist:   # validate everything before queueing anything
            if not isinstance(p, SamplingParams):
                raise TypeError(f"params must be SamplingParams, got {type(p).__name__}")
        encoded = [self.encode(p) for p in prompts]
        for ids in encoded:
            if not ids:
                raise ValueError("empty prompt: a prompt needs at least one token")
            if len(ids) >= self.max_model_len:
                raise ValueError(f"a prompt has {len(ids)} tokens but the context holds "
                                 f"max_model_len={self.max_model_len}")
        ids = [self.add_request(e, p) for e, p in zip(encoded, plist)]
        while self.has_unfinished():
            self.step()
        outputs = {o.request_id: o for o in self.pop_finished()}
        return [outputs[i] for i in ids]

    def run_trace(self, trace, step_cost=None) -> list[RequestOutput]:
        """Serve requests arriving over time: ``trace`` is ``[(arrival_s, prompt, params), ...]``.

        The clock is virtual: it advances by each step's measured duration (or by
        ``step_cost(seqs, is_prefill)`` seconds if given) and jumps over idle gaps, so a trace
        of minutes runs in the time its steps really take. Returns outputs in trace order,
        with ``arrival``, ``first_token`` and ``finished`` on that clock.
        """
        pending = sorted(range(len(trace)), key=lambda j: trace[j][0])
        now, i, ids = 0.0, 0, {}
        sched = self.scheduler
        while i < len(pending) or self.has_unfinished():
            while i < len(pending) and trace[pending[i]][0] <= now:
                arrival, prompt, params = trace[pending[i]]
                ids[pending[i]] = self.add_request(prompt, params, arrival=arrival)
                i += 1
            more = i < len(pending)
            seqs, is_prefill = sched.schedule(now, flush=not more)
            if not seqs:
                wake = [trace[pending[i]][0]] if more else []
                if sched.policy == "dynamic" and sched.waiting:
                    wake.append(sched.waiting[0].arrival + sched.batch_window)
                if not wake:
                    raise RuntimeError("the scheduler cannot make progress")  # pragma: no cover
                now = max(now, min(wake))
                continue
            start = time.perf_counter()
            self._execute(seqs, is_prefill)
            now += time.perf_counter() - start if step_cost is None else step_cost(seqs, is_prefill)
            self._finish(seqs, now)
        outputs = {o.request_id: o for o in self.pop_finished()}
        return [outputs[ids[j]] for j in range(len(trace))]
