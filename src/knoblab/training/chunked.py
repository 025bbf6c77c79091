"""Lightning integration of chunked loading: one epoch = one training chunk + one validation chunk.

With chunking on (``train.train_chunk_size`` and/or ``train.val_chunk_size``, see
``knoblab.sampling.chunked``; the rules in ``resolve_chunking`` below), every Lightning epoch trains on the next chunk of the
training stream and then validates on the next chunk of the validation stream; both
streams walk their whole dataset pass after pass. The positions of both streams are
saved in Lightning checkpoints (the datamodule's ``state_dict``), so
``trainer.fit(ckpt_path=...)`` goes on with exactly the batches an uninterrupted run
would have had, from an end-of-epoch checkpoint as well as a mid-epoch one.

Two ways to use it:

1. ``ChunkedDataModule(train_dataset, val_dataset, batch_size, train_chunk_size=...,
   val_chunk_size=..., shuffle=True, seed=0, **dataloader_kwargs)``, a ready
   ``LightningDataModule``. Subclass it to build datasets in ``setup``: set
   ``self.train_dataset`` / ``self.val_dataset`` and call ``super().setup(stage)``.
2. Composition, for a data module of your own: hold a ``ChunkedLoaders`` and delegate
   four methods to it::

       class MyData(L.LightningDataModule):
           def setup(self, stage):
               self.chunks = self.chunks or ChunkedLoaders(train_ds, val_ds, batch_size=32,
                                                         train_chunk_size=2000, val_chunk_size=200)
           def train_dataloader(self):  return self.chunks.train_dataloader(self.trainer)
           def val_dataloader(self):    return self.chunks.val_dataloader(self.trainer)
           def state_dict(self):        return self.chunks.state_dict()
           def load_state_dict(self, s): self.chunks.load_state_dict(s)

With neither chunk size, the loaders are plain ``DataLoader`` objects and Lightning's
``limit_train_batches`` / ``limit_val_batches`` work as always (seed 001's guarantee).

NOTE: when chunking is on, a Trainer's ``limit_train_batches`` / ``limit_val_batches``
are ignored as the seed requires: the loaders reset them to 1.0 on the trainer and log
one INFO line. ``limit_val_batches=0`` still disables validation (Lightning then never
asks for a validation loader).
NOTE: the sanity check (``num_sanity_val_steps``) runs on the next validation chunk
without consuming it. Lightning's own ``DistributedSampler`` is not used for chunked
loaders: they split each chunk across ranks themselves (equal lengths, no hang).
NOTE: the training engineer's ``Trainer`` needs nothing special: the defaults
(``reload_dataloaders_every_n_epochs=0``) are fine; reloading returns the same loaders.

Example:
    >>> dm = ChunkedDataModule(list(range(100)), list(range(10)), batch_size=5, train_chunk_size=4)
    >>> dm.setup("fit"); len(dm.train_dataloader()), len(dm.val_dataloader())
    (4, 2)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as L

from knoblab._compat.lightning import set_batch_limit
from knoblab.sampling.chunked import ChunkedDataLoader, plain_loader, validate_chunk_sizes
from knoblab.training.chunk_rules import ChunkConfig, ChunkPlan, resolve_chunking

log = logging.getLogger(__name__)

__all__ = ["ChunkConfig", "ChunkPlan", "ChunkedDataModule", "ChunkedLoaders", "resolve_chunking"]


def _limit(value: Any) -> Any:
    """A Trainer ``limit_*`` value, or None when it limits nothing (Lightning's 1.0 / None)."""
    if value is None or (isinstance(value, float) and value == 1.0):
        return None
    return value


class _TrainerAware:
    """Wraps a ``ChunkedDataLoader`` for Lightning: sanity checks do not consume a chunk.

    Deliberately not stateful (no ``state_dict``): the data module owns the position, so
    turning chunking on or off between runs never trips Lightning's loader-state check.
    """

    def __init__(self, loader: ChunkedDataLoader, trainer: Any):
        self.loader, self.trainer = loader, trainer

    def __iter__(self) -> Iterator[Any]:
        if self.trainer is not None and getattr(self.trainer, "sanity_checking", False):
            return self.loader.iter_chunk(self.loader.current_chunk)
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


class ChunkedLoaders:
    """Training and validation loaders of one run, chunked or plain, and their resume state.

    Args:
        train_dataset, val_dataset: map-style datasets (``val_dataset`` may be None).
        batch_size: samples per batch per rank; ``val_batch_size`` defaults to it.
        train_chunk_size, val_chunk_size: batches per chunk per rank (``train.*`` keys);
            either given turns chunking on, the missing one is the whole partition.
        shuffle: shuffle training data (a new keyed permutation per pass when chunked).
        val_shuffle: shuffle validation data (default False).
        seed: key of the training permutations (validation uses ``seed + 1``).
        chunked: force chunked mode (True) or leave it to the chunk sizes (None). A data
            module that serves training itself but got ``train.train_chunk_size`` passes
            ``train_chunk_size=None, chunked=True``: validation is then chunked (whole
            partition unless ``val_chunk_size``) and ``limit_*`` are ignored, as the seed says.
        **dataloader_kwargs: for every ``DataLoader`` (``num_workers``, ``collate_fn``, ...).

    Example:
        >>> c = ChunkedLoaders(list(range(8)), None, batch_size=2, train_chunk_size=1, shuffle=False)
        >>> [b.tolist() for b in c.train_dataloader()], c.state_dict()["train"]["current_chunk"]
        ([[0, 1]], 1)
    """

    def __init__(
        self,
        train_dataset: Any,
        val_dataset: Any | None,
        batch_size: int,
        train_chunk_size: int | None = None,
        val_chunk_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        *,
        val_shuffle: bool = False,
        val_batch_size: int | None = None,
        chunked: bool | None = None,
        **dataloader_kwargs: Any,
    ):
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.train_chunk_size, self.val_chunk_size = train_chunk_size, val_chunk_size
        self.shuffle, self.val_shuffle, self.seed = shuffle, val_shuffle, seed
        self.dataloader_kwargs = dataloader_kwargs
        self._force = chunked
        self._train: ChunkedDataLoader | None = None
        self._val: ChunkedDataLoader | None = None
        self._pending: dict[str, Any] = {}
        self.sizes: ChunkPlan | None = None
        validate_chunk_sizes(train_chunk_size, val_chunk_size)  # fail now, not at the first epoch

    @property
    def chunked(self) -> bool:
        """True when either chunk size is given (or ``chunked`` says so)."""
        if self._force is not None:
            return self._force
        return self.train_chunk_size is not None or self.val_chunk_size is not None

    def _resolve(self, trainer: Any) -> ChunkPlan:
        """Chunk sizes in batches; needs the world size, hence done when loaders are asked for."""
        world = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1

        def batches(ds: Any, bs: int) -> int:
            per_rank = -(-len(ds) // world)
            drop = self.dataloader_kwargs.get("drop_last", False)
            return per_rank // bs if drop else -(-per_rank // bs)

        limits: tuple[Any, Any] = (None, None)
        if trainer is not None:
            limits = (_limit(trainer.limit_train_batches), _limit(trainer.limit_val_batches))
        train_batches = batches(self.train_dataset, self.batch_size)
        val_batches = (
            batches(self.val_dataset, self.val_batch_size) if self.val_dataset is not None else None
        )
        train_size = self.train_chunk_size
        if self.chunked and train_size is None and self.val_chunk_size is None:
            train_size = train_batches  # forced chunked mode: both partitions whole
        self.sizes = resolve_chunking(
            train_size, self.val_chunk_size, train_batches, val_batches, *limits
        )
        if self.sizes.chunked and trainer is not None:
            # Seed 001: chunk sizes take precedence; limit_* are ignored (INFO logged above).
            for attr in ("limit_train_batches", "limit_val_batches"):
                if _limit(getattr(trainer, attr)) not in (None, 0):
                    set_batch_limit(trainer, attr, 1.0)
        return self.sizes

    def _make(self, which: str, trainer: Any) -> ChunkedDataLoader:
        sizes = self.sizes or self._resolve(trainer)
        train = which == "train"
        loader = ChunkedDataLoader(
            self.train_dataset if train else self.val_dataset,
            self.batch_size if train else self.val_batch_size,
            sizes.train_chunk_size if train else sizes.val_chunk_size,
            self.shuffle if train else self.val_shuffle,
            self.seed if train else self.seed + 1,
            name=f"train.{which}_chunk_size",
            label=which,
            **self.dataloader_kwargs,
        )
        if which in self._pending:
            loader.load_state_dict(self._pending.pop(which))
        return loader

    def train_dataloader(self, trainer: Any = None) -> Any:
        """The training loader: one chunk per ``iter()`` when chunked, else a plain DataLoader."""
        if not self.chunked:
            # a real DataLoader: Lightning adds its DistributedSampler and applies limit_*
            return plain_loader(
                self.train_dataset,
                self.batch_size,
                self.shuffle,
                self.seed,
                **self.dataloader_kwargs,
            )
        if self._train is None:
            self._train = self._make("train", trainer)
        elif trainer is not None:
            self._resolve(trainer)  # reloading dataloaders: keep ignoring limit_*
        return _TrainerAware(self._train, trainer)

    def val_dataloader(self, trainer: Any = None) -> Any:
        """The validation loader (cycling chunks when chunked); ``[]`` without a validation set."""
        if self.val_dataset is None:
            return []
        if not self.chunked:
            return plain_loader(
                self.val_dataset,
                self.val_batch_size,
                self.val_shuffle,
                self.seed + 1,
                **self.dataloader_kwargs,
            )
        if self._val is None:
            self._val = self._make("val", trainer)
        return _TrainerAware(self._val, trainer)

    def close(self) -> None:
        """Stop the worker processes of both chunked loaders (positions are kept)."""
        for loader in (self._train, self._val):
            if loader is not None:
                loader.close()

    def state_dict(self) -> dict[str, Any]:
        """Stream positions of both loaders (empty when not chunked)."""
        if not self.chunked:
            return {}
        state = dict(self._pending)
        for which, loader in (("train", self._train), ("val", self._val)):
            if loader is not None:
                state[which] = loader.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore positions; applied now or when the loaders are first built.

        NOTE: a checkpoint of a chunked run resumed without chunking (or the reverse)
        starts the new mode from its beginning, with one INFO line.
        """
        if not self.chunked:
            if state:
                log.info(
                    "checkpoint has chunked-loading positions but chunking is off: ignoring them"
                )
            return
        for which in ("train", "val"):
            if which not in state:
                continue
            loader = self._train if which == "train" else self._val
            if loader is None:
                self._pending[which] = state[which]
            else:
                loader.load_state_dict(state[which])


class ChunkedDataModule(L.LightningDataModule):
    """A ``LightningDataModule`` over two datasets with chunked loading (see module docstring).

    Args: as ``ChunkedLoaders``. Datasets may be left None and set in a subclass's ``setup``.

    Usage (with your datasets and LightningModule)::

        import lightning.pytorch as L
        dm = ChunkedDataModule(train_ds, val_ds, batch_size=32, train_chunk_size=2000)
        L.Trainer(max_epochs=10).fit(model, datamodule=dm)
    """

    def __init__(
        self,
        train_dataset: Any = None,
        val_dataset: Any = None,
        batch_size: int = 32,
        train_chunk_size: int | None = None,
        val_chunk_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__()
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self._args = dict(
            batch_size=batch_size,
            train_chunk_size=train_chunk_size,
            val_chunk_size=val_chunk_size,
            shuffle=shuffle,
            seed=seed,
            **kwargs,
        )
        validate_chunk_sizes(train_chunk_size, val_chunk_size)  # bad keys fail here, not at fit
        self.chunks: ChunkedLoaders | None = None

    def setup(self, stage: str) -> None:
        """Build the loaders' owner once the datasets are known (idempotent)."""
        if self.chunks is None:
            if self.train_dataset is None:
                raise ValueError("ChunkedDataModule needs train_dataset (set it before setup)")
            self.chunks = ChunkedLoaders(self.train_dataset, self.val_dataset, **self._args)

    def _loaders(self) -> ChunkedLoaders:
        if self.chunks is None:
            self.setup("fit")
        assert self.chunks is not None
        return self.chunks

    def train_dataloader(self) -> Any:
        return self._loaders().train_dataloader(self.trainer)

    def val_dataloader(self) -> Any:
        return self._loaders().val_dataloader(self.trainer)

    def teardown(self, stage: str) -> None:
        if self.chunks is not None:
            self.chunks.close()

    def state_dict(self) -> dict[str, Any]:
        return self._loaders().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaders().load_state_dict(state_dict)
