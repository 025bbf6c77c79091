"""The sweep runner's cost over bare calls of the same stages on the same samples.

Claim (issues 4 and 13): on CPU the runner's measurement loop (interleaved schedule,
knobs, warmup, timed runs, scoring, per-sample rows, the journal line per sample, load
monitor, progress bar, atomic record writes) takes at most 1 % longer than a bare loop
that makes exactly the same model calls in the same order — ``apply_knobs`` at each
switch, the warmup inferences, one drift-probe inference per round, ``dataset[i]``,
``preprocess``, and the measured sample's batch of 1 through the batched stages
(``collate``, ``encode_vision_batch``, ``prefill_batch``, ``decode_step_batch``,
``finish_batch``: what ``profiling.batch.measure_batch`` calls; warmup and probe
inferences through ``encode_vision`` / ``prefill`` / ``decode``) — with nothing around them. Ratio = runner / bare, measured in one run,
passes interleaved (bare, runner, bare, runner, ...) so machine load hits both alike.
Two clocks: wall time, and this process's CPU time (``time.process_time``, all threads,
the progress bar's included), which other processes' load barely moves: on a shared
machine the CPU-time ratio is the one to read.
The end-to-end ratio adds the runner's one-off setup (plan, directory checks) and
finish (samples.parquet, report.md, summary table).

Model: the reference VLM (random weights unless trained ones are shipped) on
shapes-vqa, one intra-op thread (the cpu preset).

    python benchmarks/bench_overhead.py                    # 4 configurations x 60 samples, 5 passes
    python benchmarks/bench_overhead.py --samples 100 --passes 5
    python benchmarks/bench_overhead.py --breakdown        # C: where the runner's cost goes
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

from knoblab.console import console as wide_console


def bare_loop(
    adapter: Any,
    dataset: Any,
    configs: list[dict[str, Any]],
    indices: list[int],
    warmup: int,
    runs: int,
    max_new: int,
    keep: Callable[[int, int, Callable[[], None]], None] | None = None,
) -> tuple[float, float]:
    """The runner's model calls in the runner's order (interleaved rounds, seed 0).

    ``keep(config, round, measure)``, when given, runs each measured sample's calls
    (``measure()``) itself: E's minimal loop wraps them in what crash safety and the cost
    figures need and nothing else.

    Per round: the drift probe (the first configuration on the first sample), then every
    configuration in the round's seeded order: ``apply_knobs`` when the knobs change, the
    warmup at a configuration's first visit, the round's sample. (wall s, CPU s)
    """
    import torch

    from knoblab.models.adapter import supports_batching
    from knoblab.profiling.schedule import round_order

    def infer(prepared: object) -> None:
        adapter.decode(adapter.prefill(prepared, adapter.encode_vision(prepared)), max_new)

    def infer_batch(prepared: object) -> None:
        """A measured sample: the runner runs it as a batch of 1 through the batched stages."""
        if not supports_batching(adapter):
            infer(prepared)
            return
        with torch.inference_mode():
            batch = adapter.collate([prepared])
            state = adapter.prefill_batch(batch, adapter.encode_vision_batch(batch), max_new)
            while not all(state.finished):
                adapter.decode_step_batch(state)
            adapter.finish_batch(state)

    t0, c0 = time.perf_counter(), time.process_time()
    current, warmed, probe = None, set(), None

    def switch(c: int) -> None:
        nonlocal current
        if current == c:
            return
        adapter.apply_knobs(configs[c])
        current = c
        if c not in warmed:
            warmed.add(c)
            first = adapter.preprocess(dataset[indices[0]])
            for _ in range(warmup):
                infer(first)

    for r, i in enumerate(indices):
        switch(0)
        probe = probe or adapter.preprocess(dataset[indices[0]])
        infer(probe)
        for c in round_order(len(configs), r, 0):
            switch(c)
            prepared = adapter.preprocess(dataset[i])
            for _ in range(runs):
                if keep is None:
                    infer_batch(prepared)
                else:
                    keep(c, r, functools.partial(infer_batch, prepared))
    return time.perf_counter() - t0, time.process_time() - c0


def minimal_keep(fd: int, device: str = "cpu") -> Callable[[int, int, Callable[[], None]], None]:
    """E: per measured sample only what the issue's promises need, done as cheaply as
    Python allows: a memory span (the peak), two clock marks, and one compact binary line
    appended with one ``os.write`` (a kill loses at most the sample in flight). No rows,
    scoring, records or intervals: the floor of any loop that keeps those promises."""
    import struct

    from knoblab.profiling.memory import MemorySpan

    clock = time.perf_counter

    def keep(c: int, r: int, measure: Callable[[], None]) -> None:
        with MemorySpan(device) as span:
            t0 = clock()
            measure()
            t1 = clock()
        peak = span.result.peak_bytes if span.result is not None else -1
        os.write(fd, struct.pack("<iiddq", c, r, t0, t1, peak))

    return keep


class ModelTime:
    """Seconds spent inside the model's calls (its stages, ``preprocess``, ``apply_knobs``)
    and the dataset's reads, for D: a pass's time outside them is the loop's own.

    Wraps the adapter instance's methods and stands in for the dataset; the bare loop and
    the runner make the very same wrapped calls, so the wrappers' own cost cancels out.
    """

    CALLS = (
        "apply_knobs",
        "preprocess",
        "collate",
        "encode_vision_batch",
        "prefill_batch",
        "decode_step_batch",
        "finish_batch",
        "encode_vision",
        "prefill",
        "decode",
    )

    def __init__(self, adapter: Any, dataset: Any) -> None:
        self.seconds = 0.0
        self.dataset = _TimedDataset(dataset, self)
        for name in self.CALLS:
            if callable(getattr(adapter, name, None)):
                setattr(adapter, name, self._timed(getattr(adapter, name)))

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter

        @functools.wraps(fn)
        def call(*a: Any, **k: Any) -> Any:
            t0 = clock()
            try:
                return fn(*a, **k)
            finally:
                self.seconds += clock() - t0

        return call


class _TimedDataset:
    def __init__(self, dataset: Any, owner: ModelTime) -> None:
        self._dataset, self._owner = dataset, owner

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, i: int) -> Any:
        t0 = time.perf_counter()
        try:
            return self._dataset[i]
        finally:
            self._owner.seconds += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)


def zero_sweep(
    zero: Any, zds: Any, lists: dict[str, list[Any]], samples: int, runs: int, max_new: int
) -> float:
    """One ``run_sweep`` of the zero-cost model over ``lists``: its measuring loop's seconds."""
    from rich.console import Console

    from knoblab.profiling.runner import run_sweep

    with tempfile.TemporaryDirectory() as out:
        cfg = {
            "dataset": {"name": "zero", "sampling": {"num_samples_per_epoch": samples, "seed": 0}},
            "knobs": lists,
            "design": {"name": "full"},
            "run": {
                "output_dir": out,
                "warmup_runs": 0,
                "num_runs_per_sample": runs,
                "max_new_tokens": max_new,
            },
        }
        res = run_sweep(cfg, adapter=zero, dataset=zds, console=Console(quiet=True))
    # A variant that breaks the runner (a stub missing an attribute) must not read as cheap.
    bad = {k: r["status"] for k, r in res.records.items() if r["status"] != "ok"}
    if bad or len(res.records) != len(res.ran):
        raise RuntimeError(f"the zero-cost sweep did not measure every configuration: {bad}")
    return res.seconds["measure"]


def zero_cost(
    lists: dict[str, list[Any]], samples: int, runs: int, max_new: int
) -> tuple[Callable[[], float], Callable[[], float], int]:
    """B's two passes on a zero-cost model: (bare loop s, runner loop s) callables and the
    number of measured samples (units) each makes.

    B. The runner's own cost per sample, measured where nothing else is: a model whose
    stages cost nothing, swept over A's knob lists (A's schedule: the same rounds, knob
    switches and probes) with ``samples`` samples; runner loop minus :func:`bare_loop`
    on the same model and configurations. ``main`` runs them in A's passes, interleaved
    with A's, so a slow phase of the machine hits A and B alike.
    """

    from knoblab.profiling.design import make_design
    from knoblab.profiling.synthetic import ListDataset, WaitAdapter

    zero = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0)
    zds = ListDataset.synthetic(samples)
    configs = make_design("full", lists)

    def zero_bare() -> float:
        return bare_loop(zero, zds, configs, list(range(samples)), 0, runs, max_new)[0]

    def zero_runner() -> float:
        return zero_sweep(zero, zds, lists, samples, runs, max_new)

    return zero_bare, zero_runner, len(configs) * samples


def breakdown(lists: dict[str, list[Any]], samples: int, rounds: int = 5) -> None:
    """C. The marginal cost of each part of the runner on B's workload (``--breakdown``).

    Each variant leaves one part out (a diagnostic, not a product setting): the memory
    span per unit, the records' bootstrap intervals, the journal's writes, the whole
    record (built, written) at a configuration's end. Variants and the bare loop
    alternate over ``rounds`` rounds; min of each. What is left with no record at all
    is the per-unit handling (rows, scoring, timers, schedule, knob switches).
    """
    from rich.table import Table

    import knoblab.profiling.journal as journal
    import knoblab.profiling.runner as runner
    import knoblab.records.aggregate as aggregate
    from knoblab.profiling.design import make_design
    from knoblab.profiling.synthetic import ListDataset, WaitAdapter

    zero, zds = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0), ListDataset.synthetic(samples)
    configs = make_design("full", lists)

    class NoSpan:
        result = None
        cpu_s = None

        def __init__(self, *a: Any, **k: Any) -> None: ...

        def __enter__(self) -> NoSpan:
            return self

        def __exit__(self, *a: Any) -> None: ...

    def no_record(self: Any, c: int, *a: Any) -> None:
        self.finished.add(c)

    parts = {  # (module or class, attribute, replacement)
        "memory span per unit": (runner, "MemorySpan", NoSpan),
        "bootstrap intervals": (
            aggregate.Resampler,
            "_cis",
            lambda self, x, stats: {s: (None, None) for s in stats},
        ),
        "journal writes": (journal.Journal, "append", lambda self, *a: None),
        "the whole record": (runner._Loop, "finalise", no_record),
    }

    def sweep() -> float:
        return zero_sweep(zero, zds, lists, samples, 1, 4)

    got: dict[str, list[float]] = {"full runner": [], **{f"without {k}": [] for k in parts}}
    bare: list[float] = []
    sweep()
    for _ in range(rounds):
        bare.append(bare_loop(zero, zds, configs, list(range(samples)), 0, 1, 4)[0])
        got["full runner"].append(sweep())
        for name, (owner, attr, new) in parts.items():
            old = getattr(owner, attr)
            setattr(owner, attr, new)
            try:
                got[f"without {name}"].append(sweep())
            finally:
                setattr(owner, attr, old)
    units, b = len(configs) * samples, min(bare)
    full = (min(got["full runner"]) - b) / units
    t = Table(title=f"C. Where the runner's own cost goes (B's workload, min of {rounds} rounds)")
    for col in ("variant", "runner loop s", "own cost / sample", "the part left out / sample"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for name, v in got.items():
        own = (min(v) - b) / units
        part = "" if name == "full runner" else f"{(full - own) * 1e6:.0f} us"
        t.add_row(name, f"{min(v):.3f}", f"{own * 1e6:.0f} us", part)
    wide_console(160).print(t)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--runs", type=int, default=1, help="num_runs_per_sample")
    ap.add_argument(
        "--zero-samples",
        type=int,
        default=500,
        help="B: samples per configuration (zero-cost model)",
    )
    ap.add_argument(
        "--breakdown", action="store_true", help="C: the marginal cost of each part of the runner"
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="E: the cost of a minimal loop (memory span + one journal write per sample)",
    )
    args = ap.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from knoblab.data.shapes import ShapesVQA
    from knoblab.models.registry import build_adapter
    from knoblab.profiling.design import make_design
    from knoblab.profiling.records import device_name
    from knoblab.profiling.runner import run_sweep

    warnings.filterwarnings("ignore", message="reference weights not found")
    torch.set_num_threads(1)
    console = wide_console(160)
    adapter = build_adapter({"kind": "reference"})
    model_time = ModelTime(adapter, ShapesVQA(1000))  # D: the time inside the model
    dataset = model_time.dataset
    lists = {"tier": ["low", "high"], "top_k": [1, 4], "num_active_blocks": [4]}
    configs = make_design("full", lists)
    warmup, max_new = 2, 4
    indices = list(range(args.samples))

    bare = functools.partial(
        bare_loop, adapter, dataset, configs, indices, warmup, args.runs, max_new
    )

    def runner() -> tuple[float, float, float]:
        with tempfile.TemporaryDirectory() as out:
            cfg = {
                "dataset": {
                    "name": "shapes-vqa",
                    "sampling": {"num_samples_per_epoch": args.samples, "seed": 0},
                },
                "design": {"name": "full"},
                "run": {
                    "output_dir": out,
                    "warmup_runs": warmup,
                    "num_runs_per_sample": args.runs,
                    "max_new_tokens": max_new,
                },
            }
            cfg["knobs"] = lists
            result = run_sweep(cfg, adapter=adapter, dataset=dataset, console=Console(quiet=True))
        sec = result.seconds
        return sec["measure"], sec["setup"] + sec["measure"] + sec["finish"], sec["measure_cpu"]

    zero_bare, zero_runner, units = zero_cost(lists, args.zero_samples, args.runs, max_new)
    bare()  # warm caches, allocator, lazy imports
    zero_runner()
    rows, zero_rows, outside = [], [], []
    for p in range(args.passes):  # A's and B's passes interleaved: one machine state
        model_time.seconds = 0.0
        b_wall, b_cpu = bare()
        b_model = model_time.seconds
        model_time.seconds = 0.0
        r_loop, r_total, r_cpu = runner()
        r_model = model_time.seconds  # all in the loop (setup only asks len(dataset))
        rows.append((p, b_wall, r_loop, r_total, b_cpu, r_cpu))
        outside.append((b_wall - b_model, r_loop - r_model))
        zero_rows.append((zero_bare(), zero_runner()))

    title = f"A. Reference model, {len(configs)} configurations x {args.samples} samples x {args.runs} run(s)"
    table = Table(title=title)
    for col in (
        "pass",
        "bare wall s",
        "runner loop wall s",
        "runner end-to-end s",
        "bare CPU s",
        "runner loop CPU s",
    ):
        table.add_column(col, justify="right")
    for p, bw, rl, rt, bc, rc in rows:
        table.add_row(str(p), f"{bw:.3f}", f"{rl:.3f}", f"{rt:.3f}", f"{bc:.3f}", f"{rc:.3f}")
    # The least-disturbed pass of each (min) is the estimate of its cost on a quiet machine.
    best = [min(r[i] for r in rows) for i in range(1, 6)]
    table.add_row("min", *(f"{v:.3f}" for v in best))
    console.print(table)
    n_inferences = len(configs) * (args.samples * args.runs + warmup) + args.samples
    per_inference = best[0] / n_inferences

    zb, zr = (min(r[i] for r in zero_rows) for i in (0, 1))
    own = max(zr - zb, 0.0) / units
    per_sample = per_inference * args.runs
    estimate = 1 + own / per_sample
    # the same estimate pass by pass (each pass's own cost over its own reference sample)
    per_pass = sorted(
        1 + max(zr_p - zb_p, 0.0) / units / (r[1] / n_inferences * args.runs)
        for (zb_p, zr_p), r in zip(zero_rows, rows, strict=True)
    )
    t2 = Table(
        title=f"B. Runner cost per sample (zero-cost model, A's {len(configs)} configurations x "
        f"{args.zero_samples} samples = {units} measured samples, min of {args.passes} passes "
        "interleaved with A's)"
    )
    for col in (
        "bare loop s",
        "runner loop s",
        "runner's own cost / sample",
        "reference model / sample",
        "runner / bare (estimate)",
    ):
        t2.add_column(col, justify="right")
    t2.add_row(
        f"{zb:.3f}",
        f"{zr:.3f}",
        f"{own * 1e6:.0f} us",
        f"{per_sample * 1e3:.2f} ms",
        f"[bold]{estimate:.4f}[/bold]",
    )
    console.print(t2)
    console.print(
        f"estimate pass by pass: {', '.join(f'{e:.4f}' for e in per_pass)} "
        f"(median {per_pass[len(per_pass) // 2]:.4f})"
    )
    ob, orr = (min(o[i] for o in outside) for i in (0, 1))
    own_d = max(orr - ob, 0.0) / (len(configs) * args.samples)
    estimate_d = 1 + own_d / per_sample
    t3 = Table(
        title="D. The runner's own time on the reference model: each A pass less the time "
        "inside the model's calls and the dataset's reads (min over passes)"
    )
    for col in (
        "bare loop outside s",
        "runner loop outside s",
        "runner's own cost / sample",
        "runner / bare (estimate)",
    ):
        t3.add_column(col, justify="right")
    t3.add_row(f"{ob:.3f}", f"{orr:.3f}", f"{own_d * 1e6:.0f} us", f"[bold]{estimate_d:.4f}[/bold]")
    console.print(t3)
    direct = best[1] / best[0]
    console.print(
        f"direct ratio (min runner loop / min bare, wall): {direct:.4f}; CPU time: {best[4] / best[3]:.4f}; "
        f"end-to-end (setup, parquet, report): {best[2] / best[0]:.4f}"
    )
    console.print(
        f"device: {device_name('cpu')}, torch threads: {torch.get_num_threads()}, load average "
        f"{os.getloadavg()[0]:.1f}; goal runner / bare <= 1.01: "
        f"{'met' if estimate_d <= 1.01 else 'NOT met'} (estimate D: B, the same work with nothing "
        "between the samples to evict from the caches, is a floor; the direct ratio is only as "
        "steady as the machine)"
    )
    if args.floor:
        floor_section(adapter, dataset, model_time, configs, indices, warmup, args, max_new)
    if args.breakdown:
        breakdown(lists, args.zero_samples)


def floor_section(
    adapter: Any,
    dataset: Any,
    model_time: ModelTime,
    configs: list[dict[str, Any]],
    indices: list[int],
    warmup: int,
    args: argparse.Namespace,
    max_new: int,
) -> None:
    """E. D's reading of :func:`minimal_keep`'s loop against the bare loop (min over
    ``args.passes`` interleaved passes): what a runner that did nothing else would cost."""
    from rich.table import Table

    outside: dict[str, list[float]] = {"bare": [], "minimal": []}
    with tempfile.TemporaryDirectory() as d:
        fd = os.open(os.path.join(d, "journal.bin"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            keep = minimal_keep(fd)
            for p in range(args.passes + 1):  # the first pass warms up
                for name, k in (("bare", None), ("minimal", keep)):
                    model_time.seconds = 0.0
                    wall = bare_loop(
                        adapter, dataset, configs, indices, warmup, args.runs, max_new, keep=k
                    )[0]
                    if p:
                        outside[name].append(wall - model_time.seconds)
        finally:
            os.close(fd)
    b, m = min(outside["bare"]), min(outside["minimal"])
    per = (m - b) / (len(configs) * len(indices) * args.runs)
    t = Table(title="E. A minimal loop's own time (D's clock): memory span + one write per sample")
    for col in ("bare loop outside s", "minimal loop outside s", "its own cost / sample"):
        t.add_column(col, justify="right")
    t.add_row(f"{b:.3f}", f"{m:.3f}", f"{per * 1e6:.0f} us")
    wide_console(160).print(t)


if __name__ == "__main__":
    main()
