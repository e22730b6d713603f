# %% [markdown]
# # 02 · Better 4-bit: GPTQ, AWQ - and GGUF on the CPU with llama.cpp
#
# **Time:** running every cell in full mode took about 3 min on a 2-core CPU and about 3 min on an
# H200 GPU (measured), plus your reading and exercises. **Prerequisites:** lesson 01
# (round-to-nearest, per-group scales, perplexity); matrix products (the Cholesky factor is
# explained here).
#
# Lesson 01 rounded each weight on its own (**round-to-nearest**, RTN), costing a lot of perplexity
# at 4 bits. **GPTQ** and **AWQ** do better without training, by looking at what the weights are
# *used for*: the activations of a little calibration text. Then **GGUF / llama.cpp** (file format
# and CPU engine) and **W8A8, SmoothQuant and FP8**, which quantize the activations too. 7 graded
# exercises; every number printed is measured in this run, or cited with its source.

# %%
import logging
import statistics
import time
import warnings

import torch
import transformers

from inferlab.compress.awq import awq_quantize_model, awq_search_clip
from inferlab.compress.awq import awq_search_scale as reference_awq_search
from inferlab.compress.gguf_blocks import (
    gguf_summary,
    q4_0_dequantize,
    q8_0_dequantize,
    write_requantized,
)
from inferlab.compress.gptq import (
    LINEAR_GROUPS,
    block_linear_inputs,
    decoder_blocks,
    gptq_quantize_model,
    gptq_quantize_weight,
    inverse_hessian_factor,
)
from inferlab.compress.quant import Scheme, absmax_quantize, fake_quantize, from_groups, to_groups
from inferlab.compress.quant_widgets import layer_panel
from inferlab.lab import plots, recap
from inferlab.lab.bench import default_device, device_name, pin_threads, time_fn
from inferlab.lab.data import calibration_tokens, eval_tokens
from inferlab.lab.generation import timed_greedy
from inferlab.lab.models import embedded_gguf, load_model
from inferlab.lab.quality import kl_divergence, logits_of, top1_agreement
from inferlab.lab.settings import cache_dir, fast_mode, grading, pick
from inferlab.lab.widgets import show

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
warnings.filterwarnings("ignore", message=".*past_key_values.*")
threads = pin_threads()
device = default_device()  # "cuda" when PyTorch sees a GPU, else "cpu" (INFERLAB_DEVICE overrides)
HEAVY = not grading()          # whole-model runs are skipped while nbgrader validates/grades
N_EVAL = pick(2048, 256)       # evaluation tokens
SCHEME = Scheme(4, "absmax", "group", 128)   # the comparison: int4, symmetric, group 128
print(f"device: {device_name(device)}; fast mode: {fast_mode()}; grading: {grading()}")

# %% [markdown]
# ## 0 · The gap to close, measured first
# fp32 and round-to-nearest int4 group-128 (symmetric absmax, and asymmetric zero-point) on
# held-out text, evaluated in fp32 on your device:

# %%
model, tokenizer = load_model(device=device)
eval_ids = eval_tokens(tokenizer, N_EVAL)
ref_logits = logits_of(model, eval_ids)


def rtn_model(scheme):
    m, _ = load_model(device=device)
    for name, module in m.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            module.weight.data = fake_quantize(module.weight.data, scheme)
    return m


def quality(m):
    m = m.to(device)   # models quantized on the CPU are evaluated on your device
    logits = logits_of(m, eval_ids)
    nll = torch.nn.functional.cross_entropy(logits[0, :-1], eval_ids[0, 1:])
    return {"perplexity": float(torch.exp(nll)),
            "top1_agreement": top1_agreement(ref_logits, logits),
            "kl": kl_divergence(ref_logits, logits)}


results = {"fp32": quality(model)}
results["RTN int4 g128 (absmax)"] = quality(rtn_model(SCHEME))
results["RTN int4 g128 (zero-point)"] = quality(rtn_model(Scheme(4, "zeropoint", "group", 128)))
for label, r in results.items():
    print(f"{label:<30} perplexity {r['perplexity']:7.2f}   top-1 agreement "
          f"{r['top1_agreement']:6.1%}")
recap.note("perplexity, fp32", results["fp32"]["perplexity"], "ppl", device)
recap.note("perplexity, int4 g128, round-to-nearest",
           results["RTN int4 g128 (absmax)"]["perplexity"], "ppl", device)

# %% [markdown]
# ## 1 · GPTQ: quantize a column, fix the rest
# A Linear layer computes `Y = X W^T` for inputs `X` (tokens x in); quantizing `W` to `Q` changes
# the output by `X (W - Q)^T`. GPTQ (Frantar et al., 2022) minimises that output error, row by row,
# with the **Hessian** of the squared error,
#
# `H = 2 X^T X / n`   (in x in, n = number of calibration tokens).
#
# It walks over the columns `j = 0, 1, ...` of `W`:
# 1. quantize column `j` (at the first column of each group, choose the group's scales from the
#    *current* - already corrected - weights of that group);
# 2. scale the error by the inverse Hessian's diagonal: `err = (w_j - q_j) / U[j, j]`;
# 3. subtract `err ⊗ U[j, j+1:]` from the columns not quantized yet - they move to compensate.
#
# `U` is the upper Cholesky factor of `H^-1` (with 1% damping added to `H`; our
# `inverse_hessian_factor` computes it): after each column, the remaining rows of `U` are exactly
# the inverse Hessian of the columns left, so the update never needs another matrix inverse.
#
# ### Exercise 1 - the Hessian (1 point)
# Implement `hessian(x)` for inputs of shape `(..., in_features)` (a batch of sequences, or
# tokens x features): all leading dimensions are tokens. Return `2 X^T X / n` in float64.

# %% solution id=hessian
import torch


def hessian(x: torch.Tensor) -> torch.Tensor:
    """H = 2 X^T X / n over all n tokens of x, float64, shape (in_features, in_features)."""
    ### BEGIN SOLUTION
    x = x.reshape(-1, x.shape[-1]).double()
    return 2.0 * (x.T @ x) / x.shape[0]
    ### END SOLUTION

# %% tests id=test_hessian points=1
import torch

torch.manual_seed(0)
x = torch.randn(50, 6)
H = hessian(x)
assert H.shape == (6, 6) and H.dtype == torch.float64, (H.shape, H.dtype)
assert torch.allclose(H, H.T), "H is symmetric"
assert (torch.linalg.eigvalsh(H) > -1e-9).all(), "H is positive semi-definite"
### BEGIN HIDDEN TESTS
assert torch.allclose(H, 2 * x.double().T @ x.double() / 50), "H = 2 X^T X / n"
batch = torch.randn(3, 20, 6)                      # (batch, sequence, features): 60 tokens
expected = 2 * batch.reshape(60, 6).double().T @ batch.reshape(60, 6).double() / 60
assert torch.allclose(hessian(batch), expected), "every leading dimension counts as tokens"
assert torch.allclose(hessian(torch.ones(10, 2)), torch.full((2, 2), 2.0, dtype=torch.float64))
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 - the GPTQ column loop (3 points)
# Implement `gptq_quantize_columns(W, U, bits, group_size)`: `W` is `(out, in)`, `U` the upper
# Cholesky factor of `H^-1`. Quantize with **symmetric absmax** per row and group:
# `qmax = 2^(bits-1) - 1`; at every column `j` with `j % group_size == 0`, set
# `scale = max|W[:, j:j+group_size]| / qmax` per row (from the current, corrected `W`; 1 where it
# is 0); `q_j = clamp(round(w_j / scale), -qmax, qmax) * scale`. Then spread the error as above.
# Return the dequantized matrix `Q` (same shape as `W`). Do not modify the caller's `W`.

# %% solution id=gptq_columns
import torch


def gptq_quantize_columns(W: torch.Tensor, U: torch.Tensor, bits: int = 4,
                          group_size: int = 128) -> torch.Tensor:
    """GPTQ, plain column loop, symmetric absmax per row and group.

    Returns the dequantized weight.
    """
    ### BEGIN SOLUTION
    W = W.clone().float()
    U = U.float()
    Q = torch.zeros_like(W)
    qmax = 2 ** (bits - 1) - 1
    for j in range(W.shape[1]):
        if j % group_size == 0:
            scale = W[:, j:j + group_size].abs().amax(dim=1) / qmax
            scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        Q[:, j] = torch.round(W[:, j] / scale).clamp(-qmax, qmax) * scale
        err = (W[:, j] - Q[:, j]) / U[j, j]
        W[:, j + 1:] -= torch.outer(err, U[j, j + 1:])
    return Q
    ### END SOLUTION

# %% tests id=test_gptq_columns points=3
import torch

from inferlab.compress.gptq import inverse_hessian_factor

torch.manual_seed(1)
X = torch.randn(200, 16) @ (torch.eye(16) + 0.3 * torch.randn(16, 16))
W = torch.randn(8, 16) * 0.1
U, _ = inverse_hessian_factor(2 * X.double().T @ X.double() / 200)
Q = gptq_quantize_columns(W, U, bits=4, group_size=8)
assert Q.shape == W.shape
for group in Q.split(8, dim=1):            # 4 bits: at most 15 levels in every row of every group
    for row in group:
        assert len(row.unique()) <= 15
assert (W - Q).norm() / W.norm() < 0.5
# Round-to-nearest of the same weights (same groups, same 4 bits): GPTQ's whole point is a smaller
# error of the layer's *output* X W^T on correlated inputs like these.
scale_rtn = (W.reshape(8, 2, 8).abs().amax(dim=2, keepdim=True) / 7).clamp_min(1e-12)
rtn = ((W.reshape(8, 2, 8) / scale_rtn).round().clamp(-7, 7) * scale_rtn).reshape(8, 16)
assert not torch.allclose(Q, rtn), "Q equals round-to-nearest: the error is not spread"
gptq_error, rtn_error = (X @ (W - Q).T).norm(), (X @ (W - rtn).T).norm()
assert gptq_error < 0.9 * rtn_error, (
    f"output error {gptq_error:.3f} vs round-to-nearest {rtn_error:.3f}: GPTQ must beat it")
### BEGIN HIDDEN TESTS
from inferlab.compress.gptq import gptq_quantize_columns as reference

W0 = W.clone()
assert torch.allclose(Q, reference(W, U, 4, 8), atol=1e-5), (
    "compare with the column loop described above")
assert torch.equal(W, W0), "do not modify the caller's W"
torch.manual_seed(2)
W2 = torch.randn(5, 24) * 0.2
U2 = torch.linalg.cholesky(torch.linalg.inv(2 * torch.eye(24, dtype=torch.float64) + 0.5),
                           upper=True)
for bits, group in [(3, 8), (4, 24), (8, 6)]:
    assert torch.allclose(gptq_quantize_columns(W2, U2, bits, group),
                          reference(W2, U2, bits, group), atol=1e-5), (bits, group)
### END HIDDEN TESTS

# %% [markdown]
# ### On a real layer
# Block 5's Linear inputs on calibration text (other chapters of the Python reference than the
# evaluation text), then `mlp.down_proj` (576 x 1536) quantized three ways; relative output error is
# `||X W^T - X Q^T|| / ||X W^T||`.

# %%
BLOCK = 5
layer_calib = calibration_tokens(tokenizer, n_samples=pick(8, 4), seq_len=pick(256, 128))


def layer_inputs(block, ids):
    """{group: X (tokens, in)} of one block, computed on the model's device, returned on the CPU."""
    return {g: x.cpu() for g, x in block_linear_inputs(model, ids.to(device), block).items()}


inputs = layer_inputs(BLOCK, layer_calib)
X = inputs[("mlp.down_proj",)]
W = decoder_blocks(model)[BLOCK].mlp.down_proj.weight.detach().float().cpu()


def output_error(W_hat, X=X, W=W):
    ref = X @ W.T
    return ((X @ W_hat.T - ref).norm() / ref.norm()).item()


def rtn(W, bits=4, group=128):
    view = to_groups(W, "group", group)
    q, s = absmax_quantize(view, bits)
    return from_groups(q.float() * s, tuple(W.shape), "group", group)


H = hessian(X)
U, _ = inverse_hessian_factor(H)
start = time.perf_counter()
Q_yours = gptq_quantize_columns(W, U, 4, 128)
t_yours = time.perf_counter() - start
start = time.perf_counter()
Q_blocked = gptq_quantize_weight(W, H, SCHEME)
t_blocked = time.perf_counter() - start
layer_rows = {"round-to-nearest": output_error(rtn(W)), "GPTQ (your loop)": output_error(Q_yours),
              "GPTQ (inferlab, lazy batches)": output_error(Q_blocked)}
for label, err in layer_rows.items():
    print(f"{label:<32} relative output error {err:.4f}")
print(f"{X.shape[0]} calibration tokens; your loop {t_yours:.2f} s, the blocked version "
      f"{t_blocked:.2f} s")
plots.bars(list(layer_rows), list(layer_rows.values()), yaxis="relative output error",
           title=f"block {BLOCK} mlp.down_proj, int4 group-128").show()

# %% [markdown]
# The blocked ("lazy batch") version gives the same result: inside a block of 128 columns it updates
# only the block, then pushes the accumulated errors to later columns in one matrix product - far
# less memory traffic. `inferlab.compress.gptq.gptq_quantize_model` runs it **block by block**: each
# decoder block sees the outputs of the earlier blocks *after* quantization, so later layers also
# compensate earlier ones; Linears reading the same input (q/k/v; gate/up) share one Hessian,
# quantized as one taller matrix. With their statistics (float64 Hessians, search state) in CPU
# memory, GPTQ and AWQ quantize a CPU copy.

# %%
calib_ids = calibration_tokens(tokenizer, n_samples=pick(32, 4), seq_len=pick(512, 256))
timings = {}
if HEAVY:
    from tqdm.auto import tqdm
    gptq_model, _ = load_model()        # on the CPU: see above
    bar = tqdm(total=gptq_model.config.num_hidden_layers, desc="GPTQ blocks")
    stats = gptq_quantize_model(gptq_model, calib_ids, SCHEME,
                                progress=lambda done, total: bar.update(1))
    bar.close()
    timings["GPTQ"] = stats["seconds"]
    results["GPTQ int4 g128 (absmax)"] = quality(gptq_model)
    del gptq_model
    recap.note("perplexity, int4 g128, GPTQ", results["GPTQ int4 g128 (absmax)"]["perplexity"],
               "ppl", device)
    print(f"GPTQ on {calib_ids.numel()} calibration tokens: {stats['linears']} Linears in "
          f"{stats['seconds']:.0f} s; "
          f"perplexity {results['GPTQ int4 g128 (absmax)']['perplexity']:.2f} "
          f"(RTN {results['RTN int4 g128 (absmax)']['perplexity']:.2f}, "
          f"fp32 {results['fp32']['perplexity']:.2f})")
else:
    print("skipped while grading: GPTQ over the whole model takes a minute or more")

# %% [markdown]
# ## 2 · AWQ: scale the channels that matter
# A few input channels carry much larger activations than the rest, and the weights that multiply
# them decide most of the output. AWQ (Lin et al., 2023) multiplies input channel `c` of `W` by
# `s_c` before quantizing and divides the input by it:
# `x W^T = (x / s) (W * s)^T  ->  (x / s) Q(W * s)^T`. A channel scaled up gets a *relatively* finer
# grid (its group's scale barely moves when only a few channels grow). The `1/s` is folded into what
# produces `x` (an RMSNorm weight, or the previous Linear's rows), so inference costs nothing extra.
# Block 5's activations:

# %%
X_attn = inputs[("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")]
magnitude = X_attn.abs().mean(dim=0)
top = magnitude.topk(5)
print(f"mean |activation| per input channel of block {BLOCK}'s q/k/v: "
      f"median {magnitude.median():.3f}, "
      f"largest {[round(v, 2) for v in top.values.tolist()]} at channels {top.indices.tolist()}")
plots.bars(list(range(magnitude.numel())), magnitude.tolist(), yaxis="mean |x|",
           title=f"block {BLOCK}: activation magnitude of each input channel (q/k/v input)").show()

# %% [markdown]
# AWQ searches `alpha` in `s = mean|x|^alpha`: `alpha = 0` is plain RTN; larger `alpha` protects
# loud channels more (and hurts quiet ones).
#
# ### Exercise 3 - the AWQ scale search (3 points)
# Implement `awq_search_scale(W, X, bits, group_size, n_grid)` for a weight `W` (out x in) and its
# inputs `X` (tokens x in). For `i = 0 .. n_grid-1`, `alpha = i / n_grid`:
# * `s = X.abs().mean(0) ** alpha`, clamped below at `1e-4`, then normalised:
#   `s = s / sqrt(s.max() * s.min())`;
# * `W_hat = fake_quantize(W * s, Scheme(bits, "absmax", "group", group_size)) / s`;
# * `loss = mean((X @ W_hat.T - X @ W.T) ** 2)` (the output error, not the weight error).
#
# Return `(s, alpha)` of the lowest loss (the first one on a tie).

# %% solution id=awq_search
import torch

from inferlab.compress.quant import Scheme, fake_quantize


def awq_search_scale(W: torch.Tensor, X: torch.Tensor, bits: int = 4, group_size: int = 128,
                     n_grid: int = 20):
    """Activation-aware per-input-channel scales: returns (scales (in,), alpha)."""
    ### BEGIN SOLUTION
    scheme = Scheme(bits, "absmax", "group", group_size)
    W, X = W.float(), X.float()
    x_mean = X.abs().mean(dim=0)
    reference = X @ W.T
    best_loss, best = float("inf"), None
    for i in range(n_grid):
        alpha = i / n_grid
        s = x_mean.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        W_hat = fake_quantize(W * s, scheme) / s
        loss = (X @ W_hat.T - reference).pow(2).mean().item()
        if loss < best_loss:
            best_loss, best = loss, (s, alpha)
    return best
    ### END SOLUTION

# %% tests id=test_awq_search points=3
import torch

torch.manual_seed(3)
X = torch.randn(128, 64)
X[:, :2] *= 20                               # two loud channels
W = torch.randn(16, 64) * 0.05
s, alpha = awq_search_scale(W, X, bits=4, group_size=32, n_grid=10)
assert s.shape == (64,) and (s > 0).all()
assert alpha in [i / 10 for i in range(10)], alpha
### BEGIN HIDDEN TESTS
from inferlab.compress.awq import awq_search_scale as reference
from inferlab.compress.quant import Scheme, fake_quantize

ref_s, ref_alpha, losses = reference(W, X, Scheme(4, "absmax", "group", 32), n_grid=10)
assert alpha == ref_alpha, f"alpha {alpha} but the lowest output error is at {ref_alpha}"
assert torch.allclose(s, ref_s, rtol=1e-5), (
    "s = (mean|x|)^alpha, clamped at 1e-4, divided by sqrt(max * min)")
assert alpha > 0 and min(losses) < losses[0], "on loud channels AWQ must beat round-to-nearest"
torch.manual_seed(4)
X2, W2 = torch.randn(64, 32) * torch.linspace(0.1, 3, 32), torch.randn(8, 32)
s2, a2 = awq_search_scale(W2, X2, bits=3, group_size=16, n_grid=5)
r2, ra2, _ = reference(W2, X2, Scheme(3, "absmax", "group", 16), n_grid=5)
assert a2 == ra2 and torch.allclose(s2, r2, rtol=1e-5)
### END HIDDEN TESTS

# %% [markdown]
# Block 5's q/k/v (one matrix: they share their input):

# %%
W_attn = torch.cat([decoder_blocks(model)[BLOCK].get_submodule(n).weight.detach().float().cpu()
                    for n in LINEAR_GROUPS[0]])
s_yours, alpha_yours = awq_search_scale(W_attn, X_attn, 4, 128, 20)
_, _, alpha_losses = reference_awq_search(W_attn, X_attn, SCHEME, 20)
print(f"your search: alpha = {alpha_yours}; output error "
      f"{output_error(fake_quantize(W_attn * s_yours, SCHEME) / s_yours, X_attn, W_attn):.4f} "
      f"vs round-to-nearest {output_error(fake_quantize(W_attn, SCHEME), X_attn, W_attn):.4f}")
plots.lines([i / 20 for i in range(20)], {"output MSE": alpha_losses}, xaxis="alpha",
            yaxis="mean squared output error",
            title=f"AWQ grid search, block {BLOCK} q/k/v (alpha = 0 is round-to-nearest)").show()

# %% [markdown]
# `inferlab.compress.awq.awq_quantize_model` runs the search for every block (q/k/v, gate/up and
# down_proj; o_proj is only clipped: its input comes from attention over shared KV heads, where a
# per-channel scale could not be folded into v_proj), then AWQ's second half: a per-group search for
# how much to **clip** the range (a slightly smaller max can lower the error of the group's other
# weights).

# %%
if HEAVY:
    from tqdm.auto import tqdm
    awq_model, _ = load_model()         # on the CPU, like GPTQ
    bar = tqdm(total=awq_model.config.num_hidden_layers, desc="AWQ blocks")
    stats = awq_quantize_model(awq_model, calib_ids, SCHEME, n_grid=pick(20, 10),
                               clip=not fast_mode(), n_tokens=pick(512, 256),
                               progress=lambda done, total: bar.update(1))
    bar.close()
    timings["AWQ"] = stats["seconds"]
    results["AWQ int4 g128 (absmax)"] = quality(awq_model)
    del awq_model
    recap.note("perplexity, int4 g128, AWQ", results["AWQ int4 g128 (absmax)"]["perplexity"],
               "ppl", device)
    alphas = list(stats["alphas"].values())
    print(f"AWQ: {stats['linears']} Linears in {stats['seconds']:.0f} s "
          f"(clip search: {not fast_mode()}); "
          f"alpha chosen: median {statistics.median(alphas):.2f}, "
          f"range {min(alphas):.2f}-{max(alphas):.2f}; "
          f"perplexity {results['AWQ int4 g128 (absmax)']['perplexity']:.2f}")
else:
    print("skipped while grading: AWQ over the whole model takes a minute")

# %% [markdown]
# ## 3 · All three at 4 bits, group 128
# All symmetric (absmax); zero-point round-to-nearest is in section 0. Set `ALSO_ZERO_POINT = True`
# to run GPTQ and AWQ with zero-points too (doubles this section's time).

# %%
ALSO_ZERO_POINT = False
if ALSO_ZERO_POINT and HEAVY:
    zp = Scheme(4, "zeropoint", "group", 128)
    for name, run in [("GPTQ", lambda m: gptq_quantize_model(m, calib_ids, zp)),
                      ("AWQ", lambda m: awq_quantize_model(m, calib_ids, zp, n_grid=pick(20, 10),
                                                           clip=not fast_mode(),
                                                           n_tokens=pick(512, 256)))]:
        zp_model, _ = load_model()
        timings[f"{name} zp"] = run(zp_model)["seconds"]
        results[f"{name} int4 g128 (zero-point)"] = quality(zp_model)
        del zp_model
print(f"{'method':<30}{'perplexity':>11}{'top-1':>8}{'KL':>8}{'time (s)':>10}")
for label, r in results.items():
    key = label.split()[0] + (" zp" if "zero-point" in label else "")
    seconds = f"{timings[key]:.0f}" if key in timings else "-"
    print(f"{label:<30}{r['perplexity']:>11.2f}{r['top1_agreement']:>8.1%}{r['kl']:>8.3f}"
          f"{seconds:>10}")
fp32_ppl, rtn_ppl = results["fp32"]["perplexity"], results["RTN int4 g128 (absmax)"]["perplexity"]
for label in ("GPTQ int4 g128 (absmax)", "AWQ int4 g128 (absmax)"):
    if label in results:
        closed = (rtn_ppl - results[label]["perplexity"]) / (rtn_ppl - fp32_ppl)
        print(f"{label.split()[0]} closes {closed:.0%} "
              "of round-to-nearest's perplexity gap to fp32")
plots.bars(list(results), [r["perplexity"] for r in results.values()],
           yaxis="perplexity (lower is better)",
           title=f"int4 group-128 on {eval_ids.shape[1]} evaluation tokens "
                 f"({pick('', 'fast mode: ')}{calib_ids.numel()} calibration tokens)",
           text=[f"{r['perplexity']:.2f}" for r in results.values()]).show()

# %% [markdown]
# ### What a GPU user would run
# The tutorial's one-liners (not executed: the libraries need a CUDA GPU and are not installed):
#
# ```python
# # GPTQ (AutoGPTQ; maintained successor: GPTQModel, also via transformers' GPTQConfig)
# from auto_gptq import AutoGPTQForCausalLM, BaseQuantizeConfig
# model = AutoGPTQForCausalLM.from_pretrained(model_id, BaseQuantizeConfig(bits=4, group_size=128))
# model.quantize(calibration_examples)
#
# # AWQ (AutoAWQ)
# from awq import AutoAWQForCausalLM
# model = AutoAWQForCausalLM.from_pretrained(model_id)
# model.quantize(tokenizer, quant_config={"w_bit": 4, "q_group_size": 128, "zero_point": True})
# ```
#
# ## 4 · Your turn: one layer, three quantizers
# Pick a block, a layer, bits and a group size (100 does not divide 576 or 1536: rows are padded;
# "per-channel" is one scale per row) to see the output error of round-to-nearest, GPTQ and AWQ
# (scale search, then with clipping) on that layer's calibration inputs.

# %%
panel_calib = calibration_tokens(tokenizer, n_samples=pick(8, 2), seq_len=pick(256, 128), seed=1)
input_cache: dict = {}


def layer_errors(block, linear, bits, group):
    if block not in input_cache:
        input_cache.clear()
        input_cache[block] = layer_inputs(block, panel_calib)
    X_layer = next(x for g, x in input_cache[block].items() if linear in g)
    W_layer = decoder_blocks(model)[block].get_submodule(linear).weight.detach().float().cpu()
    scheme = (Scheme(bits, "absmax", "channel") if group == "per-channel"
              else Scheme(bits, "absmax", "group", int(group)))

    def err(W_hat):
        return output_error(W_hat, X_layer, W_layer)

    errors = {"round-to-nearest": err(fake_quantize(W_layer, scheme)),
              "GPTQ": err(gptq_quantize_weight(W_layer, hessian(X_layer), scheme))}
    if scheme.granularity == "group":
        s, alpha, _ = reference_awq_search(W_layer, X_layer, scheme, n_grid=10)
        errors[f"AWQ (alpha {alpha:.1f})"] = err(fake_quantize(W_layer * s, scheme) / s)
        clipped = awq_search_clip(W_layer * s, X_layer / s, scheme, n_grid=10)
        errors["AWQ + clip"] = err(fake_quantize(clipped, scheme) / s)
    else:
        print("AWQ here searches group scales: choose a group size to see it")
    return errors


linear_names = [name for group in LINEAR_GROUPS for name in group]
if HEAVY:
    panel = layer_panel(layer_errors, model.config.num_hidden_layers, linear_names,
                        default_block=BLOCK)
    show(panel)
else:
    print("skipped while grading: the panel runs GPTQ and AWQ on real layers")

# %% [markdown]
# ## 5 · GGUF: the file, its blocks, and llama.cpp
# The model ships as a GGUF file: key/value metadata (all llama.cpp needs to rebuild the model and
# its tokenizer), then the tensors, each in its own type:

# %%
gguf_path = embedded_gguf()
summary = gguf_summary(gguf_path)
print(f"{gguf_path.name}: {gguf_path.stat().st_size / 1e6:.1f} MB")
for key in ("general.architecture", "general.name", "general.file_type", "llama.block_count",
            "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
            "llama.attention.head_count_kv", "llama.context_length", "llama.rope.freq_base",
            "tokenizer.ggml.model", "tokenizer.ggml.tokens"):
    print(f"  {key:<36} {summary['metadata'][key]}")
print(f"{'type':<6}{'tensors':>8}{'weights':>14}{'MB':>8}{'bits/weight':>13}")
for kind, row in summary["types"].items():
    print(f"{kind:<6}{row['tensors']:>8}{row['weights']:>14,}{row['bytes'] / 1e6:>8.1f}"
          f"{row['bits_per_weight']:>13.2f}")

# %% [markdown]
# The Linear weights are **Q4_1** (lesson 01): blocks of 32 weights, 20 bytes each - an fp16 scale
# `d`, an fp16 minimum `m`, then 16 bytes of 4-bit codes (byte `j` holds code `j` in its low nibble
# and code `j + 16` in its high nibble) - and `x = q * d + m`. The first block of
# `blk.0.ffn_down.weight`, decoded by hand:

# %%
import numpy as np

reader = summary["reader"]
tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
raw = np.asarray(tensor.data[0, :20])
d, m = raw[0:2].view(np.float16)[0], raw[2:4].view(np.float16)[0]
codes = np.concatenate([raw[4:20] & 0x0F, raw[4:20] >> 4])
by_hand = codes.astype(np.float32) * np.float32(d) + np.float32(m)
loaded = model.model.layers[0].mlp.down_proj.weight[0, :32].detach().cpu().numpy()
print(f"d = {float(d):.6f}, m = {float(m):.6f}, codes = {codes.tolist()}")
print(f"decoded by hand == transformers' fp32 weight: {np.array_equal(by_hand, loaded)}")

# %% [markdown]
# ### Exercise 4 - Q8_0 blocks, bit-exact (2 points)
# **Q8_0**: blocks of 32 float32 values, each stored as 34 bytes: the scale
# `d = max|x| / 127` as **fp16** (2 bytes, little-endian), then 32 int8 `q = round(x * (1/d))`,
# where `1/d` is computed in float32 *before* `d` is rounded to fp16 (0 when `d = 0`) and `round`
# is C's `roundf`: **halves away from zero** (`torch.round` sends halves to the even neighbour).
# Implement `q8_0_quantize(x)` for a float32 tensor whose length is a multiple of 32, returning a
# `uint8` tensor of shape `(n_blocks, 34)` equal, byte for byte, to the `gguf` package's reference.
# (Hint: `tensor.to(torch.float16).view(torch.uint8)` gives an fp16's two bytes; compute the
# rounding as `floor(a) + floor(2 * (a - floor(a)))` on `a = |v|`, with the sign put back: every
# step is exact, while `floor(a + 0.5)` can round up *before* the floor.)

# %% solution id=q8_0
import torch


def q8_0_quantize(x: torch.Tensor) -> torch.Tensor:
    """GGUF Q8_0 blocks of x: uint8 tensor (n_blocks, 34)."""
    ### BEGIN SOLUTION
    blocks = x.to(torch.float32).reshape(-1, 32)
    d = blocks.abs().amax(dim=1, keepdim=True) / 127
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    v = blocks * inv
    a = v.abs()
    q = torch.sign(v) * (torch.floor(a) + torch.floor(2 * (a - torch.floor(a))))
    d_bytes = d.to(torch.float16).view(torch.uint8).reshape(-1, 2)
    return torch.cat([d_bytes, q.to(torch.int8).view(torch.uint8)], dim=1)
    ### END SOLUTION

# %% tests id=test_q8_0 points=2
import torch

x = torch.arange(32, dtype=torch.float32) / 10 - 1.0       # one block, max |x| = 2.1
blocks = q8_0_quantize(x)
assert blocks.dtype == torch.uint8 and blocks.shape == (1, 34), (blocks.dtype, blocks.shape)
d = blocks[0, :2].clone().view(torch.float16).float()
assert torch.isclose(d, torch.tensor([2.1 / 127]), rtol=1e-3), d
q = blocks[0, 2:].clone().view(torch.int8).float()
assert (q * d - x).abs().max() <= d.item() * 0.51
### BEGIN HIDDEN TESTS
import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import quantize

torch.manual_seed(5)
values = torch.randn(16, 128) * 0.05
values[0, :32] = 0                                           # all-zero block
values[1, :32] = torch.tensor([127.0] + [k + 0.5 for k in range(-16, 15)])   # d = 1: exact halves
values[2, :32] = torch.tensor([127.0, 0.49999997] + [0.0] * 30)   # the floor(a + 0.5) trap
values[3, :32] = -torch.linspace(0, 3, 32)
expected = quantize(values.numpy(), GGMLQuantizationType.Q8_0).reshape(-1, 34)
mine = q8_0_quantize(values).numpy()
assert mine.shape == expected.shape, mine.shape
bad = np.argwhere((mine != expected).any(axis=1)).flatten().tolist()
assert not bad, (f"blocks {bad[:5]} differ from gguf's reference "
                 "(halves away from zero? 1/d before fp16?)")
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 5 - Q4_0 blocks, bit-exact (2 points)
# **Q4_0**: blocks of 32, 18 bytes each. Let `x_m` be the value of largest magnitude **with its
# sign** (the first one on a tie). `d = x_m / -8` (so `x_m` maps to code 0 and the grid uses
# all 16 levels, [-8, 7]); `inv = 1/d` in float32 (0 when `d = 0`);
# `q = trunc(x * inv + 8.5)` clipped to 0..15. Store `d` as fp16 (2 bytes), then 16 bytes where
# byte `j` is `q[j] | (q[j + 16] << 4)` - the first half of the block in the low nibbles, the
# second half in the high nibbles. Return `uint8` `(n_blocks, 18)`, byte-equal to gguf's.

# %% solution id=q4_0
import torch


def q4_0_quantize(x: torch.Tensor) -> torch.Tensor:
    """GGUF Q4_0 blocks of x: uint8 tensor (n_blocks, 18)."""
    ### BEGIN SOLUTION
    blocks = x.to(torch.float32).reshape(-1, 32)
    index = blocks.abs().argmax(dim=1, keepdim=True)
    d = torch.gather(blocks, 1, index) / -8
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.trunc(blocks * inv + 8.5).clamp(0, 15).to(torch.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    return torch.cat([d.to(torch.float16).view(torch.uint8).reshape(-1, 2), packed], dim=1)
    ### END SOLUTION

# %% tests id=test_q4_0 points=2
import torch

torch.manual_seed(6)
x = torch.randn(64)
blocks = q4_0_quantize(x)
assert blocks.dtype == torch.uint8 and blocks.shape == (2, 18), (blocks.dtype, blocks.shape)
d = blocks[:, :2].clone().view(torch.float16).float().flatten()
amax = x.reshape(2, 32).abs().amax(dim=1)
assert torch.allclose(d.abs(), amax / 8, rtol=1e-3), (d, amax)
### BEGIN HIDDEN TESTS
import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import quantize

torch.manual_seed(7)
values = torch.randn(8, 96) * 0.1
values[0, :32] = 0
values[1, :32] = torch.tensor([-8.0] + [k + 0.5 for k in range(-8, 7)]  # d = 1
                              + [0.25 * k for k in range(16)])
values[2, 3], values[2, 9] = 0.9, -0.9                         # a tie for the largest magnitude
values[3, :32] = torch.linspace(0, 1, 32)                      # the extreme value is positive
expected = quantize(values.numpy(), GGMLQuantizationType.Q4_0).reshape(-1, 18)
mine = q4_0_quantize(values).numpy()
assert mine.shape == expected.shape
assert np.array_equal(mine[:, :2], expected[:, :2]), (
    "d = (value of largest magnitude, with its sign) / -8, as fp16")
bad = np.argwhere((mine != expected).any(axis=1)).flatten().tolist()
assert not bad, f"blocks {bad[:5]} differ from gguf's reference (nibble order? trunc(x/d + 8.5)?)"
### END HIDDEN TESTS

# %% [markdown]
# Both formats on block 5's down_proj, beside lesson 01's int4 absmax group-32 (the same block size;
# Q4_0 uses the asymmetric extra level):

# %%
W = decoder_blocks(model)[BLOCK].mlp.down_proj.weight.detach().float().cpu()
flat = W.flatten()
for name, data, back in [("Q8_0", q8_0_quantize(flat), q8_0_dequantize),
                         ("Q4_0", q4_0_quantize(flat), q4_0_dequantize)]:
    err = ((back(data) - flat).norm() / flat.norm()).item()
    print(f"{name}: {data.numel() * 8 / flat.numel():.2f} bits per weight, relative weight error "
          f"{err:.4f}")
print(f"int4 absmax group-32: 4.50 bits per weight, relative weight error "
      f"{((fake_quantize(W, Scheme(4, 'absmax', 'group', 32)) - W).norm() / W.norm()).item():.4f}")

# %% [markdown]
# ### A Q8_0 file written with your quantizer
# Copy the metadata, dequantize every Q4_1 tensor and re-quantize it with **your** `q8_0_quantize`
# (other tensors are copied as they are). The values are the Q4_1 file's, no better in 8 bits, but
# llama.cpp runs a different kernel on them.

# %%
q8_path = cache_dir() / "gguf" / "SmolLM2-135M-Instruct.Q8_0-from-Q4_1.gguf"
if HEAVY:
    start = time.perf_counter()
    write_requantized(gguf_path, q8_path, quantize=q8_0_quantize)
    print(f"wrote {q8_path.name}: {q8_path.stat().st_size / 1e6:.1f} MB in "
          f"{time.perf_counter() - start:.1f} s "
          f"(Q4_1 file: {gguf_path.stat().st_size / 1e6:.1f} MB)")
    print({k: (v["tensors"], round(v["bits_per_weight"], 2))
           for k, v in gguf_summary(q8_path)["types"].items()})
else:
    print("skipped while grading: writes a 145 MB file")

# %% [markdown]
# ### llama.cpp on this CPU
# `llama-cpp-python` binds llama.cpp; with no prebuilt wheel for this platform, it compiles from
# source (cmake and a C++ compiler; minutes):
#
# ```
# CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python==0.3.36
# ```
#
# (`GGML_NATIVE=OFF`: a portable AVX2 build; `ON` may be a little faster here.) Without it the
# rest of the lesson still works. Below, one thread count for all: llama.cpp's tokens/s (its own
# timers) and perplexity beside transformers fp32 on the same CPU (on a GPU machine also on the
# GPU: compare llama.cpp with the CPU row).

# %%
try:
    import llama_cpp
    from llama_cpp import Llama
except ImportError:
    llama_cpp = None
    print("llama-cpp-python is not installed. Install it with:\n"
          '    CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python==0.3.36\n'
          "(it compiles llama.cpp: needs cmake and a C++ compiler, and takes several minutes)")

prompt_len, gen_tokens = pick(256, 128), pick(32, 16)
prompt = eval_ids[0, :prompt_len].tolist()
engine_rows = {}


def run_llama_cpp(path):
    llm = Llama(model_path=str(path), n_ctx=max(N_EVAL, prompt_len + gen_tokens) + 16,
                n_threads=threads, n_threads_batch=threads, n_batch=512, logits_all=True,
                verbose=False)
    llm.reset()
    llm.eval(eval_ids[0].tolist())
    logits = torch.from_numpy(np.array(llm.scores[:eval_ids.shape[1]], dtype=np.float32))
    nll = torch.nn.functional.cross_entropy(logits[:-1], eval_ids[0, 1:])
    llm.reset()
    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
    llm.create_completion(prompt, max_tokens=gen_tokens, temperature=0.0)
    perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
    row = {"perplexity": float(torch.exp(nll)),
           "prefill_tok_s": perf.n_p_eval / (perf.t_p_eval_ms / 1e3),
           "decode_tok_s": perf.n_eval / (perf.t_eval_ms / 1e3),
           "file_mb": path.stat().st_size / 1e6}
    del llm
    return row


if llama_cpp is not None and HEAVY:
    print(f"llama-cpp-python {llama_cpp.__version__}, {threads} thread(s)")
    for label, path in [("llama.cpp Q4_1 (shipped)", gguf_path),
                        ("llama.cpp Q8_0 (yours)", q8_path)]:
        if path.is_file():
            engine_rows[label] = run_llama_cpp(path)

    def transformers_row(m, on):
        ids = torch.tensor([prompt], device=on)
        with torch.no_grad():   # one synchronised prefill (a GPU gets one untimed warm-up first)
            prefill = time_fn(lambda: m(ids), warmup=0 if on == "cpu" else 1, repeats=1,
                              device=on).median
        steps = timed_greedy(m, ids, gen_tokens)
        return {"perplexity": results["fp32"]["perplexity"],
                "prefill_tok_s": prompt_len / prefill,
                "decode_tok_s": 1 / statistics.median(steps.decode_s),
                "file_mb": sum(p.numel() * 4 for p in m.parameters()) / 1e6}

    cpu_model = model if device == "cpu" else load_model()[0]
    engine_rows["transformers fp32"] = transformers_row(cpu_model, "cpu")
    if device != "cpu":
        del cpu_model
        engine_rows[f"transformers fp32 ({device})"] = transformers_row(model, device)
    print(f"{'engine':<28}{'perplexity':>11}{'prefill tok/s':>15}{'decode tok/s':>14}"
          f"{'weights MB':>12}")
    for label, r in engine_rows.items():
        print(f"{label:<28}{r['perplexity']:>11.2f}{r['prefill_tok_s']:>15.1f}"
              f"{r['decode_tok_s']:>14.1f}{r['file_mb']:>12.1f}")
    if "llama.cpp Q4_1 (shipped)" in engine_rows:
        recap.note("decode speed, llama.cpp Q4_1 vs transformers fp32",
                   engine_rows["llama.cpp Q4_1 (shipped)"]["decode_tok_s"]
                   / engine_rows["transformers fp32"]["decode_tok_s"], "x", "cpu")
    plots.grouped_bars(["prefill tokens/s", "decode tokens/s"],
                       {k: [r["prefill_tok_s"], r["decode_tok_s"]] for k, r in engine_rows.items()},
                       title=f"CPU, {threads} thread(s)"
                             + (f" (and {device_name(device)})" if device != "cpu" else "")
                             + f": {prompt_len}-token prompt, {gen_tokens} generated",
                       yaxis="tokens/s").show()
elif llama_cpp is not None:
    print("skipped while grading: runs two models with llama.cpp")

# %% [markdown]
# The perplexities should agree, as both files hold the weights transformers computes with;
# last-digit differences come from llama.cpp's precision and order (its matmuls quantize the
# activations to 8 bits). Speed is where the engines differ: fused dequantize-and-multiply kernels
# read 4.5-5 or 8.5 bits per weight instead of 32.
#
# ## 6 · Beyond weight-only: W8A8, SmoothQuant and FP8
# GPTQ, AWQ and GGUF quantize the **weights** only; the matmul still runs in 16 or 32 bits. That
# helps decoding (limited by reading weights), not prefill and large batches (limited by
# arithmetic): int8 or FP8 tensor cores need **both** operands in 8 bits, weights *and* activations
# (W8A8), which serving engines offer beside GPTQ/AWQ (int8 with SmoothQuant, and FP8 on recent
# GPUs).
#
# Weights are fixed and take one scale per output row. In activations, a few **input channels**
# carry values far larger than the rest (the "outlier features" of Dettmers et al. 2022,
# *LLM.int8()*), and an int8 matmul can only use scales that factor out of its sum over input
# channels: one per **token** (row of `X`) or per tensor. A token's one scale must then cover its
# outlier channel, leaving its other channels a few levels. Measured on the calibration text (per
# input channel only for comparison: unusable in an int8 matmul):

# %%
def input_absmax(m, ids):
    """Largest |x| of every input channel of every Linear (lm_head aside), on the CPU."""
    absmax, hooks = {}, []
    for name, module in m.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            def hook(mod, args, name=name):
                a = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(0).float().cpu()
                absmax[name] = torch.maximum(absmax[name], a) if name in absmax else a
            hooks.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        m(ids.to(next(m.parameters()).device))
    for h in hooks:
        h.remove()
    return absmax


def int8_error(x, dim=None):
    """Relative error of symmetric int8 round-to-nearest of x, one scale per slice along dim."""
    amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    scale = (amax / 127).clamp(min=1e-8)
    return (((x / scale).round().clamp(-127, 127) * scale - x).norm() / x.norm()).item()


smooth_calib = layer_calib[:pick(4, 2)]
start = time.perf_counter()
act_absmax = input_absmax(model, smooth_calib)
outlier_ratio = {n: (a.max() / a.median()).item() for n, a in act_absmax.items()}
print(f"{smooth_calib.numel()} calibration tokens ({time.perf_counter() - start:.1f} s); "
      "largest / median channel of max|x|, worst Linears:")
for name in sorted(outlier_ratio, key=outlier_ratio.get, reverse=True)[:5]:
    print(f"  {name:<36} {outlier_ratio[name]:8.0f}x   (largest {act_absmax[name].max():.0f})")
print(f"  median over all {len(outlier_ratio)} Linears: "
      f"{statistics.median(outlier_ratio.values()):.0f}x")
worst = max(outlier_ratio, key=outlier_ratio.get)
worst_block, worst_linear = int(worst.split(".")[2]), worst.split(".", 3)[3]
X_worst = next(x for g, x in layer_inputs(worst_block, smooth_calib).items() if worst_linear in g)
W_worst = model.get_submodule(worst).weight.detach().float().cpu()
for label, x in [(f"block {BLOCK} q/k/v input", X_attn), (worst, X_worst)]:
    print(f"int8 error of {label}: per-tensor {int8_error(x):.4f}, per-token "
          f"{int8_error(x, dim=1):.4f}, per-input-channel {int8_error(x, dim=0):.4f}")
plots.bars(list(range(X_worst.shape[1])), act_absmax[worst].tolist(), yaxis="max |x|",
           title=f"{worst}: largest activation of each input channel").show()

# %% [markdown]
# **SmoothQuant** (Xiao et al. 2023, *SmoothQuant: Accurate and Efficient Post-Training Quantization
# for Large Language Models*) moves the difficulty from the activations to the weights with AWQ's
# identity, `X W^T = (X / s) (W * s)^T`: dividing input channel `j` by `s_j` tames its outliers;
# multiplying column `j` of `W` by `s_j` makes the weights a little harder, and they have room to
# spare. The scale balances the two maxima:
#
# `s_j = max|X_j|^alpha / max|W_{:, j}|^(1 - alpha)`
#
# with `alpha = 0.5` as the paper's default (larger `alpha` moves more of the difficulty to the
# weights) and `max|X_j|` from calibration text, as above.
#
# ### Exercise 6 - the smoothing scales (1 point)
# Implement `smooth_scales(act_absmax, weight, alpha)`: `act_absmax` is `max|X_j|` per input
# channel (shape `(in,)`), `weight` the `(out, in)` weight. Clamp **both** maxima below at `1e-5`
# (a channel that was never active, or a weight column of zeros, must give a finite, positive
# scale), then return `s` as above: float32, shape `(in,)`.

# %% solution id=smooth_scales
import torch


def smooth_scales(act_absmax: torch.Tensor, weight: torch.Tensor,
                  alpha: float = 0.5) -> torch.Tensor:
    """SmoothQuant's per-input-channel scales s (float32, shape (in,))."""
    ### BEGIN SOLUTION
    a = act_absmax.float().clamp(min=1e-5)
    w = weight.float().abs().amax(dim=0).clamp(min=1e-5)
    return a.pow(alpha) / w.pow(1 - alpha)
    ### END SOLUTION

# %% tests id=test_smooth_scales points=1
import torch

torch.manual_seed(8)
W = torch.randn(6, 4)
a = torch.tensor([1.0, 4.0, 0.25, 9.0])
s = smooth_scales(a, W, 0.5)
assert s.shape == (4,) and s.dtype == torch.float32, (s.shape, s.dtype)
assert (s > 0).all() and torch.isfinite(s).all()
assert torch.allclose(a / s, W.abs().amax(0) * s, rtol=1e-5), (
    "alpha = 0.5: after smoothing, max|X_j / s_j| equals max|W_j * s_j| in every channel")
x = torch.randn(3, 4) * a
assert torch.allclose((x / s) @ (W * s).T, x @ W.T, atol=1e-5), "the smoothed layer is the same"
### BEGIN HIDDEN TESTS
w_max = W.abs().amax(0)
assert torch.allclose(smooth_scales(a, W, 0.8), a.pow(0.8) / w_max.pow(0.2), rtol=1e-5), (
    "alpha is the exponent of the activations' maximum, 1 - alpha the weights'")
assert torch.allclose(smooth_scales(a, W, 0.0), 1 / w_max, rtol=1e-5)
W2 = W.clone()
W2[:, 2] = 0                                     # a weight column of zeros
a2 = torch.tensor([0.0, 2.0, 3.0, 1.0])          # a channel that was never active
s2 = smooth_scales(a2, W2, 0.5)
assert torch.isfinite(s2).all() and (s2 > 0).all(), f"clamp both maxima at 1e-5: {s2}"
expected = a2.clamp(min=1e-5).sqrt() / W2.abs().amax(0).clamp(min=1e-5).sqrt()
assert torch.allclose(s2, expected, rtol=1e-5), (s2, expected)
assert smooth_scales(a.half(), W.half(), 0.5).dtype == torch.float32
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 7 - a W8A8 linear, simulated (2 points)
# Implement `w8a8_linear(x, W, s=None)` for `x` of shape `(..., in)` (every leading dimension is
# tokens) and `W` `(out, in)`, computing what an int8 GEMM computes, in float:
# * if `s` is given, smooth first: `x = x / s`, `W = W * s`;
# * per-token activation scales `sx = max|x| / 127` over the last dimension (one per token), and
#   per-channel weight scales `sw = max|W| / 127` over each row; both in float32, clamped below at
#   `1e-8` (an all-zero token or row gives zeros, not NaN);
# * codes `round(x / sx)` and `round(W / sw)` (round-to-nearest), clamped to `[-127, 127]`;
# * multiply the codes in float64 (exact, like the int32 accumulator of an int8 GEMM), then scale
#   the result by `sx` (per token) and `sw` (per output channel); return float32 `(..., out)`.

# %% solution id=w8a8_linear
import torch


def w8a8_linear(x: torch.Tensor, W: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
    """x W^T with int8 per-token activations and int8 per-channel weights (simulated)."""
    ### BEGIN SOLUTION
    x, W = x.float(), W.float()
    if s is not None:
        s = s.float()
        x, W = x / s, W * s
    sx = (x.abs().amax(dim=-1, keepdim=True) / 127).clamp(min=1e-8)
    sw = (W.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
    qx = torch.round(x / sx).clamp(-127, 127)
    qw = torch.round(W / sw).clamp(-127, 127)
    acc = qx.double() @ qw.double().T             # integer products, summed exactly
    return (acc * sx.double() * sw.double().T).float()
    ### END SOLUTION

# %% tests id=test_w8a8_linear points=2
import torch

x1 = torch.tensor([[7.9375, -1.0, 0.125]])       # max 127/16: scale 1/16, every value on the grid
W1 = torch.tensor([[127.0, 1.0, -2.0], [0.0, -127.0, 5.0]])   # max 127 per row: scale 1
y1 = w8a8_linear(x1, W1)
assert y1.shape == (1, 2) and y1.dtype == torch.float32, (y1.shape, y1.dtype)
assert torch.allclose(y1, x1 @ W1.T), (y1, x1 @ W1.T)
torch.manual_seed(9)
x = torch.randn(16, 64)
x[:, 3] *= 50                                    # two outlier channels
x[:, 40] *= 30
W = torch.randn(32, 64) * 0.05
ref = x @ W.T
y = w8a8_linear(x, W)
assert y.shape == (16, 32) and y.dtype == torch.float32
err = ((y - ref).norm() / ref.norm()).item()
assert 1e-4 < err < 0.05, f"relative error {err:.5f}: int8 on both sides is close, but not exact"
s = smooth_scales(x.abs().amax(0), W, 0.5)
err_smooth = ((w8a8_linear(x, W, s) - ref).norm() / ref.norm()).item()
assert err_smooth < 0.7 * err, f"smoothing must lower the error: {err_smooth:.5f} vs {err:.5f}"
assert w8a8_linear(torch.randn(2, 5, 64), W).shape == (2, 5, 32), "leading dimensions are tokens"
### BEGIN HIDDEN TESTS


def reference(x, W, s=None):
    x, W = x.float(), W.float()
    if s is not None:
        x, W = x / s, W * s
    sx = (x.abs().amax(dim=-1, keepdim=True) / 127).clamp(min=1e-8)
    sw = (W.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
    acc = (torch.round(x / sx).clamp(-127, 127).double()
           @ torch.round(W / sw).clamp(-127, 127).double().T)
    return (acc * sx.double() * sw.double().T).float()


def close(a, b):
    return ((a - b).norm() / b.norm().clamp(min=1e-12)).item() < 1e-5


assert close(y, reference(x, W)), "compare with the steps above (round, per-token, per-channel)"
assert close(w8a8_linear(x, W, s), reference(x, W, s)), "with s: x / s and W * s"
x2 = torch.tensor([[0.171875, 7.9375, 1.0]])     # 2.75 codes: rounds to 3
assert torch.allclose(w8a8_linear(x2, torch.eye(3)), torch.tensor([[0.1875, 7.9375, 1.0]])), (
    "round to the nearest code, do not truncate")
torch.manual_seed(10)
x3 = torch.randn(4, 3, 48)
x3[0, 0] *= 1000                                 # one loud token must not flatten the others
x3[1, 2] = 0                                     # an all-zero token
W3 = torch.randn(24, 48) * torch.logspace(-2, 1, 24)[:, None]   # rows of very different size
W3[5] = 0
y3 = w8a8_linear(x3, W3)
assert torch.isfinite(y3).all(), "clamp the scales: an all-zero token or row gives zeros"
assert close(y3, reference(x3, W3)), "one scale per token and one per output row"
### END HIDDEN TESTS

# %% [markdown]
# The worst layer with its real inputs, then the whole model with every Linear but the `lm_head` in
# a W8A8 wrapper (per-tensor scales computed per forward pass here; FP8 is explained next).
# SmoothQuant goes where its `1/s` can be folded: q/k/v (into the input RMSNorm), gate/up (the
# post-attention RMSNorm), down_proj (up_proj's rows); not o_proj (shared KV heads, as with AWQ).
# The wrapper divides by `s` at run time: the same numbers as folding.

# %%
def relative_error(y, ref):
    return ((y - ref).norm() / ref.norm()).item()


ref_worst = X_worst @ W_worst.T
alpha_errors = {"no smoothing": relative_error(w8a8_linear(X_worst, W_worst), ref_worst)}
for alpha in (0.25, 0.5, 0.75, 0.9):
    s = smooth_scales(act_absmax[worst], W_worst, alpha)
    alpha_errors[f"alpha {alpha}"] = relative_error(w8a8_linear(X_worst, W_worst, s), ref_worst)
print(f"{worst}, W8A8 per-token, relative output error:")
for label, err in alpha_errors.items():
    print(f"  {label:<14} {err:.4f}")

FP8 = torch.float8_e4m3fn


def fp8_fake(t, dim=None, dtype=FP8):
    """t cast to an FP8 format and back, with an absmax scale (per tensor, or per slice)."""
    amax = t.abs().amax() if dim is None else t.abs().amax(dim=dim, keepdim=True)
    scale = (amax / torch.finfo(dtype).max).clamp(min=1e-12)
    return (t / scale).to(dtype).float() * scale


class W8A8Linear(torch.nn.Module):
    """A Linear whose matmul is simulated in W8A8: "tensor" / "token" int8, or "fp8" E4M3."""

    def __init__(self, linear, mode, s=None):
        super().__init__()
        self.weight, self.bias, self.mode, self.s = linear.weight, linear.bias, mode, s

    def forward(self, x):
        W, s, dtype = self.weight.float(), self.s, x.dtype
        if self.mode == "token":
            y = w8a8_linear(x, W, s)
        else:
            if s is not None:
                x, W = x.float() / s, W * s
            if self.mode == "fp8":
                y = fp8_fake(x.float(), dim=-1) @ fp8_fake(W, dim=1).T
            else:                                   # "tensor": one scale for all the tokens
                sx = (x.abs().amax() / 127).clamp(min=1e-8)
                sw = (W.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
                y = ((x / sx).round().clamp(-127, 127) * sx) @ (
                    (W / sw).round().clamp(-127, 127) * sw).T
        return (y if self.bias is None else y + self.bias).to(dtype)


linear_names_of = {module: name for name, module in model.named_modules()}


def w8a8_model(mode, alpha=None):
    """A fresh copy of the model on your device with every Linear (lm_head aside) in W8A8."""
    m, _ = load_model(device=device)
    blocks = decoder_blocks(m)
    for b, block in enumerate(blocks):
        for group in LINEAR_GROUPS:
            linears = [block.get_submodule(n) for n in group]
            s = None
            if alpha is not None and group[0] != "self_attn.o_proj":
                weight = torch.cat([lin.weight.detach().float().cpu() for lin in linears])
                name = linear_names_of[decoder_blocks(model)[b].get_submodule(group[0])]
                s = smooth_scales(act_absmax[name], weight, alpha).to(device)
            for name, lin in zip(group, linears):
                parent, child = name.rsplit(".", 1)
                setattr(block.get_submodule(parent), child, W8A8Linear(lin, mode, s))
    return m


W8_EVAL = pick(1024, 256)       # the first tokens of the evaluation text: five models to run
w8_ids, w8_ref = eval_ids[:, :W8_EVAL], ref_logits[:, :W8_EVAL]


def w8_quality(logits):
    nll = torch.nn.functional.cross_entropy(logits[0, :-1], w8_ids[0, 1:])
    return {"perplexity": float(torch.exp(nll)), "top1_agreement": top1_agreement(w8_ref, logits),
            "kl": kl_divergence(w8_ref, logits)}


w8_results, w8_seconds = {"fp32": w8_quality(w8_ref)}, {}
if HEAVY:
    for label, mode, alpha in [("W8A8 per-tensor", "tensor", None),
                               ("W8A8 per-tensor + SmoothQuant 0.5", "tensor", 0.5),
                               ("W8A8 per-token", "token", None),
                               ("W8A8 per-token + SmoothQuant 0.5", "token", 0.5),
                               ("FP8 E4M3 per-token", "fp8", None)]:
        start = time.perf_counter()
        with torch.no_grad():
            w8_results[label] = w8_quality(logits_of(w8a8_model(mode, alpha), w8_ids))
        w8_seconds[label] = time.perf_counter() - start
    print(f"first {W8_EVAL} evaluation tokens (fp32: the same tokens of the evaluation above)")
    print(f"{'model (all Linears but lm_head)':<36}{'perplexity':>11}{'top-1':>8}{'KL':>8}"
          f"{'seconds':>9}")
    for label, r in w8_results.items():
        print(f"{label:<36}{r['perplexity']:>11.2f}{r['top1_agreement']:>8.1%}{r['kl']:>8.4f}"
              + (f"{w8_seconds[label]:>9.0f}" if label in w8_seconds else f"{'-':>9}"))
    plots.bars(list(w8_results), [r["kl"] for r in w8_results.values()],
               yaxis="KL divergence to fp32 (lower is better)",
               title=f"W8A8 on {W8_EVAL} evaluation tokens (perplexity on the bars)",
               text=[f"{r['perplexity']:.2f}" for r in w8_results.values()]).show()
else:
    print("skipped while grading: five whole-model evaluations")

# %% [markdown]
# In the SmoothQuant paper plain W8A8 collapses beyond about 6.7B parameters (where LLM.int8() saw
# systematic outliers emerge) and SmoothQuant restores FP16 accuracy up to 175B (OPT-175B,
# BLOOM-176B, and more). A 135M model, its outliers in a few layers, is far from that regime:
# smoothing matters most where one scale covers everything (per-tensor).
#
# ### FP8
# FP8 (Micikevicius et al. 2022, *FP8 Formats for Deep Learning*) is a floating-point alternative to
# int8 in two variants: **E4M3** (4 exponent bits, 3 mantissa bits; the paper's choice for weights
# and activations) and **E5M2** (more range, less precision; for gradients). A float grid is
# *relative* - every value keeps about the same relative precision - where int8's grid is uniform
# and small values get few levels. Both are PyTorch dtypes; casting works on the CPU:

# %%
print(f"{'format':<16}{'max':>10}{'smallest normal':>17}{'eps (1 + eps > 1)':>19}")
for dtype in (torch.float8_e4m3fn, torch.float8_e5m2, torch.bfloat16):
    info = torch.finfo(dtype)
    print(f"{str(dtype).replace('torch.', ''):<16}{info.max:>10.4g}{info.tiny:>17.3g}"
          f"{info.eps:>19.4g}")
print(f"{'int8 (absmax)':<16}{127:>10}{'uniform grid':>17}{'1/127 of max':>19}")
print("\nrelative error, one scale per tensor (per token / per row in brackets):")
W_down = decoder_blocks(model)[BLOCK].mlp.down_proj.weight.detach().float().cpu()
for label, t, dim in [(f"block {BLOCK} down_proj weight", W_down, 1),
                      (f"block {BLOCK} q/k/v input", X_attn, 1),
                      (f"{worst} input", X_worst, 1)]:
    e4 = [relative_error(fp8_fake(t, d), t) for d in (None, dim)]
    e5 = [relative_error(fp8_fake(t, d, torch.float8_e5m2), t) for d in (None, dim)]
    i8 = [int8_error(t, d) for d in (None, dim)]
    print(f"  {label:<34} E4M3 {e4[0]:.4f} ({e4[1]:.4f})   E5M2 {e5[0]:.4f} ({e5[1]:.4f})   "
          f"int8 {i8[0]:.4f} ({i8[1]:.4f})")

# %% [markdown]
# Hopper and Ada GPUs (compute capability 8.9 and up) multiply FP8 matrices in their tensor cores;
# NVIDIA's H100 datasheet lists twice the dense BF16 peak for FP8. PyTorch reaches them through
# `torch._scaled_mm` (a private function whose signature has changed between releases), which
# engines such as vLLM use for FP8 checkpoints.

# %%
fp8_gpu = (torch.cuda.is_available() and str(device).startswith("cuda")
           and torch.cuda.get_device_capability() >= (8, 9))
if grading():
    print("skipped while grading: a GPU benchmark")
elif not fp8_gpu:
    print(f"skipped: {device_name(device)} has no FP8 tensor cores "
          "(needs an NVIDIA GPU of compute capability 8.9 or higher)")
else:
    try:
        n = pick(8192, 2048)
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        sa, sb = a.abs().amax() / 448, b.abs().amax() / 448
        a8 = (a / sa).to(FP8)
        b8 = (b / sb).to(FP8).T.contiguous().T          # column-major, as _scaled_mm wants
        a16, b16 = a.bfloat16(), b.bfloat16()
        t8 = time_fn(lambda: torch._scaled_mm(a8, b8, scale_a=sa.float(), scale_b=sb.float(),
                                              out_dtype=torch.bfloat16), device=device).median
        t16 = time_fn(lambda: a16 @ b16, device=device).median
        y8 = torch._scaled_mm(a8, b8, scale_a=sa.float(), scale_b=sb.float(),
                              out_dtype=torch.bfloat16).float()
        print(f"{device_name(device)}, {n}x{n}x{n}: FP8 {2 * n ** 3 / t8 / 1e12:.0f} TFLOP/s, "
              f"BF16 {2 * n ** 3 / t16 / 1e12:.0f} TFLOP/s; FP8 relative error "
              f"{relative_error(y8, a @ b):.4f}")
    except (RuntimeError, TypeError) as error:   # a private API: say why, do not stop
        print(f"torch._scaled_mm did not run here ({torch.__version__}): {error}")

# %% [markdown]
# ## Claims vs measured

# %%
def measured(label, key="perplexity"):
    return f"{results[label][key]:.2f}" if label in results else "n/a (skipped in this mode)"


claims = [
    ("GPTQ: 3-4 bits per weight 'with negligible accuracy degradation' "
     "(Frantar et al. 2022, abstract; for 175B-parameter models)",
     f"int4 g128 perplexity: fp32 {measured('fp32')}, RTN {measured('RTN int4 g128 (absmax)')}, "
     f"GPTQ {measured('GPTQ int4 g128 (absmax)')}",
     "a 135M model has little redundancy: every weight matters more, so 4 bits cost more; "
     "GPTQ's gain over RTN is the reproducible part"),
    ("GPTQ: a 175B model quantized in about four GPU hours (same source)",
     f"{timings.get('GPTQ', float('nan')):.0f} s on the CPU for 135M parameters",
     "cost grows with layers x width^2 (the Hessians) and calibration tokens"),
    ("AWQ: protecting ~1% of salient weights (by activation) greatly reduces the error "
     "(Lin et al. 2023)",
     "see the one-layer check below", "measured on block 5's q/k/v"),
    ("AWQ: TinyChat runs 4-bit models >3x faster than Hugging Face FP16 (same source, GPU)",
     "not measured here: needs AWQ's GPU kernels",
     "our AWQ is a fake-quantized fp32 model; speed comes from kernels (see llama.cpp above)"),
]
if engine_rows:
    t = engine_rows["transformers fp32"]
    for label, r in engine_rows.items():
        if label.startswith("llama.cpp"):
            claims.append(("llama.cpp: fast CPU inference of quantized GGUF models",
                           f"{label}: decode {r['decode_tok_s'] / t['decode_tok_s']:.1f}x, prefill "
                           f"{r['prefill_tok_s'] / t['prefill_tok_s']:.1f}x transformers fp32 "
                           "(both on the CPU)",
                           "fewer bytes per weight and fused CPU kernels; same thread count"))


def w8_measured(label):
    return (f"{w8_results[label]['perplexity']:.2f}" if label in w8_results
            else "n/a (skipped in this mode)")


claims += [
    ("SmoothQuant: W8A8 'with negligible loss in accuracy' up to OPT-175B / BLOOM-176B, while "
     "plain W8A8 degrades beyond 6.7B parameters (Xiao et al. 2023)",
     f"perplexity on {W8_EVAL} tokens: fp32 {w8_measured('fp32')}; "
     f"W8A8 per-tensor {w8_measured('W8A8 per-tensor')}, "
     f"+ SmoothQuant {w8_measured('W8A8 per-tensor + SmoothQuant 0.5')}; per-token "
     f"{w8_measured('W8A8 per-token')}, + SmoothQuant "
     f"{w8_measured('W8A8 per-token + SmoothQuant 0.5')}",
     "a 135M model has outliers in a few layers only (section 6); the paper's collapse is a "
     "property of large models, so what reproduces here is the direction of the effect"),
    ("SmoothQuant: up to 1.56x speed-up and 2x memory reduction (same source; "
     "FasterTransformer int8 kernels on GPUs)",
     "not measured here: our W8A8 is simulated in float", "speed needs int8 GEMM kernels"),
    ("FP8: E4M3 for weights and activations matches 16-bit quality after post-training "
     "quantization (Micikevicius et al. 2022)",
     f"FP8 E4M3 per-token perplexity {w8_measured('FP8 E4M3 per-token')}",
     "simulated casts on this model; the paper measured large vision and language models"),
]
for claim, value, why in claims:
    print(f"claim: {claim}\n   measured: {value}\n   why: {why}")

# keep the 1% of input channels with the largest activations in full precision, round the rest
k = max(1, int(0.01 * X_attn.shape[1]))
salient = X_attn.abs().mean(0).topk(k).indices
W_keep = fake_quantize(W_attn, SCHEME)
W_keep[:, salient] = W_attn[:, salient]
W_random = fake_quantize(W_attn, SCHEME)
random_channels = torch.randperm(X_attn.shape[1], generator=torch.Generator().manual_seed(0))[:k]
W_random[:, random_channels] = W_attn[:, random_channels]
print(f"\nblock {BLOCK} q/k/v, int4 g128 output error: RTN "
      f"{output_error(fake_quantize(W_attn, SCHEME), X_attn, W_attn):.4f}; "
      f"{k} salient channels (1%) kept in fp32 {output_error(W_keep, X_attn, W_attn):.4f}; "
      f"{k} random channels kept {output_error(W_random, X_attn, W_attn):.4f}; AWQ scaling "
      f"{output_error(fake_quantize(W_attn * s_yours, SCHEME) / s_yours, X_attn, W_attn):.4f}")

# %% [markdown]
# ## What you measured
# The headline figures of this lesson, measured in this run on your machine: how much perplexity
# 4 bits cost by round-to-nearest, how much of it GPTQ and AWQ win back, and (with llama.cpp
# installed) how much faster llama.cpp decodes on your CPU. Re-running a measurement's cell updates
# its row.

# %%
recap.show()

# %% [markdown]
# ## Summary
# * With a little calibration text, GPTQ (Hessian-guided compensation) and AWQ (loud channels scaled
#   up) beat round-to-nearest at the same bits and group size (section 3).
# * GGUF's blocks of 32 (Q8_0, Q4_0, Q4_1) run on llama.cpp's kernels.
# * W8A8 quantizes activations too; per-token scales, SmoothQuant and FP8 handle their outliers.
#
# Next: lesson 03 removes weights instead of shrinking them (pruning).

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
# `from inferlab.lab.submit import submit; submit("02_gptq_awq_gguf")` in a cell instead.

# %%
from inferlab.lab.submit import submit_form

submit_form("02_gptq_awq_gguf")
