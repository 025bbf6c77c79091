"""SamplingConfig / SamplingPlan: every rule of the contract (issue 2, seed 000), as properties."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knoblab.config import to_dataclass
from knoblab.errors import ConfigError, DataError
from knoblab.sampling import SamplingConfig, SamplingPlan
from knoblab.sampling.permutation import KeyedPermutation, mix_key
from knoblab.sampling.plan import keyed_permutation_many

sizes = st.integers(1, 60)
counts = st.one_of(st.none(), st.integers(1, 90))
epochs = st.integers(1, 5)
seeds = st.integers(0, 2**63 - 1)


def seed_loop(n: int, n_per: int | None, num_epochs: int) -> list[int]:
    """Seed 000's proposed loop for non-randomized epochs, transcribed literally."""
    order = list(range(n))
    out: list[int] = []
    for epoch in range(num_epochs):
        if n_per is None:
            selected = order
        else:
            start = epoch * n_per
            selected = order[start % n :] + order[: start % n]
            selected = selected[:n_per]
        out += selected
    return out


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(n=sizes, n_per=counts, num_epochs=epochs)
def test_in_order_plans_equal_the_seed_loop(n: int, n_per: int | None, num_epochs: int) -> None:
    plan = SamplingPlan(SamplingConfig(n_per, num_epochs), n)
    expected = seed_loop(n, n_per, num_epochs)
    assert list(plan) == expected
    assert len(plan) == len(expected)


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(n=sizes, num_epochs=epochs)
def test_unrandomized_full_epochs_visit_all_samples_in_order(n: int, num_epochs: int) -> None:
    plan = SamplingPlan(SamplingConfig(num_epochs=num_epochs), n)
    for e in range(num_epochs):
        assert plan.epoch_indices(e).tolist() == list(range(n))


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(n=sizes, n_per=counts, num_epochs=epochs, seed=seeds)
def test_randomized_epoch_is_a_prefix_of_a_fresh_shuffle(
    n: int, n_per: int | None, num_epochs: int, seed: int
) -> None:
    plan = SamplingPlan(SamplingConfig(n_per, num_epochs, randomize=True, seed=seed), n)
    full = SamplingPlan(SamplingConfig(None, num_epochs, randomize=True, seed=seed), n)
    k = n if n_per is None else min(n_per, n)
    for e in range(num_epochs):
        idx = plan.epoch_indices(e)
        assert idx.dtype == np.int64 and idx.size == k == plan.samples_per_epoch(e)
        assert len(set(idx.tolist())) == k  # without replacement within an epoch
        assert idx.min() >= 0 and idx.max() < n
        whole = full.epoch_indices(e)
        assert sorted(whole.tolist()) == list(range(n))  # N unset: a shuffle of all samples
        assert idx.tolist() == whole[:k].tolist()
        # and it is the keyed permutation the docs name
        expected = KeyedPermutation(n, mix_key(seed, e))[np.arange(k)]
        assert idx.tolist() == expected.tolist()
    assert len(plan) == k * num_epochs


def test_randomized_epochs_are_fresh_shuffles() -> None:
    plan = SamplingPlan(SamplingConfig(num_epochs=3, randomize=True, seed=5), 50)
    e0, e1, e2 = (plan.epoch_indices(e).tolist() for e in range(3))
    assert e0 != e1 and e1 != e2 and e0 != list(range(50))


def test_seeded_plan_is_pinned_across_versions_and_machines() -> None:
    # A regression pin, not a computed result: the keyed permutation is part of the
    # reproducibility contract (a seed must replay the same samples after an upgrade).
    plan = SamplingPlan(SamplingConfig(num_samples_per_epoch=5, randomize=True, seed=0), 100)
    assert (
        plan.epoch_indices(0).tolist()
        == KeyedPermutation(100, mix_key(0, 0))[np.arange(5)].tolist()
    )
    again = SamplingPlan(SamplingConfig(num_samples_per_epoch=5, randomize=True, seed=0), 100)
    assert list(plan) == list(again)


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(seed_a=seeds, seed_b=seeds)
def test_seed_selects_the_shuffle(seed_a: int, seed_b: int) -> None:
    a = SamplingPlan(SamplingConfig(randomize=True, seed=seed_a), 40).epoch_indices(0)
    b = SamplingPlan(SamplingConfig(randomize=True, seed=seed_b), 40).epoch_indices(0)
    assert (a.tolist() == b.tolist()) == (seed_a == seed_b)


def test_unseeded_plan_draws_records_and_replays_its_seed() -> None:
    plan = SamplingPlan(SamplingConfig(num_epochs=2, randomize=True), 30)
    assert isinstance(plan.seed, int) and plan.seed_source == "drawn"
    assert plan.describe()["seed"] == plan.seed
    assert plan.state_dict()["seed"] == plan.seed
    replay = SamplingPlan(SamplingConfig(num_epochs=2, randomize=True, seed=plan.seed), 30)
    assert list(replay) == list(plan)
    seeds_drawn = {SamplingPlan(SamplingConfig(), 3).seed for _ in range(8)}
    assert len(seeds_drawn) > 1  # drawn from entropy, not a constant


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(n=sizes, n_per=counts, num_epochs=epochs, randomize=st.booleans(), seed=seeds)
def test_epoch_indices_equal_that_epoch_of_the_iteration(
    n: int, n_per: int | None, num_epochs: int, randomize: bool, seed: int
) -> None:
    plan = SamplingPlan(SamplingConfig(n_per, num_epochs, randomize, seed), n)
    stream = list(plan)
    assert len(stream) == len(plan)
    pos = 0
    for e in range(num_epochs):
        k = plan.samples_per_epoch(e)
        assert plan.epoch_indices(e).tolist() == stream[pos : pos + k]
        pos += k
    assert pos == len(plan)
    assert all(type(i) is int for i in stream)


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(n=sizes, n_per=counts, num_epochs=epochs, randomize=st.booleans(), data=st.data())
def test_index_at_and_indices_agree_with_iteration(
    n: int, n_per: int | None, num_epochs: int, randomize: bool, data: st.DataObject
) -> None:
    plan = SamplingPlan(SamplingConfig(n_per, num_epochs, randomize, seed=3), n)
    stream = np.array(list(plan))
    lo = data.draw(st.integers(0, len(plan)))
    hi = data.draw(st.integers(lo, len(plan) + 3))
    assert plan.indices(lo, hi).tolist() == stream[lo:hi].tolist()
    pos = np.array(data.draw(st.lists(st.integers(0, len(plan) - 1), max_size=20)), dtype=np.int64)
    assert plan.index_at(pos).tolist() == stream[pos].tolist()


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(n=sizes, n_per=counts, num_epochs=epochs, data=st.data())
def test_last_epoch_cut(n: int, n_per: int | None, num_epochs: int, data: st.DataObject) -> None:
    k = n if n_per is None else min(n_per, n)
    last = data.draw(st.integers(1, k))
    plan = SamplingPlan(SamplingConfig(n_per, num_epochs), n, last_epoch_samples=last)
    full = SamplingPlan(SamplingConfig(n_per, num_epochs), n)
    assert len(plan) == (num_epochs - 1) * k + last
    assert plan.samples_per_epoch(num_epochs - 1) == last
    assert list(plan) == list(full)[: len(plan)]


def test_last_epoch_cut_must_fit_the_epoch() -> None:
    with pytest.raises(ConfigError, match="last_epoch_samples=11"):
        SamplingPlan(SamplingConfig(num_samples_per_epoch=10), 100, last_epoch_samples=11)


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(
    n=sizes,
    n_per=counts,
    num_epochs=epochs,
    randomize=st.booleans(),
    world=st.integers(1, 9),
    pad=st.booleans(),
)
def test_shards_partition_the_plan(
    n: int, n_per: int | None, num_epochs: int, randomize: bool, world: int, pad: bool
) -> None:
    plan = SamplingPlan(SamplingConfig(n_per, num_epochs, randomize, seed=11), n)
    stream = list(plan)
    shards = [plan.shard(r, world, pad=pad) for r in range(world)]
    lengths = [len(s) for s in shards]
    positions = [s.positions().tolist() for s in shards]
    for s, pos in zip(shards, positions, strict=True):
        assert list(s) == [stream[p] for p in pos]
        assert s.indices().tolist() == list(s)
    if not pad:
        flat = sorted(p for pos in positions for p in pos)
        assert flat == list(range(len(plan)))  # disjoint, union = plan
        assert max(lengths) - min(lengths) <= 1
    else:
        assert set(lengths) == {-(-len(plan) // world)}
        flat = [p for pos in positions for p in pos]
        assert set(flat) == set(range(len(plan)))  # covers the plan
        extra = len(flat) - len(plan)
        assert extra < world
        # padding wraps: the surplus is positions L, L+1, ... taken modulo L
        surplus = Counter(flat) - Counter(range(len(plan)))
        assert surplus == Counter(p % len(plan) for p in range(len(plan), len(plan) + extra))


def test_shard_rejects_bad_rank() -> None:
    plan = SamplingPlan(SamplingConfig(), 10)
    with pytest.raises(ConfigError, match="rank=2"):
        plan.shard(2, 2)
    with pytest.raises(ConfigError, match="world_size=0"):
        plan.shard(0, 0)


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(
    n=sizes,
    n_per=counts,
    num_epochs=epochs,
    randomize=st.booleans(),
    seeded=st.booleans(),
    data=st.data(),
)
def test_resume_at_any_position_yields_exactly_the_rest(
    n: int, n_per: int | None, num_epochs: int, randomize: bool, seeded: bool, data: st.DataObject
) -> None:
    seed = 9 if seeded else None
    plan = SamplingPlan(SamplingConfig(n_per, num_epochs, randomize, seed), n)
    stream = list(plan)
    stop = data.draw(st.integers(0, len(plan)))
    it = iter(plan)
    head = [next(it) for _ in range(stop)]
    state = json.loads(json.dumps(plan.state_dict()))  # survives a JSON checkpoint
    assert state["position"] == stop
    resumed = SamplingPlan(SamplingConfig(n_per, num_epochs, randomize, seed), n)
    resumed.load_state_dict(state)  # an unseeded plan adopts the saved (drawn) seed
    rest = list(resumed)
    assert head + rest == stream
    assert resumed.position == len(plan)
    assert list(resumed) == stream  # the resume point applies to one iteration only


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(n=sizes, num_epochs=epochs, world=st.integers(1, 4), pad=st.booleans(), data=st.data())
def test_shard_resume_yields_exactly_the_rest(
    n: int, num_epochs: int, world: int, pad: bool, data: st.DataObject
) -> None:
    rank = data.draw(st.integers(0, world - 1))
    shard = SamplingPlan(SamplingConfig(None, num_epochs, True), n).shard(rank, world, pad)
    full = list(shard)
    stop = data.draw(st.integers(0, len(full)))
    it = iter(shard)
    head = [next(it) for _ in range(stop)]
    state = shard.state_dict()
    other = SamplingPlan(SamplingConfig(None, num_epochs, True), n).shard(rank, world, pad)
    other.load_state_dict(state)
    assert head + list(other) == full


def test_resume_refuses_another_plan() -> None:
    state = SamplingPlan(SamplingConfig(num_epochs=2, seed=1), 10).state_dict()
    with pytest.raises(ConfigError, match="num_epochs"):
        SamplingPlan(SamplingConfig(num_epochs=3, seed=1), 10).load_state_dict(state)
    with pytest.raises(ConfigError, match="dataset_size"):
        SamplingPlan(SamplingConfig(num_epochs=2, seed=1), 11).load_state_dict(state)
    with pytest.raises(ConfigError, match="seed"):
        SamplingPlan(SamplingConfig(num_epochs=2, seed=2), 10).load_state_dict(state)
    shard_state = SamplingPlan(SamplingConfig(), 10).shard(0, 2).state_dict()
    with pytest.raises(ConfigError, match="world_size"):
        SamplingPlan(SamplingConfig(), 10).shard(0, 3).load_state_dict(shard_state)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("num_epochs", 0, "an integer >= 1"),
        ("num_epochs", -3, "an integer >= 1"),
        ("num_epochs", 1.5, "an integer >= 1"),
        ("num_epochs", "abc", "an integer >= 1"),
        ("num_epochs", True, "an integer >= 1"),
        ("num_samples_per_epoch", 0, "an integer >= 1"),
        ("num_samples_per_epoch", 2.0, "an integer >= 1"),
        ("randomize", 1, "true/false"),
        ("seed", -1, "an integer in [0, 2**63)"),
        ("seed", 2**63, "an integer in [0, 2**63)"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(
    field: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError) as e:
        SamplingConfig(**{field: value})
    assert e.value.key == field and e.value.allowed == allowed
    assert "\n" not in str(e.value)


def test_config_errors_carry_the_dotted_key_through_to_dataclass() -> None:
    with pytest.raises(ConfigError) as e:
        to_dataclass({"num_epochs": 0}, SamplingConfig, "dataset.sampling")
    assert str(e.value) == "dataset.sampling.num_epochs=0 is invalid: allowed is an integer >= 1"


def test_config_accepts_numpy_integers_as_plain_ints() -> None:
    c = SamplingConfig(np.int64(5), np.int32(2), np.bool_(True), np.uint64(7))
    assert c == SamplingConfig(5, 2, True, 7)
    assert type(c.num_samples_per_epoch) is int and type(c.randomize) is bool


@pytest.mark.parametrize("size", [0, -1, 2.5, None])
def test_empty_or_bad_dataset_size_is_one_line(size: object) -> None:
    with pytest.raises(DataError) as e:
        SamplingPlan(SamplingConfig(), size)  # type: ignore[arg-type]
    assert str(e.value).startswith(f"dataset_size={size!r} is invalid: allowed is an integer >= 1")


def test_plan_accepts_a_mapping_config() -> None:
    plan = SamplingPlan({"num_epochs": 2, "seed": 4}, 3)
    assert plan.config == SamplingConfig(num_epochs=2, seed=4) and list(plan) == [0, 1, 2] * 2
    with pytest.raises(ConfigError, match="did you mean dataset.sampling.num_epochs"):
        SamplingPlan({"num_epoch": 2}, 3)


def test_describe_is_plain_and_complete() -> None:
    plan = SamplingPlan(SamplingConfig(4, 3, True, 8), 10, last_epoch_samples=2)
    d = json.loads(json.dumps(plan.describe()))
    assert d["seed"] == 8 and d["seed_source"] == "config"
    assert (d["samples_per_epoch"], d["last_epoch_samples"], d["total_samples"]) == (4, 2, 10)
    assert d["num_epochs"] == 3 and d["randomize"] is True and d["legacy"] is None


def test_epoch_out_of_range() -> None:
    plan = SamplingPlan(SamplingConfig(num_epochs=2), 3)
    with pytest.raises(IndexError):
        plan.epoch_indices(2)
    with pytest.raises(IndexError):
        plan.index_at(np.array([6]))


@settings(deadline=None, max_examples=5)
@given(seed=st.integers(0, 2**32))
def test_billion_sample_plan_is_lazy(seed: int) -> None:
    n = 10**9
    tracemalloc.start()
    try:
        plan = SamplingPlan(SamplingConfig(num_epochs=3, randomize=True, seed=seed), n)
        first = np.concatenate([b for _, b in zip(range(4), plan.iter_blocks(), strict=False)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20  # far below a materialised permutation (8 GB)
    assert len(plan) == 3 * n
    assert np.unique(first).size == first.size and first.min() >= 0 and first.max() < n
    tail = plan.indices(len(plan) - 1000, len(plan))
    assert np.unique(tail).size == 1000 and tail.max() < n


@settings(deadline=None)
@given(
    n=st.integers(1, 2**40),
    data=st.data(),
)
def test_vectorised_many_key_permutation_equals_keyed_permutation(
    n: int, data: st.DataObject
) -> None:
    m = data.draw(st.integers(1, 20))
    keys = data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=m, max_size=m))
    pos = data.draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    got = keyed_permutation_many(n, np.array(keys, dtype=np.uint64), np.array(pos))
    assert got.tolist() == [KeyedPermutation(n, k)[p] for k, p in zip(keys, pos, strict=True)]


@settings(deadline=None)
@given(
    n=st.integers(1, 30),
    n_per=st.integers(1, 3),
    num_epochs=st.integers(8, 60),
    world=st.integers(1, 3),
    seed=seeds,
)
def test_many_short_randomized_epochs_match_epoch_by_epoch(
    n: int, n_per: int, num_epochs: int, world: int, seed: int
) -> None:
    plan = SamplingPlan(SamplingConfig(n_per, num_epochs, randomize=True, seed=seed), n)
    by_epoch = np.concatenate([plan.epoch_indices(e) for e in range(num_epochs)])
    assert plan.indices().tolist() == by_epoch.tolist()  # vectorised across epochs
    assert list(plan) == by_epoch.tolist()
    shard = plan.shard(world - 1, world)
    assert shard.indices().tolist() == by_epoch[world - 1 :: world].tolist()
