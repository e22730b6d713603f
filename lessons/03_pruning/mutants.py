"""Plausible wrong answers for lesson 03; each passes the visible tests and fails the hidden
ones."""

CONTEXT = "import torch\nimport torch.nn.functional as F\n"

MUTANTS = {
    "magnitude_mask": [
        # Forgets the absolute value: large negative weights are pruned first.
        '''
def magnitude_mask(weight, sparsity):
    n_drop = int(round(sparsity * weight.numel()))
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    if n_drop:
        mask[weight.flatten().argsort()[:n_drop]] = False
    return mask.view(weight.shape)
''',
        # One threshold per row instead of per matrix.
        '''
def magnitude_mask(weight, sparsity):
    n_drop = int(round(sparsity * weight.shape[-1]))
    mask = torch.ones_like(weight, dtype=torch.bool)
    if n_drop:
        mask.scatter_(-1, weight.abs().argsort(dim=-1)[..., :n_drop], False)
    return mask
''',
        # Reads sparsity as the fraction kept.
        '''
def magnitude_mask(weight, sparsity):
    n_keep = int(round(sparsity * weight.numel()))
    mask = torch.zeros(weight.numel(), dtype=torch.bool)
    if n_keep:
        mask[weight.abs().flatten().argsort(descending=True)[:n_keep]] = True
    return mask.view(weight.shape)
''',
        # Threshold comparison: ties all fall on one side, and sparsity 0 breaks.
        '''
def magnitude_mask(weight, sparsity):
    n_drop = int(round(sparsity * weight.numel()))
    threshold = weight.abs().flatten().kthvalue(n_drop).values
    return weight.abs() > threshold
''',
    ],
    "two_four_mask": [
        # Keeps the two largest signed values.
        '''
def two_four_mask(weight):
    if weight.shape[-1] % 4:
        raise ValueError("not a multiple of 4")
    groups = weight.reshape(-1, 4)
    keep = groups.topk(2, dim=1).indices
    return torch.zeros(groups.shape, dtype=torch.bool).scatter_(1, keep, True).view(weight.shape)
''',
        # Keeps everything at least as large as the second largest: ties keep more than two.
        '''
def two_four_mask(weight):
    if weight.shape[-1] % 4:
        raise ValueError("not a multiple of 4")
    groups = weight.abs().reshape(-1, 4)
    second = groups.topk(2, dim=1).values[:, 1:]
    return (groups >= second).view(weight.shape)
''',
        # Never checks the shape (a reshape error is not a ValueError).
        '''
def two_four_mask(weight):
    groups = weight.abs().reshape(-1, 4)
    keep = groups.topk(2, dim=1).indices
    mask = torch.zeros(groups.shape, dtype=torch.bool).scatter_(1, keep, True)
    return mask.view(weight.shape)
''',
    ],
    "select_mlp_channels": [
        # Scores by loudness alone.
        '''
def select_mlp_channels(gate, up, down, hidden_norm, n_keep):
    keep = hidden_norm.topk(n_keep).indices.sort().values
    return gate[keep], up[keep], down[:, keep]
''',
        # Scores by the weights alone.
        '''
def select_mlp_channels(gate, up, down, hidden_norm, n_keep):
    keep = down.norm(dim=0).topk(n_keep).indices.sort().values
    return gate[keep], up[keep], down[:, keep]
''',
        # Right channels, but in score order (the function is the same, the layout is not).
        '''
def select_mlp_channels(gate, up, down, hidden_norm, n_keep):
    keep = (hidden_norm * down.norm(dim=0)).topk(n_keep).indices
    return gate[keep], up[keep], down[:, keep]
''',
    ],
}
