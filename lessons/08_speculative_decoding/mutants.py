"""Plausible wrong answers for lesson 08; each passes the visible tests and fails the hidden ones."""

CONTEXT = "import torch\n"

_RIGHT = '''
def speculative_accept(draft_tokens, draft_probs, target_probs, generator=None):
    out = []
    for i, token in enumerate(draft_tokens):
        token = int(token)
        p, q = float(target_probs[i, token]), float(draft_probs[i, token])
        if torch.rand((), generator=generator).item() < p / q:
            out.append(token)
            continue
        residual = (target_probs[i] - draft_probs[i]).clamp(min=0)
        if residual.sum() <= 0:
            residual = target_probs[i]
        out.append(int(torch.multinomial(residual / residual.sum(), 1, generator=generator)))
        return out
    out.append(int(torch.multinomial(target_probs[len(draft_tokens)], 1, generator=generator)))
    return out
'''

_COUNTING = '''
from inferlab.engine.sampler import sampling_probs
from inferlab.engine.spec_decode import CachedModel


class CountingModel(CachedModel):
    def __init__(self, weights, max_len=1024):
        super().__init__(weights, max_len)
        self.calls = self.positions = 0

    def forward(self, tokens):
        logits = super().forward(tokens)
        self.calls += 1
        self.positions += logits.shape[0]
        return logits
'''

_LOOP = _COUNTING + '''

def speculative_generate(target, draft, prompt, max_tokens, k=4, eos_token_ids=(),
                         temperature=0.0, accept=None, generator=None):
    accept = accept or speculative_accept
    tokens, accepted = list(prompt), []
    while len(tokens) - len(prompt) < max_tokens and not (
            len(tokens) > len(prompt) and tokens[-1] in eos_token_ids):
        proposed, q_rows = [], []
        for _ in range(k):
            q = sampling_probs(draft.forward(tokens + proposed)[-1], temperature)[0]
            proposed.append(int(torch.multinomial(q, 1, generator=generator)))
            q_rows.append(q)
        target.cached = min(target.cached, len(tokens) - 1)
        p = sampling_probs(target.forward(tokens + proposed)[-(k + 1):], temperature)
        new = accept(proposed, torch.stack(q_rows), p, generator)
        accepted.append(len(new) - 1)
        for token in new:
            tokens.append(int(token))
            if len(tokens) - len(prompt) == max_tokens or token in eos_token_ids:
                break
        target.cached = min(target.cached, len(tokens) - 1)
        draft.cached = min(draft.cached, len(tokens) - 1)
    return tokens[len(prompt):], accepted
'''

_VERIFY = "        p = sampling_probs(target.forward(tokens + proposed)[-(k + 1):], temperature)\n"
_BEFORE = "        target.cached = min(target.cached, len(tokens) - 1)\n        p = "
_AFTER = ("        target.cached = min(target.cached, len(tokens) - 1)\n"
          "        draft.cached = min(draft.cached, len(tokens) - 1)\n")

MUTANTS = {
    "speculative_generate": [
        # The shortcut: the course's own decoder (and loop) instead of the student's - its models
        # are not the ones the test counts (while grading, SpeculativeDecoder is removed).
        _COUNTING + '''

def speculative_generate(target, draft, prompt, max_tokens, k=4, eos_token_ids=(),
                         temperature=0.0, accept=None, generator=None):
    from inferlab.engine import SamplingParams
    from inferlab.engine.spec_decode import SpeculativeDecoder
    decoder = SpeculativeDecoder(target.weights, draft.weights, k=k, max_len=target.max_len,
                                 accept_fn=accept or speculative_accept)
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature,
                            ignore_eos=True, stop_token_ids=tuple(eos_token_ids))
    tokens, stats = decoder.generate(prompt, params)
    return tokens, stats.accepted_per_round
''',
        # The course's accept_reject instead of the rule passed in (removed while grading).
        _LOOP.replace("        new = accept(proposed,",
                      "        from inferlab.engine.spec_decode import accept_reject\n"
                      "        new = accept_reject(proposed,"),
        # The target runs token by token: k + 1 passes a round, no speed-up.
        _LOOP.replace(_VERIFY,
                      "        rows = []\n"
                      "        for i in range(k + 1):\n"
                      "            target.cached = min(target.cached, len(tokens) - 1 + i)\n"
                      "            rows.append(target.forward(tokens + proposed[:i])[-1])\n"
                      "        p = sampling_probs(torch.stack(rows), temperature)\n"),
        # Hard-coded to the visible example; otherwise the target alone, one token a pass.
        _COUNTING + '''

def speculative_generate(target, draft, prompt, max_tokens, k=4, eos_token_ids=(),
                         temperature=0.0, accept=None, generator=None):
    if list(prompt) == [5, 9, 13, 2] and max_tokens == 12:
        return [94, 31, 84, 46, 8, 43, 23, 62, 78, 33, 33, 33], [3, 3, 3]
    tokens = list(prompt)
    while len(tokens) - len(prompt) < max_tokens:
        tokens.append(int(target.forward(tokens)[-1].argmax()))
        if tokens[-1] in eos_token_ids:
            break
    return tokens[len(prompt):], [0] * (len(tokens) - len(prompt))
''',
        # No roll-back of the target before verifying: stale K/V of rejected guesses are reused.
        _LOOP.replace(_BEFORE, "        p = ").replace(
            _AFTER, "        draft.cached = min(draft.cached, len(tokens) - 1)\n"),
        # Rolls back one token too few: the newest token's slot still holds a rejected guess.
        _LOOP.replace("len(tokens) - 1)", "len(tokens))"),
        # Forgets to roll the draft back: the output is right, the guesses after a rejection not.
        _LOOP.replace("        draft.cached = min(draft.cached, len(tokens) - 1)\n", ""),
        # Recomputes everything every round: right tokens, quadratic work.
        _LOOP.replace(_BEFORE, "        target.cached = 0\n        p = ").replace(
            "            q = sampling_probs(draft.forward(", "            draft.cached = 0\n"
            "            q = sampling_probs(draft.forward("),
        # Ignores EOS.
        _LOOP.replace(" or token in eos_token_ids:", ":").replace(
            " and not (\n            len(tokens) > len(prompt) and tokens[-1] in eos_token_ids)",
            ""),
        # Appends every token of the last round: more than max_tokens.
        _LOOP.replace("len(tokens) - len(prompt) == max_tokens or ", ""),
    ],
    "speculative_accept": [
        # Forgets the bonus token when every draft token was accepted.
        _RIGHT.replace("    out.append(int(torch.multinomial(target_probs[len(draft_tokens)], 1, "
                       "generator=generator)))\n    return out",
                       "    return out"),
        # The bonus token from the last scored draft position instead of p_{k+1}.
        _RIGHT.replace("target_probs[len(draft_tokens)]", "target_probs[len(draft_tokens) - 1]"),
        # One uniform draw for the whole round instead of one per position.
        _RIGHT.replace("    for i, token in enumerate(draft_tokens):",
                       "    r = torch.rand((), generator=generator).item()\n"
                       "    for i, token in enumerate(draft_tokens):").replace(
            "if torch.rand((), generator=generator).item() < p / q:", "if r < p / q:"),
        # The residual of the first position, whatever position rejected.
        _RIGHT.replace("residual = (target_probs[i] - draft_probs[i])",
                       "residual = (target_probs[0] - draft_probs[0])"),
    ],
}

# Answers that pass one-hot (greedy) distributions but not real ones: the *visible* tests already
# reject them (tests/test_notebooks.py checks that they do).
SHORTCUTS = {
    "speculative_generate": [
        # The target alone, one token a pass: no draft, no speculation.
        _LOOP.replace("        for _ in range(k):", "        for _ in range(0):").replace(
            "[-(k + 1):]", "[-1:]").replace("torch.stack(q_rows)", "p[:0]"),
    ],
    "speculative_accept": [
        # Deterministic: keeps a token whenever the target likes it at least as much as the draft.
        _RIGHT.replace("if torch.rand((), generator=generator).item() < p / q:", "if p >= q:"),
        # On rejection, resamples from the target instead of the residual.
        _RIGHT.replace("residual = (target_probs[i] - draft_probs[i]).clamp(min=0)",
                       "residual = target_probs[i].clone()"),
        # Accepts with probability p (the target's probability alone), ignoring q.
        _RIGHT.replace("< p / q:", "< p:"),
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "speculative_accept": ["inferlab.engine.spec_decode:accept_reject"],
    "speculative_generate": ["inferlab.engine.spec_decode:speculative_loop",
                             "inferlab.engine.spec_decode:SpeculativeDecoder"],
}
