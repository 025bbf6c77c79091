"""Mix several datasets by per-dataset weights, and samples inside one by per-sample weights.

``WeightedMultiDatasetSampler`` yields indices into the concatenation of the datasets
(``torch.utils.data.ConcatDataset`` order). Each draw first picks a dataset with
probability proportional to its weight, then an index inside it, uniformly or in
proportion to that dataset's per-sample weights (any per-sample score: image contrast,
difficulty, ...; ``weights_from_scores`` turns scores into weights).

Every draw is a pure function of ``(seed, epoch, position)``: the uniform numbers come
from a counter-based hash (splitmix64 of the key and the stream position), so

* every DDP rank computes the same global sequence and takes its own shard
  (positions ``rank, rank + world_size, ...``), with no communication;
* resuming at any position, or re-running an epoch, reproduces it exactly;
* a curriculum can change the weights between epochs without any hidden RNG state.

NOTE: draws are *with replacement* (like ``WeightedRandomSampler``): an epoch of
``num_samples`` draws may repeat some samples and miss others. That is what weighting
means; to walk through a dataset exactly once per pass use ``ChunkedSampler``.

Why not ``torch.multinomial``: it refuses more than 2^24 categories, and a flat
multinomial over all samples of all datasets couples the two levels of weights. Here
the dataset is drawn first, then the index by ``searchsorted`` on that dataset's
cumulative weights (float64, numpy), so a dataset may hold any number of samples.

Example:
    >>> s = WeightedMultiDatasetSampler([1000, 10], dataset_weights=[1.0, 1.0], num_samples=8, seed=0)
    >>> len(list(s))
    8
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from knoblab.config import check_int
from knoblab.errors import ConfigError
from knoblab.sampling.permutation import _splitmix64, mix_key

_BLOCK = 1 << 16  # positions generated per vectorised block while iterating


def _uniform(key: int, positions: np.ndarray, lane: int) -> np.ndarray:
    """Uniform floats in [0, 1) as a pure function of (key, position, lane); 53-bit resolution."""
    k = np.uint64(mix_key(key, lane))
    with np.errstate(over="ignore"):
        bits = _splitmix64(_splitmix64(positions.astype(np.uint64) ^ k) + k)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def weights_from_scores(
    scores: Sequence[float] | np.ndarray, power: float = 1.0, floor: float = 0.0
) -> np.ndarray:
    """Per-sample weights ``max(score, floor) ** power`` from any non-negative per-sample score.

    ``power=0`` gives uniform weights, ``power=1`` weights proportional to the score,
    ``power>1`` sharpens towards high scores (the seed's contrast weighting used
    image contrast as the score). ``floor`` keeps low-score samples drawable.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ConfigError("sample_scores", f"shape {s.shape}", "a non-empty 1-D sequence of scores")
    if not np.all(np.isfinite(s)) or (s < 0).any():
        bad = s[~np.isfinite(s) | (s < 0)][0]
        raise ConfigError("sample_scores", float(bad), "finite scores >= 0")
    return np.maximum(s, floor) ** power


class WeightedMultiDatasetSampler(Sampler[int]):
    """Draw ``num_samples`` indices per epoch: a dataset by weight, then an index in it.

    Args:
        dataset_sizes: the length of each dataset, in concatenation order.
        dataset_weights: one weight > 0 per dataset (need not sum to 1); None = by size.
        sample_weights: per dataset, None (uniform) or an array of ``size`` weights >= 0
            with a positive sum.
        num_samples: global draws per epoch (all ranks together); None = the total size.
        seed: the sampling seed; the draw of epoch ``e`` depends on ``(seed, e)`` only.
        rank, world_size: this process's shard. Each rank gets
            ``ceil(num_samples / world_size)`` indices (the global sequence is extended
            to a multiple of ``world_size`` so no rank waits on another).
        names: dataset names used in error messages (``train.datasets.<name>.weight``).

    Example:
        >>> s = WeightedMultiDatasetSampler([3, 5], [1.0, 3.0], num_samples=4, seed=1, rank=0, world_size=2)
        >>> s.set_epoch(2); len(s)
        2
    """

    def __init__(
        self,
        dataset_sizes: Sequence[int],
        dataset_weights: Sequence[float] | None = None,
        sample_weights: Sequence[np.ndarray | Sequence[float] | None] | None = None,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        names: Sequence[str] | None = None,
    ):
        self.sizes = [int(n) for n in dataset_sizes]
        self.names = list(names) if names is not None else [str(i) for i in range(len(self.sizes))]
        if not self.sizes:
            raise ConfigError("train.datasets", [], "at least one dataset")
        for name, n in zip(self.names, self.sizes, strict=True):
            if n < 1:
                raise ConfigError(
                    f"train.datasets.{name}.size", n, "a dataset with at least one sample"
                )
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        if num_samples is None:
            num_samples = int(self.offsets[-1])
        check_int("train.samples_per_epoch", num_samples, 1)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError("rank", rank, f"0 <= rank < world_size ({world_size})")
        self.num_samples = num_samples
        self.seed = int(seed)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.epoch_hooks: list[Callable[[int], None]] = []
        self.set_dataset_weights(dataset_weights if dataset_weights is not None else self.sizes)
        self.set_sample_weights(sample_weights)

    # --- weights (a curriculum changes them between epochs) ---------------------------------

    def set_dataset_weights(self, weights: Sequence[float] | Mapping[str, float]) -> None:
        """Replace the per-dataset weights (a list in dataset order, or ``{name: weight}``)."""
        if isinstance(weights, Mapping):
            unknown = set(weights) - set(self.names)
            if unknown:
                key = sorted(unknown)[0]
                raise ConfigError(
                    f"train.datasets.{key}", weights[key], f"one of the datasets {self.names}"
                )
            weights = [
                float(weights.get(n, self.dataset_weights[i])) for i, n in enumerate(self.names)
            ]
        w = [float(x) for x in weights]
        if len(w) != len(self.sizes):
            raise ConfigError(
                "train.dataset_weights", w, f"{len(self.sizes)} weights, one per dataset"
            )
        for name, x in zip(self.names, w, strict=True):
            if not np.isfinite(x) or x <= 0:
                raise ConfigError(f"train.datasets.{name}.weight", x, "a number > 0")
        self.dataset_weights = w
        self._dataset_cdf = np.cumsum(np.asarray(w, dtype=np.float64))

    def set_sample_weights(
        self, sample_weights: Sequence[np.ndarray | Sequence[float] | None] | None
    ) -> None:
        """Replace the per-sample weights (None, or one entry per dataset: None or an array)."""
        if sample_weights is None:
            sample_weights = [None] * len(self.sizes)
        if len(sample_weights) != len(self.sizes):
            raise ConfigError(
                "train.sample_weights",
                len(sample_weights),
                f"{len(self.sizes)} entries, one per dataset",
            )
        cdfs: list[np.ndarray | None] = []
        for name, n, sw in zip(self.names, self.sizes, sample_weights, strict=True):
            if sw is None:
                cdfs.append(None)
                continue
            arr = np.asarray(sw, dtype=np.float64)
            key = f"train.datasets.{name}.sample_weights"
            if arr.shape != (n,):
                raise ConfigError(key, f"shape {arr.shape}", f"one weight per sample, shape ({n},)")
            if not np.all(np.isfinite(arr)) or (arr < 0).any():
                raise ConfigError(
                    key, float(arr[~np.isfinite(arr) | (arr < 0)][0]), "finite weights >= 0"
                )
            cdf = np.cumsum(arr)
            if cdf[-1] <= 0:
                raise ConfigError(key, "all zero", "at least one weight > 0")
            cdfs.append(cdf)
        self._sample_cdfs = cdfs

    def set_rank(self, rank: int, world_size: int, num_samples: int | None = None) -> None:
        """Move to another shard (and epoch length) once the process group is known."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError("rank", rank, f"0 <= rank < world_size ({world_size})")
        self.rank, self.world_size = rank, world_size
        if num_samples is not None:
            self.num_samples = num_samples

    # --- the draw ----------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose sequence ``__iter__`` yields (Lightning calls this).

        Then calls every ``epoch_hooks`` entry with the epoch: a curriculum sets that
        epoch's weights there, so they depend on the epoch alone, also after a resume.
        """
        self.epoch = int(epoch)
        for hook in self.epoch_hooks:
            hook(self.epoch)

    @property
    def total_size(self) -> int:
        """Global draws per epoch, rounded up to a multiple of ``world_size``."""
        return -(-self.num_samples // self.world_size) * self.world_size

    def draw(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """Global indices (into the concatenation) at stream ``positions`` of ``epoch``; vectorised."""
        pos = np.asarray(positions, dtype=np.int64)
        key = mix_key(self.seed, epoch)
        u_ds = _uniform(key, pos, 0)
        u_ix = _uniform(key, pos, 1)
        ds = np.searchsorted(self._dataset_cdf, u_ds * self._dataset_cdf[-1], side="right")
        ds = np.minimum(ds, len(self.sizes) - 1)  # guards u * total rounding up to total
        out = np.empty(pos.shape, dtype=np.int64)
        for d in np.unique(ds):
            sel = ds == d
            n, cdf = self.sizes[d], self._sample_cdfs[d]
            if cdf is None:
                local = np.minimum((u_ix[sel] * n).astype(np.int64), n - 1)
            else:
                local = np.minimum(np.searchsorted(cdf, u_ix[sel] * cdf[-1], side="right"), n - 1)
            out[sel] = self.offsets[d] + local
        return out

    def dataset_of(self, indices: np.ndarray) -> np.ndarray:
        """Which dataset each global index belongs to."""
        return np.searchsorted(self.offsets, np.asarray(indices), side="right") - 1

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        for start in range(self.rank, self.total_size, _BLOCK * self.world_size):
            stop = min(start + _BLOCK * self.world_size, self.total_size)
            yield from self.draw(epoch, np.arange(start, stop, self.world_size)).tolist()

    def __len__(self) -> int:
        return self.total_size // self.world_size

    # --- resume ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the sequence (plain types, safe for ``weights_only`` loading)."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "num_samples": self.num_samples,
            "dataset_weights": list(self.dataset_weights),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the seed, epoch, epoch length and dataset weights."""
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.num_samples = int(state["num_samples"])
        self.set_dataset_weights(state["dataset_weights"])
