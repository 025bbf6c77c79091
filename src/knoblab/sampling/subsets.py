"""Seeded subsets of a dataset, identical across configurations: plain and stratified.

``fixed_subset`` is seed 003's ``create_sampled_dataset`` (numpy ``RandomState(seed)
.choice(size, n, replace=False)``), index for index, so subsets chosen by older scripts
are reproduced. ``stratified_subset`` allocates the subset proportionally over a key
per sample (largest-remainder rounding), so every category keeps its share.

Example:
    >>> fixed_subset(10, 3, seed=42).tolist()
    [8, 1, 5]
    >>> stratified_subset(["a"] * 6 + ["b"] * 3 + ["c"], 5, seed=0).size
    5
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from knoblab.errors import ConfigError
from knoblab.sampling.plan import check_dataset_size


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(name, value, "an integer >= 1 or null (all samples)")
    return int(value)


def _seed(value: Any) -> int:
    # RandomState takes seeds in [0, 2**32).
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError("seed", value, "an integer in [0, 2**32)")
    if not 0 <= value < 2**32:
        raise ConfigError("seed", value, "an integer in [0, 2**32)")
    return int(value)


def fixed_subset(dataset_size: int, num_samples: int | None, seed: int = 42) -> np.ndarray:
    """``num_samples`` distinct indices of ``range(dataset_size)`` chosen by ``seed`` (int64).

    The same arguments give the same indices on every machine and in every
    configuration of a sweep. ``num_samples`` None or >= ``dataset_size`` -> all
    indices in order (as seed 003 returns the whole dataset).

    NOTE: the order is numpy's draw order, not sorted (as in seed 003), and the draw
    costs O(dataset_size) memory (numpy permutes the whole range); for huge datasets use
    a randomized ``SamplingPlan`` with a seed (the ``fixed`` preset), which is O(1).
    """
    size = check_dataset_size(dataset_size)
    n = _count("num_samples", num_samples)
    if n is None or n >= size:
        return np.arange(size, dtype=np.int64)
    return (
        np.random.RandomState(seed=_seed(seed)).choice(size, size=n, replace=False).astype(np.int64)
    )


def create_sampled_dataset(dataset: Any, num_samples: int | None, seed: int = 42) -> Any:
    """Seed 003's helper: ``torch.utils.data.Subset`` of ``fixed_subset`` (or ``dataset`` itself)."""
    if num_samples is None or num_samples >= len(dataset):
        return dataset
    from torch.utils.data import Subset

    return Subset(dataset, fixed_subset(len(dataset), num_samples, seed).tolist())


def allocate(group_sizes: Sequence[int], num_samples: int) -> np.ndarray:
    """Proportional allocation of ``num_samples`` over groups, largest-remainder rounding.

    Each group gets ``floor(num_samples * size / total)``; the seats left go to the
    largest remainders (ties: the larger group, then the earlier one). Exact integer
    arithmetic, so the result never depends on float rounding. Every group's share is
    within 1 of its exact quota and never exceeds its size.

    Example:
        >>> allocate([6, 3, 1], 5).tolist()
        [3, 2, 0]
    """
    sizes = np.asarray(group_sizes, dtype=np.int64)
    total = int(sizes.sum())
    num_samples = min(int(num_samples), total)
    scaled = [num_samples * int(s) for s in sizes]  # Python ints: no overflow
    share = np.array([q // total for q in scaled], dtype=np.int64)
    remainder = [q % total for q in scaled]
    left = num_samples - int(share.sum())
    order = sorted(range(len(sizes)), key=lambda g: (-remainder[g], -int(sizes[g]), g))
    for g in order[:left]:
        share[g] += 1
    return share


def stratified_subset(
    keys: Sequence[Hashable], num_samples: int | None, seed: int = 42
) -> np.ndarray:
    """A seeded subset with each key's share of ``num_samples`` proportional to its count.

    ``keys[i]`` is the stratum of sample ``i`` (a category, an image-size bucket, a
    question type: ``[key_fn(ds[i]) for i in range(len(ds))]``). Groups are taken in order
    of first appearance, shares come from ``allocate``, and each group's members are
    drawn with ``fixed_subset`` under a per-group seed, so the subset is a pure function
    of ``(keys, num_samples, seed)``. Returns sorted dataset indices (int64).

    NOTE: with fewer samples than groups, the smallest remainders get no sample at all.
    """
    codes: dict[Hashable, int] = {}
    labels = np.fromiter((codes.setdefault(k, len(codes)) for k in keys), dtype=np.int64)
    size = check_dataset_size(labels.size)
    n = _count("num_samples", num_samples)
    if n is None or n >= size:
        return np.arange(size, dtype=np.int64)
    base = _seed(seed)
    order = np.argsort(labels, kind="stable")  # members of each group, in dataset order
    counts = np.bincount(labels, minlength=len(codes))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    parts = []
    for g, take in enumerate(allocate(counts, n).tolist()):
        if take == 0:
            continue
        members = order[starts[g] : starts[g] + counts[g]]
        group_seed = (base + 0x9E3779B9 * (g + 1)) % 2**32  # distinct, reproducible per group
        parts.append(members[fixed_subset(int(counts[g]), take, group_seed)])
    return np.sort(np.concatenate(parts))
