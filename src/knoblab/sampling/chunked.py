"""Chunked loading: walk the whole dataset, a chunk of batches at a time, pass after pass.

``limit_train_batches: 2000`` makes every Lightning epoch train on the *same* first
2000 batches. Chunked loading instead serves consecutive chunks of one endless stream
of passes over the dataset, so that every sample is seen once per pass and an
"epoch" (one chunk) stays short enough to validate often.

The stream: pass ``p`` visits every index exactly once, in dataset order or, with
``shuffle=True``, in the keyed permutation ``KeyedPermutation(N, mix_key(seed, p))``
(O(1) memory; a new order each pass). Chunk ``k`` is stream positions
``[k*C, (k+1)*C)`` with ``C <= N``, so every chunk has exactly ``C`` samples and a
chunk may span the boundary between two passes.

Three public pieces:

- ``ChunkedSampler(dataset_size, chunk_size, ...)``: a ``torch`` sampler over one
  chunk (chunk size in SAMPLES); ``set_chunk(k)`` picks the chunk. Under DDP each rank
  gets an equal, disjoint share of the chunk (padded by wrapping to the chunk start,
  as ``DistributedSampler`` pads), so no rank waits for another at a collective.
- ``ChunkedDataLoader(dataset, batch_size, chunk_size=None, ...)``: chunk size in
  BATCHES per rank (the number of optimizer steps per chunk, like Lightning's
  ``limit_train_batches``); every ``iter()`` serves the next chunk; ``state_dict()``
  resumes exactly, also in the middle of a chunk. Without ``chunk_size`` it *is* a
  plain ``torch.utils.data.DataLoader`` (the constructor returns one).
- ``resolve_chunk_sizes(...)``: the configuration rules of seed 001 (below).

Configuration rules (``train.train_chunk_size`` / ``train.val_chunk_size``, in batches):

=====================  ==============================  ==================================
given                  chunk sizes used                ``limit_train/val_batches``
=====================  ==============================  ==================================
neither                no chunking                     used exactly as Lightning does
train only             train: given, val: whole val    ignored (one INFO line)
val only               train: whole train, val: given  ignored (one INFO line)
both                   both as given                   ignored (one INFO line)
=====================  ==============================  ==================================

NOTE (reading of seed 001): its "Implementation Guards" snippet turns
``limit_batches`` alone into chunking (``chunk_size if chunk_size is not None else
limit_batches``). That contradicts the seed's own Backward Compatibility Guarantee
("``limit_train_batches`` and ``limit_val_batches`` continue to work when no chunk
sizes are specified"); we follow the guarantee: ``limit_*`` alone never enables chunking.

NOTE: under DDP a chunk of ``chunk_size`` batches per rank holds
``chunk_size * batch_size * world_size`` samples (at most the dataset size).

Example:
    >>> loader = ChunkedDataLoader(list(range(10)), batch_size=2, chunk_size=2)
    >>> [b.tolist() for b in loader], [b.tolist() for b in loader]
    ([[0, 1], [2, 3]], [[4, 5], [6, 7]])
    >>> [b.tolist() for b in loader]  # this chunk spans the pass boundary
    [[8, 9], [0, 1]]
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import warnings
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from knoblab.errors import CheckpointError, ConfigError, DataError
from knoblab.sampling.permutation import KeyedPermutation, mix_key

#: Datasets up to this size cache each pass's permutation as an array (<= 8 MiB of int64).
_MATERIALIZE_MAX = 1 << 20

log = logging.getLogger(__name__)

__all__ = [
    "ChunkConfig",
    "ChunkInfo",
    "ChunkSizes",
    "ChunkedDataLoader",
    "ChunkedSampler",
    "resolve_chunk_sizes",
    "validate_chunk_sizes",
]

_ALLOWED = "an integer >= 1 (batches per chunk) or null to disable chunking"
# Indices are produced in blocks so that a chunk as large as a 10^9-sample partition
# never materialises more than this many of them at once.
_BLOCK = 8192


def _check_chunk_size(key: str, value: Any) -> None:
    """Raise the one-line ``ConfigError`` for a chunk size that is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(key, value, _ALLOWED)


def _dist_rank_world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, or (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@dataclasses.dataclass
class ChunkConfig:
    """Config schema of the chunking keys (section ``train``; sizes in batches per rank)."""

    train_chunk_size: int | None = None
    """Training batches per chunk (= per Lightning epoch); null: no chunk size given."""
    val_chunk_size: int | None = None
    """Validation batches per chunk (one chunk after each training chunk); null: not given."""

    def __post_init__(self) -> None:
        for name in ("train_chunk_size", "val_chunk_size"):
            value = getattr(self, name)
            if value is not None:
                _check_chunk_size(name, value)

    @property
    def enabled(self) -> bool:
        """Chunking is on when either size is given (seed 001, guarantee 3)."""
        return self.train_chunk_size is not None or self.val_chunk_size is not None


@dataclasses.dataclass(frozen=True)
class ChunkSizes:
    """What ``resolve_chunk_sizes`` decided; pass the ``limit_*`` fields to the Trainer."""

    chunked: bool
    """True when chunked loading is on (either chunk size was given)."""
    train_chunk_size: int | None
    """Training batches per chunk (None when not chunked)."""
    val_chunk_size: int | None
    """Validation batches per chunk (None when not chunked or there is no validation set)."""
    limit_train_batches: int | float | None
    """The Trainer's ``limit_train_batches``: unchanged when not chunked, else None (all)."""
    limit_val_batches: int | float | None
    """The Trainer's ``limit_val_batches``: unchanged when not chunked, else None (all)."""


def validate_chunk_sizes(train_chunk_size: Any, val_chunk_size: Any) -> None:
    """Raise ``ConfigError`` naming ``train.train_chunk_size`` / ``train.val_chunk_size``
    unless each is None or an integer >= 1."""
    for key, value in (
        ("train.train_chunk_size", train_chunk_size),
        ("train.val_chunk_size", val_chunk_size),
    ):
        if value is not None:
            _check_chunk_size(key, value)


def _clamp(key: str, size: int, partition: int, what: str) -> int:
    if size > partition:
        msg = (
            f"{key}={size} is larger than the {what} partition ({partition} batches); "
            f"using {partition} (one whole pass per chunk)"
        )
        warnings.warn(msg, UserWarning, stacklevel=3)
        log.warning(msg)
        return partition
    return size


def resolve_chunk_sizes(
    train_chunk_size: int | None,
    val_chunk_size: int | None,
    train_batches: int,
    val_batches: int | None,
    limit_train_batches: int | float | None = None,
    limit_val_batches: int | float | None = None,
) -> ChunkSizes:
    """Apply seed 001's rules: detection, inference of the missing size, precedence.

    ``train_batches`` / ``val_batches`` are the partition sizes in batches (per rank);
    ``val_batches=None`` means there is no validation set.

    - Neither chunk size given: no chunking; ``limit_*`` are returned unchanged and work
      exactly as in Lightning.
    - Either given: chunking is on; the missing size is inferred as its whole partition;
      ``limit_*`` are ignored (one INFO log line each) and returned as None.
    - A chunk size larger than its partition: a warning, and the partition size.

    NOTE: the seed's "Implementation Guards" snippet would turn ``limit_*`` alone into
    chunking; that contradicts its backward-compatibility guarantee, which we follow.

    Raises:
        ConfigError: a chunk size that is not an integer >= 1 (names the key).
        DataError: chunking is on and the training (or a chunked validation) partition is empty.

    Example:
        >>> resolve_chunk_sizes(2000, None, train_batches=10_000, val_batches=300)
        ChunkSizes(chunked=True, train_chunk_size=2000, val_chunk_size=300, limit_train_batches=None, limit_val_batches=None)
    """
    for key, value in (
        ("train.train_chunk_size", train_chunk_size),
        ("train.val_chunk_size", val_chunk_size),
    ):
        if value is not None:
            _check_chunk_size(key, value)
    if train_chunk_size is None and val_chunk_size is None:
        return ChunkSizes(False, None, None, limit_train_batches, limit_val_batches)

    if train_batches < 1:
        raise DataError(
            f"the training partition is empty (0 batches): chunked loading "
            f"(train.train_chunk_size={train_chunk_size}, train.val_chunk_size={val_chunk_size}) "
            f"needs at least one sample"
        )
    train = train_batches if train_chunk_size is None else int(train_chunk_size)
    train = _clamp("train.train_chunk_size", train, train_batches, "training")
    if val_batches is None or val_batches < 1:
        if val_chunk_size is not None:
            raise DataError(
                f"train.val_chunk_size={val_chunk_size} is set but the validation partition is "
                f"empty ({val_batches or 0} batches): give a validation set or unset train.val_chunk_size"
            )
        val = None
    else:
        val = val_batches if val_chunk_size is None else int(val_chunk_size)
        val = _clamp("train.val_chunk_size", val, val_batches, "validation")
    for key, limit, chunk in (
        ("limit_train_batches", limit_train_batches, f"train.train_chunk_size={train}"),
        ("limit_val_batches", limit_val_batches, f"train.val_chunk_size={val}"),
    ):
        if limit is not None:
            log.info("%s=%s is ignored: chunked loading is on (%s)", key, limit, chunk)
    return ChunkSizes(True, train, val, None, None)


@dataclasses.dataclass(frozen=True)
class ChunkInfo:
    """Where chunk ``chunk`` lies in the stream: one or two (pass, start, stop) segments.

    Positions are 0-based and half-open (``start..stop`` = ``range(start, stop)``).
    """

    chunk: int
    dataset_size: int
    segments: tuple[tuple[int, int, int], ...]

    @property
    def pass_index(self) -> int:
        """The pass the chunk starts in."""
        return self.segments[0][0]

    @property
    def start(self) -> int:
        """First position (within its pass) of the chunk."""
        return self.segments[0][1]

    @property
    def stop(self) -> int:
        """One past the last position (within its pass) of the chunk."""
        return self.segments[-1][2]

    def __str__(self) -> str:
        parts = [f"pass {p}, samples {a}..{b} of {self.dataset_size}" for p, a, b in self.segments]
        return f"chunk {self.chunk}, " + " then ".join(parts)


class ChunkedSampler(Sampler[int]):
    """Dataset indices of one chunk of an endless stream of passes (chunk size in samples).

    Args:
        dataset_size: N, the number of samples (>= 1).
        chunk_size: C, samples per chunk (all ranks together); above N: a warning and N.
        shuffle: a new keyed permutation per pass instead of dataset order.
        seed: key of the permutations (pass p uses ``mix_key(seed, p)``).
        rank, world_size: this process's share of each chunk (positions ``rank::world_size``
            of the chunk padded by wrapping to ``ceil(C / world_size) * world_size``).

    NOTE: ``iter()`` yields chunk ``self.chunk``; it does not advance (``set_chunk`` does,
    or ``ChunkedDataLoader``). Memory is O(1) in N: a few numbers plus one block of indices.

    Example:
        >>> s = ChunkedSampler(5, 3)
        >>> s.set_chunk(1); list(s)
        [3, 4, 0]
        >>> str(s.chunk_info(1))
        'chunk 1, pass 0, samples 3..5 of 5 then pass 1, samples 0..1 of 5'
    """

    def __init__(
        self,
        dataset_size: int,
        chunk_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        *,
        key: str = "chunk_size",
    ):
        if (
            isinstance(dataset_size, bool)
            or not isinstance(dataset_size, (int, np.integer))
            or dataset_size < 1
        ):
            raise DataError(
                f"dataset_size={dataset_size!r}: chunked sampling needs a non-empty dataset (at least one sample)"
            )
        _check_chunk_size(key, chunk_size)
        if chunk_size > dataset_size:
            msg = f"{key}={chunk_size} samples is larger than the dataset ({dataset_size}); using {dataset_size}"
            warnings.warn(msg, UserWarning, stacklevel=2)
            log.warning(msg)
            chunk_size = dataset_size
        self.dataset_size = int(dataset_size)
        self.chunk_size = int(chunk_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.chunk = 0
        self.skip = 0
        self.set_rank(rank, world_size)
        self._perms: dict[int, KeyedPermutation | np.ndarray] = {}

    def set_rank(self, rank: int, world_size: int) -> None:
        """Set this process's share (``0 <= rank < world_size``)."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError("rank", rank, f"an integer in [0, world_size={world_size})")
        self.rank, self.world_size = int(rank), int(world_size)

    @property
    def per_rank(self) -> int:
        """Samples each rank gets of a chunk: ``ceil(chunk_size / world_size)``."""
        return -(-self.chunk_size // self.world_size)

    def set_chunk(self, chunk: int, skip: int = 0) -> None:
        """Serve chunk ``chunk`` next, leaving out this rank's first ``skip`` samples of it."""
        if chunk < 0:
            raise ValueError(f"chunk={chunk}: chunks are numbered from 0")
        if not 0 <= skip <= self.per_rank:
            raise ValueError(f"skip={skip}: allowed is 0..{self.per_rank}")
        self.chunk, self.skip = int(chunk), int(skip)

    def chunk_info(self, chunk: int) -> ChunkInfo:
        """Pass index and positions ``a..b`` (half-open, within the pass) of chunk ``chunk``."""
        n, first = self.dataset_size, chunk * self.chunk_size
        last = first + self.chunk_size  # exclusive
        p0, a = divmod(first, n)
        p1, b = divmod(last - 1, n)
        if p0 == p1:
            return ChunkInfo(chunk, n, ((p0, a, b + 1),))
        return ChunkInfo(chunk, n, ((p0, a, n), (p1, 0, b + 1)))

    def _perm(self, pass_index: int) -> KeyedPermutation | np.ndarray:
        perm = self._perms.get(pass_index)
        if perm is None:
            if len(self._perms) > 4:  # a chunk touches at most two passes
                self._perms.clear()
            perm = KeyedPermutation(self.dataset_size, mix_key(self.seed, pass_index))
            if self.dataset_size <= _MATERIALIZE_MAX:
                # The same permutation, evaluated once for the whole pass: one vectorised
                # call over n positions, then a lookup per index instead of the Feistel
                # rounds (which cost more than a cheap __getitem__ when done per block).
                perm = perm[np.arange(self.dataset_size, dtype=np.int64)]
            self._perms[pass_index] = perm
        return perm

    def indices(self, chunk: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """This rank's dataset indices ``start:stop`` of chunk ``chunk`` (an int64 array)."""
        stop = self.per_rank if stop is None else min(stop, self.per_rank)
        if self.world_size == 1:
            return self._contiguous(chunk, start, stop)
        return self._strided(chunk, start, stop)

    def _contiguous(self, chunk: int, start: int, stop: int) -> np.ndarray:
        """One rank: stream positions are a run, so each pass's part is a slice (no divmod,
        no fancy indexing); the same indices as ``_strided`` with one rank, ~4x cheaper."""
        n = self.dataset_size
        lo, hi = chunk * self.chunk_size + start, chunk * self.chunk_size + stop
        parts = []
        while lo < hi:
            p, a = divmod(lo, n)
            b = min(n, a + hi - lo)
            if not self.shuffle:
                parts.append(np.arange(a, b, dtype=np.int64))
            else:
                perm = self._perm(p)
                if isinstance(perm, np.ndarray):
                    parts.append(perm[a:b].copy())  # a copy: callers may write to it
                else:
                    parts.append(perm[np.arange(a, b, dtype=np.int64)])
            lo += b - a
        if not parts:
            return np.empty(0, dtype=np.int64)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _strided(self, chunk: int, start: int, stop: int) -> np.ndarray:
        i = np.arange(start, stop, dtype=np.int64)
        # padded slot -> offset in the chunk; wrapping pads the tail like DistributedSampler
        offset = (self.rank + i * self.world_size) % self.chunk_size
        pos = chunk * self.chunk_size + offset
        passes, within = np.divmod(pos, self.dataset_size)
        if not self.shuffle:
            return within
        out = np.empty_like(within)
        for p in np.unique(passes):
            sel = passes == p
            out[sel] = self._perm(int(p))[within[sel]]
        return out

    def __iter__(self) -> Iterator[int]:
        # Capture the chunk now: a later set_chunk must not change an iteration under way.
        return self._iter(self.chunk, self.skip)

    def _iter(self, chunk: int, skip: int) -> Iterator[int]:
        for lo in range(skip, self.per_rank, _BLOCK):
            yield from self.indices(chunk, lo, lo + _BLOCK).tolist()

    def batches(self, batch_size: int, drop_last: bool = False) -> Iterator[list[int]]:
        """This rank's indices of the current chunk cut into lists of ``batch_size``.

        Cut with numpy a block at a time, so a batch costs no Python step at all: the
        iterator is ``itertools.chain`` over each block's list of batches (``BatchSampler``
        over ``__iter__`` would take a Python step per index).
        """
        return itertools.chain.from_iterable(
            self._batch_blocks(self.chunk, self.skip, batch_size, drop_last)
        )

    def _batch_blocks(
        self, chunk: int, skip: int, bs: int, drop_last: bool
    ) -> Iterator[list[list[int]]]:
        """The batches of chunk ``chunk`` from sample ``skip`` on, a block's list at a time."""
        step = max(1, _BLOCK // bs) * bs
        for lo in range(skip, self.per_rank, step):
            block = self.indices(chunk, lo, lo + step)
            full = len(block) // bs
            lists = block[: full * bs].reshape(full, bs).tolist()
            if full * bs < len(block) and not drop_last:
                lists.append(block[full * bs :].tolist())
            yield lists

    def __len__(self) -> int:
        return self.per_rank - self.skip

    def state_dict(self) -> dict[str, Any]:
        """The chunk to serve and what it means (sizes, seed) for a checked resume."""
        return {
            "chunk": self.chunk,
            "skip": self.skip,
            "dataset_size": self.dataset_size,
            "chunk_size": self.chunk_size,
            "shuffle": self.shuffle,
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``; refuses a state of another dataset, chunk size or order.

        NOTE: the world size may change between runs; chunks keep their samples, only
        their split over ranks changes (the skip offset is then reset to the chunk start).
        """
        for name in ("dataset_size", "chunk_size", "shuffle", "seed"):
            if name in state and state[name] != getattr(self, name):
                raise CheckpointError(
                    f"chunked sampler state has {name}={state[name]!r} but this run has "
                    f"{name}={getattr(self, name)!r}: resuming would change the sample order; "
                    f"use the same value or start a fresh run"
                )
        skip = int(state.get("skip", 0))
        self.set_chunk(int(state["chunk"]), skip if skip <= self.per_rank else 0)


def _yielded(it: Any) -> int:
    """Batches a DataLoader iterator has returned.

    NOTE: ``_num_yielded`` is private but kept since torch 1.x (its IterableDataset length
    check reads it); reading it lets the served position cost nothing per batch. The
    resume tests fail loudly if it ever goes.
    """
    return it._num_yielded


class _BatchStream(Sampler[list[int]]):
    """Batch sampler for ``DataLoader(batch_sampler=...)``: chunk ``start`` from sample
    ``skip`` on, then (``endless``) chunk after chunk, so that worker prefetching runs on
    into the next chunk instead of draining at every chunk boundary."""

    def __init__(self, sampler: ChunkedSampler, batch_size: int, drop_last: bool, endless: bool):
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last
        self.endless = endless
        self.start, self.skip = 0, 0

    def __iter__(self) -> Iterator[list[int]]:
        # Position captured now. A C-level chain: the DataLoader's next() takes no extra
        # Python frame here (bench_chunked's trivial dataset shows even 1 us per batch).
        return itertools.chain.from_iterable(self._blocks(self.start, self.skip))

    def _blocks(self, start: int, skip: int) -> Iterator[list[list[int]]]:
        bs, drop = self.batch_size, self.drop_last
        yield from self.sampler._batch_blocks(start, skip, bs, drop)
        chunk = start + 1
        while self.endless:
            yield from self.sampler._batch_blocks(chunk, 0, bs, drop)
            chunk += 1


class ChunkedDataLoader:
    """A DataLoader whose every ``iter()`` serves the next chunk of ``chunk_size`` batches.

    Args:
        dataset: a map-style dataset (``len`` and ``__getitem__``).
        batch_size: samples per batch (per rank).
        chunk_size: batches per chunk, per rank; None: a plain ``DataLoader`` is returned.
        shuffle: a new keyed permutation of the dataset per pass (else dataset order).
        seed: key of the permutations.
        rank, world_size: None: taken from ``torch.distributed`` when iteration starts.
        name: how errors name this loader's chunk size (a config key).
        label: how the per-chunk log line names this loader ("train", "val").
        **dataloader_kwargs: passed to the one ``DataLoader`` used for every chunk
            (``num_workers``, ``collate_fn``, ``pin_memory``, ``drop_last``,
            ``persistent_workers``, ...); ``sampler`` and ``batch_sampler`` are ours.

    Attributes:
        current_chunk: the chunk the next ``iter()`` serves (counts on across passes).
        total_chunks: chunks per pass, ``ceil(batches per pass / chunk_size)``.

    NOTE: without ``chunk_size`` the constructor returns a ``torch.utils.data.DataLoader``
    (with ``shuffle`` and a generator seeded by ``seed``), so there is no added cost.
    NOTE: the chunk is claimed when the first batch is requested, not at ``iter()``, so
    frameworks that call ``iter()`` only to check iterability do not skip chunks; an
    iteration abandoned part-way still counts as served. ``state_dict()`` taken in the
    middle of a chunk resumes at the next batch of that chunk.
    NOTE: one log line per chunk on rank 0 (logger ``knoblab.sampling.chunked``, INFO).

    Example:
        >>> dl = ChunkedDataLoader(list(range(6)), batch_size=2, chunk_size=1, shuffle=True, seed=3)
        >>> sorted(int(x) for _ in range(dl.total_chunks) for b in dl for x in b)
        [0, 1, 2, 3, 4, 5]
    """

    def __new__(
        cls,
        dataset: Any,
        batch_size: int,
        chunk_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        name: str = "chunk_size",
        label: str = "chunked loader",
        **dataloader_kwargs: Any,
    ) -> Any:
        if chunk_size is None:
            # The plain path: a DataLoader itself, so Lightning and users see no difference.
            # Its own seeded generator (order when shuffled, workers' base seed always): a
            # DataLoader without one draws from torch's global RNG at every iter(), so how
            # often a run iterates (e.g. persistent workers, a resumed run) moved the model's
            # dropout masks.
            if "generator" not in dataloader_kwargs and "sampler" not in dataloader_kwargs:
                dataloader_kwargs["generator"] = torch.Generator().manual_seed(int(seed))
            return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **dataloader_kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        chunk_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        name: str = "chunk_size",
        label: str = "chunked loader",
        **dataloader_kwargs: Any,
    ):
        for bad in ("sampler", "batch_sampler", "generator"):
            if bad in dataloader_kwargs:
                raise ConfigError(
                    bad,
                    dataloader_kwargs[bad],
                    "not set: ChunkedDataLoader chooses the order itself",
                )
        _check_chunk_size(name, chunk_size)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("batch_size", batch_size, "an integer >= 1")
        n = len(dataset) if isinstance(dataset, Sized) else 0
        if n < 1:
            raise DataError(
                f"{name}: the dataset is empty (len={n}); chunked loading needs at least one sample"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.requested_chunk_size = int(chunk_size)
        self.shuffle, self.seed, self.name, self.label = bool(shuffle), int(seed), name, label
        self._fixed_rank = (
            None if rank is None and world_size is None else (rank or 0, world_size or 1)
        )
        self.drop_last = bool(dataloader_kwargs.get("drop_last", False))
        self._kwargs = dataloader_kwargs
        self._sampler: ChunkedSampler | None = None
        self._loader: DataLoader | None = None
        self._live: Iterator[Any] | None = None  # the inner iteration that runs across chunks
        self._peeking: Iterator[Any] | None = None  # the inner iteration of a sanity-check peek
        self._live_origin: tuple[int, int] = (-1, 0)  # (chunk, batch) it started at
        self.current_chunk = 0
        # the chunk in progress: (chunk, first batch, inner iterator, its count at the start)
        self._active: tuple[int, int, Any, int] | None = None
        self._resume: tuple[int, int] | None = None
        self._warned = False

    # -- geometry -------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        return self._fixed_rank if self._fixed_rank is not None else _dist_rank_world()

    def _batches(self, samples: int) -> int:
        return samples // self.batch_size if self.drop_last else -(-samples // self.batch_size)

    @property
    def batches_per_pass(self) -> int:
        """Batches per rank in one pass over the dataset."""
        _, world = self._rank_world()
        return max(1, self._batches(-(-len(self.dataset) // world)))

    @property
    def chunk_size(self) -> int:
        """Batches per chunk (per rank), at most one pass."""
        if self.requested_chunk_size > self.batches_per_pass and not self._warned:
            self._warned = True
            msg = (
                f"{self.name}={self.requested_chunk_size} is larger than the partition "
                f"({self.batches_per_pass} batches); using {self.batches_per_pass}"
            )
            warnings.warn(msg, UserWarning, stacklevel=3)
            log.warning(msg)
        return min(self.requested_chunk_size, self.batches_per_pass)

    @property
    def total_chunks(self) -> int:
        """Chunks needed to cover one pass: ``ceil(batches per pass / chunk size)``."""
        return math.ceil(self.batches_per_pass / self.chunk_size)

    def sampler(self) -> ChunkedSampler:
        """The sampler of this rank (built on first use, when the process group is known)."""
        rank, world = self._rank_world()
        s = self._sampler
        if s is None or (s.rank, s.world_size) != (rank, world):
            # (Re)built when the process group appears after a first use: the chunk in
            # samples depends on the world size. The position lives here, not in the sampler.
            n = len(self.dataset)
            samples = min(self.chunk_size * self.batch_size * world, n)
            s = self._sampler = ChunkedSampler(
                n, samples, self.shuffle, self.seed, rank, world, key=self.name
            )
            if self.drop_last and s.per_rank < self.batch_size:
                raise DataError(
                    f"{self.name}: {n} samples over {world} rank(s) give no full batch of "
                    f"{self.batch_size} (drop_last=True); use a smaller batch_size or drop_last=False"
                )
            self._loader, self._live = None, None
        return s

    def __len__(self) -> int:
        """Batches per chunk on this rank."""
        return self._batches(self.sampler().per_rank)

    def chunk_info(self, chunk: int) -> ChunkInfo:
        """Pass index and sample positions of chunk ``chunk``."""
        return self.sampler().chunk_info(chunk)

    # -- iteration ------------------------------------------------------------------------
    def _inner_kwargs(self) -> dict[str, Any]:
        kwargs = {k: v for k, v in self._kwargs.items() if k != "drop_last"}
        # workers' base seed from our own generator, never torch's global RNG (see __new__)
        kwargs.setdefault("generator", torch.Generator().manual_seed(self.seed))
        return kwargs

    def _inner(self) -> DataLoader:
        if self._loader is None:
            stream = _BatchStream(self.sampler(), self.batch_size, self.drop_last, self._endless)
            self._loader = DataLoader(self.dataset, batch_sampler=stream, **self._inner_kwargs())
        return self._loader

    @property
    def _endless(self) -> bool:
        # One inner iteration runs on across chunks (no pipeline drain, no worker restart)
        # unless the user asked for workers that end with each iteration.
        return not self._kwargs.get("num_workers") or bool(self._kwargs.get("persistent_workers"))

    def __iter__(self) -> Iterator[Any]:
        # A chain over a generator: the chunk is claimed when the first batch is asked
        # for, not at iter(); then every batch comes through C (islice over the inner
        # DataLoader's iterator) with no Python frame of ours per batch. A generator
        # looping over the batches cost ~1 us per batch, 2-3 % of a trivial dataset's.
        return itertools.chain.from_iterable(self._claim())

    def iter_chunk(self, chunk: int) -> Iterator[Any]:
        """Batches of chunk ``chunk`` without moving ``current_chunk`` (e.g. a sanity check)."""
        return self._peek(chunk)

    def _peek(self, chunk: int) -> Iterator[Any]:
        # its own short-lived loader: the stream and its workers are untouched
        stream = _BatchStream(self.sampler(), self.batch_size, self.drop_last, endless=False)
        stream.start = chunk
        kwargs = {**self._inner_kwargs(), "persistent_workers": False}
        self._peeking = iter(DataLoader(self.dataset, batch_sampler=stream, **kwargs))
        yield from self._peeking

    def _claim(self) -> Iterator[Iterator[Any]]:
        sampler = self.sampler()
        skip = 0
        if self._resume is not None:
            chunk, skip = self._resume
            self._resume = None
        else:
            chunk = self.current_chunk
        self.current_chunk = chunk + 1
        if sampler.rank == 0:
            log.info("%s %s", self.label, sampler.chunk_info(chunk))
        n = len(self)
        it = self._live
        if it is None or self._live_at(n) != (chunk, skip):
            inner = self._inner()
            inner.batch_sampler.start, inner.batch_sampler.skip = chunk, skip * self.batch_size
            it = iter(inner)
            self._live = it if self._endless else None
            self._live_origin = (chunk, skip)
        active = self._active = (chunk, skip, it, _yielded(it))
        yield itertools.islice(it, n - skip)
        if self._active is active:
            self._active = None

    def close(self) -> None:
        """Stop the worker processes of the inner iteration this loader holds, if any.

        The position is kept (``state_dict`` still says where the stream stands); the
        next ``iter()`` starts a fresh inner iteration. The Lightning data modules call it
        at teardown. Why: Lightning stops a chunk at ``len()`` without asking for the
        StopIteration that would end the inner iteration, so its workers lived on until
        the garbage collector freed it, and freed from a reference cycle torch waits its
        5 s join timeout per worker. ``_shutdown_workers`` is torch's own (private but
        stable; Lightning stops its loaders' workers the same way; a second call on the
        same iterator, e.g. the live one that is also the active one, does nothing).
        """
        active = self._active[2] if self._active is not None else None
        for it in (self._live, active, self._peeking):
            shutdown = getattr(it, "_shutdown_workers", None)  # None: no workers (or no iterator)
            if shutdown is not None:
                shutdown()
        self._live = self._peeking = None
        self._loader = None  # persistent workers: the DataLoader holds the stopped iterator

    def _live_at(self, n: int) -> tuple[int, int]:
        """(chunk, batch) the running inner iteration yields next (n batches per chunk)."""
        chunk, skip = self._live_origin
        done = skip + _yielded(self._live)
        return chunk + done // n, done % n

    # -- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands: the next chunk, and the chunk in progress if any."""
        active = None
        if self._active is not None:
            chunk, skip, it, start = self._active
            served = skip + _yielded(it) - start
            if served < len(self):
                active = [chunk, served]
        if self._resume is not None:  # loaded but not started yet: keep it as it was
            active = list(self._resume)
        return {
            "current_chunk": self.current_chunk,
            "active_chunk": None if active is None else active[0],
            "active_batches": 0 if active is None else active[1],
            "dataset_size": len(self.dataset),
            "chunk_size": self.requested_chunk_size,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next ``iter()`` continues a chunk left part-way, else the next chunk."""
        for name, mine in (
            ("dataset_size", len(self.dataset)),
            ("chunk_size", self.requested_chunk_size),
            ("batch_size", self.batch_size),
            ("shuffle", self.shuffle),
            ("seed", self.seed),
        ):
            if name in state and state[name] != mine:
                raise CheckpointError(
                    f"{self.name}: checkpointed chunked loader has {name}={state[name]!r} but this run "
                    f"has {name}={mine!r}: resuming would change the sample order; use the same value"
                )
        self.current_chunk = int(state["current_chunk"])
        self._active, self._live = None, None
        self._resume = None
        if state.get("active_chunk") is not None and int(state["active_batches"]) < len(self):
            self._resume = (int(state["active_chunk"]), int(state["active_batches"]))
