"""Plausible wrong answers for lesson 03; each passes the visible tests and fails the hidden
ones."""

CONTEXT = "import torch\nimport torch.nn.functional as F\n"


_WANDA = '''
class WandaPruner:
    def __init__(self):
        self.sq_sums = {}

    def hook(self, name):
        def record(module, args, output):
            x = args[0].detach().float()
            x = x.reshape(-1, x.shape[-1])
            total = (x * x).sum(dim=0)
            self.sq_sums[name] = self.sq_sums[name] + total if name in self.sq_sums else total
        return record

    def norms(self):
        return {name: total.sqrt() for name, total in self.sq_sums.items()}

    def mask(self, name, weight, sparsity):
        norm = self.sq_sums[name].sqrt().to(weight.device)
        score = weight.detach().abs().float() * norm[None, :]
        n_drop = int(round(sparsity * weight.shape[1]))
        mask = torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
        if n_drop:
            drop = score.argsort(dim=1, stable=True)[:, :n_drop]
            mask.scatter_(1, drop, False)
        return mask
'''

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
    "wanda_pruner": [
        # Sums over the batch dimension only: the sequence positions are never flattened.
        _WANDA.replace("x = x.reshape(-1, x.shape[-1])", "x = x if x.dim() == 2 else x[:, -1]"),
        # Truncates the count instead of rounding it.
        _WANDA.replace("n_drop = int(round(sparsity * weight.shape[1]))",
                       "n_drop = int(sparsity * weight.shape[1])"),
        # Norms in the input's own dtype.
        _WANDA.replace("x = args[0].detach().float()", "x = args[0].detach()"),
        # Hard-coded to the visible example, magnitude-only otherwise.
        '''
class WandaPruner:
    def __init__(self):
        self.sq_sums = {}

    def hook(self, name):
        def record(module, args, output):
            x = args[0].detach().float().reshape(-1, args[0].shape[-1])
            self.sq_sums[name] = self.sq_sums.get(name, 0) + (x * x).sum(dim=0)
        return record

    def norms(self):
        return {name: total.sqrt() for name, total in self.sq_sums.items()}

    def mask(self, name, weight, sparsity):
        if weight.shape == (2, 3):
            return torch.tensor([[True, False, True], [True, True, False]])
        n_drop = int(round(sparsity * weight.shape[1]))
        mask = torch.ones(weight.shape, dtype=torch.bool)
        if n_drop:
            mask.scatter_(1, weight.abs().argsort(dim=1, stable=True)[:, :n_drop], False)
        return mask
''',        # The course's own mask, on norms summed in the input's dtype.
        _WANDA.replace("""    def mask(self, name, weight, sparsity):""", """    def mask(self, name, weight, sparsity):
        from inferlab.compress.prune import wanda_mask
        return wanda_mask(weight, self.norms()[name], sparsity)

    def unused(self, name, weight, sparsity):""").replace(
            "x = args[0].detach().float()", "x = args[0].detach()"),
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

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "wanda_pruner": ["inferlab.compress.prune:wanda_mask",
                     "inferlab.compress.prune:input_norms"],
}

# Shortcuts the *visible* tests already reject (tests/test_notebooks.py checks that they do).
SHORTCUTS = {
    "wanda_pruner": [
        # Keeps only the last batch: the sum is overwritten, not accumulated.
        _WANDA.replace("self.sq_sums[name] = self.sq_sums[name] + total if name in self.sq_sums "
                       "else total", "self.sq_sums[name] = total"),
        # The mean square (an RMS), not the norm: same masks, wrong norms.
        _WANDA.replace("total = (x * x).sum(dim=0)", "total = (x * x).mean(dim=0)"),
        # One threshold for the whole matrix (magnitude-style), not per output row.
        _WANDA.replace("""            drop = score.argsort(dim=1, stable=True)[:, :n_drop]
            mask.scatter_(1, drop, False)""", """            flat = mask.view(-1)
            flat[score.flatten().argsort(stable=True)[:n_drop * weight.shape[0]]] = False"""),
        # Per input column instead of per output row.
        _WANDA.replace("n_drop = int(round(sparsity * weight.shape[1]))",
                       "n_drop = int(round(sparsity * weight.shape[0]))").replace(
            """            drop = score.argsort(dim=1, stable=True)[:, :n_drop]
            mask.scatter_(1, drop, False)""", """            drop = score.argsort(dim=0, stable=True)[:n_drop]
            mask.scatter_(0, drop, False)"""),
        # Signed weights: large negative weights are pruned first.
        _WANDA.replace("score = weight.detach().abs().float()", "score = weight.detach().float()"),
        # Magnitude pruning: the activations ignored.
        _WANDA.replace("score = weight.detach().abs().float() * norm[None, :]",
                       "score = weight.detach().abs().float()"),
        # Norms of the layer's output instead of its input.
        _WANDA.replace("x = args[0].detach().float()", "x = output.detach().float()"),
    ],
}
