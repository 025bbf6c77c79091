"""knoblab's measured peak memory against the kernel's own count, in separate processes.

Claim (issue 15): the peak resident memory knoblab reports for a span of work
(``knoblab.profiling.memory.MemorySpan`` on CPU) is within 5 % of an independent
measurement.

Each measurement is a fresh child process (``--child``) that imports torch and knoblab,
builds the reference VLM, then runs one workload inside a ``MemorySpan`` and prints what
knoblab measured. The parent reads the child's peak resident set from the kernel when
it exits (``os.wait4``'s ``ru_maxrss``, the figure ``/usr/bin/time -v`` prints as
"Maximum resident set size"): no knoblab code is involved. Columns:

* **peak**: knoblab's ``peak_bytes`` vs the child's ``ru_maxrss`` (the workload is the
  child's largest moment, so both are the same peak). Read with care for ``vmhwm``:
  resetting the kernel's high-water mark also resets what ``ru_maxrss`` reports from
  then on, so that row checks knoblab reads the mark right, not the mark itself; the
  ``sampled`` rows (a thread reading ``/proc/self/statm``) are fully independent.
* **increase**: knoblab's ``increase_bytes`` vs ``ru_maxrss`` of the child minus that of a
  twin child that does everything but the workload (the kernel's view of what the
  workload added; both children start alike, so the twin's peak is the span's start).

Workloads: ``tensor`` (a 256 MiB tensor allocated, written and freed inside the span:
only a peak method sees it afterwards) and ``batch`` (the reference VLM answering 32
high-tier samples as one batch through ``measure_batch``). Rounds alternate the children
so load and allocator state spread over all of them.

    python benchmarks/bench_memory.py              # 2 rounds
    python benchmarks/bench_memory.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

WORKLOADS = ("tensor", "batch")
METHODS = ("vmhwm", "sampled")


def child(workload: str, method: str) -> None:
    """Build the model, run ``workload`` inside a MemorySpan, print knoblab's figures."""
    import torch

    from knoblab.data.shapes import ShapesVQA
    from knoblab.models.registry import build_adapter
    from knoblab.profiling.batch import measure_batch
    from knoblab.profiling.memory import MemorySpan

    torch.set_num_threads(2)
    adapter = build_adapter({"kind": "reference"})
    adapter.apply_knobs({"tier": "high", "top_k": 2, "num_active_blocks": 4})
    ds = ShapesVQA(32, seed=1)
    prepared = [adapter.preprocess(ds[i]) for i in range(32)]
    measure_batch(adapter, prepared[:2], 4)  # warm: first-call allocations before the span
    if workload == "none":
        print(json.dumps({}))
        return
    with MemorySpan("cpu", method=method) as span:
        if workload == "tensor":
            x = torch.ones(256 * 2**20 // 4)
            del x
        else:
            measure_batch(adapter, prepared, 4)
    print(json.dumps(span.result.to_dict()))


def run_child(workload: str, method: str) -> tuple[dict, int]:
    """(knoblab's figures, the child's ru_maxrss in bytes)."""
    cmd = [sys.executable, __file__, "--child", workload, method]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child {workload}/{method} failed with exit code {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss * 1024  # KiB


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", nargs=2, metavar=("WORKLOAD", "METHOD"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    from rich.console import Console
    from rich.table import Table

    results: dict[tuple[str, str], list[tuple[dict, int, int]]] = {}
    for r in range(args.rounds):
        cells = [(w, m) for w in WORKLOADS for m in METHODS]
        if r % 2:
            cells.reverse()
        for w, m in cells:
            _, twin = run_child("none", m)
            figures, maxrss = run_child(w, m)
            results.setdefault((w, m), []).append((figures, maxrss, twin))
    mib = 2**20
    load = os.getloadavg()
    table = Table(
        title=f"knoblab's peak vs the kernel's (ru_maxrss), {args.rounds} rounds; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    cols = ("workload", "method", "knoblab peak MiB", "kernel peak MiB", "peak diff")
    cols += ("knoblab increase MiB", "kernel increase MiB", "increase diff")
    for col in cols:
        table.add_column(col, justify="right")
    worst = 0.0
    for (w, m), runs in results.items():
        for figures, maxrss, twin in runs:
            peak_diff = (figures["peak_bytes"] - maxrss) / maxrss
            kernel_inc = maxrss - twin
            inc_diff = (figures["increase_bytes"] - kernel_inc) / max(kernel_inc, 1)
            worst = max(worst, abs(peak_diff))
            table.add_row(
                w,
                m,
                f"{figures['peak_bytes'] / mib:.1f}",
                f"{maxrss / mib:.1f}",
                f"{peak_diff:+.2%}",
                f"{figures['increase_bytes'] / mib:.1f}",
                f"{kernel_inc / mib:.1f}",
                f"{inc_diff:+.1%}",
            )
    Console(width=170).print(table)
    print(
        f"goal: knoblab's peak within 5% of the kernel's: worst {worst:.2%} "
        f"({'met' if worst <= 0.05 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
