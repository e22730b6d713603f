"""Batched LoRA adapters (inferlab.serving.multi_lora; lesson 06, section 6)."""
import pytest
import torch
from torch import nn

from inferlab.serving.multi_lora import (
    MultiLoRALinear,
    adapter_bytes,
    add_adapters,
    merged_model,
    use_adapters,
)


def small_layer(n=3, r=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = nn.Linear(6, 5, bias=True)
    with torch.no_grad():
        base.weight.copy_(torch.randn(5, 6, generator=g))
        base.bias.copy_(torch.randn(5, generator=g))
    return MultiLoRALinear(base, torch.randn(n, r, 6, generator=g),
                           torch.randn(n, 5, r, generator=g), scale=0.5)


def test_each_row_computes_its_own_adapter_and_minus_one_the_base():
    layer = small_layer()
    x = torch.randn(4, 3, 6, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([2, -1, 0, 2])
    layer.adapter_ids = ids
    got = layer(x)
    for row, a in enumerate(ids.tolist()):
        weight = layer.base.weight + (layer.delta(a) if a >= 0 else 0)
        want = x[row] @ weight.T + layer.base.bias
        torch.testing.assert_close(got[row], want, rtol=1e-5, atol=1e-5)
    # a shortcut that uses one adapter for the whole batch differs from the per-row answer
    layer.adapter_ids = torch.tensor([2, 2, 2, 2])
    assert not torch.allclose(layer(x)[2], got[2])
    layer.adapter_ids = None
    torch.testing.assert_close(layer(x), layer.base(x))


def test_refusals_are_clear():
    with pytest.raises(ValueError, match="adapters must be"):
        MultiLoRALinear(nn.Linear(6, 5), torch.zeros(2, 2, 7), torch.zeros(2, 5, 2), 1.0)
    layer = small_layer()
    layer.adapter_ids = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="use_adapters"):
        layer(torch.randn(3, 1, 6))
    with pytest.raises(ValueError, match="no Linear"):
        add_adapters(nn.Sequential(nn.Linear(4, 4)), 2)
    with pytest.raises(ValueError, match="add_adapters first"):
        use_adapters(nn.Sequential(nn.Linear(4, 4)), [0])
    model = nn.Sequential()
    model.add_module("q_proj", nn.Linear(4, 4))
    add_adapters(model, 2, rank=2)
    for bad in ([0, 2], [-2], [[0, 1]]):
        with pytest.raises(ValueError, match="adapter ids must be"):
            use_adapters(model, bad)


def test_a_mixed_batch_of_the_real_model_equals_each_merged_model(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    import copy
    lora = copy.deepcopy(model)
    layers = add_adapters(lora, 3, rank=4)
    assert len(layers) == 2 * model.config.num_hidden_layers
    assert adapter_bytes(lora) == sum(
        4 * (l.lora_a.numel() + l.lora_b.numel()) for l in layers)  # noqa: E741 - fp32
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        batch = tokenizer(["The cache holds", "A batch of requests", "Weights are read"],
                          return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    use_adapters(lora, [0, 1, 2])
    with torch.inference_mode():
        mixed = lora(**batch).logits
        plain = model(**batch).logits
        for a in range(3):
            row = {k: v[a:a + 1] for k, v in batch.items()}
            want = merged_model(lora, a)(**row).logits
            torch.testing.assert_close(mixed[a:a + 1], want, rtol=1e-3, atol=1e-3)
            assert (plain[a:a + 1] - want).abs().max() > 1e-2     # the adapter does something
    # merging left the batched model untouched
    use_adapters(lora, None)
    with torch.inference_mode():
        torch.testing.assert_close(lora(**batch).logits, plain)
