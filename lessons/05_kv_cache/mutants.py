"""Plausible wrong answers for lesson 05; each passes the visible tests, fails the hidden ones."""

CONTEXT = "import torch\n"

# Exercise 3: the reference answer, and plausible wrong answers made by changing one line of it.
_QUANTIZE_KV = """
def quantize_kv(x, scale=None):
    x = x.float()
    scale_shape = (*x.shape[:-1], 1)
    if scale is None:
        amax = x.abs().amax(dim=-1, keepdim=True)
        scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    else:
        scale = torch.as_tensor(scale, dtype=torch.float32).expand(scale_shape)
    q = torch.round(x / scale)
    q = q.clamp(-127, 127)
    return q.to(torch.int8), scale.contiguous()


def dequantize_kv(q, scale, dtype=torch.float32):
    return (q.to(torch.float32) * scale).to(dtype)
"""


def _quantize_kv(old: str, new: str) -> str:
    assert old in _QUANTIZE_KV, old
    return _QUANTIZE_KV.replace(old, new)


_QUANTIZE_KV_MUTANTS = [
    # One scale for the whole tensor: an outlier in one head coarsens every head.
    _quantize_kv("amax = x.abs().amax(dim=-1, keepdim=True)",
                 "amax = x.abs().amax().expand(scale_shape)"),
    # No clamp: a given scale lets values past 127 wrap around in int8.
    _quantize_kv("q = q.clamp(-127, 127)", "q = q"),
    # Truncation toward zero instead of rounding to nearest.
    _quantize_kv("q = torch.round(x / scale)", "q = torch.trunc(x / scale)"),
    # Divides by 128: the largest value becomes 128, clamped to 127, and every scale is off.
    _quantize_kv("amax / 127", "amax / 128"),
    # All-zero vectors get scale 0 (0 / 0 = NaN before the int8 cast).
    _quantize_kv("torch.where(amax > 0, amax / 127, torch.ones_like(amax))", "amax / 127"),
    # Ignores the requested dtype.
    _quantize_kv("return (q.to(torch.float32) * scale).to(dtype)",
                 "return q.to(torch.float32) * scale"),
    # Hard-coded to the visible example: one fixed scale that covers randn values (|x| < 4).
    _quantize_kv("scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))",
                 "scale = torch.full(scale_shape, 4.0 / 127)"),
    # The library call: PyTorch's quantize_per_channel (qint8 saturates at -128, not -127).
    """
def quantize_kv(x, scale=None):
    x = x.float()
    scale_shape = (*x.shape[:-1], 1)
    if scale is None:
        amax = x.abs().amax(dim=-1, keepdim=True)
        scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    else:
        scale = torch.as_tensor(scale, dtype=torch.float32).expand(scale_shape).contiguous()
    rows = x.reshape(-1, x.shape[-1])
    scales = scale.reshape(-1).double()
    zeros = torch.zeros(len(scales), dtype=torch.long)
    q = torch.quantize_per_channel(rows, scales, zeros, 0, torch.qint8).int_repr()
    return q.reshape(x.shape), scale.contiguous()


def dequantize_kv(q, scale, dtype=torch.float32):
    return (q.to(torch.float32) * scale).to(dtype)
""",
]

MUTANTS = {
    "kv_cache_size": [
        # Forgets the batch.
        '''
def kv_cache_size(num_layers, num_kv_heads, head_dim, seq_len, batch=1, bytes_per_value=2):
    return num_layers * 2 * num_kv_heads * head_dim * bytes_per_value * seq_len
''',
        # Assumes fp16 whatever the dtype.
        '''
def kv_cache_size(num_layers, num_kv_heads, head_dim, seq_len, batch=1, bytes_per_value=2):
    return num_layers * 2 * num_kv_heads * head_dim * 2 * seq_len * batch
''',
        # Hard-coded to the visible example: Llama-2-7B's 2 GiB, scaled by the context length.
        '''
def kv_cache_size(num_layers, num_kv_heads, head_dim, seq_len, batch=1, bytes_per_value=2):
    return 2 * 1024 ** 3 * seq_len // 4096
''',
    ],
    "static_kv_cache": [
        # Returns only the new keys/values, not everything cached so far.
        '''
class StaticKVCache:
    def __init__(self, num_layers, batch, num_kv_heads, max_len, head_dim, dtype=torch.float32):
        self.k = torch.zeros(num_layers, batch, num_kv_heads, max_len, head_dim, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.max_len = max_len

    def update(self, layer, k_new, v_new, start):
        end = start + k_new.shape[2]
        if start < 0 or end > self.max_len:
            raise ValueError("does not fit")
        self.k[layer, :, :, start:end] = k_new
        self.v[layer, :, :, start:end] = v_new
        return k_new, v_new
''',
        # Always writes at position 0 (ignores start).
        '''
class StaticKVCache:
    def __init__(self, num_layers, batch, num_kv_heads, max_len, head_dim, dtype=torch.float32):
        self.k = torch.zeros(num_layers, batch, num_kv_heads, max_len, head_dim, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.max_len = max_len

    def update(self, layer, k_new, v_new, start):
        t = k_new.shape[2]
        if start < 0 or start + t > self.max_len:
            raise ValueError("does not fit")
        self.k[layer, :, :, :t] = k_new
        self.v[layer, :, :, :t] = v_new
        return self.k[layer, :, :, :start + t], self.v[layer, :, :, :start + t]
''',
        # Returns copies (and never checks the bounds).
        '''
class StaticKVCache:
    def __init__(self, num_layers, batch, num_kv_heads, max_len, head_dim, dtype=torch.float32):
        self.k = torch.zeros(num_layers, batch, num_kv_heads, max_len, head_dim, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.max_len = max_len

    def update(self, layer, k_new, v_new, start):
        end = start + k_new.shape[2]
        self.k[layer, :, :, start:end] = k_new
        self.v[layer, :, :, start:end] = v_new
        return self.k[layer, :, :, :end].clone(), self.v[layer, :, :, :end].clone()
''',
        # Ignores the dtype argument.
        '''
class StaticKVCache:
    def __init__(self, num_layers, batch, num_kv_heads, max_len, head_dim, dtype=torch.float32):
        self.k = torch.zeros(num_layers, batch, num_kv_heads, max_len, head_dim)
        self.v = torch.zeros_like(self.k)
        self.max_len = max_len

    def update(self, layer, k_new, v_new, start):
        end = start + k_new.shape[2]
        if start < 0 or end > self.max_len:
            raise ValueError("does not fit")
        self.k[layer, :, :, start:end] = k_new
        self.v[layer, :, :, start:end] = v_new
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]
''',
        # Hard-coded to the visible example (a prompt at position 0): returns the positions
        # just written, 0 .. T-1, whatever start is.
        '''
class StaticKVCache:
    def __init__(self, num_layers, batch, num_kv_heads, max_len, head_dim, dtype=torch.float32):
        self.k = torch.zeros(num_layers, batch, num_kv_heads, max_len, head_dim, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.max_len = max_len

    def update(self, layer, k_new, v_new, start):
        t = k_new.shape[2]
        if start < 0 or start + t > self.max_len:
            raise ValueError("does not fit")
        self.k[layer, :, :, start:start + t] = k_new
        self.v[layer, :, :, start:start + t] = v_new
        return self.k[layer, :, :, :t], self.v[layer, :, :, :t]
''',
        # The library call: transformers' DynamicCache does the bookkeeping (it grows by
        # concatenation: copies, and no bound on the length).
        '''
from transformers import DynamicCache


class StaticKVCache:
    def __init__(self, num_layers, batch, num_kv_heads, max_len, head_dim, dtype=torch.float32):
        self.k = torch.zeros(num_layers, batch, num_kv_heads, max_len, head_dim, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.max_len = max_len
        self.cache = DynamicCache()

    def update(self, layer, k_new, v_new, start):
        return self.cache.update(k_new, v_new, layer)
''',
    ],
    "quantize_kv": _QUANTIZE_KV_MUTANTS,
}

# Trivial answers the visible tests must already reject.
SHORTCUTS = {
    "quantize_kv": [
        # Rounds x itself, with scale 1.
        """
def quantize_kv(x, scale=None):
    return x.round().clamp(-127, 127).to(torch.int8), torch.ones(*x.shape[:-1], 1)


def dequantize_kv(q, scale, dtype=torch.float32):
    return (q.float() * scale).to(dtype)
""",
        # Keeps the floats (nothing is quantized).
        """
def quantize_kv(x, scale=None):
    return x.clone(), torch.ones(*x.shape[:-1], 1)


def dequantize_kv(q, scale, dtype=torch.float32):
    return q.to(dtype)
""",
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "kv_cache_size": ["inferlab.engine.kv_cache:kv_cache_bytes",
                      "inferlab.engine.kv_cache:kv_bytes_per_token"],
    "quantize_kv": ["inferlab.compress.quant:absmax_quantize",
                    "inferlab.compress.quant:absmax_dequantize"],
}
