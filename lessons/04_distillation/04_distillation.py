# %% [markdown]
# # 04 · Distillation: a smaller student that imitates the teacher
#
# **Time:** running every cell in full mode took about 3 min on a 2-core CPU and about 6 min on an
# H200 GPU (measured), plus your reading and exercises. **Prerequisites:** lessons 00 and 03 (a
# model with layers removed); a PyTorch training loop (loss, `backward`, optimizer); softmax and
# cross-entropy. On a GPU the notebook trains longer.
#
# Quantization (lessons 01-02) stores the same model in fewer bits; pruning (lesson 03) removes
# weights and, on this model, lost quality quickly. **Distillation** takes the other road: build a
# smaller model and *train* it to behave like the big one (Hinton, Vinyals & Dean 2015,
# arXiv:1503.02531).
#
# The key idea: the teacher's output is a whole probability distribution over the next token, not
# just one answer. "The cat sat on the ___": *mat* 60%, *floor* 15%, *sofa* 10%... Those small
# probabilities (the "dark knowledge") tell the student which mistakes are reasonable. A
# **temperature** `T > 1` flattens the distributions so the student can see them.
#
# In this lesson you will (graded, 11 points): compute temperature-scaled **soft targets**, write
# the **distillation loss** (soft KL + hard cross-entropy), choose which teacher **layers** seed the
# student, and write the **training step** (teacher and student forward, the mixed loss, gradients,
# clipping, an Adam update). Then the student is trained here by your step, with a progress bar and
# a loss curve, and measured before and after: perplexity, agreement with the teacher, speed. It is saved for lesson 08, where
# it serves as a draft model for speculative decoding. Every number printed is measured in this run,
# or cited with its source.

# %%
import time

import torch
import torch.nn.functional as F

from inferlab.compress import distill
from inferlab.lab import plots, recap
from inferlab.lab.bench import default_device, device_name, gpu_workload_scale, pin_threads
from inferlab.lab.data import calibration_tokens, eval_tokens
from inferlab.lab.generation import timed_greedy
from inferlab.lab.models import load_model, parameter_count, weight_bytes
from inferlab.lab.quality import logits_of, perplexity, token_agreement, top1_agreement
from inferlab.lab.settings import fast_mode, grading, pick
from inferlab.lab.tasks import describe, load_items, task_accuracy
from inferlab.lab.widgets import guarded, show

threads = pin_threads()
device = default_device()
print(f"device: {device_name(device)}; fast mode: {fast_mode()}; grading: {grading()}")

# %% [markdown]
# ## 1 · The teacher
# The embedded SmolLM2-135M (30 layers), fp32. Its perplexity on the held-out evaluation text and
# its greedy decoding speed are the reference for everything below.

# %%
teacher, tokenizer = load_model(device=device)
eval_ids = eval_tokens(tokenizer, pick(1024, 128))
prompts = ["The three most important ideas in computer science are",
           "A Python function is defined with the keyword",
           "Explain what an exception is in one sentence:"][:pick(3, 1)]
prompt_ids = [tokenizer(p, return_tensors="pt").input_ids for p in prompts]
new_tokens = pick(48, 12)


def measure(model) -> dict:
    """Perplexity, greedy tokens on the prompts and size: one model's report card."""
    runs = [timed_greedy(model, ids, new_tokens) for ids in prompt_ids]
    return {"ppl": perplexity(model, eval_ids), "tokens": [run.token_ids for run in runs],
            "params": parameter_count(model), "bytes": weight_bytes(model),
            "layers": model.config.num_hidden_layers}


def decode_speed(models: dict, rounds: int = pick(3, 1)) -> dict:
    """Greedy decode tokens/s of each model; the models take turns and each keeps its best round."""
    best = {name: 0.0 for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            steps = sorted(timed_greedy(model, prompt_ids[0], new_tokens).decode_s)
            best[name] = max(best[name], 1 / steps[len(steps) // 2])
    return best


teacher_report = measure(teacher)
teacher_logits = logits_of(teacher, eval_ids)
print(f"teacher: {teacher_report['layers']} layers, {teacher_report['params'] / 1e6:.1f} M "
      f"parameters, perplexity {teacher_report['ppl']:.2f} on {eval_ids.shape[1]} tokens")
print("teacher says:", tokenizer.decode(teacher_report["tokens"][0]))
recap.note("perplexity, teacher (30 layers)", teacher_report["ppl"], "ppl", device)

# %% [markdown]
# ## 2 · Soft targets and temperature
# ### Exercise 1 - soft targets (1 point)
# Implement `soft_targets(logits, temperature)`: the softmax of `logits / temperature` over the last
# dimension. `T = 1` is the model's own distribution; larger `T` spreads probability onto the
# runners-up.

# %% solution id=soft_targets
def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature-scaled probabilities: ``softmax(logits / temperature)`` over the last dim."""
    ### BEGIN SOLUTION
    return torch.softmax(logits / temperature, dim=-1)
    ### END SOLUTION

# %% tests id=test_soft_targets points=1
import torch

logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
p = soft_targets(logits, 1.0)
assert p.shape == logits.shape and torch.allclose(p.sum(-1), torch.ones(1))
assert torch.allclose(p, torch.softmax(logits, -1))
### BEGIN HIDDEN TESTS
p2 = soft_targets(logits, 2.0)
assert (torch.allclose(p2, torch.softmax(logits / 2, -1))
        and torch.allclose(p2.sum(-1), torch.ones(1)))
assert p2[0, 0] < p[0, 0] and p2[0, 3] > p[0, 3]  # higher temperature: flatter
assert torch.allclose(soft_targets(logits, 0.5), torch.softmax(logits * 2, -1))
torch.manual_seed(0)
big = torch.randn(2, 3, 50) * 5
assert torch.allclose(soft_targets(big, 4.0).sum(-1), torch.ones(2, 3), atol=1e-5)
### END HIDDEN TESTS

# %% [markdown]
# What the teacher predicts after a prompt, at three temperatures: its top 8 tokens, and the
# probability left for all the other tokens of its 49,152-token vocabulary.

# %%
with torch.no_grad():
    last = teacher(prompt_ids[0].to(device)).logits[0, -1].float().cpu()
top = last.topk(8).indices
labels = [repr(tokenizer.decode([int(t)])) for t in top] + ["all other tokens"]
series = {}
for t in (1.0, 1.5, 2.0):
    p = soft_targets(last, t)
    series[f"T = {t:g}"] = p[top].tolist() + [1 - p[top].sum().item()]
for name, probs in series.items():
    print(f"{name}: " + ", ".join(f"{label} {p:.2%}" for label, p in zip(labels, probs)))
plots.grouped_bars(labels, series, title=f"Next token after {prompts[0]!r}",
                   yaxis="probability (log)").update_yaxes(type="log").show()

# %% [markdown]
# Raising `T` moves probability from the favourites to the runners-up - and, with a vocabulary this
# large, a lot of it into the long tail of unlikely tokens (the last bar). That is one reason to keep
# `T` modest for language models; this lesson trains with `T = 2`.

# %% [markdown]
# ## 3 · The distillation loss
# For logits over every position of a batch (`(batch, seq, vocab)`) and the token ids
# (`(batch, seq)`):
#
# `loss = alpha * T**2 * KL(p_teacher || p_student) + (1 - alpha) * CE(student, next token)`
#
# * `p = soft_targets(logits, T)` for both; `KL(p || q) = sum_v p_v (log p_v - log q_v)` summed over
#   the vocabulary and **averaged over positions** (all `batch * seq` of them).
# * `T**2` keeps the soft term's gradient the same size when `T` changes (the logits are divided by
#   `T` twice on the way to a gradient).
# * `CE` is the usual next-token cross-entropy: the logits at position `t` predict token `t + 1`, so
#   use positions `0 .. seq-2` against tokens `1 .. seq-1`, averaged.
#
# ### Exercise 2 - distillation loss (3 points)
# Implement `distillation_loss(student_logits, teacher_logits, input_ids, temperature, alpha)`,
# returning a scalar tensor that gradients can flow through (into `student_logits`).

# %% solution id=distillation_loss
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      input_ids: torch.Tensor, temperature: float = 2.0,
                      alpha: float = 0.5) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, next token)``."""
    ### BEGIN SOLUTION
    t = temperature
    vocab = student_logits.shape[-1]
    log_p_student = torch.log_softmax(student_logits.float() / t, dim=-1).reshape(-1, vocab)
    log_p_teacher = torch.log_softmax(teacher_logits.float() / t, dim=-1).reshape(-1, vocab)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()
    ce = F.cross_entropy(student_logits[:, :-1].float().reshape(-1, vocab),
                         input_ids[:, 1:].reshape(-1))
    return alpha * t * t * kl + (1 - alpha) * ce
    ### END SOLUTION

# %% tests id=test_distillation_loss points=3
import torch
import torch.nn.functional as F

torch.manual_seed(0)
teacher_out = torch.randn(2, 5, 7)
ids = torch.randint(0, 7, (2, 5))
loss = distillation_loss(teacher_out.clone(), teacher_out, ids, temperature=2.0, alpha=1.0)
assert loss.dim() == 0 and abs(loss.item()) < 1e-5, "a student equal to the teacher has zero KL"
assert distillation_loss(torch.randn(2, 5, 7), teacher_out, ids, 2.0, 1.0).item() > 0
# alpha = 0 is plain cross-entropy (same logits at every position and one repeated token here)
same = torch.randn(1, 1, 7).expand(1, 4, 7)
repeated = torch.full((1, 4), 3)
assert abs(distillation_loss(same, teacher_out[:1, :4], repeated, 2.0, 0.0).item()
           - F.cross_entropy(same[0, :1], torch.tensor([3])).item()) < 1e-5
### BEGIN HIDDEN TESTS
torch.manual_seed(1)
s, t, ids = torch.randn(2, 6, 11), torch.randn(2, 6, 11), torch.randint(0, 11, (2, 6))


def _kl(s, t, T):
    p = torch.softmax(t / T, -1)
    return (p * (torch.log_softmax(t / T, -1) - torch.log_softmax(s / T, -1))).sum(-1).mean()


ce = F.cross_entropy(s[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1))
for T in (1.0, 2.0, 4.0):
    expected = T * T * _kl(s, t, T)
    assert torch.allclose(distillation_loss(s, t, ids, T, 1.0), expected, rtol=1e-4), (
        f"soft term at T={T}")
assert torch.allclose(distillation_loss(s, t, ids, 2.0, 0.0), ce, rtol=1e-4), (
    "hard term: shift by one")
mixed = 0.3 * 4 * _kl(s, t, 2.0) + 0.7 * ce
assert torch.allclose(distillation_loss(s, t, ids, 2.0, 0.3), mixed, rtol=1e-4)
# gradients flow into the student
s_req = s.clone().requires_grad_(True)
distillation_loss(s_req, t, ids, 2.0, 0.5).backward()
assert s_req.grad is not None and s_req.grad.abs().sum() > 0
### END HIDDEN TESTS

# %% [markdown]
# `inferlab.compress.distill.distillation_loss` is the course's version of the same formula (built on
# `F.kl_div`); check that yours agrees on real logits of the teacher and of a perturbed copy:

# %%
with torch.no_grad():
    sample = eval_ids[:, :32].to(device)
    t_logits = teacher(sample).logits.float().cpu()
noisy = t_logits + torch.randn_like(t_logits)
yours = distillation_loss(noisy, t_logits, sample.cpu(), 2.0, 0.5).item()
course = distill.distillation_loss(noisy, t_logits, sample.cpu(), 2.0, 0.5).item()
print(f"your loss {yours:.5f}, inferlab.compress.distill's {course:.5f}")

# %% [markdown]
# ## 4 · Building the student
# The student is the teacher with fewer decoder layers, **initialised with copies of the teacher's
# layers** (DistilBERT, Sanh et al. 2019, took every other layer of BERT). Keeping the embedding,
# the final norm and the tokenizer makes the student speak the teacher's token language - what
# speculative decoding (lesson 08) needs from a draft model.
#
# ### Exercise 3 - which layers? (2 points)
# Implement `student_layers(n_teacher, n_student)`: `n_student` indices spread evenly over the
# teacher's layers, always including the first (`0`) and the last (`n_teacher - 1`):
# index `i` is `round(i * (n_teacher - 1) / (n_student - 1))` (Python's `round`), and `[0]` when
# `n_student == 1`.

# %% solution id=student_layers
def student_layers(n_teacher: int, n_student: int) -> list[int]:
    """``n_student`` teacher layer indices, evenly spread from the first to the last."""
    ### BEGIN SOLUTION
    if n_student == 1:
        return [0]
    return [round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]
    ### END SOLUTION

# %% tests id=test_student_layers points=2
chosen = student_layers(30, 10)
assert len(chosen) == 10 and chosen == sorted(set(chosen)) and chosen[0] == 0
assert all(0 <= i < 30 for i in chosen)
assert student_layers(6, 6) == [0, 1, 2, 3, 4, 5]
### BEGIN HIDDEN TESTS
assert student_layers(30, 10) == [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
assert student_layers(4, 2) == [0, 3], "the last layer belongs to the student"
assert student_layers(30, 15)[-1] == 29 and len(student_layers(30, 15)) == 15
assert student_layers(7, 1) == [0]
assert student_layers(12, 4) == [0, 4, 7, 11]
### END HIDDEN TESTS

# %% [markdown]
# Build the student from your layers and measure it before any training. Dropping two thirds of the
# layers breaks the chain of computations the teacher learned, so expect a very high perplexity.

# %%
N_STUDENT = 10
layers = student_layers(teacher.config.num_hidden_layers, N_STUDENT)
student = distill.make_student(teacher, layers)
before = measure(student)
before["top1"] = top1_agreement(teacher_logits, logits_of(student, eval_ids))
speed = decode_speed({"teacher": teacher, "student": student})
teacher_report["tok_s"] = speed["teacher"]
before["tok_s"] = speed["student"]
# A task beside perplexity: HellaSwag accuracy (inferlab.lab.tasks), teacher vs untrained student.
task_items = load_items(pick(300 if device == "cuda" else 30, 8))
task = {} if grading() else {"teacher": task_accuracy(teacher, tokenizer, task_items, "teacher"),
                             "student before": task_accuracy(student, tokenizer, task_items,
                                                               "student before")}
print(f"student: teacher layers {layers}")
print(f"{before['params'] / 1e6:.1f} M parameters "
      f"({teacher_report['params'] / before['params']:.2f}x fewer), "
      f"perplexity {before['ppl']:.1f}, top-1 agreement with the teacher {before['top1']:.1%}")
print(f"greedy decode: teacher {speed['teacher']:.1f} tokens/s, "
      f"student {speed['student']:.1f} tokens/s "
      f"({speed['student'] / speed['teacher']:.2f}x); training changes the weights, not this speed")
recap.note(f"greedy decode speed, student ({N_STUDENT} layers) vs teacher (30)",
           speed["student"] / speed["teacher"], "x", device)
recap.note(f"perplexity, student ({N_STUDENT} layers) before training", before["ppl"], "ppl",
           device)

# %% [markdown]
# ## 5 · The training step
# One step of distillation, on one batch of token windows:
#
# 1. the **teacher** gives its logits, under `torch.no_grad()` - it is frozen, and building an
#    autograd graph through a 30-layer model would only cost memory;
# 2. the **student** gives its logits, with gradients;
# 3. the loss: `soft = distillation_loss(student_logits, teacher_logits, ids, T, alpha=1.0)` (your
#    exercise 2: the `T**2`-scaled KL alone), `hard` the same with `alpha=0.0` (the next-token
#    cross-entropy alone), and `loss = alpha * soft + (1 - alpha) * hard`;
# 4. the gradients of `loss` with respect to the student's parameters (`torch.autograd.grad`);
# 5. **clipping**: their total norm `n = sqrt(sum of every gradient's squared entries)`; if
#    `n > max_grad_norm`, every gradient is multiplied by `max_grad_norm / (n + 1e-6)` (what
#    `torch.nn.utils.clip_grad_norm_` does). One unlucky batch then cannot throw the weights far;
# 6. an **Adam** update (the optimizer most language models are trained with), for each parameter
#    `p` with clipped gradient `g`, at step `t = 1, 2, ...` (counted in `state["step"]`):
#    `m = 0.9 m + 0.1 g`, `v = 0.999 v + 0.001 g**2` (both start at zero and live in
#    `state["m"][name]`, `state["v"][name]`), then
#    `p -= lr * (m / (1 - 0.9**t)) / (sqrt(v / (1 - 0.999**t)) + 1e-8)` - in place, without
#    gradients. The two divisions undo the moments' bias towards their zero start.
#
# The step is written against plain functions and tensors, the way `torch.func` (and JAX) write
# training steps: `student_fn(params, ids)` returns the student's logits from its trainable
# parameters `params` (a dict `name -> tensor`), `teacher_fn(ids)` returns the teacher's. For the
# real model below, `student_fn` is `torch.func.functional_call(student, params, (ids,)).logits`;
# the tests use a toy model (`inferlab.compress.toy_lm`) small enough to check every number.
#
# ### Exercise 4 - the distillation training step (5 points)
# Implement `distill_step(student_fn, params, teacher_fn, input_ids, state, lr, temperature, alpha,
# max_grad_norm)`: update `params` in place as above and return
# `{"loss": ..., "soft": ..., "hard": ..., "grad_norm": ...}` as Python floats - the losses of this
# batch before the update, and the gradient norm **before** clipping. Use your `distillation_loss`.
# The toy teacher refuses to run with gradients enabled.

# %% solution id=distill_step
def distill_step(student_fn, params: dict, teacher_fn, input_ids: torch.Tensor, state: dict,
                 lr: float = 1e-3, temperature: float = 2.0, alpha: float = 0.5,
                 max_grad_norm: float = 1.0) -> dict:
    """One step: both forwards, ``alpha * soft + (1 - alpha) * hard``, clipped gradients, Adam."""
    ### BEGIN SOLUTION
    with torch.no_grad():                                   # the teacher is not trained
        teacher_logits = teacher_fn(input_ids)
    student_logits = student_fn(params, input_ids)
    soft = distillation_loss(student_logits, teacher_logits, input_ids, temperature, 1.0)
    hard = distillation_loss(student_logits, teacher_logits, input_ids, temperature, 0.0)
    loss = alpha * soft + (1 - alpha) * hard
    grads = torch.autograd.grad(loss, list(params.values()))
    norm = torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads])).item()
    clip = min(1.0, max_grad_norm / (norm + 1e-6))
    state["step"] = step = state.get("step", 0) + 1
    m, v = state.setdefault("m", {}), state.setdefault("v", {})
    with torch.no_grad():
        for (name, p), g in zip(params.items(), grads):
            g = g.float() * clip
            if name not in m:
                m[name], v[name] = torch.zeros_like(g), torch.zeros_like(g)
            m[name] = 0.9 * m[name] + 0.1 * g
            v[name] = 0.999 * v[name] + 0.001 * g * g
            m_hat, v_hat = m[name] / (1 - 0.9 ** step), v[name] / (1 - 0.999 ** step)
            p -= (lr * m_hat / (v_hat.sqrt() + 1e-8)).to(p.dtype)
    return {"loss": loss.item(), "soft": soft.item(), "hard": hard.item(), "grad_norm": norm}
    ### END SOLUTION

# %% tests id=test_distill_step points=5
import torch

from inferlab.compress.toy_lm import toy_lm, toy_params, toy_teacher

torch.manual_seed(0)
toy_ids = torch.randint(0, 11, (4, 6))
toy_weights = toy_params(seed=0)
toy_start = {name: p.detach().clone() for name, p in toy_weights.items()}
toy_state = {}
first = distill_step(toy_lm, toy_weights, toy_teacher, toy_ids, toy_state, lr=0.01,
                     temperature=2.0, alpha=0.5, max_grad_norm=1.0)
assert set(first) == {"loss", "soft", "hard", "grad_norm"}
assert all(type(x) is float for x in first.values()), "return Python floats (.item())"
with torch.no_grad():
    toy_s, toy_t = toy_lm(toy_start, toy_ids), toy_teacher(toy_ids)
assert abs(first["soft"] - distillation_loss(toy_s, toy_t, toy_ids, 2.0, 1.0).item()) < 1e-4
assert abs(first["hard"] - distillation_loss(toy_s, toy_t, toy_ids, 2.0, 0.0).item()) < 1e-4
assert abs(first["loss"] - (0.5 * first["soft"] + 0.5 * first["hard"])) < 1e-5
assert toy_state["step"] == 1 and set(toy_state["m"]) == set(toy_weights), (
    "Adam's moments, one per parameter")
for name, p in toy_weights.items():    # Adam's first step moves each weight by about lr, no more
    moved = (p.detach() - toy_start[name]).abs()
    assert moved.max() <= 0.01 * 1.001 and moved.mean() > 0.005, f"{name} moved {moved.max()}"
more = [distill_step(toy_lm, toy_weights, toy_teacher, toy_ids, toy_state, lr=0.05)["loss"]
        for _ in range(10)]
assert more[-1] < first["loss"], "ten more steps on the same batch lower its loss"
### BEGIN HIDDEN TESTS
import math

import torch.nn.functional as F


def _parts(s, t, ids, T):
    v = s.shape[-1]
    kl = F.kl_div(F.log_softmax(s / T, -1).reshape(-1, v), F.log_softmax(t / T, -1).reshape(-1, v),
                  log_target=True, reduction="batchmean")
    ce = F.cross_entropy(s[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1))
    return T * T * kl, ce


def _check(seed, settings, shape=(3, 7)):
    torch.manual_seed(seed)
    ids = torch.randint(0, 11, shape)
    mine, ref = toy_params(seed=seed), toy_params(seed=seed)
    moments = {name: (torch.zeros_like(p), torch.zeros_like(p)) for name, p in ref.items()}
    state = {}
    for step, (lr, T, alpha, max_norm) in enumerate(settings, start=1):
        got = distill_step(toy_lm, mine, toy_teacher, ids, state, lr=lr, temperature=T,
                           alpha=alpha, max_grad_norm=max_norm)
        with torch.no_grad():
            t = toy_teacher(ids)
        soft, hard = _parts(toy_lm(ref, ids), t, ids, T)
        loss = alpha * soft + (1 - alpha) * hard
        grads = torch.autograd.grad(loss, list(ref.values()))
        norm = math.sqrt(sum((g * g).sum().item() for g in grads))
        with torch.no_grad():                              # Adam (Kingma & Ba), as torch.optim
            for (name, p), g in zip(ref.items(), grads):
                g = g * min(1.0, max_norm / (norm + 1e-6))
                m, v = moments[name]
                m.mul_(0.9).add_(0.1 * g)
                v.mul_(0.999).add_(0.001 * g * g)
                p -= lr * (m / (1 - 0.9 ** step)) / ((v / (1 - 0.999 ** step)).sqrt() + 1e-8)
        assert math.isclose(got["soft"], soft.item(), rel_tol=1e-4), f"soft part at T={T}"
        assert math.isclose(got["hard"], hard.item(), rel_tol=1e-4), "hard part"
        assert math.isclose(got["loss"], loss.item(), rel_tol=1e-4), f"loss at alpha={alpha}"
        assert math.isclose(got["grad_norm"], norm, rel_tol=1e-4), "gradient norm before clipping"
        for name in ref:
            assert torch.allclose(mine[name], ref[name], rtol=1e-4, atol=1e-5), (
                f"{name} after step {state.get('step')}")


# clipping active, then not, then strongly: Adam sees the clipped gradients
_check(1, [(0.05, 4.0, 0.8, 0.5), (0.02, 4.0, 0.8, 100.0), (0.05, 4.0, 0.8, 0.05)])
_check(2, [(0.1, 1.0, 0.3, 1.0), (0.1, 1.0, 0.3, 1.0), (0.1, 1.0, 0.3, 1.0)], shape=(2, 5))
_check(3, [(0.03, 2.0, 0.0, 2.0), (0.03, 2.0, 1.0, 2.0)])
### END HIDDEN TESTS

# %% [markdown]
# ## 6 · Training
# The student learns through **your** step and loss on the course's calibration text (disjoint from
# the evaluation text), and on a GPU also on text the teacher writes itself (sampled at
# temperature 1: an unlimited supply, where the course's ~32k calibration tokens would repeat
# hundreds of times in a long run). `inferlab.compress.distill.distill` runs the loop around your
# `distill_step`: it draws the batches, gives the learning rate of each step (a short warm-up, then
# a cosine decay), runs the teacher as a bfloat16 copy and the student's forward under bf16
# autocast (its weights and your Adam moments stay fp32); the embedding (a fifth of the parameters,
# shared with the output head) stays frozen, so the student keeps the teacher's token space.
#
# Settings: the CPU setting fits a few minutes on 2 cores; on a GPU the notebook trains longer on
# bigger batches. The GPU setting is sized for an H100 (about 1.5 minutes of training plus about
# 2 minutes for the teacher to write its text); on a smaller GPU the steps and the teacher's text
# shrink by the card's memory bandwidth over the H100's (`gpu_workload_scale`: a T4 runs a tenth,
# in about the same time). Training is skipped while grading.

# %%
SETTINGS = {
    # cpu: ~10 min on 2 cores
    "cpu": dict(steps=150, batch_size=4, seq_len=64, lr=1e-3, teacher_text=0),
    "gpu": dict(steps=1000, batch_size=16, seq_len=256, lr=5e-4, teacher_text=4096),  # an H100
    "fast": dict(steps=6, batch_size=2, seq_len=32, lr=1e-3, teacher_text=0),
}
setting = dict(SETTINGS["fast" if fast_mode() else ("gpu" if device == "cuda" else "cpu")])
if device == "cuda" and not fast_mode():
    scale = gpu_workload_scale(device)
    setting.update(steps=max(100, round(setting["steps"] * scale)),
                   teacher_text=round(setting["teacher_text"] * scale))
    print(f"{device_name(device)}: {scale:.2f}x the H100 setting (datasheet bandwidth ratio)")
TEMPERATURE, ALPHA = 2.0, 0.5
n_windows = setting["steps"] * setting["batch_size"]
if grading():
    windows = calibration_tokens(tokenizer, n_samples=4, seq_len=setting["seq_len"])
else:
    # course text: at most ~one pass over it; the rest (GPU) written by the teacher
    n_course = (min(n_windows, 32_000 // setting["seq_len"]) if setting["teacher_text"]
                else n_windows)
    parts = [calibration_tokens(tokenizer, n_samples=n_course, seq_len=setting["seq_len"])]
    if setting["teacher_text"]:
        parts.append(distill.teacher_windows(teacher, tokenizer, setting["teacher_text"],
                                             setting["seq_len"]))
    windows = torch.cat(parts)
print(f"settings: {setting}, temperature {TEMPERATURE}, alpha {ALPHA}; "
      f"{windows.shape[0]} training windows of {windows.shape[1]} tokens")
MAX_GRAD_NORM = 1.0
history: list[float] = []
step_parts: list[dict] = []
if grading():
    print("skipped while grading: training takes minutes")
else:
    start = time.perf_counter()
    history = distill.distill(student, teacher, windows, steps=setting["steps"],
                              batch_size=setting["batch_size"], lr=setting["lr"],
                              temperature=TEMPERATURE, alpha=ALPHA, step_fn=distill_step,
                              max_grad_norm=MAX_GRAD_NORM, parts=step_parts)
    train_s = time.perf_counter() - start
    clipped = sum(part["grad_norm"] > MAX_GRAD_NORM for part in step_parts)
    print(f"your step trained {len(history)} steps in {train_s:.0f} s "
          f"({train_s / len(history):.2f} s/step); loss {history[0]:.2f} -> {history[-1]:.2f} "
          f"(soft {step_parts[0]['soft']:.2f} -> {step_parts[-1]['soft']:.2f}, "
          f"hard {step_parts[0]['hard']:.2f} -> {step_parts[-1]['hard']:.2f})")
    norms = sorted(part["grad_norm"] for part in step_parts)
    print(f"gradient norm before clipping: median {norms[len(norms) // 2]:.2f}, "
          f"largest {norms[-1]:.2f}; clipped to {MAX_GRAD_NORM} in {clipped} of "
          f"{len(step_parts)} steps")

# %% [markdown]
# ### The loss curve
# Raw per-batch losses are noisy (every batch is different text); the panel smooths them with a
# moving average of your chosen width, and shows the two weighted parts your step returned.

# %%
import ipywidgets as widgets


def average(values: list[float], k: int) -> list[float]:
    """Moving average over the last ``k`` values (fewer at the start)."""
    return [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1])
            for i in range(len(values))]


def loss_panel(losses: list[float], parts: list[dict] = ()):
    window = widgets.IntSlider(value=min(10, max(1, len(losses) // 5)), min=1,
                               max=max(1, len(losses)), description="smoothing",
                               continuous_update=False)
    log_y = widgets.Checkbox(value=False, description="log scale")
    output = widgets.Output()

    def render():
        if not losses:
            print("no training in this run (grading mode): nothing to draw")
            return
        k = window.value
        smooth = average(losses, k)
        curves = {"per batch": losses, f"moving average ({k})": smooth}
        if parts:
            curves[f"soft part x alpha ({k})"] = average([ALPHA * p["soft"] for p in parts], k)
            curves[f"hard part x (1 - alpha) ({k})"] = average(
                [(1 - ALPHA) * p["hard"] for p in parts], k)
        plots.lines(range(1, len(losses) + 1), curves,
                    title="Distillation loss", xaxis="step", yaxis="loss", log_y=log_y.value,
                    markers=False).show()
        print(f"last {k} steps: mean loss {smooth[-1]:.3f} (first step {losses[0]:.3f})")

    update = guarded(output, render)
    window.observe(update, names="value")
    log_y.observe(update, names="value")
    update()
    panel = widgets.VBox([widgets.HTML("<b>Loss curve</b>"), widgets.HBox([window, log_y]), output])
    panel.render = update
    return panel


show(loss_panel(history, step_parts))

# %% [markdown]
# ## 7 · Before and after
# The same report card as before training. Two agreements with the teacher: **top-1** - on the
# evaluation text, how often both models' most likely next token is the same (the teacher-forced
# view, close to what a speculative-decoding verifier accepts token by token); **greedy** - the
# fraction of positions where their free-running greedy generations match (one early difference
# shifts everything after it, so this one is harsh).

# %%
after = measure(student)
after["tok_s"] = before["tok_s"]  # same architecture, same speed (measured before training)
after["top1"] = top1_agreement(teacher_logits, logits_of(student, eval_ids))
for report in (before, after):
    report["agree"] = sum(token_agreement(t, s) for t, s in zip(teacher_report["tokens"],
                                                                report["tokens"])) / len(prompts)
rows = [("teacher (30 layers)", teacher_report, 1.0, 1.0),
        (f"student before ({N_STUDENT} layers)", before, before["top1"], before["agree"]),
        (f"student after {len(history)} steps", after, after["top1"], after["agree"])]
print(f"{'model':<28}{'params M':>9}{'MB':>6}{'perplexity':>12}{'top-1 agree':>12}"
      f"{'greedy agree':>13}{'tokens/s':>10}")
for name, r, top1, agree in rows:
    print(f"{name:<28}{r['params'] / 1e6:>9.1f}{r['bytes'] / 1e6:>6.0f}{r['ppl']:>12.1f}"
          f"{top1:>12.1%}{agree:>13.1%}{r['tok_s']:>10.1f}")
print("\nstudent says:", tokenizer.decode(after["tokens"][0]))
recap.note(f"perplexity, student after {len(history)} training steps", after["ppl"], "ppl",
           device)
recap.note(f"top-1 agreement with the teacher, student after {len(history)} steps",
           100 * after["top1"], "%", device)
plots.grouped_bars(["perplexity", "tokens/s"],
                   {name: [r["ppl"], r["tok_s"]] for name, r, _, _ in rows},
                   title="Teacher vs student "
                         "(log scale: perplexities differ by orders of magnitude)",
                   yaxis="value").update_yaxes(type="log").show()

# %% [markdown]
# ## 8 · Saving the student for lesson 08
# Speculative decoding needs a small, fast model that agrees with the big one often. The student is
# saved under the course cache (`inferlab.compress.distill.find_student()` finds it; fast-mode runs save a
# separate `-fast` copy so they never overwrite a fully trained student). Loading it back with
# `load_model` must give exactly the same logits.

# %%
if grading():
    print("skipped while grading: nothing was trained")
else:
    name = distill.DEFAULT_STUDENT + (distill.FAST_SUFFIX if fast_mode() else "")
    folder = distill.save_student(student, tokenizer, name, info={
        "steps": len(history), "settings": setting, "temperature": TEMPERATURE, "alpha": ALPHA,
        "perplexity": after["ppl"], "teacher_perplexity": teacher_report["ppl"],
        "eval_tokens": eval_ids.shape[1], "top1_agreement": after["top1"],
        "device": device_name(device), "date": time.strftime("%Y-%m-%d")})
    reloaded, _ = load_model(str(folder), device=device)
    same = torch.allclose(logits_of(reloaded, eval_ids[:, :32]),
                          logits_of(student, eval_ids[:, :32]), atol=1e-5)
    print(f"saved to {folder}; reloaded with load_model: identical logits = {same}")
    print("lesson 08 finds it with inferlab.compress.distill.find_student() -> "
          f"{distill.find_student()}")

# %% [markdown]
# ## Claims vs measured
# The tutorial this course follows gives one example: a 7B student that mimics a 13B teacher is
# "10x faster" and keeps "95-98%" of the teacher's quality. The best-documented published case is
# DistilBERT (Sanh et al. 2019, arXiv:1910.01108): 40% fewer parameters, 60% faster, 97% of BERT's
# GLUE score - after pre-training-scale distillation (BERT's own pre-training corpus, about 90 hours
# on 8 V100 GPUs).

# %%
quality_ratio = teacher_report["ppl"] / after["ppl"]
if task:
    task["student after"] = task_accuracy(student, tokenizer, task_items, "student after")
    for name, r in task.items():
        print(f"HellaSwag {name:<15} {describe(r)}")
    task_ratio = (f"; HellaSwag acc_norm {task['student after']['acc_norm']:.0%} vs the "
                  f"teacher's {task['teacher']['acc_norm']:.0%} "
                  f"(± {task['teacher']['acc_norm_se']:.0%} each, {len(task_items)} items)")
else:
    task_ratio = "; HellaSwag skipped while grading"
claims = [
    ("7B student of a 13B teacher (1.9x fewer parameters)", "tutorial",
     f"{teacher_report['params'] / after['params']:.2f}x fewer parameters "
     f"({N_STUDENT} of 30 layers)",
     "the tied embedding (28M of 135M parameters) is kept whole; layers shrink 3x"),
    ("95-98% of the teacher's quality", "tutorial; DistilBERT 97% of GLUE",
     f"teacher/student perplexity {quality_ratio:.1%}, top-1 agreement {after['top1']:.0%}, "
     f"greedy agreement {after['agree']:.0%}{task_ratio}",
     f"{len(history)} steps of {setting['batch_size']}x{setting['seq_len']} tokens here "
     "vs DistilBERT's ~90 hours on 8 V100s over BERT's corpus; the student has not converged"),
    ("10x faster (tutorial); 60% faster (DistilBERT)", "tutorial; DistilBERT",
     f"greedy decode {after['tok_s'] / teacher_report['tok_s']:.2f}x the teacher's tokens/s",
     "fewer layers, but the 49k-token output head costs the same for both; a 13B -> 7B "
     "student reads about half the weight bytes per token, so memory-bound decoding gains "
     "about 2x, not 10x"),
]
for claim, source, measured, why in claims:
    print(f"- {claim}\n    claimed: {source}\n    measured here: {measured}\n    why: {why}")

# %% [markdown]
# On the task, compare the gap between student and teacher with two standard errors: a smaller
# gap is not a measured loss, a larger one is a real one, whatever perplexity says.

# %% [markdown]
# ## What you measured
# The headline figures of this lesson, measured in this run on your machine: how much faster the
# smaller student decodes, how far its perplexity was from the teacher's before and after your
# training, and how often it then predicts the teacher's next token. Re-running a measurement's cell
# updates its row.

# %%
recap.show()

# %% [markdown]
# ## Summary
# * Distillation trains a smaller model on the teacher's **full distributions** (soft targets at
#   temperature `T`, scaled by `T**2`) plus the ordinary next-token loss.
# * A training step is a short recipe - frozen teacher under `no_grad`, the mixed loss, gradients,
#   clipping by their total norm, an Adam update - and yours trained the student above.
# * Initialising the student from the teacher's layers gives it a head start, but layers removed
#   from a small model break it badly at first: the before/after table above shows how much a few
#   minutes of training recover, and how far that remains from the teacher.
# * Quality comes from **training tokens**: published results such as DistilBERT's 97% used
#   pre-training-scale budgets. On a GPU the notebook's longer settings go further.
# * A student that shares the teacher's tokenizer and often agrees with its greedy choices is a
#   **draft model**: lesson 08 uses this one for speculative decoding, where the teacher checks
#   the student's guesses and keeps exactly its own output quality.

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
# `from inferlab.lab.submit import submit; submit("04_distillation")` in a cell instead.

# %%
from inferlab.lab.submit import submit_form

submit_form("04_distillation")
