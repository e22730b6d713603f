"""ipywidgets panels the notebooks share.

Introduced in lesson 00. A panel is a few controls plus an ``Output`` area; every change re-runs
a computation and redraws a plotly chart in that area. Panels never die on a bad combination:
the error is shown in the output area and the controls keep working.
"""
from __future__ import annotations

from typing import Callable

import ipywidgets as w
from IPython.display import display

from inferlab.lab.plots import grouped_bars


def guarded(output: w.Output, render: Callable[[], None]) -> Callable[..., None]:
    """Wrap ``render`` so that it draws into ``output`` and reports errors there instead of
    raising."""
    def update(*_):
        output.clear_output(wait=True)
        with output:
            try:
                render()
            except Exception as error:  # a panel must survive any input
                print(f"Cannot compute this combination: {error.__class__.__name__}: {error}")
    return update


def cost_calculator(monthly_cost: Callable[..., float], measured_tokens_per_s: float,
                    measured_label: str = "measured here") -> w.VBox:
    """The 1M-queries-a-day scenario of lesson 00 as a panel.

    ``monthly_cost(queries_per_day, tokens_per_query, tokens_per_s, dollars_per_hour,
    utilization)`` is the student's function; the panel compares the cost at the chosen
    throughput with the cost after a chosen speed-up.
    """
    style = {"description_width": "190px"}
    layout = w.Layout(width="520px")
    queries = w.FloatLogSlider(value=1e6, base=10, min=3, max=8, step=0.1, readout_format=".3s",
                               description="queries per day", style=style, layout=layout)
    tokens = w.IntSlider(value=50, min=1, max=2000, description="tokens per query", style=style,
                         layout=layout)
    price = w.FloatSlider(value=2.0, min=0.1, max=12.0, step=0.05, description="GPU $ per hour",
                          style=style, layout=layout)
    source = w.ToggleButtons(options=[measured_label, "entered"], value="entered",
                             description="throughput", style={**style, "button_width": "240px"})
    entered = w.BoundedFloatText(value=round(50e6 / 36000, 1), min=0.01, max=1e7,
                                 description="entered tokens/s", style=style, layout=layout)
    utilization = w.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="utilisation",
                                style=style, layout=layout)
    speedup = w.FloatSlider(value=10.0, min=1.0, max=30.0, step=0.5,
                            description="speed-up from optimizing", style=style, layout=layout)
    output = w.Output(layout=w.Layout(min_height="420px"))

    def render():
        rate = measured_tokens_per_s if source.value == measured_label else entered.value
        before = monthly_cost(queries.value, tokens.value, rate, price.value, utilization.value)
        after = monthly_cost(queries.value, tokens.value, rate * speedup.value, price.value,
                             utilization.value)
        busy_hours = queries.value * tokens.value / (rate * utilization.value) / 3600
        print(f"throughput {rate:,.0f} tokens/s ({source.value}), "
              f"{queries.value * tokens.value:,.0f} tokens/day")
        print(f"GPU-hours per day: {busy_hours:,.1f}"
              + (f"  -> needs {busy_hours / 24:,.1f} GPUs running around the clock"
                 if busy_hours > 24 else ""))
        print(f"monthly cost: ${before:,.0f} now, "
              f"${after:,.0f} after a {speedup.value:g}x speed-up")
        grouped_bars(["now", f"after {speedup.value:g}x"], {"monthly cost ($)": [before, after]},
                     title="Monthly serving cost", yaxis="$ per month").show()

    update = guarded(output, render)
    for control in (queries, tokens, price, source, entered, utilization, speedup):
        control.observe(update, names="value")
    update()
    panel = w.VBox([w.HTML("<b>Serving cost calculator</b>"), queries, tokens, price, source,
                    entered, utilization, speedup, output])
    panel.render = update  # lets a notebook (or a test) redraw on demand
    return panel


def show(panel: w.Widget) -> None:
    display(panel)
