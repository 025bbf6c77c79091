"""WeightedMultiDatasetSampler: proportions, determinism, DDP shards, bad weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from knoblab.errors import ConfigError
from knoblab.sampling import WeightedMultiDatasetSampler
from knoblab.sampling.weighted import weights_from_scores


def test_dataset_proportions_chi2():
    sizes, weights = [50, 2000, 7], [1.0, 2.0, 5.0]
    s = WeightedMultiDatasetSampler(sizes, weights, num_samples=40_000, seed=3)
    counts = np.bincount(s.dataset_of(np.fromiter(s, dtype=np.int64)), minlength=3)
    expected = np.asarray(weights) / sum(weights) * counts.sum()
    # p > 1e-4: a correct sampler fails this one time in 10^4
    assert stats.chisquare(counts, expected).pvalue > 1e-4
    # and a wrong proportion (by size) is rejected
    by_size = np.asarray(sizes) / sum(sizes) * counts.sum()
    assert stats.chisquare(counts, by_size).pvalue < 1e-6


def test_sample_weights_inside_a_dataset_chi2():
    scores = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    w = weights_from_scores(scores, power=1.0)
    s = WeightedMultiDatasetSampler(
        [5, 3], [1.0, 1.0], sample_weights=[w, None], num_samples=30_000, seed=11
    )
    idx = np.fromiter(s, dtype=np.int64)
    first = idx[idx < 5]
    counts = np.bincount(first, minlength=5)
    assert counts[0] == 0  # weight 0 is never drawn
    expected = w[1:] / w.sum() * counts.sum()
    assert stats.chisquare(counts[1:], expected).pvalue > 1e-4
    second = np.bincount(idx[idx >= 5] - 5, minlength=3)
    assert stats.chisquare(second).pvalue > 1e-4  # uniform inside the unweighted dataset
    # binomial bound on the dataset split itself (p = 1/2)
    assert stats.binomtest(int(first.size), int(idx.size), 0.5).pvalue > 1e-4


def test_pure_function_of_seed_and_epoch():
    a = WeightedMultiDatasetSampler([100, 30], [1, 1], num_samples=500, seed=5)
    b = WeightedMultiDatasetSampler([100, 30], [1, 1], num_samples=500, seed=5)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    e3 = list(a)
    a.set_epoch(4)
    assert list(a) != e3
    assert list(WeightedMultiDatasetSampler([100, 30], [1, 1], num_samples=500, seed=6)) != list(
        WeightedMultiDatasetSampler([100, 30], [1, 1], num_samples=500, seed=5)
    )
    # the draw at any position does not depend on the block it was generated in
    assert a.draw(3, np.arange(100, 200)).tolist() == e3[100:200]


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_disjoint_equal_and_cover_the_global_sequence(world_size):
    glob = WeightedMultiDatasetSampler([40, 40], [1, 3], num_samples=101, seed=2)
    glob.set_epoch(1)
    shards = []
    for r in range(world_size):
        s = WeightedMultiDatasetSampler(
            [40, 40], [1, 3], num_samples=101, seed=2, rank=r, world_size=world_size
        )
        s.set_epoch(1)
        shards.append(list(s))
    total = -(-101 // world_size) * world_size  # padded to a multiple of world_size
    assert total % world_size == 0 and total >= 101
    assert {len(x) for x in shards} == {total // world_size}
    full = glob.draw(1, np.arange(total)).tolist()
    for r, shard in enumerate(shards):
        assert (
            shard == full[r::world_size]
        )  # rank r owns positions r, r+W, ...: disjoint, union = all


def test_no_2_pow_24_limit():
    # torch.multinomial refuses > 2^24 categories; drawing the dataset first has no such limit.
    s = WeightedMultiDatasetSampler([3 * 2**24, 10**9], [1.0, 1.0], num_samples=20_000, seed=0)
    idx = np.fromiter(s, dtype=np.int64)
    assert idx.max() < 3 * 2**24 + 10**9
    assert (idx > 3 * 2**24 + 5 * 10**8).any() and (idx < 3 * 2**24).any()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_dataset_weight_must_be_positive(bad):
    with pytest.raises(ConfigError, match=r"train\.datasets\.hard\.weight"):
        WeightedMultiDatasetSampler([3, 3], [1.0, bad], names=["easy", "hard"])


def test_bad_sample_weights():
    with pytest.raises(ConfigError, match="at least one weight > 0"):
        WeightedMultiDatasetSampler([3], sample_weights=[np.zeros(3)])
    with pytest.raises(ConfigError, match="shape"):
        WeightedMultiDatasetSampler([3], sample_weights=[np.ones(4)])
    with pytest.raises(ConfigError, match="finite"):
        WeightedMultiDatasetSampler([3], sample_weights=[np.array([1.0, -1.0, 1.0])])
    with pytest.raises(ConfigError):
        weights_from_scores([1.0, -2.0])


def test_curriculum_weights_by_name_and_state_roundtrip():
    s = WeightedMultiDatasetSampler(
        [10, 10], [1.0, 1.0], num_samples=64, seed=9, names=["easy", "hard"]
    )
    s.set_dataset_weights({"hard": 4.0})
    assert s.dataset_weights == [1.0, 4.0]
    with pytest.raises(ConfigError, match="medium"):
        s.set_dataset_weights({"medium": 1.0})
    s.set_epoch(7)
    t = WeightedMultiDatasetSampler(
        [10, 10], [1.0, 1.0], num_samples=8, seed=0, names=["easy", "hard"]
    )
    t.load_state_dict(s.state_dict())
    assert list(t) == list(s)
