"""Seed 001's chunking rules on the training side: the ``train.*`` keys and the precedence
of chunk sizes over Lightning's ``limit_train_batches`` / ``limit_val_batches``.

Pure functions of numbers (no Lightning import): ``knoblab.training.chunked`` applies
them to a Trainer. The size rules themselves are ``knoblab.sampling.resolve_chunk_sizes``.
"""

from __future__ import annotations

import dataclasses
import logging

from knoblab.sampling.chunked import check_chunk_size, resolve_chunk_sizes

log = logging.getLogger(__name__)

__all__ = ["ChunkConfig", "ChunkPlan", "resolve_chunking"]


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
                check_chunk_size(name, value)

    @property
    def enabled(self) -> bool:
        """Chunking is on when either size is given (seed 001, guarantee 3)."""
        return self.train_chunk_size is not None or self.val_chunk_size is not None


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """What ``resolve_chunking`` decided; pass the ``limit_*`` fields to the Trainer."""

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


def resolve_chunking(
    train_chunk_size: int | None,
    val_chunk_size: int | None,
    train_batches: int,
    val_batches: int | None,
    limit_train_batches: int | float | None = None,
    limit_val_batches: int | float | None = None,
) -> ChunkPlan:
    """Seed 001's rules: the chunk sizes (``resolve_chunk_sizes``) and their precedence
    over Lightning's ``limit_train_batches`` / ``limit_val_batches``.

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

    Example:
        >>> resolve_chunking(2000, None, 10_000, 300, limit_train_batches=50)
        ChunkPlan(chunked=True, train_chunk_size=2000, val_chunk_size=300, limit_train_batches=None, limit_val_batches=None)
    """
    sizes = resolve_chunk_sizes(train_chunk_size, val_chunk_size, train_batches, val_batches)
    if not sizes.chunked:
        return ChunkPlan(False, None, None, limit_train_batches, limit_val_batches)
    for key, limit, chunk in (
        (
            "limit_train_batches",
            limit_train_batches,
            f"train.train_chunk_size={sizes.train_chunk_size}",
        ),
        ("limit_val_batches", limit_val_batches, f"train.val_chunk_size={sizes.val_chunk_size}"),
    ):
        if limit is not None:
            log.info("%s=%s is ignored: chunked loading is on (%s)", key, limit, chunk)
    return ChunkPlan(True, sizes.train_chunk_size, sizes.val_chunk_size, None, None)
