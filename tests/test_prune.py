"""inferlab.compress.prune: masks, structured pruning that really shrinks matrices, storage and
speed."""
import copy

import pytest
import torch
from transformers import LlamaForCausalLM

from inferlab.compress import prune

SHAPE = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=6)  # GQA groups of 3


# --------------------------------------------------------------------------------- masks
def test_magnitude_mask_drops_exactly_the_smallest():
    torch.manual_seed(0)
    w = torch.randn(32, 16)
    mask = prune.magnitude_mask(w, 0.25)
    assert mask.dtype == torch.bool and mask.shape == w.shape
    assert (~mask).sum() == 128
    assert w[~mask].abs().max() <= w[mask].abs().min()
    assert prune.magnitude_mask(w, 0.0).all() and not prune.magnitude_mask(w, 1.0).any()
    with pytest.raises(ValueError):
        prune.magnitude_mask(w, 1.5)


def test_magnitude_mask_uses_absolute_values():
    w = torch.tensor([[-10.0, 1.0, -2.0, 3.0]])
    assert prune.magnitude_mask(w, 0.5).tolist() == [[True, False, False, True]]


def test_wanda_mask_prunes_per_row_and_weighs_inputs():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    loud_first = torch.tensor([100.0, 1.0, 1.0, 1.0])
    mask = prune.wanda_mask(w, loud_first, 0.5)
    assert mask.sum(1).tolist() == [2, 2]
    assert mask[:, 0].all()  # a small weight on a loud input survives
    assert prune.wanda_mask(w, torch.ones(4), 0.5).tolist() == [[False, False, True, True],
                                                                [True, True, False, False]]


def test_two_four_mask_keeps_two_largest_of_each_group_of_four():
    torch.manual_seed(1)
    w = torch.randn(8, 32)
    mask = prune.two_four_mask(w)
    groups, kept = w.abs().view(-1, 4), mask.view(-1, 4)
    assert kept.sum(1).eq(2).all()
    assert (groups * kept).sum(1).allclose(groups.topk(2, dim=1).values.sum(1))
    assert (prune.two_four_mask(torch.tensor([[0.1, -5.0, 3.0, 0.2]])).tolist()
            == [[False, True, True, False]])
    with pytest.raises(ValueError):
        prune.two_four_mask(torch.randn(4, 6))


# --------------------------------------------------------------------------- whole model
def test_prune_linears_reaches_the_sparsity_and_spares_the_embedding(tiny_llama):
    model = tiny_llama(**SHAPE)
    embedding = model.get_input_embeddings().weight.clone()
    assert len(prune.prunable_linears(model)) == 3 * 7
    reached = prune.prune_linears(model, lambda w: prune.magnitude_mask(w, 0.5))
    assert reached == pytest.approx(0.5, abs=1e-3) and prune.sparsity(model) == reached
    assert torch.equal(model.get_input_embeddings().weight, embedding)
    assert prune.prune_linears(model, prune.two_four_mask, only="mlp") >= 0.5
    with pytest.raises(ValueError, match="bool tensor"):
        prune.prune_linears(model, lambda w: torch.ones_like(w))


def test_input_norms_cover_every_linear(tiny_llama):
    model = tiny_llama(**SHAPE)
    norms = prune.input_norms(model, torch.randint(0, 128, (2, 10)))
    linears = prune.prunable_linears(model)
    assert set(norms) == set(linears)
    for name, linear in linears.items():
        assert norms[name].shape == (linear.in_features,) and (norms[name] > 0).all()


@pytest.mark.parametrize("aware", [False, True])
def test_mlp_channel_pruning_shrinks_and_equals_masking(aware, tiny_llama):
    model = tiny_llama(**SHAPE)
    ids = torch.randint(0, 128, (1, 12))
    norms = prune.input_norms(model, ids) if aware else None
    masked = copy.deepcopy(model)
    pruned = copy.deepcopy(model)
    assert prune.prune_mlp_channels(pruned, 0.25, norms) == 72
    assert pruned.config.intermediate_size == 72
    for layer, ref in zip(pruned.model.layers, masked.model.layers):
        assert layer.mlp.gate_proj.weight.shape == (72, 48)
        assert layer.mlp.down_proj.weight.shape == (48, 72)
        # zeroing the dropped channels' down_proj columns gives the same function
        kept = [any(torch.equal(row, r) for r in layer.mlp.up_proj.weight)
                for row in ref.mlp.up_proj.weight]
        ref.mlp.down_proj.weight.data[:, ~torch.tensor(kept)] = 0
    with torch.no_grad():
        assert torch.allclose(pruned(ids).logits, masked(ids).logits, atol=1e-5)
    with pytest.raises(ValueError):
        prune.prune_mlp_channels(copy.deepcopy(model), 1.0)


def test_mlp_channel_scores_prefer_loud_and_strong_channels():
    down = torch.ones(4, 3)
    assert prune.mlp_channel_scores(down, torch.tensor([1.0, 5.0, 2.0])).argmax() == 1
    down[:, 2] = 10
    gate = up = torch.ones(3, 4)
    assert prune.mlp_channel_scores(down, gate=gate, up=up).argmax() == 2
    with pytest.raises(ValueError):
        prune.mlp_channel_scores(down)


def test_head_pruning_keeps_gqa_groups_and_the_model_runs(tmp_path, tiny_llama):
    model = tiny_llama(**SHAPE)
    ids = torch.randint(0, 128, (1, 12))
    norms = prune.input_norms(model, ids)
    pruned = copy.deepcopy(model)
    assert prune.prune_attention_heads(pruned, 2, norms) == 4
    attn = pruned.model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (4 * 8, 48) and attn.o_proj.weight.shape == (48, 4 * 8)
    assert attn.k_proj.weight.shape == (2 * 8, 48)
    # same function as the full model with the dropped heads' o_proj columns zeroed
    masked = copy.deepcopy(model)
    for layer, small in zip(masked.model.layers, pruned.model.layers):
        o = layer.self_attn.o_proj.weight.data.view(48, 6, 8)
        small_heads = small.self_attn.o_proj.weight.data.view(48, 4, 8).unbind(1)
        kept = [any(torch.equal(o[:, h], s) for s in small_heads) for h in range(6)]
        o[:, ~torch.tensor(kept)] = 0
    with torch.no_grad():
        assert torch.allclose(pruned(ids).logits, masked(ids).logits, atol=1e-5)
    # it saves, reloads and generates with a KV cache
    pruned.save_pretrained(tmp_path)
    again = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    out = again.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 16)
    with pytest.raises(ValueError):
        prune.prune_attention_heads(copy.deepcopy(model), 4)


# ----------------------------------------------------------------------- size and speed
def test_storage_bytes_of_each_format():
    w = torch.zeros(4, 8)
    w[0, :4] = 1.0
    assert prune.storage_bytes(w) == 4 * 8 * 4
    assert prune.storage_bytes(w, "csr") == 4 * (4 + 8) + 5 * 8
    assert prune.storage_bytes(w.half(), "2:4") == 16 * 2 + 16 * 2 // 8
    half_zero = torch.randn(64, 64) * prune.magnitude_mask(torch.randn(64, 64), 0.5)
    # CSR costs more at 50 %
    assert prune.storage_bytes(half_zero, "csr") > prune.storage_bytes(half_zero)
    with pytest.raises(ValueError):
        prune.storage_bytes(w, "coo")


def test_matmul_times_returns_both_kernels():
    times = prune.matmul_times(torch.randn(32, 16), torch.randn(4, 16), repeats=2)
    assert set(times) == {"dense", "csr"} and all(t > 0 for t in times.values())


def test_select_mlp_channels_keeps_the_original_order():
    torch.manual_seed(2)
    gate, up, down = torch.randn(10, 4), torch.randn(10, 4), torch.randn(4, 10)
    norm = torch.arange(10, dtype=torch.float32)[torch.randperm(10)] + 1
    g, u, d = prune.select_mlp_channels(gate, up, down, norm, 4)
    keep = (norm * down.norm(dim=0)).topk(4).indices.sort().values
    assert torch.equal(g, gate[keep]) and torch.equal(u, up[keep]) and torch.equal(d, down[:, keep])


@pytest.mark.parametrize("method", prune.METHODS)
def test_pruned_copy_every_method(method, tiny_llama):
    model = tiny_llama(**SHAPE)
    norms = prune.input_norms(model, torch.randint(0, 128, (2, 10)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, removed = prune.pruned_copy(model, method, 0.5, norms)
    # the original is untouched
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    expected = {"attention heads": (0.05, 0.35)}.get(method, (0.45, 0.55))
    assert expected[0] <= removed <= expected[1], (method, removed)
    with torch.no_grad():
        assert torch.isfinite(pruned(torch.randint(0, 128, (1, 8))).logits).all()


def test_pruned_copy_says_why_a_combination_is_impossible(tiny_llama):
    model = tiny_llama(**SHAPE)
    norms = prune.input_norms(model, torch.randint(0, 128, (1, 8)))
    with pytest.raises(ValueError, match="hold only"):
        prune.pruned_copy(model, "mlp channels", 0.9, norms)
    with pytest.raises(ValueError, match="activation-aware"):
        prune.pruned_copy(model, "wanda", 0.5)
    with pytest.raises(ValueError, match="unknown method"):
        prune.pruned_copy(model, "random", 0.5)
    assert prune.pruned_copy(model, "magnitude", 0.0)[1] == 0.0
