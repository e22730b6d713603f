"""inferlab.compress.gptq: Hessian, the column loop, its blocked form, and the block-by-block
pipeline."""
import torch

from inferlab.compress import gptq
from inferlab.compress.quant import Scheme, fake_quantize


def correlated_inputs(n=512, width=64, seed=0):
    torch.manual_seed(seed)
    mix = torch.randn(width, width) / width ** 0.5 + torch.eye(width)
    return (torch.randn(n, width) * torch.logspace(-1, 0.5, width)) @ mix


def assert_same_hessian(H, expected, tol=1e-4):
    """``|H_ij - expected_ij| <= tol * sqrt(e_ii e_jj)`` for every entry.

    ``H = 2 X^T X / n`` is summed in float32 (in whatever order BLAS and its threads choose), so
    an entry that cancels to near zero has no relative precision and ``rtol`` alone is flaky.
    The rounding of a float32 sum of n products is at most ``n * eps32 * sum_k |x_ki x_kj|``,
    which by Cauchy-Schwarz makes ``|error of H_ij| <= n * eps32 * sqrt(H_ii H_jj)``
    (512 * 6e-8 = 3e-5 here; typically ~5e-7). ``tol`` covers two such sides, and is still 20x
    below the change from one sample too many or too few in the running mean (1/512 = 2e-3).
    """
    d = torch.diag(expected).double()
    scale = torch.sqrt(torch.outer(d, d))
    err = (H.double() - expected.double()).abs() / scale
    assert err.max() <= tol, f"max scaled error {err.max():.2e} > {tol:.0e}"


def test_hessian_and_its_running_accumulator_agree():
    x = correlated_inputs()
    H = gptq.hessian(x)
    assert H.dtype == torch.float64
    assert_same_hessian(H, 2 * x.double().T @ x.double() / x.shape[0])
    acc = gptq.HessianAccumulator(64)
    for part in x.split([100, 300, 112]):
        acc.add(part.unsqueeze(0))
    assert acc.n == 512
    assert_same_hessian(acc.H, H)


def test_inverse_factor_is_the_cholesky_of_the_damped_inverse():
    x = correlated_inputs()
    H = gptq.hessian(x)
    H[3, :] = 0
    H[:, 3] = 0  # a dead input
    U, dead = gptq.inverse_hessian_factor(H, percdamp=0.01)
    assert dead.tolist() == [i == 3 for i in range(64)]
    assert torch.allclose(U, torch.triu(U))
    Hd = H.clone()
    Hd[3, 3] = 1
    Hd += 0.01 * torch.diag(Hd).mean() * torch.eye(64, dtype=Hd.dtype)
    assert torch.allclose(U.T @ U, torch.linalg.inv(Hd), rtol=1e-6, atol=1e-8)


def test_column_loop_beats_round_to_nearest_on_the_output():
    x = correlated_inputs()
    torch.manual_seed(1)
    W = torch.randn(48, 64) * 0.1
    U, _ = gptq.inverse_hessian_factor(gptq.hessian(x))
    Q = gptq.gptq_quantize_columns(W, U, bits=4, group_size=32)
    rtn = fake_quantize(W, Scheme(4, "absmax", "group", 32))
    err_gptq = (x @ (W - Q).T).pow(2).mean()
    err_rtn = (x @ (W - rtn).T).pow(2).mean()
    assert err_gptq < 0.8 * err_rtn, (err_gptq, err_rtn)
    for group in Q.split(32, dim=1):  # each row of each group: at most 15 levels of one scale
        for row in group:
            levels = row.unique()
            step = levels.abs().max() / 7
            assert len(levels) <= 15
            assert torch.allclose(levels / step, torch.round(levels / step), atol=1e-4)


def test_blocked_version_equals_the_plain_loop():
    x = correlated_inputs(seed=2)
    torch.manual_seed(2)
    W = torch.randn(40, 64) * 0.1
    H = gptq.hessian(x)
    U, _ = gptq.inverse_hessian_factor(H)
    for group, blocksize in [(32, 32), (16, 64), (64, 16)]:
        plain = gptq.gptq_quantize_columns(W, U, bits=4, group_size=group)
        blocked = gptq.gptq_quantize_weight(W, H, Scheme(4, "absmax", "group", group),
                                            blocksize=blocksize, scale_dtype=torch.float32)
        assert torch.allclose(plain, blocked, atol=1e-5), \
            (group, blocksize, (plain - blocked).abs().max())


def test_act_order_and_asymmetric_variants_run_and_stay_close():
    x = correlated_inputs(seed=3)
    torch.manual_seed(3)
    W = torch.randn(24, 64) * 0.1
    H = gptq.hessian(x)
    for scheme, act_order in [(Scheme(4, "zeropoint", "group", 32), False),
                              (Scheme(4, "absmax", "channel"), True)]:
        Q = gptq.gptq_quantize_weight(W, H, scheme, act_order=act_order)
        assert Q.shape == W.shape and (W - Q).norm() / W.norm() < 0.3


def test_whole_model_pipeline_quantizes_every_block_linear(tiny_llama):
    model, reference = tiny_llama(), tiny_llama()
    torch.manual_seed(4)
    calib = torch.randint(0, 128, (4, 32))
    seen = []
    stats = gptq.gptq_quantize_model(model, calib, Scheme(4, "absmax", "group", 32),
                                     progress=lambda done, total: seen.append((done, total)))
    assert stats["linears"] == 14 and stats["blocks"] == 2 and seen[-1] == (2, 2)
    for (name, p), (_, p0) in zip(model.named_parameters(), reference.named_parameters()):
        changed = not torch.equal(p, p0)
        assert changed == (name.endswith("proj.weight")), name
    rtn = tiny_llama()
    for m in rtn.modules():
        if isinstance(m, torch.nn.Linear) and m is not rtn.lm_head:
            m.weight.data = fake_quantize(m.weight.data, Scheme(4, "absmax", "group", 32))
    with torch.no_grad():
        ref = reference(calib).logits
        err_gptq = (model(calib).logits - ref).pow(2).mean()
        err_rtn = (rtn(calib).logits - ref).pow(2).mean()
    assert err_gptq < err_rtn


def test_max_blocks_limits_the_work(tiny_llama):
    model, reference = tiny_llama(), tiny_llama()
    stats = gptq.gptq_quantize_model(model, torch.randint(0, 128, (2, 16)),
                                     Scheme(4, "absmax", "group", 32), max_blocks=1)
    assert stats["linears"] == 7
    assert torch.equal(model.model.layers[1].mlp.up_proj.weight,
                       reference.model.layers[1].mlp.up_proj.weight)
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight,
                           reference.model.layers[0].mlp.up_proj.weight)


def test_block_linear_inputs_are_what_the_linears_see(tiny_llama):
    model = tiny_llama()
    ids = torch.randint(0, 128, (2, 16))
    inputs = gptq.block_linear_inputs(model, ids, 1)
    assert set(inputs) == set(gptq.LINEAR_GROUPS)
    seen = {}
    def keep(module, args, out):
        seen["x"] = args[0].reshape(-1, args[0].shape[-1])

    handle = model.model.layers[1].mlp.down_proj.register_forward_hook(keep)
    with torch.no_grad():
        model(ids)
    handle.remove()
    assert torch.allclose(inputs[("mlp.down_proj",)], seen["x"], atol=1e-5)
    assert inputs[("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")].shape == (32, 64)
