"""Plotly figures the notebooks share (one look across the course).

Introduced in lesson 00. Each function returns a ``plotly.graph_objects.Figure``; notebooks call
``fig.show()``. Keeping them here means every lesson's charts read the same way: measured
values solid, cited/tutorial values hatched or dashed, units in the axis titles.
"""
from __future__ import annotations

import plotly.graph_objects as go

LAYOUT = dict(template="plotly_white", height=380, margin=dict(l=60, r=20, t=60, b=50))


def bars(labels, values, *, title: str, yaxis: str, text=None, colors=None) -> go.Figure:
    """One bar per label."""
    fig = go.Figure(go.Bar(x=list(labels), y=list(values), text=text, marker_color=colors,
                           textposition="auto"))
    fig.update_layout(title=title, yaxis_title=yaxis, **LAYOUT)
    return fig


def grouped_bars(labels, series: dict[str, list], *, title: str, yaxis: str,
                 cited: tuple[str, ...] = ()) -> go.Figure:
    """Bars grouped by label, one colour per series; series named in ``cited`` are hatched."""
    fig = go.Figure()
    for name, values in series.items():
        pattern = dict(shape="/") if name in cited else None
        fig.add_bar(name=name, x=list(labels), y=list(values), marker_pattern=pattern)
    fig.update_layout(title=title, yaxis_title=yaxis, barmode="group", **LAYOUT)
    return fig


def stacked_bars(rows: dict[str, dict[str, float]], *, title: str, xaxis: str) -> go.Figure:
    """Horizontal stacked bars: ``rows[row][part] = value`` (e.g. a latency breakdown)."""
    parts = list(dict.fromkeys(part for row in rows.values() for part in row))
    fig = go.Figure()
    for part in parts:
        fig.add_bar(name=part, y=list(rows), x=[rows[r].get(part, 0.0) for r in rows],
                    orientation="h")
    fig.update_layout(title=title, xaxis_title=xaxis, barmode="stack", **LAYOUT)
    return fig


def lines(x, series: dict[str, list], *, title: str, xaxis: str, yaxis: str,
          log_x: bool = False, log_y: bool = False, markers: bool = True) -> go.Figure:
    """One line per series over a shared x."""
    fig = go.Figure()
    for name, values in series.items():
        fig.add_scatter(name=name, x=list(x), y=list(values),
                        mode="lines+markers" if markers else "lines")
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, **LAYOUT)
    if log_x:
        fig.update_xaxes(type="log")
    if log_y:
        fig.update_yaxes(type="log")
    return fig
