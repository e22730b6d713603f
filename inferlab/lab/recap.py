"""What a lesson measured on your machine, gathered as it runs and shown together at its end.

Every lesson measures its claims live, but the figures are spread over many cells. A lesson notes
each headline figure where it measures it, and its last section shows them side by side with the
device each ran on::

    from inferlab.lab import recap
    recap.note("decode, batch 1, fp16", tokens_per_s, "tok/s")
    ...
    recap.show()

Noting the same figure again (a cell run twice) replaces it, so the recap shows the latest run.
In a notebook the recap is also displayed as JSON under ``RECAP_MIME``: tools that execute the
lessons (``benchmarks/lesson_times.py``) read each lesson's figures from the executed notebook.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

RECAP_MIME = "application/vnd.inferlab.recap+json"


@dataclass
class Figure:
    what: str       # what was measured, e.g. "decode, batch 1, fp16"
    value: float
    unit: str       # "tok/s", "x", "GB/s", "%", "ms", ...
    device: str     # where it ran, e.g. "NVIDIA H100 80GB HBM3" or "Intel Xeon (2 threads)"


_figures: dict[str, Figure] = {}


def note(what: str, value: float, unit: str, device=None) -> float:
    """Note a headline figure of this lesson and return ``value`` unchanged. ``device``: a torch
    device, a name, or None for the lesson's default device. A value that is not a finite number
    (a perplexity that overflowed, a timing that failed) is left out with a printed reason: the
    recap never stops a lesson."""
    if not what:
        raise ValueError("a recap figure needs a name")
    number = float(value)
    if not math.isfinite(number):
        _figures.pop(what, None)
        print(f"recap: {what!r} left out, its value is {number} (not a finite number)")
        return value
    _figures[what] = Figure(what, number, unit, _device_label(device))
    return value


def _device_label(device) -> str:
    """A torch device (or its string such as "cuda:0", or None for the lesson's default) as its
    human name; any other string is taken as the name already."""
    if isinstance(device, str) and device.split(":")[0] not in ("cpu", "cuda", "mps", "xpu"):
        return device
    from inferlab.lab.bench import default_device, device_name

    return device_name(default_device() if device is None else device)


def figures() -> list[Figure]:
    """The figures noted so far, in the order first noted."""
    return list(_figures.values())


def clear() -> None:
    _figures.clear()


def format_value(value: float) -> str:
    """Three significant figures, without exponent for everyday sizes: 1,234 / 56.7 / 0.0123."""
    if value == 0 or 1 <= abs(value) < 1e7:
        digits = max(0, 2 - int(math.floor(math.log10(abs(value))))) if value else 0
        return f"{value:,.{digits}f}"
    return f"{value:.3g}"


def table() -> str:
    """The recap as a plain-text table, one figure a line, grouped by device."""
    if not _figures:
        return "Nothing measured yet: run the lesson's cells from the top."
    width = max(len(f.what) for f in _figures.values())
    lines = []
    for device in dict.fromkeys(f.device for f in _figures.values()):
        lines.append(f"Measured on {device}:")
        lines += [f"  {f.what:<{width}}  {format_value(f.value):>10} {f.unit}"
                  for f in _figures.values() if f.device == device]
    return "\n".join(lines)


def show() -> None:
    """Print the recap; in a notebook also attach it as JSON (``RECAP_MIME``) for tools."""
    text = table()
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(text)
        return
    display({"text/plain": text, RECAP_MIME: {"figures": [asdict(f) for f in figures()]}},
            raw=True)


def shown_in(notebook) -> list[dict]:
    """The figures of the last recap shown in an executed notebook (an ``nbformat`` node):
    [{"what", "value", "unit", "device"}, ...], or [] where it shows none."""
    found = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if RECAP_MIME in out.get("data", {}):
                found = out["data"][RECAP_MIME]["figures"]
    return found
