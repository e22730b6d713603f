"""Knowledge distillation: training a smaller student to imitate the teacher's distribution.

Introduced in lesson 04 (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
Network", arXiv:1503.02531). A teacher's next-token distribution says far more than the one
token that actually came next: which other tokens were plausible, and how plausible. The student
learns from both:

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
         + (1 - alpha) * cross_entropy(student, next token)

The temperature ``T > 1`` flattens both distributions so the small probabilities - the "dark
knowledge" - carry weight; the ``T^2`` keeps the soft term's gradients on the same scale as the
hard one's when ``T`` changes.

The student here is the teacher with fewer layers (``make_student``), initialised with copies of
the teacher's layers - a head start that a randomly initialised student would need days of
training to earn (DistilBERT did the same: every other layer of BERT). It keeps the teacher's
tokenizer, embedding and head, which makes it a natural *draft model* for speculative decoding
(lesson 08): ``save_student`` writes it to ``cache_dir()/students/<name>`` and
``inferlab.lab.models.load_model(<that folder>)`` loads it back.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inferlab.lab.settings import cache_dir


# ------------------------------------------------------------------------------ the student
def spread_layers(n_teacher: int, n_student: int) -> list[int]:
    """``n_student`` teacher layer indices spread evenly from the first to the last layer."""
    if not 1 <= n_student <= n_teacher:
        raise ValueError(f"n_student must be in 1..{n_teacher}, got {n_student}")
    if n_student == 1:
        return [0]
    return [round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]


def make_student(teacher: nn.Module, layers: list[int] | int) -> nn.Module:
    """A copy of ``teacher`` that keeps only the decoder layers ``layers`` (or that many, spread).

    Embedding, final norm and output head are copied too (the head stays tied to the embedding
    if it was). The copy's config says how many layers it has, so it saves and reloads as an
    ordinary model.
    """
    n_teacher = len(teacher.model.layers)
    if isinstance(layers, int):
        layers = spread_layers(n_teacher, layers)
    layers = list(layers)
    if not layers or any(not 0 <= i < n_teacher for i in layers):
        raise ValueError(f"layer indices must be in 0..{n_teacher - 1}, got {layers}")
    kept = teacher.model.layers
    teacher.model.layers = nn.ModuleList()  # do not deep-copy the layers we drop
    try:
        student = copy.deepcopy(teacher)
    finally:
        teacher.model.layers = kept
    student.model.layers = nn.ModuleList(copy.deepcopy(kept[i]) for i in layers)
    for new_index, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = new_index  # the KV cache is indexed by position in the stack
    config = student.config
    config.num_hidden_layers = len(layers)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in layers]
    student.student_of = {"teacher_layers": layers, "teacher_n_layers": n_teacher}
    return student


# ---------------------------------------------------------------------------------- the loss
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      input_ids: torch.Tensor, temperature: float = 2.0,
                      alpha: float = 0.5) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, next token)``.

    Logits are ``(batch, seq, vocab)`` for every position of ``input_ids`` ``(batch, seq)``; the
    KL is averaged over all positions, the cross-entropy over positions that have a next token.
    """
    t = float(temperature)
    vocab = student_logits.shape[-1]
    log_student = F.log_softmax(student_logits.float() / t, dim=-1).reshape(-1, vocab)
    log_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1).reshape(-1, vocab)
    soft = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean") * t * t
    hard = F.cross_entropy(student_logits[:, :-1].float().reshape(-1, vocab),
                           input_ids[:, 1:].reshape(-1))
    return alpha * soft + (1 - alpha) * hard


# ------------------------------------------------------------------------------ training
def batches(token_windows: torch.Tensor, batch_size: int, steps: int, seed: int = 0):
    """``steps`` batches of rows of ``token_windows`` (reshuffled every epoch)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < batch_size:
            order = torch.cat([order, torch.randperm(len(token_windows), generator=generator)])
        yield token_windows[order[:batch_size]]
        order = order[batch_size:]


@torch.no_grad()
def teacher_windows(teacher: nn.Module, tokenizer, n_samples: int, seq_len: int,
                    batch_size: int | None = None, seed: int = 0,
                    progress: bool = True) -> torch.Tensor:
    """``n_samples`` windows of ``seq_len`` tokens *sampled from the teacher*, ``(n, seq_len)``.

    Text the teacher writes itself is an unlimited, on-distribution training set for the student
    (the course's own text is ~32k tokens, which long GPU runs would repeat hundreds of times).
    Each window continues a short prompt cut from the calibration text; only the generated tokens
    are kept, at temperature 1 so that the student sees the teacher's whole distribution.
    ``batch_size`` prompts are written at once (default 256 on a GPU, where a decode step costs
    about the same for 1 or 256 sequences of this small model, and 64 on the CPU).
    """
    from tqdm.auto import tqdm

    from inferlab.lab.data import sample_prompts

    device = next(teacher.parameters()).device
    batch_size = batch_size or (256 if device.type == "cuda" else 64)
    prompts = sample_prompts(n_samples, min_words=3, max_words=12, seed=seed)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    windows = []
    try:
        for start in tqdm(range(0, n_samples, batch_size), desc="teacher writes",
                          disable=not progress):
            batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt",
                              padding=True).to(device)
            out = teacher.generate(**batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                   max_new_tokens=seq_len, min_new_tokens=seq_len,
                                   pad_token_id=tokenizer.pad_token_id)
            windows.append(out[:, batch["input_ids"].shape[1]:].cpu())
    finally:
        tokenizer.padding_side = side
    return torch.cat(windows)


def distill_step(student_fn, params: dict, teacher_fn, input_ids: torch.Tensor, state: dict, *,
                 lr: float = 1e-3, temperature: float = 2.0, alpha: float = 0.5,
                 max_grad_norm: float = 1.0, loss_fn=None, betas=(0.9, 0.999),
                 eps: float = 1e-8) -> dict:
    """One distillation step: forward both models, the mixed loss, gradients, clip, Adam update.

    ``student_fn(params, input_ids)`` gives the student's logits from its trainable ``params``
    (``{name: tensor}``, updated in place); ``teacher_fn(input_ids)`` the teacher's, computed
    without gradients. The gradients (of ``alpha * soft + (1 - alpha) * hard``) are scaled so
    that their total norm is at most ``max_grad_norm`` (as ``torch.nn.utils.clip_grad_norm_``),
    then Adam (no weight decay, bias-corrected) updates ``params`` with its moments kept in
    ``state``. Returns the loss, its soft and hard parts and the gradient norm before clipping.
    """
    loss_fn = loss_fn or distillation_loss
    with torch.no_grad():
        teacher_logits = teacher_fn(input_ids)
    student_logits = student_fn(params, input_ids)
    soft = loss_fn(student_logits, teacher_logits, input_ids, temperature, 1.0)
    hard = loss_fn(student_logits, teacher_logits, input_ids, temperature, 0.0)
    loss = alpha * soft + (1 - alpha) * hard
    grads = torch.autograd.grad(loss, list(params.values()))
    norm = torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads])).item()
    clip = min(1.0, max_grad_norm / (norm + 1e-6))
    state["step"] = step = state.get("step", 0) + 1
    first, second = state.setdefault("m", {}), state.setdefault("v", {})
    b1, b2 = betas
    with torch.no_grad():
        for (name, p), g in zip(params.items(), grads):
            g = g.float() * clip
            if name not in first:
                first[name], second[name] = torch.zeros_like(g), torch.zeros_like(g)
            first[name].mul_(b1).add_(g, alpha=1 - b1)
            second[name].mul_(b2).addcmul_(g, g, value=1 - b2)
            update = (first[name] / (1 - b1 ** step)) / (
                (second[name] / (1 - b2 ** step)).sqrt() + eps)
            p.sub_((lr * update).to(p.dtype))
    return {"loss": loss.item(), "soft": soft.item(), "hard": hard.item(), "grad_norm": norm}


def distill(student: nn.Module, teacher: nn.Module, token_windows: torch.Tensor, *,
            steps: int = 100, batch_size: int = 4, lr: float = 1e-4, temperature: float = 2.0,
            alpha: float = 0.5, freeze_embeddings: bool = True, bf16: bool = True,
            loss_fn=None, step_fn=None, max_grad_norm: float = 1.0, parts: list | None = None,
            progress: bool = True, seed: int = 0) -> list[float]:
    """Train ``student`` to imitate ``teacher`` on ``token_windows`` ``(n, seq)``; return the
    losses.

    Each batch goes through ``step_fn`` (default ``distill_step``; lesson 04 passes the
    student's own), with the student as ``functional_call(student, params, ids)`` over its
    trainable parameters and the teacher as a frozen function of the tokens. The embedding
    (shared with the output head) is frozen by default: it is a fifth of the parameters, costly
    to update on a CPU, and keeping it identical to the teacher's keeps the two models' token
    spaces aligned. Learning rate: a short warm-up, then cosine decay. ``parts``, if a list,
    receives every step's report (loss parts, gradient norm).

    ``bf16``: the teacher runs as a bfloat16 copy and the student's forward under bf16 autocast
    (its weights and Adam's moments stay fp32) - on a CPU with AVX-512 bf16 and on GPUs this
    was measured 2-4x faster per step than fp32, for targets that differ from fp32's by
    rounding. ``loss_fn`` defaults to ``distillation_loss`` (used by the default step only).
    """
    from torch.func import functional_call
    from tqdm.auto import tqdm

    if step_fn is None:
        def step_fn(*args, **kwargs):
            return distill_step(*args, loss_fn=loss_fn, **kwargs)
    device = next(student.parameters()).device
    teacher.eval()
    if bf16 and next(teacher.parameters()).dtype != torch.bfloat16:
        teacher = copy.deepcopy(teacher).to(torch.bfloat16)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    student.train()
    embedding = student.get_input_embeddings().weight
    embedding.requires_grad_(not freeze_embeddings)
    params = {name: p for name, p in student.named_parameters() if p.requires_grad}

    def student_fn(weights, ids):
        with autocast:
            return functional_call(student, weights, (ids,)).logits

    def teacher_fn(ids):
        return teacher(ids).logits

    warmup = max(1, steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    state: dict = {}
    history: list[float] = []
    bar = tqdm(total=steps, desc="distilling", disable=not progress)
    try:
        for step, ids in enumerate(batches(token_windows, batch_size, steps, seed)):
            report = step_fn(student_fn, params, teacher_fn, ids.to(device), state,
                             lr=lr * schedule(step), temperature=temperature, alpha=alpha,
                             max_grad_norm=max_grad_norm)
            history.append(float(report["loss"]))
            if parts is not None:
                parts.append(dict(report))
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]:.3f}")
    finally:
        bar.close()
        student.eval()
        embedding.requires_grad_(True)
    return history


# ---------------------------------------------------------------------------- saving it
DEFAULT_STUDENT = "smollm2-135m-10l"
FAST_SUFFIX = "-fast"  # students trained in fast mode (CI, tests) are saved under this suffix


def students_dir() -> Path:
    return cache_dir() / "students"


def find_student(name: str = DEFAULT_STUDENT) -> Path:
    """Folder of the saved student ``name``, or of its fast-mode twin; a clear error if neither.

    Lesson 08 uses this to load lesson 04's student as a draft model:
    ``load_model(str(find_student()))``.
    """
    for candidate in (name, name + FAST_SUFFIX):
        folder = students_dir() / candidate
        if (folder / "student.json").is_file() and (folder / "config.json").is_file():
            return folder
    raise FileNotFoundError(f"no saved student {name!r} in {students_dir()}: run lesson 04 "
                            f"(04_distillation) first, which trains and saves it")


def save_student(student: nn.Module, tokenizer, name: str, info: dict | None = None) -> Path:
    """Save ``student`` (and the tokenizer) to ``cache_dir()/students/<name>``; return the folder.

    Written into a temporary folder first and renamed into place, so a crash never leaves a
    half-written student that a later lesson would try to load. ``info`` (how it was trained,
    what it measured) is stored beside it as ``student.json``.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"a student name must be a plain folder name, got {name!r}")
    target = students_dir() / name
    tmp = target.parent / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    student.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    meta = dict(getattr(student, "student_of", {}), **(info or {}))
    (tmp / "student.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    for path in tmp.iterdir():
        path.chmod(0o644)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def saved_students() -> dict[str, dict]:
    """Students saved so far: ``{name: contents of its student.json}``."""
    found = {}
    if students_dir().is_dir():
        for folder in sorted(students_dir().iterdir()):
            meta = folder / "student.json"
            if folder.is_dir() and not folder.name.startswith(".") and meta.is_file():
                found[folder.name] = json.loads(meta.read_text())
    return found
