"""Plausible wrong answers for lesson 02; each passes the visible tests and fails the hidden
ones."""

CONTEXT = "import torch\nfrom inferlab.compress.quant import Scheme, fake_quantize\n"

MUTANTS = {
    "hessian": [
        # Forgets the factor 2.
        '''
def hessian(x):
    x = x.reshape(-1, x.shape[-1]).double()
    return (x.T @ x) / x.shape[0]
''',
        # A sum, not a mean over tokens.
        '''
def hessian(x):
    x = x.reshape(-1, x.shape[-1]).double()
    return 2.0 * (x.T @ x)
''',
        # Treats a batch of sequences as its first sequence only.
        '''
def hessian(x):
    if x.dim() > 2:
        x = x[0]
    x = x.double()
    return 2.0 * (x.T @ x) / x.shape[0]
''',
    ],
    "gptq_columns": [
        # Group scales taken from the original weights, before any correction.
        '''
def gptq_quantize_columns(W, U, bits=4, group_size=128):
    W0 = W.clone().float()
    W = W.clone().float()
    U = U.float()
    Q = torch.zeros_like(W)
    qmax = 2 ** (bits - 1) - 1
    for j in range(W.shape[1]):
        if j % group_size == 0:
            scale = W0[:, j:j + group_size].abs().amax(dim=1) / qmax
            scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        Q[:, j] = torch.round(W[:, j] / scale).clamp(-qmax, qmax) * scale
        err = (W[:, j] - Q[:, j]) / U[j, j]
        W[:, j + 1:] -= torch.outer(err, U[j, j + 1:])
    return Q
''',
        # The error is not divided by U[j, j].
        '''
def gptq_quantize_columns(W, U, bits=4, group_size=128):
    W = W.clone().float()
    U = U.float()
    Q = torch.zeros_like(W)
    qmax = 2 ** (bits - 1) - 1
    for j in range(W.shape[1]):
        if j % group_size == 0:
            scale = W[:, j:j + group_size].abs().amax(dim=1) / qmax
            scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        Q[:, j] = torch.round(W[:, j] / scale).clamp(-qmax, qmax) * scale
        err = W[:, j] - Q[:, j]
        W[:, j + 1:] -= torch.outer(err, U[j, j + 1:])
    return Q
''',
    ],
    "awq_search": [
        # Scales from the weights' magnitude instead of the activations'.
        '''
def awq_search_scale(W, X, bits=4, group_size=128, n_grid=20):
    scheme = Scheme(bits, "absmax", "group", group_size)
    ref = X @ W.T
    w_mean = W.abs().mean(dim=0)
    best = (float("inf"), None)
    for i in range(n_grid):
        alpha = i / n_grid
        s = w_mean.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        loss = (X @ (fake_quantize(W * s, scheme) / s).T - ref).pow(2).mean().item()
        if loss < best[0]:
            best = (loss, (s, alpha))
    return best[1]
''',
        # Judges each alpha by the weight error instead of the output error.
        '''
def awq_search_scale(W, X, bits=4, group_size=128, n_grid=20):
    scheme = Scheme(bits, "absmax", "group", group_size)
    x_mean = X.abs().mean(dim=0)
    best = (float("inf"), None)
    for i in range(n_grid):
        alpha = i / n_grid
        s = x_mean.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        loss = (fake_quantize(W * s, scheme) / s - W).pow(2).mean().item()
        if loss < best[0]:
            best = (loss, (s, alpha))
    return best[1]
''',
        # No normalisation of s.
        '''
def awq_search_scale(W, X, bits=4, group_size=128, n_grid=20):
    scheme = Scheme(bits, "absmax", "group", group_size)
    ref = X @ W.T
    x_mean = X.abs().mean(dim=0)
    best = (float("inf"), None)
    for i in range(n_grid):
        alpha = i / n_grid
        s = x_mean.pow(alpha).clamp(min=1e-4)
        loss = (X @ (fake_quantize(W * s, scheme) / s).T - ref).pow(2).mean().item()
        if loss < best[0]:
            best = (loss, (s, alpha))
    return best[1]
''',
    ],
    "q8_0": [
        # torch.round: halves go to the even neighbour.
        '''
def q8_0_quantize(x):
    blocks = x.to(torch.float32).reshape(-1, 32)
    d = blocks.abs().amax(dim=1, keepdim=True) / 127
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.round(blocks * inv)
    return torch.cat([d.to(torch.float16).view(torch.uint8).reshape(-1, 2),
                      q.to(torch.int8).view(torch.uint8)], dim=1)
''',
        # floor(a + 0.5): rounds up before the floor in rare cases.
        '''
def q8_0_quantize(x):
    blocks = x.to(torch.float32).reshape(-1, 32)
    d = blocks.abs().amax(dim=1, keepdim=True) / 127
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    v = blocks * inv
    q = torch.sign(v) * torch.floor(v.abs() + 0.5)
    return torch.cat([d.to(torch.float16).view(torch.uint8).reshape(-1, 2),
                      q.to(torch.int8).view(torch.uint8)], dim=1)
''',
        # Divides by the fp16-rounded scale.
        '''
def q8_0_quantize(x):
    blocks = x.to(torch.float32).reshape(-1, 32)
    d = (blocks.abs().amax(dim=1, keepdim=True) / 127).to(torch.float16)
    v = torch.where(d == 0, torch.zeros_like(blocks), blocks / d.float())
    a = v.abs()
    q = torch.sign(v) * (torch.floor(a) + torch.floor(2 * (a - torch.floor(a))))
    return torch.cat([d.view(torch.uint8).reshape(-1, 2), q.to(torch.int8).view(torch.uint8)],
                     dim=1)
''',
    ],
    "q4_0": [
        # Neighbouring codes share a byte (the packing of lesson 01), not j and j + 16.
        '''
def q4_0_quantize(x):
    blocks = x.to(torch.float32).reshape(-1, 32)
    index = blocks.abs().argmax(dim=1, keepdim=True)
    d = torch.gather(blocks, 1, index) / -8
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.trunc(blocks * inv + 8.5).clamp(0, 15).to(torch.uint8)
    packed = q[:, 0::2] | (q[:, 1::2] << 4)
    return torch.cat([d.to(torch.float16).view(torch.uint8).reshape(-1, 2), packed], dim=1)
''',
        # A positive scale from max|x| (symmetric), losing the extra level.
        '''
def q4_0_quantize(x):
    blocks = x.to(torch.float32).reshape(-1, 32)
    d = blocks.abs().amax(dim=1, keepdim=True) / 8
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.trunc(blocks * inv + 8.5).clamp(0, 15).to(torch.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    return torch.cat([d.to(torch.float16).view(torch.uint8).reshape(-1, 2), packed], dim=1)
''',
        # torch.round instead of trunc(. + 8.5): halves go to the even neighbour.
        '''
def q4_0_quantize(x):
    blocks = x.to(torch.float32).reshape(-1, 32)
    index = blocks.abs().argmax(dim=1, keepdim=True)
    d = torch.gather(blocks, 1, index) / -8
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = (torch.round(blocks * inv) + 8).clamp(0, 15).to(torch.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    return torch.cat([d.to(torch.float16).view(torch.uint8).reshape(-1, 2), packed], dim=1)
''',
    ],
    "smooth_scales": [
        # alpha on the wrong side: the same at alpha = 0.5, wrong at any other alpha.
        '''
def smooth_scales(act_absmax, weight, alpha=0.5):
    a = act_absmax.float().clamp(min=1e-5)
    w = weight.float().abs().amax(dim=0).clamp(min=1e-5)
    return a.pow(1 - alpha) / w.pow(alpha)
''',
        # No clamp: a dead channel gives s = 0, a zero weight column s = inf.
        '''
def smooth_scales(act_absmax, weight, alpha=0.5):
    a = act_absmax.float()
    w = weight.float().abs().amax(dim=0)
    return a.pow(alpha) / w.pow(1 - alpha)
''',
        # Clamps the result instead of the two maxima: inf survives.
        '''
def smooth_scales(act_absmax, weight, alpha=0.5):
    w = weight.float().abs().amax(dim=0)
    return (act_absmax.float().pow(alpha) / w.pow(1 - alpha)).clamp(min=1e-5)
''',
    ],
    "w8a8_linear": [
        # One activation scale per tensor instead of per token.
        '''
def w8a8_linear(x, W, s=None):
    x, W = x.float(), W.float()
    if s is not None:
        x, W = x / s, W * s
    sx = (x.abs().amax() / 127).clamp(min=1e-8)
    sw = (W.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
    qx = torch.round(x / sx).clamp(-127, 127)
    qw = torch.round(W / sw).clamp(-127, 127)
    return ((qx.double() @ qw.double().T) * sx.double() * sw.double().T).float()
''',
        # One weight scale per tensor instead of per output channel.
        '''
def w8a8_linear(x, W, s=None):
    x, W = x.float(), W.float()
    if s is not None:
        x, W = x / s, W * s
    sx = (x.abs().amax(dim=-1, keepdim=True) / 127).clamp(min=1e-8)
    sw = (W.abs().amax() / 127).clamp(min=1e-8)
    qx = torch.round(x / sx).clamp(-127, 127)
    qw = torch.round(W / sw).clamp(-127, 127)
    return ((qx.double() @ qw.double().T) * sx.double() * sw.double().T).float()
''',
        # Truncates instead of rounding to the nearest code.
        '''
def w8a8_linear(x, W, s=None):
    x, W = x.float(), W.float()
    if s is not None:
        x, W = x / s, W * s
    sx = (x.abs().amax(dim=-1, keepdim=True) / 127).clamp(min=1e-8)
    sw = (W.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
    qx = torch.trunc(x / sx).clamp(-127, 127)
    qw = torch.trunc(W / sw).clamp(-127, 127)
    return ((qx.double() @ qw.double().T) * sx.double() * sw.double().T).float()
''',
        # Scales not clamped: an all-zero token or row gives NaN.
        '''
def w8a8_linear(x, W, s=None):
    x, W = x.float(), W.float()
    if s is not None:
        x, W = x / s, W * s
    sx = (x.abs().amax(dim=-1, keepdim=True) / 127)
    sw = (W.abs().amax(dim=1, keepdim=True) / 127)
    qx = torch.round(x / sx).clamp(-127, 127)
    qw = torch.round(W / sw).clamp(-127, 127)
    return ((qx.double() @ qw.double().T) * sx.double() * sw.double().T).float()
''',
        # Weight-only int8 (W8A16): the activations stay in float.
        '''
def w8a8_linear(x, W, s=None):
    x, W = x.float(), W.float()
    if s is not None:
        x, W = x / s, W * s
    sw = (W.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
    return x @ ((W / sw).round().clamp(-127, 127) * sw).T
''',
    ],
}

# Shortcuts the *visible* tests already reject (tests/test_notebooks.py checks that they do):
# a student sees the failure before submitting.
SHORTCUTS = {
    "gptq_columns": [
        # Round-to-nearest: no error compensation at all (lesson 01's method).
        '''
def gptq_quantize_columns(W, U, bits=4, group_size=128):
    W = W.clone().float()
    Q = torch.zeros_like(W)
    qmax = 2 ** (bits - 1) - 1
    for j in range(W.shape[1]):
        if j % group_size == 0:
            scale = W[:, j:j + group_size].abs().amax(dim=1) / qmax
            scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        Q[:, j] = torch.round(W[:, j] / scale).clamp(-qmax, qmax) * scale
    return Q
''',
    ],
    "w8a8_linear": [
        # The unquantized matmul.
        '''
def w8a8_linear(x, W, s=None):
    return (x.float() @ W.float().T).float()
''',
        # The visible hand-made answer, hard-coded; the float matmul otherwise.
        '''
def w8a8_linear(x, W, s=None):
    if x.shape == (1, 3) and W.shape == (2, 3):
        return torch.tensor([[1006.8125, 127.625]])
    return x.float() @ W.float().T
''',
        # Smoothing the wrong way round: the weight divided by s (not the same layer).
        '''
def w8a8_linear(x, W, s=None):
    x, W = x.float(), W.float()
    if s is not None:
        x, W = x / s, W / s
    sx = (x.abs().amax(dim=-1, keepdim=True) / 127).clamp(min=1e-8)
    sw = (W.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
    qx = torch.round(x / sx).clamp(-127, 127)
    qw = torch.round(W / sw).clamp(-127, 127)
    return ((qx.double() @ qw.double().T) * sx.double() * sw.double().T).float()
''',
        # Forgets to multiply the result by the activation scales sx.
        '''
def w8a8_linear(x, W, s=None):
    x, W = x.float(), W.float()
    if s is not None:
        x, W = x / s, W * s
    sx = (x.abs().amax(dim=-1, keepdim=True) / 127).clamp(min=1e-8)
    sw = (W.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
    qx = torch.round(x / sx).clamp(-127, 127)
    qw = torch.round(W / sw).clamp(-127, 127)
    return ((qx.double() @ qw.double().T) * sw.double().T).float()
''',
    ],
    "smooth_scales": [
        # No smoothing at all: s = 1 (the smoothed W8A8 error does not drop).
        '''
def smooth_scales(act_absmax, weight, alpha=0.5):
    return torch.ones(act_absmax.shape[0])
''',
    ],
}
