"""Interleaved against sequential measurement while other processes switch on and off.

Claim (issue 13): with background CPU hogs (separate processes, one per core) switching
on and off at random 1-4 s intervals, the default interleaved schedule keeps each
configuration's median ``T_total`` within 5 % of its known cost ratio (median of 3 runs)
and in the quiet machine's rank order; the sequential schedule is printed beside it.

The workload is a held-out adapter with its own knob name (``work``) whose cost is known
by construction: ``work=k`` runs ``k`` times the same fixed number of float32 matmuls
(fixed CPU work, no sleeps and no clock spins), so the configurations cost 1 : 2 : 3 : 4.
Runs alternate interleaved, sequential, interleaved, ... so both modes meet the same
machine; a quiet run (hogs off) first gives the reference rank order.

    python benchmarks/bench_drift.py                   # 60 samples, 3 runs per mode
    python benchmarks/bench_drift.py --samples 100 --base-ms 8
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import tempfile
import threading
import time
from typing import Any

import torch
from _work_adapter import MatmulWork

from knoblab.models.adapter import Prepared

WORKS = (1, 2, 3, 4)


class MatmulAdapter(MatmulWork):
    """A model whose only knob, ``work``, multiplies a fixed matmul workload."""

    knob, values = "work", WORKS

    def __init__(self, matmuls: int, size: int = 128):
        super().__init__(matmuls, size, scale=size**-0.5)

    @property
    def work(self) -> int:
        return int(self.setting)

    @work.setter
    def work(self, value: int) -> None:
        self.setting = value

    def matmuls_for(self, prepared: Prepared) -> int:
        return self.matmuls * self.work


def _hog(on: Any, stop: Any) -> None:
    x = 1.0
    while not stop.is_set():
        if on.is_set():
            for i in range(20_000):
                x = (x * 1.0000001 + i) % 1e6
        else:
            time.sleep(0.01)


def _toggler(on: Any, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        (on.clear if on.is_set() else on.set)()
        stop.wait(rng.uniform(1.0, 4.0))
    on.clear()


def _calibrate(adapter: MatmulAdapter, base_ms: float) -> None:
    adapter.matmuls, adapter.work = 10, 1
    for _ in range(3):
        adapter.prefill(Prepared(inputs=None, input_text_tokens=1), None)
    t0 = time.perf_counter()
    for _ in range(5):
        adapter.prefill(Prepared(inputs=None, input_text_tokens=1), None)
    per = (time.perf_counter() - t0) / 50
    adapter.matmuls = max(1, round(base_ms / 1000 / per))


def _sweep(adapter: MatmulAdapter, samples: int, schedule: str, seed: int) -> dict[str, Any]:
    from rich.console import Console

    from knoblab.profiling.runner import run_sweep
    from knoblab.profiling.synthetic import ListDataset

    with tempfile.TemporaryDirectory() as out:
        cfg = {
            "dataset": {"name": "drift", "sampling": {"num_samples_per_epoch": samples}},
            "knobs": {"work": list(WORKS)},
            "design": {"name": "full"},
            "run": {"output_dir": out, "warmup_runs": 2, "progress": False,
                    "schedule": schedule, "schedule_seed": seed, "max_new_tokens": 1},
        }  # fmt: skip
        res = run_sweep(
            cfg,
            adapter=adapter,
            dataset=ListDataset.synthetic(samples),
            console=Console(quiet=True),
        )
    med = {r["knobs"]["work"]: r["aggregate_stats"]["T_total_p50"] for r in res.records.values()}
    return {"p50": med, "drift": res.drift}


def _ratios(p50: dict[int, float]) -> dict[int, float]:
    return {k: p50[k] / p50[1] for k in WORKS}


def _error(ratios: dict[int, float]) -> float:
    return max(abs(ratios[k] / k - 1) for k in WORKS)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--base-ms", type=float, default=10.0, help="cost of work=1")
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    from rich.table import Table

    from knoblab.console import console as wide_console

    torch.set_num_threads(1)
    console = wide_console(160)
    adapter = MatmulAdapter(1)
    _calibrate(adapter, args.base_ms)
    quiet = _sweep(adapter, args.samples, "interleaved", 0)
    quiet_order = sorted(WORKS, key=lambda k: quiet["p50"][k])

    ctx = mp.get_context("spawn")
    on, stop = ctx.Event(), ctx.Event()
    hogs = [ctx.Process(target=_hog, args=(on, stop), daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    halt = threading.Event()
    toggler = threading.Thread(target=_toggler, args=(on, halt, 7), daemon=True)
    toggler.start()
    runs: dict[str, list[dict[str, Any]]] = {"interleaved": [], "sequential": []}
    try:
        for i in range(args.runs):
            for mode in runs:
                runs[mode].append(_sweep(adapter, args.samples, mode, i))
    finally:
        halt.set()
        stop.set()
        toggler.join()
        for h in hogs:
            h.join(timeout=5)

    table = Table(title=f"T_total p50 ratios to work=1 under {args.hogs} switching CPU hogs "
                        f"({args.samples} samples x 4 configurations; known 1:2:3:4)")  # fmt: skip
    for col in ("mode", "run", *(f"work={k}" for k in WORKS), "max error", "rank ok", "drift"):
        table.add_column(col, justify="right")
    quiet_r = _ratios(quiet["p50"])
    table.add_row("quiet", "-", *(f"{quiet_r[k]:.3f}" for k in WORKS), f"{_error(quiet_r):.1%}",
                  "ref", f"{quiet['drift']['magnitude']:.0%}")  # fmt: skip
    summary = {}
    for mode, results in runs.items():
        for i, res in enumerate(results):
            r = _ratios(res["p50"])
            order = sorted(WORKS, key=lambda k: res["p50"][k]) == quiet_order
            d = res["drift"]
            table.add_row(mode, str(i), *(f"{r[k]:.3f}" for k in WORKS), f"{_error(r):.1%}",
                          "yes" if order else "NO",
                          f"{d['magnitude']:.0%}{' !' if d['detected'] else ''}")  # fmt: skip
        med = {k: statistics.median(_ratios(res["p50"])[k] for res in results) for k in WORKS}
        order = sorted(WORKS, key=lambda k: med[k]) == quiet_order
        summary[mode] = (_error(med), order)
        table.add_row(f"[bold]{mode}[/bold]", "median", *(f"{med[k]:.3f}" for k in WORKS),
                      f"[bold]{_error(med):.1%}[/bold]", "yes" if order else "NO", "")  # fmt: skip
    console.print(table)
    err, order = summary["interleaved"]
    console.print(
        f"interleaved: max error {err:.1%} (goal <= 5%), rank order "
        f"{'kept' if order else 'NOT kept'}; sequential: {summary['sequential'][0]:.1%}. "
        f"goal {'met' if err <= 0.05 and order else 'NOT met'}. load average "
        f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs, base work {args.base_ms:g} ms "
        f"({adapter.matmuls} matmuls 128x128), drift '!' = detected"
    )


if __name__ == "__main__":
    main()
