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

Models: ``--model spread`` (the default) is a held-out adapter with its own knob,
``spread``: each sample costs a fixed number of matmuls (fixed CPU work) times
``1 + spread * z`` with ``z`` the sample's own fixed lognormal draw, so the four
configurations' latencies spread by construction from not at all (0) to widely (1.5), as
a VLM's do when image sizes vary at a high tier but not at a low one. ``--model
reference``: the reference VLM on shapes-vqa (one thread), knobs tier x top_k.

    python benchmarks/bench_early_stop.py                 # rel 0.05, plan of 3000 samples

The plan is long enough (3000) for the widest configuration to reach +-5%: with a plan
that caps it first (300 in the first version), the cap, not the rule, sets both sweeps'
sizes and the ratio says nothing about early stopping.
    python benchmarks/bench_early_stop.py --rel 0.03 --plan 600 --model reference
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from typing import Any

import numpy as np
import torch
from _work_adapter import MatmulWork

from knoblab.models.adapter import Prepared

SPREADS = (0.0, 0.25, 0.5, 1.5)


class SpreadAdapter(MatmulWork):
    """Per-sample cost ``matmuls * (1 + spread * z_sample)``: the knob sets the spread."""

    name, knob, values = "spread-work", "spread", SPREADS
    describe = "how widely sample costs vary"

    def __init__(self, matmuls: int = 200, size: int = 128):
        super().__init__(matmuls, size)
        self.z = np.random.default_rng(0).lognormal(0.0, 0.6, 100_000)

    def matmuls_for(self, prepared: Prepared) -> int:
        z = float(self.z[prepared.inputs.sample_id % self.z.size])
        return round(self.matmuls * (1.0 + float(self.setting) * z))


def _sweep(
    adapter: Any, dataset: Any, knobs: dict[str, Any], plan: int, precision: dict[str, Any] | None
) -> Any:
    from rich.console import Console

    from knoblab.profiling.runner import run_sweep

    with tempfile.TemporaryDirectory() as out:
        cfg = {
            "dataset": {"name": dataset.name,
                        "sampling": {"num_samples_per_epoch": plan, "randomize": True, "seed": 0}},
            "knobs": knobs,
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
    ap.add_argument("--plan", type=int, default=3000, help="the plan's samples (the max)")
    ap.add_argument("--matmuls", type=int, default=60, help="spread model: matmuls at z = 0")
    ap.add_argument("--min", type=int, default=20)
    ap.add_argument("--model", choices=("spread", "reference"), default="spread")
    args = ap.parse_args()

    from rich.table import Table

    from knoblab.console import console as wide_console
    from knoblab.data.shapes import ShapesVQA
    from knoblab.models.registry import build_adapter
    from knoblab.profiling.precision import PrecisionConfig, precision_of

    warnings.filterwarnings("ignore", message="reference weights not found")
    torch.set_num_threads(1)
    console = wide_console(160)
    if args.model == "reference":
        dataset, adapter = ShapesVQA(2000), build_adapter({"kind": "reference"})
        knobs = {"tier": ["low", "medium", "high"], "top_k": [1, 4], "num_active_blocks": [4]}
    else:
        from knoblab.profiling.synthetic import ListDataset

        dataset, adapter = ListDataset.synthetic(2000, name="spread"), SpreadAdapter(args.matmuls)
        knobs = {"spread": list(SPREADS)}
    rule = {"field": "T_total", "stat": "p95", "rel_half_width": args.rel, "min": args.min}
    early = _sweep(adapter, dataset, knobs, args.plan, rule)
    needed = {
        " ".join(f"{k}={v}" for k, v in r["knobs"].items()): r["precision"]
        for r in early.records.values()
    }
    n_fixed = max(p["samples_needed"] for p in needed.values())
    fixed = _sweep(adapter, dataset, knobs, n_fixed, None)
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
        f"{all(p['reached'] for p in needed.values())}; model {args.model}; load average "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
