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
        # Deterministic: keeps a token whenever the target likes it at least as much as the draft.
        _RIGHT.replace("if torch.rand((), generator=generator).item() < p / q:", "if p >= q:"),
        # On rejection, resamples from the target instead of the residual.
        _RIGHT.replace("residual = (target_probs[i] - draft_probs[i]).clamp(min=0)", "residual = target_probs[i].clone()"),
        # Forgets the bonus token when every draft token was accepted.
        _RIGHT.replace("    out.append(int(torch.multinomial(target_probs[len(draft_tokens)], 1, generator=generator)))\n    return out",
                       "    return out"),
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "speculative_accept": ["inferlab.engine.spec_decode:accept_reject"],
}
