"""inferlab.serving.parallel: tensor-parallel layers equal the unsplit model; the real 2-process
runs (lesson 11)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inferlab.serving import parallel


def test_shards_are_contiguous_blocks():
    weight = torch.arange(24.0).reshape(6, 4)
    bias = torch.arange(6.0)
    w1, b1 = parallel.split_columns(weight, bias, 1, 2)
    assert torch.equal(w1, weight[3:]) and torch.equal(b1, bias[3:])
    assert torch.equal(parallel.split_rows(weight, 0, 2), weight[:, :2])
    with pytest.raises(ValueError):
        parallel.split_columns(weight, None, 0, 4)
    with pytest.raises(ValueError):
        parallel.split_rows(weight, 0, 3)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_split_mlp_sums_to_the_full_mlp(world):
    torch.manual_seed(0)
    mlp = parallel.LlamaMLP(16, 48).eval()
    x = torch.randn(5, 16)
    with torch.no_grad():
        full = mlp(x)
        parts = [parallel.TensorParallelMLP(mlp, r, world, reduce=lambda t: t)(x)
                 for r in range(world)]
    assert torch.allclose(sum(parts), full, atol=1e-5)


def test_column_then_row_parallel_with_biases():
    torch.manual_seed(0)
    first, second = nn.Linear(8, 12), nn.Linear(12, 8)
    x = torch.randn(3, 8)
    with torch.no_grad():
        full = second(F.relu(first(x)))
        partial = [F.linear(F.relu(parallel.ColumnParallelLinear(first, r, 2)(x)),
                            parallel.split_rows(second.weight, r, 2)) for r in range(2)]
        # RowParallelLinear adds the bias once, after the sum
        row = parallel.RowParallelLinear(second, 0, 2, reduce=lambda t: t + partial[1])
        combined = row(F.relu(parallel.ColumnParallelLinear(first, 0, 2)(x)))
    assert torch.allclose(combined, full, atol=1e-5)


def test_all_reduce_without_process_group_is_identity():
    t = torch.ones(3)
    assert parallel.all_reduce_sum(t) is t and torch.equal(t, torch.ones(3))


def test_smollm2_mlp_matches_the_model(model_and_tokenizer):
    model, _ = model_and_tokenizer
    mlp = parallel.smollm2_mlp(0)
    x = torch.randn(2, mlp.gate_proj.in_features)
    with torch.no_grad():
        assert torch.allclose(mlp(x), model.model.layers[0].mlp(x), atol=1e-5)


@pytest.mark.slow  # starts worker processes joined by torch.distributed
def test_two_process_tensor_parallel_equals_single_process(embedded_model_dir):
    result = parallel.run_tp(world_size=2, backend="gloo", tokens=(1, 8), weights="smollm2",
                             repeats=2)
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    for run in result["runs"]:
        assert run["max_abs_diff"] <= 1e-5 * max(1.0, run["max_abs_output"]), run
        assert run["all_reduce_bytes"] == run["tokens"] * 576 * 4
        assert run["tp_forward_s"] > 0 and run["single_forward_s"] > 0


@pytest.mark.slow  # starts worker processes joined by torch.distributed
def test_two_stage_pipeline_runs():
    result = parallel.run_pp(microbatches=(1, 2), layers=2, tokens=16, hidden=32, intermediate=64,
                             repeats=1)
    assert result["stages"] == 2 and set(result["pipeline_s"]) == {"1", "2"}
    assert all(t > 0 for t in result["pipeline_s"].values())
