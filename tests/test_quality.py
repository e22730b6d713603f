"""inferlab.lab.quality, inferlab.lab.data, inferlab.lab.generation, inferlab.lab.records,
inferlab.lab.widgets."""
import math

import pytest
import torch

from inferlab.lab import data, quality, records


def test_eval_and_calibration_text_are_disjoint():
    assert len(data.eval_text()) > 5000
    assert all(data.eval_text()[:500] not in text for text in data.calibration_texts())
    assert "Apache License" in data.license_text()


def test_prompts_are_reproducible_and_varied():
    a, b = data.sample_prompts(20, seed=1), data.sample_prompts(20, seed=1)
    assert a == b and len({len(p.split()) for p in a}) > 5
    assert data.sample_prompts(20, seed=2) != a


def test_quality_metrics_on_known_logits():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]])
    assert quality.top1_agreement(logits, logits) == 1.0
    assert quality.kl_divergence(logits, logits) == pytest.approx(0.0, abs=1e-7)
    flipped = logits[..., [1, 0, 2]]
    assert quality.top1_agreement(logits, flipped) == 0.0
    assert quality.kl_divergence(logits, flipped) > 0.1
    assert quality.token_agreement([1, 2, 3, 4], [1, 2, 0]) == 0.5


def test_perplexity_of_the_embedded_model(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids = data.eval_tokens(tokenizer, 256)
    ppl = quality.perplexity(model, ids)
    assert 5 < ppl < 40
    # A uniform model scores exactly the vocabulary size.
    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
        def forward(self, ids):
            return type("Out", (), {"logits": torch.zeros(*ids.shape, 1000)})()
    assert (quality.perplexity(Uniform(), torch.randint(0, 1000, (1, 50)))
            == pytest.approx(1000, rel=1e-5))
    with pytest.raises(ValueError):
        quality.perplexity(Uniform(), torch.tensor([[1]]))


def test_timed_greedy_matches_generate(model_and_tokenizer):
    from inferlab.lab.generation import request_latency, timed_greedy
    model, tokenizer = model_and_tokenizer
    ids = tokenizer("The three primary colours are", return_tensors="pt").input_ids
    steps = timed_greedy(model, ids, 6)
    reference = model.generate(ids, max_new_tokens=6, do_sample=False)[0, ids.shape[1]:].tolist()
    assert steps.token_ids == reference and len(steps.decode_s) == 5
    stages = request_latency(model, tokenizer, "Hi", 3)
    assert set(stages) == {"tokenize", "prefill", "decode", "detokenize"}
    assert all(v >= 0 for v in stages.values())


def test_records_load_and_label():
    for name in records.available():
        record = records.load(name)
        assert record["device"] and record["date"][:2] == "20"
        assert record["device"] in records.label(record)
    with pytest.raises(FileNotFoundError):
        records.load("no-such-record")


def test_cost_panel_survives_a_failing_function(capsys):
    from inferlab.lab.widgets import cost_calculator

    calls = []
    def monthly(q, t, rate, price, util):
        calls.append(rate)
        return q * t / rate / util / 3600 * price * 30
    panel = cost_calculator(monthly, measured_tokens_per_s=100.0)
    assert calls and math.isclose(calls[0], round(50e6 / 36000, 1))
    def broken(*args):
        raise ZeroDivisionError("boom")
    panel = cost_calculator(broken, measured_tokens_per_s=100.0)  # must not raise
    panel.children[2].value = 3.0  # moving a control re-renders, still without raising
    # Outside a kernel the Output widget cannot capture, so the message reaches stdout.
    message = "Cannot compute this combination: ZeroDivisionError: boom"
    assert capsys.readouterr().out.count(message) == 2
