"""Plausible wrong answers for lesson 11; each passes the visible tests and fails the hidden
ones."""

MUTANTS = {
    "parse_metrics": [
        # Splits labels on every comma and takes the last field as the value.
        '''
def parse_metrics(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        labels = {}
        if "{" in head:
            name, inner = head.split("{", 1)
            for pair in inner.rstrip("}").split(","):
                if pair:
                    key, val = pair.split("=", 1)
                    labels[key] = val.strip('"')
        else:
            name = head
        out.append((name, labels, float(value)))
    return out
''',
        # Handles commas in quotes but never unescapes.
        '''
def parse_metrics(text):
    import re
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([^{\\s]+)(?:\\{(.*)\\})?\\s+(\\S+)', line)
        labels = dict(re.findall(r'(\\w+)="((?:[^"\\\\]|\\\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out
''',
        # Splits the line on whitespace (breaks on spaces inside label values).
        '''
def parse_metrics(text):
    out = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        head, value = parts[0], parts[1]
        labels = {}
        if "{" in head:
            name, inner = head.split("{", 1)
            for pair in inner.rstrip("}").split(","):
                if pair:
                    key, val = pair.split("=", 1)
                    labels[key] = val.strip('"')
        else:
            name = head
        out.append((name, labels, float(value)))
    return out
''',
        # Hard-coded to the visible example's shape: name{key="value"} value, one label at most.
        '''
def parse_metrics(text):
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        if "{" in head:
            name, label = head.rstrip("}").split("{")
            key, val = label.split("=")
            out.append((name, {key: val.strip('"')}, float(value)))
        else:
            out.append((head, {}, float(value)))
    return out
''',
    ],
    "histogram_quantile": [
        # The bucket's upper bound, no interpolation.
        '''
def histogram_quantile(q, buckets):
    rank = q * buckets[-1][1]
    lower = 0.0
    for bound, count in buckets:
        if count >= rank:
            return lower if bound == float("inf") else bound
        lower = bound
    return lower
''',
        # Returns infinity when the rank lands in the +Inf bucket.
        '''
def histogram_quantile(q, buckets):
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return bound
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower
''',
        # The first bucket starts at its own bound instead of 0.
        '''
def histogram_quantile(q, buckets):
    rank = q * buckets[-1][1]
    lower, below = buckets[0][0], 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower
''',
        # Hard-coded to the visible example's answer: the first bucket's bound.
        '''
def histogram_quantile(q, buckets):
    return buckets[0][0]
''',
        # The library call: NumPy's interp over the (count, bound) points, without the (0, 0)
        # start: a rank in the first bucket comes out as its upper bound.
        '''
def histogram_quantile(q, buckets):
    import numpy as np
    finite = [(b, c) for b, c in buckets if b != float("inf")]
    counts = [c for _, c in finite]
    bounds = [b for b, _ in finite]
    return float(np.interp(q * buckets[-1][1], counts, bounds))
''',
    ],
    "tp_mlp_partials": [
        # Interleaved rows instead of contiguous blocks (the sum is still right).
        '''
def tp_mlp_partials(x, gate_w, up_w, down_w, world):
    import torch.nn.functional as F
    if gate_w.shape[0] % world:
        raise ValueError("not divisible")
    out = []
    for rank in range(world):
        h = F.silu(x @ gate_w[rank::world].T) * (x @ up_w[rank::world].T)
        out.append(h @ down_w[:, rank::world].T)
    return out
''',
        # Always two ranks.
        '''
def tp_mlp_partials(x, gate_w, up_w, down_w, world):
    import torch.nn.functional as F
    if gate_w.shape[0] % world:
        raise ValueError("not divisible")
    size = gate_w.shape[0] // 2
    out = []
    for rank in range(2):
        block = slice(rank * size, (rank + 1) * size)
        h = F.silu(x @ gate_w[block].T) * (x @ up_w[block].T)
        out.append(h @ down_w[:, block].T)
    return out
''',
        # No divisibility check: silently drops the remainder.
        '''
def tp_mlp_partials(x, gate_w, up_w, down_w, world):
    import torch.nn.functional as F
    size = gate_w.shape[0] // world
    out = []
    for rank in range(world):
        block = slice(rank * size, (rank + 1) * size)
        h = F.silu(x @ gate_w[block].T) * (x @ up_w[block].T)
        out.append(h @ down_w[:, block].T)
    return out
''',
        # The library call: torch.chunk (an uneven split gives fewer chunks, no error).
        '''
def tp_mlp_partials(x, gate_w, up_w, down_w, world):
    import torch.nn.functional as F
    out = []
    for g, u, d in zip(gate_w.chunk(world), up_w.chunk(world), down_w.chunk(world, dim=1)):
        out.append((F.silu(x @ g.T) * (x @ u.T)) @ d.T)
    return out
''',
    ],
    "ring_allreduce_bytes": [
        # The whole tensor, whatever the number of ranks.
        '''
def ring_allreduce_bytes(n_bytes, world):
    return n_bytes
''',
        # Sends the whole tensor to every other rank.
        '''
def ring_allreduce_bytes(n_bytes, world):
    return (world - 1) * n_bytes
''',
        # Hard-coded to the visible example: the tensor once for two ranks (0 for one).
        '''
def ring_allreduce_bytes(n_bytes, world):
    return 0 if world == 1 else n_bytes
''',
    ],
    "cost_per_million_tokens": [
        # Multiplies by utilisation instead of dividing.
        '''
def cost_per_million_tokens(dollars_per_hour, tokens_per_s, utilization=1.0):
    if tokens_per_s <= 0 or utilization <= 0:
        raise ValueError("must be positive")
    return dollars_per_hour * utilization / (tokens_per_s * 3600) * 1e6
''',
        # Ignores utilisation and never validates.
        '''
def cost_per_million_tokens(dollars_per_hour, tokens_per_s, utilization=1.0):
    return dollars_per_hour / (tokens_per_s * 3600) * 1e6
''',
        # Hard-coded to the visible example's answer.
        '''
def cost_per_million_tokens(dollars_per_hour, tokens_per_s, utilization=1.0):
    if tokens_per_s <= 0 or utilization <= 0:
        raise ValueError("must be positive")
    return 1.0
''',
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "parse_metrics": ["inferlab.serving.metrics:parse", "inferlab.serving.metrics:parse_labels"],
    "tp_mlp_partials": ["inferlab.serving.parallel:TensorParallelMLP"],
}
