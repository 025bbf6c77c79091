"""Chunked loading costs nothing measurable: samples/s against a plain DataLoader, and memory.

Claim (issue 5): ``ChunkedDataLoader`` reads >= 0.98x the samples/s of a plain
``torch.utils.data.DataLoader`` over the same dataset and batch size (0 and 2 workers,
shuffled and not), and a ``ChunkedSampler`` over a 10^9-sample dataset needs O(1) memory.

Datasets: ``row`` (a row of a preallocated tensor: almost free, so the loader's own cost
shows, a worst case) and ``image`` (3x64x64 uint8 -> normalised float: a small but real
per-sample transform).

Method: each round reads one pass (N samples) with the plain loader and one pass with the
chunked loader (chunks of ``--chunk`` batches, so a pass is several chunks), in alternating
order. Reported: samples/s of each loader's best round, their ratio, and the median of the
per-round ratios; best-of and paired rounds cancel most of the noise of a shared machine.
With workers both loaders use
``persistent_workers=True`` (a chunked loader keeps one inner DataLoader for all chunks).
Memory: tracemalloc peak (Python and numpy allocations) of building a shuffled
``ChunkedSampler(10**9, 10**6)`` and reading a whole chunk of it, next to the 8 GB an int64
permutation of 10^9 (``torch.randperm``) would need.

    python benchmarks/bench_chunked.py                  # N=50000, batch 32, 7 rounds
    python benchmarks/bench_chunked.py --n 20000 --rounds 3 --workers 0
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import tracemalloc

import torch
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from knoblab.console import console as wide_console
from knoblab.sampling.chunked import ChunkedDataLoader, ChunkedSampler


class RowDataset(Dataset):
    """Sample i is row i of a preallocated (N, 64) tensor: cheap, so loader overhead shows."""

    def __init__(self, n: int):
        self.data = torch.randn(n, 64)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i]


class ImageDataset(Dataset):
    """Sample i: a 3x64x64 uint8 image made a normalised float tensor (a small real transform)."""

    def __init__(self, n: int):
        self.data = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8)
        self.mean = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return (self.data[i].float() / 255 - self.mean) / 0.25


DATASETS = {"row": RowDataset, "image": ImageDataset}


def read(loader, samples: int) -> float:
    """Seconds to read ``samples`` samples, calling ``iter()`` again whenever a chunk ends."""
    seen = 0
    t0 = time.perf_counter()
    while seen < samples:
        for batch in loader:
            seen += len(batch)
            if seen >= samples:
                break
    return time.perf_counter() - t0


def throughput(
    ds: Dataset, batch: int, chunk: int, workers: int, shuffle: bool, rounds: int
) -> dict:
    n = len(ds)
    extra = {"num_workers": workers, "persistent_workers": workers > 0}
    plain = DataLoader(ds, batch_size=batch, shuffle=shuffle, **extra)
    chunked = ChunkedDataLoader(ds, batch, chunk_size=chunk, shuffle=shuffle, seed=0, **extra)
    read(plain, n), read(chunked, n)  # warm-up: worker start, caches
    ratios, t_plain, t_chunk = [], [], []
    for r in range(rounds):
        if r % 2:
            tc, tp = read(chunked, n), read(plain, n)
        else:
            tp, tc = read(plain, n), read(chunked, n)
        t_plain.append(tp)
        t_chunk.append(tc)
        ratios.append(tp / tc)  # chunked samples/s over plain samples/s
    return {
        "plain": n / min(t_plain),
        "chunked": n / min(t_chunk),
        "best": min(t_plain) / min(t_chunk),
        "ratio": statistics.median(ratios),
    }


def memory(n: int = 10**9, chunk: int = 10**6) -> dict:
    tracemalloc.start()
    t0 = time.perf_counter()
    s = ChunkedSampler(n, chunk, shuffle=True, seed=1)
    s.set_chunk(999)  # the last chunk of the first pass
    count = sum(1 for _ in s)
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"peak": peak, "count": count, "per_s": count / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="dataset size (one pass per round)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=200, help="batches per chunk")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = ap.parse_args()
    torch.set_num_threads(1)

    console = wide_console(160)
    table = Table(
        title=f"ChunkedDataLoader vs DataLoader: N={args.n}, batch {args.batch}, chunk {args.chunk} batches"
    )
    for col in (
        "dataset",
        "workers",
        "shuffle",
        "plain samples/s (best)",
        "chunked samples/s (best)",
        "ratio of bests",
        "ratio (median of rounds)",
        "goal >= 0.98x",
    ):
        table.add_column(col, justify="right")
    for name in args.datasets:
        ds = DATASETS[name](args.n)
        for workers in args.workers:
            for shuffle in (False, True):
                r = throughput(ds, args.batch, args.chunk, workers, shuffle, args.rounds)
                table.add_row(
                    name,
                    str(workers),
                    str(shuffle),
                    f"{r['plain']:,.0f}",
                    f"{r['chunked']:,.0f}",
                    f"{r['best']:.3f}x",
                    f"{r['ratio']:.3f}x",
                    "yes" if r["best"] >= 0.98 else "NO",
                )
    console.print(table)

    m = memory()
    mt = Table(title="Memory of a shuffled ChunkedSampler over 10^9 samples (chunk 10^6)")
    for col in ("what", "peak memory", "indices/s"):
        mt.add_column(col, justify="right")
    mt.add_row(
        "ChunkedSampler: build + read one 10^6 chunk",
        f"{m['peak'] / 2**20:.1f} MiB",
        f"{m['per_s']:,.0f}",
    )
    mt.add_row(
        "torch.randperm(10^9) (not run: int64 permutation)", f"{8 * 10**9 / 2**20:,.0f} MiB", "-"
    )
    console.print(mt)
    console.print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
