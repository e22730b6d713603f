"""Plausible wrong answers for lesson 09; each passes the visible tests and fails the hidden ones."""

CONTEXT = "import math\nimport torch\n"

_RIGHT = '''
def online_softmax_step(q, k_block, v_block, state=None):
    n, d = q.shape
    if state is None:
        m = torch.full((n,), float("-inf"), dtype=q.dtype)
        l = torch.zeros(n, dtype=q.dtype)
        acc = torch.zeros(n, v_block.shape[1], dtype=q.dtype)
    else:
        m, l, acc = state
    s = q @ k_block.T / math.sqrt(d)
    m_new = torch.maximum(m, s.max(dim=1).values)
    p = torch.exp(s - m_new[:, None])
    correction = torch.exp(m - m_new)
    l = l * correction + p.sum(dim=1)
    acc = acc * correction[:, None] + p @ v_block.to(q.dtype)
    return m_new, l, acc
'''

# The shortcut the lesson teaches against: keep every block seen so far and run one full softmax
# over all the keys (`torch.softmax(q @ k.T / sqrt(d), dim=1) @ v`), reporting the state from it.
_FULL_SOFTMAX = '''
_seen = []


def online_softmax_step(q, k_block, v_block, state=None):
    if state is None:
        _seen.clear()
    _seen.append((k_block, v_block))
    k = torch.cat([kb for kb, _ in _seen])
    v = torch.cat([vb for _, vb in _seen])
    s = q @ k.T / math.sqrt(q.shape[1])
    out = torch.softmax(s, dim=1) @ v
    m = s.max(dim=1).values
    l = torch.exp(s - m[:, None]).sum(dim=1)
    return m, l, out * l[:, None]
'''

MUTANTS = {
    "online_softmax_step": [
        _FULL_SOFTMAX,
        # The same shortcut through the course's own implementation (removed while grading).
        _FULL_SOFTMAX.replace(
            "out = torch.softmax(s, dim=1) @ v",
            "from inferlab.engine.tiled_attention import tiled_attention\n"
            "    out = tiled_attention(q[None], k[None], v[None], causal=False, block=len(k))[0]"),
        # No running maximum: sums of exp of the raw scores, rescaled afterwards (fine until the
        # scores are large).
        '''
def online_softmax_step(q, k_block, v_block, state=None):
    n, d = q.shape
    s = q @ k_block.T / math.sqrt(d)
    if state is None:
        m = s.max(dim=1).values
        l_raw = torch.zeros(n, dtype=q.dtype)
        acc_raw = torch.zeros(n, v_block.shape[1], dtype=q.dtype)
    else:
        m, l, acc = state
        l_raw, acc_raw = l * torch.exp(m), acc * torch.exp(m)[:, None]
    m_new = torch.maximum(m, s.max(dim=1).values)
    l_raw = l_raw + torch.exp(s).sum(dim=1)
    acc_raw = acc_raw + torch.exp(s) @ v_block
    return m_new, l_raw * torch.exp(-m_new), acc_raw * torch.exp(-m_new)[:, None]
''',
        # The accumulator sized by the keys' width instead of the values'.
        _RIGHT.replace("acc = torch.zeros(n, v_block.shape[1], dtype=q.dtype)",
                       "acc = torch.zeros(n, d, dtype=q.dtype)"),
        # Always float32.
        _RIGHT.replace("dtype=q.dtype)", "dtype=torch.float32)").replace(
            "return m_new, l, acc", "return m_new.float(), l.float(), acc.float()"),
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "online_softmax_step": ["inferlab.engine.tiled_attention:tiled_attention",
                            "inferlab.engine.gpu_kernels:decode_attention"],
}

# Shortcuts the *visible* tests already reject (tests/test_notebooks.py checks that they do).
SHORTCUTS = {
    "online_softmax_step": [
        # Forgets to rescale the accumulated output when the maximum grows.
        _RIGHT.replace("acc = acc * correction[:, None] + p @ v", "acc = acc + p @ v"),
        # Forgets to rescale the running sum.
        _RIGHT.replace("l = l * correction + p.sum(dim=1)", "l = l + p.sum(dim=1)"),
        # Softmax of the block alone: the state of the earlier blocks is dropped.
        _RIGHT.replace("m, l, acc = state", "m, l, acc = state[0], state[1] * 0, state[2] * 0"),
    ],
}
