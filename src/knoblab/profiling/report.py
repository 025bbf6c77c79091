"""The sweep's summary: the table printed at the end and ``report.md``.

One row per configuration: knobs, status, sample count, accuracy, ``T_total`` at each
recorded percentile (``run.percentiles``; p50/p95/p99 by default), each figure with its
confidence interval from the record (``[lo, hi]``: the records' ``intervals`` block says
how), the share of each stage in the mean ``T_total`` and whether the configuration is
Pareto-optimal.

NOTE: the Pareto front is of accuracy (higher is better) against ``T_total_p95``
(lower is better; seed 002's E2 uses p95 or p99 latency; the highest recorded
percentile when p95 is not recorded), over the configurations with status ``ok``
(``knoblab.analysis.pareto.pareto_mask``). Stage shares are the stage means over the
``T_total`` mean; they need not sum to 100 %: ``T_total`` also holds the host time
between stages.

Example:
    >>> rows = summary_rows({})
    >>> rows
    []
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from knoblab.atomic import atomic_write
from knoblab.front import pareto_mask
from knoblab.records import STAGE_NAMES, percentile_name, record_percentiles
from knoblab.records import STAGES as STAGE_FIELDS

#: (short name, record field) of each timed stage.
STAGES = tuple((STAGE_NAMES[s], s) for s in STAGE_FIELDS)


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _ci(row: Mapping[str, Any], key: str, spec: str) -> str:
    """``value [lo, hi]`` of ``row[key]``, the value alone without an interval, ``-`` without one."""
    v, lo, hi = row.get(key), row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if v is None:
        return "-"
    if lo is None or hi is None:
        return format(v, spec)
    return f"{v:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def _ci_lines(row: Mapping[str, Any], key: str, spec: str) -> str:
    """The console's cell: the figure, and its ``[lo, hi]`` on a second line (markup-safe)."""
    from rich.markup import escape

    return escape(_ci(row, key, spec).replace(" [", "\n[", 1))


def row_percentiles(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The percentile names of the rows' records, in order (their union)."""
    names: dict[str, float] = {}
    for row in rows:
        for p in row.get("percentiles") or ():
            names[p] = float(p[1:])
    return sorted(names, key=names.__getitem__)


def front_percentile(percentiles: Sequence[str]) -> str:
    """The percentile of the sweep's Pareto mark: p95, else the highest recorded."""
    return "p95" if "p95" in percentiles or not percentiles else percentiles[-1]


def summary_rows(records: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per record (sorted by mean ``T_total``), with the Pareto flag.

    Each row holds ``T_total_<p>`` for every recorded percentile, ``percentiles`` (their
    names) and the record's intervals: ``accuracy_lo``/``_hi``, ``T_total_<stat>_lo``/``_hi``.
    """
    rows = []
    for fname, r in records.items():
        s = r.get("aggregate_stats") or {}
        total = s.get("T_total_mean")
        names = [percentile_name(q) for q in record_percentiles(r)]
        row = {
            "record": fname,
            "configuration": " ".join(f"{k}={v}" for k, v in (r.get("knobs") or {}).items()),
            "knobs": dict(r.get("knobs") or {}),
            "status": r.get("status"),
            "num_samples": r.get("num_samples"),
            "num_failed_samples": r.get("num_failed_samples", 0),
            "accuracy": r.get("accuracy"),
            "accuracy_lo": r.get("accuracy_lo"),
            "accuracy_hi": r.get("accuracy_hi"),
            "T_total_count": s.get("T_total_count"),
            "T_total_mean": total,
            "percentiles": names,
        }
        for stat in ("mean", *names):
            for suffix in ("", "_lo", "_hi"):
                row[f"T_total_{stat}{suffix}"] = s.get(f"T_total_{stat}{suffix}")
        for name, key in STAGES:
            mean = s.get(f"{key}_mean")
            row[f"share_{name}"] = mean / total if mean is not None and total else None
        row.update(_cost_figures(s, names))
        rows.append(row)
    col = f"T_total_{front_percentile(row_percentiles(rows))}"
    ok = [
        i
        for i, row in enumerate(rows)
        if row["status"] == "ok" and row["accuracy"] is not None and row.get(col) is not None
    ]
    mask = pareto_mask([rows[i]["accuracy"] for i in ok], [rows[i][col] for i in ok]) if ok else []
    for row in rows:
        row["pareto"] = False
    for i, flag in zip(ok, mask, strict=True):
        rows[i]["pareto"] = bool(flag)
    rows.sort(
        key=lambda row: (
            row["T_total_mean"] is None,
            row["T_total_mean"] or 0.0,
            row["configuration"],
        )
    )
    return rows


#: report.md's cost columns: (header, aggregate key, format, scale); ``{p}`` is the middle
#: recorded percentile (p50 by default), ``{top}`` the highest.
COST_COLUMNS: tuple[tuple[str, str, str, float], ...] = (
    ("TTFT {p} ms", "T_ttft_{p}", ".2f", 1.0),
    ("TPOT {p} ms", "T_tpot_{p}", ".2f", 1.0),
    ("ITL {top} ms", "itl_ms_{top}", ".2f", 1.0),
    ("samples/s", "throughput_samples_s_mean", ".1f", 1.0),
    ("tokens/s", "throughput_tokens_s_mean", ".1f", 1.0),
    ("peak MB", "peak_memory_bytes_max", ".1f", 1 / 2**20),
    ("KV cache MB", "kv_cache_bytes_mean", ".2f", 1 / 2**20),
    ("J/sample", "energy_j_mean", ".3f", 1.0),
)


def _cost_columns(names: Sequence[str]) -> list[tuple[str, str, str, float]]:
    """:data:`COST_COLUMNS` for the recorded percentile names."""
    mid = "p50" if "p50" in names else (names[len(names) // 2] if names else "mean")
    top = names[-1] if names else "mean"
    return [
        (h.format(p=mid, top=top), k.format(p=mid, top=top), fmt, f)
        for h, k, fmt, f in COST_COLUMNS
    ]


def _cost_figures(stats: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The cost figures of a record's ``aggregate_stats`` (and their intervals) for the row."""
    out = {
        f"{key}{suffix}": stats.get(f"{key}{suffix}")
        for _, key, _, _ in _cost_columns(names)
        for suffix in ("", "_lo", "_hi")
    }
    out["T_ttft_count"], out["itl_ms_count"] = stats.get("T_ttft_count"), stats.get("itl_ms_count")
    return out


def _cost_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """report.md's "Cost" section: TTFT, TPOT, ITL, throughput, memory and energy per
    configuration (vLLM's definitions, ``knoblab.profiling.batch``), with their intervals.
    Nothing when no record has a cost figure (records written before schema 3)."""
    cols = [
        c
        for c in _cost_columns(row_percentiles(rows))
        if any(r.get(c[1]) is not None for r in rows)
    ]
    if not cols:
        return []
    lines = [
        "",
        "## Cost",
        "",
        "TTFT = vision + prefill; TPOT = decode time over the tokens after the first; ITL: "
        "every decode step of every sample pooled; throughput over each batch's wall time; "
        "peak memory of the process (CPU: resident set) over the configuration; KV cache "
        "analytic, per sample. n: samples with a TTFT; ITL steps: the decode steps pooled. "
        "[lo, hi]: confidence intervals as above.",
        "",
        "| configuration | n | " + " | ".join(h for h, _, _, _ in cols) + " | ITL steps |",
        "|" + "---|" * (3 + len(cols)),
    ]
    for row in rows:
        cells = []
        for _, key, fmt, f in cols:
            scaled = {}
            for x in ("", "_lo", "_hi"):
                v = row.get(f"{key}{x}")
                scaled[f"{key}{x}"] = None if v is None else v * f
            cells.append(_ci(scaled, key, fmt))
        n, steps = row.get("T_ttft_count"), row.get("itl_ms_count")
        lines.append(
            f"| {row['configuration']} | {_fmt(n, 'd')} | "
            + " | ".join(cells)
            + f" | {_fmt(steps, 'd')} |"
        )
    return lines


def summary_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> Any:
    """A ``rich.table.Table`` of the summary rows: one column per knob, then the figures
    (each recorded ``T_total`` percentile and the accuracy with their ``[lo, hi]``)."""
    from rich import box
    from rich.table import Table

    knob_names: list[str] = []
    for row in rows:
        knob_names += [k for k in row["knobs"] if k not in knob_names]
    short = {"num_active_blocks": "blocks", "vision_tokens": "tokens"}
    pcts = row_percentiles(rows)
    table = Table(
        title=title or None,
        caption=f"{'/'.join(pcts)}: T_total ms; under each figure its confidence interval "
        f"\\[lo, hi]; stage % of mean T_total; * Pareto (acc vs {front_percentile(pcts)})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for k in knob_names:
        table.add_column(short.get(k, k), justify="left", no_wrap=True)
    for col in ("status", "n", "acc", *pcts, "vis%", "pre%", "dec%", "*"):
        table.add_column(col, justify="left" if col == "status" else "right", no_wrap=True)
    for row in rows:
        table.add_row(
            *(str(row["knobs"].get(k, "-")) for k in knob_names),
            str(row["status"]),
            str(row["num_samples"]),
            _ci_lines(row, "accuracy", ".3f"),
            *(_ci_lines(row, f"T_total_{p}", ".2f") for p in pcts),
            *(
                _fmt(None if row[f"share_{n}"] is None else 100 * row[f"share_{n}"], ".0f")
                for n, _ in STAGES
            ),
            "*" if row["pareto"] else "",
        )
    return table


def render_report_md(
    records: Mapping[str, Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    plan: Mapping[str, Any],
    *,
    ran: Sequence[str] = (),
    skipped: Sequence[str] = (),
    environment: Mapping[str, Any] | None = None,
) -> str:
    """``report.md``: sampling settings and counts, the configuration table, Pareto marks.

    With ``environment`` (``environment.json``), a line on the schedule, the machine's
    load and whether its speed drifted during the measurement.
    """
    first = next(iter(records.values()), {})
    env = first.get("environment") or {}
    lines = [
        f"# Sweep report: {first.get('task', '?')} on {first.get('model', '?')}",
        "",
        f"Device: {env.get('device_name', '?')} ({env.get('device', '?')}, {env.get('dtype', '?')}); "
        f"git revision: {env.get('git_revision') or 'unknown'}.",
        "",
        *_machine_lines(environment or {}),
        "## Sampling",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    for key in (
        "dataset_size",
        "num_samples_per_epoch",
        "num_epochs",
        "randomize",
        "seed",
        "seed_source",
        "samples_per_epoch",
        "last_epoch_samples",
        "total_samples",
    ):
        lines.append(f"| {key} | {plan.get(key, '-')} |")
    if plan.get("legacy"):
        for msg in (plan["legacy"] or {}).get("messages", []):
            lines.append(f"| legacy | {msg} |")
    n_ok = sum(1 for r in rows if r["status"] == "ok")
    pcts = row_percentiles(rows)
    lines += [
        "",
        f"Effective counts: {plan.get('total_samples', '?')} samples per configuration, "
        f"{len(rows)} configurations ({n_ok} ok), {len(ran)} measured in this run, "
        f"{len(skipped)} found finished and skipped.",
        "",
        "## Configurations",
        "",
        f"Pareto-optimal configurations (accuracy vs. T_total {front_percentile(pcts)}) are "
        "marked **\\***. Latencies in ms; stage shares of the mean T_total. Percentiles: numpy "
        "linear interpolation. [lo, hi]: confidence intervals: "
        f"{_intervals_text(records)}.",
        "",
        "| configuration | status | n | failed | accuracy | T_total mean | "
        + " | ".join(f"T_total {p}" for p in pcts)
        + " | vision % | prefill % | decode % | Pareto |",
        "|" + "---|" * (10 + len(pcts)),
    ]
    mark = "**\\***"
    for row in rows:
        shares = [
            _fmt(None if row[f"share_{n}"] is None else 100 * row[f"share_{n}"], ".1f")
            for n, _ in STAGES
        ]
        lats = [_ci(row, f"T_total_{p}", ".2f") for p in ("mean", *pcts)]
        lines.append(
            f"| {row['configuration']} | {row['status']} | {row['num_samples']} | {row['num_failed_samples']} | "
            f"{_ci(row, 'accuracy', '.3f')} | {' | '.join(lats)} | "
            f"{' | '.join(shares)} | {mark if row['pareto'] else ''} |"
        )
    lines += _cost_lines(rows)
    warns = sorted({w for r in records.values() for w in r.get("warnings") or []})
    errors = [
        (f, r.get("status"), r.get("error")) for f, r in records.items() if r.get("status") != "ok"
    ]
    if warns or errors:
        lines += ["", "## Warnings", ""]
        lines += [f"- {w}" for w in warns]
        lines += [f"- `{f}`: {s}: {e}" for f, s, e in errors]
    lines += [
        "",
        "Records: one JSON per configuration; all per-sample rows in `samples.parquet`.",
        "",
    ]
    return "\n".join(lines)


def _machine_lines(env: Mapping[str, Any]) -> list[str]:
    """The schedule, load and drift line of ``report.md`` (nothing when not recorded)."""
    drift, load = env.get("drift"), env.get("load") or {}
    if not drift and not load:
        return []
    mode = (env.get("schedule") or {}).get("mode", "?")
    avg = load.get("loadavg_start") or ["?"]
    others = load.get("others_cpu_share")
    parts = [
        f"Schedule: {mode}. Load average (1 min) {avg[0]} at the start, "
        f"{load.get('loadavg_1m_max', '?')} at most; other processes' CPU share "
        f"{'unreadable' if others is None else f'{100 * others:.0f}%'}."
    ]
    if drift:
        verdict = "**Drift detected**" if drift.get("detected") else "No drift beyond noise"
        parts.append(
            f"{verdict}: {100 * float(drift.get('magnitude') or 0):.1f}% against "
            f"{100 * float(drift.get('noise') or 0):.1f}% noise ({drift.get('message', '')})."
        )
    return [" ".join(parts), ""]


def _intervals_text(records: Mapping[str, Mapping[str, Any]]) -> str:
    """How the records' intervals were computed, from their ``intervals`` blocks."""
    blocks = [r["intervals"] for r in records.values() if isinstance(r.get("intervals"), dict)]
    if not blocks:
        return "none recorded"
    b = blocks[0]
    acc = sorted({str(x.get("accuracy")) for x in blocks if x.get("accuracy")})
    return (
        f"{b.get('method')}, {100 * float(b.get('confidence') or 0):g}% confidence, "
        f"{b.get('resamples')} resamples, seed {b.get('seed')}; accuracy: {' or '.join(acc) or '-'}"
    )


def write_report_md(
    out_dir: str | os.PathLike[str],
    records: Mapping[str, Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    plan: Mapping[str, Any],
    *,
    ran: Sequence[str] = (),
    skipped: Sequence[str] = (),
    environment: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``report.md`` into ``out_dir`` atomically."""
    text = render_report_md(records, rows, plan, ran=ran, skipped=skipped, environment=environment)
    return atomic_write(Path(out_dir) / "report.md", text)
