"""The generator's only random source: NumPy draws made in blocks, handed out one scalar at a time.

NumPy is fast per array and slow per scalar call; a simulation asks for millions of single numbers. ``Draws``
fills a block of uniforms and normals with one vectorised call and serves them from a Python list, so every
draw stays seeded, reproducible and cheap. Ids come from a separate stream so that adding an id never shifts
the clinical draws.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from math import exp, log
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")

_BLOCK = 4096
_ID_BLOCK = 2048
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


class Weighted(Generic[T]):
    """A categorical distribution over fixed items (weights need not sum to one)."""

    __slots__ = ("cumulative", "items", "total")

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.items: tuple[T, ...] = tuple(item for item, _ in pairs)
        self.cumulative = tuple(accumulate(weight for _, weight in pairs))
        self.total = self.cumulative[-1]


class Draws:
    """Uniform, normal and derived draws from one seeded NumPy generator."""

    __slots__ = ("_i", "_j", "_n", "_rng", "_u")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._u: list[float] = []
        self._i = 0
        self._n: list[float] = []
        self._j = 0

    def u(self) -> float:
        """Uniform on [0, 1)."""
        i = self._i
        if i == len(self._u):
            self._u = self._rng.random(_BLOCK).tolist()
            i = 0
        self._i = i + 1
        return self._u[i]

    def z(self) -> float:
        """Standard normal."""
        j = self._j
        if j == len(self._n):
            self._n = self._rng.standard_normal(_BLOCK).tolist()
            j = 0
        self._j = j + 1
        return self._n[j]

    def chance(self, p: float) -> bool:
        return self.u() < p

    def normal(self, mean: float, sd: float) -> float:
        return mean + sd * self.z()

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.u()

    def between(self, low: int, high: int) -> int:
        """An integer in [low, high], both ends included."""
        return low + int(self.u() * (high - low + 1))

    def pick(self, items: Sequence[T]) -> T:
        return items[int(self.u() * len(items))]

    def weighted(self, table: Weighted[T]) -> T:
        index = bisect_right(table.cumulative, self.u() * table.total)
        return table.items[min(index, len(table.items) - 1)]

    def poisson(self, mean: float) -> int:
        """Knuth's method; the generator only needs small means."""
        if mean <= 0:
            return 0
        limit = exp(-mean)
        count = 0
        product = self.u()
        while product > limit:
            count += 1
            product *= self.u()
        return count

    def expo(self, mean: float) -> float:
        return -mean * log(1.0 - self.u())

    def lognormal(self, median: float, sigma: float) -> float:
        return median * exp(sigma * self.z())

    def gamma2(self, scale: float) -> float:
        """Gamma with shape 2: the sum of two exponentials (right-skewed, positive)."""
        return -scale * (log(1.0 - self.u()) + log(1.0 - self.u()))


class IdSource:
    """Random-looking, reproducible UUIDs (version 4 layout) from a seeded byte stream, formatted in bulk."""

    __slots__ = ("_block", "_pos", "_rng")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._block = ""
        self._pos = 0

    def new(self) -> str:
        pos = self._pos
        if pos == len(self._block):
            self._block = _format_uuids(self._rng.bytes(16 * _ID_BLOCK))
            pos = 0
        self._pos = pos + 36
        return self._block[pos : pos + 36]


def _format_uuids(raw: bytes) -> str:
    """Many UUIDs as one string of 36-character ids: version and variant bits set, hex digits and hyphens."""
    octets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16).copy()
    octets[:, 6] = (octets[:, 6] & 0x0F) | 0x40
    octets[:, 8] = (octets[:, 8] & 0x3F) | 0x80
    digits = np.empty((octets.shape[0], 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[octets >> 4]
    digits[:, 1::2] = _HEX[octets & 0x0F]
    dash = np.full((octets.shape[0], 1), ord("-"), dtype=np.uint8)
    text = np.concatenate(
        [digits[:, :8], dash, digits[:, 8:12], dash, digits[:, 12:16], dash, digits[:, 16:20], dash, digits[:, 20:]],
        axis=1,
    )
    return text.tobytes().decode("ascii")


def streams(seed: int, *key: int) -> tuple[Draws, IdSource]:
    """Independent draw and id streams for one unit of work (the world, or one chunk of patients)."""
    clinical, ids = np.random.SeedSequence(seed, spawn_key=key).spawn(2)
    return Draws(np.random.Generator(np.random.PCG64(clinical))), IdSource(np.random.Generator(np.random.PCG64(ids)))
