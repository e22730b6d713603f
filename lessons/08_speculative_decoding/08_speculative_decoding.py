# %% [markdown]
# # 08 · Speculative decoding
#
# **Time:** running every cell in full mode took about 1 min on a 2-core CPU and about 1 min on an
# H200 GPU (measured), plus your reading and exercises. **Prerequisites:** lessons 05-07 (the
# engine); lesson 04's distilled student is used as the draft if you ran it; sampling from a
# probability distribution.
#
# At batch 1, a decode step is limited by reading the weights, not by arithmetic (lesson 00):
# scoring a few positions costs little more than scoring one (section 8 measures how much more on
# your device). Speculative decoding (Leviathan, Kalman
# & Matias, ICML 2023; Chen et al., 2023) exploits this. A small **draft** model guesses `k` tokens
# one by one; the large **target** model scores all of them in **one** pass; a clever accept/reject
# rule keeps a prefix of the guesses and fixes the first wrong one - and the output is distributed
# *exactly* as if the target had sampled alone.
#
# You will implement that accept/reject step (graded), test statistically that it preserves the
# target's distribution, then write the **speculative decoding loop** itself (graded): the draft
# guesses, the target checks all guesses in one pass, your rule decides, both KV caches roll back.
# Your loop then runs on the real model: first with a small draft model, then with a draft that
# costs nothing - **prompt lookup**, which copies tokens from the prompt - on a task whose answer
# repeats its input and on one whose answer does not. Every speed is measured on your device,
# beside the engine's own decoding and the memory-bandwidth roofline, and the lesson prints where
# speculation paid; the last sections measure when it stops paying: a poor draft, sampling
# temperature, large batches.

# %%
import torch

from inferlab.compress.distill import make_student, saved_students, students_dir
from inferlab.engine import EngineConfig, LlamaWeights, LLMEngine, SamplingParams, Sequence
from inferlab.engine.kv_cache import kv_bytes_per_token
from inferlab.engine.spec_decode import PromptLookupDraft, SpeculativeDecoder
from inferlab.lab import plots, recap
from inferlab.lab.bench import default_device, device_name, measure_bandwidth, pin_threads, time_fn
from inferlab.lab.data import eval_text
from inferlab.lab.models import load_model
from inferlab.lab.roofline import DecodeRun, engine_decode_run
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
    draft_kind = "distilled"
else:
    draft_model = make_student(model, 10)
    draft_label = "10 of 30 layers, not distilled (run lesson 04 for a better draft)"
    draft_kind = "not distilled"
drafts = {"student": LlamaWeights.from_hf(draft_model), "first 6 layers": target.truncated(6),
          "prompt lookup": PromptLookupDraft(target.config.vocab_size)}     # section 6
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
# ## 4 · Exercise 2 - the speculative decoding loop (5 points)
# Now the loop around your rule. Each model is a `CachedModel` (`inferlab.engine.spec_decode`): the
# engine's model runner with a KV cache of its own, for one sequence. Its interface is small:
#
# * `model.forward(tokens)` runs **one** forward pass over the tokens whose keys and values are not
#   in its cache yet, `tokens[model.cached:]`, stores their keys and values, sets
#   `model.cached = len(tokens)` and returns their logits `[len(tokens) - cached, vocab]` (float32,
#   on the CPU): row `i` scores the token that follows `tokens[cached + i]`;
# * `model.cached` counts the leading tokens whose keys and values in the cache are valid. Set it
#   lower to **roll back**: the next pass recomputes from there and overwrites the rest.
#
# `speculative_generate` runs rounds until `max_tokens` new tokens exist or the last new token is
# one of `eos_token_ids` (that token is kept). One round:
#
# 1. **draft** `k` tokens, one at a time. `sampling_probs(draft.forward(tokens + proposed)[-1],
#    temperature)[0]` is the draft's distribution `q` (one-hot at temperature 0); draw the guess
#    with `torch.multinomial(q, 1, generator=generator)`, append it (as an `int`) to `proposed` and
#    keep `q`. The first round drafts right after the prompt;
# 2. **verify**: the target scores the position of the last token you have and all `k` guesses in
#    ONE call, `target.forward(tokens + proposed)` - first make sure its cache holds at most
#    `len(tokens) - 1` tokens, so that this position is computed. `sampling_probs` of the last
#    `k + 1` rows is `p`;
# 3. **decide**: `accept(proposed, torch.stack(q_rows), p, generator)` gives the tokens to append:
#    your `speculative_accept` unless the caller passes another rule;
# 4. append them (stopping at `max_tokens`, or after an EOS token), note how many guesses were
#    accepted (`len(new) - 1`), and **roll back** both caches: what they computed for rejected
#    guesses is wrong for the tokens that replaced them, so neither may keep more than
#    `len(tokens) - 1` tokens (the newest token has not been fed to either).
#
# Return the new tokens and the list of guesses accepted in each round. `CountingModel` (given)
# counts forward passes and the positions they computed: the tests read these counts, and so can
# you, to check your loop.

# %% solution id=speculative_generate
from inferlab.engine.sampler import sampling_probs
from inferlab.engine.spec_decode import CachedModel


class CountingModel(CachedModel):
    """A ``CachedModel`` that counts its forward passes (``calls``) and the positions they
    computed (``positions``)."""

    def __init__(self, weights, max_len=1024):
        super().__init__(weights, max_len)
        self.calls = self.positions = 0

    def forward(self, tokens):
        logits = super().forward(tokens)
        self.calls += 1
        self.positions += logits.shape[0]
        return logits


def speculative_generate(target, draft, prompt, max_tokens, k=4, eos_token_ids=(),
                         temperature=0.0, accept=None, generator=None):
    """Speculative decoding of ``prompt``: returns (new tokens, guesses accepted per round)."""
    accept = accept or speculative_accept
    ### BEGIN SOLUTION
    tokens, accepted = list(prompt), []
    while len(tokens) - len(prompt) < max_tokens and not (
            len(tokens) > len(prompt) and tokens[-1] in eos_token_ids):
        proposed, q_rows = [], []
        for _ in range(k):                                          # 1. the draft guesses
            q = sampling_probs(draft.forward(tokens + proposed)[-1], temperature)[0]
            proposed.append(int(torch.multinomial(q, 1, generator=generator)))
            q_rows.append(q)
        target.cached = min(target.cached, len(tokens) - 1)         # 2. one target pass
        p = sampling_probs(target.forward(tokens + proposed)[-(k + 1):], temperature)
        new = accept(proposed, torch.stack(q_rows), p, generator)   # 3. your rule decides
        accepted.append(len(new) - 1)
        for token in new:                                           # 4. keep, then roll back
            tokens.append(int(token))
            if len(tokens) - len(prompt) == max_tokens or token in eos_token_ids:
                break
        target.cached = min(target.cached, len(tokens) - 1)
        draft.cached = min(draft.cached, len(tokens) - 1)
    return tokens[len(prompt):], accepted
    ### END SOLUTION

# %% tests id=test_speculative_generate points=5
from contextlib import contextmanager

import torch

from inferlab.engine.spec_decode import CachedModel, greedy_accept


@contextmanager
def one_thread():
    """Tiny models run fastest on one thread; the thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def greedy_alone(model, prompt, n):
    """The target decoding alone, one token per pass: what speculation must reproduce."""
    tokens = list(prompt)
    for _ in range(n):
        tokens.append(int(model.forward(tokens)[-1].argmax()))
    return tokens[len(prompt):]


# A tiny random model (2 layers, 97 tokens) is the target; a copy of it is a perfect draft, so
# every guess is kept: 12 tokens in 3 rounds of k + 1 = 4. greedy_accept, the rule at temperature
# 0, keeps these tests independent of your exercise 1.
with one_thread():
    tgt, drf = CountingModel.random(seed=1), CountingModel.random(seed=1)
    out, accepted = speculative_generate(tgt, drf, [5, 9, 13, 2], max_tokens=12, k=3,
                                         accept=greedy_accept)
    assert out == greedy_alone(CachedModel.random(seed=1), [5, 9, 13, 2], 12), out
    assert accepted == [3, 3, 3], accepted
### BEGIN HIDDEN TESTS
from inferlab.engine.spec_decode import speculative_loop

assert tgt.calls == len(accepted) == 3, (
    f"the target ran {tgt.calls} passes in {len(accepted)} rounds: score the last token and "
    "all k guesses in ONE call")
with one_thread():
    # A poor draft (the target's first layer only) is often rejected: both caches roll back.
    for seed, prompt, n, k in [(1, [7, 3, 3, 40, 2, 8], 20, 4), (2, [11, 12], 17, 2),
                               (4, [60, 61, 62, 63, 64, 65, 66], 15, 5), (1, [5, 9, 13, 2], 9, 1)]:
        tgt = CountingModel.random(seed=seed)
        drf = CountingModel.random(seed=seed, num_layers=1)
        out, accepted = speculative_generate(tgt, drf, prompt, max_tokens=n, k=k,
                                             accept=greedy_accept)
        assert out == greedy_alone(CachedModel.random(seed=seed), prompt, n), (
            "not the target's greedy output: after a rejection, roll the target back to at most "
            "len(tokens) - 1 cached tokens")
        _, expected = speculative_loop(CachedModel.random(seed=seed),
                                       CachedModel.random(seed=seed, num_layers=1), prompt, n, k=k)
        assert accepted == expected, (
            f"guesses accepted per round {accepted}, expected {expected}: does the draft roll "
            "back too, and propose k guesses every round?")
        assert tgt.calls == len(accepted), "one target pass per round"
        assert tgt.positions <= len(prompt) + len(accepted) * (k + 1), (
            "the target recomputed positions it had cached: roll back only what was rejected")
        assert drf.positions <= len(prompt) + len(accepted) * (k + 1), (
            "the draft recomputed positions it had cached: roll back only what was rejected")
    # max_tokens may end a round early; an EOS token ends the output (and is kept).
    want = greedy_alone(CachedModel.random(seed=1), [5, 9, 13, 2], 12)
    out, _ = speculative_generate(CountingModel.random(seed=1), CountingModel.random(seed=1),
                                  [5, 9, 13, 2], max_tokens=7, k=4, accept=greedy_accept)
    assert out == want[:7], "stop at max_tokens new tokens"
    eos = want[5]
    out, _ = speculative_generate(CountingModel.random(seed=1), CountingModel.random(seed=1),
                                  [5, 9, 13, 2], max_tokens=12, k=4, eos_token_ids=(eos,),
                                  accept=greedy_accept)
    assert out == want[:want.index(eos) + 1], "stop after the first EOS token, keeping it"
    # The rule is the one passed as `accept`: greedy_accept gives the target's greedy output even
    # when the draft samples at temperature 2.
    tgt, drf = CountingModel.random(seed=2), CountingModel.random(seed=2, num_layers=1)
    out, _ = speculative_generate(tgt, drf, [11, 12], max_tokens=16, k=3, temperature=2.0,
                                  accept=greedy_accept, generator=torch.Generator().manual_seed(0))
    assert out == greedy_alone(CachedModel.random(seed=2), [11, 12], 16), (
        "use the accept rule passed in")
### END HIDDEN TESTS

# %% [markdown]
# ## 5 · Your loop on the real models: acceptance and speed against the draft length
# `SpeculativeDecoder` (`inferlab.engine.spec_decode`) puts the prompt into both models' caches,
# then runs **your** `speculative_generate`, with your `speculative_accept`, on your device, and
# times the decoding. `k = 0` is the target decoding alone, one token per pass: the baseline.
# Greedy decoding, so every run must produce the baseline's exact tokens.

# %%
n_new = pick(48, 12)
spec_prompt = prompt_ids[0].tolist()
greedy = SamplingParams(max_tokens=n_new, ignore_eos=True)


def measure(draft, k, params=greedy, prompt=None):
    """Your loop with ``draft`` (a key of ``drafts`` or a draft) and ``k`` guesses a round, or the
    target alone (``k = 0``), on ``prompt``; returns the new tokens and the statistics."""
    draft = drafts[draft] if isinstance(draft, str) else draft
    dec = SpeculativeDecoder(target, draft if k else None, k=k, accept_fn=speculative_accept,
                             loop=speculative_generate)
    return dec.generate(spec_prompt if prompt is None else prompt, params)


if device != "cpu":   # a GPU compiles its kernels on first use: keep that out of the timings
    measure("student", 2, SamplingParams(max_tokens=4, ignore_eos=True))
base_tokens, base_stats = measure(None, 0)
base_tps = base_stats.tokens_per_second
rows = {}
for k in pick([1, 2, 4], [1, 4]):
    tokens, stats = measure("student", k)
    rows[k] = (stats.acceptance_rate, stats.tokens_per_round,
               stats.tokens_per_second / base_tps, tokens == base_tokens)
    print(f"k = {k}: acceptance {rows[k][0]:5.1%}, {rows[k][1]:.2f} tokens per target pass, "
          f"speed-up {rows[k][2]:.2f}x, same tokens as the target alone: {rows[k][3]}")
print(f"target alone: {base_tps:.1f} tokens/s")
fastest_k = max(rows, key=lambda k: rows[k][2])
draft_name = f"model draft ({len(drafts['student'].layers)} layers, {draft_kind}), k = {fastest_k}"
recap.note(f"{draft_name}: acceptance", rows[fastest_k][0] * 100, "%", device=device)
recap.note(f"{draft_name}: speed-up over the target alone", rows[fastest_k][2], "x", device=device)
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
    """Seconds for one forward pass adding ``n_tokens`` to each of ``batch`` cached sequences
    (the fastest of the repeats: on a shared machine, other work only ever adds time)."""
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
                       device=device).min


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
# Here the draft is not much cheaper than the target: both are small, and the 49k-word embedding and
# output head - a fifth of the target's weights - are the same size in both. The measured `c` and
# `a` above say how far this draft is from paying. The formula's other term is the assumption that
# verifying `k + 1` tokens costs one pass; section 8 measures that too.
#
# ## 6 · A draft that costs nothing: prompt lookup
# A draft can be almost free. When an answer repeats its input - a summary quoting its source, an
# edited document, code changed in a few places, an answer built from retrieved passages - its next
# tokens have often appeared before. **Prompt lookup** (Saxena, 2023; `prompt_lookup_num_tokens` in
# transformers' `generate`, the `ngram` speculator in vLLM) finds the most recent earlier occurrence
# of the last few tokens and guesses that the text goes on as it did then. `PromptLookupDraft` does
# this behind `CachedModel`'s interface, so **your loop** takes it as its draft unchanged; it reads
# no weights, its cost `c` is a little Python per guess.
#
# Two tasks for the same model: copying a paragraph of the evaluation text (input-grounded: a
# faithful answer is all in the prompt), and writing a story (nothing to copy). For each: the
# **engine** decoding greedily (`LLMEngine`, batch 1, on your device, its decode steps timed against
# the memory bandwidth measured in this run), the **target alone** through the per-model caches your
# loop uses, and **your loop** with prompt lookup (several `k` on the copy, `k = 4` on the story).

# %%
def chat_ids(text):
    """Token ids of a one-turn chat asking ``text``, ready for the assistant's answer."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                        add_generation_prompt=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


paragraph = eval_text().split("\n\n")[2]        # the chapter's first paragraph
tasks = {"copy a paragraph": chat_ids("Repeat the following text exactly, word for word:\n\n"
                                      + paragraph),
         "write a story": chat_ids("Write a short story about a lighthouse keeper.")}
n_lookup = pick(64, 16)
lookup_ks = pick([2, 4, 8], [4])
bandwidth = measure_bandwidth(device, megabytes=pick(512, 128), repeats=pick(7, 3))
engine = LLMEngine(target, tokenizer, EngineConfig(max_model_len=1024, max_num_seqs=1))
tc = target.config
kv_token = kv_bytes_per_token(tc.num_layers, tc.num_kv_heads, tc.head_dim,
                              target.embed.element_size())
where = device_name(device)
print(f"{where}: {bandwidth / 1e9:.1f} GB/s copying memory (measured now); the engine uses "
      f"{engine.runner.attention.name} attention, CUDA graphs "
      f"{'on' if engine.config.cuda_graphs else 'off'}")


def spec_run(label, stats, k, prompt_len):
    """The target's passes in a speculative run as a ``DecodeRun``: weights + the K/V each reads."""
    contexts, done = [], 0
    for kept in stats.accepted_per_round:
        contexts.append(prompt_len + done + k)
        done += kept + 1
    return DecodeRun(label, stats.generated, stats.rounds, stats.seconds,
                     target.bytes_read_per_token, kv_token * sum(contexts), bandwidth, where)


lookup = {}
for task, ids in tasks.items():
    params = SamplingParams(max_tokens=n_lookup)
    eng_run, eng_out = engine_decode_run(engine, [ids], params, bandwidth,
                                         label="engine, plain greedy decoding", device=where,
                                         warmup=device != "cpu")
    alone_tokens, alone = measure(None, 0, params, ids)
    runs = {}
    for k in lookup_ks if task == "copy a paragraph" else [4]:     # the story: k = 4 only
        lookup_draft = PromptLookupDraft(tc.vocab_size)
        tokens, stats = measure(lookup_draft, k, params, ids)
        runs[k] = (stats, tokens == alone_tokens)
    lookup[task] = {"engine": eng_run, "alone": alone, "runs": runs,
                    "text": tokenizer.decode(alone_tokens, skip_special_tokens=True),
                    "engine_same": eng_out[0].token_ids == alone_tokens}
    print(f"\n{task}: {len(ids)} prompt tokens, {alone.generated} new tokens")
    print("  " + eng_run.line())
    print(f"  target alone, one token per pass: {alone.tokens_per_second:.1f} tok/s "
          f"(same tokens as the engine: {lookup[task]['engine_same']})")
    for k, (stats, same) in runs.items():
        print(f"  your loop + prompt lookup, k = {k}: acceptance {stats.acceptance_rate:.0%}, "
              f"{stats.tokens_per_round:.2f} tokens per target pass, "
              f"{stats.tokens_per_second:.1f} tok/s = "
              f"{stats.tokens_per_second / alone.tokens_per_second:.2f}x the target alone, "
              f"{stats.tokens_per_second / eng_run.tok_s:.2f}x the engine; same tokens: {same}")
copy = lookup["copy a paragraph"]
best_lookup_k = max(copy["runs"], key=lambda k: copy["runs"][k][0].tokens_per_second)
best_lookup = copy["runs"][best_lookup_k][0]
recap.note(f"prompt lookup, copying, k = {best_lookup_k}: acceptance",
           best_lookup.acceptance_rate * 100, "%", device=device)
recap.note(f"prompt lookup, copying, k = {best_lookup_k}: speed-up over the target alone",
           best_lookup.tokens_per_second / copy["alone"].tokens_per_second, "x", device=device)
print(f"\nthe copy, as the model wrote it: {copy['text'][:240]!r}")
print(spec_run(f"your loop + prompt lookup, k = {best_lookup_k}", best_lookup, best_lookup_k,
               len(tasks["copy a paragraph"])).line())
plots.grouped_bars(list(tasks), {
    "engine (plain decoding)": [lookup[t]["engine"].tok_s for t in tasks],
    "target alone": [lookup[t]["alone"].tokens_per_second for t in tasks],
    **{f"prompt lookup, k = {k}": [lookup[t]["runs"][k][0].tokens_per_second
                                   if k in lookup[t]["runs"] else None for t in tasks]
       for k in lookup_ks}},
    title=f"Greedy decoding speed on {where}", yaxis="tokens/s").show()
if device == "cuda":
    print("On a GPU the engine replays each decode step from a CUDA graph with its own attention "
          "kernels, while the per-model caches of the speculative loop run every pass eagerly: "
          "compare your loop with both baselines above.")

# %% [markdown]
# Read the lines above in order. The engine's line is plain decoding against the roofline: every
# token re-reads all the weights, so its tokens/s can never pass the roofline it prints, and the
# percentage says how close it came. Your loop with prompt lookup reads the weights once per
# *target pass* and gets the tokens-per-pass printed from it, so its line can show more tokens/s
# than plain decoding's roofline allows: the bytes per step are the same, the tokens per step are
# not. On the copying task most guesses are the model's next tokens - where the model copies
# faithfully; the text above shows where it strays, and each stray costs a rejected round. On the
# story few guesses can be right: a round pays for a target pass over `k + 1` positions and gets
# little more than one token (section 8 measures the price of that wider pass) - compare its lines
# with the target alone. Engines therefore draft from the prompt only where an n-gram matches, and
# vLLM makes `k` (its `num_speculative_tokens`) a setting.

# %% [markdown]
# ## 7 · A real draft and target of one tokenizer
# Speculative decoding is meant for a large target and a small draft trained alike, with one
# tokenizer. SmolLM2 comes in 135M, 360M and 1.7B parameters with the same tokenizer: the embedded
# 135M model can draft for the 360M model (here on a CPU) or the 1.7B model (on a GPU). Those are
# downloaded from the model hub once; this cell uses a copy already on disk, downloads only in full
# mode when the hub is reachable, and says why when it skips.

# %%
from huggingface_hub import try_to_load_from_cache

from inferlab.lab.models import DEFAULT_MODEL, LARGER_MODELS, hub_reachable, is_default
from inferlab.lab.settings import model_name

pair_name = "SmolLM2-1.7B-Instruct" if device == "cuda" else "SmolLM2-360M-Instruct"
pair_id = LARGER_MODELS[pair_name]
on_disk = isinstance(try_to_load_from_cache(pair_id, "config.json"), str)
pair = None
if grading() or fast_mode():
    print(f"skipped {'while grading' if grading() else 'in fast mode'}: this section loads "
          f"{pair_name}, a second and larger model")
elif not on_disk and not hub_reachable():
    print(f"skipped: {pair_id} is not on this machine and the model hub is not reachable; "
          "online, this cell downloads it once and measures the pair")
else:
    big_w = LlamaWeights.from_hf(load_model(pair_id, dtype=torch.float32, device=device)[0])
    small_w = target if is_default(model_name()) else LlamaWeights.from_hf(
        load_model(DEFAULT_MODEL, dtype=torch.float32, device=device)[0])
    pair = {"c": pass_time(small_w, 1) / pass_time(big_w, 1), "rows": {}}
    for task, ids in tasks.items():
        params = SamplingParams(max_tokens=pick(48, 8))
        results = {}
        for label, draft, k in [("alone", None, 0), ("135M draft", small_w, 4),
                                ("prompt lookup", PromptLookupDraft(tc.vocab_size), 4)]:
            dec = SpeculativeDecoder(big_w, draft, k=k, accept_fn=speculative_accept,
                                     loop=speculative_generate)
            results[label] = dec.generate(ids, params)
        alone_tokens, alone = results.pop("alone")
        for label, (tokens, stats) in results.items():
            speed = stats.tokens_per_second / alone.tokens_per_second
            pair["rows"][(task, label)] = (stats.acceptance_rate, speed)
            print(f"{pair_name}, {task}, {label}, k = 4: acceptance {stats.acceptance_rate:.0%}, "
                  f"{stats.tokens_per_round:.2f} tokens per pass, {speed:.2f}x the target alone "
                  f"({alone.tokens_per_second:.1f} tok/s); same tokens: {tokens == alone_tokens}")
    print(f"the 135M draft costs c = {pair['c']:.2f} passes of {pair_name} on {where}")
    del big_w

# %% [markdown]
# ## 8 · When it stops paying
# ### Sampling, and a poor draft
# With sampling, a guess is kept with probability `min(1, p/q)`. The hotter the temperature, the
# more the target's distribution spreads, so a guess the target would have made greedily is kept
# less often. Prompt lookup guesses one token for sure (`q` one-hot), so its guess is kept with
# probability `p(guess)`, which falls as `p` spreads. A draft that rarely agrees with the target
# can instead gain a little: a flatter `p` overlaps more with its `q`. Your run shows which.
# Acceptance against temperature on the copying task, `k = 4` (prompt lookup only, in fast mode):

# %%
temps = pick([0.0, 0.6, 1.2], [0.0, 1.0])
copy_ids = tasks["copy a paragraph"]
temp_rows = {name: [] for name in pick(["student", "prompt lookup"], ["prompt lookup"])}
for temperature in temps:
    params = SamplingParams(max_tokens=pick(32, 12), temperature=temperature, ignore_eos=True)
    for name, row in temp_rows.items():
        _, stats = measure(name, 4, params, copy_ids)
        row.append((stats.acceptance_rate, stats.tokens_per_round))
    print(f"temperature {temperature}: " + ", ".join(
        f"{name} draft: acceptance {row[-1][0]:.0%} ({row[-1][1]:.2f} tokens per pass)"
        for name, row in temp_rows.items()))
plots.lines(temps, {f"{name} draft": [r[0] for r in row] for name, row in temp_rows.items()},
            title="Acceptance against sampling temperature (copying task, k = 4)",
            xaxis="temperature", yaxis="fraction of guesses kept").show()

# %% [markdown]
# ### Large batches
# Verifying `k + 1` tokens costs about one pass only while the pass is bound by reading weights.
# With a batch of sequences the matrix multiplies already have work for every weight they read, and
# `k + 1` tokens per sequence cost up to `k + 1` times more: batching has already spent the spare
# arithmetic that speculation lives on. A GPU has far more arithmetic to spare than a CPU, so there
# the batches go larger before that happens. Below, the measured cost of the wider pass, and what
# it makes of prompt lookup's measured tokens per pass on the copying task (its draft costs nothing,
# so the estimate is tokens per pass / cost of the pass):

# %%
k_check = 4
tau = copy["runs"][k_check][0].tokens_per_round
ratios = {}
for batch in (pick([1, 4, 16], [1, 8]) if device == "cpu" else pick([1, 16, 64, 128], [1, 64])):
    ratios[batch] = pass_time(target, k_check + 1, batch) / pass_time(target, 1, batch)
    print(f"batch {batch:>3}: a pass over {k_check + 1} new tokens per sequence costs "
          f"{ratios[batch]:.2f}x a decode step -> prompt lookup at {tau:.2f} tokens per pass: "
          f"about {tau / ratios[batch]:.2f}x plain decoding (estimated from the two measurements)")
plots.bars([f"batch {b}" for b in ratios], list(ratios.values()),
           title=f"Cost of verifying {k_check + 1} tokens vs decoding 1",
           yaxis="x one decode step").show()

# %% [markdown]
# Try other drafts, tasks, lengths and temperatures (sampling: the tokens then differ run to run,
# but their distribution is the target's):

# %%
import ipywidgets as w

from inferlab.lab.widgets import guarded, show

draft_pick = w.Dropdown(options=list(drafts), value="prompt lookup", description="draft")
task_pick = w.Dropdown(options=[*tasks, "continue the evaluation text"], description="task")
k_pick = w.IntSlider(value=4, min=1, max=8, description="draft length k")
temp_pick = w.FloatSlider(value=0.0, min=0.0, max=1.5, step=0.1, description="temperature")
spec_out = w.Output()


def draw_spec():
    params = SamplingParams(max_tokens=n_new, temperature=temp_pick.value, ignore_eos=True)
    prompt = tasks.get(task_pick.value, spec_prompt)
    _, alone = measure(None, 0, params, prompt)
    _, stats = measure(draft_pick.value, k_pick.value, params, prompt)
    speed = stats.tokens_per_second / alone.tokens_per_second
    print(f"acceptance {stats.acceptance_rate:.1%}, {stats.tokens_per_round:.2f} tokens per "
          f"target pass, speed-up {speed:.2f}x")
    plots.bars([str(i) for i in range(k_pick.value + 1)],
               [stats.accepted_per_round.count(i) for i in range(k_pick.value + 1)],
               title="Draft tokens accepted per round", yaxis="rounds").show()


button = w.Button(description="run")
button.on_click(guarded(spec_out, draw_spec))
show(w.VBox([draft_pick, task_pick, k_pick, temp_pick, button, spec_out]))
if not fast_mode():
    guarded(spec_out, draw_spec)()

# %% [markdown]
# ## Claims vs measured

# %%
best_k = max(rows, key=lambda k: rows[k][2])
identical = all(r[3] for r in rows.values()) and all(
    same for t in lookup.values() for _, same in t["runs"].values())
story = lookup["write a story"]
story_speed = max(s.tokens_per_second for s, _ in story["runs"].values()) / \
    story["alone"].tokens_per_second
lookup_speed = best_lookup.tokens_per_second / copy["alone"].tokens_per_second
lookup_vs_engine = best_lookup.tokens_per_second / copy["engine"].tok_s
lookup_temp = temp_rows["prompt lookup"]
claims = [("Leviathan et al. 2023",
           "2x-3x faster (T5-XXL 11B, draft T5-small, GPU), identical outputs",
           f"model draft: best {rows[best_k][2]:.2f}x (k={best_k}); prompt lookup, copying: "
           f"{lookup_speed:.2f}x the target alone, {lookup_vs_engine:.2f}x the engine "
           f"(k={best_lookup_k}); identical outputs: {identical}"),
          ("Saxena 2023 (prompt lookup)", "2x-4x on input-grounded tasks",
           f"copying: {lookup_speed:.2f}x; a story (nothing to copy), k = 4: {story_speed:.2f}x"),
          ("distribution preserved", "exactly the target's (Thm. 3.5 / Appendix A.1)",
           f"chi-square {chi2:.1f} (5 d.o.f.) on real distributions"),
          ("sampling", "acceptance falls as the temperature rises",
           f"prompt lookup: {lookup_temp[0][0]:.0%} at T={temps[0]}, "
           f"{lookup_temp[-1][0]:.0%} at T={temps[-1]}"),
          ("large batches", "gains shrink as decoding becomes compute-bound",
           f"verify/decode cost ratio {ratios[min(ratios)]:.2f}x at batch {min(ratios)}, "
           f"{ratios[max(ratios)]:.2f}x at batch {max(ratios)}")]
if pair:
    draft_row = pair["rows"][("copy a paragraph", "135M draft")]
    claims.append((f"a real pair ({pair_name})", "a small draft of the same family pays",
                   f"135M draft, copying: {draft_row[1]:.2f}x, c = {pair['c']:.2f}"))
for who, claim, here in claims:
    print(f"{who:<28}| claim: {claim:<64}| here: {here}")
print(f"\nOn {where}: the model draft (c = {c:.2f}, a = {a:.2f}) "
      + ("paid" if rows[best_k][2] > 1 else "did not pay")
      + f", at best {rows[best_k][2]:.2f}x; prompt lookup on the copying task "
      + ("paid" if lookup_speed > 1 else "did not pay")
      + f", {lookup_speed:.2f}x, at {best_lookup.tokens_per_round:.2f} tokens per target pass.")

# %% [markdown]
# The tutorial figures come from an 11B target with a draft about a hundred times smaller, on a GPU
# where a pass over a few extra positions costs next to nothing. What decides the speed-up is what
# you measured: how often guesses are kept (`a`, or tokens per pass), what a guess costs (`c`), and
# what the wider verifying pass costs on your device at your batch size. A free draft on a task that
# repeats its input wins; a small model draft on a small target, sampling at high temperature, or a
# large batch each take part of the gain away.

# %% [markdown]
# ## What you measured
# The headline figures of this lesson, measured in this run on your machine: how often each draft's
# guesses were kept by your accept/reject rule, and the speed-up your loop reached over the target
# decoding alone (greedy, same tokens), at the draft length that was fastest. Re-running a
# measurement's cell updates its row.

# %%
recap.show()

# %% [markdown]
# ## Summary
# * One target pass verifies `k` guesses; the accept/reject rule with the residual distribution
#   keeps the output distributed exactly as the target's (tested above), and greedy speculation
#   gives the target's greedy tokens exactly.
# * The loop you wrote is the whole method: draft `k`, verify in one pass, accept, roll both KV
#   caches back to the tokens kept.
# * Speed-up = tokens per pass / (k x draft cost + cost of the wider pass): it needs a cheap draft
#   that agrees often. Prompt lookup costs nothing and agrees where the output copies the input.
# * It fades with temperature (guesses kept less often) and with batch size: batched decoding is no
#   longer memory-bound, so verified tokens cost arithmetic.

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
