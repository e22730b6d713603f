"""Decode speed against the memory-bandwidth roofline, measured live (lessons 05-08).

Introduced in lesson 05. A decode step reads every weight once - whatever the batch size - and,
for every sequence in the step, the keys and values of all its earlier tokens. So

    bytes moved per step = weight bytes read + KV-cache bytes read
    achieved bandwidth   = bytes moved over all decode steps / their time
    roofline (tokens/s)  = measured bandwidth / bytes per step x tokens per step

where "measured bandwidth" is what this device reached copying a large buffer in the same run
(``bench.measure_bandwidth``), not a datasheet figure. The fraction achieved/measured says how
close a decode loop came to the speed its memory allows; what is left is overhead (kernel
launches, Python, the scheduler) or arithmetic the device could not hide.

``DecodeRun`` holds one measurement and prints the line the lessons show; ``engine_decode_run``
times the decode steps of ``inferlab.engine.LLMEngine`` (prefill steps excluded) on whatever
device its weights are on, with the CUDA graphs and attention kernels its ``EngineConfig`` chose.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from inferlab.lab.bench import synchronize


def decode_contexts(prompt_len: int, n_new: int) -> list[int]:
    """Tokens attended by each decode step of one sequence: the first new token comes from the
    prefill; decode step ``j`` (1-based) feeds new token ``j`` and reads ``prompt_len + j`` K/V."""
    return [prompt_len + j for j in range(1, n_new)]


@dataclass
class DecodeRun:
    """One timed decode run. ``kv_bytes``: K/V bytes read over all its steps."""
    label: str
    tokens: int            # tokens the decode steps produced
    steps: int             # decode steps (forward passes)
    seconds: float         # their wall time
    weight_bytes: int      # weight bytes one step reads (``LlamaWeights.bytes_read_per_token``)
    kv_bytes: float        # KV-cache bytes read, summed over the steps
    bandwidth: float       # bytes/s this device reached copying memory, in this run
    device: str = ""

    def __post_init__(self):
        if self.steps < 1 or self.seconds <= 0 or self.bandwidth <= 0:
            raise ValueError("a decode run needs >= 1 step, a positive time and bandwidth")

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def bytes_per_step(self) -> float:
        return self.weight_bytes + self.kv_bytes / self.steps

    @property
    def achieved(self) -> float:
        """Bytes/s the run moved."""
        return self.bytes_per_step * self.steps / self.seconds

    @property
    def fraction(self) -> float:
        """Achieved over measured bandwidth."""
        return self.achieved / self.bandwidth

    @property
    def roofline_tok_s(self) -> float:
        """Tokens/s if every step moved its bytes at the measured bandwidth."""
        return self.bandwidth / self.bytes_per_step * self.tokens / self.steps

    @property
    def step_seconds(self) -> float:
        """Measured time of one decode step."""
        return self.seconds / self.steps

    @property
    def read_seconds(self) -> float:
        """Time one step's bytes take to read at the measured bandwidth: the step's floor."""
        return self.bytes_per_step / self.bandwidth

    def breakdown(self) -> str:
        """Split a step's time into the bytes' floor and the rest: the fixed cost of a step
        (launching kernels or replaying a graph, the CPU's bookkeeping), which the roofline
        leaves out and which sets the speed when the weights are small."""
        fixed = max(self.step_seconds - self.read_seconds, 0.0)
        return (f"{self.label}: a step took {self.step_seconds * 1e3:.3f} ms; reading its "
                f"{self.bytes_per_step / 1e6:.1f} MB at {self.bandwidth / 1e9:.0f} GB/s takes "
                f"{self.read_seconds * 1e3:.3f} ms; the other {fixed * 1e3:.3f} ms "
                f"({fixed / self.step_seconds:.0%}) are the step's fixed cost")

    def line(self) -> str:
        where = f" on {self.device}" if self.device else ""
        return (f"{self.label}: {self.tok_s:.1f} tok/s ({self.tokens} tokens, {self.steps} decode "
                f"steps, {self.seconds:.2f} s); {self.bytes_per_step / 1e6:.1f} MB read per step "
                f"(weights {self.weight_bytes / 1e6:.1f} + KV cache "
                f"{self.kv_bytes / self.steps / 1e6:.2f}); achieved {self.achieved / 1e9:.2f} GB/s "
                f"= {self.fraction:.1%} of the {self.bandwidth / 1e9:.1f} GB/s measured{where} "
                f"(roofline {self.roofline_tok_s:.0f} tok/s)")

    def as_dict(self) -> dict:
        return {"label": self.label, "tok_s": self.tok_s, "bytes_per_step": self.bytes_per_step,
                "achieved_GBs": self.achieved / 1e9, "fraction_of_roofline": self.fraction,
                "roofline_tok_s": self.roofline_tok_s}


def engine_decode_run(engine, prompts, params, bandwidth: float, label: str = "engine",
                      device: str = "", warmup: bool = True) -> tuple[DecodeRun, list]:
    """Generate ``prompts`` with ``engine`` step by step, timing its decode steps only; returns
    the ``DecodeRun`` and the outputs. ``warmup``: one short run of the same batch first (on a GPU
    it captures that batch size's CUDA graph, which must not be timed)."""
    from inferlab.engine import SamplingParams
    from inferlab.engine.kv_cache import kv_bytes_per_token

    prompts = list(prompts)
    if warmup:
        engine.generate(prompts, SamplingParams(max_tokens=2, ignore_eos=True))
    where = engine.weights.device
    ids = [engine.add_request(p, params) for p in prompts]
    preempted = engine.stats.preemptions
    seconds, steps = 0.0, 0
    while engine.has_unfinished():
        synchronize(where)
        start = time.perf_counter()
        result = engine.step()
        synchronize(where)
        if not result.is_prefill and result.num_seqs:
            seconds += time.perf_counter() - start
            steps += 1
    outputs = {o.request_id: o for o in engine.pop_finished()}
    outputs = [outputs[i] for i in ids]
    if engine.stats.preemptions != preempted:
        raise RuntimeError("sequences were preempted (recomputed): the bytes per step would be "
                           "wrong; give the engine more KV-cache blocks")
    mc, w = engine.model_config, engine.weights
    per_token = kv_bytes_per_token(mc.num_layers, mc.num_kv_heads, mc.head_dim,
                                   w.embed.element_size())
    kv = sum(per_token * sum(decode_contexts(len(o.prompt_token_ids), len(o.token_ids)))
             for o in outputs)
    tokens = sum(len(o.token_ids) - 1 for o in outputs)
    run = DecodeRun(label, tokens, max(steps, 1), max(seconds, 1e-9), w.bytes_read_per_token, kv,
                    bandwidth, device)
    return run, outputs
