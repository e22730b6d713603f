"""The course engine on small random Llama models: caches, blocks, scheduling, sampling, errors.

Fast (no model download, tiny shapes). The embedded-model checks against transformers are in
test_engine_model.py.
"""
import dataclasses

import pytest
import torch

from inferlab.engine import (
    BlockManager,
    EngineConfig,
    LlamaWeights,
    LLMEngine,
    ModelConfig,
    ModelRunner,
    PagedKVCache,
    SamplingParams,
    Scheduler,
    Sequence,
    StaticKVCache,
    cpu_kernels,
    kv_bytes_per_token,
    kv_cache_bytes,
    sampling_probs,
)
from inferlab.engine.attention import grouped_attention
from inferlab.engine.spec_decode import SpeculativeDecoder, accept_reject

torch.set_num_threads(1)
CONFIG = ModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16,
                     intermediate_size=128, vocab_size=97, max_position=256, eos_token_ids=(1,))


@pytest.fixture(scope="module")
def weights():
    # std 0.3 makes the random model's logits peaked enough that greedy has no near-ties
    return LlamaWeights.random(CONFIG, dtype=torch.float32, seed=0, std=0.3)


def tiny_hf(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=97,
                         max_position_embeddings=256, rope_theta=500.0, eos_token_id=1,
                         initializer_range=0.3)
    return LlamaForCausalLM(config).eval()


def prompts(n, seed=0, low=3, high=20):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(low, high, (n,), generator=g).tolist()
    return [torch.randint(2, 97, (n_,), generator=g).tolist() for n_ in lens]


GREEDY = SamplingParams(max_tokens=10, ignore_eos=True)


# ---------------------------------------------------------------------------- KV cache
def test_kv_cache_size_formula():
    assert kv_bytes_per_token(30, 3, 64, 4) == 30 * 2 * 3 * 64 * 4
    assert kv_cache_bytes(32, 32, 128, 4096, 2) == 2 * 1024 ** 3  # Llama-2-7B: 2 GiB at 4k tokens
    cache = PagedKVCache(2, 10, 4, 2, 16)
    assert cache.nbytes == 2 * 2 * 11 * 4 * 2 * 16 * 4    # + the scratch block
    assert cache.capacity_tokens == 40


def test_paged_and_static_cache_give_identical_logits(weights):
    """Same sequences through both layouts: prefill with mixed lengths, then decode steps."""
    seqs_by_kind = {}
    logits_by_kind = {}
    for kind in ("static", "paged"):
        if kind == "static":
            cache, manager = StaticKVCache(2, 3, 64, 2, 16), BlockManager(3, 64, False)
        else:
            cache, manager = PagedKVCache(2, 40, 4, 2, 16), BlockManager(40, 4, False)
            manager.free_block_ids.rotate(7)         # non-contiguous, out-of-order blocks
        runner = ModelRunner(weights, cache, 64)
        seqs = [Sequence(p) for p in prompts(3, seed=1)]
        for s in seqs:
            manager.allocate(s)
        steps = [runner.run(seqs, True)]
        for _ in range(5):
            for s, t in zip(seqs, steps[-1].argmax(-1).tolist()):
                s.append_token(t)
                manager.append_slot(s)
            steps.append(runner.run(seqs, False))
        logits_by_kind[kind] = torch.stack(steps)
        seqs_by_kind[kind] = seqs
    torch.testing.assert_close(logits_by_kind["static"], logits_by_kind["paged"], rtol=0, atol=1e-6)


def test_single_sequence_static_cache_reads_its_row_in_place(weights):
    prompt = prompts(1, seed=5)[0]
    static = LLMEngine(weights, kv_cache="static", max_num_seqs=1, max_model_len=64)
    paged = LLMEngine(weights, max_model_len=64, num_blocks=32, block_size=4)
    want = paged.generate([prompt], GREEDY)[0].token_ids
    assert static.generate([prompt], GREEDY)[0].token_ids == want
    k, _ = static.cache.gather(0, torch.tensor([[0]]), 10)
    assert k.data_ptr() == static.cache.k[0].data_ptr()      # a view, not a copy


def test_grouped_attention_matches_sdpa():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 5, 4, 8), torch.randn(2, 7, 2, 8), torch.randn(2, 7, 2, 8)
    mask = torch.ones(2, 1, 5, 7, dtype=torch.bool).tril(2)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(grouped_attention(q, k, v, mask, 8 ** -0.5), ref.transpose(1, 2))


# ---------------------------------------------------------------- engine vs transformers
@pytest.mark.parametrize("kind", ["paged", "static"])
def test_greedy_matches_transformers_with_staggered_arrivals(kind):
    model = tiny_hf()
    batch = prompts(4, seed=2)
    engine = LLMEngine(model, kv_cache=kind, block_size=4, max_model_len=64, max_num_seqs=4)
    arrive = {0: [0, 1], 2: [2], 5: [3]}                       # step -> prompts arriving
    ids, step = {}, 0
    while step == 0 or engine.has_unfinished() or step <= max(arrive):
        for i in arrive.get(step, []):
            ids[i] = engine.add_request(batch[i], GREEDY)
        engine.step()
        step += 1
    outs = {o.request_id: o for o in engine.pop_finished()}
    for i, prompt in enumerate(batch):
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=10, min_new_tokens=10,
                             do_sample=False, pad_token_id=0)[0, len(prompt):].tolist()
        assert outs[ids[i]].token_ids == ref, f"prompt {i}"
    assert max(engine.stats.batch_sizes) >= 3          # they really were batched together


def test_weights_from_hf_untied_and_truncated():
    model = tiny_hf()
    w = LlamaWeights.from_hf(model)
    assert w.lm_head.data_ptr() != w.embed.data_ptr()
    assert len(w.truncated(1).layers) == 1
    with pytest.raises(ValueError):
        w.truncated(3)
    assert w.bytes_read_per_token < w.nbytes


# ---------------------------------------------------------------------------- bad input
def test_bad_input_gives_clear_errors(weights):
    engine = LLMEngine(weights, max_model_len=32, num_blocks=16, block_size=4)
    with pytest.raises(ValueError, match="max_model_len"):
        engine.generate([list(range(2, 40))])
    with pytest.raises(ValueError, match="at least one prompt"):
        engine.generate([])
    with pytest.raises(ValueError, match="empty prompt"):
        engine.generate([[]])
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-0.5)
    for top_p in (0.0, 1.5, -1):
        with pytest.raises(ValueError, match="top_p"):
            SamplingParams(top_p=top_p)
    with pytest.raises(ValueError, match="max_tokens"):
        SamplingParams(max_tokens=0)
    with pytest.raises(ValueError, match="token ids"):
        engine.generate([[5, 1000]])
    with pytest.raises(ValueError, match="no tokenizer"):
        engine.generate(["text needs a tokenizer"])
    with pytest.raises(ValueError, match="fewer than one sequence"):
        LLMEngine(weights, max_model_len=64, num_blocks=3, block_size=4)
    with pytest.raises(ValueError, match="kv_cache"):
        LLMEngine(weights, kv_cache="contiguous")
    assert not engine.has_unfinished()            # nothing half-queued by the failed calls


def test_generation_stops_at_max_model_len(weights):
    engine = LLMEngine(weights, max_model_len=16, num_blocks=8, block_size=4)
    out = engine.generate([list(range(2, 12))], SamplingParams(max_tokens=50, ignore_eos=True))[0]
    assert len(out.token_ids) == 6 and out.finish_reason == "length"


# ------------------------------------------------------------------------ EngineConfig
@pytest.mark.parametrize("field,value,match", [
    ("kv_cache", "contiguous", "kv_cache must be one of"),
    ("block_size", 0, "block_size must be an int >= 1"),
    ("block_size", 4.0, "block_size must be an int"),
    ("num_blocks", -3, "num_blocks must be None"),
    ("kv_cache_memory", 0, "kv_cache_memory"),
    ("max_model_len", 1, "max_model_len must be None .* >= 2"),
    ("max_num_seqs", 0, "max_num_seqs"),
    ("max_num_batched_tokens", 0, "max_num_batched_tokens"),
    ("policy", "fifo", "policy must be one of"),
    ("batch_window", -1.0, "batch_window"),
    ("dtype", "int8", "floating-point torch dtype"),
    ("dtype", "float17", "floating-point torch dtype"),
    ("device", "gpu", "torch device"),
    ("attention_backend", "flash", "attention_backend must be one of"),
    ("cuda_graphs", "yes", "cuda_graphs"),
    ("compile", 1, "compile must be True or False"),
    ("seed", 1.5, "seed must be an int"),
    ("sampler", "greedy", "sampler must be None .* or callable"),
    ("block_manager", 3, "block_manager must be None"),
])
def test_engine_config_rejects_each_bad_value_clearly(field, value, match):
    with pytest.raises(ValueError, match=match) as error:
        EngineConfig(**{field: value})
    assert repr(value) in str(error.value)                   # says what it got ...


def test_engine_config_rejects_contradictions(weights):
    with pytest.raises(ValueError, match="static cache .* num_blocks"):
        EngineConfig(kv_cache="static", num_blocks=8)
    with pytest.raises(ValueError, match="prefix caching .* static"):
        EngineConfig(kv_cache="static", enable_prefix_caching=True)
    with pytest.raises(ValueError, match="needs the built-in BlockManager"):
        EngineConfig(block_manager=BlockManager, enable_prefix_caching=True)
    with pytest.raises(ValueError, match="policy='continuous'"):
        EngineConfig(schedule_step=lambda sched: ([], False), policy="static")
    with pytest.raises(ValueError, match="cuda_graphs"):
        EngineConfig(compile=True, cuda_graphs=False)
    # ... and against the model and device
    with pytest.raises(ValueError, match="exceeds the model's context"):
        LLMEngine(weights, max_model_len=1000)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        LLMEngine(weights, cuda_graphs=True, max_model_len=64)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="triton.*needs Triton and a CUDA device"):
            LLMEngine(weights, attention_backend="triton", max_model_len=64)
    with pytest.raises(TypeError, match="unknown engine setting.*max_len.*max_model_len"):
        LLMEngine(weights, max_len=64)
    with pytest.raises(TypeError, match="config must be an EngineConfig"):
        LLMEngine(weights, config={"max_model_len": 64})
    with pytest.raises(TypeError, match="as config="):
        LLMEngine(weights, EngineConfig())                   # the second argument is the tokenizer


def test_engine_config_shorthand_and_resolved_values(weights):
    a = LLMEngine(weights, max_model_len=64, block_size=4, num_blocks=40)
    b = LLMEngine(weights, config=EngineConfig(max_model_len=64, block_size=4, num_blocks=40))
    assert a.config == b.config and a.config.enable_prefix_caching is True
    assert a.config.attention_backend == "sdpa" and a.config.cuda_graphs is False
    c = LLMEngine(weights, config=EngineConfig(max_model_len=64, max_num_seqs=2),
                  block_size=8)                                  # both: the keywords win
    assert c.config.block_size == 8 and c.config.num_blocks == 16          # 2 x 64 / 8
    static = LLMEngine(weights, kv_cache="static", max_num_seqs=3, max_model_len=64)
    assert static.config.enable_prefix_caching is False and static.cache.num_blocks == 3
    assert static.config.block_size == 64
    assert EngineConfig(dtype="bfloat16").dtype is torch.bfloat16
    cfg = EngineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.block_size = 3                                   # frozen: share it safely
    with pytest.raises(ValueError, match="block_size"):
        cfg.replace(block_size=0)                            # changes are checked too


# ------------------------------------------------------------------------ plug-in points
class ListBlockManager:
    """A minimal block manager of the shape lesson 07 asks for (no prefix caching)."""

    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.free_blocks, self.refs = list(range(num_blocks)), [0] * num_blocks
        self.calls = 0

    num_free_blocks = property(lambda self: len(self.free_blocks))
    num_used_blocks = property(lambda self: len(self.refs) - len(self.free_blocks))

    def _take(self):
        block = self.free_blocks.pop(0)
        self.refs[block] = 1
        return block

    def can_allocate(self, seq):
        return len(self.free_blocks) >= seq.num_blocks(self.block_size)

    def allocate(self, seq):
        self.calls += 1
        seq.block_table = [self._take() for _ in range(seq.num_blocks(self.block_size))]

    def can_append(self, seq):
        return (len(seq) - 1) // self.block_size < len(seq.block_table) or bool(self.free_blocks)

    def append_slot(self, seq):
        if (len(seq) - 1) // self.block_size >= len(seq.block_table):
            seq.block_table.append(self._take())
        return []

    def free(self, seq):
        for block in seq.block_table:
            self.refs[block] -= 1
            if self.refs[block] == 0:
                self.free_blocks.append(block)
        seq.block_table = []


def test_plugged_block_manager_runs_the_engine_and_preempts(weights):
    batch = prompts(6, seed=3, low=8, high=14)
    params = SamplingParams(max_tokens=24, ignore_eos=True)
    ample = LLMEngine(weights, block_size=4, num_blocks=200, max_model_len=64)
    want = [o.token_ids for o in ample.generate(batch, params)]
    engine = LLMEngine(weights, config=EngineConfig(block_size=4, num_blocks=16, max_model_len=64,
                                                    block_manager=ListBlockManager))
    assert isinstance(engine.block_manager, ListBlockManager)
    assert engine.scheduler.block_manager is engine.block_manager
    assert engine.config.enable_prefix_caching is False
    assert [o.token_ids for o in engine.generate(batch, params)] == want
    assert engine.stats.preemptions > 0 and engine.block_manager.calls > 6
    assert engine.block_manager.num_free_blocks == 16

    class Incomplete:
        def __init__(self, num_blocks, block_size):
            pass

        def allocate(self, seq):
            pass
    with pytest.raises(TypeError, match="lacks can_allocate, can_append, append_slot, free"):
        LLMEngine(weights, max_model_len=64, block_manager=Incomplete)


def test_plugged_schedule_step_and_clear_errors_when_it_misbehaves(weights):
    from inferlab.engine import continuous_step
    calls = []

    def counting_step(sched):
        calls.append(len(sched.waiting))
        return continuous_step(sched)
    batch = prompts(4, seed=6)
    plain = LLMEngine(weights, max_model_len=64, block_size=4)
    want = [o.token_ids for o in plain.generate(batch, GREEDY)]
    engine = LLMEngine(weights, max_model_len=64, block_size=4, schedule_step=counting_step)
    assert [o.token_ids for o in engine.generate(batch, GREEDY)] == want and calls[0] == 4

    def no_blocks(sched):          # runs sequences without giving them blocks
        seqs = list(sched.waiting)
        sched.waiting.clear()
        sched.running.extend(seqs)
        return seqs, True
    with pytest.raises(RuntimeError, match="must be running and hold blocks"):
        engine = LLMEngine(weights, max_model_len=64, block_size=4, schedule_step=no_blocks)
        engine.generate(batch, GREEDY)
    with pytest.raises(RuntimeError, match="ran nothing in two steps"):
        engine = LLMEngine(weights, max_model_len=64, block_size=4,
                           schedule_step=lambda s: ([], False))
        engine.generate(batch, GREEDY)


def test_scheduler_append_slot_keeps_copy_on_write_for_the_step():
    bm = BlockManager(8, 4, enable_prefix_caching=False)
    sched = Scheduler(bm, 4)
    parent = Sequence(list(range(6)))
    bm.allocate(parent)
    child = Sequence(list(range(6)))
    bm.fork(parent, child)
    child.append_token(3)
    sched.append_slot(child)
    assert sched.block_copies == [(parent.block_table[1], child.block_table[1])]


def test_plugged_sampler(weights):
    def argmax_sampler(logits, params_list, seq_ids):
        assert logits.shape[0] == len(params_list) == len(seq_ids)
        return logits.argmax(-1).tolist()
    batch = prompts(3, seed=7)
    plain = LLMEngine(weights, max_model_len=64, block_size=4)
    want = [o.token_ids for o in plain.generate(batch, GREEDY)]
    plugged = LLMEngine(weights, max_model_len=64, block_size=4, sampler=argmax_sampler)
    assert [o.token_ids for o in plugged.generate(batch, GREEDY)] == want
    constant = LLMEngine(weights, max_model_len=64, block_size=4,
                         sampler=lambda logits, p, ids: [7] * len(p))
    assert constant.generate(batch[:1], GREEDY)[0].token_ids == [7] * 10


@pytest.mark.parametrize("backend", ["math", "fused", "cpu"])
def test_attention_backends_agree_with_sdpa(weights, backend):
    if backend == "cpu" and not cpu_kernels.available():
        pytest.skip(f"no C++ kernels: {cpu_kernels.unavailable_reason()}")
    batch = prompts(4, seed=8)
    runs = {}
    for name in ("sdpa", backend):
        engine = LLMEngine(weights, max_model_len=64, block_size=4, attention_backend=name)
        assert engine.runner.attention.name == name
        runs[name] = [o.token_ids for o in engine.generate(batch, GREEDY)]
    assert runs["sdpa"] == runs[backend]


@pytest.mark.skipif(not cpu_kernels.available(), reason="no C++ kernels on this machine")
def test_attention_backend_auto_picks_the_cpu_kernels_for_low_precision_on_cpu(monkeypatch):
    w = LlamaWeights.random(CONFIG, dtype=torch.bfloat16, seed=0, std=0.3)
    assert LLMEngine(w, max_model_len=64).runner.attention.name == "cpu"
    fp32 = LlamaWeights.random(CONFIG, dtype=torch.float32, seed=0)
    assert LLMEngine(fp32, max_model_len=64).runner.attention.name == "sdpa"
    # where the C++ kernels cannot be built, "auto" keeps the tensor code and "cpu" says why
    monkeypatch.setattr(cpu_kernels, "_load", lambda: "CalledProcessError: no compiler here")
    assert LLMEngine(w, max_model_len=64).runner.attention.name == "math"
    with pytest.raises(ValueError, match="no compiler here"):
        LLMEngine(w, max_model_len=64, attention_backend="cpu")


# ------------------------------------------------------------------------- step results
def test_step_returns_its_tokens_and_finished_outputs(weights):
    engine = LLMEngine(weights, max_model_len=64, block_size=4)
    assert engine.step().num_seqs == 0                          # nothing queued: an empty step
    a = engine.add_request([5, 6, 7], SamplingParams(max_tokens=3, ignore_eos=True))
    b = engine.add_request([8, 9], SamplingParams(max_tokens=2, ignore_eos=True))
    results = []
    while engine.has_unfinished():
        results.append(engine.step())
    assert [r.is_prefill for r in results] == [True, False, False]
    assert results[0].request_ids == [a, b]
    tokens = {a: [], b: []}
    for r in results:
        for rid, token in zip(r.request_ids, r.token_ids):
            tokens[rid].append(token)
    assert [o.request_id for o in results[1].finished] == [b]
    assert [o.request_id for o in results[2].finished] == [a]
    outs = {o.request_id: o.token_ids for o in engine.pop_finished()}
    assert outs == tokens and results[2].finished[0].token_ids == tokens[a]


def test_slot_helper_for_lists_and_tensors():
    from inferlab.engine.kv_cache import slot
    table = [7, 2, 5]
    assert [slot(table, p, 4) for p in (0, 3, 4, 9)] == [28, 31, 8, 21]
    tables = torch.tensor([table, [1, 0, 3]])
    rows = [[slot(t, p, 4) for p in range(12)] for t in tables.tolist()]
    assert slot(tables, torch.arange(12), 4).tolist() == rows
    assert PagedKVCache(1, 8, 4, 1, 2).slot(table, 9) == 21


# ------------------------------------------------------------------ preemption, resume
def test_running_out_of_blocks_preempts_and_resumes(weights):
    batch = prompts(6, seed=3, low=8, high=14)
    params = SamplingParams(max_tokens=24, ignore_eos=True)
    ample = LLMEngine(weights, block_size=4, num_blocks=200, max_model_len=64)
    tight = LLMEngine(weights, block_size=4, num_blocks=16, max_model_len=64)   # 64 tokens only
    want = ample.generate(batch, params)
    got = tight.generate(batch, params)
    assert tight.stats.preemptions > 0 and ample.stats.preemptions == 0
    assert sum(o.num_preemptions for o in got) == tight.stats.preemptions
    for a, b in zip(want, got):
        assert len(b.token_ids) == 24 and b.finish_reason == "length"   # nothing truncated
        assert a.token_ids == b.token_ids
    assert tight.block_manager.num_free_blocks == 16                     # all blocks returned


# ---------------------------------------------------------------------- block manager
def test_block_manager_allocate_append_free():
    bm = BlockManager(8, 4, enable_prefix_caching=False)
    seq = Sequence(list(range(10)))            # 10 tokens -> 3 blocks
    bm.allocate(seq)
    assert len(seq.block_table) == 3 and bm.num_free_blocks == 5
    seq.append_token(1)                        # 11th token fits block 3
    assert bm.append_slot(seq) == [] and len(seq.block_table) == 3
    seq.append_token(1)
    bm.append_slot(seq)
    seq.append_token(1)                        # 13th token needs a 4th block
    bm.append_slot(seq)
    assert len(seq.block_table) == 4
    bm.free(seq)
    assert bm.num_free_blocks == 8 and seq.block_table == []


def test_prefix_caching_shares_full_blocks():
    bm = BlockManager(16, 4)
    system = list(range(20, 32))                               # 12 tokens = 3 full blocks
    a, b = Sequence(system + [1, 2, 3]), Sequence(system + [4, 5])
    bm.allocate(a)
    bm.allocate(b)
    assert b.block_table[:3] == a.block_table[:3] and b.num_cached_tokens == 12
    assert bm.num_used_blocks == 4 + 1                         # 3 shared + 1 each
    c = Sequence(list(range(20, 28)))                          # exactly 2 full blocks
    bm.allocate(c)
    assert c.num_cached_tokens == 4     # the block with the last token is always computed
    bm.free(a)
    bm.free(b)
    d = Sequence(system + [9])
    bm.allocate(d)                                             # revived after free
    assert d.num_cached_tokens == 12


def test_engine_prefix_caching_reuses_blocks_and_keeps_outputs(weights):
    system = list(range(20, 32))
    batch = [system + [40, 41], system + [50], system + [60, 61, 62]]
    plain = LLMEngine(weights, block_size=4, num_blocks=64, max_model_len=64,
                      enable_prefix_caching=False)
    cached = LLMEngine(weights, block_size=4, num_blocks=64, max_model_len=64)
    want = [o.token_ids for o in plain.generate(batch, GREEDY)]
    got = cached.generate(batch, GREEDY)
    assert [o.token_ids for o in got] == want
    assert [o.num_cached_prompt_tokens for o in got] == [0, 12, 12]
    assert cached.stats.prefix_hit_tokens == 24 == sum(o.num_cached_prompt_tokens for o in got)
    assert cached.stats.prefill_tokens == sum(map(len, batch)) - 24
    assert cached.stats.peak_blocks_used < plain.stats.peak_blocks_used


def test_fork_and_copy_on_write():
    bm = BlockManager(8, 4, enable_prefix_caching=False)
    parent = Sequence(list(range(6)))
    bm.allocate(parent)
    child = Sequence(list(range(6)))
    bm.fork(parent, child)
    assert child.block_table == parent.block_table and bm.num_used_blocks == 2
    child.append_token(7)
    copies = bm.append_slot(child)             # writes into the shared half-full block
    assert copies == [(parent.block_table[1], child.block_table[1])]
    assert child.block_table[0] == parent.block_table[0]
    assert child.block_table[1] != parent.block_table[1]
    bm.free(parent)
    assert bm.num_used_blocks == 2             # the child still holds block 0 and its copy


def test_copy_blocks_copies_every_layer():
    cache = PagedKVCache(2, 4, 2, 1, 3)
    for t in cache.k + cache.v:
        cache.blocks(t)[1] = 7.0
    cache.copy_blocks([(1, 3)])
    assert all(bool((cache.blocks(t)[3] == 7.0).all()) for t in cache.k + cache.v)


# -------------------------------------------------------------------------- scheduler
def _scheduler(policy, **kw):
    return Scheduler(BlockManager(64, 4), max_num_seqs=2, policy=policy, **kw)


def test_continuous_batching_admits_as_soon_as_room():
    s = _scheduler("continuous")
    for _ in range(3):
        s.add(Sequence([5] * 3, SamplingParams(max_tokens=10), arrival=0.0))
    seqs, prefill = s.schedule()
    assert prefill and len(seqs) == 2                          # max_num_seqs
    seqs, prefill = s.schedule()
    assert not prefill and len(seqs) == 2                      # decode the running ones
    finished = s.postprocess(seqs, [1, 1], eos_token_ids=(1,))
    assert len(finished) == 2
    seqs, prefill = s.schedule()
    assert prefill and len(seqs) == 1                          # the third joins at once


def test_static_and_dynamic_batching_wait():
    s = _scheduler("static")
    s.add(Sequence([5] * 3, GREEDY))
    assert s.schedule(flush=False) == ([], False)               # waits for a full batch
    assert s.schedule(flush=True)[1]                            # unless flushed
    d = _scheduler("dynamic", batch_window=1.0)
    d.add(Sequence([5] * 3, GREEDY, arrival=0.0))
    assert d.schedule(now=0.5, flush=False) == ([], False)
    assert d.schedule(now=1.0, flush=False)[1]                  # the window has passed
    d.add(Sequence([5] * 3, GREEDY, arrival=1.0))
    seqs, prefill = d.schedule(now=5.0, flush=False)
    assert not prefill                                          # no joining a running batch


def test_bad_scheduler_settings():
    with pytest.raises(ValueError, match="policy"):
        _scheduler("fifo")


def test_run_trace_with_simulated_cost(weights):
    engine = LLMEngine(weights, block_size=4, num_blocks=64, max_model_len=64, max_num_seqs=4)
    trace = [(0.0, p, SamplingParams(max_tokens=5, ignore_eos=True)) for p in prompts(3)]
    trace.append((100.0, [3, 4, 5], SamplingParams(max_tokens=5, ignore_eos=True)))
    outs = engine.run_trace(trace, step_cost=lambda seqs, prefill: 1.0)
    assert [o.latency for o in outs] == [5.0, 5.0, 5.0, 5.0]     # 1 prefill + 4 decode steps
    assert outs[-1].arrival == 100.0 and outs[-1].time_to_first_token == 1.0


# ---------------------------------------------------------------------------- sampling
def test_sampling_probs_filters():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]])
    assert (sampling_probs(logits, 1.0, top_k=2) > 0).sum() == 2
    greedy = sampling_probs(logits, 0.0)
    assert greedy[0, 0] == 1.0 and greedy.sum() == 1.0
    p = torch.softmax(logits, -1)[0]
    nucleus = sampling_probs(logits, 1.0, top_p=float(p[0] + 0.01))
    assert (nucleus > 0).sum() == 2                       # smallest set with mass >= top_p
    assert torch.allclose(sampling_probs(logits, 1.0), torch.softmax(logits, -1))
    hot = sampling_probs(logits, 10.0)
    assert hot.max() < torch.softmax(logits, -1).max()    # temperature flattens


def test_seeded_sampling_is_reproducible(weights):
    params = SamplingParams(temperature=1.0, top_p=0.9, top_k=20, max_tokens=8, seed=123,
                            ignore_eos=True)
    e1 = LLMEngine(weights, max_model_len=64, num_blocks=64, block_size=4)
    e2 = LLMEngine(weights, max_model_len=64, num_blocks=64, block_size=4, seed=99)
    a = e1.generate([[5, 6, 7]], params)[0].token_ids
    other = SamplingParams(temperature=1.0, max_tokens=8)
    b = e2.generate([[5, 6, 7], [8, 9]], [params, other])[0].token_ids
    assert a == b


# ---------------------------------------------------------------- speculative decoding
def test_accept_reject_matches_target_distribution():
    torch.manual_seed(0)
    vocab, k, n = 5, 2, 20000
    p = torch.softmax(torch.randn(k + 1, vocab) * 1.5, -1)
    q = torch.softmax(torch.randn(k, vocab) * 1.5, -1)
    g = torch.Generator().manual_seed(1)
    first = torch.zeros(vocab)
    for _ in range(n):
        drafts = [int(torch.multinomial(q[i], 1, generator=g)) for i in range(k)]
        first[accept_reject(drafts, q, p, g)[0]] += 1
    chi2 = (((first - n * p[0]) ** 2) / (n * p[0])).sum().item()
    assert chi2 < 18.5                                   # chi-square, 4 d.o.f., p = 0.001


def test_greedy_speculation_equals_target_greedy(weights):
    draft = weights.truncated(1)
    prompt = [5, 9, 13, 2, 40]
    params = SamplingParams(max_tokens=12, ignore_eos=True)
    base, _ = SpeculativeDecoder(weights, None, k=0, max_len=64).generate(prompt, params)
    spec, stats = SpeculativeDecoder(weights, draft, k=3, max_len=64).generate(prompt, params)
    engine = LLMEngine(weights, max_model_len=64, num_blocks=32, block_size=4)
    assert spec == base == engine.generate([prompt], params)[0].token_ids
    assert stats.rounds < 12 + 1 or stats.acceptance_rate == 0
    same, _ = SpeculativeDecoder(weights, weights, k=3, max_len=64).generate(prompt, params)
    assert same == base


def test_self_speculation_accepts_everything(weights):
    _, stats = SpeculativeDecoder(weights, weights, k=4, max_len=64).generate(
        [5, 6, 7], SamplingParams(temperature=1.0, max_tokens=10, ignore_eos=True))
    assert stats.acceptance_rate == 1.0 and stats.tokens_per_round > 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["paged", "static"])
def test_cuda_graph_decode_matches_eager(kind):
    """Graph replay with the Triton decode kernels gives the tokens of eager PyTorch attention."""
    w = LlamaWeights.random(CONFIG, dtype=torch.float32, device="cuda", std=0.3)
    batch = prompts(3, seed=4)
    blocks = {"num_blocks": 64, "block_size": 4} if kind == "paged" else {}
    kw = dict(kv_cache=kind, max_model_len=64, **blocks)
    eager = LLMEngine(w, config=EngineConfig(cuda_graphs=False, attention_backend="sdpa", **kw))
    graph = LLMEngine(w, config=EngineConfig(cuda_graphs=True, **kw))
    assert graph.runner.attention.name == "triton" and graph.config.attention_backend == "triton"
    want = [o.token_ids for o in eager.generate(batch, GREEDY)]
    assert [o.token_ids for o in graph.generate(batch, GREEDY)] == want


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_decode_kernels_match_pytorch_on_the_gpu():
    from inferlab.engine import gpu_kernels
    from inferlab.engine.attention import paged_decode_attention
    from inferlab.engine.weights import rotate_half
    g = torch.Generator(device="cuda").manual_seed(0)
    heads, kv_heads, d, bs, blocks = 32, 8, 128, 16, 600
    k, v = (torch.randn(blocks * bs, kv_heads, d, device="cuda", dtype=torch.float16, generator=g)
            for _ in range(2))
    q = torch.randn(4, heads, d, device="cuda", dtype=torch.float16, generator=g)
    context = torch.tensor([1, 200, 2049, 4000], device="cuda")
    tables = torch.stack([torch.randperm(blocks, device="cuda", generator=g)[:256]
                          for _ in range(4)])
    want = paged_decode_attention(q, k.view(-1, bs, kv_heads, d), v.view(-1, bs, kv_heads, d),
                                  tables, context, 4096, bs, d ** -0.5)
    got = gpu_kernels.decode_attention(q, k, v, tables, context, 4096, bs, d ** -0.5)
    torch.testing.assert_close(got, want, rtol=2e-3, atol=2e-3)
    qkv = torch.randn(3, (heads + 2 * kv_heads) * d, device="cuda", dtype=torch.float16,
                      generator=g)
    angles = torch.rand(64, d // 2, device="cuda", generator=g) * 6
    cos, sin = (torch.cat([f(angles)] * 2, -1).half() for f in (torch.cos, torch.sin))
    pos, slots = torch.tensor([0, 9, 63], device="cuda"), torch.tensor([5, 77, 1000], device="cuda")
    qr = gpu_kernels.rope_and_store(qkv, cos, sin, pos, slots, k, v, heads, kv_heads)
    q_ref, k_ref, v_ref = qkv.float().split([heads * d, kv_heads * d, kv_heads * d], -1)
    c, s = cos[pos].float()[:, None], sin[pos].float()[:, None]
    q_ref, k_ref = q_ref.view(3, heads, d), k_ref.view(3, kv_heads, d)
    torch.testing.assert_close(qr.float(), q_ref * c + rotate_half(q_ref) * s, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(k[slots].float(), k_ref * c + rotate_half(k_ref) * s, rtol=2e-3,
                               atol=2e-3)
    assert torch.equal(v[slots], qkv[:, (heads + kv_heads) * d:].view(3, kv_heads, d))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_rope_store_attention_is_the_two_kernels_on_the_gpu():
    from inferlab.engine import gpu_kernels
    g = torch.Generator(device="cuda").manual_seed(0)
    heads, kv_heads, d, bs, blocks = 32, 8, 128, 16, 600
    k, v = (torch.randn(blocks * bs, kv_heads, d, device="cuda", dtype=torch.float16, generator=g)
            for _ in range(2))
    context = torch.tensor([1, 200, 2049, 4000], device="cuda")
    tables = torch.stack([torch.randperm(blocks, device="cuda", generator=g)[:256]
                          for _ in range(4)])
    pos = context - 1
    slots = tables.gather(1, (pos // bs)[:, None])[:, 0] * bs + pos % bs
    qkv = torch.randn(4, (heads + 2 * kv_heads) * d, device="cuda", dtype=torch.float16,
                      generator=g)
    angles = torch.rand(4096, d // 2, device="cuda", generator=g) * 6
    cos, sin = (torch.cat([f(angles)] * 2, -1).half() for f in (torch.cos, torch.sin))
    k2, v2 = k.clone(), v.clone()
    q = gpu_kernels.rope_and_store(qkv, cos, sin, pos, slots, k, v, heads, kv_heads)
    want = gpu_kernels.decode_attention(q, k, v, tables, context, 4096, bs, d ** -0.5)
    got = gpu_kernels.rope_store_attention(qkv, cos, sin, pos, slots, k2, v2, tables, context,
                                           4096, bs, d ** -0.5, heads, kv_heads)
    torch.testing.assert_close(got, want, rtol=2e-3, atol=2e-3)
    assert torch.equal(k2, k) and torch.equal(v2, v)
