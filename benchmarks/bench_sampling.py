"""Randomized sampling plans at scale: memory and indices/s, against torch's shuffles.

Claim (issue 2): a randomized ``SamplingPlan`` over 10^9 samples is created and its
first 10^6 indices read with < 50 MB extra memory, at > 1M indices/s (vectorised).
Baseline: ``torch.randperm(n)`` and ``torch.utils.data.RandomSampler`` (which calls
``randperm(n).tolist()``), both O(n) memory; skipped where they would not fit.

Each case runs in a fresh subprocess; "extra memory" is the peak RSS (VmHWM, reset
before the case) minus the RSS after imports, so torch's and numpy's allocations count.

    python benchmarks/bench_sampling.py                       # 10^6, 10^8, 10^9
    python benchmarks/bench_sampling.py --sizes 1e6 1e7 --read 1e5
    python benchmarks/bench_sampling.py --max-baseline-gb 40  # allow bigger baselines
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

METHODS = {
    "plan-blocks": "SamplingPlan (vectorised)",
    "plan-iter": "SamplingPlan (Python ints)",
    "randperm": "torch.randperm",
    "randomsampler": "RandomSampler (Python ints)",
}
# Bytes per dataset sample that each baseline needs: an int64 permutation (8 B), and for
# RandomSampler its .tolist() on top (8 B pointer + ~32 B int object per element).
BASELINE_BYTES = {"randperm": 8, "randomsampler": 48}


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    try:  # Linux: writing 5 to clear_refs resets VmHWM to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_case(method: str, n: int, read: int) -> dict:
    """One measurement, in this process: time and peak extra memory to read ``read`` indices."""
    import itertools

    import numpy as np
    import torch

    from knoblab.sampling import SamplingConfig, SamplingPlan

    torch.set_num_threads(1)  # a fair, single-core comparison (the plan is single-threaded)
    SamplingPlan(SamplingConfig(randomize=True, seed=1), 10).indices(0, 10)  # warm imports
    peak_reset = _reset_peak()
    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    if method in ("plan-blocks", "plan-iter"):
        plan = SamplingPlan(SamplingConfig(randomize=True, seed=0), n)
        if method == "plan-blocks":
            check = 0
            for start in range(0, read, 1 << 16):
                check += int(plan.indices(start, min(start + (1 << 16), read)).sum())
        else:
            check = sum(itertools.islice(iter(plan), read))
    elif method == "randperm":
        check = int(torch.randperm(n)[:read].sum())
    elif method == "randomsampler":
        from torch.utils.data import RandomSampler

        check = sum(itertools.islice(iter(RandomSampler(range(n))), read))
    else:
        raise SystemExit(f"unknown method {method!r}")
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM") if peak_reset else _status("VmRSS")
    del np
    return {"seconds": seconds, "extra_bytes": max(0, peak - rss0), "check": check}


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e8, 1e9])
    parser.add_argument("--read", type=float, default=1e6, help="indices read per case")
    parser.add_argument(
        "--max-baseline-gb",
        type=float,
        default=None,
        help="skip a baseline needing more (default: a quarter of MemAvailable)",
    )
    parser.add_argument("--case", nargs=3, metavar=("METHOD", "N", "READ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        method, n, read = args.case
        print(json.dumps(run_case(method, int(n), int(read))))
        return

    from rich.table import Table

    from knoblab.console import console as wide_console

    read = int(args.read)
    budget = (
        args.max_baseline_gb * 2**30 if args.max_baseline_gb is not None else available_bytes() / 4
    )
    console = wide_console(160)
    rows = []
    for n in (int(s) for s in args.sizes):
        results = {}
        for method in METHODS:
            need = BASELINE_BYTES.get(method, 0) * n
            if need > budget:
                results[method] = {
                    "skipped": f"skipped: would need {need / 2**30:.1f} GB",
                    "gb": need / 2**30,
                }
                continue
            with console.status(f"n={n:.0e} {method}"):
                proc = subprocess.run(
                    [sys.executable, __file__, "--case", method, str(n), str(min(read, n))],
                    capture_output=True,
                    text=True,
                    check=False,
                )
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                results[method] = {"skipped": f"failed: {tail[:60]}"}
                continue
            results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((n, results))

    table = Table(
        title=f"Randomized plans: read the first {read:,} indices "
        f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch 1 thread)",
        title_justify="left",
    )
    for col, justify in [
        ("dataset size", "right"),
        ("method", "left"),
        ("time (s)", "right"),
        ("indices/s", "right"),
        ("extra memory (MB)", "right"),
        ("speed vs randperm", "right"),
        ("memory vs randperm", "right"),
    ]:
        table.add_column(col, justify=justify)
    for n, results in rows:
        # Ratios against randperm: the cheapest O(n) baseline (RandomSampler = randperm + tolist).
        base = results.get("randperm", {})
        for i, (method, label) in enumerate(METHODS.items()):
            r = results[method]
            size = f"10^{len(str(n)) - 1}" if str(n).strip("0") == "1" else f"{n:,}"
            if "skipped" in r:
                table.add_row(size if i == 0 else "", label, "skipped", "", r["skipped"], "", "")
                continue
            rate = min(read, n) / r["seconds"]
            mb = r["extra_bytes"] / 2**20
            if "seconds" in base:
                speed = f"{base['seconds'] / r['seconds']:.3g}x"
                mem = f"{mb / max(base['extra_bytes'] / 2**20, 1e-9):.3g}x"
            else:
                speed = mem = "n/a (baseline skipped)"
            table.add_row(
                size if i == 0 else "",
                label,
                f"{r['seconds']:.3f}",
                f"{rate / 1e6:.3g} M",
                f"{mb:.1f}",
                speed,
                mem,
            )
        table.add_section()
    console.print(table)
    goal = [r for n, res in rows if n >= 10**9 for m, r in res.items() if m == "plan-blocks"]
    for r in goal:
        if "seconds" in r:
            ok = r["extra_bytes"] < 50 * 2**20 and min(read, 10**9) / r["seconds"] > 1e6
            console.print(
                f"goal (10^9 plan, < 50 MB extra, > 1M indices/s, vectorised): "
                f"{'met' if ok else 'NOT met'}"
            )


if __name__ == "__main__":
    main()
