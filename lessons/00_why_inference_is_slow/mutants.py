"""Plausible wrong answers for lesson 00; each passes the visible tests and fails the hidden
ones."""

MUTANTS = {
    "llama_parameter_count": [
        # Forgets grouped-query attention: k and v as wide as q.
        '''
def llama_parameter_count(cfg):
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    layer = 4 * h * h + 3 * h * i + 2 * h
    emb = cfg["vocab_size"] * h
    return cfg["num_hidden_layers"] * layer + emb + h + (0 if cfg["tie_word_embeddings"] else emb)
''',
        # Always counts a separate lm_head.
        '''
def llama_parameter_count(cfg):
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    kv = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])
    layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return cfg["num_hidden_layers"] * layer + 2 * cfg["vocab_size"] * h + h
''',
    ],
    "decode_tokens_per_s_bound": [
        # No compute limit.
        '''
def decode_tokens_per_s_bound(n_params, bytes_per_param, bandwidth, peak_flops, batch_size=1):
    return batch_size * bandwidth / (n_params * bytes_per_param)
''',
        # Batching does not help.
        '''
def decode_tokens_per_s_bound(n_params, bytes_per_param, bandwidth, peak_flops, batch_size=1):
    return min(bandwidth / (n_params * bytes_per_param), peak_flops / (2 * n_params))
''',
    ],
    "monthly_gpu_cost": [
        # Ignores utilisation (and never validates).
        '''
def monthly_gpu_cost(queries_per_day, tokens_per_query, tokens_per_s, dollars_per_hour,
                     utilization=1.0, days=30):
    return queries_per_day * tokens_per_query / tokens_per_s / 3600 * dollars_per_hour * days
''',
        # Multiplies by utilisation instead of dividing.
        '''
def monthly_gpu_cost(queries_per_day, tokens_per_query, tokens_per_s, dollars_per_hour,
                     utilization=1.0, days=30):
    if tokens_per_s <= 0 or utilization <= 0:
        raise ValueError("bad input")
    return (queries_per_day * tokens_per_query / tokens_per_s * utilization / 3600
            * dollars_per_hour * days)
''',
    ],
}
