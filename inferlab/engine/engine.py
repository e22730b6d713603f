"""``LLMEngine``: the course's small inference engine, in the style of nano-vllm and gpt-fast.

Built up over lessons 05-09: a KV cache (05), a scheduler doing continuous batching (06), paged
blocks with prefix sharing (07), sampling and speculative decoding (08), attention kernels and CUDA
graphs (09). It takes one ``EngineConfig`` (``config``), whose plug-in points let a lesson swap in
the student's own block manager, scheduling step, sampler or attention backend. One step is::

    sequences, is_prefill = scheduler.schedule()       # who runs (blocks permitting)
    logits = runner.run(sequences, is_prefill)         # one forward pass over all of them
    tokens = sampler(logits, params, ids)              # one new token each
    finished = scheduler.postprocess(sequences, tokens)

``step()`` does one and returns a ``StepResult`` (who ran, the tokens they got, who finished);
``generate(prompts, SamplingParams(...))`` repeats steps until every request has finished;
``add_request`` + ``step`` let requests arrive while others run, and ``run_trace`` replays a
timed arrival process (lesson 06).

Example::

    from inferlab.engine import EngineConfig, LLMEngine, SamplingParams
    engine = LLMEngine(config=EngineConfig(max_model_len=256))   # the embedded SmolLM2-135M, fp32
    out = engine.generate(["The capital of France is"], SamplingParams(max_tokens=8))
    print(out[0].text)
"""
from __future__ import annotations

import time

import torch

from .block_manager import BlockManager
from .config import BLOCK_MANAGER_API, EngineConfig
from .kv_cache import PagedKVCache, StaticKVCache, kv_bytes_per_token
from .model_runner import ModelRunner
from .outputs import EngineStats, RequestOutput, StepResult
from .run_ahead import PendingTokens
from .sampler import Sampler, SamplingParams
from .scheduler import Scheduler
from .sequence import Sequence
from .weights import LlamaWeights


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
    transformers ``*ForCausalLM`` or ``LlamaWeights``. ``config``: an ``EngineConfig``; keyword
    settings are a shorthand for its fields (``LLMEngine(m, max_model_len=64)`` is
    ``LLMEngine(m, config=EngineConfig(max_model_len=64))``). The parts it builds from the config
    are attributes: ``cache``, ``block_manager``, ``scheduler``, ``runner`` (with
    ``runner.attention``, the backend) and ``sampler``; ``config`` is the config with every
    automatic choice made.
    """

    def __init__(self, model=None, tokenizer=None, config: EngineConfig | None = None, **settings):
        if isinstance(tokenizer, EngineConfig):
            raise TypeError("pass the EngineConfig as config= (the second argument is the "
                            "tokenizer): LLMEngine(model, config=EngineConfig(...))")
        config = EngineConfig.from_kwargs(config, **settings)
        self.weights, self.tokenizer = _load(model, tokenizer, config.dtype, config.device)
        mc = self.model_config = self.weights.config
        w = self.weights
        per_token = kv_bytes_per_token(mc.num_layers, mc.num_kv_heads, mc.head_dim,
                                       w.embed.element_size())
        cfg = self.config = config.resolve(mc, per_token, w.device, w.dtype)
        self.max_model_len = cfg.max_model_len
        cache_cls = StaticKVCache if cfg.kv_cache == "static" else PagedKVCache
        self.cache = cache_cls(mc.num_layers, cfg.cache_blocks, cfg.block_size, mc.num_kv_heads,
                               mc.head_dim, w.dtype, w.device)
        self.block_manager = self._make_block_manager(cfg)
        self.scheduler = Scheduler(self.block_manager, cfg.max_num_seqs, cfg.max_num_batched_tokens,
                                   cfg.policy, cfg.batch_window, step=cfg.schedule_step,
                                   prefill_chunk_tokens=cfg.prefill_chunk_tokens
                                   if cfg.chunked_prefill else None)
        self.runner = ModelRunner(w, self.cache, cfg.max_model_len, cfg.attention_backend,
                                  cfg.prepack_weights, cfg.max_num_seqs, cfg.gemv,
                                  cfg.gemv_swiglu)
        self.sampler = cfg.sampler or Sampler(cfg.seed)
        if cfg.cuda_graphs:
            self.runner.enable_cuda_graphs(compile=cfg.compile)
        self.stats = EngineStats()
        self._seqs: dict[int, Sequence] = {}
        self._finished: dict[int, Sequence] = {}
        self._in_flight: tuple | None = None     # run_ahead: (sequences, PendingTokens) launched
        self._clock0 = time.perf_counter()

    @staticmethod
    def _make_block_manager(cfg: EngineConfig):
        if cfg.block_manager is None:
            return BlockManager(cfg.cache_blocks, cfg.block_size, cfg.enable_prefix_caching)
        manager = cfg.block_manager(cfg.cache_blocks, cfg.block_size)
        missing = [name for name in BLOCK_MANAGER_API if not hasattr(manager, name)]
        if missing:
            raise TypeError(f"the block manager {type(manager).__name__} lacks "
                            f"{', '.join(missing)}: the engine uses "
                            f"{', '.join(BLOCK_MANAGER_API)} (see EngineConfig)")
        return manager

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
        if any(t < 0 or t >= self.model_config.vocab_size for t in ids):
            raise ValueError(f"token ids must be in [0, {self.model_config.vocab_size})")
        return ids

    def _check_prompt(self, ids: list[int]) -> None:
        if not ids:
            raise ValueError("empty prompt: a prompt needs at least one token")
        if len(ids) >= self.max_model_len:
            raise ValueError(f"the prompt has {len(ids)} tokens but the context holds "
                             f"max_model_len={self.max_model_len} (prompt + at least one new "
                             "token)")

    def now(self) -> float:
        return time.perf_counter() - self._clock0

    def add_request(self, prompt, params: SamplingParams | None = None,
                    arrival: float | None = None) -> int:
        """Queue a prompt (text or token ids); returns its request id."""
        params = params or SamplingParams()
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be SamplingParams, got {type(params).__name__}")
        ids = self.encode(prompt)
        self._check_prompt(ids)
        seq = Sequence(ids, params, arrival=self.now() if arrival is None else arrival)
        self._seqs[seq.seq_id] = seq
        self.scheduler.add(seq)
        return seq.seq_id

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    # ------------------------------------------------------------------------------- step
    def step(self, now: float | None = None, flush: bool = True) -> StepResult:
        """Run one engine step (schedule, forward pass, sample, update) and say what it did.

        With ``run_ahead`` a decode step also launches the next one before it reads its own
        tokens; the next call then takes that step, already running, instead of scheduling."""
        if self._in_flight is not None:          # launched ahead by the last step
            seqs, pending = self._take_in_flight()
        else:
            seqs, is_prefill = self._schedule(self.now() if now is None else now, flush)
            if not seqs:
                return StepResult(is_prefill)
            if is_prefill or not self._may_run_ahead(seqs):
                tokens = self._execute(seqs, is_prefill)
                return self._finish(seqs, is_prefill, tokens, self.now() if now is None else now)
            pending = self._launch(seqs)
        ahead = self._launch_ahead(seqs, pending) if self._may_run_ahead(seqs) else None
        tokens = pending.list()                  # waits for this step only
        result = self._finish(seqs, False, tokens, self.now() if now is None else now)
        live = [s for s in seqs if not s.is_finished]
        if ahead is not None and live:
            for s in live:                       # their next slots are reserved: only a block
                self.scheduler.append_slot(s)    # that fills up gets registered for sharing
            self._in_flight = (seqs, ahead)
        return result

    # ------------------------------------------------------------------ running ahead (09)
    def _may_run_ahead(self, seqs) -> bool:
        """Is the step after this decode step certain to be the same sequences' next decode
        step, with tokens picked on the device? (``run_ahead``; see its module.)"""
        sched = self.scheduler
        return bool(self.config.run_ahead and seqs and not sched.waiting and sched.step is None
                    and not sched.prefilling and type(self.sampler) is Sampler
                    and type(self.block_manager) is BlockManager
                    and all(s.params.greedy and s.num_output_tokens + 1 < s.params.max_tokens
                            and len(s) + 1 < self.max_model_len for s in seqs))

    def _launch(self, seqs) -> PendingTokens:
        """A scheduled decode step whose tokens stay on the device until they are read."""
        return PendingTokens(self._forward(seqs, False))

    def _launch_ahead(self, seqs, pending: PendingTokens) -> PendingTokens | None:
        """Launch the step after ``pending``'s, on its tokens still on the device; None where a
        next cache slot needs a copy-on-write or a block that is not free."""
        if not self.block_manager.reserve_next_slots(seqs):
            return None
        return PendingTokens(self.runner.run_ahead(seqs, pending.device))

    def _take_in_flight(self):
        """The step launched ahead, without the sequences that stopped before it was read."""
        seqs, pending = self._in_flight
        self._in_flight = None
        rows = [i for i, s in enumerate(seqs) if not s.is_finished]
        if len(rows) < len(seqs):
            seqs = [seqs[i] for i in rows]
            pending.keep(rows)
        self._count(seqs, False)
        return seqs, pending

    def _schedule(self, now: float, flush: bool):
        seqs, is_prefill = self.scheduler.schedule(now, flush)
        self.stats.preemptions = self.scheduler.num_preemptions
        bs = self.config.block_size
        for s in seqs:   # a plug-in scheduling step gets a clear error, not a crash in the model
            if s.is_finished or len(s.block_table) * bs < len(s):
                raise RuntimeError(
                    f"the scheduling step returned sequence {s.seq_id} ({len(s)} tokens, "
                    f"{s.status.name}) with block table {s.block_table}: a scheduled sequence "
                    "must be running and hold blocks for all its tokens (allocate / append_slot)")
        return seqs, bool(is_prefill)

    def _execute(self, seqs, is_prefill: bool) -> list:
        """The forward pass and sampling of a scheduled step; returns one token per sequence
        (``None`` for a sequence that computed a prompt chunk that is not its last)."""
        spans = self.scheduler.spans
        logits = self._forward(seqs, is_prefill)
        if spans is None:
            return self.sampler(logits, [s.params for s in seqs], [s.seq_id for s in seqs])
        rows = [i for i, (s, (_, end)) in enumerate(zip(seqs, spans)) if end == len(s)]
        tokens: list = [None] * len(seqs)
        if rows:
            picked = [seqs[i] for i in rows]
            sampled = self.sampler(logits[rows], [s.params for s in picked],
                                   [s.seq_id for s in picked])
            for i, token in zip(rows, sampled):
                tokens[i] = token
        return tokens

    def _forward(self, seqs, is_prefill: bool) -> torch.Tensor:
        """The scheduled step's cache copies, statistics and forward pass -> its logits."""
        if self.scheduler.block_copies:
            self.cache.copy_blocks(self.scheduler.block_copies)
        self._count(seqs, is_prefill)
        return self.runner.run(seqs, is_prefill, spans=self.scheduler.spans)

    def _count(self, seqs, is_prefill: bool) -> None:
        """Add a step over ``seqs`` to ``stats``."""
        stats, spans = self.stats, self.scheduler.spans
        if spans is not None:                # chunked prefill: prompt chunks + decode tokens
            stats.prefill_steps += 1
            stats.decode_tokens += self.scheduler.num_decodes       # they come first
            for s, (start, end) in list(zip(seqs, spans))[self.scheduler.num_decodes:]:
                if start == s.num_cached_tokens:         # its first chunk: count the hits
                    stats.prefix_hit_tokens += start
                stats.prefill_tokens += end - start
        elif is_prefill:
            stats.prefill_steps += 1
            hits = sum(s.num_cached_tokens for s in seqs)
            stats.prefix_hit_tokens += hits
            stats.prefill_tokens += sum(len(s) for s in seqs) - hits
        else:
            stats.decode_steps += 1
            stats.decode_tokens += len(seqs)
        stats.steps += 1
        stats.batch_sizes.append(len(seqs))
        stats.peak_blocks_used = max(stats.peak_blocks_used, self.block_manager.num_used_blocks)

    def _finish(self, seqs, is_prefill: bool, tokens: list, now: float) -> StepResult:
        spans = self.scheduler.spans
        for i, s in enumerate(seqs):         # keys/values now cached up to the step's last token
            s.num_computed_tokens = len(s) if spans is None else spans[i][1]
            if spans is not None:            # chunked: its full blocks may be shared from now
                self.block_manager.register_computed(s, s.num_computed_tokens)
        prefilling = [s.seq_id for s, t in zip(seqs, tokens) if t is None]
        if prefilling:
            sampled = [i for i, t in enumerate(tokens) if t is not None]
            seqs, tokens = [seqs[i] for i in sampled], [tokens[i] for i in sampled]
        done = self.scheduler.postprocess(seqs, tokens, self.model_config.eos_token_ids,
                                          self.max_model_len, now)
        forget = getattr(self.sampler, "forget", None)
        for seq in done:
            if forget is not None:
                forget(seq.seq_id)
            self._finished[seq.seq_id] = seq
        return StepResult(is_prefill, [s.seq_id for s in seqs], list(tokens),
                          [self.output(s.seq_id) for s in done], prefilling)

    def output(self, request_id: int) -> RequestOutput:
        seq = self._seqs[request_id]
        text = None
        if self.tokenizer is not None:
            text = self.tokenizer.decode(seq.output_token_ids, skip_special_tokens=True)
        return RequestOutput(seq.seq_id, seq.prompt_token_ids, list(seq.output_token_ids), text,
                             seq.finish_reason, seq.arrival, seq.first_token, seq.finished,
                             seq.num_preemptions, seq.num_cached_tokens)

    def pop_finished(self) -> list[RequestOutput]:
        """Outputs of the requests finished since the last call (and forget them)."""
        out = [self.output(i) for i in sorted(self._finished)]
        for i in self._finished:
            self._seqs.pop(i, None)
        self._finished = {}
        return out

    def _stuck(self) -> RuntimeError:
        sched = self.scheduler
        return RuntimeError(f"the scheduler ran nothing in two steps in a row with "
                            f"{len(sched.waiting)} request(s) waiting and {len(sched.running)} "
                            "running: the scheduling step never admits or decodes them")

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
        for e in encoded:
            self._check_prompt(e)
        ids = [self.add_request(e, p) for e, p in zip(encoded, plist)]
        idle = 0
        while self.has_unfinished():
            idle = 0 if self.step().num_seqs else idle + 1
            if idle >= 2:      # one empty step is normal (a lone sequence preempted), two are not
                raise self._stuck()
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
        now, i, ids, idle = 0.0, 0, {}, 0
        sched = self.scheduler
        while i < len(pending) or self.has_unfinished():
            while i < len(pending) and trace[pending[i]][0] <= now:
                arrival, prompt, params = trace[pending[i]]
                ids[pending[i]] = self.add_request(prompt, params, arrival=arrival)
                i += 1
            more = i < len(pending)
            seqs, is_prefill = self._schedule(now, flush=not more)
            if not seqs:
                wake = [trace[pending[i]][0]] if more else []
                if sched.policy == "dynamic" and sched.waiting:
                    wake.append(sched.waiting[0].arrival + sched.batch_window)
                if wake:                     # nothing to run before the next arrival / window end
                    now, idle = max(now, min(wake)), 0
                    continue
                idle += 1
                if idle >= 2:
                    raise self._stuck()
                continue
            idle = 0
            start = time.perf_counter()
            tokens = self._execute(seqs, is_prefill)
            now += time.perf_counter() - start if step_cost is None else step_cost(seqs, is_prefill)
            self._finish(seqs, is_prefill, tokens, now)
        outputs = {o.request_id: o for o in self.pop_finished()}
        return [outputs[ids[j]] for j in range(len(trace))]
