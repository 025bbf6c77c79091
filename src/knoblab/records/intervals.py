"""Confidence intervals for a configuration's figures: seeded bootstrap and Wilson.

Latency figures (mean and percentiles of a stage's per-sample times) get a
**percentile bootstrap** interval (Efron & Tibshirani 1993, *An Introduction to the
Bootstrap*, ch. 13): ``resamples`` samples of the ``n`` values are drawn with
replacement from a ``numpy.random.default_rng(seed)`` stream, the statistic is computed
on each, and the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
quantiles of those statistics. Percentiles use numpy's linear interpolation (Hyndman &
Fan type 7), as the point figures do (:mod:`knoblab.records.aggregate`). The same seed
gives the same interval on any machine.

Accuracy over 0/1 scores gets the **Wilson score interval** (Wilson 1927, *JASA*
22:209; recommended over the Wald interval by Agresti & Coull 1998, *Am. Stat.*
52:119), which stays inside [0, 1] and is sensible at 0 or n successes.

Why by hand: scipy's ``stats.bootstrap`` draws its own resamples per statistic (no
shared index matrix across the ten figures of a record, which is what keeps
``knoblab analyze`` at 500 configurations x 1000 samples fast) and has no Wilson
interval; the formulas are a few lines.

Example:
    >>> lo, hi = wilson_interval(5, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.2366, 0.7634)
    >>> bootstrap_ci([10.0, 11.0, 12.0, 13.0, 30.0], "mean", seed=0) == bootstrap_ci(
    ...     [10.0, 11.0, 12.0, 13.0, 30.0], "mean", seed=0)
    True
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from statistics import NormalDist

import numpy as np

#: Defaults written into each record's ``intervals`` block.
CONFIDENCE = 0.95
RESAMPLES = 1000
SEED = 0
METHOD = "percentile bootstrap (latency); Wilson score (0/1 accuracy)"

_PCT = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
# Resamples drawn per chunk so that the index matrix stays under ~40 MB (int32).
_MAX_CELLS = 10_000_000


def stat_quantile(stat: str) -> float | None:
    """``None`` for ``"mean"``, else the percentile of ``"p<q>"`` (``"p95"`` -> 95.0).

    Raises:
        ValueError: ``stat`` is neither (one line naming the value and what is allowed).
    """
    if stat == "mean":
        return None
    m = _PCT.match(stat)
    if m and 0 < float(m.group(1)) < 100:
        return float(m.group(1))
    raise ValueError(f"statistic {stat!r} is not allowed; use 'mean' or 'p<q>' with 0 < q < 100")


def _values(values: Iterable[float | None]) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":  # no None in it
        x = values
    else:
        x = np.asarray([v for v in values if v is not None], dtype=float)
    return x[~np.isnan(x)]


def _ranked_percentile(ordered: np.ndarray, ranks: np.ndarray, q: float) -> np.ndarray:
    """numpy's linear percentile of each resample, from its sorted ranks.

    ``ordered``: the values sorted; ``ranks``: each resample's indices into ``ordered``,
    sorted along the last axis (so ``ordered[ranks]`` is the resample sorted). Only the
    two order statistics the interpolation needs are gathered.
    """
    pos = (ranks.shape[-1] - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, ranks.shape[-1] - 1)
    frac = pos - lo
    a, b = ordered[ranks[..., lo]], ordered[ranks[..., hi]]
    return a + (b - a) * frac


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> Iterator[np.ndarray]:
    """The bootstrap's index matrices (int32, ``k x n``), ``resamples`` rows in all.

    Drawn from ``numpy.random.default_rng(seed)`` in chunks of at most ``_MAX_CELLS``
    cells; the chunks concatenated are the indices of any one draw of that seed.
    """
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _MAX_CELLS // max(n, 1))
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        yield rng.integers(0, n, size=(k, n), dtype=np.int32)
        done += k


#: Cells of a block of resamples worked on at once: its scratch arrays stay in the CPU's
#: cache (a whole 1000 x 2000 draw at once ran at memory speed, ~2x slower).
_BLOCK_CELLS = 1 << 17


#: The largest draw :meth:`Resamples.draw` keeps for reuse (2M cells: 16 MB of indices
#: and 16 MB of counts).
_KEEP_CELLS = 2_000_000


#: Kept draws, newest last, and the bytes they may hold together (a sweep's records share
#: a few counts: the samples per configuration, each configuration's ITL steps, the
#: accuracy scores; a draw made again costs ~1-3 ms).
_KEPT: OrderedDict[tuple[int, int, int], tuple[tuple[np.ndarray, ...], np.ndarray]] = OrderedDict()
_KEPT_BYTES = 96 << 20


def _kept_draw(n: int, resamples: int, seed: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    key = (n, resamples, seed)
    if key in _KEPT:
        _KEPT.move_to_end(key)
        return _KEPT[key]
    _KEPT[key] = got = _new_draw(n, resamples, seed)
    while len(_KEPT) > 1 and sum(_nbytes(d) for d in _KEPT.values()) > _KEPT_BYTES:
        _KEPT.popitem(last=False)  # the least recently used
    return got


def _nbytes(draw: tuple[tuple[np.ndarray, ...], np.ndarray]) -> int:
    return sum(c.nbytes for c in draw[0]) + draw[1].nbytes


def _new_draw(n: int, resamples: int, seed: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """(the draw's index chunks as ``intp``, its counts matrix), read-only.

    NOTE: ``np.take`` converts int32 indices to ``intp`` on every call; kept as ``intp``
    the gather of a figure's ranks runs ~1.8x faster. The counts matrix (``resamples x n``:
    how often each value is drawn into each resample) turns a figure's resample means into
    one matrix-vector product (``einsum``, single-threaded: ~3x faster than gathering the
    resampled values).
    """
    chunks = tuple(c.astype(np.intp) for c in resample_indices(n, resamples, seed))
    return tuple(_frozen(c) for c in chunks), _frozen(_counts(chunks, n))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # shared by every record of this count
    return a


def _counts(chunks: Iterable[np.ndarray], n: int) -> np.ndarray:
    """``counts[b, i]``: how many times resample ``b`` drew value ``i`` (float64)."""
    out = []
    for c in chunks:
        flat = (c + (np.arange(c.shape[0], dtype=np.intp) * n)[:, None]).ravel()
        out.append(np.bincount(flat, minlength=c.size).reshape(c.shape).astype(np.float64))
    return np.concatenate(out) if out else np.empty((0, n))


class Resamples:
    """One seeded draw of bootstrap resamples of ``n`` values, with scratch space.

    Iterating gives the index chunks (:func:`resample_indices`). Every figure of the
    same count reuses the draw and the scratch arrays.
    """

    def __init__(self, chunks: Iterable[np.ndarray], counts: np.ndarray | None = None) -> None:
        self.chunks = list(chunks)
        #: ``counts[b, i]``: draws of value ``i`` in resample ``b``, when kept (else None)
        self.counts = counts
        self._scratch: dict[tuple[str, int], np.ndarray] = {}
        #: (a figure's stable order, its resamples' sorted ranks), newest last (kept draws)
        self._carriers: list[tuple[np.ndarray, np.ndarray]] = []

    @classmethod
    def draw(cls, n: int, resamples: int = RESAMPLES, seed: int = SEED) -> Resamples:
        """The draw of ``resample_indices(n, resamples, seed)``; up to 2M indices are kept
        (read-only, with their counts) for the next record of the same count (a sweep's
        records mostly share one count: the draw, ~3 ms per 500 x 1000, is made once per
        sweep, not per record)."""
        if n * resamples <= _KEEP_CELLS:
            return cls(*_kept_draw(n, resamples, seed))
        return cls(resample_indices(n, resamples, seed))

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.chunks)

    def blocks(self) -> Iterator[np.ndarray]:
        """The resamples' index rows, a cache-sized block at a time, in draw order."""
        for chunk in self.chunks:
            rows = max(1, _BLOCK_CELLS // max(chunk.shape[1], 1))
            for start in range(0, chunk.shape[0], rows):
                yield chunk[start : start + rows]

    def order_statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(values, ranks, reverse)``: resample ``b``'s ``j``-th smallest value of ``x`` is
        ``values[ranks[b, j]]`` (``ranks[b, n - 1 - j]`` when ``reverse``). Kept draws only.

        NOTE (why): ``ranks`` holds every resample's sorted ranks (``resamples x n``, the
        gather and sort that are most of a figure's bootstrap). A record's figures are
        often monotone in one another (``T_decode_per_token`` in ``T_LLM_decode`` at a fixed
        token count, throughput falling as ``T_total`` grows): when ``x`` taken in an
        earlier figure's order never falls (or never rises), that figure's sorted ranks
        name ``x``'s order statistics too (the same values as sorting ``x``'s resamples),
        and ``x`` costs no gather and no sort. The last 8 figures' ranks are kept.
        """
        for order, ranks in reversed(self._carriers):
            if order.size != x.size:
                continue
            values = x[order]
            steps = np.diff(values)
            if not (steps < 0).any():
                return values, ranks, False
            if not (steps > 0).any():
                return values, ranks, True
        order = np.argsort(x, kind="stable")
        rank = np.empty(x.size, dtype=np.int16 if x.size <= 32767 else np.int32)
        rank[order] = np.arange(x.size)
        ranks = np.empty((sum(c.shape[0] for c in self.chunks), x.size), dtype=rank.dtype)
        start = 0
        for idx in self.blocks():
            block = ranks[start : start + idx.shape[0]]
            np.take(rank, idx, out=block, mode="clip")
            block.sort(axis=-1)
            start += idx.shape[0]
        self._carriers = [*self._carriers[-7:], (order, ranks)]
        return x[order], ranks, False

    def scratch(self, like: np.ndarray, dtype: type | np.dtype) -> np.ndarray:
        """An uninitialised array of ``like``'s shape, reused from call to call."""
        key = (np.dtype(dtype).str, like.shape[1])
        buf = self._scratch.get(key)
        if buf is None or buf.shape[0] < like.shape[0]:
            buf = self._scratch[key] = np.empty(like.shape, dtype)
        return buf[: like.shape[0]]


def bootstrap_distributions(
    x: np.ndarray, stats: Sequence[str], indices: Iterable[np.ndarray]
) -> dict[str, np.ndarray]:
    """``{stat: values over resamples}``: each statistic on each resample of ``x``.

    ``indices``: the index chunks (:func:`resample_indices` of ``x.size``), or a
    :class:`Resamples` a caller keeps and passes again for every figure of the same count
    (a record's ``T_vision_total`` and ``T_total`` then draw the same samples, and the
    draw and its scratch space are made once).

    NOTE (why not ``np.sort(x[idx])``): a resample's percentiles come from its *ranks*:
    ``x`` is sorted once, each resample's indices become ranks into it (small integers),
    and sorting those (int16 up to 32,767 values) is much faster than sorting the
    resampled floats; the sorted ranks name the same order statistics, so the figures are
    the same, bit for bit. The work goes a cache-sized block of resamples at a time, and
    ``take`` with ``mode="clip"`` (the indices are in range) skips numpy's bounds-checked,
    buffered path. A record bootstraps a dozen figures: this took them from ~18 ms to
    ~5 ms each at 1000 x 2000 (benchmarks/bench_overhead.py). With a kept draw
    (:meth:`Resamples.draw`) the means come from its counts matrix in one product, and the
    gathers use ``intp`` indices (no conversion per call): ~3x less again per figure.
    """
    draws = indices if isinstance(indices, Resamples) else Resamples(indices)
    qs = {s: stat_quantile(s) for s in stats}
    boot: dict[str, list[np.ndarray]] = {s: [] for s in stats}
    pct = any(q is not None for q in qs.values())
    if draws.counts is not None:  # a kept draw: its counts and sorted ranks
        return _from_kept(x, qs, draws)
    if pct:
        order = np.argsort(x, kind="stable")
        ordered = x[order]
        rank = np.empty(x.size, dtype=np.int16 if x.size <= 32767 else np.int32)
        rank[order] = np.arange(x.size)
    for idx in draws.blocks():
        ranks = None
        if pct:
            ranks = np.take(rank, idx, out=draws.scratch(idx, rank.dtype), mode="clip")
            ranks.sort(axis=-1)
        for s, q in qs.items():
            if q is None:
                values = np.take(x, idx, out=draws.scratch(idx, np.float64), mode="clip")
                boot[s].append(values.mean(axis=-1))
            else:
                assert ranks is not None
                boot[s].append(_ranked_percentile(ordered, ranks, q))
    return {s: np.concatenate(v) if v else np.empty(0) for s, v in boot.items()}


def _from_kept(x: np.ndarray, qs: dict[str, float | None], draws: Resamples) -> dict:
    """:func:`bootstrap_distributions` on a kept draw: the means in one product with its
    counts (the same sums as gathering each resample's values, in another order: equal to
    ~1e-15 relative), the percentiles from :meth:`Resamples.order_statistics`."""
    assert draws.counts is not None
    out: dict[str, np.ndarray] = {}
    found = None
    last = x.size - 1
    for s, q in qs.items():
        if q is None:
            # einsum, not ``@``: numpy's BLAS would run this on a thread pool whose
            # threads then spin on the other cores, beside the sweep's next measurement.
            out[s] = np.einsum("ij,j->i", draws.counts, x) / x.size
            continue
        if found is None:
            found = draws.order_statistics(x)
        values, ranks, reverse = found
        pos = last * q / 100.0
        lo = int(math.floor(pos))
        hi = min(lo + 1, last)
        if reverse:  # the j-th smallest sits at n - 1 - j
            a, b = values[ranks[:, last - lo]], values[ranks[:, last - hi]]
        else:
            a, b = values[ranks[:, lo]], values[ranks[:, hi]]
        out[s] = a + (b - a) * (pos - lo)
    return out


def bootstrap_cis(
    values: Iterable[float | None],
    stats: Sequence[str],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    indices: Iterable[np.ndarray] | None = None,
) -> dict[str, tuple[float | None, float | None]]:
    """``{stat: (lo, hi)}`` for every stat of ``stats``, from one set of resamples.

    ``None`` values and NaNs are left out; with no value the interval is ``(None, None)``,
    with one value it is that value twice. ``indices``: the chunks
    ``resample_indices(n, resamples, seed)`` yields for the ``n`` values left, kept by a
    caller that asks for many figures of the same count (the result is the same).
    """
    qs = {s: stat_quantile(s) for s in stats}
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence!r} is not allowed; use a number in (0, 1)")
    x = _values(values)
    if x.size == 0:
        return {s: (None, None) for s in stats}
    if x.size == 1 or float(x.min()) == float(x.max()):
        v = float(x[0])
        return {s: (v, v) for s in stats}
    chunks = resample_indices(x.size, resamples, seed) if indices is None else indices
    boot = bootstrap_distributions(x, list(qs), chunks)
    a = (1.0 - confidence) / 2.0
    # One call for every statistic's two ends (~20 us of numpy overhead per call).
    ends = np.quantile(np.stack([boot[s] for s in qs]), [a, 1.0 - a], axis=1)
    at = {s: i for i, s in enumerate(qs)}
    return {s: (float(ends[0, at[s]]), float(ends[1, at[s]])) for s in stats}


def bootstrap_ci(
    values: Iterable[float | None],
    stat: str,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float | None, float | None]:
    """Percentile-bootstrap interval of ``stat`` (``"mean"`` or ``"p<q>"``) of ``values``."""
    return bootstrap_cis(values, [stat], confidence=confidence, resamples=resamples, seed=seed)[
        stat
    ]


def wilson_interval(
    successes: float, n: int, confidence: float = CONFIDENCE
) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion ``successes / n``; ``(None, None)`` for n = 0."""
    if n <= 0:
        return (None, None)
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes!r} is not allowed; use a count in [0, n={n}]")
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    # at 0 or n successes the bound is exactly 0 or 1; rounding would leave 1e-17
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def is_binary(values: Iterable[float | None]) -> bool:
    """True when every value is 0 or 1 (accuracy then gets a Wilson interval)."""
    x = _values(values)
    return bool(x.size) and bool(np.all((x == 0.0) | (x == 1.0)))


def accuracy_interval(
    scores: Sequence[float | None],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    indices: Iterable[np.ndarray] | None = None,
) -> tuple[float | None, float | None, str]:
    """``(lo, hi, method)`` of the mean score: Wilson for 0/1 scores, else bootstrap.

    ``indices``: the draw of the scores' count (as :func:`bootstrap_cis` takes it), kept by
    a caller that bootstraps other figures of that count too.
    """
    x = _values(scores)
    if is_binary(x):
        lo, hi = wilson_interval(float(x.sum()), int(x.size), confidence)
        return lo, hi, "wilson"
    lo, hi = bootstrap_cis(
        x, ["mean"], confidence=confidence, resamples=resamples, seed=seed, indices=indices
    )["mean"]
    return lo, hi, "bootstrap"


def relative_half_width(lo: float | None, hi: float | None, point: float | None) -> float | None:
    """``(hi - lo) / 2 / |point|``: the precision a rule like "p95 within 3%" tests."""
    if lo is None or hi is None or point is None:
        return None
    if point == 0:
        return 0.0 if hi == lo else math.inf
    return (hi - lo) / 2.0 / abs(point)
