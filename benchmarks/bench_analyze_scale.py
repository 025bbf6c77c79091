"""``knoblab analyze`` time and peak memory against sweep size (issue 13).

Claim (goal): a sweep of 500 configurations x 1000 samples is analysed (E1, E2, E3 with
its leave-one-configuration-out evaluation, the report with its plots) in <= 30 s and
< 2 GB peak resident memory, on the 2-core development machine.

How: for each size (configurations x samples per configuration) a synthetic sweep in
``knoblab profile``'s record layout (``knoblab.analysis.synthetic.write_synthetic_results``,
vision_tokens x top_k x blocks, 3% timing noise) is written once; then ``knoblab analyze``
runs in a fresh Python process (``knoblab.cli.main``), which reports its wall time,
its peak RSS (``resource.getrusage``) and the time of the estimator's fit and
evaluation within it, and its CPU time (user + system: on a shared machine the figure
other processes' load barely moves). The baseline in the same run is the smallest sweep: the table
gives every size's time per 1000 sample rows against it (1.0 = linear scaling).

    python benchmarks/bench_analyze_scale.py                       # 32x200, 128x200, 128x1000, 500x1000
    python benchmarks/bench_analyze_scale.py --sizes 32x200 128x200 --out /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

GOAL_CONFIGS, GOAL_SAMPLES, GOAL_S, GOAL_MB = 500, 1000, 30.0, 2048.0
GRIDS = {32: (2, 4, 4), 128: (2, 8, 8), 500: (5, 10, 10)}  # vision values x top_k x blocks

CHILD = r"""
import json, resource, sys, time, contextlib, io
t0 = time.perf_counter()
from knoblab.analysis import estimator
fit = {"s": 0.0}
orig = estimator.fit_and_evaluate
def timed(*a, **k):
    t = time.perf_counter()
    try:
        return orig(*a, **k)
    finally:
        fit["s"] += time.perf_counter() - t
estimator.fit_and_evaluate = timed
import knoblab.analysis.analyze as an
an.fit_and_evaluate = timed
from knoblab.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    rc = main(["analyze", sys.argv[1], "--out", sys.argv[2]])
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
out = {"rc": rc, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}
print(json.dumps(out | {"estimator_s": fit["s"]}))
"""


def grid(configs: int) -> tuple[int, int, int]:
    """(vision values, top_k values, block values) whose product is ``configs``."""
    if configs in GRIDS:
        return GRIDS[configs]
    side = max(1, round(configs ** (1 / 3)))
    return side, side, max(1, configs // (side * side))


def make_sweep(root: Path, configs: int, samples: int) -> Path:
    """Write (once) a synthetic sweep of ``configs`` x ``samples`` under ``root``."""
    from knoblab.analysis.synthetic import write_synthetic_results

    nv, nk, nb = grid(configs)
    d = root / f"sweep_{nv * nk * nb}x{samples}"
    if not (d / "environment.json").is_file():
        write_synthetic_results(
            d,
            tiers=None,
            vision_tokens=[64 * (i + 1) for i in range(nv)],
            top_ks=list(range(1, nk + 1)),
            blocks=list(range(1, nb + 1)),
            num_samples=samples,
            noise=0.03,
            seed=7,
        )
    return d


def run_analyze(sweep: Path, out: Path) -> dict[str, float]:
    """``knoblab analyze`` in a fresh process: wall time, peak RSS, estimator time."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", CHILD, str(sweep), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    outer = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"knoblab analyze failed on {sweep}:\n{p.stderr[-2000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["process_s"] = outer
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["32x200", "128x200", "128x1000", "500x1000"])
    ap.add_argument("--out", help="where the synthetic sweeps go (kept; default: a temp dir)")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_analyze_scale_"))
    con = Console(width=140)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    con.print(
        f"[bold]knoblab analyze vs sweep size[/bold]: {os.cpu_count()} CPUs, load {load:.1f}; sweeps in {root}"
    )
    rows = []
    for size in args.sizes:
        c, n = (int(v) for v in size.lower().split("x"))
        t = time.perf_counter()
        sweep = make_sweep(root, c, n)
        gen = time.perf_counter() - t
        r = run_analyze(sweep, root / f"analysis_{c}x{n}")
        rows.append((c, n, gen, r))
        con.print(
            f"  {c}x{n}: analyze {r['wall_s']:.1f} s, peak {r['rss_mb']:.0f} MB (sweep written in {gen:.0f} s)"
        )
    base = rows[0][3]["wall_s"] / (rows[0][0] * rows[0][1] / 1000)
    t = Table(title="knoblab analyze: wall time and peak memory against sweep size")
    for col in (
        "configs x samples",
        "rows",
        "analyze s",
        "CPU s",
        "of which estimator s",
        "peak RSS MB",
        "s per 1000 rows vs first",
    ):
        t.add_column(col, justify="right")
    for c, n, _, r in rows:
        per = r["wall_s"] / (c * n / 1000)
        t.add_row(
            f"{c} x {n}",
            f"{c * n}",
            f"{r['wall_s']:.1f}",
            f"{r['cpu_s']:.1f}",
            f"{r['estimator_s']:.1f}",
            f"{r['rss_mb']:.0f}",
            f"{per / base:.3f}",
        )
    con.print(t)
    goal = [r for c, n, _, r in rows if (c, n) == (GOAL_CONFIGS, GOAL_SAMPLES)]
    if goal:
        ok = goal[0]["wall_s"] <= GOAL_S and goal[0]["rss_mb"] < GOAL_MB
        verdict = "[green]meets[/green]" if ok else "[red]misses[/red]"
        con.print(
            f"goal ({GOAL_CONFIGS} x {GOAL_SAMPLES} in <= {GOAL_S:g} s and < {GOAL_MB / 1024:g} GB): {verdict} "
            f"({goal[0]['wall_s']:.1f} s wall, {goal[0]['cpu_s']:.1f} s CPU, {goal[0]['rss_mb']:.0f} MB)",
            highlight=False,
        )
    end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if max(load, end) > (os.cpu_count() or 1):
        con.print(
            f"[yellow]note:[/yellow] load average {load:.1f} -> {end:.1f} on {os.cpu_count()} CPUs: other work "
            "shared the cores, so wall times are inflated; CPU s is this process's own time.",
            highlight=False,
        )


if __name__ == "__main__":
    main()
