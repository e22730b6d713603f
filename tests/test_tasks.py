"""inferlab.lab.tasks: the HellaSwag items and multiple-choice scoring (acc, acc_norm)."""
import math

import pytest
import torch

from inferlab.lab import tasks


def test_the_items_load_and_are_well_formed():
    items = tasks.load_items()
    assert len(items) == 300
    assert [it["ind"] for it in items] == list(range(0, 33 * 300, 33))   # every 33rd item
    for it in items:
        assert isinstance(it["ctx"], str) and it["ctx"].strip()
        assert len(it["endings"]) == 4 and all(e.strip() for e in it["endings"])
        assert it["label"] in range(4)
    assert len({it["label"] for it in items}) == 4
    assert tasks.load_items(7) == items[:7]


class _Tokenizer:
    """One token per digit; spaces are dropped."""

    def __call__(self, text, return_tensors=None):
        ids = [int(c) for c in text if c != " "]
        class Out:
            input_ids = torch.tensor([ids]) if return_tensors == "pt" else ids
        return Out()


class _Cache:
    def batch_repeat_interleave(self, k):
        pass


class _Model(torch.nn.Module):
    """Next token = this token + 1 gets logit 5, every other token 0 (vocabulary of 10)."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, use_cache=False, past_key_values=None):
        logits = torch.zeros(*input_ids.shape, 10)
        logits.scatter_(-1, ((input_ids + 1) % 10).unsqueeze(-1), 5.0)
        class Out:
            pass
        out = Out()
        out.logits, out.past_key_values = logits, _Cache()
        return out


RIGHT = math.log(math.exp(5) / (math.exp(5) + 9))    # log-prob of the favoured next token
WRONG = math.log(1 / (math.exp(5) + 9))


def test_scoring_sums_ending_log_likelihoods_and_normalises_by_length():
    model, tok = _Model(), _Tokenizer()
    short_wrong = {"ctx": "0", "endings": ["5", "12349"], "label": 1}
    ll = tasks.ending_logprobs(model, tok, short_wrong)
    assert torch.allclose(ll, torch.tensor([WRONG, 4 * RIGHT + WRONG]), atol=1e-5)
    easy = {"ctx": "0", "endings": ["19", "123"], "label": 1}
    r = tasks.task_accuracy(model, tok, [short_wrong, easy])
    # the short ending has the higher sum, the long one the higher sum per character
    assert r["choices"] == [0, 1] and r["choices_norm"] == [1, 1]
    assert r["acc"] == 0.5 and r["acc_norm"] == 1.0
    assert r["chance"] == 0.5 and r["n"] == 2
    assert r["acc_se"] == pytest.approx(math.sqrt(0.25 / 2)) and r["acc_norm_se"] == 0
    assert tasks.agreement(r, r) == 1.0 and tasks.agreement(r, r, norm=False) == 1.0
    assert "chance 50%" in tasks.describe(r)


def test_the_embedded_model_scores_above_chance():
    from inferlab.lab.models import load_model
    model, tokenizer = load_model()
    r = tasks.task_accuracy(model, tokenizer, tasks.load_items(40))
    # Measured on these 40 items: acc_norm 50.0% (acc 37.5%), one standard error ~8 points.
    # Chance is 25%: require acc_norm above 30%, 2.5 standard errors below what was measured.
    assert r["chance"] == 0.25
    assert r["acc_norm"] > 0.30, tasks.describe(r)
    assert r["acc"] > 0.25, tasks.describe(r)
