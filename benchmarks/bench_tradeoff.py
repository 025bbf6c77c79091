"""The reference VLM's accuracy / CPU-latency trade-off across its knobs (issue 3).

Claims:
  * latency grows with each knob: tier low < medium < high, top_k 1 < 2 < 4, blocks half < all
    (the median latency's geometric mean over the other knobs' settings; the count of
    single cells that rise is printed beside it: where two top_k values differ by a
    tenth of a millisecond, one cell can tie within the machine's noise);
  * a single high-tier sample generates in < 100 ms median on a 2-core CPU;
  * with trained weights (the training recipe's), high-tier accuracy beats low by >= 15
    points, all blocks beat half by >= 10, more experts do not lose accuracy, and the
    high-tier, all-blocks, full-top-k configuration reaches >= 80% accuracy (each sample
    scored by its own metric: VQA accuracy, ANLS for the "read the code" questions);
  * on the default ``knoblab profile`` sweep (run as a user runs it, records in a temporary
    folder) the answers span >= 4 distinct output-token counts and E1's decode fit per
    (top_k, blocks) group has a median R^2 >= 0.8 (``--no-sweep`` skips this part).

Every configuration sees the same shapes-vqa samples (batch size 1, greedy). Latency
is ``time.perf_counter`` around encode_vision + prefill + decode (preprocessing is not
timed), after ``--warmup`` untimed samples per configuration; medians and p95 use
numpy's linear interpolation. Ratios are against the cheapest configuration (low tier,
top_k 1, half the blocks) measured in the same run, so a busy machine still compares.

    python benchmarks/bench_tradeoff.py                     # 500 samples, shipped weights
    python benchmarks/bench_tradeoff.py --num-samples 100 --weights runs/ref.safetensors
    python benchmarks/bench_tradeoff.py --json out.json     # also write the numbers
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
import warnings

import numpy as np
import torch
from rich.table import Table

from knoblab.console import console as wide_console
from knoblab.data.sample import sample_metric
from knoblab.data.scoring import score
from knoblab.data.shapes import ShapesVQA
from knoblab.models.reference.adapter import ReferenceAdapter
from knoblab.models.reference.weights import load_reference, shipped_weights_path


def measure(adapter: ReferenceAdapter, samples: list, warmup: int) -> dict:
    prepared = [adapter.preprocess(s) for s in samples]
    for p in prepared[:warmup]:
        adapter.decode(adapter.prefill(p, adapter.encode_vision(p)))
    lat, vis, pre, dec, acc, toks = [], [], [], [], [], []
    for s, p in zip(samples, prepared, strict=True):
        t0 = time.perf_counter()
        v = adapter.encode_vision(p)
        t1 = time.perf_counter()
        st = adapter.prefill(p, v)
        t2 = time.perf_counter()
        g = adapter.decode(st)
        t3 = time.perf_counter()
        lat.append(t3 - t0)
        vis.append(t1 - t0)
        pre.append(t2 - t1)
        dec.append(t3 - t2)
        acc.append(score(sample_metric(s, "vqa"), g.text, s.answers))
        toks.append(p.actual_vision_tokens)
    ms = lambda xs, q=50: float(np.percentile(np.array(xs) * 1000, q))  # noqa: E731
    return {
        "accuracy": float(np.mean(acc)),
        "vision_tokens_mean": float(np.mean(toks)),
        "T_total_p50": ms(lat),
        "T_total_p95": ms(lat, 95),
        "T_vision_p50": ms(vis),
        "T_prefill_p50": ms(pre),
        "T_decode_p50": ms(dec),
    }


def _load() -> str:
    """The 1/5/15-minute load averages (a busy machine shows in the latencies)."""
    import os

    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def decode_checks(weights: str, console) -> list[tuple[str, bool]]:
    """The decode claims on the default ``knoblab profile`` sweep (a child process, as a
    user runs it; records in a temporary folder), checked by the recipe's own function."""
    import tempfile
    from pathlib import Path

    from knoblab.training.recipe import decode_claims, decode_sweep

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        results = decode_sweep(Path(weights), Path(tmp))
        console.print(f"default knoblab profile sweep: {time.perf_counter() - t0:.0f} s")
        return [(f"{claim} ({value:.3g})", ok) for claim, value, ok in decode_claims(results)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--num-samples", type=int, default=500)
    ap.add_argument("--weights", default=None, help=".safetensors (default: the shipped weights)")
    ap.add_argument("--variant", default="easy", choices=["easy", "hard"])
    ap.add_argument("--seed", type=int, default=12345, help="shapes-vqa generation seed (held out)")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared CPU)"
    )
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--top-k", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument(
        "--no-sweep", action="store_true", help="skip the default-profile decode claims"
    )
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_reference(args.weights)
    trained = not any("random initialisation" in str(w.message) for w in caught)
    adapter = ReferenceAdapter(model)
    n_blocks = model.cfg.n_layers
    blocks = sorted({max(1, n_blocks // 2), n_blocks})
    ds = ShapesVQA(args.num_samples, seed=args.seed, variant=args.variant)
    samples = [ds[i] for i in range(args.num_samples)]

    console = wide_console(160)
    weights = args.weights or (
        str(shipped_weights_path()) if trained else "random init (no weights)"
    )
    console.print(
        f"[bold]bench_tradeoff[/]: {args.num_samples} shapes-vqa-{args.variant} samples, weights: {weights}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {_load()}"
    )
    results = {}
    for tier, k, b in itertools.product(("low", "medium", "high"), args.top_k, blocks):
        adapter.apply_knobs({"tier": tier, "top_k": k, "num_active_blocks": b})
        results[(tier, k, b)] = measure(adapter, samples, args.warmup)
        console.print(
            f"  {tier:>6} top_k={k} blocks={b}: {results[(tier, k, b)]['T_total_p50']:.1f} ms",
            highlight=False,
        )

    base = results[("low", min(args.top_k), blocks[0])]["T_total_p50"]
    table = Table(title="Reference VLM: accuracy and CPU latency per knob setting (batch 1)")
    cols = (
        "tier",
        "top_k",
        "blocks",
        "vis tok",
        "acc %",
        "p50 ms",
        "p95 ms",
        "vision",
        "prefill",
        "decode",
        "x base",
    )
    for col in cols:
        table.add_column(col, justify="right", no_wrap=True)
    for (tier, k, b), r in results.items():
        table.add_row(
            tier, str(k), f"{b}/{n_blocks}", f"{r['vision_tokens_mean']:.0f}", f"{100 * r['accuracy']:.1f}",
            f"{r['T_total_p50']:.1f}", f"{r['T_total_p95']:.1f}", f"{r['T_vision_p50']:.1f}",
            f"{r['T_prefill_p50']:.1f}", f"{r['T_decode_p50']:.1f}", f"{r['T_total_p50'] / base:.2f}",
        )  # fmt: skip
    console.print(
        "vision / prefill / decode: stage medians (ms); x base: p50 / p50 of the cheapest setting"
    )
    console.print(table)

    kmax, bmax, bhalf = max(args.top_k), blocks[-1], blocks[0]
    lat = {key: r["T_total_p50"] for key, r in results.items()}
    acc = {key: r["accuracy"] for key, r in results.items()}
    tiers = ("low", "medium", "high")

    def grows(axis: int, values: list) -> tuple[bool, str]:
        """Median latency grows along one knob: the geometric mean over the other knobs'
        settings rises at every step, and how many single cells rise too (a cell whose
        two settings differ by less than the machine's noise can tie)."""
        others = sorted({key[:axis] + key[axis + 1 :] for key in lat})
        at = lambda v, o: lat[o[:axis] + (v,) + o[axis:]]  # noqa: E731
        gmean = [float(np.exp(np.mean([np.log(at(v, o)) for o in others]))) for v in values]
        cells = [(at(a, o) < at(c, o)) for o in others for a, c in itertools.pairwise(values)]
        text = " < ".join(f"{g:.2f}" for g in gmean)
        return all(a < c for a, c in itertools.pairwise(gmean)), (
            f"geometric mean {text} ms; {sum(cells)}/{len(cells)} single cells rise"
        )

    grow = {
        "tier": grows(0, list(tiers)),
        "top_k": grows(1, sorted(args.top_k)),
        "blocks": grows(2, blocks),
    }
    checks = [(f"latency grows with {knob} ({text})", ok) for knob, (ok, text) in grow.items()]
    checks += [
        (f"high tier median < 100 ms (top_k={kmax}, all blocks: {lat[('high', kmax, bmax)]:.1f} ms)", lat[("high", kmax, bmax)] < 100),
    ]  # fmt: skip
    if trained:
        hi, lo = acc[("high", kmax, bmax)], acc[("low", kmax, bmax)]
        half = acc[("high", kmax, bhalf)]
        checks += [
            (f"high tier beats low by >= 15 points ({100 * (hi - lo):.1f})", hi - lo >= 0.15),
            (f"all blocks beat half by >= 10 points ({100 * (hi - half):.1f})", hi - half >= 0.10),
            (
                "more experts do not lose accuracy (high tier, all blocks)",
                all(
                    acc[("high", c, bmax)] >= acc[("high", a, bmax)] - 0.01
                    for a, c in itertools.pairwise(sorted(args.top_k))
                ),
            ),
            (f"high / all blocks / full top_k accuracy >= 80% ({100 * hi:.1f})", hi >= 0.80),
        ]
    else:
        console.print(
            "[yellow]no trained weights: accuracy is at chance level and its checks are skipped[/]"
        )
    if trained and not args.no_sweep:
        checks += decode_checks(args.weights or str(shipped_weights_path()), console)
    for name, ok in checks:
        console.print(f"  {'[green]PASS' if ok else '[red]FAIL'}[/] {name}")
    console.print(f"load average at the end: {_load()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "trained": trained,
                    "results": [
                        {"tier": t, "top_k": k, "num_active_blocks": b, **r}
                        for (t, k, b), r in results.items()
                    ],
                    "checks": {name: ok for name, ok in checks},
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
