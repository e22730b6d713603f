"""Plausible wrong answers for lesson 07; each passes the visible tests, fails the hidden ones."""

CONTEXT = "import math\nfrom collections import deque\nimport torch\n"

_BASE = '''
class MyBlockManager:
    def __init__(self, num_blocks, block_size):
        self.num_blocks, self.block_size = num_blocks, block_size
        self.free_blocks = deque(range(num_blocks))
        self.ref_counts = [0] * num_blocks

    @property
    def num_free_blocks(self):
        return len(self.free_blocks)

    @property
    def num_used_blocks(self):
        return self.num_blocks - len(self.free_blocks)

    def can_allocate(self, seq):
        return self.num_free_blocks >= math.ceil(len(seq) / self.block_size)

    def can_append(self, seq):
        return self.num_free_blocks >= 1

    def _take(self):
        if not self.free_blocks:
            raise RuntimeError("out of KV-cache blocks")
        block = self.free_blocks.popleft()
        self.ref_counts[block] = 1
        return block

    def allocate(self, seq):
        seq.block_table = [self._take() for _ in range(math.ceil(len(seq) / self.block_size))]

    def append_slot(self, seq):
        position = len(seq) - 1
        if position // self.block_size >= len(seq.block_table):
            seq.block_table.append(self._take())
            return []
        last = seq.block_table[-1]
        if self.ref_counts[last] > 1:
            new = self._take()
            self.ref_counts[last] -= 1
            seq.block_table[-1] = new
            return [(last, new)]
        return []

    def free(self, seq):
        for block in seq.block_table:
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                self.free_blocks.append(block)
        seq.block_table = []

    def fork(self, parent, child):
        for block in parent.block_table:
            self.ref_counts[block] += 1
        child.block_table = list(parent.block_table)
'''

_PAGED = '''
def paged_attention(q, k_cache, v_cache, block_table, context_len):
    block_size = k_cache.shape[1]
    blocks = torch.as_tensor(block_table[: math.ceil(context_len / block_size)])
    k = k_cache[blocks].flatten(0, 1)[:context_len]
    v = v_cache[blocks].flatten(0, 1)[:context_len]
    scores = torch.einsum("hd,nhd->hn", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("hn,nhd->hd", scores.softmax(-1), v)
'''

MUTANTS = {
    "block_manager": [
        # Off by one: takes a new block when the last one has just been filled, not when it
        # overflows.
        _BASE.replace("if position // self.block_size >= len(seq.block_table):",
                      "if len(seq) % self.block_size == 0:"),
        # No copy-on-write: writes into a block other sequences still share.
        _BASE.replace("if self.ref_counts[last] > 1:", "if False:"),
        # Frees shared blocks as soon as one owner is done.
        _BASE.replace("            if self.ref_counts[block] == 0:\n"
                      "                self.free_blocks.append(block)",
                      "            self.free_blocks.append(block)"),
        # Fork copies the table but not the references.
        _BASE.replace("            self.ref_counts[block] += 1\n", "            pass\n"),
        # Reuses the most recently freed block first.
        _BASE.replace("self.free_blocks.append(block)", "self.free_blocks.appendleft(block)"),
        # Hard-coded to the visible example: a fresh sequence always gets blocks 0, 1, 2, ...
        _BASE.replace(
            "        seq.block_table = [self._take() for _ in range(math.ceil(len(seq) / "
            "self.block_size))]",
            "        seq.block_table = list(range(math.ceil(len(seq) / self.block_size)))\n"
            "        for block in seq.block_table:\n"
            "            self.free_blocks.remove(block)\n"
            "            self.ref_counts[block] = 1"),
        # The course's own block manager (removed while grading), prefix caching off.
        '''
from inferlab.engine.block_manager import BlockManager


class MyBlockManager(BlockManager):
    def __init__(self, num_blocks, block_size):
        super().__init__(num_blocks, block_size, enable_prefix_caching=False)

    @property
    def free_blocks(self):
        return self.free_block_ids
''',
    ],
    "paged_attention": [
        # Ignores the block table: reads blocks 0, 1, 2, ...
        _PAGED.replace(
            "blocks = torch.as_tensor(block_table[: math.ceil(context_len / block_size)])",
            "blocks = torch.arange(math.ceil(context_len / block_size))"),
        # Attends over the whole last block, not only the first context_len positions.
        _PAGED.replace("k = k_cache[blocks].flatten(0, 1)[:context_len]",
                       "k = k_cache[blocks].flatten(0, 1)")
              .replace("v = v_cache[blocks].flatten(0, 1)[:context_len]",
                       "v = v_cache[blocks].flatten(0, 1)"),
        # Hard-coded to the visible example: the first context_len // block_size blocks, full.
        _PAGED.replace(
            "blocks = torch.as_tensor(block_table[: math.ceil(context_len / block_size)])",
            "blocks = torch.arange(context_len // block_size)"),
        # The library call: PyTorch's SDPA over the cache as if it were contiguous.
        '''
def paged_attention(q, k_cache, v_cache, block_table, context_len):
    k = k_cache.flatten(0, 1)[:context_len].transpose(0, 1)      # [heads, n, d]
    v = v_cache.flatten(0, 1)[:context_len].transpose(0, 1)
    out = torch.nn.functional.scaled_dot_product_attention(q[:, None], k, v)
    return out[:, 0]
''',
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "block_manager": ["inferlab.engine.block_manager:BlockManager"],
    "paged_attention": ["inferlab.engine.attention:paged_decode_attention",
                        "inferlab.engine.gpu_kernels:decode_attention"],
}
