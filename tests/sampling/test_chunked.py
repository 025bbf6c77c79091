"""ChunkedSampler / ChunkedDataLoader / resolve_chunk_sizes: coverage, shards, resume, config rules."""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from knoblab.errors import CheckpointError, ConfigError, DataError
from knoblab.sampling.chunked import (
    ChunkedDataLoader,
    ChunkedSampler,
    resolve_chunk_sizes,
)


def chunk_of(sampler: ChunkedSampler, k: int) -> list[int]:
    sampler.set_chunk(k)
    return list(sampler)


def ids(batches) -> list[int]:
    return [int(x) for b in batches for x in b]


# -- configuration rules (seed 001) ---------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -3, 2.5, "100", True])
@pytest.mark.parametrize("key", ["train_chunk_size", "val_chunk_size"])
def test_bad_chunk_size_names_the_key(bad, key):
    kwargs = {"train_chunk_size": None, "val_chunk_size": None, key: bad}
    with pytest.raises(ConfigError, match=rf"train\.{key}="):
        resolve_chunk_sizes(**kwargs, train_batches=10, val_batches=5)


def test_neither_given_is_not_chunked():
    r = resolve_chunk_sizes(None, None, train_batches=10_000, val_batches=300)
    assert not r.chunked and (r.train_chunk_size, r.val_chunk_size) == (None, None)


def test_train_only_infers_val_as_whole_partition():
    r = resolve_chunk_sizes(2000, None, train_batches=10_000, val_batches=300)
    assert (r.chunked, r.train_chunk_size, r.val_chunk_size) == (True, 2000, 300)


def test_val_only_infers_train_as_whole_partition():
    r = resolve_chunk_sizes(None, 200, train_batches=10_000, val_batches=300)
    assert (r.chunked, r.train_chunk_size, r.val_chunk_size) == (True, 10_000, 200)


def test_both_given_are_used():
    r = resolve_chunk_sizes(2000, 200, train_batches=10_000, val_batches=300)
    assert (r.chunked, r.train_chunk_size, r.val_chunk_size) == (True, 2000, 200)


def test_chunk_larger_than_partition_warns_and_uses_partition():
    with pytest.warns(UserWarning, match=r"train\.train_chunk_size=50 is larger .* using 12"):
        r = resolve_chunk_sizes(50, None, train_batches=12, val_batches=3)
    assert r.train_chunk_size == 12
    with pytest.warns(UserWarning, match=r"train\.val_chunk_size=9"):
        assert resolve_chunk_sizes(None, 9, 12, 3).val_chunk_size == 3


def test_empty_partitions_are_clear_errors():
    with pytest.raises(DataError, match="training partition is empty"):
        resolve_chunk_sizes(5, None, train_batches=0, val_batches=3)
    with pytest.raises(
        DataError, match=r"train\.val_chunk_size=2 .* validation partition is empty"
    ):
        resolve_chunk_sizes(5, 2, train_batches=10, val_batches=0)
    # no validation set and no val chunk size: chunked training without validation
    r = resolve_chunk_sizes(5, None, train_batches=10, val_batches=None)
    assert (r.train_chunk_size, r.val_chunk_size) == (5, None)
    # not chunked: partitions are Lightning's business, no error
    assert not resolve_chunk_sizes(None, None, 0, 0).chunked


# -- ChunkedSampler -------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n,c", [(10, 3), (10, 10), (7, 2), (1, 1), (12, 4)])
def test_every_index_once_per_pass(n, c, shuffle):
    s = ChunkedSampler(n, c, shuffle=shuffle, seed=5)
    passes = 4
    chunks = -(-passes * n // c)
    stream = [i for k in range(chunks) for i in chunk_of(s, k)]
    assert all(len(chunk_of(s, k)) == min(c, n) for k in range(chunks))
    for p in range(passes):
        assert sorted(stream[p * n : (p + 1) * n]) == list(range(n))
    if not shuffle:
        assert stream[: 2 * n] == list(range(n)) * 2


def test_shuffled_passes_differ_and_depend_on_seed():
    s = ChunkedSampler(50, 50, shuffle=True, seed=1)
    p0, p1 = chunk_of(s, 0), chunk_of(s, 1)
    assert p0 != p1 and p0 != list(range(50))
    assert chunk_of(ChunkedSampler(50, 50, shuffle=True, seed=1), 0) == p0
    assert chunk_of(ChunkedSampler(50, 50, shuffle=True, seed=2), 0) != p0


def test_chunk_spans_pass_boundary_and_chunk_info():
    s = ChunkedSampler(10, 4)
    assert chunk_of(s, 2) == [8, 9, 0, 1]
    info = s.chunk_info(2)
    assert info.segments == ((0, 8, 10), (1, 0, 2))
    assert (info.pass_index, info.start, info.stop) == (0, 8, 2)
    assert str(info) == "chunk 2, pass 0, samples 8..10 of 10 then pass 1, samples 0..2 of 10"
    assert str(s.chunk_info(1)) == "chunk 1, pass 0, samples 4..8 of 10"
    assert s.chunk_info(5).segments == ((2, 0, 4),)


def test_chunk_larger_than_dataset_warns():
    with pytest.warns(UserWarning, match="larger than the dataset"):
        s = ChunkedSampler(5, 9)
    assert len(s) == 5


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_sampler_bad_chunk_size(bad):
    with pytest.raises(ConfigError, match="chunk_size"):
        ChunkedSampler(10, bad)


def test_sampler_empty_dataset():
    with pytest.raises(DataError, match="non-empty"):
        ChunkedSampler(0, 3)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("c", [8, 7, 1])
def test_two_rank_shards_disjoint_equal_union(c, shuffle):
    full = ChunkedSampler(20, c, shuffle=shuffle, seed=3)
    r0 = ChunkedSampler(20, c, shuffle=shuffle, seed=3, rank=0, world_size=2)
    r1 = ChunkedSampler(20, c, shuffle=shuffle, seed=3, rank=1, world_size=2)
    for k in range(6):
        chunk, a, b = chunk_of(full, k), chunk_of(r0, k), chunk_of(r1, k)
        assert len(a) == len(b) == -(-c // 2)
        assert set(a) | set(b) == set(chunk)
        if c % 2 == 0:
            assert not set(a) & set(b)
        else:  # padded by wrapping: the one extra sample repeats the chunk's first
            assert (a + b).count(chunk[0]) == 2 and len(a + b) == c + 1


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    c=st.integers(1, 70),
    world=st.integers(1, 4),
    shuffle=st.booleans(),
    k=st.integers(0, 30),
)
def test_shards_cover_chunk_property(n, c, world, shuffle, k):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = chunk_of(ChunkedSampler(n, c, shuffle, 9), k)
        parts = [chunk_of(ChunkedSampler(n, c, shuffle, 9, r, world), k) for r in range(world)]
    assert len({len(p) for p in parts}) == 1
    assert sorted(set().union(*parts)) == sorted(set(full))
    assert sum(len(p) for p in parts) - len(full) < world  # padding only


def test_sampler_state_roundtrip_and_mismatch():
    s = ChunkedSampler(30, 7, shuffle=True, seed=4)
    s.set_chunk(5, skip=2)
    t = ChunkedSampler(30, 7, shuffle=True, seed=4)
    t.load_state_dict(s.state_dict())
    assert list(t) == list(s) == chunk_of(ChunkedSampler(30, 7, True, 4), 5)[2:]
    with pytest.raises(CheckpointError, match="seed=4 .* seed=5"):
        ChunkedSampler(30, 7, shuffle=True, seed=5).load_state_dict(s.state_dict())


def test_billion_index_sampler_is_constant_memory():
    tracemalloc.start()
    s = ChunkedSampler(10**9, 10**6, shuffle=True, seed=1)
    s.set_chunk(999)  # last chunk of the first pass
    head = [next(iter(s)) for _ in range(1)]
    first = s.indices(999, 0, 1000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000  # a block of indices, nothing of size N
    assert head[0] == int(first[0]) and len(set(first.tolist())) == 1000
    assert 0 <= first.min() and first.max() < 10**9


# -- ChunkedDataLoader ----------------------------------------------------------------------


def test_without_chunk_size_it_serves_whole_passes_of_a_plain_dataloader():
    dl = ChunkedDataLoader(list(range(10)), batch_size=3)
    assert isinstance(dl, ChunkedDataLoader) and type(dl.dataloader) is DataLoader
    assert ids(dl) == list(range(10)) and ids(dl) == list(range(10)) and len(dl) == 4
    with pytest.raises(TypeError, match="no single DataLoader"):
        _ = ChunkedDataLoader(list(range(10)), batch_size=3, chunk_size=1).dataloader
    a = ids(ChunkedDataLoader(list(range(10)), 3, shuffle=True, seed=1))
    b = ids(ChunkedDataLoader(list(range(10)), 3, shuffle=True, seed=1))
    assert a == b and sorted(a) == list(range(10))


def test_each_iter_serves_the_next_chunk():
    dl = ChunkedDataLoader(torch.arange(10), batch_size=2, chunk_size=2)
    assert (len(dl), dl.total_chunks, dl.current_chunk) == (2, 3, 0)
    got = [ids(dl) for _ in range(4)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5]]
    assert dl.current_chunk == 4


@pytest.mark.parametrize("persistent", [False, True])
def test_close_stops_workers_and_keeps_the_position(persistent):
    import multiprocessing

    kw = dict(batch_size=2, chunk_size=3, shuffle=True, seed=3)
    ref = ChunkedDataLoader(torch.arange(20), **kw)
    dl = ChunkedDataLoader(torch.arange(20), num_workers=2, persistent_workers=persistent, **kw)
    peek = dl.iter_chunk(0)
    assert (
        next(peek).tolist() == next(iter(ref.iter_chunk(0))).tolist()
    )  # a sanity check, cut short
    it = iter(dl)
    first = next(it)  # a chunk left part-way, as Lightning leaves its last one
    assert multiprocessing.active_children() != []
    state = dl.state_dict()
    dl.close()
    assert multiprocessing.active_children() == []
    assert dl.state_dict() == state
    ref_chunks = [[b.tolist() for b in ref] for _ in range(3)]
    assert first.tolist() == ref_chunks[0][0]
    assert [[b.tolist() for b in dl] for _ in range(2)] == ref_chunks[1:]  # the stream goes on
    dl.close()
    dl.close()  # idempotent


def test_iter_alone_claims_nothing():
    dl = ChunkedDataLoader(list(range(10)), batch_size=2, chunk_size=2)
    iter(dl)  # Lightning calls iter() to check iterability
    assert dl.current_chunk == 0
    assert ids(dl.iter_chunk(3)) == [2, 3, 4, 5]  # peek: does not advance
    assert ids(dl) == [0, 1, 2, 3] and dl.current_chunk == 1


def test_abandoned_iteration_counts_as_served():
    dl = ChunkedDataLoader(list(range(10)), batch_size=2, chunk_size=2)
    next(iter(dl))
    assert ids(dl) == [4, 5, 6, 7]


def test_loader_chunk_batches_and_drop_last():
    dl = ChunkedDataLoader(list(range(11)), batch_size=4, chunk_size=5)  # 3 batches per pass
    with pytest.warns(UserWarning, match="larger than the partition"):
        assert len(dl) == 3
    assert [len(b) for b in dl] == [4, 4, 3]
    dl = ChunkedDataLoader(list(range(11)), batch_size=4, chunk_size=1, drop_last=True)
    assert (len(dl), dl.total_chunks) == (1, 2)


@pytest.mark.parametrize("shuffle", [False, True])
def test_resume_five_straight_equals_two_then_three(shuffle):
    def make():
        return ChunkedDataLoader(
            list(range(23)), batch_size=3, chunk_size=2, shuffle=shuffle, seed=8
        )

    straight = make()
    expected = [ids(straight) for _ in range(5)]
    first = make()
    got = [ids(first) for _ in range(2)]
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    got += [ids(resumed) for _ in range(3)]
    assert got == expected


def test_resume_in_the_middle_of_a_chunk():
    def make():
        return ChunkedDataLoader(list(range(40)), batch_size=2, chunk_size=3, shuffle=True, seed=2)

    ref = make()
    expected = [ids(ref) for _ in range(3)]
    run = make()
    ids(run)
    it = iter(run)
    part = [int(x) for x in next(it)]  # one batch of chunk 1, then "crash"
    state = run.state_dict()
    assert (state["active_chunk"], state["active_batches"], state["current_chunk"]) == (1, 1, 2)
    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.state_dict()["active_batches"] == 1  # pending resume survives a re-save
    rest = ids(resumed)
    assert part + rest == expected[1]
    assert ids(resumed) == expected[2]


def test_complete_chunk_state_resumes_at_next_chunk():
    dl = ChunkedDataLoader(list(range(10)), batch_size=2, chunk_size=2)
    it = iter(dl)
    next(it), next(it)  # every batch taken, generator not exhausted (Lightning knows len)
    state = dl.state_dict()
    assert state["active_chunk"] is None and state["current_chunk"] == 1
    new = ChunkedDataLoader(list(range(10)), batch_size=2, chunk_size=2)
    new.load_state_dict(state)
    assert ids(new) == [4, 5, 6, 7]


def test_loader_state_mismatch_is_refused():
    a = ChunkedDataLoader(list(range(10)), batch_size=2, chunk_size=2)
    b = ChunkedDataLoader(list(range(12)), batch_size=2, chunk_size=2)
    with pytest.raises(CheckpointError, match="dataset_size=10"):
        b.load_state_dict(a.state_dict())


def test_two_rank_loaders_split_each_chunk():
    # 32 = 4 chunks of 8: no chunk spans a pass boundary, so indices are distinct per chunk
    def make(rank):
        return ChunkedDataLoader(list(range(32)), 2, 2, True, 1, rank=rank, world_size=2)

    r0, r1 = make(0), make(1)
    full = ChunkedDataLoader(list(range(32)), 4, 2, True, 1)  # same chunk: 2 batches x 2 x 2 ranks
    for _ in range(5):
        a, b, c = ids(r0), ids(r1), ids(full)
        assert len(a) == len(b) == 4 and not set(a) & set(b) and set(a) | set(b) == set(c)


def test_loader_bad_input():
    with pytest.raises(ConfigError, match=r"train\.train_chunk_size=0"):
        ChunkedDataLoader(list(range(5)), 2, 0, name="train.train_chunk_size")
    with pytest.raises(ConfigError, match="sampler"):
        ChunkedDataLoader(list(range(5)), 2, 1, sampler=[0, 1])
    with pytest.raises(DataError, match="empty"):
        ChunkedDataLoader([], 2, 1)
    with pytest.raises(DataError, match="no full batch of 8"):
        len(ChunkedDataLoader(list(range(5)), 8, 1, drop_last=True))


def test_logs_one_line_per_chunk(caplog):
    dl = ChunkedDataLoader(list(range(10)), batch_size=2, chunk_size=3, label="train")
    with caplog.at_level(logging.INFO, logger="knoblab.sampling.chunked"):
        ids(dl), ids(dl)
    assert caplog.messages == [
        "train chunk 0, pass 0, samples 0..6 of 10",
        "train chunk 1, pass 0, samples 6..10 of 10 then pass 1, samples 0..2 of 10",
    ]


@pytest.mark.parametrize("persistent", [True, False])
def test_workers_keep_the_order(persistent):
    ds = torch.arange(50)
    ref = ChunkedDataLoader(ds, 4, 3, shuffle=True, seed=6)
    dl = ChunkedDataLoader(
        ds, 4, 3, shuffle=True, seed=6, num_workers=2, persistent_workers=persistent
    )
    it = iter(dl)
    assert ids(it) == ids(ref)
    for _ in range(3):
        assert ids(dl) == ids(ref)
    next(iter(dl))  # abandon chunk 4 after one batch: chunk 5 comes next, from a new iteration
    next(iter(ref))
    assert ids(dl) == ids(ref)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("bs", [1, 3, 5000])
def test_batches_cut_the_chunk_like_batch_sampler(bs, drop_last):
    s = ChunkedSampler(20_000, 9_999, shuffle=True, seed=2, rank=1, world_size=2)
    s.set_chunk(3, skip=7)
    ref = list(torch.utils.data.BatchSampler(list(s), bs, drop_last))
    assert list(s.batches(bs, drop_last)) == ref


def test_cached_pass_permutation_is_the_keyed_permutation(monkeypatch) -> None:
    """Small datasets cache a pass's permutation as an array: the same indices as the
    Feistel evaluated per block (what datasets above the cache limit use)."""
    import knoblab.sampling.chunked as chunked_mod

    def draw(limit: int) -> list[int]:
        monkeypatch.setattr(chunked_mod, "_MATERIALIZE_MAX", limit)
        s = ChunkedSampler(1000, chunk_size=300, shuffle=True, seed=5)
        out = []
        for c in range(5):  # 1500 samples: the fourth chunk spans passes 0 and 1
            s.set_chunk(c)
            out += list(s)
        return out

    cached, direct = draw(1 << 20), draw(0)
    assert cached == direct
    assert sorted(cached[:1000]) == list(range(1000)) and cached[:1000] != list(range(1000))


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 50),
    c=st.integers(1, 50),
    shuffle=st.booleans(),
    cached=st.booleans(),
    k=st.integers(0, 40),
    start=st.integers(0, 60),
    length=st.integers(0, 60),
)
def test_one_rank_fast_path_matches_the_general_path(n, c, shuffle, cached, k, start, length):
    """One rank takes chunk slices pass by pass; the same indices as the strided general
    path (which DDP uses), for cached and Feistel permutations, across pass boundaries."""
    import warnings

    import knoblab.sampling.chunked as chunked_mod

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = ChunkedSampler(n, c, shuffle, seed=4)
    old = chunked_mod._MATERIALIZE_MAX
    chunked_mod._MATERIALIZE_MAX = old if cached else 0
    try:
        stop = min(start + length, s.per_rank)
        start = min(start, stop)
        fast = s.indices(k, start, stop)
        assert fast.dtype == np.int64
        assert fast.tolist() == s._strided(k, start, stop).tolist()
    finally:
        chunked_mod._MATERIALIZE_MAX = old


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("shuffle", [False, True])
def test_iterating_leaves_the_global_rng_alone(chunk_size, shuffle):
    """A DataLoader without a generator draws from torch's global RNG at every iter()."""
    dl = ChunkedDataLoader(list(range(10)), batch_size=2, chunk_size=chunk_size, shuffle=shuffle)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    for _ in range(3):
        list(dl)
    if chunk_size:
        list(dl.iter_chunk(0))  # the sanity-check peek
    assert torch.equal(torch.rand(3), expected)
