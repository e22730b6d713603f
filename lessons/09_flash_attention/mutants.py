"""Plausible wrong answers for lesson 09; each passes the visible tests and fails the hidden ones."""

CONTEXT = "import math\nimport torch\n"

_RIGHT = '''
def online_softmax_attention(q, k, v, block=64):
    n, d = q.shape
    m = torch.full((n,), float("-inf"), dtype=q.dtype)
    l = torch.zeros(n, dtype=q.dtype)
    acc = torch.zeros(n, v.shape[1], dtype=q.dtype)
    for start in range(0, k.shape[0], block):
        s = q @ k[start:start + block].T / math.sqrt(d)
        m_new = torch.maximum(m, s.max(dim=1).values)
        p = torch.exp(s - m_new[:, None])
        correction = torch.exp(m - m_new)
        l = l * correction + p.sum(dim=1)
        acc = acc * correction[:, None] + p @ v[start:start + block]
        m = m_new
    return acc / l[:, None]
'''

MUTANTS = {
    "online_softmax_attention": [
        # Forgets to rescale the accumulated output when the maximum grows.
        _RIGHT.replace("acc = acc * correction[:, None] + p @ v", "acc = acc + p @ v"),
        # Forgets to rescale the running sum.
        _RIGHT.replace("l = l * correction + p.sum(dim=1)", "l = l + p.sum(dim=1)"),
        # No running maximum: exp of raw scores (fine until they are large).
        '''
def online_softmax_attention(q, k, v, block=64):
    n, d = q.shape
    l = torch.zeros(n, dtype=q.dtype)
    acc = torch.zeros(n, v.shape[1], dtype=q.dtype)
    for start in range(0, k.shape[0], block):
        p = torch.exp(q @ k[start:start + block].T / math.sqrt(d))
        l = l + p.sum(dim=1)
        acc = acc + p @ v[start:start + block]
    return acc / l[:, None]
''',
        # Drops the last, partial block.
        _RIGHT.replace("for start in range(0, k.shape[0], block):",
                       "for start in range(0, k.shape[0] // block * block, block):"),
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "online_softmax_attention": ["inferlab.engine.tiled_attention:tiled_attention",
                                 "inferlab.engine.gpu_kernels:decode_attention"],
}
