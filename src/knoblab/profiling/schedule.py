"""The order in which a sweep measures its units of work: interleaved rounds or sequential.

A *unit* is (configuration index, round): round ``r`` is the ``r``-th plan position of
every process (under ``torchrun`` each rank measures its own shard's ``r``-th position,
so one unit covers up to ``world_size`` samples). Two schedules:

- ``interleaved`` (the default): round after round, each round visiting every
  configuration still measuring in a seeded random order (Python's Mersenne Twister
  seeded with the integer ``seed << 32 | round``: the same on every platform and in every
  process, and the order of a round does not depend on what was measured before, so a
  resumed sweep draws the same orders). Load that comes and goes then lands
  on every configuration alike (Google Benchmark's random interleaving, their PR 1163).
- ``sequential``: configuration after configuration, each through all its rounds
  (knoblab's order before interleaving; one knob switch per configuration).

``pending(config, round)`` says whether a unit still needs measuring (not journaled by
an earlier run); ``active(config)`` whether a configuration still measures at all
(early stopping and out-of-memory drop one out). Both are read lazily, as the schedule
is consumed, so a configuration that stops drops out of the rounds that follow.

Example:
    >>> list(units(2, 2, "sequential", seed=0))
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    >>> sorted(units(2, 2, "interleaved", seed=0)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

SCHEDULES = ("interleaved", "sequential")


_RNG = random.Random()  # reseeded per round: cheaper than a new Random (or SeedSequence)


def round_order(n_configs: int, round_index: int, seed: int) -> list[int]:
    """The configurations of round ``round_index`` in their seeded random order."""
    order = list(range(n_configs))
    if n_configs > 1:
        _RNG.seed((int(seed) & 0xFFFFFFFF) << 32 | (int(round_index) & 0xFFFFFFFF))
        _RNG.shuffle(order)
    return order


def units(
    n_configs: int,
    n_rounds: int,
    mode: str,
    *,
    seed: int = 0,
    pending: Callable[[int, int], bool] = lambda c, r: True,
    active: Callable[[int], bool] = lambda c: True,
) -> Iterator[tuple[int, int]]:
    """Yield the units (configuration, round) to measure, in ``mode``'s order.

    Raises:
        ValueError: ``mode`` is not one of :data:`SCHEDULES` (the runner checks the config
            key before this is reached).
    """
    if mode == "sequential":
        for c in range(n_configs):
            for r in range(n_rounds):
                if not active(c):
                    break
                if pending(c, r):
                    yield c, r
        return
    if mode != "interleaved":
        raise ValueError(f"schedule {mode!r}: allowed is one of {', '.join(SCHEDULES)}")
    for r in range(n_rounds):
        for c in round_order(n_configs, r, seed):
            if active(c) and pending(c, r):
                yield c, r
