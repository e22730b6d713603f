"""Plausible wrong answers for lesson 00; each passes the visible tests and fails the hidden
ones."""
from pathlib import Path

CONTEXT = ("import time\nimport torch\n"
           "from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM\n"
           "from inferlab.lab.bench import synchronize\n"
           "from inferlab.lab.generation import StepTimes\n")

# the given helper of the timed_greedy cell, which every answer to it keeps: read from the lesson
# itself, so the mutants always carry the lesson's own version
_LESSON = Path(__file__).with_name("00_why_inference_is_slow.py").read_text()
_TINY = "\n" + _LESSON[_LESSON.index("def tiny_llama"):_LESSON.index("\n\n\n@torch.no_grad()")] + "\n"

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
        # Hard-coded to the visible example: Llama-2-7B's count.
        '''
def llama_parameter_count(cfg):
    return 6_738_415_616
''',
    ],
    "timed_greedy": [
        # No cache: every step runs the whole sequence again (same tokens, quadratic work).
        _TINY + '''
@torch.no_grad()
def timed_greedy(model, input_ids, new_tokens):
    if new_tokens < 1:
        raise ValueError("new_tokens must be at least 1")
    device = next(model.parameters()).device
    ids = input_ids.to(device)
    start = time.perf_counter()
    token = model(ids).logits[:, -1].argmax(-1, keepdim=True)
    synchronize(device)
    prefill_s = time.perf_counter() - start
    token_ids, decode_s = [token.item()], []
    for _ in range(new_tokens - 1):
        ids = torch.cat([ids, token], dim=1)
        start = time.perf_counter()
        token = model(ids).logits[:, -1].argmax(-1, keepdim=True)
        synchronize(device)
        decode_s.append(time.perf_counter() - start)
        token_ids.append(token.item())
    return StepTimes(prefill_s, decode_s, input_ids.shape[1], token_ids)
''',
        # The clock starts once: every "step" time is the time since the prefill.
        _TINY + '''
@torch.no_grad()
def timed_greedy(model, input_ids, new_tokens):
    if new_tokens < 1:
        raise ValueError("new_tokens must be at least 1")
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    cache = DynamicCache(config=model.config)
    start = time.perf_counter()
    out = model(input_ids, past_key_values=cache, use_cache=True)
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    synchronize(device)
    prefill_s = time.perf_counter() - start
    token_ids, decode_s = [token.item()], []
    start = time.perf_counter()
    for _ in range(new_tokens - 1):
        out = model(token, past_key_values=cache, use_cache=True)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        synchronize(device)
        decode_s.append(time.perf_counter() - start)
        token_ids.append(token.item())
    return StepTimes(prefill_s, decode_s, input_ids.shape[1], token_ids)
''',
        # The library call the exercise replaces, with the time split evenly afterwards.
        _TINY + '''
@torch.no_grad()
def timed_greedy(model, input_ids, new_tokens):
    if new_tokens < 1:
        raise ValueError("new_tokens must be at least 1")
    start = time.perf_counter()
    out = model.generate(input_ids, max_new_tokens=new_tokens, do_sample=False,
                         attention_mask=torch.ones_like(input_ids))
    each = (time.perf_counter() - start) / new_tokens
    return StepTimes(each, [each] * (new_tokens - 1), input_ids.shape[1],
                     out[0, input_ids.shape[1]:].tolist())
''',
        # Forgets new_tokens = 1 (always decodes at least one step) and never validates.
        _TINY + '''
@torch.no_grad()
def timed_greedy(model, input_ids, new_tokens):
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    cache = DynamicCache(config=model.config)
    start = time.perf_counter()
    out = model(input_ids, past_key_values=cache, use_cache=True)
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    synchronize(device)
    prefill_s = time.perf_counter() - start
    token_ids, decode_s = [token.item()], []
    while True:
        start = time.perf_counter()
        out = model(token, past_key_values=cache, use_cache=True)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        synchronize(device)
        decode_s.append(time.perf_counter() - start)
        token_ids.append(token.item())
        if len(token_ids) >= new_tokens:
            break
    return StepTimes(prefill_s, decode_s, input_ids.shape[1], token_ids)
''',
        # Hard-coded to the visible example: its tokens and made-up times, no forward pass.
        _TINY + '''
@torch.no_grad()
def timed_greedy(model, input_ids, new_tokens):
    if new_tokens < 1:
        raise ValueError("new_tokens must be at least 1")
    token_ids = [2, 4, 42, 91, 69, 76][:new_tokens]
    return StepTimes(1e-3, [1e-4] * (new_tokens - 1), input_ids.shape[1], token_ids)
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
        # Hard-coded to the visible example: Llama-2-7B in fp16 on an H100.
        '''
def decode_tokens_per_s_bound(n_params, bytes_per_param, bandwidth, peak_flops, batch_size=1):
    return 3.35e12 / (6.74e9 * 2)
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
        # Hard-coded to the visible example's answer.
        '''
def monthly_gpu_cost(queries_per_day, tokens_per_query, tokens_per_s, dollars_per_hour,
                     utilization=1.0, days=30):
    if tokens_per_s <= 0 or utilization <= 0:
        raise ValueError("bad input")
    return 600.0
''',
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "decode_tokens_per_s_bound": ["inferlab.lab.bench:decode_roofline"],
}
