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

MUTANTS = {
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
}
