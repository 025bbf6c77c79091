"""Early stopping: samples needed for a stated p95 precision against a fixed-N sweep.

Claim (issue 13): with ``run.precision`` (T_total p95, 95 % bootstrap CI half-width <=
``--rel`` of the figure) a sweep measures at most 60 % of the samples that a fixed-N
sweep of the same precision measures.

A fixed-N sweep reaches the precision for every configuration only when N is the need
of its hardest configuration, so the fixed-N sweep here measures every configuration at
N = the largest ``samples_needed`` of the early-stopping sweep (the runs alternate,
interleaved schedules both), and the table shows each configuration's p95 half-width
there: it should meet the rule too. Ratio = samples of the early-stopping sweep / (N x
configurations).

Model: the reference VLM on shapes-vqa (one thread), knobs tier x top_k: image sizes
vary, so the high tiers' latencies spread wider (more crops for some images) and need
more samples than the low ones.

    python benchmarks/bench_early_stop.py                 # rel 0.05, plan of 400 samples
    python benchmarks/bench_early_stop.py --rel 0.03 --plan 600
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from typing import Any


def _sweep(adapter: Any, dataset: Any, plan: int, precision: dict[str, Any] | None) -> Any:
    from rich.console import Console

    from knoblab.profiling.runner import run_sweep

    with tempfile.TemporaryDirectory() as out:
        cfg = {
            "dataset": {"name": "shapes-vqa",
                        "sampling": {"num_samples_per_epoch": plan, "randomize": True, "seed": 0}},
            "knobs": {"tier": ["low", "medium", "high"], "top_k": [1, 4], "num_active_blocks": [4]},
            "design": {"name": "full"},
            "run": {"output_dir": out, "warmup_runs": 2, "progress": False, "max_new_tokens": 4,
                    "precision": precision},
        }  # fmt: skip
        return run_sweep(cfg, adapter=adapter, dataset=dataset, console=Console(quiet=True))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rel", type=float, default=0.05, help="p95 CI half-width / p95")
    ap.add_argument("--plan", type=int, default=400, help="the plan's samples (the max)")
    ap.add_argument("--min", type=int, default=20)
    args = ap.parse_args()

    import torch
    from rich.table import Table

    from knoblab.console import console as wide_console
    from knoblab.data.shapes import ShapesVQA
    from knoblab.models.registry import build_adapter
    from knoblab.profiling.precision import PrecisionConfig, precision_of

    warnings.filterwarnings("ignore", message="reference weights not found")
    torch.set_num_threads(1)
    console = wide_console(160)
    dataset = ShapesVQA(2000)
    adapter = build_adapter({"kind": "reference"})
    rule = {"field": "T_total", "stat": "p95", "rel_half_width": args.rel, "min": args.min}
    early = _sweep(adapter, dataset, args.plan, rule)
    needed = {
        " ".join(f"{k}={v}" for k, v in r["knobs"].items()): r["precision"]
        for r in early.records.values()
    }
    n_fixed = max(p["samples_needed"] for p in needed.values())
    fixed = _sweep(adapter, dataset, n_fixed, None)
    cfg = PrecisionConfig(rel_half_width=args.rel, min=args.min)
    table = Table(title=f"T_total p95 to +-{args.rel:.0%} (95% bootstrap CI): early stopping "
                        f"against a fixed N = {n_fixed} (the hardest configuration's need)")  # fmt: skip
    for col in ("configuration", "early: samples", "reached", "half-width", "fixed-N half-width"):
        table.add_column(col, justify="right")
    fixed_hw = {
        " ".join(f"{k}={v}" for k, v in r["knobs"].items()): precision_of(
            r["per_sample_results"], cfg
        )["half_width_rel"]
        for r in fixed.records.values()
    }
    for name, p in sorted(needed.items()):
        table.add_row(name, str(p["samples_needed"]), "yes" if p["reached"] else "NO",
                      f"{p['half_width_rel']:.1%}", f"{fixed_hw[name]:.1%}")  # fmt: skip
    total = sum(p["samples_needed"] for p in needed.values())
    ratio = total / (n_fixed * len(needed))
    table.add_row("[bold]total[/bold]", str(total), "", "", f"{n_fixed * len(needed)}")
    console.print(table)
    console.print(
        f"early stopping measured {ratio:.1%} of the fixed-N sweep's samples (goal <= 60%: "
        f"{'met' if ratio <= 0.6 else 'NOT met'}); all reached: "
        f"{all(p['reached'] for p in needed.values())}; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
