"""Plausible wrong answers for lesson 01; each passes the visible tests and fails the hidden
ones."""

CONTEXT = ("import torch\nimport torch.nn.functional as F\n"
           "from inferlab.compress.quant import NF4_CODEBOOK\n")

_ABSMAX_DEQ = '''
def absmax_dequantize(q, scale):
    return q.float() * scale
'''
_ZP_DEQ = '''
def zeropoint_dequantize(q, scale, zero):
    return (q.float() - zero) * scale
'''
_FROM_GROUPS = '''
def from_groups(view, shape, granularity="group", group_size=128):
    out, width = shape
    if granularity in ("tensor", "channel"):
        return view.reshape(out, width)
    return view.reshape(out, -1)[:, :width]
'''
_NF4_DEQ = '''
def nf4_dequantize(index, absmax):
    return NF4_CODEBOOK[index.long()] * absmax
'''
_UNPACK = '''
def unpack_int4(packed, n):
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=-1).flatten(-2)[..., :n]
'''

# ------------------------------------------------------------------ exercise 6: the W4A16 kernel
_W4A16 = '''
import torch
import triton
import triton.language as tl

from inferlab.compress.w4a16 import launch_w4a16


@triton.jit
def w4a16_kernel(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, out_ptr, M, N, K,
                 stride_xm, stride_qn, stride_gn, stride_om,
                 GROUP_SIZE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :],
                    mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
        w_mask = (offs_k[:, None] < K) & (offs_n[None, :] < N)
        byte = tl.load(qweight_ptr + offs_n[None, :] * stride_qn + offs_k[:, None] // 2,
                       mask=w_mask, other=0)
        code = (byte >> 4 * (offs_k[:, None] % 2)) & 0xF
        group = offs_n[None, :] * stride_gn + offs_k[:, None] // GROUP_SIZE
        scale = tl.load(scales_ptr + group, mask=w_mask, other=0.0).to(tl.float32)
        zero = tl.load(zeros_ptr + group, mask=w_mask, other=0).to(tl.float32)
        w = (code.to(tl.float32) - zero) * scale
        acc += tl.dot(x, w.to(x.dtype))
    tl.store(out_ptr + offs_m[:, None] * stride_om + offs_n[None, :],
             acc.to(out_ptr.dtype.element_ty),
             mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


def my_w4a16_matmul(x, qweight, scales, zeros, group_size, **launch):
    return launch_w4a16(w4a16_kernel, x, qweight, scales, zeros, group_size, **launch)
'''
_W4A16_SIGNATURE = "def my_w4a16_matmul(x, qweight, scales, zeros, group_size, **launch):\n"
_W4A16_WRAPPER = (_W4A16_SIGNATURE + "    return launch_w4a16(w4a16_kernel, x, qweight, scales, "
                  "zeros, group_size, **launch)\n")


assert _W4A16_WRAPPER in _W4A16


def _wrapper(body: str) -> str:
    """The right kernel with another ``my_w4a16_matmul``."""
    return _W4A16.replace(_W4A16_WRAPPER, _W4A16_SIGNATURE + body)


_W4A16_MUTANTS = [
        # One scale and zero-point per row (group 0's) instead of one per group of k.
        _W4A16.replace("offs_n[None, :] * stride_gn + offs_k[:, None] // GROUP_SIZE",
                       "offs_n[None, :] * stride_gn + 0 * offs_k[:, None]"),
        # Accumulates in float16: small terms vanish next to a large partial sum.
        _W4A16.replace("acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)",
                       "acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float16)").replace(
            "acc += tl.dot(x, w.to(x.dtype))", "acc += tl.dot(x, w.to(x.dtype)).to(tl.float16)"),
        # Off by one on the K tail: k <= K reads one activation and one weight too many.
        _W4A16.replace("offs_k[None, :] < K", "offs_k[None, :] <= K").replace(
            "offs_k[:, None] < K", "offs_k[:, None] <= K"),
        # Ignores pid_m: every program computes the first BLOCK_M rows (right only when M fits
        # one tile, as in the visible test).
        _W4A16.replace("offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)",
                       "offs_m = tl.arange(0, BLOCK_M)"),
        # The shortcut: dequantize the whole weight with PyTorch, then one matmul (no kernel runs).
        _wrapper('''    from inferlab.compress.w4a16 import dequantize_w4
    w = dequantize_w4(qweight, scales, zeros, group_size, x.shape[1])
    return (x.float() @ w.T).to(x.dtype)
'''),
        # The package's own matmul (removed from the package while grading).
        _wrapper('''    from inferlab.compress.w4a16 import w4a16_matmul
    return w4a16_matmul(x, qweight, scales, zeros, group_size)
'''),
        # Hard-coded to the visible example: rebuilds its weight from the seed and answers with it.
        _wrapper('''    from inferlab.compress.w4a16 import dequantize_w4, pack_w4
    torch.manual_seed(0)
    weight = dequantize_w4(*pack_w4(torch.randn(32, 64), 64))
    return (x.float() @ weight.T).half()
'''),
]
_W4A16_SHORTCUTS = [
        # High nibble first: the bytes read in the wrong order.
        _W4A16.replace("(byte >> 4 * (offs_k[:, None] % 2)) & 0xF",
                       "(byte >> 4 * (1 - offs_k[:, None] % 2)) & 0xF"),
        # No zero-point: (code - zero) * scale without the zero.
        _W4A16.replace("w = (code.to(tl.float32) - zero) * scale",
                       "w = code.to(tl.float32) * scale"),
        # A plain Python function instead of a Triton kernel.
        _W4A16.replace("@triton.jit\n", ""),
        # The package's own kernel (its signature differs; it is removed while grading).
        '''
import triton

from inferlab.compress.w4a16 import _w4a16_kernel, launch_w4a16

w4a16_kernel = triton.jit(_w4a16_kernel)


''' + _W4A16_WRAPPER,
]

MUTANTS = {
    "absmax": [
        # One scale for the whole tensor instead of one per row.
        '''
def absmax_quantize(x, bits=8):
    qmax = 2 ** (bits - 1) - 1
    scale = (x.abs().max() / qmax).expand(x.shape[0], 1)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return torch.round(x / scale).clamp(-qmax, qmax).to(torch.int8), scale
''' + _ABSMAX_DEQ,
        # Always the int8 range, whatever ``bits`` says.
        '''
def absmax_quantize(x, bits=8):
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return torch.round(x / scale).clamp(-127, 127).to(torch.int8), scale
''' + _ABSMAX_DEQ,
        # A zero row gets scale 0 (not 1).
        '''
def absmax_quantize(x, bits=8):
    qmax = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=-1, keepdim=True) / qmax
    return torch.nan_to_num(torch.round(x / scale)).clamp(-qmax, qmax).to(torch.int8), scale
''' + _ABSMAX_DEQ,
    ],
    "zeropoint": [
        # The range is [min, max] without forcing it to contain zero.
        '''
def zeropoint_quantize(x, bits=8):
    qmax = 2 ** bits - 1
    lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
    scale = (hi - lo) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zero = torch.round(-lo / scale)
    return (torch.round(x / scale) + zero).clamp(0, qmax).to(torch.uint8), scale, zero
''' + _ZP_DEQ,
        # A fractional zero-point: zero no longer comes back exactly.
        '''
def zeropoint_quantize(x, bits=8):
    qmax = 2 ** bits - 1
    lo = x.amin(dim=-1, keepdim=True).clamp(max=0)
    hi = x.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zero = -lo / scale
    return torch.round(x / scale + zero).clamp(0, qmax).to(torch.uint8), scale, zero
''' + _ZP_DEQ,
        # No guard for a constant row: division by zero.
        '''
def zeropoint_quantize(x, bits=8):
    qmax = 2 ** bits - 1
    lo = x.amin(dim=-1, keepdim=True).clamp(max=0)
    hi = x.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / qmax
    zero = torch.round(-lo / scale).clamp(0, qmax)
    return (torch.round(x / scale) + zero).clamp(0, qmax).to(torch.uint8), scale, zero
''' + _ZP_DEQ,
    ],
    "groups": [
        # Pads with zeros instead of the row's last value.
        '''
def to_groups(w, granularity="group", group_size=128):
    if granularity == "tensor":
        return w.reshape(1, -1)
    if granularity == "channel":
        return w
    if granularity != "group":
        raise ValueError(granularity)
    pad = (-w.shape[1]) % group_size
    return F.pad(w, (0, pad)).reshape(-1, group_size)
''' + _FROM_GROUPS,
        # Groups run down the output dimension (columns) instead of along a row.
        '''
def to_groups(w, granularity="group", group_size=128):
    if granularity == "tensor":
        return w.reshape(1, -1)
    if granularity == "channel":
        return w
    if granularity != "group":
        raise ValueError(granularity)
    return w.T.reshape(-1, group_size)


def from_groups(view, shape, granularity="group", group_size=128):
    out, width = shape
    if granularity in ("tensor", "channel"):
        return view.reshape(out, width)
    return view.reshape(width, out).T
''',
        # No padding: only works when the group size divides the width.
        '''
def to_groups(w, granularity="group", group_size=128):
    if granularity == "tensor":
        return w.reshape(1, -1)
    if granularity == "channel":
        return w
    if granularity != "group":
        raise ValueError(granularity)
    return w.reshape(-1, group_size)
''' + _FROM_GROUPS,
    ],
    "nf4": [
        # One absmax for the whole tensor.
        '''
def nf4_quantize(x):
    absmax = x.abs().max().clamp(min=1e-12).expand(x.shape[0], 1)
    distance = ((x / absmax).unsqueeze(-1) - NF4_CODEBOOK).abs()
    return distance.argmin(dim=-1).to(torch.uint8), absmax
''' + _NF4_DEQ,
        # The first level at or above the value (searchsorted) instead of the nearest.
        '''
def nf4_quantize(x):
    absmax = x.abs().amax(dim=-1, keepdim=True)
    absmax = torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    index = torch.searchsorted(NF4_CODEBOOK, (x / absmax).contiguous()).clamp(max=15)
    return index.to(torch.uint8), absmax
''' + _NF4_DEQ,
        # No guard for an all-zero row.
        '''
def nf4_quantize(x):
    absmax = x.abs().amax(dim=-1, keepdim=True)
    distance = ((x / absmax).unsqueeze(-1) - NF4_CODEBOOK).abs()
    return distance.argmin(dim=-1).to(torch.uint8), absmax
''' + _NF4_DEQ,
    ],
    "pack": [
        # The first element in the HIGH nibble (consistent with its own unpack).
        '''
def pack_int4(q):
    if q.shape[-1] % 2:
        q = F.pad(q, (0, 1))
    return (q[..., 0::2] << 4) | q[..., 1::2]


def unpack_int4(packed, n):
    return torch.stack([packed >> 4, packed & 0x0F], dim=-1).flatten(-2)[..., :n]
''',
        # Odd lengths are not padded.
        '''
def pack_int4(q):
    return q[..., 0::2] | (q[..., 1::2] << 4)
''' + _UNPACK,
        # Unpacking ignores ``n`` (keeps the padding code).
        '''
def pack_int4(q):
    if q.shape[-1] % 2:
        q = F.pad(q, (0, 1))
    return q[..., 0::2] | (q[..., 1::2] << 4)


def unpack_int4(packed, n):
    return torch.stack([packed & 0x0F, packed >> 4], dim=-1).flatten(-2)
''',
    ],
    "w4a16_kernel": _W4A16_MUTANTS,
}

# The course's own implementations of the exercises that have another name in the package (those
# with the same name are found by name); removed from the package the sandbox sees while grading.
REFERENCES = {
    "w4a16_kernel": ["inferlab.compress.w4a16:w4a16_matmul",
                     "inferlab.compress.w4a16:fused_w4a16",
                     "inferlab.compress.w4a16:_w4a16_kernel",
                     "inferlab.compress.w4a16:_compiled"],
}

# Shortcuts the *visible* tests already reject (tests/test_notebooks.py checks that they do).
SHORTCUTS = {"w4a16_kernel": _W4A16_SHORTCUTS}
