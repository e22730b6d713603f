"""Model compression, implemented from scratch: quantization (01-02), pruning (03),
distillation (04).

See the module map in ``inferlab``'s docstring. Nothing is imported here: import the module
you need, e.g. ``from inferlab.compress.quant import Scheme``.
"""
