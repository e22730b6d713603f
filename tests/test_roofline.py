"""inferlab.lab.roofline: the arithmetic of a decode run against the measured bandwidth, and the
engine's decode steps timed apart from its prefill (tiny random model, CPU)."""
import pytest
import torch

from inferlab.engine import EngineConfig, LlamaWeights, LLMEngine, ModelConfig, SamplingParams
from inferlab.engine.kv_cache import kv_bytes_per_token
from inferlab.lab.roofline import DecodeRun, decode_contexts, engine_decode_run

CONFIG = ModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16,
                     intermediate_size=128, vocab_size=97, max_position=256, eos_token_ids=(1,))


def test_decode_contexts():
    # prompt of 5, 4 new tokens: the first from the prefill, then steps reading 6, 7, 8 tokens
    assert decode_contexts(5, 4) == [6, 7, 8]
    assert decode_contexts(3, 1) == []


def test_decode_run_arithmetic():
    run = DecodeRun("x", tokens=20, steps=10, seconds=2.0, weight_bytes=1000, kv_bytes=500,
                    bandwidth=10_000.0, device="cpu")
    assert run.tok_s == 10.0
    assert run.bytes_per_step == 1050.0
    assert run.achieved == 1050.0 * 10 / 2.0
    assert run.fraction == pytest.approx(5250.0 / 10_000.0)
    assert run.roofline_tok_s == pytest.approx(10_000.0 / 1050.0 * 2)   # 2 tokens per step
    line = run.line()
    assert "10.0 tok/s" in line and "52.5%" in line and "on cpu" in line
    assert run.as_dict()["fraction_of_roofline"] == pytest.approx(0.525)
    with pytest.raises(ValueError):
        DecodeRun("x", 1, 0, 1.0, 1, 0, 1.0)


def test_decode_run_breakdown_splits_a_step():
    # 10 steps in 2 s: 200 ms a step; 1050 bytes at 10,000 B/s: 105 ms; fixed cost 95 ms (47.5%)
    run = DecodeRun("x", tokens=20, steps=10, seconds=2.0, weight_bytes=1000, kv_bytes=500,
                    bandwidth=10_000.0)
    assert run.step_seconds == pytest.approx(0.2)
    assert run.read_seconds == pytest.approx(0.105)
    text = run.breakdown()
    assert "200.000 ms" in text and "105.000 ms" in text and "95.000 ms (48%)" in text
    # a step faster than its bytes allow (a noisy bandwidth reading): no negative fixed cost
    quick = DecodeRun("q", tokens=10, steps=10, seconds=0.5, weight_bytes=1000, kv_bytes=0,
                      bandwidth=10_000.0)
    assert "the other 0.000 ms (0%)" in quick.breakdown()


def test_engine_decode_run_counts_decode_steps_and_bytes():
    torch.set_num_threads(1)
    weights = LlamaWeights.random(CONFIG, dtype=torch.float32, seed=0, std=0.3)
    engine = LLMEngine(weights, config=EngineConfig(max_model_len=64, num_blocks=32, block_size=4))
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12]]
    params = SamplingParams(max_tokens=6, ignore_eos=True)
    run, outputs = engine_decode_run(engine, prompts, params, bandwidth=1e9, label="tiny")
    assert [len(o.token_ids) for o in outputs] == [6, 6]
    assert run.steps == 5 and run.tokens == 10          # both sequences in every decode step
    per_token = kv_bytes_per_token(2, 2, 16, 4)
    assert run.kv_bytes == per_token * (sum(range(4, 9)) + sum(range(6, 11)))
    assert run.weight_bytes == weights.bytes_read_per_token
    # the same tokens as a plain generate
    again = LLMEngine(weights, config=EngineConfig(max_model_len=64, num_blocks=32, block_size=4))
    assert [o.token_ids for o in again.generate(prompts, params)] == \
        [o.token_ids for o in outputs]
