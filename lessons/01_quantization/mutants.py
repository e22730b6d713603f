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
}
