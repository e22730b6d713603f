"""inferlab.compress.awq: the activation-aware scale search, the clip search and the whole-model
pass."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from inferlab.compress import awq
from inferlab.compress.quant import Scheme, fake_quantize

SCHEME = Scheme(4, "absmax", "group", 32)


def outlier_inputs(n=256, width=64, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(n, width)
    x[:, :3] *= 30  # a few loud channels, as in real LLM activations
    return x


def test_alpha_zero_is_round_to_nearest_and_the_search_improves_on_it():
    X = outlier_inputs()
    torch.manual_seed(1)
    W = torch.randn(48, 64) * 0.05
    scales, alpha, losses = awq.awq_search_scale(W, X, SCHEME, n_grid=10)
    rtn_loss = awq.output_error(W, fake_quantize(W, SCHEME), X)
    assert abs(losses[0] - rtn_loss) <= 1e-6 * rtn_loss + 1e-12
    assert alpha > 0 and min(losses) < 0.8 * losses[0]
    assert scales.shape == (64,) and scales[:3].min() > scales[3:].max()
    W_hat = fake_quantize(W * scales, SCHEME) / scales
    assert abs(awq.output_error(W, W_hat, X) - min(losses)) <= 1e-4 * min(losses)


def test_clip_search_never_increases_the_output_error():
    X = outlier_inputs(seed=2)
    torch.manual_seed(2)
    W = torch.randn(32, 64) * 0.05
    W[0, 5] = 1.0  # an outlier weight that stretches its group's range
    for scheme in (SCHEME, Scheme(4, "zeropoint", "group", 32)):
        clipped = awq.awq_search_clip(W, X, scheme, n_grid=10)
        before = awq.output_error(W, fake_quantize(W, scheme), X)
        after = awq.output_error(W, fake_quantize(clipped, scheme), X)
        assert after <= before * (1 + 1e-5)
        assert (clipped.abs() <= W.abs() + 1e-7).all()
    assert awq.awq_search_clip(W, X, Scheme(8, "absmax", "channel")) is W


def test_whole_model_pass():
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    reference = LlamaForCausalLM(config).eval()
    reference.load_state_dict(model.state_dict())
    calib = torch.randint(0, 128, (4, 32))
    stats = awq.awq_quantize_model(model, calib, SCHEME, n_grid=5, n_tokens=64)
    assert stats["linears"] == 14 and set(stats["alphas"]) == {
        f"layers.{i}.{n}" for i in range(2) for n in ("q_proj", "gate_proj", "down_proj")}
    assert not torch.equal(model.model.layers[0].self_attn.o_proj.weight,
                           reference.model.layers[0].self_attn.o_proj.weight)
    with torch.no_grad():
        assert torch.isfinite(model(calib).logits).all()
