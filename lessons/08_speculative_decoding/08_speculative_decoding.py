# %% [markdown]
# # 08 · Speculative decoding
#
# **Time:** about 8 min to run every cell in full mode on a 2-core CPU (an estimate),
# plus your reading and exercises. **Prerequisites:** lessons 05-07 (the engine);
# lesson 04's distilled student is used as the draft if you ran it; sampling from a probability
# distribution.
#
# At batch 1, a decode step is limited by reading the weights, not by arithmetic (lesson 00):
# scoring five positions costs about as much as scoring one. Speculative decoding (Leviathan, Kalman
# & Matias, ICML 2023; Chen et al., 2023) exploits this. A small **draft** model guesses `k` tokens
# one by one; the large **target** model scores all of them in **one** pass; a clever accept/reject
# rule keeps a prefix of the guesses and fixes the first wrong one - and the output is distributed
# *exactly* as if the target had sampled alone.
#
# You will implement that accept/reject step (graded), test statistically that it preserves the
# target's distribution, and measure acceptance rate and speed-up against the draft length with the
# course engine - including where, and why, it does **not** pay.

# %%
import torch

from inferlab.compress.distill import make_student, saved_students, students_dir
from inferlab.engine import EngineConfig, LlamaWeights, LLMEngine, SamplingParams, Sequence
from inferlab.engine.spec_decode import SpeculativeDecoder
from inferlab.lab import plots
from inferlab.lab.bench import default_device, device_name, pin_threads, time_fn
from inferlab.lab.data import eval_text
from inferlab.lab.models import load_model
from inferlab.lab.settings import fast_mode, grading, pick

threads = pin_threads()
device = default_device()                    # "cuda" where PyTorch sees a GPU, else "cpu"
# fp32 on every device: speculative decoding promises the target's *exact* tokens, and in fp32 a
# pass that verifies several tokens rounds like decoding them one by one (in bf16 the last bits can
# differ and flip a near-tie between two tokens)
model, tokenizer = load_model(dtype=torch.float32, device=device)
target = LlamaWeights.from_hf(model)         # the engine's copy of the weights, on the same device
print(f"device: {device_name(device)}; fast mode: {fast_mode()}; grading: {grading()}")

# %% [markdown]
# ## 1 · A draft model
# The draft must share the target's tokenizer. Lesson 04 distilled a 10-layer student from this very
# model and saved it; if you ran lesson 04 it is used here. Otherwise we take the same 10 layers
# *without* distillation, which predicts far worse (you will see it in the acceptance rate).

# %%
students = saved_students()
trained = [n for n, meta in students.items() if meta.get("steps", 0) >= 50]
if trained:
    name = max(trained, key=lambda n: students[n]["steps"])
    draft_model, _ = load_model(str(students_dir() / name), dtype=torch.float32, device=device)
    draft_label = f"distilled student '{name}' (lesson 04, {students[name]['steps']} steps)"
else:
    draft_model = make_student(model, 10)
    draft_label = "10 of 30 layers, not distilled (run lesson 04 for a better draft)"
drafts = {"student": LlamaWeights.from_hf(draft_model), "first 6 layers": target.truncated(6)}
print(f"draft: {draft_label}: {len(drafts['student'].layers)} layers, "
      f"{drafts['student'].nbytes / target.nbytes:.0%} of the target's weight bytes "
      "(the shared 49k x 576 embedding/head is a large part of both)")

# %% [markdown]
# ## 2 · Exercise 1 - accept or reject (4 points)
# The draft proposed tokens `x_1 .. x_k`, sampling `x_i` from its distribution `q_i` (row `i` of
# `draft_probs`, shape `[k, vocab]`). The target scored the same positions plus one: `target_probs`
# has `k + 1` rows `p_1 .. p_{k+1}`. Go through the proposals in order:
#
# * accept `x_i` with probability `min(1, p_i(x_i) / q_i(x_i))` (draw `r` uniformly in [0, 1) with
#   `torch.rand((), generator=generator)`; accept if `r < p/q`);
# * at the first rejection, sample a replacement from the **residual** `max(0, p_i - q_i)`,
#   normalised to sum to 1, append it and stop;
# * if all `k` were accepted, sample a **bonus** token from `p_{k+1}`.
#
# Return the list of tokens to append (between 1 and `k + 1`). Sample with
# `torch.multinomial(probs, 1, generator=generator)`.

# %% solution id=speculative_accept
def speculative_accept(draft_tokens, draft_probs, target_probs, generator=None):
    """Leviathan et al.'s rule: the tokens to append after one speculative round."""
    ### BEGIN SOLUTION
    out = []
    for i, token in enumerate(draft_tokens):
        token = int(token)
        p, q = float(target_probs[i, token]), float(draft_probs[i, token])
        if torch.rand((), generator=generator).item() < p / q:
            out.append(token)
            continue
        residual = (target_probs[i] - draft_probs[i]).clamp(min=0)
        if residual.sum() <= 0:                  # p == q up to rounding
            residual = target_probs[i]
        out.append(int(torch.multinomial(residual / residual.sum(), 1, generator=generator)))
        return out
    out.append(int(torch.multinomial(target_probs[len(draft_tokens)], 1, generator=generator)))
    return out
    ### END SOLUTION

# %% tests id=test_speculative_accept points=4
import torch


def onehot(ids, v=6):
    return torch.nn.functional.one_hot(torch.tensor(ids), v).float()


def chi2(counts, probs):
    """Pearson's chi-square of observed counts against probabilities (cells with p > 0)."""
    expected = counts.sum() * probs
    keep = expected > 0
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())


# Greedy (one-hot) distributions: keep draft tokens while they match the target's choice,
# then take the target's token.
out = speculative_accept([2, 4, 1], onehot([2, 4, 1]), onehot([2, 4, 3, 5]))
assert out[:3] == [2, 4, 3], out
# Real distributions: whatever the draft's q, the first token that comes out must follow the
# target's p_1. 2000 rounds with a fixed generator; chi2 above 16.3 (3 degrees of freedom) happens
# by chance once in a thousand for a correct rule.
g = torch.Generator().manual_seed(0)
p = torch.tensor([[0.10, 0.40, 0.30, 0.20], [0.25, 0.25, 0.25, 0.25]])
q = torch.tensor([[0.50, 0.10, 0.25, 0.15]])
counts = torch.zeros(4)
for _ in range(2000):
    x = int(torch.multinomial(q[0], 1, generator=g))     # the draft samples its guess from q
    counts[speculative_accept([x], q, p, g)[0]] += 1
assert chi2(counts, p[0]) < 16.3, (
    f"first tokens {counts.tolist()} do not follow the target's p_1 = {p[0].tolist()} "
    f"(chi2 = {chi2(counts, p[0]):.1f})")
### BEGIN HIDDEN TESTS
bonus = speculative_accept([2, 4, 1], onehot([2, 4, 1]), onehot([2, 4, 1, 5]))
assert bonus == [2, 4, 1, 5], "bonus token"
assert speculative_accept([0, 4], onehot([0, 4]), onehot([3, 4, 5])) == [3]
# Two draft tokens: the first output follows p_1; after an accepted first token the second follows
# p_2 (an accepted token is the only way the draft's x_1 comes out first); the bonus follows p_3.
g = torch.Generator().manual_seed(3)
p = torch.tensor([[0.10, 0.40, 0.30, 0.20], [0.05, 0.15, 0.60, 0.20], [0.40, 0.30, 0.20, 0.10]])
q = torch.tensor([[0.50, 0.10, 0.25, 0.15], [0.40, 0.30, 0.10, 0.20]])
firsts, seconds, bonuses = torch.zeros(4), torch.zeros(4), torch.zeros(4)
for _ in range(3000):
    x = [int(torch.multinomial(q[i], 1, generator=g)) for i in range(2)]
    out = speculative_accept(x, q, p, g)
    assert 1 <= len(out) <= 3 and out[:-1] == x[:len(out) - 1], (x, out)
    firsts[out[0]] += 1
    if len(out) >= 2:
        seconds[out[1]] += 1
    if len(out) == 3:
        bonuses[out[2]] += 1
assert chi2(firsts, p[0]) < 16.3, (
    f"first tokens do not follow p_1 (chi2 = {chi2(firsts, p[0]):.1f})")
assert chi2(seconds, p[1]) < 16.3, (
    f"second tokens do not follow p_2 (chi2 = {chi2(seconds, p[1]):.1f}): a fresh uniform draw "
    "for every position, the residual of that position")
assert bonuses.sum() > 0 and chi2(bonuses, p[2]) < 16.3, "the bonus token follows p_{k+1}"
# When the draft is exact (q == p) everything is accepted.
same = torch.tensor([[0.2, 0.3, 0.5, 0.0]] * 3)
for _ in range(20):
    drafts_ = [int(torch.multinomial(same[0], 1, generator=g)) for _ in range(2)]
    assert len(speculative_accept(drafts_, same[:2], same, g)) == 3
### END HIDDEN TESTS

# %% [markdown]
# ## 3 · Does it preserve the target's distribution? A statistical test on the real models
# Take the target's and the draft's next-token distributions at a real position (temperature 1), run
# one speculative round many times, and compare how often each token comes out first with the
# target's own probabilities (a chi-square goodness-of-fit test over its top tokens). The models run
# on your device; the distributions are then copied to the CPU, where your `speculative_accept` runs
# as in the tests.

# %%
prompt_ids = tokenizer(eval_text()[:300], return_tensors="pt").input_ids
with torch.inference_mode():
    p_real = torch.softmax(model(prompt_ids.to(device)).logits[0, -1].float(), -1).cpu()
    q_real = torch.softmax(draft_model(prompt_ids.to(device)).logits[0, -1].float(), -1).cpu()
p_rows = torch.stack([p_real, p_real])                         # p_1 and (unused here) p_2
top = torch.topk(p_real, 5).indices.tolist()
trials = pick(4000, 1500)
g = torch.Generator().manual_seed(1)
first = []
for _ in range(trials):
    x = int(torch.multinomial(q_real, 1, generator=g))
    first.append(speculative_accept([x], q_real[None], p_rows, g)[0])
observed = [sum(t == k for t in first) for k in top] + [sum(t not in top for t in first)]
expected = [trials * float(p_real[k]) for k in top] + [trials * (1 - float(p_real[top].sum()))]
chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
print("target p vs draft q on the top-5 target tokens: "
      f"p = {[round(float(p_real[k]), 3) for k in top]}, "
      f"q = {[round(float(q_real[k]), 3) for k in top]}")
print(f"{trials} speculative rounds: chi-square = {chi2:.1f} with 5 degrees of freedom "
      f"(reject 'same distribution' at the 1% level only above 15.1)")
plots.grouped_bars([tokenizer.decode([k]) for k in top] + ["other"],
                   {"target p": [e / trials for e in expected],
                    "first token, speculative": [o / trials for o in observed],
                    "draft q": [float(q_real[k]) for k in top] + [1 - float(q_real[top].sum())]},
                   title="First emitted token: speculative sampling follows the target, "
                         "not the draft",
                   yaxis="probability").show()

# %% [markdown]
# ## 4 · Acceptance and speed against the draft length
# `SpeculativeDecoder` (in `inferlab.engine.spec_decode`) runs the rounds with the engine's model
# runner and KV caches, on your device; it hands **your** `speculative_accept` the distributions
# on the CPU. `k = 0` is the target decoding alone, the baseline. Greedy decoding, so every run must
# produce the baseline's exact tokens.

# %%
n_new = pick(48, 12)
spec_prompt = prompt_ids[0].tolist()
greedy = SamplingParams(max_tokens=n_new, ignore_eos=True)


def measure(draft_key, k, params=greedy):
    dec = SpeculativeDecoder(target, drafts[draft_key] if k else None, k=k,
                             accept_fn=speculative_accept)
    tokens, stats = dec.generate(spec_prompt, params)
    return tokens, stats


if device != "cpu":   # a GPU compiles its kernels on first use: keep that out of the timings
    measure("student", 2, SamplingParams(max_tokens=4, ignore_eos=True))
base_tokens, base_stats = measure("student", 0)
base_tps = base_stats.generated / base_stats.seconds
rows = {}
for k in pick([1, 2, 3, 4, 6], [1, 2, 4]):
    tokens, stats = measure("student", k)
    speed_up = stats.generated / stats.seconds / base_tps
    rows[k] = (stats.acceptance_rate, stats.tokens_per_round, speed_up, tokens == base_tokens)
    print(f"k = {k}: acceptance {rows[k][0]:5.1%}, {rows[k][1]:.2f} tokens per target pass, "
          f"speed-up {rows[k][2]:.2f}x, same tokens as the target alone: {rows[k][3]}")
print(f"target alone: {base_tps:.1f} tokens/s")
plots.lines(list(rows), {"measured speed-up": [r[2] for r in rows.values()],
                         "tokens per target pass": [r[1] for r in rows.values()]},
            title=f"Speculative decoding on {device_name(device)}, draft: {draft_label[:40]}",
            xaxis="draft length k", yaxis="x").show()

# %% [markdown]
# ### Why (not)? The expected speed-up
# With acceptance rate `a` per token and a draft costing `c` target passes per token, one round
# produces `(1 - a^(k+1)) / (1 - a)` tokens for the price of `k c + 1` passes (Leviathan et al.,
# Eq. 1 and Thm. 3.8) - if verifying `k + 1` tokens costs one pass. Both numbers, measured here:

# %%
def pass_time(weights, n_tokens, batch=1, ctx=None):
    """Seconds for one forward pass adding ``n_tokens`` to each of ``batch`` cached sequences."""
    ctx = ctx or pick(128, 64)
    config = EngineConfig(max_model_len=512, num_blocks=batch * 512 // 16 + 8, block_size=16,
                          enable_prefix_caching=False, max_num_seqs=batch)
    eng = LLMEngine(weights, config=config)   # runs where the weights are: on your device
    seqs = [Sequence(list(range(100, 100 + ctx))) for _ in range(batch)]
    for s in seqs:
        eng.block_manager.allocate(s)
    with torch.inference_mode():
        eng.runner.run(seqs, True)
        for s in seqs:
            s.num_cached_tokens = ctx - n_tokens
        return time_fn(lambda: eng.runner.run(seqs, True), repeats=pick(5, 2),
                       device=device).median


t_target = pass_time(target, 1)
c = pass_time(drafts["student"], 1) / t_target
a = max(1e-3, min(0.999, rows[min(rows)][0]))
predicted = {k: (1 - a ** (k + 1)) / (1 - a) / (k * c + 1) for k in rows}
print(f"draft cost c = {c:.2f} target passes; acceptance a = {a:.2f} -> predicted speed-up "
      + ", ".join(f"k={k}: {v:.2f}x" for k, v in predicted.items()))
gpu_like = {k: (1 - 0.8 ** (k + 1)) / (1 - 0.8) / (k * 0.05 + 1) for k in rows}
print("the same formula for a = 0.8, c = 0.05 (a ~20x smaller draft that agrees often, as in "
      "the paper's T5 experiments): " + ", ".join(f"k={k}: {v:.2f}x" for k, v in gpu_like.items()))

# %% [markdown]
# ### When it stops paying: large batches
# Verifying `k + 1` tokens costs about one pass only while the pass is bound by reading weights.
# With a batch of sequences the matrix multiplies already have work for every weight they read, and
# `k + 1` tokens per sequence cost up to `k + 1` times more. A GPU has far more arithmetic to spare
# than a CPU, so there the batches go larger before that happens:

# %%
k_check = 4
ratios = {}
for batch in (pick([1, 4, 16], [1, 8]) if device == "cpu" else pick([1, 16, 64, 128], [1, 64])):
    ratios[batch] = pass_time(target, k_check + 1, batch) / pass_time(target, 1, batch)
    print(f"batch {batch:>2}: a pass over {k_check + 1} new tokens per sequence costs "
          f"{ratios[batch]:.2f}x a normal decode step")
plots.bars([f"batch {b}" for b in ratios], list(ratios.values()),
           title=f"Cost of verifying {k_check + 1} tokens vs decoding 1",
           yaxis="x one decode step").show()

# %% [markdown]
# Try other drafts, lengths and temperatures (sampling: the tokens then differ run to run, but their
# distribution is the target's):

# %%
import ipywidgets as w

from inferlab.lab.widgets import guarded, show

draft_pick = w.Dropdown(options=list(drafts), description="draft")
k_pick = w.IntSlider(value=2, min=1, max=8, description="draft length k")
temp_pick = w.FloatSlider(value=0.0, min=0.0, max=1.5, step=0.1, description="temperature")
spec_out = w.Output()


def draw_spec():
    params = SamplingParams(max_tokens=n_new, temperature=temp_pick.value, ignore_eos=True, seed=0)
    _, alone = measure(draft_pick.value, 0, params)
    _, stats = measure(draft_pick.value, k_pick.value, params)
    speed = stats.generated / stats.seconds / (alone.generated / alone.seconds)
    print(f"acceptance {stats.acceptance_rate:.1%}, {stats.tokens_per_round:.2f} tokens per "
          f"target pass, speed-up {speed:.2f}x")
    plots.bars([str(i) for i in range(k_pick.value + 1)],
               [stats.accepted_per_round.count(i) for i in range(k_pick.value + 1)],
               title="Draft tokens accepted per round", yaxis="rounds").show()


button = w.Button(description="run")
button.on_click(guarded(spec_out, draw_spec))
show(w.VBox([draft_pick, k_pick, temp_pick, button, spec_out]))
if not fast_mode():
    guarded(spec_out, draw_spec)()

# %% [markdown]
# ## Claims vs measured

# %%
best_k = max(rows, key=lambda k: rows[k][2])
identical = all(r[3] for r in rows.values())
won = rows[best_k][2] > 1
claims = [("Leviathan et al. 2023",
           "2x-3x faster (T5-XXL 11B, draft T5-small, GPU), identical outputs",
           f"best here {rows[best_k][2]:.2f}x at k={best_k}, identical outputs: {identical}"),
          ("distribution preserved", "exactly the target's (Thm. 3.5 / Appendix A.1)",
           f"chi-square {chi2:.1f} (5 d.o.f.) on real distributions"),
          ("large batches", "gains shrink as decoding becomes compute-bound",
           f"verify/decode cost ratio {ratios[min(ratios)]:.2f}x at batch {min(ratios)}, "
           f"{ratios[max(ratios)]:.2f}x at batch {max(ratios)}")]
for who, claim, here in claims:
    print(f"{who:<24}| claim: {claim:<64}| here: {here}")
print(f"\nOn {device_name(device)} speculation "
      + (f"paid: at best {rows[best_k][2]:.2f}x the target alone (k = {best_k})." if won else
         f"did not pay: at best {rows[best_k][2]:.2f}x the target alone (k = {best_k}).")
      + f" Measured: draft cost c = {c:.2f} target passes, acceptance a = {a:.2f}.")

# %% [markdown]
# Here the draft is not much cheaper than the target: both are small, and the 49k-word embedding and
# output head - a fifth of the target's weights - are the same size in both. Whether speculation won
# or lost on your device is printed above, with the measured `c` and `a` that explain it; the formula
# says what a cheap, accurate draft would give. That is the honest lesson: speculation pays only when
# `c` is small **and** `a` is high **and** the target pass is memory-bound.
#
# ## Summary
# * One target pass verifies `k` guesses; the accept/reject rule with the residual distribution
#   keeps the output distributed exactly as the target's (tested above).
# * Speed-up = tokens per pass / (k x draft cost + 1): it needs a cheap draft that agrees often.
# * It fades with batch size: batched decoding is no longer memory-bound, so extra verified tokens
#   cost.

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
# `from inferlab.lab.submit import submit; submit("08_speculative_decoding")` in a cell instead.

# %%
from inferlab.lab.submit import submit_form

submit_form("08_speculative_decoding")
