"""Designs over discrete knob levels: sizes, coverage, balance, determinism, errors."""

import itertools
from collections import Counter

import pytest

from knoblab.errors import ConfigError
from knoblab.profiling.design import DESIGNS, make_design

KNOBS = {"tier": ["low", "medium", "high"], "top_k": [1, 2, 4], "num_active_blocks": [2, 4, 6]}


def _keys(configs: list[dict]) -> list[tuple]:
    return [tuple(c.values()) for c in configs]


def test_full_is_the_grid() -> None:
    configs = make_design("full", KNOBS)
    assert len(configs) == 27 and len(set(_keys(configs))) == 27


def test_stratified_takes_min_middle_max() -> None:
    configs = make_design("stratified", {"top_k": [1, 2, 4, 8, 16], "num_active_blocks": [3, 6]})
    assert sorted({c["top_k"] for c in configs}) == [1, 4, 16]
    assert len(configs) == 3 * 2


def test_boundary_is_the_edges_of_the_grid() -> None:
    configs = make_design("boundary", KNOBS)
    assert len(configs) == 8 + 12  # corners + one midpoint per edge
    for c in configs:
        idx = [KNOBS[k].index(v) for k, v in c.items()]
        assert sum(i == 1 for i in idx) <= 1  # at most one knob off its extremes
    corners = set(itertools.product(*[[v[0], v[-1]] for v in KNOBS.values()]))
    assert corners <= set(_keys(configs))


def test_balanced_is_a_strength_two_orthogonal_array_plus_the_top_corner() -> None:
    configs = make_design("balanced", KNOBS)
    assert len(configs) == 10
    oa = _keys(configs[:9])
    names = list(KNOBS)
    for i, j in itertools.combinations(range(3), 2):
        pairs = Counter((r[i], r[j]) for r in oa)
        assert len(pairs) == 9 and set(pairs.values()) == {1}, (names[i], names[j])
    assert ("low", 1, 2) in _keys(configs) and _keys(configs)[-1] == ("high", 4, 6)


def test_balanced_reduces_long_lists_to_levels() -> None:
    configs = make_design(
        "balanced", {"top_k": list(range(1, 9)), "num_active_blocks": [1, 2, 3, 4, 5]}, levels=3
    )
    assert {c["top_k"] for c in configs} == {1, 5, 8}
    assert {c["num_active_blocks"] for c in configs} == {1, 3, 5}


def test_lhs_is_seeded_and_covers_each_level() -> None:
    a = make_design("lhs", KNOBS, num_points=9, seed=3)
    assert a == make_design("lhs", KNOBS, num_points=9, seed=3)
    assert a != make_design("lhs", KNOBS, num_points=9, seed=4)
    for k, values in KNOBS.items():  # Latin property: 9 points over 3 levels, 3 per level
        counts = Counter(
            c[k] for c in make_design("lhs", {k: values, "x": list(range(9))}, num_points=9)
        )
        assert set(counts.values()) == {3}


@pytest.mark.parametrize("name", DESIGNS)
def test_every_design_is_deterministic_and_within_the_grid(name: str) -> None:
    configs = make_design(name, KNOBS)
    assert configs == make_design(name, KNOBS)
    assert configs and set(_keys(configs)) <= set(itertools.product(*KNOBS.values()))
    assert len(set(_keys(configs))) == len(configs)


def test_single_value_knob_is_pinned() -> None:
    configs = make_design("balanced", {"tier": ["low"], "top_k": [1, 2, 4]})
    assert {c["tier"] for c in configs} == {"low"} and {c["top_k"] for c in configs} == {1, 2, 4}


def test_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"knobs.top_k=\[\] is invalid"):
        make_design("full", {"top_k": []})
    with pytest.raises(ConfigError, match="design.name='grid'"):
        make_design("grid", KNOBS)
    with pytest.raises(ConfigError, match="knobs="):
        make_design("full", {})
