# %% [markdown]
# # 05 · The KV cache
#
# **Time:** about 5 min to run every cell in full mode on a 2-core CPU (an estimate),
# plus your reading and exercises. **Prerequisites:** lesson 00; self-attention with
# queries, keys, values and a causal mask.
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
#    `transformers`.
#
# The cache you write here is the first piece of the course's engine, `inferlab.engine`; lessons
# 06-08 add batching, paged blocks and speculation on top of it.

# %%
import time

import torch
import torch.nn.functional as F

from inferlab.engine import LlamaWeights
from inferlab.engine.weights import rms_norm, rotate_half
from inferlab.lab import plots
from inferlab.lab.bench import device_name, peak_memory, pin_threads, time_fn
from inferlab.lab.models import load_model
from inferlab.lab.settings import fast_mode, grading, pick

threads = pin_threads()
model, tokenizer = load_model()
weights = LlamaWeights.from_hf(model)          # the same tensors, Q/K/V fused into one matrix
cfg = weights.config
print(f"{device_name('cpu')}; fast mode: {fast_mode()}; grading: {grading()}")
print(f"SmolLM2-135M: {cfg.num_layers} layers, {cfg.num_heads} query heads, "
      f"{cfg.num_kv_heads} KV heads, head dim {cfg.head_dim}")

# %% [markdown]
# ## 1 · A forward pass, written out
# To see where the cache enters, here is the whole model as plain tensor operations. `cache` is any
# object with `update(layer, k_new, v_new, start)` that stores the new keys/values at positions
# `start..start+T-1` and returns **all** keys/values so far. Without a cache we pass a fresh one
# every step, so the model recomputes K and V for the whole sequence.

# %%
ROPE_LEN = 4096
_freqs = torch.arange(ROPE_LEN, dtype=torch.float32)[:, None] * weights.inv_freq[None]
COS, SIN = torch.cat([_freqs, _freqs], -1).cos(), torch.cat([_freqs, _freqs], -1).sin()


def forward(ids: torch.Tensor, cache, start: int) -> torch.Tensor:
    """Logits of the last position for tokens ``ids [1, T]`` at positions ``start..start+T-1``."""
    T = ids.shape[1]
    h = F.embedding(ids, weights.embed)                                # [1, T, hidden]
    cos, sin = COS[start:start + T], SIN[start:start + T]
    mask = torch.ones(T, start + T, dtype=torch.bool).tril(start)  # query i sees keys <= start+i
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
    return F.linear(rms_norm(h[:, -1], weights.norm, cfg.rms_norm_eps), weights.lm_head)


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

# %% [markdown]
# ## 2 · Cost per token against sequence length, measured
# Without a cache, producing the token after `n` tokens means a forward pass over all `n`. With a
# cache it is a pass over **one** token that reads the `n` cached keys and values. Below, each
# point is the median time of one such step.

# %%
text = "The history of computing is a story of machines that remember. " * 200
ids_all = tokenizer(text, return_tensors="pt").input_ids
lengths = pick([16, 32, 64, 128, 256, 512], [8, 16, 32, 64])
repeats = pick(5, 2)
no_cache_ms, cached_ms = [], []
with torch.inference_mode():
    for n in lengths:
        ids = ids_all[:, :n]
        uncached = time_fn(lambda: forward(ids, NoCache(), 0), repeats=repeats)
        no_cache_ms.append(uncached.median * 1e3)
        filled = ConcatCache()
        forward(ids[:, :-1], filled, 0)                                 # positions 0..n-2 cached

        def one_step():
            step_cache = ConcatCache()                                  # a copy, so repeats agree
            step_cache.k, step_cache.v = dict(filled.k), dict(filled.v)
            return forward(ids[:, -1:], step_cache, n - 1)
        cached_ms.append(time_fn(one_step, repeats=repeats).median * 1e3)
        print(f"n = {n:>4}: without cache {no_cache_ms[-1]:8.1f} ms/token   "
              f"with cache {cached_ms[-1]:6.1f} ms/token")
plots.lines(lengths, {"without KV cache": no_cache_ms, "with KV cache": cached_ms},
            title=f"Cost of producing token n+1 ({device_name('cpu')})", xaxis="tokens so far (n)",
            yaxis="ms per token").show()

# %% [markdown]
# The uncached curve climbs with `n` (a forward pass over `n` tokens), the cached one stays almost
# flat: its weights cost is the same every step and the attention over `n` cached keys is a small
# part of it at these lengths. Summing each curve over a whole answer gives the generation time of
# `n` tokens: O(n²) without a cache, O(n) with one.

# %%
gen_no_cache = [sum(no_cache_ms[: i + 1]) for i in range(len(lengths))]
gen_cached = [sum(cached_ms[: i + 1]) for i in range(len(lengths))]
speedup = [a / b for a, b in zip(no_cache_ms, cached_ms)]
print("speed-up of one step from caching: "
      + ", ".join(f"n={n}: {s:.1f}x" for n, s in zip(lengths, speedup)))
slope = (no_cache_ms[-1] - no_cache_ms[0]) / (lengths[-1] - lengths[0])
print(f"without a cache each extra token of context adds {slope:.2f} ms to every later step "
      "(measured slope)")

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
# bytes of the cache tensors it keeps, then watch the process's memory grow while a cache is filled.

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
                                          cfg.head_dim))
want = kv_cache_size(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, big_len, batch=big_batch,
                     bytes_per_value=4)
print(f"allocating a cache for {big_batch} x {big_len} tokens: process memory grew "
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
# `transformers`' own greedy generation token for token (both in fp32).

# %%
def generate(prompt: str, n_new: int, use_cache: bool = True) -> tuple[list[int], list[float]]:
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    tokens, step_s = ids[0].tolist(), []
    cache = StaticKVCache(cfg.num_layers, 1, cfg.num_kv_heads, len(tokens) + n_new, cfg.head_dim)
    with torch.inference_mode():
        for step in range(n_new):
            start = time.perf_counter()
            if not use_cache:
                logits = forward(torch.tensor([tokens]), NoCache(), 0)
            elif step == 0:
                logits = forward(torch.tensor([tokens]), cache, 0)
            else:
                logits = forward(torch.tensor([tokens[-1:]]), cache, len(tokens) - 1)
            tokens.append(int(logits.argmax(-1)))
            step_s.append(time.perf_counter() - start)
    return tokens[ids.shape[1]:], step_s


prompt = "The three most important ideas in computer science are"
n_new = pick(48, 12)
mine, mine_s = generate(prompt, n_new)
plain, plain_s = generate(prompt, n_new, use_cache=False)
enc = tokenizer(prompt, return_tensors="pt").input_ids
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
#
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
    ("Llama-2-7B cache, 4k tokens fp16", "2 GiB per sequence (formula)",
     f"{kv_cache_size(32, 32, 128, 4096) / 2**30:.1f} GiB from your function; SmolLM2 measured: "
     f"{stored / 2**20:.2f} MiB for {n_check} tokens = formula"),
    ("GQA saving", "query heads / KV heads (Ainslie et al., 2023)",
     f"{gqa_saving['SmolLM2-135M (GQA 9/3)']:.0f}x for SmolLM2, "
     f"{gqa_saving['Llama-3-8B (GQA 32/8)']:.0f}x for Llama-3-8B"),
]
for what, claim, measured in claims:
    print(f"{what:<34}| claim: {claim:<62}| here: {measured}")

# %% [markdown]
# ## Summary
# * Attention at step `n` needs the keys and values of all earlier tokens; caching them turns the
#   cost of a step from a pass over `n` tokens into a pass over one (measured above).
# * The price is memory: `layers x 2 x KV heads x head dim x bytes x tokens x batch`, which you
#   checked against the tensors `transformers` allocates. GQA divides it by the group size.
# * A static cache is allocated once at the maximum length: simple and fast, but every sequence
#   reserves `max_len` tokens. Lesson 06 batches many requests; lesson 07 measures how much of a
#   static cache a realistic mix of requests leaves empty, and fixes it with paged blocks.

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
