"""Quality beyond perplexity: accuracy on a multiple-choice task (HellaSwag).

Used beside perplexity in lessons 01, 03 and 04. Perplexity says how surprised a model is by
text; a *task* asks whether it still makes the right choice. Each HellaSwag item is the start of
a short scene and four possible continuations, one of them right ("A man is sitting on a roof.
he" -> "starts pulling up roofing on a roof."). The model never writes an answer: it is scored
the way the EleutherAI evaluation harness scores it,

* for every ending, the **log-likelihood** of the ending's tokens given the context, summed over
  the ending's tokens;
* **acc** - the item is right when the true ending has the highest sum;
* **acc_norm** - the same after dividing each sum by the ending's length in characters, so that
  long endings (more tokens, more negative sums) are not penalised for being long.

Chance is 1/4. Accuracy on ``n`` items is a binomial proportion: its standard error is
``sqrt(p (1 - p) / n)``, about 2.8 points at p = 0.4 and n = 300. Two models whose accuracies
differ by less than about two standard errors have not been shown to differ. Comparing the two
models' *choices* item by item (``agreement``) is far more sensitive than comparing accuracies.

The items (``task_data/hellaswag_val_300.jsonl``) are 300 of the 10,042 HellaSwag validation
items (every 33rd), MIT licence; ``task_data/README.md`` says where they come from.

Cost: the context is run once per item and its key/value cache is shared by the four endings,
so an item costs about the tokens of its context plus its four endings.
"""
from __future__ import annotations

import json
import math
from importlib import resources

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

DATA_FILE = "hellaswag_val_300.jsonl"
SOURCE = ("HellaSwag validation set (Zellers et al. 2019, github.com/rowanz/hellaswag, MIT), "
          "every 33rd item")


def load_items(n: int | None = None) -> list[dict]:
    """The first ``n`` (default all 300) items: ``{"ind", "ctx", "endings", "label"}``.

    ``ind`` is the item's line in the original validation file, ``label`` the index of the
    right ending.
    """
    text = resources.files("inferlab.lab").joinpath("task_data", DATA_FILE).read_text("utf-8")
    items = [json.loads(line) for line in text.splitlines() if line.strip()]
    return items if n is None else items[:n]


@torch.no_grad()
def ending_logprobs(model, tokenizer, item: dict) -> torch.Tensor:
    """Summed log-likelihood of each ending given the context: a tensor of shape ``(n_endings,)``.

    The context runs once; its cache is repeated for the endings, which run as one batch,
    right-padded (a causal model's padding after a sequence cannot change the tokens before it).
    """
    device = next(model.parameters()).device
    ctx = tokenizer(item["ctx"], return_tensors="pt").input_ids.to(device)
    endings = [tokenizer(" " + e).input_ids for e in item["endings"]]
    k, longest = len(endings), max(len(e) for e in endings)
    ids = torch.zeros(k, longest, dtype=torch.long)
    mask = torch.zeros(k, longest, dtype=torch.bool)
    for i, e in enumerate(endings):
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = True
    ids, mask = ids.to(device), mask.to(device)

    out = model(ctx, use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(k)
    first = out.logits[:, -1:].float().expand(k, 1, -1)       # predicts each ending's 1st token
    rest = model(ids, past_key_values=cache).logits[:, :-1].float()  # predicts tokens 2..
    logp = F.log_softmax(torch.cat([first, rest], dim=1), dim=-1)
    token_logp = logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return (token_logp * mask).sum(1).cpu()


def standard_error(p: float, n: int) -> float:
    """Binomial standard error of an accuracy ``p`` measured on ``n`` items."""
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def task_accuracy(model, tokenizer, items: list[dict], label: str | None = None) -> dict:
    """Score ``items``: ``acc``, ``acc_norm``, their standard errors, chance, and the choices.

    ``choices`` / ``choices_norm`` (one ending index per item) let two models be compared item
    by item with ``agreement``. ``label`` shows a progress bar with that name (a few hundred
    items take a minute or more).
    """
    was_training = model.training
    model.eval()
    choices, choices_norm, right, right_norm = [], [], 0, 0
    try:
        for item in tqdm(items, desc=label, disable=label is None, leave=False):
            ll = ending_logprobs(model, tokenizer, item)
            chars = torch.tensor([len(" " + e) for e in item["endings"]], dtype=torch.float)
            c, cn = int(ll.argmax()), int((ll / chars).argmax())
            choices.append(c)
            choices_norm.append(cn)
            right += c == item["label"]
            right_norm += cn == item["label"]
    finally:
        model.train(was_training)
    n = len(items)
    acc, acc_norm = (right / n, right_norm / n) if n else (float("nan"), float("nan"))
    return {"n": n, "acc": acc, "acc_norm": acc_norm,
            "acc_se": standard_error(acc, n), "acc_norm_se": standard_error(acc_norm, n),
            "chance": sum(1 / len(i["endings"]) for i in items) / n if n else float("nan"),
            "choices": choices, "choices_norm": choices_norm}


def agreement(result: dict, reference: dict, norm: bool = True) -> float:
    """Fraction of items on which two ``task_accuracy`` results chose the same ending."""
    key = "choices_norm" if norm else "choices"
    a, b = result[key], reference[key]
    return sum(x == y for x, y in zip(a, b)) / len(a) if a else float("nan")


def describe(result: dict) -> str:
    """One line: ``acc_norm 41.0% ± 2.8 (acc 35.3% ± 2.8; chance 25%, 300 items)``."""
    return (f"acc_norm {result['acc_norm']:.1%} ± {100 * result['acc_norm_se']:.1f} "
            f"(acc {result['acc']:.1%} ± {100 * result['acc_se']:.1f}; "
            f"chance {result['chance']:.0%}, {result['n']} items; ± = 1 standard error)")
