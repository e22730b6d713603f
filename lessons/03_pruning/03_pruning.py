# %% [markdown]
# # 03 · Pruning: which zeros make a model smaller or faster?
#
# **Time:** running every cell in full mode took about 3 min on a 2-core CPU and about 2 min on an
# H200 GPU (measured), plus your reading and exercises. **Prerequisites:** lessons 00-01 (bytes per
# token, perplexity, measuring size and speed).
#
# Pruning removes weights on the bet that the model barely needs them. Whether that buys anything
# depends on **where** the zeros are, because hardware only skips work it can see coming:
#
# | kind | what is removed | what the hardware can exploit |
# |---|---|---|
# | **unstructured** | the individually smallest weights, anywhere | nothing, in a dense matmul; sparse formats only at very high sparsity |
# | **2:4 semi-structured** | 2 of every 4 consecutive weights of a row | NVIDIA sparse tensor cores (Ampere and later) |
# | **structured** | whole MLP channels or attention heads | everything: the matrices are smaller |
#
# You will implement (graded, 12 points): **magnitude pruning**, **Wanda** (activation norms
# collected with forward hooks, per-row pruning by `|W| * ||X||`, run on the model here), the
# **2:4 mask**, and **MLP channel selection**. Then we measure, on this machine: perplexity against sparsity for
# each method, and the size and speed each one really buys - on your device (the GPU when there is
# one, else the CPU), and on a GPU with 2:4 kernels (recorded, with its card and date, and measured
# live when this machine has a recent enough CUDA GPU). Every number printed is measured in this
# run, or cited with its source.

# %%
import copy

import torch
import torch.nn.functional as F

from inferlab.compress import prune
from inferlab.lab import plots, recap, records
from inferlab.lab.bench import default_device, device_name, pin_threads, time_fn
from inferlab.lab.data import calibration_tokens, eval_tokens
from inferlab.lab.models import load_model, parameter_count, weight_bytes
from inferlab.lab.quality import perplexity
from inferlab.lab.settings import fast_mode, grading, pick
from inferlab.lab.widgets import guarded, show

threads = pin_threads()
device = default_device()          # "cuda" when PyTorch sees a GPU, else "cpu"
print(f"device: {device_name(device)}; fast mode: {fast_mode()}; grading: {grading()}")

# %% [markdown]
# ## 1 · The model and its baseline
# The embedded SmolLM2-135M in fp32 on your device (pruning is about which weights exist, so we
# keep full precision here, on a GPU too, and measure the effect of the zeros alone). Perplexity
# is measured on the course's held-out evaluation text; the *calibration* text (disjoint from it)
# is what activation-aware methods look at.

# %%
model, tokenizer = load_model(device=device)
eval_ids = eval_tokens(tokenizer, pick(1024, 128))       # perplexity() moves them to the model
calib_ids = calibration_tokens(tokenizer, n_samples=pick(16, 4), seq_len=pick(256, 64))
prompt_ids = eval_ids[:, :pick(256, 64)].to(device)


def forward_ms(m) -> float:
    """Fastest of three timed forward passes over the prompt (the machine may be shared)."""
    with torch.no_grad():
        return time_fn(lambda: m(prompt_ids), repeats=3, device=device).min * 1e3


def ms(value: float) -> str:
    """Milliseconds, with a decimal when they are few (a GPU's forward takes a few ms)."""
    return f"{value:.1f}" if value < 20 else f"{value:.0f}"


def fastest(models: dict, rounds: int = 1 if grading() else pick(5, 3)) -> dict:
    """Each model's fastest forward, the models taking turns so that load spikes hit all alike."""
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, m in models.items():
            best[name] = min(best[name], forward_ms(m))
    return best


baseline = {"ppl": perplexity(model, eval_ids), "bytes": weight_bytes(model),
            "ms": forward_ms(model)}
nonzero, n_decoder = prune.decoder_weights(model)
print(f"{parameter_count(model) / 1e6:.1f} M parameters, of which {n_decoder / 1e6:.1f} M in "
      f"the decoder layers' Linear weights (the rest is mostly the tied embedding, never pruned)")
print(f"dense fp32: perplexity {baseline['ppl']:.2f} on {eval_ids.shape[1]} tokens, "
      f"{baseline['bytes'] / 1e6:.0f} MB, forward over {prompt_ids.shape[1]} tokens "
      f"{ms(baseline['ms'])} ms")

# %% [markdown]
# ## 2 · Unstructured magnitude pruning
# The oldest rule: a weight close to zero contributes little, so set the smallest ones to zero.
#
# ### Exercise 1 - magnitude mask (2 points)
# Implement `magnitude_mask(weight, sparsity)`: a **bool** tensor shaped like `weight`, `False` for
# the `round(sparsity * weight.numel())` entries with the smallest **absolute** value in the *whole*
# tensor (one threshold per matrix, not per row), `True` for the rest. `sparsity` is the fraction
# *removed*. Exactly that many entries must be dropped, even when values tie.

# %% solution id=magnitude_mask
def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool mask dropping the ``round(sparsity * numel)`` smallest-|w| entries of ``weight``."""
    ### BEGIN SOLUTION
    n_drop = int(round(sparsity * weight.numel()))
    mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    if n_drop:
        order = weight.abs().flatten().argsort(stable=True)
        mask[order[:n_drop]] = False
    return mask.view(weight.shape)
    ### END SOLUTION

# %% tests id=test_magnitude_mask points=2
import torch

w = torch.tensor([[0.5, 0.1, 0.9, 0.3]])
assert magnitude_mask(w, 0.5).tolist() == [[True, False, True, False]]
torch.manual_seed(0)
w = torch.rand(1, 40) + 0.1
mask = magnitude_mask(w, 0.5)
assert mask.dtype == torch.bool and mask.shape == w.shape
assert int(mask.sum()) == 20 and w[mask].min() >= w[~mask].max()
### BEGIN HIDDEN TESTS
# absolute values: a large negative weight matters
assert (magnitude_mask(torch.tensor([[-5.0, 0.1, 3.0, -0.2]]), 0.5).tolist()
        == [[True, False, True, False]])
# one threshold for the whole matrix, not per row
w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
assert magnitude_mask(w, 0.5).tolist() == [[False] * 4, [True] * 4]
# sparsity is the fraction removed
assert int(magnitude_mask(w, 0.25).sum()) == 6 and int(magnitude_mask(w, 0.75).sum()) == 2
assert magnitude_mask(w, 0.0).all() and not magnitude_mask(w, 1.0).any()
# ties: exactly round(sparsity * numel) dropped
assert int(magnitude_mask(torch.ones(4, 4), 0.5).sum()) == 8
# same choice as PyTorch's own pruning utility on random weights
import torch.nn.utils.prune as torch_prune

torch.manual_seed(3)
layer = torch.nn.Linear(24, 16)
torch_prune.l1_unstructured(layer, "weight", amount=0.3)
assert torch.equal(magnitude_mask(layer.weight_orig.detach(), 0.3), layer.weight_mask.bool())
### END HIDDEN TESTS

# %% [markdown]
# PyTorch ships the same rule as `torch.nn.utils.prune.l1_unstructured`. Compare your mask with it
# on one of the model's real matrices, then apply your function to every Linear layer of the
# decoder (`prune.prune_linears` zeroes what your mask marks `False`).

# %%
import torch.nn.utils.prune as torch_prune

probe = copy.deepcopy(model.model.layers[0].mlp.up_proj).cpu()
torch_prune.l1_unstructured(probe, "weight", amount=0.5)
same = magnitude_mask(probe.weight_orig.detach(), 0.5) == probe.weight_mask.bool()
print(f"your mask agrees with torch.nn.utils.prune.l1_unstructured on {same.float().mean():.2%} of "
      f"layer 0's up_proj entries")

magnitude50 = copy.deepcopy(model)
# your function runs on a CPU copy of each weight (as in the tests); its mask goes to the weight
reached = prune.prune_linears(magnitude50,
                              lambda w: magnitude_mask(w.detach().cpu(), 0.5).to(w.device))
unstructured = {"ppl": perplexity(magnitude50, eval_ids), "bytes": weight_bytes(magnitude50)}
baseline["ms"], unstructured["ms"] = fastest({"dense": model, "magnitude": magnitude50}).values()
print(f"magnitude 50%: sparsity {reached:.1%}, perplexity {unstructured['ppl']:.1f} "
      f"(dense {baseline['ppl']:.2f}); {unstructured['bytes'] / 1e6:.0f} MB "
      f"(dense {baseline['bytes'] / 1e6:.0f} MB); "
      f"forward {ms(unstructured['ms'])} ms (dense {ms(baseline['ms'])} ms)")
recap.note("perplexity / dense, 50% unstructured, magnitude",
           unstructured["ppl"] / baseline["ppl"], "x", device)

# %% [markdown]
# Two observations, both measured just above:
# * **Quality**: on this small model, half the weights by magnitude is not "minimal loss".
# * **Size and speed**: nothing changed. The zeros are still stored as fp32 numbers and a dense
#   matmul multiplies them like any other. To gain anything you need a *sparse format* and a
#   kernel that skips zeros. Here is what PyTorch's CSR format (values + column indices + row
#   pointers) costs and buys on the CPU (where it is timed whatever your device), for an
#   MLP-sized matrix:

# %%
W = model.model.layers[0].mlp.up_proj.weight.detach().cpu().clone()     # a CPU copy
if grading():
    print("skipped while grading: the CSR timing table takes a while")
else:
    torch.manual_seed(0)
    rows = []
    for tokens in (1, pick(128, 32)):
        x = torch.randn(tokens, W.shape[1])
        for s in (0.0, 0.5, 0.9, 0.99):
            w = W * prune.magnitude_mask(W, s)
            times = prune.matmul_times(w, x, repeats=pick(20, 5))
            rows.append((tokens, s, prune.storage_bytes(w, "csr") / prune.storage_bytes(w),
                         times["dense"] * 1e6, times["csr"] * 1e6))
    print(f"{'tokens':>6} {'sparsity':>8} {'CSR size / dense':>17} {'dense us':>9} {'CSR us':>9}")
    for tokens, s, size, dense_us, csr_us in rows:
        print(f"{tokens:>6} {s:>8.0%} {size:>17.2f} {dense_us:>9.0f} {csr_us:>9.0f}")
    plots.lines([f"{s:.0%}" for s in (0.0, 0.5, 0.9, 0.99)],
                {f"{kind}, {t} token(s)": [r[3 if kind == 'dense' else 4]
                                           for r in rows if r[0] == t]
                 for t in sorted({r[0] for r in rows}) for kind in ("dense", "CSR")},
                title=f"F.linear on a {tuple(W.shape)} fp32 matrix ({device_name('cpu')})",
                xaxis="sparsity", yaxis="microseconds", log_y=True).show()

# %% [markdown]
# CSR stores an 8-byte index beside every 4-byte value, so at 50% sparsity it is *larger* than the
# dense matrix, and its kernel is slower; it only wins at the very high sparsities that the
# perplexity above says this model cannot afford.
#
# ### Smarter unstructured: Wanda
# Wanda (Sun et al. 2023, arXiv:2306.11695, "Pruning by Weights and activations") scores each weight
# by `|W_ij| * ||X_j||`: `||X_j||` is the L2 norm of input feature `j` of that Linear layer over
# every calibration token (all sequences, all positions). A small weight on a loud input can matter
# more than a large weight on a quiet one. It then prunes **per output row**: each row `i` loses its
# own lowest-scoring fraction of weights, so every output keeps the same number of inputs. No
# retraining, no weight update: one forward pass over calibration text and a sort.
#
# The norms come from the model as it runs. PyTorch's **forward hooks** make that possible:
# `linear.register_forward_hook(fn)` calls `fn(module, args, output)` after every forward of that
# layer, with `args[0]` the layer's input, shaped `(batch, seq, in_features)` in a transformer.
#
# ### Exercise 2 - Wanda, with forward hooks (5 points)
# Implement the class `WandaPruner`:
# * `hook(name)` returns a forward hook for the Linear layer called `name`: each call adds the
#   squares of its input `args[0]` (any shape `(..., in_features)`), summed over every token, to a
#   running sum kept for `name` - one value per input feature, in float32, accumulated over all
#   the calls (many calibration batches);
# * `norms()` returns `{name: sqrt(running sum)}` for every layer seen: `||X_j||` per feature;
# * `mask(name, weight, sparsity)` returns a **bool** mask shaped like `weight` (`(out, in)`):
#   in **each row**, `False` for the `round(sparsity * in_features)` entries with the smallest
#   `|weight| * norms()[name]` (ties: the earlier column goes first, as a stable sort gives),
#   `True` elsewhere.
#
# The lesson then hooks your pruner onto every Linear of the decoder, runs the calibration text
# through the model and prunes it with your masks.

# %% solution id=wanda_pruner
class WandaPruner:
    """Wanda: input-feature norms from forward hooks, then per-row pruning by ``|W| * ||X||``."""

    def __init__(self):
        self.sq_sums: dict[str, torch.Tensor] = {}

    ### BEGIN SOLUTION
    def hook(self, name: str):
        def record(module, args, output):
            x = args[0].detach().float()
            x = x.reshape(-1, x.shape[-1])                     # every token of every sequence
            total = (x * x).sum(dim=0)
            self.sq_sums[name] = self.sq_sums[name] + total if name in self.sq_sums else total
        return record

    def norms(self) -> dict[str, torch.Tensor]:
        return {name: total.sqrt() for name, total in self.sq_sums.items()}

    def mask(self, name: str, weight: torch.Tensor, sparsity: float) -> torch.Tensor:
        norm = self.sq_sums[name].sqrt().to(weight.device)
        score = weight.detach().abs().float() * norm[None, :]    # |W_ij| * ||X_j||
        n_drop = int(round(sparsity * weight.shape[1]))
        mask = torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
        if n_drop:
            drop = score.argsort(dim=1, stable=True)[:, :n_drop]  # each row's lowest scores
            mask.scatter_(1, drop, False)
        return mask
    ### END SOLUTION

# %% tests id=test_wanda_pruner points=5
import torch

pruner = WandaPruner()
record = pruner.hook("fc")
x1 = torch.tensor([[1.0, 2.0, 0.0], [1.0, 2.0, 0.0]])              # 2 tokens, 3 features
x2 = torch.tensor([[[2.0, 0.0, 3.0]], [[1.0, 0.0, 4.0]]])          # (batch 2, seq 1, 3)
record(None, (x1,), None)
record(None, (x2,), None)                                          # a second batch adds to it
norms_seen = pruner.norms()
assert set(norms_seen) == {"fc"}
assert torch.allclose(norms_seen["fc"], torch.tensor([7.0, 8.0, 25.0]).sqrt()), norms_seen["fc"]
# feature 2 is loud: its 0.6 outweighs the 0.8 on feature 1 (magnitude would drop the 0.6)
weight = torch.tensor([[1.0, 0.8, 0.6], [-3.0, 0.5, 0.2]])
kept = pruner.mask("fc", weight, 1 / 3)
assert kept.dtype == torch.bool and kept.shape == weight.shape
assert kept.tolist() == [[True, False, True], [True, True, False]], kept
torch.manual_seed(0)
pruner.hook("big")(None, (torch.randn(4, 10, 32),), None)
kept = pruner.mask("big", torch.randn(16, 32), 0.5)
assert kept.sum(dim=1).eq(16).all(), "each row keeps the same number of weights"
### BEGIN HIDDEN TESTS
torch.manual_seed(1)
p2 = WandaPruner()
thooks = {name: p2.hook(name) for name in ("a", "b")}
txs = [torch.randn(2, 5, 8) * torch.linspace(0.1, 3.0, 8) for _ in range(3)]
for x in txs:
    thooks["a"](None, (x,), torch.zeros(2, 5, 4))                 # the output plays no part
thooks["b"](None, (txs[0][0],), None)
tflat = torch.cat([x.reshape(-1, 8) for x in txs])
texp = tflat.pow(2).sum(0).sqrt()
tgot = p2.norms()
assert set(tgot) == {"a", "b"}, "one running sum per layer"
assert tgot["a"].shape == (8,), "one norm per input feature"
assert torch.allclose(tgot["a"], texp, rtol=1e-5), "the L2 norm over all tokens of all batches"
assert torch.allclose(tgot["b"], txs[0][0].pow(2).sum(0).sqrt(), rtol=1e-5), "layers apart"
assert tgot["a"].dtype == torch.float32
p2.hook("d")(None, (txs[0].double(),), None)
assert p2.norms()["d"].dtype == torch.float32, "sums in float32"
# per row, by |W| * ||X||, at the exact count
tw = torch.randn(12, 8)
tscore = tw.abs() * texp
for frac in (0.25, 0.3, 0.5, 0.7):
    tm = p2.mask("a", tw, frac)
    t_drop = int(round(frac * 8))
    assert tm.sum(dim=1).eq(8 - t_drop).all(), f"each row drops round({frac} * 8)"
    tlowest = tscore.argsort(dim=1, stable=True)[:, :t_drop]
    assert not tm.gather(1, tlowest).any(), f"each row's lowest |W| * ||X|| at {frac}"
# a matrix whose rows differ in scale: a global threshold would empty the small rows
tw2 = torch.randn(6, 8) * torch.tensor([[0.01], [1.0], [100.0], [0.1], [10.0], [1.0]])
assert p2.mask("a", tw2, 0.5).sum(dim=1).eq(4).all(), "per output row, not one threshold"
# negative weights count by magnitude; the activations weigh in
p3 = WandaPruner()
p3.hook("h")(None, (torch.tensor([[10.0, 1.0, 1.0, 1.0]]),), None)
assert p3.mask("h", torch.tensor([[-0.2, 1.0, -0.5, 0.1]]), 0.5).tolist() == [
    [True, True, False, False]]
# ties broken by position; sparsity 0 and 1
p3.hook("t")(None, (torch.ones(3, 4),), None)
assert p3.mask("t", torch.ones(2, 4), 0.5).tolist() == [[False, False, True, True]] * 2
assert p3.mask("t", torch.ones(2, 4), 0.0).all() and not p3.mask("t", torch.ones(2, 4), 1.0).any()
### END HIDDEN TESTS

# %% [markdown]
# Now on the real model: your hooks on every Linear of the decoder (30 layers x 7 projections),
# the calibration text through the model, the hooks removed. Your norms are checked against the
# course's `prune.input_norms` (same definition, written once more), then your masks prune every
# Linear to 50% - the same fraction as magnitude pruning above - and only the MLPs, for
# comparison. The rest of the lesson uses your norms wherever a method is activation-aware.

# %%
pruner = WandaPruner()
handles = [linear.register_forward_hook(pruner.hook(name))
           for name, linear in prune.prunable_linears(model).items()]
try:
    with torch.no_grad():
        for row in calib_ids:
            model(row[None].to(device))
finally:
    for handle in handles:
        handle.remove()
norms = pruner.norms()
course_norms = prune.input_norms(model, calib_ids)
gap = max(((norms[k] - course_norms[k]).abs().max() / course_norms[k].abs().max()).item()
          for k in course_norms)
print(f"your norms: {len(norms)} layers, {calib_ids.numel()} calibration tokens; largest "
      f"difference from prune.input_norms {gap:.1e} (relative)")


def wanda_copy(sparsity: float, only: str | None = None):
    """A copy of the model pruned by your masks (every decoder Linear, or those named ``only``)."""
    pruned = copy.deepcopy(model)
    for name, linear in prune.prunable_linears(pruned).items():
        if only is None or only in name:
            linear.weight.data *= pruner.mask(name, linear.weight, sparsity)
    return pruned


wanda50 = wanda_copy(0.5)
wanda_ppl = perplexity(wanda50, eval_ids)
wanda_mlp = wanda_copy(0.5, only="mlp")
wanda_mlp_ppl = perplexity(wanda_mlp, eval_ids)
mlp_sparsity = prune.sparsity(wanda_mlp)
del wanda_mlp
print(f"your Wanda 50%: sparsity {prune.sparsity(wanda50):.1%}, perplexity {wanda_ppl:.1f} "
      f"(magnitude 50%: {unstructured['ppl']:.1f}, dense {baseline['ppl']:.2f})")
print(f"your Wanda 50% on the MLPs only: {mlp_sparsity:.1%} of the decoder weights removed, "
      f"perplexity {wanda_mlp_ppl:.1f}")
recap.note("perplexity / dense, 50% unstructured, Wanda (yours)", wanda_ppl / baseline["ppl"],
           "x", device)

# %% [markdown]
# ## 3 · 2:4 semi-structured sparsity
# NVIDIA's sparse tensor cores accept one pattern: in every group of **4 consecutive weights of a
# row** (along the input dimension, the dimension a matmul sums over), at most **2** are nonzero.
# The matrix is stored as its kept half plus 2-bit positions, and the tensor core skips the zeros.
#
# ### Exercise 3 - the 2:4 mask (2 points)
# Implement `two_four_mask(weight)`: a bool tensor shaped like `weight` that keeps, in every group of
# 4 consecutive entries along the **last** dimension, the **2 with the largest absolute value** -
# exactly 2 per group, even when values tie. Raise `ValueError` if the last dimension is not a
# multiple of 4.

# %% solution id=two_four_mask
def two_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest-|w| entries of every 4 consecutive ones along the last dimension."""
    ### BEGIN SOLUTION
    if weight.shape[-1] % 4:
        raise ValueError(f"last dimension {weight.shape[-1]} is not a multiple of 4")
    groups = weight.abs().reshape(-1, 4)
    keep = groups.topk(2, dim=1).indices
    mask = torch.zeros(groups.shape, dtype=torch.bool, device=weight.device)
    mask.scatter_(1, keep, True)
    return mask.view(weight.shape)
    ### END SOLUTION

# %% tests id=test_two_four_mask points=2
import torch

w = torch.tensor([[0.1, 0.9, 0.5, 0.2, 3.0, 1.0, 2.0, 4.0]])
assert two_four_mask(w).tolist() == [[False, True, True, False, True, False, False, True]]
torch.manual_seed(0)
w = torch.rand(8, 16)
mask = two_four_mask(w)
assert mask.dtype == torch.bool and mask.shape == w.shape
assert mask.view(-1, 4).sum(1).eq(2).all()
### BEGIN HIDDEN TESTS
# absolute values
assert (two_four_mask(torch.tensor([[-5.0, 0.1, 0.2, -3.0]])).tolist()
        == [[True, False, False, True]])
# exactly two per group, even with ties
assert two_four_mask(torch.ones(3, 8)).view(-1, 4).sum(1).eq(2).all()
# the kept pair is the largest in magnitude, on random signed weights
torch.manual_seed(1)
w = torch.randn(16, 32)
mask = two_four_mask(w)
assert mask.view(-1, 4).sum(1).eq(2).all()
assert torch.allclose((w.abs() * mask).view(-1, 4).sum(1),
                      w.abs().view(-1, 4).topk(2, dim=1).values.sum(1))
# groups run along the last dimension of any shape
assert two_four_mask(torch.randn(2, 3, 8)).view(-1, 4).sum(1).eq(2).all()
try:
    two_four_mask(torch.randn(4, 6))
except ValueError:
    pass
else:
    raise AssertionError("a last dimension that is not a multiple of 4 must raise ValueError")
### END HIDDEN TESTS

# %% [markdown]
# Apply it to every Linear of the decoder: by magnitude, and with Wanda's score (your mask applied to
# `|W| * ||x||`).

# %%
two_four = {}
for label, use_norms in (("2:4 magnitude", False), ("2:4 wanda", True)):
    m = copy.deepcopy(model)
    for name, linear in prune.prunable_linears(m).items():
        score = linear.weight.detach() * (norms[name] if use_norms else 1.0)
        linear.weight.data *= two_four_mask(score.cpu()).to(score.device)   # yours, on the CPU
    two_four[label] = perplexity(m, eval_ids)
    print(f"{label}: sparsity {prune.sparsity(m):.1%}, perplexity {two_four[label]:.1f}")
    del m

# %% [markdown]
# On a CPU the pattern buys nothing: PyTorch's 2:4 kernels (`torch.sparse.to_sparse_semi_structured`)
# exist only for CUDA. Asking for one with the CPU copy of the matrix shows what happens:

# %%
from torch.sparse import to_sparse_semi_structured

w24 = (W * prune.two_four_mask(W)).half()
try:
    to_sparse_semi_structured(w24)
    print("a semi-structured tensor was created on the CPU")
except Exception as error:  # expected on a CPU
    print(f"on the CPU: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
print(f"storage in fp16: dense {prune.storage_bytes(w24) / 1e6:.2f} MB, 2:4 compressed "
      f"{prune.storage_bytes(w24, '2:4') / 1e6:.2f} MB "
      f"({prune.storage_bytes(w24, '2:4') / prune.storage_bytes(w24):.1%})")

# %% [markdown]
# ### 2:4 on a GPU
# On a GPU, `benchmarks/sparsity_gpu.py` times `F.linear(x, W)` with the weight dense and as a 2:4
# semi-structured tensor (PyTorch's cuSPARSELt and CUTLASS backends), plus cuSPARSELt's own kernel
# with the algorithm its search picks, on Llama-2-7B's shapes in fp16. Every timing replays a CUDA
# graph of 20 calls over weights larger than the GPU's cache. The recording that ships with the
# course, with its card and date:

# %%
gpu = records.load("sparsity_2of4")
info = gpu["results"]["info"]
print(records.label(gpu),
      f"- torch {info['torch']}, CUDA {info['cuda']}, cuSPARSELt {info['cusparselt_version']}, "
      f"default backend {info['default_backend']}")


def graph_ms(result):
    return result.get("graph_ms") or result.get("eager_ms")


for shape, row in gpu["results"]["linear"].items():
    if "tokens" not in row:
        continue
    backends = {k: (v if isinstance(v, str)
                    else f"{v['bytes'] / row['dense_bytes']:.1%} of dense bytes")
                for k, v in row["backends"].items()}
    print(f"\n{shape}: {backends}")
    print(f"{'tokens':>6} {'dense ms':>9} {'cuSPARSELt F.linear':>20} "
          f"{'cuSPARSELt tuned kernel':>24} {'CUTLASS':>9}")
    for tokens, res in row["tokens"].items():
        dense = graph_ms(res["dense F.linear"])
        linear = res.get("cusparselt F.linear", {})
        tuned = next((v for k, v in res.items() if k.startswith("cusparselt raw")), {})
        cutlass = res.get("cutlass F.linear", {})

        def fmt(r):
            return f"{dense / graph_ms(r):.2f}x" if graph_ms(r) else "n/a"

        print(f"{tokens:>6} {dense:>9.4f} {fmt(linear):>20} {fmt(tuned):>24} {fmt(cutlass):>9}")
cutlass_error = next((r["error"] for r in gpu["results"]["mlp"].values() if isinstance(r, dict)
                      and "error" in r), None)
if cutlass_error is None:
    cutlass_error = next((v["error"] for row in gpu["results"]["linear"].values() if "tokens" in row
                          for res in row["tokens"].values() for k, v in res.items()
                          if k.startswith("cutlass") and "error" in v), "none")
print("\nn/a: the tuned kernel's algorithm search refused a 1-column input; CUTLASS backend: "
      f"{cutlass_error[:120]}")
mlp = gpu["results"]["mlp"]
tokens_mlp = [t for t in mlp["dense"]]
speedups = {"cuSPARSELt (CUDA graph)":
            [mlp["dense"][t]["graph_ms"] / mlp["cusparselt"][t]["graph_ms"] for t in tokens_mlp],
            "cuSPARSELt (eager, launch overhead included)":
            [mlp["dense"][t]["eager_ms"] / mlp["cusparselt"][t]["eager_ms"] for t in tokens_mlp]}
for name, values in speedups.items():
    print(f"whole MLP block, {name}: "
          + ", ".join(f"{t} tok {v:.2f}x" for t, v in zip(tokens_mlp, values)))
plots.grouped_bars([f"{t} tokens" for t in tokens_mlp], speedups,
                   title=f"Llama-2-7B MLP block, 2:4 sparse vs dense fp16 ({records.label(gpu)})",
                   yaxis="speed-up over dense (>1 = faster)").show()

# %% [markdown]
# Read the recording (the numbers are printed above, from the file):
# * PyTorch's **CUTLASS** 2:4 kernels refuse this Hopper card; the default backend there is **cuSPARSELt**.
# * Through `F.linear` at decode-sized batches (1-128 tokens) the sparse weight is **slower** than
#   dense: the wrapper pads the input to the kernel's minimum size and transposes it, and those
#   extra kernels cost more than the halved weight read saves. The tuned cuSPARSELt kernel called
#   directly is a little faster than dense there.
# * With thousands of tokens (prefill, large batches) the matmul becomes compute-bound and the
#   sparse tensor cores pay: that is where 2:4 speeds things up, well short of the "2x" peak.
# * Without CUDA graphs, the Python-side dispatch of the sparse tensor subclass costs milliseconds
#   per MLP block: eager 2:4 was far slower than dense at every size.
#
# If this notebook runs on a CUDA GPU, the cell below measures one shape live on *your* card
# (2:4 kernels need an Ampere or newer GPU; an older one says so).

# %%
if device == "cuda" and not grading():
    torch.manual_seed(0)
    wg = torch.randn(11008, 4096, device="cuda", dtype=torch.float16)
    wg = wg * prune.two_four_mask(wg)
    try:
        ws = to_sparse_semi_structured(wg)
    except Exception as error:  # e.g. a GPU older than Ampere
        ws = None
        print(f"no 2:4 kernel on {device_name('cuda')}: {type(error).__name__}: "
              f"{str(error).splitlines()[0][:160]}")
    tokens_live = (1, 32, 512, 4096) if ws is not None else ()
    if ws is not None:
        print(f"live on {device_name('cuda')}: 11008x4096 fp16, {type(ws).__name__}")
    for tokens in tokens_live:
        xg = torch.randn(tokens, 4096, device="cuda", dtype=torch.float16)
        dense_t = time_fn(lambda: F.linear(xg, wg), warmup=3, repeats=20, device="cuda").median
        sparse_t = time_fn(lambda: F.linear(xg, ws), warmup=3, repeats=20, device="cuda").median
        print(f"  {tokens:>5} tokens: dense {dense_t * 1e3:.3f} ms, 2:4 {sparse_t * 1e3:.3f} ms "
              f"({dense_t / sparse_t:.2f}x, eager, launch overhead included)")
        if tokens == max(tokens_live):
            recap.note(f"2:4 vs dense fp16 matmul speed, 11008x4096, {tokens} tokens",
                       dense_t / sparse_t, "x", "cuda")
else:
    print("no CUDA GPU here (or grading): the recorded numbers above stand in for a live run")

# %% [markdown]
# ## 4 · Structured pruning: MLP channels
# A Llama MLP computes `down @ (silu(gate @ x) * (up @ x))`. Hidden channel `j` owns row `j` of
# `gate` and `up` and column `j` of `down`; removing it removes all three, and the matrices really
# shrink. Which channels? A good score is how loud the channel was on calibration text,
# `hidden_norm[j]` (the norm of the input to `down` at position `j`), times how strongly it writes
# to the output, `||down[:, j]||`.
#
# ### Exercise 4 - select MLP channels (3 points)
# Implement `select_mlp_channels(gate, up, down, hidden_norm, n_keep)`: score every channel by
# `hidden_norm[j] * ||down[:, j]||` (L2 norm of column `j`), keep the `n_keep` highest, and return
# the smaller `(gate, up, down)` - rows of `gate`/`up` and columns of `down` - **in their original
# order**. Shapes: `gate`, `up` are `(inter, hidden)`, `down` is `(hidden, inter)`.

# %% solution id=select_mlp_channels
def select_mlp_channels(gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor,
                        hidden_norm: torch.Tensor, n_keep: int):
    """Weights of the ``n_keep`` best channels: ``(gate[k], up[k], down[:, k])``, original order."""
    ### BEGIN SOLUTION
    scores = hidden_norm * down.norm(dim=0)
    keep = scores.topk(n_keep).indices.sort().values
    return gate[keep], up[keep], down[:, keep]
    ### END SOLUTION

# %% tests id=test_select_mlp_channels points=3
import torch
import torch.nn.functional as F


def _mlp(gate, up, down, x):
    return (F.silu(x @ gate.T) * (x @ up.T)) @ down.T


torch.manual_seed(0)
gate, up, down = torch.randn(6, 4), torch.randn(6, 4), torch.randn(4, 6)
down = down / down.norm(dim=0) * torch.arange(1.0, 7.0)    # column norms 1..6
hidden_norm = torch.arange(1.0, 7.0)                         # louder channels also write harder
g, u, d = select_mlp_channels(gate, up, down, hidden_norm, 3)
assert g.shape == (3, 4) and u.shape == (3, 4) and d.shape == (4, 3)
# the smaller MLP computes what the full one computes with channels 0-2 switched off
x = torch.randn(5, 4)
assert torch.allclose(_mlp(g, u, d, x),
                      _mlp(gate, up, down * torch.tensor([0, 0, 0, 1, 1, 1.0]), x), atol=1e-5)
### BEGIN HIDDEN TESTS
# original order
assert (torch.equal(g, gate[[3, 4, 5]]) and torch.equal(u, up[[3, 4, 5]])
        and torch.equal(d, down[:, [3, 4, 5]]))
# both factors count: a loud channel that writes weakly, a strong writer that is quiet
torch.manual_seed(1)
gate, up = torch.randn(5, 3), torch.randn(5, 3)
down = torch.randn(3, 5)
down = down / down.norm(dim=0) * torch.tensor([0.1, 1.0, 1.0, 9.0, 2.0])
hidden_norm = torch.tensor([50.0, 1.0, 2.0, 0.5, 3.0])        # scores 5, 1, 2, 4.5, 6
g, u, d = select_mlp_channels(gate, up, down, hidden_norm, 2)
assert torch.equal(g, gate[[0, 4]]) and torch.equal(d, down[:, [0, 4]])
g, u, d = select_mlp_channels(gate, up, down, hidden_norm, 3)
assert torch.equal(u, up[[0, 3, 4]])
# keeping everything changes nothing
g, u, d = select_mlp_channels(gate, up, down, hidden_norm, 5)
assert torch.equal(g, gate) and torch.equal(u, up) and torch.equal(d, down)
### END HIDDEN TESTS

# %% [markdown]
# Remove half of every layer's MLP channels with your function (`prune.prune_mlp_channels` calls it
# once per layer and swaps in smaller `nn.Linear`s), and compare with a score that ignores the
# activations (the product of the weight norms of `gate[j]`, `up[j]`, `down[:, j]`):

# %%
structured = {}
for label, use_norms in (("activation-aware (yours)", True), ("weights only", False)):
    m = copy.deepcopy(model)
    if use_norms:
        n_keep = prune.prune_mlp_channels(m, 0.5, norms, select=lambda g, u, d, h, k: tuple(
            t.to(g.device) for t in        # yours, on CPU copies; the result back to the device
            select_mlp_channels(g.detach().cpu(), u.detach().cpu(), d.detach().cpu(), h.cpu(), k)))
    else:
        n_keep = prune.prune_mlp_channels(m, 0.5, None)
    structured[label] = {"ppl": perplexity(m, eval_ids), "bytes": weight_bytes(m),
                         "ms": forward_ms(m)}
    print(f"MLP channels 1536 -> {n_keep}, {label}: perplexity {structured[label]['ppl']:.1f}, "
          f"{structured[label]['bytes'] / 1e6:.0f} MB, forward {ms(structured[label]['ms'])} ms")
    if use_norms:
        mlp_half = m
    else:
        del m
print(f"(dense: perplexity {baseline['ppl']:.2f}, {baseline['bytes'] / 1e6:.0f} MB, "
      f"forward {ms(baseline['ms'])} ms)")

# %% [markdown]
# Attention heads can go too. SmolLM2 uses grouped-query attention (9 query heads share 3 key/value
# heads), so each group must lose the same number of query heads; `prune.prune_attention_heads`
# scores heads by their output norm times their `o_proj` columns and keeps 2 of 3 per group:

# %%
heads = copy.deepcopy(model)
n_heads = prune.prune_attention_heads(heads, 2, norms)
head_result = {"ppl": perplexity(heads, eval_ids), "bytes": weight_bytes(heads),
               "ms": forward_ms(heads), "removed": 1 - prune.decoder_weights(heads)[1] / n_decoder}
print(f"attention heads 9 -> {n_heads}: perplexity {head_result['ppl']:.1f}, "
      f"{head_result['bytes'] / 1e6:.0f} MB, forward {ms(head_result['ms'])} ms")

# %% [markdown]
# ## 5 · Perplexity against sparsity
# Every method at several sparsities (fraction of the decoder's Linear weights removed). The curve
# uses a log scale: some methods collapse by orders of magnitude. Skipped while grading (it
# re-prunes and re-evaluates the model many times).

# %%
SWEEP = {
    "magnitude": pick([0.1, 0.2, 0.3, 0.4, 0.6], [0.25]),
    "wanda": pick([0.1, 0.2, 0.3, 0.4, 0.6], [0.25]),
    "mlp channels": pick([0.1, 0.2, 0.3, 0.4, 0.5], [0.15]),
    "attention heads": pick([0.12], []),
}
curve: dict[str, dict[float, float]] = {method: {0.0: baseline["ppl"]} for method in prune.METHODS}
# the points measured in the sections above
curve["magnitude"][0.5], curve["wanda"][0.5] = unstructured["ppl"], wanda_ppl
curve["2:4 magnitude"][0.5] = two_four["2:4 magnitude"]
curve["2:4 wanda"][0.5] = two_four["2:4 wanda"]
mlp_removed = 1 - prune.decoder_weights(mlp_half)[1] / n_decoder
curve["mlp channels"][round(mlp_removed, 4)] = structured["activation-aware (yours)"]["ppl"]
curve["mlp channels (weights only)"][round(mlp_removed, 4)] = structured["weights only"]["ppl"]
curve["attention heads"][round(head_result["removed"], 4)] = head_result["ppl"]


def ppl_point(method: str, sparsity: float) -> tuple[float, float]:
    """(removed fraction, perplexity) of ``method`` at ``sparsity``, cached in ``curve``."""
    pruned, removed = prune.pruned_copy(model, method, sparsity, norms)
    ppl = perplexity(pruned, eval_ids)
    curve[method][round(removed, 4)] = ppl
    return removed, ppl


def draw_curve(highlight=None):
    fig = plots.lines([], {},
                      title=f"Perplexity vs sparsity, {eval_ids.shape[1]} evaluation tokens",
                      xaxis="fraction of decoder weights removed", yaxis="perplexity (log)",
                      log_y=True)
    for method, points in curve.items():
        if len(points) > 1:
            xs = sorted(points)
            fig.add_scatter(name=method, x=xs, y=[points[x] for x in xs], mode="lines+markers")
    if highlight:
        fig.add_scatter(name="chosen", x=[highlight[0]], y=[highlight[1]], mode="markers",
                        marker=dict(size=14, symbol="star", color="black"))
    return fig


if grading():
    print("skipped while grading: the sweep re-evaluates the model many times")
else:
    for method, sparsities in SWEEP.items():
        for s in sparsities:
            ppl_point(method, s)
    for method, points in curve.items():
        print(f"{method:<28}" + "  ".join(f"{x:.0%}: {p:.1f}" for x, p in sorted(points.items())))
    draw_curve().show()

# %% [markdown]
# ### Explore: any method, any sparsity
# Pick a method and a sparsity; the panel prunes a copy of the model, measures its perplexity and
# adds the point to the curve. Combinations that cannot exist (2:4 is always 50%; MLP channels alone
# hold only ~3/4 of the decoder weights; heads go one per group at a time) are explained in the
# output, and the panel keeps working.

# %%
import ipywidgets as widgets


def pruning_panel():
    method = widgets.Dropdown(options=prune.METHODS, value="wanda", description="method")
    amount = widgets.FloatSlider(value=0.3, min=0.0, max=0.9, step=0.05, description="sparsity",
                                 readout_format=".0%", continuous_update=False)
    output = widgets.Output()

    def render():
        if method.value.startswith("2:4") and amount.value != 0.5:
            print("2:4 keeps exactly 2 of every 4 weights: sparsity is always 50% "
                  f"(slider: {amount.value:.0%})")
        removed, ppl = ppl_point(method.value, amount.value)
        print(f"{method.value}: removed {removed:.1%} of the decoder weights -> "
              f"perplexity {ppl:.1f} (dense {baseline['ppl']:.2f})")
        draw_curve((removed, ppl)).show()

    update = guarded(output, render)
    method.observe(update, names="value")
    amount.observe(update, names="value")
    update()
    panel = widgets.VBox([widgets.HTML("<b>Pruning explorer</b>"), widgets.HBox([method, amount]),
                          output])
    panel.render = update
    return panel


if grading():
    print("skipped while grading: the panel re-prunes and re-evaluates the model")
else:
    show(pruning_panel())

# %% [markdown]
# ## 6 · What each kind really buys on your device
# Size in memory (`weight_bytes`: every stored number, zeros included) and the forward pass over the
# prompt. A shared machine makes single timings jumpy, so the models take turns, several rounds,
# and each keeps its fastest time. On a GPU, a forward pass of this small model over a short prompt
# can be dominated by the fixed cost of launching its few hundred kernels one after another; then
# smaller matrices barely change the time, and the size column is what structured pruning buys.

# %%
best = fastest({"dense": model, "magnitude": magnitude50, "mlp": mlp_half, "heads": heads})
baseline["ms"], unstructured["ms"] = best["dense"], best["magnitude"]
structured["activation-aware (yours)"]["ms"], head_result["ms"] = best["mlp"], best["heads"]
table = [
    ("dense fp32", 0.0, baseline),
    ("unstructured magnitude 50%", prune.sparsity(magnitude50), unstructured),
    ("structured: MLP channels 50% (yours)", mlp_removed,
     structured["activation-aware (yours)"]),
    ("structured: heads 9 -> 6", head_result["removed"], head_result),
]
print(f"{'model':<38}{'removed':>9}{'perplexity':>12}{'MB':>7}{'forward ms':>12}{'speed-up':>10}")
for name, removed, r in table:
    print(f"{name:<38}{removed:>9.0%}{r['ppl']:>12.1f}{r['bytes'] / 1e6:>7.0f}{ms(r['ms']):>12}"
          f"{baseline['ms'] / r['ms']:>9.2f}x")
no_24 = ("2:4 (CPU: no kernel; see the GPU record)" if device == "cpu"
         else "2:4 (matmul timed in section 3)")
print(f"{no_24:<38}{'50%':>9}{two_four['2:4 wanda']:>12.1f}"
      f"{baseline['bytes'] / 1e6:>7.0f}{'n/a':>12}{'n/a':>10}")
mlp_row = structured["activation-aware (yours)"]
recap.note("forward speed-up, 50% unstructured (magnitude)", baseline["ms"] / unstructured["ms"],
           "x", device)
recap.note("forward speed-up, MLP channels 50% (structured)", baseline["ms"] / mlp_row["ms"], "x",
           device)
recap.note("memory saved, MLP channels 50% (structured)",
           (baseline["bytes"] - mlp_row["bytes"]) / 1e6, "MB", device)
plots.grouped_bars([row[0] for row in table], {"MB": [r["bytes"] / 1e6 for _, _, r in table],
                                               "forward ms": [r["ms"] for _, _, r in table]},
                   title=f"Size and speed on {device_name(device)}", yaxis="MB / ms").show()

# %% [markdown]
# ### Quality on a task, beside perplexity
# HellaSwag items (`inferlab.lab.tasks`): a scene and four endings, the likeliest ending is the
# model's answer; chance 25%. "±" is one binomial standard error: a difference smaller than about
# two of them is not a measured difference.

# %%
from inferlab.lab.tasks import describe, load_items, task_accuracy

task_items = load_items(pick(300 if device == "cuda" else 30, 8))
task = {}
if grading():
    print("skipped while grading: scoring the task takes a minute")
else:
    for label, m in (("dense", model), ("Wanda 50%", wanda50), ("magnitude 50%", magnitude50),
                     ("MLP channels 50%", mlp_half)):
        task[label] = task_accuracy(m, tokenizer, task_items, label=label)
        print(f"{label:<18}{describe(task[label])}")
del wanda50

# %% [markdown]
# ## Claims vs measured
# A range often quoted for LLM pruning is "30-50% sparsity with minimal loss". The published results
# behind it come from much larger models: Wanda's paper reports LLaMA-7B on WikiText-2 at
# perplexity 5.68 dense, 7.26 with Wanda at 50% unstructured, 17.29 with magnitude pruning at 50%
# (Sun et al. 2023, arXiv:2306.11695, Table 2). NVIDIA advertises "up to 2x" math throughput for 2:4
# sparse tensor cores (Ampere architecture whitepaper, 2020).

# %%
def ratio(ppl):
    return f"{ppl / baseline['ppl']:.1f}x dense perplexity"


swept = {x: p for x, p in curve["wanda"].items() if 0 < x < 0.45}
near30 = min(swept, key=lambda x: abs(x - 0.3)) if swept else None
wanda30 = f"Wanda {near30:.0%}: {ratio(swept[near30])}; " if near30 is not None else ""
claims = [
    ("30-50% sparsity, minimal loss", "often quoted; LLaMA-7B Wanda 50%: 5.68 -> 7.26 (1.3x)",
     f"{wanda30}Wanda 50%: {ratio(wanda_ppl)}; magnitude 50%: {ratio(unstructured['ppl'])}",
     "holds near 30% with an activation-aware method; "
     "at 50% a 135M model has less redundancy than 7B+ ones"),
    ("30-50% sparsity, minimal loss (on a task)", "often quoted",
     ", ".join(f"{k} {r['acc_norm']:.0%}" for k, r in task.items()) + " HellaSwag acc_norm"
     if task else "skipped while grading",
     f"{len(task_items)} items, one standard error ~"
     + (f"{task['dense']['acc_norm_se']:.0%}" if task else "n/a") + "; chance 25%"),
    ("magnitude pruning at 50%", "LLaMA-7B: 5.68 -> 17.29 (3.0x)", ratio(unstructured['ppl']),
     "same ranking (magnitude far worse than Wanda), larger gap on a small model"),
    ("unstructured sparsity makes models faster", "common assumption",
     f"forward {ms(baseline['ms'])} -> {ms(unstructured['ms'])} ms, size unchanged",
     "dense kernels multiply zeros; CSR only wins at ~90%+ sparsity (table in section 2)"),
    ("2:4 sparsity: up to 2x faster", "NVIDIA Ampere whitepaper",
     f"{records.label(gpu)}: MLP block "
     + ", ".join(f"{v:.2f}x@{t}" for t, v in zip(tokens_mlp, speedups['cuSPARSELt (CUDA graph)'])),
     "2x is tensor-core math peak; "
     "decode-sized matmuls are memory-bound and pay padding/transposes"),
    ("structured pruning shrinks the model", "tutorial",
     f"MLP channels 50%: {baseline['bytes'] / 1e6:.0f} -> "
     f"{structured['activation-aware (yours)']['bytes'] / 1e6:.0f} MB, "
     f"{baseline['ms'] / structured['activation-aware (yours)']['ms']:.2f}x faster, "
     f"{ratio(structured['activation-aware (yours)']['ppl'])}",
     "real savings, but the tied embedding (28% of the bytes) is untouched, "
     "and quality drops fast"),
]
for claim, source, measured, why in claims:
    print(f"- {claim}\n    claimed: {source}\n    measured here: {measured}\n    why: {why}")

# %% [markdown]
# ## What you measured
# The headline figures of this lesson, measured in this run on your machine: what half the weights
# cost in perplexity by magnitude and by Wanda, and what unstructured and structured pruning really
# buy in speed and memory (on a GPU, also 2:4 against dense). Re-running a measurement's cell
# updates its row.

# %%
recap.show()

# %% [markdown]
# ## Summary
# * **Unstructured** pruning keeps quality best per weight removed (Wanda far better than plain
#   magnitude, as measured above) but, stored densely, saves no memory and no time. Sparse formats
#   need very high sparsity to win on a CPU.
# * **2:4** is the sparsity GPUs can execute. On the recorded GPU it speeds up large matmuls
#   (prefill, big batches), not decode-sized ones through PyTorch's wrapper.
# * **Structured** pruning really shrinks matrices and cuts the work of every kernel (a speed-up
#   wherever that work, not the launch of the kernels, dominates), at the highest quality cost;
#   an activation-aware score (yours) matters enormously compared with weight norms.
# * A pruned model usually needs some retraining to recover - which is what lesson 04 does with
#   distillation: a smaller model trained to imitate the big one.

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
# `from inferlab.lab.submit import submit; submit("03_pruning")` in a cell instead.

# %%
from inferlab.lab.submit import submit_form

submit_form("03_pruning")
