"""Which dataset samples a run sees, epoch after epoch: ``SamplingConfig`` and ``SamplingPlan``.

``dataset.sampling.*`` (seed 000) in one typed config and one plan object shared by
profiling sweeps and training. The plan is a pure function of ``(config, dataset_size,
seed)`` and a position: nothing is materialised, so a plan over 10^9 samples costs a
few bytes and any position (an epoch, a shard, a resume point) is computed directly.

Rules (the contract, see docs/sampling.md):

- not randomized, N unset: every epoch visits all samples in dataset order;
- not randomized, N set: epoch ``e`` takes ``min(N, size)`` samples starting at
  ``(e * N) mod size``, wrapping around (contiguous chunks that walk the dataset);
- randomized: epoch ``e`` is the keyed permutation ``KeyedPermutation(size,
  mix_key(seed, e))``, of which the first ``min(N, size)`` positions are taken
  (without replacement within an epoch);
- seed unset: one is drawn from OS entropy, used, and exposed as ``plan.seed`` (and in
  ``describe()`` / ``state_dict()``) so that the run can be replayed.

Example:
    >>> plan = SamplingPlan(SamplingConfig(num_samples_per_epoch=4, num_epochs=2), 10)
    >>> list(plan)
    [0, 1, 2, 3, 4, 5, 6, 7]
    >>> plan.epoch_indices(1).tolist()
    [4, 5, 6, 7]
"""

from __future__ import annotations

import operator
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from knoblab.errors import ConfigError, DataError
from knoblab.sampling.permutation import _ROUNDS, KeyedPermutation, _splitmix64, mix_key

STATE_VERSION = 1
_SEED_LIMIT = 1 << 63  # seeds go into int64 record columns
_BLOCK = 1 << 16
_MANY_EPOCHS = 8  # from this many epochs in one request, vectorise across epochs
_EXACT_INT64_MOD = 3_037_000_499  # floor(sqrt(2**63 - 1)): larger sizes use Python ints  # positions computed per vectorised step: small temporaries, fast loops


def _int_field(name: str, value: Any, minimum: int, *, below: int | None = None) -> int:
    """``value`` as a Python int >= ``minimum`` (numpy ints allowed; bools, floats, strings not)."""
    allowed = f"an integer >= {minimum}" if below is None else f"an integer in [{minimum}, 2**63)"
    if isinstance(value, (bool, np.bool_)):
        raise ConfigError(name, value, allowed)
    try:
        out = operator.index(value)
    except TypeError:
        raise ConfigError(name, value, allowed) from None
    if out < minimum or (below is not None and out >= below):
        raise ConfigError(name, value, allowed)
    return int(out)


@dataclass(frozen=True)
class SamplingConfig:
    """``dataset.sampling.*``: how many samples per epoch, how many epochs, shuffled or not.

    NOTE: ``num_samples_per_epoch`` larger than the dataset takes each sample once per
    epoch (it does not repeat samples within an epoch); use ``num_epochs`` to repeat.

    Example:
        >>> SamplingConfig(num_samples_per_epoch=100, num_epochs=3, randomize=True, seed=7)
        SamplingConfig(num_samples_per_epoch=100, num_epochs=3, randomize=True, seed=7)
    """

    num_samples_per_epoch: int | None = None
    """Samples per epoch; None -> every sample of the dataset."""
    num_epochs: int = 1
    """How many epochs the plan runs (>= 1)."""
    randomize: bool = False
    """Shuffle each epoch (a fresh keyed permutation per epoch) instead of dataset order."""
    seed: int | None = None
    """Seed of the shuffles; None -> drawn from OS entropy and recorded as ``plan.seed``."""

    def __post_init__(self) -> None:
        if self.num_samples_per_epoch is not None:
            n = _int_field("num_samples_per_epoch", self.num_samples_per_epoch, 1)
            object.__setattr__(self, "num_samples_per_epoch", n)
        object.__setattr__(self, "num_epochs", _int_field("num_epochs", self.num_epochs, 1))
        if not isinstance(self.randomize, (bool, np.bool_)):
            raise ConfigError("randomize", self.randomize, "true/false")
        object.__setattr__(self, "randomize", bool(self.randomize))
        if self.seed is not None:
            seed = _int_field("seed", self.seed, 0, below=_SEED_LIMIT)
            object.__setattr__(self, "seed", seed)


def check_dataset_size(dataset_size: Any) -> int:
    """``dataset_size`` as an int >= 1; an empty dataset raises a one-line ``DataError``."""
    if not _is_int(dataset_size) or dataset_size < 1:
        # A data problem, worded like a config error: key, value, allowed.
        raise DataError(
            f"dataset_size={dataset_size!r} is invalid: allowed is an integer >= 1 "
            "(a sampling plan needs a non-empty dataset)"
        )
    return int(dataset_size)


def draw_seed() -> int:
    """A fresh 32-bit seed from OS entropy (32 bits: also valid for ``np.random.RandomState``)."""
    return secrets.randbits(32)


class SamplingPlan:
    """The dataset indices a run visits, epoch after epoch; O(1) memory at any size.

    ``len(plan)`` is the total over all epochs; iterating yields Python ints and records
    the position reached, so ``state_dict()`` taken mid-iteration resumes exactly there.
    ``last_epoch_samples`` truncates the last epoch (the legacy ``repeats`` bridge, see
    ``knoblab.sampling.legacy``); ``legacy`` records the mapping that built the plan.

    NOTE: ``plan.seed`` is always an int, drawn when the config has none, even for plans
    that do not shuffle (it is then unused but recorded). Processes that must agree on a
    shuffle (DDP ranks) must share it: set ``dataset.sampling.seed`` or broadcast rank 0's.

    Example:
        >>> plan = SamplingPlan(SamplingConfig(randomize=True, seed=1, num_epochs=2), 5)
        >>> len(plan), sorted(plan.epoch_indices(0).tolist())
        (10, [0, 1, 2, 3, 4])
    """

    def __init__(
        self,
        config: SamplingConfig | Mapping[str, Any] | None,
        dataset_size: int,
        *,
        last_epoch_samples: int | None = None,
        legacy: Mapping[str, Any] | None = None,
    ):
        if config is None:
            config = SamplingConfig()
        elif not isinstance(config, SamplingConfig):
            from knoblab.config import to_dataclass

            config = to_dataclass(config, SamplingConfig, "dataset.sampling")
        dataset_size = check_dataset_size(dataset_size)
        self.config = config
        self.dataset_size = int(dataset_size)
        self.num_epochs = config.num_epochs
        n = self.dataset_size
        n_per = config.num_samples_per_epoch
        self._per_epoch = n if n_per is None else min(n_per, n)
        self._last = self._per_epoch
        if last_epoch_samples is not None:
            self._last = _int_field("last_epoch_samples", last_epoch_samples, 1)
            if self._last > self._per_epoch:
                raise ConfigError(
                    "last_epoch_samples",
                    last_epoch_samples,
                    f"an integer in [1, {self._per_epoch}]",
                )
        self._total = (self.num_epochs - 1) * self._per_epoch + self._last
        self.legacy = dict(legacy) if legacy is not None else None
        if config.seed is not None:
            self.seed, self.seed_source = config.seed, "config"
        else:
            self.seed, self.seed_source = draw_seed(), "drawn"
        self._perm_cache: tuple[int, KeyedPermutation] | None = None
        self._resume_at = 0  # where the next iteration starts (set by load_state_dict)
        self._position = 0  # samples consumed by the current (or last) iteration

    # -- sizes ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._total

    def samples_per_epoch(self, epoch: int) -> int:
        """How many samples epoch ``epoch`` takes (only a legacy-cut last epoch is shorter)."""
        self._check_epoch(epoch)
        return self._last if epoch == self.num_epochs - 1 else self._per_epoch

    # -- indices -------------------------------------------------------------------------
    def epoch_indices(self, epoch: int) -> np.ndarray:
        """Dataset indices of one epoch (int64), computed without the other epochs."""
        return self._epoch_slice(epoch, 0, self.samples_per_epoch(epoch))

    def indices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Dataset indices at plan positions ``[start, stop)`` (int64), across epochs."""
        stop = self._total if stop is None else min(int(stop), self._total)
        start = max(0, int(start))
        if start >= stop:
            return np.empty(0, dtype=np.int64)
        if (
            not self.config.randomize
            or (stop - 1) // self._per_epoch - start // self._per_epoch >= _MANY_EPOCHS
        ):
            return self.index_at(np.arange(start, stop, dtype=np.int64))  # fully vectorised
        parts = []
        pos = start
        while pos < stop:
            epoch, offset = divmod(pos, self._per_epoch)
            take = min(stop - pos, self.samples_per_epoch(epoch) - offset)
            parts.append(self._epoch_slice(epoch, offset, offset + take))
            pos += take
        return np.concatenate(parts)

    def index_at(self, positions: np.ndarray) -> np.ndarray:
        """Dataset indices at arbitrary plan positions (int64 array in, int64 array out)."""
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= self._total):
            raise IndexError(f"plan position out of range [0, {self._total})")
        flat = pos.ravel()
        epochs = flat // self._per_epoch
        offsets = flat - epochs * self._per_epoch
        n, n_per = self.dataset_size, self.config.num_samples_per_epoch
        if not self.config.randomize:
            if n_per is None:
                return offsets.reshape(pos.shape)
            if n <= _EXACT_INT64_MOD:  # (a mod n) * (b mod n) < 2**63: exact in int64
                start = ((epochs % n) * (n_per % n)) % n
            else:
                start = np.array([(e * n_per) % n for e in epochs.tolist()], dtype=np.int64)
            return ((offsets + start) % n).reshape(pos.shape)
        order = np.argsort(epochs, kind="stable")
        bounds = np.flatnonzero(np.diff(epochs[order])) + 1
        if bounds.size >= _MANY_EPOCHS:
            # Many short epochs (a block of a shard, N=1 over 10^6 epochs): one vectorised
            # Feistel pass with a key per element instead of one permutation per epoch.
            keys = _epoch_keys(self.seed, epochs)
            return keyed_permutation_many(n, keys, offsets).reshape(pos.shape)
        out = np.empty_like(flat)
        for group in np.split(order, bounds):
            if group.size:
                out[group] = self._epoch_at(int(epochs[group[0]]), offsets[group])
        return out.reshape(pos.shape)

    def _epoch_slice(self, epoch: int, lo: int, hi: int) -> np.ndarray:
        return self._epoch_at(epoch, np.arange(lo, hi, dtype=np.int64))

    def _epoch_at(self, epoch: int, offsets: np.ndarray) -> np.ndarray:
        n = self.dataset_size
        if self.config.randomize:
            return self._permutation(epoch)[offsets]
        n_per = self.config.num_samples_per_epoch
        start = 0 if n_per is None else (epoch * n_per) % n  # Python ints: no overflow
        return (offsets + start) % n

    def _permutation(self, epoch: int) -> KeyedPermutation:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            key = mix_key(self.seed, epoch)
            self._perm_cache = (epoch, KeyedPermutation(self.dataset_size, key))
        return self._perm_cache[1]

    def _check_epoch(self, epoch: int) -> None:
        if not _is_int(epoch) or not 0 <= epoch < self.num_epochs:
            raise IndexError(f"epoch {epoch!r} out of range [0, {self.num_epochs})")

    # -- iteration and resume ------------------------------------------------------------
    def __iter__(self) -> Iterator[int]:
        """Indices from the resume point (0 unless ``load_state_dict`` set one) to the end.

        NOTE: a resume point applies to the next iteration only; later ones start at 0.
        """
        # Not a generator function: the position resets when iter() is called, not at
        # the first next(), so state_dict() right after iter() says "nothing consumed".
        start, self._resume_at = self._resume_at, 0
        self._position = start
        return self._generate(start)

    def _generate(self, start: int) -> Iterator[int]:
        for block_start in range(start, self._total, _BLOCK):
            block = self.indices(block_start, block_start + _BLOCK).tolist()
            for index in block:
                self._position += 1  # before yield: counts what the consumer has received
                yield index

    def iter_blocks(self, block_size: int = _BLOCK) -> Iterator[np.ndarray]:
        """The whole plan as int64 arrays of ``block_size`` (vectorised consumers)."""
        for block_start in range(0, self._total, block_size):
            yield self.indices(block_start, block_start + block_size)

    @property
    def position(self) -> int:
        """How many indices the current (or last) iteration has yielded, resume offset included."""
        return self._position

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the position reached, the seed in effect, the shape."""
        return {
            "version": STATE_VERSION,
            "position": self._position,
            "seed": self.seed,
            "dataset_size": self.dataset_size,
            "num_samples_per_epoch": self.config.num_samples_per_epoch,
            "num_epochs": self.num_epochs,
            "randomize": self.config.randomize,
            "last_epoch_samples": self._last,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next iteration yields exactly the indices still to come.

        The saved seed is adopted when this plan's config has none (a drawn seed is
        replayed); every other setting must match the saved plan.
        """
        version = state.get("version")
        if version != STATE_VERSION:
            raise ConfigError("sampling state version", version, str(STATE_VERSION))
        expected = {
            "dataset_size": self.dataset_size,
            "num_samples_per_epoch": self.config.num_samples_per_epoch,
            "num_epochs": self.num_epochs,
            "randomize": self.config.randomize,
            "last_epoch_samples": self._last,
        }
        for key, value in expected.items():
            if state.get(key) != value:
                raise ConfigError(
                    key,
                    value,
                    f"{state.get(key)!r} as in the saved sampling state",
                    "cannot resume",
                )
        if self.config.seed is not None and state["seed"] != self.config.seed:
            raise ConfigError("seed", self.config.seed, f"{state['seed']!r} as in the saved state")
        if self.config.seed is None:
            self.seed, self.seed_source = int(state["seed"]), "state"
            self._perm_cache = None
        position = _int_field("position", state["position"], 0)
        if position > self._total:
            raise ConfigError("position", position, f"an integer in [0, {self._total}]")
        self._resume_at = self._position = position

    # -- sharding ------------------------------------------------------------------------
    def shard(self, rank: int, world_size: int, pad: bool = False) -> PlanShard:
        """The positions ``rank, rank + world_size, ...`` of this plan (see ``PlanShard``)."""
        return PlanShard(self, rank, world_size, pad)

    # -- records -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Effective settings for logs, records and reports (plain, JSON-serialisable)."""
        return {
            "dataset_size": self.dataset_size,
            "num_samples_per_epoch": self.config.num_samples_per_epoch,
            "num_epochs": self.num_epochs,
            "randomize": self.config.randomize,
            "seed": self.seed,
            "seed_source": self.seed_source,
            "samples_per_epoch": self._per_epoch,
            "last_epoch_samples": self._last,
            "total_samples": self._total,
            "order": (
                "keyed permutation per epoch: KeyedPermutation(size, mix_key(seed, epoch))"
                if self.config.randomize
                else "dataset order; epoch e starts at (e * num_samples_per_epoch) mod size"
            ),
            "legacy": self.legacy,
        }

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SamplingPlan(dataset_size={self.dataset_size}, num_samples_per_epoch="
            f"{c.num_samples_per_epoch}, num_epochs={c.num_epochs}, randomize={c.randomize}, "
            f"seed={self.seed}, total={self._total})"
        )


class PlanShard:
    """One rank's share of a plan: plan positions ``rank, rank + W, rank + 2W, ...``.

    Shards of one plan are disjoint and their union is the plan; their lengths differ by
    at most one. With ``pad=True`` every shard has ``ceil(len(plan) / W)`` entries: the
    missing tail positions wrap around to the start of the plan (as
    ``torch.utils.data.DistributedSampler`` does), so a few indices appear twice.

    NOTE: a shard has its own resume position; resuming with another ``world_size`` is
    refused (the position would mean other samples).

    Example:
        >>> plan = SamplingPlan(SamplingConfig(), 5)
        >>> [list(plan.shard(r, 2)) for r in (0, 1)]
        [[0, 2, 4], [1, 3]]
        >>> list(plan.shard(1, 2, pad=True))
        [1, 3, 0]
    """

    def __init__(self, plan: SamplingPlan, rank: int, world_size: int, pad: bool = False):
        self.world_size = _int_field("world_size", world_size, 1)
        self.rank = _int_field("rank", rank, 0)
        if self.rank >= self.world_size:
            raise ConfigError("rank", rank, f"an integer in [0, {self.world_size})")
        self.plan, self.pad = plan, bool(pad)
        total = len(plan)
        if self.pad:
            self._len = -(-total // self.world_size)
        else:
            self._len = len(range(self.rank, total, self.world_size))
        self._resume_at = 0
        self._position = 0

    def __len__(self) -> int:
        return self._len

    def positions(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Plan positions of shard entries ``[start, stop)``."""
        stop = self._len if stop is None else min(int(stop), self._len)
        j = np.arange(max(0, int(start)), max(stop, 0), dtype=np.int64)
        pos = self.rank + j * self.world_size
        return pos % len(self.plan) if self.pad else pos

    def indices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Dataset indices of shard entries ``[start, stop)`` (int64)."""
        return self.plan.index_at(self.positions(start, stop))

    def __iter__(self) -> Iterator[int]:
        start, self._resume_at = self._resume_at, 0
        self._position = start  # reset now, not at the first next() (see SamplingPlan)
        return self._generate(start)

    def _generate(self, start: int) -> Iterator[int]:
        for block_start in range(start, self._len, _BLOCK):
            for index in self.indices(block_start, block_start + _BLOCK).tolist():
                self._position += 1
                yield index

    @property
    def position(self) -> int:
        """How many indices the current (or last) iteration of this shard has yielded."""
        return self._position

    def state_dict(self) -> dict[str, Any]:
        """The plan's state with this shard's position, rank and world size."""
        state = self.plan.state_dict()
        state.update(position=self._position, rank=self.rank, world_size=self.world_size)
        state["pad"] = self.pad
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume this shard where the saved one stopped (same rank, world size and padding)."""
        for key, value in (("rank", self.rank), ("world_size", self.world_size), ("pad", self.pad)):
            if state.get(key) != value:
                raise ConfigError(key, value, f"{state.get(key)!r} as in the saved shard state")
        plan_state = dict(state)
        plan_state["position"] = 0
        self.plan.load_state_dict(plan_state)  # adopts the seed, checks the shape
        self.plan._resume_at = self.plan._position = 0
        position = _int_field("position", state["position"], 0)
        if position > self._len:
            raise ConfigError("position", position, f"an integer in [0, {self._len}]")
        self._resume_at = self._position = position

    def describe(self) -> dict[str, Any]:
        """The plan's description plus this shard's rank, world size, padding and length."""
        out = self.plan.describe()
        out["shard"] = {
            "rank": self.rank,
            "world_size": self.world_size,
            "pad": self.pad,
            "length": self._len,
        }
        return out


def _is_int(value: Any) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return not isinstance(value, (bool, np.bool_))


def _epoch_keys(seed: int, epochs: np.ndarray) -> np.ndarray:
    """``mix_key(seed, e)`` for every ``e`` of ``epochs``, vectorised (uint64)."""
    acc = np.array([mix_key(seed)], dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _splitmix64(acc ^ epochs.astype(np.uint64))


def keyed_permutation_many(n: int, keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``KeyedPermutation(n, keys[i])[positions[i]]`` for every ``i``, in one vectorised pass.

    The same Feistel network and cycle-walking as ``KeyedPermutation``, with the round
    keys computed per element; a test checks it against ``KeyedPermutation``.
    """
    half_bits = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
    half, mask, size = np.uint64(half_bits), np.uint64((1 << half_bits) - 1), np.uint64(n)
    keys = np.asarray(keys, dtype=np.uint64).ravel()
    with np.errstate(over="ignore"):
        round_keys = _splitmix64(keys[None, :] + np.arange(_ROUNDS, dtype=np.uint64)[:, None])

        def feistel(x: np.ndarray, rks: np.ndarray) -> np.ndarray:
            left, right = x >> half, x & mask
            for rk in rks:
                left, right = right, left ^ (_splitmix64(right ^ rk) & mask)
            return (left << half) | right

        out = feistel(np.asarray(positions, dtype=np.int64).ravel().astype(np.uint64), round_keys)
        todo = np.nonzero(out >= size)[0]
        while todo.size:  # cycle-walking
            out[todo] = feistel(out[todo], round_keys[:, todo])
            todo = todo[out[todo] >= size]
    return out.astype(np.int64)
