"""The multi-dataset data module: datasets mixed by weight, chunked loading when asked.

``MultiDatasetDataModule(train=[DatasetSpec(...), ...], val=[...], collate_fn=...)``
serves one concatenation of the training datasets in one of two ways:

* ``mixing="weighted"`` (default): ``WeightedMultiDatasetSampler`` draws a dataset by
  its weight, then a sample inside it (uniformly or by per-sample weights). An epoch
  is ``samples_per_epoch`` draws, or ``train_chunk_size`` batches when that is set
  (each epoch is then the next chunk of the endless weighted stream). A
  ``CurriculumCallback`` may change the weights between epochs.
* ``mixing="sequential"``: every sample once per pass, through the chunked loaders of
  ``knoblab.training.chunked`` (chunks of ``train_chunk_size`` batches that walk the
  whole concatenation, pass after pass; plain shuffled loading without chunk sizes).

Validation always goes through ``knoblab.training.chunked.ChunkedLoaders``: a plain
loader over all validation datasets, or (with ``val_chunk_size``) the next validation
chunk after each epoch. Stream positions are saved in checkpoints (``state_dict``).

NOTE: under DDP the weighted sampler shards itself (every rank computes the same
global draw and takes positions ``rank, rank + world, ...``). Lightning must not wrap
it in its own ``DistributedSampler``: build the Trainer with
``use_distributed_sampler=False`` (``knoblab train`` does; otherwise this raises).

Example:
    >>> from knoblab.training.toy import ToyDataset, build_task
    >>> task = build_task({})
    >>> dm = MultiDatasetDataModule(
    ...     [DatasetSpec("a", ToyDataset(50), 1.0), DatasetSpec("b", ToyDataset(50, seed=1), 3.0)],
    ...     [DatasetSpec("v", ToyDataset(20, seed=2))], collate_fn=task.collate, batch_size=8, samples_per_epoch=64)
    >>> dm.setup("fit"); len(dm.train_dataloader())
    8
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from knoblab._compat.lightning import set_batch_limit, uses_distributed_sampler
from knoblab.config import check_int
from knoblab.errors import ConfigError
from knoblab.sampling.weighted import WeightedMultiDatasetSampler
from knoblab.training.chunked import ChunkedLoaders

log = logging.getLogger(__name__)

MIXINGS = ("weighted", "sequential")


class _FirstBatchDataLoader(DataLoader):
    """A DataLoader whose iteration starts at the first batch asked for, not at ``iter()``.

    Why: Lightning calls ``iter()`` on the training loader while it sets up (before it
    restores a checkpoint's loop state, and before it calls the sampler's ``set_epoch``),
    and with ``num_workers > 0`` torch draws the first indices at ``iter()``: the first
    epoch of a run, or of a resumed run, was drawn with the wrong epoch (and curriculum
    stage). Started at the first batch, the draw sees the epoch Lightning set. Batches come
    through ``itertools.chain`` (C), so this costs no Python frame per batch.
    """

    def __iter__(self) -> Any:
        return itertools.chain.from_iterable(self._start())

    def _start(self) -> Any:
        yield super().__iter__()


@dataclass
class DatasetSpec:
    """One dataset of the mix.

    Attributes:
        name: how configs and logs name it (``train.datasets.<name>``).
        dataset: a map-style dataset.
        weight: relative probability of drawing from it (> 0; weighted mixing only).
        sample_weights: None (uniform) or one weight >= 0 per sample.
    """

    name: str
    dataset: Any
    weight: float = 1.0
    sample_weights: np.ndarray | None = None


class MultiDatasetDataModule(L.LightningDataModule):
    """Several training datasets mixed by weight; validation on the concatenation of the others.

    Args:
        train: the training datasets.
        val: the validation datasets (empty or None: no validation).
        collate_fn: samples -> batch (the model family's collate).
        batch_size: samples per batch per rank; ``val_batch_size`` defaults to it.
        mixing: ``weighted`` or ``sequential`` (see the module docstring).
        samples_per_epoch: weighted draws per epoch, all ranks together; None: the total
            size of the training datasets. Ignored when ``train_chunk_size`` is set.
        seed: the sampling seed (validation order uses ``seed + 1``).
        train_chunk_size, val_chunk_size: batches per chunk per rank (``train.*`` keys).
        shuffle: shuffle in ``sequential`` mixing.
        **loader_kwargs: ``num_workers``, ``pin_memory``, ``persistent_workers``, ``drop_last``.
    """

    def __init__(
        self,
        train: Sequence[DatasetSpec],
        val: Sequence[DatasetSpec] | None,
        collate_fn: Callable[[list[Any]], Any],
        batch_size: int,
        *,
        val_batch_size: int | None = None,
        mixing: str = "weighted",
        samples_per_epoch: int | None = None,
        seed: int = 0,
        train_chunk_size: int | None = None,
        val_chunk_size: int | None = None,
        shuffle: bool = True,
        **loader_kwargs: Any,
    ):
        super().__init__()
        if mixing not in MIXINGS:
            raise ConfigError("train.mixing", mixing, f"one of {', '.join(MIXINGS)}")
        if not train:
            raise ConfigError("train.datasets", [], "at least one training dataset")
        check_int("train.batch_size", batch_size, 1)
        self.train_specs, self.val_specs = list(train), list(val or [])
        self.collate_fn, self.batch_size = collate_fn, batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.mixing, self.samples_per_epoch, self.seed = mixing, samples_per_epoch, int(seed)
        self.train_chunk_size, self.val_chunk_size = train_chunk_size, val_chunk_size
        self.loader_kwargs = dict(loader_kwargs)
        self.train_dataset = ConcatDataset([s.dataset for s in self.train_specs])
        self.val_dataset = (
            ConcatDataset([s.dataset for s in self.val_specs]) if self.val_specs else None
        )
        # Weighted mixing serves training itself; the chunked loaders then serve validation only.
        seq = mixing == "sequential"
        self.chunks = ChunkedLoaders(
            self.train_dataset,
            self.val_dataset,
            batch_size,
            train_chunk_size if seq else None,
            val_chunk_size,
            shuffle,
            self.seed,
            val_batch_size=self.val_batch_size,
            # weighted + train_chunk_size alone: validation is still chunked (whole partition
            # per chunk) and limit_* are ignored, as when the chunked loaders serve training
            chunked=None if seq else (train_chunk_size is not None or val_chunk_size is not None),
            collate_fn=collate_fn,
            **self.loader_kwargs,
        )
        self.sampler: WeightedMultiDatasetSampler | None = None
        if not seq:
            # validate weights now (a weight <= 0 fails at startup, not at the first epoch)
            self.sampler = self._make_sampler(rank=0, world_size=1)

    @property
    def names(self) -> list[str]:
        """Training dataset names, in concatenation order."""
        return [s.name for s in self.train_specs]

    def _rank_world(self) -> tuple[int, int]:
        t = self.trainer
        if t is None:
            return 0, 1
        return int(t.global_rank), int(t.world_size)

    def _epoch_samples(self, world_size: int) -> int | None:
        if self.train_chunk_size is not None:
            return self.train_chunk_size * self.batch_size * world_size
        return self.samples_per_epoch

    def _make_sampler(self, rank: int, world_size: int) -> WeightedMultiDatasetSampler:
        return WeightedMultiDatasetSampler(
            [len(s.dataset) for s in self.train_specs],
            [s.weight for s in self.train_specs],
            [s.sample_weights for s in self.train_specs],
            num_samples=self._epoch_samples(world_size),
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            names=self.names,
        )

    def set_dataset_weights(self, weights: Mapping[str, float] | Sequence[float]) -> None:
        """New dataset weights from the next epoch on (a curriculum calls this)."""
        if self.sampler is None:
            raise ConfigError("train.curriculum", "dataset weights", "train.mixing=weighted")
        self.sampler.set_dataset_weights(weights)

    def add_epoch_hook(self, hook: Callable[[int], None]) -> None:
        """Call ``hook(epoch)`` whenever the training sampler moves to an epoch (before its draw)."""
        if self.sampler is None:
            raise ConfigError("train.curriculum", "set", "train.mixing=weighted")
        self.sampler.epoch_hooks.append(hook)

    def set_sample_weights(self, sample_weights: Sequence[np.ndarray | None]) -> None:
        """New per-sample weights (one entry per training dataset) from the next epoch on."""
        if self.sampler is None:
            raise ConfigError("train.curriculum", "sample weights", "train.mixing=weighted")
        self.sampler.set_sample_weights(sample_weights)

    # --- loaders --------------------------------------------------------------------------

    def train_dataloader(self) -> Any:
        if self.mixing == "sequential":
            return self.chunks.train_dataloader(self.trainer)
        rank, world = self._rank_world()
        t = self.trainer
        if world > 1 and t is not None and uses_distributed_sampler(t):
            raise ConfigError(
                "use_distributed_sampler",
                True,
                "False with weighted mixing under DDP",
                "the weighted sampler shards itself; Trainer(use_distributed_sampler=False)",
            )
        if (
            t is not None
            and self.train_chunk_size is not None
            and t.limit_train_batches not in (None, 1.0)
        ):
            log.info(
                "limit_train_batches=%s is ignored: train.train_chunk_size is set",
                t.limit_train_batches,
            )
            set_batch_limit(t, "limit_train_batches", 1.0)
        assert self.sampler is not None
        self.sampler.set_rank(rank, world, self._epoch_samples(world) or self.sampler.num_samples)
        return _FirstBatchDataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            collate_fn=self.collate_fn,
            # the sampler decides the order; a seeded generator keeps the global RNG untouched
            generator=torch.Generator().manual_seed(self.seed),
            **self.loader_kwargs,
        )

    def val_dataloader(self) -> Any:
        return self.chunks.val_dataloader(self.trainer)

    def teardown(self, stage: str) -> None:
        self.chunks.close()  # stop the chunked loaders' workers now, not at a later gc

    # --- resume ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"chunks": self.chunks.state_dict()}
        if self.sampler is not None:
            state["weighted"] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.chunks.load_state_dict(state_dict.get("chunks") or {})
        if self.sampler is not None and "weighted" in state_dict:
            w = state_dict["weighted"]
            self.sampler.set_dataset_weights(w["dataset_weights"])
            self.sampler.set_epoch(int(w["epoch"]))
