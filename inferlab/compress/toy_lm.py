"""A two-matrix "language model" small enough to check a training step exactly.

Introduced in lesson 04, whose graded training step (``distill_step``) is written against plain
functions and tensors: ``student_fn(params, input_ids) -> logits`` for the model being trained,
``teacher_fn(input_ids) -> logits`` for the frozen teacher. Real models plug in through
``torch.func.functional_call``; the graded tests plug in these toys, whose every number can be
recomputed with ``torch.optim`` to compare parameters after a step.

``toy_lm`` embeds each token, mixes it through a ``tanh`` layer and projects to the vocabulary.
``toy_teacher`` is the same model with fixed weights of its own; it refuses to run with gradients
enabled, since a distillation step must never build a graph through its teacher.
"""
from __future__ import annotations

import torch

VOCAB, DIM = 11, 8


def toy_params(seed: int = 0, vocab: int = VOCAB, dim: int = DIM, scale: float = 1.0,
               requires_grad: bool = True) -> dict[str, torch.Tensor]:
    """Random float32 parameters of ``toy_lm``: ``{"embed": [V, D], "mix": [D, D], "head":
    [D, V]}``."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {"embed": (vocab, dim), "mix": (dim, dim), "head": (dim, vocab)}
    return {name: (torch.randn(*shape, generator=gen) * scale).requires_grad_(requires_grad)
            for name, shape in shapes.items()}


def toy_lm(params: dict[str, torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
    """Logits ``(batch, seq, vocab)`` of the toy model with ``params`` on ``input_ids``."""
    hidden = torch.tanh(params["embed"][input_ids] @ params["mix"])
    return hidden @ params["head"]


def toy_teacher(input_ids: torch.Tensor) -> torch.Tensor:
    """A fixed toy teacher's logits; raises if called while gradients are enabled."""
    if torch.is_grad_enabled():
        raise RuntimeError("the teacher ran with gradients enabled: call it under "
                           "torch.no_grad(), it is not being trained")
    return toy_lm(toy_params(seed=1234, scale=1.5, requires_grad=False), input_ids)
