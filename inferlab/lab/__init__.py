"""Lab plumbing every lesson shares: settings, the model, text, timing, quality, records, charts.

See the module map in ``inferlab``'s docstring. Nothing is imported here: import the module
you need, e.g. ``from inferlab.lab.bench import time_fn``.
"""
