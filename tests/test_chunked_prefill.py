"""Chunked prefill (``EngineConfig(chunked_prefill=True)``): long prompts computed in chunks mixed
with the decode tokens of running sequences, giving the same greedy tokens as whole prefills.

Small random Llama models on the CPU, like test_engine.py.
"""
import pytest
import torch

from inferlab.engine import (
    EngineConfig,
    LLMEngine,
    SamplingParams,
    cpu_kernels,
)
from inferlab.engine.scheduler import Scheduler

torch.set_num_threads(1)
GREEDY = SamplingParams(max_tokens=10, ignore_eos=True)
CHUNKS = (1, 7, 64, 500)                      # 500: larger than any prompt


@pytest.fixture(scope="module")
def weights(tiny_engine_weights):
    return tiny_engine_weights()


def prompts(n, seed=0, low=3, high=60):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(low, high, (n,), generator=g).tolist()
    return [torch.randint(2, 97, (n_,), generator=g).tolist() for n_ in lens]


def engine(weights, chunk=None, **kw):
    kw = {"block_size": 4, "num_blocks": 200, "max_model_len": 128, **kw}
    if chunk is not None:
        kw.update(chunked_prefill=True, prefill_chunk_tokens=chunk)
    return LLMEngine(weights, **kw)


def record_steps(eng):
    """Wrap the runner: the (start, end) token range of every sequence in every step."""
    steps, run = [], eng.runner.run

    def recording(seqs, is_prefill, all_logits=False, spans=None):
        decodes = eng.scheduler.num_decodes if spans is not None else 0 if is_prefill else len(seqs)
        if spans is None:
            spans = [(s.num_cached_tokens, len(s)) if is_prefill else (len(s) - 1, len(s))
                     for s in seqs]
        steps.append((decodes, [end - start for start, end in spans]))
        return run(seqs, is_prefill, all_logits, spans)

    eng.runner.run = recording
    return steps


@pytest.mark.parametrize("kv_cache", ["paged", "static"])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_same_greedy_tokens_for_every_chunk_size(weights, kv_cache, chunk):
    batch = prompts(5, seed=2)
    kw = {"kv_cache": "static", "max_num_seqs": 8} if kv_cache == "static" else {}
    if kv_cache == "static":
        want = LLMEngine(weights, kv_cache="static", max_num_seqs=8, max_model_len=128)
        chunked = LLMEngine(weights, kv_cache="static", max_num_seqs=8, max_model_len=128,
                            chunked_prefill=True, prefill_chunk_tokens=chunk)
    else:
        want, chunked = engine(weights, **kw), engine(weights, chunk, **kw)
    reference = [o.token_ids for o in want.generate(batch, GREEDY)]
    steps = record_steps(chunked)
    got = chunked.generate(batch, GREEDY)
    assert [o.token_ids for o in got] == reference
    assert chunked.stats.prefill_tokens == sum(map(len, batch))
    assert chunked.stats.decode_tokens == want.stats.decode_tokens
    for decodes, tokens in steps:
        assert tokens[:decodes] == [1] * decodes
        assert sum(tokens[decodes:]) <= chunk                    # the chunk bounds a step's prompt
    assert sum(sum(tokens[decodes:]) for decodes, tokens in steps) == sum(map(len, batch))


def test_long_prompt_is_cut_into_chunks_while_others_decode(weights):
    """Two short requests decode; a long prompt arrives and is prefilled chunk by chunk, the short
    ones getting a token in every step; the long one is sampled only after its last chunk."""
    short, long_prompt = prompts(2, seed=5, low=4, high=8), prompts(1, seed=6, low=90, high=91)[0]
    params = SamplingParams(max_tokens=30, ignore_eos=True)
    outputs = {}
    for chunk in (None, 16):
        eng = engine(weights, chunk)
        ids = [eng.add_request(p, params) for p in short]
        results = [eng.step() for _ in range(3)]                 # both are decoding now
        long_id = eng.add_request(long_prompt, params)
        while eng.has_unfinished():
            results.append(eng.step())
        outputs[chunk] = [eng.output(i).token_ids for i in ids + [long_id]]
        if chunk:
            mixed = [r for r in results[3:] if r.prefilling]
            assert len(mixed) == 90 // 16                       # 5 chunks before the last
            for r in mixed:                                     # short ones keep decoding
                assert r.prefilling == [long_id] and sorted(r.request_ids) == sorted(ids)
            last = results[3 + len(mixed)]
            assert long_id in last.request_ids                  # sampled after its last chunk
    assert outputs[16] == outputs[None]


def test_partly_prefilled_sequence_holds_its_blocks_and_gets_no_token(weights):
    eng = engine(weights, 8)
    rid = eng.add_request(list(range(2, 42)), GREEDY)             # 40 tokens: 5 chunks
    first = eng.step()
    seq = eng._seqs[rid]
    assert first.prefilling == [rid] and first.request_ids == [] and first.num_seqs == 1
    assert len(seq.block_table) == 10 and seq.num_computed_tokens == 8
    assert seq.output_token_ids == [] and seq.first_token is None
    for _ in range(4):
        eng.step()
    assert seq.num_computed_tokens == 40 and len(seq.output_token_ids) == 1


@pytest.mark.parametrize("chunk", (1, 5, 64))
def test_preemption_with_a_tiny_cache(weights, chunk):
    batch = prompts(6, seed=3, low=8, high=30)
    params = SamplingParams(max_tokens=24, ignore_eos=True)
    want = [o.token_ids for o in engine(weights, max_model_len=64).generate(batch, params)]
    tight = engine(weights, chunk, num_blocks=16, max_model_len=64)      # 64 tokens only
    got = tight.generate(batch, params)
    assert tight.stats.preemptions > 0
    assert [o.token_ids for o in got] == want
    assert tight.block_manager.num_free_blocks == 16 and not tight.scheduler.prefilling


@pytest.mark.parametrize("chunk", (1, 6, 64))
def test_prefix_caching_with_chunks(weights, chunk):
    """Requests sharing a 24-token prefix arrive while the first is still being prefilled, and
    share its blocks once they are computed; with a tight cache, preempted sharers too (a block
    freed before its chunk was computed must never be found as a prefix hit)."""
    system = list(range(20, 44))
    batch = [system + [40 + i] * (3 + i) for i in range(4)]
    plain = engine(weights, enable_prefix_caching=False)
    want = [o.token_ids for o in plain.generate(batch, GREEDY)]
    eng = engine(weights, chunk)
    ids = []
    for p in batch:                     # a new request after every step
        ids.append(eng.add_request(p, GREEDY))
        eng.step()
    while eng.has_unfinished():
        eng.step()
    got = [eng.output(i) for i in ids]
    assert [o.token_ids for o in got] == want
    assert eng.stats.prefix_hit_tokens == sum(o.num_cached_prompt_tokens for o in got)
    if chunk == 64:                     # the first prompt was computed in one step
        assert [o.num_cached_prompt_tokens for o in got] == [0, 24, 24, 24]
    assert eng.stats.prefill_tokens == sum(map(len, batch)) - eng.stats.prefix_hit_tokens
    # and the same with all requests at once, and after a preemption of the sharer
    again = engine(weights, chunk, num_blocks=24, max_model_len=64)
    assert [o.token_ids for o in again.generate(batch, GREEDY)] == want


def test_default_is_unchanged_and_pure_decode_steps_stay_decode_steps(weights):
    assert EngineConfig().chunked_prefill is False
    eng = engine(weights)
    assert eng.scheduler.prefill_chunk_tokens is None
    eng.generate(prompts(3), GREEDY)
    assert eng.scheduler.spans is None
    chunked = engine(weights, 500)
    chunked.generate(prompts(3), GREEDY)
    assert chunked.stats.prefill_steps == 1 and chunked.stats.decode_steps == 9


@pytest.mark.parametrize("changes, match", [
    ({"chunked_prefill": 1}, "chunked_prefill must be True or False"),
    ({"chunked_prefill": True, "prefill_chunk_tokens": 0}, "prefill_chunk_tokens must be an int"),
    ({"chunked_prefill": True, "prefill_chunk_tokens": 2.5}, "prefill_chunk_tokens must be an int"),
    ({"prefill_chunk_tokens": True}, "prefill_chunk_tokens must be an int"),
    ({"chunked_prefill": True, "policy": "static"}, "policy='continuous'"),
    ({"chunked_prefill": True, "schedule_step": lambda s: ([], False)}, "no schedule_step"),
    ({"chunked_prefill": True, "block_manager": object}, "built-in BlockManager"),
])
def test_bad_settings_are_rejected_clearly(changes, match):
    with pytest.raises(ValueError, match=match):
        EngineConfig(**changes)
    with pytest.raises(ValueError, match="chunked prefill needs"):
        Scheduler(None, prefill_chunk_tokens=0)


@pytest.mark.parametrize("backend", ["math", "fused", "sdpa", "cpu"])
def test_mixed_steps_attend_per_part_with_every_backend(weights, backend):
    if backend == "cpu" and not cpu_kernels.available():
        pytest.skip(f"no C++ kernels: {cpu_kernels.unavailable_reason()}")
    """A mixed step attends its decode tokens and its prompt chunk separately (no padding of the
    decode queries to the chunk's width), with the backend's decode path for the decode part."""
    batch = prompts(4, seed=7, low=20, high=60)
    want = [o.token_ids for o in engine(weights, attention_backend=backend).generate(batch, GREEDY)]
    eng = engine(weights, 16, attention_backend=backend)
    parts = []
    prepare = eng.runner.prepare

    def recording(*args, **kw):
        inp = prepare(*args, **kw)
        parts.append(inp.parts)
        return inp

    eng.runner.prepare = recording
    assert [o.token_ids for o in eng.generate(batch, GREEDY)] == want
    mixed = [p for p in parts if p]
    assert mixed and all(p[0].max_query == 1 and p[1].max_query > 1 for p in mixed)
    assert all(p[0].paged_decode == eng.runner.attention.paged_decode for p in mixed)


def test_run_trace_with_chunked_prefill(weights):
    """Timed arrivals (simulated cost: one unit a step): same tokens; a long prompt's first token
    comes after its chunks, while the requests already running keep getting one token a step."""
    batch = prompts(3, seed=9, low=4, high=8) + prompts(1, seed=10, low=100, high=101)
    trace = [(0.0, p, GREEDY) for p in batch[:3]] + [(2.5, batch[3], GREEDY)]
    plain = engine(weights).run_trace(trace, step_cost=lambda seqs, is_prefill: 1.0)
    chunked = engine(weights, 25).run_trace(trace, step_cost=lambda seqs, is_prefill: 1.0)
    assert [o.token_ids for o in chunked] == [o.token_ids for o in plain]
    assert chunked[3].time_to_first_token == plain[3].time_to_first_token + 3     # 4 chunks
    # unchunked, the short ones wait one step for the long prefill; chunked, they never wait
    assert [o.finished + 1 for o in chunked[:3]] == [o.finished for o in plain[:3]]
