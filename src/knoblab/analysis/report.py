"""Write the analysis as one self-contained HTML file, a Markdown summary, JSON and PNGs.

``report.html`` opens offline: its figures are plotly's (:mod:`knoblab.analysis.figures`),
with plotly.js inlined once in the head, the styles inline, nothing fetched. A small
inline script marks the page ``data-status="ok"`` on the element ``#knoblab-status``
once every plot has drawn its SVG and no script or resource error fired
(``window.onerror`` and error events), so a headless browser can check the page.
``analysis.md`` holds the same tables and links PNGs drawn with matplotlib
(:mod:`knoblab.analysis.plots`); ``analysis.json`` the numbers for scripts;
``estimator.json`` the fitted estimator.

NOTE: files are written to a temporary name and renamed, so a report is never half
written; an existing report in ``out_dir`` is replaced.

Example:
    >>> from knoblab.analysis.synthetic import write_synthetic_results
    >>> from knoblab.analysis.analyze import analyze
    >>> import tempfile
    >>> a = analyze(write_synthetic_results(tempfile.mkdtemp(), num_samples=8), tempfile.mkdtemp())
    >>> sorted(a.files)[:3]
    ['analysis.json', 'analysis.md', 'coupling_shapes-vqa.png']
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from knoblab.analysis import figures, operators, plots, uncertainty
from knoblab.analysis.stages import scaling_data
from knoblab.records.io import jsonable

if TYPE_CHECKING:
    from knoblab.analysis.result import Analysis

STATUS_SCRIPT = """
window.__knoblabErrors = [];
window.onerror = function (msg) { window.__knoblabErrors.push(String(msg)); };
window.addEventListener("error", function (e) {
  var t = e.target || {};
  window.__knoblabErrors.push(t.id ? "failed to load " + t.id : String(e.message || "error"));
}, true);
window.addEventListener("load", function () {
  setTimeout(function () {  // after plotly's first draw
    var divs = document.querySelectorAll("div.plotly-graph-div"), bad = [];
    for (var i = 0; i < divs.length; i++) {
      if (!divs[i].querySelector("svg.main-svg")) { bad.push("not drawn: " + divs[i].id); }
    }
    var errs = bad.concat(window.__knoblabErrors), el = document.getElementById("knoblab-status");
    el.setAttribute("data-plots", String(divs.length));
    el.setAttribute("data-status", errs.length === 0 ? "ok" : "error");
    el.textContent = errs.length === 0 ? "all " + divs.length + " plots drawn" : "problem: " + errs.join("; ");
  }, 0);
});
"""

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
tr.front td { background: #fdecea; font-weight: 600; }
.plot { border: 1px solid #eee; margin: .6em 0; }
.drift { background: #fff4e5; border-left: 4px solid #E59F2C; padding: .6em 1em; }
details summary { cursor: pointer; color: #444; margin: .4em 0; }
.answer { background: #eef6ee; border-left: 4px solid #55A868; padding: .6em 1em; }
.note { color: #666; font-size: .9em; } code { background: #f4f4f4; padding: 0 3px; }
#knoblab-status { color: #888; font-size: .8em; }
"""


#: Tables longer than this are folded under a summary line in report.html.
OPEN_ROWS = 20


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _md_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table (hand-written: pandas needs ``tabulate`` for this)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_fmt(v, digits).replace("|", "\\|") for v in r) + " |")
    return "\n".join(lines)


def _html_table(df: pd.DataFrame, digits: int = 3, highlight: pd.Series | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, (_, r) in enumerate(df.iterrows()):
        cls = ' class="front"' if highlight is not None and bool(highlight.iloc[i]) else ""
        cells = "".join(f"<td>{html.escape(_fmt(v, digits))}</td>" for v in r)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _write_bytes(path: Path, data: bytes) -> None:
    from knoblab.atomic import atomic_write

    atomic_write(path, data)


def _tables(a: Analysis) -> dict[str, Any]:
    """The report's tables, shared by HTML, Markdown and JSON."""
    p = a.percentile
    shares = uncertainty.shares_table(a.shares)  # mean T_total with its [lo, hi] and count
    fitted = np.isfinite(a.fits["slope"].to_numpy(float))
    fits = a.fits[fitted][["stage", "x", "group", "slope", "intercept", "r2", "n"]].rename(
        columns={"slope": "slope (ms/token)", "intercept": "intercept (ms)", "r2": "R²"}
    )
    fronts, coup = {}, {}
    for task, f in a.fronts.items():
        t = uncertainty.front_table(f, p)  # each figure with its [lo, hi] and count
        mem = figures.memory_column(f)
        if mem is not None:
            t["peak memory MiB"] = [f"{v / 2**20:.1f}" for v in f[mem]]
        fronts[task] = t
        c = a.coupling[task].copy()
        coup[task] = c[
            [
                "knob",
                "value",
                "n_configs",
                "n_front",
                "n_on_free_front",
                "hypervolume",
                "hv_ratio",
                "acc_max",
                "latency_min",
            ]
        ]
    metrics = a.evaluation.metrics if a.evaluation is not None else pd.DataFrame()
    unfit = a.fits[~fitted]
    no_fit = (
        f"{len(unfit)} fit(s) left out: x does not vary within the group "
        f"({', '.join(sorted(set(unfit['stage'] + ' vs ' + unfit['x'])))}), so no line is defined"
        if len(unfit)
        else ""
    )
    return {
        "shares": shares,
        "fits": fits,
        "no_fit": no_fit,
        "fronts": fronts,
        "coupling": coup,
        "metrics": metrics,
    }


def drift_message(a: Analysis) -> str | None:
    """The drift warning of ``environment.json`` (``drift.detected``), None when there is none."""
    d = a.results.environment.get("drift")
    if not isinstance(d, dict) or not d.get("detected"):
        return None
    if d.get("message"):
        return str(d["message"])
    mag, noise = d.get("magnitude"), d.get("noise")
    if isinstance(mag, (int, float)) and isinstance(noise, (int, float)):
        return f"timing drift of {mag:.0%} over the sweep, above its noise of {noise:.0%}"
    return "timing drift detected over the sweep"


def _png_figures(a: Analysis) -> dict[str, tuple[Any, str]]:
    """The matplotlib figures behind ``analysis.md``'s PNGs: name -> (figure, caption)."""
    p = a.percentile
    figs: dict[str, Any] = {}
    for task, front in a.fronts.items():
        title = f"{task}: accuracy vs T_total {p}"
        figs[f"pareto_{_slug(task)}"] = (
            plots.pareto_figure(front, p, title),
            f"Pareto front — {task}",
        )
        figs[f"coupling_{_slug(task)}"] = (
            plots.coupling_figure(front, a.results.knobs, p),
            f"Knob coupling — {task}",
        )
    figs["stages"] = (plots.stage_bars_figure(a.shares), "Stage decomposition")
    figs["scaling"] = (plots.scaling_figure(scaling_data(a.results), a.fits), "Scaling with tokens")
    if a.evaluation is not None:
        ev = a.evaluation
        figs["parity"] = (
            plots.parity_figure(ev.per_sample, ev.per_config, ev.method),
            "Estimator parity",
        )
    return figs


def _interactive(a: Analysis) -> dict[str, str]:
    """The plotly figures of ``report.html`` as ``<div>`` blocks: name -> HTML."""
    p, knobs, cfg = a.percentile, a.results.knobs, a.results.configs
    divs: dict[str, str] = {}
    for task, front in a.fronts.items():
        s = _slug(task)
        divs[f"pareto_{s}"] = figures.to_div(
            figures.pareto(front, p, task, knobs), f"plot-pareto_{s}"
        )
        fig = figures.coupling(front, a.coupling[task], knobs, p, task)
        divs[f"coupling_{s}"] = figures.to_div(fig, f"plot-coupling_{s}")
        mem = figures.memory(front, knobs, p, task)
        if mem is not None:
            divs[f"memory_{s}"] = figures.to_div(mem, f"plot-memory_{s}")
    divs["stages"] = figures.to_div(figures.stage_bars(a.shares, cfg), "plot-stages")
    labels = dict(zip(cfg["config"].astype(str), cfg["label"].astype(str), strict=True))
    fig = figures.scaling(scaling_data(a.results), a.fits, labels)
    divs["scaling"] = figures.to_div(fig, "plot-scaling")
    if a.evaluation is not None:
        ev = a.evaluation
        fig = figures.parity(ev.per_sample, ev.per_config, cfg, ev.method)
        divs["parity"] = figures.to_div(fig, "plot-parity")
    return divs


def write_report(a: Analysis, out_dir: str | Path) -> dict[str, Path]:
    """Write report.html, analysis.md, analysis.json, estimator.json and PNGs; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = a.percentile
    figs = _png_figures(a)
    files: dict[str, Path] = {}
    for name, (fig, _) in figs.items():
        path = out / f"{name}.png"
        _write_bytes(path, plots.png_bytes(fig))
        files[path.name] = path
    tables = _tables(a)
    if a.estimator is not None:
        files["estimator.json"] = a.estimator.save(out / "estimator.json")
    md = _markdown(a, tables, figs)
    _write_bytes(out / "analysis.md", md.encode())
    files["analysis.md"] = out / "analysis.md"
    page = _html(a, tables, _interactive(a))
    _write_bytes(out / "report.html", page.encode())
    files["report.html"] = out / "report.html"
    data = {
        "results_dir": str(a.results.root),
        "percentile": p,
        "knobs": list(a.results.knobs),
        "skipped": [{"name": s.name, "reason": s.reason} for s in a.results.skipped],
        "notes": a.notes,
        "stage_shares": a.shares.to_dict(orient="records"),
        "scaling_fits": a.fits.to_dict(orient="records"),
        "fronts": {
            t: f.drop(columns=["knobs"]).to_dict(orient="records") for t, f in a.fronts.items()
        },
        "coupling": {t: c.to_dict(orient="records") for t, c in a.coupling.items()},
        "hypervolume_reference": {
            t: {"accuracy": r[0], "latency_ms": r[1]} for t, r in a.reference.items()
        },
        "estimator_evaluation": a.estimator.evaluation if a.estimator is not None else None,
        "budget": uncertainty.budget_json(a.budget),
        "memory": memory_rows(a),
        "intervals": uncertainty.uncertainty_json(a.results),
        "operators": operators.to_json(a.operators),
    }
    _write_bytes(out / "analysis.json", json.dumps(jsonable(data), indent=1).encode())
    files["analysis.json"] = out / "analysis.json"
    return dict(sorted(files.items()))


def _env_line(a: Analysis) -> str:
    env = a.results.environment
    keys = (
        "device",
        "device_name",
        "dtype",
        "torch_num_threads",
        "seed",
        "git_revision",
        "world_size",
    )
    parts = [
        f"{k}={env[k]}"
        for k in keys
        if env.get(k) is not None and not isinstance(env[k], (dict, list))
    ]
    pkgs = env.get("packages") if isinstance(env.get("packages"), dict) else {}
    parts += [f"{k} {pkgs[k]}" for k in ("torch", "transformers", "knoblab") if pkgs.get(k)]
    return ", ".join(parts) if parts else "environment.json not found"


def memory_rows(a: Analysis) -> dict[str, list[dict[str, Any]]]:
    """Per task, every configuration's memory and throughput (issue 15's memory axis).

    ``peak_memory_mib``: the configuration's measured peak (GPU: max_memory_allocated; CPU:
    the process's peak resident set; docs/profiling.md "Cost"); ``kv_cache_mib_mean`` the
    analytic KV cache per sample; ``weights_mib``; ``throughput_samples_s`` with its
    interval; ``n`` the samples behind them. Empty when the records carry no memory figure.
    """
    c = a.results.configs
    mem = figures.memory_column(c)
    if mem is None:
        return {}

    def mib(r: pd.Series, key: str) -> float | None:
        v = r.get(key)
        return None if v is None or v != v else float(v) / 2**20

    def num(r: pd.Series, key: str) -> float | None:
        v = r.get(key)
        return None if v is None or v != v else float(v)

    out: dict[str, list[dict[str, Any]]] = {}
    for task, frame in c.groupby("task", sort=False):
        out[str(task)] = [
            {
                "label": r["label"],
                "knobs": dict(r["knobs"]),
                "peak_memory_mib": mib(r, mem),
                "kv_cache_mib_mean": mib(r, "kv_cache_bytes_mean"),
                "weights_mib": mib(r, "weights_bytes_mean"),
                "throughput_samples_s": num(r, "throughput_samples_s_mean"),
                "throughput_samples_s_lo": num(r, "throughput_samples_s_mean_lo"),
                "throughput_samples_s_hi": num(r, "throughput_samples_s_mean_hi"),
                "n": int(r["num_valid_samples"]),
            }
            for _, r in frame.sort_values(mem).iterrows()
        ]
    return out


def _memory_md(a: Analysis) -> list[str]:
    rows = memory_rows(a)
    if not rows:
        return []
    L = [
        "",
        "## Memory and throughput per configuration",
        "",
        "Measured peak memory (GPU: max_memory_allocated; CPU: peak resident set), the "
        "analytic KV cache per sample, the weights, and samples/s with its [lo, hi]; n: "
        "samples (docs/profiling.md, Cost).",
    ]
    for task, recs in rows.items():
        df = pd.DataFrame(
            {
                "configuration": [r["label"] for r in recs],
                "peak MiB": [r["peak_memory_mib"] for r in recs],
                "KV cache MiB": [r["kv_cache_mib_mean"] for r in recs],
                "weights MiB": [r["weights_mib"] for r in recs],
                "samples/s [lo, hi]": [
                    "-"
                    if r["throughput_samples_s"] is None
                    else f"{r['throughput_samples_s']:.2f}"
                    + (
                        f" [{r['throughput_samples_s_lo']:.2f}, {r['throughput_samples_s_hi']:.2f}]"
                        if r["throughput_samples_s_lo"] is not None
                        and r["throughput_samples_s_hi"] is not None
                        else ""
                    )
                    for r in recs
                ],
                "n": [r["n"] for r in recs],
            }
        )
        L += ["", f"### {task}", "", _md_table(df, 2)]
    return L


def _intro(a: Analysis) -> list[tuple[str, str]]:
    """(label, text) lines shared by both formats."""
    r = a.results
    c = r.configs
    return [
        ("results", str(r.root)),
        (
            "configurations",
            f"{len(c)} analysed, {len(r.skipped)} left out; {len(r.samples)} per-sample rows",
        ),
        (
            "models / tasks",
            f"{', '.join(sorted(set(map(str, c['model']))))} / {', '.join(a.fronts)}",
        ),
        ("knobs", ", ".join(r.knobs)),
        (
            "latency metric",
            f"T_total {a.percentile} (numpy linear-interpolation percentile, per configuration)",
        ),
        ("intervals", uncertainty.intervals_text(r)),
        ("environment", _env_line(a)),
    ]


def _features_text(a: Analysis) -> list[str]:
    names = a.estimator.feature_names() if a.estimator is not None else {}
    return [f"{s}: {', '.join(n)}" for s, n in names.items()]


def _markdown(a: Analysis, t: dict[str, Any], figs: dict[str, Any]) -> str:
    p = a.percentile
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    L = [f"# knoblab analysis\n\nGenerated {now}.\n"]
    L += [f"- **{k}**: {v}" for k, v in _intro(a)]
    drift = drift_message(a)
    if drift:
        L += ["", f"> **Drift:** {drift}"]
    if a.budget is not None:
        L += [
            "",
            f"## Budget: T_total {p} <= {a.budget.budget_ms:g} ms"
            + (
                f", peak memory <= {a.budget.max_memory_mb:g} MiB"
                if a.budget.max_memory_mb is not None
                else ""
            ),
            "",
            f"**{a.budget.message()}**",
        ]
    L += _memory_md(a)
    if a.results.skipped:
        L += ["", "## Records left out", ""]
        L += [f"- `{s.name}`: {s.reason}" for s in a.results.skipped]
    if a.notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in a.notes]
    L += [
        "",
        "## E1 — stage decomposition",
        "",
        "Mean latency per stage and its share of mean T_total; [lo, hi] is the mean's "
        "confidence interval, n the samples it rests on.",
        "",
    ]
    L += [_md_table(uncertainty.shares_table(a.shares), 2), "", "![stages](stages.png)", ""]
    L += [
        "Scaling fits (least squares within each group of the non-vision knobs, e.g. (top_k, blocks); `all` pools every sample):",
        "",
    ]
    L += [_md_table(t["fits"], 5), ""]
    L += [f"_{t['no_fit']}._", ""] if t["no_fit"] else []
    L += ["![scaling](scaling.png)"]
    L += operators.markdown_section(a.operators, _md_table)
    L += [
        "",
        f"## E2 — Pareto fronts (T_total {p})",
        "",
        "`*` on the front; `≈` tied with the front: no configuration beats it beyond noise "
        "(better on the estimates and, on accuracy or latency, with a confidence interval "
        "wholly better). [lo, hi]: confidence intervals; n: samples.",
    ]
    for task in a.fronts:
        ref = a.reference[task]
        L += [
            "",
            f"### {task}",
            "",
            _md_table(uncertainty.front_table(a.fronts[task], p)),
            "",
            f"![pareto](pareto_{_slug(task)}.png)",
            "",
        ]
        L += [
            f"Knob coupling: the front with each knob held at each value. Hypervolume reference point: "
            f"accuracy {ref[0]:g}, latency {ref[1]:.3f} ms (1.1 x the slowest configuration).",
            "",
            _md_table(t["coupling"][task], 4),
            "",
            f"![coupling](coupling_{_slug(task)}.png)",
        ]
    if a.evaluation is not None and a.estimator is not None:
        L += [
            "",
            "## E3 — latency estimator",
            "",
            f"Evaluation: {a.evaluation.method}. Metrics in percent.",
            "",
        ]
        L += [
            _md_table(t["metrics"], 2),
            "",
            "![parity](parity.png)",
            "",
            "Features per stage:",
            "",
        ]
        L += [f"- {line}" for line in _features_text(a)]
        L += ["", f"Uncertainty band: {a.estimator.band_source}. Saved as `estimator.json`."]
    return "\n".join(L) + "\n"


def _table_block(df: pd.DataFrame, digits: int, highlight: pd.Series | None, what: str) -> str:
    """A table; past ``OPEN_ROWS`` rows it is folded (``<details>``) so the plots stay in view."""
    table = _html_table(df, digits, highlight=highlight)
    if len(df) <= OPEN_ROWS:
        return table
    return f"<details><summary>{html.escape(what)}: {len(df)} rows</summary>{table}</details>"


def _plot(divs: dict[str, str], name: str) -> list[str]:
    return [f'<div class="plot">{divs[name]}</div>'] if name in divs else []


def _html(a: Analysis, t: dict[str, Any], divs: dict[str, str]) -> str:
    p = a.percentile
    esc = html.escape
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    B = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>knoblab analysis</title>",
        f"<style>{CSS}</style>",
        f"<script>{STATUS_SCRIPT}</script>",
        f'<script type="text/javascript">{figures.plotly_js()}</script>',
        "</head><body>",
        "<h1>knoblab analysis</h1>",
        f'<p id="knoblab-status" data-status="pending">generated {esc(now)}</p>',
        "<ul>" + "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in _intro(a)) + "</ul>",
        '<p class="note">Plots are interactive: hover a point for its knobs, figures, sample '
        "count and interval; drag to zoom, double-click to reset; click a legend entry to hide it.</p>",
    ]
    drift = drift_message(a)
    if drift:
        B += [f'<p class="drift" id="drift"><b>Drift:</b> {esc(drift)}</p>']
    if a.budget is not None:
        B += [
            f'<h2>Budget: T_total {esc(p)} &le; {a.budget.budget_ms:g} ms</h2><p class="answer">{esc(a.budget.message())}</p>'
        ]
    if a.results.skipped:
        B += ["<h2>Records left out</h2><ul>"]
        B += [f"<li><code>{esc(s.name)}</code>: {esc(s.reason)}</li>" for s in a.results.skipped]
        B += ["</ul>"]
    if a.notes:
        B += ["<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in a.notes) + "</ul>"]
    B += [f"<h2>E2 — Pareto fronts (T_total {esc(p)})</h2>"]
    for task in a.fronts:
        B += _front_section(a, t, divs, task)
    B += ["<h2>E1 — stage decomposition</h2>"]
    B += _plot(divs, "stages")
    B += [
        _table_block(t["shares"], 2, None, "mean latency per stage and its share of mean T_total")
    ]
    B += ["<h3>Scaling</h3>", *_plot(divs, "scaling")]
    B += [
        '<p class="note">Least squares within each group of the non-vision knobs, e.g. (top_k, blocks); <code>all</code> pools every sample.</p>'
    ]
    B += [f'<p class="note">{esc(t["no_fit"])}.</p>'] if t["no_fit"] else []
    B += [_table_block(t["fits"], 5, None, "scaling fits")]
    B += operators.html_section(a.operators, _html_table)
    if a.evaluation is not None and a.estimator is not None:
        B += [
            "<h2>E3 — latency estimator</h2>",
            f"<p>Evaluation: {esc(a.evaluation.method)}. Metrics in percent.</p>",
        ]
        B += [*_plot(divs, "parity"), _html_table(t["metrics"], 2)]
        B += [
            "<p>Features per stage:</p><ul>"
            + "".join(f"<li><code>{esc(x)}</code></li>" for x in _features_text(a))
            + "</ul>"
        ]
        B += [
            f'<p class="note">Uncertainty band: {esc(a.estimator.band_source)}. Saved as estimator.json.</p>'
        ]
    B += ["</body></html>"]
    return "\n".join(B) + "\n"


def _front_section(a: Analysis, t: dict[str, Any], divs: dict[str, str], task: str) -> list[str]:
    """One task's Pareto plot, its table, the coupling view and the memory view."""
    s, esc = _slug(task), html.escape
    front = t["fronts"][task]
    ref = a.reference[task]
    on = front["front"] == "*"  # uncertainty.front_table's mark; "≈": tied with the front
    B = [f"<h3>{esc(task)}</h3>", *_plot(divs, f"pareto_{s}")]
    B += [
        f"<p>The front ({int(on.sum())} of {len(front)} configurations; [lo, hi]: "
        "confidence intervals, n: samples):</p>"
    ]
    B += [_html_table(front[on], 3, highlight=on[on])]
    if len(front) > int(on.sum()):
        B += [_table_block(front, 3, on, "all configurations (≈: tied with the front)")]
    B += [f"<h3>Knob coupling — {esc(task)}</h3>", *_plot(divs, f"coupling_{s}")]
    B += [
        f'<p class="note">Hypervolume reference point: accuracy {ref[0]:g}, latency {ref[1]:.3f} ms '
        "(1.1 x the slowest configuration). hv_ratio = restricted / free front hypervolume.</p>",
        _table_block(t["coupling"][task], 4, None, "knob coupling table"),
    ]
    if f"memory_{s}" in divs:
        B += [f"<h3>Memory — {esc(task)}</h3>", *_plot(divs, f"memory_{s}")]
    return B
