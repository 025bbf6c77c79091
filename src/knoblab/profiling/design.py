"""Experimental designs: which knob configurations a sweep measures.

A design turns knob lists, e.g. ``{"tier": ["low", "medium", "high"], "top_k": [1, 2, 4],
"num_active_blocks": [2, 4, 6]}``, into a list of configurations (dicts). Each list is
taken in the order given, which must be increasing cost (as ``KnobSpec.values`` is);
"min" is the first value, "max" the last, "middle" the one at index ``len // 2``.

Designs (``L_k`` = number of levels of knob ``k``, ``d`` = number of knobs):

- ``full``: every combination (``prod L_k``).
- ``stratified``: every combination of {min, middle, max} of each knob (at most ``3^d``).
- ``boundary``: the edges of the knob grid: every configuration in which all knobs but
  at most one sit at their min or max; the remaining knob walks all of its levels.
  That is the ``2^d`` corners plus every level of each knob with the others at each
  min/max combination (``3 * 3 * 3`` lists -> 8 corners + 12 edge midpoints = 20).
- ``balanced``: a strength-2 orthogonal array over ``levels`` (default 3) values per knob
  (min, evenly spaced middles, max): ``q^2`` runs, ``q`` the smallest prime >= the
  largest level count, in which every level of every knob appears equally often and
  every pair of levels of any two knobs appears together equally often (Bose's
  construction: run ``(a, b)`` gives knob ``j`` the level ``(a + j * b) mod q``; knob 0
  gets ``b``). The most expensive configuration (all max) is added when the array
  lacks it (the cheapest, all min, is always run ``(0, 0)``), so the Pareto front has
  both ends. Three knobs of 3 levels -> 9 + 1 = 10 configurations. A knob with fewer
  than ``q`` levels maps level ``l`` to ``round(l * (L - 1) / (q - 1))``, which keeps its
  min and max but makes the array only near-balanced for it. Needs ``d <= q + 1``;
  with more knobs the design falls back to ``lhs`` with ``q^2`` points (a warning says so).
- ``lhs``: a seeded Latin hypercube (``scipy.stats.qmc.LatinHypercube``) of
  ``num_points`` points (default: the largest level count) in ``[0, 1)^d``; coordinate
  ``u`` of knob ``k`` picks level ``floor(u * L_k)``, so each knob's levels are covered
  as evenly as the point count allows. Duplicates are dropped, keeping order.

Every design returns configurations in a deterministic order, knobs in the order of
the input mapping. A knob list of one value pins that knob.

Example:
    >>> make_design("stratified", {"top_k": [1, 2, 4, 8], "num_active_blocks": [4, 8]})
    [{'top_k': 1, 'num_active_blocks': 4}, {'top_k': 1, 'num_active_blocks': 8}, {'top_k': 4, 'num_active_blocks': 4}, {'top_k': 4, 'num_active_blocks': 8}, {'top_k': 8, 'num_active_blocks': 4}, {'top_k': 8, 'num_active_blocks': 8}]
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from knoblab.errors import ConfigError

DESIGNS = ("full", "stratified", "boundary", "balanced", "lhs")


@dataclass
class DesignConfig:
    """The ``design`` config section.

    Attributes:
        name: one of ``full``, ``stratified``, ``boundary``, ``balanced``, ``lhs``.
        levels: values per knob that ``balanced`` keeps (min, evenly spaced middles, max).
        num_points: points of the ``lhs`` design (null: the largest level count).
        seed: seed of the ``lhs`` design.
    """

    name: str = "balanced"
    levels: int = 3
    num_points: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in DESIGNS:
            raise ConfigError("name", self.name, f"one of {', '.join(DESIGNS)}")
        if self.levels < 2:
            raise ConfigError("levels", self.levels, "an integer >= 2")
        if self.num_points is not None and self.num_points < 1:
            raise ConfigError("num_points", self.num_points, "an integer >= 1 or null")


def _unique(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _spread(values: Sequence[Any], count: int) -> list[Any]:
    """``count`` values from ``values`` evenly spaced by index, first and last included."""
    n = len(values)
    if n <= count:
        return list(values)
    return _unique([values[round(i * (n - 1) / (count - 1))] for i in range(count)])


def _min_mid_max(values: Sequence[Any]) -> list[Any]:
    return _unique([values[0], values[len(values) // 2], values[-1]])


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % p for p in range(2, int(n**0.5) + 1))


def _grid(names: list[str], lists: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]


def make_design(
    name: str,
    knob_lists: Mapping[str, Sequence[Any]],
    *,
    levels: int = 3,
    num_points: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The configurations of design ``name`` over ``knob_lists`` (see the module docstring).

    Raises:
        ConfigError: an unknown design, an empty knob list, or no knob at all.
    """
    if name not in DESIGNS:
        raise ConfigError("design.name", name, f"one of {', '.join(DESIGNS)}")
    if not knob_lists:
        raise ConfigError("knobs", {}, "at least one knob with a non-empty list of values")
    names = list(knob_lists)
    lists: list[list[Any]] = []
    for k in names:
        vals = knob_lists[k]
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
            vals = [vals]
        vals = _unique(list(vals))
        if not vals:
            raise ConfigError(f"knobs.{k}", [], "a non-empty list of values (or drop the knob)")
        lists.append(vals)

    if name == "full":
        return _grid(names, lists)
    if name == "stratified":
        return _grid(names, [_min_mid_max(v) for v in lists])
    if name == "boundary":
        return _boundary(names, lists)
    if name == "balanced":
        return _balanced(names, lists, levels)
    return _lhs(names, lists, num_points, seed)


def _boundary(names: list[str], lists: list[list[Any]]) -> list[dict[str, Any]]:
    extremes = [_unique([v[0], v[-1]]) for v in lists]
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for combo in itertools.product(*extremes):  # corners first, cheapest first
        if combo not in seen:
            seen.add(combo)
            out.append(dict(zip(names, combo, strict=True)))
    for j in range(len(names)):  # then each edge: knob j walks its levels
        axes = [lists[i] if i == j else extremes[i] for i in range(len(names))]
        for combo in itertools.product(*axes):
            if combo not in seen:
                seen.add(combo)
                out.append(dict(zip(names, combo, strict=True)))
    return out


def _balanced(names: list[str], lists: list[list[Any]], levels: int) -> list[dict[str, Any]]:
    reduced = [_spread(v, levels) for v in lists]
    d = len(reduced)
    q = max(len(v) for v in reduced)
    while not _is_prime(q):
        q += 1
    if q == 1 or all(len(v) == 1 for v in reduced):
        return _grid(names, reduced)
    if d > q + 1:
        warnings.warn(
            f"design 'balanced' has no orthogonal array for {d} knobs of {q} levels; "
            f"using a Latin hypercube of {q * q} points",
            stacklevel=3,
        )
        return _lhs(names, reduced, q * q, 0)

    def level(values: list[Any], i: int) -> Any:
        n = len(values)
        return values[round(i * (n - 1) / (q - 1))] if n > 1 else values[0]

    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for a in range(q):
        for b in range(q):
            # Bose: column 0 is b, column j >= 1 is a + (j - 1) * b  (mod q).
            idx = [b] + [(a + (j - 1) * b) % q for j in range(1, d)]
            combo = tuple(level(reduced[j], idx[j]) for j in range(d))
            if combo not in seen:
                seen.add(combo)
                out.append(dict(zip(names, combo, strict=True)))
    top = tuple(v[-1] for v in reduced)
    if top not in seen:
        out.append(dict(zip(names, top, strict=True)))
    return out


def _lhs(
    names: list[str], lists: list[list[Any]], num_points: int | None, seed: int
) -> list[dict[str, Any]]:
    from scipy.stats import qmc

    n = int(num_points or max(len(v) for v in lists))
    u = qmc.LatinHypercube(d=len(names), rng=seed).random(n)
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for row in u:
        combo = tuple(v[min(int(x * len(v)), len(v) - 1)] for v, x in zip(lists, row, strict=True))
        if combo not in seen:
            seen.add(combo)
            out.append(dict(zip(names, combo, strict=True)))
    return out
