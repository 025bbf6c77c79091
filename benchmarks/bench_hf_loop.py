"""The split generation loop costs what ``model.generate`` costs: stage timing is free.

Claim (issue 8): for every Hugging Face family, knoblab's split loop
(``encode_vision`` + ``prefill`` + ``decode``, the calls the sweep runner times) takes
<= 1.05x the wall time of ``model.generate(do_sample=False)`` producing the same tokens
(checked), and its three stage times add up to its total within 2%.

Method: tiny random checkpoints (``knoblab.models.hf.tiny``; 2 decoder layers, hidden
size 32) so that the loop's own overhead, not the model's arithmetic, dominates: this
is the worst case for the claim. Each round times one split run and one ``generate`` run
on the same prepared sample, alternating which goes first; reported are the medians over
rounds and the median of the per-round ratios (paired rounds cancel most of a shared
machine's noise). ``--threads 1`` by default, as the CPU hardware preset.

    python benchmarks/bench_hf_loop.py                   # all families, 15 rounds, 8 tokens
    python benchmarks/bench_hf_loop.py --families qwen2_5_vl smolvlm --rounds 31
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from rich.table import Table

from knoblab.console import console as wide_console
from knoblab.data import Sample
from knoblab.models.hf import build
from knoblab.models.hf.tiny import BUILDERS, write_tiny_checkpoint
from knoblab.profiling.measure import infer
from knoblab.profiling.timer import StageTimer


def split_run(adapter, prepared, tokens: int) -> tuple[float, dict[str, float], list[int]]:
    """Wall ms of the runner's three calls, their stage ms, and the tokens."""
    timer = StageTimer("cpu")
    gen, _ = infer(adapter, prepared, timer, tokens)  # the runner's timed calls
    ms = timer.read()
    return ms["total"], ms, gen.token_ids


def generate_run(adapter, prepared, tokens: int) -> tuple[float, list[int]]:
    t0 = time.perf_counter()
    ids = adapter.reference_generate(prepared, tokens)
    return (time.perf_counter() - t0) * 1e3, ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="*", default=list(BUILDERS))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    console = wide_console(160)
    image = Image.new("RGB", (224, 168), (30, 30, 200))
    sample = Sample(0, "what is the color of the square ?", ["red"], image)

    table = Table(
        title=f"split loop vs model.generate ({args.tokens} tokens, median of {args.rounds})"
    )
    for col in ("family", "generate ms", "split ms", "ratio", "stages/total", "same ids"):
        table.add_column(col, justify="right", no_wrap=True)
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            adapter = build(
                {"path": str(write_tiny_checkpoint(family, Path(tmp) / family)), "dtype": "fp32"}
            )
            prepared = adapter.preprocess(sample)
            for _ in range(2):  # warm-up both paths
                split_run(adapter, prepared, args.tokens)
                generate_run(adapter, prepared, args.tokens)
            splits, gens, ratios, gaps, same = [], [], [], [], True
            for r in range(args.rounds):
                if r % 2:
                    g, g_ids = generate_run(adapter, prepared, args.tokens)
                    s, ms, s_ids = split_run(adapter, prepared, args.tokens)
                else:
                    s, ms, s_ids = split_run(adapter, prepared, args.tokens)
                    g, g_ids = generate_run(adapter, prepared, args.tokens)
                same &= s_ids == g_ids
                splits.append(s)
                gens.append(g)
                ratios.append(s / g)
                gaps.append((ms["vision"] + ms["prefill"] + ms["decode"]) / ms["total"])
            table.add_row(
                family,
                f"{statistics.median(gens):.1f}",
                f"{statistics.median(splits):.1f}",
                f"{statistics.median(ratios):.3f}",
                f"{statistics.median(gaps):.4f}",
                "yes" if same else "NO",
            )
    console.print(table)
    console.print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s); ratio = split / generate, paired per round"
    )


if __name__ == "__main__":
    main()
