"""KeyedPermutation: a bijection of range(n), pure in (n, key), O(1) memory."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knoblab.sampling.permutation import KeyedPermutation, mix_key


@given(n=st.integers(1, 3000), key=st.integers(0, 2**64 - 1))
@settings(max_examples=60, deadline=None)
def test_is_a_bijection(n: int, key: int) -> None:
    out = KeyedPermutation(n, key)[np.arange(n)]
    assert np.array_equal(np.sort(out), np.arange(n))


def test_pure_function_of_n_and_key() -> None:
    a = KeyedPermutation(10_000, 123)[np.arange(10_000)]
    b = KeyedPermutation(10_000, 123)[np.arange(10_000)]
    c = KeyedPermutation(10_000, 124)[np.arange(10_000)]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_scalar_and_array_agree_and_seek_anywhere() -> None:
    p = KeyedPermutation(10**9, 7)
    pos = np.array([0, 1, 999_999_999, 123_456_789])
    arr = p[pos]
    assert [p[int(i)] for i in pos] == arr.tolist()
    assert ((arr >= 0) & (arr < 10**9)).all()


def test_shuffles() -> None:
    out = KeyedPermutation(1000, 1)[np.arange(1000)]
    assert not np.array_equal(out, np.arange(1000))
    # not a near-identity: few fixed points, as for a uniform random permutation
    assert (out == np.arange(1000)).sum() < 10


def test_out_of_range_and_empty() -> None:
    with pytest.raises(IndexError):
        KeyedPermutation(5, 0)[5]
    with pytest.raises(ValueError):
        KeyedPermutation(0, 0)


def test_mix_key_depends_on_every_part() -> None:
    assert mix_key(1, 2) != mix_key(2, 1)
    assert mix_key(1, 2) == mix_key(1, 2)
    assert mix_key(0) != mix_key(0, 0)
