# %% [markdown]
# # 01 · Quantization: INT8, INT4, NF4 and bitsandbytes
#
# **Time:** running every cell in full mode took about 5 min on a 2-core CPU and about 5 min on an
# H200 GPU (measured), plus your reading and exercises. **Prerequisites:** lesson 00 (the memory
# wall: decoding reads every weight per token); PyTorch tensors and dtypes.
#
# Quantization stores each weight in 8 or 4 bits instead of 32 or 16: fewer **bytes** to read per
# token. You build it from the bottom up, measure it on the whole model beside **bitsandbytes** and
# write a 4-bit Triton kernel: 6 graded exercises. Every number printed is measured in this run, or
# cited with its source.

# %%
import logging
import warnings

import torch
import transformers

from inferlab.compress.quant import (
    NF4_CODEBOOK,
    QuantLinear,
    Scheme,
    fake_quantize,
    nf4_codebook_from_normal,
    quantize_view,
    relative_error,
)
from inferlab.compress.quant_eval import (
    answer_accuracy,
    corpora,
    finetune,
    measure,
    quantized_model,
)
from inferlab.compress.quant_widgets import quantization_panel, three_charts
from inferlab.lab import plots, recap, records
from inferlab.lab.bench import default_device, device_name, pin_threads
from inferlab.lab.data import calibration_tokens, eval_tokens
from inferlab.lab.models import (
    DEFAULT_MODEL,
    load_model,
    parameter_count,
    prepare_default_model,
    weight_bytes,
)
from inferlab.lab.quality import logits_of, perplexity
from inferlab.lab.settings import fast_mode, grading, pick
from inferlab.lab.widgets import show

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # in 8-bit it logs on every layer call
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
warnings.filterwarnings("ignore", message=".*past_key_values.*")
threads = pin_threads()
device = default_device()  # "cuda" when PyTorch sees a GPU, else "cpu" (INFERLAB_DEVICE overrides)
HEAVY = not grading()  # whole-model measurements are skipped while nbgrader validates/grades
N_EVAL = pick(2048, 256)     # evaluation tokens for perplexity
NEW_TOKENS = pick(32, 8)     # generated tokens for speed
print(f"device: {device_name(device)}; fast mode: {fast_mode()}; grading: {grading()}")

# %% [markdown]
# ## 0 · The baseline, measured first
# SmolLM2-135M in fp32. Every model below runs in fp32 on your device (except the bf16 scheme), so
# comparisons differ in one thing only.

# %%
model, tokenizer = load_model(device=device)
eval_ids = eval_tokens(tokenizer, N_EVAL)
prompt_ids = eval_ids[:, :32]
ref_logits = logits_of(model, eval_ids)
baseline = measure(model, eval_ids, ref_logits, model, prompt_ids, NEW_TOKENS)
print(f"{DEFAULT_MODEL}: {parameter_count(model) / 1e6:.1f} M parameters, "
      f"{baseline['memory_mb']:.0f} MB in fp32 ({baseline['linear_mb']:.0f} MB of it in the "
      f"decoder's Linear layers), perplexity {baseline['perplexity']:.2f} on "
      f"{eval_ids.shape[1]} tokens, {baseline['decode_tok_s']:.1f} tokens/s")

# %% [markdown]
# ## 1 · Numbers in a few bits
# A `b`-bit integer has `2^b` values. To store a row of weights `x`, choose a **scale** (a float per
# row) and keep `q = round(x / scale)`; `x_hat = q * scale` is off by at most half a step.
#
# **absmax (symmetric)**: `qmax = 2^(b-1) - 1` (127 for int8, 7 for int4), `scale = max|x| / qmax`,
# `q = clamp(round(x / scale), -qmax, qmax)` stored as `int8`. Zero is exact; the row's largest
# value lands on `±qmax`.
#
# ### Exercise 1 - absmax quantization (2 points)
# Implement `absmax_quantize(x, bits)` returning `(q, scale)` with **one scale per row** of the
# 2-D tensor `x` (`scale` of shape `(rows, 1)`), and `absmax_dequantize(q, scale)`. A row of zeros
# must not produce NaNs: give it scale 1.

# %% solution id=absmax
import torch


def absmax_quantize(x: torch.Tensor, bits: int = 8):
    """Symmetric quantization with one scale per row: returns (q int8, scale (rows, 1))."""
    ### BEGIN SOLUTION
    qmax = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=-1, keepdim=True) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.round(x / scale).clamp(-qmax, qmax).to(torch.int8)
    return q, scale
    ### END SOLUTION


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return q.float() * scale
    ### END SOLUTION

# %% tests id=test_absmax points=2
import torch

x = torch.tensor([[-1.0, 0.5, 0.25, 1.0]])
q, scale = absmax_quantize(x, bits=8)
assert q.dtype == torch.int8 and q.shape == x.shape, (q.dtype, q.shape)
assert torch.isclose(scale, torch.tensor([[1 / 127]])).all(), scale
assert q.abs().max() == 127
assert (absmax_dequantize(q, scale) - x).abs().max() <= scale.max() / 2 + 1e-7
### BEGIN HIDDEN TESTS
from inferlab.compress.quant import absmax_quantize as reference_quantize

torch.manual_seed(0)
y = torch.randn(6, 40) * torch.logspace(-2, 1, 6).unsqueeze(1)   # rows of very different size
for bits in (8, 4, 3):
    q, scale = absmax_quantize(y, bits)
    rq, rscale = reference_quantize(y, bits)
    assert scale.shape == (6, 1), "one scale per row"
    assert torch.allclose(scale, rscale), (
        f"scale = max|x| / (2^(bits-1) - 1), per row (bits={bits})")
    assert torch.equal(q.to(torch.int16), rq.to(torch.int16)), (
        f"round to nearest, clamp to +-qmax (bits={bits})")
    assert ((absmax_dequantize(q, scale) - y).abs() <= scale / 2 + 1e-6).all()
zeros = torch.zeros(2, 8)
q, scale = absmax_quantize(zeros, 4)
assert (scale == 1).all() and torch.equal(absmax_dequantize(q, scale), zeros), (
    "a zero row gets scale 1")
### END HIDDEN TESTS

# %% [markdown]
# **Zero-point (asymmetric)**: absmax wastes levels on a row not centred on zero (values in [0, 3]
# never use the negative codes). Zero-point maps `[lo, hi] = [min(x.min(), 0), max(x.max(), 0)]`
# onto `0 .. 2^b - 1`: `scale = (hi - lo) / (2^b - 1)`, an integer **zero-point**
# `zero = round(-lo / scale)`, `q = clamp(round(x / scale) + zero, 0, 2^b - 1)` stored as `uint8`,
# and `x_hat = (q - zero) * scale`. As `zero` is an integer, a weight of 0 comes back exactly
# (padding and ReLU zeros stay zeros).
#
# ### Exercise 2 - zero-point quantization (2 points)
# Implement `zeropoint_quantize(x, bits)` returning `(q, scale, zero)` (one scale and zero-point
# per row, shapes `(rows, 1)`; `zero` may be a float tensor holding integers) and
# `zeropoint_dequantize(q, scale, zero)`. A constant row (range 0) gets scale 1.

# %% solution id=zeropoint
import torch


def zeropoint_quantize(x: torch.Tensor, bits: int = 8):
    """Asymmetric quantization, one scale and integer zero-point per row."""
    ### BEGIN SOLUTION
    qmax = 2 ** bits - 1
    lo = x.amin(dim=-1, keepdim=True).clamp(max=0)
    hi = x.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zero = torch.round(-lo / scale).clamp(0, qmax)
    q = (torch.round(x / scale) + zero).clamp(0, qmax).to(torch.uint8)
    return q, scale, zero
    ### END SOLUTION


def zeropoint_dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return (q.float() - zero) * scale
    ### END SOLUTION

# %% tests id=test_zeropoint points=2
import torch

x = torch.tensor([[-1.0, 0.0, 0.5, 3.0]])
q, scale, zero = zeropoint_quantize(x, bits=8)
assert q.dtype == torch.uint8 and q.shape == x.shape
assert q.min() == 0 and q.max() == 255, q
assert (zeropoint_dequantize(q, scale, zero) - x).abs().max() <= scale.max() / 2 + 1e-6
### BEGIN HIDDEN TESTS
from inferlab.compress.quant import zeropoint_quantize as reference_quantize

torch.manual_seed(1)
y = torch.randn(5, 33) * 2 + torch.tensor([[0.0], [3.0], [-4.0], [0.5], [10.0]])
for bits in (8, 4):
    q, scale, zero = zeropoint_quantize(y, bits)
    rq, rscale, rzero = reference_quantize(y, bits)
    assert scale.shape == (5, 1) and zero.shape == (5, 1), "one scale and zero-point per row"
    assert torch.allclose(scale, rscale), (
        f"scale = (hi - lo) / (2^bits - 1) with lo <= 0 <= hi (bits={bits})")
    assert torch.equal(zero.float(), torch.round(zero.float())), "the zero-point is an integer"
    assert torch.equal(zero.float(), rzero), "zero = round(-lo / scale)"
    assert torch.equal(q, rq)
positive = torch.tensor([[0.0, 1.0, 2.0, 3.0]])       # all >= 0: lo is 0, zero-point 0
q, scale, zero = zeropoint_quantize(positive, 2)
assert zero.item() == 0 and torch.allclose(zeropoint_dequantize(q, scale, zero), positive)
mixed = torch.tensor([[-0.3, 0.0, 0.7, 1.1]])
q, scale, zero = zeropoint_quantize(mixed, 4)
assert zeropoint_dequantize(q, scale, zero)[0, 1] == 0, "a zero weight must come back exactly"
const = torch.zeros(1, 4)
q, scale, zero = zeropoint_quantize(const, 4)
assert torch.isfinite(scale).all() and torch.equal(zeropoint_dequantize(q, scale, zero), const)
### END HIDDEN TESTS

# %% [markdown]
# Both on a real weight matrix, one scale per output row (**per-channel**); relative error is
# `||W - W_hat|| / ||W||`:

# %%
weight = model.model.layers[5].mlp.down_proj.weight.detach().cpu()
rows = {}
for bits in (8, 4):
    q, s = absmax_quantize(weight, bits)
    rows[f"int{bits} absmax"] = relative_error(weight, absmax_dequantize(q, s))
    q, s, z = zeropoint_quantize(weight, bits)
    rows[f"int{bits} zero-point"] = relative_error(weight, zeropoint_dequantize(q, s, z))
for name, err in rows.items():
    print(f"{name:>16}: relative error {err:.4f}")
plots.bars(list(rows), list(rows.values()), title="layers.5.mlp.down_proj, per-channel scales",
           yaxis="relative weight error").show()

# %% [markdown]
# ## 2 · Whose scale? Per-tensor, per-channel, per-group
# One outlier stretches the grid of its whole row: finer scales, smaller error, more scales to
# store. Your quantizers work row by row, so a granularity is just **a 2-D view** of the `(out, in)`
# weight:
#
# * **per-tensor**: the whole matrix as one row, shape `(1, out * in)`;
# * **per-channel**: one row per output channel, shape `(out, in)` (the matrix itself);
# * **per-group**: rows of `group_size` consecutive input weights, shape
#   `(out * ceil(in / group_size), group_size)`.
#
# When `group_size` does not divide `in`, pad each row on the right **with copies of its last
# value** up to a multiple of `group_size` (zeros would change a group's min/max for zero-point).
#
# ### Exercise 3 - granularity views (2 points)
# Implement `to_groups(w, granularity, group_size)` for `granularity` in `"tensor"`, `"channel"`,
# `"group"`, and `from_groups(view, shape, granularity, group_size)` that undoes it (dropping the
# padding). Raise `ValueError` for another granularity.

# %% solution id=groups
import torch


def to_groups(w: torch.Tensor, granularity: str = "group", group_size: int = 128) -> torch.Tensor:
    """The 2-D view in which each row shares one scale."""
    ### BEGIN SOLUTION
    if granularity == "tensor":
        return w.reshape(1, -1)
    if granularity == "channel":
        return w
    if granularity != "group":
        raise ValueError(f"unknown granularity {granularity!r}")
    pad = (-w.shape[1]) % group_size
    if pad:
        w = torch.cat([w, w[:, -1:].expand(-1, pad)], dim=1)
    return w.reshape(-1, group_size)
    ### END SOLUTION


def from_groups(view: torch.Tensor, shape, granularity: str = "group",
                group_size: int = 128) -> torch.Tensor:
    """Back to ``shape`` = (out, in), without the padding."""
    ### BEGIN SOLUTION
    out, width = shape
    if granularity in ("tensor", "channel"):
        return view.reshape(out, width)
    return view.reshape(out, -1)[:, :width]
    ### END SOLUTION

# %% tests id=test_groups points=2
import torch

w = torch.arange(24.0).reshape(3, 8)
assert to_groups(w, "tensor").shape == (1, 24)
assert to_groups(w, "channel").shape == (3, 8)
assert to_groups(w, "group", 4).shape == (6, 4)
assert torch.equal(from_groups(to_groups(w, "group", 4), (3, 8), "group", 4), w)
### BEGIN HIDDEN TESTS
assert to_groups(w, "group", 4)[1].tolist() == [4.0, 5.0, 6.0, 7.0], (
    "groups are consecutive inputs of one row")
assert to_groups(w, "group", 4)[2].tolist() == [8.0, 9.0, 10.0, 11.0]
padded = to_groups(w, "group", 3)                  # 8 is not a multiple of 3: pad to 9
assert padded.shape == (9, 3), padded.shape
assert padded[2].tolist() == [6.0, 7.0, 7.0], "pad with copies of the row's last value"
assert padded[5].tolist() == [14.0, 15.0, 15.0]
torch.manual_seed(2)
for shape, g in [((5, 100), 32), ((7, 64), 64), ((3, 10), 128), ((4, 9), 1)]:
    v = torch.randn(*shape)
    for gran in ("tensor", "channel", "group"):
        assert torch.equal(from_groups(to_groups(v, gran, g), shape, gran, g), v), (shape, g, gran)
try:
    to_groups(w, "block", 4)
except ValueError:
    pass
else:
    raise AssertionError("unknown granularity must raise ValueError")
### END HIDDEN TESTS

# %% [markdown]
# int4 absmax at every granularity, with the cost of its scales (fp16, one per row of the view):

# %%
gran_rows = {}
for label, gran, g in [("per-tensor", "tensor", 0), ("per-channel", "channel", 0),
                       ("group-256", "group", 256), ("group-128", "group", 128),
                       ("group-100 (padded)", "group", 100), ("group-32", "group", 32)]:
    view = to_groups(weight, gran, g or 1)
    q, s = absmax_quantize(view, 4)
    w_hat = from_groups(absmax_dequantize(q, s), tuple(weight.shape), gran, g or 1)
    bits_per_weight = 4 + 16 * view.shape[0] / weight.numel()
    gran_rows[label] = (relative_error(weight, w_hat), bits_per_weight)
    print(f"{label:>20}: relative error {gran_rows[label][0]:.4f}, "
          f"{bits_per_weight:.3f} bits per weight")
plots.bars(list(gran_rows), [v[0] for v in gran_rows.values()], yaxis="relative weight error",
           title="int4 absmax on layers.5.mlp.down_proj: finer scales, smaller error",
           text=[f"{v[1]:.2f} bit/w" for v in gran_rows.values()]).show()

# %% [markdown]
# ## 3 · NF4: levels where the weights are
# int4 spaces its 15 levels evenly, but weights are roughly normal: most near zero. **NF4**
# (NormalFloat-4, QLoRA paper, Dettmers et al. 2023) puts its 16 levels at quantiles of a normal
# distribution, scaled to [-1, 1], with an exact zero. The levels, rebuilt from normal quantiles,
# against bitsandbytes' table:

# %%
rebuilt = nf4_codebook_from_normal()
print("NF4 levels:", [round(v, 4) for v in NF4_CODEBOOK.tolist()])
print(f"rebuilt from normal quantiles, largest difference to bitsandbytes' table: "
      f"{(rebuilt - NF4_CODEBOOK).abs().max().item():.1e}")
block = to_groups(weight, "group", 64)
normed = (block / block.abs().amax(dim=1, keepdim=True)).flatten()
fig = plots.lines([], {}, title="weights of layers.5.mlp.down_proj, each block of 64 scaled "
                                "by its absmax", xaxis="scaled weight", yaxis="count")
fig.add_histogram(x=normed[torch.randperm(normed.numel())[:50_000]].tolist(), nbinsx=120,
                  name="weights")
for level in NF4_CODEBOOK.tolist():
    fig.add_vline(x=level, line_color="red", line_dash="dot")
for level in (torch.arange(-7, 8) / 7).tolist():
    fig.add_vline(x=level, line_color="gray", line_width=1, opacity=0.4)
fig.add_annotation(text="red dotted: NF4 levels; grey: int4 absmax levels", showarrow=False,
                   xref="paper", yref="paper", x=0, y=1.08)
fig.show()

# %% [markdown]
# ### Exercise 4 - NF4 quantization (2 points)
# Implement `nf4_quantize(x)` returning `(index, absmax)`: per row, `absmax = max|x|` (1 for an
# all-zero row), and for each value the index (`uint8`, 0..15) of the level of `NF4_CODEBOOK`
# **nearest** to `x / absmax`. `nf4_dequantize` is given.

# %% solution id=nf4
import torch

from inferlab.compress.quant import NF4_CODEBOOK


def nf4_quantize(x: torch.Tensor):
    """Per-row absmax scaling, then the nearest NF4 level.

    Returns (index uint8, absmax (rows, 1)).
    """
    ### BEGIN SOLUTION
    absmax = x.abs().amax(dim=-1, keepdim=True)
    absmax = torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    distance = ((x / absmax).unsqueeze(-1) - NF4_CODEBOOK).abs()
    return distance.argmin(dim=-1).to(torch.uint8), absmax
    ### END SOLUTION


def nf4_dequantize(index: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
    return NF4_CODEBOOK[index.long()] * absmax

# %% tests id=test_nf4 points=2
import torch

from inferlab.compress.quant import NF4_CODEBOOK

x = NF4_CODEBOOK.unsqueeze(0) * 2.0               # every level once, scaled by 2
index, absmax = nf4_quantize(x)
assert index.dtype == torch.uint8 and index.shape == x.shape
assert absmax.item() == 2.0
assert torch.allclose(nf4_dequantize(index, absmax), x)
### BEGIN HIDDEN TESTS
torch.manual_seed(3)
y = torch.randn(8, 64) * torch.logspace(-3, 0, 8).unsqueeze(1)
index, absmax = nf4_quantize(y)
assert absmax.shape == (8, 1) and torch.allclose(absmax, y.abs().amax(1, keepdim=True)), (
    "absmax per row")
scaled = y / absmax
best = (scaled.unsqueeze(-1) - NF4_CODEBOOK).abs().min(-1).values
assert torch.allclose((scaled - NF4_CODEBOOK[index.long()]).abs(), best, atol=1e-7), (
    "pick the NEAREST level")
index, absmax = nf4_quantize(torch.zeros(2, 5))
assert torch.isfinite(absmax).all() and (NF4_CODEBOOK[index.long()] == 0).all()
### END HIDDEN TESTS

# %% [markdown]
# int4 absmax against NF4 on the same blocks of 64 (bitsandbytes' NF4 block size):

# %%
view = to_groups(weight, "group", 64)
q, s = absmax_quantize(view, 4)
err_int4 = relative_error(weight, from_groups(absmax_dequantize(q, s), tuple(weight.shape),
                                              "group", 64))
err_nf4 = relative_error(weight, from_groups(nf4_dequantize(*nf4_quantize(view)),
                                             tuple(weight.shape), "group", 64))
print(f"int4 absmax group-64: relative error {err_int4:.4f}\n"
      f"NF4 group-64:         relative error {err_nf4:.4f} ({1 - err_nf4 / err_int4:.0%} lower; "
      "16 levels used instead of 15, placed where weights are dense)")

# %% [markdown]
# ## 4 · Two codes per byte: the saving becomes real
# PyTorch has no 4-bit dtype, and one code per `uint8` byte is as large as int8: **pack** two codes
# into each byte.
#
# ### Exercise 5 - 4-bit packing (2 points)
# Implement `pack_int4(q)` for a `uint8` tensor of codes 0..15: along the last dimension, element
# `2i` goes to the **low** nibble (bits 0-3) of byte `i` and element `2i+1` to its **high** nibble
# (bits 4-7). An odd length gets one zero code appended. `unpack_int4(packed, n)` returns the first
# `n` codes.

# %% solution id=pack
import torch
import torch.nn.functional as F


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte, low nibble first."""
    ### BEGIN SOLUTION
    if q.shape[-1] % 2:
        q = F.pad(q, (0, 1))
    return q[..., 0::2] | (q[..., 1::2] << 4)
    ### END SOLUTION


def unpack_int4(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` codes packed by ``pack_int4``."""
    ### BEGIN SOLUTION
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=-1).flatten(-2)[..., :n]
    ### END SOLUTION

# %% tests id=test_pack points=2
import torch

torch.manual_seed(4)
q = torch.randint(0, 16, (3, 8), dtype=torch.uint8)
packed = pack_int4(q)
assert packed.dtype == torch.uint8 and packed.shape == (3, 4), packed.shape
assert torch.equal(unpack_int4(packed, 8), q)
### BEGIN HIDDEN TESTS
assert pack_int4(torch.tensor([1, 2], dtype=torch.uint8)).tolist() == [0x21], (
    "element 0 in the LOW nibble")
assert pack_int4(torch.tensor([15, 0, 3, 12], dtype=torch.uint8)).tolist() == [0x0F, 0xC3]
odd = torch.tensor([[7, 8, 9]], dtype=torch.uint8)
assert pack_int4(odd).tolist() == [[0x87, 0x09]], "odd length: a zero code is appended"
assert torch.equal(unpack_int4(pack_int4(odd), 3), odd)
big = torch.randint(0, 16, (2, 5, 33), dtype=torch.uint8)
assert torch.equal(unpack_int4(pack_int4(big), 33), big)
### END HIDDEN TESTS

# %% [markdown]
# `inferlab.compress.quant.QuantLinear` (your algorithms) stores the packed codes plus one **fp16**
# scale per group and dequantizes the weight on every call. Its memory is what `torch` allocated:

# %%
linear = model.model.layers[5].mlp.down_proj
for scheme in [Scheme(8, "absmax", "channel"), Scheme(4, "absmax", "group", 128),
               Scheme(4, "nf4", "group", 64)]:
    layer = QuantLinear.from_linear(linear, scheme)
    matches = torch.allclose(layer.dequantized_weight(), fake_quantize(linear.weight.data, scheme))
    print(f"{scheme.describe():>24}: {weight_bytes(layer) / 1e3:7.1f} kB "
          f"(fp32: {weight_bytes(linear) / 1e3:.1f} kB, "
          f"{weight_bytes(linear) / weight_bytes(layer):.1f}x smaller; "
          f"{scheme.bits_per_weight(linear.in_features):.3f} bits per weight); "
          f"matches your quantizer: {matches}")
view = to_groups(weight, "group", 128)
q_mine, s_mine = absmax_quantize(view, 4)
# the package's scales are rounded to fp16
codes, s_package, _ = quantize_view(view, Scheme(4, "absmax", "group", 128))
same_codes = (q_mine.to(torch.int16) + 8 == codes.to(torch.int16)).float().mean().item()
print("your int4 group-128 codes vs the package's (whose scales are stored in fp16): "
      f"{same_codes:.2%} identical; "
      f"relative error {relative_error(view, absmax_dequantize(q_mine, s_mine)):.4f} vs "
      f"{relative_error(view, (codes.float() - 8) * s_package):.4f}")

# %% [markdown]
# ## 5 · The embedded model was already 4-bit once
# The model ships as `SmolLM2-135M-Instruct.Q4_1.gguf`: llama.cpp's **Q4_1**, blocks of 32 weights
# stored as `x = q * d + m` (4-bit `q`, fp16 scale `d` and minimum `m` per block). The fp32 weights
# we load lie exactly on that grid, so re-quantizing with **the same** grid (`method="minmax"`,
# group 32) gives zero error - which says nothing about 4 bits on a model trained in 16 bits. On
# every decoder Linear:

# %%
linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
           and not n.endswith("lm_head")]


def whole_error(scheme):
    num = sum((lin.weight - fake_quantize(lin.weight.data, scheme)).pow(2).sum().item()
              for lin in linears)
    return (num / sum(lin.weight.pow(2).sum().item() for lin in linears)) ** 0.5


q4_1_rows = {s.describe(): whole_error(s) for s in [
    Scheme(4, "minmax", "group", 32), Scheme(4, "zeropoint", "group", 32),
    Scheme(4, "absmax", "group", 32),
    Scheme(4, "minmax", "group", 64), Scheme(8, "absmax", "channel")]}
for name, err in q4_1_rows.items():
    print(f"{name:>28}: relative error {err:.6f}")
bf16 = (sum((lin.weight - lin.weight.bfloat16().float()).pow(2).sum().item() for lin in linears)
        ** 0.5 / sum(lin.weight.pow(2).sum().item() for lin in linears) ** 0.5)
print(f"{'bf16 cast':>28}: relative error {bf16:.6f}  "
      "(why the quantization lessons keep an fp32 copy)")

# %% [markdown]
# The integer zero-point version of that grid is *not* exact: Q4_1's `m` is generally not an integer
# number of steps `d` from zero, so rounding the zero-point shifts the whole block.
#
# ## 6 · The whole model: size, error, perplexity, speed
# Each scheme quantizes every decoder Linear (int4 "minmax" group-32 is this model's home format);
# the `lm_head`, tied to the token embedding, stays fp32 as in bitsandbytes' default. Memory is real
# (packed codes); "disk" is what `torch.save` writes.

# %%
SCHEMES = {
    "int8 absmax per-channel": Scheme(8, "absmax", "channel"),
    "int8 zero-point per-tensor": Scheme(8, "zeropoint", "tensor"),
    "int4 absmax group-128": Scheme(4, "absmax", "group", 128),
    "int4 zero-point group-128": Scheme(4, "zeropoint", "group", 128),
    "int4 absmax per-channel": Scheme(4, "absmax", "channel"),
    "NF4 group-64": Scheme(4, "nf4", "group", 64),
    "int4 minmax group-32 (Q4_1 grid)": Scheme(4, "minmax", "group", 32),
    "int3 absmax group-32": Scheme(3, "absmax", "group", 32),
}
if fast_mode():
    SCHEMES = {k: SCHEMES[k] for k in ("int8 absmax per-channel", "int4 absmax group-128",
                                       "NF4 group-64", "int4 minmax group-32 (Q4_1 grid)")}
results = {"fp32": baseline}
if HEAVY:
    bf16_model, _ = load_model(dtype=torch.bfloat16, device=device)
    results["bf16"] = measure(bf16_model, eval_ids, ref_logits, model, prompt_ids, NEW_TOKENS)
    del bf16_model
    for label, scheme in SCHEMES.items():
        quantized = quantized_model(scheme).to(device)  # quantized on the CPU, then moved
        results[label] = measure(quantized, eval_ids, ref_logits, model, prompt_ids, NEW_TOKENS)
        del quantized
    print(f"{'scheme':<34}{'memory MB':>10}{'Linear MB':>10}{'disk MB':>9}{'w. error':>9}{'ppl':>8}"
          f"{'top-1':>7}{'KL':>7}{'tok/s':>7}")
    for label, r in results.items():
        print(f"{label:<34}{r['memory_mb']:>10.0f}{r['linear_mb']:>10.0f}{r['disk_mb']:>9.0f}"
              f"{r['weight_error']:>9.4f}{r['perplexity']:>8.2f}{r['top1_agreement']:>7.1%}"
              f"{r['kl']:>7.3f}{r['decode_tok_s']:>7.1f}")
    three_charts(results, title=f"SmolLM2-135M on {device_name(device)}, "
                                f"{eval_ids.shape[1]} eval tokens").show()
    fastest = max(results, key=lambda k: results[k]["decode_tok_s"])
    print(f"fastest decode here: {fastest} ({results[fastest]['decode_tok_s']:.1f} tokens/s; "
          f"fp32 {baseline['decode_tok_s']:.1f})")
    int8_row, nf4_row = results["int8 absmax per-channel"], results["NF4 group-64"]
    recap.note("memory saved vs fp32, NF4 group-64 (whole model)",
               baseline["memory_mb"] - nf4_row["memory_mb"], "MB", device)
    recap.note("perplexity change vs fp32, int8 absmax per-channel",
               100 * (int8_row["perplexity"] / baseline["perplexity"] - 1), "%", device)
    recap.note("perplexity change vs fp32, NF4 group-64",
               100 * (nf4_row["perplexity"] / baseline["perplexity"] - 1), "%", device)
    recap.note("decode speed vs fp32, NF4 group-64 (QuantLinear)",
               nf4_row["decode_tok_s"] / baseline["decode_tok_s"], "x", device)
else:
    print("skipped while grading: quantizing and measuring the whole model takes minutes")

# %% [markdown]
# ### Quality on a task, beside perplexity
# HellaSwag items (`inferlab.lab.tasks`): a scene and four endings, the likeliest is the model's
# answer (chance 25%). "±" is one binomial standard error: differences within about two are noise;
# "same choice" compares each answer with fp32's.

# %%
from inferlab.lab.tasks import agreement, describe, load_items, task_accuracy

task_items = load_items(pick(300 if device == "cuda" else 30, 8))
if HEAVY:
    task_rows = {"fp32": task_accuracy(model, tokenizer, task_items, label="fp32")}
    for label in ("int8 absmax per-channel", "NF4 group-64"):
        quantized = quantized_model(SCHEMES[label]).to(device)
        task_rows[label] = task_accuracy(quantized, tokenizer, task_items, label=label)
        del quantized
    for label, r in task_rows.items():
        print(f"{label:<26}{describe(r)}; same choice as fp32 "
              f"{agreement(r, task_rows['fp32']):.0%}")
else:
    print("skipped while grading: scoring the task takes a minute")

# %% [markdown]
# Reading the table:
# * **memory** falls with the Linear weights' bits only; the fp32 embedding (a large share of a
#   model this small) stays, so the whole model shrinks far less than "Linear MB".
# * **perplexity** barely moves at 8 bits and rises at 4; finer groups and NF4 help.
# * **speed**: `QuantLinear` is no faster than fp32, on a CPU or a GPU (section 11 says why).
#
# ## 7 · bitsandbytes: LLM.int8() and NF4 with double quantization
# `bitsandbytes` is what `transformers` uses for `load_in_8bit` / `load_in_4bit`:
# * **LLM.int8()** (Dettmers et al. 2022): int8 absmax per row for the weights, *and* int8
#   activations, except the few activation columns above a threshold (6.0), computed in 16-bit
#   ("mixed-precision decomposition").
# * **NF4** with **double quantization** (QLoRA): NF4 blocks of 64 whose absmax values are
#   themselves quantized to 8 bits in blocks of 256: 4 + 8/64 + 32/(64*256) = 4.127 bits per weight
#   instead of 4 + 32/64 = 4.5 with fp32 absmax (arithmetic, not a measurement).
#
# Through `BitsAndBytesConfig`, on the CPU and on a GPU if present:

# %%
print(f"NF4 storage: {4 + 32 / 64:.3f} bits per weight with an fp32 absmax per 64 weights, "
      f"{4 + 8 / 64 + 32 / (64 * 256):.3f} with double quantization")


def load_bnb(kind: str, device: str = "cpu"):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    compute = torch.float32 if device == "cpu" else torch.float16
    config = (BitsAndBytesConfig(load_in_8bit=True) if kind == "int8" else
              BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                 bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute))
    return AutoModelForCausalLM.from_pretrained(prepare_default_model(), quantization_config=config,
                                                dtype=compute, device_map=device).eval()


bnb_rows = {}
try:
    import bitsandbytes
    bnb_version = bitsandbytes.__version__
except ImportError:
    bnb_version = None
    print("bitsandbytes is not installed: pip install bitsandbytes "
          "(the rest of the lesson works without it)")
if HEAVY and bnb_version:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for bnb_device in devices:
        for kind in ("int8", "nf4"):
            try:
                bnb_model = load_bnb(kind, bnb_device)
                label = f"bnb {'LLM.int8' if kind == 'int8' else 'NF4+DQ'} ({bnb_device})"
                bnb_rows[label] = measure(bnb_model, eval_ids, ref_logits, None,
                                          prompt_ids.to(bnb_device), NEW_TOKENS, disk=False)
                del bnb_model
            except Exception as error:  # an unsupported device/backend must not stop the lesson
                print(f"bitsandbytes {kind} on {bnb_device} failed: "
                      f"{type(error).__name__}: {error}")
    ours = {f"{k} ({device})": results[k]
            for k in ("fp32", "int8 absmax per-channel", "NF4 group-64") if k in results}
    print(f"bitsandbytes {bnb_version}")
    for label, r in {**ours, **bnb_rows}.items():
        print(f"{label:<28} memory {r['memory_mb']:6.0f} MB   ppl {r['perplexity']:7.2f}   "
              f"top-1 {r['top1_agreement']:6.1%}   {r['decode_tok_s']:6.1f} tokens/s")
    three_charts({**ours, **bnb_rows},
                 title="Your schemes (QuantLinear) beside bitsandbytes").show()
elif not HEAVY:
    print("skipped while grading: loads two more models")

# %% [markdown]
# Compare speeds only within a device (in brackets). The recorded GPU run below (a Llama-2-7B-shaped
# model, random weights: speed and memory only) shows the other side of the trade.

# %%
try:
    gpu = records.load("bnb_llama2_7b")
    gpu_label = records.label(gpu)
    res = gpu["results"]
    print(f"bitsandbytes on a GPU, {gpu_label} (versions {res['versions']})")
    print(f"  {gpu['source']}")
    print(f"{'format':<8}{'weights GB':>11}"
          + "".join(f"{'batch ' + b + ' tok/s':>17}" for b in res["generate"]["fp16"]))
    for kind, by_batch in res["generate"].items():
        print(f"{kind:<8}{res['weight_bytes'][kind] / 1e9:>11.2f}"
              + "".join(f"{row['tokens_per_s']:>17.1f}" for row in by_batch.values()))
    print("one 4096 -> 11008 projection alone (ms):",
          {k: v for k, v in res["linear_ms"].items()})
    batches = list(res["generate"]["fp16"])
    plots.grouped_bars([f"batch {b}" for b in batches],
                       {k: [v[b]["tokens_per_s"] for b in batches]
                        for k, v in res["generate"].items()},
                       title=f"Llama-2-7B shape, transformers generate ({gpu_label})",
                       yaxis="tokens/s").show()
except FileNotFoundError as missing:
    gpu = None
    print(missing)

# %% [markdown]
# ## 8 · Your turn: the quantization panel
# Choose bits, method, granularity, group size (e.g. 100, which does not divide 576 or 1536: rows
# are padded) and layers, then press **measure**: each press charts a quantized copy's memory,
# perplexity and speed. Impossible combinations (NF4 with 8 bits) are explained.

# %%
panel_ids = eval_ids[:, :pick(512, 128)]
panel_ref = ref_logits[:, :panel_ids.shape[1]]


def evaluate(scheme, which):
    quantized = quantized_model(scheme, which).to(device)
    return measure(quantized, panel_ids, panel_ref, None, prompt_ids, pick(16, 4), disk=False)


if HEAVY:
    panel_baseline = measure(model, panel_ids, panel_ref, None, prompt_ids, pick(16, 4), disk=False)
    panel = quantization_panel(evaluate, panel_baseline)
    show(panel)
else:
    print("skipped while grading: the panel measures whole models")

# %% [markdown]
# ## 9 · PTQ vs QAT, measured
# All of the above is **post-training quantization** (PTQ): round the trained weights, done.
# **Quantization-aware training** (QAT) trains *with* the rounding in the forward pass (the backward
# pass treats it as the identity: the straight-through estimator), so weights move to where rounding
# hurts least; it needs data, gradients and optimizer memory.
#
# Below, int4 absmax **per-channel** (coarse: damage to repair) by PTQ, by QAT for a few steps on
# the calibration text, and a control - the same steps of fp32 fine-tuning, as training on text like
# the evaluation text lowers perplexity by itself.

# %%
qat_scheme = Scheme(4, "absmax", "channel")
qat_steps = pick(20, 3)
# training batches are cut from calib_ids on the model's device
calib_ids = calibration_tokens(tokenizer, n_samples=pick(32, 8), seq_len=pick(256, 64)).to(device)
qat_rows = {}
if HEAVY:
    ptq = quantized_model(qat_scheme).to(device)
    qat_rows["PTQ int4 per-channel"] = perplexity(ptq, eval_ids)
    del ptq
    qat_model = quantized_model(None).to(device)
    qat_losses = finetune(qat_model, calib_ids, qat_steps, scheme=qat_scheme)
    qat_rows[f"QAT int4 per-channel ({qat_steps} steps)"] = perplexity(qat_model, eval_ids)
    del qat_model
    control = quantized_model(None).to(device)
    control_losses = finetune(control, calib_ids, qat_steps, scheme=None)
    qat_rows[f"fp32 fine-tuned ({qat_steps} steps, control)"] = perplexity(control, eval_ids)
    del control
    qat_rows["fp32"] = baseline["perplexity"]
    for label, ppl in qat_rows.items():
        print(f"{label:<40} perplexity {ppl:7.2f}")
    gain_qat = list(qat_rows.values())[0] - list(qat_rows.values())[1]
    gain_control = qat_rows["fp32"] - list(qat_rows.values())[2]
    print(f"QAT lowered the int4 perplexity by {gain_qat:.2f}; the same fine-tuning lowered "
          f"fp32's by {gain_control:.2f} - the difference is what training *with* rounding "
          "repaired.")
    plots.lines(range(1, qat_steps + 1),
                {"QAT (int4 forward)": qat_losses, "fp32 fine-tuning": control_losses},
                title="Training loss on calibration text", xaxis="step", yaxis="loss").show()
else:
    print("skipped while grading: QAT trains the model")

# %% [markdown]
# ## 10 · When to avoid quantization - numbers, not advice
# **Small models.** Quantization pays when weight bytes dominate memory or bandwidth; a small model
# fits anyway, and its unquantized embedding is a large share of it.
#
# **Math and code.** Perplexity on prose, Python standard-library source and two-digit additions
# `a + b = c`, and the share of addition *answers* predicted right (teacher-forced, greedy per
# answer token):

# %%
if HEAVY and len(results) > 2:
    print(f"{'scheme':<34}{'MB saved':>9}{'speed vs fp32':>15}{'ppl vs fp32':>13}")
    for label, r in results.items():
        if label == "fp32":
            continue
        print(f"{label:<34}{baseline['memory_mb'] - r['memory_mb']:>9.0f}"
              f"{r['decode_tok_s'] / baseline['decode_tok_s']:>14.2f}x"
              f"{r['perplexity'] / baseline['perplexity']:>12.2f}x")
emb_small = model.model.embed_tokens.weight.numel() / parameter_count(model)
print(f"embedding share of parameters: {emb_small:.0%} here; "
      f"{32000 * 4096 * 2 / 6_738_415_616:.0%} in Llama-2-7B "
      "(embedding + untied lm_head, from its config)")

domain_rows = {}
if HEAVY:
    texts = corpora(tokenizer, pick(1024, 256))
    for label, scheme in [("fp32", None),
                          ("int8 absmax per-channel", Scheme(8, "absmax", "channel")),
                          ("int4 absmax group-128", Scheme(4, "absmax", "group", 128)),
                          ("NF4 group-64", Scheme(4, "nf4", "group", 64))]:
        m = quantized_model(scheme, fake=True).to(device)
        domain_rows[label] = {kind: perplexity(m, ids) for kind, ids in texts.items()}
        domain_rows[label]["addition answers correct"] = answer_accuracy(
            m, tokenizer, n_lines=pick(100, 30))
        del m
    kinds = list(next(iter(domain_rows.values())))
    print(f"{'':<26}" + "".join(f"{k:>26}" for k in kinds))
    for label, row in domain_rows.items():
        cells = []
        for k in kinds:
            ratio = row[k] / domain_rows["fp32"][k] if domain_rows["fp32"][k] else float("nan")
            cells.append(f"{row[k]:>14.3f} ({ratio:5.2f}x)" if "correct" not in k
                         else f"{row[k]:>18.1%} ({ratio:4.2f}x)")
        print(f"{label:<26}" + "".join(f"{c:>26}" for c in cells))
    plots.grouped_bars(kinds, {label: [row[k] / domain_rows["fp32"][k] for k in kinds]
                               for label, row in domain_rows.items() if label != "fp32"},
                       title="Quantized / fp32, per kind of text (perplexity: higher is worse; "
                             "answers: lower is worse)",
                       yaxis="ratio to fp32").show()
    for label, row in domain_rows.items():
        if label != "fp32":
            base = domain_rows["fp32"]
            answers = row["addition answers correct"] / max(base["addition answers correct"], 1e-9)
            print(f"{label}: perplexity x{row['prose'] / base['prose']:.2f} on prose, "
                  f"x{row['code'] / base['code']:.2f} on code; correct addition answers "
                  f"x{answers:.2f} ({pick(100, 30)} additions: a few answers more or less "
                  "move this ratio a lot)")
else:
    print("skipped while grading: evaluates several models on three texts")

# %% [markdown]
# ## 11 · A 4-bit kernel that pays
# Decoding is limited by the **bytes of weights it reads** (lesson 00), and 4-bit weights are about
# a quarter of fp16's, yet 4 bits saved no time (sections 6 and 7), for three reasons:
#
# * **Where the weights are unpacked.** `QuantLinear` rebuilds the full weight on every call with
#   generic tensor operations, each reading and writing all of it; a kernel that pays unpacks the
#   **packed bytes** in registers and multiplies at once ("fused dequantization").
# * **What sets the pace.** Eager `transformers.generate` launches several small kernels per layer
#   from Python, microseconds of CPU time each; where that sets the pace (the recorded GPU runs
#   below), fewer bytes cannot help.
# * **How many tokens share each weight.** With M tokens per step, each weight read serves M
#   multiply-adds: at M = 1 the GPU waits for bytes; as M grows it turns compute-bound (W4A16 sooner
#   than fp16), and unpacking (a shift, a mask, a subtraction and a multiply per weight) is extra
#   arithmetic.
#
# The arithmetic, then the recorded runs:

# %%
from inferlab.compress.w4a16 import GROUP_SIZE, bits_per_weight
from inferlab.lab.bench import DATASHEET_BANDWIDTH

w4_bits = bits_per_weight(GROUP_SIZE)
# 32 decoder layers of q, k, v, o (4096 x 4096) and gate, up, down (4096 x 11008); this model's
# Linear layers (section 5's `linears`) counted
llama_linear_params = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
small_linear_params = sum(lin.weight.numel() for lin in linears)
for name, params in [("Llama-2-7B", llama_linear_params), (DEFAULT_MODEL, small_linear_params)]:
    print(f"{name}: decoder Linear layers {params / 1e6:,.0f} M weights -> per decoded token "
          f"{params * 2 / 1e6:,.1f} MB in fp16, {params * w4_bits / 8 / 1e6:,.1f} MB in W4A16 "
          f"group-{GROUP_SIZE} ({w4_bits:.3f} bits per weight: "
          f"{16 / w4_bits:.2f}x fewer bytes)")
H100_BANDWIDTH = DATASHEET_BANDWIDTH["H100 SXM"] * 1e9   # bytes/s, NVIDIA H100 SXM datasheet
H100_BF16_FLOPS = 989.4e12   # dense fp16/bf16 tensor-core FLOP/s, NVIDIA H100 SXM datasheet
ridge = H100_BF16_FLOPS / H100_BANDWIDTH
print(f"\nroofline of a datasheet H100 SXM ({H100_BANDWIDTH / 1e12:.2f} TB/s): Llama-2-7B's "
      f"Linear layers alone allow at most {H100_BANDWIDTH / (llama_linear_params * 2):.0f} "
      f"tokens/s at batch 1 in fp16, {H100_BANDWIDTH / (llama_linear_params * w4_bits / 8):.0f} "
      "in W4A16")
print(f"its ridge point: {H100_BF16_FLOPS / 1e12:.0f} TFLOP/s / {H100_BANDWIDTH / 1e12:.2f} TB/s"
      f" = {ridge:.0f} FLOP per byte read; a matmul with M tokens does 2*M FLOPs per weight:")
for m in (1, 8, 32, 64, 128, 512):
    fp16_intensity, w4_intensity = 2 * m / 2, 2 * m / (w4_bits / 8)
    print(f"  M = {m:>3}: {fp16_intensity:5.0f} FLOP/byte in fp16 "
          f"({'memory' if fp16_intensity < ridge else 'compute'}-bound), {w4_intensity:5.0f} "
          f"in W4A16 ({'memory' if w4_intensity < ridge else 'compute'}-bound)")
try:
    slow = records.load("why_slow_gpu")
    print(f"\n{records.label(slow)}: transformers generate, fp16, batch 1 reached "
          f"{slow['results']['fraction_of_roofline']:.0%} of its decode roofline")
except FileNotFoundError as missing:
    print(missing)
if gpu is not None:
    by_kind = gpu["results"]["generate"]
    print(f"{gpu_label}: batch 1 {by_kind['fp16']['1']['tokens_per_s']:.1f} tokens/s in fp16, "
          f"{by_kind['nf4']['1']['tokens_per_s']:.1f} with bitsandbytes NF4")

# %% [markdown]
# ### The format: `inferlab.compress.w4a16`
# `pack_w4(weight, group_size=128)` stores a Linear weight `W [N, K]` (N outputs, K inputs) as
#
# * `qweight uint8 [N, ceil(K / 2)]`: two 4-bit codes per byte along K, `k = 2j` in the **low**
#   nibble of byte `j` (your `pack_int4`); an odd K leaves a padding nibble at the end of each row;
# * `scales fp16 [N, ceil(K / G)]` and `zeros uint8 [N, ceil(K / G)]`: one scale and one integer
#   zero-point per group of G consecutive inputs of a row (your `zeropoint_quantize`, per group);
# * `W[n, k] = (code[n, k] - zeros[n, k // G]) * scales[n, k // G]`.
#
# The zero-point lets a group's 16 levels span its own range, for one byte per group and one
# subtraction per weight. `dequantize_w4` rebuilds `W` in PyTorch: the reference your kernel must
# match. On section 1's layer:

# %%
from inferlab.compress.w4a16 import dequantize_w4, pack_w4

packed = pack_w4(weight, GROUP_SIZE)        # (qweight, scales, zeros, group_size)
qweight, w4_scales, w4_zeros, _ = packed
stored = sum(t.numel() * t.element_size() for t in (qweight, w4_scales, w4_zeros))
print(f"layers.5.mlp.down_proj {tuple(weight.shape)}: qweight {tuple(qweight.shape)} "
      f"{qweight.dtype}, scales {tuple(w4_scales.shape)} {w4_scales.dtype}, zeros "
      f"{tuple(w4_zeros.shape)} {w4_zeros.dtype}")
print(f"stored: {stored / 1e3:.1f} kB = {8 * stored / weight.numel():.3f} bits per weight "
      f"(fp16 would be {weight.numel() * 2 / 1e3:.1f} kB)")
print(f"relative error of W4A16 group-{GROUP_SIZE}: "
      f"{relative_error(weight, dequantize_w4(*packed)):.4f} "
      f"(int4 absmax group-128 in section 2: {gran_rows['group-128'][0]:.4f})")

# %% [markdown]
# ### Exercise 6 - the W4A16 kernel in Triton (4 points)
# [Triton](https://triton-lang.org) writes a GPU kernel as a Python function run by many
# **programs** at once, one per output tile: `tl.program_id(axis)` says which, `tl.arange(0, B)`
# makes a vector of offsets, `tl.load(pointer + offsets, mask=..., other=...)` reads a tile
# (masked-off lanes read `other` and touch no memory), `tl.store` writes one, `x.to(dtype)`
# converts, and `tl.dot(a, b)` multiplies two tiles on the tensor cores. Indexing broadcasts like
# NumPy: `rows[:, None] * stride + cols[None, :]` is a 2-D tile of addresses.
#
# Write the body of `w4a16_kernel`: program `(pid_m, pid_n)` computes the tile
# `out[pid_m * BLOCK_M : ..., pid_n * BLOCK_N : ...]` of `out = x @ W.T`.
#
# 1. Start an accumulator `acc` of shape `(BLOCK_M, BLOCK_N)` in **float32**.
# 2. Loop `k0` over `range(0, K, BLOCK_K)`; with `offs_k = k0 + tl.arange(0, BLOCK_K)`:
#    * load the activations `x[offs_m, offs_k]` (address `x_ptr + m * stride_xm + k`);
#    * load the weight tile as `[BLOCK_K, BLOCK_N]`: the byte of `(k, n)` is at
#      `qweight_ptr + n * stride_qn + k // 2`, and its code is `(byte >> 4 * (k % 2)) & 0xF`;
#    * load each weight's group scale and zero-point, group `k // GROUP_SIZE` (address
#      `scales_ptr + n * stride_gn + k // GROUP_SIZE`, `zeros_ptr` the same), and dequantize in
#      float32: `(code - zero) * scale`;
#    * accumulate `acc += tl.dot(x_tile, w_tile.to(x_tile.dtype))`: the tensor cores take 16-bit
#      tiles and add up in float32.
# 3. Store `acc` converted to the output's dtype (`out_ptr.dtype.element_ty`) at
#    `out_ptr + m * stride_om + n`.
#
# Mask every load and the store: `m < M`, `n < N`, `k < K`. Keep the signature: the given launcher
# `launch_w4a16` passes the strides and block sizes and launches a
# `(cdiv(M, BLOCK_M), cdiv(N, BLOCK_N))` grid; on CPU tensors it runs your kernel in **Triton's
# interpreter** (slow, but the same kernel), so the tests check it on any machine. The hidden tests
# try several M (more than one tile), M, N and K that are no multiples of their blocks, an odd K (a
# padding nibble in each row's last byte), several groups per row, bfloat16 as well as float16, a
# long K whose small terms a 16-bit accumulator would lose, and a launch of only some programs (each
# must write its own tile and nothing else).

# %% solution id=w4a16_kernel
import triton
import triton.language as tl

from inferlab.compress.w4a16 import launch_w4a16


@triton.jit
def w4a16_kernel(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, out_ptr, M, N, K,
                 stride_xm, stride_qn, stride_gn, stride_om,
                 GROUP_SIZE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr):
    """The tile (pid_m, pid_n) of out = x @ W.T, with W[n, k] = (code - zero) * scale."""
    ### BEGIN SOLUTION
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :],
                    mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
        w_mask = (offs_k[:, None] < K) & (offs_n[None, :] < N)
        byte = tl.load(qweight_ptr + offs_n[None, :] * stride_qn + offs_k[:, None] // 2,
                       mask=w_mask, other=0)
        code = (byte >> 4 * (offs_k[:, None] % 2)) & 0xF
        group = offs_n[None, :] * stride_gn + offs_k[:, None] // GROUP_SIZE
        scale = tl.load(scales_ptr + group, mask=w_mask, other=0.0).to(tl.float32)
        zero = tl.load(zeros_ptr + group, mask=w_mask, other=0).to(tl.float32)
        w = (code.to(tl.float32) - zero) * scale
        acc += tl.dot(x, w.to(x.dtype))
    tl.store(out_ptr + offs_m[:, None] * stride_om + offs_n[None, :],
             acc.to(out_ptr.dtype.element_ty),
             mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))
    ### END SOLUTION


def my_w4a16_matmul(x, qweight, scales, zeros, group_size, **launch):
    """x @ W.T with your kernel; ``launch`` (block sizes, grid, out) goes to the launcher."""
    return launch_w4a16(w4a16_kernel, x, qweight, scales, zeros, group_size, **launch)

# %% tests id=test_w4a16_kernel points=4
import torch

from inferlab.compress.w4a16 import dequantize_w4, pack_w4

torch.manual_seed(0)
weight = torch.randn(32, 64)
packed = pack_w4(weight, group_size=64)              # (qweight, scales, zeros, 64)
x = torch.randn(1, 64).half()
out = my_w4a16_matmul(x, *packed, block_n=16, block_k=32)
want = x.float() @ dequantize_w4(*packed).T
assert out.shape == (1, 32) and out.dtype == torch.float16, (out.shape, out.dtype)
assert torch.allclose(out.float(), want, rtol=1e-3, atol=1e-2), (out.float() - want).abs().max()
### BEGIN HIDDEN TESTS
assert list(w4a16_kernel.arg_names) == [
    "x_ptr", "qweight_ptr", "scales_ptr", "zeros_ptr", "out_ptr", "M", "N", "K", "stride_xm",
    "stride_qn", "stride_gn", "stride_om", "GROUP_SIZE", "BLOCK_M", "BLOCK_N", "BLOCK_K"], (
    "w4a16_kernel must be the @triton.jit kernel with the given signature")


def padded(t, fill):
    """``t`` as a view of a wider buffer: a read past the end of a row sees ``fill``."""
    wide = torch.full((t.shape[0], t.shape[1] + 8), fill, dtype=t.dtype)
    wide[:, :t.shape[1]] = t
    return wide[:, :t.shape[1]]


def case(m, n, k, group, dtype, seed, **launch):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * torch.rand(n, 1, generator=g) + 0.3 * torch.rand(
        n, k, generator=g)
    qweight, scales, zeros, _ = pack_w4(w, group)
    if k % 2:
        qweight[:, -1] |= 0xF0                   # garbage in the padding nibble: must be ignored
    x = torch.randn(m, k, generator=g).to(dtype)
    want = x.double() @ dequantize_w4(qweight, scales, zeros, group, k).double().T
    got = my_w4a16_matmul(padded(x, 100.0), padded(qweight, 0xFF), padded(scales, 1000.0),
                          padded(zeros, 15), group, **launch)
    return got, want


for m, n, k, group, dtype, launch in [
        (1, 40, 200, 32, torch.float16, dict(block_n=16, block_k=32)),      # K tail, 7 groups
        (3, 48, 201, 64, torch.bfloat16, dict(block_n=32, block_k=64)),     # odd K
        (20, 24, 128, 32, torch.float16, dict(block_m=16, block_n=16, block_k=16)),  # 2 M tiles
        (2, 16, 96, 96, torch.bfloat16, dict(block_n=16, block_k=64))]:     # a group > a tile
    got, want = case(m, n, k, group, dtype, seed=m * k, **launch)
    assert got.shape == (m, n) and got.dtype == dtype, (got.shape, got.dtype)
    tol = (2e-2 if dtype == torch.bfloat16 else 4e-3) * want.abs().max().item()
    err = (got.double() - want).abs().max().item()
    assert err <= tol, (f"M={m} N={n} K={k} group={group} {dtype}: largest error {err:.3g} "
                        f"(allowed {tol:.3g}); check nibble order, zero-point, the group of each "
                        "k, and the masks on K, M and N")

# each program writes its own tile only: launch 2 of the 3 x 2 programs
got_all, want = case(20, 48, 64, 32, torch.float16, seed=7, block_m=16, block_n=16, block_k=32)
out = torch.full((20, 48), float("nan"), dtype=torch.float16)
g = torch.Generator().manual_seed(7)
w = torch.randn(48, 64, generator=g) * torch.rand(48, 1, generator=g) + 0.3 * torch.rand(
    48, 64, generator=g)
x = torch.randn(20, 64, generator=g).half()
partial = my_w4a16_matmul(x, *pack_w4(w, 32), block_m=16, block_n=16, block_k=32, grid=(1, 2),
                          out=out)
assert torch.isnan(partial[16:]).all() and torch.isnan(partial[:, 32:]).all(), (
    "programs (0, 0) and (0, 1) must write out[:16, :32] and nothing else: compute the tile "
    "of tl.program_id(0) and tl.program_id(1) in a Triton kernel")
assert torch.allclose(partial[:16, :32].double(), want[:16, :32], rtol=4e-3,
                      atol=4e-3 * want.abs().max().item())

# fp32 accumulation: 2048 from the first group, then 480 terms of 1/32 (0.5 per 16-wide tile,
# which a 16-bit accumulator holding 2048 rounds away)
K = 512
codes = torch.ones(16, K, dtype=torch.uint8)
codes[:, :32] = 8
qweight = codes[:, 0::2] | (codes[:, 1::2] << 4)
scales = torch.full((16, K // 32), 1 / 32, dtype=torch.float16)
scales[:, 0] = 8.0
zeros = torch.zeros(16, K // 32, dtype=torch.uint8)
out = my_w4a16_matmul(torch.ones(1, K, dtype=torch.float16), qweight, scales, zeros, 32,
                      block_n=16, block_k=16)
assert (out.float() - 2063).abs().max() <= 1.01, (
    f"got {out.float().flatten()[:4].tolist()}, expected 2064 (2063 rounded to fp16): "
    "accumulate in float32")
### END HIDDEN TESTS

# %% [markdown]
# Your kernel on the real layer, one token, against `F.linear` on the dequantized weight (same
# numbers) and on the fp32 weight:

# %%
import time

if HEAVY:
    kernel_device = "cuda" if device == "cuda" else "cpu"
    x_one = torch.randn(1, weight.shape[1], generator=torch.Generator().manual_seed(0))
    x_one = x_one.to(kernel_device, torch.float16)
    on_device = [t.to(kernel_device) for t in packed[:3]]
    start = time.perf_counter()
    mine = my_w4a16_matmul(x_one, *on_device, GROUP_SIZE)
    seconds = time.perf_counter() - start
    same_math = torch.nn.functional.linear(x_one.float(), dequantize_w4(*on_device, GROUP_SIZE))
    exact = torch.nn.functional.linear(x_one.float(), weight.to(kernel_device))
    print(f"your kernel on {kernel_device} "
          f"({'compiled' if kernel_device == 'cuda' else 'Triton interpreter'}): "
          f"{seconds * 1e3:.0f} ms for the first call (compilation or interpretation included)")
    print(f"largest difference to F.linear on the dequantized weight: "
          f"{(mine.float() - same_math).abs().max().item():.2e} (output magnitude "
          f"{same_math.abs().max().item():.2f}); to the fp32 weight: "
          f"{(mine.float() - exact).abs().max().item():.2e} (the 4-bit error)")
else:
    print("skipped while grading: runs the kernel on a real layer")

# %% [markdown]
# ### Measured: your kernel against fp16, bitsandbytes and the package's kernel
# On a GPU: one Llama-2-7B gate/up projection (11008 x 4096) at M = 1 and M = 32 by `F.linear` in
# fp16 (cuBLAS), bitsandbytes NF4, the package's `w4a16_matmul` and your kernel, timed by
# `inferlab.compress.w4a16_bench.time_layer`: many calls captured in a CUDA graph (no launch
# overhead), cycling over weight copies larger than the L2 cache (every call reads from memory),
# median of repeats. Bandwidth is weight bytes over time, against the copy bandwidth measured here
# (the roofline).

# %%
LAYER = "gate/up 11008x4096"
kernel_rows, kernel_source = {}, "not measured"   # M -> {way: microseconds}, for the claims
if not HEAVY:
    print("skipped while grading: times kernels on a GPU")
elif device == "cuda":
    from inferlab.compress.w4a16_bench import time_layer
    from inferlab.lab.bench import measure_bandwidth

    copy_bw = measure_bandwidth("cuda", megabytes=1024)
    kernel_source = f"measured here, {device_name(device)}"
    print(f"{device_name(device)}: copy bandwidth {copy_bw / 1e9:.0f} GB/s")
    for m in (1, 32):
        timed = time_layer(m, 11008, 4096, kernels={"your kernel": my_w4a16_matmul},
                           repeats=pick(20, 5))
        kernel_rows[m] = {}
        for way, row in timed.items():
            if "us" not in row:
                print(f"M = {m:>2}  {way:<12} failed: {row['error']}")
                continue
            kernel_rows[m][way] = row["us"]
            print(f"M = {m:>2}  {way:<12} {row['us']:8.1f} us  {row['weight_bytes'] / 1e6:6.1f} MB"
                  f"  {row['GB_s']:6.0f} GB/s = {row['GB_s'] * 1e9 / copy_bw:4.0%} of the copy "
                  f"bandwidth ({row['timing']})")
    for way, label in [("your kernel", "your kernel"), ("W4A16", "the package's kernel")]:
        if way in kernel_rows[1] and "fp16" in kernel_rows[1]:
            recap.note(f"{LAYER} matmul speed, M = 1: {label} vs fp16 (cuBLAS)",
                       kernel_rows[1]["fp16"] / kernel_rows[1][way], "x", device)
else:
    print("No GPU here: your kernel ran in Triton's interpreter above - that checks correctness, "
          "not speed.")
    try:
        w4_record = records.load("w4a16_gpu")
        kernel_source = records.label(w4_record)
        res = w4_record["results"]
        print(f"{kernel_source} (torch {res['versions']['torch']}, triton "
              f"{res['versions']['triton']}; copy bandwidth {res['copy_bandwidth_GB_s']} GB/s):")
        for m, by_way in res["layers"][LAYER].items():
            kernel_rows[int(m)] = {way: r["us"] for way, r in by_way.items() if "us" in r}
            for way, r in by_way.items():
                if "us" in r:
                    print(f"M = {m:>2}  {way:<8} {r['us']:8.1f} us  {r['GB_s']:6.0f} GB/s = "
                          f"{r['pct_of_copy_bw']:3.0f}% of the copy bandwidth")
        for m, by_way in res["decode_estimate_tok_s"].items():
            print(f"a 7B model's Linear layers alone at M = {m} (an upper bound): "
                  + ", ".join(f"{way} {tok_s:.0f}" for way, tok_s in by_way.items())
                  + " tokens/s")
    except FileNotFoundError:
        print("No GPU run of this kernel is recorded yet (benchmarks/w4a16_gpu.py records one "
              "on a CUDA GPU); the bytes-per-token arithmetic above is what it would test.")
if kernel_rows:
    ways = list(dict.fromkeys(way for row in kernel_rows.values() for way in row))
    plots.grouped_bars([f"M = {m}" for m in kernel_rows],
                       {way: [kernel_rows[m].get(way, 0) for m in kernel_rows] for way in ways},
                       title=f"One {LAYER} matmul ({kernel_source})",
                       yaxis="microseconds per call (lower is better)").show()

# %% [markdown]
# ### What the compiler made of it
# Fewer bytes pay only if the kernel reads them at the memory's pace. Triton compiles down to
# **PTX** (NVIDIA's assembly) on the CPU, so `inferlab.lab.ptx.compile_ptx` builds a kernel for an
# H100 (compute capability 9.0) on any machine, and `global_loads` counts its memory reads (each
# instruction once, even inside the loop): `ld.global.v4.b32` brings 16 bytes to a thread in one
# instruction, `ld.global.b8` one byte, `cp.async` copies a tile to shared memory in the background
# (for `tl.dot`).
#
# In your kernel's `[BLOCK_K, BLOCK_N]` tile, neighbours along the fast axis are a row apart in
# memory, and two k share a byte. The package's one-token path loads whole 32-bit words (a nibble
# mask, `2 * byte < K`, would force a load per byte) over several groups per tile, so each thread
# keeps several 16-byte loads in flight to hide the latency; it turns a nibble into a float by
# writing it into the mantissa of 2^23 (an `or`), as GPUs run int-to-float conversions at a quarter
# of their arithmetic rate. Compare:

# %%
import re

from inferlab.compress import w4a16 as w4a16_module

try:
    from inferlab.lab.ptx import compile_ptx, global_loads

    pointer_types = {"x_ptr": "float16", "qweight_ptr": "uint8", "scales_ptr": "float16",
                     "zeros_ptr": "uint8", "out_ptr": "float16"}
    multiples_of_16 = ("N", "K", "stride_xm", "stride_qn", "stride_gn", "stride_om")
    yours = compile_ptx(w4a16_kernel, pointer_types,
                        dict(GROUP_SIZE=128, BLOCK_M=16, BLOCK_N=64, BLOCK_K=128),
                        divisible=multiples_of_16)       # the launcher's default tiles
    one_token = w4a16_module.kernel_config(1)
    package = compile_ptx(w4a16_module._compiled(), pointer_types,
                          dict(GROUP_SIZE=128, BLOCK_M=1, BLOCK_N=one_token["block_n"],
                               BLOCK_K=one_token["block_k"], SPLIT_K=1,
                               TILE_GROUPS=w4a16_module.tile_groups(1, one_token["block_k"],
                                                                    128), WORDS=True),
                          divisible=(*multiples_of_16, "k_bytes", "split_bytes"),
                          num_warps=one_token["num_warps"])
    for name, ptx in [("your kernel (M = 16 tile)", yours), ("package, one token", package)]:
        loads = global_loads(ptx)
        conversions = len(re.findall(r"cvt\.rn\.f32\.[us]\d+", ptx))   # int -> float
        print(f"{name:<26} " + ", ".join(f"{kind} x{count}" for kind, count in
                                         loads.most_common())
              + f"; int-to-float conversions x{conversions}")
except ImportError as missing:      # Triton without its NVIDIA backend (macOS, Windows)
    print(f"cannot compile for an NVIDIA GPU here: {missing}")

# %% [markdown]
# Byte-sized loads are one reason a kernel reading 4x fewer bytes can still lose to fp16; others are
# the work between loads (unpacking, scales, the final reduction) and too few programs to keep the
# memory busy. Production W4A16 kernels (Marlin, the AWQ and GPTQ CUDA kernels) also reorder the
# packed weights offline, so a thread's 16 bytes feed the tensor cores directly, and pipeline loads.

# %% [markdown]
# ### A production int4 kernel: PyTorch's tinygemm
# PyTorch ships the int4 kernel that gpt-fast and torchao use (`torch._weight_int4pack_mm`,
# "tinygemm"). It takes the same codes as `pack_w4`: it computes `(code - 8) * scale + zero` with a
# float `zero`, so `inferlab.compress.int4_tinygemm` stores `(8 - zero) * scale` there. Then
# `torch._convert_weight_to_int4pack` shuffles the codes once, on the GPU that will run them, into
# the tensor cores' fragment order: each thread of a warp finds its share of `inner_k_tiles` (8)
# K tiles in one 16-byte word, loads it in one instruction and dequantizes it in registers. A
# one-token matmul becomes a race to read 4x fewer bytes. gpt-fast's README reports Llama-2-7B
# decoding at 196.8 tokens/s in int4 (groups of 32) against 104.9 in bf16, batch 1, on an A100
# (their figures). tinygemm takes bf16 activations only, so it is timed beside cuBLAS in bf16:

# %%
from inferlab.compress.int4_tinygemm import Int4TinyGemmLinear, check_against_dequantized, supported
from inferlab.compress.w4a16_bench import tinygemm_layer

TINYGEMM = "torch int4 (tinygemm)"
int4_rows, int4_source = {}, "not measured"        # M -> {way: microseconds}
gpu_int4 = device == "cuda" and supported(11008, 4096, GROUP_SIZE, "cuda", torch.bfloat16)
# the same numbers first: tinygemm against F.linear on dequantize_w4's weight
n_check, k_check = (11008, 4096) if gpu_int4 else (256, 1024)
int4_dtype = torch.bfloat16 if gpu_int4 else torch.float32
w_check = (torch.randn(n_check, k_check) * 0.02).to("cuda" if gpu_int4 else "cpu", int4_dtype)
w4_check = pack_w4(w_check, GROUP_SIZE)[:3]
int4_layer = Int4TinyGemmLinear.from_packed(*w4_check, GROUP_SIZE, dtype=int4_dtype)
print(f"tinygemm on {w_check.device.type} ({int4_dtype}), {n_check}x{k_check}: largest "
      f"difference to F.linear on the dequantized weight = "
      f"{check_against_dequantized(int4_layer, *w4_check):.1e} of the largest output")
if not HEAVY:
    print("skipped while grading: times kernels on a GPU")
elif gpu_int4:
    from inferlab.compress.w4a16_bench import time_layer

    int4_source = f"measured here, {device_name(device)}"
    for m in (1, 32):
        timed = time_layer(m, 11008, 4096, with_bnb=False, repeats=pick(20, 5))
        timed.update(time_layer(m, 11008, 4096, dtype=torch.bfloat16, with_bnb=False,
                                with_w4a16=False, dense_name="bf16", repeats=pick(20, 5),
                                layers={TINYGEMM: tinygemm_layer}))
        int4_rows[m] = {way: row["us"] for way, row in timed.items() if "us" in row}
        for way, row in timed.items():
            print(f"M = {m:>2}  {way:<22} " + (f"{row['us']:8.1f} us  {row['GB_s']:6.0f} GB/s"
                                               if "us" in row else f"failed: {row['error']}"))
else:
    if device == "cuda":
        print(f"tinygemm needs compute capability 8.0+; {device_name(device)} is older.")
    try:
        int4_record = records.load("w4a16_gpu")
        by_m = int4_record["results"]["layers"][LAYER]
        if TINYGEMM not in by_m.get("1", {}):
            raise FileNotFoundError
        int4_source = records.label(int4_record)
        print(f"{LAYER}, {int4_source}:")
        for m in ("1", "32"):
            int4_rows[int(m)] = {way: r["us"] for way, r in by_m.get(m, {}).items() if "us" in r}
            for way, us in int4_rows[int(m)].items():
                print(f"M = {m:>2}  {way:<22} {us:8.1f} us")
        print("(the whole-model estimates above include it)")
    except FileNotFoundError:
        print("No GPU run of tinygemm is recorded yet (benchmarks/w4a16_gpu.py records one on a "
              "CUDA GPU): on this machine you have seen its CPU version give the same numbers.")
for m, row in int4_rows.items():
    if TINYGEMM in row and "bf16" in row:
        print(f"M = {m:>2}: tinygemm / bf16 cuBLAS = {row['bf16'] / row[TINYGEMM]:.2f}x speed "
              f"({int4_source})")

# %% [markdown]
# ### The real model with W4A16 layers
# `quantize_model_w4a16` swaps every decoder Linear (not the tied `lm_head`) for a `W4A16Linear`
# calling `w4a16_matmul` on its packed weight: the package's kernel on a GPU (up to 64 tokens per
# call; beyond, it dequantizes once and calls cuBLAS), a PyTorch fallback on a CPU. Quality is
# compared with fp32; speed (greedy, batch 1) with the unswapped model, fp16 on a GPU (the kernel
# takes 16-bit activations), fp32 on a CPU.

# %%
from inferlab.compress.w4a16 import W4A16Linear, quantize_model_w4a16


def linear_mb(m):
    return sum(weight_bytes(mod) for name, mod in m.named_modules()
               if isinstance(mod, (torch.nn.Linear, W4A16Linear))
               and not name.endswith("lm_head")) / 1e6


swap_rows = {}
if HEAVY:
    swap_dtype = torch.float16 if device == "cuda" else torch.float32
    plain, _ = load_model(dtype=swap_dtype, device=device)
    swapped = quantize_model_w4a16(load_model(dtype=swap_dtype, device=device)[0], GROUP_SIZE)
    for label, m in [(f"{str(swap_dtype)[6:]} (no swap)", plain),
                     (f"W4A16 group-{GROUP_SIZE}", swapped)]:
        swap_rows[label] = measure(m, eval_ids, ref_logits, None, prompt_ids, NEW_TOKENS,
                                   disk=False)
        print(f"{label:<20} Linear weights {linear_mb(m):6.1f} MB   perplexity "
              f"{swap_rows[label]['perplexity']:7.2f}   top-1 vs fp32 "
              f"{swap_rows[label]['top1_agreement']:6.1%}   "
              f"{swap_rows[label]['decode_tok_s']:6.1f} tokens/s on {device}")
    largest = max(lin.weight.numel() for lin in linears)
    print(f"this model's largest Linear has {largest / 1e6:.2f} M weights; a Llama-2-7B gate/up "
          f"projection has {11008 * 4096 / largest:.0f}x more")
    del plain, swapped
else:
    print("skipped while grading: measures two whole models")

# %% [markdown]
# The fallback, like `QuantLinear`, saves no time on a CPU. On a GPU, launch overhead paces whole
# `generate` steps of a model this small (section 11), so one layer's gain need not show; it shows
# in a 7B model's layers (above) and in an engine without launch overhead (lesson 09: CUDA graphs).

# %% [markdown]
# ## Claims vs measured
# The tutorial's precision table (FP32 1x, FP16 ~2x, INT8 ~3-4x, NF4 ~6-8x, INT4 ~8-10x) and the
# papers' quality claims, beside what this run measured:

# %%
def ratio(key, label, invert=False):
    if label not in results or key not in results[label]:
        return "n/a (not measured in this mode)"
    value = (results["fp32"][key] / results[label][key] if not invert
             else results[label][key] / results["fp32"][key])
    return f"{value:.2f}x"


gpu_res = gpu["results"] if gpu else None


def gpu_ratio(kind, batch):
    if not gpu_res or kind not in gpu_res["generate"]:
        return "n/a"
    by_kind = gpu_res["generate"]
    return f"{by_kind[kind][batch]['tokens_per_s'] / by_kind['fp16'][batch]['tokens_per_s']:.2f}x"


def kernel_speedup(m):
    row = kernel_rows.get(m, {})
    return f"{row['fp16'] / row['W4A16']:.2f}x" if "fp16" in row and "W4A16" in row else "n/a"


def int4_speedup(m):
    row = int4_rows.get(m, {})
    return f"{row['bf16'] / row[TINYGEMM]:.2f}x" if "bf16" in row and TINYGEMM in row else "n/a"


claims = [
    ("FP16 ~2x", "bf16 memory", ratio("memory_mb", "bf16"), "half the bytes per weight, exactly"),
    ("FP16 ~2x", f"bf16 decode speed ({device})", ratio("decode_tok_s", "bf16", invert=True),
     ("CPUs have few bf16 units; " if device == "cpu" else "")
     + "speed follows kernels, not only bytes"),
    ("INT8 ~3-4x", "int8 memory, whole model / Linear only",
     f"{ratio('memory_mb', 'int8 absmax per-channel')} / "
     f"{ratio('linear_mb', 'int8 absmax per-channel')}",
     "vs fp32 the Linear bytes fall 4x; the fp32 embedding stays"),
    ("INT8 ~3-4x", f"int8 decode speed: QuantLinear on {device} / recorded GPU batch 1 (bnb)",
     f"{ratio('decode_tok_s', 'int8 absmax per-channel', invert=True)} / {gpu_ratio('int8', '1')}",
     "weight-only dequantization costs time; LLM.int8's outlier split costs more"),
    ("NF4 ~6-8x", "NF4 memory, whole model / Linear only",
     f"{ratio('memory_mb', 'NF4 group-64')} / {ratio('linear_mb', 'NF4 group-64')}",
     "8x on Linear bytes minus scales; the embedding dilutes it in a small model"),
    ("NF4 ~6-8x", "NF4 speed: recorded GPU batch 1 / batch 32 (bnb)",
     f"{gpu_ratio('nf4', '1')} / {gpu_ratio('nf4', '32')}",
     "memory, not speed: dequantization kernels; larger batches are compute-bound"),
    ("INT4 ~8-10x", "int4 g128 memory, whole model / Linear only",
     f"{ratio('memory_mb', 'int4 absmax group-128')} / "
     f"{ratio('linear_mb', 'int4 absmax group-128')}",
     "at most 8x from bits (vs fp32), less with scales; >8x is not possible from bits alone"),
    ("LLM.int8(): no degradation (Dettmers et al. 2022, at 175B)", "int8 perplexity vs fp32",
     ratio("perplexity", "int8 absmax per-channel", invert=True),
     "int8 per-channel is near-lossless here too"),
    ("LLM.int8(): no degradation", "HellaSwag acc_norm, fp32 / int8 / NF4",
     " / ".join(f"{task_rows[k]['acc_norm']:.0%}" for k in task_rows) if HEAVY else "n/a",
     f"{len(task_items)} items, one standard error ~{task_rows['fp32']['acc_norm_se']:.0%}"
     if HEAVY else "skipped while grading"),
    ("NF4 optimal for normal weights (QLoRA, Dettmers et al. 2023)",
     "NF4 vs int4 absmax error, group 64 (layer 5)",
     f"{err_nf4:.4f} vs {err_int4:.4f}", "measured on one real layer in section 3"),
    ("INT4 ~8-10x", f"W4A16 kernel vs fp16 speed, one {LAYER} matmul, M = 1 / M = 32 "
     f"({kernel_source})", f"{kernel_speedup(1)} / {kernel_speedup(32)}",
     (f"{w4_bits:.2f} bits read instead of 16 pay where bytes set the time (M = 1); with more "
      "tokens the work is the same and unpacking adds to it")
     if kernel_rows.get(1, {}).get("W4A16", 1e9) < kernel_rows.get(1, {}).get("fp16", 0) else
     ("fewer bytes, yet slower: this kernel reads them far below the memory bandwidth (see its "
      "GB/s), so instructions and latency set its time, not bytes - a 4-bit kernel pays only "
      "once it streams its bytes near the roofline")),
    ("INT4 ~8-10x", f"torch int4 (tinygemm) vs bf16 speed, one {LAYER} matmul, M = 1 / M = 32 "
     f"({int4_source})", f"{int4_speedup(1)} / {int4_speedup(32)}",
     ("weights pre-shuffled for the tensor cores stream nearer the memory's pace; bytes alone "
      "allow at most 16 / 4.25 = 3.8x, and less as M grows")
     if int4_rows.get(1, {}).get(TINYGEMM, 1e9) < int4_rows.get(1, {}).get("bf16", 0) else
     "not measured faster here: no GPU timing in this run or record, or an older GPU"),
]
for claim, what, value, why in claims:
    print(f"claim: {claim}\n   measured: {what} = {value}\n   why: {why}")

# %% [markdown]
# ## What you measured
# The headline figures of this lesson, measured in this run on your machine: the memory 4 bits
# save, what 8 and 4 bits do to perplexity, and what they do to speed (on a GPU, also your kernel
# against fp16). Re-running a measurement's cell updates its row.

# %%
recap.show()

# %% [markdown]
# ## Summary
# * Memory follows the bits per weight, plus scales; speed follows the kernels: a fused kernel like
#   yours saves time where bytes set it (batch 1 on a GPU).
# * Per-group scales and NF4 cut 4-bit error; QAT repairs some of what PTQ breaks, at the price of
#   training. Small models and arithmetic suffer most.
#
# Next: lesson 02 makes 4 bits better without training (GPTQ, AWQ) and runs the model with
# llama.cpp's kernels.

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
# `from inferlab.lab.submit import submit; submit("01_quantization")` in a cell instead.

# %%
from inferlab.lab.submit import submit_form

submit_form("01_quantization")
