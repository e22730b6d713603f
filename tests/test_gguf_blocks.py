"""inferlab.compress.gguf_blocks: Q8_0/Q4_0 bit-exact against the gguf package, and re-quantized
files."""
import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize, np_roundf, quantize  # noqa: E402

from inferlab.compress import gguf_blocks as gb  # noqa: E402


def awkward_values():
    torch.manual_seed(0)
    x = torch.randn(32, 256) * 0.05
    x[0, :32] = 0.0                                   # an all-zero block
    x[1, :32] = torch.arange(32) * 0.5 - 8            # halves: rounding direction matters
    x[2, 3], x[2, 9] = 0.7, -0.7                      # a tie for the largest magnitude
    x[3, :32] = -torch.linspace(0, 1, 32)             # the extreme value is negative
    x[4, 40] = 1e-30                                  # tiny values
    return x


@pytest.mark.parametrize("ours,qtype", [(gb.q8_0_quantize, T.Q8_0), (gb.q4_0_quantize, T.Q4_0)])
def test_block_quantizers_are_bit_exact(ours, qtype):
    x = awkward_values()
    reference = quantize(x.numpy(), qtype)
    mine = ours(x).numpy().reshape(reference.shape)
    assert np.array_equal(mine, reference)
    assert mine.shape[1] == 256 // 32 * (34 if qtype == T.Q8_0 else 18)


@pytest.mark.parametrize("ours,back,qtype", [(gb.q8_0_quantize, gb.q8_0_dequantize, T.Q8_0),
                                             (gb.q4_0_quantize, gb.q4_0_dequantize, T.Q4_0)])
def test_dequantizers_match(ours, back, qtype):
    x = awkward_values()
    assert np.array_equal(back(ours(x)).numpy(),
                          dequantize(quantize(x.numpy(), qtype), qtype).flatten())


def test_round_half_away_matches_c_roundf_including_the_plus_half_trap():
    v = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, 10.499999, -3.2, 0.0],
                     dtype=torch.float32)
    assert np.array_equal(gb.round_half_away(v).numpy(), np_roundf(v.numpy()))
    trap = torch.tensor([0.49999997], dtype=torch.float32)
    assert torch.floor(trap + 0.5).item() == 1.0 and gb.round_half_away(trap).item() == 0.0


def test_lengths_must_be_whole_blocks():
    with pytest.raises(ValueError):
        gb.q8_0_quantize(torch.zeros(40))


def test_write_requantized_converts_q4_1_to_q8_0(tmp_path):
    torch.manual_seed(1)
    w = (torch.randn(8, 64) * 0.1).numpy()
    src = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(src, arch="llama")
    writer.add_uint32("llama.block_count", 1)
    writer.add_string("general.name", "tiny")
    writer.add_file_type(3)
    writer.add_tensor("blk.0.ffn_up.weight", quantize(w, T.Q4_1), raw_dtype=T.Q4_1)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    dst = gb.write_requantized(src, tmp_path / "tiny-q8.gguf")
    summary = gb.gguf_summary(dst)
    assert summary["metadata"]["general.name"] == "tiny"
    assert summary["metadata"]["general.file_type"] == 7
    assert summary["types"]["Q8_0"]["tensors"] == 1 and summary["types"]["F32"]["tensors"] == 1
    reader = summary["reader"]
    up = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    q41 = dequantize(quantize(w, T.Q4_1), T.Q4_1)
    assert np.array_equal(up.data, quantize(q41, T.Q8_0))
    half_step = np.abs(q41).max() / 127 / 2
    assert np.abs(dequantize(up.data, T.Q8_0) - q41).max() <= half_step * 1.01
