"""Counter-based random numbers for parallel kernels (splitmix64).

A stream is a pure function of ``(seed, stream_index)``, so a ``prange`` loop
over bootstrap resamples gives bit-identical results whatever the number of
threads. Reference: Steele, Lea & Flood (2014), *Fast splittable pseudorandom
number generators*; constants from Vigna's public-domain splitmix64.c.
"""

import numpy as np

from mis._kernels._config import jit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
LOW32 = np.uint64(0xFFFFFFFF)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


@jit
def _mix64(z):
    """The splitmix64 output function: a bijective 64-bit hash."""
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


@jit
def stream_state(seed, index):
    """Initial state of stream ``index`` under ``seed`` (both uint64)."""
    return _mix64(np.uint64(seed) ^ _mix64(np.uint64(index) + GOLDEN))


@jit
def next_below(state, n):
    """Advance ``state`` and return ``(new_state, k)`` with ``k`` uniform in ``[0, n)``.

    Uses the top 32 bits times ``n`` (Lemire's multiply-shift without the
    rejection step); the bias is below ``n / 2**32``, negligible for n < 2**24.
    """
    state = np.uint64(state) + GOLDEN
    r = _mix64(state) >> np.uint64(32)
    return state, np.int64((r * np.uint64(n)) >> np.uint64(32))


@jit
def two_below(state, n):
    """Advance ``state`` once and return ``(new_state, k1, k2)``, two draws in ``[0, n)``.

    The high and the low 32 bits of one splitmix64 output each give a draw by
    multiply-shift (as :func:`next_below`), halving the hashing per draw.
    """
    state = np.uint64(state) + GOLDEN
    r = _mix64(state)
    nn = np.uint64(n)
    k1 = np.int64(((r >> np.uint64(32)) * nn) >> np.uint64(32))
    k2 = np.int64(((r & LOW32) * nn) >> np.uint64(32))
    return state, k1, k2
