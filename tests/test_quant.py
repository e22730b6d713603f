"""inferlab.compress.quant: the quantizers, granularity views, 4-bit packing, QuantLinear, whole
models."""
import logging

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from inferlab.compress import quant
from inferlab.compress.quant import QuantLinear, Scheme
from inferlab.lab.models import weight_bytes


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


# ------------------------------------------------------------------------- quantizers
def test_absmax_int8_error_is_at_most_half_a_step():
    torch.manual_seed(0)
    x = torch.randn(16, 64)
    q, scale = quant.absmax_quantize(x, 8)
    assert q.dtype == torch.int8 and scale.shape == (16, 1)
    assert q.abs().max() <= 127 and (q.abs().amax(1) == 127).all()  # each row's max hits the edge
    err = (quant.absmax_dequantize(q, scale) - x).abs()
    assert (err <= scale / 2 + 1e-7).all()


def test_absmax_is_exact_on_its_grid_and_survives_zero_rows():
    x = torch.tensor([[-7.0, -3.0, 0.0, 5.0, 7.0], [0.0] * 5]) * 0.25
    q, scale = quant.absmax_quantize(x, 4)
    assert torch.equal(quant.absmax_dequantize(q, scale), x)


def test_zeropoint_represents_zero_exactly_and_uses_the_full_range():
    torch.manual_seed(1)
    x = torch.rand(8, 50) * 3 + 0.5           # all positive: the range is [0, max]
    x[:, 0] = 0.0
    q, scale, zero = quant.zeropoint_quantize(x, 4)
    assert q.dtype == torch.uint8 and q.max() <= 15
    assert (zero == 0).all()
    x_hat = quant.zeropoint_dequantize(q, scale, zero)
    assert (x_hat[:, 0] == 0).all()
    y = torch.randn(8, 50)
    q, scale, zero = quant.zeropoint_quantize(y, 8)
    assert (q.amin(1) == 0).all() and (q.amax(1) == 255).all()
    assert ((quant.zeropoint_dequantize(q, scale, zero) - y).abs() <= scale / 2 + 1e-6).all()


def test_minmax_reproduces_a_q4_1_grid_exactly_and_zeropoint_does_not():
    torch.manual_seed(2)
    d = (torch.rand(64, 1) * 0.01 + 1e-3).half().float()
    m = (-torch.rand(64, 1) * 0.05).half().float()
    q = torch.randint(0, 16, (64, 32)).float()
    q[:, 0], q[:, 1] = 0, 15                     # like Q4_1: min and max are on the grid ends
    w = q * d + m
    view = quant.to_groups(w.reshape(32, 64), "group", 32)
    codes, scale, offset = quant.quantize_view(view, Scheme(4, "minmax", "group", 32))
    assert torch.equal(quant.dequantize_view(codes, scale, offset,
                                             Scheme(4, "minmax", "group", 32)), view)
    zp = quant.fake_quantize(w.reshape(32, 64), Scheme(4, "zeropoint", "group", 32))
    assert quant.relative_error(w.reshape(32, 64), zp) > 1e-3


def test_nf4_codebook_from_normal_quantiles_matches_bitsandbytes_table():
    rebuilt = quant.nf4_codebook_from_normal()
    assert torch.allclose(rebuilt, quant.NF4_CODEBOOK, atol=1e-6)
    assert quant.NF4_CODEBOOK[7] == 0
    assert quant.NF4_CODEBOOK.min() == -1 and quant.NF4_CODEBOOK.max() == 1


def test_nf4_picks_the_nearest_level():
    torch.manual_seed(3)
    x = torch.randn(4, 64)
    index, absmax = quant.nf4_quantize(x)
    normed = x / absmax
    chosen = quant.NF4_CODEBOOK[index.long()]
    best = (normed.unsqueeze(-1) - quant.NF4_CODEBOOK).abs().min(-1).values
    assert torch.allclose((normed - chosen).abs(), best)


def test_nf4_matches_bitsandbytes_blockwise_quantization():
    bnb_functional = pytest.importorskip("bitsandbytes.functional")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    torch.manual_seed(4)
    w = torch.randn(32, 128) * 0.02
    packed, state = bnb_functional.quantize_4bit(w, blocksize=64, quant_type="nf4")
    theirs = bnb_functional.dequantize_4bit(packed, state)
    view = quant.to_groups(w, "group", 64)
    ours = quant.from_groups(quant.nf4_dequantize(*quant.nf4_quantize(view)), w.shape, "group", 64)
    agree = torch.isclose(ours, theirs, atol=1e-6).float().mean()
    assert agree > 0.99, agree  # ties between two levels may be broken differently


# ------------------------------------------------------------------------- granularity
@pytest.mark.parametrize("granularity,group,rows", [("tensor", 32, 1), ("channel", 32, 6),
                                                     ("group", 32, 24), ("group", 30, 24),
                                                     ("group", 128, 6)])
def test_views_round_trip_with_padding(granularity, group, rows):
    torch.manual_seed(5)
    w = torch.randn(6, 100)
    view = quant.to_groups(w, granularity, group)
    assert view.shape[0] == rows
    assert torch.equal(quant.from_groups(view, w.shape, granularity, group), w)


def test_padding_repeats_the_last_value_so_it_never_changes_the_scale():
    w = torch.tensor([[1.0, -2.0, 0.5]])
    view = quant.to_groups(w, "group", 4)
    assert view.tolist() == [[1.0, -2.0, 0.5, 0.5]]
    with pytest.raises(ValueError):
        quant.to_groups(w, "rows", 4)
    with pytest.raises(ValueError):
        quant.to_groups(torch.zeros(2, 3, 4), "group", 4)


def test_finer_granularity_gives_smaller_error():
    torch.manual_seed(6)
    # rows of very different scale
    w = torch.randn(64, 256) * torch.logspace(-2, 0, 64).unsqueeze(1)
    errors = [quant.relative_error(w, quant.fake_quantize(w, Scheme(4, "absmax", g, 32)))
              for g in ("tensor", "channel", "group")]
    assert errors[0] > errors[1] > errors[2]


# ------------------------------------------------------------------------- packing
@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_pack_unpack_round_trip(n):
    torch.manual_seed(n)
    q = torch.randint(0, 16, (3, n), dtype=torch.uint8)
    packed = quant.pack_int4(q)
    assert packed.shape == (3, (n + 1) // 2) and packed.dtype == torch.uint8
    assert torch.equal(quant.unpack_int4(packed, n), q)


def test_pack_layout_low_nibble_first():
    assert quant.pack_int4(torch.tensor([1, 2, 15, 0], dtype=torch.uint8)).tolist() == [0x21, 0x0F]
    with pytest.raises(TypeError):
        quant.pack_int4(torch.tensor([1, 2]))


# ------------------------------------------------------------------------- schemes
def test_scheme_validation_and_storage_cost():
    with pytest.raises(ValueError):
        Scheme(8, "nf4")
    with pytest.raises(ValueError):
        Scheme(4, "absmax", "rows")
    with pytest.raises(ValueError):
        Scheme(1, "absmax")
    assert Scheme(4, "absmax", "group", 128).bits_per_weight() == 4 + 16 / 128
    assert Scheme(4, "minmax", "group", 32).bits_per_weight() == 5.0            # = GGUF Q4_1
    assert Scheme(8, "absmax", "channel").bits_per_weight(576) == 8 + 16 / 576
    assert Scheme(4, "nf4", "group", 64).describe() == "NF4 group-64"


@pytest.mark.parametrize("scheme", [Scheme(8, "absmax", "channel"),
                                    Scheme(8, "zeropoint", "tensor"),
                                    Scheme(4, "absmax", "group", 32),
                                    Scheme(4, "zeropoint", "group", 24),
                                    Scheme(4, "minmax", "group", 32), Scheme(4, "nf4", "group", 64),
                                    Scheme(3, "absmax", "channel")])
def test_quantlinear_computes_with_the_fake_quantized_weight(scheme):
    torch.manual_seed(7)
    linear = torch.nn.Linear(72, 40, bias=True)
    layer = QuantLinear.from_linear(linear, scheme)
    expected = quant.fake_quantize(linear.weight.data, scheme)
    assert torch.allclose(layer.dequantized_weight(), expected, atol=1e-6)
    x = torch.randn(5, 72)
    assert torch.allclose(layer(x), torch.nn.functional.linear(x, expected, linear.bias), atol=1e-5)
    assert scheme.describe() in repr(layer)


def test_quantlinear_really_stores_fewer_bytes():
    linear = torch.nn.Linear(256, 128, bias=False)
    fp32 = weight_bytes(linear)
    int8 = weight_bytes(QuantLinear.from_linear(linear, Scheme(8, "absmax", "channel")))
    int4 = weight_bytes(QuantLinear.from_linear(linear, Scheme(4, "absmax", "group", 128)))
    assert int8 == 256 * 128 + 128 * 2                     # int8 codes + one fp16 scale per row
    assert int4 == 256 * 128 // 2 + 128 * 2 * 2            # two codes per byte + fp16 group scales
    assert fp32 / int4 > 7


# ------------------------------------------------------------------------- whole models
def test_select_linears_skips_the_tied_head_and_filters():
    model = tiny_llama()
    names = quant.select_linears(model)
    assert len(names) == 14 and not any("lm_head" in n for n in names)
    assert all(".self_attn." in n for n in quant.select_linears(model, "attention"))
    assert len(quant.select_linears(model, "mlp")) == 6
    assert quant.select_linears(model, "all but first/last block") == []
    assert quant.select_linears(model, lambda n: n.endswith("down_proj")) == [
        "model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    with pytest.raises(ValueError):
        quant.select_linears(model, "everything")


def test_quantize_model_real_and_fake_agree_and_shrink_the_model():
    ids = torch.randint(0, 128, (1, 16))
    real, fake, ref = tiny_llama(), tiny_llama(), tiny_llama()
    scheme = Scheme(4, "absmax", "group", 32)
    names = quant.quantize_model(real, scheme)
    assert quant.quantize_model(fake, scheme, fake=True) == names
    with torch.no_grad():
        a, b, c = real(ids).logits, fake(ids).logits, ref(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-4)
    assert weight_bytes(real) < weight_bytes(ref)
    assert quant.serialized_bytes(real) < quant.serialized_bytes(ref)
    assert 0 < quant.model_weight_error(ref, real) < 0.2
    assert (quant.model_weight_error(ref, fake)
            == pytest.approx(quant.model_weight_error(ref, real), rel=1e-4))
    assert real.lm_head.weight is real.model.embed_tokens.weight  # the tie survives
