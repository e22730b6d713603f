"""Plausible wrong answers for lesson 04; each passes the visible tests and fails the hidden
ones."""

CONTEXT = "import torch\nimport torch.nn.functional as F\n"

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
