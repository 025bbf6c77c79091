"""Operator-level E1: the operators that take each stage's time, from ``knoblab deep-profile``.

``load_operator_shares(results_dir, deep)`` finds the deep-profile output of a sweep and
returns, per profiled configuration and stage (``vision``, ``prefill``, ``decode``, and
``other`` for work outside the stage ranges, e.g. preprocessing the next sample), the
top operators by self time with their share of the stage's profiled time. Each
configuration's ``operators_by_stage_config_<i>.csv`` holds the self times; a stage's
time is the sum of its rows, so the row ``(untracked: Python and glue)`` (the stage
range's own self time) is part of it and the shares of all of a stage's operators add
up to 100 %.

Where it looks (``deep=None``): ``deep_profile.json`` files under ``results_dir``, then
under ``deep*/`` folders beside ``results_dir`` and beside its parent (``knoblab
deep-profile`` writes ``results/deep_profile/<task>/`` next to ``knoblab profile``'s
``results/profile/<task>/``); only those of the sweep's tasks are used. ``deep=<path>``
names a ``deep_profile.json`` or a folder holding some (every one is used);
``deep=False`` turns the section off.

Times are per profiled inference (the profiled total over the number of samples the
profiler saw). The clock is the device's when the profile has device time, else the
CPU's.

NOTE: profiled times carry the profiler's overhead (``minimal`` mode a few percent,
``full`` 10-30 %, more on small operators): read the shares, not the milliseconds, and
take latencies from the sweep. Output of a deep-profile without per-stage tables
(written before they existed) is shown for the whole inference, stage ``all``.

Usage (needs a sweep with a deep profile; not run as a doctest)::

    ops = load_operator_shares("results/profile")
    ops.table.query("stage == 'decode' and rank == 1")[["configuration", "operator", "share_pct"]]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from knoblab.analysis.load import knob_label
from knoblab.errors import ConfigError, DataError
from knoblab.records import STAGE_SHORT_NAMES

TOP_OPERATORS = 5
STAGE_RANGES = STAGE_SHORT_NAMES
STAGE_ORDER = (*STAGE_RANGES, "other", "all")
UNTRACKED = "(untracked: Python and glue)"
INDEX_NAME = "deep_profile.json"
COLUMNS = (
    "task",
    "configuration",
    "stage",
    "rank",
    "operator",
    "calls",
    "self_ms",
    "share_pct",
    "stage_ms",
    "clock",
    "samples",
    "mode",
    "in_sweep",
)


@dataclass
class OperatorShares:
    """Top operators per (task, configuration, stage); ``sources``: the indexes read."""

    table: pd.DataFrame
    sources: list[Path]
    top: int = TOP_OPERATORS
    notes: list[str] = field(default_factory=list)


def find_deep_profiles(results_dir: str | Path, deep: str | Path | None = None) -> list[Path]:
    """The ``deep_profile.json`` files for ``results_dir`` (or under the path ``deep``)."""
    if deep is not None:
        path = Path(deep)
        if path.is_file():
            return [path]
        found = sorted(path.rglob(INDEX_NAME)) if path.is_dir() else []
        if not found:
            raise ConfigError(
                "deep", str(deep), f"a {INDEX_NAME} or a folder holding one (knoblab deep-profile)"
            )
        return found
    root = Path(results_dir).resolve()
    found = list(root.rglob(INDEX_NAME))
    for base in (root.parent, root.parent.parent):
        for sub in sorted(base.glob("deep*")):
            if sub.is_dir() and sub != root:
                found += sub.rglob(INDEX_NAME)
    return sorted(set(found))


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable operator table ({exc})") from None


def _stage_rows(folder: Path, entry: dict[str, Any]) -> tuple[pd.DataFrame, bool]:
    """(stage, name, count, self_cpu_time_us, self_device_time_us) rows; True when per stage."""
    if entry.get("operators_by_stage_csv"):
        return _read_csv(folder / entry["operators_by_stage_csv"]), True
    df = _read_csv(folder / entry["operators_csv"])  # the whole inference, from older output
    df["stage"] = "all"
    df.loc[df["name"].isin(STAGE_RANGES), "name"] = UNTRACKED
    cols = ["stage", "name", "count", "self_cpu_time_us", "self_device_time_us"]
    return df[cols].groupby(["stage", "name"], as_index=False).sum(), False


def _top_rows(df: pd.DataFrame, top: int, samples: int, clock_col: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for stage, g in df.groupby("stage", sort=False):
        total = float(g[clock_col].sum())
        if total <= 0:
            continue
        g = g.sort_values(clock_col, ascending=False, kind="stable").head(top)
        for rank, (_, r) in enumerate(g.iterrows(), start=1):
            out.append(
                {
                    "stage": str(stage),
                    "rank": rank,
                    "operator": str(r["name"]),
                    "calls": float(r["count"]) / samples,
                    "self_ms": float(r[clock_col]) / 1e3 / samples,
                    "share_pct": 100.0 * float(r[clock_col]) / total,
                    "stage_ms": total / 1e3 / samples,
                }
            )
    return out


def _read_index(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable deep-profile index ({exc})") from None


def operator_table(
    sources: Iterable[Path],
    top: int = TOP_OPERATORS,
    sweep_labels: dict[str, set[str]] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """The top-``top`` operators per (task, configuration, stage) of the given indexes."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for src in sources:
        index = _read_index(src)
        task = str(index.get("task", src.parent.name))
        samples = max(1, len(index.get("profiled_sample_ids") or [1]))
        for entry in index.get("configurations", []):
            df, per_stage = _stage_rows(src.parent, entry)
            if not per_stage:
                notes.append(
                    f"{src}: no per-stage operator tables (older deep-profile); stage 'all'"
                )
            for col in ("self_cpu_time_us", "self_device_time_us"):
                df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0.0)
            clock = "device" if df["self_device_time_us"].sum() > 0 else "CPU"
            col = "self_device_time_us" if clock == "device" else "self_cpu_time_us"
            label = knob_label(entry.get("knobs") or {})
            in_sweep = None if sweep_labels is None else label in sweep_labels.get(task, set())
            base = {"task": task, "configuration": label, "clock": clock, "samples": samples,
                    "mode": index.get("mode"), "in_sweep": in_sweep}  # fmt: skip
            rows += [{**base, **r} for r in _top_rows(df, top, samples, col)]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if len(table):
        order = {s: i for i, s in enumerate(STAGE_ORDER)}
        table = table.sort_values(
            ["task", "configuration", "stage", "rank"],
            key=lambda s: s.map(order) if s.name == "stage" else s,
            kind="stable",
        ).reset_index(drop=True)
    return table, sorted(set(notes))


def load_operator_shares(
    results_dir: str | Path,
    deep: str | Path | bool | None = None,
    *,
    tasks: Sequence[str] | None = None,
    sweep_labels: dict[str, set[str]] | None = None,
    top: int = TOP_OPERATORS,
) -> OperatorShares | None:
    """Operator shares for a sweep; None when no deep profile is found (or ``deep=False``).

    ``tasks`` keeps only the indexes of those tasks when searching beside ``results_dir``
    (a path given as ``deep`` is used whole); ``sweep_labels`` (task -> configuration
    labels of the sweep) fills ``in_sweep``.
    """
    if deep is False or (isinstance(deep, str) and deep.strip().lower() in ("false", "off", "no")):
        return None
    if deep is True:
        deep = None
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ConfigError("top_operators", top, "an integer >= 1")
    sources = find_deep_profiles(results_dir, deep)
    notes: list[str] = []
    if deep is None and tasks is not None:
        kept = [s for s in sources if str(_read_index(s).get("task")) in set(tasks)]
        if len(kept) < len(sources):
            notes.append(f"{len(sources) - len(kept)} deep profile(s) of other tasks left out")
        sources = kept
    if not sources:
        return None
    table, more = operator_table(sources, top, sweep_labels)
    mode = sorted({str(m) for m in table["mode"].dropna()}) if len(table) else []
    if "full" in mode:
        notes.append("deep profile in full mode: shapes, stacks and memory add 10-30 % overhead")
    return OperatorShares(table, sources, top, notes + more)


# -- report sections (report.py calls these) ---------------------------------------------------
def _display(ops: OperatorShares) -> pd.DataFrame:
    t = ops.table
    return pd.DataFrame(
        {
            "configuration": t["task"] + " / " + t["configuration"],
            "stage": t["stage"],
            "#": t["rank"],
            "operator": t["operator"],
            "calls": t["calls"],
            "self ms": t["self_ms"],
            "share %": t["share_pct"],
            "stage ms": t["stage_ms"],
        }
    )


def _intro(ops: OperatorShares) -> str:
    t = ops.table
    clocks = ", ".join(sorted(set(t["clock"]))) or "CPU"
    samples = ", ".join(str(n) for n in sorted(set(t["samples"])))
    return (
        f"Top {ops.top} operators by self time ({clocks} clock) per configuration and stage, "
        f"from knoblab deep-profile ({len(ops.sources)} profile(s); {samples} profiled "
        "inference(s) per configuration; times per inference, with the profiler's overhead: "
        "read the shares, take latencies from the sweep)."
    )


TableRenderer = Callable[[pd.DataFrame, int], str]


def markdown_section(ops: OperatorShares | None, table: TableRenderer) -> list[str]:
    """Markdown lines of the operators section (empty without a deep profile).

    ``table`` renders a DataFrame (``report._md_table``).
    """
    if ops is None:
        return []
    lines = ["", "## E1 — operators (deep-profile)", "", _intro(ops), ""]
    lines += [f"- source: `{s}`" for s in ops.sources] + [f"- note: {n}" for n in ops.notes]
    return [*lines, "", table(_display(ops), 2)]


def html_section(ops: OperatorShares | None, table: TableRenderer) -> list[str]:
    """HTML blocks of the operators section; ``table`` renders a DataFrame."""
    import html

    if ops is None:
        return []
    items = [f"<li>source: <code>{html.escape(str(s))}</code></li>" for s in ops.sources]
    items += [f"<li>note: {html.escape(n)}</li>" for n in ops.notes]
    return [
        "<h2>E1 — operators (deep-profile)</h2>",
        f"<p>{html.escape(_intro(ops))}</p>",
        f'<ul class="note">{"".join(items)}</ul>',
        table(_display(ops), 2),
    ]


def to_json(ops: OperatorShares | None) -> dict[str, Any] | None:
    """The section for ``analysis.json``."""
    if ops is None:
        return None
    return {
        "sources": [str(s) for s in ops.sources],
        "top": ops.top,
        "notes": ops.notes,
        "rows": ops.table.to_dict(orient="records"),
    }
