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


_CAUSAL = '''
def causal_block_attention(q_block, q_start, kv_blocks):
    n, d = q_block.shape
    last = q_start + n - 1
    first = kv_blocks[0]                                     # every query sees key 0
    block = first[0].shape[0]
    rows = torch.arange(q_start, q_start + n)[:, None]
    state = None
    for j in range(min(len(kv_blocks), last // block + 1)):
        k_block, v_block = first if j == 0 else kv_blocks[j]   # one load per block
        start = j * block
        if start + k_block.shape[0] - 1 <= q_start:
            state = online_softmax_step(q_block, k_block, v_block, state)
            continue
        cols = torch.arange(start, start + k_block.shape[0])[None, :]
        s = (q_block @ k_block.T / math.sqrt(d)).masked_fill(cols > rows, float("-inf"))
        if state is None:
            state = (torch.full((n,), float("-inf"), dtype=q_block.dtype),
                     torch.zeros(n, dtype=q_block.dtype),
                     torch.zeros(n, v_block.shape[1], dtype=q_block.dtype))
        m, l, acc = state
        m_new = torch.maximum(m, s.max(dim=1).values)
        p = torch.exp(s - m_new[:, None])
        correction = torch.exp(m - m_new)
        state = (m_new, l * correction + p.sum(dim=1),
                 acc * correction[:, None] + p @ v_block.to(q_block.dtype))
    m, l, acc = state
    return acc / l[:, None]
'''

# Shortcut: every key block concatenated, one masked full softmax (the N x N matrix).
_CAUSAL_FULL = '''
def causal_block_attention(q_block, q_start, kv_blocks):
    k = torch.cat([kb for kb, _ in kv_blocks])
    v = torch.cat([vb for _, vb in kv_blocks])
    s = q_block @ k.T / math.sqrt(q_block.shape[1])
    rows = torch.arange(q_start, q_start + q_block.shape[0])[:, None]
    s = s.masked_fill(torch.arange(k.shape[0])[None, :] > rows, float("-inf"))
    return torch.softmax(s, dim=1) @ v
'''

MUTANTS = {
    "causal_block_attention": [
        _CAUSAL_FULL,
        # Skips the blocks after the diagonal, then one full softmax over all the others.
        '''
def causal_block_attention(q_block, q_start, kv_blocks):
    n, d = q_block.shape
    block = kv_blocks[0][0].shape[0]
    used = [kv_blocks[j] for j in range(min(len(kv_blocks), (q_start + n - 1) // block + 1))]
    k = torch.cat([kb for kb, _ in used])
    v = torch.cat([vb for _, vb in used])
    s = q_block @ k.T / math.sqrt(d)
    rows = torch.arange(q_start, q_start + n)[:, None]
    s = s.masked_fill(torch.arange(k.shape[0])[None, :] > rows, float("-inf"))
    return torch.softmax(s, dim=1) @ v
''',
        # The same with one score tile per block, concatenated into one softmax.
        '''
def causal_block_attention(q_block, q_start, kv_blocks):
    n, d = q_block.shape
    block = kv_blocks[0][0].shape[0]
    rows = torch.arange(q_start, q_start + n)[:, None]
    scores, values = [], []
    for j in range(min(len(kv_blocks), (q_start + n - 1) // block + 1)):
        k_block, v_block = kv_blocks[j]
        cols = torch.arange(j * block, j * block + k_block.shape[0])[None, :]
        scores.append((q_block @ k_block.T / math.sqrt(d)).masked_fill(cols > rows,
                                                                      float("-inf")))
        values.append(v_block)
    p = torch.softmax(torch.cat(scores, dim=1), dim=1)
    return sum(p[:, i * block:(i + 1) * block] @ vb for i, vb in enumerate(values))
''',
        # Each block's scores once, kept with its values for a second pass: the maximum over
        # every tile first, then one softmax - a full softmax, done tile by tile.
        '''
def causal_block_attention(q_block, q_start, kv_blocks):
    n, d = q_block.shape
    first = kv_blocks[0]
    block = first[0].shape[0]
    rows = torch.arange(q_start, q_start + n)[:, None]
    tiles = []
    for j in range(min(len(kv_blocks), (q_start + n - 1) // block + 1)):
        k_block, v_block = first if j == 0 else kv_blocks[j]
        cols = torch.arange(j * block, j * block + k_block.shape[0])[None, :]
        s = (q_block @ k_block.T / math.sqrt(d)).masked_fill(cols > rows, float("-inf"))
        tiles.append((s, v_block))
    m = torch.stack([s.max(dim=1).values for s, _ in tiles]).max(dim=0).values
    total = sum(torch.exp(s - m[:, None]).sum(dim=1) for s, _ in tiles)
    acc = sum(torch.exp(s - m[:, None]) @ v for s, v in tiles)
    return acc / total[:, None]
''',
        # The same through PyTorch's attention with a boolean mask.
        '''
def causal_block_attention(q_block, q_start, kv_blocks):
    k = torch.cat([kb for kb, _ in kv_blocks])
    v = torch.cat([vb for _, vb in kv_blocks])
    rows = torch.arange(q_start, q_start + q_block.shape[0])[:, None]
    allowed = torch.arange(k.shape[0])[None, :] <= rows
    return torch.nn.functional.scaled_dot_product_attention(q_block[None], k[None], v[None],
                                                            attn_mask=allowed)[0]
''',
        # Loads every key block and masks the ones after the diagonal instead of skipping them.
        _CAUSAL.replace("for j in range(min(len(kv_blocks), last // block + 1)):",
                        "for j in range(len(kv_blocks)):"),
        # Stops at the block holding the *first* query: later queries of a block miss keys.
        _CAUSAL.replace("last = q_start + n - 1", "last = q_start"),
        # Assumes key blocks as long as the query block.
        _CAUSAL.replace("block = first[0].shape[0]", "block = n"),
        # Masks with block-local positions (right only when the blocks line up).
        _CAUSAL.replace("rows = torch.arange(q_start, q_start + n)[:, None]",
                        "rows = torch.arange(n)[:, None]").replace(
            "cols = torch.arange(start, start + k_block.shape[0])[None, :]",
            "cols = torch.arange(k_block.shape[0])[None, :]"),
        # Takes a block as "below the diagonal" when it starts before the first query.
        _CAUSAL.replace("if start + k_block.shape[0] - 1 <= q_start:", "if start < q_start:"),
        # No running maximum on the masked blocks: exp of raw scores.
        _CAUSAL.replace("p = torch.exp(s - m_new[:, None])",
                        "p = torch.exp(s) * torch.exp(-m_new[:, None])"),
        # Always float32.
        _CAUSAL.replace("return acc / l[:, None]", "return (acc / l[:, None]).float()"),
    ],
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
    "causal_block_attention": ["inferlab.engine.tiled_attention:tiled_attention",
                               "inferlab.engine.tiled_attention:naive_attention"],
}

# Shortcuts the *visible* tests already reject (tests/test_notebooks.py checks that they do).
SHORTCUTS = {
    "causal_block_attention": [
        # Bidirectional: no causal mask at all.
        _CAUSAL.replace(".masked_fill(cols > rows, float(\"-inf\"))", "").replace(
            "for j in range(min(len(kv_blocks), last // block + 1)):",
            "for j in range(len(kv_blocks)):"),
        # The mask also hides each query's own key (c >= r).
        _CAUSAL.replace("masked_fill(cols > rows", "masked_fill(cols >= rows"),
        # The same through the course's tiled attention (removed while grading; it
        # aligns the last query with the last key: wrong here).
        '''
def causal_block_attention(q_block, q_start, kv_blocks):
    from inferlab.engine.tiled_attention import tiled_attention
    k = torch.cat([kb for kb, _ in kv_blocks])
    v = torch.cat([vb for _, vb in kv_blocks])
    return tiled_attention(q_block[None], k[None], v[None], causal=True, block=16)[0]
''',
        # One head's SDPA with is_causal=True: aligned top-left, wrong for a later query block.
        '''
def causal_block_attention(q_block, q_start, kv_blocks):
    k = torch.cat([kb for kb, _ in kv_blocks])
    v = torch.cat([vb for _, vb in kv_blocks])
    return torch.nn.functional.scaled_dot_product_attention(q_block[None], k[None], v[None],
                                                            is_causal=True)[0]
''',
    ],
    "online_softmax_step": [
        # Forgets to rescale the accumulated output when the maximum grows.
        _RIGHT.replace("acc = acc * correction[:, None] + p @ v", "acc = acc + p @ v"),
        # Forgets to rescale the running sum.
        _RIGHT.replace("l = l * correction + p.sum(dim=1)", "l = l + p.sum(dim=1)"),
        # Softmax of the block alone: the state of the earlier blocks is dropped.
        _RIGHT.replace("m, l, acc = state", "m, l, acc = state[0], state[1] * 0, state[2] * 0"),
    ],
}
