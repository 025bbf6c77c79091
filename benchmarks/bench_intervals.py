"""What a record's confidence intervals cost (issue 13 item 3).

Claim: building a configuration's record with its intervals (``knoblab.records.build_record``:
a seeded percentile bootstrap of 1000 resamples on the mean and every percentile of
each latency figure, Wilson for the accuracy) costs well under a second per
1000-sample configuration, and the one resample index matrix per record, reused by
every figure, is cheaper than drawing one per figure.

How: per-sample rows like the runner's (five latency figures, 0/1 accuracy) for one
configuration of ``--samples`` samples; each round times, interleaved in a random order
per round (so load that comes and goes hits all alike):

- ``no intervals``: the aggregates alone (``aggregate_stats`` without intervals): the baseline;
- ``shared indices``: ``build_record`` as the runner calls it (one index matrix per record);
- ``indices per figure``: the same intervals with ``bootstrap_cis`` drawing its own
  indices for every figure (what the shared matrix saves);
- ``sorting the resamples``: the shared indices, each resample's values gathered and
  sorted as floats (the textbook way, and knoblab's until 2026-12-02), against which the
  sorted-ranks method of ``records.intervals`` is measured.

The table gives the median over rounds of each (ms, this process's CPU time and wall
time) and the ratio to the baseline; "added per record" is the interval cost itself.

    python benchmarks/bench_intervals.py                   # 1000 samples, 7 rounds
    python benchmarks/bench_intervals.py --samples 200 --rounds 11
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from knoblab.records import INTERVAL_FIELDS, aggregate_stats, build_record
from knoblab.records.intervals import bootstrap_cis, resample_indices


def rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Per-sample rows with log-normal stage times and 0/1 accuracy."""
    rng = np.random.default_rng(seed)
    v, p, d = (rng.lognormal(m, 0.2, n) for m in (1.0, 1.5, 2.0))
    out = []
    for i in range(n):
        t = float(v[i] + p[i] + d[i]) * 1.02
        out.append(
            {
                "status": "ok",
                "accuracy": float(rng.random() < 0.7),
                "T_vision_total": float(v[i]),
                "T_LLM_prefill": float(p[i]),
                "T_LLM_decode": float(d[i]),
                "T_total": t,
                "T_decode_per_token": float(d[i]) / 3,
                "output_tokens": 4,
            }
        )
    return out


def _record(data: list[dict[str, Any]]) -> Any:
    return build_record(
        task="t",
        model="m",
        knobs={"k": 1},
        effective={},
        rows=data,
        status="ok",
        error=None,
        environment={},
        sampling={},
    )


def _per_figure(data: list[dict[str, Any]]) -> Any:
    stats, _ = aggregate_stats(data)
    for f in INTERVAL_FIELDS:
        x = np.asarray([r[f] for r in data], dtype=float)
        bootstrap_cis(x, ["mean", "p50", "p95", "p99"])
    return stats


def _by_sorting(data: list[dict[str, Any]]) -> Any:
    """The same intervals, each resample's floats gathered and sorted (the baseline)."""
    stats, _ = aggregate_stats(data)
    chunks = list(resample_indices(len(data)))
    for f in INTERVAL_FIELDS:
        x = np.asarray([r[f] for r in data], dtype=float)
        boot: dict[str, list[np.ndarray]] = {s: [] for s in ("mean", "p50", "p95", "p99")}
        for idx in chunks:
            sample = x[idx]
            ordered = np.sort(sample, axis=-1)
            boot["mean"].append(sample.mean(axis=-1))
            for q in (50, 95, 99):
                pos = (x.size - 1) * q / 100.0
                lo = int(pos)
                hi = min(lo + 1, x.size - 1)
                a, b = ordered[:, lo], ordered[:, hi]
                boot[f"p{q}"].append(a + (b - a) * (pos - lo))
        for v in boot.values():
            np.quantile(np.concatenate(v), [0.025, 0.975])
    return stats


def _time(fn: Callable[[], Any]) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w) * 1e3, (time.process_time() - c) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    data = rows(args.samples)
    cases: dict[str, Callable[[], Any]] = {
        "no intervals": lambda: aggregate_stats(data),
        "shared indices": lambda: _record(data),
        "indices per figure": lambda: _per_figure(data),
        "sorting the resamples": lambda: _by_sorting(data),
    }
    for fn in cases.values():  # warm caches and imports once
        fn()
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    order = list(cases)
    rng = random.Random(0)
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            got[name].append(_time(cases[name]))
    con = Console(width=120)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    t = Table(
        title=f"one record of {args.samples} samples, {len(INTERVAL_FIELDS)} latency figures "
        f"x (mean, p50, p95, p99), 1000 resamples; median of {args.rounds} interleaved rounds"
    )
    for col in ("case", "CPU ms", "wall ms", "CPU vs no intervals", "added CPU ms per record"):
        t.add_column(col, justify="left" if col == "case" else "right")
    base = statistics.median(c for _, c in got["no intervals"])
    for name in cases:
        cpu = statistics.median(c for _, c in got[name])
        wall = statistics.median(w for w, _ in got[name])
        t.add_row(name, f"{cpu:.1f}", f"{wall:.1f}", f"{cpu / base:.2f}", f"{cpu - base:.1f}")
    con.print(t)
    con.print(f"{os.cpu_count()} CPUs, load average {load:.2f}", highlight=False)


if __name__ == "__main__":
    main()
