"""The PNG figures of analysis.md, drawn with matplotlib's Agg canvas (no display, no pyplot state).

report.html draws its own, interactive ones (:mod:`knoblab.analysis.figures`). Each
function takes analysis tables and returns a ``Figure``; ``png_bytes`` renders it. One
figure per function: the Pareto front, knob coupling, stacked stage bars, scaling curves
with their fits, and the estimator's parity plot.

Example:
    >>> import pandas as pd
    >>> c = pd.DataFrame({"accuracy": [0.5, 0.8], "latency": [10.0, 20.0], "on_front": [True, True],
    ...                   "label": ["a", "b"]})
    >>> png_bytes(pareto_figure(c, "p95"))[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from knoblab.analysis.figures import (
    MAX_LEGEND,
    STAGE_COLORS,
    group_order,
    log_axis,
    robust_range,
    subsample,
)

# Large sweeps (500 configurations x 1000 samples): a figure shows at most
# figures.MAX_POINTS sample points (a seeded subsample, said in the title), MAX_LABELS
# labels and MAX_BARS bars; drawing 500k points or 500 labels took minutes and shows
# nothing more. The palette, subsample and group order are report.html's (figures.py).
MAX_LABELS = 40
MAX_BARS = 60


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def pareto_figure(front: pd.DataFrame, percentile: str, title: str = "") -> Figure:
    """Accuracy vs latency; the front highlighted, joined and labelled with its knobs (the
    other points unlabelled: with dozens of configurations their labels only collide)."""
    fig = Figure(figsize=(8, 5.5), layout="tight")
    ax = fig.add_subplot()
    off = front[~front["on_front"]]
    on = front[front["on_front"]].sort_values("latency")
    ax.scatter(off["latency"], off["accuracy"], c="#9A9A9A", s=28, label="dominated", zorder=2)
    ax.step(on["latency"], on["accuracy"], where="post", c="#C44E52", lw=1.5, alpha=0.7, zorder=3)
    ax.scatter(
        on["latency"],
        on["accuracy"],
        c="#C44E52",
        s=60,
        edgecolors="black",
        label="Pareto front",
        zorder=4,
    )
    for _, r in on.head(MAX_LABELS).iterrows():
        ax.annotate(
            str(r["label"]),
            (r["latency"], r["accuracy"]),
            xytext=(4, -9),
            textcoords="offset points",
            fontsize=7,
        )
    if log_axis(front["latency"]):
        ax.set_xscale("log")
    ax.set_xlabel(f"T_total {percentile} (ms)")
    ax.set_ylabel("accuracy")
    ax.set_title(title or f"Accuracy vs T_total {percentile}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def coupling_figure(front: pd.DataFrame, knobs: list[str], percentile: str) -> Figure:
    """One panel per knob: the front with the knob held at each value, and the free front dashed."""
    from knoblab.analysis.load import knob_values
    from knoblab.analysis.pareto import pareto_mask

    fig = Figure(figsize=(5 * max(len(knobs), 1), 4.2), layout="tight")
    free = front[front["on_front"]].sort_values("latency")
    for i, knob in enumerate(knobs):
        ax = fig.add_subplot(1, max(len(knobs), 1), i + 1)
        ax.step(
            free["latency"],
            free["accuracy"],
            where="post",
            c="black",
            ls="--",
            lw=1.2,
            label="free",
        )
        for value in knob_values(front, knob):
            sub = front[front[knob] == value]
            m = pareto_mask(sub["accuracy"].to_numpy(float), sub["latency"].to_numpy(float))
            f = sub[m].sort_values("latency")
            ax.step(
                f["latency"],
                f["accuracy"],
                where="post",
                marker="o",
                ms=4,
                lw=1.2,
                label=f"{knob}={value}",
            )
        ax.set_title(f"{knob} held fixed")
        ax.set_xlabel(f"T_total {percentile} (ms)")
        if i == 0:
            ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return fig


def stage_bars_figure(shares: pd.DataFrame) -> Figure:
    """Stacked horizontal bars of mean stage latency per configuration (fastest at the top).

    NOTE: of more than ``MAX_BARS`` configurations, evenly spaced ones in the table's
    order are drawn (the fastest and the slowest among them), and the title says so.
    """
    total = len(shares)
    if total > MAX_BARS:
        shares = shares.iloc[np.unique(np.linspace(0, total - 1, MAX_BARS).round().astype(int))]
    n = len(shares)
    fig = Figure(figsize=(8, max(2.5, 0.28 * n + 1.2)), layout="tight")
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    left = np.zeros(n)
    parts = {
        "vision": shares["T_vision_total_mean"],
        "prefill": shares["T_LLM_prefill_mean"],
        "decode": shares["T_LLM_decode_mean"],
        "other": shares["other_mean"].clip(lower=0),
    }
    for name, vals in parts.items():
        v = vals.to_numpy(float)
        ax.barh(y, v, left=left, color=STAGE_COLORS[name], label=name, height=0.75)
        left += v
    ax.set_yticks(y, shares["label"], fontsize=7)
    ax.set_xlabel("mean latency (ms)")
    shown = f" ({n} of {total}, evenly spaced)" if n < total else ""
    ax.set_title(f"Stage decomposition of T_total per configuration{shown}")
    ax.legend(loc="upper right", fontsize=8)  # the fastest (shortest) bars are at the top
    ax.grid(axis="x", alpha=0.3)
    return fig


def scaling_figure(data: pd.DataFrame, fits: pd.DataFrame) -> Figure:
    """Prefill vs input tokens and decode vs output tokens, per knob group (top_k, blocks, ...) with fit lines."""
    fig = Figure(figsize=(12, 4.6), layout="tight")
    panels = (("prefill", "T_LLM_prefill", "input_tokens", "input tokens (vision + text)"),)
    panels += (("decode", "T_LLM_decode", "output_tokens", "output tokens"),)
    groups = sorted(data["group"].unique(), key=group_order)
    colors = {g: c for g, c in zip(groups, _palette(len(groups)), strict=True)}
    shown = subsample(data)
    legend = len(groups) <= MAX_LEGEND
    for i, (stage, col, x, xlabel) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        # one scatter call for all groups: a call per group cost seconds with 100+ groups
        ax.scatter(shown[x], shown[col], s=6, alpha=0.35, c=[colors[g] for g in shown["group"]])
        span = data.groupby("group")[x].agg(["min", "max"])
        drew = False
        for g in groups:
            lo, hi = span.loc[g, "min"], span.loc[g, "max"]
            f = fits[(fits["stage"] == stage) & (fits["group"] == g)]
            if len(f) and np.isfinite(f.iloc[0]["slope"]):
                r = f.iloc[0]
                xs = np.linspace(lo, hi, 2)
                drew = True
                ax.plot(
                    xs,
                    r["slope"] * xs + r["intercept"],
                    color=colors[g],
                    lw=1.5,
                    label=f"{g}: R²={r['r2']:.3f}" if legend else None,
                )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{col} (ms)")
        pts = f"; {len(shown)} of {len(data)} samples shown" if len(shown) < len(data) else ""
        title = f"{stage} scaling, least-squares fit per knob group{pts}"
        ax.set_title(title if legend else f"{title}\n{len(groups)} groups (no legend)", fontsize=9)
        ax.grid(alpha=0.3)
        if drew and legend:
            ax.legend(fontsize=6, loc="upper left")
        elif not drew:  # e.g. every answer had the same length: nothing to fit against
            ax.text(
                0.5,
                0.95,
                f"{xlabel} constant: no fit",
                transform=ax.transAxes,
                ha="center",
                va="top",
            )
    return fig


def parity_figure(per_sample: pd.DataFrame, per_config: pd.DataFrame, method: str) -> Figure:
    """Predicted vs measured latency for held-out samples (dots) and configurations (diamonds)."""
    targets = ("T_vision_total", "T_LLM_prefill", "T_LLM_decode", "T_total")
    fig = Figure(figsize=(16, 4.2), layout="tight")
    shown = subsample(per_sample)
    for i, t in enumerate(targets):
        ax = fig.add_subplot(1, 4, i + 1)
        ax.scatter(shown[t], shown[f"pred_{t}"], s=5, alpha=0.3, c="#4C72B0", label="samples")
        ax.scatter(
            per_config[t],
            per_config[f"pred_{t}"],
            s=40,
            marker="D",
            c="#C44E52",
            edgecolors="black",
            label="configurations",
        )
        both = np.concatenate([per_sample[t], per_sample[f"pred_{t}"]])
        keep = np.concatenate([per_config[t], per_config[f"pred_{t}"]])
        lo, hi, log = robust_range(both, keep)  # outliers beyond the axes, as in report.html
        xs = np.geomspace(lo, hi, 20) if log else np.array([lo, hi])
        ax.plot(xs, xs, c="black", lw=1)
        ax.plot(xs, xs * 1.1, c="gray", lw=0.8, ls=":")
        ax.plot(xs, xs * 0.9, c="gray", lw=0.8, ls=":", label="±10%")
        ax.set_xlabel(f"measured {t} (ms)")
        ax.set_ylabel("predicted (ms)")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        pad = (hi / lo) ** 0.04 if log else None
        ax.set_xlim(
            *((lo / pad, hi * pad) if pad else (lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo)))
        )
        ax.set_ylim(*ax.get_xlim())
        ax.set_title(t, fontsize=10)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7, loc="upper left")
    pts = (
        f"; {len(shown)} of {len(per_sample)} samples shown" if len(shown) < len(per_sample) else ""
    )
    fig.suptitle(f"Estimator parity ({method}{pts})", fontsize=11)
    return fig


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]
