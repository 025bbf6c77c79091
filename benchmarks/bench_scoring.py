"""Page-level OCR scoring: rapidfuzz's Levenshtein against the hand-written one it replaced.

Claim (issue 14): scoring an OmniDocBench-sized page must cost far less than the model's
inference. The baseline is the numpy row-by-row dynamic programme knoblab shipped before
(copied below, unchanged), measured in the same run on the same strings: a seeded page of
``--chars`` characters of English-like words and a prediction with ~5 % of its characters
edited. Both must give the same distance. Times are the best of ``--repeats``.

    python benchmarks/bench_scoring.py                    # 10,000-character page
    python benchmarks/bench_scoring.py --chars 2000 --repeats 9
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import numpy as np

from knoblab.data.scoring import levenshtein, page_edit_distance, score


def numpy_levenshtein(a: str, b: str) -> int:
    """The hand-written Levenshtein knoblab used before rapidfuzz (the baseline)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    prev = np.arange(len(b) + 1, dtype=np.int64)
    for i, ch in enumerate(a, start=1):
        cost = (bb != ord(ch)).astype(np.int64)
        cur = np.empty_like(prev)
        cur[0] = i
        cur[1:] = np.minimum(prev[:-1] + cost, prev[1:] + 1)
        idx = np.arange(len(cur))
        cur = np.minimum.accumulate(cur - idx) + idx
        prev = cur
    return int(prev[-1])


def make_page(chars: int, seed: int) -> tuple[str, str]:
    """A ground-truth page of ``chars`` characters and a prediction with ~5 % edits."""
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("etaoinshrdlucmfwypvbgkqjxz") for _ in range(rng.randint(1, 9)))
        for _ in range(500)
    ]
    text = ""
    while len(text) < chars:
        text += rng.choice(words) + rng.choice("  \n,.")
    gt = text[:chars]
    pred = list(gt)
    for _ in range(chars // 20):
        i = rng.randrange(len(pred))
        op = rng.random()
        if op < 0.4:
            pred[i] = rng.choice("abcdefghijklmnopqrstuvwxyz ")
        elif op < 0.7:
            del pred[i]
        else:
            pred.insert(i, rng.choice("abcdefghijklmnopqrstuvwxyz"))
    return "".join(pred), gt


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--chars", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    pred, gt = make_page(args.chars, args.seed)
    d_old, d_new = numpy_levenshtein(pred, gt), levenshtein(pred, gt)
    if d_old != d_new:
        raise SystemExit(f"distances differ: numpy {d_old}, rapidfuzz {d_new}")
    t_old = best_of(lambda: numpy_levenshtein(pred, gt), args.repeats)
    t_new = best_of(lambda: levenshtein(pred, gt), max(args.repeats, 20))
    t_page = best_of(lambda: page_edit_distance(pred, gt), max(args.repeats, 20))
    t_score = best_of(lambda: score("edit_similarity", pred, [gt]), max(args.repeats, 20))

    print(f"page: {len(gt)} characters, prediction {len(pred)}, distance {d_new}")
    print(f"{'method':<58} {'ms':>10} {'vs numpy':>10}")
    rows = [
        ("hand-written numpy Levenshtein (baseline)", t_old),
        ("rapidfuzz Levenshtein.distance", t_new),
        ("page_edit_distance (OmniDocBench normalisation + rapidfuzz)", t_page),
        ('score("edit_similarity", ...)', t_score),
    ]
    for name, t in rows:
        print(f"{name:<58} {1e3 * t:>10.3f} {t / t_old:>9.4f}x")
    print(f"speed-up of rapidfuzz over the baseline: {t_old / t_new:,.0f}x")


if __name__ == "__main__":
    main()
