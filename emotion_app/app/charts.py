"""Plotly figures shared by the app's tabs: probability bars, timelines, confusion matrices."""
from __future__ import annotations

import plotly.graph_objects as go

from ..core.labels import LABELS

COLORS = {"angry": "#d62728", "disgust": "#8c564b", "fear": "#9467bd", "happy": "#f2b701",
          "neutral": "#7f7f7f", "sad": "#1f77b4", "surprise": "#17becf"}


def fit_margins(fig: go.Figure) -> go.Figure:
    """Margins grow to fit tick and axis labels, so a phone-width screen does not cut them."""
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def prob_bars(series: dict[str, dict], title: str = "") -> go.Figure:
    """Grouped bars: one group per emotion, one bar per named source (face, voice, fused...)."""
    fig = go.Figure()
    for name, probs in series.items():
        fig.add_bar(name=name, x=list(LABELS), y=[probs.get(label, 0.0) for label in LABELS],
                    hovertemplate="%{x}: %{y:.1%}<extra>" + name + "</extra>")
    fig.update_layout(title=title, barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%"),
                      height=320, margin=dict(l=40, r=10, t=40, b=30), legend=dict(orientation="h", y=-0.15))
    return fit_margins(fig)


def timeline(points: list[dict], title: str = "", series_name: str = "") -> go.Figure:
    """Emotion probabilities over time; ``points`` have ``start``, ``end`` and ``probs``.
    Each point is drawn as a level line over its span, so a single segment is a bar of
    time, not a dot, and gaps (silence, no face) stay empty."""
    fig = go.Figure()
    xs = [x for p in points for x in (p["start"], p["end"], None)]
    for label in LABELS:
        ys = [y for p in points for y in (p["probs"][label], p["probs"][label], None)]
        fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=label, line=dict(color=COLORS[label], width=2),
                        marker=dict(size=4), legendgroup=label, connectgaps=False,
                        hovertemplate=f"{series_name} {label} " + "%{y:.1%} at %{x:.1f}s<extra></extra>")
    fig.update_layout(title=title, xaxis_title="seconds", yaxis=dict(range=[0, 1], tickformat=".0%"),
                      height=320, margin=dict(l=40, r=10, t=40, b=30),
                      legend=dict(orientation="h", y=-0.25, traceorder="normal"))
    return fit_margins(fig)


def dialogue_arc(turns: list[tuple[str, dict]], title: str = "") -> go.Figure:
    """Stacked probabilities per turn, in order: how a conversation's emotion moves.
    ``turns`` are (hover text, probs) pairs."""
    fig = go.Figure()
    x = list(range(1, len(turns) + 1))
    for label in LABELS:
        fig.add_bar(name=label, x=x, y=[probs.get(label, 0.0) for _, probs in turns], marker_color=COLORS[label],
                    customdata=[text for text, _ in turns],
                    hovertemplate="%{x}. %{customdata}<br>" + label + " %{y:.1%}<extra></extra>")
    fig.update_layout(title=title, barmode="stack", xaxis=dict(title="turn", dtick=1 if len(x) <= 30 else None),
                      yaxis=dict(range=[0, 1], tickformat=".0%"), height=320,
                      margin=dict(l=40, r=10, t=40, b=30), legend=dict(orientation="h", y=-0.2, traceorder="normal"))
    return fit_margins(fig)


def confusion_heatmap(matrix: list[list[int]], title: str = "") -> go.Figure:
    """Row-normalised confusion matrix with raw counts in the hover."""
    rows = [[c / max(sum(r), 1) for c in r] for r in matrix]
    fig = go.Figure(go.Heatmap(z=rows, x=list(LABELS), y=list(LABELS), colorscale="Blues", zmin=0, zmax=1,
                               customdata=matrix, hovertemplate="true %{y}, predicted %{x}: %{customdata} "
                                                                "(%{z:.0%})<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      height=380, margin=dict(l=60, r=10, t=40, b=40))
    return fit_margins(fig)


def rounds_chart(rows: list[dict], title: str = "") -> go.Figure:
    """A queue's learning loop: labels collected per round (bars) and, per round's model,
    its accuracy on the agreed labels, its validation F1 and the share of its
    pre-annotations annotators changed (lines, 0-1)."""
    names = [row["model"] for row in rows]
    fig = go.Figure(go.Bar(x=names, y=[row["labels"] for row in rows], name="labels collected", opacity=0.5))
    for key, name in (("agreed_accuracy", "accuracy on agreed labels"), ("validation_f1", "validation F1"),
                      ("changed_share", "pre-annotations changed")):
        fig.add_trace(go.Scatter(x=names, y=[row[key] for row in rows], name=name, mode="lines+markers", yaxis="y2"))
    fig.update_layout(title=title, xaxis_title="round (the model serving pre-annotations)",
                      yaxis={"title": "labels"}, yaxis2={"title": "share", "range": [0, 1], "overlaying": "y",
                                                         "side": "right"},
                      legend={"orientation": "h", "y": -0.3})
    return fit_margins(fig)
