"""Running a decode step ahead (``EngineConfig.run_ahead``): the same tokens, stops, statistics and
cache blocks as plain steps, on a tiny random model on the CPU (where it gains nothing, but every
path of the bookkeeping runs)."""
import pytest
import torch

from inferlab.engine import (
    BlockManager,
    EngineConfig,
    LLMEngine,
    SamplingParams,
    Sequence,
)
from inferlab.engine.run_ahead import NextStep, PendingTokens

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def weights(tiny_engine_weights):
    return tiny_engine_weights()


def engines(weights, **settings):
    """The same engine twice: plain steps, and running ahead (counting its ahead launches)."""
    plain = LLMEngine(weights, config=EngineConfig(run_ahead=False, **settings))
    ahead = LLMEngine(weights, config=EngineConfig(run_ahead=True, **settings))
    ahead.launched_ahead = 0
    run_ahead = ahead.runner.run_ahead

    def counted(seqs, tokens):
        ahead.launched_ahead += 1
        return run_ahead(seqs, tokens)
    ahead.runner.run_ahead = counted
    return plain, ahead


def trace(engine, requests, arrivals=()):
    """Step ``engine`` to the end; request ``i`` of ``arrivals`` joins before step ``i``. Returns
    every step's (request numbers, tokens, finished numbers) and each request's (tokens, finish
    reason), requests numbered in the order they were added."""
    number = {engine.add_request(prompt, params): i for i, (prompt, params) in enumerate(requests)}
    steps, late = [], list(arrivals)
    while engine.has_unfinished() or late:
        if late and len(steps) == late[0][0]:
            number[engine.add_request(*late.pop(0)[1])] = len(number)
        r = engine.step()
        steps.append(([number[i] for i in r.request_ids], r.token_ids,
                      [number[o.request_id] for o in r.finished]))
    outs = {number[o.request_id]: (o.token_ids, o.finish_reason) for o in engine.pop_finished()}
    return steps, [outs[i] for i in range(len(number))]


def test_config_runs_ahead_with_cuda_graphs_by_default(weights):
    assert LLMEngine(weights, max_model_len=64).config.run_ahead is False     # CPU: no graphs
    assert LLMEngine(weights, max_model_len=64, run_ahead=True).config.run_ahead is True
    with pytest.raises(ValueError, match="run_ahead"):
        EngineConfig(run_ahead="yes")


def test_same_tokens_stops_stats_and_blocks_as_plain_steps(weights):
    settings = dict(max_model_len=48, block_size=4, num_blocks=64, max_num_seqs=4)
    plain, ahead = engines(weights, **settings)
    requests = [([5, 6, 7, 8, 9], SamplingParams(max_tokens=12, ignore_eos=True)),
                ([11, 12], SamplingParams(max_tokens=7, ignore_eos=True)),
                ([20, 21, 22, 23, 24, 25, 26], SamplingParams(max_tokens=40, ignore_eos=True))]
    want_steps, want = trace(plain, requests)
    # stop the first request at its 4th token: the step launched ahead for it must be dropped
    stop = want[0][0][3]
    requests[0] = (requests[0][0], SamplingParams(max_tokens=12, ignore_eos=True,
                                                  stop_token_ids=(stop,)))
    plain, ahead = engines(weights, **settings)
    want_steps, want = trace(plain, requests)
    got_steps, got = trace(ahead, requests)
    assert want[0][1] == "stop" and want[2][1] == "length"
    assert got == want and got_steps == want_steps
    assert ahead.launched_ahead > 10                     # it did run ahead, most steps
    for field in ("steps", "decode_steps", "decode_tokens", "prefill_tokens", "batch_sizes"):
        assert getattr(ahead.stats, field) == getattr(plain.stats, field), field
    a, p = ahead.block_manager, plain.block_manager
    assert a.num_free_blocks == p.num_free_blocks == 64
    assert sorted(a.hash_to_block) == sorted(p.hash_to_block)     # the same blocks registered


def test_requests_arriving_meanwhile_and_a_shared_prefix(weights):
    settings = dict(max_model_len=64, block_size=4, num_blocks=64, max_num_seqs=2)
    system = list(range(30, 42))
    requests = [(system + [50, 51], SamplingParams(max_tokens=9, ignore_eos=True)),
                (system + [60], SamplingParams(max_tokens=14, ignore_eos=True))]
    arrivals = [(3, (system + [70, 71, 72], SamplingParams(max_tokens=6, ignore_eos=True))),
                (5, ([3, 4, 5], SamplingParams(max_tokens=5, ignore_eos=True)))]
    plain, ahead = engines(weights, **settings)
    want = trace(plain, requests, arrivals)
    got = trace(ahead, requests, arrivals)
    assert got == want and ahead.launched_ahead > 0
    assert ahead.stats.prefix_hit_tokens == plain.stats.prefix_hit_tokens > 0


def test_no_running_ahead_where_the_next_step_is_not_certain(weights):
    _, ahead = engines(weights, max_model_len=64)
    sampled = SamplingParams(max_tokens=8, temperature=0.8, seed=1, ignore_eos=True)
    trace(ahead, [([5, 6, 7], sampled)])                 # tokens drawn on the CPU
    trace(ahead, [([5, 6, 7], SamplingParams(max_tokens=2, ignore_eos=True))])  # last step next
    assert ahead.launched_ahead == 0
    plugged = LLMEngine(weights, config=EngineConfig(
        max_model_len=64, run_ahead=True, sampler=lambda logits, params, ids:
        logits.argmax(-1).tolist()))
    plugged.runner.run_ahead = None                      # would fail if called
    assert plugged.generate([[5, 6, 7]], SamplingParams(max_tokens=6, ignore_eos=True))


def test_generation_to_max_model_len_runs_ahead_until_the_last_step(weights):
    plain, ahead = engines(weights, max_model_len=24, block_size=4)
    requests = [(list(range(2, 12)), SamplingParams(max_tokens=100, ignore_eos=True))]
    got, want = trace(ahead, requests), trace(plain, requests)
    assert got == want and got[1][0][1] == "length" and len(got[1][0][0]) == 14


def test_reserve_next_slots_takes_a_block_only_where_a_position_starts_one():
    bm = BlockManager(4, 4, enable_prefix_caching=False)
    a, b = Sequence([1, 2, 3, 4]), Sequence([5, 6])
    bm.allocate(a)
    bm.allocate(b)
    assert bm.reserve_next_slots([a, b])                 # a's next position 4 starts block 2
    assert len(a.block_table) == 2 and len(b.block_table) == 1 and bm.num_free_blocks == 1
    child = Sequence([5, 6])
    bm.fork(b, child)                                    # b's last block now shared
    tables = (list(a.block_table), list(b.block_table))
    assert not bm.reserve_next_slots([a, b])             # would need a copy-on-write
    assert (a.block_table, b.block_table) == tables and bm.num_free_blocks == 1
    c, d = Sequence([1, 2, 3, 4]), Sequence([1, 2, 3, 4])
    bm2 = BlockManager(2, 4, enable_prefix_caching=False)
    bm2.allocate(c)
    bm2.allocate(d)
    assert not bm2.reserve_next_slots([c, d]) and len(c.block_table) == 1   # no free block


def test_next_step_view_and_pending_tokens():
    seq = Sequence([3, 4, 5])
    view = NextStep(seq)
    assert len(view) == 4 and view.token_ids == [3, 4, 5, 0] and view.block_table is \
        seq.block_table and view.last_token == 0 and view.seq_id == seq.seq_id
    pending = PendingTokens(torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 3.0], [0.0, 0.0, 5.0]]))
    assert pending.list() == [1, 0, 2]                   # the first of equal maxima, as max()
    pending.keep([0, 2])
    assert pending.list() == [1, 2] and pending.device.tolist() == [1, 2]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["paged", "static"])
def test_run_ahead_from_cuda_graphs_gives_the_plain_steps(kind, tiny_engine_weights):
    """On the GPU, where it is on by default: graph replays fed by the tokens on the device."""
    w = tiny_engine_weights("cuda")
    blocks = {"num_blocks": 64, "block_size": 4} if kind == "paged" else {}
    settings = dict(kv_cache=kind, max_model_len=64, max_num_seqs=4, **blocks)
    plain, ahead = engines(w, cuda_graphs=True, **settings)
    assert LLMEngine(w, config=EngineConfig(cuda_graphs=True, **settings)).config.run_ahead
    requests = [([5, 6, 7, 8, 9], SamplingParams(max_tokens=20, ignore_eos=True)),
                ([11, 12], SamplingParams(max_tokens=7, ignore_eos=True)),
                ([20, 21, 22], SamplingParams(max_tokens=30, ignore_eos=True))]
    _, first = trace(plain, requests)
    requests[0] = (requests[0][0], SamplingParams(max_tokens=20, ignore_eos=True,
                                                  stop_token_ids=(first[0][0][5],)))
    plain, ahead = engines(w, cuda_graphs=True, **settings)
    want, got = trace(plain, requests), trace(ahead, requests)
    assert got == want and want[1][0][1] == "stop" and ahead.launched_ahead > 10
