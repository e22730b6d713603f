"""Plausible wrong answers for lesson 05; each passes the visible tests, fails the hidden ones."""

CONTEXT = "import torch\n"

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
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "kv_cache_size": ["inferlab.engine.kv_cache:kv_cache_bytes",
                      "inferlab.engine.kv_cache:kv_bytes_per_token"],
}
