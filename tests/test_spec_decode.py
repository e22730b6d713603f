"""inferlab.engine.spec_decode beyond tests/test_engine.py: the model interface a speculative loop
drives (CachedModel), greedy_accept, prompt lookup drafting, and the loop plug-in point."""
import pytest
import torch

from inferlab.engine import SamplingParams
from inferlab.engine.spec_decode import (
    CachedModel,
    PromptLookupDraft,
    SpeculativeDecoder,
    accept_reject,
    greedy_accept,
    speculative_loop,
)

torch.set_num_threads(1)


def greedy_alone(model, prompt, n):
    tokens = list(prompt)
    for _ in range(n):
        tokens.append(int(model.forward(tokens)[-1].argmax()))
    return tokens[len(prompt):]


def test_cached_model_computes_only_new_tokens_and_rolls_back():
    model = CachedModel.random(seed=1)
    full = model.forward([5, 9, 13, 2])
    assert full.shape == (4, 97) and model.cached == 4 and full.dtype == torch.float32
    more = model.forward([5, 9, 13, 2, 7, 8])
    assert more.shape == (2, 97) and model.cached == 6
    model.cached = 3                                     # roll back: recompute position 3 on
    again = model.forward([5, 9, 13, 2, 7, 8])
    assert again.shape == (3, 97)
    torch.testing.assert_close(again[1:], more, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(again[0], full[3], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        model.forward([5, 9, 13, 2, 7, 8])               # nothing left to compute


def test_greedy_accept():
    onehot = torch.nn.functional.one_hot(torch.tensor([2, 4, 3, 5]), 6).float()
    assert greedy_accept([2, 4, 1], None, onehot) == [2, 4, 3]
    assert greedy_accept([2, 4, 3], None, onehot) == [2, 4, 3, 5]
    assert greedy_accept([], None, onehot[:1]) == [2]


def test_prompt_lookup_draft_copies_the_earlier_continuation():
    draft = PromptLookupDraft(vocab_size=20, max_ngram=2)
    assert draft.guess([1, 2, 3, 4, 1, 2]) == 3          # "1 2" was followed by 3
    assert draft.guess([1, 2, 3, 9, 2]) == 3             # 1-gram "2"
    assert draft.guess([7, 5, 1, 7, 5, 2, 7, 5]) == 2    # the most recent occurrence
    assert draft.guess([1, 2, 3]) is None
    row = draft.forward([1, 2, 3])                       # no match: the last token again
    assert row.shape == (1, 20) and int(row.argmax()) == 3 and draft.misses == 1
    assert torch.isinf(row).sum() == 19


@pytest.mark.parametrize("k", [1, 3, 5])
def test_loop_gives_the_target_greedy_output(k):
    prompt = [5, 9, 13, 2]
    want = greedy_alone(CachedModel.random(seed=1), prompt, 20)
    target, draft = CachedModel.random(seed=1), CachedModel.random(seed=1, num_layers=1)
    out, accepted = speculative_loop(target, draft, prompt, 20, k=k, accept=greedy_accept)
    assert out == want and sum(accepted) + len(accepted) >= 20
    # a perfect draft: every guess kept, k + 1 tokens a round
    out, accepted = speculative_loop(CachedModel.random(seed=1), CachedModel.random(seed=1),
                                     prompt, 20, k=k)
    assert out == want and accepted[:-1] == [k] * (len(accepted) - 1)


def test_loop_stops_at_eos_and_with_prompt_lookup():
    prompt = [5, 9, 13, 2]
    want = greedy_alone(CachedModel.random(seed=1), prompt, 20)
    eos = want[6]
    out, _ = speculative_loop(CachedModel.random(seed=1), CachedModel.random(seed=1), prompt, 20,
                              k=4, eos_token_ids=(eos,))
    assert out == want[:want.index(eos) + 1]
    out, _ = speculative_loop(CachedModel.random(seed=1), PromptLookupDraft(97), prompt, 20, k=3,
                              accept=accept_reject)
    assert out == want


def test_decoder_plugs_in_a_loop_and_times_prefill_apart():
    target = CachedModel.random(seed=1).weights
    calls = []

    def my_loop(target, draft, prompt, max_tokens, **kwargs):
        calls.append(kwargs)
        return speculative_loop(target, draft, prompt, max_tokens, **kwargs)

    params = SamplingParams(max_tokens=12, ignore_eos=True)
    base, alone = SpeculativeDecoder(target, None, k=0, max_len=64).generate([5, 9, 13, 2], params)
    out, stats = SpeculativeDecoder(target, PromptLookupDraft(97), k=3, max_len=64,
                                    loop=my_loop).generate([5, 9, 13, 2], params)
    assert out == base and len(calls) == 1 and calls[0]["k"] == 3
    assert alone.rounds == 12 and alone.tokens_per_round == 1
    assert stats.rounds == len(stats.accepted_per_round) and stats.generated == 12
    assert stats.prefill_seconds > 0 and stats.seconds > 0
    with pytest.raises(ValueError):
        SpeculativeDecoder(target, PromptLookupDraft(50), k=2)     # another vocabulary
