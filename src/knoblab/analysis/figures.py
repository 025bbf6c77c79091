"""The interactive figures of ``report.html``, drawn with plotly (its JavaScript embedded once).

One function per figure; each takes analysis tables and returns a ``plotly`` ``Figure``
whose title or subtitle states its sample count. Rules that keep a page readable from
3 to 100+ configurations:

- Hover labels carry the details (knobs, figures, sample counts, intervals); only the
  Pareto-front points get a visible label, set in a column beside the plot with a leader
  line to its point (:func:`label_slots` spaces them so no two overlap).
- An axis whose values span more than ``LOG_RATIO`` goes logarithmic; the parity plots
  also clip their range to the bulk of the samples and say how many lie beyond.
- A fit is drawn only where its x varies; a panel with none says why in words.
- Error bars come from the confidence intervals (``<field>_<stat>_lo/_hi``,
  ``accuracy_lo/_hi``) when the records carry them, none when they do not.

NOTE: plotly does not move text out of each other's way (matplotlib does not either);
the label column, the fixed heights per row/bar and the short panel titles are what
keeps labels apart. ``tests/analysis/test_report.py`` checks it in headless Chromium.

Example:
    >>> import pandas as pd
    >>> c = pd.DataFrame({"accuracy": [0.5, 0.8], "latency": [10.0, 20.0], "on_front": [True, True],
    ...                   "label": ["a", "b"], "num_valid_samples": [8, 8]})
    >>> fig = pareto(c, "p95", "demo", [])
    >>> [a.text for a in fig.layout.annotations]
    ['a', 'b']
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

STAGE_COLORS = {"vision": "#4C72B0", "prefill": "#DD8452", "decode": "#55A868", "other": "#B0B0B0"}
FRONT, TIED, DOMINATED = "#C44E52", "#E59F2C", "#9A9A9A"
FRONT_BARS, TIED_BARS = "rgba(150,40,45,0.55)", "rgba(229,159,44,0.5)"
FONT = 12
#: Vertical room of one front label (px): more than a 12 px font's line.
LINE_PX = 18
#: Average glyph width of the label font (px per character), to size the label column.
CHAR_PX = 7.0
MAX_LABEL_CHARS = 42
#: An axis whose positive values span more than this ratio is drawn logarithmic.
LOG_RATIO = 20.0
MAX_POINTS = 4000
MAX_LEGEND = 12
#: Stage bars: all configurations up to this many, then evenly spaced ones (said in the title).
MAX_BARS = 150
#: Knob-coupling small multiples: at most this many panels in a row (more values wrap).
COUPLING_COLS = 6
PANEL_PX, PANEL_GAP_PX = 150, 80
CONFIG = {"displaylogo": False, "responsive": True}
#: Subtitles wrap at this many characters (fits a 700 px wide plot at 12 px).
SUBTITLE_CHARS = 95
SUBTITLE_LINE_PX = 16


def to_div(fig: go.Figure, div_id: str) -> str:
    """The figure as an HTML ``<div>`` and its script, without plotly.js (the page has it once)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG)


def plotly_js() -> str:
    """plotly.js itself, to inline once in the page (no network: it ships with the package)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _layout(fig: go.Figure, title: str, subtitle: str, height: int, **margin: int) -> None:
    """Title, subtitle (wrapped; the top margin grows a line per extra line), size, fonts."""
    lines = textwrap.wrap(subtitle, SUBTITLE_CHARS) or [""]
    m = {"l": 70, "r": 30, "t": 80, "b": 60} | margin
    m["t"] += SUBTITLE_LINE_PX * (len(lines) - 1)
    fig.update_layout(
        title={
            "text": html.escape(title),
            "subtitle": {
                "text": "<br>".join(html.escape(x) for x in lines),
                "font": {"size": 12, "color": "#555"},
            },
            "x": 0.0,
            "xanchor": "left",
            "xref": "paper",
            "y": 0.98,
            "yanchor": "top",
            "yref": "container",
            "font": {"size": 15},
        },
        height=height + SUBTITLE_LINE_PX * (len(lines) - 1),
        margin=m,
        font={"size": FONT},
        template="plotly_white",
        hoverlabel={"font": {"size": 12}, "align": "left"},
    )
    # tick labels kept off the axes: where both axes start at a round value (0 and 0) the
    # two corner labels otherwise overlap by a few pixels
    fig.update_xaxes(ticklabelstandoff=3)
    fig.update_yaxes(ticklabelstandoff=5)


def _num(v: Any, digits: int = 3) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if math.isnan(f) else f"{f:.{digits}g}" if abs(f) >= 1000 else f"{f:.{digits}f}"


def interval(frame: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lo, hi)`` of ``col`` from its ``_lo``/``_hi`` columns, None when the records have none."""
    lo, hi = f"{col}_lo", f"{col}_hi"
    if lo not in frame or hi not in frame:
        return None
    a, b = frame[lo].to_numpy(float), frame[hi].to_numpy(float)
    return None if np.isnan(a).all() and np.isnan(b).all() else (a, b)


def _error_bars(
    frame: pd.DataFrame, col: str, values: np.ndarray, color: str = "rgba(60,60,60,0.55)"
) -> dict[str, Any] | None:
    ci = interval(frame, col)
    if ci is None:
        return None
    lo, hi = ci
    return {
        "type": "data",
        "array": np.nan_to_num(hi - values, nan=0.0).clip(min=0),
        "arrayminus": np.nan_to_num(values - lo, nan=0.0).clip(min=0),
        "thickness": 1,
        "width": 3,
        "color": color,
    }


def _with_ci(frame: pd.DataFrame, col: str, i: int, digits: int = 3) -> str:
    v = _num(frame[col].iloc[i], digits)
    ci = interval(frame, col)
    if ci is None:
        return v
    return f"{v} [{_num(ci[0][i], digits)}, {_num(ci[1][i], digits)}]"


def log_axis(values: Sequence[float] | np.ndarray) -> bool:
    """True when the finite values are all positive and span more than ``LOG_RATIO``."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(v.size and v.min() > 0 and v.max() / v.min() > LOG_RATIO)


def log_ticks(lo: float, hi: float) -> dict[str, Any]:
    """Tick spacing of a log axis over [lo, hi] > 0: 1-2-5 per decade up to two decades,
    powers of ten beyond (plotly's default labels every digit and crowds small panels)."""
    decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 3.0
    return {"dtick": "D2" if decades <= 2 else 1}


def _range(lo: float, hi: float, log: bool, pad: float = 0.06) -> list[float]:
    """Axis range with padding; for a log axis in log10 units, as plotly wants it."""
    if log:
        a, b = math.log10(lo), math.log10(hi)
    else:
        a, b = lo, hi
    span = (b - a) or (abs(a) * 0.1 or 1.0)
    return [a - pad * span, b + pad * span]


def _sample_range(frame: pd.DataFrame) -> str:
    n = frame["num_valid_samples"].astype(int) if "num_valid_samples" in frame else pd.Series([])
    if n.empty:
        return ""
    return (
        f"n = {n.min()} samples each" if n.min() == n.max() else f"n = {n.min()}–{n.max()} samples"
    )


def knob_hover(frame: pd.DataFrame, knobs: Sequence[str], percentile: str) -> list[str]:
    """One hover text per configuration: knobs, accuracy and latency with intervals, counts, costs."""
    out = []
    for i in range(len(frame)):
        r = frame.iloc[i]
        lines = [f"<b>{html.escape(str(r['label']))}</b>"]
        lines += [f"{html.escape(k)} = {html.escape(str(r[k]))}" for k in knobs if k in frame]
        lines.append(f"accuracy {_with_ci(frame, 'accuracy', i)}")
        lines.append(f"T_total {percentile} {_with_ci(frame, f'T_total_{percentile}', i)} ms")
        if "T_total_mean" in frame:
            lines.append(f"T_total mean {_with_ci(frame, 'T_total_mean', i)} ms")
        if "num_valid_samples" in frame:
            lines.append(f"n = {int(r['num_valid_samples'])} samples")
        mem = memory_column(frame)
        if mem is not None and np.isfinite(float(r[mem])):
            lines.append(f"peak memory {float(r[mem]) / 2**20:.1f} MiB")
        if bool(r.get("tied_with_front", False)) and not bool(r.get("on_front", False)):
            lines.append("tied with the front within noise")
        out.append("<br>".join(lines))
    return out


def memory_column(frame: pd.DataFrame) -> str | None:
    """The peak-memory column of ``configs`` when the records carry one (issue 15's field)."""
    for c in ("peak_memory_bytes", "peak_memory_bytes_max", "peak_memory_bytes_mean"):
        if c in frame and frame[c].notna().any():
            return c
    return None


def label_slots(wanted: Sequence[float], low: float, high: float, gap: float) -> np.ndarray:
    """Positions as near ``wanted`` as possible, inside [low, high], at least ``gap`` apart.

    Hand-written (plotly has no label placement): labels that would collide merge into
    a cluster centred on their wishes, clusters that then touch merge again, each kept
    inside the range. When they cannot fit (``len * gap > high - low``) they keep ``gap``
    and run past ``high``; callers size the figure so they fit.

    Example:
        >>> label_slots([0.5, 0.5, 0.52], 0.0, 1.0, 0.1).round(3).tolist()
        [0.407, 0.507, 0.607]
    """
    w = np.asarray(wanted, dtype=float)
    order = np.argsort(w, kind="stable")
    lo, hi = low + gap / 2, high - gap / 2
    clusters: list[list[float]] = []  # [start, count, sum of wishes]
    for x in w[order]:
        clusters.append([x, 1, x])
        while True:
            c = clusters[-1]
            c[0] = min(max(c[2] / c[1] - (c[1] - 1) * gap / 2, lo), max(hi - (c[1] - 1) * gap, lo))
            if len(clusters) < 2 or clusters[-2][0] + clusters[-2][1] * gap <= c[0] + 1e-12:
                break
            p = clusters.pop(-2)
            c[1], c[2] = c[1] + p[1], c[2] + p[2]
    y = np.concatenate([c[0] + gap * np.arange(int(c[1])) for c in clusters]) if len(w) else w
    out = np.empty_like(w)
    out[order] = y
    return out


def _short(text: str, n: int = MAX_LABEL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _front_labels(
    fig: go.Figure, on: pd.DataFrame, xr: list[float], yr: list[float], log: bool, plot_px: float
) -> None:
    """Label the front points in a column right of the plot, each with a line to its point."""
    gap = (yr[1] - yr[0]) * LINE_PX / plot_px
    slots = label_slots(on["accuracy"].to_numpy(float), yr[0], yr[1], gap)
    tail = xr[1] + 0.015 * (xr[1] - xr[0])
    for (_, r), y in zip(on.iterrows(), slots, strict=True):
        x = math.log10(r["latency"]) if log else r["latency"]
        fig.add_annotation(
            x=x,
            y=r["accuracy"],
            ax=tail,
            ay=y,
            axref="x",
            ayref="y",
            xanchor="left",
            text=html.escape(_short(str(r["label"]))),
            showarrow=True,
            arrowhead=0,
            arrowwidth=0.8,
            arrowcolor="rgba(196,78,82,0.45)",
            font={"size": FONT - 1, "color": "#222"},
            standoff=4,
        )


def pareto(front: pd.DataFrame, percentile: str, task: str, knobs: Sequence[str]) -> go.Figure:
    """Accuracy against T_total at ``percentile``: the front joined and labelled, the rest on hover.

    Configurations within noise of the front (``tied_with_front``, when the analysis
    marks it) are drawn apart. Error bars (the records' confidence intervals) are drawn on
    the front and tied points only: on every point of a large sweep they hide the points;
    a dominated point's interval is in its hover label.
    """
    lat_col = f"T_total_{percentile}"
    f = front.copy()
    if lat_col not in f:
        f[lat_col] = f["latency"]
    f["hover"] = knob_hover(f, knobs, percentile)
    tied = f.get("tied_with_front", pd.Series(False, index=f.index)).fillna(False).astype(bool)
    groups = (
        ("dominated", f[~f["on_front"] & ~tied], DOMINATED, "circle", 8, None),
        (
            "tied with the front (within noise)",
            f[~f["on_front"] & tied],
            TIED,
            "circle-open",
            10,
            TIED_BARS,
        ),
        ("Pareto front", f[f["on_front"]], FRONT, "circle", 10, FRONT_BARS),
    )
    fig = go.Figure()
    on = f[f["on_front"]].sort_values("latency")
    fig.add_trace(
        go.Scatter(
            x=on["latency"],
            y=on["accuracy"],
            mode="lines",
            line={"shape": "hv", "color": FRONT, "width": 1.5},
            opacity=0.6,
            hoverinfo="skip",
            showlegend=False,
        )
    )
    for name, g, color, symbol, size, bars in groups:
        if g.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=g["latency"],
                y=g["accuracy"],
                mode="markers",
                name=f"{name} ({len(g)})",
                marker={
                    "color": color,
                    "symbol": symbol,
                    "size": size,
                    "line": {"width": 1, "color": "#333"},
                },
                error_x=_error_bars(g, lat_col, g["latency"].to_numpy(float), bars)
                if bars
                else None,
                error_y=_error_bars(g, "accuracy", g["accuracy"].to_numpy(float), bars)
                if bars
                else None,
                hovertext=g["hover"],
                hoverinfo="text",
            )
        )
    log = log_axis(f["latency"])
    barred = f[f["on_front"] | tied]
    xs = np.concatenate([f["latency"].to_numpy(float), *(interval(barred, lat_col) or ())])
    ys = np.concatenate([f["accuracy"].to_numpy(float), *(interval(barred, "accuracy") or ())])
    xs, ys = xs[np.isfinite(xs) & ((xs > 0) | (not log))], ys[np.isfinite(ys)]
    xr = _range(float(xs.min()), float(xs.max()), log)
    yr = _range(float(ys.min()), float(ys.max()), False)
    height = int(max(480, len(on) * LINE_PX * 1.15 + 170))
    label_px = (
        int(min(MAX_LABEL_CHARS, max((len(str(s)) for s in on["label"]), default=4)) * CHAR_PX) + 30
    )
    bars = "no intervals in these records"
    if interval(f, "accuracy") or interval(f, lat_col):
        level = f.get("interval_confidence", pd.Series(dtype=float)).dropna()
        pct = f"{level.iloc[0]:.0%} " if len(level) and level.nunique() == 1 else ""
        bars = f"error bars: {pct}confidence intervals (front and tied points; hover any point)"
    sub = f"{len(f)} configurations, {int(f['on_front'].sum())} on the front; {_sample_range(f)}; {bars}"
    _layout(fig, f"{task}: accuracy vs T_total {percentile}", sub, height, r=label_px, t=75, b=60)
    fig.update_xaxes(
        title_text=f"T_total {percentile} (ms)" + (", log scale" if log else ""),
        type="log" if log else "linear",
        range=xr,
        **(log_ticks(10 ** xr[0], 10 ** xr[1]) if log else {}),
    )
    fig.update_yaxes(title_text="accuracy", range=yr)
    fig.update_layout(
        # top left inside the plot: above-left of a Pareto front no point can lie
        legend={"x": 0.01, "y": 0.99, "xanchor": "left", "yanchor": "top"}
        | {"bgcolor": "rgba(255,255,255,0.85)", "font": {"size": 11}}
    )
    _front_labels(fig, on, xr, yr, log, height - 75 - 60)
    return fig


def _panels(front: pd.DataFrame, knobs: Sequence[str]) -> list[tuple[str, Any, int, int]]:
    """(knob, value, row, col) of each small multiple: a row per knob, wrapping past COUPLING_COLS."""
    from knoblab.analysis.load import knob_values

    out, row = [], 0
    for knob in knobs:
        values = knob_values(front, knob)
        if len(values) < 2:  # held at its only value it is the free front
            continue
        for i, v in enumerate(values):
            if i % COUPLING_COLS == 0:
                row += 1
            out.append((knob, v, row, i % COUPLING_COLS + 1))
    return out


def coupling(
    front: pd.DataFrame, coup: pd.DataFrame, knobs: Sequence[str], percentile: str, task: str
) -> go.Figure:
    """Small multiples: one panel per knob value, its configurations and restricted front
    against the free front (dashed); the panel title gives hv_ratio (restricted / free
    hypervolume: 1.00 = holding the knob there costs nothing)."""
    panels = _panels(front, knobs)
    rows = max((p[2] for p in panels), default=1)
    cols = min(COUPLING_COLS, max((p[3] for p in panels), default=1))
    area = rows * PANEL_PX + (rows - 1) * PANEL_GAP_PX  # the plotting area's height
    hv = {(str(r["knob"]), str(r["value"])): r for _, r in coup.iterrows()}
    titles = [""] * (rows * cols)  # plotly takes them row by row over every cell
    for knob, v, r, c in panels:
        h = hv.get((knob, str(v)))
        ratio = (
            f"<br>hv {h['hv_ratio']:.2f}" if h is not None and np.isfinite(h["hv_ratio"]) else ""
        )
        titles[(r - 1) * cols + c - 1] = html.escape(_short(f"{_knob_short(knob)}={v}", 16)) + ratio
    fig = make_subplots(
        rows=rows,
        cols=cols,
        shared_xaxes=True,
        shared_yaxes=True,
        subplot_titles=titles,
        horizontal_spacing=0.025,
        # in px: room for a panel's tick labels and the two-line title of the one below
        vertical_spacing=PANEL_GAP_PX / area if rows > 1 else 0.0,
    )
    free = front[front["on_front"]].sort_values("latency")
    colors = _palette(max(len(knobs), 1))
    for knob, v, r, c in panels:
        mask = (front[knob] == v).to_numpy()
        _coupling_panel(fig, front, mask, free, colors[list(knobs).index(knob)], (r, c))
    _coupling_axes(fig, panels, rows, cols, front, percentile)
    fixed = [k for k in knobs if k in front and front[k].nunique() < 2]
    sub = (
        f"{len(front)} configurations ({_sample_range(front)}); a panel per knob value: its "
        "configurations and front (colour) against the free front (dashed)"
    )
    sub += f"; fixed, so no panel: {', '.join(fixed)}" if fixed else ""
    title = f"{task}: knob coupling (accuracy vs T_total {percentile})"
    _layout(fig, title, sub, area + 100 + 60, t=100, b=60, r=20)
    fig.update_layout(showlegend=False)  # the subtitle says what the lines are
    return fig


#: A small multiple's hover: the label and the two figures (the Pareto plot has the rest).
HOVER_SHORT = (
    "%{text}<br>accuracy %{y:.3f}<br>T_total %{x:.3f} ms<br>n = %{customdata} samples"
    "<extra></extra>"
)


def _coupling_panel(
    fig: go.Figure,
    front: pd.DataFrame,
    mask: np.ndarray,
    free: pd.DataFrame,
    color: str,
    cell: tuple[int, int],
) -> None:
    """One small multiple: the other configurations grey, the free front dashed, the held
    knob's configurations and their front in colour."""
    from knoblab.analysis.pareto import pareto_mask

    sub = front[mask]
    f = sub[pareto_mask(sub["accuracy"].to_numpy(float), sub["latency"].to_numpy(float))]
    f = f.sort_values("latency")
    traces = (
        go.Scatter(
            x=compact(front["latency"][~mask]),
            y=compact(front["accuracy"][~mask]),
            mode="markers",
            marker={"color": "#D0D0D0", "size": 5},
            hoverinfo="skip",
        ),
        go.Scatter(
            x=free["latency"],
            y=free["accuracy"],
            mode="lines",
            line={"shape": "hv", "dash": "dash", "color": "#333", "width": 1},
            hoverinfo="skip",
        ),
        go.Scatter(
            x=compact(sub["latency"]),
            y=compact(sub["accuracy"]),
            mode="markers",
            marker={"color": color, "size": 6, "opacity": 0.55},
            text=[html.escape(str(x)) for x in sub["label"]],
            customdata=sub["num_valid_samples"] if "num_valid_samples" in sub else None,
            hovertemplate=HOVER_SHORT,
        ),
        go.Scatter(
            x=f["latency"],
            y=f["accuracy"],
            mode="lines+markers",
            line={"shape": "hv", "color": color, "width": 2},
            marker={"size": 7},
            hoverinfo="skip",
        ),
    )
    for t in traces:
        fig.add_trace(t, *cell)


def _coupling_axes(
    fig: go.Figure,
    panels: list[tuple[str, Any, int, int]],
    rows: int,
    cols: int,
    front: pd.DataFrame,
    percentile: str,
) -> None:
    """Empty cells hidden, shared log/linear latency axis, the knob named on each row."""
    used = {(r, c) for _, _, r, c in panels}
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            if (r, c) not in used:
                fig.update_xaxes(visible=False, row=r, col=c)
                fig.update_yaxes(visible=False, row=r, col=c)
    log = log_axis(front["latency"])
    fig.update_xaxes(type="log" if log else "linear", nticks=5, showticklabels=True)
    if log:
        fig.update_xaxes(**log_ticks(float(front["latency"].min()), float(front["latency"].max())))
    fig.update_yaxes(nticks=5)
    for r in range(1, rows + 1):
        knob = next((k for k, _, rr, _ in panels if rr == r), "")
        title = html.escape(_short(_knob_short(knob), 14))
        fig.update_yaxes(title_text=title, title_font={"size": 11}, row=r, col=1)
    for c in range(1, cols + 1):
        fig.update_xaxes(title_text=f"T_total {percentile} (ms)" if c == 1 else "", row=rows, col=c)
    for a in fig.layout.annotations:
        a.font = {"size": 11}


def _knob_short(knob: str) -> str:
    return {"top_k": "top_k", "num_active_blocks": "blocks", "vision_tokens": "V"}.get(knob, knob)


def _palette(n: int) -> list[str]:
    if n <= 10:
        return list(qualitative.D3[:n])
    return sample_colorscale("Viridis", [i / max(n - 1, 1) for i in range(n)])


def _unique_labels(frame: pd.DataFrame) -> list[str]:
    labels = frame["label"].astype(str)
    if labels.duplicated().any() and "config" in frame:
        return [f"{lb} ({c})" for lb, c in zip(labels, frame["config"], strict=True)]
    return labels.tolist()


def stage_bars(shares: pd.DataFrame, configs: pd.DataFrame) -> go.Figure:
    """Stacked horizontal bars of each stage's mean per configuration, fastest on top.

    NOTE: of more than ``MAX_BARS`` configurations, evenly spaced ones in T_total order
    are drawn (the fastest and slowest among them), and the subtitle says so.
    """
    total = len(shares)
    if total > MAX_BARS:
        shares = shares.iloc[np.unique(np.linspace(0, total - 1, MAX_BARS).round().astype(int))]
    s = shares.merge(
        configs.drop(columns=["label"], errors="ignore"),
        on="config",
        how="left",
        suffixes=("", "_c"),
    )
    y = _unique_labels(s)
    parts = {
        "vision": "T_vision_total_mean",
        "prefill": "T_LLM_prefill_mean",
        "decode": "T_LLM_decode_mean",
        "other": "other_mean",
    }
    fig = go.Figure()
    n = s["num_valid_samples"].astype(int).tolist() if "num_valid_samples" in s else [None] * len(s)
    for name, col in parts.items():
        v = s[col].to_numpy(float).clip(min=0) if name == "other" else s[col].to_numpy(float)
        share = s[f"share_{name}"].to_numpy(float) * 100
        text = [
            f"<b>{html.escape(lb)}</b><br>{name}: {vv:.3f} ms ({sh:.1f}% of mean T_total)<br>n = {k} samples"
            for lb, vv, sh, k in zip(y, v, share, n, strict=True)
        ]
        fig.add_trace(
            go.Bar(
                y=y,
                x=v,
                orientation="h",
                name=name,
                marker_color=STAGE_COLORS[name],
                hovertext=text,
                hoverinfo="text",
            )
        )
    err = _error_bars(s, "T_total_mean", s["T_total_mean"].to_numpy(float))
    if err is not None:
        fig.add_trace(
            go.Scatter(
                y=y,
                x=s["T_total_mean"],
                mode="markers",
                marker={"size": 1, "color": "#333"},
                error_x=err,
                name="T_total mean, confidence interval",
                hoverinfo="skip",
            )
        )
    shown = (
        f"; {len(s)} of {total} configurations, evenly spaced"
        if len(s) < total
        else f"; {total} configurations"
    )
    height = int(150 + 16 * len(s))
    _layout(
        fig,
        "Stage decomposition of T_total (mean per stage)",
        f"{_sample_range(s)}{shown}",
        max(height, 320),
        t=95,
        l=20,
    )
    fig.update_layout(
        barmode="stack",
        bargap=0.25,
        legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "traceorder": "normal"}
        | {"xref": "container"},  # the whole width: the bar labels narrow the plot
    )
    fig.update_yaxes(autorange="reversed", automargin=True, tickfont={"size": 10}, dtick=1)
    fig.update_xaxes(title_text="mean latency (ms)")
    return fig


def compact(values: Any) -> np.ndarray:
    """Values as float32: plotly stores arrays as base64 binary, and 4 bytes a number
    (7 significant digits) halve the thousands of sample points of a large report."""
    return np.asarray(values, dtype=np.float32)


def _labels(frame: pd.DataFrame, labels: dict[str, str] | None) -> list[str]:
    """Each row's configuration label (its knobs), escaped; the file stem without a map."""
    names = frame["config"].astype(str)
    return [html.escape(labels.get(c, c) if labels else c) for c in names]


def subsample(frame: pd.DataFrame, n: int = MAX_POINTS) -> pd.DataFrame:
    """At most ``n`` rows, a seeded random subset (the same on every run)."""
    return frame if len(frame) <= n else frame.sample(n=n, random_state=0)


def group_order(group: str) -> list[tuple[int, Any]]:
    """``k=2 B=4`` < ``k=2 B=8`` < ``k=4 B=4`` (numbers as numbers); any other label sorts as text."""
    parts = [p.split("=", 1)[-1] for p in str(group).split()]
    return [(0, float(p)) if p.replace(".", "", 1).lstrip("-").isdigit() else (1, p) for p in parts]


SCALING_PANELS = (
    ("prefill", "T_LLM_prefill", "input_tokens", "input tokens (vision + text)"),
    ("decode", "T_LLM_decode", "output_tokens", "output tokens"),
)


def _no_fit_reason(data: pd.DataFrame, x: str, xlabel: str, hidden: int, groups: int) -> str | None:
    """Words for a panel whose fits are (partly) hidden because x does not vary."""
    vals = data[x].dropna().unique()
    if len(vals) == 0:
        return f"the records give no {xlabel}: nothing to fit"
    if len(vals) == 1:
        return (
            f"every sample has {xlabel} = {_num(vals[0], 0)}: with x constant a line through "
            "the points is undefined, so no fit is drawn"
        )
    if hidden:
        return f"{hidden} of {groups} knob groups have constant {xlabel}: their fit is not drawn"
    return None


def scaling(
    data: pd.DataFrame, fits: pd.DataFrame, labels: dict[str, str] | None = None
) -> go.Figure:
    """Prefill vs input tokens and decode vs output tokens, per knob group, with fit lines
    only where the group's x varies (a panel without any says why)."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1)
    groups = sorted(data["group"].unique(), key=group_order)
    colors = dict(zip(groups, _palette(len(groups)), strict=True))
    legend = len(groups) <= MAX_LEGEND
    shown = subsample(data)
    for i, (stage, col, x, xlabel) in enumerate(SCALING_PANELS, start=1):
        span = data.groupby("group")[x].agg(["min", "max"])
        hidden = 0
        for g in groups:
            pts = shown[shown["group"] == g]
            fig.add_trace(
                go.Scatter(
                    x=compact(pts[x]),
                    y=compact(pts[col]),
                    mode="markers",
                    marker={"size": 5, "color": colors[g], "opacity": 0.45},
                    name=html.escape(g),
                    legendgroup=g,
                    showlegend=legend and i == 1,
                    text=_labels(pts, labels),
                    customdata=pts["sample_id"].astype(str),
                    hovertemplate=f"%{{text}}<br>sample %{{customdata}}<br>{xlabel}: %{{x}}"
                    f"<br>{col}: %{{y:.3f}} ms<extra></extra>",
                ),
                1,
                i,
            )
            f = fits[(fits["stage"] == stage) & (fits["group"] == g)]
            if not len(f) or not np.isfinite(f.iloc[0]["slope"]):
                hidden += 1
                continue
            r = f.iloc[0]
            xs = np.linspace(span.loc[g, "min"], span.loc[g, "max"], 2)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=r["slope"] * xs + r["intercept"],
                    mode="lines",
                    line={"color": colors[g], "width": 1.5},
                    legendgroup=g,
                    showlegend=False,
                    hovertext=f"{html.escape(g)}: {r['slope']:.4g} ms/token, R² {r['r2']:.3f}, n = {int(r['n'])}",
                    hoverinfo="text",
                ),
                1,
                i,
            )
        why = _no_fit_reason(data, x, xlabel, hidden, len(groups))
        if why:
            fig.add_annotation(
                text="<br>".join(html.escape(w) for w in textwrap.wrap(why, 48)),
                xref="x domain" if i == 1 else f"x{i} domain",
                yref="y domain" if i == 1 else f"y{i} domain",
                x=0.5,
                y=0.97,
                yanchor="top",
                showarrow=False,
                font={"size": 11, "color": "#8a4b00"},
                bgcolor="rgba(255,255,255,0.85)",
                align="center",
            )
        fig.update_xaxes(title_text=xlabel, row=1, col=i)
        fig.update_yaxes(title_text=f"{col} (ms)", row=1, col=i)
        if log_axis(data[col]):
            y = data[col][data[col] > 0]
            ticks = log_ticks(float(y.min()), float(y.max()))
            fig.update_yaxes(type="log", title_text=f"{col} (ms, log)", row=1, col=i, **ticks)
    pts = (
        f"{len(shown)} of {len(data)} samples shown"
        if len(shown) < len(data)
        else f"n = {len(data)} samples"
    )
    legend_note = (
        ""
        if legend
        else f"; {len(groups)} knob groups, dark to yellow from {groups[0]} to {groups[-1]}"
        " (hover for each)"
    )
    _layout(
        fig,
        "Scaling with tokens: least-squares fit per knob group",
        f"{pts}{legend_note}",
        470,
        t=90,
    )
    fig.update_layout(legend={"font": {"size": 10}})
    return fig


PARITY_TARGETS = ("T_vision_total", "T_LLM_prefill", "T_LLM_decode", "T_total")


def robust_range(
    values: np.ndarray, keep: np.ndarray, fence: float = 3.0
) -> tuple[float, float, bool]:
    """(low, high, log) of an axis that shows the bulk of ``values`` and all of ``keep``.

    Values beyond Tukey's far fences (``fence`` x the interquartile range past the
    quartiles, taken on log values when all are positive) are outliers: the axis stops
    at the most extreme value inside the fences, so a few outliers no longer squeeze the
    rest into a corner (the caller says how many lie beyond). Log when the shown values
    span more than ``LOG_RATIO``.

    Example:
        >>> robust_range(np.array([1.0, 1.1, 1.2, 1.3, 1.2, 90.0]), np.array([1.15]))
        (1.0, 1.3, False)
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    k = np.asarray(keep, dtype=float)
    k = k[np.isfinite(k)]
    if v.size:
        pos = bool(v.min() > 0)
        t = np.log(v) if pos else v
        q1, q3 = np.quantile(t, [0.25, 0.75])
        inside = v[(t >= q1 - fence * (q3 - q1)) & (t <= q3 + fence * (q3 - q1))]
        v = inside if inside.size else v
    both = np.concatenate([v, k])
    if not both.size:
        return 0.0, 1.0, False
    lo, hi = float(both.min()), float(both.max())
    if hi == lo:  # one value: a small window around it
        lo, hi = (lo * 0.95, hi * 1.05) if lo > 0 else (lo - 1.0, hi + 1.0)
    return lo, hi, bool(lo > 0 and hi / lo > LOG_RATIO)


def parity(
    per_sample: pd.DataFrame, per_config: pd.DataFrame, configs: pd.DataFrame, method: str
) -> go.Figure:
    """Predicted vs measured latency of held-out samples (dots) and configurations (diamonds,
    with the measured mean's interval when recorded), per stage; identity and ±10% lines."""
    shown = subsample(per_sample)
    pc = per_config.merge(configs, on="config", how="left", suffixes=("", "_cfg"))
    labels = dict(zip(configs["config"].astype(str), configs["label"].astype(str), strict=True))
    titles, ranges = [], []
    for t in PARITY_TARGETS:
        meas, pred = per_sample[t], per_sample[f"pred_{t}"]
        keep = np.concatenate([pc[t].to_numpy(float), pc[f"pred_{t}"].to_numpy(float)])
        lo, hi, log = robust_range(np.concatenate([meas, pred]), keep)
        off = int(((meas < lo) | (meas > hi) | (pred < lo) | (pred > hi)).sum())
        ranges.append((lo, hi, log))
        beyond = f" · {off} samples beyond the axes" if off else ""
        titles.append(t + beyond + (" · log" if log else ""))
    fig = make_subplots(
        rows=2, cols=2, subplot_titles=titles, horizontal_spacing=0.1, vertical_spacing=0.16
    )
    for i, (t, (lo, hi, log)) in enumerate(zip(PARITY_TARGETS, ranges, strict=True)):
        r, c = i // 2 + 1, i % 2 + 1
        for trace in _parity_traces(shown, pc, t, (lo, hi, log), i == 0, labels):
            fig.add_trace(trace, r, c)
        rng = _range(lo, hi, log, 0.04)
        axis = {"type": "log" if log else "linear", "range": rng}
        axis |= log_ticks(lo, hi) if log else {}
        fig.update_xaxes(title_text=f"measured {t} (ms)", row=r, col=c, **axis)
        fig.update_yaxes(title_text="predicted (ms)", row=r, col=c, **axis)
    pts = (
        f"{len(shown)} of {len(per_sample)} held-out samples shown"
        if len(shown) < len(per_sample)
        else f"n = {len(per_sample)} held-out samples"
    )
    _layout(
        fig, f"Estimator parity ({method})", f"{pts}, {len(pc)} configurations", 840, t=95, b=110
    )
    legend = {"orientation": "h", "x": 0, "y": 0.0, "yanchor": "bottom", "yref": "container"}
    fig.update_layout(legend=legend)
    for a in fig.layout.annotations:
        a.font = {"size": 12}
    return fig


def _parity_traces(
    shown: pd.DataFrame,
    pc: pd.DataFrame,
    t: str,
    axis: tuple[float, float, bool],
    first: bool,
    names: dict[str, str],
) -> list[go.Scatter]:
    """One parity panel: samples, configuration means (with hover and intervals), the lines."""
    lo, hi, log = axis
    labels = pc["label"].astype(str) if "label" in pc else pc["config"].astype(str)
    meas, pred = pc[t].to_numpy(float), pc[f"pred_{t}"].to_numpy(float)
    text = []
    for j, (lb, m, p) in enumerate(zip(labels, meas, pred, strict=True)):
        mean = _with_ci(pc, f"{t}_mean", j) if f"{t}_mean" in pc else _num(m)
        line = f"<b>{html.escape(lb)}</b><br>measured mean {mean} ms<br>predicted {p:.3f} ms"
        line += f" ({(p / m - 1) * 100:+.1f}%)" if m else ""
        if "num_valid_samples" in pc:
            line += f"<br>n = {int(pc['num_valid_samples'].iloc[j])} samples"
        text.append(line)
    out = [
        go.Scatter(
            x=compact(shown[t]),
            y=compact(shown[f"pred_{t}"]),
            mode="markers",
            marker={"size": 4, "color": "#4C72B0", "opacity": 0.3},
            name="held-out samples",
            legendgroup="s",
            showlegend=first,
            text=_labels(shown, names),
            hovertemplate="%{text}<br>measured %{x:.3f} ms<br>predicted %{y:.3f} ms<extra></extra>",
        ),
        go.Scatter(
            x=meas,
            y=pred,
            mode="markers",
            marker={"symbol": "diamond", "size": 9, "color": FRONT, "line": {"width": 1}},
            error_x=_error_bars(pc, f"{t}_mean", meas),
            name="held-out configurations (mean)",
            legendgroup="c",
            showlegend=first,
            hovertext=text,
            hoverinfo="text",
        ),
    ]
    xs = np.geomspace(lo, hi, 20) if log else np.linspace(lo, hi, 2)
    lines = ((1.0, "solid", "measured = predicted"), (1.1, "dot", "±10%"), (0.9, "dot", "±10%"))
    for k, (factor, dash, name) in enumerate(lines):
        out.append(
            go.Scatter(
                x=xs,
                y=xs * factor,
                mode="lines",
                line={"color": "#333" if k == 0 else "#999", "width": 1, "dash": dash},
                name=name,
                legendgroup=f"l{min(k, 1)}",
                showlegend=first and k < 2,
                hoverinfo="skip",
            )
        )
    return out


def memory(
    front: pd.DataFrame, knobs: Sequence[str], percentile: str, task: str
) -> go.Figure | None:
    """Accuracy against peak memory per configuration, when the records carry memory."""
    col = memory_column(front)
    if col is None:
        return None
    f = front[front[col].notna()]
    mib = f[col].to_numpy(float) / 2**20
    fig = go.Figure(
        go.Scatter(
            x=mib,
            y=f["accuracy"],
            mode="markers",
            marker={
                "size": 9,
                "color": np.where(f["on_front"], FRONT, DOMINATED),
                "line": {"width": 1, "color": "#333"},
            },
            error_y=_error_bars(f, "accuracy", f["accuracy"].to_numpy(float)),
            hovertext=knob_hover(f, knobs, percentile),
            hoverinfo="text",
            showlegend=False,
        )
    )
    log = log_axis(mib)
    sub = f"{len(f)} configurations; {_sample_range(f)}; red: on the latency Pareto front"
    _layout(fig, f"{task}: accuracy vs peak memory ({col})", sub, 420, t=80)
    fig.update_xaxes(
        title_text="peak memory (MiB)" + (", log scale" if log else ""),
        type="log" if log else "linear",
        **(log_ticks(float(np.nanmin(mib)), float(np.nanmax(mib))) if log else {}),
    )
    fig.update_yaxes(title_text="accuracy")
    return fig
