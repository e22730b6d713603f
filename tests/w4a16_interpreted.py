"""The W4A16 kernel (inferlab/compress/w4a16.py) with Triton imported in interpreter mode.

Run by tests/test_w4a16.py in a child process started with ``TRITON_INTERPRET=1``: Triton reads
the flag when it is imported, so here ``@triton.jit`` makes interpreted kernels from the start,
the way Triton documents it - the same kernel that test_w4a16.py runs through
``inferlab.lab.triton_cpu`` in a process where Triton was imported for a GPU.
"""
import os

import pytest
import torch

from inferlab.compress.w4a16 import dequantize_w4, fused_w4a16, pack_w4

pytest.importorskip("triton")
torch.set_num_threads(1)


def test_the_flag_was_set_before_triton_was_imported():
    assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/test_w4a16.py"
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
    assert isinstance(tl.zeros, InterpretedFunction)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m,k,config", [
    (1, 201, None),
    (5, 160, dict(block_m=16, block_n=16, block_k=32, split_k=2, num_warps=4, num_stages=2))])
def test_kernel_matches_pytorch(dtype, m, k, config):
    g = torch.Generator().manual_seed(k)
    packed = pack_w4(torch.randn(40, k, generator=g), 32)
    x = torch.randn(m, k, generator=g).to(dtype)
    want = x.double() @ dequantize_w4(*packed, in_features=k).double().T
    got = fused_w4a16(x, *packed, config=config)
    assert got.dtype == dtype and got.shape == (m, 40)
    tol = (2e-2 if dtype == torch.bfloat16 else 3e-3) * want.abs().max().item()
    assert (got.double() - want).abs().max().item() <= tol
