"""A keyed bijective permutation of ``range(n)`` in O(1) memory.

``KeyedPermutation(n, key)[positions]`` maps stream positions to dataset indices
without materialising the permutation, so a shuffled plan over 10^9 samples costs
a few bytes. Built by hand because no library in our stack offers a seekable
shuffle (``numpy``/``torch`` permutations are O(n) memory).

How: a balanced Feistel network on ``2h`` bits (``4^h >= n``) with a splitmix64
round function is a bijection of ``[0, 4^h)``; *cycle-walking* (re-applying the
network while the value is ``>= n``) restricts it to a bijection of ``[0, n)``
(Black & Rogaway, "Ciphers with Arbitrary Finite Domains", 2002). Since
``4^h < 4n``, a position needs fewer than 4 walks on average. Everything is
vectorised over numpy ``uint64`` arrays.

NOTE: the permutation is a pure function of ``(n, key)``: identical on every
machine, numpy version and process, which is what resume and DDP sharding need.

Example:
    >>> p = KeyedPermutation(10, key=7)
    >>> sorted(p[np.arange(10)].tolist()) == list(range(10))
    True
"""

from __future__ import annotations

import numpy as np

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_ROUNDS = 6


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a fast, well-mixed 64-bit hash (uint64 arithmetic wraps)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def mix_key(*parts: int) -> int:
    """Fold integers (seed, epoch, pass, ...) into one 64-bit key, deterministically."""
    acc = np.array([0x243F6A8885A308D3], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for p in parts:
            acc = _splitmix64(acc ^ np.array([int(p) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    return int(acc[0])


class KeyedPermutation:
    """A bijection of ``range(n)`` chosen by ``key``; index with ints or int arrays."""

    def __init__(self, n: int, key: int):
        if n < 1:
            raise ValueError(f"KeyedPermutation needs n >= 1, got {n}")
        self.n = int(n)
        self.key = int(key) & 0xFFFFFFFFFFFFFFFF
        half_bits = max(1, (max(self.n - 1, 1).bit_length() + 1) // 2)
        self._half = np.uint64(half_bits)
        self._mask = np.uint64((1 << half_bits) - 1)
        keys = _splitmix64(np.arange(_ROUNDS, dtype=np.uint64) + np.uint64(self.key))
        self._round_keys = [np.uint64(k) for k in keys]

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        left = x >> self._half
        right = x & self._mask
        for rk in self._round_keys:
            left, right = right, left ^ (_splitmix64(right ^ rk) & self._mask)
        return (left << self._half) | right

    def __call__(self, positions: np.ndarray | int) -> np.ndarray | int:
        return self[positions]

    def __getitem__(self, positions: np.ndarray | int) -> np.ndarray | int:
        scalar = np.isscalar(positions)
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= self.n):
            raise IndexError(f"position out of range [0, {self.n})")
        n = np.uint64(self.n)
        with np.errstate(over="ignore"):
            out = self._feistel(pos.astype(np.uint64).ravel())
            todo = np.nonzero(out >= n)[0]
            while todo.size:  # cycle-walking
                out[todo] = self._feistel(out[todo])
                todo = todo[out[todo] >= n]
        out = out.astype(np.int64).reshape(pos.shape)
        return int(out) if scalar else out

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"KeyedPermutation(n={self.n}, key={self.key})"
