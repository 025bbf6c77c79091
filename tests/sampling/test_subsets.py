"""Fixed subsets (seed 003's create_sampled_dataset) and stratified subsets."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knoblab.errors import ConfigError, DataError
from knoblab.sampling import fixed_subset, stratified_subset
from knoblab.sampling.subsets import allocate, create_sampled_dataset


def seed_003(n: int, num_samples: int | None, seed: int = 42) -> list[int]:
    """Seed 003's create_sampled_dataset, transcribed, on range(n)."""
    if num_samples is None or num_samples >= n:
        return list(range(n))
    return np.random.RandomState(seed=seed).choice(n, size=num_samples, replace=False).tolist()


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(
    n=st.integers(1, 500),
    k=st.one_of(st.none(), st.integers(1, 600)),
    seed=st.integers(0, 2**32 - 1),
)
def test_fixed_subset_is_seed_003_index_for_index(n: int, k: int | None, seed: int) -> None:
    got = fixed_subset(n, k, seed)
    assert got.dtype == np.int64
    assert got.tolist() == seed_003(n, k, seed)
    assert len(set(got.tolist())) == got.size == (n if k is None else min(k, n))
    assert fixed_subset(n, k, seed).tolist() == got.tolist()  # same in every configuration


def test_create_sampled_dataset_returns_a_subset_or_the_dataset() -> None:
    data = list(range(100, 150))
    sub = create_sampled_dataset(data, 5, seed=1)
    assert [sub[i] for i in range(len(sub))] == [100 + i for i in seed_003(50, 5, 1)]
    assert create_sampled_dataset(data, None) is data and create_sampled_dataset(data, 50) is data


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=12),
    data=st.data(),
)
def test_allocate_is_largest_remainder(sizes: list[int], data: st.DataObject) -> None:
    total = sum(sizes)
    n = data.draw(st.integers(0, total))
    share = allocate(sizes, n).tolist()
    assert sum(share) == n
    for s, size in zip(share, sizes, strict=True):
        quota = n * size / total
        assert abs(s - quota) < 1 and 0 <= s <= size
    # who was rounded up had a remainder at least as large as anyone rounded down
    rem = [(n * size) % total for size in sizes]
    up = [r for r, s, size in zip(rem, share, sizes, strict=True) if s * total > n * size]
    down = [r for r, s, size in zip(rem, share, sizes, strict=True) if s * total <= n * size and r]
    if up and down:
        assert min(up) >= max(down)


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(
    keys=st.lists(st.sampled_from("abcdef"), min_size=1, max_size=300),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_subset_keeps_each_share(
    keys: list[str], data: st.DataObject, seed: int
) -> None:
    n = data.draw(st.integers(1, len(keys) + 5))
    got = stratified_subset(keys, n, seed)
    k = min(n, len(keys))
    assert got.size == k and len(set(got.tolist())) == k
    assert got.tolist() == sorted(got.tolist()) and got.min() >= 0 and got.max() < len(keys)
    have = Counter(keys[i] for i in got.tolist())
    for key, size in Counter(keys).items():
        assert abs(have[key] - k * size / len(keys)) < 1
    assert stratified_subset(keys, n, seed).tolist() == got.tolist()


def test_stratified_subset_differs_by_seed_and_covers_every_group() -> None:
    keys = ["a"] * 500 + ["b"] * 300 + ["c"] * 200
    a, b = stratified_subset(keys, 100, 0), stratified_subset(keys, 100, 1)
    assert a.tolist() != b.tolist()
    assert Counter(keys[i] for i in a.tolist()) == {"a": 50, "b": 30, "c": 20}


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_bad_num_samples_is_one_line(bad: object) -> None:
    with pytest.raises(ConfigError, match=f"num_samples={bad!r} is invalid"):
        fixed_subset(10, bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=f"num_samples={bad!r} is invalid"):
        stratified_subset(["a"] * 10, bad)  # type: ignore[arg-type]


def test_bad_seed_and_empty_dataset() -> None:
    with pytest.raises(ConfigError, match="seed=-1"):
        fixed_subset(10, 3, seed=-1)
    with pytest.raises(DataError, match="dataset_size=0"):
        fixed_subset(0, 3)
    with pytest.raises(DataError, match="dataset_size=0"):
        stratified_subset([], 3)
