"""inference lab (inferlab): the helper package of the course on LLM inference optimization.

Each module holds one concept and names the lesson that introduces it. Notebooks import names
explicitly, e.g. ``from inferlab.models import load_model``; importing the package has no side
effects (no model loads, no thread changes).
"""
__version__ = "0.1.0"
