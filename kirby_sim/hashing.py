"""Counter-based randomness: every random number is a pure function of (seed, stream, index).

The simulator never advances a random generator, so any minute of any instrument can be
computed on its own, in any order, and always comes out the same. A stream key names one
kind of draw (price noise, quiet minutes, wick sizes...) for one instrument; the index is
usually a minute number. Hashing is splitmix64 over numpy uint64 arrays (wrap-around
multiplication is intended). `uniform_one` is the same draw for a single index in plain
Python integers, much cheaper than a one-element array on the live feed's hot path.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_32 = float(2**32)
_MASK16 = np.uint64(0xFFFF)
_MASK64 = (1 << 64) - 1


def stream_key(seed: int, *names: object) -> np.uint64:
    """A 64-bit key for one named stream, stable across processes and Python versions."""
    text = ":".join(str(name) for name in (seed, *names))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def mix(values: U64) -> U64:
    values = values + _GOLDEN
    values = (values ^ (values >> np.uint64(30))) * _MUL1
    values = (values ^ (values >> np.uint64(27))) * _MUL2
    return values ^ (values >> np.uint64(31))


def hash_indices(key: np.uint64, indices: npt.ArrayLike) -> U64:
    return mix(np.asarray(indices, dtype=np.int64).astype(np.uint64) ^ key)


def uniform_one(key: np.uint64, index: int) -> float:
    """`uniform(key, [index])[0]`, without numpy."""
    value = ((index & _MASK64) ^ int(key)) + 0x9E3779B97F4A7C15 & _MASK64
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB & _MASK64
    return ((value ^ (value >> 31)) >> 11) * 2.0**-53


def uniform(key: np.uint64, indices: npt.ArrayLike) -> F64:
    """Uniform draws in [0, 1) with 53-bit resolution."""
    return (hash_indices(key, indices) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def normal(key: np.uint64, indices: npt.ArrayLike) -> F64:
    """Standard normal draws (Box-Muller on the two 32-bit halves of one hash)."""
    hashed = hash_indices(key, indices)
    u1 = ((hashed >> np.uint64(32)).astype(np.float64) + 0.5) / _TWO_POW_32
    u2 = (hashed & np.uint64(0xFFFFFFFF)).astype(np.float64) / _TWO_POW_32
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def quarters(key: np.uint64, indices: npt.ArrayLike) -> tuple[F64, F64, F64, F64]:
    """Four independent coarse uniforms in [0, 1) (16-bit resolution) from one hash."""
    hashed = hash_indices(key, indices)
    parts = [
        ((hashed >> np.uint64(shift)) & _MASK16).astype(np.float64) / 65536.0
        for shift in (0, 16, 32, 48)
    ]
    return parts[0], parts[1], parts[2], parts[3]
