"""Seed 001's chunking rules on the training side: the ``train.*`` schema and the
precedence of chunk sizes over Lightning's ``limit_*``."""

from __future__ import annotations

import logging

import pytest

from knoblab.config import to_dataclass
from knoblab.errors import ConfigError, UnknownKeyError
from knoblab.training.chunk_rules import ChunkConfig, resolve_chunking


@pytest.mark.parametrize("bad", [0, -3, 2.5, "100", True])
@pytest.mark.parametrize("key", ["train_chunk_size", "val_chunk_size"])
def test_bad_chunk_size_names_the_key(bad, key):
    kwargs = {"train_chunk_size": None, "val_chunk_size": None, key: bad}
    with pytest.raises(ConfigError, match=rf"train\.{key}="):
        resolve_chunking(**kwargs, train_batches=10, val_batches=5)
    with pytest.raises(ConfigError) as e:
        to_dataclass({key: bad}, ChunkConfig, "train")
    assert e.value.key == f"train.{key}"
    assert "\n" not in str(e.value)


def test_chunk_config_schema():
    cfg = to_dataclass({"train_chunk_size": 2000}, ChunkConfig, "train")
    assert cfg == ChunkConfig(2000, None) and cfg.enabled
    assert not to_dataclass({}, ChunkConfig, "train").enabled
    with pytest.raises(UnknownKeyError, match="did you mean train.train_chunk_size"):
        to_dataclass({"train_chunk_sise": 3}, ChunkConfig, "train")


def test_neither_given_keeps_limits_exactly():
    r = resolve_chunking(
        None,
        None,
        train_batches=10_000,
        val_batches=300,
        limit_train_batches=2000,
        limit_val_batches=0.25,
    )
    assert not r.chunked
    assert (r.train_chunk_size, r.val_chunk_size) == (None, None)
    assert (r.limit_train_batches, r.limit_val_batches) == (2000, 0.25)


def test_limits_alone_never_enable_chunking():
    # The seed's "Implementation Guards" snippet would chunk here; its guarantee says no.
    r = resolve_chunking(None, None, 10_000, 300, limit_train_batches=2000)
    assert not r.chunked and r.limit_train_batches == 2000


def test_train_only_infers_val_as_whole_partition():
    r = resolve_chunking(2000, None, train_batches=10_000, val_batches=300)
    assert (r.chunked, r.train_chunk_size, r.val_chunk_size) == (True, 2000, 300)


def test_val_only_infers_train_as_whole_partition():
    r = resolve_chunking(None, 200, train_batches=10_000, val_batches=300)
    assert (r.chunked, r.train_chunk_size, r.val_chunk_size) == (True, 10_000, 200)


def test_both_given_are_used():
    r = resolve_chunking(2000, 200, train_batches=10_000, val_batches=300)
    assert (r.chunked, r.train_chunk_size, r.val_chunk_size) == (True, 2000, 200)


@pytest.mark.parametrize("train,val", [(2000, None), (None, 200), (2000, 200)])
def test_chunk_sizes_take_precedence_over_limits(train, val, caplog):
    with caplog.at_level(logging.INFO, logger="knoblab.training.chunk_rules"):
        r = resolve_chunking(train, val, 10_000, 300, limit_train_batches=50, limit_val_batches=7)
    assert (r.limit_train_batches, r.limit_val_batches) == (None, None)
    assert r.train_chunk_size == (train or 10_000) and r.val_chunk_size == (val or 300)
    msgs = [m for m in caplog.messages if "ignored" in m]
    assert len(msgs) == 2
    assert "limit_train_batches=50" in msgs[0] and "limit_val_batches=7" in msgs[1]
