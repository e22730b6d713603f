"""The quantization panels of lessons 01 and 02 (ipywidgets + plotly).

* ``quantization_panel`` (lesson 01): bits, method, granularity, group size and which layers;
  each "measure" quantizes a fresh copy of the model, measures it and adds a bar to three charts
  (memory, perplexity, decode tokens/s) beside every earlier choice and the fp32 baseline.
* ``layer_panel`` (lesson 02): one Linear of one block, bits and group size; draws the output
  error of round-to-nearest, GPTQ and AWQ on that layer's real calibration inputs.

Panels never die on a bad combination: ``inferlab.lab.widgets.guarded`` prints the reason in the
panel's output area, and a group size that does not divide a layer's width is padded (the panel
says by how much).
"""
from __future__ import annotations

from typing import Callable

import ipywidgets as w
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from inferlab.compress.quant import GRANULARITIES, LAYER_CHOICES, METHODS, Scheme
from inferlab.lab.plots import LAYOUT
from inferlab.lab.widgets import guarded

STYLE = {"description_width": "120px"}


def three_charts(rows: dict[str, dict], title: str = "Quantized models compared") -> go.Figure:
    """Bars of memory (MB), perplexity and decode tokens/s, one bar per row label."""
    labels = list(rows)
    fig = make_subplots(rows=1, cols=3,
                        subplot_titles=("memory (MB)", "perplexity (lower is better)",
                                        "decode tokens/s"))
    for col, key in enumerate(("memory_mb", "perplexity", "decode_tok_s"), start=1):
        values = [rows[label].get(key, float("nan")) for label in labels]
        fig.add_bar(x=labels, y=values, showlegend=False, text=[f"{v:.3g}" for v in values],
                    textposition="auto", row=1, col=col)
    layout = dict(LAYOUT, height=420)
    fig.update_layout(title=title, **layout)
    fig.update_xaxes(tickangle=-35)
    return fig


def padding_note(scheme: Scheme, widths=(576, 1536)) -> str:
    """Say how much a group size that does not divide the layers' widths pads them."""
    if scheme.granularity != "group":
        return ""
    notes = []
    for width in widths:
        pad = (-width) % scheme.group_size
        if pad:
            notes.append(f"width {width} padded to {width + pad} (+{pad / width:.0%} codes)")
    return "group size does not divide every width: " + "; ".join(notes) if notes else ""


def quantization_panel(evaluate: Callable[[Scheme, str], dict], baseline: dict,
                       baseline_label: str = "fp32", widths=(576, 1536),
                       run_now: bool = True) -> w.VBox:
    """``evaluate(scheme, which)`` returns a row with memory_mb, perplexity, decode_tok_s."""
    bits = w.Dropdown(options=[8, 4, 3, 2], value=4, description="bits", style=STYLE)
    method = w.Dropdown(options=list(METHODS), value="absmax", description="method", style=STYLE)
    granularity = w.Dropdown(options=list(GRANULARITIES), value="group", description="scales per",
                             style=STYLE)
    group = w.BoundedIntText(value=128, min=1, max=100_000, description="group size", style=STYLE)
    which = w.Dropdown(options=list(LAYER_CHOICES), value="all", description="layers", style=STYLE)
    button = w.Button(description="measure", button_style="primary", icon="play")
    clear = w.Button(description="clear history")
    output = w.Output(layout=w.Layout(min_height="480px"))
    history: dict[str, dict] = {baseline_label: baseline}

    def render():
        # Scheme() raises an error that explains an invalid combination
        scheme = Scheme(bits.value, method.value, granularity.value, group.value)
        label = (f"{scheme.describe()} ({which.value})" if which.value != "all"
                 else scheme.describe())
        note = padding_note(scheme, widths)
        if note:
            print(note)
        print(f"measuring {label} ...", flush=True)
        row = evaluate(scheme, which.value)
        history[label] = row
        print(f"{label}: perplexity {row['perplexity']:.2f}, {row['memory_mb']:.0f} MB, "
              f"{row.get('decode_tok_s', float('nan')):.1f} tokens/s")
        three_charts(history).show()

    def reset(*_):
        history.clear()
        history[baseline_label] = baseline
        output.clear_output()

    update = guarded(output, render)
    button.on_click(update)
    clear.on_click(reset)
    panel = w.VBox([w.HTML("<b>Quantize the model: choose a scheme, press measure</b>"),
                    w.HBox([w.VBox([bits, method, granularity]),
                            w.VBox([group, which, w.HBox([button, clear])])]),
                    output])
    panel.render, panel.history = update, history
    panel.controls = dict(bits=bits, method=method, granularity=granularity, group_size=group,
                          which=which)
    if run_now:
        update()
    return panel


def layer_panel(compute: Callable[[int, str, int, str], dict[str, float]], n_blocks: int,
                linears: list[str], default_block: int = 5, run_now: bool = True) -> w.VBox:
    """``compute(block, linear, bits, group)`` returns ``{method: relative output error}``;
    ``group`` is a group size as text or ``"per-channel"``."""
    block = w.BoundedIntText(value=min(default_block, n_blocks - 1), min=0, max=n_blocks - 1,
                             description="block", style=STYLE)
    linear = w.Dropdown(options=linears, value=linears[-1], description="layer", style=STYLE)
    bits = w.Dropdown(options=[2, 3, 4, 8], value=4, description="bits", style=STYLE)
    group = w.Dropdown(options=["32", "64", "100", "128", "per-channel"], value="128",
                       description="group size", style=STYLE)
    output = w.Output(layout=w.Layout(min_height="420px"))

    def render():
        errors = compute(block.value, linear.value, bits.value, group.value)
        for name, value in errors.items():
            print(f"{name:>22}: relative output error {value:.4f}")
        fig = go.Figure(go.Bar(x=list(errors), y=list(errors.values()),
                               text=[f"{v:.4f}" for v in errors.values()], textposition="auto"))
        fig.update_layout(title=f"block {block.value} {linear.value}, int{bits.value}, "
                                f"group {group.value}",
                          yaxis_title="||X W^T - X W_hat^T|| / ||X W^T||", **LAYOUT)
        fig.show()

    update = guarded(output, render)
    for control in (block, linear, bits, group):
        control.observe(update, names="value")
    panel = w.VBox([w.HTML("<b>One layer, three quantizers: output error on calibration "
                           "inputs</b>"),
                    w.HBox([w.VBox([block, linear]), w.VBox([bits, group])]), output])
    panel.render = update
    panel.controls = dict(block=block, linear=linear, bits=bits, group=group)
    if run_now:
        update()
    return panel
