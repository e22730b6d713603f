# %% [markdown]
# # 05 · The KV cache
#
# **Time:** running every cell in full mode took under a minute on a 2-core CPU and under a minute
# on an H200 GPU (measured), plus your reading and exercises. **Prerequisites:** lesson 00;
# self-attention with queries, keys, values and a causal mask.
#
# Lesson 00 showed that decoding produces one token per forward pass. This lesson looks inside that
# pass: at step `n`, attention needs the **keys and values of all `n` previous tokens**.
# Recomputing them every step makes token `n` cost O(n) and a whole answer O(n²). Keeping them - the
# *KV cache* - makes each step compute K and V for the one new token only.
#
# You will:
# 1. **measure** the cost of a decode step against the sequence length, without and with a cache;
# 2. implement the **KV-cache size formula** (graded) and check it against memory that is really
#    allocated, including what grouped-query attention (GQA) saves;
# 3. implement a **static KV cache** (graded) - the preallocated layout gpt-fast uses - and generate
#    with it through a forward pass written out in ~25 lines, token for token equal to
#    `transformers`;
# 4. **quantize the cache to int8** (graded): one scale per token and head, then measure the memory
#    it saves and what it costs in quality on your machine.
#
# The cache you write here is the first piece of the course's engine, `inferlab.engine`; lessons
# 06-08 add batching, paged blocks and speculation on top of it.

# %%
import time

import torch
import torch.nn.functional as F

from inferlab.engine import LlamaWeights
from inferlab.engine.weights import rms_norm, rotate_half
from inferlab.lab import plots, recap
from inferlab.lab.bench import default_device, device_name, peak_memory, pin_threads, time_fn
from inferlab.lab.models import load_model
from inferlab.lab.settings import fast_mode, grading, pick

threads = pin_threads()
device = default_device()                      # "cuda" when PyTorch sees a GPU, else "cpu"
model, tokenizer = load_model(device=device)   # fp32 on either device
weights = LlamaWeights.from_hf(model)          # the same tensors, Q/K/V fused into one matrix
cfg = weights.config
print(f"{device_name(device)}; fast mode: {fast_mode()}; grading: {grading()}")
print(f"SmolLM2-135M: {cfg.num_layers} layers, {cfg.num_heads} query heads, "
      f"{cfg.num_kv_heads} KV heads, head dim {cfg.head_dim}")

# %% [markdown]
# ## 1 · A forward pass, written out
# To see where the cache enters, here is the whole model as plain tensor operations. `cache` is any
# object with `update(layer, k_new, v_new, start)` that stores the new keys/values at positions
# `start..start+T-1` and returns **all** keys/values so far. Without a cache we pass a fresh one
# every step, so the model recomputes K and V for the whole sequence. Everything runs on
# `device`: the GPU when there is one, else the CPU.

# %%
ROPE_LEN = 4096
_freqs = torch.arange(ROPE_LEN, dtype=torch.float32)[:, None] * weights.inv_freq.cpu()[None]
COS = torch.cat([_freqs, _freqs], -1).cos().to(device)     # rotary tables, beside the weights
SIN = torch.cat([_freqs, _freqs], -1).sin().to(device)


def forward(ids: torch.Tensor, cache, start: int, last_only: bool = True) -> torch.Tensor:
    """Logits of the last position (or of all ``T``, ``[T, vocab]``, with ``last_only=False``)
    for tokens ``ids [1, T]`` at positions ``start..start+T-1``."""
    T = ids.shape[1]
    h = F.embedding(ids, weights.embed)                                # [1, T, hidden]
    cos, sin = COS[start:start + T], SIN[start:start + T]
    mask = torch.ones(T, start + T, dtype=torch.bool, device=ids.device)
    mask = mask.tril(start)                                # query i sees keys <= start+i
    kv = cfg.num_kv_heads * cfg.head_dim
    split = [cfg.num_heads * cfg.head_dim, kv, kv]
    for i, layer in enumerate(weights.layers):
        x = rms_norm(h, layer.input_norm, cfg.rms_norm_eps)
        q, k, v = F.linear(x, layer.qkv).split(split, dim=-1)
        q = q.view(1, T, cfg.num_heads, cfg.head_dim).transpose(1, 2)   # [1, heads, T, d]
        k = k.view(1, T, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        v = v.view(1, T, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin   # rotary positions
        k_all, v_all = cache.update(i, k, v, start)                     # <- the KV cache
        o = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, enable_gqa=True)
        h = h + F.linear(o.transpose(1, 2).reshape(1, T, -1), layer.o)
        x = rms_norm(h, layer.post_norm, cfg.rms_norm_eps)
        gate, up = F.linear(x, layer.gate_up).chunk(2, dim=-1)
        h = h + F.linear(F.silu(gate) * up, layer.down)
    h = h[:, -1] if last_only else h[0]
    return F.linear(rms_norm(h, weights.norm, cfg.rms_norm_eps), weights.lm_head)


class NoCache:
    """Remembers nothing: every call must bring the keys/values of the whole sequence."""

    def update(self, layer, k_new, v_new, start):
        assert start == 0, "without a cache every step recomputes from position 0"
        return k_new, v_new


class ConcatCache:
    """Grows by concatenation (as transformers' DynamicCache does): simple, but every step
    allocates new, longer tensors and copies the old ones."""

    def __init__(self):
        self.k, self.v = {}, {}

    def update(self, layer, k_new, v_new, start):
        if layer in self.k:
            k_new = torch.cat([self.k[layer], k_new], dim=2)
            v_new = torch.cat([self.v[layer], v_new], dim=2)
        self.k[layer], self.v[layer] = k_new, v_new
        return k_new, v_new


def on_device(cache):
    """Move every tensor a cache object holds (``self.k``, ``self.v``, ...) to ``device``."""
    for name, value in vars(cache).items():
        if isinstance(value, torch.Tensor):
            setattr(cache, name, value.to(device))
    return cache

# %% [markdown]
# ## 2 · Cost per token against sequence length, measured
# Without a cache, producing the token after `n` tokens means a forward pass over all `n`. With a
# cache it is a pass over **one** token that reads the `n` cached keys and values. Below, each
# point is the median time of one such step.

# %%
text = "The history of computing is a story of machines that remember. " * 400
ids_all = tokenizer(text, return_tensors="pt").input_ids.to(device)
lengths = pick([16, 32, 64, 128, 256, 512], [8, 16, 32, 64])
if device == "cuda":          # a GPU's pass has a large fixed cost: longer contexts show the climb
    lengths += pick([1024, 2048, 4096], [])
repeats = pick(5, 2)
no_cache_ms, cached_ms = [], []
with torch.inference_mode():
    for n in lengths:
        ids = ids_all[:, :n]
        uncached = time_fn(lambda: forward(ids, NoCache(), 0), repeats=repeats, device=device)
        no_cache_ms.append(uncached.median * 1e3)
        filled = ConcatCache()
        forward(ids[:, :-1], filled, 0)                                 # positions 0..n-2 cached

        def one_step():
            step_cache = ConcatCache()                                  # a copy, so repeats agree
            step_cache.k, step_cache.v = dict(filled.k), dict(filled.v)
            return forward(ids[:, -1:], step_cache, n - 1)
        cached_ms.append(time_fn(one_step, repeats=repeats, device=device).median * 1e3)
        print(f"n = {n:>4}: without cache {no_cache_ms[-1]:8.1f} ms/token   "
              f"with cache {cached_ms[-1]:6.1f} ms/token")
plots.lines(lengths, {"without KV cache": no_cache_ms, "with KV cache": cached_ms},
            title=f"Cost of producing token n+1 ({device_name(device)})", xaxis="tokens so far (n)",
            yaxis="ms per token").show()

# %% [markdown]
# The uncached curve climbs with `n` (a forward pass over `n` tokens), the cached one stays almost
# flat: its weights cost is the same every step and the attention over `n` cached keys is a small
# part of it at these lengths. On a GPU, a pass also has a large fixed cost - launching the few
# hundred small kernels of 30 layers one after another - so there the uncached curve stays near the
# cached one until `n` is long enough for the arithmetic to outweigh it (which is why a GPU run
# measures longer contexts too; lesson 09 removes much of that fixed cost with CUDA graphs).
# Summing each curve over a whole answer gives the generation time of `n` tokens: O(n²) without
# a cache, O(n) with one.

# %%
gen_no_cache = [sum(no_cache_ms[: i + 1]) for i in range(len(lengths))]
gen_cached = [sum(cached_ms[: i + 1]) for i in range(len(lengths))]
speedup = [a / b for a, b in zip(no_cache_ms, cached_ms)]
print("speed-up of one step from caching: "
      + ", ".join(f"n={n}: {s:.1f}x" for n, s in zip(lengths, speedup)))
slope = (no_cache_ms[-1] - no_cache_ms[0]) / (lengths[-1] - lengths[0])
print(f"without a cache each extra token of context adds {slope:.2f} ms to every later step "
      "(measured slope)")
recap.note(f"decode step at {lengths[-1]} tokens of context: speed-up from the KV cache",
           speedup[-1], "x", device=device)

# %% [markdown]
# ## 3 · What the cache costs: memory
# Every layer stores, for every token, a key and a value vector per **KV head**:
#
# `bytes = layers x 2 (K and V) x KV heads x head dim x bytes per value x tokens x batch`
#
# ### Exercise 1 - the KV-cache size formula (1 point)

# %% solution id=kv_cache_size
def kv_cache_size(num_layers: int, num_kv_heads: int, head_dim: int, seq_len: int,
                  batch: int = 1, bytes_per_value: float = 2) -> float:
    """Bytes of keys and values for ``batch`` sequences of ``seq_len`` tokens."""
    ### BEGIN SOLUTION
    return num_layers * 2 * num_kv_heads * head_dim * bytes_per_value * seq_len * batch
    ### END SOLUTION

# %% tests id=test_kv_cache_size points=1
# Llama-2-7B (32 layers, 32 KV heads of 128), fp16, one sequence of 4,096 tokens: 2 GiB.
assert kv_cache_size(32, 32, 128, 4096) == 2 * 1024 ** 3
### BEGIN HIDDEN TESTS
assert kv_cache_size(30, 3, 64, 1, batch=1, bytes_per_value=4) == 46080    # SmolLM2, fp32, 1 token
# Llama-3-8B (GQA: 8 KV heads)
assert kv_cache_size(32, 8, 128, 8192, batch=16) == 32 * 2 * 8 * 128 * 2 * 8192 * 16
assert kv_cache_size(32, 32, 128, 4096, bytes_per_value=1) == 1024 ** 3    # int8 halves it
assert kv_cache_size(2, 1, 4, 10, batch=3, bytes_per_value=2) == 2 * 2 * 1 * 4 * 2 * 10 * 3
### END HIDDEN TESTS

# %% [markdown]
# Check it against memory that was really allocated: run `transformers` on a prompt and count the
# bytes of the cache tensors it keeps, then watch your device's memory grow while a cache is
# allocated (on a GPU: the bytes PyTorch's allocator hands out; on a CPU: the process's memory).

# %%
n_check = pick(512, 128)
with torch.inference_mode():
    out = model(ids_all[:, :n_check], use_cache=True)
layers = out.past_key_values.layers
stored = sum(t.numel() * t.element_size() for layer in layers for t in (layer.keys, layer.values))
predicted = kv_cache_size(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, n_check,
                          bytes_per_value=4)
print(f"transformers' cache after {n_check} tokens: {stored / 2**20:.2f} MiB; your formula: "
      f"{predicted / 2**20:.2f} MiB ({'equal' if stored == predicted else 'DIFFERENT'})")

big_batch, big_len = pick(8, 4), pick(1024, 512)
_, grown = peak_memory(lambda: torch.ones(cfg.num_layers, 2, big_batch, cfg.num_kv_heads, big_len,
                                          cfg.head_dim, device=device), device=device)
want = kv_cache_size(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, big_len, batch=big_batch,
                     bytes_per_value=4)
where = "process memory" if device == "cpu" else "GPU memory allocated"
print(f"allocating a cache for {big_batch} x {big_len} tokens: {where} grew "
      f"{grown / 2**20:.1f} MiB, formula {want / 2**20:.1f} MiB")

# %% [markdown]
# ### Grouped-query attention saves cache
# SmolLM2 has 9 query heads but only **3** KV heads: each KV head serves a group of 3 query heads
# (GQA, Ainslie et al. 2023). With ordinary multi-head attention (MHA, one KV head per query head)
# its cache would be 3x larger. Llama-2-7B uses MHA; Llama-3-8B uses GQA with 8 KV heads for 32.

# %%
MODELS = {  # (layers, query heads, KV heads, head dim) from the models' published configs
    "SmolLM2-135M (GQA 9/3)": (30, 9, 3, 64),
    "Llama-2-7B (MHA 32/32)": (32, 32, 32, 128),
    "Llama-3-8B (GQA 32/8)": (32, 32, 8, 128),
}
context = 4096
gqa_rows = {}
for name, (nl, nq, nkv, d) in MODELS.items():
    as_is = kv_cache_size(nl, nkv, d, context)
    as_mha = kv_cache_size(nl, nq, d, context)
    gqa_rows[name] = (as_is, as_mha)
    print(f"{name:<26} fp16, {context} tokens: {as_is / 2**20:8.0f} MiB   "
          f"(with MHA: {as_mha / 2**20:8.0f} MiB, {as_mha / as_is:.0f}x)")
plots.grouped_bars(list(gqa_rows), {"as built": [a / 2**20 for a, _ in gqa_rows.values()],
                                    "if it used MHA": [b / 2**20 for _, b in gqa_rows.values()]},
                   title=f"KV cache for one {context}-token sequence, fp16", yaxis="MiB").show()

# %% [markdown]
# Try it: how big does the cache get for a model, a context length and a batch?

# %%
import ipywidgets as w

from inferlab.lab.widgets import guarded, show

model_pick = w.Dropdown(options=list(MODELS), description="model")
ctx_pick = w.IntSlider(value=4096, min=128, max=131072, step=128, description="context")
batch_pick = w.IntSlider(value=8, min=1, max=256, description="batch")
bytes_pick = w.Dropdown(options={"fp16": 2, "fp8/int8": 1, "fp32": 4}, value=2,
                        description="cache dtype")
kv_out = w.Output()


def draw_kv():
    nl, nq, nkv, d = MODELS[model_pick.value]
    sizes = [kv_cache_size(nl, nkv, d, c, batch_pick.value, bytes_pick.value) / 2**30
             for c in (ctx_pick.value // 4, ctx_pick.value // 2, ctx_pick.value)]
    print(f"{model_pick.value}: {sizes[-1]:.2f} GiB of KV cache for "
          f"{batch_pick.value} x {ctx_pick.value} tokens")
    plots.bars([f"{ctx_pick.value // 4}", f"{ctx_pick.value // 2}", f"{ctx_pick.value}"], sizes,
               title="KV cache size by context length", yaxis="GiB").show()


update_kv = guarded(kv_out, draw_kv)
for control in (model_pick, ctx_pick, batch_pick, bytes_pick):
    control.observe(update_kv, names="value")
update_kv()
show(w.VBox([model_pick, ctx_pick, batch_pick, bytes_pick, kv_out]))

# %% [markdown]
# ## 4 · Exercise 2 - a static KV cache (3 points)
# gpt-fast (PyTorch team, 2023) allocates the cache **once**, at its maximum length, as one tensor
# per K and V: `[layers, batch, KV heads, max_len, head dim]`. Allocating once means no copying as
# the sequence grows and fixed tensor shapes (which lesson 09's CUDA graphs need).
#
# Implement `StaticKVCache`:
# * `__init__(num_layers, batch, num_kv_heads, max_len, head_dim, dtype)` allocates `self.k` and
#   `self.v` (zeros) of that shape;
# * `update(layer, k_new, v_new, start)` - `k_new`, `v_new` are `[batch, KV heads, T, head dim]` for
#   positions `start .. start+T-1` - writes them into the cache and returns the keys and values of
#   positions `0 .. start+T-1` (views into the cache, not copies);
# * raises `ValueError` if `start < 0` or the new tokens would go past `max_len`.

# %% solution id=static_kv_cache
class StaticKVCache:
    """A preallocated KV cache: one ``[layers, batch, kv_heads, max_len, head_dim]`` tensor each."""

    def __init__(self, num_layers, batch, num_kv_heads, max_len, head_dim, dtype=torch.float32):
        ### BEGIN SOLUTION
        shape = (num_layers, batch, num_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        self.max_len = max_len
        ### END SOLUTION

    def update(self, layer, k_new, v_new, start):
        ### BEGIN SOLUTION
        end = start + k_new.shape[2]
        if start < 0 or end > self.max_len:
            raise ValueError(f"positions {start}..{end - 1} do not fit a cache of {self.max_len}")
        self.k[layer, :, :, start:end] = k_new
        self.v[layer, :, :, start:end] = v_new
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]
        ### END SOLUTION

# %% tests id=test_static_kv_cache points=3
import torch

torch.manual_seed(0)
cache = StaticKVCache(num_layers=2, batch=1, num_kv_heads=3, max_len=16, head_dim=4)
assert cache.k.shape == (2, 1, 3, 16, 4) and cache.v.shape == (2, 1, 3, 16, 4)
k0, v0 = torch.randn(1, 3, 5, 4), torch.randn(1, 3, 5, 4)
k, v = cache.update(0, k0, v0, 0)                    # a 5-token prompt into layer 0
assert torch.equal(k, k0) and torch.equal(v, v0)
### BEGIN HIDDEN TESTS
k1, v1 = torch.randn(1, 3, 1, 4), torch.randn(1, 3, 1, 4)
k, v = cache.update(0, k1, v1, 5)                    # one decode step appends position 5
assert k.shape == (1, 3, 6, 4), "return positions 0..start+T-1"
assert torch.equal(k[:, :, :5], k0) and torch.equal(k[:, :, 5:], k1)
assert torch.equal(v[:, :, 5:], v1)
assert k.data_ptr() == cache.k[0].data_ptr(), "return a view of the cache, not a copy"
assert torch.count_nonzero(cache.k[1]) == 0, "layer 1 must be untouched"
k2, _ = cache.update(1, k1, v1, 0)
assert torch.equal(k2, k1) and torch.equal(cache.k[0, :, :, 5:6], k1)
for bad_start, n in [(16, 1), (14, 3), (-1, 1)]:
    try:
        cache.update(0, torch.zeros(1, 3, n, 4), torch.zeros(1, 3, n, 4), bad_start)
    except ValueError:
        pass
    else:
        raise AssertionError(f"expected ValueError for start={bad_start}, T={n}")
b = StaticKVCache(1, 2, 1, 8, 2, dtype=torch.float64)
assert b.k.dtype == torch.float64 and b.k.shape == (1, 2, 1, 8, 2)
kb = torch.randn(2, 1, 3, 2, dtype=torch.float64)
assert torch.equal(b.update(0, kb, kb, 2)[0][:, :, 2:], kb)
### END HIDDEN TESTS

# %% [markdown]
# ### Generate with your cache
# Prefill the prompt in one pass, then decode one token per pass. The result must equal
# `transformers`' own greedy generation token for token (both in fp32). The cache is built by your
# class (on the CPU, as in the tests) and then moved to `device` with `on_device`.

# %%
def generate(prompt: str, n_new: int, use_cache: bool = True,
             cache_class=None) -> tuple[list[int], list[float]]:
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    tokens, step_s = ids[0].tolist(), []
    cache = on_device((cache_class or StaticKVCache)(cfg.num_layers, 1, cfg.num_kv_heads,
                                                     len(tokens) + n_new, cfg.head_dim))
    with torch.inference_mode():
        for step in range(n_new):
            start = time.perf_counter()
            if not use_cache:
                logits = forward(torch.tensor([tokens], device=device), NoCache(), 0)
            elif step == 0:
                logits = forward(torch.tensor([tokens], device=device), cache, 0)
            else:
                logits = forward(torch.tensor([tokens[-1:]], device=device), cache,
                                 len(tokens) - 1)
            tokens.append(int(logits.argmax(-1)))            # int() waits for the device
            step_s.append(time.perf_counter() - start)
    return tokens[ids.shape[1]:], step_s


prompt = "The three most important ideas in computer science are"
n_new = pick(48, 12)
mine, mine_s = generate(prompt, n_new)
plain, plain_s = generate(prompt, n_new, use_cache=False)
enc = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
with torch.inference_mode():
    ref = model.generate(enc, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False)
ref = ref[0, enc.shape[1]:].tolist()
print(repr(tokenizer.decode(mine)))
print(f"your cache == transformers: {mine == ref}; no cache == transformers: {plain == ref}")
print(f"{n_new} tokens: {sum(mine_s):.2f} s with your cache, {sum(plain_s):.2f} s without "
      f"({sum(plain_s) / sum(mine_s):.1f}x)")
plots.lines(range(1, n_new + 1), {"without cache": [s * 1e3 for s in plain_s],
                                  "with your static cache": [s * 1e3 for s in mine_s]},
            title="Time of each generation step", xaxis="step", yaxis="ms").show()

# %% [markdown]
# The first step with a cache is the prefill (the whole prompt), so it costs about what an uncached
# step costs; every later step is cheap. In the engine (`inferlab.engine.kv_cache`), the same idea
# appears as `StaticKVCache` with one row per *sequence slot*, so that many requests share one
# preallocated tensor (`LLMEngine(model, tokenizer, EngineConfig(kv_cache="static"))`); lesson 07
# replaces rows by blocks.

# %% [markdown]
# ### The engine's decode step against the memory roofline
# The course engine keeps the same static layout and computes the same forward pass, with the Q/K/V
# and gate/up matrices fused and, on a GPU, each decode step replayed from a CUDA graph with the
# engine's own attention kernels. Either way a decode step must read every weight once, plus the
# cached keys and values of the sequence: that many bytes, divided by the step's time, is the
# bandwidth the step achieved. Below, your loop and the engine (batch 1, the same prompt, greedy),
# against the bandwidth your device reaches copying a large buffer, measured now.
#
# The roofline counts bytes only. A step also has a fixed cost that does not grow with the size of
# the weights: launching its kernels (or replaying its graph) and the CPU's bookkeeping between
# steps - this timing waits for the device after every step, so that share shows. When the weights
# are small and the memory fast, as for a 135M-parameter model on a large GPU, reading them takes
# less time than that fixed cost, and the step stays far from the roofline. The split printed below
# says which case your device is in.

# %%
from inferlab.engine import EngineConfig, LLMEngine, SamplingParams
from inferlab.engine.kv_cache import kv_bytes_per_token
from inferlab.lab import records
from inferlab.lab.bench import measure_bandwidth
from inferlab.lab.roofline import DecodeRun, decode_contexts, engine_decode_run

bandwidth = measure_bandwidth(device, megabytes=pick(512, 128), repeats=pick(7, 3))
where = device_name(device)
engine = LLMEngine(model, tokenizer, EngineConfig(kv_cache="static", max_model_len=512,
                                                  max_num_seqs=1))
engine_run, engine_out = engine_decode_run(engine, [prompt],
                                           SamplingParams(max_tokens=n_new, ignore_eos=True),
                                           bandwidth, label="the engine, static cache",
                                           device=where, warmup=device != "cpu")
prompt_len = len(tokenizer(prompt).input_ids)
kv_token = kv_bytes_per_token(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim,
                              weights.embed.element_size())
your_run = DecodeRun("your forward + your StaticKVCache", n_new - 1, n_new - 1, sum(mine_s[1:]),
                     weights.bytes_read_per_token,
                     kv_token * sum(decode_contexts(prompt_len, n_new)), bandwidth, where)
print(f"{where}: {bandwidth / 1e9:.1f} GB/s copying memory (measured now); the engine uses "
      f"{engine.runner.attention.name} attention, CUDA graphs "
      f"{'on' if engine.config.cuda_graphs else 'off'}")
for run in (your_run, engine_run):
    print(run.line())
print(f"the engine's tokens equal yours: {engine_out[0].token_ids == mine}")
print(engine_run.breakdown())
if engine_run.fraction < 0.5:
    print(f"At {engine_run.fraction:.0%} of the roofline the step's fixed cost, not memory, sets "
          "the speed here: the weights are read faster than the step can be launched and "
          "bookkept.")
    if device != "cpu":
        big = records.load("engine_gpu")
        best = big["results"]["best"]
        print(f"The engine at its fastest (with lesson 09's matrix-vector kernel) on "
              f"{big['results']['model']} ({records.label(big)}): {best['tok_s']:.0f} tok/s = "
              f"{best['fraction_of_roofline']:.0%} of the roofline - a step reads "
              f"{big['results']['bytes_read_per_token'] / 1e9:.1f} GB there, and the fixed cost "
              "is a small part of it.")
recap.note("engine decode, batch 1, static cache", engine_run.tok_s, "tok/s", device=device)
recap.note("engine decode, batch 1: share of the bandwidth roofline", 100 * engine_run.fraction,
           "%", device=device)

# %% [markdown]
# ## 5 · KV-cache quantization
# ### Why the cache, not the weights, fills memory at scale
# The weights are stored once, whatever the batch. The cache is stored **per token of every
# sequence**:
#
# `bytes per token = layers x 2 (K and V) x KV heads x head dim x bytes per value`
#
# (per layer: `2 x KV heads x head dim x bytes`). Below, for the model in this notebook and for the
# shape of Llama-2-7B (its published config: 32 layers, 32 KV heads of 128, hidden size 4096, MLP
# 11008, vocabulary 32000), computed with your `kv_cache_size`, both in fp16 (2 bytes).

# %%
from inferlab.lab.models import parameter_count, weight_bytes

L2_LAYERS, L2_HIDDEN, L2_MLP, L2_VOCAB = 32, 4096, 11008, 32000
llama2_params = (2 * L2_VOCAB * L2_HIDDEN + L2_HIDDEN                      # embed, lm_head, norm
                 + L2_LAYERS * (4 * L2_HIDDEN ** 2 + 3 * L2_HIDDEN * L2_MLP + 2 * L2_HIDDEN))
SHAPES = {  # name: (layers, KV heads, head dim, parameters)
    "SmolLM2-135M": (cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, parameter_count(model)),
    "Llama-2-7B": (L2_LAYERS, 32, 128, llama2_params),
}
crossover = {}
for name, (nl, nkv, d, params) in SHAPES.items():
    per_token = kv_cache_size(nl, nkv, d, 1)                       # fp16, all layers
    weights_fp16 = params * 2
    crossover[name] = weights_fp16 / per_token
    print(f"{name:<13} {per_token // nl:>6,} B per token per layer, {per_token / 2**10:6.1f} KiB "
          f"per token; fp16 weights {weights_fp16 / 2**30:5.2f} GiB "
          f"({params / 1e9:.3f} B parameters)")
    for batch, ctx in [(1, 4096), (16, 4096), (32, 32768)]:
        cache = kv_cache_size(nl, nkv, d, ctx, batch=batch)
        print(f"    batch {batch:>2} x {ctx:>6} tokens: cache {cache / 2**30:7.2f} GiB = "
              f"{cache / weights_fp16:6.2f}x the weights")
    print(f"    the cache outweighs the weights beyond {crossover[name]:,.0f} tokens in memory "
          "(summed over the batch)")

# %% [markdown]
# Past that point, halving the bytes of each cached value does more for memory than anything done
# to the weights: it doubles the number of tokens (longer contexts, or more sequences in a batch)
# that fit. Storing K and V as **int8** with one floating-point scale per token and head is the
# simplest way to do it. Serving engines offer such caches (vLLM has an fp8 one), and research goes
# lower still (KIVI, Liu et al. 2024: 2 bits, with keys scaled per channel instead of per token).
#
# ### Exercise 3 - int8 quantization of keys and values (3 points)
# Implement **symmetric per-token, per-head** int8 quantization. `x` has the cache's layout
# `[..., head dim]` (for example `[batch, KV heads, tokens, head dim]`); each vector along the last
# dimension - one token in one head - gets its own scale:
# * `quantize_kv(x, scale=None) -> (q, scale)`:
#   * `scale = max|x| / 127` over the last dimension, as **float32** of shape
#     `x.shape[:-1] + (1,)`; a vector that is all zeros gets scale `1.0` (no division by zero);
#   * `q = round(x / scale)` to the **nearest** integer (`torch.round`, not truncation), clamped
#     to `[-127, 127]`, as **int8** of the shape of `x` (-128 is left unused: symmetric);
#   * if `scale` is given (a number or a tensor that broadcasts to `x.shape[:-1] + (1,)`, for
#     example a scale fixed in advance), use it instead; values beyond `±127 x scale` saturate at
#     `±127`. Return the scale used, as float32 of shape `x.shape[:-1] + (1,)`.
#   * Inputs may be float16/bfloat16: compute in float32.
#   * Create any tensor you need on `x.device`: below, the lesson runs your function on its
#     device (the GPU when there is one); the tests use CPU tensors.
# * `dequantize_kv(q, scale, dtype=torch.float32)` returns `q x scale` as `dtype`.
#
# One scale per (token, head) keeps an outlier in one head or one token from coarsening the others,
# and a token's scale never changes once written: appending tokens never re-quantizes the cache.

# %% solution id=quantize_kv
def quantize_kv(x: torch.Tensor, scale=None) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 ``q`` and float32 ``scale``, one per vector of the last dimension: x ~ q * scale."""
    ### BEGIN SOLUTION
    x = x.float()                                              # fp16/bf16 in, fp32 arithmetic
    scale_shape = (*x.shape[:-1], 1)
    if scale is None:
        amax = x.abs().amax(dim=-1, keepdim=True)              # one max per (token, head)
        scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))   # all-zero: scale 1
    else:
        scale = torch.as_tensor(scale, dtype=torch.float32, device=x.device).expand(scale_shape)
    q = torch.round(x / scale)                                 # to nearest, not toward zero
    q = q.clamp(-127, 127)                                     # saturate: int8 would wrap around
    return q.to(torch.int8), scale.contiguous()
    ### END SOLUTION


def dequantize_kv(q: torch.Tensor, scale: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """``q * scale`` as ``dtype``."""
    ### BEGIN SOLUTION
    return (q.to(torch.float32) * scale).to(dtype)
    ### END SOLUTION

# %% tests id=test_quantize_kv points=3
import torch

torch.manual_seed(0)
x = torch.randn(2, 3, 5, 8)                              # [batch, KV heads, tokens, head dim]
q, scale = quantize_kv(x)
assert q.dtype == torch.int8 and q.shape == x.shape
assert scale.dtype == torch.float32 and scale.shape == (2, 3, 5, 1)
back = dequantize_kv(q, scale)
assert back.dtype == torch.float32 and back.shape == x.shape
assert (back - x).abs().max() <= x.abs().max() / 127, "the round trip is too far from x"
### BEGIN HIDDEN TESTS
# every element within half a step of its own vector's scale
assert torch.allclose(scale, x.abs().amax(-1, keepdim=True) / 127)
assert ((back - x).abs() <= scale / 2 + 1e-6).all(), "round to nearest"
assert (q.abs().amax(-1) == 127).all(), "each vector's largest value maps to +-127"
# by hand: max|x| = 127 -> scale 1, so 2.6 -> 3 and -3.4 -> -3; max|x| = 1 -> scale 1/127,
# 0.3 * 127 = 38.1 -> 38, 0.25 * 127 = 31.75 -> 32, 0.74 * 127 = 93.98 -> 94
q, scale = quantize_kv(torch.tensor([[127.0, -3.4, 2.6, 0.0], [0.3, -1.0, 0.25, 0.74]]))
assert torch.equal(q, torch.tensor([[127, -3, 3, 0], [38, -127, 32, 94]], dtype=torch.int8))
assert torch.allclose(scale, torch.tensor([[1.0], [1 / 127]]))
# all-zero vectors: scale 1, q 0, and they come back as exact zeros (no NaN)
z = torch.zeros(2, 1, 3, 4)
z[1, 0, 1] = torch.tensor([0.5, -0.25, 0.0, 1.0])
q, scale = quantize_kv(z)
assert torch.isfinite(scale).all() and scale[0].eq(1).all() and scale[1, 0, 0].eq(1).all()
assert q[0].eq(0).all() and torch.equal(dequantize_kv(q, scale)[0], z[0])
# an outlier in one head (or one token) leaves every other vector's scale and q unchanged
x = torch.randn(1, 2, 4, 8)
y = x.clone()
y[0, 0, 2, 3] = 1000.0
qx, sx = quantize_kv(x)
qy, sy = quantize_kv(y)
assert torch.equal(qx[0, 1], qy[0, 1]) and torch.equal(sx[0, 1], sy[0, 1]), "per head"
assert torch.equal(qx[0, 0, :2], qy[0, 0, :2]) and torch.equal(sx[0, 0, 3], sy[0, 0, 3])
# a given scale: values beyond +-127 x scale saturate
q, scale = quantize_kv(torch.tensor([[300.0, -300.0, 5.2, -0.4]]), scale=torch.tensor([[1.0]]))
assert q.tolist() == [[127, -127, 5, 0]] and scale.shape == (1, 1)
q, _ = quantize_kv(torch.tensor([[10.0, -1000.0, 3.1]]), scale=2.0)
assert q.tolist() == [[5, -127, 2]]
# half-precision inputs, dtype of the result
h = torch.randn(3, 2, 16, dtype=torch.float16)
q, scale = quantize_kv(h)
assert q.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (3, 2, 1)
assert dequantize_kv(q, scale, torch.float16).dtype == torch.float16
assert dequantize_kv(q, scale, torch.bfloat16).dtype == torch.bfloat16
assert (dequantize_kv(q, scale) - h.float()).abs().max() <= h.float().abs().max() / 254 + 1e-3
### END HIDDEN TESTS

# %% [markdown]
# ### An int8 cache, measured on your machine
# `Int8KVCache` stores int8 keys/values plus one float32 scale per token and head, and hands
# attention the dequantized float32 values. Because every token has its own scale, a token is
# quantized the same way whether it arrives in the prompt or in a decode step, so one pass over a
# text scores exactly the cache a token-by-token generation would build. Quality is measured on the
# course's held-out evaluation text against the full-precision (fp32) cache: perplexity, how often
# the most likely next token is unchanged, and the KL divergence of the next-token distributions.

# %%
import math

from inferlab.lab.data import eval_tokens
from inferlab.lab.quality import kl_divergence, token_agreement, top1_agreement


class Int8KVCache:
    """Like ``StaticKVCache``, but K and V are kept as int8 + one scale per (token, head)."""

    def __init__(self, num_layers, batch, num_kv_heads, max_len, head_dim, dtype=torch.float32):
        shape = (num_layers, batch, num_kv_heads, max_len, head_dim)
        self.k, self.v = torch.zeros(shape, dtype=torch.int8), torch.zeros(shape, dtype=torch.int8)
        self.k_scale, self.v_scale = torch.ones(shape[:-1] + (1,)), torch.ones(shape[:-1] + (1,))
        self.max_len, self.dtype = max_len, dtype

    def update(self, layer, k_new, v_new, start):
        end = start + k_new.shape[2]
        if start < 0 or end > self.max_len:
            raise ValueError(f"positions {start}..{end - 1} do not fit a cache of {self.max_len}")
        self.k[layer, :, :, start:end], self.k_scale[layer, :, :, start:end] = quantize_kv(k_new)
        self.v[layer, :, :, start:end], self.v_scale[layer, :, :, start:end] = quantize_kv(v_new)
        k = dequantize_kv(self.k[layer, :, :, :end], self.k_scale[layer, :, :, :end], self.dtype)
        v = dequantize_kv(self.v[layer, :, :, :end], self.v_scale[layer, :, :, :end], self.dtype)
        return k, v                                # new float tensors: dequantized every step


ppl_ids = eval_tokens(tokenizer, pick(512, 64)).to(device)
n_ppl = ppl_ids.shape[1]
caches = {"fp32 cache": StaticKVCache, "int8 cache": Int8KVCache}
logits, step_time, cache_bytes = {}, {}, {}
with torch.inference_mode():
    for name, cache_class in caches.items():
        filled = on_device(cache_class(cfg.num_layers, 1, cfg.num_kv_heads, n_ppl, cfg.head_dim))
        logits[name] = forward(ppl_ids, filled, 0, last_only=False)       # all n_ppl positions
        cache_bytes[name] = sum(t.numel() * t.element_size() for t in vars(filled).values()
                                if isinstance(t, torch.Tensor))       # K, V (and the scales)
        # one decode step that attends to the whole filled cache (it rewrites the last slot)
        step_time[name] = time_fn(lambda: forward(ppl_ids[:, -1:], filled, n_ppl - 1),
                                  repeats=pick(9, 5), device=device)
ppl = {name: math.exp(F.cross_entropy(lg[:-1], ppl_ids[0, 1:]).item())
       for name, lg in logits.items()}
top1 = top1_agreement(logits["fp32 cache"], logits["int8 cache"])
kl = kl_divergence(logits["fp32 cache"], logits["int8 cache"])
fp16_bytes = kv_cache_size(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, n_ppl)
for name in caches:
    print(f"{name}: {cache_bytes[name] / 2**20:6.2f} MiB allocated for {n_ppl} tokens, "
          f"perplexity {ppl[name]:.3f}, decode step {step_time[name].median * 1e3:.1f} ms "
          f"(repeats vary by {step_time[name].spread:.0%})")
print(f"(an fp16 cache would hold {fp16_bytes / 2**20:.2f} MiB: int8 + scales is "
      f"{fp16_bytes / cache_bytes['int8 cache']:.2f}x smaller than fp16, "
      f"{cache_bytes['fp32 cache'] / cache_bytes['int8 cache']:.2f}x smaller than fp32)")
print(f"int8 vs fp32 cache: perplexity {ppl['int8 cache'] - ppl['fp32 cache']:+.3f}, "
      f"same top-1 next token at {top1:.1%} of {n_ppl} positions, KL {kl:.2e} nats")
recap.note(f"int8 KV cache, {n_ppl} tokens: memory vs fp16",
           fp16_bytes / cache_bytes["int8 cache"], "x smaller", device=device)
recap.note(f"int8 KV cache, {n_ppl} tokens: same top-1 next token as fp32", top1 * 100, "%",
           device=device)

q8_tokens, q8_s = generate(prompt, n_new, cache_class=Int8KVCache)
agree = token_agreement(mine, q8_tokens)
first_diff = next((i for i, (a, b) in enumerate(zip(mine, q8_tokens)) if a != b), None)
print(f"greedy generation, {n_new} tokens: {agree:.0%} equal to the fp32 cache's tokens"
      + (f" (first difference at token {first_diff})" if first_diff is not None else ""))
print(repr(tokenizer.decode(q8_tokens)))
slower = step_time["int8 cache"].median / step_time["fp32 cache"].median
noise = max(t.spread for t in step_time.values())
verdict = ("no difference this run can resolve" if abs(slower - 1) <= noise
           else "slower" if slower > 1 else "faster")
print(f"decode step with the int8 cache: {slower:.2f}x the fp32 cache's time: {verdict}")
read_share = cache_bytes["fp32 cache"] / (cache_bytes["fp32 cache"] + weight_bytes(model))
print(f"at {n_ppl} tokens the fp32 cache is {read_share:.1%} of the bytes a decode step reads")

# %% [markdown]
# What the numbers above say, and what they do not:
# * **Memory** is the gain: the bytes are counted from the tensors allocated, scales included.
#   At the cache sizes of the first table (large batches, long contexts) that is the difference
#   between a batch fitting on a GPU or not.
# * **Quality**: the perplexity difference, the top-1 agreement and the KL divergence are this
#   run's; keys and values of a small model quantized per token and head are usually close to the
#   fp32 ones, and your numbers show how close. Greedy generation can still diverge after a near-tie
#   between two tokens, and once it does the rest of the text differs.
# * **Speed**: do not expect a gain here, whatever the timing noise says. This cache dequantizes
#   everything it holds to float32 at every step, which is extra work and an extra copy, and at
#   these lengths the cache is a small share of the bytes a step reads (printed above), so halving
#   it could save little even in principle. The speed-up int8 caches give in serving comes from
#   kernels that read int8 directly (half the bytes of fp16 through memory bandwidth) and from the
#   larger batches the saved memory allows - on a GPU, at long contexts and large batches.

# %% [markdown]
# ## Claims vs measured
# The usual statements about the KV cache, beside what this run measured:

# %%
gqa_saving = {name: mha / as_built for name, (as_built, mha) in gqa_rows.items()}
claims = [
    ("cost per generated token", "O(n) without a cache, O(1) weights + O(n) attention with one",
     f"{no_cache_ms[0]:.0f} -> {no_cache_ms[-1]:.0f} ms without, "
     f"{cached_ms[0]:.1f} -> {cached_ms[-1]:.1f} ms with (n = {lengths[0]} -> {lengths[-1]})"),
    ("whole answer", "O(n^2) -> O(n)",
     f"{sum(plain_s):.2f} s -> {sum(mine_s):.2f} s for {n_new} tokens"),
    ("batch-1 decode", "bound by memory: every step re-reads all weights (lesson 00)",
     f"the engine {engine_run.tok_s:.1f} tok/s = {engine_run.fraction:.0%} of the measured-"
     f"bandwidth roofline ({engine_run.roofline_tok_s:.0f} tok/s), the rest of a step its "
     f"fixed cost; your loop {your_run.fraction:.0%}"),
    ("Llama-2-7B cache, 4k tokens fp16", "2 GiB per sequence (formula)",
     f"{kv_cache_size(32, 32, 128, 4096) / 2**30:.1f} GiB from your function; SmolLM2 measured: "
     f"{stored / 2**20:.2f} MiB for {n_check} tokens = formula"),
    ("GQA saving", "query heads / KV heads (Ainslie et al., 2023)",
     f"{gqa_saving['SmolLM2-135M (GQA 9/3)']:.0f}x for SmolLM2, "
     f"{gqa_saving['Llama-3-8B (GQA 32/8)']:.0f}x for Llama-3-8B"),
    ("int8 KV cache: memory", "half of fp16 (1 byte per value instead of 2, plus scales)",
     f"{fp16_bytes / cache_bytes['int8 cache']:.2f}x smaller than fp16 "
     f"(allocated, {n_ppl} tokens)"),
    ("int8 KV cache: quality", "a small loss (commonly stated)",
     f"perplexity {ppl['fp32 cache']:.3f} -> {ppl['int8 cache']:.3f}, top-1 {top1:.1%}, "
     f"greedy tokens {agree:.0%} equal"),
    ("int8 KV cache: speed", "faster at scale (less to read)",
     f"decode step {slower:.2f}x the fp32 cache's time ({verdict}; dequantized every step)"),
]
for what, claim, measured in claims:
    print(f"{what:<34}| claim: {claim:<62}| here: {measured}")

# %% [markdown]
# ## What you measured
# The headline figures of this lesson, measured in this run on your machine: what the cache saves
# per decode step, how fast the engine decodes with it and how close that comes to the bandwidth
# roofline, and what an int8 cache saves in memory and keeps of the model's predictions.
# Re-running a measurement's cell updates its row.

# %%
recap.show()

# %% [markdown]
# ## Summary
# * Attention at step `n` needs the keys and values of all earlier tokens; caching them turns the
#   cost of a step from a pass over `n` tokens into a pass over one (measured above).
# * The price is memory: `layers x 2 x KV heads x head dim x bytes x tokens x batch`, which you
#   checked against the tensors `transformers` allocates. GQA divides it by the group size.
# * A static cache is allocated once at the maximum length: simple and fast, but every sequence
#   reserves `max_len` tokens. Lesson 06 batches many requests; lesson 07 measures how much of a
#   static cache a realistic mix of requests leaves empty, and fixes it with paged blocks.
# * Quantizing K and V to int8 with one scale per token and head halves an fp16 cache (scales
#   cost a little); you measured the memory and the quality change above. The speed gain needs
#   kernels that read int8 directly; dequantizing in Python, as here, costs time.

# %% [markdown]
# ## Submit this lesson
# Your graded answers can be checked in either of two ways:
# * **By the course service** (self-paced, with a certificate): sign up on the course service,
#   confirm your e-mail address and make an API token on your dashboard. Save this notebook
#   (Ctrl+S), enter the service's address and your token below and press **Submit**. The service
#   grades your answers in a sandbox and the form shows the points of every exercise. You may
#   submit again after improving an answer: your best score counts, and your dashboard shows what
#   is still needed for the certificate. Tick "remember on this computer" to keep the address and
#   token in a file only you can read.
# * **By an instructor** who grades with nbgrader: hand in this notebook the way your instructor
#   says (for example nbgrader's Assignments tab); it is graded by the same tests.
#
# Showing the form sends nothing; only the **Submit** button does. Without widgets, run
# `from inferlab.lab.submit import submit; submit("05_kv_cache")` in a cell instead.

# %%
from inferlab.lab.submit import submit_form

submit_form("05_kv_cache")
