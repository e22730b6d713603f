"""Plausible wrong answers for lesson 04; each passes the visible tests and fails the hidden
ones."""

CONTEXT = "import torch\nimport torch.nn.functional as F\n"

_STEP = '''
def distill_step(student_fn, params, teacher_fn, input_ids, state, lr=1e-3, temperature=2.0,
                 alpha=0.5, max_grad_norm=1.0):
    with torch.no_grad():
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
'''

MUTANTS = {
    "soft_targets": [
        # Multiplies by the temperature instead of dividing.
        '''
def soft_targets(logits, temperature):
    return torch.softmax(logits * temperature, dim=-1)
''',
        # Tempers the probabilities but forgets to renormalise them.
        '''
def soft_targets(logits, temperature):
    return torch.softmax(logits, dim=-1) ** (1 / temperature)
''',
    ],
    "distillation_loss": [
        # Forgets the T^2 factor.
        '''
def distillation_loss(student_logits, teacher_logits, input_ids, temperature=2.0, alpha=0.5):
    t, v = temperature, student_logits.shape[-1]
    ls = torch.log_softmax(student_logits / t, -1).reshape(-1, v)
    lt = torch.log_softmax(teacher_logits / t, -1).reshape(-1, v)
    kl = (lt.exp() * (lt - ls)).sum(-1).mean()
    ce = F.cross_entropy(student_logits[:, :-1].reshape(-1, v), input_ids[:, 1:].reshape(-1))
    return alpha * kl + (1 - alpha) * ce
''',
        # KL in the wrong direction: KL(student || teacher).
        '''
def distillation_loss(student_logits, teacher_logits, input_ids, temperature=2.0, alpha=0.5):
    t, v = temperature, student_logits.shape[-1]
    ls = torch.log_softmax(student_logits / t, -1).reshape(-1, v)
    lt = torch.log_softmax(teacher_logits / t, -1).reshape(-1, v)
    kl = (ls.exp() * (ls - lt)).sum(-1).mean()
    ce = F.cross_entropy(student_logits[:, :-1].reshape(-1, v), input_ids[:, 1:].reshape(-1))
    return alpha * t * t * kl + (1 - alpha) * ce
''',
        # Cross-entropy without shifting: position t is scored against token t.
        '''
def distillation_loss(student_logits, teacher_logits, input_ids, temperature=2.0, alpha=0.5):
    t, v = temperature, student_logits.shape[-1]
    ls = torch.log_softmax(student_logits / t, -1).reshape(-1, v)
    lt = torch.log_softmax(teacher_logits / t, -1).reshape(-1, v)
    kl = (lt.exp() * (lt - ls)).sum(-1).mean()
    ce = F.cross_entropy(student_logits.reshape(-1, v), input_ids.reshape(-1))
    return alpha * t * t * kl + (1 - alpha) * ce
''',
        # F.kl_div with reduction="mean" averages over the vocabulary too.
        '''
def distillation_loss(student_logits, teacher_logits, input_ids, temperature=2.0, alpha=0.5):
    t, v = temperature, student_logits.shape[-1]
    ls = torch.log_softmax(student_logits / t, -1)
    pt = torch.softmax(teacher_logits / t, -1)
    kl = F.kl_div(ls, pt, reduction="mean")
    ce = F.cross_entropy(student_logits[:, :-1].reshape(-1, v), input_ids[:, 1:].reshape(-1))
    return alpha * t * t * kl + (1 - alpha) * ce
''',
    ],
    "distill_step": [
        # Clipping forgotten: the raw gradients go to Adam.
        _STEP.replace("clip = min(1.0, max_grad_norm / (norm + 1e-6))", "clip = 1.0"),
        # Each gradient clipped to the norm on its own, not by the total norm.
        _STEP.replace("g = g.float() * clip",
                      "g = g.float() * min(1.0, max_grad_norm / (g.norm().item() + 1e-6))"),
        # Clips the update instead of the gradient (Adam has already normalised it).
        _STEP.replace("g = g.float() * clip", "g = g.float()").replace(
            "p -= (lr * m_hat", "p -= (clip * lr * m_hat"),
        # Reports the gradient norm after clipping.
        _STEP.replace('"grad_norm": norm}', '"grad_norm": min(norm, max_grad_norm)}'),
        # alpha weighs the hard part instead of the soft one.
        _STEP.replace("loss = alpha * soft + (1 - alpha) * hard",
                      "loss = (1 - alpha) * soft + alpha * hard").replace(
            '"loss": loss.item()', '"loss": alpha * soft.item() + (1 - alpha) * hard.item()'),
        # The step count is not kept in the state: the bias correction of step 1 every time.
        _STEP.replace('state["step"] = step = state.get("step", 0) + 1',
                      'state["step"] = 1\n    step = 1'),
        # The course's own step, with the temperature left at its default.
        '''
def distill_step(student_fn, params, teacher_fn, input_ids, state, lr=1e-3, temperature=2.0,
                 alpha=0.5, max_grad_norm=1.0):
    from inferlab.compress import distill
    return distill.distill_step(student_fn, params, teacher_fn, input_ids, state, lr=lr,
                                alpha=alpha, max_grad_norm=max_grad_norm)
''',
        # Hard-coded to the visible example: an SGD step whose size matches Adam's first one.
        '''
def distill_step(student_fn, params, teacher_fn, input_ids, state, lr=1e-3, temperature=2.0,
                 alpha=0.5, max_grad_norm=1.0):
    with torch.no_grad():
        teacher_logits = teacher_fn(input_ids)
    student_logits = student_fn(params, input_ids)
    soft = distillation_loss(student_logits, teacher_logits, input_ids, temperature, 1.0)
    hard = distillation_loss(student_logits, teacher_logits, input_ids, temperature, 0.0)
    loss = alpha * soft + (1 - alpha) * hard
    grads = torch.autograd.grad(loss, list(params.values()))
    state["step"] = state.get("step", 0) + 1
    state.setdefault("m", {k: 0 for k in params})
    with torch.no_grad():
        for p, g in zip(params.values(), grads):
            p -= lr * g.sign()
    return {"loss": loss.item(), "soft": soft.item(), "hard": hard.item(), "grad_norm": 1.0}
''',
    ],
    "student_layers": [
        # Truncates instead of rounding.
        '''
def student_layers(n_teacher, n_student):
    if n_student == 1:
        return [0]
    return [int(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]
''',
        # A fixed stride from 0: misses the last layer.
        '''
def student_layers(n_teacher, n_student):
    return list(range(0, n_teacher, n_teacher // n_student))[:n_student]
''',
        # Divides by zero for a one-layer student.
        '''
def student_layers(n_teacher, n_student):
    return [round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]
''',
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "student_layers": ["inferlab.compress.distill:spread_layers"],
}

# Shortcuts the *visible* tests already reject (tests/test_notebooks.py checks that they do).
SHORTCUTS = {
    "distill_step": [
        # The teacher's forward builds a graph (no torch.no_grad()): the toy teacher refuses.
        _STEP.replace("    with torch.no_grad():\n        teacher_logits = teacher_fn(input_ids)",
                      "    teacher_logits = teacher_fn(input_ids)"),
        # The hard part at the temperature too (cross-entropy of logits / T).
        _STEP.replace("hard = distillation_loss(student_logits, teacher_logits, input_ids, "
                      "temperature, 0.0)",
                      "hard = distillation_loss(student_logits / temperature, teacher_logits, "
                      "input_ids, temperature, 0.0)"),
        # Adam without the bias correction: the first steps are ~3x too large.
        _STEP.replace("m_hat, v_hat = m[name] / (1 - 0.9 ** step), v[name] / (1 - 0.999 ** step)",
                      "m_hat, v_hat = m[name], v[name]"),
        # The loss parts after the update, not of the batch the step trained on.
        _STEP.replace('return {"loss": loss.item(), "soft": soft.item(), "hard": hard.item(),',
                      'after = student_fn(params, input_ids)\n'
                      '    soft = distillation_loss(after, teacher_logits, input_ids, temperature, 1.0)\n'
                      '    hard = distillation_loss(after, teacher_logits, input_ids, temperature, 0.0)\n'
                      '    return {"loss": loss.item(), "soft": soft.item(), "hard": hard.item(),'),
    ],
}
